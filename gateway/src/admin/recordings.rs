//! Recordings: the index list, manifests, verification and raw files (with ranges), each for
//! principals holding `view_recordings` on the recording's target; the audit log page; and the
//! break-glass `/login?token=` cookie.

use super::auth::{Principal, PrincipalKind};
use super::respond::{bytes, constant_time_eq, error, json, query_param, text, Resp};
use super::AdminState;
use hyper::header::{self, HeaderValue};
use hyper::StatusCode;
use psmgate_policy::rbac::Permission;
use psmgate_policy::Config;
use psmgate_storage::index::ListFilter;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The targets whose recordings `who` may be shown as holder of `perm`, as the index filters
/// them ([`ListFilter::allowed_targets`]): `None` (every recording, also those of targets no
/// longer configured) for the break-glass admin token, which holds every permission on
/// everything; for a signed-in user, the configured targets on which its roles grant `perm`
/// (an unscoped role: every configured target; a role scoped to a group: that group's
/// targets), exactly those for which [`Principal::permits`] holds.
pub(super) fn allowed_targets(
    who: &Principal,
    config: &Config,
    perm: Permission,
) -> Option<BTreeSet<String>> {
    if matches!(who.kind, PrincipalKind::AdminToken) {
        None
    } else {
        Some(who.targets_with(config, perm).into_iter().collect())
    }
}

/// `GET /login?token=<admin token>[&next=/path]`: sets the admin-token cookie and redirects.
pub fn token_login(state: &AdminState, query: &str, peer: SocketAddr) -> Resp {
    let token = query_param(query, "token").unwrap_or_default();
    if !constant_time_eq(token.as_bytes(), state.token.as_bytes()) {
        tracing::warn!(%peer, "admin login with a wrong token");
        return text(StatusCode::UNAUTHORIZED, "wrong token\n");
    }
    let next = query_param(query, "next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/ui/".to_owned());
    let mut r = super::respond::see_other(&next);
    let cookie = format!(
        "psmgate_token={}; Path=/; HttpOnly; Secure; SameSite=Strict",
        state.token
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /api/audit[?offset=N&limit=M | ?tail=N]`: audit log entries, newest last (`tail`: the
/// newest N), and the chain's check.
pub fn audit_page(state: &AdminState, query: &str) -> Resp {
    let offset = query_param(query, "offset")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let limit = query_param(query, "limit")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(200)
        .clamp(1, 1000);
    let backend = state.store.backend.as_ref();
    // `tail=N`: the newest N entries (read from the end of the log), whatever `offset` says.
    let tail = query_param(query, "tail")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n.clamp(1, 1000) as usize);
    let read = match tail {
        Some(n) => state.store.audit.read_tail(n),
        None => state.store.audit.read_page(offset, limit as usize),
    };
    let page = match read {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "reading the audit log failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not read the audit log",
            );
        }
    };
    let check = match psmgate_storage::audit::verify_audit_with_key(
        backend,
        state.store.key.verifying_key(),
    ) {
        Ok(s) => serde_json::json!({ "ok": true, "entries": s.entries, "unsigned": s.unsigned }),
        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
    };
    json(&serde_json::json!({ "entries": page.entries, "total": page.total, "integrity": check }))
}

/// The recordings operations (`listRecordings`, `getManifest`, `verifyRecording`,
/// `getRecordingFile`).
pub fn handle(
    state: &AdminState,
    who: &Principal,
    op: &str,
    params: &[String],
    query: &str,
    range: Option<&str>,
) -> Resp {
    let config = state.config();
    let store = &state.store;
    if op == "listRecordings" {
        let mut filter = match list_filter(query) {
            Ok(f) => f,
            Err(bad) => return bad,
        };
        // The index leaves other targets out before it counts the page: pages are full and
        // offsets count only what the caller may see.
        filter.allowed_targets = allowed_targets(who, &config, Permission::ViewRecordings);
        let allowed = filter.allowed_targets.as_ref();
        return match store.index.list(&filter) {
            Ok(rows) => json(&serde_json::Value::Array(
                rows.iter()
                    // Never list another target's recording, whatever an index returns.
                    .filter(|r| allowed.is_none_or(|a| a.contains(&r.target)))
                    .map(crate::report::row_json)
                    .collect(),
            )),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("index error: {e}\n"),
            ),
        };
    }
    let id = params.first().map(String::as_str).unwrap_or("");
    let target = match store.index.get(id) {
        Ok(Some(row)) => Some(row.target),
        _ => None,
    };
    let permitted = match &target {
        Some(t) => who.permits(&config, Permission::ViewRecordings, Some(t)),
        // Recordings missing from the index are for the break-glass token only.
        None => matches!(who.kind, super::auth::PrincipalKind::AdminToken),
    };
    if !permitted {
        return match target {
            Some(t) => super::forbidden(Permission::ViewRecordings, Some(&t)),
            None => text(StatusCode::NOT_FOUND, "no such recording\n"),
        };
    }
    let file = params.get(1).map(String::as_str).unwrap_or("");
    if op == "getRecordingFile" && file == "chain.jsonl" {
        // How the player follows a recording in progress: a live viewer, and with `wait` the read
        // waits for new chain lines (see recording::viewers).
        let wait = query_param(query, "wait");
        crate::recording::viewers::follow_chain(store, id, range, wait.as_deref());
    }
    let tail = match op {
        "getManifest" => "manifest".to_owned(),
        "verifyRecording" => "verify".to_owned(),
        _ => format!("files/{file}"),
    };
    let resp = recording(store, id, &tail, range);
    if resp.status().is_success() {
        // Time to replay: from a principal's manifest request to its first media segment.
        let now = std::time::Instant::now();
        match op {
            "getManifest" => super::dashboard::replays().manifest(&who.name, id, now),
            "getRecordingFile" if super::dashboard::is_media_segment(file) => {
                super::dashboard::replays().segment(&who.name, id, now)
            }
            _ => {}
        }
    }
    resp
}

/// Longest `q` of `listRecordings`, in bytes.
const MAX_QUERY_TEXT: usize = 1000;

/// The index filter of a `listRecordings` query (`q`, `user`, `target`, `protocol`, `since`,
/// `until`, `limit`, `offset`; empty values do not filter), or the 400 response naming the
/// parameter that is wrong.
fn list_filter(query: &str) -> Result<ListFilter, Resp> {
    let bad = |name: &str, what: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            format!("{name}: {what}"),
        )
    };
    let value = |name: &str| {
        query_param(query, name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let number = |name: &str| -> Result<Option<u32>, Resp> {
        value(name)
            .map(|v| v.parse::<u32>())
            .transpose()
            .map_err(|_| bad(name, "expected a whole number"))
    };
    let time = |name: &str| -> Result<Option<time::OffsetDateTime>, Resp> {
        value(name)
            .map(|v| {
                time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
            })
            .transpose()
            .map_err(|_| {
                bad(
                    name,
                    "expected an RFC 3339 time such as 2026-11-22T10:00:00Z",
                )
            })
    };
    let text = value("q");
    if text.as_ref().is_some_and(|q| q.len() > MAX_QUERY_TEXT) {
        return Err(bad(
            "q",
            &format!("at most {MAX_QUERY_TEXT} bytes of search text"),
        ));
    }
    let (since, until) = (time("since")?, time("until")?);
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(bad("until", "must be later than since"));
        }
    }
    Ok(ListFilter {
        text,
        user: value("user"),
        target: value("target"),
        protocol: value("protocol"),
        since,
        until,
        limit: Some(number("limit")?.unwrap_or(500).clamp(1, 5000)),
        offset: number("offset")?,
        ..Default::default()
    })
}

fn recording(store: &crate::store::Store, id: &str, tail: &str, range: Option<&str>) -> Resp {
    let dir = match store.resolve_recording(id) {
        Ok(d) => d,
        Err(_) => return text(StatusCode::NOT_FOUND, "no such recording\n"),
    };
    let backend = store.backend.as_ref();
    match tail {
        "manifest" => {
            crate::metrics::global().replay_requests.inc();
            for name in ["manifest.json", "manifest.partial.json"] {
                if let Ok(b) = backend.read(&format!("{dir}/{name}")) {
                    return bytes("application/json", b);
                }
            }
            text(StatusCode::NOT_FOUND, "no manifest\n")
        }
        "verify" => {
            let report = psmgate_storage::verify::verify(
                backend,
                &dir,
                Some(store.key.verifying_key()),
                &mut |_, _| {},
            );
            json(&crate::report::verify_json(&report))
        }
        t if t.starts_with("files/") => {
            let rel = &t["files/".len()..];
            if psmgate_storage::backend::validate_path(rel, false).is_err() {
                return text(StatusCode::BAD_REQUEST, "bad path\n");
            }
            let full = format!("{dir}/{rel}");
            let len = match backend.len(&full) {
                Ok(Some(l)) => l,
                _ => return text(StatusCode::NOT_FOUND, "no such file\n"),
            };
            let ct = crate::assets::content_type(rel);
            if range.is_some_and(|r| range_past_end(r, len)) {
                // A reader following a growing file asks from what it has: nothing new yet.
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            match range.and_then(|r| parse_range(r, len)) {
                Some((start, end)) => match backend.read_range(&full, start, end - start) {
                    Ok(b) => {
                        let mut r = bytes(ct, b);
                        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                        if let Ok(v) =
                            HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
                        {
                            r.headers_mut().insert(header::CONTENT_RANGE, v);
                        }
                        r
                    }
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("read failed: {e}\n"),
                    ),
                },
                None => match backend.read(&full) {
                    Ok(b) => {
                        let mut r = bytes(ct, b);
                        r.headers_mut()
                            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                        r
                    }
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("read failed: {e}\n"),
                    ),
                },
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range into `[start, end)`.
fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (len.saturating_sub(n), len)
    } else {
        let s: u64 = a.parse().ok()?;
        let e = if b.is_empty() {
            len
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(len)
        };
        (s, e)
    };
    (start < end).then_some((start, end))
}

/// Whether `h` is a single `bytes=` range that starts at or past the end of a `len`-byte file
/// (or asks for the last 0 bytes): answered with 416 and `Content-Range: bytes */<len>`, so a
/// reader polling a file that grows (a recording in progress) learns cheaply that nothing is new.
/// Malformed and multi-range headers are not unsatisfiable: they are ignored (whole file).
fn range_past_end(h: &str, len: u64) -> bool {
    let Some(spec) = h.strip_prefix("bytes=") else {
        return false;
    };
    if spec.contains(',') {
        return false;
    }
    match spec.split_once('-') {
        Some(("", n)) => n.parse::<u64>().is_ok_and(|n| n == 0 || len == 0),
        Some((a, b)) => a
            .parse::<u64>()
            .is_ok_and(|s| s >= len && (b.is_empty() || b.parse::<u64>().is_ok_and(|e| e >= s))),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(query: &str) -> serde_json::Value {
        let r = list_filter(query).expect_err(query);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: serde_json::Value =
            serde_json::from_slice(&super::super::respond::body_bytes(r)).unwrap();
        assert_eq!(body["error"], "bad_parameter", "{query}: {body}");
        body
    }

    #[test]
    fn list_queries_become_index_filters() {
        let f = list_filter(
            "q=systemctl+ngi&user=alice&target=lab-vnc&protocol=vnc\
             &since=2026-11-22T10:00:00Z&until=2026-11-23T00:00:00%2B01:00&limit=20&offset=40",
        )
        .unwrap();
        assert_eq!(f.text.as_deref(), Some("systemctl ngi"));
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.target.as_deref(), Some("lab-vnc"));
        assert_eq!(f.protocol.as_deref(), Some("vnc"));
        assert_eq!(f.since, Some(time::macros::datetime!(2026-11-22 10:00 UTC)));
        assert_eq!(f.until, Some(time::macros::datetime!(2026-11-22 23:00 UTC)));
        assert_eq!((f.limit, f.offset), (Some(20), Some(40)));

        // Empty values do not filter; the limit has a default and bounds.
        let f = list_filter("q=+&user=&since=&limit=").unwrap();
        assert_eq!(
            f,
            ListFilter {
                limit: Some(500),
                ..Default::default()
            }
        );
        assert_eq!(list_filter("limit=0").unwrap().limit, Some(1));
        assert_eq!(list_filter("limit=999999").unwrap().limit, Some(5000));
    }

    #[test]
    fn bad_list_parameters_are_named_in_a_400() {
        let body = rejected("since=yesterday");
        assert!(
            body["message"].as_str().unwrap().starts_with("since:"),
            "{body}"
        );
        rejected("until=2026-11-22");
        rejected("since=2026-11-23T00:00:00Z&until=2026-11-22T00:00:00Z");
        rejected("limit=ten");
        rejected("offset=-1");
        let body = rejected(&format!("q={}", "a".repeat(MAX_QUERY_TEXT + 1)));
        assert!(
            body["message"].as_str().unwrap().starts_with("q:"),
            "{body}"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 1000)));
        assert_eq!(parse_range("bytes=-10", 1000), Some((990, 1000)));
        assert_eq!(parse_range("bytes=0-5000", 1000), Some((0, 1000)));
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }

    #[test]
    fn ranges_past_the_end() {
        assert!(range_past_end("bytes=1000-", 1000));
        assert!(range_past_end("bytes=1200-1300", 1000));
        assert!(range_past_end("bytes=0-", 0));
        assert!(range_past_end("bytes=-0", 1000));
        assert!(!range_past_end("bytes=999-", 1000));
        assert!(!range_past_end("bytes=0-99", 1000));
        assert!(!range_past_end("bytes=-10", 1000));
        assert!(!range_past_end("bytes=1300-1200", 1000));
        assert!(!range_past_end("bytes=1000-,0-1", 1000));
        assert!(!range_past_end("items=1000-", 1000));
        assert!(!range_past_end("bytes=x-", 1000));
        // a range that is not past the end is still served by parse_range
        assert_eq!(parse_range("bytes=999-", 1000), Some((999, 1000)));
    }
}
