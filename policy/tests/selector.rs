//! The selector subset of web `mask_selectors`: parsing, canonical text and matching.

use proptest::prelude::*;
use psmgate_policy::{ElementView, SelectorList};

fn css(text: &str) -> Result<String, String> {
    SelectorList::parse(text).map(|s| s.as_css())
}

#[test]
fn accepted_forms_and_their_canonical_text() {
    for (text, canonical) in [
        ("#api-key", "#api-key"),
        (".secret", ".secret"),
        ("input[name=otp]", "input[name=\"otp\"]"),
        ("input[name=\"otp\"]", "input[name=\"otp\"]"),
        ("input[name='otp']", "input[name=\"otp\"]"),
        ("[data-secret]", "[data-secret]"),
        ("[ data-secret ]", "[data-secret]"),
        ("[ name = \"a b\" ]", "[name=\"a b\"]"),
        ("[value=\"\"]", "[value=\"\"]"),
        ("*", "*"),
        ("*.secret", ".secret"),
        ("*[type=password]", "[type=\"password\"]"),
        ("INPUT[TYPE=Password]", "input[type=\"Password\"]"),
        (
            "div#Main.Cls.other[a][b=c]",
            "div#Main.Cls.other[a][b=\"c\"]",
        ),
        ("#a#b", "#a#b"),
        ("form .secret", "form .secret"),
        ("  form\t\n  div   input  ", "form div input"),
        ("#a,.b", "#a, .b"),
        ("#a ,\n .b , c d", "#a, .b, c d"),
        ("_x-1", "_x-1"),
        ("-x", "-x"),
        ("--x", "--x"),
        ("my-element.x", "my-element.x"),
        (".café", ".café"),
        (".\\31 0x", ".\\31 0x"),
        ("#\\31 23", "#\\31 23"),
        ("#\\000031 23", "#\\31 23"),
        (".a\\.b", ".a\\.b"),
        (".a\\:b", ".a\\:b"),
        (".\\61", ".a"),
        ("[a='it\\'s']", "[a=\"it's\"]"),
        ("[a='say \"hi\"']", "[a=\"say \\\"hi\\\"\"]"),
        ("[a=\"back\\\\slash\"]", "[a=\"back\\\\slash\"]"),
    ] {
        assert_eq!(css(text).as_deref(), Ok(canonical), "{text:?}");
        // The canonical text is a fixed point and parses to the same list.
        assert_eq!(css(canonical).as_deref(), Ok(canonical), "{canonical:?}");
        assert_eq!(
            SelectorList::parse(canonical),
            SelectorList::parse(text),
            "{text:?}"
        );
    }
    let s = SelectorList::parse("a  b").unwrap();
    assert_eq!(s.to_string(), s.as_css());
}

#[test]
fn rejected_forms_name_the_problem() {
    const DESCENDANT_ONLY: &str =
        "is not supported; only descendant selectors are (compounds separated by white space, e.g. \"form input\")";
    const ESCAPES: &str = "characters outside letters, digits, '-' and '_' are written with a backslash, e.g. \"#\\31 23\" for the id \"123\"";
    const EMPTY: &str =
        "is empty; write a selector such as \"#api-key\", \".secret\" or \"input[name=otp]\"";
    let missing = |at: usize| {
        format!("a selector is missing at character {at} (a comma at the start or end of the list, or two commas in a row)")
    };
    for (text, message) in [
        ("", EMPTY.to_owned()),
        (" \t\n", EMPTY.to_owned()),
        ("a,,b", missing(3)),
        ("a,", missing(3)),
        (", a", missing(1)),
        ("form > input", format!("the child combinator '>' at character 6 {DESCENDANT_ONLY}")),
        ("form>input", format!("the child combinator '>' at character 5 {DESCENDANT_ONLY}")),
        ("h1 + p", format!("the sibling combinator '+' at character 4 {DESCENDANT_ONLY}")),
        ("h1~p", format!("the sibling combinator '~' at character 3 {DESCENDANT_ONLY}")),
        ("a:hover", "the pseudo-class \":hover\" at character 2 is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)".to_owned()),
        ("input:not(.x)", "the pseudo-class \":not\" at character 6 is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)".to_owned()),
        (":root", "the pseudo-class \":root\" at character 1 is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)".to_owned()),
        ("p::before", "the pseudo-element \"::before\" at character 2 is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)".to_owned()),
        ("[a^=b]", "the attribute operator \"^=\" at character 3 is not supported; only [attr] and [attr=value] (whole value) are".to_owned()),
        ("[a $= b]", "the attribute operator \"$=\" at character 4 is not supported; only [attr] and [attr=value] (whole value) are".to_owned()),
        ("[a*=b]", "the attribute operator \"*=\" at character 3 is not supported; only [attr] and [attr=value] (whole value) are".to_owned()),
        ("[a~=b]", "the attribute operator \"~=\" at character 3 is not supported; only [attr] and [attr=value] (whole value) are".to_owned()),
        ("[a|=b]", "the attribute operator \"|=\" at character 3 is not supported; only [attr] and [attr=value] (whole value) are".to_owned()),
        ("[a=b i]", "the attribute selector flag 'i' at character 6 is not supported; values compare exactly".to_owned()),
        ("[a=\"b\" s]", "the attribute selector flag 's' at character 8 is not supported; values compare exactly".to_owned()),
        ("[a", "the attribute selector opened at character 1 is not closed with ']'".to_owned()),
        ("x[a=b", "the attribute selector opened at character 2 is not closed with ']'".to_owned()),
        ("[a=", "the attribute selector opened at character 1 has no value after '='".to_owned()),
        ("[]", "expected an attribute name at character 2 (in the attribute selector opened at character 1)".to_owned()),
        ("[=x]", "expected an attribute name at character 2 (in the attribute selector opened at character 1)".to_owned()),
        ("[a b]", "expected '=' or ']' at character 4 (in the attribute selector opened at character 1)".to_owned()),
        ("[a=b c=d]", "the attribute selector flag 'c' at character 6 is not supported; values compare exactly".to_owned()),
        ("[a=\"b\"c]", "expected ']' at character 7 (to close the attribute selector opened at character 1)".to_owned()),
        ("[maxlength=10]", "the value at character 12 is neither a name nor a quoted string; quote it, e.g. [maxlength=\"…\"]".to_owned()),
        ("[a=\"x]", "the string opened at character 4 is not closed with \"".to_owned()),
        ("[a='x\ny']", "the string opened at character 4 contains a line break; write it as \"\\a \"".to_owned()),
        ("svg|a", "namespace prefixes (\"ns|tag\") are not supported (character 4)".to_owned()),
        ("*|a", "namespace prefixes (\"ns|tag\") are not supported (character 2)".to_owned()),
        ("|a", "namespace prefixes (\"ns|tag\") are not supported (character 1)".to_owned()),
        ("[xlink|href]", "namespace prefixes in attribute selectors (\"[ns|attr]\") are not supported (character 7)".to_owned()),
        ("[*|href]", "namespace prefixes in attribute selectors (\"[ns|attr]\") are not supported (character 2)".to_owned()),
        ("#", "expected an id after '#' at character 2".to_owned()),
        ("a.", "expected a class name after '.' at character 3".to_owned()),
        ("#123", format!("an id cannot start with a digit as written (character 2); {ESCAPES}")),
        ("#-1", format!("an id cannot start with a digit as written (character 2); {ESCAPES}")),
        (".1a", format!("a class name cannot start with a digit as written (character 2); {ESCAPES}")),
        ("1a", format!("unexpected '1' at character 1: names do not start with a digit; {ESCAPES}")),
        ("a*", "unexpected '*' at character 2".to_owned()),
        ("a)", "unexpected ')' at character 2".to_owned()),
        ("a]", "unmatched ']' at character 2".to_owned()),
        ("a & b", "unexpected '&' at character 3".to_owned()),
        ("\\", "the backslash at character 1 escapes nothing (it ends the selector)".to_owned()),
        ("a\\", "the backslash at character 2 escapes nothing (it ends the selector)".to_owned()),
        ("a\\\nb", "the backslash at character 2 is followed by a line break, which cannot be escaped".to_owned()),
        ("#\\0", "the escape at character 2 (U+0000) does not name a character".to_owned()),
        ("#\\d800", "the escape at character 2 (U+D800) does not name a character".to_owned()),
        ("#\\110000", "the escape at character 2 (U+110000) does not name a character".to_owned()),
        ("a\u{7}b", "contains the control character U+0007 at character 2".to_owned()),
    ] {
        assert_eq!(SelectorList::parse(text), Err(message), "{text:?}");
    }
}

/// An element for matching: a tag and attributes (names compared without regard to ASCII case).
struct El {
    tag: &'static str,
    attrs: Vec<(&'static str, &'static str)>,
}

fn el(tag: &'static str, attrs: &[(&'static str, &'static str)]) -> El {
    El {
        tag,
        attrs: attrs.to_vec(),
    }
}

impl ElementView for El {
    fn tag(&self) -> &str {
        self.tag
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn matches(selector: &str, element: &El, ancestors: &[&El]) -> bool {
    let s = SelectorList::parse(selector).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
    let ancestors: Vec<&dyn ElementView> =
        ancestors.iter().map(|a| *a as &dyn ElementView).collect();
    s.matches(element, &ancestors)
}

#[test]
fn tags_ids_classes_and_attributes() {
    let input = el(
        "input",
        &[
            ("id", "Api-Key"),
            ("class", "form-control\tsecret\n wide"),
            ("Name", "otp"),
            ("data-empty", ""),
        ],
    );
    for (selector, want) in [
        ("input", true),
        ("INPUT", true),
        ("*", true),
        ("div", false),
        ("inp", false),
        ("#Api-Key", true),
        ("#api-key", false),
        ("#Api", false),
        (".secret", true),
        (".wide", true),
        (".form-control.secret", true),
        (".Secret", false),
        (".sec", false),
        (".secret.missing", false),
        ("[name]", true),
        ("[NAME]", true),
        ("[name=otp]", true),
        ("[Name=\"otp\"]", true),
        ("[name=OTP]", false),
        ("[name=ot]", false),
        ("[data-empty]", true),
        ("[data-empty=\"\"]", true),
        ("[value]", false),
        ("[value=\"\"]", false),
        ("[class=secret]", false),
        ("[id=Api-Key]", true),
        ("input#Api-Key.secret[name=otp]", true),
        ("input#Api-Key.secret[name=totp]", false),
        ("textarea, .wide", true),
        ("textarea, #nope", false),
    ] {
        assert_eq!(matches(selector, &input, &[]), want, "{selector:?}");
    }
    // No id or class attribute: id and class selectors cannot match.
    let bare = el("span", &[]);
    assert!(!matches("#x", &bare, &[]));
    assert!(!matches(".x", &bare, &[]));
    assert!(matches("span", &bare, &[]));
    let blank_class = el("span", &[("class", "  ")]);
    assert!(!matches(".x", &blank_class, &[]));
}

#[test]
fn descendant_selectors_look_up_the_ancestors() {
    let html = el("html", &[]);
    let form = el("form", &[("class", "login"), ("id", "f")]);
    let div = el("div", &[("class", "row")]);
    let input = el("input", &[("name", "otp")]);
    // Nearest ancestor first.
    let up = [&div, &form, &html];
    for (selector, want) in [
        ("form input", true),
        ("form [name=otp]", true),
        ("html input", true),
        ("html form div input", true),
        ("html form input", true),
        ("html div input", true),
        (".login .row input", true),
        ("#f input", true),
        ("* input", true),
        ("* * * input", true),
        ("* * * * input", false),
        // Order matters: the form is outside the div.
        ("div form input", false),
        ("form html input", false),
        // The element is not its own ancestor.
        ("input input", false),
        ("table input", false),
        ("form div", false),
        ("table input, .login input", true),
    ] {
        assert_eq!(matches(selector, &input, &up), want, "{selector:?}");
    }
    assert!(!matches("form input", &input, &[]));
    assert!(matches("div", &div, &[&form, &html]));
    // A compound that fits several ancestors takes the nearest, and outer ones are still found.
    let outer = el("div", &[("class", "a")]);
    let inner = el("div", &[("class", "b")]);
    let p = el("p", &[]);
    assert!(matches("div div p", &p, &[&inner, &outer]));
    assert!(matches(".a div p", &p, &[&inner, &outer]));
    assert!(!matches(".b .a p", &p, &[&inner, &outer]));
    assert!(!matches("div div div p", &p, &[&inner, &outer]));
}

/// Small generated documents: a chain of elements from a tiny alphabet, so that matches and
/// misses are both common.
#[derive(Debug, Clone)]
struct Node {
    tag: &'static str,
    class: &'static str,
}

impl ElementView for Node {
    fn tag(&self) -> &str {
        self.tag
    }
    fn attr(&self, name: &str) -> Option<&str> {
        (name == "class").then_some(self.class)
    }
}

#[derive(Debug, Clone)]
struct Simple {
    tag: Option<&'static str>,
    class: Option<&'static str>,
}

impl Simple {
    fn css(&self) -> String {
        match (self.tag, self.class) {
            (None, None) => "*".to_owned(),
            (t, c) => format!(
                "{}{}",
                t.unwrap_or(""),
                c.map(|c| format!(".{c}")).unwrap_or_default()
            ),
        }
    }
    fn fits(&self, n: &Node) -> bool {
        self.tag.is_none_or(|t| t == n.tag)
            && self
                .class
                .is_none_or(|c| n.class.split_ascii_whitespace().any(|x| x == c))
    }
}

/// The definition of a descendant chain, with backtracking over every choice of ancestors.
fn reference(chain: &[Simple], element: &Node, ancestors: &[Node]) -> bool {
    fn outer(chain: &[Simple], ancestors: &[Node]) -> bool {
        let Some((last, rest)) = chain.split_last() else {
            return true;
        };
        (0..ancestors.len()).any(|i| last.fits(&ancestors[i]) && outer(rest, &ancestors[i + 1..]))
    }
    match chain.split_last() {
        Some((last, rest)) => last.fits(element) && outer(rest, ancestors),
        None => false,
    }
}

fn node() -> impl Strategy<Value = Node> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        prop::sample::select(vec!["", "x", "y", "x y"]),
    )
        .prop_map(|(tag, class)| Node { tag, class })
}

fn simple() -> impl Strategy<Value = Simple> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::of(prop::sample::select(vec!["x", "y"])),
    )
        .prop_map(|(tag, class)| Simple { tag, class })
}

/// Selector text from the subset, with its optional forms and odd spacing.
fn selector_text() -> impl Strategy<Value = String> {
    let ident = prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_-]{0,5}",
        "-[a-z_][a-z0-9]{0,3}",
        "\\\\[1-9][0-9a-f]{0,2} [a-z]{0,2}",
        "[a-z]{1,3}\\\\[.:#\\[\\]>+~ ,\"'][a-z]{0,2}",
        "[é日ß][a-z]{0,2}",
    ];
    let value = prop_oneof![
        ident.clone(),
        "\"[a-zA-Z0-9 .:#'\\[\\]-]{0,6}\"",
        "'[a-zA-Z0-9 .:#\"\\[\\]-]{0,6}'",
        Just("\"q\\\"x\\\\\"".to_owned()),
    ];
    let part = prop_oneof![
        ident.clone().prop_map(|i| format!("#{i}")),
        ident.clone().prop_map(|i| format!(".{i}")),
        ident.clone().prop_map(|i| format!("[{i}]")),
        (ident.clone(), value, "[ ]{0,1}").prop_map(|(i, v, s)| format!("[{s}{i}{s}={s}{v}{s}]")),
    ];
    let compound = (
        prop::option::of(prop_oneof![Just("*".to_owned()), ident]),
        prop::collection::vec(part, 0..3),
    )
        .prop_map(|(tag, parts)| {
            let tag = match (tag, parts.is_empty()) {
                (None, true) => "*".to_owned(),
                (t, _) => t.unwrap_or_default(),
            };
            format!("{tag}{}", parts.concat())
        });
    let complex = prop::collection::vec(compound, 1..4).prop_map(|c| c.join(" \t"));
    prop::collection::vec(complex, 1..3).prop_map(|c| format!(" {} ", c.join(" ,\n")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_canonical_text_reads_back(text in selector_text()) {
        let parsed = SelectorList::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
        let Ok(parsed) = parsed else { unreachable!() };
        let canonical = parsed.as_css();
        prop_assert_eq!(SelectorList::parse(&canonical), Ok(parsed.clone()), "{:?} -> {:?}", text, canonical);
        prop_assert_eq!(css(&canonical), Ok(canonical.clone()));
    }

    #[test]
    fn any_text_is_answered_without_panic(text in prop_oneof![
        "[a-z#.\\[\\]=\"' ,>+~:*|\\\\0-9-]{0,16}",
        "\\PC{0,12}",
        ".{0,12}",
    ]) {
        if let Ok(parsed) = SelectorList::parse(&text) {
            let canonical = parsed.as_css();
            prop_assert_eq!(SelectorList::parse(&canonical), Ok(parsed), "{:?} -> {:?}", text, canonical);
        }
    }

    #[test]
    fn descendant_matching_agrees_with_the_definition(
        chain in prop::collection::vec(simple(), 1..4),
        element in node(),
        ancestors in prop::collection::vec(node(), 0..6),
    ) {
        let text = chain.iter().map(Simple::css).collect::<Vec<_>>().join(" ");
        let s = SelectorList::parse(&text);
        prop_assert!(s.is_ok(), "{:?}: {:?}", text, s);
        let Ok(s) = s else { unreachable!() };
        let up: Vec<&dyn ElementView> = ancestors.iter().map(|a| a as &dyn ElementView).collect();
        prop_assert_eq!(
            s.matches(&element, &up),
            reference(&chain, &element, &ancestors),
            "{:?} on {:?} in {:?}", text, element, ancestors
        );
    }
}
