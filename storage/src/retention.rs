//! Retention: deleting recordings whose retention period has passed, and legal holds.
//!
//! Retention acts on the index: a recording is a candidate when its row is not `recording`
//! (live or awaiting recovery), the policy gives it a retention in days, and that many days have
//! passed since it ended (or started, if it has no end). A recording under legal hold is never
//! deleted. Every deletion is written to the audit log *before* the folder is removed, so that
//! no deletion can go unaudited; a failed removal is audited too.

use time::{Duration, OffsetDateTime};

use crate::audit::{
    AuditLog, ACTION_DELETE, ACTION_DELETE_FAILED, ACTION_LEGAL_HOLD_CLEARED, ACTION_LEGAL_HOLD_SET,
};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::index::{Index, ListFilter, SessionRow};
use crate::layout::{is_recording_dir, session_id_of};
use crate::manifest::RecordingState;

/// Actor name written into the audit log for automatic deletions.
pub const RETENTION_ACTOR: &str = "retention";

/// What one retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Session ids deleted.
    pub deleted: Vec<String>,
    /// Session ids past their retention but kept because of a legal hold.
    pub held: Vec<String>,
    /// Session ids that could not be deleted, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Whether `row` is past its retention of `days` at `now`.
pub fn is_expired(row: &SessionRow, days: u32, now: OffsetDateTime) -> bool {
    let reference = row.ended_at.unwrap_or(row.started_at);
    match reference.checked_add(Duration::days(i64::from(days))) {
        Some(expires) => now >= expires,
        None => false,
    }
}

/// Deletes every indexed recording past its retention (see the module documentation).
///
/// `policy` gives the retention in days of a row, or `None` to keep it forever. Stops with an
/// error if the audit log cannot be written (nothing is deleted unaudited); other failures are
/// listed in the report and the run continues.
pub fn apply_retention(
    backend: &dyn Backend,
    index: &dyn Index,
    now: OffsetDateTime,
    policy: &dyn Fn(&SessionRow) -> Option<u32>,
    audit: &mut AuditLog,
) -> Result<RetentionReport> {
    let mut report = RetentionReport::default();
    let rows = index.list(&ListFilter::default())?;
    for row in rows {
        if row.state == RecordingState::Recording {
            continue;
        }
        let Some(days) = policy(&row) else {
            continue;
        };
        if !is_expired(&row, days, now) {
            continue;
        }
        if row.legal_hold {
            report.held.push(row.id);
            continue;
        }
        if !is_recording_dir(&row.dir) || session_id_of(&row.dir) != row.id {
            report.failed.push((
                row.id.clone(),
                format!(
                    "index row names folder {:?}, which is not this recording's folder",
                    row.dir
                ),
            ));
            continue;
        }
        let detail = format!(
            "retention of {days} days expired; {} session of user {:?} to target {:?} started {}",
            row.protocol, row.user, row.target, row.started_at
        );
        audit.append(
            now,
            ACTION_DELETE,
            &row.id,
            &row.dir,
            RETENTION_ACTOR,
            &detail,
        )?;
        if let Err(e) = backend.remove_dir_all(&row.dir) {
            let reason = format!("removing {} failed: {e}", row.dir);
            audit.append(
                now,
                ACTION_DELETE_FAILED,
                &row.id,
                &row.dir,
                RETENTION_ACTOR,
                &reason,
            )?;
            report.failed.push((row.id, reason));
            continue;
        }
        if let Err(e) = index.remove(&row.id) {
            report.failed.push((
                row.id.clone(),
                format!("removing the index row failed: {e}"),
            ));
        }
        tracing::info!(session = %row.id, dir = %row.dir, days, "recording deleted by retention");
        report.deleted.push(row.id);
    }
    Ok(report)
}

/// Sets or clears the legal hold of session `id`, audited as done by `actor`.
pub fn set_legal_hold(
    index: &dyn Index,
    audit: &mut AuditLog,
    id: &str,
    hold: bool,
    actor: &str,
) -> Result<()> {
    let row = index
        .get(id)?
        .ok_or_else(|| Error::NotFound(format!("session {id} is not in the index")))?;
    let (action, detail) = if hold {
        (ACTION_LEGAL_HOLD_SET, "legal hold set")
    } else {
        (ACTION_LEGAL_HOLD_CLEARED, "legal hold cleared")
    };
    audit.append(
        OffsetDateTime::now_utc(),
        action,
        id,
        &row.dir,
        actor,
        detail,
    )?;
    if !index.set_legal_hold(id, hold)? {
        return Err(Error::NotFound(format!(
            "session {id} disappeared from the index"
        )));
    }
    Ok(())
}
