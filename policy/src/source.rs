//! Where each field of a TOML document is, so errors can name a line and column.

use crate::error::{index_path, key_path, Diagnostic, Issue};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use toml_edit::{Item, Key, Value};

/// Spans of one field: its value, and its key through its value.
#[derive(Debug, Clone)]
struct Entry {
    value: Range<usize>,
    whole: Range<usize>,
}

/// The text of a configuration with a map from field paths to byte spans.
#[derive(Debug, Clone, Default)]
pub(crate) struct Source {
    /// Name used in diagnostics (usually the path given to `load`).
    pub name: String,
    /// Directory that relative paths in the configuration are relative to.
    pub base_dir: PathBuf,
    text: String,
    entries: BTreeMap<String, Entry>,
}

impl Source {
    /// A source without text: diagnostics carry only the name.
    pub fn unlocated(name: &str, base_dir: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            base_dir,
            ..Self::default()
        }
    }

    /// A source whose text did not parse: diagnostics carry positions but no field paths.
    pub fn text_only(name: &str, base_dir: PathBuf, text: &str) -> Self {
        Self {
            name: name.to_owned(),
            base_dir,
            text: text.to_owned(),
            entries: BTreeMap::new(),
        }
    }

    /// Indexes the spans of an already parsed document.
    pub fn new(
        name: &str,
        base_dir: PathBuf,
        text: &str,
        doc: &toml_edit::ImDocument<&str>,
    ) -> Self {
        let mut s = Self {
            name: name.to_owned(),
            base_dir,
            text: text.to_owned(),
            entries: BTreeMap::new(),
        };
        s.walk_table("", doc.as_table());
        s
    }

    fn add(&mut self, path: String, key: Option<&Key>, value: Option<Range<usize>>) {
        let key_span = key.and_then(Key::span);
        let Some(value) = value.or_else(|| key_span.clone()) else {
            return;
        };
        let whole = match key_span {
            Some(k) => k.start.min(value.start)..k.end.max(value.end),
            None => value.clone(),
        };
        self.entries.insert(path, Entry { value, whole });
    }

    fn walk_table(&mut self, base: &str, t: &toml_edit::Table) {
        for (k, _) in t.iter() {
            if let Some((key, item)) = t.get_key_value(k) {
                self.walk_item(key_path(base, k), Some(key), item);
            }
        }
    }

    fn walk_item(&mut self, path: String, key: Option<&Key>, item: &Item) {
        match item {
            Item::None => {}
            Item::Value(v) => self.walk_value(path, key, v),
            Item::Table(t) => {
                // A `[header]` table's span is its header; implicit tables have none.
                self.add(
                    path.clone(),
                    if t.span().is_some() { None } else { key },
                    t.span(),
                );
                self.walk_table(&path, t);
            }
            Item::ArrayOfTables(a) => {
                self.add(path.clone(), key, a.span());
                for (i, t) in a.iter().enumerate() {
                    let p = index_path(&path, i);
                    self.add(p.clone(), None, t.span());
                    self.walk_table(&p, t);
                }
            }
        }
    }

    fn walk_value(&mut self, path: String, key: Option<&Key>, v: &Value) {
        self.add(path.clone(), key, v.span());
        match v {
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.walk_value(index_path(&path, i), None, v);
                }
            }
            Value::InlineTable(t) => {
                for (k, _) in t.iter() {
                    if let Some((key, Item::Value(v))) = t.get_key_value(k) {
                        self.walk_value(key_path(&path, k), Some(key), v);
                    }
                }
            }
            _ => {}
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> Option<(usize, usize)> {
        if self.text.is_empty() {
            return None;
        }
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some((line, before[line_start..].chars().count() + 1))
    }

    /// Locates an issue by its path, falling back to the closest enclosing field.
    pub fn locate(&self, issue: &Issue) -> Diagnostic {
        let mut path = issue.path.as_str();
        let span = loop {
            if let Some(e) = self.entries.get(path) {
                break Some(e.value.start);
            }
            match parent(path) {
                Some(p) => path = p,
                None => break None,
            }
        };
        self.diagnostic(span, issue.path.clone(), issue.message.clone())
    }

    /// Locates an error at a byte span; the path is the innermost field that contains it.
    pub fn at_span(&self, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let path = span.as_ref().and_then(|s| {
            self.entries
                .iter()
                .filter(|(_, e)| {
                    e.whole.start <= s.start && s.start < e.whole.end.max(e.whole.start + 1)
                })
                .min_by_key(|(_, e)| e.whole.end - e.whole.start)
                .map(|(p, _)| p.clone())
        });
        self.diagnostic(span.map(|s| s.start), path.unwrap_or_default(), message)
    }

    fn diagnostic(&self, offset: Option<usize>, path: String, message: String) -> Diagnostic {
        let lc = offset.and_then(|o| self.line_col(o));
        Diagnostic {
            file: self.name.clone(),
            line: lc.map(|l| l.0),
            column: lc.map(|l| l.1),
            path,
            message,
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a`; respects quoted keys.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    let mut in_quotes = false;
    let mut cut = None;
    let mut prev = '\0';
    for (i, c) in path.char_indices() {
        match c {
            '"' if prev != '\\' => in_quotes = !in_quotes,
            '.' if !in_quotes => cut = Some(i),
            _ => {}
        }
        prev = c;
    }
    Some(cut.map_or("", |i| &path[..i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(
            parent("targets.lab-vnc.masks[1].width"),
            Some("targets.lab-vnc.masks[1]")
        );
        assert_eq!(
            parent("targets.lab-vnc.masks[1]"),
            Some("targets.lab-vnc.masks")
        );
        assert_eq!(parent("targets.\"a.b\".x"), Some("targets.\"a.b\""));
        assert_eq!(parent("targets.\"a.b\""), Some("targets"));
        assert_eq!(parent("targets"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn spans_map_to_lines_and_columns() {
        let text = "[a]\nx = 1\n[b.\"c.d\"]\nmasks = [ { w = \"é\", h = 2 } ]\n";
        let doc = toml_edit::ImDocument::parse(text).unwrap();
        let s = Source::new("f.toml", PathBuf::new(), text, &doc);
        let d = s.locate(&Issue {
            path: "a.x".into(),
            message: "m".into(),
        });
        assert_eq!(d.to_string(), "f.toml:2:5: a.x: m");
        let d = s.locate(&Issue {
            path: "b.\"c.d\".masks[0].h".into(),
            message: "m".into(),
        });
        assert_eq!((d.line, d.column), (Some(4), Some(26)));
        let d = s.locate(&Issue {
            path: "b.\"c.d\".masks[0].missing".into(),
            message: "m".into(),
        });
        assert_eq!((d.line, d.column), (Some(4), Some(11)));
        let d = s.at_span(Some(12..13), "m".into());
        assert_eq!(d.path, "b.\"c.d\"");
    }
}
