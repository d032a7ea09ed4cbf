//! Bounds on every length the peer controls.
//!
//! RFB carries lengths and counts chosen by the peer. Each one is checked against a limit here
//! before anything is buffered or allocated for it, so a hostile or broken peer can make the
//! codec fail cleanly but never make it allocate without bound.

/// Cut text (clipboard) bytes kept per message. Longer texts are streamed through, and only
/// their first `MAX_CUT_TEXT_KEPT` bytes are reported.
pub const MAX_CUT_TEXT_KEPT: usize = 10 * 1024 * 1024;

/// Largest compressed payload (ZRLE, zlib) buffered for one rectangle.
pub const MAX_COMPRESSED_RECT_BYTES: usize = 64 * 1024 * 1024;

/// Largest decoded intermediate buffer (decompressed ZRLE / zlib / Tight data, decoded JPEG)
/// for one rectangle. A full 4K screen in raw ZRLE tiles needs about 25 MiB.
pub const MAX_DECODED_RECT_BYTES: usize = 64 * 1024 * 1024;

/// Largest side of a cursor shape (Cursor and XCursor pseudo-encodings).
pub const MAX_CURSOR_SIDE: u16 = 1024;

/// Largest desktop name (DesktopName pseudo-encoding), in bytes.
pub const MAX_DESKTOP_NAME: u32 = 64 * 1024;

/// Largest number of encodings accepted in one SetEncodings message.
pub const MAX_ENCODINGS: u16 = 4096;

/// Tight's compact length field has at most 22 bits.
pub const MAX_TIGHT_LENGTH: usize = (1 << 22) - 1;
