//! Streaming insertion of the recorder's script element into HTML responses.
//!
//! [`Injector`] looks through the start of a (decompressed) body for the place to insert one
//! piece of markup, holding bytes back only until it has decided; everything after the
//! insertion point streams through unbuffered. Where it inserts, in order of preference:
//!
//! 1. right after the `>` of the first `<head …>` start tag (`<header>` is not `<head>`;
//!    attribute values may contain `>`);
//! 2. right after the `<html …>` start tag;
//! 3. right after the first `<!doctype …>`;
//! 4. at the very start, after a UTF-8 byte order mark if there is one.
//!
//! Only the first `scan_limit` bytes are looked through for `<head`; a `<body>`, `<frameset>`
//! or `<plaintext>` start tag ends the search early (a later `<head>` would be ignored by
//! browsers anyway). Either way, and when the body ends first, rules 2–4 decide from what was
//! seen. Comments, doctypes, processing instructions and the contents of raw-text elements
//! (`<script>`, `<style>`, `<title>`, …) are skipped, never searched for tags. The result does
//! not depend on how the body is split into chunks.
//!
//! Given a [`MetaRewriter`] ([`Injector::with_meta_csp`]), the injector's output also passes
//! through it, so that a policy the page sets in a `<meta http-equiv="Content-Security-Policy">`
//! admits the inserted script and the recorder's endpoint like the header policies do (same
//! nonce, same URLs). It holds back at most one unfinished `<meta …>` start tag, up to its
//! limit, never the document.
//!
//! [`charset_allows_injection`] tells whether inserting ASCII markup into a body is safe at
//! all: not for UTF-16 or UTF-32 bodies, or ones in a stateful 7-bit encoding such as
//! ISO-2022-KR.
//!
//! Sans-I/O: bytes in, bytes out; never panics, whatever the input.

use super::csp::{MetaRewriter, MetaSkip};

/// Room for the longest element name the scanner tells apart (`plaintext`), plus one.
const NAME_CAP: usize = 10;

/// The UTF-8 byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Start tags that end the search for `<head`: the head can no longer be opened after them.
pub(crate) const STOP_TAGS: [&[u8]; 3] = [b"body", b"frameset", b"plaintext"];

/// Elements whose contents are text up to their end tag (raw text and escapable raw text).
const RAW_TEXT: [&[u8]; 9] = [
    b"script",
    b"style",
    b"title",
    b"textarea",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
    b"noscript",
];

/// Inserts one piece of markup into an HTML body as it streams through; see the module docs
/// for where.
#[derive(Debug, Clone)]
pub struct Injector {
    /// The markup to insert.
    tag: Vec<u8>,
    /// How many bytes are looked through for `<head` (at least the length of a BOM).
    scan_limit: usize,
    /// Bytes held back since the start of the body while undecided.
    held: Vec<u8>,
    /// Tokenizer state over `held`.
    scanner: Scanner,
    /// End (exclusive offset) of the first `<html>` start tag seen.
    html_end: Option<usize>,
    /// End (exclusive offset) of the first doctype seen.
    doctype_end: Option<usize>,
    /// Whether the tag has been inserted.
    inserted: bool,
    /// Rewrites the page's `<meta>` policies in what the injector releases.
    meta: Option<MetaRewriter>,
}

impl Injector {
    /// An injector that inserts `tag`, the complete markup (e.g.
    /// `<script src="/__psmgate/recorder.js" nonce="…"></script>`), looking through the first
    /// `scan_limit` bytes for `<head` (values below 3 count as 3, the length of a UTF-8 BOM).
    pub fn new(tag: Vec<u8>, scan_limit: usize) -> Self {
        Self {
            tag,
            scan_limit: scan_limit.max(UTF8_BOM.len()),
            held: Vec::new(),
            scanner: Scanner::new(),
            html_end: None,
            doctype_end: None,
            inserted: false,
            meta: None,
        }
    }

    /// This injector with every byte it releases passed through `meta` as well, which widens
    /// the page's `<meta http-equiv="Content-Security-Policy">` policies (see
    /// [`MetaRewriter`]).
    pub fn with_meta_csp(mut self, meta: MetaRewriter) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Feeds the next chunk of the body; returns the bytes ready to be sent now, which is empty
    /// while the insertion point is still undecided (the bytes are held back, at most
    /// `scan_limit` of them). With a [`MetaRewriter`], an unfinished `<meta …>` start tag at
    /// the end of what is released is held back too, up to the rewriter's limit.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let out = self.insert(chunk);
        match &mut self.meta {
            Some(meta) => meta.feed_owned(out),
            None => out,
        }
    }

    /// The body ended: returns the bytes still held back, with the tag inserted by the fallback
    /// rules if it has not been yet (an empty body becomes just the tag). Later calls return
    /// nothing.
    pub fn finish(&mut self) -> Vec<u8> {
        let out = if self.inserted {
            Vec::new()
        } else {
            self.insert_at(self.fallback())
        };
        match &mut self.meta {
            Some(meta) => {
                let mut out = meta.feed_owned(out);
                out.extend(meta.finish());
                out
            }
            None => out,
        }
    }

    /// The `<meta>` policies the [`MetaRewriter`] had to leave as they were since the last
    /// call (empty without one).
    pub fn take_meta_skips(&mut self) -> Vec<MetaSkip> {
        self.meta
            .as_mut()
            .map(MetaRewriter::take_skips)
            .unwrap_or_default()
    }

    /// [`Injector::feed`] without the `<meta>` rewriting.
    fn insert(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.inserted {
            return chunk.to_vec();
        }
        let from = self.held.len();
        self.held.extend_from_slice(chunk);
        for at in from..self.held.len() {
            if at >= self.scan_limit {
                return self.insert_at(self.fallback());
            }
            match self.scanner.step(self.held[at], at) {
                Some(Token::StartTag(t)) if t.is(b"head") => return self.insert_at(t.end),
                Some(Token::StartTag(t)) if STOP_TAGS.iter().any(|n| t.is(n)) => {
                    return self.insert_at(self.fallback());
                }
                Some(Token::StartTag(t)) if t.is(b"html") => {
                    self.html_end.get_or_insert(t.end);
                }
                Some(Token::Doctype { end }) => {
                    self.doctype_end.get_or_insert(end);
                }
                _ => {}
            }
        }
        if self.held.len() >= self.scan_limit {
            return self.insert_at(self.fallback());
        }
        Vec::new()
    }

    /// Whether the tag has been inserted.
    pub fn inserted(&self) -> bool {
        self.inserted
    }

    /// Where to insert when there is no `<head>`: after `<html>`, else after the doctype, else
    /// at the start (after a BOM).
    fn fallback(&self) -> usize {
        self.html_end.or(self.doctype_end).unwrap_or_else(|| {
            if self.held.starts_with(UTF8_BOM) {
                UTF8_BOM.len()
            } else {
                0
            }
        })
    }

    /// Releases everything held, with the tag at `at` (clamped to what is held).
    fn insert_at(&mut self, at: usize) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        let at = at.min(held.len());
        let mut out = Vec::with_capacity(held.len() + self.tag.len());
        out.extend_from_slice(&held[..at]);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&held[at..]);
        self.inserted = true;
        out
    }
}

/// Whether ASCII markup can be inserted into a body with this `Content-Type` header value
/// whose first bytes are `first_bytes`: false for UTF-16 and UTF-32 (by byte order mark or
/// `charset` parameter) and for the stateful 7-bit encodings browsers refuse (ISO-2022-KR,
/// ISO-2022-CN, HZ); true for ASCII-compatible charsets and when the charset is unknown or
/// absent. A byte order mark wins over the header, as in browsers.
pub fn charset_allows_injection(content_type: Option<&str>, first_bytes: &[u8]) -> bool {
    if first_bytes.starts_with(UTF8_BOM) {
        return true;
    }
    if first_bytes.starts_with(b"\xFF\xFE")
        || first_bytes.starts_with(b"\xFE\xFF")
        || first_bytes.starts_with(b"\x00\x00\xFE\xFF")
    {
        return false;
    }
    let Some(charset) = content_type.and_then(charset_param) else {
        return true;
    };
    let charset = charset.to_ascii_lowercase();
    // UTF-16 and UTF-32 under their usual names and the encoding standard's labels
    // ("unicode-1-1-utf-8" is UTF-8, hence no prefix match on "unicode").
    const WIDE_PREFIXES: [&str; 7] = [
        "utf-16",
        "utf16",
        "utf-32",
        "utf32",
        "ucs-2",
        "ucs-4",
        "iso-10646-ucs",
    ];
    const WIDE_LABELS: [&str; 4] = ["unicode", "csunicode", "unicodefeff", "unicodefffe"];
    const STATEFUL: [&str; 6] = [
        "iso-2022-kr",
        "csiso2022kr",
        "iso-2022-cn",
        "hz-gb-2312",
        "hz",
        "replacement",
    ];
    let wide = WIDE_PREFIXES.iter().any(|p| charset.starts_with(p))
        || WIDE_LABELS.contains(&charset.as_str());
    let stateful = STATEFUL
        .iter()
        .any(|p| charset == *p || charset.starts_with(&format!("{p}-")));
    !(wide || stateful)
}

/// The value of the `charset` parameter of a media type, unquoted and trimmed.
fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .map_or(value, |v| v.split('"').next().unwrap_or(v));
        Some(value.trim())
    })
}

/// What the [`Scanner`] reports.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Token {
    /// A complete start tag.
    StartTag(StartTag),
    /// A complete `<!doctype …>`; `end` is the offset just past its `>`.
    Doctype {
        /// Offset just past the `>`.
        end: usize,
    },
}

/// A start tag the [`Scanner`] has read to its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartTag {
    /// The element name, lowercase (only the first [`NAME_CAP`] bytes).
    name: [u8; NAME_CAP],
    /// The length of the whole name.
    name_len: usize,
    /// Offset of the `<`.
    pub(crate) start: usize,
    /// Offset just past the `>`.
    pub(crate) end: usize,
}

impl StartTag {
    /// Whether this is a `name` element (`name` in lowercase).
    pub(crate) fn is(&self, name: &[u8]) -> bool {
        self.name_len == name.len() && self.name.get(..self.name_len) == Some(name)
    }
}

/// Tokenizer states, after the HTML tokenizer's (data, tags, attributes, comments, doctype,
/// raw text); character references and script escapes do not matter for finding tags here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    TagOpen,
    EndTagOpen,
    TagName,
    BeforeAttrName,
    AttrName,
    AfterAttrName,
    BeforeAttrValue,
    AttrValueDouble,
    AttrValueSingle,
    AttrValueUnquoted,
    AfterAttrValueQuoted,
    MarkupDeclaration,
    CommentStart,
    CommentStartDash,
    Comment,
    CommentEndDash,
    CommentEnd,
    CommentEndBang,
    BogusComment,
    Doctype,
    RawText,
    PlainText,
}

/// A byte-at-a-time HTML tokenizer that reports start tags and doctypes, so that the same
/// answer comes out however the input is split.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    state: State,
    /// Offset of the `<` of the tag being read.
    tag_start: usize,
    /// Whether the tag being read is an end tag.
    end_tag: bool,
    name: [u8; NAME_CAP],
    name_len: usize,
    /// Bytes after `<!` while telling a comment from a doctype from a bogus comment.
    decl: [u8; 7],
    decl_len: usize,
    /// The raw-text element whose end tag is awaited, and how much of `</name` has matched.
    raw: [u8; NAME_CAP],
    raw_len: usize,
    raw_matched: usize,
}

impl Scanner {
    /// A scanner at the start of a document.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Data,
            tag_start: 0,
            end_tag: false,
            name: [0; NAME_CAP],
            name_len: 0,
            decl: [0; 7],
            decl_len: 0,
            raw: [0; NAME_CAP],
            raw_len: 0,
            raw_matched: 0,
        }
    }

    /// Consumes byte `b` found at offset `at`.
    pub(crate) fn step(&mut self, b: u8, at: usize) -> Option<Token> {
        use State::*;
        match self.state {
            Data => {
                if b == b'<' {
                    self.open(at);
                }
            }
            TagOpen => match b {
                b'!' => {
                    self.decl_len = 0;
                    self.state = MarkupDeclaration;
                }
                b'/' => self.state = EndTagOpen,
                b'?' => self.state = BogusComment,
                b'<' => self.open(at),
                _ if b.is_ascii_alphabetic() => self.begin_name(b, false),
                _ => self.state = Data,
            },
            EndTagOpen => match b {
                b'>' => self.state = Data,
                _ if b.is_ascii_alphabetic() => self.begin_name(b, true),
                _ => self.state = BogusComment,
            },
            TagName => match b {
                b'>' => return self.emit(at),
                b'/' => self.state = BeforeAttrName,
                _ if is_space(b) => self.state = BeforeAttrName,
                _ => self.push_name(b),
            },
            BeforeAttrName => match b {
                b'>' => return self.emit(at),
                b'/' => {}
                _ if is_space(b) => {}
                _ => self.state = AttrName,
            },
            AttrName => match b {
                b'>' => return self.emit(at),
                b'/' => self.state = BeforeAttrName,
                b'=' => self.state = BeforeAttrValue,
                _ if is_space(b) => self.state = AfterAttrName,
                _ => {}
            },
            AfterAttrName => match b {
                b'>' => return self.emit(at),
                b'/' => self.state = BeforeAttrName,
                b'=' => self.state = BeforeAttrValue,
                _ if is_space(b) => {}
                _ => self.state = AttrName,
            },
            BeforeAttrValue => match b {
                b'>' => return self.emit(at),
                b'"' => self.state = AttrValueDouble,
                b'\'' => self.state = AttrValueSingle,
                _ if is_space(b) => {}
                _ => self.state = AttrValueUnquoted,
            },
            AttrValueDouble => {
                if b == b'"' {
                    self.state = AfterAttrValueQuoted;
                }
            }
            AttrValueSingle => {
                if b == b'\'' {
                    self.state = AfterAttrValueQuoted;
                }
            }
            AttrValueUnquoted => match b {
                b'>' => return self.emit(at),
                _ if is_space(b) => self.state = BeforeAttrName,
                _ => {}
            },
            AfterAttrValueQuoted => match b {
                b'>' => return self.emit(at),
                b'/' => self.state = BeforeAttrName,
                _ if is_space(b) => self.state = BeforeAttrName,
                _ => self.state = AttrName,
            },
            MarkupDeclaration => self.declaration(b),
            CommentStart => match b {
                b'-' => self.state = CommentStartDash,
                b'>' => self.state = Data,
                _ => self.state = Comment,
            },
            CommentStartDash => match b {
                b'-' => self.state = CommentEnd,
                b'>' => self.state = Data,
                _ => self.state = Comment,
            },
            Comment => {
                if b == b'-' {
                    self.state = CommentEndDash;
                }
            }
            CommentEndDash => {
                self.state = if b == b'-' { CommentEnd } else { Comment };
            }
            CommentEnd => match b {
                b'>' => self.state = Data,
                b'!' => self.state = CommentEndBang,
                b'-' => {}
                _ => self.state = Comment,
            },
            CommentEndBang => match b {
                b'>' => self.state = Data,
                b'-' => self.state = CommentEndDash,
                _ => self.state = Comment,
            },
            BogusComment => {
                if b == b'>' {
                    self.state = Data;
                }
            }
            Doctype => {
                if b == b'>' {
                    self.state = Data;
                    return Some(Token::Doctype { end: at + 1 });
                }
            }
            RawText => self.raw_text(b),
            PlainText => {}
        }
        None
    }

    /// The offset of the `<` of the start tag being read when that tag is, or may still turn out
    /// to be, a `name` element (`name` in lowercase); `None` outside start tags.
    pub(crate) fn open_start_tag(&self, name: &[u8]) -> Option<usize> {
        use State::*;
        let so_far = self.name.get(..self.name_len);
        let open = match self.state {
            TagOpen => true,
            TagName => !self.end_tag && so_far.is_some_and(|n| name.starts_with(n)),
            BeforeAttrName | AttrName | AfterAttrName | BeforeAttrValue | AttrValueDouble
            | AttrValueSingle | AttrValueUnquoted | AfterAttrValueQuoted => {
                !self.end_tag && so_far == Some(name)
            }
            _ => false,
        };
        open.then_some(self.tag_start)
    }

    /// A `<` in data: a tag may start here.
    fn open(&mut self, at: usize) {
        self.tag_start = at;
        self.state = State::TagOpen;
    }

    fn begin_name(&mut self, b: u8, end_tag: bool) {
        self.end_tag = end_tag;
        self.name_len = 0;
        self.push_name(b);
        self.state = State::TagName;
    }

    fn push_name(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    /// The byte after `<!` and those following it: `--` opens a comment, `doctype` (any case)
    /// a doctype, anything else is a bogus comment up to the next `>`.
    fn declaration(&mut self, b: u8) {
        if let Some(slot) = self.decl.get_mut(self.decl_len) {
            *slot = b.to_ascii_lowercase();
            self.decl_len += 1;
        }
        let seen = self.decl.get(..self.decl_len).unwrap_or_default();
        self.state = if seen == b"--" {
            State::CommentStart
        } else if seen == b"doctype" {
            State::Doctype
        } else if b"--".starts_with(seen) || b"doctype".starts_with(seen) {
            State::MarkupDeclaration
        } else if b == b'>' {
            State::Data
        } else {
            State::BogusComment
        };
    }

    /// The `>` of a tag: start tags are reported; raw-text elements switch to looking for their
    /// end tag.
    fn emit(&mut self, at: usize) -> Option<Token> {
        self.state = State::Data;
        if self.end_tag {
            return None;
        }
        let tag = StartTag {
            name: self.name,
            name_len: self.name_len,
            start: self.tag_start,
            end: at + 1,
        };
        if tag.is(b"plaintext") {
            self.state = State::PlainText;
        } else if RAW_TEXT.iter().any(|n| tag.is(n)) {
            self.raw = self.name;
            self.raw_len = self.name_len;
            self.raw_matched = 0;
            self.state = State::RawText;
        }
        Some(Token::StartTag(tag))
    }

    /// Inside a raw-text element: looks for `</name` followed by a space, `/` or `>`.
    fn raw_text(&mut self, b: u8) {
        let pattern_len = 2 + self.raw_len;
        if self.raw_matched < pattern_len {
            let expected = match self.raw_matched {
                0 => b'<',
                1 => b'/',
                i => self.raw.get(i - 2).copied().unwrap_or(0),
            };
            if b.to_ascii_lowercase() == expected {
                self.raw_matched += 1;
            } else {
                self.raw_matched = usize::from(b == b'<');
            }
            return;
        }
        if b == b'>' || b == b'/' || is_space(b) {
            self.end_tag = true;
            if b == b'>' {
                self.state = State::Data;
            } else {
                self.state = State::BeforeAttrName;
            }
        } else {
            self.raw_matched = usize::from(b == b'<');
        }
    }
}

/// HTML's ASCII whitespace (with CR, which input preprocessing turns into LF).
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TAG: &[u8] = b"<script src=\"/__psmgate/recorder.js\"></script>";

    fn once(doc: &[u8], limit: usize) -> Vec<u8> {
        let mut i = Injector::new(TAG.to_vec(), limit);
        let mut out = i.feed(doc);
        out.extend(i.finish());
        assert!(i.inserted());
        out
    }

    /// `doc` with the tag inserted at the first occurrence of `marker`'s end.
    fn after(doc: &str, marker: &str) -> Vec<u8> {
        let at = doc.find(marker).expect("marker in document") + marker.len();
        [&doc.as_bytes()[..at], TAG, &doc.as_bytes()[at..]].concat()
    }

    fn check(doc: &str, marker: &str) {
        assert_eq!(
            String::from_utf8_lossy(&once(doc.as_bytes(), 64 * 1024)),
            String::from_utf8_lossy(&after(doc, marker)),
            "document: {doc:?}"
        );
    }

    #[test]
    fn inserts_after_the_head_start_tag() {
        check(
            "<!DOCTYPE html><html lang=en><head><title>x</title></head><body></body></html>",
            "<head>",
        );
        check("<HTML><HEAD PROFILE=x>t", "<HEAD PROFILE=x>");
        check("<head\n>x", "<head\n>");
        check("<head/>x", "<head/>");
        check("<html><head data-x='a>b' title=\"c>d\" e=f>x", "e=f>");
    }

    #[test]
    fn header_and_lookalikes_are_not_head() {
        check("<html><header>h</header><head>x", "<head>");
        check("<html><headx><head>", "<head>");
        check("<html class=a><header>h</header>", "<html class=a>");
        check("<html><p>&lt;head&gt;</p>", "<html>");
    }

    #[test]
    fn comments_and_raw_text_are_skipped() {
        check("<!-- <head> --><html><head>x", "<html><head>");
        check("<!--> <head>", "<!--> <head>");
        check("<!---> <head>", "<!---> <head>");
        check("<!-- a -- b --!><head>", "<head>");
        check(
            "<html><!-- x --><script>if (a<b) d('<head>')</script><head>",
            "</script><head>",
        );
        check(
            "<html><script>x='</scripty><head>'</SCRIPT ><head>",
            "</SCRIPT ><head>",
        );
        check("<html><title><head></title><head>", "</title><head>");
        check("<?xml version=\"1.0\"?><!x <head> ><head>", "><head>");
    }

    #[test]
    fn falls_back_to_html_then_doctype_then_start() {
        check(
            "<!doctype html><html dir=\"ltr\"><body>x",
            "<html dir=\"ltr\">",
        );
        check("<!doctype html><p>hello", "<!doctype html>");
        check(
            "<!DocType html SYSTEM \"about:legacy-compat\">x",
            "compat\">",
        );
        check("hello", "");
        assert_eq!(once(b"", 100), TAG);
        let bom = "\u{FEFF}<p>x";
        assert_eq!(once(bom.as_bytes(), 100), after(bom, "\u{FEFF}"));
        // A body start tag ends the search: a later head is not used.
        check("<html><body><head>", "<html>");
    }

    #[test]
    fn the_scan_limit_falls_back_on_what_was_seen() {
        let pad = "x".repeat(100);
        let doc = format!("<!doctype html><html>{pad}<head>");
        // The head's `>` is the last byte scanned.
        assert_eq!(once(doc.as_bytes(), doc.len()), after(&doc, "<head>"));
        assert_eq!(once(doc.as_bytes(), doc.len() - 1), after(&doc, "<html>"));
        assert_eq!(once(doc.as_bytes(), 20), after(&doc, "<!doctype html>"));
        assert_eq!(once(doc.as_bytes(), 0), [TAG, doc.as_bytes()].concat());
    }

    #[test]
    fn streams_after_the_insertion_point_and_holds_back_before() {
        let mut i = Injector::new(TAG.to_vec(), 1000);
        assert!(i.feed(b"<!doctype html><html><he").is_empty());
        assert!(!i.inserted());
        let out = i.feed(b"ad>abc");
        assert!(i.inserted());
        assert_eq!(out, [b"<!doctype html><html><head>", TAG, b"abc"].concat());
        assert_eq!(i.feed(b"rest"), b"rest");
        assert!(i.finish().is_empty());
        // Without a head, bytes are released once the limit is reached.
        let mut i = Injector::new(TAG.to_vec(), 8);
        assert!(i.feed(b"<p>ab").is_empty());
        assert_eq!(i.feed(b"cde"), [TAG, b"<p>abcde"].concat());
        assert_eq!(i.feed(b"f"), b"f");
    }

    #[test]
    fn charsets() {
        let ok = |ct: Option<&str>| charset_allows_injection(ct, b"<html>");
        for ct in [
            None,
            Some("text/html"),
            Some("text/html; charset=utf-8"),
            Some("text/html;charset=\"ISO-8859-1\""),
            Some("text/html; charset=windows-1252"),
            Some("text/html; charset=Shift_JIS"),
            Some("text/html; charset=euc-kr"),
            Some("text/html; charset=gb18030"),
            Some("text/html; charset=big5"),
            Some("text/html; charset=koi8-r"),
            Some("text/html; charset=x-made-up"),
            Some("text/html; charset=unicode-1-1-utf-8"),
        ] {
            assert!(ok(ct), "{ct:?}");
        }
        for ct in [
            "text/html; charset=UTF-16",
            "text/html; charset=utf-16le",
            "text/html; foo=bar; CHARSET = \"utf-32be\"",
            "text/html; charset=ucs-2",
            "text/html; charset=unicodeFFFE",
            "text/html; charset=iso-2022-kr",
        ] {
            assert!(!ok(Some(ct)), "{ct}");
        }
        assert!(!charset_allows_injection(None, b"\xFF\xFE<\x00"));
        assert!(!charset_allows_injection(
            Some("text/html; charset=utf-8"),
            b"\xFE\xFF\x00<"
        ));
        assert!(!charset_allows_injection(None, b"\x00\x00\xFE\xFF"));
        // A UTF-8 BOM wins over the header, as in browsers.
        assert!(charset_allows_injection(
            Some("text/html; charset=utf-16"),
            b"\xEF\xBB\xBF<html>"
        ));
    }

    fn meta_rewriter() -> MetaRewriter {
        let admit = crate::web::csp::Admit {
            script_url: "https://h.example/__psmgate/recorder.js",
            post_url: "https://h.example/__psmgate/events",
            nonce: "bm9uY2U=",
        };
        MetaRewriter::new(&admit, 128).expect("valid admit")
    }

    /// `doc` through an injector with a meta rewriter, cut at `cuts` (sorted offsets).
    fn with_meta(doc: &[u8], cuts: &[usize], limit: usize) -> Vec<u8> {
        let mut i = Injector::new(TAG.to_vec(), limit).with_meta_csp(meta_rewriter());
        let mut out = Vec::new();
        let mut from = 0;
        for &p in cuts.iter().chain([&doc.len()]) {
            out.extend(i.feed(&doc[from..p]));
            from = p;
        }
        out.extend(i.finish());
        assert!(i.finish().is_empty());
        out
    }

    #[test]
    fn meta_policies_before_and_after_the_insertion_point_are_widened() {
        let doc = "<!doctype html><meta http-equiv=content-security-policy content=\"script-src 'nonce-YQ'\">\
<head><meta http-equiv=Content-Security-Policy content='connect-src &apos;self&apos;'></head><body>x";
        let expected = [
            "<!doctype html><meta http-equiv=content-security-policy content=\"script-src 'nonce-YQ' 'nonce-bm9uY2U='\">\
<head>",
            std::str::from_utf8(TAG).unwrap(),
            "<meta http-equiv=Content-Security-Policy content=\"connect-src 'self' https://h.example/__psmgate/events\"></head><body>x",
        ]
        .concat();
        for cut in 0..=doc.len() {
            let out = with_meta(doc.as_bytes(), &[cut], 1000);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "cut at {cut}");
        }
        let mut i = Injector::new(TAG.to_vec(), 1000).with_meta_csp(meta_rewriter());
        let _ = i.feed(doc.as_bytes());
        let _ = i.finish();
        assert!(i.take_meta_skips().is_empty());
        // Without a rewriter nothing but the tag is added.
        assert_eq!(once(doc.as_bytes(), 1000), after(doc, "<head>"));
    }

    #[test]
    fn meta_skips_are_reported_through_the_injector() {
        let long = format!(
            "<head><meta http-equiv=content-security-policy content=\"connect-src {}\">",
            "x".repeat(200)
        );
        let mut i = Injector::new(TAG.to_vec(), 1000).with_meta_csp(meta_rewriter());
        let mut out = i.feed(long.as_bytes());
        out.extend(i.finish());
        assert_eq!(out, after(&long, "<head>"));
        assert_eq!(i.take_meta_skips().len(), 1);
        assert!(i.take_meta_skips().is_empty());
        assert!(Injector::new(TAG.to_vec(), 10).take_meta_skips().is_empty());
    }

    /// Pieces of HTML that exercise the scanner's states.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"<!doctype html>".to_vec()),
            Just(b"<!DOCTYPE HTML PUBLIC \"x\">".to_vec()),
            Just(b"<html lang=\"en\">".to_vec()),
            Just(b"<HTML>".to_vec()),
            Just(b"<head>".to_vec()),
            Just(b"<HeAd data-a='x>y' b=\"q>r\" c=d>".to_vec()),
            Just(b"<header>".to_vec()),
            Just(b"</head>".to_vec()),
            Just(b"<body>".to_vec()),
            Just(b"<!-- <head> -->".to_vec()),
            Just(b"<!-->".to_vec()),
            Just(b"<!--".to_vec()),
            Just(b"-->".to_vec()),
            Just(b"<script>".to_vec()),
            Just(b"</script>".to_vec()),
            Just(b"<title>".to_vec()),
            Just(b"<?php ?>".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"<".to_vec()),
            Just(b">".to_vec()),
            Just(b"'\"=/ ".to_vec()),
            "[a-z <>/!=-]{0,12}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..8),
        ]
    }

    fn document() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(fragment(), 0..24).prop_map(|f| f.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn chunking_never_changes_the_result(
            doc in document(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            limit in 0usize..400,
        ) {
            let whole = once(&doc, limit);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
            points.sort_unstable();
            let mut i = Injector::new(TAG.to_vec(), limit);
            let mut out = Vec::new();
            let mut from = 0;
            for p in points.into_iter().chain([doc.len()]) {
                let piece = i.feed(&doc[from..p]);
                // Nothing is held back past the limit.
                prop_assert!(i.inserted() || p < limit.max(3));
                out.extend(piece);
                from = p;
            }
            out.extend(i.finish());
            prop_assert_eq!(out, whole);
        }

        #[test]
        fn chunking_never_changes_the_result_with_meta_policies(
            doc in document(),
            metas in prop::collection::vec(prop_oneof![
                Just("<meta http-equiv=content-security-policy content=\"connect-src 'self'\">"),
                Just("<META HTTP-EQUIV='Content-Security-Policy' CONTENT='script-src &#39;strict-dynamic&#39;'>"),
                Just("<meta http-equiv=content-security-policy content=connect-src&#x20;a.example>"),
                Just("<meta http-equiv=content-security-policy-report-only content=\"connect-src 'none'\">"),
            ], 0..4),
            at in any::<prop::sample::Index>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            limit in 0usize..400,
        ) {
            let at = at.index(doc.len() + 1);
            let doc = [&doc[..at], metas.concat().as_bytes(), &doc[at..]].concat();
            let whole = with_meta(&doc, &[], limit);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
            points.sort_unstable();
            prop_assert_eq!(with_meta(&doc, &points, limit), whole);
        }

        #[test]
        fn the_output_is_the_input_with_the_tag_inserted_once(doc in document(), limit in 0usize..400) {
            let out = once(&doc, limit);
            prop_assert_eq!(out.len(), doc.len() + TAG.len());
            let ok = (0..=doc.len()).any(|at| {
                out[..at] == doc[..at] && out[at..at + TAG.len()] == *TAG && out[at + TAG.len()..] == doc[at..]
            });
            prop_assert!(ok);
        }

        #[test]
        fn a_head_tag_within_the_limit_is_found(
            before in "[a-z ]{0,40}",
            attrs in "( [a-z]{1,5}(=\"[a-z<>' ]{0,6}\"|='[a-z<>\" ]{0,6}'|=[a-z]{1,4})?){0,3}",
            after_head in "[a-z<>/ ]{0,40}",
        ) {
            let doc = format!("<!doctype html><!-- <head> --><html>{before}<head{attrs}>{after_head}");
            let at = doc.find("--><html>").map_or(0, |i| i + 3);
            let marker = format!("<head{attrs}>");
            let expected = [&doc.as_bytes()[..at], &after(&doc[at..], &marker)].concat();
            prop_assert_eq!(once(doc.as_bytes(), 64 * 1024), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            ct in "[ -~]{0,40}",
        ) {
            let _ = once(&bytes, 100);
            let _ = charset_allows_injection(Some(&ct), &bytes);
            let mut s = Scanner::new();
            for (at, b) in bytes.iter().enumerate() {
                let _ = s.step(*b, at);
            }
        }
    }
}
