//! Lock and resume a live session's input (`POST /api/sessions/live/{id}/lock` and
//! `…/resume`): what a lock does in each protocol is described in `crate::live::LockRequest`'s
//! module. Both need the `terminate` permission on the session's target, are audited
//! ([`ACTION_SESSION_LOCKED`], [`ACTION_SESSION_RESUMED`]) and leave a `policy` event in the
//! session's transcript.

use super::auth::Principal;
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

/// Longest reason kept.
const MAX_REASON: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

/// `Ok` when session `id` runs and `who` holds `terminate` on its target; else the response to
/// give (404 or 403).
fn permitted(state: &AdminState, who: &Principal, id: &str) -> Result<(), Resp> {
    let Some(session) = state.store.live.get(id) else {
        return Err(not_found(id));
    };
    if !who.permits(
        &state.config(),
        Permission::Terminate,
        Some(&session.target),
    ) {
        return Err(super::forbidden(
            Permission::Terminate,
            Some(&session.target),
        ));
    }
    Ok(())
}

fn not_found(id: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no live session {id}"),
    )
}

/// A reason read from the body: trimmed, at most [`MAX_REASON`] characters, required when
/// `required`.
async fn reason(body: Incoming, required: bool) -> Result<String, Resp> {
    let body: ReasonBody = read_json(body).await?;
    let reason = body.reason.trim();
    if required && reason.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "reason_required",
            "a reason is required",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "reason_too_long",
            format!("the reason is limited to {MAX_REASON} characters"),
        ));
    }
    Ok(reason.to_owned())
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
    if let Err(r) = permitted(state, who, id) {
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
    if let Err(r) = permitted(state, who, id) {
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
