//! Retention, legal hold and the audit log.

mod common;

use std::sync::Arc;

use common::*;
use psmgate_storage::audit::{verify_audit, AuditLog, AUDIT_LOG};
use psmgate_storage::index::{Index, SessionRow, SqliteIndex};
use psmgate_storage::manifest::RecordingState;
use psmgate_storage::retention::{apply_retention, set_legal_hold};
use psmgate_storage::writer::RecordingWriter;
use time::macros::datetime;
use time::Duration;

const OLD_HELD: &str = "11111111-1111-4111-8111-111111111111";
const OLD: &str = "22222222-2222-4222-8222-222222222222";
const RECENT: &str = "33333333-3333-4333-8333-333333333333";
const LIVE: &str = "44444444-4444-4444-8444-444444444444";
const FOREVER: &str = "55555555-5555-4555-8555-555555555555";

fn record(
    f: &Fixture,
    idx: &SqliteIndex,
    id: &str,
    started_at: time::OffsetDateTime,
    seal: bool,
) -> String {
    let mut m = manifest(id, started_at);
    if id == FOREVER {
        m.target = "crown-jewels".into();
    }
    let mut w = RecordingWriter::create(Arc::clone(&f.backend), Arc::clone(&f.key), m).unwrap();
    w.append("video/init.mp4", b"init").unwrap();
    let dir = w.dir().to_owned();
    let manifest = if seal {
        w.seal_at(
            RecordingState::Completed,
            "done",
            started_at + Duration::minutes(10),
        )
        .unwrap()
    } else {
        let m = w.manifest().clone();
        drop(w);
        m
    };
    idx.upsert(&SessionRow::from_manifest(&manifest, &dir, 4, started_at))
        .unwrap();
    dir
}

#[test]
fn retention_deletes_expired_recordings_except_held_and_live() {
    let f = Fixture::new();
    let idx = SqliteIndex::open_in_memory().unwrap();
    let now = datetime!(2026-11-22 12:00 UTC);
    let old = now - Duration::days(40);
    let held_dir = record(&f, &idx, OLD_HELD, old, true);
    let old_dir = record(&f, &idx, OLD, old, true);
    let recent_dir = record(&f, &idx, RECENT, now - Duration::days(5), true);
    let live_dir = record(&f, &idx, LIVE, old, false);
    let forever_dir = record(&f, &idx, FOREVER, old, true);

    let mut audit = AuditLog::open(Arc::clone(&f.backend)).unwrap();
    set_legal_hold(&idx, &mut audit, OLD_HELD, true, "auditor-carol").unwrap();
    assert!(idx.get(OLD_HELD).unwrap().unwrap().legal_hold);
    assert!(set_legal_hold(&idx, &mut audit, "nope", true, "x").is_err());

    let policy = |row: &SessionRow| (row.target != "crown-jewels").then_some(30);
    let report = apply_retention(f.backend.as_ref(), &idx, now, &policy, &mut audit).unwrap();
    assert_eq!(report.deleted, vec![OLD.to_owned()]);
    assert_eq!(report.held, vec![OLD_HELD.to_owned()]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    assert!(!f.tmp.path().join(&old_dir).exists());
    assert!(idx.get(OLD).unwrap().is_none());
    for dir in [&held_dir, &recent_dir, &live_dir, &forever_dir] {
        assert!(f.tmp.path().join(dir).exists(), "{dir} deleted");
    }

    // Lifting the hold lets the next run delete it; both are audited.
    set_legal_hold(&idx, &mut audit, OLD_HELD, false, "auditor-carol").unwrap();
    let report = apply_retention(f.backend.as_ref(), &idx, now, &policy, &mut audit).unwrap();
    assert_eq!(report.deleted, vec![OLD_HELD.to_owned()]);

    let summary = verify_audit(f.backend.as_ref()).unwrap();
    assert_eq!(summary.entries, 4);
    let log = String::from_utf8(f.backend.read(AUDIT_LOG).unwrap()).unwrap();
    let actions: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        vec!["legal_hold_set", "delete", "legal_hold_cleared", "delete"]
    );
    assert!(log.contains("auditor-carol"));
    assert!(log.contains(&old_dir));

    // Reopening continues the chain.
    drop(audit);
    let audit = AuditLog::open(Arc::clone(&f.backend)).unwrap();
    assert_eq!(audit.entries(), 4);
    assert_eq!(audit.head(), summary.head);
}

#[test]
fn audit_log_tampering_is_detected() {
    let f = Fixture::new();
    let mut audit = AuditLog::open(Arc::clone(&f.backend)).unwrap();
    let now = datetime!(2026-11-22 12:00 UTC);
    for i in 0..3 {
        audit
            .append(
                now,
                "delete",
                &format!("id-{i}"),
                "d",
                "retention",
                "expired",
            )
            .unwrap();
    }
    drop(audit);
    let path = f.tmp.path().join(AUDIT_LOG);
    let original = std::fs::read_to_string(&path).unwrap();

    // Altered entry.
    std::fs::write(&path, original.replacen("id-1", "id-9", 1)).unwrap();
    let err = verify_audit(f.backend.as_ref()).unwrap_err();
    assert!(
        err.to_string()
            .contains("entry 2: head does not recompute (entry altered)"),
        "{err}"
    );
    assert!(AuditLog::open(Arc::clone(&f.backend)).is_err());

    // Dropped entry.
    let lines: Vec<&str> = original.lines().collect();
    std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    let err = verify_audit(f.backend.as_ref()).unwrap_err();
    assert!(err.to_string().contains("line 2: entry has seq 3"), "{err}");

    // A torn last line (interrupted write) is cut off on open.
    std::fs::write(&path, format!("{original}{{\"seq\":4,")).unwrap();
    let audit = AuditLog::open(Arc::clone(&f.backend)).unwrap();
    assert_eq!(audit.entries(), 3);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}
