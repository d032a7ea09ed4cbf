//! Incremental parser of the target→viewer stream after the handshake.
//!
//! RFB has no message framing: a FramebufferUpdate's length is only known by decoding it. The
//! [`ServerStream`] is fed the bytes as they arrive and returns events once their bytes are
//! complete, decoding pixels into the session's [`Framebuffer`] on the way.

use super::cut_text::{decode_length, CutText, TextSink};
use super::decode::cursor::CursorShape;
use super::decode::{DecodeCtx, Outcome, RectDecoder, RectHeader, RECT_HEADER_LEN};
use super::error::RfbError;
use super::pixel::{PixelFormat, PixelReader};
use super::screen::Screen;
use super::wire::{Cur, InBuf, Parse, Stop};
use super::Parsed;
use psmgate_codecs::framebuffer::Framebuffer;

/// Server message types.
mod msg {
    pub const FRAMEBUFFER_UPDATE: u8 = 0;
    pub const SET_COLOUR_MAP_ENTRIES: u8 = 1;
    pub const BELL: u8 = 2;
    pub const SERVER_CUT_TEXT: u8 = 3;
    pub const END_OF_CONTINUOUS_UPDATES: u8 = 150;
    pub const SERVER_FENCE: u8 = 248;
    pub const XVP: u8 = 250;
}

/// The multi-screen layout of an ExtendedDesktopSize pseudo-rectangle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenLayout {
    /// 0: server-initiated change, 1: this viewer's request, 2: another viewer's request.
    pub reason: u16,
    /// 0 on success; otherwise the size is the unchanged current one.
    pub status: u16,
    /// Framebuffer width.
    pub width: u16,
    /// Framebuffer height.
    pub height: u16,
    /// The screens.
    pub screens: Vec<Screen>,
}

/// What the target sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A FramebufferUpdate is complete; its pixels are in the framebuffer. `rects` counts the
    /// rectangles it carried, pseudo-rectangles included.
    UpdateDone {
        /// Rectangles processed.
        rects: u16,
    },
    /// DesktopSize: the framebuffer was resized.
    Resize {
        /// New width.
        width: u16,
        /// New height.
        height: u16,
    },
    /// ExtendedDesktopSize: the screen layout; the framebuffer was resized when `status` is 0.
    ScreenLayout(ScreenLayout),
    /// The pointer shape changed.
    Cursor(CursorShape),
    /// The server moved the pointer.
    PointerPosition {
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// The desktop was renamed.
    DesktopName(String),
    /// SetColourMapEntries. psmgate only negotiates true-colour formats, where colour maps are
    /// meaningless, so the entries are skipped.
    ColourMapIgnored {
        /// First colour index.
        first: u16,
        /// Number of entries.
        count: u16,
    },
    /// Bell.
    Bell,
    /// The target's clipboard.
    CutText(CutText),
    /// Continuous updates stopped.
    EndOfContinuousUpdates,
    /// ServerFence.
    Fence {
        /// Fence flags.
        flags: u32,
        /// Opaque payload (at most 255 bytes).
        payload: Vec<u8>,
    },
    /// XVP (power control) status.
    Xvp {
        /// Protocol version.
        version: u8,
        /// Status code.
        code: u8,
    },
}

#[derive(Debug)]
enum State {
    /// Between messages.
    Idle,
    /// Inside a FramebufferUpdate.
    Update {
        total: u16,
        done: u16,
        current: Option<(RectHeader, RectDecoder)>,
    },
    /// Inside a ServerCutText payload.
    Text(TextSink),
}

/// What the start of a message announced.
enum Start {
    Event(ServerEvent),
    Update(u16),
    Text(u32, bool),
}

/// Parser of the target→viewer byte stream.
///
/// Feed bytes with [`ServerStream::feed`], then call [`ServerStream::next_event`] until it
/// returns `Ok(None)`. Each event reports in [`Parsed::len`] how many stream bytes it covers
/// since the previous event, so a proxy can forward exactly the bytes of validated messages.
/// Pseudo-rectangles of an update (resize, cursor, …) are reported as they are met, and the
/// update's remaining bytes with its final [`ServerEvent::UpdateDone`].
///
/// Memory stays bounded as long as the caller polls until `Ok(None)` before feeding again:
/// the stream then holds at most one pending item (a header, a tile, a row or a
/// length-prefixed rectangle within [`crate::vnc::limits`]) plus the last fed chunk.
#[derive(Debug)]
pub struct ServerStream {
    input: InBuf,
    ctx: DecodeCtx,
    state: State,
    pending_len: usize,
    failed: Option<String>,
    rects: std::collections::BTreeMap<i32, u64>,
}

impl ServerStream {
    /// A parser for a connection whose negotiated pixel format is `format`.
    pub fn new(format: PixelFormat) -> Result<Self, RfbError> {
        Ok(ServerStream {
            input: InBuf::default(),
            ctx: DecodeCtx::new(PixelReader::new(format)?),
            state: State::Idle,
            pending_len: 0,
            failed: None,
            rects: Default::default(),
        })
    }

    /// Switches the pixel format, for when the proxy forwards a SetPixelFormat to the target.
    /// The target applies it to updates it sends after receiving it, so this must be called
    /// before any update requested afterwards is parsed (viewers send SetPixelFormat before
    /// their first update request).
    pub fn set_pixel_format(&mut self, format: PixelFormat) -> Result<(), RfbError> {
        self.ctx.px = PixelReader::new(format)?;
        Ok(())
    }

    /// The pixel format in use.
    pub fn pixel_format(&self) -> PixelFormat {
        *self.ctx.px.format()
    }

    /// Appends bytes received from the target.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// Bytes fed but not yet consumed by the parser.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// True when no message is partly parsed.
    pub fn at_message_boundary(&self) -> bool {
        matches!(self.state, State::Idle) && self.pending_len == 0
    }

    /// Heap bytes held between calls by the parser's own buffers. Excluded: the zlib states
    /// (fixed size) and the transient buffers of one rectangle's decoding, which are bounded
    /// by [`crate::vnc::limits::MAX_DECODED_RECT_BYTES`].
    pub fn heap_bytes(&self) -> usize {
        let text = match &self.state {
            State::Text(t) => t.capacity(),
            _ => 0,
        };
        self.input.capacity() + self.ctx.heap_bytes() + text
    }

    /// Rectangles decoded so far, by encoding number (pseudo-encodings included): what the
    /// server really sent, for logs and tests.
    pub fn rects_by_encoding(&self) -> &std::collections::BTreeMap<i32, u64> {
        &self.rects
    }

    /// Parses the next event, applying pixels to `fb`. `Ok(None)` means more bytes are
    /// needed. After an error the stream is unusable and every later call fails.
    pub fn next_event(
        &mut self,
        fb: &mut Framebuffer,
    ) -> Result<Option<Parsed<ServerEvent>>, RfbError> {
        if let Some(msg) = &self.failed {
            return Err(RfbError::Failed(msg.clone()));
        }
        let r = self.poll(fb);
        if let Err(e) = &r {
            self.failed = Some(e.to_string());
        }
        r
    }

    fn consume(&mut self, n: usize) {
        self.input.consume(n);
        self.pending_len += n;
    }

    fn emit(&mut self, event: ServerEvent) -> Option<Parsed<ServerEvent>> {
        let len = std::mem::take(&mut self.pending_len);
        Some(Parsed { event, len })
    }

    fn poll(&mut self, fb: &mut Framebuffer) -> Result<Option<Parsed<ServerEvent>>, RfbError> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let (n, start) = match parse_start(self.input.available()) {
                        Ok(v) => v,
                        Err(Stop::More) => return Ok(None),
                        Err(Stop::Fail(e)) => return Err(e),
                    };
                    self.consume(n);
                    match start {
                        Start::Event(ev) => return Ok(self.emit(ev)),
                        Start::Update(total) => {
                            self.state = State::Update {
                                total,
                                done: 0,
                                current: None,
                            }
                        }
                        Start::Text(len, extended) => {
                            self.state = State::Text(TextSink::new(len, extended))
                        }
                    }
                }
                State::Text(sink) => {
                    let n = sink.absorb(self.input.available());
                    let done = sink.done();
                    self.consume(n);
                    if !done {
                        return Ok(None);
                    }
                    if let State::Text(sink) = std::mem::replace(&mut self.state, State::Idle) {
                        return Ok(self.emit(ServerEvent::CutText(sink.finish())));
                    }
                }
                State::Update {
                    total,
                    done,
                    current,
                } => {
                    let Some((header, decoder)) = current.as_mut() else {
                        if done == total {
                            let rects = *done;
                            self.state = State::Idle;
                            return Ok(self.emit(ServerEvent::UpdateDone { rects }));
                        }
                        let Some(h) = RectHeader::parse(self.input.available()) else {
                            return Ok(None);
                        };
                        *current = Some((h, RectDecoder::start(&h, fb)?));
                        // Only encodings the decoder accepted get here, so the map stays small.
                        *self.rects.entry(h.encoding).or_default() += 1;
                        self.consume(RECT_HEADER_LEN);
                        continue;
                    };
                    let (n, outcome) =
                        decoder.step(header, self.input.available(), &mut self.ctx, fb)?;
                    match outcome {
                        Outcome::Pending => {
                            self.consume(n);
                            return Ok(None);
                        }
                        Outcome::Done(ev) => {
                            *current = None;
                            *done += 1;
                            self.consume(n);
                            if let Some(ev) = ev {
                                return Ok(self.emit(ev));
                            }
                        }
                        Outcome::LastRect => {
                            *current = None;
                            *done += 1;
                            *total = *done;
                            self.consume(n);
                        }
                    }
                }
            }
        }
    }
}

/// Parses a message start: whole small messages, or the header of a long one.
fn parse_start(input: &[u8]) -> Parse<(usize, Start)> {
    let mut c = Cur::new(input);
    let start = match c.u8()? {
        msg::FRAMEBUFFER_UPDATE => {
            c.skip(1)?;
            Start::Update(c.u16()?)
        }
        msg::SET_COLOUR_MAP_ENTRIES => {
            c.skip(1)?;
            let first = c.u16()?;
            let count = c.u16()?;
            // At most 65535 entries of 6 bytes.
            c.skip(usize::from(count) * 6)?;
            Start::Event(ServerEvent::ColourMapIgnored { first, count })
        }
        msg::BELL => Start::Event(ServerEvent::Bell),
        msg::SERVER_CUT_TEXT => {
            c.skip(3)?;
            let (len, extended) = decode_length(c.u32()?);
            Start::Text(len, extended)
        }
        msg::END_OF_CONTINUOUS_UPDATES => Start::Event(ServerEvent::EndOfContinuousUpdates),
        msg::SERVER_FENCE => {
            c.skip(3)?;
            let flags = c.u32()?;
            let len = c.u8()?;
            let payload = c.take(usize::from(len))?.to_vec();
            Start::Event(ServerEvent::Fence { flags, payload })
        }
        msg::XVP => {
            c.skip(1)?;
            let version = c.u8()?;
            let code = c.u8()?;
            Start::Event(ServerEvent::Xvp { version, code })
        }
        other => return Err(Stop::Fail(RfbError::UnknownServerMessage(other))),
    };
    Ok((c.pos(), start))
}
