//! The figures of the dashboards, computed from index rows and audit entries (no I/O here):
//! the overview (`GET /api/dashboard`: coverage, integrity, sessions and stored bytes per day,
//! enforcement events per day, top users and targets, time to replay) and the on-call view's
//! recent blocked or terminated sessions (`GET /api/oncall`).
//!
//! Enforcement events come from the audit log:
//!
//! | kind | audit actions |
//! |---|---|
//! | `terminated` | `session_terminated` (an operator ended a live session) |
//! | `policy` | `policy_enforced` (a session limit ended a session), `web_session_terminated` (silent in-page recorder) |
//! | `denied` | `vnc_denied`, `rdp_denied`, … (`*_denied` but `access_denied`): policy refused a connection |
//! | `auth_failed` | `vnc_auth_failed`, `rdp_auth_failed`, `web_auth_failed`: credentials refused |
//!
//! A recording whose end reason says it was terminated (by an operator or by policy), or which
//! failed (the session was closed because recording failed: `recording_failed`), is a recent
//! ended session as well; one item per session, the audit entry's when both name it.
//!
//! Time to replay is measured by [`ReplayTimer`]: from a principal's request of a recording's
//! manifest to its first request of a media segment (`*.m4s`) of that recording — what the
//! gateway sees of a player opening a recording until it can show a frame.

use psmgate_storage::audit::AuditEntry;
use psmgate_storage::index::{IntegrityStatus, SessionRow};
use psmgate_storage::manifest::RecordingState;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

/// Days the overview covers unless asked otherwise.
pub const DEFAULT_DAYS: u32 = 30;
/// The longest period the overview covers, in days.
pub const MAX_DAYS: u32 = 90;
/// Entries of the top-users and top-targets lists.
pub const TOP: usize = 10;

/// The calendar days (UTC) an overview covers: `days` days ending with today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The first day.
    pub first: Date,
    /// Number of days, from 1 to [`MAX_DAYS`].
    pub days: u32,
}

impl Period {
    /// The `days` days (clamped to 1..=[`MAX_DAYS`]) ending with the day of `now` (UTC).
    pub fn ending(now: OffsetDateTime, days: u32) -> Self {
        let days = days.clamp(1, MAX_DAYS);
        let today = now.to_offset(time::UtcOffset::UTC).date();
        let first = today
            .checked_sub(time::Duration::days(i64::from(days) - 1))
            .unwrap_or(Date::MIN);
        Period { first, days }
    }

    /// The start of the first day (UTC midnight).
    pub fn since(&self) -> OffsetDateTime {
        self.first.with_time(Time::MIDNIGHT).assume_utc()
    }

    /// The position of `t`'s day (UTC) in the period, if it falls in it.
    pub fn day_index(&self, t: OffsetDateTime) -> Option<usize> {
        let day = t.to_offset(time::UtcOffset::UTC).date();
        let i = (day - self.first).whole_days();
        (0..i64::from(self.days))
            .contains(&i)
            .then(|| usize::try_from(i).ok())
            .flatten()
    }

    /// The days of the period as `YYYY-MM-DD`, in order.
    pub fn day_names(&self) -> Vec<String> {
        (0..self.days)
            .map(|i| {
                day_name(
                    self.first
                        .checked_add(time::Duration::days(i64::from(i)))
                        .unwrap_or(Date::MAX),
                )
            })
            .collect()
    }
}

/// `YYYY-MM-DD`.
fn day_name(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// RFC 3339, or empty for a time that cannot be written so.
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// What an enforcement event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementKind {
    /// An operator terminated a live session.
    Terminated,
    /// A policy limit (or a silent in-page recorder) ended a session.
    Policy,
    /// Policy refused a connection.
    Denied,
    /// A client's credentials were refused.
    AuthFailed,
    /// The session was closed because its recording failed (from the recording, not the audit
    /// log).
    RecordingFailed,
}

impl EnforcementKind {
    /// The kinds counted per day in the overview (those the audit log records), in order.
    pub const AUDITED: [EnforcementKind; 4] = [
        EnforcementKind::Terminated,
        EnforcementKind::Policy,
        EnforcementKind::Denied,
        EnforcementKind::AuthFailed,
    ];

    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementKind::Terminated => "terminated",
            EnforcementKind::Policy => "policy",
            EnforcementKind::Denied => "denied",
            EnforcementKind::AuthFailed => "auth_failed",
            EnforcementKind::RecordingFailed => "recording_failed",
        }
    }

    /// The kind of an audit action, if it is an enforcement.
    pub fn of_action(action: &str) -> Option<Self> {
        Some(match action {
            psmgate_storage::audit::ACTION_SESSION_TERMINATED => EnforcementKind::Terminated,
            crate::supervisor::ACTION_POLICY_ENFORCED | "web_session_terminated" => {
                EnforcementKind::Policy
            }
            psmgate_storage::audit::ACTION_ACCESS_DENIED => return None,
            a if a.ends_with("_auth_failed") => EnforcementKind::AuthFailed,
            a if a.ends_with("_denied") => EnforcementKind::Denied,
            _ => return None,
        })
    }
}

/// The value of `name=` in an audit detail of `key=value` words (up to the next space).
fn field<'a>(detail: &'a str, name: &str) -> Option<&'a str> {
    let at = word_start(detail, name)?;
    let v = &detail[at..];
    let v = v.split(' ').next().unwrap_or("");
    (!v.is_empty()).then_some(v)
}

/// Where the value of the word `name=` starts in `detail`.
fn word_start(detail: &str, name: &str) -> Option<usize> {
    let key = format!("{name}=");
    let mut from = 0;
    while let Some(i) = detail[from..].find(&key) {
        let at = from + i;
        if at == 0 || detail.as_bytes()[at - 1] == b' ' {
            return Some(at + key.len());
        }
        from = at + key.len();
    }
    None
}

/// An enforcement event of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforcement {
    /// When.
    pub time: OffsetDateTime,
    /// What kind.
    pub kind: EnforcementKind,
    /// The audit action.
    pub action: String,
    /// Who did it (an operator, `policy`, a gateway part).
    pub actor: String,
    /// The session's user, when the entry names one.
    pub user: Option<String>,
    /// The target, when the entry names one.
    pub target: Option<String>,
    /// The session, when the entry names one.
    pub session_id: Option<String>,
    /// The policy rule, when the entry names one.
    pub rule: Option<String>,
    /// Why, in the entry's words.
    pub reason: String,
}

impl Enforcement {
    /// The enforcement event `e` records, if it records one (with a readable time).
    pub fn from_audit(e: &AuditEntry) -> Option<Self> {
        let kind = EnforcementKind::of_action(&e.action)?;
        let time = OffsetDateTime::parse(&e.time, &Rfc3339).ok()?;
        let detail = e.detail.as_str();
        let own = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        let mut user = field(detail, "user").and_then(own);
        let mut session_id = own(&e.session_id).or_else(|| field(detail, "session").and_then(own));
        let mut reason = word_start(detail, "reason")
            .map(|at| detail[at..].to_owned())
            .unwrap_or_else(|| detail.to_owned());
        if kind == EnforcementKind::Terminated {
            // "session <id> of <user>: <reason>"
            if let Some((sid, rest)) = detail
                .strip_prefix("session ")
                .and_then(|r| r.split_once(" of "))
            {
                if let Some((u, why)) = rest.split_once(": ") {
                    session_id = session_id.or_else(|| own(sid));
                    user = user.or_else(|| own(u));
                    reason = why.to_owned();
                }
            }
        }
        Some(Enforcement {
            time,
            kind,
            action: e.action.clone(),
            actor: e.actor.clone(),
            user,
            target: own(&e.target).or_else(|| field(detail, "target").and_then(own)),
            session_id,
            rule: field(detail, "rule").and_then(own),
            reason,
        })
    }

    /// Whether a caller may see this event: its target is one `allowed` says yes to; events
    /// naming no target only when `untargeted`.
    pub fn visible(&self, allowed: &dyn Fn(&str) -> bool, untargeted: bool) -> bool {
        match &self.target {
            Some(t) => allowed(t),
            None => untargeted,
        }
    }
}

/// Sessions the gateway let through, and of those the ones whose recording opened, since it
/// started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Admitted by policy.
    pub admitted: u64,
    /// Recorded.
    pub recorded: u64,
}

/// `part / whole`, or `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The coverage figures of the overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageFigures {
    /// Sessions admitted since the gateway started (all targets).
    pub admitted: u64,
    /// Of those, recorded.
    pub recorded: u64,
    /// `recorded / admitted`; `null` when none was admitted.
    pub ratio: Option<f64>,
    /// Recordings of the period in the index, by state (`recording`, `completed`, …).
    pub sessions_by_state: BTreeMap<&'static str, u64>,
}

/// The integrity figures of the overview (recordings of the period, by their last check).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrityFigures {
    /// Verified without problems.
    pub verified: u64,
    /// Verification found problems.
    pub failed: u64,
    /// Not verified yet (recordings in progress among them).
    pub unverified: u64,
    /// `verified / (verified + failed)`; `null` when none was checked.
    pub ratio: Option<f64>,
}

/// Sessions that started on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Sessions.
    pub sessions: u64,
}

/// Bytes stored by the sessions that started on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BytesDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Bytes of that day's sessions.
    pub bytes: u64,
    /// Bytes of the period's sessions up to and including that day.
    pub cumulative: u64,
}

/// Enforcement events of one day, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Events by kind ([`EnforcementKind::AUDITED`], every kind present).
    pub counts: BTreeMap<&'static str, u64>,
    /// All events of the day.
    pub total: u64,
}

/// One entry of a top list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ranked {
    /// User or target name.
    pub name: String,
    /// Sessions.
    pub sessions: u64,
    /// Their total duration (sessions still running count 0).
    pub duration_ms: u64,
}

/// The overview's figures over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// Coverage.
    pub coverage: CoverageFigures,
    /// Integrity.
    pub integrity: IntegrityFigures,
    /// Sessions per day, every day of the period.
    pub sessions_per_day: Vec<SessionsDay>,
    /// Stored bytes per day, every day of the period.
    pub bytes_per_day: Vec<BytesDay>,
    /// Bytes of the period's recordings.
    pub bytes_total: u64,
    /// Bytes of every recording the caller may see, the period's and older (storage now).
    pub bytes_stored: u64,
    /// Sessions of the period.
    pub sessions_total: u64,
    /// Enforcement events per day, every day of the period.
    pub enforcement_per_day: Vec<EnforcementDay>,
    /// Enforcement events of the period by kind.
    pub enforcement_totals: BTreeMap<&'static str, u64>,
    /// Users with the most sessions (then the longest), at most [`TOP`].
    pub top_users: Vec<Ranked>,
    /// Targets with the most sessions (then the longest), at most [`TOP`].
    pub top_targets: Vec<Ranked>,
}

/// The [`TOP`] names with the most sessions, then the longest total duration, then by name.
fn top(counts: BTreeMap<&str, (u64, u64)>) -> Vec<Ranked> {
    let mut v: Vec<Ranked> = counts
        .into_iter()
        .map(|(name, (sessions, duration_ms))| Ranked {
            name: name.to_owned(),
            sessions,
            duration_ms,
        })
        .collect();
    v.sort_by(|a, b| {
        (b.sessions, b.duration_ms)
            .cmp(&(a.sessions, a.duration_ms))
            .then_with(|| a.name.cmp(&b.name))
    });
    v.truncate(TOP);
    v
}

impl Overview {
    /// Counts `before` — the bytes of the caller's recordings from before the period — into
    /// the storage figures: the cumulative curve starts from it, and `bytes_stored` is what the
    /// recordings occupy now.
    pub fn with_stored_before(mut self, before: u64) -> Self {
        for d in &mut self.bytes_per_day {
            d.cumulative = d.cumulative.saturating_add(before);
        }
        self.bytes_stored = self.bytes_total.saturating_add(before);
        self
    }
}

/// The overview of `period` from the index `rows` and the audit `events` a caller may see
/// (rows and events outside the period are left out) and the gateway's `coverage` counters.
pub fn overview(
    period: &Period,
    rows: &[SessionRow],
    events: &[Enforcement],
    coverage: Coverage,
) -> Overview {
    let days = period.day_names();
    let n = days.len();
    let mut sessions = vec![0u64; n];
    let mut bytes = vec![0u64; n];
    let mut by_state = BTreeMap::new();
    let (mut verified, mut failed, mut unverified) = (0u64, 0u64, 0u64);
    let mut users: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut targets: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let Some(i) = period.day_index(r.started_at) else {
            continue;
        };
        sessions[i] += 1;
        bytes[i] = bytes[i].saturating_add(r.bytes);
        *by_state.entry(r.state.as_str()).or_insert(0) += 1;
        match r.integrity.status {
            IntegrityStatus::Ok => verified += 1,
            IntegrityStatus::Failed => failed += 1,
            IntegrityStatus::Unknown => unverified += 1,
        }
        let d = r.duration_ms.unwrap_or(0);
        for (map, name) in [(&mut users, r.user.as_str()), (&mut targets, &r.target)] {
            let e = map.entry(name).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.saturating_add(d);
        }
    }
    let mut totals: BTreeMap<&'static str, u64> = EnforcementKind::AUDITED
        .iter()
        .map(|k| (k.as_str(), 0))
        .collect();
    let mut enforcement = vec![totals.clone(); n];
    for e in events {
        let Some(i) = period.day_index(e.time) else {
            continue;
        };
        *enforcement[i].entry(e.kind.as_str()).or_insert(0) += 1;
        *totals.entry(e.kind.as_str()).or_insert(0) += 1;
    }
    let mut cumulative = 0u64;
    let bytes_per_day = days
        .iter()
        .zip(&bytes)
        .map(|(day, &b)| {
            cumulative = cumulative.saturating_add(b);
            BytesDay {
                day: day.clone(),
                bytes: b,
                cumulative,
            }
        })
        .collect();
    Overview {
        coverage: CoverageFigures {
            admitted: coverage.admitted,
            recorded: coverage.recorded,
            ratio: ratio(coverage.recorded, coverage.admitted),
            sessions_by_state: by_state,
        },
        integrity: IntegrityFigures {
            verified,
            failed,
            unverified,
            ratio: ratio(verified, verified + failed),
        },
        sessions_per_day: days
            .iter()
            .zip(&sessions)
            .map(|(day, &s)| SessionsDay {
                day: day.clone(),
                sessions: s,
            })
            .collect(),
        bytes_per_day,
        bytes_total: cumulative,
        bytes_stored: cumulative,
        sessions_total: sessions.iter().sum(),
        enforcement_per_day: days
            .iter()
            .zip(enforcement)
            .map(|(day, counts)| EnforcementDay {
                day: day.clone(),
                total: counts.values().sum(),
                counts,
            })
            .collect(),
        enforcement_totals: totals,
        top_users: top(users),
        top_targets: top(targets),
    }
}

/// A sealed recording, as the on-call view needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    /// Session id.
    pub id: String,
    /// User.
    pub user: String,
    /// Target.
    pub target: String,
    /// When it ended (its start when the end is not known).
    pub ended_at: OffsetDateTime,
    /// Its state.
    pub state: RecordingState,
    /// Why it ended (the manifest's `end_reason`).
    pub end_reason: Option<String>,
}

impl EndedSession {
    /// The kind of enforcement that ended the session, if one did: the recording failed, or
    /// its end reason says it was terminated (`terminated by policy: …` is a policy limit,
    /// `terminated by <operator>: …` an operator) or mentions policy.
    pub fn enforcement(&self) -> Option<EnforcementKind> {
        if self.state == RecordingState::Failed {
            return Some(EnforcementKind::RecordingFailed);
        }
        let reason = self.end_reason.as_deref()?.to_lowercase();
        if reason.starts_with("terminated by policy") {
            Some(EnforcementKind::Policy)
        } else if reason.starts_with("terminated by ") {
            Some(EnforcementKind::Terminated)
        } else if reason.contains("policy") {
            Some(EnforcementKind::Policy)
        } else if reason.contains("terminated") {
            Some(EnforcementKind::Terminated)
        } else {
            None
        }
    }
}

/// One recent blocked or terminated session of the on-call view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentItem {
    /// When (RFC 3339).
    pub time: String,
    /// What kind of enforcement.
    pub kind: EnforcementKind,
    /// Where it was read: `audit` (the audit action) or `recording` (its end reason).
    pub source: &'static str,
    /// The audit action, or the recording's state.
    pub action: String,
    /// Who ended or refused it, when known.
    pub actor: Option<String>,
    /// The session's user, when known.
    pub user: Option<String>,
    /// The target, when known.
    pub target: Option<String>,
    /// The session, when there was one.
    pub session_id: Option<String>,
    /// The policy rule, when known.
    pub rule: Option<String>,
    /// Why.
    pub reason: String,
    #[serde(skip)]
    at: OffsetDateTime,
}

/// The recent blocked or terminated sessions since `since`, newest first, at most `limit`: the
/// audit `events`, and the `ended` sessions an enforcement ended that no event names.
pub fn recent(
    events: &[Enforcement],
    ended: &[EndedSession],
    since: OffsetDateTime,
    limit: usize,
) -> Vec<RecentItem> {
    let mut items: Vec<RecentItem> = events
        .iter()
        .filter(|e| e.time >= since)
        .map(|e| RecentItem {
            time: rfc3339(e.time),
            kind: e.kind,
            source: "audit",
            action: e.action.clone(),
            actor: Some(e.actor.clone()).filter(|a| !a.is_empty()),
            user: e.user.clone(),
            target: e.target.clone(),
            session_id: e.session_id.clone(),
            rule: e.rule.clone(),
            reason: e.reason.clone(),
            at: e.time,
        })
        .collect();
    let named: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e.session_id.as_deref())
        .collect();
    for s in ended {
        if s.ended_at < since || named.contains(s.id.as_str()) {
            continue;
        }
        let Some(kind) = s.enforcement() else {
            continue;
        };
        let reason = s.end_reason.clone().unwrap_or_default();
        let actor = reason
            .strip_prefix("terminated by ")
            .and_then(|r| r.split_once(": "))
            .map(|(who, _)| who.to_owned());
        items.push(RecentItem {
            time: rfc3339(s.ended_at),
            kind,
            source: "recording",
            action: s.state.as_str().to_owned(),
            actor,
            user: Some(s.user.clone()),
            target: Some(s.target.clone()),
            session_id: Some(s.id.clone()),
            rule: None,
            reason,
            at: s.ended_at,
        });
    }
    items.sort_by_key(|i| std::cmp::Reverse(i.at));
    items.truncate(limit);
    items
}

/// Replay starts waited for at most ([`ReplayTimer`]).
const MAX_PENDING: usize = 256;
/// Measurements kept.
const MAX_SAMPLES: usize = 256;
/// A manifest request not followed by a segment request within this long is not a replay start.
const PENDING_FOR: Duration = Duration::from_secs(60);
/// After a measurement, the same principal's manifest requests of the same recording are not a
/// new start for this long (a player following a live session asks for the manifest again and
/// again).
const SERVED_FOR: Duration = Duration::from_secs(600);

/// Time to replay: a ring of recent measurements of the time from a principal's request of a
/// recording's manifest to its first request of one of its media segments.
#[derive(Debug, Default)]
pub struct ReplayTimer {
    pending: BTreeMap<(String, String), Instant>,
    served: BTreeMap<(String, String), Instant>,
    samples: VecDeque<Duration>,
}

/// The time-to-replay figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReplayStats {
    /// Measurements the figures are of (the most recent, since the gateway started).
    pub samples: usize,
    /// Their median, in milliseconds.
    pub median_ms: f64,
    /// Their 90th percentile (nearest rank), in milliseconds.
    pub p90_ms: f64,
}

impl ReplayTimer {
    /// No measurements.
    pub const fn new() -> Self {
        ReplayTimer {
            pending: BTreeMap::new(),
            served: BTreeMap::new(),
            samples: VecDeque::new(),
        }
    }

    /// Drops what is too old to count at `now`.
    fn expire(&mut self, now: Instant) {
        self.pending
            .retain(|_, at| now.saturating_duration_since(*at) < PENDING_FOR);
        self.served
            .retain(|_, at| now.saturating_duration_since(*at) < SERVED_FOR);
    }

    /// `who` asked for recording `id`'s manifest at `now`.
    pub fn manifest(&mut self, who: &str, id: &str, now: Instant) {
        self.expire(now);
        let key = (who.to_owned(), id.to_owned());
        if self.served.contains_key(&key) || self.pending.contains_key(&key) {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(key, now);
    }

    /// `who` asked for a media segment of recording `id` at `now`.
    pub fn segment(&mut self, who: &str, id: &str, now: Instant) {
        self.expire(now);
        let key = (who.to_owned(), id.to_owned());
        let Some(asked) = self.pending.remove(&key) else {
            return;
        };
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.pop_front();
        }
        let took = now.saturating_duration_since(asked);
        crate::metrics::global()
            .time_to_replay_seconds
            .observe(took.as_secs_f64());
        self.samples.push_back(took);
        if self.served.len() >= MAX_PENDING {
            self.served.clear();
        }
        self.served.insert(key, now);
    }

    /// The figures, or `None` before the first measurement.
    pub fn stats(&self) -> Option<ReplayStats> {
        let mut ms: Vec<f64> = self
            .samples
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        let p90 = ms[(n * 9).div_ceil(10).saturating_sub(1)];
        Some(ReplayStats {
            samples: n,
            median_ms: median,
            p90_ms: p90,
        })
    }
}

/// The gateway's time-to-replay measurements.
static REPLAYS: Mutex<ReplayTimer> = Mutex::new(ReplayTimer::new());

/// The gateway's time-to-replay measurements (the recordings API feeds them).
pub fn replays() -> MutexGuard<'static, ReplayTimer> {
    // The timer's maps are updated one whole entry at a time: a panic elsewhere cannot leave
    // them inconsistent.
    REPLAYS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `path` (below a recording's folder) is a media segment: what a player needs before
/// it can show a frame.
pub fn is_media_segment(path: &str) -> bool {
    path.ends_with(".m4s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmgate_storage::chain::Digest;
    use psmgate_storage::index::Integrity;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 15:30 UTC);

    /// A row of `user`'s session on `target`; `how` is its duration, state and integrity.
    fn row(
        id: &str,
        user: &str,
        target: &str,
        started: OffsetDateTime,
        bytes: u64,
        how: (Option<u64>, RecordingState, IntegrityStatus),
    ) -> SessionRow {
        let (duration_ms, state, integrity) = how;
        SessionRow {
            id: id.into(),
            dir: format!("2026/11/{id}"),
            protocol: "vnc".into(),
            user: user.into(),
            target: target.into(),
            client_addr: "127.0.0.1:5000".into(),
            started_at: started,
            ended_at: None,
            duration_ms,
            bytes,
            state,
            integrity: Integrity {
                status: integrity,
                message: None,
                verified_at: None,
            },
            legal_hold: false,
            created: started,
        }
    }

    fn entry(
        time: &str,
        action: &str,
        actor: &str,
        target: &str,
        sid: &str,
        detail: &str,
    ) -> AuditEntry {
        AuditEntry {
            seq: 1,
            time: time.into(),
            action: action.into(),
            session_id: sid.into(),
            dir: String::new(),
            actor: actor.into(),
            target: target.into(),
            detail: detail.into(),
            prev: Digest([0; 32]),
            head: Digest([0; 32]),
            key: None,
            sig: None,
        }
    }

    #[test]
    fn a_period_is_whole_utc_days_ending_today() {
        let p = Period::ending(datetime!(2026-11-22 00:30 +02:00), 3);
        // 00:30 at +02:00 is still the 21st in UTC.
        assert_eq!(p.first, time::macros::date!(2026 - 11 - 19));
        assert_eq!(p.since(), datetime!(2026-11-19 0:00 UTC));
        assert_eq!(p.day_names(), ["2026-11-19", "2026-11-20", "2026-11-21"]);
        assert_eq!(p.day_index(datetime!(2026-11-19 0:00 UTC)), Some(0));
        assert_eq!(p.day_index(datetime!(2026-11-21 23:59:59 UTC)), Some(2));
        assert_eq!(p.day_index(datetime!(2026-11-18 23:59:59 UTC)), None);
        assert_eq!(p.day_index(datetime!(2026-11-22 0:00 UTC)), None);
        assert_eq!(Period::ending(NOW, 0).days, 1);
        assert_eq!(Period::ending(NOW, 10_000).days, MAX_DAYS);
        assert_eq!(Period::ending(NOW, 1).day_names(), ["2026-11-22"]);
    }

    #[test]
    fn audit_entries_become_enforcement_events() {
        let e = |a: &AuditEntry| Enforcement::from_audit(a);
        let t = e(&entry(
            "2026-11-22T10:00:00Z",
            "session_terminated",
            "bob",
            "lab-vnc",
            "",
            "session 1234-ab of alice: looks like exfiltration",
        ))
        .unwrap();
        assert_eq!(t.kind, EnforcementKind::Terminated);
        assert_eq!(t.session_id.as_deref(), Some("1234-ab"));
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!(t.target.as_deref(), Some("lab-vnc"));
        assert_eq!(t.reason, "looks like exfiltration");
        assert_eq!(t.actor, "bob");

        let p = e(&entry(
            "2026-11-22T10:00:01.5Z",
            "policy_enforced",
            "policy",
            "lab-vnc",
            "s-2",
            "rule=idle-timeout user=carol protocol=vnc reason=no input for 300 s",
        ))
        .unwrap();
        assert_eq!(p.kind, EnforcementKind::Policy);
        assert_eq!(
            (
                p.session_id.as_deref(),
                p.user.as_deref(),
                p.rule.as_deref()
            ),
            (Some("s-2"), Some("carol"), Some("idle-timeout"))
        );
        assert_eq!(p.reason, "no input for 300 s");

        let w = e(&entry(
            "2026-11-22T10:00:02Z",
            "web_session_terminated",
            "web-gateway",
            "",
            "",
            "user=dan target=console session=s-3 rule=recorder-heartbeat reason=silent for 5 s",
        ))
        .unwrap();
        assert_eq!(w.kind, EnforcementKind::Policy);
        assert_eq!(
            (w.target.as_deref(), w.session_id.as_deref()),
            (Some("console"), Some("s-3"))
        );

        let d = e(&entry(
            "2026-11-22T10:00:03Z",
            "rdp_denied",
            "rdp-gateway",
            "",
            "",
            "client=10.0.0.9:5123 user=eve target=win-1 reason=no rule allows it",
        ))
        .unwrap();
        assert_eq!(d.kind, EnforcementKind::Denied);
        assert_eq!(
            (d.user.as_deref(), d.target.as_deref()),
            (Some("eve"), Some("win-1"))
        );
        assert_eq!(d.reason, "no rule allows it");
        assert_eq!(d.session_id, None);

        let f = e(&entry(
            "2026-11-22T10:00:04Z",
            "vnc_auth_failed",
            "vnc-gateway",
            "",
            "",
            "client=10.0.0.9:5124 reason=unknown token",
        ))
        .unwrap();
        assert_eq!(f.kind, EnforcementKind::AuthFailed);
        assert_eq!((f.user.clone(), f.target.clone()), (None, None));
        assert!(f.visible(&|_| true, true));
        assert!(!f.visible(&|_| true, false));
        assert!(d.visible(&|t| t == "win-1", false));
        assert!(!d.visible(&|t| t == "lab-vnc", true));

        // Not enforcements, or no readable time.
        for action in ["access_denied", "login", "session_start", "login_failed"] {
            assert!(e(&entry("2026-11-22T10:00:00Z", action, "x", "", "", "")).is_none());
        }
        assert!(e(&entry("yesterday", "vnc_denied", "x", "", "", "")).is_none());
        // A word that merely ends in a field name is not that field.
        let odd = e(&entry(
            "2026-11-22T10:00:00Z",
            "vnc_denied",
            "x",
            "",
            "",
            "superuser=root target= reason=",
        ))
        .unwrap();
        assert_eq!((odd.user, odd.target), (None, None));
    }

    #[test]
    fn the_overview_counts_by_day_state_integrity_and_name() {
        use IntegrityStatus as I;
        use RecordingState as S;
        let period = Period::ending(NOW, 3);
        let rows = vec![
            row(
                "a",
                "alice",
                "lab",
                datetime!(2026-11-22 09:00 UTC),
                100,
                (Some(60_000), S::Completed, I::Ok),
            ),
            row(
                "b",
                "alice",
                "db",
                datetime!(2026-11-22 08:00 UTC),
                50,
                (Some(1_000), S::Completed, I::Failed),
            ),
            row(
                "c",
                "bob",
                "lab",
                datetime!(2026-11-20 08:00 UTC),
                7,
                (None, S::Recording, I::Unknown),
            ),
            row(
                "d",
                "carol",
                "lab",
                datetime!(2026-11-21 23:59 UTC),
                3,
                (Some(120_000), S::Interrupted, I::Ok),
            ),
            // Before the period: left out.
            row(
                "e",
                "alice",
                "lab",
                datetime!(2026-11-19 23:59 UTC),
                1000,
                (Some(5), S::Completed, I::Ok),
            ),
        ];
        let events: Vec<Enforcement> = [
            entry(
                "2026-11-22T10:00:00Z",
                "session_terminated",
                "bob",
                "lab",
                "",
                "session a of alice: x",
            ),
            entry(
                "2026-11-22T11:00:00Z",
                "vnc_denied",
                "g",
                "",
                "",
                "user=z target=lab reason=r",
            ),
            entry(
                "2026-11-20T11:00:00Z",
                "policy_enforced",
                "policy",
                "lab",
                "c",
                "rule=max-session reason=r",
            ),
            entry(
                "2026-11-01T11:00:00Z",
                "vnc_denied",
                "g",
                "lab",
                "",
                "before the period",
            ),
        ]
        .iter()
        .filter_map(Enforcement::from_audit)
        .collect();
        let o = overview(
            &period,
            &rows,
            &events,
            Coverage {
                admitted: 8,
                recorded: 6,
            },
        );

        assert_eq!(o.coverage.ratio, Some(0.75));
        assert_eq!(
            o.coverage.sessions_by_state,
            BTreeMap::from([("completed", 2), ("interrupted", 1), ("recording", 1)])
        );
        assert_eq!(
            (
                o.integrity.verified,
                o.integrity.failed,
                o.integrity.unverified
            ),
            (2, 1, 1)
        );
        assert_eq!(o.integrity.ratio, Some(2.0 / 3.0));
        let per_day: Vec<u64> = o.sessions_per_day.iter().map(|d| d.sessions).collect();
        assert_eq!(per_day, [1, 1, 2]);
        assert_eq!(o.sessions_total, 4);
        let bytes: Vec<(u64, u64)> = o
            .bytes_per_day
            .iter()
            .map(|d| (d.bytes, d.cumulative))
            .collect();
        assert_eq!(bytes, [(7, 7), (3, 10), (150, 160)]);
        assert_eq!(o.bytes_total, 160);
        let o = o.with_stored_before(1000);
        let cumulative: Vec<u64> = o.bytes_per_day.iter().map(|d| d.cumulative).collect();
        assert_eq!(cumulative, [1007, 1010, 1160]);
        assert_eq!((o.bytes_total, o.bytes_stored), (160, 1160));
        assert_eq!(o.bytes_per_day[2].day, "2026-11-22");

        let day = |i: usize, k: &str| o.enforcement_per_day[i].counts[k];
        assert_eq!((day(0, "policy"), day(0, "terminated")), (1, 0));
        assert_eq!(
            (
                day(2, "terminated"),
                day(2, "denied"),
                day(2, "auth_failed")
            ),
            (1, 1, 0)
        );
        assert_eq!(o.enforcement_per_day[1].total, 0);
        assert_eq!(
            o.enforcement_per_day[1].counts.len(),
            4,
            "every kind, zeros too"
        );
        assert_eq!(
            o.enforcement_totals,
            BTreeMap::from([
                ("auth_failed", 0),
                ("denied", 1),
                ("policy", 1),
                ("terminated", 1)
            ])
        );

        let names = |v: &[Ranked]| {
            v.iter()
                .map(|r| (r.name.clone(), r.sessions, r.duration_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&o.top_users),
            [
                ("alice".into(), 2, 61_000),
                ("carol".into(), 1, 120_000),
                ("bob".into(), 1, 0)
            ]
        );
        assert_eq!(
            names(&o.top_targets),
            [("lab".into(), 3, 180_000), ("db".into(), 1, 1_000)]
        );

        // Nothing admitted, nothing checked: no ratio rather than a made-up one.
        let empty = overview(&period, &[], &[], Coverage::default());
        assert_eq!((empty.coverage.ratio, empty.integrity.ratio), (None, None));
        assert_eq!(empty.sessions_per_day.len(), 3);
        assert_eq!(empty.bytes_total, 0);
    }

    #[test]
    fn top_lists_keep_ten() {
        let rows: Vec<SessionRow> = (0..25)
            .map(|i| {
                row(
                    &format!("s{i}"),
                    &format!("u{:02}", i % 12),
                    "t",
                    NOW - time::Duration::minutes(i),
                    1,
                    (
                        Some(u64::try_from(i).unwrap()),
                        RecordingState::Completed,
                        IntegrityStatus::Ok,
                    ),
                )
            })
            .collect();
        let o = overview(&Period::ending(NOW, 1), &rows, &[], Coverage::default());
        assert_eq!(o.top_users.len(), TOP);
        // u00 has three sessions (0, 12, 24), u01 … u11 two each.
        assert_eq!(o.top_users[0].name, "u00");
        assert_eq!(o.top_users[0].sessions, 3);
        assert_eq!(o.top_users[1].sessions, 2);
        assert_eq!(o.top_targets.len(), 1);
    }

    #[test]
    fn recent_items_merge_audit_and_recordings_newest_first() {
        let events: Vec<Enforcement> = [
            entry(
                "2026-11-22T15:00:00Z",
                "session_terminated",
                "bob",
                "lab",
                "",
                "session s1 of alice: enough",
            ),
            entry(
                "2026-11-22T14:00:00Z",
                "vnc_denied",
                "g",
                "",
                "",
                "user=z target=lab reason=no rule allows it",
            ),
            entry(
                "2026-11-20T14:00:00Z",
                "vnc_denied",
                "g",
                "",
                "",
                "user=z target=lab reason=too old",
            ),
        ]
        .iter()
        .filter_map(Enforcement::from_audit)
        .collect();
        let ended = |id: &str, at: OffsetDateTime, state, reason: Option<&str>| EndedSession {
            id: id.into(),
            user: "alice".into(),
            target: "lab".into(),
            ended_at: at,
            state,
            end_reason: reason.map(str::to_owned),
        };
        let sessions = vec![
            // The same session as the audit entry: listed once, from the audit log.
            ended(
                "s1",
                datetime!(2026-11-22 15:00 UTC),
                RecordingState::Completed,
                Some("terminated by bob: enough"),
            ),
            ended(
                "s2",
                datetime!(2026-11-22 15:10 UTC),
                RecordingState::Completed,
                Some("terminated by policy: grant expired"),
            ),
            ended(
                "s3",
                datetime!(2026-11-22 13:00 UTC),
                RecordingState::Failed,
                Some("storage full"),
            ),
            ended(
                "s4",
                datetime!(2026-11-22 15:20 UTC),
                RecordingState::Completed,
                Some("viewer disconnected"),
            ),
            ended(
                "s5",
                datetime!(2026-11-21 10:00 UTC),
                RecordingState::Completed,
                Some("terminated by bob: old"),
            ),
        ];
        let since = NOW - time::Duration::hours(24);
        let items = recent(&events, &sessions, since, 50);
        let got: Vec<(&str, &str, Option<&str>)> = items
            .iter()
            .map(|i| (i.kind.as_str(), i.source, i.session_id.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("policy", "recording", Some("s2")),
                ("terminated", "audit", Some("s1")),
                ("denied", "audit", None),
                ("recording_failed", "recording", Some("s3")),
            ]
        );
        assert_eq!(items[0].actor.as_deref(), Some("policy"));
        assert_eq!(items[0].reason, "terminated by policy: grant expired");
        assert_eq!(items[1].reason, "enough");
        assert_eq!(items[1].time, "2026-11-22T15:00:00Z");
        assert_eq!(items[2].reason, "no rule allows it");
        assert_eq!(recent(&events, &sessions, since, 2).len(), 2);
    }

    #[test]
    fn time_to_replay_is_manifest_to_first_segment_per_principal_and_recording() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = ReplayTimer::new();
        assert_eq!(r.stats(), None);
        r.manifest("bob", "rec1", ms(0));
        r.manifest("bob", "rec1", ms(50)); // a second manifest request does not restart the clock
        r.segment("alice", "rec1", ms(60)); // someone else's segment request does not count
        r.segment("bob", "rec2", ms(70)); // nor one of another recording
        r.segment("bob", "rec1", ms(100));
        r.segment("bob", "rec1", ms(400)); // later segments do not count again
        r.manifest("bob", "rec1", ms(500)); // a live player polling the manifest
        r.segment("bob", "rec1", ms(900));
        assert_eq!(
            r.stats(),
            Some(ReplayStats {
                samples: 1,
                median_ms: 100.0,
                p90_ms: 100.0
            })
        );
        r.manifest("alice", "rec1", ms(1000));
        r.segment("alice", "rec1", ms(1300));
        r.manifest("carol", "rec1", ms(1000));
        r.segment("carol", "rec1", ms(1200));
        let s = r.stats().unwrap();
        assert_eq!((s.samples, s.median_ms, s.p90_ms), (3, 200.0, 300.0));
        r.manifest("dan", "rec1", ms(2000));
        r.segment(
            "dan",
            "rec1",
            ms(2000) + PENDING_FOR + Duration::from_millis(1),
        );
        assert_eq!(
            r.stats().unwrap().samples,
            3,
            "a start left waiting expires"
        );

        // The ring keeps the most recent measurements.
        let mut r = ReplayTimer::new();
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            let who = format!("u{i}");
            r.manifest(&who, "x", ms(i));
            r.segment(&who, "x", ms(i) + Duration::from_millis(10));
        }
        assert_eq!(r.stats().unwrap().samples, MAX_SAMPLES);
        assert!(is_media_segment("video/000001.m4s"));
        assert!(!is_media_segment("video/init.mp4"));
        assert!(!is_media_segment("chain.jsonl"));
    }
}
