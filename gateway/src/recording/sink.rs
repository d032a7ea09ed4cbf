//! Where the recorder's bytes go: files of the recording layout, each append chained.

use psmgate_codecs::transcript::{self, Event};
use psmgate_codecs::video::VideoOutput;
use psmgate_storage::manifest::{Manifest, Period, RecordingState, SegmentInfo};
use psmgate_storage::writer::RecordingWriter;
use std::time::Instant;

/// Writes video outputs and transcript batches of one recording.
pub struct StorageSink {
    writer: RecordingWriter,
    segment_file: Option<String>,
    events_file: Option<String>,
    events_seq: u32,
    new_events_file: bool,
    bytes: u64,
    partial_saved: Instant,
}

/// How often the partial manifest is rewritten while fragments flow: it is what crash recovery
/// rebuilds the sealed manifest from (segment durations), so it may lag by at most this much.
const PARTIAL_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for StorageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSink")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Sink failures, as text safe to log (paths and causes, never content).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] psmgate_storage::Error),
    /// Outputs arrived in an order the layout cannot hold.
    #[error("video output out of order: {0}")]
    Order(&'static str),
}

impl StorageSink {
    /// Wraps an open writer.
    pub fn new(writer: RecordingWriter) -> Self {
        Self {
            writer,
            segment_file: None,
            events_file: None,
            events_seq: 0,
            new_events_file: false,
            bytes: 0,
            partial_saved: Instant::now(),
        }
    }

    /// Bytes written so far (media and transcript).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The manifest as it stands.
    pub fn manifest(&self) -> &Manifest {
        self.writer.manifest()
    }

    fn append(&mut self, file: &str, bytes: &[u8]) -> Result<(), SinkError> {
        self.writer.append(file, bytes)?;
        crate::metrics::global()
            .recording_bytes
            .inc_by(bytes.len() as u64);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes one video output and records it in the manifest.
    pub fn video(&mut self, out: VideoOutput) -> Result<(), SinkError> {
        match out {
            VideoOutput::Init {
                period,
                width,
                height,
                start_ms,
                codec,
                bytes,
            } => {
                let file = if period == 1 {
                    "video/init.mp4".to_string()
                } else {
                    format!("video/init-{period:06}.mp4")
                };
                self.append(&file, &bytes)?;
                let m = self.writer.manifest_mut();
                m.codec = codec;
                m.periods.push(Period {
                    init: file,
                    width,
                    height,
                    start_ms,
                    segments: Vec::new(),
                });
                self.writer.save_partial()?;
            }
            VideoOutput::SegmentStart {
                segment,
                start_ms,
                bytes,
                ..
            } => {
                let file = format!("video/{segment:06}.m4s");
                self.append(&file, &bytes)?;
                if let Some(p) = self.writer.manifest_mut().periods.last_mut() {
                    p.segments.push(SegmentInfo {
                        file: file.clone(),
                        start_ms,
                        duration_ms: 0,
                        bytes: bytes.len() as u64,
                    });
                }
                self.segment_file = Some(file);
                // Transcript files follow video segments, so a reviewer can load a stretch of
                // session with its events.
                self.new_events_file = segment > 1;
                self.writer.save_partial()?;
            }
            VideoOutput::Fragment {
                start_ms,
                duration_ms,
                bytes,
                ..
            } => {
                let file = self
                    .segment_file
                    .clone()
                    .ok_or(SinkError::Order("fragment before any segment"))?;
                self.append(&file, &bytes)?;
                if let Some(seg) = self
                    .writer
                    .manifest_mut()
                    .periods
                    .last_mut()
                    .and_then(|p| p.segments.last_mut())
                {
                    seg.bytes += bytes.len() as u64;
                    seg.duration_ms = (start_ms + duration_ms).saturating_sub(seg.start_ms);
                }
                if self.partial_saved.elapsed() >= PARTIAL_EVERY {
                    self.writer.save_partial()?;
                    self.partial_saved = Instant::now();
                }
            }
        }
        Ok(())
    }

    /// Appends a batch of (already masked) transcript events.
    pub fn events(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.new_events_file || self.events_file.is_none() {
            self.events_seq += 1;
            let file = format!("events/{:06}.jsonl", self.events_seq);
            self.writer.manifest_mut().events.push(file.clone());
            self.events_file = Some(file);
            self.new_events_file = false;
            self.writer.save_partial()?;
        }
        let file = self.events_file.clone().unwrap_or_default();
        self.append(&file, &transcript::to_jsonl(events))
    }

    /// Signs the chain head if the interval passed; true when a checkpoint was written.
    pub fn checkpoint_if_due(&mut self, now: Instant) -> Result<bool, SinkError> {
        Ok(self.writer.checkpoint_if_due(now)?)
    }

    /// Seals the recording.
    pub fn seal(self, state: RecordingState, reason: &str) -> Result<Manifest, SinkError> {
        Ok(self.writer.seal(state, reason)?)
    }

    /// Seals the recording with `ended_at` as the session's end (a session that ended before its
    /// recording was complete, see `Recorder::mark_ended`).
    pub fn seal_at(
        self,
        state: RecordingState,
        reason: &str,
        ended_at: time::OffsetDateTime,
    ) -> Result<Manifest, SinkError> {
        Ok(self.writer.seal_at(state, reason, ended_at)?)
    }
}
