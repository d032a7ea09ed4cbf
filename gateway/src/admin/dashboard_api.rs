//! The dashboards' API: `GET /api/dashboard` (the overview, for principals holding
//! `view_recordings` somewhere) and `GET /api/oncall` (live sessions with thumbnails and the
//! recent blocked or terminated sessions, for principals holding `watch_live` somewhere). The
//! figures are computed by [`super::dashboard`]; this module reads what they are computed from.

use super::auth::Principal;
use super::dashboard::{
    overview as compute_overview, recent, replays, Coverage, EndedSession, Enforcement, Period,
    DEFAULT_DAYS, MAX_DAYS,
};
use super::recordings::allowed_targets;
use super::respond::{error, json, percent_encode, query_param, Resp};
use super::AdminState;
use hyper::StatusCode;
use psmgate_policy::rbac::Permission;
use psmgate_storage::audit::{AuditEntry, AuditPage, SharedAuditLog};
use psmgate_storage::error::Error as StorageError;
use psmgate_storage::index::{ListFilter, SessionRow};
use psmgate_storage::manifest::RecordingState;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The most index rows one overview reads (the figures say when the period held more).
const MAX_ROWS: u32 = 100_000;
/// The most recent audit entries one request reads.
const MAX_AUDIT_SCAN: usize = 200_000;
/// The audit entries read first, from the end of the log; while the oldest of them is still in
/// the period, four times as many are read, up to [`MAX_AUDIT_SCAN`].
const FIRST_AUDIT_SCAN: usize = 1000;
/// How far back the on-call view lists blocked or terminated sessions.
const RECENT: time::Duration = time::Duration::hours(24);
/// How far back before [`RECENT`] the on-call view looks for sessions that ended within it.
const RECENT_STARTS: time::Duration = time::Duration::days(7);
/// The most recent items the on-call view lists.
const RECENT_LIMIT: usize = 50;
/// The most index rows the on-call view reads.
const RECENT_ROWS: u32 = 2000;
/// End reasons of sealed recordings kept in memory (a sealed manifest does not change).
const MAX_CACHED_REASONS: usize = 4096;

/// RFC 3339, or empty for a time that cannot be written so.
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn internal(what: &str, e: impl std::fmt::Display) -> Resp {
    tracing::error!(error = %e, "{what} failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("{what} failed"),
    )
}

/// The gateway's coverage counters since it started.
fn coverage() -> Coverage {
    let (admitted, recorded) = crate::metrics::session_counts();
    Coverage { admitted, recorded }
}

/// Whether audit entry `e` was written at or after `since` (`None`: its time cannot be read).
fn written_since(e: &AuditEntry, since: OffsetDateTime) -> Option<bool> {
    OffsetDateTime::parse(&e.time, &Rfc3339)
        .ok()
        .map(|t| t >= since)
}

/// The last entries of the audit log back to the first written before `since` (entries are
/// written in time order), at most [`MAX_AUDIT_SCAN`]: read from the end of the log,
/// [`FIRST_AUDIT_SCAN`] first, then more while the oldest read is still in the period.
fn audit_since(
    audit: &SharedAuditLog,
    since: OffsetDateTime,
) -> psmgate_storage::error::Result<AuditPage> {
    let mut limit = FIRST_AUDIT_SCAN.min(MAX_AUDIT_SCAN);
    loop {
        let page = audit.read_tail(limit)?;
        let whole_log = page.entries.len() as u64 >= page.total;
        let before = page
            .entries
            .first()
            .is_some_and(|e| written_since(e, since) == Some(false));
        if whole_log || before || limit >= MAX_AUDIT_SCAN {
            return Ok(page);
        }
        limit = limit.saturating_mul(4).min(MAX_AUDIT_SCAN);
    }
}

/// The enforcement events of the audit log since `since` (of its last [`MAX_AUDIT_SCAN`]
/// entries), and whether older entries of the period were left unread.
fn enforcements_since(
    state: &AdminState,
    since: OffsetDateTime,
) -> psmgate_storage::error::Result<(Vec<Enforcement>, bool)> {
    let audit = &state.store.audit;
    let page = match audit_since(audit, since) {
        Ok(page) => page,
        // Entries out of order at the end of the log (`GET /api/audit` reports the log's
        // integrity): the last entries by line, as before the log could be read from its end.
        Err(StorageError::Audit(why)) => {
            tracing::warn!(%why, "the end of the audit log is out of order; reading it whole");
            let offset = audit.entries().saturating_sub(MAX_AUDIT_SCAN as u64);
            audit.read_page(offset, usize::MAX)?
        }
        Err(e) => return Err(e),
    };
    let truncated = (page.entries.len() as u64) < page.total
        && page
            .entries
            .first()
            .is_some_and(|e| written_since(e, since) == Some(true));
    let events = page
        .entries
        .iter()
        .filter_map(Enforcement::from_audit)
        .filter(|e| e.time >= since)
        .collect();
    Ok((events, truncated))
}

/// Whether `who` holds `perm` on `target` (`listed`: the targets of the policy on which it does).
fn holds(
    who: &Principal,
    config: &psmgate_policy::Config,
    perm: Permission,
    listed: &BTreeSet<String>,
    target: &str,
) -> bool {
    listed.contains(target) || who.permits(config, perm, Some(target))
}

/// `GET /api/dashboard[?days=N]`: the overview of the last `days` days (UTC, today included;
/// default [`DEFAULT_DAYS`], at most [`MAX_DAYS`]), over the targets on which the caller holds
/// `view_recordings`. Audit events that name no target count only for holders of `view_audit`.
pub fn overview(state: &AdminState, who: &Principal, query: &str) -> Resp {
    let days = match query_param(query, "days")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        None => DEFAULT_DAYS,
        Some(v) => match v.parse::<u32>() {
            Ok(d) if (1..=MAX_DAYS).contains(&d) => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("days: expected a whole number from 1 to {MAX_DAYS}"),
                )
            }
        },
    };
    let config = state.config();
    let perm = Permission::ViewRecordings;
    let listed: BTreeSet<String> = who.targets_with(&config, perm).into_iter().collect();
    let may = |t: &str| holds(who, &config, perm, &listed, t);
    let untargeted = who.permits(&config, Permission::ViewAudit, None);
    let now = OffsetDateTime::now_utc();
    let period = Period::ending(now, days);
    // Only the caller's targets, before the limit: the limit counts sessions it may see.
    let filter = ListFilter {
        since: Some(period.since()),
        limit: Some(MAX_ROWS),
        allowed_targets: allowed_targets(who, &config, perm),
        ..Default::default()
    };
    let mut rows = match state.store.index.list(&filter) {
        Ok(r) => r,
        Err(e) => return internal("reading the session index", e),
    };
    let rows_truncated = rows.len() >= MAX_ROWS as usize;
    rows.retain(|r| may(&r.target));
    let (mut events, audit_truncated) = match enforcements_since(state, period.since()) {
        Ok(r) => r,
        Err(e) => return internal("reading the audit log", e),
    };
    events.retain(|e| e.visible(&may, untargeted));
    // Storage now: the caller's recordings from before the period count too.
    let older = ListFilter {
        until: Some(period.since()),
        allowed_targets: allowed_targets(who, &config, perm),
        ..Default::default()
    };
    let before = match state.store.index.stored_bytes(&older) {
        Ok(b) => b,
        Err(e) => return internal("reading the session index", e),
    };
    let o = compute_overview(&period, &rows, &events, coverage()).with_stored_before(before);
    let live = state
        .store
        .live
        .list()
        .iter()
        .filter(|s| may(&s.target))
        .count();
    let replay = replays().stats();
    let mut v = serde_json::to_value(&o).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "period".into(),
            json!({ "days": period.days, "since": rfc3339(period.since()), "until": rfc3339(now) }),
        );
        obj.insert("live_sessions".into(), live.into());
        obj.insert(
            "time_to_replay".into(),
            serde_json::to_value(replay).unwrap_or(Value::Null),
        );
        obj.insert(
            "truncated".into(),
            json!({ "sessions": rows_truncated, "audit": audit_truncated }),
        );
    }
    json(&v)
}

/// End reasons of sealed recordings read so far, by session id.
static END_REASONS: Mutex<BTreeMap<String, Option<String>>> = Mutex::new(BTreeMap::new());

/// The end reason in `row`'s sealed manifest (`None`: none, or the manifest cannot be read).
fn end_reason(state: &AdminState, row: &SessionRow) -> Option<String> {
    let mut cache = END_REASONS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cache.get(&row.id) {
        return r.clone();
    }
    #[derive(serde::Deserialize)]
    struct Ending {
        end_reason: Option<String>,
    }
    let read = state
        .store
        .backend
        .read(&format!("{}/manifest.json", row.dir));
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(session = %row.id, error = %e, "no sealed manifest to read the end reason from");
            return None;
        }
    };
    let reason = serde_json::from_slice::<Ending>(&bytes)
        .ok()
        .and_then(|m| m.end_reason);
    if cache.len() >= MAX_CACHED_REASONS {
        cache.clear();
    }
    cache.insert(row.id.clone(), reason.clone());
    reason
}

/// `GET /api/oncall`: the running sessions the caller may watch (with their thumbnail and player
/// URLs), and the sessions blocked or terminated in the last 24 hours on those targets, newest
/// first, at most 50 (audit events that name no target only for holders of `view_audit`).
pub fn oncall(state: &AdminState, who: &Principal) -> Resp {
    let config = state.config();
    let watch_listed: BTreeSet<String> = who
        .targets_with(&config, Permission::WatchLive)
        .into_iter()
        .collect();
    let may_watch = |t: &str| holds(who, &config, Permission::WatchLive, &watch_listed, t);
    let view_listed: BTreeSet<String> = who
        .targets_with(&config, Permission::ViewRecordings)
        .into_iter()
        .collect();
    let may_view = |t: &str| holds(who, &config, Permission::ViewRecordings, &view_listed, t);
    let untargeted = who.permits(&config, Permission::ViewAudit, None);

    let live: Vec<Value> = state
        .store
        .live
        .list()
        .into_iter()
        .filter(|s| may_watch(&s.target))
        .map(|s| {
            let id = percent_encode(&s.session_id);
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "can_terminate".into(),
                    who.permits(&config, Permission::Terminate, Some(&s.target))
                        .into(),
                );
                o.insert("player".into(), format!("/player/?id={id}").into());
                o.insert(
                    "thumbnail".into(),
                    format!("/api/sessions/live/{id}/thumbnail").into(),
                );
            }
            v
        })
        .collect();

    let now = OffsetDateTime::now_utc();
    let since = now - RECENT;
    let (mut events, _) = match enforcements_since(state, since) {
        Ok(r) => r,
        Err(e) => return internal("reading the audit log", e),
    };
    events.retain(|e| e.visible(&may_watch, untargeted));
    let filter = ListFilter {
        since: Some(since - RECENT_STARTS),
        limit: Some(RECENT_ROWS),
        allowed_targets: allowed_targets(who, &config, Permission::WatchLive),
        ..Default::default()
    };
    let rows = match state.store.index.list(&filter) {
        Ok(r) => r,
        Err(e) => return internal("reading the session index", e),
    };
    let ended: Vec<EndedSession> = rows
        .iter()
        .filter(|r| r.state != RecordingState::Recording && may_watch(&r.target))
        .filter(|r| r.ended_at.unwrap_or(r.started_at) >= since)
        .map(|r| EndedSession {
            id: r.id.clone(),
            user: r.user.clone(),
            target: r.target.clone(),
            ended_at: r.ended_at.unwrap_or(r.started_at),
            state: r.state,
            end_reason: end_reason(state, r),
        })
        .collect();
    let items: Vec<Value> = recent(&events, &ended, since, RECENT_LIMIT)
        .into_iter()
        .map(|item| {
            let player = match (&item.session_id, &item.target) {
                (Some(id), Some(t)) if may_view(t) => {
                    Some(format!("/player/?id={}", percent_encode(id)))
                }
                _ => None,
            };
            let mut v = serde_json::to_value(&item).unwrap_or_default();
            if let (Some(o), Some(p)) = (v.as_object_mut(), player) {
                o.insert("player".into(), p.into());
            }
            v
        })
        .collect();
    json(&json!({
        "live": live,
        "recent": items,
        "since": rfc3339(since),
    }))
}
