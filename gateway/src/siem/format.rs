//! What one audit entry becomes in a sink: the bytes for its format and transport. No I/O.
//!
//! | format | on a connection (`tcp`, `tls`) | in a file |
//! |---|---|---|
//! | `rfc5424` | octet-counted RFC 5424 message ([`super::syslog`]) | (refused by the configuration) |
//! | `json` | the entry as JSON plus `host`, one per line | the same |
//! | `cef` | octet-counted RFC 5424 message whose MSG is the CEF record ([`super::cef`]) | the CEF record, one per line |

use super::{cef, syslog};
use psmgate_policy::SiemFormat;
use psmgate_storage::audit::AuditEntry;

/// How a sink writes entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoder {
    /// The format.
    pub format: SiemFormat,
    /// Lines in a file rather than frames on a connection.
    pub lines: bool,
    /// The syslog header fields (the host name also goes into JSON and CEF).
    pub header: syslog::Header,
}

impl Encoder {
    /// The bytes that carry `entry`.
    pub fn encode(&self, entry: &AuditEntry) -> Vec<u8> {
        match (self.format, self.lines) {
            (SiemFormat::Json, _) => json_line(entry, &self.header.hostname),
            (SiemFormat::Cef, true) => {
                let mut line = cef::record(entry, &self.header.hostname).into_bytes();
                line.push(b'\n');
                line
            }
            (SiemFormat::Cef, false) => syslog::octet_frame(&syslog::message_with(
                &self.header,
                entry,
                &cef::record(entry, &self.header.hostname),
            )),
            // A file never gets syslog frames (the configuration refuses it); should one be
            // asked for in code, the frames are still complete and self-delimiting.
            (SiemFormat::Rfc5424, _) => syslog::octet_frame(&syslog::message(&self.header, entry)),
        }
    }
}

/// `entry` as one JSON object with `host` added, and a newline. JSON strings escape line
/// breaks, so the line is always one line.
pub fn json_line(entry: &AuditEntry, host: &str) -> Vec<u8> {
    let mut value = serde_json::to_value(entry).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "host".to_owned(),
            serde_json::Value::String(host.to_owned()),
        );
    }
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmgate_storage::chain::Digest;

    fn entry(detail: &str) -> AuditEntry {
        AuditEntry {
            seq: 3,
            time: "2026-11-22T10:00:00Z".into(),
            action: "login".into(),
            session_id: String::new(),
            dir: String::new(),
            actor: "alice".into(),
            target: String::new(),
            detail: detail.into(),
            prev: Digest([2; 32]),
            head: Digest([3; 32]),
            key: Some("k1".into()),
            sig: Some("c2ln".into()),
        }
    }

    fn encoder(format: SiemFormat, lines: bool) -> Encoder {
        Encoder {
            format,
            lines,
            header: syslog::Header {
                facility: 4,
                hostname: "gw1".into(),
                app_name: "psmgate".into(),
            },
        }
    }

    #[test]
    fn json_lines_are_the_entry_plus_host() {
        let e = entry("two\nlines \"quoted\"");
        let line = encoder(SiemFormat::Json, true).encode(&e);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let mut v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["host"], "gw1");
        v.as_object_mut().unwrap().remove("host");
        let back: AuditEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert_eq!(encoder(SiemFormat::Json, false).encode(&e), line);
    }

    #[test]
    fn syslog_and_cef_on_connections_are_octet_counted() {
        let e = entry("detail");
        let f = encoder(SiemFormat::Rfc5424, false).encode(&e);
        let frames = syslog::split_frames(&f).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].starts_with(b"<38>1 "));
        assert!(frames[0].ends_with(b"] detail"));
        let f = encoder(SiemFormat::Cef, false).encode(&e);
        let frames = syslog::split_frames(&f).unwrap();
        let m = std::str::from_utf8(frames[0]).unwrap();
        assert!(m.contains("] CEF:0|psmgate|psmgate|"), "{m}");
    }

    #[test]
    fn cef_in_a_file_is_one_line() {
        let line = encoder(SiemFormat::Cef, true).encode(&entry("a\nb"));
        let text = String::from_utf8(line).unwrap();
        assert!(text.starts_with("CEF:0|"), "{text}");
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with("msg=a\\nb\n"), "{text}");
    }
}
