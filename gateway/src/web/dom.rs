//! Server-side masking of web console page recordings.
//!
//! The recorder script in the admin's browser (rrweb `record()`) posts batches of rrweb events.
//! The browser is not trusted, so masking is enforced again on what arrives, before any of it
//! is stored:
//!
//! - An element is *masked* when it is an `input` whose `type` is `password` (or that rrweb marks
//!   `data-rr-is-password` after a "show password" toggle), when it matches one of the policy's
//!   selectors, or when it descends from a masked element. A masked element's `value`
//!   attribute, the text of its text and comment descendants, later text and `value` changes to
//!   them and Input events on them become `*`, one per character (at most 64).
//! - Masking is sticky: an element stays masked until it is removed, even if it stops matching.
//! - Nodes this page's [`PageState`] does not know count as masked: ids from before the gateway
//!   saw the page, nodes added under unknown parents, nodes beyond the tracking bound
//!   ([`MAX_NODES`]) and nodes nested deeper than [`MAX_NODE_DEPTH`].
//! - Every match of a policy pattern becomes `*` of the same length in every visible string:
//!   text, attribute values, Input text, the batch's title and URL, and the strings of Meta,
//!   Custom, style, font and other event data.
//! - Content that cannot be checked is dropped: canvas mutations, console logs (the Log source
//!   and Plugin events, which is how rrweb's console plugin reports), asset events and unknown
//!   event kinds or sources (counted in [`Batch::dropped_events`]), and `rr_dataURL` attributes
//!   (canvas and inlined image pixels).
//! - Serialized nodes keep only the fields rrweb defines; anything else is dropped.
//!
//! A batch is rejected whole when it is over [`MAX_BATCH_BYTES`] (checked before parsing), is
//! not JSON, nests deeper than [`MAX_JSON_DEPTH`], holds more than [`MAX_EVENTS`] events, holds
//! an event that is not an object, or has a field that masking depends on (ids, node types,
//! text) of the wrong type. Facts learned from the events before the faulty one stay in the
//! page state; they are true facts about the page, so later masking stays correct.
//!
//! serde_json stops at 128 nesting levels ("recursion limit exceeded"). A DOM level costs two
//! JSON levels (node object and `childNodes` array), so snapshots of deep single-page apps would
//! not fit; batches are therefore read by a small iterative reader (module `json` below) that
//! allows [`MAX_JSON_DEPTH`] levels and leaves the decoding of strings and numbers to
//! serde_json.
//!
//! Selectors are `psmgate_policy::SelectorList`s, the subset the policy accepts. Their canonical
//! text tells which attribute names can matter: only those are kept in the page state (values
//! longer than any selector cut short, which cannot change a comparison), and only changes to
//! them are followed.

use psmgate_policy::{ElementView, SelectorList};
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

/// Largest batch body accepted, in bytes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS: usize = 10_000;
/// Deepest JSON nesting accepted in a batch.
pub const MAX_JSON_DEPTH: usize = 512;
/// Most nodes tracked per page; nodes beyond it are masked.
pub const MAX_NODES: usize = 200_000;
/// Deepest node (a snapshot's root is at depth 1) whose ancestors are looked at; deeper nodes
/// are masked.
pub const MAX_NODE_DEPTH: u32 = 512;
/// Most `*` a masked value becomes.
const MAX_STARS: usize = 64;
/// Longest page id.
const MAX_PAGE_ID: usize = 64;
/// Ancestor steps one batch may spend looking again at the descendants of elements whose
/// attributes changed; past it, those descendants are masked without looking.
const REEVALUATION_BUDGET: u64 = 2_000_000;

// rrweb event types (`EventType`).
const DOM_CONTENT_LOADED: u64 = 0;
const LOAD: u64 = 1;
const FULL_SNAPSHOT: u64 = 2;
const INCREMENTAL_SNAPSHOT: u64 = 3;
const META: u64 = 4;
const CUSTOM: u64 = 5;

// rrweb incremental sources (`IncrementalSource`).
const MUTATION: u64 = 0;
const MOUSE_MOVE: u64 = 1;
const MOUSE_INTERACTION: u64 = 2;
const SCROLL: u64 = 3;
const VIEWPORT_RESIZE: u64 = 4;
const INPUT: u64 = 5;
const TOUCH_MOVE: u64 = 6;
const MEDIA_INTERACTION: u64 = 7;
const STYLE_SHEET_RULE: u64 = 8;
const FONT: u64 = 10;
const DRAG: u64 = 12;
const STYLE_DECLARATION: u64 = 13;
const SELECTION: u64 = 14;
const ADOPTED_STYLE_SHEET: u64 = 15;
const CUSTOM_ELEMENT: u64 = 16;

// rrweb serialized node types (`NodeType`).
const DOCUMENT: u64 = 0;
const DOCUMENT_TYPE: u64 = 1;
const ELEMENT: u64 = 2;
const TEXT: u64 = 3;
const CDATA: u64 = 4;
const COMMENT: u64 = 5;

/// Attribute holding canvas or inlined image pixels.
const DATA_URL_ATTRIBUTE: &str = "rr_dataURL";

/// Masking rules for one page (from policy): password inputs always, elements matching
/// selectors, text matching patterns.
pub struct MaskRules {
    selectors: Vec<SelectorList>,
    patterns: Vec<Regex>,
    /// The selectors' text, lower-case and unescaped: an attribute whose name does not occur in
    /// it cannot affect matching, so it is neither kept nor followed.
    names: String,
    /// False when no selector has a descendant combinator (an element's attributes then never
    /// change whether its descendants match).
    combinators: bool,
    /// Longest attribute value kept (in characters), `class` apart: a longer value cannot equal
    /// a value written in a selector, so its beginning decides the same.
    value_cap: usize,
}

impl fmt::Debug for MaskRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskRules")
            .field("selectors", &self.selectors)
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

/// Attribute names always kept: they decide whether an input is a password input.
const PASSWORD_ATTRIBUTES: [&str; 2] = ["type", "data-rr-is-password"];

impl MaskRules {
    /// Rules masking the elements matching any of `selectors` (each a selector list in the
    /// subset [`SelectorList`] accepts) and every match of any of the regular expressions
    /// `patterns`. Password inputs are always masked.
    pub fn new(selectors: &[String], patterns: &[String]) -> Result<MaskRules, String> {
        let selectors = selectors
            .iter()
            .map(|text| {
                SelectorList::parse(text).map_err(|e| format!("mask selector {text:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let patterns = patterns
            .iter()
            .map(|p| {
                if p.is_empty() {
                    return Err("a mask pattern is empty".to_string());
                }
                Regex::new(p).map_err(|e| format!("mask pattern {p:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = String::new();
        let mut combinators = false;
        let mut value_cap = 64;
        for list in &selectors {
            let css = list.as_css();
            value_cap = value_cap.max(css.chars().count() + 1);
            let plain = unescape_css(&css).to_ascii_lowercase();
            // Canonical form: selectors are separated by ", " and compounds by one space, so
            // a selector without a space has one compound. Escaped characters are set aside
            // first so that an escaped comma does not end a selector; a space inside a quoted
            // value only makes this answer yes where no would do.
            let shape = blank_escapes(&css);
            combinators |= shape.split(", ").any(|s| s.contains(' '));
            names.push_str(&plain);
            names.push('\n');
        }
        if names.contains('#') {
            names.push_str("id\n");
        }
        if names.contains('.') {
            names.push_str("class\n");
        }
        Ok(MaskRules {
            selectors,
            patterns,
            names,
            combinators,
            value_cap,
        })
    }

    /// Whether the attribute `lowercase_name` may matter to masking.
    fn is_relevant(&self, lowercase_name: &str) -> bool {
        PASSWORD_ATTRIBUTES.contains(&lowercase_name)
            || (!lowercase_name.is_empty() && self.names.contains(lowercase_name))
    }

    /// The value kept of the relevant attribute `lowercase_name`.
    fn kept_value(&self, lowercase_name: &str, value: &str) -> String {
        if lowercase_name == "class" {
            return value.to_string();
        }
        match value.char_indices().nth(self.value_cap) {
            Some((end, _)) => value[..end].to_string(),
            None => value.to_string(),
        }
    }

    /// Whether `element`, the child of `parent` in `state`, is masked by its own attributes.
    fn element_masked(
        &self,
        element: &ElementInfo,
        state: &PageState,
        parent: Option<i64>,
    ) -> bool {
        if is_password(element) {
            return true;
        }
        if self.selectors.is_empty() {
            return false;
        }
        let ancestors = state.ancestors(parent);
        self.selectors
            .iter()
            .any(|s| s.matches(element, &ancestors))
    }

    /// `text` with every pattern match replaced by `*` of the same length, or `None` when that
    /// changes nothing.
    fn apply_patterns(&self, text: &str) -> Option<String> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for re in &self.patterns {
            ranges.extend(
                re.find_iter(text)
                    .filter(|m| m.start() < m.end())
                    .map(|m| (m.start(), m.end())),
            );
        }
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (start, end) in ranges {
            let start = start.max(pos);
            if end <= start {
                continue;
            }
            out.push_str(&text[pos..start]);
            out.extend(std::iter::repeat_n('*', text[start..end].chars().count()));
            pos = end;
        }
        out.push_str(&text[pos..]);
        (out != text).then_some(out)
    }
}

/// CSS text with its escapes decoded (`\31 ` → `1`, `\.` → `.`).
fn unescape_css(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut hex = String::new();
        while hex.len() < 6 && chars.peek().is_some_and(char::is_ascii_hexdigit) {
            hex.extend(chars.next());
        }
        if hex.is_empty() {
            out.extend(chars.next());
            continue;
        }
        if chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let code = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
    }
    out
}

/// CSS text with each escape (and the white space ending a hex escape) replaced by `_`.
fn blank_escapes(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push('_');
        let mut hex = 0;
        while hex < 6 && chars.peek().is_some_and(char::is_ascii_hexdigit) {
            chars.next();
            hex += 1;
        }
        // The escaped character, or the white space ending a hex escape.
        if hex == 0 || chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
    }
    out
}

/// `input type=password`, or an input rrweb marks as having been one.
fn is_password(element: &ElementInfo) -> bool {
    element.tag == "input"
        && (element
            .attr("type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("password"))
            || element.attr("data-rr-is-password").is_some())
}

/// `*` for each character of `text`, at most [`MAX_STARS`].
fn stars(text: &str) -> String {
    "*".repeat(text.chars().count().min(MAX_STARS))
}

/// What is known about one node of the page.
#[derive(Debug)]
struct Node {
    parent: Option<i64>,
    first_child: Option<i64>,
    prev_sibling: Option<i64>,
    next_sibling: Option<i64>,
    /// Distance from the root of the tree the node arrived in (a root is at depth 1).
    depth: u32,
    masked: bool,
    /// Tag and relevant attributes, for elements.
    element: Option<Box<ElementInfo>>,
}

/// The facts about an element that masking looks at.
#[derive(Debug, Clone, PartialEq)]
struct ElementInfo {
    /// Lower-case tag name.
    tag: String,
    /// Relevant attributes: lower-case name, kept value (`""` for boolean attributes).
    attrs: Vec<(String, String)>,
}

impl ElementInfo {
    /// Bytes of text held.
    fn bytes(&self) -> usize {
        self.tag.len()
            + self
                .attrs
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}

impl ElementView for ElementInfo {
    fn tag(&self) -> &str {
        &self.tag
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Most bytes of element facts (tags, attribute names and kept values) tracked per page;
/// elements beyond are masked.
const MAX_STATE_BYTES: usize = 32 * 1024 * 1024;

/// Per-page state kept between the batches of one page: the node tree facts needed to decide
/// the masking of later mutations and inputs (parent, tag, attributes selectors look at,
/// whether masked). Bounded: at most [`MAX_NODES`] nodes and 32 MiB of element facts; nodes
/// beyond are masked.
pub struct PageState {
    nodes: HashMap<i64, Node>,
    /// Bytes held by the nodes' [`ElementInfo`].
    bytes: usize,
    max_nodes: usize,
    max_bytes: usize,
}

impl Default for PageState {
    fn default() -> Self {
        PageState {
            nodes: HashMap::new(),
            bytes: 0,
            max_nodes: MAX_NODES,
            max_bytes: MAX_STATE_BYTES,
        }
    }
}

impl fmt::Debug for PageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageState")
            .field("nodes", &self.nodes.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl PageState {
    /// How many nodes are tracked.
    pub fn tracked_nodes(&self) -> usize {
        self.nodes.len()
    }

    fn is_full(&self) -> bool {
        self.nodes.len() >= self.max_nodes || self.bytes >= self.max_bytes
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.bytes = 0;
    }

    /// Unknown nodes are masked.
    fn is_masked(&self, id: i64) -> bool {
        self.nodes.get(&id).is_none_or(|n| n.masked)
    }

    /// The elements from `start` up, nearest first.
    fn ancestors(&self, start: Option<i64>) -> Vec<&dyn ElementView> {
        let mut out: Vec<&dyn ElementView> = Vec::new();
        let mut cur = start;
        let mut steps = 0;
        while let Some(node) = cur.and_then(|id| self.nodes.get(&id)) {
            steps += 1;
            if steps > MAX_NODE_DEPTH {
                break;
            }
            if let Some(el) = &node.element {
                out.push(el.as_ref());
            }
            cur = node.parent;
        }
        out
    }

    fn children(&self, id: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut child = self.nodes.get(&id).and_then(|n| n.first_child);
        while let Some(c) = child {
            if out.len() >= self.nodes.len() {
                break;
            }
            out.push(c);
            child = self.nodes.get(&c).and_then(|n| n.next_sibling);
        }
        out
    }

    /// Tracks `id` as the child of `parent` (a root when the parent is unknown), unless the
    /// state is full.
    fn insert(
        &mut self,
        id: i64,
        parent: Option<i64>,
        depth: u32,
        masked: bool,
        element: Option<Box<ElementInfo>>,
    ) {
        self.remove_subtree(id);
        if self.is_full() {
            return;
        }
        let parent = parent.filter(|p| self.nodes.contains_key(p));
        let next_sibling = parent
            .and_then(|p| self.nodes.get(&p))
            .and_then(|p| p.first_child);
        if let Some(n) = next_sibling.and_then(|n| self.nodes.get_mut(&n)) {
            n.prev_sibling = Some(id);
        }
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.first_child = Some(id);
        }
        self.bytes += element.as_ref().map_or(0, |e| e.bytes());
        self.nodes.insert(
            id,
            Node {
                parent,
                first_child: None,
                prev_sibling: None,
                next_sibling,
                depth,
                masked,
                element,
            },
        );
    }

    /// Forgets `id` and everything below it.
    fn remove_subtree(&mut self, id: i64) {
        let Some(node) = self.nodes.get(&id) else {
            return;
        };
        let (parent, prev, next) = (node.parent, node.prev_sibling, node.next_sibling);
        match prev {
            Some(p) => {
                if let Some(p) = self.nodes.get_mut(&p) {
                    p.next_sibling = next;
                }
            }
            None => {
                if let Some(p) = parent.and_then(|p| self.nodes.get_mut(&p)) {
                    if p.first_child == Some(id) {
                        p.first_child = next;
                    }
                }
            }
        }
        if let Some(n) = next.and_then(|n| self.nodes.get_mut(&n)) {
            n.prev_sibling = prev;
        }
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            stack.extend(self.children(cur));
            if let Some(node) = self.nodes.remove(&cur) {
                self.bytes -= node.element.map_or(0, |e| e.bytes());
            }
        }
    }

    /// Masks `id` and everything below it. Below a masked node everything is masked already,
    /// so each node is visited at most once over the life of the page.
    fn mark_masked(&mut self, id: i64) {
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            let Some(node) = self.nodes.get_mut(&cur) else {
                continue;
            };
            if node.masked {
                continue;
            }
            node.masked = true;
            stack.extend(self.children(cur));
        }
    }
}

/// One masked batch, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Page id chosen by the recorder (1 to 64 of `A-Z a-z 0-9 _ -`).
    pub page: String,
    /// Batch number within the page.
    pub seq: u64,
    /// Page URL, pattern matches masked.
    pub url: String,
    /// Page title, pattern matches masked.
    pub title: String,
    /// The recorder's keep-alive flag.
    pub heartbeat: bool,
    /// The page said it was hidden or is going away (it may fall silent now).
    pub gone: bool,
    /// The masked rrweb events, in order.
    pub events: Vec<Value>,
    /// How many strings were changed here (masked content or pattern matches the browser let
    /// through, dropped pixel data).
    pub masked_values: u64,
    /// How many events were dropped because their content cannot be checked.
    pub dropped_events: u64,
}

/// Why a batch was rejected.
#[derive(thiserror::Error, Debug)]
pub enum BatchError {
    /// The body is over [`MAX_BATCH_BYTES`].
    #[error("batch of {0} bytes is over the limit of {MAX_BATCH_BYTES} bytes")]
    TooLarge(usize),
    /// The body is not JSON, or nests too deep.
    #[error("batch is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a batch of rrweb events.
    #[error("batch has an unexpected shape: {0}")]
    Shape(String),
}

/// Whether `events` (a batch's rrweb events) hold something the user did on the page: moved or
/// clicked the mouse, scrolled, touched, dragged, selected, or typed into a field. Mutations,
/// resizes and style changes are the page's own doing and do not count. For the session's idle
/// limit (the rule's `idle_timeout`), as key strokes and pointer events count over VNC and RDP.
pub fn has_user_input(events: &[Value]) -> bool {
    events.iter().any(|e| {
        e.get("type").and_then(Value::as_u64) == Some(INCREMENTAL_SNAPSHOT)
            && matches!(
                e.get("data")
                    .and_then(|d| d.get("source"))
                    .and_then(Value::as_u64),
                Some(
                    MOUSE_MOVE | MOUSE_INTERACTION | SCROLL | INPUT | TOUCH_MOVE | DRAG | SELECTION
                )
            )
    })
}

/// Parses and masks one batch. `state` is the page's state (create it with
/// [`PageState::default`] on a page's first batch).
pub fn mask_batch(
    bytes: &[u8],
    rules: &MaskRules,
    state: &mut PageState,
) -> Result<Batch, BatchError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge(bytes.len()));
    }
    let value = json::parse(bytes, MAX_JSON_DEPTH).map_err(BatchError::Json)?;
    let Value::Object(mut top) = value else {
        return Err(BatchError::Shape("the batch is not an object".into()));
    };
    let shape = |m: &str| BatchError::Shape(m.to_string());
    let page = match top.remove("page") {
        Some(Value::String(p)) if valid_page_id(&p) => p,
        _ => {
            return Err(shape(
                "\"page\" must be 1 to 64 of the characters A-Z a-z 0-9 _ -",
            ))
        }
    };
    let seq = top
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| shape("\"seq\" must be a non-negative integer"))?;
    let url = optional_string(&mut top, "url")?;
    let title = optional_string(&mut top, "title")?;
    let heartbeat = optional_bool(&top, "heartbeat")?;
    let gone = optional_bool(&top, "gone")?;
    let events = match top.remove("events") {
        Some(Value::Array(events)) => events,
        _ => return Err(shape("\"events\" must be an array")),
    };
    if events.len() > MAX_EVENTS {
        return Err(BatchError::Shape(format!(
            "{} events, at most {MAX_EVENTS} are accepted per batch",
            events.len()
        )));
    }

    let mut masker = Masker {
        rules,
        state,
        masked_values: 0,
        dropped_events: 0,
        budget: REEVALUATION_BUDGET,
    };
    let url = masker.visible(url);
    let title = masker.visible(title);
    let mut out = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        match masker.event(event) {
            Ok(Some(e)) => out.push(e),
            Ok(None) => masker.dropped_events += 1,
            Err(e) => return Err(BatchError::Shape(format!("event {index}: {e}"))),
        }
    }
    Ok(Batch {
        page,
        seq,
        url,
        title,
        heartbeat,
        gone,
        events: out,
        masked_values: masker.masked_values,
        dropped_events: masker.dropped_events,
    })
}

fn valid_page_id(id: &str) -> bool {
    (1..=MAX_PAGE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn optional_bool(map: &Map<String, Value>, key: &str) -> Result<bool, BatchError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(BatchError::Shape(format!("{key:?} must be a boolean"))),
    }
}

fn optional_string(map: &mut Map<String, Value>, key: &str) -> Result<String, BatchError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(BatchError::Shape(format!("{key:?} must be a string"))),
    }
}

/// Where a serialized node goes.
#[derive(Clone, Copy)]
struct Parent {
    id: Option<i64>,
    masked: bool,
    depth: u32,
}

impl Parent {
    const ROOT: Parent = Parent {
        id: None,
        masked: false,
        depth: 0,
    };
}

/// Masks the events of one batch, updating the page state as it goes.
struct Masker<'a> {
    rules: &'a MaskRules,
    state: &'a mut PageState,
    masked_values: u64,
    dropped_events: u64,
    budget: u64,
}

type Shaped<T> = Result<T, String>;

impl Masker<'_> {
    /// `text` masked: `*` per character.
    fn hidden(&mut self, text: String) -> String {
        let masked = stars(&text);
        if masked != text {
            self.masked_values += 1;
        }
        masked
    }

    /// `text` with pattern matches masked.
    fn visible(&mut self, text: String) -> String {
        match self.rules.apply_patterns(&text) {
            Some(masked) => {
                self.masked_values += 1;
                masked
            }
            None => text,
        }
    }

    fn text(&mut self, text: String, masked: bool) -> String {
        if masked {
            self.hidden(text)
        } else {
            self.visible(text)
        }
    }

    /// Masks pattern matches in every string inside `value`.
    fn patterns_in(&mut self, value: &mut Value) {
        if self.rules.patterns.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Some(masked) = self.rules.apply_patterns(s) {
                    self.masked_values += 1;
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.patterns_in(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.patterns_in(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// The masked event, or `None` when it is dropped.
    fn event(&mut self, event: Value) -> Shaped<Option<Value>> {
        let Value::Object(mut event) = event else {
            return Err("is not an object".into());
        };
        let kind = event
            .get("type")
            .and_then(Value::as_u64)
            .ok_or("has no numeric \"type\"")?;
        let data = event.remove("data");
        let data = match kind {
            FULL_SNAPSHOT => Some(self.full_snapshot(data)?),
            INCREMENTAL_SNAPSHOT => match self.incremental(data)? {
                Some(d) => Some(d),
                None => return Ok(None),
            },
            DOM_CONTENT_LOADED | LOAD | META | CUSTOM => data.map(|mut d| {
                self.patterns_in(&mut d);
                d
            }),
            _ => return Ok(None),
        };
        let mut out = Map::new();
        out.insert("type".into(), kind.into());
        if let Some(data) = data {
            out.insert("data".into(), data);
        }
        for key in ["timestamp", "delay"] {
            if let Some(v) = event.remove(key).filter(Value::is_number) {
                out.insert(key.into(), v);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn full_snapshot(&mut self, data: Option<Value>) -> Shaped<Value> {
        let Some(Value::Object(mut data)) = data else {
            return Err("full snapshot without a data object".into());
        };
        let node = data.remove("node").ok_or("full snapshot without a node")?;
        self.state.clear();
        let node = self.node(node, Parent::ROOT)?;
        let mut out = Map::new();
        out.insert("node".into(), node);
        if let Some(mut offset) = data.remove("initialOffset") {
            self.patterns_in(&mut offset);
            out.insert("initialOffset".into(), offset);
        }
        Ok(Value::Object(out))
    }

    /// The masked incremental data, or `None` when the event is dropped.
    fn incremental(&mut self, data: Option<Value>) -> Shaped<Option<Value>> {
        let Some(Value::Object(data)) = data else {
            return Err("incremental snapshot without a data object".into());
        };
        let source = data
            .get("source")
            .and_then(Value::as_u64)
            .ok_or("incremental snapshot without a numeric source")?;
        match source {
            MUTATION => self.mutation(data).map(Some),
            INPUT => self.input(data).map(Some),
            MOUSE_MOVE | MOUSE_INTERACTION | SCROLL | VIEWPORT_RESIZE | TOUCH_MOVE
            | MEDIA_INTERACTION | STYLE_SHEET_RULE | FONT | DRAG | STYLE_DECLARATION
            | SELECTION | ADOPTED_STYLE_SHEET | CUSTOM_ELEMENT => {
                let mut data = Value::Object(data);
                self.patterns_in(&mut data);
                Ok(Some(data))
            }
            // Canvas mutations, console logs and sources this code does not know.
            _ => Ok(None),
        }
    }

    fn input(&mut self, mut data: Map<String, Value>) -> Shaped<Value> {
        let id = data
            .get("id")
            .and_then(Value::as_i64)
            .ok_or("input without a numeric id")?;
        let text = match data.remove("text") {
            Some(Value::String(t)) => t,
            _ => return Err("input without text".into()),
        };
        let masked = self.state.is_masked(id);
        let mut out = Map::new();
        out.insert("source".into(), INPUT.into());
        out.insert("id".into(), id.into());
        out.insert("text".into(), self.text(text, masked).into());
        for key in ["isChecked", "userTriggered"] {
            if let Some(v) = data.remove(key).filter(Value::is_boolean) {
                out.insert(key.into(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn mutation(&mut self, mut data: Map<String, Value>) -> Shaped<Value> {
        let removes = take_array(&mut data, "removes")?;
        let adds = take_array(&mut data, "adds")?;
        let texts = take_array(&mut data, "texts")?;
        let attributes = take_array(&mut data, "attributes")?;

        // The state first follows the whole mutation (removes, then attribute changes of
        // existing nodes, then adds), so that no text or value is judged by a stale tree.
        let mut removes_out = Vec::with_capacity(removes.len());
        for remove in removes {
            let Value::Object(mut remove) = remove else {
                return Err("a removed node is not an object".into());
            };
            let id = id_field(&remove, "id", "removed node")?;
            let parent = id_field(&remove, "parentId", "removed node")?;
            self.state.remove_subtree(id);
            let mut out = Map::new();
            out.insert("parentId".into(), parent.into());
            out.insert("id".into(), id.into());
            if let Some(v) = remove.remove("isShadow").filter(Value::is_boolean) {
                out.insert("isShadow".into(), v);
            }
            removes_out.push(Value::Object(out));
        }

        let mut changes = Vec::with_capacity(attributes.len());
        for change in attributes {
            let Value::Object(mut change) = change else {
                return Err("an attribute change is not an object".into());
            };
            let id = id_field(&change, "id", "attribute change")?;
            let Some(Value::Object(attrs)) = change.remove("attributes") else {
                return Err("attribute change without an attributes object".into());
            };
            self.update_attributes(id, &attrs);
            changes.push((id, attrs));
        }

        let mut adds_out = Vec::with_capacity(adds.len());
        for add in adds {
            let Value::Object(mut add) = add else {
                return Err("an added node is not an object".into());
            };
            let parent_id = id_field(&add, "parentId", "added node")?;
            let node = add.remove("node").ok_or("added node without a node")?;
            let parent = match self.state.nodes.get(&parent_id) {
                Some(p) => Parent {
                    id: Some(parent_id),
                    masked: p.masked,
                    depth: p.depth,
                },
                None => Parent {
                    id: None,
                    masked: true,
                    depth: 0,
                },
            };
            let node = self.node(node, parent)?;
            let mut out = Map::new();
            out.insert("parentId".into(), parent_id.into());
            for key in ["nextId", "previousId"] {
                match add.remove(key) {
                    Some(v) if v.is_null() || v.is_i64() => {
                        out.insert(key.into(), v);
                    }
                    None => {}
                    Some(_) => return Err(format!("added node with a non-numeric {key}")),
                }
            }
            if !out.contains_key("nextId") {
                out.insert("nextId".into(), Value::Null);
            }
            out.insert("node".into(), node);
            adds_out.push(Value::Object(out));
        }

        let mut texts_out = Vec::with_capacity(texts.len());
        for text in texts {
            let Value::Object(mut text) = text else {
                return Err("a text change is not an object".into());
            };
            let id = id_field(&text, "id", "text change")?;
            let value = match text.remove("value") {
                Some(Value::String(v)) => Value::String(self.text(v, self.state.is_masked(id))),
                None | Some(Value::Null) => Value::Null,
                Some(_) => return Err("text change with a value that is not a string".into()),
            };
            let mut out = Map::new();
            out.insert("id".into(), id.into());
            out.insert("value".into(), value);
            texts_out.push(Value::Object(out));
        }

        let mut attributes_out = Vec::with_capacity(changes.len());
        for (id, attrs) in changes {
            let masked = self.state.is_masked(id);
            let attrs = self.attributes(attrs, masked);
            let mut out = Map::new();
            out.insert("id".into(), id.into());
            out.insert("attributes".into(), Value::Object(attrs));
            attributes_out.push(Value::Object(out));
        }

        let mut out = Map::new();
        out.insert("source".into(), MUTATION.into());
        out.insert("removes".into(), Value::Array(removes_out));
        out.insert("adds".into(), Value::Array(adds_out));
        out.insert("texts".into(), Value::Array(texts_out));
        out.insert("attributes".into(), Value::Array(attributes_out));
        if let Some(v) = data.remove("isAttachIframe").filter(Value::is_boolean) {
            out.insert("isAttachIframe".into(), v);
        }
        Ok(Value::Object(out))
    }

    /// Follows an attribute change of a tracked element: masks it (and what is below) when it
    /// starts to match, and looks again at its descendants when selectors have descendant
    /// combinators and the change may make the element match a part of one.
    fn update_attributes(&mut self, id: i64, attrs: &Map<String, Value>) {
        let rules = self.rules;
        let Some(node) = self.state.nodes.get_mut(&id) else {
            return;
        };
        if node.masked {
            return;
        }
        let Some(el) = node.element.as_mut() else {
            return;
        };
        let mut changed = ElementInfo::clone(el);
        // Whether the change can make a selector part newly hold: an attribute appearing, or
        // a value (a class) that occurs in the selectors' text.
        let mut may_matter = false;
        for (name, value) in attrs {
            let name = name.to_ascii_lowercase();
            if !rules.is_relevant(&name) {
                continue;
            }
            let existing = changed.attrs.iter().position(|(n, _)| *n == name);
            let old = existing.map(|i| changed.attrs[i].1.clone());
            let value = match value {
                Value::Null => None,
                Value::String(s) => Some(rules.kept_value(&name, s)),
                Value::Number(n) => Some(rules.kept_value(&name, &n.to_string())),
                Value::Bool(true) => Some(String::new()),
                // A style diff or other object: the attribute is present, its value unknown.
                _ => Some(old.clone().unwrap_or_default()),
            };
            may_matter |= match (&old, &value) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(old), Some(new)) if name == "class" => new
                    .split_ascii_whitespace()
                    .filter(|c| !old.split_ascii_whitespace().any(|o| o == *c))
                    .any(|c| rules.names.contains(&c.to_ascii_lowercase())),
                (Some(old), Some(new)) => {
                    old != new && rules.names.contains(&new.to_ascii_lowercase())
                }
            };
            match (existing, value) {
                (Some(i), Some(v)) => changed.attrs[i].1 = v,
                (Some(i), None) => {
                    changed.attrs.remove(i);
                }
                (None, Some(v)) => changed.attrs.push((name, v)),
                (None, None) => {}
            }
        }
        if changed == **el {
            return;
        }
        self.state.bytes = self.state.bytes - el.bytes() + changed.bytes();
        **el = changed;
        if self.matches_now(id) {
            self.state.mark_masked(id);
        } else if rules.combinators && may_matter {
            self.reevaluate_descendants(id);
        }
    }

    /// Whether the tracked element `id` is masked by its own attributes as they are now.
    fn matches_now(&self, id: i64) -> bool {
        let Some(node) = self.state.nodes.get(&id) else {
            return true;
        };
        let Some(el) = &node.element else {
            return false;
        };
        self.rules.element_masked(el, self.state, node.parent)
    }

    /// Masks the descendants of `root` that now match; within the batch's budget, past which
    /// all of them are masked.
    fn reevaluate_descendants(&mut self, root: i64) {
        let mut stack = self.state.children(root);
        while let Some(id) = stack.pop() {
            let Some(node) = self.state.nodes.get(&id) else {
                continue;
            };
            if node.masked {
                continue;
            }
            if node.element.is_some() {
                let cost = u64::from(node.depth) + 1;
                if self.budget < cost {
                    for child in self.state.children(root) {
                        self.state.mark_masked(child);
                    }
                    return;
                }
                self.budget -= cost;
                if self.matches_now(id) {
                    self.state.mark_masked(id);
                    continue;
                }
            }
            stack.extend(self.state.children(id));
        }
    }

    /// A serialized node (and what is below it) masked and tracked.
    fn node(&mut self, node: Value, parent: Parent) -> Shaped<Value> {
        let Value::Object(mut node) = node else {
            return Err("a node is not an object".into());
        };
        let kind = node
            .get("type")
            .and_then(Value::as_u64)
            .ok_or("a node without a numeric type")?;
        let id = id_field(&node, "id", "node")?;
        // A node arriving again (moved) is judged afresh at its new place.
        self.state.remove_subtree(id);
        let depth = parent.depth.saturating_add(1);
        let forced = depth > MAX_NODE_DEPTH || self.state.is_full();

        let mut out = Map::new();
        out.insert("type".into(), kind.into());
        out.insert("id".into(), id.into());
        if let Some(v) = node.remove("rootId").filter(Value::is_number) {
            out.insert("rootId".into(), v);
        }
        copy_booleans(&mut node, &mut out, &["isShadow", "isShadowHost"]);

        match kind {
            DOCUMENT => {
                let masked = parent.masked || forced;
                if let Some(Value::String(mode)) = node.remove("compatMode") {
                    out.insert("compatMode".into(), mode.into());
                }
                self.state.insert(id, parent.id, depth, masked, None);
                let children = self.children(node.remove("childNodes"), id, masked, depth)?;
                out.insert("childNodes".into(), children);
            }
            DOCUMENT_TYPE => {
                for key in ["name", "publicId", "systemId"] {
                    let value = match node.remove(key) {
                        Some(Value::String(s)) => self.visible(s),
                        _ => String::new(),
                    };
                    out.insert(key.into(), value.into());
                }
                self.state
                    .insert(id, parent.id, depth, parent.masked || forced, None);
            }
            ELEMENT => {
                let tag_name = match node.remove("tagName") {
                    Some(Value::String(t)) => t,
                    _ => return Err(format!("element {id} without a tagName")),
                };
                let attributes = match node.remove("attributes") {
                    Some(Value::Object(a)) => a,
                    None => Map::new(),
                    Some(_) => return Err(format!("element {id} with attributes not an object")),
                };
                let info = Box::new(ElementInfo {
                    tag: tag_name.to_ascii_lowercase(),
                    attrs: self.relevant_attributes(&attributes),
                });
                let masked = parent.masked
                    || forced
                    || self.rules.element_masked(&info, self.state, parent.id);
                out.insert("tagName".into(), tag_name.into());
                out.insert(
                    "attributes".into(),
                    Value::Object(self.attributes(attributes, masked)),
                );
                copy_booleans(&mut node, &mut out, &["isSVG", "needBlock", "isCustom"]);
                self.state.insert(id, parent.id, depth, masked, Some(info));
                let children = self.children(node.remove("childNodes"), id, masked, depth)?;
                out.insert("childNodes".into(), children);
            }
            TEXT | CDATA | COMMENT => {
                let masked = parent.masked || forced;
                let text = match node.remove("textContent") {
                    Some(Value::String(t)) => t,
                    _ => return Err(format!("text node {id} without textContent")),
                };
                out.insert("textContent".into(), self.text(text, masked).into());
                if kind == TEXT {
                    copy_booleans(&mut node, &mut out, &["isStyle"]);
                }
                self.state.insert(id, parent.id, depth, masked, None);
            }
            _ => return Err(format!("node {id} of unknown type {kind}")),
        }
        Ok(Value::Object(out))
    }

    fn children(
        &mut self,
        children: Option<Value>,
        id: i64,
        masked: bool,
        depth: u32,
    ) -> Shaped<Value> {
        let children = match children {
            None => Vec::new(),
            Some(Value::Array(c)) => c,
            Some(_) => return Err(format!("node {id} with childNodes not an array")),
        };
        let parent = Parent {
            id: Some(id),
            masked,
            depth,
        };
        children
            .into_iter()
            .map(|c| self.node(c, parent))
            .collect::<Shaped<Vec<_>>>()
            .map(Value::Array)
    }

    /// The attributes masking looks at, names lowercase.
    fn relevant_attributes(&self, attributes: &Map<String, Value>) -> Vec<(String, String)> {
        attributes
            .iter()
            .filter_map(|(name, value)| {
                let name = name.to_ascii_lowercase();
                if !self.rules.is_relevant(&name) {
                    return None;
                }
                let value = match value {
                    Value::String(s) => self.rules.kept_value(&name, s),
                    Value::Number(n) => self.rules.kept_value(&name, &n.to_string()),
                    Value::Bool(true) => String::new(),
                    _ => return None,
                };
                Some((name, value))
            })
            .collect()
    }

    /// Attribute values masked: `value` of a masked element hidden, pixel data dropped,
    /// pattern matches masked everywhere.
    fn attributes(&mut self, attributes: Map<String, Value>, masked: bool) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, value) in attributes {
            if name.eq_ignore_ascii_case(DATA_URL_ATTRIBUTE) {
                self.masked_values += 1;
                continue;
            }
            let hide = masked && name.eq_ignore_ascii_case("value");
            let value = match value {
                Value::Null | Value::Bool(true) => value,
                Value::String(s) => Value::String(self.text(s, hide)),
                Value::Number(n) => {
                    let text = n.to_string();
                    if hide {
                        Value::String(self.hidden(text))
                    } else {
                        match self.rules.apply_patterns(&text) {
                            Some(m) => {
                                self.masked_values += 1;
                                Value::String(m)
                            }
                            None => Value::Number(n),
                        }
                    }
                }
                mut other => {
                    if hide {
                        Value::String(self.hidden(other.to_string()))
                    } else {
                        self.patterns_in(&mut other);
                        other
                    }
                }
            };
            out.insert(name, value);
        }
        out
    }
}

fn take_array(map: &mut Map<String, Value>, key: &str) -> Shaped<Vec<Value>> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("mutation with {key} not an array")),
    }
}

fn id_field(map: &Map<String, Value>, key: &str, what: &str) -> Shaped<i64> {
    map.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("{what} without a numeric {key}"))
}

fn copy_booleans(from: &mut Map<String, Value>, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = from.remove(*key).filter(Value::is_boolean) {
            to.insert((*key).into(), v);
        }
    }
}

/// An iterative JSON reader, so that nesting depth is a parameter rather than serde_json's
/// fixed recursion limit. Structure is read here; strings and numbers are decoded by
/// serde_json, so values are exactly what `serde_json::from_slice` would give.
mod json {
    use serde_json::{Map, Number, Value};

    enum Frame {
        Array(Vec<Value>),
        /// The object so far and the key whose value is being read.
        Object(Map<String, Value>, String),
    }

    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    /// Parses one JSON document nested at most `max_depth` levels.
    pub(super) fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
        let mut r = Reader { bytes, pos: 0 };
        let mut stack: Vec<Frame> = Vec::new();
        'value: loop {
            r.skip_ws();
            let mut value = match r.peek() {
                None => return Err(r.error("unexpected end of input")),
                Some(open @ (b'{' | b'[')) => {
                    if stack.len() >= max_depth {
                        return Err(r.error(&format!("nesting deeper than {max_depth} levels")));
                    }
                    r.pos += 1;
                    r.skip_ws();
                    if open == b'{' {
                        if r.peek() == Some(b'}') {
                            r.pos += 1;
                            Value::Object(Map::new())
                        } else {
                            let key = r.key()?;
                            stack.push(Frame::Object(Map::new(), key));
                            continue 'value;
                        }
                    } else if r.peek() == Some(b']') {
                        r.pos += 1;
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Frame::Array(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'"') => Value::String(r.string()?),
                Some(b't') => r.literal("true", Value::Bool(true))?,
                Some(b'f') => r.literal("false", Value::Bool(false))?,
                Some(b'n') => r.literal("null", Value::Null)?,
                Some(b'-' | b'0'..=b'9') => Value::Number(r.number()?),
                Some(_) => return Err(r.error("expected a value")),
            };
            // Attach the finished value; close every container it finishes.
            loop {
                match stack.last_mut() {
                    None => {
                        r.skip_ws();
                        if r.pos != r.bytes.len() {
                            return Err(r.error("trailing characters"));
                        }
                        return Ok(value);
                    }
                    Some(Frame::Array(items)) => {
                        items.push(value);
                        r.skip_ws();
                        match r.peek() {
                            Some(b',') => {
                                r.pos += 1;
                                continue 'value;
                            }
                            Some(b']') => r.pos += 1,
                            _ => return Err(r.error("expected ',' or ']'")),
                        }
                    }
                    Some(Frame::Object(map, key)) => {
                        map.insert(std::mem::take(key), value);
                        r.skip_ws();
                        match r.peek() {
                            Some(b',') => {
                                r.pos += 1;
                                r.skip_ws();
                                *key = r.key()?;
                                continue 'value;
                            }
                            Some(b'}') => r.pos += 1,
                            _ => return Err(r.error("expected ',' or '}'")),
                        }
                    }
                }
                value = match stack.pop() {
                    Some(Frame::Array(items)) => Value::Array(items),
                    Some(Frame::Object(map, _)) => Value::Object(map),
                    None => return Err(r.error("unbalanced input")),
                };
            }
        }
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.pos).copied()
        }

        fn error(&self, what: &str) -> String {
            format!("{what} at byte {}", self.pos)
        }

        fn skip_ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
                self.pos += 1;
            }
        }

        /// An object key and its colon.
        fn key(&mut self) -> Result<String, String> {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            Ok(key)
        }

        /// A string; the reader is at its opening quote.
        fn string(&mut self) -> Result<String, String> {
            let start = self.pos;
            let mut i = start + 1;
            let mut escaped = false;
            loop {
                match self.bytes.get(i) {
                    None => return Err(self.error("unterminated string")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(c) if *c < 0x20 => {
                        self.pos = i;
                        return Err(self.error("control character in string"));
                    }
                    Some(_) => i += 1,
                }
            }
            let raw = &self.bytes[start..=i];
            let text = if escaped {
                serde_json::from_slice::<String>(raw).map_err(|e| self.error(&e.to_string()))?
            } else {
                std::str::from_utf8(&raw[1..raw.len() - 1])
                    .map_err(|_| self.error("invalid UTF-8 in string"))?
                    .to_owned()
            };
            self.pos = i + 1;
            Ok(text)
        }

        fn number(&mut self) -> Result<Number, String> {
            let start = self.pos;
            while matches!(
                self.peek(),
                Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            ) {
                self.pos += 1;
            }
            serde_json::from_slice::<Number>(&self.bytes[start..self.pos])
                .map_err(|e| format!("invalid number at byte {start}: {e}"))
        }

        fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
            if self.bytes[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                Ok(value)
            } else {
                Err(self.error("expected a value"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn user_input_is_what_the_user_did_not_what_the_page_did() {
        let incremental =
            |source: u64| json!({"type": 3, "data": {"source": source}, "timestamp": 1});
        for source in [1, 2, 3, 5, 6, 12, 14] {
            assert!(
                has_user_input(&[incremental(0), incremental(source)]),
                "source {source}"
            );
        }
        for source in [0, 4, 7, 8, 10, 13, 15, 16, 99] {
            assert!(!has_user_input(&[incremental(source)]), "source {source}");
        }
        let meta = json!({"type": 4, "data": {"source": 2}, "timestamp": 1});
        assert!(!has_user_input(&[meta, json!({"type": 3})]));
        assert!(!has_user_input(&[]));
    }

    const AKIA: &str = "AKIA[0-9A-Z]{16}";

    fn rules(selectors: &[&str], patterns: &[&str]) -> MaskRules {
        let s: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        MaskRules::new(&s, &p).expect("rules")
    }

    fn body(events: Value) -> Vec<u8> {
        json!({"page": "p-1", "seq": 3, "url": "https://console.example/", "title": "Console",
               "heartbeat": true, "events": events})
        .to_string()
        .into_bytes()
    }

    fn el(id: i64, tag: &str, attributes: Value, children: Vec<Value>) -> Value {
        json!({"type": 2, "id": id, "tagName": tag, "attributes": attributes, "childNodes": children})
    }

    fn text(id: i64, content: &str) -> Value {
        json!({"type": 3, "id": id, "textContent": content})
    }

    fn snapshot(body_children: Vec<Value>) -> Value {
        let html = el(
            2,
            "html",
            json!({}),
            vec![el(3, "body", json!({}), body_children)],
        );
        json!({"type": 2, "timestamp": 1000,
               "data": {"node": {"type": 0, "id": 1, "childNodes": [html]},
                        "initialOffset": {"top": 0, "left": 0}}})
    }

    fn incremental(data: Value) -> Value {
        json!({"type": 3, "timestamp": 2000, "data": data})
    }

    fn mutation(adds: Value, texts: Value, attributes: Value, removes: Value) -> Value {
        incremental(json!({"source": 0, "adds": adds, "texts": texts,
                           "attributes": attributes, "removes": removes}))
    }

    fn input(id: i64, text: &str) -> Value {
        incremental(json!({"source": 5, "id": id, "text": text, "isChecked": false}))
    }

    /// The console page: a password input, a `.secret` panel, a paragraph, a text input.
    fn page() -> Value {
        snapshot(vec![
            el(
                4,
                "input",
                json!({"type": "Password", "value": "hunter2", "placeholder": "Password"}),
                vec![],
            ),
            el(
                5,
                "div",
                json!({"class": "secret box"}),
                vec![text(6, "my secret text")],
            ),
            el(
                7,
                "p",
                json!({}),
                vec![text(8, "key AKIAABCDEFGHIJKLMNOP here")],
            ),
            el(
                9,
                "input",
                json!({"type": "text", "value": "public"}),
                vec![],
            ),
        ])
    }

    fn run(events: Value, rules: &MaskRules, state: &mut PageState) -> Batch {
        mask_batch(&body(events), rules, state).expect("batch")
    }

    /// The node with `id` in a serialized tree.
    fn find(node: &Value, id: i64) -> Option<&Value> {
        if node["id"] == json!(id) {
            return Some(node);
        }
        node["childNodes"]
            .as_array()?
            .iter()
            .find_map(|c| find(c, id))
    }

    fn snapshot_node(batch: &Batch, id: i64) -> Value {
        find(&batch.events[0]["data"]["node"], id)
            .cloned()
            .unwrap_or_else(|| panic!("node {id} in the snapshot"))
    }

    #[test]
    fn snapshot_masks_password_value_and_selected_text() {
        let rules = rules(&[".secret"], &[]);
        let mut state = PageState::default();
        let batch = run(json!([page()]), &rules, &mut state);
        let password = snapshot_node(&batch, 4);
        assert_eq!(password["attributes"]["value"], "*******");
        assert_eq!(password["attributes"]["placeholder"], "Password");
        assert_eq!(snapshot_node(&batch, 6)["textContent"], "**************");
        assert_eq!(
            snapshot_node(&batch, 8)["textContent"],
            "key AKIAABCDEFGHIJKLMNOP here"
        );
        assert_eq!(snapshot_node(&batch, 9)["attributes"]["value"], "public");
        assert_eq!(batch.masked_values, 2);
        let stored = serde_json::to_string(&batch.events).unwrap();
        assert!(!stored.contains("hunter2") && !stored.contains("my secret"));
        assert_eq!(batch.page, "p-1");
        assert_eq!(batch.seq, 3);
        assert!(batch.heartbeat && !batch.gone);
        assert_eq!(state.tracked_nodes(), 9);
    }

    #[test]
    fn input_events_are_masked_for_masked_and_unknown_ids() {
        let rules = rules(&[".secret"], &[AKIA]);
        let mut state = PageState::default();
        run(json!([page()]), &rules, &mut state);
        let batch = run(
            json!([
                input(4, "hunter22"),
                input(9, "hello AKIAABCDEFGHIJKLMNOP"),
                input(999, "typed somewhere unknown"),
            ]),
            &rules,
            &mut state,
        );
        assert_eq!(batch.events[0]["data"]["text"], "********");
        assert_eq!(batch.events[0]["data"]["isChecked"], false);
        assert_eq!(
            batch.events[1]["data"]["text"],
            "hello ********************"
        );
        assert_eq!(batch.events[2]["data"]["text"], "***********************");
        assert_eq!(batch.masked_values, 3);
    }

    #[test]
    fn mutations_under_masked_elements_are_masked() {
        let rules = rules(&[".secret"], &[]);
        let mut state = PageState::default();
        run(json!([page()]), &rules, &mut state);
        let batch = run(
            json!([mutation(
                json!([
                    {"parentId": 5, "nextId": null, "node": text(20, "new secret line")},
                    {"parentId": 7, "nextId": null, "node": text(21, "plain line")},
                    {"parentId": 5, "nextId": null,
                     "node": el(22, "span", json!({"title": "t"}), vec![text(23, "nested secret")])},
                ]),
                json!([{"id": 6, "value": "changed secret"}, {"id": 8, "value": "changed plain"}]),
                json!([{"id": 4, "attributes": {"value": "hunter3"}},
                       {"id": 9, "attributes": {"value": "visible"}}]),
                json!([]),
            )]),
            &rules,
            &mut state,
        );
        let data = &batch.events[0]["data"];
        assert_eq!(data["adds"][0]["node"]["textContent"], "***************");
        assert_eq!(data["adds"][1]["node"]["textContent"], "plain line");
        assert_eq!(
            data["adds"][2]["node"]["childNodes"][0]["textContent"],
            "*************"
        );
        assert_eq!(data["texts"][0]["value"], "**************");
        assert_eq!(data["texts"][1]["value"], "changed plain");
        assert_eq!(data["attributes"][0]["attributes"]["value"], "*******");
        assert_eq!(data["attributes"][1]["attributes"]["value"], "visible");
        assert_eq!(batch.masked_values, 4);
        // A text added under the masked panel is masked in later batches too.
        let later = run(
            json!([mutation(
                json!([]),
                json!([{"id": 20, "value": "more"}]),
                json!([]),
                json!([])
            )]),
            &rules,
            &mut state,
        );
        assert_eq!(later.events[0]["data"]["texts"][0]["value"], "****");
    }

    #[test]
    fn patterns_are_masked_in_text_title_and_url() {
        let rules = rules(&[], &[AKIA]);
        let mut state = PageState::default();
        let bytes = json!({"page": "p", "seq": 0,
                           "url": "https://x.example/?k=AKIAABCDEFGHIJKLMNOP",
                           "title": "AKIAABCDEFGHIJKLMNOP - keys", "events": [page()]})
        .to_string();
        let batch = mask_batch(bytes.as_bytes(), &rules, &mut state).unwrap();
        assert_eq!(
            snapshot_node(&batch, 8)["textContent"],
            "key ******************** here"
        );
        assert_eq!(batch.url, "https://x.example/?k=********************");
        assert_eq!(batch.title, "******************** - keys");
        // Without selectors, only the password input is masked.
        assert_eq!(snapshot_node(&batch, 6)["textContent"], "my secret text");
        assert_eq!(batch.masked_values, 4);
    }

    #[test]
    fn overlapping_pattern_matches_are_all_masked() {
        let rules = rules(&[], &["ab", "bcd", "é+"]);
        assert_eq!(
            rules.apply_patterns("xabcdy éé z").as_deref(),
            Some("x****y ** z")
        );
        assert_eq!(rules.apply_patterns("nothing"), None);
    }

    #[test]
    fn oversized_batches_are_refused_before_parsing() {
        let rules = rules(&[], &[]);
        let bytes = vec![b'{'; MAX_BATCH_BYTES + 1];
        let err = mask_batch(&bytes, &rules, &mut PageState::default()).unwrap_err();
        assert!(
            matches!(err, BatchError::TooLarge(n) if n == MAX_BATCH_BYTES + 1),
            "{err}"
        );
    }

    #[test]
    fn invalid_json_is_refused() {
        let rules = rules(&[], &[]);
        for bad in [
            &b"{\"page\": "[..],
            b"not json",
            b"",
            b"{\"page\":\"p\"} x",
            b"{\"a\":\"\xff\"}",
        ] {
            let err = mask_batch(bad, &rules, &mut PageState::default()).unwrap_err();
            assert!(matches!(err, BatchError::Json(_)), "{err}");
        }
    }

    /// A page `levels` elements deep, the innermost holding `secret`, under `.secret`.
    fn deep_page(levels: i64, secret: &str) -> Value {
        let mut node = text(10_000, secret);
        for i in 0..levels {
            let class = if i == levels - 1 { "secret" } else { "x" };
            node = el(100 + i, "div", json!({"class": class}), vec![node]);
        }
        snapshot(vec![node])
    }

    #[test]
    fn deep_nesting_is_read_up_to_the_limit_and_refused_beyond() {
        let rules = rules(&[".secret"], &[]);
        // 200 DOM levels are about 400 JSON levels: beyond serde_json's own limit.
        let bytes = body(json!([deep_page(200, "deep secret")]));
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
        let batch = mask_batch(&bytes, &rules, &mut PageState::default()).unwrap();
        let stored = serde_json::to_string(&batch.events).unwrap();
        assert!(!stored.contains("deep secret"));
        assert!(stored.contains("***********"));

        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(json::parse(nested(MAX_JSON_DEPTH).as_bytes(), MAX_JSON_DEPTH).is_ok());
        let err = json::parse(nested(MAX_JSON_DEPTH + 1).as_bytes(), MAX_JSON_DEPTH).unwrap_err();
        assert!(err.contains("nesting deeper than 512"), "{err}");
        let too_deep = format!("{{\"page\":\"p\",\"seq\":0,\"events\":[{}]}}", nested(600));
        let err = mask_batch(too_deep.as_bytes(), &rules, &mut PageState::default()).unwrap_err();
        assert!(matches!(err, BatchError::Json(_)), "{err}");
    }

    #[test]
    fn batch_shape_is_checked() {
        let rules = rules(&[], &[]);
        let mut state = PageState::default();
        let shape = |bytes: String, state: &mut PageState| match mask_batch(
            bytes.as_bytes(),
            &rules,
            state,
        ) {
            Err(BatchError::Shape(m)) => m,
            other => panic!("expected a shape error, got {other:?}"),
        };
        let m = shape(
            json!({"page": "p", "seq": 0, "events": [1]}).to_string(),
            &mut state,
        );
        assert!(m.contains("event 0") && m.contains("not an object"), "{m}");
        for page in [json!(""), json!("a b"), json!("x".repeat(65)), json!(5)] {
            shape(
                json!({"page": page, "seq": 0, "events": []}).to_string(),
                &mut state,
            );
        }
        shape(
            json!({"page": "p", "seq": -1, "events": []}).to_string(),
            &mut state,
        );
        shape(
            json!({"page": "p", "seq": 0, "events": {}}).to_string(),
            &mut state,
        );
        shape(
            json!({"page": "p", "seq": 0, "gone": "yes", "events": []}).to_string(),
            &mut state,
        );
        let many: Vec<Value> = (0..=MAX_EVENTS).map(|_| json!({"type": 1})).collect();
        let m = shape(
            json!({"page": "p", "seq": 0, "events": many}).to_string(),
            &mut state,
        );
        assert!(m.contains("10001 events"), "{m}");
        let m = shape(
            body(json!([snapshot(vec![json!({"type": 3, "id": 9})])]))
                .into_iter()
                .map(char::from)
                .collect(),
            &mut state,
        );
        assert!(m.contains("textContent"), "{m}");
        let ok = mask_batch(
            json!({"page": "a_B-9", "seq": 7, "gone": true, "events": []})
                .to_string()
                .as_bytes(),
            &rules,
            &mut state,
        )
        .unwrap();
        assert!(ok.gone && !ok.heartbeat && ok.url.is_empty() && ok.events.is_empty());
    }

    #[test]
    fn unverifiable_content_is_dropped() {
        let rules = rules(&[], &[]);
        let mut state = PageState::default();
        let batch = run(
            json!([
                page(),
                incremental(json!({"source": 9, "id": 4, "type": 0, "commands": [{"property": "fillText", "args": ["secret", 1, 2]}]})),
                incremental(json!({"source": 11, "level": "log", "payload": ["secret"]})),
                {"type": 6, "data": {"plugin": "rrweb/console@1", "payload": {"payload": ["secret"]}}},
                {"type": 7, "data": {"url": "blob:x", "payload": {}}},
                incremental(json!({"source": 99})),
                incremental(json!({"source": 1, "positions": [{"x": 1, "y": 2, "id": 3, "timeOffset": 0}]})),
                incremental(json!({"source": 3, "id": 1, "x": 0, "y": 40})),
                {"type": 4, "data": {"href": "https://x/", "width": 800, "height": 600}},
            ]),
            &rules,
            &mut state,
        );
        assert_eq!(batch.dropped_events, 5);
        assert_eq!(batch.events.len(), 4);
        assert_eq!(
            batch.events[1],
            json!({"type": 3, "timestamp": 2000,
                   "data": {"source": 1, "positions": [{"x": 1, "y": 2, "id": 3, "timeOffset": 0}]}})
        );
        assert_eq!(batch.events[2]["data"]["y"], 40);
        assert_eq!(batch.events[3]["data"]["width"], 800);
        assert!(!serde_json::to_string(&batch.events)
            .unwrap()
            .contains("secret\""));
    }

    #[test]
    fn pixel_data_and_unknown_node_fields_are_dropped() {
        let rules = rules(&[], &[]);
        let mut state = PageState::default();
        let mut canvas = el(
            4,
            "canvas",
            json!({"rr_dataURL": "data:image/png;base64,AAAA", "width": 10}),
            vec![],
        );
        canvas["smuggled"] = json!("hidden");
        let batch = run(json!([snapshot(vec![canvas])]), &rules, &mut state);
        let node = snapshot_node(&batch, 4);
        assert_eq!(node["attributes"], json!({"width": 10}));
        assert!(node.get("smuggled").is_none());
        assert_eq!(batch.masked_values, 1);
    }

    #[test]
    fn attribute_changes_start_masking() {
        let rules = rules(&[".secret", "[data-private]"], &[]);
        let mut state = PageState::default();
        run(json!([page()]), &rules, &mut state);
        // The paragraph gains the class, and its text changes in the same mutation.
        let batch = run(
            json!([
                mutation(
                    json!([]),
                    json!([{"id": 8, "value": "now secret"}]),
                    json!([{"id": 7, "attributes": {"class": "secret"}}]),
                    json!([])
                ),
                input(9, "still visible"),
                mutation(
                    json!([]),
                    json!([]),
                    json!([{"id": 9, "attributes": {"type": "password"}}]),
                    json!([])
                ),
                input(9, "now hidden"),
            ]),
            &rules,
            &mut state,
        );
        assert_eq!(batch.events[0]["data"]["texts"][0]["value"], "**********");
        assert_eq!(batch.events[1]["data"]["text"], "still visible");
        assert_eq!(batch.events[3]["data"]["text"], "**********");
        // Masking stays when the class goes away again.
        let batch = run(
            json!([mutation(
                json!([]),
                json!([{"id": 8, "value": "again"}]),
                json!([{"id": 7, "attributes": {"class": null}}]),
                json!([])
            )]),
            &rules,
            &mut state,
        );
        assert_eq!(batch.events[0]["data"]["texts"][0]["value"], "*****");
    }

    #[test]
    fn descendant_selectors_follow_ancestor_changes() {
        let rules = rules(&[".modal input"], &[]);
        let mut state = PageState::default();
        run(
            json!([snapshot(vec![el(
                10,
                "div",
                json!({"class": "dialog"}),
                vec![
                    el(11, "label", json!({}), vec![text(12, "Token")]),
                    el(13, "input", json!({"value": "abc"}), vec![]),
                ]
            )])]),
            &rules,
            &mut state,
        );
        let batch = run(
            json!([
                input(13, "visible"),
                mutation(
                    json!([]),
                    json!([]),
                    json!([{"id": 10, "attributes": {"class": "dialog modal"}}]),
                    json!([])
                ),
                input(13, "hidden"),
                mutation(
                    json!([]),
                    json!([{"id": 12, "value": "Label"}]),
                    json!([]),
                    json!([])
                ),
            ]),
            &rules,
            &mut state,
        );
        assert_eq!(batch.events[0]["data"]["text"], "visible");
        assert_eq!(batch.events[2]["data"]["text"], "******");
        // Only inputs under the modal are masked, not its other text.
        assert_eq!(batch.events[3]["data"]["texts"][0]["value"], "Label");
    }

    #[test]
    fn selectors_match_ids_attributes_and_escapes() {
        let rules = rules(
            &[
                "#api-key, [data-kind=\"token\"]",
                "form [name=otp]",
                "#\\31 23",
            ],
            &[],
        );
        let mut state = PageState::default();
        let batch = run(
            json!([snapshot(vec![
                el(4, "input", json!({"id": "api-key", "value": "k1"}), vec![]),
                el(
                    5,
                    "input",
                    json!({"data-kind": "token", "value": "k2"}),
                    vec![]
                ),
                el(
                    6,
                    "input",
                    json!({"data-kind": "tokens", "value": "k3"}),
                    vec![]
                ),
                el(
                    7,
                    "form",
                    json!({}),
                    vec![el(
                        8,
                        "div",
                        json!({}),
                        vec![el(
                            9,
                            "input",
                            json!({"name": "otp", "value": "k4"}),
                            vec![]
                        )]
                    )]
                ),
                el(10, "input", json!({"name": "otp", "value": "k5"}), vec![]),
                el(11, "input", json!({"id": "123", "value": "k6"}), vec![]),
            ])]),
            &rules,
            &mut state,
        );
        let value = |id| snapshot_node(&batch, id)["attributes"]["value"].clone();
        assert_eq!(value(4), "**");
        assert_eq!(value(5), "**");
        assert_eq!(value(6), "k3");
        assert_eq!(value(9), "**");
        assert_eq!(value(10), "k5");
        assert_eq!(value(11), "**");
        assert!(MaskRules::new(&["a > b".into()], &[]).is_err());
        assert!(MaskRules::new(&["a:hover".into()], &[]).is_err());
        assert!(MaskRules::new(&[], &["(".into()]).is_err());
        assert!(MaskRules::new(&[], &["".into()]).is_err());
    }

    #[test]
    fn long_attribute_values_are_kept_short_without_changing_matches() {
        let rules = rules(&["[data-k=\"v\"]"], &[]);
        let long = "v".repeat(5000);
        assert_eq!(
            rules.kept_value("data-k", &long).chars().count(),
            rules.value_cap
        );
        assert_ne!(rules.kept_value("data-k", &long), "v");
        let class = "a ".repeat(3000) + "secret";
        assert_eq!(rules.kept_value("class", &class), class);
        // Names that occur nowhere in the selectors are not kept.
        assert!(rules.is_relevant("data-k") && rules.is_relevant("type"));
        assert!(!rules.is_relevant("style") && !rules.is_relevant("class"));
        assert!(!rules.combinators);
        assert!(MaskRules::new(&["a b".into()], &[]).unwrap().combinators);
        assert!(!MaskRules::new(&["a, b".into()], &[]).unwrap().combinators);
    }

    #[test]
    fn removed_nodes_are_forgotten_and_moves_judged_afresh() {
        let rules = rules(&[".secret"], &[]);
        let mut state = PageState::default();
        run(json!([page()]), &rules, &mut state);
        assert_eq!(state.tracked_nodes(), 9);
        // The paragraph leaves; its text id is then unknown, hence masked.
        let batch = run(
            json!([
                mutation(
                    json!([]),
                    json!([]),
                    json!([]),
                    json!([{"parentId": 3, "id": 7}])
                ),
                mutation(
                    json!([]),
                    json!([{"id": 8, "value": "gone"}]),
                    json!([]),
                    json!([])
                ),
                // The secret panel's text moves out of it and is visible there.
                mutation(
                    json!([{"parentId": 3, "nextId": null, "node": text(6, "moved")}]),
                    json!([]),
                    json!([]),
                    json!([{"parentId": 5, "id": 6}])
                ),
            ]),
            &rules,
            &mut state,
        );
        assert_eq!(state.tracked_nodes(), 7);
        assert_eq!(batch.events[1]["data"]["texts"][0]["value"], "****");
        assert_eq!(
            batch.events[2]["data"]["adds"][0]["node"]["textContent"],
            "moved"
        );
        // Adds under unknown parents are masked.
        let batch = run(
            json!([mutation(
                json!([{"parentId": 4242, "nextId": null, "node": text(30, "orphan")}]),
                json!([]),
                json!([]),
                json!([])
            )]),
            &rules,
            &mut state,
        );
        assert_eq!(
            batch.events[0]["data"]["adds"][0]["node"]["textContent"],
            "******"
        );
    }

    #[test]
    fn nodes_beyond_the_bound_are_masked() {
        let rules = rules(&[], &[]);
        let mut state = PageState {
            max_nodes: 5,
            ..PageState::default()
        };
        let batch = run(json!([page()]), &rules, &mut state);
        assert_eq!(state.tracked_nodes(), 5);
        // Document, html, body, the password input and the panel fit; the rest is masked.
        let paragraph = "key AKIAABCDEFGHIJKLMNOP here";
        assert_eq!(
            snapshot_node(&batch, 8)["textContent"],
            "*".repeat(paragraph.len())
        );
        assert_eq!(snapshot_node(&batch, 9)["attributes"]["value"], "******");
        let batch = run(json!([input(9, "typed")]), &rules, &mut state);
        assert_eq!(batch.events[0]["data"]["text"], "*****");
        // A new snapshot starts the count over.
        let mut state = PageState {
            max_bytes: 10,
            ..PageState::default()
        };
        let batch = run(json!([page()]), &rules, &mut state);
        assert_eq!(snapshot_node(&batch, 9)["attributes"]["value"], "******");
    }

    #[test]
    fn masked_values_are_at_most_64_stars() {
        let rules = rules(&[], &[]);
        let long = "x".repeat(500);
        let batch = run(
            json!([snapshot(vec![el(
                4,
                "input",
                json!({"type": "password", "value": long}),
                vec![]
            )])]),
            &rules,
            &mut PageState::default(),
        );
        assert_eq!(
            snapshot_node(&batch, 4)["attributes"]["value"],
            "*".repeat(64)
        );
    }

    #[test]
    fn css_escapes_are_decoded() {
        assert_eq!(unescape_css("#\\31 23.a\\.b[data\\:x]"), "#123.a.b[data:x]");
        assert_eq!(blank_escapes(".a\\, .b"), ".a_ .b");
        assert_eq!(blank_escapes("#\\31 23"), "#_23");
    }

    // --- properties ---

    /// Arbitrary JSON values.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// JSON-ish fragments.
    fn token_soup() -> impl Strategy<Value = Vec<u8>> {
        let tokens = vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\"a\"",
            "\"type\"",
            "\"\\u00e9\\n\"",
            "\"\\ud800\"",
            "\"\\ud83d\\ude00\"",
            "\"x",
            "\\",
            "1",
            "-0",
            "01",
            "2.5e3",
            "1e999",
            "-",
            "true",
            "nul",
            "null",
            "\u{e9}",
            "\t",
        ];
        prop::collection::vec(prop::sample::select(tokens), 0..40)
            .prop_map(|t| t.concat().into_bytes())
    }

    /// Values shaped like rrweb events, fields mixed up.
    fn rrweb_ish() -> impl Strategy<Value = Value> {
        let keys = prop::sample::select(vec![
            "type",
            "id",
            "source",
            "data",
            "node",
            "childNodes",
            "attributes",
            "tagName",
            "textContent",
            "adds",
            "removes",
            "texts",
            "parentId",
            "nextId",
            "value",
            "text",
            "class",
            "positions",
            "initialOffset",
            "href",
        ]);
        let leaf = prop_oneof![
            (0i64..12).prop_map(Value::from),
            Just(Value::Null),
            Just(Value::Bool(true)),
            "[a-z ]{0,6}".prop_map(Value::String),
            Just(json!("password")),
            Just(json!("secret")),
        ];
        leaf.prop_recursive(8, 128, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    /// A generated element tree.
    #[derive(Clone, Debug)]
    enum Tree {
        Text(String),
        El(&'static str, Option<&'static str>, Vec<Tree>),
    }

    fn tree() -> impl Strategy<Value = Tree> {
        let tag = prop::sample::select(vec!["div", "p", "span", "input", "textarea", "li", "b"]);
        let class = prop::sample::select(vec![None, Some("a"), Some("b c"), Some("box")]);
        let leaf = prop_oneof![
            "[a-z ]{0,10}".prop_map(Tree::Text),
            (tag.clone(), class.clone()).prop_map(|(t, c)| Tree::El(t, c, vec![])),
        ];
        leaf.prop_recursive(4, 40, 4, move |inner| {
            (
                tag.clone(),
                class.clone(),
                prop::collection::vec(inner, 0..4),
            )
                .prop_map(|(t, c, children)| Tree::El(t, c, children))
        })
    }

    /// Serializes `tree` with ids from `next`, collecting element and text ids. With
    /// `plant = (secret, slot)`, the `slot`-th text or element (depth first, `seen` counting)
    /// gets `secret` (in its text, or as its `value` attribute).
    fn serialize(
        tree: &Tree,
        next: &mut i64,
        plant: Option<(&str, usize)>,
        seen: &mut usize,
        elements: &mut Vec<i64>,
        texts: &mut Vec<i64>,
    ) -> Value {
        let id = *next;
        *next += 1;
        let here = plant.filter(|(_, slot)| *slot == *seen).map(|(s, _)| s);
        *seen += 1;
        match tree {
            Tree::Text(t) => {
                texts.push(id);
                match here {
                    Some(secret) => text(id, &format!("{t}{secret}{t}")),
                    None => text(id, t),
                }
            }
            Tree::El(tag, class, children) => {
                elements.push(id);
                let mut attrs = Map::new();
                if let Some(c) = class {
                    attrs.insert("class".into(), json!(c));
                }
                if let Some(secret) = here {
                    attrs.insert("value".into(), json!(secret));
                }
                let children = children
                    .iter()
                    .map(|c| serialize(c, next, plant, seen, elements, texts))
                    .collect();
                el(id, tag, Value::Object(attrs), children)
            }
        }
    }

    fn slots(tree: &Tree) -> usize {
        match tree {
            Tree::Text(_) => 1,
            Tree::El(_, _, children) => 1 + children.iter().map(slots).sum::<usize>(),
        }
    }

    /// Appends `child` to the `index`-th element of the serialized `node` (depth first);
    /// returns false when there are fewer elements.
    fn graft(node: &mut Value, index: &mut usize, child: &Value) -> bool {
        if node["type"] != json!(2) {
            return false;
        }
        if *index == 0 {
            node["childNodes"]
                .as_array_mut()
                .unwrap()
                .push(child.clone());
            return true;
        }
        *index -= 1;
        let children = node["childNodes"].as_array_mut().unwrap();
        children.iter_mut().any(|c| graft(c, index, child))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn reader_agrees_with_serde_json_on_values(v in any_json()) {
            let text = v.to_string();
            let ours = json::parse(text.as_bytes(), MAX_JSON_DEPTH).unwrap();
            prop_assert_eq!(ours, serde_json::from_str::<Value>(&text).unwrap());
        }

        #[test]
        fn reader_agrees_with_serde_json_on_fragments(bytes in token_soup()) {
            let ours = json::parse(&bytes, MAX_JSON_DEPTH);
            let theirs = serde_json::from_slice::<Value>(&bytes);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), soup in token_soup()) {
            let rules = rules(&[".secret", "div p"], &[AKIA]);
            let mut state = PageState::default();
            let _ = mask_batch(&bytes, &rules, &mut state);
            let _ = mask_batch(&soup, &rules, &mut state);
        }

        #[test]
        fn arbitrary_events_never_panic(batches in prop::collection::vec(prop::collection::vec(rrweb_ish(), 0..6), 1..4), first in tree()) {
            let rules = rules(&[".secret", "div p", "[value]"], &[AKIA, "e+"]);
            let mut state = PageState::default();
            let mut next = 1;
            let page = serialize(&first, &mut next, None, &mut 0, &mut Vec::new(), &mut Vec::new());
            let _ = mask_batch(&body(json!([snapshot(vec![page])])), &rules, &mut state);
            for events in batches {
                let _ = mask_batch(&body(Value::Array(events)), &rules, &mut state);
            }
        }

        #[test]
        fn secrets_under_masked_elements_never_reach_storage(
            outer in tree(),
            inner in tree(),
            password in any::<bool>(),
            selector in prop::sample::select(vec![".secret", "div.secret", "[data-private]", "[data-private=\"1\"]", "#vault", "body .secret", "*[data-private] *, .secret"]),
            slot in any::<prop::sample::Index>(),
            place in any::<prop::sample::Index>(),
            pick in any::<prop::sample::Index>(),
            suffix in "[A-Z]{6}",
        ) {
            let secret = format!("S3CR3T{suffix}");
            let rules = rules(&[selector], &[]);
            let mut next = 100;
            // The masked element: a password input or a `.secret` panel, `inner` below it.
            let masked_tree = if password {
                Tree::El("input", None, vec![inner.clone()])
            } else {
                Tree::El("div", Some("secret"), vec![inner.clone()])
            };
            let mut elements = Vec::new();
            let mut texts = Vec::new();
            let mut seen = 0;
            let slot = slot.index(slots(&masked_tree));
            let mut masked = serialize(&masked_tree, &mut next, Some((&secret, slot)), &mut seen, &mut elements, &mut texts);
            if password {
                masked["attributes"]["type"] = json!("password");
            } else {
                masked["attributes"]["data-private"] = json!("1");
                masked["attributes"]["id"] = json!("vault");
            }
            let mut page_root = serialize(&Tree::El("main", None, vec![outer.clone()]), &mut next, None, &mut 0, &mut Vec::new(), &mut Vec::new());
            let count = {
                fn count(n: &Value) -> usize {
                    if n["type"] != json!(2) { return 0; }
                    1 + n["childNodes"].as_array().map_or(0, |c| c.iter().map(count).sum())
                }
                count(&page_root)
            };
            let mut index = place.index(count);
            prop_assert!(graft(&mut page_root, &mut index, &masked));
            let masked_element = *pick.get(&elements);
            let batch = run(
                json!([
                    snapshot(vec![page_root]),
                    input(masked_element, &secret),
                    mutation(
                        json!([{"parentId": masked_element, "nextId": null, "node": text(90_000, &secret)}]),
                        Value::Array(texts.iter().map(|t| json!({"id": t, "value": secret})).collect()),
                        json!([{"id": masked_element, "attributes": {"value": secret}}]),
                        json!([]),
                    ),
                ]),
                &rules,
                &mut PageState::default(),
            );
            let stored = serde_json::to_string(&batch.events).unwrap();
            prop_assert!(!stored.contains(&secret), "{}", stored);
        }
    }
}
