//! Lock and resume a live session's input (`POST /api/sessions/live/{id}/lock` and
//! `…/resume`): what a lock does in each protocol is described in `crate::live::LockRequest`'s
//! module. Both need the `terminate` permission on the session's target, are audited
//! ([`ACTION_SESSION_LOCKED`], [`ACTION_SESSION_RESUMED`]) and leave a `policy` event in the
//! session's transcript.

use super::auth::Principal;
use super::live_api::{checked_reason, not_found, permitted_session};
use super::respond::{error, json, read_json, Resp};
use super::AdminState;
use crate::live::{LockError, LockRequest};
use hyper::body::Incoming;
use hyper::StatusCode;
use psmgate_policy::rbac::Permission;
use serde::Deserialize;
use serde_json::json;

/// Audit action: an operator locked a live session's input.
pub const ACTION_SESSION_LOCKED: &str = "session_locked";
/// Audit action: an operator lifted the lock on a live session's input.
pub const ACTION_SESSION_RESUMED: &str = "session_resumed";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

/// The reason in the body, checked (required when `required`).
async fn reason(body: Incoming, required: bool) -> Result<String, Resp> {
    let body: ReasonBody = read_json(body).await?;
    checked_reason(&body.reason, required)
}

fn refused(e: LockError) -> Resp {
    match e {
        LockError::NotFound(id) => not_found(&id),
        e @ LockError::Ending(_) => error(StatusCode::CONFLICT, "already_ending", e.to_string()),
        e @ LockError::AlreadyLocked(_) => {
            error(StatusCode::CONFLICT, "already_locked", e.to_string())
        }
        e @ LockError::NotLocked(_) => error(StatusCode::CONFLICT, "not_locked", e.to_string()),
    }
}

/// `POST /api/sessions/live/{id}/lock` `{"reason": "…"}`: holds the user's input back until
/// the session is resumed.
pub async fn lock(state: &AdminState, who: &Principal, id: &str, body: Incoming) -> Resp {
    if let Err(r) = permitted_session(state, who, id, Permission::Terminate) {
        return r;
    }
    let reason = match reason(body, true).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state
        .store
        .live
        .lock_input(id, LockRequest::new(&who.name, &reason))
    {
        Ok(s) => {
            state.audit(
                &who.name,
                ACTION_SESSION_LOCKED,
                &s.target,
                &format!("session {} of {}: {reason}", s.session_id, s.user),
            );
            json(&json!({ "locked": s.session_id, "reason": reason }))
        }
        Err(e) => refused(e),
    }
}

/// `POST /api/sessions/live/{id}/resume` (optional `{"reason": "…"}`): lets the user's input
/// through again.
pub async fn resume(state: &AdminState, who: &Principal, id: &str, body: Incoming) -> Resp {
    if let Err(r) = permitted_session(state, who, id, Permission::Terminate) {
        return r;
    }
    let reason = match reason(body, false).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state.store.live.resume(id, &who.name) {
        Ok((s, held)) => {
            let mut detail = format!(
                "session {} of {}: locked by {} since {}",
                s.session_id,
                s.user,
                held.actor,
                held.at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            );
            if !reason.is_empty() {
                detail.push_str(&format!("; {reason}"));
            }
            state.audit(&who.name, ACTION_SESSION_RESUMED, &s.target, &detail);
            json(&json!({ "resumed": s.session_id }))
        }
        Err(e) => refused(e),
    }
}
