//! Rectangle decoders, one module per encoding, all writing into a [`Framebuffer`].
//!
//! Encodings without a length prefix (Raw, RRE, Hextile, TRLE) are decoded incrementally —
//! row by row, subrectangle by subrectangle, tile by tile — so a large rectangle is neither
//! buffered whole nor parsed again when more bytes arrive. Length-prefixed encodings (ZRLE,
//! zlib, Tight) and small pseudo-rectangles are decoded once all their bytes are present; the
//! prefix is checked against [`crate::vnc::limits`] before any byte is waited for.

mod copyrect;
pub(crate) mod cursor;
mod desktop;
mod hextile;
mod raw;
mod rre;
mod tight;
mod trle;
mod zrle;

use super::encoding as enc;
use super::error::RfbError;
use super::pixel::PixelReader;
use super::server_msg::ServerEvent;
use super::wire::{Parse, Stop};
use super::zlib::Inflater;
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;

/// State shared by the rectangles of one connection.
#[derive(Debug)]
pub(crate) struct DecodeCtx {
    /// The negotiated pixel format.
    pub(crate) px: PixelReader,
    /// The ZRLE zlib stream.
    zrle: Option<Inflater>,
    /// The zlib-encoding stream.
    zlib: Option<Inflater>,
    /// Tight's four zlib streams.
    tight: [Option<Inflater>; 4],
    /// TRLE's palette of the previous tile (subencodings 127 and 129).
    trle_palette: Vec<u32>,
    /// Reused pixel buffer.
    scratch: Vec<u32>,
}

impl DecodeCtx {
    pub(crate) fn new(px: PixelReader) -> Self {
        DecodeCtx {
            px,
            zrle: None,
            zlib: None,
            tight: [None, None, None, None],
            trle_palette: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Heap bytes held by reusable buffers (the zlib states are fixed-size).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.scratch.capacity() * 4 + self.trle_palette.capacity() * 4
    }
}

/// A rectangle header of a FramebufferUpdate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RectHeader {
    pub(crate) x: u16,
    pub(crate) y: u16,
    pub(crate) w: u16,
    pub(crate) h: u16,
    pub(crate) encoding: i32,
}

/// Bytes of a rectangle header.
pub(crate) const RECT_HEADER_LEN: usize = 12;

impl RectHeader {
    pub(crate) fn parse(b: &[u8]) -> Option<RectHeader> {
        let b: &[u8; RECT_HEADER_LEN] = b.get(..RECT_HEADER_LEN)?.try_into().ok()?;
        Some(RectHeader {
            x: u16::from_be_bytes([b[0], b[1]]),
            y: u16::from_be_bytes([b[2], b[3]]),
            w: u16::from_be_bytes([b[4], b[5]]),
            h: u16::from_be_bytes([b[6], b[7]]),
            encoding: i32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// The rectangle in framebuffer coordinates.
    pub(crate) fn rect(&self) -> Rect {
        Rect::new(
            u32::from(self.x),
            u32::from(self.y),
            u32::from(self.w),
            u32::from(self.h),
        )
    }

    /// Pixel count.
    pub(crate) fn area(&self) -> usize {
        usize::from(self.w) * usize::from(self.h)
    }
}

/// What a decoding step achieved.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The rectangle needs more bytes.
    Pending,
    /// The rectangle is finished, possibly with an event to report.
    Done(Option<ServerEvent>),
    /// A LastRect pseudo-rectangle: the update ends here.
    LastRect,
}

/// Fails unless `r` lies inside the framebuffer.
pub(crate) fn check_inside(r: Rect, fb: &Framebuffer) -> Result<(), RfbError> {
    if r.right() > fb.width() || r.bottom() > fb.height() {
        return Err(RfbError::OutOfBounds {
            rect: r,
            width: fb.width(),
            height: fb.height(),
        });
    }
    Ok(())
}

/// Converts a parse of a complete item: `(bytes used, value)`, or nothing when more input is
/// needed.
fn whole<T>(r: Parse<(usize, T)>) -> Result<(usize, Option<T>), RfbError> {
    match r {
        Ok((n, v)) => Ok((n, Some(v))),
        Err(Stop::More) => Ok((0, None)),
        Err(Stop::Fail(e)) => Err(e),
    }
}

/// The decoder of one rectangle in progress.
#[derive(Debug)]
pub(crate) enum RectDecoder {
    Raw(raw::Raw),
    Rre(rre::Rre),
    Hextile(hextile::Hextile),
    Trle(trle::Trle),
    CopyRect,
    Zrle,
    Zlib,
    Tight,
    Cursor,
    XCursor,
    DesktopSize,
    ExtendedDesktopSize,
    DesktopName,
    PointerPos,
    LastRect,
    Ack,
}

impl RectDecoder {
    /// Starts decoding a rectangle; validates the encoding and, for pixel data, its bounds.
    pub(crate) fn start(h: &RectHeader, fb: &Framebuffer) -> Result<RectDecoder, RfbError> {
        let data = |d: RectDecoder| -> Result<RectDecoder, RfbError> {
            check_inside(h.rect(), fb)?;
            Ok(d)
        };
        match h.encoding {
            enc::RAW => data(RectDecoder::Raw(raw::Raw::default())),
            enc::COPY_RECT => data(RectDecoder::CopyRect),
            enc::RRE => data(RectDecoder::Rre(rre::Rre::default())),
            enc::HEXTILE => data(RectDecoder::Hextile(hextile::Hextile::default())),
            enc::ZLIB => data(RectDecoder::Zlib),
            enc::TIGHT => data(RectDecoder::Tight),
            enc::TRLE => data(RectDecoder::Trle(trle::Trle::default())),
            enc::ZRLE => data(RectDecoder::Zrle),
            enc::CURSOR => Ok(RectDecoder::Cursor),
            enc::X_CURSOR => Ok(RectDecoder::XCursor),
            enc::DESKTOP_SIZE => Ok(RectDecoder::DesktopSize),
            enc::EXTENDED_DESKTOP_SIZE => Ok(RectDecoder::ExtendedDesktopSize),
            enc::DESKTOP_NAME => Ok(RectDecoder::DesktopName),
            enc::POINTER_POS => Ok(RectDecoder::PointerPos),
            enc::LAST_RECT => Ok(RectDecoder::LastRect),
            enc::QEMU_EXTENDED_KEY => Ok(RectDecoder::Ack),
            other => Err(RfbError::UnsupportedEncoding(other)),
        }
    }

    /// Decodes as much of the rectangle as `input` allows; returns the bytes used.
    pub(crate) fn step(
        &mut self,
        h: &RectHeader,
        input: &[u8],
        ctx: &mut DecodeCtx,
        fb: &mut Framebuffer,
    ) -> Result<(usize, Outcome), RfbError> {
        let done_or_pending = |(n, v): (usize, Option<Option<ServerEvent>>)| match v {
            Some(ev) => (n, Outcome::Done(ev)),
            None => (n, Outcome::Pending),
        };
        Ok(match self {
            RectDecoder::Raw(s) => s.step(h, input, ctx, fb)?,
            RectDecoder::Rre(s) => s.step(h, input, ctx, fb)?,
            RectDecoder::Hextile(s) => s.step(h, input, ctx, fb)?,
            RectDecoder::Trle(s) => s.step(h, input, ctx, fb)?,
            RectDecoder::CopyRect => {
                done_or_pending(whole(copyrect::decode(h, input, fb).map(|n| (n, None)))?)
            }
            RectDecoder::Zrle => done_or_pending(whole(
                zrle::decode_zrle(h, input, ctx, fb).map(|n| (n, None)),
            )?),
            RectDecoder::Zlib => done_or_pending(whole(
                zrle::decode_zlib(h, input, ctx, fb).map(|n| (n, None)),
            )?),
            RectDecoder::Tight => {
                done_or_pending(whole(tight::decode(h, input, ctx, fb).map(|n| (n, None)))?)
            }
            RectDecoder::Cursor => done_or_pending(whole(cursor::decode_cursor(h, input, ctx))?),
            RectDecoder::XCursor => done_or_pending(whole(cursor::decode_x_cursor(h, input))?),
            RectDecoder::DesktopSize => (0, Outcome::Done(Some(desktop::desktop_size(h, fb)?))),
            RectDecoder::ExtendedDesktopSize => {
                done_or_pending(whole(desktop::extended_desktop_size(h, input, fb))?)
            }
            RectDecoder::DesktopName => done_or_pending(whole(desktop::desktop_name(input))?),
            RectDecoder::PointerPos => (
                0,
                Outcome::Done(Some(ServerEvent::PointerPosition { x: h.x, y: h.y })),
            ),
            RectDecoder::LastRect => (0, Outcome::LastRect),
            RectDecoder::Ack => (0, Outcome::Done(None)),
        })
    }
}
