//! [`RecordingWriter`]: the only way bytes enter a recording.
//!
//! # Durability and crash semantics
//!
//! [`RecordingWriter::append`] writes in this order:
//!
//! 1. append the bytes to the data file, `fsync` it;
//! 2. append the chain line describing them to `chain.jsonl`, `fsync` it.
//!
//! So a chain line on disk always describes bytes that are already durable. A crash can leave:
//!
//! - bytes at the end of a data file that no chain line describes (crash between 1 and 2), or a
//!   data file that has no record at all;
//! - a torn last line in `chain.jsonl` (crash during 2);
//! - a `manifest.partial.json` that is older than the chain (it is a working copy, not chained).
//!
//! All three are exactly what [`crate::recovery::recover`] repairs: it truncates every file to
//! its chained length, drops the torn line and seals the recording as `interrupted`. A crash
//! therefore loses at most the range being appended.
//!
//! After any I/O error the writer is *poisoned*: every later call fails with
//! [`Error::Poisoned`], so the caller can fail the session closed. The recording is then left
//! unsealed for recovery.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::backend::{join, validate_path, Backend};
use crate::chain::{ChainLine, ChainRecord, ChainWriter, Digest};
use crate::error::{Error, Result};
use crate::keys::GatewayKey;
use crate::layout::{is_session_id, recording_dir, CHAIN, MANIFEST, PARTIAL_MANIFEST};
use crate::manifest::{ChainSummary, Manifest, RecordingState, FORMAT_VERSION};

/// Default interval between signed checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Writes one recording: data ranges, chain lines, checkpoints, the manifest, the seal.
#[derive(Debug)]
pub struct RecordingWriter {
    backend: Arc<dyn Backend>,
    key: Arc<GatewayKey>,
    dir: String,
    manifest: Manifest,
    chain: ChainWriter,
    /// Chained length of every data file.
    file_lengths: BTreeMap<String, u64>,
    poisoned: Option<String>,
    checkpoint_interval: Duration,
    last_checkpoint: Instant,
    sealed: bool,
}

impl RecordingWriter {
    /// Starts a new recording in `YYYY/MM/DD/<session_id>` and writes `manifest.partial.json`.
    ///
    /// The writer sets `format`, `state` (`recording`), `key_id` and `public_key`, and clears
    /// `ended_at`, `duration_ms`, `end_reason` and `chain`. Fails if the folder already holds a
    /// recording.
    pub fn create(
        backend: Arc<dyn Backend>,
        key: Arc<GatewayKey>,
        mut manifest: Manifest,
    ) -> Result<Self> {
        if !is_session_id(&manifest.session_id) {
            return Err(Error::InvalidSessionId(manifest.session_id.clone()));
        }
        manifest.format = FORMAT_VERSION;
        manifest.state = RecordingState::Recording;
        manifest.ended_at = None;
        manifest.duration_ms = None;
        manifest.end_reason = None;
        manifest.chain = None;
        manifest.key_id = key.key_id();
        manifest.public_key = key.public_key_base64();
        let dir = recording_dir(manifest.started_at, &manifest.session_id);
        for name in [CHAIN, MANIFEST, PARTIAL_MANIFEST] {
            let path = join(&dir, name);
            let exists = backend
                .len(&path)
                .map_err(|e| Error::io("stat", path.clone(), e))?
                .is_some();
            if exists {
                return Err(Error::AlreadyExists(dir));
            }
        }
        let chain = ChainWriter::new(&manifest.session_id);
        let writer = RecordingWriter {
            backend,
            key,
            dir,
            manifest,
            chain,
            file_lengths: BTreeMap::new(),
            poisoned: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            last_checkpoint: Instant::now(),
            sealed: false,
        };
        let partial = join(&writer.dir, PARTIAL_MANIFEST);
        let bytes = writer
            .manifest
            .to_json()
            .map_err(|e| Error::json(PARTIAL_MANIFEST, e))?;
        writer
            .backend
            .put_atomic(&partial, &bytes)
            .map_err(|e| Error::io("write", partial, e))?;
        Ok(writer)
    }

    /// Continues an unsealed recording whose chain ends at `chain` and whose files have the
    /// chained lengths `file_lengths` (used by recovery).
    pub(crate) fn resume(
        backend: Arc<dyn Backend>,
        key: Arc<GatewayKey>,
        dir: String,
        manifest: Manifest,
        chain: ChainWriter,
        file_lengths: BTreeMap<String, u64>,
    ) -> Self {
        RecordingWriter {
            backend,
            key,
            dir,
            manifest,
            chain,
            file_lengths,
            poisoned: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            last_checkpoint: Instant::now(),
            sealed: false,
        }
    }

    /// Notes that the recording is sealed by other means (recovery completing an earlier seal).
    pub(crate) fn mark_sealed(&mut self) {
        self.sealed = true;
    }

    /// Sets the interval of [`RecordingWriter::checkpoint_if_due`] (default 10 s).
    pub fn set_checkpoint_interval(&mut self, interval: Duration) {
        self.checkpoint_interval = interval;
    }

    /// The recording folder, relative to the storage root.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        self.chain.session_id()
    }

    /// The current manifest (working copy).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest, for updating periods, segments and transcript files. Persist the change
    /// with [`RecordingWriter::save_partial`]. The identity fields (`format`, `session_id`,
    /// `started_at`, `state`, `key_id`, `public_key`) must not be changed.
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// Number of data records written so far.
    pub fn records(&self) -> u64 {
        self.chain.seq()
    }

    /// Head of the last record (the genesis head if none).
    pub fn head(&self) -> Digest {
        self.chain.head()
    }

    /// The chained length of `file` (0 if nothing was appended to it).
    pub fn file_len(&self, file: &str) -> u64 {
        self.file_lengths.get(file).copied().unwrap_or(0)
    }

    /// Whether an earlier I/O error made the writer unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn ensure_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Converts an I/O result, poisoning the writer on error.
    fn io<T>(&mut self, op: &'static str, path: &str, result: io::Result<T>) -> Result<T> {
        result.map_err(|e| {
            let err = Error::io(op, path, e);
            self.poisoned = Some(err.to_string());
            err
        })
    }

    fn poison(&mut self, err: Error) -> Error {
        self.poisoned = Some(err.to_string());
        err
    }

    fn check_identity(&self) -> Result<()> {
        let m = &self.manifest;
        let changed = if m.format != FORMAT_VERSION {
            Some("format")
        } else if m.session_id != self.chain.session_id() {
            Some("session_id")
        } else if recording_dir(m.started_at, &m.session_id) != self.dir {
            Some("started_at")
        } else if m.state != RecordingState::Recording {
            Some("state")
        } else if m.key_id != self.key.key_id() || m.public_key != self.key.public_key_base64() {
            Some("key_id/public_key")
        } else {
            None
        };
        match changed {
            Some(field) => Err(Error::InvalidArgument(format!(
                "the manifest field {field} must not be changed while recording"
            ))),
            None => Ok(()),
        }
    }

    fn check_data_file(file: &str) -> Result<()> {
        validate_path(file, false).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if [CHAIN, MANIFEST, PARTIAL_MANIFEST].contains(&file) {
            return Err(Error::InvalidArgument(format!(
                "{file} is reserved and cannot be appended to"
            )));
        }
        if file.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidArgument(
                "file name longer than 65535 bytes".to_owned(),
            ));
        }
        Ok(())
    }

    /// Appends `bytes` to `file` (relative to the recording folder) and chains them.
    ///
    /// Order: data append, data `fsync`, chain line append, chain `fsync` (see the module
    /// documentation for the crash semantics). Returns the new record.
    pub fn append(&mut self, file: &str, bytes: &[u8]) -> Result<ChainRecord> {
        self.ensure_usable()?;
        Self::check_data_file(file)?;
        if bytes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "empty append to {file}: a chain record covers at least one byte"
            )));
        }
        let expected = self.file_len(file);
        let path = join(&self.dir, file);
        let r = self.backend.append(&path, bytes);
        let offset = self.io("append", &path, r)?;
        if offset != expected {
            let err = Error::Chain(format!(
                "{path} was {offset} bytes long before the append but the chain covers \
                 {expected} bytes (modified outside the writer)"
            ));
            return Err(self.poison(err));
        }
        let r = self.backend.sync(&path);
        self.io("sync", &path, r)?;
        let record = match self.chain.next_record(file, offset, bytes) {
            Ok(r) => r,
            Err(e) => return Err(self.poison(Error::Chain(e))),
        };
        self.write_chain_line(&ChainLine::Record(record.clone()))?;
        if let Err(e) = self.chain.commit(&record) {
            return Err(self.poison(Error::Chain(e)));
        }
        self.file_lengths
            .insert(file.to_owned(), offset + bytes.len() as u64);
        Ok(record)
    }

    fn write_chain_line(&mut self, line: &ChainLine) -> Result<()> {
        let path = join(&self.dir, CHAIN);
        let r = self.backend.append(&path, line.to_line().as_bytes());
        self.io("append", &path, r)?;
        let r = self.backend.sync(&path);
        self.io("sync", &path, r)?;
        Ok(())
    }

    /// Writes a signed checkpoint of the current head, unless there is no record yet or the
    /// current head is already checkpointed.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.ensure_usable()?;
        self.last_checkpoint = Instant::now();
        if self.chain.seq() == self.chain.last_checkpoint_seq() {
            return Ok(());
        }
        let Some(cp) = self.chain.checkpoint(&self.key) else {
            return Ok(());
        };
        let seq = cp.seq;
        self.write_chain_line(&ChainLine::Checkpoint(cp))?;
        self.chain.mark_checkpointed(seq);
        Ok(())
    }

    /// Writes a checkpoint if the checkpoint interval has passed since the last one.
    /// Returns whether it checked in (wrote or confirmed a checkpoint).
    pub fn checkpoint_if_due(&mut self, now: Instant) -> Result<bool> {
        self.ensure_usable()?;
        if now.saturating_duration_since(self.last_checkpoint) < self.checkpoint_interval {
            return Ok(false);
        }
        self.checkpoint()?;
        Ok(true)
    }

    /// Persists the working manifest to `manifest.partial.json` (atomically).
    pub fn save_partial(&mut self) -> Result<()> {
        self.ensure_usable()?;
        self.check_identity()?;
        let bytes = self
            .manifest
            .to_json()
            .map_err(|e| Error::json(PARTIAL_MANIFEST, e))?;
        let path = join(&self.dir, PARTIAL_MANIFEST);
        let r = self.backend.put_atomic(&path, &bytes);
        self.io("write", &path, r)
    }

    /// Seals the recording with the current time as its end. See [`RecordingWriter::seal_at`].
    pub fn seal(self, state: RecordingState, end_reason: &str) -> Result<Manifest> {
        self.seal_at(state, end_reason, OffsetDateTime::now_utc())
    }

    /// Seals the recording: sets `ended_at`, `duration_ms`, `state`, `end_reason` and `chain`,
    /// writes `manifest.json` atomically, appends the seal record (covering the whole manifest)
    /// and its checkpoint, and removes `manifest.partial.json`. Returns the final manifest.
    ///
    /// `state` must not be [`RecordingState::Recording`].
    pub fn seal_at(
        mut self,
        state: RecordingState,
        end_reason: &str,
        ended_at: OffsetDateTime,
    ) -> Result<Manifest> {
        self.ensure_usable()?;
        if state == RecordingState::Recording {
            return Err(Error::InvalidArgument(
                "a recording cannot be sealed in state \"recording\"".to_owned(),
            ));
        }
        self.check_identity()?;
        let mut m = self.manifest.clone();
        let ended_at = ended_at.max(m.started_at);
        let duration_ms =
            u64::try_from((ended_at - m.started_at).whole_milliseconds()).unwrap_or(0);
        m.ended_at = Some(ended_at);
        m.duration_ms = Some(duration_ms);
        m.state = state;
        m.end_reason = Some(end_reason.to_owned());
        m.chain = Some(ChainSummary {
            records: self.chain.seq(),
            head: self.chain.head(),
        });
        let bytes = m.to_json().map_err(|e| Error::json(MANIFEST, e))?;

        let path = join(&self.dir, MANIFEST);
        let r = self.backend.put_atomic(&path, &bytes);
        self.io("write", &path, r)?;
        let record = match self.chain.next_record(MANIFEST, 0, &bytes) {
            Ok(r) => r,
            Err(e) => return Err(self.poison(Error::Chain(e))),
        };
        self.write_chain_line(&ChainLine::Record(record.clone()))?;
        if let Err(e) = self.chain.commit(&record) {
            return Err(self.poison(Error::Chain(e)));
        }
        self.checkpoint()?;
        let partial = join(&self.dir, PARTIAL_MANIFEST);
        let r = self.backend.remove(&partial);
        self.io("remove", &partial, r)?;
        self.sealed = true;
        self.manifest = m.clone();
        Ok(m)
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        if !self.sealed {
            tracing::warn!(
                dir = %self.dir,
                records = self.chain.seq(),
                poisoned = self.poisoned.as_deref().unwrap_or(""),
                "recording writer dropped without sealing; the recording is left for recovery"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<RecordingWriter>();
    }
}
