//! RFB (VNC) message codecs for the VNC proxy, after the handshake.
//!
//! The proxy sits between any RFB viewer and the target VNC server. RFB has no length framing,
//! so every byte the target sends is parsed to find where messages end, and every pixel is
//! decoded into the session's [`psmgate_codecs::framebuffer::Framebuffer`] for recording.
//!
//! * [`ServerStream`] parses target→viewer messages: FramebufferUpdate (Raw, CopyRect, RRE,
//!   Hextile, zlib, Tight, TRLE, ZRLE and the Cursor, XCursor, DesktopSize,
//!   ExtendedDesktopSize, DesktopName, PointerPos and LastRect pseudo-encodings),
//!   SetColourMapEntries (skipped), Bell, ServerCutText, EndOfContinuousUpdates, ServerFence
//!   and XVP.
//! * [`ClientStream`] parses viewer→target messages (SetPixelFormat, SetEncodings,
//!   FramebufferUpdateRequest, KeyEvent, PointerEvent, ClientCutText, and the extensions that
//!   the supported encodings enable) and [`ClientEvent::to_bytes`] serialises them, so the proxy
//!   can rewrite SetPixelFormat and SetEncodings ([`encoding::filter_encodings`]).
//!
//! Both are sans-I/O: the caller feeds bytes and polls events. Neither panics on any input,
//! and every peer-supplied length is checked against [`limits`] before it drives buffering
//! or allocation. Handshake and authentication are handled elsewhere
//! ([`crate::vnc_handshake`]), which shares [`PixelFormat`] with these codecs.

mod client_msg;
mod cut_text;
mod decode;
pub mod encoding;
mod error;
pub mod limits;
mod pixel;
mod screen;
mod server_msg;
mod wire;
mod zlib;

#[cfg(test)]
mod tests;

pub use client_msg::{ClientEvent, ClientStream};
pub use cut_text::CutText;
pub use decode::cursor::CursorShape;
pub use error::RfbError;
pub use pixel::{PixelFormat, PixelFormatError, PIXEL_FORMAT_LEN};
pub use screen::Screen;
pub use server_msg::{ScreenLayout, ServerEvent, ServerStream};

/// An event and the number of stream bytes it accounts for since the previous event of the
/// same stream. The lengths of successive events add up to the bytes consumed, so a proxy
/// that forwards `len` bytes per event forwards exactly the parsed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<E> {
    /// What was parsed.
    pub event: E,
    /// Stream bytes covered.
    pub len: usize,
}
