//! Errors of the RFB codecs.

use psmgate_codecs::framebuffer::FramebufferError;
use psmgate_codecs::Rect;

use super::pixel::PixelFormatError;

/// Why a stream of RFB messages cannot be decoded. Every error is final: the stream that
/// returned it answers [`RfbError::Failed`] from then on, and the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    /// A server-to-client message type this codec does not know, so its length is unknown.
    #[error("unknown server message type {0}")]
    UnknownServerMessage(u8),
    /// A client-to-server message type this codec does not know, so its length is unknown.
    #[error("unknown client message type {0}")]
    UnknownClientMessage(u8),
    /// A QEMU client message subtype this codec does not know.
    #[error("unknown QEMU client message subtype {0}")]
    UnknownQemuMessage(u8),
    /// A rectangle encoding this codec cannot decode (it should never have been requested).
    #[error("unsupported rectangle encoding {0}")]
    UnsupportedEncoding(i32),
    /// A peer-supplied length or count is above the documented limit.
    #[error("{what} of {got} exceeds the limit of {max}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// The value the peer sent (or that its values imply).
        got: u64,
        /// The limit, see [`crate::vnc::limits`].
        max: u64,
    },
    /// A rectangle does not fit the framebuffer.
    #[error("rectangle {rect:?} lies outside the {width}x{height} framebuffer")]
    OutOfBounds {
        /// The offending rectangle.
        rect: Rect,
        /// Framebuffer width.
        width: u32,
        /// Framebuffer height.
        height: u32,
    },
    /// The pixel format cannot be decoded (colour maps, odd sizes, zero channel maxima); see
    /// [`crate::vnc::PixelFormat::validate_for_decoder`].
    #[error("unusable pixel format: {0}")]
    PixelFormat(#[from] PixelFormatError),
    /// The bytes break the protocol's structure.
    #[error("malformed data: {0}")]
    Malformed(&'static str),
    /// The zlib data of a rectangle is corrupt.
    #[error("zlib data is corrupt: {0}")]
    Zlib(String),
    /// A Tight JPEG rectangle could not be decoded.
    #[error("JPEG data is corrupt: {0}")]
    Jpeg(String),
    /// Writing decoded pixels to the framebuffer failed.
    #[error(transparent)]
    Framebuffer(#[from] FramebufferError),
    /// An earlier call already failed; the stream cannot resynchronise.
    #[error("the stream failed earlier: {0}")]
    Failed(String),
}

impl RfbError {
    /// A `TooLarge` error.
    pub(crate) fn too_large(what: &'static str, got: u64, max: u64) -> Self {
        RfbError::TooLarge { what, got, max }
    }
}
