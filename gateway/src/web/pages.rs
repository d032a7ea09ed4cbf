//! The pages the proxy answers with itself: proxy sign-in required (407), blocked by policy
//! (403 naming the rule), upstream unreachable (502), session ended (403).

use hudsucker::hyper::{header, Response, StatusCode};
use hudsucker::Body;

/// Header naming the policy rule behind a gateway answer.
pub const RULE_HEADER: &str = "x-psmgate-rule";

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn page(status: StatusCode, title: &str, body_html: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
         <h1>{t}</h1>{body_html}<hr><p><small>psmgate web gateway</small></p></body></html>",
        t = escape(title)
    );
    uncached(status, "text/html; charset=utf-8", html)
}

/// A response psmgate makes itself: `content_type`, never cached.
pub fn uncached(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

/// 407: the browser must sign in to the proxy (`user@target` and the access token).
pub fn proxy_auth_required(reason: &str) -> Response<Body> {
    let mut res = page(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "Sign in to psmgate",
        &format!(
            "<p>This proxy records privileged web sessions. Sign in with <b>user@target</b> and \
             the access token from <code>psmgate access grant</code>.</p><p>{}</p>",
            escape(reason)
        ),
    );
    res.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"psmgate\", charset=\"UTF-8\""),
    );
    res
}

/// 403: policy denies this host.
pub fn blocked(rule: &str, host: &str, user: &str) -> Response<Body> {
    let mut res = page(
        StatusCode::FORBIDDEN,
        "Blocked by psmgate policy",
        &format!(
            "<p>Access to <b>{}</b> is not allowed for <b>{}</b>.</p>\
             <p>Rule: <code id=\"psmgate-rule\">{}</code></p>",
            escape(host),
            escape(user),
            escape(rule)
        ),
    );
    if let Ok(v) = header::HeaderValue::from_str(rule) {
        res.headers_mut().insert(RULE_HEADER, v);
    }
    res
}

/// 403: an operator locked the session (rule `lock` in the rule header); the page names who
/// and why, and reloading it works again once the session is resumed.
pub fn locked(lock: &crate::live::LockRequest, host: &str) -> Response<Body> {
    let mut res = page(
        StatusCode::FORBIDDEN,
        "Session locked by an operator",
        &format!(
            "<p>Requests to <b>{}</b> are held back: <b>{}</b> locked this session.</p>\
             <p>Reason: {}</p><p>Reload the page once the session is resumed.</p>\
             <p>Rule: <code id=\"psmgate-rule\">{}</code></p>",
            escape(host),
            escape(&lock.actor),
            escape(&lock.reason),
            crate::live::LOCK_RULE
        ),
    );
    res.headers_mut().insert(
        RULE_HEADER,
        header::HeaderValue::from_static(crate::live::LOCK_RULE),
    );
    res
}

/// 403: the session cannot go on (its recording failed).
pub fn session_ended(reason: &str) -> Response<Body> {
    page(
        StatusCode::FORBIDDEN,
        "Session ended by psmgate",
        &format!("<p>{}</p>", escape(reason)),
    )
}

/// 502: the web server could not be reached.
pub fn upstream_failed(host: &str, reason: &str) -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        "psmgate could not reach the server",
        &format!("<p><b>{}</b>: {}</p>", escape(host), escape(reason)),
    )
}

/// 400: the request could not be handled.
pub fn bad_request(reason: &str) -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        &format!("<p>{}</p>", escape(reason)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let r = blocked("rule-1", "<script>x</script>", "bob");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[RULE_HEADER], "rule-1");
        let r = proxy_auth_required("no proxy credentials");
        assert_eq!(r.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert!(r.headers()[header::PROXY_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
