//! Incremental parser and serialiser of the viewer→target stream after the handshake.

use super::cut_text::{decode_length, CutText, TextSink};
use super::error::RfbError;
use super::limits::MAX_ENCODINGS;
use super::pixel::{PixelFormat, PIXEL_FORMAT_LEN};
use super::screen::{Screen, SCREEN_LEN};
use super::wire::{Cur, InBuf, Parse, Stop};
use super::Parsed;
use psmgate_codecs::Rect;

/// Client message types.
mod msg {
    pub const SET_PIXEL_FORMAT: u8 = 0;
    pub const SET_ENCODINGS: u8 = 2;
    pub const FRAMEBUFFER_UPDATE_REQUEST: u8 = 3;
    pub const KEY_EVENT: u8 = 4;
    pub const POINTER_EVENT: u8 = 5;
    pub const CLIENT_CUT_TEXT: u8 = 6;
    pub const ENABLE_CONTINUOUS_UPDATES: u8 = 150;
    pub const CLIENT_FENCE: u8 = 248;
    pub const XVP: u8 = 250;
    pub const SET_DESKTOP_SIZE: u8 = 251;
    pub const QEMU: u8 = 255;
    pub const QEMU_EXTENDED_KEY: u8 = 0;
}

/// What the viewer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// SetPixelFormat.
    SetPixelFormat(PixelFormat),
    /// SetEncodings, in the viewer's order of preference.
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest.
    UpdateRequest {
        /// Only changes are wanted.
        incremental: bool,
        /// Requested area.
        rect: Rect,
    },
    /// KeyEvent.
    Key {
        /// X11 keysym.
        keysym: u32,
        /// Pressed (true) or released.
        down: bool,
    },
    /// QEMU extended KeyEvent: a keysym and an XT scan code.
    QemuKey {
        /// X11 keysym (may be 0).
        keysym: u32,
        /// XT scan code.
        keycode: u32,
        /// Pressed (true) or released.
        down: bool,
    },
    /// PointerEvent.
    Pointer {
        /// Button mask (bit 0 left, 1 middle, 2 right, 3/4 wheel).
        mask: u8,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// ClientCutText: the viewer's clipboard.
    CutText(CutText),
    /// EnableContinuousUpdates.
    ContinuousUpdates {
        /// Enable (true) or disable.
        enable: bool,
        /// Area.
        rect: Rect,
    },
    /// ClientFence.
    Fence {
        /// Fence flags.
        flags: u32,
        /// Opaque payload (at most 255 bytes).
        payload: Vec<u8>,
    },
    /// XVP power-control request.
    Xvp {
        /// Protocol version.
        version: u8,
        /// Request code (2 shutdown, 3 reboot, 4 reset).
        code: u8,
    },
    /// SetDesktopSize.
    SetDesktopSize {
        /// Requested width.
        width: u16,
        /// Requested height.
        height: u16,
        /// Requested layout.
        screens: Vec<Screen>,
    },
}

fn push_rect(out: &mut Vec<u8>, r: &Rect) {
    for v in [r.x, r.y, r.w, r.h] {
        out.extend_from_slice(&(v.min(u32::from(u16::MAX)) as u16).to_be_bytes());
    }
}

impl ClientEvent {
    /// Appends the message's wire form. Values wider than the wire field (a [`Rect`] beyond
    /// 65535, more than 255 screens or fence bytes, more than 65535 encodings) are clamped;
    /// a truncated cut text is written with the kept bytes only.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ClientEvent::SetPixelFormat(pf) => {
                out.extend_from_slice(&[msg::SET_PIXEL_FORMAT, 0, 0, 0]);
                out.extend_from_slice(&pf.to_bytes());
            }
            ClientEvent::SetEncodings(list) => {
                let n = list.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&[msg::SET_ENCODINGS, 0]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for e in &list[..n] {
                    out.extend_from_slice(&e.to_be_bytes());
                }
            }
            ClientEvent::UpdateRequest { incremental, rect } => {
                out.extend_from_slice(&[msg::FRAMEBUFFER_UPDATE_REQUEST, u8::from(*incremental)]);
                push_rect(out, rect);
            }
            ClientEvent::Key { keysym, down } => {
                out.extend_from_slice(&[msg::KEY_EVENT, u8::from(*down), 0, 0]);
                out.extend_from_slice(&keysym.to_be_bytes());
            }
            ClientEvent::QemuKey {
                keysym,
                keycode,
                down,
            } => {
                out.extend_from_slice(&[msg::QEMU, msg::QEMU_EXTENDED_KEY, 0, u8::from(*down)]);
                out.extend_from_slice(&keysym.to_be_bytes());
                out.extend_from_slice(&keycode.to_be_bytes());
            }
            ClientEvent::Pointer { mask, x, y } => {
                out.extend_from_slice(&[msg::POINTER_EVENT, *mask]);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
            }
            ClientEvent::CutText(t) => {
                out.push(msg::CLIENT_CUT_TEXT);
                t.encode_body(out);
            }
            ClientEvent::ContinuousUpdates { enable, rect } => {
                out.extend_from_slice(&[msg::ENABLE_CONTINUOUS_UPDATES, u8::from(*enable)]);
                push_rect(out, rect);
            }
            ClientEvent::Fence { flags, payload } => {
                let n = payload.len().min(255);
                out.extend_from_slice(&[msg::CLIENT_FENCE, 0, 0, 0]);
                out.extend_from_slice(&flags.to_be_bytes());
                out.push(n as u8);
                out.extend_from_slice(&payload[..n]);
            }
            ClientEvent::Xvp { version, code } => {
                out.extend_from_slice(&[msg::XVP, 0, *version, *code]);
            }
            ClientEvent::SetDesktopSize {
                width,
                height,
                screens,
            } => {
                let n = screens.len().min(255);
                out.extend_from_slice(&[msg::SET_DESKTOP_SIZE, 0]);
                out.extend_from_slice(&width.to_be_bytes());
                out.extend_from_slice(&height.to_be_bytes());
                out.extend_from_slice(&[n as u8, 0]);
                for s in &screens[..n] {
                    s.write(out);
                }
            }
        }
    }

    /// The message's wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Parser of the viewer→target byte stream. Same contract as
/// [`crate::vnc::ServerStream`]: feed bytes, poll until `Ok(None)`; each event reports the
/// bytes it covers; errors are final.
#[derive(Debug, Default)]
pub struct ClientStream {
    input: InBuf,
    text: Option<TextSink>,
    pending_len: usize,
    failed: Option<String>,
}

/// What the start of a message announced.
enum Start {
    Event(ClientEvent),
    Text(u32, bool),
}

impl ClientStream {
    /// A parser at a message boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the viewer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// Bytes fed but not yet consumed by the parser.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Heap bytes held by the parser's buffers.
    pub fn heap_bytes(&self) -> usize {
        self.input.capacity() + self.text.as_ref().map_or(0, TextSink::capacity)
    }

    /// Parses the next message. `Ok(None)` means more bytes are needed. After an error the
    /// stream is unusable and every later call fails.
    pub fn next_event(&mut self) -> Result<Option<Parsed<ClientEvent>>, RfbError> {
        if let Some(msg) = &self.failed {
            return Err(RfbError::Failed(msg.clone()));
        }
        let r = self.poll();
        if let Err(e) = &r {
            self.failed = Some(e.to_string());
        }
        r
    }

    fn consume(&mut self, n: usize) {
        self.input.consume(n);
        self.pending_len += n;
    }

    fn emit(&mut self, event: ClientEvent) -> Option<Parsed<ClientEvent>> {
        let len = std::mem::take(&mut self.pending_len);
        Some(Parsed { event, len })
    }

    fn poll(&mut self) -> Result<Option<Parsed<ClientEvent>>, RfbError> {
        if let Some(sink) = &mut self.text {
            let n = sink.absorb(self.input.available());
            let done = sink.done();
            self.consume(n);
            if !done {
                return Ok(None);
            }
            return Ok(match self.text.take() {
                Some(sink) => self.emit(ClientEvent::CutText(sink.finish())),
                None => None,
            });
        }
        let (n, start) = match parse_start(self.input.available()) {
            Ok(v) => v,
            Err(Stop::More) => return Ok(None),
            Err(Stop::Fail(e)) => return Err(e),
        };
        self.consume(n);
        match start {
            Start::Event(ev) => Ok(self.emit(ev)),
            Start::Text(len, extended) => {
                self.text = Some(TextSink::new(len, extended));
                self.poll()
            }
        }
    }
}

fn read_rect(c: &mut Cur<'_>) -> Parse<Rect> {
    Ok(Rect::new(
        u32::from(c.u16()?),
        u32::from(c.u16()?),
        u32::from(c.u16()?),
        u32::from(c.u16()?),
    ))
}

/// Parses a whole message, or the header of a ClientCutText.
fn parse_start(input: &[u8]) -> Parse<(usize, Start)> {
    let mut c = Cur::new(input);
    let ev = match c.u8()? {
        msg::SET_PIXEL_FORMAT => {
            c.skip(3)?;
            let b: &[u8; PIXEL_FORMAT_LEN] = c
                .take(PIXEL_FORMAT_LEN)?
                .try_into()
                .map_err(|_| Stop::Fail(RfbError::Malformed("pixel format")))?;
            ClientEvent::SetPixelFormat(PixelFormat::from_bytes(b))
        }
        msg::SET_ENCODINGS => {
            c.skip(1)?;
            let n = c.u16()?;
            if n > MAX_ENCODINGS {
                return Err(RfbError::too_large(
                    "SetEncodings count",
                    u64::from(n),
                    u64::from(MAX_ENCODINGS),
                )
                .into());
            }
            let bytes = c.take(usize::from(n) * 4)?;
            ClientEvent::SetEncodings(
                bytes
                    .chunks_exact(4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        }
        msg::FRAMEBUFFER_UPDATE_REQUEST => {
            let incremental = c.u8()? != 0;
            ClientEvent::UpdateRequest {
                incremental,
                rect: read_rect(&mut c)?,
            }
        }
        msg::KEY_EVENT => {
            let down = c.u8()? != 0;
            c.skip(2)?;
            ClientEvent::Key {
                keysym: c.u32()?,
                down,
            }
        }
        msg::POINTER_EVENT => ClientEvent::Pointer {
            mask: c.u8()?,
            x: c.u16()?,
            y: c.u16()?,
        },
        msg::CLIENT_CUT_TEXT => {
            c.skip(3)?;
            let (len, extended) = decode_length(c.u32()?);
            return Ok((c.pos(), Start::Text(len, extended)));
        }
        msg::ENABLE_CONTINUOUS_UPDATES => {
            let enable = c.u8()? != 0;
            ClientEvent::ContinuousUpdates {
                enable,
                rect: read_rect(&mut c)?,
            }
        }
        msg::CLIENT_FENCE => {
            c.skip(3)?;
            let flags = c.u32()?;
            let len = c.u8()?;
            ClientEvent::Fence {
                flags,
                payload: c.take(usize::from(len))?.to_vec(),
            }
        }
        msg::XVP => {
            c.skip(1)?;
            ClientEvent::Xvp {
                version: c.u8()?,
                code: c.u8()?,
            }
        }
        msg::SET_DESKTOP_SIZE => {
            c.skip(1)?;
            let width = c.u16()?;
            let height = c.u16()?;
            let n = c.u8()?;
            c.skip(1)?;
            // At most 255 screens: wait for all before allocating.
            let mut s = Cur::new(c.take(usize::from(n) * SCREEN_LEN)?);
            let mut screens = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                screens.push(Screen::read(&mut s)?);
            }
            ClientEvent::SetDesktopSize {
                width,
                height,
                screens,
            }
        }
        msg::QEMU => match c.u8()? {
            msg::QEMU_EXTENDED_KEY => {
                let down = c.u16()? != 0;
                ClientEvent::QemuKey {
                    keysym: c.u32()?,
                    keycode: c.u32()?,
                    down,
                }
            }
            other => return Err(RfbError::UnknownQemuMessage(other).into()),
        },
        other => return Err(RfbError::UnknownClientMessage(other).into()),
    };
    Ok((c.pos(), Start::Event(ev)))
}
