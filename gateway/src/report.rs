//! Human and JSON renderings of index rows and verification reports.

use psmgate_storage::index::SessionRow;
use psmgate_storage::verify::VerifyReport;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 UTC text of a timestamp.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), for tables.
pub fn short_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An index row as JSON.
pub fn row_json(r: &SessionRow) -> Value {
    json!({
        "id": r.id,
        "dir": r.dir,
        "protocol": r.protocol,
        "user": r.user,
        "target": r.target,
        "client_addr": r.client_addr,
        "started_at": rfc3339(r.started_at),
        "ended_at": r.ended_at.map(rfc3339),
        "duration_ms": r.duration_ms,
        "bytes": r.bytes,
        "state": r.state.as_str(),
        "integrity": r.integrity.status.as_str(),
        "integrity_message": r.integrity.message,
        "verified_at": r.integrity.verified_at.map(rfc3339),
        "legal_hold": r.legal_hold,
    })
}

/// A verification report as JSON.
pub fn verify_json(r: &VerifyReport) -> Value {
    json!({
        "dir": r.dir,
        "session_id": r.session_id,
        "ok": r.ok,
        "sealed": r.sealed,
        "state": r.state.map(|s| s.as_str()),
        "records": r.records,
        "checkpoints": r.checkpoints,
        "bytes": r.bytes,
        "key_id": r.key_id,
        "problems": r.problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>(),
        "notes": r.notes,
        "verified_records": r.last_good.records,
    })
}

/// A verification report as text for the terminal.
pub fn verify_text(r: &VerifyReport) -> String {
    let mut s = String::new();
    let verdict = if r.ok {
        "OK: intact and sealed"
    } else if r.problems.is_empty() {
        "INCOMPLETE: consistent so far but not sealed (recording in progress or interrupted)"
    } else {
        "FAILED: the recording was altered or damaged"
    };
    s.push_str(&format!("{}  {}\n", r.session_id, verdict));
    s.push_str(&format!(
        "  state {}, {} records, {} signed checkpoints, {} bytes, key {}\n",
        r.state.map(|s| s.as_str()).unwrap_or("unknown"),
        r.records,
        r.checkpoints,
        r.bytes,
        r.key_id.as_deref().unwrap_or("-")
    ));
    for p in &r.problems {
        s.push_str(&format!("  problem: {}\n", p.message));
    }
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}
