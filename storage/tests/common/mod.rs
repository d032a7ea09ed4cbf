//! Shared fixtures for the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use psmgate_storage::backend::{join, Backend, LocalBackend};
use psmgate_storage::keys::GatewayKey;
use psmgate_storage::manifest::{Manifest, Period, RecordingState, SegmentInfo};
use psmgate_storage::writer::RecordingWriter;
use tempfile::TempDir;
use time::macros::datetime;
use time::OffsetDateTime;

pub const ID: &str = "3b241101-e2bb-4255-8caf-4136c566a962";
pub const ID2: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

pub fn started() -> OffsetDateTime {
    datetime!(2026-11-22 10:00:00 UTC)
}

pub struct Fixture {
    pub tmp: TempDir,
    pub backend: Arc<dyn Backend>,
    pub key: Arc<GatewayKey>,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let backend: Arc<dyn Backend> =
            Arc::new(LocalBackend::new(tmp.path()).expect("local backend"));
        Fixture {
            tmp,
            backend,
            key: Arc::new(GatewayKey::generate()),
        }
    }

    pub fn path(&self, dir: &str, file: &str) -> std::path::PathBuf {
        self.tmp.path().join(join(dir, file))
    }

    pub fn read(&self, dir: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.path(dir, file)).expect("read")
    }

    pub fn write(&self, dir: &str, file: &str, bytes: &[u8]) {
        std::fs::write(self.path(dir, file), bytes).expect("write")
    }

    pub fn append_raw(&self, dir: &str, file: &str, bytes: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path(dir, file))
            .expect("open");
        f.write_all(bytes).expect("append");
    }

    pub fn chain_lines(&self, dir: &str) -> Vec<String> {
        String::from_utf8(self.read(dir, "chain.jsonl"))
            .expect("utf8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn write_chain_lines(&self, dir: &str, lines: &[String]) {
        let mut s = lines.join("\n");
        if !lines.is_empty() {
            s.push('\n');
        }
        self.write(dir, "chain.jsonl", s.as_bytes());
    }
}

/// Deterministic test bytes.
pub fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(seed) * 7) as u8
        })
        .collect()
}

pub fn manifest(id: &str, started_at: OffsetDateTime) -> Manifest {
    let mut m = Manifest::new(id, "vnc", started_at);
    m.user = "alice".into();
    m.target = "lab-vnc".into();
    m.client_addr = "127.0.0.1:50312".into();
    m.codec = "av01.0.08M.08".into();
    m.encoder = "svt-av1".into();
    m
}

/// Writes the standard test content:
/// records 1 init, 2 seg1, 3 events, 4 seg1, [checkpoint 4], 5 seg2, 6 seg2, 7 events,
/// [checkpoint 7]. The manifest lists everything with the right sizes.
pub fn write_content(w: &mut RecordingWriter) {
    w.append("video/init.mp4", &bytes(1, 100)).unwrap();
    w.append("video/000001.m4s", &bytes(2, 200)).unwrap();
    w.append("events/000001.jsonl", b"{\"t\":0,\"type\":\"session\"}\n")
        .unwrap();
    w.append("video/000001.m4s", &bytes(3, 250)).unwrap();
    w.checkpoint().unwrap();
    w.append("video/000002.m4s", &bytes(4, 300)).unwrap();
    w.append("video/000002.m4s", &bytes(5, 150)).unwrap();
    w.append(
        "events/000001.jsonl",
        b"{\"t\":61500,\"type\":\"key\",\"key\":\"a\"}\n",
    )
    .unwrap();
    w.checkpoint().unwrap();
    let seg1 = w.file_len("video/000001.m4s");
    let seg2 = w.file_len("video/000002.m4s");
    let m = w.manifest_mut();
    m.periods = vec![Period {
        init: "video/init.mp4".into(),
        width: 1920,
        height: 1080,
        start_ms: 0,
        segments: vec![
            SegmentInfo {
                file: "video/000001.m4s".into(),
                start_ms: 0,
                duration_ms: 61000,
                bytes: seg1,
            },
            SegmentInfo {
                file: "video/000002.m4s".into(),
                start_ms: 61000,
                duration_ms: 2000,
                bytes: seg2,
            },
        ],
    }];
    m.events = vec!["events/000001.jsonl".into()];
    w.save_partial().unwrap();
}

/// A writer on a fresh recording of session `ID`.
pub fn writer(f: &Fixture) -> RecordingWriter {
    RecordingWriter::create(
        Arc::clone(&f.backend),
        Arc::clone(&f.key),
        manifest(ID, started()),
    )
    .unwrap()
}

/// A sealed recording with the standard content (8 records: 7 + seal). Returns its folder.
pub fn sealed_recording(f: &Fixture) -> String {
    let mut w = writer(f);
    write_content(&mut w);
    let dir = w.dir().to_owned();
    w.seal_at(
        RecordingState::Completed,
        "client disconnected",
        datetime!(2026-11-22 10:05:00 UTC),
    )
    .unwrap();
    dir
}
