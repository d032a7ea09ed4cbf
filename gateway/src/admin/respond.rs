//! Building responses and reading requests: the small pieces every admin route shares.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Every admin response.
pub type Resp = Response<Full<Bytes>>;

/// Largest JSON request body accepted.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response with status 200.
pub fn json(value: &serde_json::Value) -> Resp {
    json_status(StatusCode::OK, value)
}

/// A JSON response.
pub fn json_status(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An API error: `{"error": "<code>", "message": "<words>"}` with `status`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json_status(status, &json!({ "error": code, "message": message.into() }))
}

/// A response with the given body and content type.
pub fn bytes(content_type: &'static str, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A redirect (303) to `location`.
pub fn see_other(location: &str) -> Resp {
    let mut r = text(StatusCode::SEE_OTHER, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Reads a JSON request body of at most [`MAX_JSON_BODY`] bytes into `T`; the error response
/// says what was wrong (400 or 413).
pub async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, Resp> {
    let collected = Limited::new(body, MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request bodies are limited to {MAX_JSON_BODY} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "could not read the request body",
                )
            }
        })?;
    let raw = collected.to_bytes();
    let raw: &[u8] = if raw.is_empty() { b"{}" } else { &raw };
    serde_json::from_slice(raw).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("invalid JSON body: {e}"),
        )
    })
}

/// The value of query parameter `name` (percent-decoded; `+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// `s` with every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// percent-encoded: safe in a URL's path, query or form body.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones stay as they are; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
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

/// Escapes text for HTML element content and quoted attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The whole body of `r`, for tests of handlers.
#[cfg(test)]
pub fn body_bytes(r: Resp) -> Bytes {
    use http_body_util::BodyExt;
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(r.into_body().collect())
        .unwrap()
        .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(percent_decode("/player/%3Fid%3D1"), "/player/?id=1");
        assert_eq!(
            percent_encode("0b6e2c1a-77f0-4b1e-9d59-1c3c2f0c9e11"),
            "0b6e2c1a-77f0-4b1e-9d59-1c3c2f0c9e11"
        );
        assert_eq!(percent_encode("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_decode(&percent_encode("a b/é~")), "a b/é~");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(query_param("a=1&b=x+y%21", "b").as_deref(), Some("x y!"));
        assert_eq!(query_param("a", "a").as_deref(), Some(""));
        assert_eq!(query_param("ab=1", "a"), None);
        assert_eq!(
            html_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
