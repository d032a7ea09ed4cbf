//! The RFB (VNC) connection handshake on both sides of the gateway, without I/O.
//!
//! A VNC session through psmgate has two legs:
//!
//! ```text
//! viewer ──RFB──▶ psmgate (RFB server: [`server::ServerHandshake`])
//!                 psmgate (RFB client: [`client::ClientHandshake`]) ──RFB──▶ VNC server
//! ```
//!
//! Both state machines follow RFC 6143 §7.1–7.3 (ProtocolVersion, security handshake,
//! SecurityResult, ClientInit, ServerInit) for protocol versions 3.3, 3.7 and 3.8. They never
//! touch a socket: the caller feeds received bytes in with `feed`, sends whatever `take_output`
//! returns, reacts to events from `poll_event`, and after the handshake hands the bytes left over
//! (`take_leftover`) to the message codecs.
//!
//! The viewer authenticates to psmgate with VNC Authentication where the password is an access
//! token issued by the gateway (see [`crate::access`]); psmgate authenticates to the target with
//! the target's vaulted password. Security types None (1) and VNC Authentication (2) are spoken
//! on both legs; towards the viewer also VeNCrypt (19) with X509Vnc ([`vencrypt`]: TLS with
//! psmgate's certificate, then VNC Authentication inside). Anything else is refused with a clear
//! error.
//!
//! Everything received is untrusted: lengths are bounded ([`MAX_REASON_LEN`], [`MAX_NAME_LEN`],
//! [`MAX_BUFFERED`]), nothing panics on malformed input, and no error message ever contains a
//! password or token.

pub mod client;
pub mod server;
mod types;
pub mod vencrypt;
pub mod vncauth;

/// The pixel format of ServerInit, shared with the message codecs (check it with
/// [`PixelFormat::validate_for_handshake`]).
pub use crate::vnc::PixelFormat;
pub use types::{
    ProtocolVersion, SecurityType, ServerInit, VersionError, MAX_DIMENSION, MAX_NAME_LEN,
    MAX_REASON_LEN,
};

/// Most bytes either state machine buffers before the handshake completes. A peer sending more
/// than this without completing a handshake step is misbehaving.
pub const MAX_BUFFERED: usize = 64 * 1024;
