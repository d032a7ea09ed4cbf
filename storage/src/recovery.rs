//! Recovery of recordings left unsealed by a crash or a stop of the gateway.
//!
//! A recording is unsealed when `manifest.partial.json` is still present. [`recover`]:
//!
//! 1. verifies it with the gateway key and finds the last good record ([`LastGood`]);
//! 2. refuses (leaving everything untouched) if the damage is not what a crash can leave behind:
//!    a crash only leaves a torn last chain line, unchained bytes at the end of files and files
//!    without records (see [`crate::writer`]); anything else is kept for investigation;
//! 3. truncates every file to its chained length, removes files that no record covers,
//!    truncates `chain.jsonl` after the last good line;
//! 4. rebuilds the manifest from the partial one, keeping only chained periods, segments and
//!    transcripts (segment sizes set to the chained lengths), and seals it as `interrupted` with
//!    the end reason [`RECOVERED_END_REASON`] (seal record + checkpoint).
//!
//! If the crash happened after the seal record was written, only the missing checkpoint is
//! added and the partial manifest removed. A recording is never deleted.
//!
//! Recovery must not run on a recording that is still being written; run [`recover_all`] at
//! gateway start, before sessions are accepted.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::backend::{join, Backend};
use crate::chain::ChainWriter;
use crate::error::{Error, Result};
use crate::keys::GatewayKey;
use crate::layout::{list_recordings, CHAIN, MANIFEST, PARTIAL_MANIFEST};
use crate::manifest::{Manifest, RecordingState};
use crate::verify::{verify, LastGood, ProblemKind};
use crate::writer::RecordingWriter;

/// End reason written into recordings sealed by recovery.
pub const RECOVERED_END_REASON: &str = "gateway stopped unexpectedly; recovered at start";

/// What recovery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryAction {
    /// The recording was already sealed and clean; nothing changed.
    NothingToDo,
    /// The seal had been written; recovery added what was missing (checkpoint, cleanup).
    FinishedSeal,
    /// The recording was truncated to its last good record and sealed as interrupted.
    SealedInterrupted,
}

/// A file shortened by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedFile {
    /// File, relative to the recording folder.
    pub file: String,
    /// Length before.
    pub from: u64,
    /// Length after (the chained length).
    pub to: u64,
}

/// Result of recovering one recording.
#[derive(Debug, Clone)]
pub struct RecoveryOutcome {
    /// The recording folder.
    pub dir: String,
    /// What was done.
    pub action: RecoveryAction,
    /// Data records kept before the seal record.
    pub records: u64,
    /// Files shortened to their chained length.
    pub truncated: Vec<TruncatedFile>,
    /// Files removed because no record covered them.
    pub removed: Vec<String>,
    /// Bytes cut from the end of `chain.jsonl` (torn line).
    pub dropped_chain_bytes: u64,
    /// The final manifest, when the recording ends up sealed.
    pub manifest: Option<Manifest>,
}

/// Recovers the unsealed recording in `dir`, signing with `key`. See the module documentation.
pub fn recover(
    backend: &Arc<dyn Backend>,
    key: &Arc<GatewayKey>,
    dir: &str,
) -> Result<RecoveryOutcome> {
    let dir = dir.trim_end_matches('/');
    let partial_path = join(dir, PARTIAL_MANIFEST);
    let mut outcome = RecoveryOutcome {
        dir: dir.to_owned(),
        action: RecoveryAction::NothingToDo,
        records: 0,
        truncated: Vec::new(),
        removed: Vec::new(),
        dropped_chain_bytes: 0,
        manifest: None,
    };
    let has_partial = backend
        .len(&partial_path)
        .map_err(|e| Error::io("stat", partial_path.clone(), e))?
        .is_some();
    if !has_partial {
        let manifest_path = join(dir, MANIFEST);
        let has_manifest = backend
            .len(&manifest_path)
            .map_err(|e| Error::io("stat", manifest_path.clone(), e))?
            .is_some();
        if has_manifest {
            return Ok(outcome);
        }
        return Err(Error::NotRecoverable {
            dir: dir.to_owned(),
            reason: "neither manifest.partial.json nor manifest.json exists".to_owned(),
        });
    }

    let partial_bytes = backend
        .read(&partial_path)
        .map_err(|e| Error::io("read", partial_path.clone(), e))?;
    let partial = Manifest::from_json(&partial_bytes).map_err(|e| Error::NotRecoverable {
        dir: dir.to_owned(),
        reason: format!("manifest.partial.json is not a valid manifest: {e}"),
    })?;
    if partial.public_key != key.public_key_base64() {
        return Err(Error::NotRecoverable {
            dir: dir.to_owned(),
            reason: format!(
                "the recording was signed with key {} but the gateway key is {}",
                partial.key_id,
                key.key_id()
            ),
        });
    }

    let report = verify(
        backend.as_ref(),
        dir,
        Some(key.verifying_key()),
        &mut |_, _| {},
    );
    if report.sealed {
        backend
            .remove(&partial_path)
            .map_err(|e| Error::io("remove", partial_path.clone(), e))?;
        outcome.action = RecoveryAction::FinishedSeal;
        outcome.records = report.records.saturating_sub(1);
        outcome.manifest = read_manifest(backend.as_ref(), dir).ok();
        return Ok(outcome);
    }
    let last_good = &report.last_good;
    let untrusted = report
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::UntrustedKey | ProblemKind::Io));
    if last_good.chain_len != report.chain_complete_len || untrusted {
        let listed: Vec<String> = report
            .problems
            .iter()
            .take(5)
            .map(|p| p.message.clone())
            .collect();
        return Err(Error::NotRecoverable {
            dir: dir.to_owned(),
            reason: format!(
                "damage that a crash cannot explain (left untouched for investigation): {}",
                listed.join("; ")
            ),
        });
    }

    cut_unchained(backend.as_ref(), dir, last_good, &mut outcome)?;

    let chain = ChainWriter::resume(
        &report.session_id,
        last_good.records,
        last_good.head,
        last_good.checkpointed,
    );
    if last_good.ends_with_seal {
        let manifest = read_manifest(backend.as_ref(), dir)?;
        let mut writer = RecordingWriter::resume(
            Arc::clone(backend),
            Arc::clone(key),
            dir.to_owned(),
            manifest.clone(),
            chain,
            last_good.file_lengths.clone(),
        );
        writer.checkpoint()?;
        backend
            .remove(&partial_path)
            .map_err(|e| Error::io("remove", partial_path.clone(), e))?;
        writer.mark_sealed();
        outcome.action = RecoveryAction::FinishedSeal;
        outcome.records = last_good.records.saturating_sub(1);
        outcome.manifest = Some(manifest);
        return Ok(outcome);
    }

    let manifest = rebuild_manifest(partial, &last_good.file_lengths);
    let ended_at = estimate_end(backend.as_ref(), dir, &manifest);
    let writer = RecordingWriter::resume(
        Arc::clone(backend),
        Arc::clone(key),
        dir.to_owned(),
        manifest,
        chain,
        last_good.file_lengths.clone(),
    );
    let sealed = writer.seal_at(RecordingState::Interrupted, RECOVERED_END_REASON, ended_at)?;
    outcome.action = RecoveryAction::SealedInterrupted;
    outcome.records = last_good.records;
    outcome.manifest = Some(sealed);
    tracing::info!(
        dir,
        records = outcome.records,
        truncated = outcome.truncated.len(),
        removed = outcome.removed.len(),
        "recovered unsealed recording"
    );
    Ok(outcome)
}

/// Truncates files and the chain to the last good record and removes unchained files.
fn cut_unchained(
    backend: &dyn Backend,
    dir: &str,
    last_good: &LastGood,
    outcome: &mut RecoveryOutcome,
) -> Result<()> {
    let files = backend
        .list_files(dir)
        .map_err(|e| Error::io("list", dir.to_owned(), e))?;
    for f in files {
        let path = join(dir, &f);
        if f == PARTIAL_MANIFEST || (f == MANIFEST && last_good.ends_with_seal) {
            continue;
        }
        let Some(actual) = backend
            .len(&path)
            .map_err(|e| Error::io("stat", path.clone(), e))?
        else {
            continue;
        };
        let good = if f == CHAIN {
            Some(last_good.chain_len)
        } else {
            last_good.file_lengths.get(&f).copied()
        };
        match good {
            Some(good) if actual > good => {
                backend
                    .truncate(&path, good)
                    .map_err(|e| Error::io("truncate", path.clone(), e))?;
                if f == CHAIN {
                    outcome.dropped_chain_bytes = actual - good;
                } else {
                    outcome.truncated.push(TruncatedFile {
                        file: f,
                        from: actual,
                        to: good,
                    });
                }
            }
            Some(_) => {}
            None => {
                backend
                    .remove(&path)
                    .map_err(|e| Error::io("remove", path.clone(), e))?;
                outcome.removed.push(f);
            }
        }
    }
    Ok(())
}

fn read_manifest(backend: &dyn Backend, dir: &str) -> Result<Manifest> {
    let path = join(dir, MANIFEST);
    let bytes = backend
        .read(&path)
        .map_err(|e| Error::io("read", path.clone(), e))?;
    Manifest::from_json(&bytes).map_err(|e| Error::json(path, e))
}

/// Keeps only what the chain covers, with segment sizes set to their chained lengths.
fn rebuild_manifest(mut m: Manifest, lengths: &BTreeMap<String, u64>) -> Manifest {
    m.state = RecordingState::Recording;
    m.periods.retain(|p| lengths.contains_key(&p.init));
    for p in &mut m.periods {
        p.segments.retain(|s| lengths.contains_key(&s.file));
        for s in &mut p.segments {
            s.bytes = lengths.get(&s.file).copied().unwrap_or(0);
        }
    }
    m.events.retain(|e| lengths.contains_key(e));
    m
}

/// Estimates when the session ended: the latest moment the chained data shows (end of the last
/// listed segment, start of the last period, last transcript event), else the start.
fn estimate_end(backend: &dyn Backend, dir: &str, m: &Manifest) -> OffsetDateTime {
    let mut last_ms = 0u64;
    for p in &m.periods {
        last_ms = last_ms.max(p.start_ms);
        for s in &p.segments {
            last_ms = last_ms.max(s.start_ms.saturating_add(s.duration_ms));
        }
    }
    for events in &m.events {
        let Ok(bytes) = backend.read(&join(dir, events)) else {
            continue;
        };
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) {
                if let Some(t) = value.get("t").and_then(serde_json::Value::as_u64) {
                    last_ms = last_ms.max(t);
                }
            }
        }
    }
    let offset = Duration::milliseconds(i64::try_from(last_ms).unwrap_or(i64::MAX));
    m.started_at.checked_add(offset).unwrap_or(m.started_at)
}

/// Recovers every unsealed recording below the storage root (those with a
/// `manifest.partial.json`). Returns one result per recording attempted.
pub fn recover_all(
    backend: &Arc<dyn Backend>,
    key: &Arc<GatewayKey>,
) -> Result<Vec<(String, Result<RecoveryOutcome>)>> {
    let dirs = list_recordings(backend.as_ref()).map_err(|e| Error::io("list", "", e))?;
    let mut out = Vec::new();
    for dir in dirs {
        let partial = join(&dir, PARTIAL_MANIFEST);
        match backend.len(&partial) {
            Ok(None) => continue,
            Ok(Some(_)) => {
                let result = recover(backend, key, &dir);
                if let Err(e) = &result {
                    tracing::error!(dir = %dir, error = %e, "recording could not be recovered");
                }
                out.push((dir, result));
            }
            Err(e) => out.push((dir.clone(), Err(Error::io("stat", partial, e)))),
        }
    }
    Ok(out)
}
