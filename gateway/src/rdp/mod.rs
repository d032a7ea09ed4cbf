//! RDP protocol handling for the RDP gateway, sans-I/O: bytes in, rewritten bytes and events out.
//!
//! - [`framing`]: splits a byte stream into TPKT (X.224) and fast-path frames.
//! - [`pdu_rewrite`]: decodes and re-encodes the connection-sequence PDUs psmgate changes on the
//!   way through (MCS Connect Initial/Response, Client Info, Confirm Active, channel joins).
//! - [`capabilities`]: the client capabilities psmgate lets the server see, so that the server
//!   only sends graphics psmgate decodes.
//! - [`input`]: fast-path and slow-path input → transcript input (scancodes with the client's
//!   keyboard layout, unicode, mouse, wheel).
//! - [`passive`]: passive graphics decoding of the server → client stream into the recording.
//! - [`cliprdr`]: clipboard virtual channel policy and logging.
//! - [`vchannel`]: the static virtual channel framing the channel filters share.
//! - [`drdynvc`]: dynamic virtual channel allow-list on the `drdynvc` channel.

pub mod capabilities;
pub mod cliprdr;
pub mod drdynvc;
pub mod framing;
pub mod input;
pub mod passive;
pub mod pdu_rewrite;
pub mod vchannel;
