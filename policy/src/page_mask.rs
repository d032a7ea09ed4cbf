//! In-page masking of web sessions: the checks on `mask_selectors` and `mask_patterns`, and the
//! lists a recorded host gets.

use crate::selector::SelectorList;

/// Longest entry of `mask_selectors`, in characters.
pub const MAX_MASK_SELECTOR: usize = 256;

/// Longest entry of `mask_patterns`, in characters.
pub const MAX_MASK_PATTERN: usize = 512;

/// Checks one `mask_selectors` entry and gives its canonical form, or says what is wrong.
pub(crate) fn check_selector(text: &str) -> Result<String, String> {
    let len = text.chars().count();
    if len > MAX_MASK_SELECTOR {
        return Err(format!(
            "is {len} characters long; a selector has at most {MAX_MASK_SELECTOR}"
        ));
    }
    SelectorList::parse(text).map(|s| s.as_css()).map_err(|e| {
        if text.trim().is_empty() {
            e
        } else {
            format!("{text:?}: {e}")
        }
    })
}

/// Checks one `mask_patterns` entry, or says what is wrong.
pub(crate) fn check_pattern(text: &str) -> Result<(), String> {
    let len = text.chars().count();
    if text.is_empty() {
        return Err("is empty; write a regular expression such as \"AKIA[0-9A-Z]{16}\"".to_owned());
    }
    if len > MAX_MASK_PATTERN {
        return Err(format!(
            "is {len} characters long; a pattern has at most {MAX_MASK_PATTERN}"
        ));
    }
    // The parser `regex` uses, with its default settings, for the position of a syntax error
    // and the shortest match.
    let hir = regex_syntax::Parser::new().parse(text).map_err(|e| {
        format!(
            "{text:?} is not a valid regular expression: {}",
            syntax_error(text, &e)
        )
    })?;
    if hir.properties().minimum_len() == Some(0) {
        return Err(format!(
            "{text:?} matches the empty string: it would mask nothing useful and everything between characters"
        ));
    }
    // Compiling also enforces the engine's size limit.
    regex::Regex::new(text).map_err(|e| {
        format!(
            "{text:?} is not a valid regular expression: {}",
            one_line(&e.to_string())
        )
    })?;
    Ok(())
}

/// A parse error on one line: what is wrong and at which character.
fn syntax_error(text: &str, e: &regex_syntax::Error) -> String {
    let (kind, offset) = match e {
        regex_syntax::Error::Parse(e) => (e.kind().to_string(), e.span().start.offset),
        regex_syntax::Error::Translate(e) => (e.kind().to_string(), e.span().start.offset),
        other => return one_line(&other.to_string()),
    };
    let at = text.get(..offset).map_or(1, |s| s.chars().count() + 1);
    let hint = if kind.starts_with("Unicode property") {
        " (Unicode property classes such as \\p{Greek} are not available; list the characters in a class such as [α-ω])"
    } else {
        ""
    };
    format!("{kind} at character {at}{hint}")
}

/// The last line of a multi-line engine message (the one that says what is wrong), without
/// the `error: ` prefix.
fn one_line(message: &str) -> String {
    let line = message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// `first`, then the entries of `then` not already in it, in order; selectors compare by
/// canonical form so that `input[name=otp]` and `input[name="otp"]` count once.
pub(crate) fn union_selectors(first: &[String], then: &[String]) -> Vec<String> {
    let key = |s: &String| {
        SelectorList::parse(s)
            .map(|l| l.as_css())
            .unwrap_or_else(|_| s.clone())
    };
    let mut keys = Vec::new();
    let mut out = Vec::new();
    for s in first.iter().chain(then) {
        let k = key(s);
        if !keys.contains(&k) {
            keys.push(k);
            out.push(s.clone());
        }
    }
    out
}

/// `first`, then the entries of `then` not already in it, in order.
pub(crate) fn union_patterns(first: &[String], then: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in first.iter().chain(then) {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unions_keep_the_first_of_each() {
        assert_eq!(
            union_selectors(
                &strings(&["#a", "input[name=otp]", "#a"]),
                &strings(&["input[name=\"otp\"]", ".b", "#a"])
            ),
            ["#a", "input[name=otp]", ".b"]
        );
        assert_eq!(
            union_patterns(&strings(&["x+", "y+"]), &strings(&["y+", "x+", "z+"])),
            ["x+", "y+", "z+"]
        );
        assert!(union_patterns(&[], &[]).is_empty());
    }

    #[test]
    fn engine_messages_fit_on_one_line() {
        assert_eq!(
            one_line("regex parse error:\n    a(\n     ^\nerror: unclosed group\n"),
            "unclosed group"
        );
        assert_eq!(one_line("too big"), "too big");
    }
}
