//! Live sessions: the list (for watching one in the player), thumbnails and terminate; the
//! session lookup and reason checks the lock and resume operations share.

use super::auth::Principal;
use super::respond::{error, json, read_json, Resp};
use super::AdminState;
use crate::live::{LiveSession, StopError, StopRequest};
use hyper::body::Incoming;
use hyper::StatusCode;
use psmgate_policy::rbac::Permission;
use serde::Deserialize;
use serde_json::json;

/// Longest reason (of a terminate, lock or resume) kept.
const MAX_REASON: usize = 1000;

/// The running session `id` if `who` holds `perm` on its target; else the response to give
/// (404 or 403).
pub(super) fn permitted_session(
    state: &AdminState,
    who: &Principal,
    id: &str,
    perm: Permission,
) -> Result<LiveSession, Resp> {
    let session = state.store.live.get(id).ok_or_else(|| not_found(id))?;
    if !who.permits(&state.config(), perm, Some(&session.target)) {
        return Err(super::forbidden(perm, Some(&session.target)));
    }
    Ok(session)
}

/// 404: no live session `id`.
pub(super) fn not_found(id: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no live session {id}"),
    )
}

/// An operator's `reason`, trimmed: at most [`MAX_REASON`] characters, and not empty when
/// `required`; else the 400 to give.
pub(super) fn checked_reason(reason: &str, required: bool) -> Result<String, Resp> {
    let reason = reason.trim();
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

/// `GET /api/sessions/live`: running sessions on targets the caller may watch.
pub fn list(state: &AdminState, who: &Principal) -> Resp {
    let config = state.config();
    let sessions: Vec<_> = state
        .store
        .live
        .list()
        .into_iter()
        .filter(|s| who.permits(&config, Permission::WatchLive, Some(&s.target)))
        .map(|s| {
            let can_terminate = who.permits(&config, Permission::Terminate, Some(&s.target));
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("can_terminate".into(), can_terminate.into());
                // Lock and resume need the same permission as terminate.
                let locked = state.store.live.locked(&s.session_id);
                o.insert(
                    "locked".into(),
                    serde_json::to_value(locked).unwrap_or_default(),
                );
                o.insert(
                    "player".into(),
                    format!("/player/?id={}", s.session_id).into(),
                );
            }
            v
        })
        .collect();
    json(&json!({ "sessions": sessions }))
}

/// Thumbnail width in pixels.
const THUMBNAIL_WIDTH: u32 = 320;

/// `GET /api/sessions/live/{id}/thumbnail`: a small JPEG of the session's screen now, masked as
/// the recording is.
pub fn thumbnail(state: &AdminState, who: &Principal, id: &str) -> Resp {
    if let Err(r) = permitted_session(state, who, id, Permission::WatchLive) {
        return r;
    }
    let Some(t) = state.store.live.thumbnail(id, THUMBNAIL_WIDTH) else {
        return error(
            StatusCode::NOT_FOUND,
            "no_screen",
            "the session has no screen yet (or no video)",
        );
    };
    let mut jpeg = Vec::new();
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 70).encode(
        &t.rgb,
        t.width,
        t.height,
        image::ExtendedColorType::Rgb8,
    );
    match encoded {
        Ok(()) => super::respond::bytes("image/jpeg", jpeg),
        Err(e) => {
            tracing::error!(error = %e, "thumbnail encoding failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "thumbnail encoding failed",
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminateBody {
    reason: String,
}

/// `POST /api/sessions/live/{id}/terminate` `{"reason": "…"}`: ends the session; its recording
/// gets a `policy` event naming the caller and the reason, and is sealed.
pub async fn terminate(state: &AdminState, who: &Principal, id: &str, body: Incoming) -> Resp {
    if let Err(r) = permitted_session(state, who, id, Permission::Terminate) {
        return r;
    }
    let body: TerminateBody = match read_json(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reason = match checked_reason(&body.reason, true) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match state
        .store
        .live
        .stop(id, StopRequest::terminate(&who.name, &reason))
    {
        Ok(s) => {
            state.audit(
                &who.name,
                psmgate_storage::audit::ACTION_SESSION_TERMINATED,
                &s.target,
                &format!("session {} of {}: {reason}", s.session_id, s.user),
            );
            json(&json!({ "terminated": s.session_id, "reason": reason }))
        }
        Err(StopError::NotFound(_)) => not_found(id),
        Err(e @ StopError::AlreadyEnding(_)) => {
            error(StatusCode::CONFLICT, "already_ending", e.to_string())
        }
    }
}
