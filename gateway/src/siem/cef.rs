//! ArcSight Common Event Format (CEF) records for audit entries. No I/O.
//!
//! ```text
//! CEF:0|psmgate|psmgate|<version>|<action>|<action>|<severity>|rt=… act=… suser=… externalId=<seq> cs1Label=target cs1=… cs2Label=session cs2=… cs3Label=head cs3=… dvchost=… msg=…
//! ```
//!
//! Header fields escape `\` and `|`; extension values escape `\` and `=` and write line breaks
//! as `\n` and `\r`, so that a record is always one line. Severity: 7 for warnings, 5 for
//! notices, 3 otherwise (see [`super::syslog::severity`]).

use super::syslog::{severity, Severity};
use psmgate_storage::audit::AuditEntry;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `text` escaped for a CEF header field.
pub fn escape_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped for a CEF extension value.
pub fn escape_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The CEF severity (0..=10) of an action.
pub fn cef_severity(action: &str) -> u8 {
    match severity(action) {
        Severity::Warning => 7,
        Severity::Notice => 5,
        Severity::Informational => 3,
    }
}

/// The CEF record of `entry`, sent from `host`.
pub fn record(entry: &AuditEntry, host: &str) -> String {
    let action = escape_header(&entry.action);
    let mut ext: Vec<(&str, String)> = Vec::new();
    if let Ok(t) = OffsetDateTime::parse(&entry.time, &Rfc3339) {
        ext.push(("rt", (t.unix_timestamp_nanos() / 1_000_000).to_string()));
    }
    ext.extend([
        ("act", entry.action.clone()),
        ("suser", entry.actor.clone()),
        ("externalId", entry.seq.to_string()),
        ("cs1Label", "target".to_owned()),
        ("cs1", entry.target.clone()),
        ("cs2Label", "session".to_owned()),
        ("cs2", entry.session_id.clone()),
        ("cs3Label", "head".to_owned()),
        ("cs3", entry.head.to_hex()),
        ("dvchost", host.to_owned()),
        ("msg", entry.detail.clone()),
    ]);
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", escape_value(&v)))
        .collect();
    format!(
        "CEF:0|psmgate|psmgate|{}|{action}|{action}|{}|{}",
        escape_header(env!("CARGO_PKG_VERSION")),
        cef_severity(&entry.action),
        ext.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use psmgate_storage::chain::Digest;

    fn entry(action: &str, actor: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            seq: 7,
            time: "2026-11-22T10:00:00.5Z".into(),
            action: action.into(),
            session_id: String::new(),
            dir: String::new(),
            actor: actor.into(),
            target: "lab-vnc".into(),
            detail: detail.into(),
            prev: Digest::default(),
            head: Digest([0x11; 32]),
            key: None,
            sig: None,
        }
    }

    #[test]
    fn a_record_has_header_and_extension() {
        let r = record(&entry("access_denied", "alice", "a=b\\c\nd"), "gw1");
        let head = "11".repeat(32);
        assert_eq!(
            r,
            format!(
                "CEF:0|psmgate|psmgate|{}|access_denied|access_denied|7|rt=1795341600500 \
                 act=access_denied suser=alice externalId=7 cs1Label=target cs1=lab-vnc \
                 cs2Label=session cs2= cs3Label=head cs3={head} dvchost=gw1 msg=a\\=b\\\\c\\nd",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(record(&entry("login", "a", ""), "h").contains("|login|login|3|"));
        assert!(record(&entry("grant_issued", "a", ""), "h").contains("|5|"));
    }

    #[test]
    fn header_fields_escape_pipes() {
        assert_eq!(escape_header("a|b\\c\nd"), "a\\|b\\\\c d");
        let r = record(&entry("x|y", "a", ""), "h");
        assert!(r.contains("|x\\|y|x\\|y|3|"), "{r}");
    }

    /// Splits a CEF record into its 7 header fields and the extension, unescaping the header.
    fn split(r: &str) -> Option<(Vec<String>, &str)> {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = r.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => cur.push(chars.next()?.1),
                '|' => {
                    fields.push(std::mem::take(&mut cur));
                    if fields.len() == 7 {
                        return Some((fields, &r[i + 1..]));
                    }
                }
                c => cur.push(c),
            }
        }
        None
    }

    /// The extension's values in order, unescaped: a key is a run of letters and digits
    /// before an unescaped `=`.
    fn values(ext: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut cur = String::new();
        let mut chars = ext.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => cur.push('\n'),
                    Some('r') => cur.push('\r'),
                    Some(c) => cur.push(c),
                    None => {}
                },
                '=' => {
                    // The key is the last word of what came before.
                    let key_start = cur.rfind(' ').map_or(0, |i| i + 1);
                    let key = cur[key_start..].to_owned();
                    let prev = cur[..key_start.saturating_sub(1)].to_owned();
                    if let Some(last) = out.last_mut() {
                        last.1 = prev;
                    }
                    out.push((key, String::new()));
                    cur.clear();
                }
                c => cur.push(c),
            }
        }
        if let Some(last) = out.last_mut() {
            last.1 = cur;
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the fields hold, a record is one line with seven header fields, and the
        /// last extension value (the detail) reads back unchanged.
        #[test]
        fn records_are_one_line_and_read_back(
            action in "[a-z_|\\\\\n=]{1,20}",
            actor in "[a-z]{1,8}",
            detail in any::<String>(),
        ) {
            let r = record(&entry(&action, &actor, &detail), "gw");
            prop_assert!(!r.contains('\n') && !r.contains('\r'));
            let (header, ext) = split(&r).expect("seven header fields");
            prop_assert_eq!(&header[0], "CEF:0");
            prop_assert_eq!(&header[4], &action.replace('\n', " "));
            let v = values(ext);
            prop_assert_eq!(v.last().map(|(k, _)| k.as_str()), Some("msg"));
            prop_assert_eq!(&v.last().unwrap().1, &detail);
            prop_assert!(v.iter().any(|(k, val)| k == "suser" && val == &actor));
        }
    }
}
