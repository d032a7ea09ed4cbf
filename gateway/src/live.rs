//! The sessions running in this gateway process, whatever their protocol, and the means to end
//! one from outside (an operator's terminate, a grant's expiry, a session's time limit).
//!
//! Every protocol gateway registers a session with [`LiveSessions::register`] once its recording
//! is open and keeps the returned [`LiveHandle`] until the recording is sealed; dropping the
//! handle takes the session off the list. [`crate::supervisor::until_end`] waits on the handle
//! alongside the relay, so a [`LiveSessions::terminate`] ends the session the same way as a
//! recording failure or a shutdown does: the relay is cut, the transcript gets a `policy` event
//! naming who ended it and why, and the recording is sealed with that reason.
//!
//! Invariants:
//! - a session is listed exactly while its handle lives (from recording start to seal);
//! - a stop request is never lost: it is kept in a `watch` cell, so a session that starts
//!   waiting after the request still sees it; the first request wins, later ones are ignored.

mod lock;

pub use lock::{LockError, LockRequest, LOCK_RULE};

use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use time::OffsetDateTime;
use tokio::sync::watch;

/// What the list says about a running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveSession {
    /// The recording's session id.
    pub session_id: String,
    /// `vnc`, `rdp` or `web`.
    pub protocol: String,
    /// Gateway user.
    pub user: String,
    /// Target name.
    pub target: String,
    /// Client address.
    pub client_addr: String,
    /// When the session started (RFC 3339 in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The recording folder below the storage root.
    pub dir: String,
}

/// Why a session is being ended from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    /// Who asked: an admin user's name, or the gateway's own part (`grant-expiry`, …).
    pub actor: String,
    /// Why, in the actor's words.
    pub reason: String,
    /// Policy rule or mechanism id recorded with the `policy` event (`terminate`,
    /// `grant-expiry`, `max-session`, …).
    pub rule: String,
}

impl StopRequest {
    /// An operator's terminate.
    pub fn terminate(actor: &str, reason: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            rule: "terminate".to_owned(),
        }
    }

    /// The session's end reason, as sealed into the recording.
    pub fn describe(&self) -> String {
        format!("terminated by {}: {}", self.actor, self.reason)
    }
}

/// The limits policy puts on one session (see `[[rules]]` `max_session`, `idle_timeout`,
/// `end_at_grant_expiry`); [`crate::supervisor::until_end`] ends the session when one is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionLimits {
    /// The session ends at this instant, with this request (the earlier of the grant's expiry
    /// and the longest session the rule allows).
    pub deadline: Option<(tokio::time::Instant, StopRequest)>,
    /// The session ends after this long without input.
    pub idle: Option<std::time::Duration>,
}

impl SessionLimits {
    /// The limits of a session starting now with `grant`, under the rule that lets its user at
    /// its target now.
    pub fn for_grant(
        config: &psmgate_policy::Config,
        grant: &psmgate_storage::tokens::Grant,
    ) -> Self {
        Self::from_policy(
            config
                .access_policy(&grant.user, &grant.target, OffsetDateTime::now_utc())
                .as_ref(),
            Some(grant.expires_at),
        )
    }

    /// The limits of a session starting now under `policy`, opened with a grant that expires at
    /// `grant_expires` (wall clock).
    pub fn from_policy(
        policy: Option<&psmgate_policy::AccessPolicy>,
        grant_expires: Option<OffsetDateTime>,
    ) -> Self {
        let Some(policy) = policy else {
            return Self::default();
        };
        let now = tokio::time::Instant::now();
        let mut deadline: Option<(tokio::time::Instant, StopRequest)> = None;
        let mut consider = |at: tokio::time::Instant, rule: &str, reason: String| {
            if deadline.as_ref().is_none_or(|(d, _)| at < *d) {
                deadline = Some((
                    at,
                    StopRequest {
                        actor: "policy".into(),
                        reason,
                        rule: rule.into(),
                    },
                ));
            }
        };
        if let Some(max) = policy.max_session {
            consider(
                now + max,
                "max-session",
                format!(
                    "the longest session rule {} allows ({} s) was reached",
                    policy.rule_id,
                    max.as_secs()
                ),
            );
        }
        if let (true, Some(expires)) = (policy.end_at_grant_expiry, grant_expires) {
            let left = expires - OffsetDateTime::now_utc();
            let left = std::time::Duration::try_from(left).unwrap_or_default();
            consider(
                now + left,
                "grant-expiry",
                "the access grant expired".into(),
            );
        }
        Self {
            deadline,
            idle: policy.idle_timeout,
        }
    }
}

/// [`LiveSessions::terminate`] failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StopError {
    /// No session with that id runs here.
    #[error("no live session {0}")]
    NotFound(String),
    /// The session is already being ended.
    #[error("session {0} is already ending")]
    AlreadyEnding(String),
}

struct Entry {
    info: LiveSession,
    stop: watch::Sender<Option<StopRequest>>,
    /// The operator's lock on the session's input, while one holds.
    lock: watch::Sender<Option<LockRequest>>,
    /// The session's recorder, for thumbnails (weak: the registry never keeps a session's
    /// recording alive).
    recorder: std::sync::Weak<crate::recording::Recorder>,
}

/// The registry of running sessions (one per gateway process, shared by all protocols).
#[derive(Default)]
pub struct LiveSessions {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("sessions", &self.lock().len())
            .finish()
    }
}

impl LiveSessions {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are plain data: a panic elsewhere cannot leave them half-updated.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists `info`'s session until the returned handle is dropped; `limits` are enforced by
    /// [`crate::supervisor::until_end`].
    pub fn register(
        self: &Arc<Self>,
        info: LiveSession,
        limits: SessionLimits,
        recorder: std::sync::Weak<crate::recording::Recorder>,
    ) -> LiveHandle {
        let (tx, rx) = watch::channel(None);
        let (lock_tx, lock_rx) = watch::channel(None);
        let id = info.session_id.clone();
        self.lock().insert(
            id.clone(),
            Entry {
                info,
                stop: tx,
                lock: lock_tx,
                recorder,
            },
        );
        LiveHandle {
            registry: self.clone(),
            id,
            stop: rx,
            locked: lock_rx,
            limits,
        }
    }

    /// The running sessions, oldest first.
    pub fn list(&self) -> Vec<LiveSession> {
        let mut v: Vec<LiveSession> = self.lock().values().map(|e| e.info.clone()).collect();
        v.sort_by(|a, b| (a.started_at, &a.session_id).cmp(&(b.started_at, &b.session_id)));
        v
    }

    /// The running session `id`, if any.
    pub fn get(&self, id: &str) -> Option<LiveSession> {
        self.lock().get(id).map(|e| e.info.clone())
    }

    /// A masked thumbnail of session `id`'s screen now, at most `max_width` wide (`None`: no
    /// such session, or no screen yet).
    pub fn thumbnail(&self, id: &str, max_width: u32) -> Option<crate::recording::Thumbnail> {
        let rec = self.lock().get(id)?.recorder.upgrade()?;
        rec.thumbnail(max_width)
    }

    /// Inputs and events waiting in the recorders of all running sessions.
    pub fn queue_depth(&self) -> usize {
        let recorders: Vec<_> = self
            .lock()
            .values()
            .filter_map(|e| e.recorder.upgrade())
            .collect();
        recorders.iter().map(|r| r.queue_depth()).sum()
    }

    /// Asks session `id` to end. Returns once the request is delivered; the session then ends
    /// (its relay is cut and its recording sealed) on its own task.
    pub fn stop(&self, id: &str, request: StopRequest) -> Result<LiveSession, StopError> {
        let entries = self.lock();
        let e = entries
            .get(id)
            .ok_or_else(|| StopError::NotFound(id.to_owned()))?;
        if e.stop.borrow().is_some() {
            return Err(StopError::AlreadyEnding(id.to_owned()));
        }
        e.stop.send_replace(Some(request));
        Ok(e.info.clone())
    }

    /// The lock on session `id`'s input, if one holds.
    pub fn locked(&self, id: &str) -> Option<LockRequest> {
        self.lock().get(id)?.lock.borrow().clone()
    }

    /// Locks session `id`'s input (see [`LockRequest`] for what each protocol does): the
    /// transcript gets a `policy` event naming who and why. A session being ended cannot be
    /// locked.
    pub fn lock_input(&self, id: &str, request: LockRequest) -> Result<LiveSession, LockError> {
        let (info, rec) = {
            let entries = self.lock();
            let e = entries
                .get(id)
                .ok_or_else(|| LockError::NotFound(id.to_owned()))?;
            if e.stop.borrow().is_some() {
                return Err(LockError::Ending(id.to_owned()));
            }
            if e.lock.borrow().is_some() {
                return Err(LockError::AlreadyLocked(id.to_owned()));
            }
            let detail = request.describe();
            e.lock.send_replace(Some(request));
            (e.info.clone(), e.recorder.upgrade().map(|r| (r, detail)))
        };
        if let Some((rec, detail)) = rec {
            lock_event(&rec, "locked", detail);
        }
        Ok(info)
    }

    /// Lifts the lock on session `id`'s input; the transcript gets a `policy` event naming
    /// `actor`. Returns the session and the lock that held.
    pub fn resume(&self, id: &str, actor: &str) -> Result<(LiveSession, LockRequest), LockError> {
        let (info, held, rec) = {
            let entries = self.lock();
            let e = entries
                .get(id)
                .ok_or_else(|| LockError::NotFound(id.to_owned()))?;
            let held = e
                .lock
                .send_replace(None)
                .ok_or_else(|| LockError::NotLocked(id.to_owned()))?;
            (e.info.clone(), held, e.recorder.upgrade())
        };
        if let Some(rec) = rec {
            lock_event(&rec, "resumed", format!("resumed by {actor}"));
        }
        Ok((info, held))
    }

    /// Number of running sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records a lock change in the session's transcript (a failure to do so is logged: the
/// recorder has failed, which ends the session anyway).
fn lock_event(rec: &crate::recording::Recorder, action: &str, detail: String) {
    let event = psmgate_codecs::transcript::EventKind::Policy {
        rule: LOCK_RULE.into(),
        action: action.into(),
        detail: Some(detail),
    };
    if let Err(e) = rec.event(event) {
        tracing::warn!(error = %e, "could not record the lock change");
    }
}

/// A session's place in the registry; dropping it takes the session off the list.
pub struct LiveHandle {
    registry: Arc<LiveSessions>,
    id: String,
    stop: watch::Receiver<Option<StopRequest>>,
    locked: watch::Receiver<Option<LockRequest>>,
    limits: SessionLimits,
}

impl std::fmt::Debug for LiveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHandle").field("id", &self.id).finish()
    }
}

impl LiveHandle {
    /// Resolves when the session is asked to end (at once if it already was).
    pub async fn stopped(&mut self) -> StopRequest {
        let got = match self.stop.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        match got {
            Some(r) => r,
            // The sender lives in the registry entry, which this handle removes only on drop.
            None => std::future::pending().await,
        }
    }

    /// The session's limits.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// A receiver of the session's stop request, for a task watching it on the session's
    /// behalf; it sees the channel closed once this handle is dropped.
    pub fn stop_signal(&self) -> watch::Receiver<Option<StopRequest>> {
        self.stop.clone()
    }

    /// The stop request, if one was made.
    pub fn stop_request(&self) -> Option<StopRequest> {
        self.stop.borrow().clone()
    }

    /// A receiver of the session's lock (`Some` while an operator holds the user's input
    /// back), for the tasks that forward the user's input; it sees the channel closed once this
    /// handle is dropped.
    pub fn lock_signal(&self) -> watch::Receiver<Option<LockRequest>> {
        self.locked.clone()
    }
}

impl Drop for LiveHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, secs: i64) -> LiveSession {
        LiveSession {
            session_id: id.into(),
            protocol: "vnc".into(),
            user: "alice".into(),
            target: "t".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap(),
            dir: format!("2026/11/22/{id}"),
        }
    }

    #[test]
    fn listed_while_the_handle_lives() {
        let reg = LiveSessions::new();
        let b = reg.register(
            info("b", 2),
            SessionLimits::default(),
            std::sync::Weak::new(),
        );
        let a = reg.register(
            info("a", 1),
            SessionLimits::default(),
            std::sync::Weak::new(),
        );
        let ids: Vec<_> = reg.list().into_iter().map(|s| s.session_id).collect();
        assert_eq!(ids, ["a", "b"]);
        drop(a);
        assert_eq!(reg.len(), 1);
        assert!(reg.get("a").is_none());
        drop(b);
        assert!(reg.is_empty());
    }

    #[tokio::test]
    async fn a_stop_reaches_the_session_even_before_it_waits() {
        let reg = LiveSessions::new();
        let mut h = reg.register(
            info("a", 1),
            SessionLimits::default(),
            std::sync::Weak::new(),
        );
        let req = StopRequest::terminate("carol", "suspicious command");
        reg.stop("a", req.clone()).unwrap();
        assert_eq!(h.stopped().await, req);
        assert_eq!(
            reg.stop("a", StopRequest::terminate("dave", "again")),
            Err(StopError::AlreadyEnding("a".into()))
        );
        assert_eq!(h.stop_request(), Some(req));
        assert_eq!(
            reg.stop("zz", StopRequest::terminate("x", "y")),
            Err(StopError::NotFound("zz".into()))
        );
    }

    fn policy(max_session: Option<u64>, end_at_grant_expiry: bool) -> psmgate_policy::AccessPolicy {
        psmgate_policy::AccessPolicy {
            rule_id: "r".into(),
            approval: psmgate_policy::Approval::Auto,
            max_duration: std::time::Duration::from_secs(3600),
            max_session: max_session.map(std::time::Duration::from_secs),
            idle_timeout: Some(std::time::Duration::from_secs(30)),
            end_at_grant_expiry,
        }
    }

    #[tokio::test]
    async fn the_earlier_limit_ends_the_session() {
        let now = tokio::time::Instant::now();
        let in_a_minute = OffsetDateTime::now_utc() + time::Duration::seconds(60);
        let l = SessionLimits::from_policy(Some(&policy(Some(600), true)), Some(in_a_minute));
        let (at, req) = l.deadline.clone().unwrap();
        assert_eq!(req.rule, "grant-expiry");
        assert!(
            at > now + std::time::Duration::from_secs(55)
                && at < now + std::time::Duration::from_secs(65)
        );
        assert_eq!(l.idle, Some(std::time::Duration::from_secs(30)));
        let l = SessionLimits::from_policy(Some(&policy(Some(10), true)), Some(in_a_minute));
        assert_eq!(l.deadline.unwrap().1.rule, "max-session");
        // A rule that lets sessions outlive their grant.
        let l = SessionLimits::from_policy(Some(&policy(None, false)), Some(in_a_minute));
        assert!(l.deadline.is_none());
        // No policy (the user lost access meanwhile): nothing to enforce here.
        assert_eq!(
            SessionLimits::from_policy(None, Some(in_a_minute)),
            SessionLimits::default()
        );
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_on_stop() {
        let reg = LiveSessions::new();
        let mut h = reg.register(
            info("a", 1),
            SessionLimits::default(),
            std::sync::Weak::new(),
        );
        let reg2 = reg.clone();
        let t = tokio::spawn(async move { h.stopped().await });
        tokio::task::yield_now().await;
        reg2.stop("a", StopRequest::terminate("carol", "why"))
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.describe(), "terminated by carol: why");
    }
}
