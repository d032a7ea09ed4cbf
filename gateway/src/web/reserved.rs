//! The reserved path on every intercepted origin (`/__psmgate/`): the recorder script and the
//! endpoint its batches go to. Answered by the proxy, never forwarded; a batch is masked again
//! here (the browser is not trusted) before it becomes a `dom` event.

use super::dom::{mask_batch, MaskRules};
use super::recorder::{self, RecorderConfig, EVENTS_PATH, SCRIPT_PATH};
use super::session::WebSession;
use super::{redact, WebGateway};
use http_body_util::BodyExt;
use hudsucker::hyper::body::Bytes;
use hudsucker::hyper::{header, Method, Request, Response, StatusCode};
use hudsucker::Body;
use psmgate_codecs::transcript::EventKind;
use psmgate_policy::WebDecision;
use std::sync::Arc;

/// Largest batch accepted (before parsing).
pub const MAX_BATCH: usize = 4 * 1024 * 1024;
/// How often the recorder sends queued events.
const FLUSH_MS: u64 = 1000;

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    super::pages::uncached(status, "text/plain; charset=utf-8", text.to_string())
}

/// A page id as psmgate issues them.
pub fn valid_page_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of query parameter `name`.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// Answers `req` (a path under the reserved prefix) for `session`.
pub async fn answer(
    gw: &WebGateway,
    session: &Arc<WebSession>,
    decision: &WebDecision,
    req: Request<Body>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, SCRIPT_PATH) => {
            let page = query_param(req.uri().query(), "page")
                .filter(|p| valid_page_id(p))
                .unwrap_or("")
                .to_string();
            let cfg = RecorderConfig {
                page,
                post: EVENTS_PATH,
                flush_ms: FLUSH_MS,
                heartbeat_ms: heartbeat_ms(gw),
                mask_selectors: decision.mask_selectors.join(", "),
                mask_patterns: decision.mask_patterns.clone(),
            };
            match recorder::script(&cfg) {
                Some(js) => {
                    let mut res = super::pages::uncached(
                        StatusCode::OK,
                        "text/javascript; charset=utf-8",
                        js,
                    );
                    res.headers_mut().insert(
                        "x-content-type-options",
                        header::HeaderValue::from_static("nosniff"),
                    );
                    res
                }
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "recorder not installed"),
            }
        }
        (&Method::POST, EVENTS_PATH) => events(gw, session, decision, req).await,
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The recorder's heartbeat: a third of the timeout, so two may be lost.
fn heartbeat_ms(gw: &WebGateway) -> u64 {
    (gw.config().web.heartbeat_timeout.as_millis() / 3).max(500)
}

async fn events(
    gw: &WebGateway,
    session: &Arc<WebSession>,
    decision: &WebDecision,
    req: Request<Body>,
) -> Response<Body> {
    let bytes = match read_batch(req.into_body()).await {
        Ok(b) => b,
        Err(status) => return plain(status, "batch too large or cut short"),
    };
    let rules = match MaskRules::new(&decision.mask_selectors, &decision.mask_patterns) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "web masking rules do not compile");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "masking rules unusable");
        }
    };
    // One batch of a session at a time, under the recorder watch's lock: a page's batches are
    // masked against its state in order (two at once would each see part of the page's nodes)
    // and stored in that order.
    let page_hint = peek_page(&bytes);
    let config = gw.config();
    let secret = |n: &str| config.web.field_is_redacted(n);
    let mut w = session.recorders();
    // Without a readable page id the batch is refused below (as malformed).
    if !page_hint.as_deref().is_none_or(|p| w.knows(p)) {
        drop(w);
        // Not a page this session's proxy served: a stray or forged batch.
        let _g = session.span.enter();
        tracing::warn!("a recorder batch for a page this session never served was refused");
        return plain(StatusCode::FORBIDDEN, "unknown page");
    }
    let mut state = page_hint
        .as_deref()
        .and_then(|p| w.states.remove(p))
        .unwrap_or_default();
    let masked = mask_batch(&bytes, &rules, &mut state);
    if let Some(p) = page_hint.clone() {
        w.states.insert(p, state);
    }
    let batch = match masked {
        Ok(b) if page_hint.as_deref() == Some(b.page.as_str()) => b,
        Ok(_) => return plain(StatusCode::BAD_REQUEST, "bad page id"),
        Err(e) => {
            drop(w);
            let _g = session.span.enter();
            tracing::warn!(error = %e, "a recorder batch was refused");
            return plain(StatusCode::BAD_REQUEST, "bad batch");
        }
    };
    let url = redact::url(&batch.url, &secret);
    if super::dom::has_user_input(&batch.events) {
        session.rec.note_input();
    }
    w.reported(&batch.page, batch.gone);
    let title_changed = w.title_changed(&batch.page, &batch.title);
    let mut result = Ok(());
    let mut video = None;
    if !batch.events.is_empty() {
        // The video shows exactly what the DOM recording holds: the same masked events.
        video = session.renders_video().then(|| batch.events.clone());
        result = session.event(EventKind::Dom {
            page: batch.page.clone(),
            seq: batch.seq,
            url: url.clone(),
            events: batch.events,
        });
    }
    if result.is_ok() && title_changed && !batch.title.is_empty() {
        result = session.event(EventKind::Title { title: batch.title });
    }
    drop(w);
    if let (Ok(()), Some(events)) = (&result, video) {
        session.feed_video(&batch.page, events);
    }
    match result {
        Ok(()) => plain(StatusCode::NO_CONTENT, ""),
        Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    }
}

/// Most of an oversized batch read (and dropped) before it is refused: the client gets its 413
/// instead of a reset connection while it is still sending. Beyond this, the connection closes.
const MAX_DRAIN: usize = 64 * 1024 * 1024;

/// A batch body of at most [`MAX_BATCH`] bytes.
async fn read_batch(mut body: Body) -> Result<Bytes, StatusCode> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(StatusCode::BAD_REQUEST);
        };
        if let Some(data) = frame.data_ref() {
            seen = seen.saturating_add(data.len());
            if seen <= MAX_BATCH {
                kept.extend_from_slice(data);
            } else if seen > MAX_DRAIN {
                break;
            }
        }
    }
    if seen > MAX_BATCH {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    Ok(Bytes::from(kept))
}

/// The `page` field of a batch, read without parsing the rest (the page's state is needed
/// before the batch is masked): the recorder writes it first. Anything else has no state yet.
fn peek_page(bytes: &[u8]) -> Option<String> {
    let rest = bytes.strip_prefix(br#"{"page":""#)?;
    let end = rest.iter().take(65).position(|&b| b == b'"')?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    valid_page_id(id).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ids_and_query_params() {
        assert!(valid_page_id("a1_B-2"));
        assert!(!valid_page_id(""));
        assert!(!valid_page_id("a/b"));
        assert!(!valid_page_id(&"x".repeat(65)));
        assert_eq!(query_param(Some("a=1&page=xy"), "page"), Some("xy"));
        assert_eq!(query_param(Some("pages=1"), "page"), None);
        assert_eq!(query_param(None, "page"), None);
    }

    #[test]
    fn the_page_is_read_before_masking() {
        assert_eq!(
            peek_page(br#"{"page":"p1","seq":0,"events":[]}"#).as_deref(),
            Some("p1")
        );
        assert_eq!(peek_page(b"nope"), None);
        assert_eq!(peek_page(br#"{"page":"a/b","seq":0}"#), None);
    }
}
