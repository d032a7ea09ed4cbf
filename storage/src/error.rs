//! The crate-level error type.

use std::io;

use crate::index::IndexError;
use crate::keys::KeyError;

/// Result alias used throughout this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while writing, recovering or maintaining recordings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A storage operation failed (disk full, permission denied, missing file, invalid path …).
    #[error("storage {op} of {path:?} failed: {source}")]
    Io {
        /// The operation that failed (`append`, `sync`, `read`, …).
        op: &'static str,
        /// The path, relative to the storage root.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A session id is not a lowercase, hyphenated UUID.
    #[error("invalid session id {0:?}: expected a lowercase hyphenated UUID")]
    InvalidSessionId(String),
    /// The caller passed a value the format does not allow.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A recording folder already holds a recording.
    #[error("recording folder {0} already holds a recording")]
    AlreadyExists(String),
    /// An earlier I/O failure left the writer in an unknown state; the recording must be closed
    /// and recovered.
    #[error("recording writer is unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// A JSON document (manifest, chain line, audit line) could not be read or written.
    #[error("{what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A chain could not be extended (for example a file name longer than 65535 bytes).
    #[error("hash chain: {0}")]
    Chain(String),
    /// The gateway key could not be loaded, generated or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The session index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A recording has damage that a crash cannot explain; it is left untouched.
    #[error("recording {dir} cannot be recovered automatically: {reason}")]
    NotRecoverable {
        /// The recording folder.
        dir: String,
        /// Why.
        reason: String,
    },
    /// The audit log is damaged or could not be extended.
    #[error("audit log: {0}")]
    Audit(String),
    /// A recording or index row was not found.
    #[error("not found: {0}")]
    NotFound(String),
}

impl Error {
    /// Wraps an I/O error with the operation and path it came from.
    pub fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with the name of the document.
    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }
}
