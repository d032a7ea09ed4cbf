//! The CSS selector subset of web `mask_selectors`: parsed once, matched by the gateway on the
//! elements that reach it and handed to the in-page recorder in canonical form.
//!
//! A selector list is one or more complex selectors separated by commas. A complex selector is
//! one or more compound selectors separated by white space (the descendant combinator). A
//! compound selector is an optional type selector (a tag name or `*`) followed by any number of
//! `#id`, `.class`, `[attr]` and `[attr=value]` parts, where `value` is an identifier or a
//! quoted string. Names and values may use CSS escapes (`\31 23`, `\.`). Other combinators
//! (`>`, `+`, `~`), pseudo-classes and pseudo-elements, namespaces and the other attribute
//! operators are not part of the subset: the gateway could not evaluate them on what it sees.

use std::fmt;

/// A parsed selector list (see the module documentation for the subset accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorList(Vec<Complex>);

/// Compound selectors joined by descendant combinators; the last one is the element itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Complex(Vec<Compound>);

/// A type selector and the parts that must all hold for one element.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compound {
    /// ASCII lower-case tag name; `None` for `*` or no type selector.
    tag: Option<String>,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `#id`.
    Id(String),
    /// `.class`.
    Class(String),
    /// `[name]` or `[name=value]`; the name is ASCII lower-case.
    Attr { name: String, value: Option<String> },
}

/// What [`SelectorList::matches`] needs to know about an element.
pub trait ElementView {
    /// The tag name, lower-case (`input`, `div`).
    fn tag(&self) -> &str;
    /// The value of the attribute `name`, if the element has it. `name` is passed ASCII
    /// lower-case; implementations look it up without regard to ASCII case, as HTML does. The
    /// id is `attr("id")`, the classes are `attr("class")` split on ASCII white space.
    fn attr(&self, name: &str) -> Option<&str>;
}

impl SelectorList {
    /// Parses a selector list, or says what is wrong with it and where (1-based character
    /// positions).
    pub fn parse(text: &str) -> Result<SelectorList, String> {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
        }
        .list()
        .map(SelectorList)
    }

    /// Whether an element matches one of the selectors in the list. `element` gives the tag
    /// name, id, classes and attributes of the element; `ancestors` gives the same for each
    /// ancestor, nearest first.
    ///
    /// Tag and attribute names compare without regard to ASCII case; ids, classes and attribute
    /// values compare exactly (as in HTML documents). `[attr=value]` compares the whole value.
    pub fn matches(&self, element: &dyn ElementView, ancestors: &[&dyn ElementView]) -> bool {
        self.0.iter().any(|c| c.matches(element, ancestors))
    }

    /// The canonical text: what the browser's `querySelectorAll` gets. Parsing it gives an
    /// equal list. Tag and attribute names are lower-case, `*` is written only when a compound
    /// has nothing else, attribute values are double-quoted, and selectors are separated by
    /// `", "` and compounds by one space.
    pub fn as_css(&self) -> String {
        let mut out = String::new();
        for (i, complex) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            for (j, compound) in complex.0.iter().enumerate() {
                if j > 0 {
                    out.push(' ');
                }
                compound.write_css(&mut out);
            }
        }
        out
    }
}

impl fmt::Display for SelectorList {
    /// [`SelectorList::as_css`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_css())
    }
}

impl Complex {
    fn matches(&self, element: &dyn ElementView, ancestors: &[&dyn ElementView]) -> bool {
        let Some((subject, outer)) = self.0.split_last() else {
            return false;
        };
        if !subject.matches(element) {
            return false;
        }
        // With descendant combinators only, taking the nearest matching ancestor for each
        // compound never loses a match, so no backtracking is needed.
        let mut rest = ancestors.iter();
        outer
            .iter()
            .rev()
            .all(|compound| rest.any(|a| compound.matches(*a)))
    }
}

impl Compound {
    fn matches(&self, e: &dyn ElementView) -> bool {
        if let Some(tag) = &self.tag {
            if !e.tag().eq_ignore_ascii_case(tag) {
                return false;
            }
        }
        self.parts.iter().all(|p| match p {
            Part::Id(id) => e.attr("id") == Some(id.as_str()),
            Part::Class(class) => e
                .attr("class")
                .is_some_and(|v| v.split_ascii_whitespace().any(|c| c == class)),
            Part::Attr { name, value: None } => e.attr(name).is_some(),
            Part::Attr {
                name,
                value: Some(value),
            } => e.attr(name) == Some(value.as_str()),
        })
    }

    fn write_css(&self, out: &mut String) {
        match &self.tag {
            Some(tag) => write_ident(tag, out),
            None if self.parts.is_empty() => out.push('*'),
            None => {}
        }
        for part in &self.parts {
            match part {
                Part::Id(id) => {
                    out.push('#');
                    write_ident(id, out);
                }
                Part::Class(class) => {
                    out.push('.');
                    write_ident(class, out);
                }
                Part::Attr { name, value } => {
                    out.push('[');
                    write_ident(name, out);
                    if let Some(v) = value {
                        out.push('=');
                        write_string(v, out);
                    }
                    out.push(']');
                }
            }
        }
    }
}

/// Writes `c` as a CSS hex escape (`\31 `).
fn write_hex_escape(c: char, out: &mut String) {
    out.push_str(&format!("\\{:x} ", u32::from(c)));
}

/// Writes an identifier so that it reads back as itself (CSSOM "serialize an identifier").
fn write_ident(ident: &str, out: &mut String) {
    let first_is_dash = ident.starts_with('-');
    for (i, c) in ident.chars().enumerate() {
        let leading_digit = c.is_ascii_digit() && (i == 0 || (i == 1 && first_is_dash));
        if c.is_control() || leading_digit {
            write_hex_escape(c, out);
        } else if i == 0 && c == '-' && ident.len() == 1 {
            out.push_str("\\-");
        } else if !c.is_ascii() || c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else {
            out.push('\\');
            out.push(c);
        }
    }
}

/// Writes a double-quoted string that reads back as `s` (CSSOM "serialize a string").
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c.is_control() {
            write_hex_escape(c, out);
        } else if c == '"' || c == '\\' {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// CSS white space (after preprocessing, which the parser folds in: CR and CR LF count as one).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0C')
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == '-'
}

/// Shown with messages about escapes and identifiers.
const ESCAPE_HINT: &str = "characters outside letters, digits, '-' and '_' are written with a backslash, e.g. \"#\\31 23\" for the id \"123\"";

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    /// 1-based position of the next character, for messages.
    fn here(&self) -> usize {
        self.pos + 1
    }

    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn list(&mut self) -> Result<Vec<Complex>, String> {
        if let Some((i, c)) = self
            .chars
            .iter()
            .enumerate()
            .find(|(_, c)| c.is_control() && !is_space(**c))
        {
            return Err(format!(
                "contains the control character U+{:04X} at character {}",
                u32::from(*c),
                i + 1
            ));
        }
        self.skip_space();
        if self.peek().is_none() {
            return Err("is empty; write a selector such as \"#api-key\", \".secret\" or \"input[name=otp]\"".to_owned());
        }
        let mut list = vec![self.complex()?];
        while self.peek() == Some(',') {
            self.pos += 1;
            self.skip_space();
            list.push(self.complex()?);
        }
        // `complex` stops only at a comma or the end.
        Ok(list)
    }

    /// One complex selector, up to a comma or the end (white space after it included).
    fn complex(&mut self) -> Result<Complex, String> {
        let mut compounds = Vec::new();
        loop {
            compounds.push(self.compound()?);
            let spaced = self.skip_space();
            match self.peek() {
                None | Some(',') => return Ok(Complex(compounds)),
                Some(c @ ('>' | '+' | '~')) => {
                    let kind = if c == '>' { "child" } else { "sibling" };
                    return Err(format!(
                        "the {kind} combinator {c:?} at character {} is not supported; only descendant selectors are (compounds separated by white space, e.g. \"form input\")",
                        self.here()
                    ));
                }
                Some(_) if spaced => {}
                // `compound` stops only where a part cannot start; `unexpected` explains.
                Some(_) => return Err(self.unexpected()),
            }
        }
    }

    /// One compound selector: it must start here.
    fn compound(&mut self) -> Result<Compound, String> {
        let mut compound = Compound {
            tag: None,
            parts: Vec::new(),
        };
        let mut any = false;
        if self.peek() == Some('*') {
            self.pos += 1;
            any = true;
        } else if self.starts_ident() {
            compound.tag = Some(self.ident()?.to_ascii_lowercase());
            any = true;
        }
        if self.peek() == Some('|') {
            return Err(format!(
                "namespace prefixes (\"ns|tag\") are not supported (character {})",
                self.here()
            ));
        }
        loop {
            match self.peek() {
                Some('#') => {
                    self.pos += 1;
                    let id = self.ident_after('#', "an id")?;
                    compound.parts.push(Part::Id(id));
                }
                Some('.') => {
                    self.pos += 1;
                    let class = self.ident_after('.', "a class name")?;
                    compound.parts.push(Part::Class(class));
                }
                Some('[') => {
                    let part = self.attribute()?;
                    compound.parts.push(part);
                }
                _ => break,
            }
            any = true;
        }
        if any {
            Ok(compound)
        } else {
            Err(match self.peek() {
                None | Some(',') => format!(
                    "a selector is missing at character {} (a comma at the start or end of the list, or two commas in a row)",
                    self.here()
                ),
                Some(_) => self.unexpected(),
            })
        }
    }

    /// Explains the character at the current position, which cannot continue a selector.
    fn unexpected(&self) -> String {
        let at = self.here();
        match self.peek() {
            None => format!("the selector ends unexpectedly at character {at}"),
            Some(':') => {
                let colons = if self.peek_at(1) == Some(':') { 2 } else { 1 };
                let name: String = self.chars[self.pos + colons..]
                    .iter()
                    .take_while(|c| is_name_char(**c))
                    .collect();
                let what = if colons == 2 {
                    "pseudo-element"
                } else {
                    "pseudo-class"
                };
                format!(
                    "the {what} \"{}{name}\" at character {at} is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)",
                    ":".repeat(colons)
                )
            }
            Some(c @ ('>' | '+' | '~')) => {
                let kind = if c == '>' { "child" } else { "sibling" };
                format!(
                    "the {kind} combinator {c:?} at character {at} is not supported; only descendant selectors are (compounds separated by white space, e.g. \"form input\")"
                )
            }
            Some(']') => format!("unmatched ']' at character {at}"),
            Some('\\') if self.peek_at(1).is_none() => {
                format!("the backslash at character {at} escapes nothing (it ends the selector)")
            }
            Some('\\') => format!(
                "the backslash at character {at} is followed by a line break, which cannot be escaped"
            ),
            Some(c) if c.is_ascii_digit() => format!(
                "unexpected {c:?} at character {at}: names do not start with a digit; {ESCAPE_HINT}"
            ),
            Some(c) => format!("unexpected {c:?} at character {at}"),
        }
    }

    /// Whether an identifier starts here (CSS "would start an identifier").
    fn starts_ident(&self) -> bool {
        let starts_name = |c: Option<char>, next: Option<char>| match c {
            Some('\\') => next.is_some_and(|n| n != '\n' && n != '\r' && n != '\x0C'),
            Some(c) => is_name_start(c),
            None => false,
        };
        match self.peek() {
            Some('-') => {
                self.peek_at(1) == Some('-') || starts_name(self.peek_at(1), self.peek_at(2))
            }
            c => starts_name(c, self.peek_at(1)),
        }
    }

    /// An identifier after `sign` (`#` or `.`), named `what` in messages.
    fn ident_after(&mut self, sign: char, what: &str) -> Result<String, String> {
        if self.starts_ident() {
            return self.ident();
        }
        let at = self.here();
        Err(match self.peek() {
            Some(c)
                if c.is_ascii_digit()
                    || (c == '-' && self.peek_at(1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                format!(
                    "{what} cannot start with a digit as written (character {at}); {ESCAPE_HINT}"
                )
            }
            Some('\\') => format!(
                "{what} after {sign:?} starts with an escape that escapes nothing (character {at})"
            ),
            _ => format!("expected {what} after {sign:?} at character {at}"),
        })
    }

    /// An identifier; the caller checked [`Parser::starts_ident`].
    fn ident(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                Some('\\') => out.push(self.escape()?),
                Some(c) if is_name_char(c) => {
                    out.push(c);
                    self.pos += 1;
                }
                _ => return Ok(out),
            }
        }
    }

    /// A backslash escape starting here.
    fn escape(&mut self) -> Result<char, String> {
        let at = self.here();
        self.pos += 1;
        match self.peek() {
            None => Err(format!(
                "the backslash at character {at} escapes nothing (it ends the selector)"
            )),
            Some('\n' | '\r' | '\x0C') => Err(format!(
                "the backslash at character {at} is followed by a line break, which cannot be escaped"
            )),
            Some(c) if c.is_ascii_hexdigit() => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 6 {
                    match self.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            digits += 1;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                // One white space character ends a hex escape (CR LF counts as one).
                if self.peek() == Some('\r') && self.peek_at(1) == Some('\n') {
                    self.pos += 2;
                } else if self.peek().is_some_and(is_space) {
                    self.pos += 1;
                }
                match char::from_u32(value) {
                    Some(c) if value != 0 => Ok(c),
                    _ => Err(format!(
                        "the escape at character {at} (U+{value:04X}) does not name a character"
                    )),
                }
            }
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
        }
    }

    /// `[name]` or `[name=value]`, starting at `[`.
    fn attribute(&mut self) -> Result<Part, String> {
        let open = self.here();
        self.pos += 1;
        self.skip_space();
        if self.peek() == Some('|') || (self.peek() == Some('*') && self.peek_at(1) == Some('|')) {
            return Err(format!(
                "namespace prefixes in attribute selectors (\"[ns|attr]\") are not supported (character {})",
                self.here()
            ));
        }
        if !self.starts_ident() {
            return Err(match self.peek() {
                None => format!("the attribute selector opened at character {open} is not closed with ']'"),
                _ => format!(
                    "expected an attribute name at character {} (in the attribute selector opened at character {open})",
                    self.here()
                ),
            });
        }
        let name = self.ident()?.to_ascii_lowercase();
        if self.peek() == Some('|') && self.peek_at(1) != Some('=') {
            return Err(format!(
                "namespace prefixes in attribute selectors (\"[ns|attr]\") are not supported (character {})",
                self.here()
            ));
        }
        let mut spaced = self.skip_space();
        let value = match self.peek() {
            Some(']') => None,
            Some('=') => {
                self.pos += 1;
                self.skip_space();
                let v = match self.peek() {
                    Some(q @ ('"' | '\'')) => self.string(q)?,
                    _ if self.starts_ident() => self.ident()?,
                    None => {
                        return Err(format!(
                            "the attribute selector opened at character {open} has no value after '='"
                        ))
                    }
                    Some(_) => {
                        return Err(format!(
                            "the value at character {} is neither a name nor a quoted string; quote it, e.g. [{name}=\"…\"]",
                            self.here()
                        ))
                    }
                };
                spaced = self.skip_space();
                Some(v)
            }
            Some(op @ ('~' | '|' | '^' | '$' | '*')) if self.peek_at(1) == Some('=') => {
                return Err(format!(
                    "the attribute operator \"{op}=\" at character {} is not supported; only [attr] and [attr=value] (whole value) are",
                    self.here()
                ));
            }
            None => {
                return Err(format!(
                    "the attribute selector opened at character {open} is not closed with ']'"
                ))
            }
            Some(_) => {
                return Err(format!(
                    "expected '=' or ']' at character {} (in the attribute selector opened at character {open})",
                    self.here()
                ))
            }
        };
        match self.peek() {
            Some(']') => {
                self.pos += 1;
                Ok(Part::Attr { name, value })
            }
            None => Err(format!(
                "the attribute selector opened at character {open} is not closed with ']'"
            )),
            Some(c) if spaced && value.is_some() && is_name_start(c) => Err(format!(
                "the attribute selector flag {c:?} at character {} is not supported; values compare exactly",
                self.here()
            )),
            Some(_) => Err(format!(
                "expected ']' at character {} (to close the attribute selector opened at character {open})",
                self.here()
            )),
        }
    }

    /// A string quoted with `quote`, starting at the opening quote.
    fn string(&mut self, quote: char) -> Result<String, String> {
        let open = self.here();
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(format!(
                        "the string opened at character {open} is not closed with {quote}"
                    ))
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\n' | '\r' | '\x0C') => {
                    return Err(format!(
                        "the string opened at character {open} contains a line break; write it as \"\\a \""
                    ))
                }
                Some('\\') => out.push(self.escape()?),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn css(text: &str) -> Result<String, String> {
        SelectorList::parse(text).map(|s| s.as_css())
    }

    #[test]
    fn structure() {
        let s = SelectorList::parse("Form.login  INPUT[Name=otp], *").unwrap();
        assert_eq!(
            s,
            SelectorList(vec![
                Complex(vec![
                    Compound {
                        tag: Some("form".into()),
                        parts: vec![Part::Class("login".into())],
                    },
                    Compound {
                        tag: Some("input".into()),
                        parts: vec![Part::Attr {
                            name: "name".into(),
                            value: Some("otp".into())
                        }],
                    },
                ]),
                Complex(vec![Compound {
                    tag: None,
                    parts: vec![]
                }]),
            ])
        );
    }

    #[test]
    fn identifiers_are_escaped_where_needed() {
        for (text, want) in [
            ("#\\31 23", "#\\31 23"),
            ("#\\31\t23", "#\\31 23"),
            ("#\\31\r\n23", "#\\31 23"),
            ("#-\\31", "#-\\31 "),
            ("#\\-", "#\\-"),
            ("#--", "#--"),
            ("#--1", "#--1"),
            ("#a\\.b", "#a\\.b"),
            ("#a\\:b", "#a\\:b"),
            ("#\\61 b", "#ab"),
            ("#\\000061", "#a"),
            ("#\\0000611", "#a1"),
            (".caf\\e9", ".café"),
            (".café", ".café"),
            (".\\7f x", ".\\7f x"),
            ("[a=\"q\\\"\\\\\"]", "[a=\"q\\\"\\\\\"]"),
            ("[a='x\"y']", "[a=\"x\\\"y\"]"),
            ("[a=\"\\1 \"]", "[a=\"\\1 \"]"),
            ("[a=\"\"]", "[a=\"\"]"),
        ] {
            assert_eq!(css(text).as_deref(), Ok(want), "{text:?}");
        }
    }

    fn ident() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_][a-zA-Z0-9_-]{0,6}",
            "-{0,2}[0-9]{0,2}[a-z]{0,2}",
            "[\\x01-\\x7f]{1,6}",
            "\\PC{1,6}",
        ]
        .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn part() -> impl Strategy<Value = Part> {
        prop_oneof![
            ident().prop_map(Part::Id),
            ident().prop_map(Part::Class),
            (
                ident().prop_map(|n| n.to_ascii_lowercase()),
                prop::option::of(prop_oneof!["[\\x01-\\x7f]{0,6}", "\\PC{0,6}"])
            )
                .prop_map(|(name, value)| Part::Attr { name, value }),
        ]
    }

    fn compound() -> impl Strategy<Value = Compound> {
        (
            prop::option::of(ident().prop_map(|t| t.to_ascii_lowercase())),
            prop::collection::vec(part(), 0..4),
        )
            .prop_map(|(tag, parts)| Compound { tag, parts })
    }

    fn list() -> impl Strategy<Value = SelectorList> {
        prop::collection::vec(
            prop::collection::vec(compound(), 1..4).prop_map(Complex),
            1..3,
        )
        .prop_map(SelectorList)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_list_reads_back_from_its_canonical_text(s in list()) {
            let text = s.as_css();
            prop_assert_eq!(SelectorList::parse(&text), Ok(s), "{}", text);
        }
    }
}
