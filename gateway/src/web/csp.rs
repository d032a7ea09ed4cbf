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
//! Policies a page sets itself with `<meta http-equiv="Content-Security-Policy" content="…">`
//! are widened by the same rules, as the document streams ([`MetaRewriter`]): the `content`
//! attribute is decoded (character references), rewritten and written back double-quoted and
//! re-encoded; every other byte of the document is passed on as it came. The nonce is the one
//! the inserted script element carries, the one the header policies admit. Such elements are
//! looked for up to the first `<body>` (or `<frameset>`, `<plaintext>`) start tag, as browsers
//! honour them only in the head; comments and raw text (`<script>`, `<style>`, …) are skipped.
//! Templates are not told apart: a policy in a `<template>` is widened as well (it still admits
//! only the recorder), and a `<body>` tag in one ends the search early (what follows is then
//! left as written). `Content-Security-Policy-Report-Only` in a `<meta>` is ignored by browsers
//! and left alone.
//! What cannot be widened safely is left exactly as written and reported ([`MetaSkip`]): a
//! `<meta …>` start tag longer than the rewriter's limit (only that much of a tag is ever held
//! back), or a policy with non-ASCII text or a character reference this module does not
//! decode. The page then keeps its policy whole: if that policy blocks the recorder, the
//! recorder heartbeat ends the session (fail-closed); the policy is never weakened or dropped.
//!
//! Sans-I/O: strings and bytes in, strings and bytes out; never panics, whatever the input.

use super::inject::{is_space, Scanner, Token, STOP_TAGS};
use std::ops::Range;

/// The longest `<meta …>` start tag [`MetaRewriter`]s in the proxy read (16 KiB): room for a
/// policy with a few hundred hashes, while a tag that never ends holds back no more than this.
pub const META_TAG_LIMIT: usize = 16 * 1024;

/// The shortest limit a [`MetaRewriter`] takes: `<meta` and one byte more, so that no tag is
/// given up on before it is known to be a `<meta …>`.
const MIN_TAG_LIMIT: usize = 6;

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

/// Rewrites the `content` of every `<meta http-equiv="Content-Security-Policy">` in `html`, a
/// whole document or its start, like [`admit`]: [`MetaRewriter`] over `html` in one piece, with
/// no limit on the length of a tag (a tag cut off at the end of `html` is left as it is). Fails
/// only when `a` does not [validate](Admit::validate).
pub fn admit_in_meta(html: &[u8], a: &Admit<'_>) -> Result<Vec<u8>, CspError> {
    let mut rewriter = MetaRewriter::new(a, usize::MAX)?;
    let mut out = rewriter.feed(html);
    out.extend(rewriter.finish());
    Ok(out)
}

/// A `<meta http-equiv="Content-Security-Policy">` whose policy [`MetaRewriter`] left as
/// written. Offsets count bytes of the stream the rewriter was fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetaSkip {
    /// A `<meta …>` start tag longer than the limit was passed on unread (it may or may not
    /// set a policy).
    #[error(
        "a <meta> start tag at byte {at} is longer than {limit} bytes and was passed on unread"
    )]
    TooLong {
        /// Offset of its `<`.
        at: usize,
        /// The rewriter's limit.
        limit: usize,
    },
    /// The policy holds non-ASCII text or a character reference that is not decoded here.
    #[error(
        "the Content-Security-Policy <meta> at byte {at} holds text that cannot be read safely \
         (non-ASCII, or an unknown character reference) and was passed on unchanged"
    )]
    Unreadable {
        /// Offset of its `<`.
        at: usize,
    },
}

/// Widens the policies of `<meta http-equiv="Content-Security-Policy">` elements of an HTML
/// document as it streams through (rules in the module docs); everything else passes as it
/// came. Holds back only an unfinished start tag that is, or may still turn out to be, a
/// `<meta …>`, and that only up to the limit; the output does not depend on how the document
/// is split into chunks.
#[derive(Debug, Clone)]
pub struct MetaRewriter {
    script_url: String,
    post_url: String,
    nonce: String,
    /// The longest start tag read (at least [`MIN_TAG_LIMIT`]).
    tag_limit: usize,
    scanner: Scanner,
    /// Bytes not yet released: an unfinished `<meta` start tag (or the start of one).
    held: Vec<u8>,
    /// Stream offset of `held[0]`.
    held_start: usize,
    /// The `<` offset of the tag given up on for its length, until it ends.
    abandoned: Option<usize>,
    /// Past the head (or finished): everything passes unread.
    done: bool,
    skips: Vec<MetaSkip>,
}

impl MetaRewriter {
    /// A rewriter admitting what `a` names, reading `<meta …>` start tags of at most
    /// `tag_limit` bytes ([`META_TAG_LIMIT`] in the proxy; values below 6 count as 6). Fails
    /// only when `a` does not [validate](Admit::validate).
    pub fn new(a: &Admit<'_>, tag_limit: usize) -> Result<Self, CspError> {
        a.validate()?;
        Ok(Self {
            script_url: a.script_url.to_string(),
            post_url: a.post_url.to_string(),
            nonce: a.nonce.to_string(),
            tag_limit: tag_limit.max(MIN_TAG_LIMIT),
            scanner: Scanner::new(),
            held: Vec::new(),
            held_start: 0,
            abandoned: None,
            done: false,
            skips: Vec::new(),
        })
    }

    /// Feeds the next chunk; returns the bytes ready to be sent now (all of them, rewritten,
    /// but for an unfinished `<meta …>` start tag at the end).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.feed_owned(chunk.to_vec())
    }

    /// [`MetaRewriter::feed`] taking the chunk by value: once past the head, it is handed back
    /// as it is.
    pub fn feed_owned(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        if self.done {
            return chunk;
        }
        let from = self.held.len();
        if self.held.is_empty() {
            self.held = chunk;
        } else {
            self.held.extend_from_slice(&chunk);
        }
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        for i in from..self.held.len() {
            let at = self.held_start.saturating_add(i);
            match self.scanner.step(self.held[i], at) {
                Some(Token::StartTag(t)) if t.is(b"meta") => {
                    if self.abandoned == Some(t.start) {
                        self.abandoned = None;
                    } else if let Some(edit) = self.rewrite(t.start..t.end) {
                        edits.push(edit);
                    }
                }
                Some(Token::StartTag(t)) if STOP_TAGS.iter().any(|n| t.is(n)) => {
                    self.done = true;
                    break;
                }
                _ => {}
            }
            if let Some(start) = self.scanner.open_start_tag(b"meta") {
                let len = at.saturating_sub(start).saturating_add(1);
                if self.abandoned != Some(start) && len >= self.tag_limit {
                    self.abandoned = Some(start);
                    self.skips.push(MetaSkip::TooLong {
                        at: start,
                        limit: self.tag_limit,
                    });
                }
            }
        }
        let end = self.held_start.saturating_add(self.held.len());
        let cut = match self.scanner.open_start_tag(b"meta") {
            Some(start) if !self.done && self.abandoned != Some(start) => {
                start.clamp(self.held_start, end)
            }
            _ => end,
        };
        self.release(cut, &edits)
    }

    /// The document ended: returns what was still held back (an unfinished tag, as it came).
    /// Later calls return nothing; later chunks pass unread.
    pub fn finish(&mut self) -> Vec<u8> {
        self.done = true;
        self.held_start = self.held_start.saturating_add(self.held.len());
        std::mem::take(&mut self.held)
    }

    /// The policies left as written since the last call.
    pub fn take_skips(&mut self) -> Vec<MetaSkip> {
        std::mem::take(&mut self.skips)
    }

    /// What `a` names, borrowed from this rewriter.
    fn admit(&self) -> Admit<'_> {
        Admit {
            script_url: &self.script_url,
            post_url: &self.post_url,
            nonce: &self.nonce,
        }
    }

    /// The edit for the complete `<meta …>` start tag at `tag` (stream offsets), if it sets a
    /// policy that needs widening; notes a policy that cannot be read.
    fn rewrite(&mut self, tag: Range<usize>) -> Option<(Range<usize>, Vec<u8>)> {
        let from = tag.start.checked_sub(self.held_start)?;
        let to = tag.end.checked_sub(self.held_start)?;
        let bytes = self.held.get(from..to)?;
        match rewrite_meta(bytes, &self.admit()) {
            MetaTag::Rewrite(range, value) => {
                Some((tag.start + range.start..tag.start + range.end, value))
            }
            MetaTag::Unreadable => {
                self.skips.push(MetaSkip::Unreadable { at: tag.start });
                None
            }
            MetaTag::Other => None,
        }
    }

    /// Releases the held bytes before stream offset `cut`, with `edits` (in order, within
    /// them, not overlapping) applied.
    fn release(&mut self, cut: usize, edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
        let n = cut.saturating_sub(self.held_start).min(self.held.len());
        if edits.is_empty() && n == self.held.len() {
            self.held_start = self.held_start.saturating_add(n);
            return std::mem::take(&mut self.held);
        }
        let grown: usize = edits.iter().map(|(_, v)| v.len()).sum();
        let mut out = Vec::with_capacity(n + grown);
        let mut copied = 0;
        for (range, value) in edits {
            let from = range.start.saturating_sub(self.held_start);
            let to = range.end.saturating_sub(self.held_start);
            if from < copied || to < from || to > n {
                continue;
            }
            out.extend_from_slice(&self.held[copied..from]);
            out.extend_from_slice(value);
            copied = to;
        }
        out.extend_from_slice(&self.held[copied..n]);
        self.held.drain(..n);
        self.held_start = self.held_start.saturating_add(n);
        out
    }
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

/// What a complete `<meta …>` start tag means for the recorder.
enum MetaTag {
    /// It sets a policy that needs widening: the range of its written `content` value in the
    /// tag (quotes included) and what replaces it.
    Rewrite(Range<usize>, Vec<u8>),
    /// It sets a policy whose text cannot be read safely.
    Unreadable,
    /// It sets no policy, or one that already admits the recorder.
    Other,
}

/// Reads a complete `<meta …>` start tag (from `<` to `>`).
fn rewrite_meta(tag: &[u8], a: &Admit<'_>) -> MetaTag {
    if tag.last() != Some(&b'>') {
        return MetaTag::Other;
    }
    let attrs = attributes(tag);
    let first = |name: &[u8]| attrs.iter().find(|at| at.name == name);
    let Some(equiv) = first(b"http-equiv") else {
        return MetaTag::Other;
    };
    // Text that does not decode (non-ASCII, unknown references) cannot spell the keyword.
    // Surrounding whitespace is allowed for: widening a policy a browser would ignore is
    // harmless, missing one it honours is not.
    let is_policy = tag
        .get(equiv.value.clone())
        .and_then(decode_attribute)
        .is_some_and(|e| {
            e.trim_matches(|c: char| c.is_ascii() && is_space(c as u8))
                .eq_ignore_ascii_case("content-security-policy")
        });
    if !is_policy {
        return MetaTag::Other;
    }
    let Some(content) = first(b"content") else {
        return MetaTag::Other;
    };
    let Some(written) = content.written.clone() else {
        return MetaTag::Other;
    };
    if written.end >= tag.len() {
        // The value runs into the tag's `>`: not a value this module can replace.
        return MetaTag::Unreadable;
    }
    let Some(policy) = tag.get(content.value.clone()).and_then(decode_attribute) else {
        return MetaTag::Unreadable;
    };
    let widened = admit_list(&policy, a);
    if widened == policy {
        return MetaTag::Other;
    }
    MetaTag::Rewrite(written, encode_attribute(&widened))
}

/// Named character references that can be decoded here: `(name, text, usable without ';')`.
const NAMED: [(&str, &str, bool); 46] = [
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
    ("lbrack", "[", false),
    ("rbrack", "]", false),
    ("Hat", "^", false),
    ("UnderBar", "_", false),
    ("DiacriticalGrave", "`", false),
    ("lbrace", "{", false),
    ("rbrace", "}", false),
    ("vert", "|", false),
    ("VerticalLine", "|", false),
    ("fjlig", "fj", false),
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

    /// `doc` through a [`MetaRewriter`] with `limit`, cut at `cuts` (offsets into `doc`, in
    /// any order); the output and the skips. Checks after every chunk that what is held back
    /// stays below the limit.
    fn stream(doc: &[u8], cuts: &[usize], limit: usize) -> (Vec<u8>, Vec<MetaSkip>) {
        let mut r = MetaRewriter::new(&admit_(), limit).expect("valid admit");
        let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(doc.len())).collect();
        points.sort_unstable();
        let mut out = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([doc.len()]) {
            out.extend(r.feed(&doc[from..p]));
            assert!(r.held.len() < r.tag_limit, "held {} bytes", r.held.len());
            from = p;
        }
        out.extend(r.finish());
        assert!(r.finish().is_empty());
        (out, r.take_skips())
    }

    fn stream_str(doc: &str, limit: usize) -> String {
        String::from_utf8(stream(doc.as_bytes(), &[], limit).0).expect("UTF-8 output")
    }

    /// A head with two policies (one nonce-based, written with character references and single
    /// quotes; one unquoted), a report-only one, and look-alikes in a comment and a script.
    const HEAD: &str = "<!doctype html><html><head><meta charset=utf-8>\
<meta http-equiv=\"Content-Security-Policy\" content=\"script-src &#39;nonce-cGFnZQ==&#39; &#39;strict-dynamic&#39;; connect-src https://api.example.invalid\">\
<!-- <meta http-equiv=content-security-policy content=\"connect-src 'none'\"> -->\
<script nonce=cGFnZQ==>document.write('<meta http-equiv=content-security-policy content=\"connect-src x\">')</script>\
<meta http-equiv=content-security-policy-report-only content=\"default-src 'none'\">\
<meta content=img-src&#x20;&apos;self&apos;&#59;&#x20;default-src&#x20;&quot;https://a.example/?a=1&amp;b=2&quot; http-equiv=CONTENT-SECURITY-POLICY>\
<title>t</title></head><body><meta http-equiv=content-security-policy content=\"connect-src 'none'\"><p>x</p></body></html>";

    fn head_rewritten() -> String {
        format!(
            "<!doctype html><html><head><meta charset=utf-8>\
<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'nonce-cGFnZQ==' 'strict-dynamic' 'nonce-{NONCE}'; connect-src https://api.example.invalid {POST}\">\
<!-- <meta http-equiv=content-security-policy content=\"connect-src 'none'\"> -->\
<script nonce=cGFnZQ==>document.write('<meta http-equiv=content-security-policy content=\"connect-src x\">')</script>\
<meta http-equiv=content-security-policy-report-only content=\"default-src 'none'\">\
<meta content=\"img-src 'self'; default-src &quot;https://a.example/?a=1&amp;b=2&quot;; script-src &quot;https://a.example/?a=1&amp;b=2&quot; {SCRIPT}; connect-src &quot;https://a.example/?a=1&amp;b=2&quot; {POST}\" http-equiv=CONTENT-SECURITY-POLICY>\
<title>t</title></head><body><meta http-equiv=content-security-policy content=\"connect-src 'none'\"><p>x</p></body></html>"
        )
    }

    #[test]
    fn every_policy_meta_of_the_head_is_widened_and_nothing_else_changes() {
        assert_eq!(stream_str(HEAD, META_TAG_LIMIT), head_rewritten());
        let (_, skips) = stream(HEAD.as_bytes(), &[], META_TAG_LIMIT);
        assert!(skips.is_empty(), "{skips:?}");
        // The one-piece form agrees, and a second pass changes nothing.
        let once = admit_in_meta(HEAD.as_bytes(), &admit_()).unwrap();
        assert_eq!(once, head_rewritten().as_bytes());
        assert_eq!(stream_str(&head_rewritten(), usize::MAX), head_rewritten());
    }

    #[test]
    fn every_split_of_the_head_gives_the_same_output() {
        let doc = HEAD.as_bytes();
        let whole = head_rewritten().into_bytes();
        for a in 0..=doc.len() {
            assert_eq!(stream(doc, &[a], META_TAG_LIMIT).0, whole, "cut at {a}");
        }
        for a in (0..=doc.len()).step_by(7) {
            for b in (a..=doc.len()).step_by(5) {
                assert_eq!(stream(doc, &[a, b], 200).0, whole, "cuts at {a}, {b}");
            }
        }
        // Byte by byte.
        let all: Vec<usize> = (0..doc.len()).collect();
        assert_eq!(stream(doc, &all, 200).0, whole);
    }

    #[test]
    fn only_an_unfinished_meta_tag_is_held_back() {
        let mut r = MetaRewriter::new(&admit_(), 1000).unwrap();
        assert_eq!(
            r.feed(b"<head><title>a<b</title><link rel=x"),
            b"<head><title>a<b</title><link rel=x"
        );
        assert_eq!(r.feed(b"><me"), b">");
        assert_eq!(r.feed(b"tadata x>"), b"<metadata x>");
        assert_eq!(
            r.feed(b"<meta http-equiv=content-security-policy content='connect-src"),
            b""
        );
        assert_eq!(
            String::from_utf8(r.feed(b" a.example'><p>")).unwrap(),
            format!("<meta http-equiv=content-security-policy content=\"connect-src a.example {POST}\"><p>")
        );
        assert_eq!(r.feed(b"<meta x"), b"");
        // After the body starts, everything passes unread.
        assert_eq!(r.feed(b"><body><meta"), b"<meta x><body><meta");
        assert_eq!(
            r.feed(b" http-equiv=content-security-policy content='connect-src a'>"),
            b" http-equiv=content-security-policy content='connect-src a'>"
        );
        assert!(r.finish().is_empty());
        assert!(r.take_skips().is_empty());
        // An unfinished tag at the end is passed on as it came.
        let mut r = MetaRewriter::new(&admit_(), 1000).unwrap();
        assert!(r
            .feed(b"<meta http-equiv=content-security-policy content='x")
            .is_empty());
        assert_eq!(
            r.finish(),
            b"<meta http-equiv=content-security-policy content='x"
        );
        assert_eq!(r.feed(b"'>"), b"'>");
    }

    #[test]
    fn a_meta_tag_longer_than_the_limit_is_passed_on_unread_and_reported() {
        let prefix = "<head><meta http-equiv=content-security-policy content=\"connect-src ";
        let tag = format!(
            "<meta http-equiv=content-security-policy content=\"connect-src {}\">",
            "a.example ".repeat(20)
        );
        let doc = format!("<head>{tag}<p>");
        // A tag of exactly the limit is read.
        let (out, skips) = stream(doc.as_bytes(), &[], tag.len());
        assert!(String::from_utf8(out).unwrap().contains(POST));
        assert!(skips.is_empty());
        // One byte longer than the limit: passed on as it came, reported, whatever the chunks.
        for cuts in [vec![], vec![prefix.len()], vec![10, 70, 71, 200]] {
            let (out, skips) = stream(doc.as_bytes(), &cuts, tag.len() - 1);
            assert_eq!(out, doc.as_bytes(), "{cuts:?}");
            assert_eq!(
                skips,
                [MetaSkip::TooLong {
                    at: 6,
                    limit: tag.len() - 1
                }]
            );
        }
        // A tag that never ends holds back no more than the limit, and the next one is read.
        let mut r = MetaRewriter::new(&admit_(), 100).unwrap();
        let mut out = r.feed(b"<meta content='");
        for _ in 0..100 {
            out.extend(r.feed(b"xxxxxxxxxx"));
            assert!(r.held.len() < 100);
        }
        out.extend(
            r.feed(b"'><meta http-equiv=content-security-policy content=\"connect-src 'none'\">"),
        );
        out.extend(r.finish());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with(&format!("content=\"connect-src {POST}\">")),
            "{out}"
        );
        assert_eq!(r.take_skips().len(), 1);
    }

    #[test]
    fn unreadable_policies_are_left_as_written_and_reported() {
        for doc in [
            "<meta http-equiv=content-security-policy content=\"default-src &hellip;\">",
            "<meta http-equiv=content-security-policy content=\"default-src 'self' h\u{e9}.example\">",
            "<meta http-equiv=content-security-policy content=\"default-src &ampx\">",
        ] {
            let (out, skips) = stream(doc.as_bytes(), &[], META_TAG_LIMIT);
            assert_eq!(out, doc.as_bytes());
            assert_eq!(skips, [MetaSkip::Unreadable { at: 0 }], "{doc}");
        }
        // A meta that is no policy is not reported, whatever its text.
        for doc in [
            "<meta name=description content=\"caf\u{e9} &hellip;\">",
            "<meta http-equiv=content-security-policy&hellip; content=\"default-src 'none'\">",
            "<meta http-equiv=Content-Security-Policy-Report-Only content=\"default-src 'none'\">",
            "<meta http-equiv=content-security-policy content>",
            "<meta http-equiv=content-security-policy>",
        ] {
            assert_eq!(
                stream(doc.as_bytes(), &[], META_TAG_LIMIT),
                (doc.as_bytes().to_vec(), vec![])
            );
        }
    }

    #[test]
    fn the_keyword_may_have_surrounding_space_and_any_case() {
        assert_eq!(
            stream_str("<meta http-equiv=' Content-SECURITY-policy\n' content=\"connect-src 'self'\">", 500),
            format!("<meta http-equiv=' Content-SECURITY-policy\n' content=\"connect-src 'self' {POST}\">")
        );
        // A nonce-based policy gets the same nonce as the header, re-encoded where needed.
        assert_eq!(
            stream_str("<meta http-equiv=content-security-policy content='script-src &apos;strict-dynamic&apos; \"x\"'>", 500),
            format!("<meta http-equiv=content-security-policy content=\"script-src 'strict-dynamic' &quot;x&quot; 'nonce-{NONCE}'\">")
        );
    }

    /// Pieces of HTML around `<meta>` policies.
    fn html_fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"<!doctype html><html><head>".to_vec()),
            Just(b"<meta charset=utf-8>".to_vec()),
            Just(b"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'\">".to_vec()),
            Just(b"<META HTTP-EQUIV='content-security-policy' CONTENT='script-src &#39;nonce-YQ&#39; &#39;strict-dynamic&#39;; connect-src a.example'>".to_vec()),
            Just(b"<meta content=connect-src&#x20;&#39;none&#39; http-equiv=content-security-policy>".to_vec()),
            Just(b"<meta http-equiv=content-security-policy content=\"img-src &quot;x&quot; a&amp;b; script-src 'self'\"/>".to_vec()),
            Just(b"<meta http-equiv=content-security-policy-report-only content=\"default-src 'none'\">".to_vec()),
            Just(b"<meta http-equiv=content-security-policy content=\"default-src &hellip;\">".to_vec()),
            Just(b"<!-- <meta http-equiv=content-security-policy content=\"default-src 'none'\"> -->".to_vec()),
            Just(b"<script>'<meta http-equiv=content-security-policy content=\"default-src x\">'</script>".to_vec()),
            Just(b"<template><meta http-equiv=content-security-policy content=\"connect-src 'none'\"></template>".to_vec()),
            Just(b"<body>".to_vec()),
            Just(b"<meta".to_vec()),
            Just(b"<me".to_vec()),
            Just(b" http-equiv=content-security-policy".to_vec()),
            Just(b" content='connect-src x'".to_vec()),
            Just(b"<".to_vec()),
            Just(b">".to_vec()),
            Just(b"'\"=/ ".to_vec()),
            "[a-z <>/!='\"&;#-]{0,12}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..8),
        ]
    }

    fn html_document() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(html_fragment(), 0..20).prop_map(|f| f.concat())
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
        fn chunking_never_changes_the_output(
            doc in html_document(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            limit in prop_oneof![1usize..160, Just(usize::MAX)],
        ) {
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
            let whole = stream(&doc, &[], limit);
            prop_assert_eq!(stream(&doc, &cuts, limit), whole.clone());
            // Only `<meta …>` tags are ever reported.
            for skip in &whole.1 {
                let (MetaSkip::TooLong { at, .. } | MetaSkip::Unreadable { at }) = *skip;
                prop_assert!(
                    doc.get(at..at + 5).is_some_and(|t| t.eq_ignore_ascii_case(b"<meta")),
                    "{:?}", skip
                );
            }
            if limit == usize::MAX {
                prop_assert_eq!(admit_in_meta(&doc, &admit_()).unwrap(), whole.0.clone());
                // Once widened, widened: a second pass changes nothing.
                prop_assert_eq!(stream(&whole.0, &[], limit).0, whole.0);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_in_the_stream(
            doc in prop::collection::vec(any::<u8>(), 0..600),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            limit in 0usize..64,
        ) {
            let mut r = MetaRewriter::new(&admit_(), limit).expect("valid admit");
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
            points.sort_unstable();
            let mut from = 0;
            for p in points.into_iter().chain([doc.len()]) {
                let _ = r.feed(&doc[from..p]);
                prop_assert!(r.held.len() < r.tag_limit);
                from = p;
            }
            let _ = r.finish();
            let _ = r.take_skips();
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
