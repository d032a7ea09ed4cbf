//! The storage audit log (`audit.jsonl` at the storage root): every recording deletion and every
//! legal-hold change, hash-chained like the recording chain so that removing, altering or
//! reordering entries is detectable.
//!
//! Each line is one JSON object:
//!
//! ```json
//! {"seq":1,"time":"2026-11-22T10:00:00Z","action":"delete","session_id":"…","dir":"2026/11/22/…",
//!  "actor":"retention","detail":"…","prev":"<hex>","head":"<hex>"}
//! ```
//!
//! `prev` of entry 1 is `SHA-256("psmgate-audit-v1\0")`; each `head` is
//! `SHA-256(prev_raw32 ‖ seq_u64be ‖ field ‖ …)` over the fields `time`, `action`, `session_id`,
//! `dir`, `actor`, `detail` in that order, each as `len_u32be ‖ utf8`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::backend::Backend;
use crate::chain::Digest;
use crate::error::{Error, Result};

/// Path of the audit log below the storage root.
pub const AUDIT_LOG: &str = "audit.jsonl";

/// Domain separator of the audit chain.
pub const AUDIT_DOMAIN: &[u8] = b"psmgate-audit-v1\0";

/// Audit action: a recording was deleted (written before the deletion happens).
pub const ACTION_DELETE: &str = "delete";
/// Audit action: a deletion announced by an earlier `delete` entry failed.
pub const ACTION_DELETE_FAILED: &str = "delete_failed";
/// Audit action: legal hold set.
pub const ACTION_LEGAL_HOLD_SET: &str = "legal_hold_set";
/// Audit action: legal hold cleared.
pub const ACTION_LEGAL_HOLD_CLEARED: &str = "legal_hold_cleared";

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position, from 1.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// What happened (`delete`, `delete_failed`, `legal_hold_set`, `legal_hold_cleared`).
    pub action: String,
    /// Session concerned.
    pub session_id: String,
    /// Its recording folder.
    pub dir: String,
    /// Who or what did it (`retention`, an admin user name …).
    pub actor: String,
    /// Free-text detail (why).
    pub detail: String,
    /// Head of the previous entry.
    pub prev: Digest,
    /// Head of this entry.
    pub head: Digest,
}

impl AuditEntry {
    /// Recomputes the head from the other fields.
    pub fn computed_head(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(self.prev.0);
        h.update(self.seq.to_be_bytes());
        for field in [
            &self.time,
            &self.action,
            &self.session_id,
            &self.dir,
            &self.actor,
            &self.detail,
        ] {
            // Fields longer than 4 GiB cannot be produced by `append` (see there).
            h.update(u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(field.as_bytes());
        }
        Digest(h.finalize().into())
    }
}

/// The genesis `prev` of the audit chain.
pub fn audit_genesis() -> Digest {
    Digest::of(AUDIT_DOMAIN)
}

/// An open audit log, ready to append.
#[derive(Debug)]
pub struct AuditLog {
    backend: Arc<dyn Backend>,
    seq: u64,
    head: Digest,
    len: u64,
    poisoned: bool,
}

/// Summary of a verified audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Number of entries.
    pub entries: u64,
    /// Head of the last entry (the genesis if none).
    pub head: Digest,
    /// Byte length of the complete lines.
    pub complete_len: u64,
    /// Bytes of an incomplete last line (interrupted write), if any.
    pub torn_bytes: u64,
}

/// Verifies the whole audit log. Fails with a precise message at the first bad entry.
/// An incomplete last line is reported in the summary, not as an error.
pub fn verify_audit(backend: &dyn Backend) -> Result<AuditSummary> {
    let bytes = match backend.read(AUDIT_LOG) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", AUDIT_LOG, e)),
    };
    let mut head = audit_genesis();
    let mut seq = 0u64;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = &bytes[pos..pos + nl];
        let n = seq + 1;
        let entry: AuditEntry = serde_json::from_slice(line)
            .map_err(|e| Error::Audit(format!("{AUDIT_LOG} line {n}: not a valid entry ({e})")))?;
        if entry.seq != n {
            return Err(Error::Audit(format!(
                "{AUDIT_LOG} line {n}: entry has seq {} (entry dropped, inserted or reordered)",
                entry.seq
            )));
        }
        if entry.prev != head {
            return Err(Error::Audit(format!(
                "{AUDIT_LOG} entry {n}: prev does not match the previous head (entry dropped or \
                 reordered)"
            )));
        }
        if entry.computed_head() != entry.head {
            return Err(Error::Audit(format!(
                "{AUDIT_LOG} entry {n}: head does not recompute (entry altered)"
            )));
        }
        head = entry.head;
        seq = n;
        pos += nl + 1;
    }
    Ok(AuditSummary {
        entries: seq,
        head,
        complete_len: pos as u64,
        torn_bytes: (bytes.len() - pos) as u64,
    })
}

impl AuditLog {
    /// Opens the audit log of `backend`, verifying it completely. An incomplete last line left
    /// by an interrupted write is cut off; any other damage is an error (the log must be
    /// investigated before more entries are added).
    pub fn open(backend: Arc<dyn Backend>) -> Result<Self> {
        let summary = verify_audit(backend.as_ref())?;
        if summary.torn_bytes > 0 {
            tracing::warn!(
                bytes = summary.torn_bytes,
                "audit log ends with an incomplete line (interrupted write); cutting it off"
            );
            backend
                .truncate(AUDIT_LOG, summary.complete_len)
                .map_err(|e| Error::io("truncate", AUDIT_LOG, e))?;
        }
        Ok(AuditLog {
            backend,
            seq: summary.entries,
            head: summary.head,
            len: summary.complete_len,
            poisoned: false,
        })
    }

    /// Number of entries.
    pub fn entries(&self) -> u64 {
        self.seq
    }

    /// Head of the last entry.
    pub fn head(&self) -> Digest {
        self.head
    }

    /// Appends an entry durably (append + `fsync`) and returns it.
    pub fn append(
        &mut self,
        now: OffsetDateTime,
        action: &str,
        session_id: &str,
        dir: &str,
        actor: &str,
        detail: &str,
    ) -> Result<AuditEntry> {
        if self.poisoned {
            return Err(Error::Audit(
                "an earlier write failed; reopen the audit log".to_owned(),
            ));
        }
        let fields = [action, session_id, dir, actor, detail];
        if fields.iter().any(|f| u32::try_from(f.len()).is_err()) {
            return Err(Error::InvalidArgument(
                "audit field longer than 4 GiB".to_owned(),
            ));
        }
        let time = now
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| Error::Audit(format!("cannot format time: {e}")))?;
        let mut entry = AuditEntry {
            seq: self.seq + 1,
            time,
            action: action.to_owned(),
            session_id: session_id.to_owned(),
            dir: dir.to_owned(),
            actor: actor.to_owned(),
            detail: detail.to_owned(),
            prev: self.head,
            head: Digest::default(),
        };
        entry.head = entry.computed_head();
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::json(AUDIT_LOG, e))?;
        line.push(b'\n');
        let written = self.backend.append(AUDIT_LOG, &line).and_then(|offset| {
            if offset != self.len {
                Err(std::io::Error::other(format!(
                    "audit log was {offset} bytes long, expected {} (modified concurrently)",
                    self.len
                )))
            } else {
                self.backend.sync(AUDIT_LOG)
            }
        });
        if let Err(e) = written {
            self.poisoned = true;
            return Err(Error::io("append", AUDIT_LOG, e));
        }
        self.seq = entry.seq;
        self.head = entry.head;
        self.len += line.len() as u64;
        Ok(entry)
    }
}
