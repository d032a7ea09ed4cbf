//! Crash recovery and writer failure behaviour.

mod common;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use psmgate_storage::backend::{Backend, LocalBackend};
use psmgate_storage::manifest::{Manifest, Period, RecordingState, SegmentInfo};
use psmgate_storage::recovery::{recover, recover_all, RecoveryAction, RECOVERED_END_REASON};
use psmgate_storage::verify::verify;
use psmgate_storage::writer::RecordingWriter;
use psmgate_storage::Error;

fn verify_ok(f: &Fixture, dir: &str) {
    let report = verify(
        f.backend.as_ref(),
        dir,
        Some(f.key.verifying_key()),
        &mut |_, _| {},
    );
    assert!(report.ok, "{report:#?}");
}

/// Simulates a crash: records written, the writer dropped without sealing, a half-written chain
/// line, unchained bytes at the end of a segment and a segment file without any record.
#[test]
fn crashed_recording_is_sealed_as_interrupted() {
    let f = Fixture::new();
    let mut w = writer(&f);
    write_content(&mut w);
    // The gateway had announced a third segment in the partial manifest but crashed before
    // its first record was chained.
    let m = w.manifest_mut();
    m.periods[0].segments.push(SegmentInfo {
        file: "video/000003.m4s".into(),
        start_ms: 63000,
        duration_ms: 1000,
        bytes: 999,
    });
    m.periods.push(Period {
        init: "video/init-000002.mp4".into(),
        width: 1280,
        height: 720,
        start_ms: 64000,
        segments: vec![],
    });
    w.save_partial().unwrap();
    let dir = w.dir().to_owned();
    drop(w);

    f.append_raw(&dir, "video/000002.m4s", &[0xAB; 123]);
    f.append_raw(&dir, "video/000003.m4s", &[0xCD; 77]);
    let chain_len = f.read(&dir, "chain.jsonl").len() as u64;
    f.append_raw(&dir, "chain.jsonl", b"{\"seq\":8,\"file\":\"video/0000");

    let before = verify(
        f.backend.as_ref(),
        &dir,
        Some(f.key.verifying_key()),
        &mut |_, _| {},
    );
    assert!(!before.ok && !before.sealed);
    assert_eq!(before.last_good.records, 7);
    assert_eq!(before.last_good.chain_len, chain_len);
    assert!(before
        .problems
        .iter()
        .any(|p| p.message == "video/000002.m4s has 123 unchained bytes after offset 450"));
    assert!(before.problems.iter().any(|p| p.message
        == format!(
            "chain.jsonl ends with an incomplete line of 27 bytes after offset {chain_len} \
             (interrupted write or truncation)"
        )));

    let outcome = recover(&f.backend, &f.key, &dir).unwrap();
    assert_eq!(outcome.action, RecoveryAction::SealedInterrupted);
    assert_eq!(outcome.records, 7);
    assert_eq!(outcome.removed, vec!["video/000003.m4s".to_owned()]);
    assert_eq!(outcome.truncated.len(), 1);
    assert_eq!(outcome.truncated[0].file, "video/000002.m4s");
    assert_eq!(
        (outcome.truncated[0].from, outcome.truncated[0].to),
        (573, 450)
    );
    assert_eq!(outcome.dropped_chain_bytes, 27);

    verify_ok(&f, &dir);
    let m = Manifest::from_json(&f.read(&dir, "manifest.json")).unwrap();
    assert_eq!(m.state, RecordingState::Interrupted);
    assert_eq!(m.end_reason.as_deref(), Some(RECOVERED_END_REASON));
    assert_eq!(m.periods.len(), 1, "uncovered period dropped");
    let files: Vec<&str> = m.periods[0]
        .segments
        .iter()
        .map(|s| s.file.as_str())
        .collect();
    assert_eq!(files, vec!["video/000001.m4s", "video/000002.m4s"]);
    assert_eq!(m.periods[0].segments[1].bytes, 450);
    assert_eq!(m.chain.as_ref().unwrap().records, 7);
    // End estimated from the last chained data: segment 2 ends at 63 s.
    assert_eq!(m.duration_ms, Some(63_000));
    assert!(!f.path(&dir, "manifest.partial.json").exists());
    assert!(!f.path(&dir, "video/000003.m4s").exists());

    // Running recovery again changes nothing.
    let again = recover(&f.backend, &f.key, &dir).unwrap();
    assert_eq!(again.action, RecoveryAction::NothingToDo);
    verify_ok(&f, &dir);
}

#[test]
fn recording_without_records_is_recovered() {
    let f = Fixture::new();
    let w = writer(&f);
    let dir = w.dir().to_owned();
    drop(w);
    let outcome = recover(&f.backend, &f.key, &dir).unwrap();
    assert_eq!(outcome.action, RecoveryAction::SealedInterrupted);
    assert_eq!(outcome.records, 0);
    verify_ok(&f, &dir);
}

#[test]
fn crash_after_seal_record_gets_its_checkpoint() {
    let f = Fixture::new();
    let mut w = writer(&f);
    write_content(&mut w);
    let partial = w.manifest().to_json().unwrap();
    let dir = w.dir().to_owned();
    w.seal(RecordingState::Completed, "client disconnected")
        .unwrap();
    // Undo the last two steps of the seal: the checkpoint and the partial removal.
    let mut lines = f.chain_lines(&dir);
    lines.pop();
    f.write_chain_lines(&dir, &lines);
    f.write(&dir, "manifest.partial.json", &partial);

    let outcome = recover(&f.backend, &f.key, &dir).unwrap();
    assert_eq!(outcome.action, RecoveryAction::FinishedSeal);
    verify_ok(&f, &dir);
    let m = Manifest::from_json(&f.read(&dir, "manifest.json")).unwrap();
    assert_eq!(m.state, RecordingState::Completed);
}

#[test]
fn crash_before_seal_record_discards_unchained_manifest() {
    let f = Fixture::new();
    let mut w = writer(&f);
    write_content(&mut w);
    let dir = w.dir().to_owned();
    drop(w);
    // manifest.json written, seal record never appended.
    f.write(&dir, "manifest.json", b"{\"half\":");
    let outcome = recover(&f.backend, &f.key, &dir).unwrap();
    assert_eq!(outcome.action, RecoveryAction::SealedInterrupted);
    assert!(outcome.removed.contains(&"manifest.json".to_owned()));
    verify_ok(&f, &dir);
}

#[test]
fn tampered_unsealed_recording_is_left_untouched() {
    let f = Fixture::new();
    let mut w = writer(&f);
    write_content(&mut w);
    let dir = w.dir().to_owned();
    drop(w);
    let mut seg = f.read(&dir, "video/000001.m4s");
    seg[10] ^= 0xFF;
    f.write(&dir, "video/000001.m4s", &seg);
    let chain_before = f.read(&dir, "chain.jsonl");
    let err = recover(&f.backend, &f.key, &dir).unwrap_err();
    assert!(matches!(err, Error::NotRecoverable { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("video/000001.m4s bytes 0..200 do not match chain record 2 (sha256 mismatch)"));
    assert_eq!(f.read(&dir, "chain.jsonl"), chain_before);
    assert_eq!(f.read(&dir, "video/000001.m4s"), seg);
    assert!(f.path(&dir, "manifest.partial.json").exists());
}

#[test]
fn recovery_with_another_key_is_refused() {
    let f = Fixture::new();
    let w = writer(&f);
    let dir = w.dir().to_owned();
    drop(w);
    let other = Arc::new(psmgate_storage::keys::GatewayKey::generate());
    let err = recover(&f.backend, &other, &dir).unwrap_err();
    assert!(err.to_string().contains("signed with key"), "{err}");
}

#[test]
fn recover_all_handles_only_unsealed_recordings() {
    let f = Fixture::new();
    let sealed_dir = sealed_recording(&f);
    let mut w = RecordingWriter::create(
        Arc::clone(&f.backend),
        Arc::clone(&f.key),
        manifest(ID2, started()),
    )
    .unwrap();
    write_content(&mut w);
    let open_dir = w.dir().to_owned();
    drop(w);
    let results = recover_all(&f.backend, &f.key).unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, open_dir);
    assert_eq!(
        results[0].1.as_ref().unwrap().action,
        RecoveryAction::SealedInterrupted
    );
    verify_ok(&f, &open_dir);
    verify_ok(&f, &sealed_dir);
}

/// A backend that fails every append after a number of successful ones (like a full disk).
#[derive(Debug)]
struct FailingBackend {
    inner: LocalBackend,
    appends_left: AtomicUsize,
}

impl Backend for FailingBackend {
    fn append(&self, path: &str, bytes: &[u8]) -> io::Result<u64> {
        if self
            .appends_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        self.inner.append(path, bytes)
    }
    fn sync(&self, path: &str) -> io::Result<()> {
        self.inner.sync(path)
    }
    fn put_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.put_atomic(path, bytes)
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.inner.read_range(path, offset, len)
    }
    fn len(&self, path: &str) -> io::Result<Option<u64>> {
        self.inner.len(path)
    }
    fn truncate(&self, path: &str, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn remove(&self, path: &str) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn list_dirs(&self, prefix: &str) -> io::Result<Vec<String>> {
        self.inner.list_dirs(prefix)
    }
    fn list_files(&self, prefix: &str) -> io::Result<Vec<String>> {
        self.inner.list_files(prefix)
    }
    fn remove_dir_all(&self, prefix: &str) -> io::Result<()> {
        self.inner.remove_dir_all(prefix)
    }
}

#[test]
fn io_error_poisons_the_writer_and_the_recording_recovers() {
    let f = Fixture::new();
    let failing: Arc<dyn Backend> = Arc::new(FailingBackend {
        inner: LocalBackend::new(f.tmp.path()).unwrap(),
        // init data + chain line, then the segment data append succeeds and its chain line fails.
        appends_left: AtomicUsize::new(3),
    });
    let mut w = RecordingWriter::create(
        Arc::clone(&failing),
        Arc::clone(&f.key),
        manifest(ID, started()),
    )
    .unwrap();
    w.append("video/init.mp4", &bytes(1, 100)).unwrap();
    let err = w.append("video/000001.m4s", &bytes(2, 200)).unwrap_err();
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert!(w.is_poisoned());
    assert!(matches!(
        w.append("video/000001.m4s", b"x").unwrap_err(),
        Error::Poisoned(_)
    ));
    assert!(matches!(w.checkpoint().unwrap_err(), Error::Poisoned(_)));
    let dir = w.dir().to_owned();
    assert!(matches!(
        w.seal(RecordingState::Failed, "storage failed")
            .unwrap_err(),
        Error::Poisoned(_)
    ));

    let outcome = recover(&f.backend, &f.key, &dir).unwrap();
    assert_eq!(outcome.records, 1);
    assert_eq!(outcome.removed, vec!["video/000001.m4s".to_owned()]);
    verify_ok(&f, &dir);
}

#[test]
fn writer_rejects_bad_input_without_poisoning() {
    let f = Fixture::new();
    let mut w = writer(&f);
    for bad in [
        "../x",
        "/abs",
        "a\\b",
        "chain.jsonl",
        "manifest.json",
        "manifest.partial.json",
    ] {
        assert!(
            matches!(w.append(bad, b"x").unwrap_err(), Error::InvalidArgument(_)),
            "{bad}"
        );
    }
    assert!(matches!(
        w.append("video/a", b"").unwrap_err(),
        Error::InvalidArgument(_)
    ));
    w.manifest_mut().session_id = ID2.into();
    assert!(matches!(
        w.save_partial().unwrap_err(),
        Error::InvalidArgument(_)
    ));
    w.manifest_mut().session_id = ID.into();
    assert!(!w.is_poisoned());
    w.append("video/a", b"x").unwrap();
    assert!(matches!(
        RecordingWriter::create(
            Arc::clone(&f.backend),
            Arc::clone(&f.key),
            manifest(ID, started())
        )
        .unwrap_err(),
        Error::AlreadyExists(_)
    ));
    assert!(matches!(
        RecordingWriter::create(
            Arc::clone(&f.backend),
            Arc::clone(&f.key),
            manifest("not-a-uuid", started())
        )
        .unwrap_err(),
        Error::InvalidSessionId(_)
    ));
    let dir = w.dir().to_owned();
    w.seal(RecordingState::Completed, "done").unwrap();
    verify_ok(&f, &dir);
}

#[test]
fn checkpoint_if_due_respects_the_interval() {
    let f = Fixture::new();
    let mut w = writer(&f);
    w.set_checkpoint_interval(std::time::Duration::from_secs(10));
    let t0 = std::time::Instant::now();
    w.append("video/init.mp4", b"abc").unwrap();
    assert!(!w.checkpoint_if_due(t0).unwrap());
    assert!(w
        .checkpoint_if_due(t0 + std::time::Duration::from_secs(11))
        .unwrap());
    let dir = w.dir().to_owned();
    let lines = f.chain_lines(&dir);
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("{\"checkpoint\":true,\"seq\":1,"));
    drop(w);
}
