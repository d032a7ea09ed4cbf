//! The manifest (`manifest.json`, and `manifest.partial.json` while recording).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chain::Digest;

/// Version of the recording format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// Lifecycle state of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Being written (only in `manifest.partial.json`).
    Recording,
    /// Ended normally.
    Completed,
    /// Cut short (gateway stopped, crash recovered at start).
    Interrupted,
    /// Ended because recording failed (for example storage errors); the session was closed.
    Failed,
}

impl RecordingState {
    /// The name used in JSON and in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Completed => "completed",
            RecordingState::Interrupted => "interrupted",
            RecordingState::Failed => "failed",
        }
    }

    /// Parses the name used in JSON and in the index.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "recording" => RecordingState::Recording,
            "completed" => RecordingState::Completed,
            "interrupted" => RecordingState::Interrupted,
            "failed" => RecordingState::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One screen-size period: an init segment and the media segments that use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Init segment file, e.g. `video/init.mp4`.
    pub init: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Start of the period, ms since session start.
    pub start_ms: u64,
    /// Media segments of this period, in order.
    #[serde(default)]
    pub segments: Vec<SegmentInfo>,
}

/// One media segment file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Segment file, e.g. `video/000001.m4s`.
    pub file: String,
    /// Start, ms since session start.
    pub start_ms: u64,
    /// Duration in ms.
    pub duration_ms: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// `chain` member of a sealed manifest: the last record *before* the seal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    /// Number of data records before the seal record.
    pub records: u64,
    /// Head of record `records` (the genesis head when `records` is 0).
    pub head: Digest,
}

/// The manifest of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// Session id (lowercase hyphenated UUID v4).
    pub session_id: String,
    /// Protocol (`vnc`, `rdp`, `web`, `demo`).
    pub protocol: String,
    /// Gateway user.
    pub user: String,
    /// Target name.
    pub target: String,
    /// Client address, `ip:port`.
    pub client_addr: String,
    /// Session start (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Session end (set at seal).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<OffsetDateTime>,
    /// Duration in ms (set at seal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Lifecycle state.
    pub state: RecordingState,
    /// Why the session ended (set at seal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Codec string, e.g. `av01.0.08M.08`.
    #[serde(default)]
    pub codec: String,
    /// Encoder name, e.g. `svt-av1`.
    #[serde(default)]
    pub encoder: String,
    /// Screen-size periods, in order.
    #[serde(default)]
    pub periods: Vec<Period>,
    /// Transcript files, in order.
    #[serde(default)]
    pub events: Vec<String>,
    /// Version (hash) of the policy in force.
    #[serde(default)]
    pub policy_version: String,
    /// Ids of mask rules applied during the session.
    #[serde(default)]
    pub mask_rule_ids: Vec<String>,
    /// Chain summary (set at seal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSummary>,
    /// Id of the gateway key that signs the chain.
    #[serde(default)]
    pub key_id: String,
    /// Base64 raw 32-byte Ed25519 public key of the gateway.
    #[serde(default)]
    pub public_key: String,
    /// Gateway name and version, e.g. `psmgate 0.1.0`.
    #[serde(default)]
    pub gateway: String,
}

impl Manifest {
    /// A manifest for a new recording with the identity fields set and everything else empty.
    /// `key_id` and `public_key` are filled in by the writer.
    pub fn new(session_id: &str, protocol: &str, started_at: OffsetDateTime) -> Self {
        Manifest {
            format: FORMAT_VERSION,
            session_id: session_id.to_owned(),
            protocol: protocol.to_owned(),
            user: String::new(),
            target: String::new(),
            client_addr: String::new(),
            started_at,
            ended_at: None,
            duration_ms: None,
            state: RecordingState::Recording,
            end_reason: None,
            codec: String::new(),
            encoder: String::new(),
            periods: Vec::new(),
            events: Vec::new(),
            policy_version: String::new(),
            mask_rule_ids: Vec::new(),
            chain: None,
            key_id: String::new(),
            public_key: String::new(),
            gateway: format!("psmgate {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Every file the manifest lists: init segments, media segments and transcripts.
    pub fn listed_files(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for p in &self.periods {
            out.push(p.init.as_str());
            out.extend(p.segments.iter().map(|s| s.file.as_str()));
        }
        out.extend(self.events.iter().map(String::as_str));
        out
    }

    /// Total bytes of all listed segments.
    pub fn segment_bytes(&self) -> u64 {
        self.periods
            .iter()
            .flat_map(|p| &p.segments)
            .map(|s| s.bytes)
            .sum()
    }

    /// Serialises as pretty-printed JSON with a trailing newline.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Parses a manifest.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn json_round_trip_matches_doc_names() {
        let mut m = Manifest::new(
            "6f1c1f1e-1111-4222-8333-444455556666",
            "vnc",
            datetime!(2026-11-22 10:00:00 UTC),
        );
        m.periods.push(Period {
            init: "video/init.mp4".into(),
            width: 1920,
            height: 1080,
            start_ms: 0,
            segments: vec![SegmentInfo {
                file: "video/000001.m4s".into(),
                start_ms: 0,
                duration_ms: 61000,
                bytes: 81234,
            }],
        });
        m.state = RecordingState::Completed;
        let json = String::from_utf8(m.to_json().unwrap()).unwrap();
        assert!(json.contains("\"started_at\": \"2026-11-22T10:00:00Z\""));
        assert!(json.contains("\"state\": \"completed\""));
        assert!(!json.contains("ended_at"));
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
        assert_eq!(m.listed_files(), vec!["video/init.mp4", "video/000001.m4s"]);
    }
}
