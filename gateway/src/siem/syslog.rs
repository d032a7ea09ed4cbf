//! RFC 5424 syslog messages for audit entries, and RFC 6587 octet-counting framing. No I/O.
//!
//! One message per entry:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [psmgate@32473 seq="…" actor="…" target="…" session="…" head="…"] MSG
//! ```
//!
//! - PRI is `facility × 8 + severity`; the severity follows the action ([`severity`]).
//! - TIMESTAMP is the entry's time in UTC with microseconds (RFC 5424 allows at most six
//!   fraction digits); `-` for an entry whose time does not parse.
//! - PROCID is `-`; MSGID is the action. HOSTNAME, APP-NAME and MSGID are PRINTUSASCII of bounded
//!   length: other bytes become `_`, longer text is cut, empty text is `-`.
//! - The structured data element carries the entry's position (`seq`) and hash (`head`), by
//!   which a receiver can drop duplicates and check the chain, with `"`, `\` and `]` escaped
//!   as RFC 5424 section 6.3.3 requires. `32473` is the private enterprise number RFC 5612
//!   reserves for documentation and examples.
//! - MSG is the entry's detail, UTF-8 without a byte order mark (RFC 5424 allows a MSG without
//!   one; common receivers such as rsyslog and syslog-ng keep a BOM as part of the text), left
//!   out when the detail is empty.

use psmgate_storage::audit::AuditEntry;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// SD-ID of the structured data element.
pub const SD_ID: &str = "psmgate@32473";

/// Longest HOSTNAME.
const MAX_HOSTNAME: usize = 255;
/// Longest APP-NAME.
const MAX_APP_NAME: usize = 48;
/// Longest MSGID.
const MAX_MSGID: usize = 32;

/// Syslog severity (RFC 5424 table 2); only those the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 4: something was refused, failed or ended by force.
    Warning = 4,
    /// 5: a normal but significant change (a decision, a grant, a deletion, a reload).
    Notice = 5,
    /// 6: everything else (sign-ins, requests, sessions starting and ending).
    Informational = 6,
}

/// Actions that are significant changes ([`Severity::Notice`]).
const NOTICE_ACTIONS: &[&str] = &[
    "access_approved",
    "access_grant",
    "access_revoke",
    "grant_issued",
    "grant_revoked",
    "delete",
    "legal_hold_set",
    "legal_hold_cleared",
    "config_reloaded",
    "export",
];

/// The severity of an audit action: warning for refusals, failures and forced ends
/// (`login_failed`, `access_denied`, `vnc_denied`, `session_terminated`, `config_rejected`,
/// `policy_enforced`, …), notice for decisions and changes ([`NOTICE_ACTIONS`]), informational
/// otherwise.
pub fn severity(action: &str) -> Severity {
    const WARNING_SUFFIXES: &[&str] = &["_failed", "_denied", "_terminated", "_rejected"];
    if action == "policy_enforced" || WARNING_SUFFIXES.iter().any(|s| action.ends_with(s)) {
        Severity::Warning
    } else if NOTICE_ACTIONS.contains(&action) {
        Severity::Notice
    } else {
        Severity::Informational
    }
}

/// What is the same in every message of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Facility number, 0..=23.
    pub facility: u8,
    /// HOSTNAME: the gateway's host name.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
}

/// `text` as a header field: printable US-ASCII only (others become `_`), at most `max` bytes,
/// `-` (NILVALUE) when empty.
pub fn header_field(text: &str, max: usize) -> String {
    let out: String = text
        .bytes()
        .take(max)
        .map(|b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "-".to_owned()
    } else {
        out
    }
}

/// `value` escaped for a PARAM-VALUE: `"`, `\` and `]` get a backslash.
pub fn escape_param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 3339 time as an RFC 5424 TIMESTAMP: UTC, six fraction digits; `-` if it does not
/// parse.
pub fn timestamp(rfc3339: &str) -> String {
    let Ok(t) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return "-".to_owned();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap_or_else(|_| "-".to_owned())
}

/// The structured data of `entry`: one `psmgate@32473` element.
pub fn structured_data(entry: &AuditEntry) -> String {
    let params = [
        ("seq", entry.seq.to_string()),
        ("actor", entry.actor.clone()),
        ("target", entry.target.clone()),
        ("session", entry.session_id.clone()),
        ("head", entry.head.to_hex()),
    ];
    let mut sd = format!("[{SD_ID}");
    for (name, value) in params {
        sd.push_str(&format!(" {name}=\"{}\"", escape_param_value(&value)));
    }
    sd.push(']');
    sd
}

/// The RFC 5424 message for `entry` with `msg` as its MSG (left out when empty).
pub fn message_with(header: &Header, entry: &AuditEntry, msg: &str) -> String {
    let pri = u16::from(header.facility.min(23)) * 8 + severity(&entry.action) as u16;
    let mut out = format!(
        "<{pri}>1 {} {} {} - {} {}",
        timestamp(&entry.time),
        header_field(&header.hostname, MAX_HOSTNAME),
        header_field(&header.app_name, MAX_APP_NAME),
        header_field(&entry.action, MAX_MSGID),
        structured_data(entry),
    );
    if !msg.is_empty() {
        out.push(' ');
        out.push_str(msg);
    }
    out
}

/// The RFC 5424 message for `entry`, its detail as MSG.
pub fn message(header: &Header, entry: &AuditEntry) -> String {
    message_with(header, entry, &entry.detail)
}

/// `msg` framed by octet counting (RFC 6587 section 3.4.1): its length in bytes, a space, the
/// message.
pub fn octet_frame(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

/// Splits a stream of octet-counted frames into messages; `None` if the bytes are not a
/// sequence of complete, well-formed frames. A receiver's view of [`octet_frame`], for tests.
pub fn split_frames(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let space = bytes.iter().position(|&b| b == b' ')?;
        let digits = &bytes[..space];
        if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let rest = &bytes[space + 1..];
        if rest.len() < len {
            return None;
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use psmgate_storage::chain::Digest;

    fn entry(action: &str, actor: &str, target: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            seq: 42,
            time: "2026-11-22T10:00:00.123456789Z".into(),
            action: action.into(),
            session_id: "0b7c52b2-3f0e-4c41-a7b5-51f7e1f0c2aa".into(),
            dir: String::new(),
            actor: actor.into(),
            target: target.into(),
            detail: detail.into(),
            prev: Digest([1; 32]),
            head: Digest([0xab; 32]),
            key: None,
            sig: None,
        }
    }

    fn header() -> Header {
        Header {
            facility: 10,
            hostname: "gw1.example.internal".into(),
            app_name: "psmgate".into(),
        }
    }

    #[test]
    fn a_message_has_every_field_in_place() {
        let m = message(
            &header(),
            &entry("login_failed", "alice", "web", "bad password"),
        );
        let head = "ab".repeat(32);
        assert_eq!(
            m,
            format!(
                "<84>1 2026-11-22T10:00:00.123456Z gw1.example.internal psmgate - login_failed \
                 [psmgate@32473 seq=\"42\" actor=\"alice\" target=\"web\" \
                 session=\"0b7c52b2-3f0e-4c41-a7b5-51f7e1f0c2aa\" head=\"{head}\"] bad password"
            )
        );
        // authpriv (10) × 8 + notice (5); an empty detail leaves MSG out.
        let m = message(&header(), &entry("access_approved", "bob", "", ""));
        assert!(m.starts_with("<85>1 "), "{m}");
        assert!(m.ends_with("\"]"), "{m}");
        let m = message(&header(), &entry("login", "bob", "", "x"));
        assert!(m.starts_with("<86>1 "), "{m}");
    }

    #[test]
    fn severities_follow_the_action() {
        for a in [
            "login_failed",
            "access_denied",
            "vnc_denied",
            "rdp_auth_failed",
            "session_terminated",
            "web_session_terminated",
            "config_rejected",
            "delete_failed",
            "policy_enforced",
        ] {
            assert_eq!(severity(a), Severity::Warning, "{a}");
        }
        for a in NOTICE_ACTIONS {
            assert_eq!(severity(a), Severity::Notice, "{a}");
        }
        for a in [
            "login",
            "logout",
            "access_requested",
            "session_start",
            "session_end",
            "web_session_start",
        ] {
            assert_eq!(severity(a), Severity::Informational, "{a}");
        }
    }

    #[test]
    fn header_fields_are_printable_ascii_of_bounded_length() {
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field("a b\tc\u{e9}", 32), "a_b_c__");
        assert_eq!(header_field(&"x".repeat(40), 32), "x".repeat(32));
        let m = message(&header(), &entry("", "a", "", ""));
        assert!(m.contains(" - - [psmgate@32473 "), "{m}");
    }

    #[test]
    fn param_values_are_escaped() {
        assert_eq!(escape_param_value(r#"a"b\c]d[e="#), r#"a\"b\\c\]d[e="#);
        let m = message(&header(), &entry("x", r#"ev"il] x="1"#, "", ""));
        assert!(m.contains(r#"actor="ev\"il\] x=\"1""#), "{m}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp("2026-11-22T10:00:00Z"),
            "2026-11-22T10:00:00.000000Z"
        );
        assert_eq!(
            timestamp("2026-11-22T12:00:00.5+02:00"),
            "2026-11-22T10:00:00.500000Z"
        );
        assert_eq!(timestamp("yesterday"), "-");
        assert_eq!(timestamp(""), "-");
    }

    #[test]
    fn frames_count_bytes_not_characters() {
        let f = octet_frame("é]\n");
        assert_eq!(f, b"4 \xc3\xa9]\n");
        assert_eq!(
            split_frames(&[f.clone(), octet_frame("x")].concat()),
            Some(vec!["é]\n".as_bytes(), b"x"])
        );
        assert_eq!(split_frames(b"5 abc"), None);
        assert_eq!(split_frames(b"05 abcde"), None);
        assert_eq!(split_frames(b"x abc"), None);
    }

    /// Reads the structured data element at the start of `s` as a receiver would (RFC 5424
    /// section 6.3): the parameters, unescaped, and what follows the element.
    fn parse_sd(s: &str) -> Option<(Vec<(String, String)>, &str)> {
        let rest = s.strip_prefix('[')?.strip_prefix(SD_ID)?;
        let mut params = Vec::new();
        let mut chars = rest.char_indices().peekable();
        loop {
            match chars.next()? {
                (i, ']') => return Some((params, &rest[i + 1..])),
                (_, ' ') => {
                    let mut name = String::new();
                    loop {
                        match chars.next()? {
                            (_, '=') => break,
                            (_, c) if c == '"' || c == ']' || c == ' ' => return None,
                            (_, c) => name.push(c),
                        }
                    }
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()? {
                            (_, '\\') => value.push(chars.next()?.1),
                            (_, '"') => break,
                            (_, ']') => return None,
                            (_, c) => value.push(c),
                        }
                    }
                    params.push((name, value));
                }
                _ => return None,
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z \"\\\\\\]\\[=\n\r\t\u{0}\u{feff}é€😀<>0-9]{1,40}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the text of an entry's fields, each message is one well-formed frame, its
        /// header has the expected number of fields, and the structured data reads back to the
        /// entry's values.
        #[test]
        fn arbitrary_field_text_never_breaks_framing_or_escaping(
            entries in proptest::collection::vec((text(), text(), text(), text(), text()), 1..5),
            hostname in text(),
            app_name in text(),
        ) {
            let h = Header { facility: 23, hostname, app_name };
            let mut stream = Vec::new();
            let mut built = Vec::new();
            for (i, (action, actor, target, session, detail)) in entries.iter().enumerate() {
                let mut e = entry(action, actor, target, detail);
                e.seq = i as u64 + 1;
                e.session_id = session.clone();
                stream.extend(octet_frame(&message(&h, &e)));
                built.push(e);
            }
            let frames = split_frames(&stream).expect("well-formed frames");
            prop_assert_eq!(frames.len(), built.len());
            for (frame, e) in frames.iter().zip(&built) {
                let m = std::str::from_utf8(frame).expect("UTF-8");
                let mut fields = m.splitn(7, ' ');
                let pri_version = fields.next().unwrap();
                prop_assert!(pri_version.starts_with('<') && pri_version.ends_with(">1"));
                // TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID.
                for max in [27, MAX_HOSTNAME, MAX_APP_NAME, 1, MAX_MSGID] {
                    let f = fields.next().expect("header field");
                    prop_assert!(!f.is_empty() && f.len() <= max, "{:?}", f);
                    prop_assert!(f.bytes().all(|b| b.is_ascii_graphic()), "{:?}", f);
                }
                let (params, msg) = parse_sd(fields.next().unwrap()).expect("structured data");
                let expected = vec![
                    ("seq".to_owned(), e.seq.to_string()),
                    ("actor".to_owned(), e.actor.clone()),
                    ("target".to_owned(), e.target.clone()),
                    ("session".to_owned(), e.session_id.clone()),
                    ("head".to_owned(), e.head.to_hex()),
                ];
                prop_assert_eq!(params, expected);
                if e.detail.is_empty() {
                    prop_assert_eq!(msg, "");
                } else {
                    prop_assert_eq!(msg, format!(" {}", e.detail));
                }
            }
        }
    }
}
