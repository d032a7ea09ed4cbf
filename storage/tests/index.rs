//! Session index CRUD and filters.

use psmgate_storage::index::{
    Index, Integrity, IntegrityStatus, ListFilter, SessionRow, SqliteIndex,
};
use psmgate_storage::manifest::RecordingState;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn row(
    id: &str,
    user: &str,
    target: &str,
    protocol: &str,
    started_at: OffsetDateTime,
) -> SessionRow {
    SessionRow {
        id: id.into(),
        dir: format!("2026/11/22/{id}"),
        protocol: protocol.into(),
        user: user.into(),
        target: target.into(),
        client_addr: "10.0.0.1:4000".into(),
        started_at,
        ended_at: Some(started_at + Duration::minutes(5)),
        duration_ms: Some(300_000),
        bytes: 12345,
        state: RecordingState::Completed,
        integrity: Integrity::unknown(),
        legal_hold: false,
        created: started_at,
    }
}

fn ids(rows: &[SessionRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn crud_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("index.sqlite");
    let idx = SqliteIndex::open(&path).unwrap();
    assert_eq!(idx.schema_version().unwrap(), 2);
    let t0 = datetime!(2026-11-22 10:00:00.123456789 UTC);
    let a = row("a", "alice", "lab-vnc", "vnc", t0);
    let b = row("b", "bob", "lab-vnc", "rdp", t0 + Duration::hours(1));
    let mut c = row("c", "alice", "web-admin", "web", t0 + Duration::hours(2));
    c.state = RecordingState::Recording;
    c.ended_at = None;
    c.duration_ms = None;
    for r in [&a, &b, &c] {
        idx.upsert(r).unwrap();
    }
    assert_eq!(idx.get("a").unwrap().as_ref(), Some(&a));
    assert_eq!(idx.get("c").unwrap().as_ref(), Some(&c));
    assert_eq!(idx.get("zz").unwrap(), None);

    let all = idx.list(&ListFilter::default()).unwrap();
    assert_eq!(ids(&all), vec!["c", "b", "a"]);
    let f = |filter: ListFilter| ids(&idx.list(&filter).unwrap()).join(",");
    assert_eq!(
        f(ListFilter {
            user: Some("alice".into()),
            ..Default::default()
        }),
        "c,a"
    );
    assert_eq!(
        f(ListFilter {
            target: Some("lab-vnc".into()),
            ..Default::default()
        }),
        "b,a"
    );
    assert_eq!(
        f(ListFilter {
            protocol: Some("rdp".into()),
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        f(ListFilter {
            state: Some(RecordingState::Recording),
            ..Default::default()
        }),
        "c"
    );
    assert_eq!(
        f(ListFilter {
            since: Some(t0 + Duration::hours(1)),
            ..Default::default()
        }),
        "c,b"
    );
    assert_eq!(
        f(ListFilter {
            until: Some(t0 + Duration::hours(1)),
            ..Default::default()
        }),
        "a"
    );
    assert_eq!(
        f(ListFilter {
            limit: Some(1),
            offset: Some(1),
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        f(ListFilter {
            user: Some("alice".into()),
            target: Some("web-admin".into()),
            ..Default::default()
        }),
        "c"
    );

    // Integrity and legal hold.
    let verified = Integrity {
        status: IntegrityStatus::Failed,
        message: Some("video/000001.m4s bytes 0..10 do not match".into()),
        verified_at: Some(t0 + Duration::days(1)),
    };
    assert!(idx.set_integrity("a", &verified).unwrap());
    assert!(!idx.set_integrity("zz", &verified).unwrap());
    assert_eq!(idx.get("a").unwrap().unwrap().integrity, verified);
    assert!(idx.set_legal_hold("a", true).unwrap());
    // An update (for example at seal) keeps the legal hold.
    let mut a2 = a.clone();
    a2.bytes = 999;
    idx.upsert(&a2).unwrap();
    let got = idx.get("a").unwrap().unwrap();
    assert!(got.legal_hold);
    assert_eq!(got.bytes, 999);

    assert!(idx.remove("b").unwrap());
    assert!(!idx.remove("b").unwrap());
    drop(idx);

    // Persistent, and reopening does not re-run migrations.
    let idx = SqliteIndex::open(&path).unwrap();
    assert_eq!(idx.schema_version().unwrap(), 2);
    assert_eq!(
        ids(&idx.list(&ListFilter::default()).unwrap()),
        vec!["c", "a"]
    );
}

#[test]
fn out_of_range_values_are_errors() {
    let idx = SqliteIndex::open_in_memory().unwrap();
    let mut r = row("a", "u", "t", "vnc", datetime!(2026-11-22 10:00 UTC));
    r.bytes = u64::MAX;
    assert!(idx.upsert(&r).is_err());
}

/// Processes opening a new database at the same moment (the gateway starting while an operator
/// runs a command) must all succeed: the schema is created exactly once.
#[test]
fn concurrent_first_opens_create_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite3");
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    psmgate_storage::index::SqliteIndex::open(&path)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                } else {
                    psmgate_storage::tokens::TokenStore::open(&path)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
}

#[test]
fn stats_count_sessions_by_integrity_and_sum_their_bytes() {
    let idx = SqliteIndex::open_in_memory().unwrap();
    assert_eq!(idx.stats().unwrap(), Default::default());
    let t0 = datetime!(2026-11-22 10:00 UTC);
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let mut r = row(id, "u", "t", "vnc", t0 + Duration::minutes(i as i64));
        r.bytes = 1000 * (i as u64 + 1);
        idx.upsert(&r).unwrap();
    }
    for (id, status) in [("a", IntegrityStatus::Ok), ("b", IntegrityStatus::Failed)] {
        let integrity = Integrity {
            status,
            message: None,
            verified_at: Some(t0),
        };
        assert!(idx.set_integrity(id, &integrity).unwrap());
    }
    let stats = idx.stats().unwrap();
    assert_eq!(stats.bytes, 6000);
    assert_eq!(
        stats.by_integrity,
        [
            ("failed".to_owned(), 1),
            ("ok".to_owned(), 1),
            ("unknown".to_owned(), 1)
        ]
    );
}
