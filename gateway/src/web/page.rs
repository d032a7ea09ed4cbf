//! Intercepted HTML documents get the in-page recorder: the body is decompressed (gzip, deflate,
//! brotli, zstd), a `<script>` loading [`super::recorder::SCRIPT_PATH`] is inserted as it streams
//! through ([`super::inject::Injector`]), and each Content-Security-Policy, in the headers and in
//! the page's `<meta http-equiv>` elements, is rewritten to admit exactly that script and the
//! recorder's endpoint ([`super::csp`]).

use super::csp;
use super::inject::{charset_allows_injection, Injector};
use super::recorder::{EVENTS_PATH, SCRIPT_PATH};
use base64::Engine as _;
use http_body_util::combinators::BoxBody;
use hudsucker::hyper::body::{Bytes, Frame, SizeHint};
use hudsucker::hyper::{header, Response};
use hudsucker::Body;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How far into a document the `<head>` is looked for.
const SCAN_LIMIT: usize = 64 * 1024;

/// Whether a response is an HTML document psmgate puts its recorder into.
pub fn is_html(res: &Response<Body>) -> bool {
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    res.status().is_success()
        && res.status() != hudsucker::hyper::StatusCode::NO_CONTENT
        && (ct.starts_with("text/html") || ct.starts_with("application/xhtml+xml"))
}

/// Why a document could not get the recorder.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// Unknown content encoding.
    #[error("the page's content encoding cannot be decoded")]
    Encoding,
    /// UTF-16/32 documents.
    #[error("the page's character set does not allow the recorder to be inserted")]
    Charset,
}

/// A new page id.
pub fn new_page_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Rewrites `res` (an HTML document from `origin`, e.g. `https://host:port`) to load the
/// recorder as page `page`.
pub fn inject(
    res: Response<Body>,
    origin: &str,
    page: &str,
) -> Result<Response<Body>, InjectError> {
    let res = hudsucker::decode_response(res).map_err(|_| InjectError::Encoding)?;
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !charset_allows_injection(ct.as_deref(), &[]) {
        return Err(InjectError::Charset);
    }
    let nonce = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let script_url = format!("{origin}{SCRIPT_PATH}");
    let post_url = format!("{origin}{EVENTS_PATH}");
    let admit = csp::Admit {
        script_url: &script_url,
        post_url: &post_url,
        nonce: &nonce,
    };
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    // The body changes: validators of the original no longer describe it. And an injected page
    // is never cached, so every load comes through the proxy and gets a page id of its session.
    parts.headers.remove(header::ETAG);
    parts.headers.remove(header::LAST_MODIFIED);
    parts.headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    for name in [
        "content-security-policy",
        "content-security-policy-report-only",
    ] {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        if values.is_empty() {
            continue;
        }
        parts.headers.remove(name);
        for v in values {
            // psmgate's own URLs are always valid sources; were they not, the page keeps its
            // policy, the recorder stays out and the heartbeat check ends the session.
            let rewritten = csp::admit(&v, &admit).unwrap_or(v);
            if let Ok(hv) = header::HeaderValue::from_str(&rewritten) {
                parts.headers.append(name, hv);
            }
        }
    }
    let tag = format!("<script src=\"{SCRIPT_PATH}?page={page}\" nonce=\"{nonce}\"></script>");
    let mut injector = Injector::new(tag.into_bytes(), SCAN_LIMIT);
    // The page's own <meta> policies admit the same script and endpoint, by the same nonce.
    if let Ok(meta) = csp::MetaRewriter::new(&admit, csp::META_TAG_LIMIT) {
        injector = injector.with_meta_csp(meta);
    }
    let body = Body::from(BoxBody::new(Injecting {
        inner: body,
        injector,
        origin: origin.to_string(),
        page: page.to_string(),
        done: false,
    }));
    Ok(Response::from_parts(parts, body))
}

/// A body passed through an [`Injector`].
struct Injecting {
    inner: Body,
    injector: Injector,
    /// The document's origin and page id, for the log.
    origin: String,
    page: String,
    done: bool,
}

impl Injecting {
    /// Logs the `<meta>` policies that were left as written: if one blocks the recorder, the
    /// heartbeat check ends the session.
    fn warn_meta_skips(&mut self) {
        for skip in self.injector.take_meta_skips() {
            tracing::warn!(
                origin = %self.origin,
                page = %self.page,
                reason = %skip,
                "a <meta> element was left as the page wrote it; if it sets a policy that blocks the recorder, the heartbeat check ends the session"
            );
        }
    }
}

impl hudsucker::hyper::body::Body for Injecting {
    type Data = Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hudsucker::Error>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers are dropped (the body was rewritten).
                        continue;
                    };
                    let out = self.injector.feed(&data);
                    self.warn_meta_skips();
                    // Never an empty chunk: in chunked encoding it would end the body.
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    let out = self.injector.finish();
                    self.warn_meta_skips();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
