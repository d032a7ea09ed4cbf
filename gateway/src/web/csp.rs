//! Content-Security-Policy rewriting: a page's policies are widened to admit exactly the
//! recorder's script element and its event endpoint, never dropped and never loosened
//! otherwise.
//!
//! Per policy of a policy list (policies separated by `,`, directives by `;`; directive names
//! case-insensitive; of a repeated directive only the first counts, as in browsers; directives
//! with non-ASCII text are ignored, as in browsers, and kept as written):
//!
//! - Script: the directive that governs a `<script src>` element is `script-src-elem`, else
//!   `script-src`, else `default-src`; without any, scripts are already allowed. A directive
//!   with `'strict-dynamic'`, a `'nonce-…'` or a `'sha256|384|512-…'` source gets
//!   `'nonce-<nonce>'` (browsers ignore host sources there); any other gets the exact script
//!   URL, so that `'unsafe-inline'` keeps working (a nonce would switch it off). `'none'` gives
//!   way to the added source. Both `script-src-elem` and `script-src` are widened when both
//!   exist. When only `default-src` governs, it is left alone (widening it would widen every
//!   resource type) and an explicit `script-src` is appended: the `default-src` sources without
//!   `'none'`, plus the added one.
//! - Connect (`fetch`, `sendBeacon`): `connect-src`, else `default-src`, likewise with the
//!   exact event URL.
//!
//! A policy that needs no change is kept byte for byte; a changed one keeps its other
//! directives as written, in order, joined by `"; "`. Adding is idempotent.
//!
//! Sans-I/O: strings in, strings out; never panics, whatever the input.

use super::inject::{is_space, Scanner, Token};
use std::ops::Range;

/// What the recorder needs admitted.
#[derive(Debug, Clone, Copy)]
pub struct Admit<'a> {
    /// Absolute URL of the recorder script, e.g. `https://host:port/__psmgate/recorder.js`.
    pub script_url: &'a str,
    /// Absolute URL the recorder posts events to, e.g. `https://host:port/__psmgate/events`.
    pub post_url: &'a str,
    /// The nonce the script element carries (base64).
    pub nonce: &'a str,
}

/// Why a policy could not be rewritten: what is to be admitted cannot be written as a CSP
/// source without breaking or widening the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CspError {
    /// The script URL is not an exact `scheme://host[:port]/path` host source.
    #[error("recorder script URL {0:?} is not an exact CSP host source (scheme://host/path)")]
    ScriptUrl(String),
    /// The event URL is not an exact `scheme://host[:port]/path` host source.
    #[error("recorder event URL {0:?} is not an exact CSP host source (scheme://host/path)")]
    PostUrl(String),
    /// The nonce is not a CSP base64 value.
    #[error("nonce {0:?} is not a CSP base64 value")]
    Nonce(String),
}

impl Admit<'_> {
    /// Checks that the URLs are exact host sources (`scheme://host[:port]/path`, no wildcard,
    /// query, fragment, quote, whitespace, `;` or `,`; the path names a file, not a directory)
    /// and that the nonce is base64 (`A–Z a–z 0–9 + / - _`, up to two `=`).
    pub fn validate(&self) -> Result<(), CspError> {
        if !exact_source(self.script_url) {
            return Err(CspError::ScriptUrl(self.script_url.to_string()));
        }
        if !exact_source(self.post_url) {
            return Err(CspError::PostUrl(self.post_url.to_string()));
        }
        if !base64_value(self.nonce) {
            return Err(CspError::Nonce(self.nonce.to_string()));
        }
        Ok(())
    }
}

/// Rewrites one `Content-Security-Policy` (or `-Report-Only`) header value, a policy list, so
/// that every policy in it admits the recorder and nothing else new (rules in the module
/// docs). Fails, without producing anything, only when `a` does not [validate](Admit::validate).
pub fn admit(policy: &str, a: &Admit<'_>) -> Result<String, CspError> {
    a.validate()?;
    Ok(admit_list(policy, a))
}

/// Rewrites the `content` of every `<meta http-equiv="Content-Security-Policy">` in `html`
/// (typically the document's head) like [`admit`]: the attribute is HTML-decoded, rewritten,
/// and written back double-quoted and re-encoded. Comments and raw text are skipped; a tag cut
/// off at the end of `html`, or whose content holds non-ASCII text or a character reference
/// this module does not know, is left as it is. The content is read as a policy list, as
/// Chromium and WebKit do. Fails only when `a` does not [validate](Admit::validate).
pub fn admit_in_meta(html: &[u8], a: &Admit<'_>) -> Result<Vec<u8>, CspError> {
    a.validate()?;
    let mut scanner = Scanner::new();
    let mut out = Vec::with_capacity(html.len());
    let mut copied = 0;
    for (at, &b) in html.iter().enumerate() {
        let Some(Token::StartTag(tag)) = scanner.step(b, at) else {
            continue;
        };
        if !tag.is(b"meta") {
            continue;
        }
        let Some(bytes) = html.get(tag.start..tag.end) else {
            continue;
        };
        if let Some((range, value)) = rewrite_meta(bytes, a) {
            let (from, to) = (tag.start + range.start, tag.start + range.end);
            if let (Some(before), true) = (html.get(copied..from), to <= html.len()) {
                out.extend_from_slice(before);
                out.extend_from_slice(&value);
                copied = to;
            }
        }
    }
    out.extend_from_slice(html.get(copied..).unwrap_or_default());
    Ok(out)
}

/// [`admit`] without the validation.
fn admit_list(list: &str, a: &Admit<'_>) -> String {
    list.split(',')
        .map(|policy| admit_policy(policy, a))
        .collect::<Vec<_>>()
        .join(",")
}

/// One directive of a policy, as written.
struct Directive<'p> {
    /// The directive, trimmed.
    text: &'p str,
    /// Its name as written.
    name: &'p str,
    /// Its sources.
    sources: Vec<&'p str>,
}

impl<'p> Directive<'p> {
    fn parse(text: &'p str) -> Self {
        let mut words = text.split(is_csp_space).filter(|w| !w.is_empty());
        let name = words.next().unwrap_or_default();
        Self {
            text,
            name,
            sources: words.collect(),
        }
    }

    /// Whether browsers read this directive as `name` (lowercase).
    fn is(&self, name: &str) -> bool {
        self.text.is_ascii() && self.name.eq_ignore_ascii_case(name)
    }
}

/// Rewrites one policy; returns it unchanged when it already admits the recorder.
fn admit_policy(policy: &str, a: &Admit<'_>) -> String {
    let directives: Vec<Directive<'_>> = policy
        .split(';')
        .map(|d| d.trim_matches(is_csp_space))
        .filter(|d| !d.is_empty())
        .map(Directive::parse)
        .collect();
    let first = |name: &str| directives.iter().position(|d| d.is(name));
    let mut replaced: Vec<Option<Vec<&str>>> = vec![None; directives.len()];
    let mut appended: Vec<String> = Vec::new();
    let nonce = format!("'nonce-{}'", a.nonce);
    let script_source = |sources: &[&str]| -> &str {
        if nonce_based(sources) {
            nonce.as_str()
        } else {
            a.script_url
        }
    };

    let default = first("default-src");
    let script_directives: Vec<usize> = [first("script-src-elem"), first("script-src")]
        .into_iter()
        .flatten()
        .collect();
    if !script_directives.is_empty() {
        for i in script_directives {
            let sources = &directives[i].sources;
            replaced[i] = with_source(sources, script_source(sources));
        }
    } else if let Some(d) = default {
        let sources = &directives[d].sources;
        if let Some(s) = with_source(sources, script_source(sources)) {
            appended.push(format!("script-src {}", s.join(" ")));
        }
    }

    if let Some(c) = first("connect-src") {
        replaced[c] = with_source(&directives[c].sources, a.post_url);
    } else if let Some(d) = default {
        if let Some(s) = with_source(&directives[d].sources, a.post_url) {
            appended.push(format!("connect-src {}", s.join(" ")));
        }
    }

    if appended.is_empty() && replaced.iter().all(Option::is_none) {
        return policy.to_string();
    }
    let body = policy.trim_start_matches(is_csp_space);
    let lead = &policy[..policy.len() - body.len()];
    let trail = &body[body.trim_end_matches(is_csp_space).len()..];
    let parts: Vec<String> = directives
        .iter()
        .zip(replaced)
        .map(|(d, r)| match r {
            Some(sources) => format!("{} {}", d.name, sources.join(" ")),
            None => d.text.to_string(),
        })
        .chain(appended)
        .collect();
    format!("{lead}{}{trail}", parts.join("; "))
}

/// `sources` with `source` added and `'none'` dropped, or `None` if `source` is there already.
fn with_source<'s>(sources: &[&'s str], source: &'s str) -> Option<Vec<&'s str>> {
    if sources.contains(&source) {
        return None;
    }
    let mut out: Vec<&str> = sources
        .iter()
        .copied()
        .filter(|s| !s.eq_ignore_ascii_case("'none'"))
        .collect();
    out.push(source);
    Some(out)
}

/// Whether a script directive works by nonces or hashes, where browsers ignore host sources.
fn nonce_based(sources: &[&str]) -> bool {
    sources.iter().any(|s| {
        let s = s.to_ascii_lowercase();
        s == "'strict-dynamic'"
            || ["'nonce-", "'sha256-", "'sha384-", "'sha512-"]
                .iter()
                .any(|p| s.starts_with(p) && s.len() > p.len() + 1 && s.ends_with('\''))
    })
}

/// CSP's (and HTTP's) ASCII whitespace.
fn is_csp_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// Whether `url` is an exact host source: `scheme://host[:port]/path` with a path that names
/// a file, and no character that would end, split or widen a source.
fn exact_source(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let rest_ok = rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&()+=:@/%[]".contains(&b));
    let path_ok = match rest.find('/') {
        Some(i) => i > 0 && !rest.ends_with('/'),
        None => false,
    };
    scheme_ok && rest_ok && path_ok
}

/// Whether `nonce` is CSP's `base64-value`.
fn base64_value(nonce: &str) -> bool {
    let body = nonce.trim_end_matches('=');
    nonce.len() - body.len() <= 2
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/-_".contains(&b))
}

/// One attribute of a start tag, as offsets into the tag.
struct Attribute {
    /// Its name, lowercase.
    name: Vec<u8>,
    /// Its value without quotes (empty where there is none).
    value: Range<usize>,
    /// Its value with quotes, if it has a value.
    written: Option<Range<usize>>,
}

/// The attributes of a complete start tag (`<name …>`), read as the HTML tokenizer does.
fn attributes(tag: &[u8]) -> Vec<Attribute> {
    let n = tag.len();
    let at = |i: usize| tag.get(i).copied().unwrap_or(b'>');
    let mut i = 1;
    while i < n && !is_space(at(i)) && at(i) != b'/' && at(i) != b'>' {
        i += 1;
    }
    let mut out = Vec::new();
    loop {
        while i < n && (is_space(at(i)) || at(i) == b'/') {
            i += 1;
        }
        if i >= n || at(i) == b'>' {
            return out;
        }
        let name_start = i;
        i += 1;
        while i < n && !is_space(at(i)) && !b"/>=".contains(&at(i)) {
            i += 1;
        }
        let name = tag[name_start..i].to_ascii_lowercase();
        let mut j = i;
        while j < n && is_space(at(j)) {
            j += 1;
        }
        if at(j) != b'=' || j >= n {
            out.push(Attribute {
                name,
                value: i..i,
                written: None,
            });
            i = j;
            continue;
        }
        i = j + 1;
        while i < n && is_space(at(i)) {
            i += 1;
        }
        let (value, written) = match at(i) {
            _ if i >= n => (i..i, None),
            b'>' => (i..i, None),
            q @ (b'"' | b'\'') => {
                let start = i + 1;
                let end = tag
                    .get(start..)
                    .and_then(|r| r.iter().position(|&b| b == q))
                    .map_or(n, |p| start + p);
                i = (end + 1).min(n);
                (start..end, Some(start - 1..i))
            }
            _ => {
                let start = i;
                while i < n && !is_space(at(i)) && at(i) != b'>' {
                    i += 1;
                }
                (start..i, Some(start..i))
            }
        };
        out.push(Attribute {
            name,
            value,
            written,
        });
    }
}

/// For a `<meta http-equiv="Content-Security-Policy" content="…">` tag whose policy needs
/// widening: the range of the written content value in the tag and what replaces it.
fn rewrite_meta(tag: &[u8], a: &Admit<'_>) -> Option<(Range<usize>, Vec<u8>)> {
    if tag.last() != Some(&b'>') {
        return None;
    }
    let attrs = attributes(tag);
    let first = |name: &[u8]| attrs.iter().find(|at| at.name == name);
    let equiv = first(b"http-equiv")?;
    let equiv = decode_attribute(tag.get(equiv.value.clone())?)?;
    if !equiv.eq_ignore_ascii_case("content-security-policy") {
        return None;
    }
    let content = first(b"content")?;
    let written = content.written.clone()?;
    let policy = decode_attribute(tag.get(content.value.clone())?)?;
    let widened = admit_list(&policy, a);
    if widened == policy {
        return None;
    }
    Some((written, encode_attribute(&widened)))
}

/// Named character references that can be decoded here: `(name, text, usable without ';')`.
const NAMED: [(&str, &str, bool); 36] = [
    ("amp", "&", true),
    ("AMP", "&", true),
    ("lt", "<", true),
    ("LT", "<", true),
    ("gt", ">", true),
    ("GT", ">", true),
    ("quot", "\"", true),
    ("QUOT", "\"", true),
    ("apos", "'", false),
    ("Tab", "\t", false),
    ("NewLine", "\n", false),
    ("semi", ";", false),
    ("comma", ",", false),
    ("colon", ":", false),
    ("sol", "/", false),
    ("bsol", "\\", false),
    ("excl", "!", false),
    ("num", "#", false),
    ("dollar", "$", false),
    ("percnt", "%", false),
    ("lpar", "(", false),
    ("rpar", ")", false),
    ("ast", "*", false),
    ("midast", "*", false),
    ("plus", "+", false),
    ("equals", "=", false),
    ("quest", "?", false),
    ("commat", "@", false),
    ("lsqb", "[", false),
    ("rsqb", "]", false),
    ("lowbar", "_", false),
    ("grave", "`", false),
    ("lcub", "{", false),
    ("rcub", "}", false),
    ("verbar", "|", false),
    ("period", ".", false),
];

/// An attribute value with its character references decoded, as the HTML tokenizer does; or
/// `None` when it holds non-ASCII text or a named reference not in [`NAMED`] (which could mean
/// something this module cannot tell).
fn decode_attribute(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if !b.is_ascii() {
            return None;
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let rest = raw.get(i + 1..).unwrap_or_default();
        if rest.first() == Some(&b'#') {
            let (c, used) = numeric_reference(rest)?;
            out.push(c);
            i += 1 + used;
            continue;
        }
        let name_len = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if name_len == 0 {
            out.push('&');
            i += 1;
            continue;
        }
        let name = std::str::from_utf8(&rest[..name_len]).ok()?;
        match rest.get(name_len) {
            // In attributes, a reference followed by '=' stays as written.
            Some(b'=') => {
                out.push('&');
                out.push_str(name);
                i += 1 + name_len;
            }
            Some(b';') => {
                let (_, text, _) = NAMED.iter().find(|(n, _, _)| *n == name)?;
                out.push_str(text);
                i += 2 + name_len;
            }
            _ => {
                let (_, text, _) = NAMED.iter().find(|(n, _, bare)| *n == name && *bare)?;
                out.push_str(text);
                i += 1 + name_len;
            }
        }
    }
    Some(out)
}

/// `#…;` after an `&`: the character (ASCII only, else `None`) and the bytes used. Without
/// digits, the `&#` stays as written.
fn numeric_reference(rest: &[u8]) -> Option<(char, usize)> {
    let hex = matches!(rest.get(1), Some(b'x' | b'X'));
    let start = if hex { 2 } else { 1 };
    let digits = rest
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| {
            if hex {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        })
        .count();
    if digits == 0 {
        return Some(('&', 0));
    }
    let text = std::str::from_utf8(rest.get(start..start + digits)?).ok()?;
    let value = u32::from_str_radix(text, if hex { 16 } else { 10 }).ok()?;
    // Zero, and anything not ASCII, decode to something other than ASCII text.
    let c = char::from_u32(value).filter(|c| c.is_ascii() && value != 0)?;
    let semi = usize::from(rest.get(start + digits) == Some(&b';'));
    Some((c, start + digits + semi))
}

/// `text` as a double-quoted attribute value.
fn encode_attribute(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'"');
    for c in text.bytes() {
        match c {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.push(c),
        }
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SCRIPT: &str = "https://app.example:8443/__psmgate/recorder.js";
    const POST: &str = "https://app.example:8443/__psmgate/events";
    const NONCE: &str = "cjRuZG9tK25vbmNlPQ==";

    fn admit_() -> Admit<'static> {
        Admit {
            script_url: SCRIPT,
            post_url: POST,
            nonce: NONCE,
        }
    }

    fn rewrite(policy: &str) -> String {
        admit(policy, &admit_()).expect("valid admit")
    }

    /// Real-world policies and their exact rewrites; `$S`, `$P` and `$N` stand for the script
    /// URL, the event URL and the nonce source.
    const TABLE: &[(&str, &str, &str)] = &[
        (
            "GitHub-like: nonces and strict-dynamic; connect list",
            "default-src 'none'; base-uri 'self'; connect-src 'self' api.github.com *.actions.githubusercontent.com; img-src 'self' data:; script-src 'nonce-Zm9vYmFy' 'strict-dynamic' 'unsafe-inline' https: http:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            "default-src 'none'; base-uri 'self'; connect-src 'self' api.github.com *.actions.githubusercontent.com $P; img-src 'self' data:; script-src 'nonce-Zm9vYmFy' 'strict-dynamic' 'unsafe-inline' https: http: $N; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (
            "AWS-like: hosts and unsafe-inline, no connect-src",
            "default-src 'self' *.amazonaws.com; script-src 'self' 'unsafe-inline' 'unsafe-eval' *.awsstatic.com https://d1.cloudfront.net; img-src * data:",
            "default-src 'self' *.amazonaws.com; script-src 'self' 'unsafe-inline' 'unsafe-eval' *.awsstatic.com https://d1.cloudfront.net $S; img-src * data:; connect-src 'self' *.amazonaws.com $P",
        ),
        (
            "default-src 'self' only",
            "default-src 'self'",
            "default-src 'self'; script-src 'self' $S; connect-src 'self' $P",
        ),
        (
            "default-src 'none'",
            "default-src 'none'",
            "default-src 'none'; script-src $S; connect-src $P",
        ),
        (
            "script-src 'none' with default-src",
            "default-src 'self'; script-src 'none'; object-src 'none'",
            "default-src 'self'; script-src $S; object-src 'none'; connect-src 'self' $P",
        ),
        (
            "hash-based script-src, connect-src 'none'",
            "script-src 'sha256-abc123=' 'unsafe-inline'; connect-src 'none'",
            "script-src 'sha256-abc123=' 'unsafe-inline' $N; connect-src $P",
        ),
        (
            "nonce-based default-src only",
            "default-src 'nonce-eHl6' 'strict-dynamic'",
            "default-src 'nonce-eHl6' 'strict-dynamic'; script-src 'nonce-eHl6' 'strict-dynamic' $N; connect-src 'nonce-eHl6' 'strict-dynamic' $P",
        ),
        (
            "report-only style with report-uri",
            "default-src https:; report-uri /csp-report; report-to csp",
            "default-src https:; report-uri /csp-report; report-to csp; script-src https: $S; connect-src https: $P",
        ),
        (
            "multiple policies in one header",
            "script-src 'self', connect-src api.example.com, img-src 'self'",
            "script-src 'self' $S, connect-src api.example.com $P, img-src 'self'",
        ),
        (
            "uppercase directive names keep their case",
            "DEFAULT-SRC 'SELF'; Script-Src 'self' 'unsafe-inline'",
            "DEFAULT-SRC 'SELF'; Script-Src 'self' 'unsafe-inline' $S; connect-src 'SELF' $P",
        ),
        (
            "script-src-elem and script-src both widened, each by its own kind",
            "script-src-elem 'self'; script-src 'nonce-YQ' 'self'; connect-src 'self'",
            "script-src-elem 'self' $S; script-src 'nonce-YQ' 'self' $N; connect-src 'self' $P",
        ),
        (
            "only the first of a repeated directive is changed",
            "script-src 'self'; script-src 'none'; connect-src a.example; connect-src 'none'",
            "script-src 'self' $S; script-src 'none'; connect-src a.example $P; connect-src 'none'",
        ),
        (
            "no fetch directive at all: untouched, byte for byte",
            "frame-ancestors 'self' ;  upgrade-insecure-requests;",
            "frame-ancestors 'self' ;  upgrade-insecure-requests;",
        ),
        (
            "whitespace and empty directives normalised only where changed",
            "  img-src 'self' ;; script-src\t'self' ;\n ,frame-ancestors 'none' ",
            "  img-src 'self'; script-src 'self' $S\n ,frame-ancestors 'none' ",
        ),
        ("empty header", "", ""),
    ];

    #[test]
    fn real_world_policies() {
        let nonce = format!("'nonce-{NONCE}'");
        for (what, input, expected) in TABLE {
            let expected = expected
                .replace("$S", SCRIPT)
                .replace("$P", POST)
                .replace("$N", &nonce);
            assert_eq!(rewrite(input), expected, "{what}");
            // Once admitted, admitted: a second pass changes nothing.
            assert_eq!(rewrite(&expected), expected, "{what} (idempotent)");
        }
    }

    #[test]
    fn non_ascii_directives_do_not_count() {
        // Browsers skip a directive with non-ASCII text, so the later script-src governs.
        assert_eq!(
            rewrite("script-src 'self' ü; script-src 'none'"),
            format!("script-src 'self' ü; script-src {SCRIPT}")
        );
    }

    #[test]
    fn invalid_sources_are_refused() {
        let ok = admit_();
        for bad in [
            "https://h/x.js; script-src *",
            "https://h/x.js,https://evil/",
            "https://h/a b.js",
            "https://*.h/x.js",
            "https://h/",
            "https://h",
            "h/x.js",
            "'self'",
            "https://h/x.js?q=1",
            "",
        ] {
            let a = Admit {
                script_url: bad,
                ..ok
            };
            assert_eq!(
                admit("default-src 'self'", &a),
                Err(CspError::ScriptUrl(bad.into())),
                "{bad:?}"
            );
            let a = Admit {
                post_url: bad,
                ..ok
            };
            assert_eq!(
                admit_in_meta(b"<meta>", &a),
                Err(CspError::PostUrl(bad.into()))
            );
        }
        for bad in ["", "abc'", "a b", "abc===", "=="] {
            let a = Admit { nonce: bad, ..ok };
            assert_eq!(
                admit("script-src 'self'", &a),
                Err(CspError::Nonce(bad.into()))
            );
        }
        assert!(admit("x", &ok).is_ok());
    }

    #[test]
    fn meta_policies_are_rewritten_in_place() {
        let html = b"<head><meta charset=utf-8><!-- <meta http-equiv=content-security-policy content=\"script-src 'none'\"> -->\
<META HTTP-EQUIV=\"Content-Security-Policy\" CONTENT='default-src &apos;self&apos;; img-src &quot;x&quot; a&amp;b'>\
<meta http-equiv=\"refresh\" content=\"script-src 'none'\"><title>t</title>";
        let out = String::from_utf8(admit_in_meta(html, &admit_()).unwrap()).unwrap();
        let expected = format!(
            "<head><meta charset=utf-8><!-- <meta http-equiv=content-security-policy content=\"script-src 'none'\"> -->\
<META HTTP-EQUIV=\"Content-Security-Policy\" CONTENT=\"default-src 'self'; img-src &quot;x&quot; a&amp;b; script-src 'self' {SCRIPT}; connect-src 'self' {POST}\">\
<meta http-equiv=\"refresh\" content=\"script-src 'none'\"><title>t</title>"
        );
        assert_eq!(out, expected);
        // Idempotent, and an unquoted value is handled too.
        assert_eq!(
            admit_in_meta(out.as_bytes(), &admit_()).unwrap(),
            out.as_bytes()
        );
        let unquoted =
            b"<meta content=connect-src&#x20;&#39;none&#39; http-equiv=content-security-policy>";
        assert_eq!(
            String::from_utf8(admit_in_meta(unquoted, &admit_()).unwrap()).unwrap(),
            format!("<meta content=\"connect-src {POST}\" http-equiv=content-security-policy>")
        );
    }

    #[test]
    fn meta_tags_that_cannot_be_read_are_left_alone() {
        for html in [
            // A reference this module does not know.
            &b"<meta http-equiv=content-security-policy content=\"default-src &hellip;\">"[..],
            // Non-ASCII text.
            "<meta http-equiv=content-security-policy content=\"default-src \u{e9}\">".as_bytes(),
            // Cut off.
            b"<meta http-equiv=content-security-policy content=\"default-src 'self'",
            // Inside a script.
            b"<script>'<meta http-equiv=content-security-policy content=\"default-src x\">'</script>",
            // Report-only is not honoured in meta.
            b"<meta http-equiv=content-security-policy-report-only content=\"default-src 'self'\">",
        ] {
            assert_eq!(admit_in_meta(html, &admit_()).unwrap(), html);
        }
    }

    #[test]
    fn character_references() {
        assert_eq!(
            decode_attribute(b"a&amp;b&lt&gt;&#39;&#x27;&#;&=&amp=&foo=&Tab;").as_deref(),
            Some("a&b<>''&#;&=&amp=&foo=\t")
        );
        assert_eq!(decode_attribute(b"&apos"), None);
        assert_eq!(decode_attribute(b"&#0;"), None);
        assert_eq!(decode_attribute(b"&#x110000;"), None);
        assert_eq!(decode_attribute(b"&#99999999999999999999;"), None);
        assert_eq!(encode_attribute("a\"&<>'"), b"\"a&quot;&amp;&lt;&gt;'\"");
    }

    /// The directives of each policy of a list: `(name, sources)`.
    fn parsed(list: &str) -> Vec<Vec<(String, Vec<String>)>> {
        list.split(',')
            .map(|p| {
                p.split(';')
                    .map(|d| d.trim_matches(is_csp_space))
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        let d = Directive::parse(d);
                        (
                            d.name.to_string(),
                            d.sources.iter().map(|s| s.to_string()).collect(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    fn directive() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("default-src"),
            Just("script-src"),
            Just("Script-Src-Elem"),
            Just("connect-src"),
            Just("CONNECT-SRC"),
            Just("img-src"),
            Just("report-uri"),
            Just("upgrade-insecure-requests"),
        ];
        let source = prop_oneof![
            Just("'self'".to_string()),
            Just("'none'".to_string()),
            Just("'NONE'".to_string()),
            Just("'unsafe-inline'".to_string()),
            Just("'strict-dynamic'".to_string()),
            Just("'nonce-abc'".to_string()),
            Just("'sha384-xyz'".to_string()),
            Just("https:".to_string()),
            Just(POST.to_string()),
            "[a-z.*:/]{1,12}",
        ];
        (name, prop::collection::vec(source, 0..4), "[ \t]{1,2}")
            .prop_map(|(n, s, sp)| format!("{n}{sp}{}", s.join(" ")))
    }

    fn policy_list() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::collection::vec(directive(), 0..6), 1..4).prop_map(|ps| {
            ps.iter()
                .map(|p| p.join("; "))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rewriting_only_adds_the_recorder(list in policy_list()) {
            let nonce = format!("'nonce-{NONCE}'");
            let ours = [SCRIPT.to_string(), POST.to_string(), nonce];
            let out = rewrite(&list);
            let (before, after) = (parsed(&list), parsed(&out));
            prop_assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a.len() >= b.len());
                // Every original directive is still there, in order, with all its sources
                // ('none' gives way only to an added source).
                for ((bn, bs), (an, asrc)) in b.iter().zip(a) {
                    prop_assert_eq!(bn, an);
                    for s in bs {
                        prop_assert!(asrc.contains(s) || s.eq_ignore_ascii_case("'none'"), "{} lost {}", bn, s);
                    }
                    for s in asrc {
                        prop_assert!(bs.contains(s) || ours.contains(s), "{} gained {}", bn, s);
                    }
                }
                // Appended directives are script-src/connect-src built from default-src.
                let default: Vec<String> = b
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("default-src"))
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                for (an, asrc) in &a[b.len()..] {
                    prop_assert!(an == "script-src" || an == "connect-src");
                    for s in asrc {
                        prop_assert!(default.contains(s) || ours.contains(s));
                    }
                }
            }
            prop_assert_eq!(rewrite(&out), out);
        }

        #[test]
        fn any_input_never_panics(
            policy in "\\PC{0,200}",
            html in prop::collection::vec(any::<u8>(), 0..300),
            url in "[ -~]{0,30}",
            nonce in "[ -~]{0,10}",
        ) {
            let a = Admit { script_url: &url, post_url: &url, nonce: &nonce };
            let _ = admit(&policy, &a);
            let _ = admit_in_meta(&html, &a);
            let out = rewrite(&policy);
            // Every original directive still appears, by name and as a prefix of its text.
            for p in policy.split(',').zip(out.split(',')) {
                for d in p.0.split(';').map(|d| d.trim_matches(is_csp_space)).filter(|d| !d.is_empty()) {
                    let name = Directive::parse(d).name;
                    prop_assert!(p.1.contains(name));
                }
            }
            let meta = format!("<meta http-equiv=Content-Security-Policy content=\"{}\">", policy.replace('"', "&quot;"));
            let _ = admit_in_meta(meta.as_bytes(), &admit_());
        }
    }
}
