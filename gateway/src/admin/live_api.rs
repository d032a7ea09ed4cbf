//! Live sessions: the list (for watching one in the player) and terminate.

use super::auth::Principal;
use super::respond::{error, json, read_json, Resp};
use super::AdminState;
use crate::live::{StopError, StopRequest};
use hyper::body::Incoming;
use hyper::StatusCode;
use psmgate_policy::rbac::Permission;
use serde::Deserialize;
use serde_json::json;

/// Longest termination reason kept.
const MAX_REASON: usize = 1000;

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
    let Some(session) = state.store.live.get(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live session {id}"),
        );
    };
    let config = state.config();
    if !who.permits(&config, Permission::WatchLive, Some(&session.target)) {
        return super::forbidden(Permission::WatchLive, Some(&session.target));
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
    let Some(session) = state.store.live.get(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live session {id}"),
        );
    };
    let config = state.config();
    if !who.permits(&config, Permission::Terminate, Some(&session.target)) {
        return super::forbidden(Permission::Terminate, Some(&session.target));
    }
    let body: TerminateBody = match read_json(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reason = body.reason.trim();
    if reason.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "reason_required",
            "a reason is required",
        );
    }
    if reason.chars().count() > MAX_REASON {
        return error(
            StatusCode::BAD_REQUEST,
            "reason_too_long",
            format!("the reason is limited to {MAX_REASON} characters"),
        );
    }
    match state
        .store
        .live
        .stop(id, StopRequest::terminate(&who.name, reason))
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
        Err(StopError::NotFound(_)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live session {id}"),
        ),
        Err(e @ StopError::AlreadyEnding(_)) => {
            error(StatusCode::CONFLICT, "already_ending", e.to_string())
        }
    }
}
