//! Full-text search over recordings: what of a transcript is searchable, how a user's words
//! become a safe full-text query, and indexing a sealed recording's text.
//!
//! The searchable text of a recording is taken from its transcript (`events/NNNNNN.jsonl`) and
//! from nothing else, so it can never hold more than the transcript does: masking happens before
//! an event is written, and a masked key event carries no key or character. From each event:
//!
//! | event | searchable |
//! |---|---|
//! | `text` | the committed text run (what was typed, in `record` keystroke mode) |
//! | `title` | the window or page title |
//! | `url` | the page URL (web sessions) |
//! | `http` | the request URL (secret query values are already `[redacted]`) |
//! | `dom` | the batch's page URL and the last value of each input field (masked fields are `*`) |
//! | `clipboard` | the content, when policy logs it |
//! | `policy` | rule, action and detail |
//! | `marker` | the label |
//!
//! Single key events, pointer and button events, wheel, resize, WebSocket and session events
//! add nothing (the text runs already hold what was typed). Repeated pieces (the same title or
//! URL again) are stored once. The text of one recording is bounded by [`MAX_TEXT_BYTES`]; what
//! comes after that point in the transcript is not searchable.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::backend::Backend;
use crate::index::{Index, IndexError};
use crate::manifest::Manifest;

/// Most bytes of searchable text kept per recording (1 MiB).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// Most words of a search taken into the query; further words are ignored.
pub const MAX_QUERY_WORDS: usize = 32;

/// The last word of a search matches as a prefix when it ends in at least this many letters or
/// digits (shorter prefixes match too many words to be useful, and cost the most).
pub const MIN_PREFIX_CHARS: usize = 3;

/// Longest input field value kept from a `dom` batch.
const MAX_INPUT_VALUE: usize = 4096;

/// Most input fields followed per recording (the last value of each is searchable).
const MAX_INPUTS: usize = 10_000;

/// Bytes read from a transcript file at a time.
const READ_CHUNK: u64 = 1 << 20;

/// The searchable text of a transcript, one JSON line at a time (no I/O).
#[derive(Debug, Default)]
pub struct SearchableText {
    out: String,
    seen: HashSet<String>,
    inputs: BTreeMap<(String, u64), String>,
    full: bool,
}

impl SearchableText {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the searchable parts of one transcript line. Lines that are not a JSON event are
    /// skipped (they add nothing).
    pub fn push_line(&mut self, line: &str) {
        if self.full {
            return;
        }
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if event.get("masked").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let field = |name: &str| event.get(name).and_then(Value::as_str);
        match field("type").unwrap_or("") {
            "text" => self.add(field("text")),
            "title" => self.add(field("title")),
            "url" | "http" => self.add(field("url")),
            "clipboard" => self.add(field("text")),
            "marker" => self.add(field("label")),
            "policy" => {
                let parts: Vec<&str> = ["rule", "action", "detail"]
                    .into_iter()
                    .filter_map(field)
                    .collect();
                self.add(Some(&parts.join(" ")));
            }
            "dom" => {
                self.add(field("url"));
                let page = field("page").unwrap_or("").to_owned();
                if let Some(events) = event.get("events").and_then(Value::as_array) {
                    for e in events {
                        self.dom_input(&page, e);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the bound is reached (further lines add nothing).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The collected text: the pieces in transcript order, one a line, then the input field
    /// values; at most [`MAX_TEXT_BYTES`].
    pub fn finish(mut self) -> String {
        let inputs = std::mem::take(&mut self.inputs);
        for value in inputs.into_values() {
            if self.full {
                break;
            }
            self.add(Some(&value));
        }
        self.out
    }

    /// An rrweb Input event (incremental snapshot, source 5): its field's latest value.
    fn dom_input(&mut self, page: &str, e: &Value) {
        let data = e.get("data");
        let is_input = e.get("type").and_then(Value::as_u64) == Some(3)
            && data.and_then(|d| d.get("source")).and_then(Value::as_u64) == Some(5);
        if !is_input {
            return;
        }
        let (Some(id), Some(text)) = (
            data.and_then(|d| d.get("id")).and_then(Value::as_u64),
            data.and_then(|d| d.get("text")).and_then(Value::as_str),
        ) else {
            return;
        };
        let key = (page.to_owned(), id);
        if self.inputs.len() >= MAX_INPUTS && !self.inputs.contains_key(&key) {
            return;
        }
        self.inputs
            .insert(key, truncate(text, MAX_INPUT_VALUE).to_owned());
    }

    fn add(&mut self, piece: Option<&str>) {
        let Some(piece) = piece else { return };
        let piece = piece.trim();
        // A piece without a letter or digit (a masked field's `***`) has nothing to find.
        if self.full || !piece.chars().any(char::is_alphanumeric) || self.seen.contains(piece) {
            return;
        }
        let room =
            MAX_TEXT_BYTES.saturating_sub(self.out.len() + usize::from(!self.out.is_empty()));
        if !self.out.is_empty() {
            if room == 0 {
                self.full = true;
                return;
            }
            self.out.push('\n');
        }
        let kept = truncate(piece, room);
        self.out.push_str(kept);
        if kept.len() < piece.len() || self.out.len() >= MAX_TEXT_BYTES {
            self.full = true;
        } else {
            self.seen.insert(piece.to_owned());
        }
    }
}

/// The searchable text of transcript lines (`events/NNNNNN.jsonl`, in order); see the module
/// documentation for what is taken. At most [`MAX_TEXT_BYTES`].
pub fn searchable_text<I>(lines: I) -> String
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut text = SearchableText::new();
    for line in lines {
        text.push_line(line.as_ref());
        if text.is_full() {
            break;
        }
    }
    text.finish()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The full-text query for words a user typed, or `None` when there is no word to search
/// (only punctuation or space).
///
/// The input is never passed to the query language as written: it is split at white space,
/// each piece with at least one letter or digit becomes a quoted phrase (quotes doubled,
/// control characters dropped) — so `AND`, `NEAR`, `*`, `:`, `"` or parentheses are searched as
/// text, never obeyed — the phrases are ANDed, and the last one matches as a prefix when it
/// ends in at least [`MIN_PREFIX_CHARS`] letters or digits (to find `nginx` while `ngi` is
/// typed). A piece such as `/etc/passwd` is a phrase of its words, in order. At most
/// [`MAX_QUERY_WORDS`] pieces are used.
pub fn fts_query(input: &str) -> Option<String> {
    let pieces: Vec<String> = input
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_QUERY_WORDS)
        .map(|w| w.chars().filter(|c| !c.is_control()).collect())
        .collect();
    let last = pieces.last()?;
    let prefix = last
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric())
        .count()
        >= MIN_PREFIX_CHARS;
    let mut q = pieces
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ");
    if prefix {
        q.push('*');
    }
    Some(q)
}

/// Why a recording's text could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A file of the recording could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file, below the storage root.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The sealed manifest could not be read.
    #[error("manifest {path}: {source}")]
    Manifest {
        /// The manifest, below the storage root.
        path: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Reads the searchable text of the sealed recording in `dir`: the transcripts its
/// `manifest.json` lists, in order, until [`MAX_TEXT_BYTES`] are collected. Files are read in
/// 1 MiB pieces, so a large transcript never sits in memory whole.
pub fn recording_text(backend: &dyn Backend, dir: &str) -> Result<String, SearchError> {
    let path = crate::backend::join(dir, "manifest.json");
    let raw = backend.read(&path).map_err(|source| SearchError::Read {
        path: path.clone(),
        source,
    })?;
    let manifest =
        Manifest::from_json(&raw).map_err(|source| SearchError::Manifest { path, source })?;
    let mut text = SearchableText::new();
    for file in &manifest.events {
        if text.is_full() {
            break;
        }
        let path = crate::backend::join(dir, file);
        read_lines(backend, &path, &mut text)
            .map_err(|source| SearchError::Read { path, source })?;
    }
    Ok(text.finish())
}

fn read_lines(backend: &dyn Backend, path: &str, text: &mut SearchableText) -> std::io::Result<()> {
    crate::backend::validate_path(path, false)?;
    let len = backend.len(path)?.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "transcript file is missing")
    })?;
    let mut offset = 0;
    let mut carry: Vec<u8> = Vec::new();
    while offset < len && !text.is_full() {
        let n = READ_CHUNK.min(len - offset);
        carry.extend_from_slice(&backend.read_range(path, offset, n)?);
        offset += n;
        let mut start = 0;
        while let Some(pos) = carry[start..].iter().position(|&b| b == b'\n') {
            if let Ok(line) = std::str::from_utf8(&carry[start..start + pos]) {
                text.push_line(line);
            }
            start += pos + 1;
        }
        carry.drain(..start);
    }
    if !carry.is_empty() {
        if let Ok(line) = std::str::from_utf8(&carry) {
            text.push_line(line);
        }
    }
    Ok(())
}

/// Stores the searchable text of the sealed recording `id` in `dir` in `index`, replacing what
/// was stored. Returns whether the index has a row for `id`.
pub fn index_recording(
    backend: &dyn Backend,
    index: &dyn Index,
    id: &str,
    dir: &str,
) -> Result<bool, SearchError> {
    let text = recording_text(backend, dir)?;
    Ok(index.set_text(id, &text)?)
}

/// What [`index_missing`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backfill {
    /// Recordings whose text was stored.
    pub indexed: usize,
    /// Recordings whose text could not be read (logged; tried again next time).
    pub failed: usize,
}

/// Stores the searchable text of every sealed recording the index holds no text for yet
/// (recorded before search existed, recorded outside a gateway session, or whose indexing
/// failed). Each failure is logged and counted; the others go on.
pub fn index_missing(backend: &dyn Backend, index: &dyn Index) -> Result<Backfill, IndexError> {
    let mut done = Backfill::default();
    for row in index.without_text()? {
        match index_recording(backend, index, &row.id, &row.dir) {
            Ok(_) => done.indexed += 1,
            Err(e) => {
                tracing::warn!(session = %row.id, dir = %row.dir, error = %e, "could not index a recording's text");
                done.failed += 1;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_text_runs_titles_urls_and_policy_details() {
        let lines = [
            r#"{"t":0,"type":"session","phase":"start"}"#,
            r#"{"t":5,"type":"title","title":"admin@lab-vnc: ~"}"#,
            r#"{"t":10,"type":"key","key":"l","char":"l","down":true}"#,
            r#"{"t":20,"type":"text","text":"sudo systemctl restart nginx"}"#,
            r#"{"t":30,"type":"pointer","x":1,"y":2}"#,
            r#"{"t":40,"type":"url","url":"https://console.example/users?id=7"}"#,
            r#"{"t":41,"type":"http","method":"GET","url":"https://console.example/api/list","action":"record","rule":"r"}"#,
            r#"{"t":50,"type":"policy","rule":"no-rm","action":"blocked","detail":"rm -rf refused"}"#,
            r#"{"t":60,"type":"clipboard","direction":"to_target","len":5,"text":"paste","allowed":true}"#,
            r#"{"t":70,"type":"marker","label":"change window"}"#,
            r#"{"t":80,"type":"session","phase":"end","detail":"client went away"}"#,
        ];
        let text = searchable_text(lines);
        let pieces: Vec<&str> = text.lines().collect();
        assert_eq!(
            pieces,
            [
                "admin@lab-vnc: ~",
                "sudo systemctl restart nginx",
                "https://console.example/users?id=7",
                "https://console.example/api/list",
                "no-rm blocked rm -rf refused",
                "paste",
                "change window",
            ]
        );
    }

    #[test]
    fn masked_keys_and_bad_lines_add_nothing() {
        let lines = [
            r#"{"t":1,"type":"key","down":true,"masked":true}"#,
            r#"{"t":2,"type":"key","down":false,"masked":true}"#,
            r#"{"t":3,"type":"text","text":"hunter2","masked":true}"#,
            "not json",
            r#"{"t":4,"type":"text","text":42}"#,
            "",
            r#"{"t":5,"type":"wheel","dx":0,"dy":1}"#,
        ];
        assert_eq!(searchable_text(lines), "");
    }

    #[test]
    fn repeated_pieces_are_kept_once() {
        let lines = [
            r#"{"t":1,"type":"title","title":"Terminal"}"#,
            r#"{"t":2,"type":"title","title":"Editor"}"#,
            r#"{"t":3,"type":"title","title":"Terminal"}"#,
        ];
        assert_eq!(searchable_text(lines), "Terminal\nEditor");
    }

    #[test]
    fn dom_batches_give_their_url_and_last_input_values() {
        let batch = |seq: u64, text: &str| {
            serde_json::json!({
                "t": seq, "type": "dom", "page": "p1", "seq": seq,
                "url": "https://console.example/form",
                "events": [
                    {"type": 3, "data": {"source": 5, "id": 9, "text": text, "isChecked": false}},
                    {"type": 3, "data": {"source": 2, "type": 1, "id": 9}},
                ]
            })
            .to_string()
        };
        let lines = [
            batch(1, "d"),
            batch(2, "dro"),
            batch(3, "drop table users"),
            serde_json::json!({"t": 4, "type": "dom", "page": "p1", "seq": 4, "url": "https://console.example/form",
                "events": [{"type": 3, "data": {"source": 5, "id": 10, "text": "********"}}]})
            .to_string(),
        ];
        assert_eq!(
            searchable_text(&lines),
            "https://console.example/form\ndrop table users",
            "a masked field's stars are not kept"
        );
    }

    #[test]
    fn the_text_is_bounded() {
        let piece = "é".repeat(1000);
        let lines: Vec<String> = (0..2000)
            .map(|i| {
                serde_json::json!({"t": i, "type": "text", "text": format!("{i} {piece}")})
                    .to_string()
            })
            .collect();
        let text = searchable_text(&lines);
        assert!(text.len() <= MAX_TEXT_BYTES, "{}", text.len());
        assert!(text.len() > MAX_TEXT_BYTES - 4000, "{}", text.len());
        assert!(text.starts_with("0 é"));
        // A piece too long for the room left is cut on a character boundary.
        let long = serde_json::json!({"t": 0, "type": "text", "text": "ü".repeat(MAX_TEXT_BYTES)})
            .to_string();
        let text = searchable_text([long]);
        assert_eq!(text.len(), MAX_TEXT_BYTES);
        assert!(text.chars().all(|c| c == 'ü'));
    }

    #[test]
    fn queries_quote_every_word_and_prefix_the_last() {
        assert_eq!(fts_query("nginx").as_deref(), Some("\"nginx\"*"));
        assert_eq!(
            fts_query("  sudo   NEAR(x) ngi").as_deref(),
            Some("\"sudo\" AND \"NEAR(x)\" AND \"ngi\"*")
        );
        assert_eq!(
            fts_query("say \"hi\"").as_deref(),
            Some("\"say\" AND \"\"\"hi\"\"\"")
        );
        assert_eq!(
            fts_query("ab\u{0}c").as_deref(),
            Some("\"abc\"*"),
            "control characters are dropped"
        );
        assert_eq!(fts_query("-- * ()"), None);
        assert_eq!(fts_query("   "), None);
        assert_eq!(fts_query("x * yes").as_deref(), Some("\"x\" AND \"yes\"*"));
        // Short or punctuated last words match whole words only.
        assert_eq!(fts_query("ls -la").as_deref(), Some("\"ls\" AND \"-la\""));
        assert_eq!(fts_query("nginx.").as_deref(), Some("\"nginx.\""));
        assert_eq!(fts_query("/etc/pas").as_deref(), Some("\"/etc/pas\"*"));
        assert_eq!(fts_query("/etc/pa").as_deref(), Some("\"/etc/pa\""));
        let many = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            fts_query(&many).unwrap().matches(" AND ").count(),
            MAX_QUERY_WORDS - 1
        );
    }

    /// A sealed-looking recording in `dir` with transcript files of `lines` each.
    fn recording(backend: &dyn Backend, dir: &str, files: &[Vec<String>]) -> Manifest {
        let id = dir.rsplit('/').next().unwrap();
        let mut m = Manifest::new(id, "vnc", time::macros::datetime!(2026-11-22 10:00 UTC));
        m.state = crate::manifest::RecordingState::Completed;
        for (i, lines) in files.iter().enumerate() {
            let file = format!("events/{:06}.jsonl", i + 1);
            let mut body = lines.join("\n");
            body.push('\n');
            backend
                .put_atomic(&format!("{dir}/{file}"), body.as_bytes())
                .unwrap();
            m.events.push(file);
        }
        backend
            .put_atomic(&format!("{dir}/manifest.json"), &m.to_json().unwrap())
            .unwrap();
        m
    }

    fn text_line(t: usize, text: &str) -> String {
        serde_json::json!({"t": t, "type": "text", "text": text}).to_string()
    }

    #[test]
    fn a_recordings_transcripts_are_read_in_pieces_and_indexed() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = crate::backend::LocalBackend::new(tmp.path()).unwrap();
        let index = crate::index::SqliteIndex::open_in_memory().unwrap();
        let dir = "2026/11/22/0b6f3f4e-4c1e-4d55-9a57-3d7d0f3e2b10";
        // The first file is larger than one read, so lines cross a piece boundary, while its
        // text (quotes are escaped in JSON, doubling their size) stays below the bound.
        let filler = "\"".repeat(500);
        let mut first: Vec<String> = (0..1500)
            .map(|i| text_line(i, &format!("w{i} {filler}")))
            .collect();
        first.push(text_line(1500, "journalctl -u sshd"));
        let second = vec![
            r#"{"t":1,"type":"key","down":true,"masked":true}"#.to_owned(),
            r#"{"t":2,"type":"title","title":"Event Viewer"}"#.to_owned(),
        ];
        let m = recording(&backend, dir, &[first, second]);
        assert!(
            backend
                .len(&format!("{dir}/events/000001.jsonl"))
                .unwrap()
                .unwrap()
                > READ_CHUNK
        );
        let text = recording_text(&backend, dir).unwrap();
        assert!(text.starts_with(&format!("w0 {filler}\nw1 ")));
        for i in 0..1500 {
            assert!(text.contains(&format!("w{i} {filler}\n")), "line {i} whole");
        }
        assert!(text.ends_with("journalctl -u sshd\nEvent Viewer"));

        let row = crate::index::SessionRow::from_manifest(&m, dir, 0, m.started_at);
        assert!(!index_recording(&backend, &index, &row.id, dir).unwrap());
        index.upsert(&row).unwrap();
        assert_eq!(index.without_text().unwrap().len(), 1);
        let done = index_missing(&backend, &index).unwrap();
        assert_eq!(
            done,
            Backfill {
                indexed: 1,
                failed: 0
            }
        );
        assert!(index.without_text().unwrap().is_empty());
        let found = index
            .list(&crate::index::ListFilter {
                text: Some("journalctl viewer".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn recordings_that_cannot_be_read_are_counted_and_left_for_later() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = crate::backend::LocalBackend::new(tmp.path()).unwrap();
        let index = crate::index::SqliteIndex::open_in_memory().unwrap();
        let good = "2026/11/22/1b6f3f4e-4c1e-4d55-9a57-3d7d0f3e2b10";
        let gone = "2026/11/22/2b6f3f4e-4c1e-4d55-9a57-3d7d0f3e2b10";
        let m = recording(&backend, good, &[vec![text_line(0, "uptime")]]);
        index
            .upsert(&crate::index::SessionRow::from_manifest(
                &m,
                good,
                0,
                m.started_at,
            ))
            .unwrap();
        let mut lost = m.clone();
        lost.session_id = gone.rsplit('/').next().unwrap().to_owned();
        index
            .upsert(&crate::index::SessionRow::from_manifest(
                &lost,
                gone,
                0,
                m.started_at,
            ))
            .unwrap();
        assert!(matches!(
            recording_text(&backend, gone),
            Err(SearchError::Read { .. })
        ));
        let done = index_missing(&backend, &index).unwrap();
        assert_eq!(
            done,
            Backfill {
                indexed: 1,
                failed: 1
            }
        );
        let left: Vec<String> = index
            .without_text()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, [lost.session_id]);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
        assert_eq!(truncate("", 0), "");
    }
}
