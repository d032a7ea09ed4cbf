//! The admin listener: the web player and the recordings API over HTTPS.
//!
//! Routes (all but `/healthz`, `/login` and the player's static files need the admin token, as
//! `Authorization: Bearer <token>` or the `psmgate_token` cookie that `/login?token=…` sets):
//! - `GET /` — recordings list page
//! - `GET /player/…` — the static player (`/player/?id=<session-id>`)
//! - `GET /api/recordings` — index rows as JSON
//! - `GET /api/recordings/<id>/manifest` — the manifest (the partial one while recording)
//! - `GET /api/recordings/<id>/files/<path>` — raw recording files, with single-range support
//!   (a range from the end of a growing file on answers 416 with the current length)
//! - `GET /api/recordings/<id>/verify` — a verification report
//! - `GET /healthz`

use crate::store::Store;
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use psmgate_storage::index::ListFilter;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

type Resp = Response<Full<Bytes>>;

/// Shared state of the admin server.
#[derive(Debug)]
pub struct AdminState {
    /// Data store.
    pub store: Store,
    /// Admin bearer token.
    pub token: String,
}

/// Serves until `shutdown` resolves. With `tls`, connections are TLS.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut shutdown = shutdown;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r.context("accepting admin connection")?,
            _ = shutdown.changed() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req, peer).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let result = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(tls) => builder.serve_connection(TokioIo::new(tls), svc).await,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "admin TLS handshake failed");
                        return;
                    }
                },
                None => builder.serve_connection(TokioIo::new(tcp), svc).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(value: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bytes(content_type: &'static str, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn authorized(state: &AdminState, req: &Request<Incoming>) -> bool {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| c.trim().strip_prefix("psmgate_token=").map(str::to_string))
        });
    presented.is_some_and(|p| constant_time_eq(p.as_bytes(), state.token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

async fn handle(state: &Arc<AdminState>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let mut resp = route(state, &req, &path, &query, peer).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn route(
    state: &Arc<AdminState>,
    req: &Request<Incoming>,
    path: &str,
    query: &str,
    peer: SocketAddr,
) -> Resp {
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if path == "/login" {
        let token = query_param(query, "token").unwrap_or("");
        if !constant_time_eq(token.as_bytes(), state.token.as_bytes()) {
            tracing::warn!(%peer, "admin login with a wrong token");
            return text(StatusCode::UNAUTHORIZED, "wrong token\n");
        }
        let next = query_param(query, "next")
            .filter(|n| n.starts_with('/') && !n.starts_with("//"))
            .unwrap_or("/");
        let mut r = text(StatusCode::SEE_OTHER, "");
        let cookie = format!(
            "psmgate_token={}; Path=/; HttpOnly; Secure; SameSite=Strict",
            state.token
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&percent_decode(next)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    if path == "/player" {
        let mut r = text(StatusCode::MOVED_PERMANENTLY, "");
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/player/"));
        return r;
    }
    if let Some(rel) = path.strip_prefix("/player/") {
        let rel = if rel.is_empty() { "index.html" } else { rel };
        return match crate::assets::player_file(rel) {
            Some(b) => bytes(crate::assets::content_type(rel), b.to_vec()),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    if !authorized(state, req) {
        return text(StatusCode::UNAUTHORIZED, "admin token required: open the URL `psmgate serve` printed, or send Authorization: Bearer <token>\n");
    }
    let store = state.store.clone();
    let path = path.to_string();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Storage and index calls block: keep them off the async workers.
    tokio::task::spawn_blocking(move || api(&store, &path, range.as_deref()))
        .await
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn api(store: &Store, path: &str, range: Option<&str>) -> Resp {
    if path == "/" {
        return list_page(store);
    }
    if path == "/api/recordings" {
        return match store.index.list(&ListFilter {
            limit: Some(500),
            ..Default::default()
        }) {
            Ok(rows) => json(&serde_json::Value::Array(
                rows.iter().map(crate::report::row_json).collect(),
            )),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("index error: {e}\n"),
            ),
        };
    }
    let Some(rest) = path.strip_prefix("/api/recordings/") else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let dir = match store.resolve_recording(id) {
        Ok(d) => d,
        Err(_) => return text(StatusCode::NOT_FOUND, "no such recording\n"),
    };
    let backend = store.backend.as_ref();
    match tail {
        "manifest" => {
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn list_page(store: &Store) -> Resp {
    let rows = store
        .index
        .list(&ListFilter {
            limit: Some(200),
            ..Default::default()
        })
        .unwrap_or_default();
    let mut body = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>psmgate recordings</title>\
         <link rel=stylesheet href=/player/player.css></head><body class=list-page><main>\
         <h1>Recordings</h1><table><thead><tr><th>Started (UTC)</th><th>User</th><th>Target</th>\
         <th>Protocol</th><th>Duration</th><th>State</th><th>Integrity</th></tr></thead><tbody>",
    );
    for r in rows {
        body.push_str(&format!(
            "<tr><td><a href=\"/player/?id={id}\">{started}</a></td><td>{user}</td><td>{target}</td><td>{proto}</td><td>{dur}</td><td>{state}</td><td>{integ}</td></tr>",
            id = html_escape(&r.id),
            started = html_escape(&crate::report::rfc3339(r.started_at)),
            user = html_escape(&r.user),
            target = html_escape(&r.target),
            proto = html_escape(&r.protocol),
            dur = r.duration_ms.map(|d| format!("{:.1} s", d as f64 / 1000.0)).unwrap_or_default(),
            state = html_escape(r.state.as_str()),
            integ = html_escape(r.integrity.status.as_str()),
        ));
    }
    body.push_str("</tbody></table></main></body></html>");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn token_compare_and_decode() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(percent_decode("/player/%3Fid%3D1"), "/player/?id=1");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
