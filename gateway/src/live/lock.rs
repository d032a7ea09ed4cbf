//! An operator's lock on a running session: the session stays connected and recorded, and the
//! user keeps seeing the target's screen, but the user's input no longer reaches the target
//! until the session is resumed.
//!
//! Each protocol applies a lock where its input passes:
//! - VNC: key presses, pointer moves and presses, and clipboard text from the viewer are not
//!   forwarded; releases of keys and buttons the target saw pressed still are, so nothing stays
//!   held down on the target.
//! - RDP: input PDUs from the client are not forwarded; when the lock starts the gateway sends
//!   the target the releases of every key and button the client held.
//! - Web: every further request of the session gets the proxy's block page (rule `lock`).
//!
//! The transcript gets a `policy` event (rule `lock`, action `locked` or `resumed`, the detail
//! naming who and why) at each change; input held back while locked is not recorded, since it
//! never reached the target.

use serde::Serialize;
use time::OffsetDateTime;

/// Rule id of the `policy` events a lock and a resume record.
pub const LOCK_RULE: &str = "lock";

/// Who locked a session, when and why (the module documentation says what a lock does in each
/// protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRequest {
    /// The operator's name.
    pub actor: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// When the lock was set (RFC 3339 in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl LockRequest {
    /// A lock by `actor` for `reason`, set now.
    pub fn new(actor: &str, reason: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            at: OffsetDateTime::now_utc(),
        }
    }

    /// The `policy` event's detail.
    pub fn describe(&self) -> String {
        format!("locked by {}: {}", self.actor, self.reason)
    }
}

/// [`super::LiveSessions::lock_input`] and [`super::LiveSessions::resume`] failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockError {
    /// No session with that id runs here.
    #[error("no live session {0}")]
    NotFound(String),
    /// The session is being ended.
    #[error("session {0} is already ending")]
    Ending(String),
    /// The session is locked already.
    #[error("session {0} is already locked")]
    AlreadyLocked(String),
    /// The session is not locked.
    #[error("session {0} is not locked")]
    NotLocked(String),
}
