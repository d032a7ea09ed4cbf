//! What of an HTTP exchange may be recorded: secret-bearing headers, URL query values and
//! request body fields are replaced by [`REDACTED`] before anything becomes an event. Bodies
//! are recorded only as URL-encoded forms or JSON, where fields have names; any other body is
//! recorded as its size and type.
//!
//! Pure functions over bytes: no I/O, never panic, whatever the input.

use hudsucker::hyper::HeaderMap;

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Headers as `[name, value]` pairs (names lowercase, in order), values of `redacted` names
/// (lowercase) replaced. Values that are not UTF-8 are recorded as their size.
pub fn headers(map: &HeaderMap, redacted: &[String]) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let value = if redacted.contains(&name) {
                REDACTED.to_string()
            } else {
                match value.to_str() {
                    Ok(v) => v.to_string(),
                    Err(_) => format!("[{} bytes]", value.len()),
                }
            };
            (name, value)
        })
        .collect()
}

/// `url` with credentials in the authority removed and the values of secret query parameters
/// replaced. `secret` says whether a (decoded) field name is secret.
pub fn url(url: &str, secret: &dyn Fn(&str) -> bool) -> String {
    let (without_fragment, fragment) = match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    };
    let (base, query) = match without_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (without_fragment, None),
    };
    let mut out = strip_userinfo(base);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&form(q, secret));
    }
    if let Some(f) = fragment {
        // Fragments never reach servers, but single-page apps put tokens there.
        out.push('#');
        out.push_str(&form(f, secret));
    }
    out
}

/// `scheme://user:pass@host/…` → `scheme://host/…`.
fn strip_userinfo(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// An `a=1&b=2` string with secret values replaced; everything else kept as written.
pub fn form(text: &str, secret: &dyn Fn(&str) -> bool) -> String {
    text.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(&percent_decode(name)) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The recordable form of a request body. `bytes` holds the first bytes of a body of `total`
/// bytes; when it is shorter, the body was over the limit and only a form is recorded (its
/// complete fields; a cut-off name has no value yet), never cut-off JSON.
pub fn body(
    content_type: Option<&str>,
    bytes: &[u8],
    total: u64,
    secret: &dyn Fn(&str) -> bool,
) -> String {
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let complete = bytes.len() as u64 >= total;
    if ct == "application/x-www-form-urlencoded" {
        let text = String::from_utf8_lossy(bytes);
        let mut text = text.as_ref();
        if !complete {
            // Keep complete pairs only: a value cut in half could still be part of a secret
            // whose name matched.
            text = text.rsplit_once('&').map_or("", |(kept, _)| kept);
        }
        let mut out = form(text, secret);
        if !complete {
            out.push_str(&format!(" [… {total} bytes in all]"));
        }
        return out;
    }
    if ct == "application/json" || ct.ends_with("+json") {
        if !complete {
            return format!("[{total} bytes of {ct}, over the recording limit]");
        }
        return match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(mut v) => {
                redact_json(&mut v, secret, 0);
                v.to_string()
            }
            Err(_) => format!("[{total} bytes of {ct}, not valid JSON]"),
        };
    }
    let ct = if ct.is_empty() { "unknown type" } else { &ct };
    format!("[{total} bytes of {ct}]")
}

/// Replaces the values of secret keys anywhere in `v` (nesting depth is bounded by the JSON
/// parser; the walk stops at 128 levels all the same).
fn redact_json(v: &mut serde_json::Value, secret: &dyn Fn(&str) -> bool, depth: usize) {
    if depth > 128 {
        *v = serde_json::Value::String(REDACTED.into());
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if secret(k) {
                    *val = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_json(val, secret, depth + 1);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact_json(item, secret, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        ["password", "token", "secret", "key"]
            .iter()
            .any(|s| n.contains(s))
    }

    #[test]
    fn secret_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("Authorization", "Bearer abc".parse().unwrap());
        h.insert("Cookie", "session=xyz".parse().unwrap());
        h.insert("Accept", "text/html".parse().unwrap());
        let out = headers(&h, &["authorization".into(), "cookie".into()]);
        assert!(out.contains(&("authorization".into(), REDACTED.into())));
        assert!(out.contains(&("cookie".into(), REDACTED.into())));
        assert!(out.contains(&("accept".into(), "text/html".into())));
        assert!(!format!("{out:?}").contains("abc") && !format!("{out:?}").contains("xyz"));
    }

    #[test]
    fn urls_lose_credentials_and_secret_query_values() {
        let u = url(
            "https://bob:pw1@host.example/a/b?x=1&api_key=K123&Token=T9#access_token=F7&y=2",
            &secret,
        );
        assert_eq!(
            u,
            "https://host.example/a/b?x=1&api_key=[redacted]&Token=[redacted]#access_token=[redacted]&y=2"
        );
        assert_eq!(url("https://h/p", &secret), "https://h/p");
        // Encoded names are decoded before matching.
        assert_eq!(
            url("https://h/?pass%77ord=x", &secret),
            "https://h/?pass%77ord=[redacted]"
        );
    }

    #[test]
    fn form_and_json_bodies_keep_names_and_lose_secrets() {
        let f = body(
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"username=alice&password=hunter2&remember=on",
            43,
            &secret,
        );
        assert_eq!(f, "username=alice&password=[redacted]&remember=on");
        let json = br#"{"user":"alice","auth":{"apiKey":"K1","list":[{"token":"T2"}]},"n":3}"#;
        let j = body(Some("application/json"), json, json.len() as u64, &secret);
        assert!(!j.contains("K1") && !j.contains("T2"), "{j}");
        assert!(
            j.contains("\"user\":\"alice\"") && j.contains("\"n\":3"),
            "{j}"
        );
    }

    #[test]
    fn cut_off_bodies_keep_only_what_is_safe() {
        // A form cut inside the password's value keeps the complete pairs only.
        let f = body(
            Some("application/x-www-form-urlencoded"),
            b"user=alice&password=hunt",
            40,
            &secret,
        );
        assert_eq!(f, "user=alice [… 40 bytes in all]");
        let j = body(Some("application/json"), br#"{"password":"hu"#, 30, &secret);
        assert!(!j.contains("hu"), "{j}");
        let o = body(Some("application/octet-stream"), b"\x00\x01", 2, &secret);
        assert_eq!(o, "[2 bytes of application/octet-stream]");
        let bad = body(Some("application/json"), b"{nope", 5, &secret);
        assert!(bad.contains("not valid JSON"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_secret_value_never_survives(
            value in "[A-Za-z0-9]{8,24}",
            name in prop::sample::select(vec!["password", "api_key", "Token", "client_secret"]),
            before in "[a-z]{1,6}=[a-z]{0,6}",
            cut in 0usize..80,
        ) {
            let marker = format!("ZQ{value}");
            let text = format!("{before}&{name}={marker}&tail=1");
            let n = cut.min(text.len());
            let out = body(Some("application/x-www-form-urlencoded"), &text.as_bytes()[..n], text.len() as u64, &secret);
            prop_assert!(!out.contains(&marker));
            let q = url(&format!("https://h/p?{text}"), &secret);
            prop_assert!(!q.contains(&marker));
            let json = format!("{{\"a\":[{{\"{name}\":\"{marker}\"}}]}}");
            let out = body(Some("application/json"), json.as_bytes(), json.len() as u64, &secret);
            prop_assert!(!out.contains(&marker));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), total in 0u64..400) {
            let s = String::from_utf8_lossy(&bytes).into_owned();
            let _ = url(&s, &secret);
            let _ = form(&s, &secret);
            for ct in ["application/x-www-form-urlencoded", "application/json", "text/plain", ""] {
                let _ = body(Some(ct), &bytes, total, &secret);
            }
        }
    }
}
