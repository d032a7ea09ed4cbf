//! What every protocol gateway does around a session, whatever the protocol: accept connections
//! (one task and one tracing span per client), write audit entries, open the recording before
//! anything connects onward, and seal it with the reason the session ended.
//!
//! The audit log gets, for VNC and RDP sessions, [`ACTION_SESSION_START`] when the recording
//! opens and [`ACTION_SESSION_END`] when it is sealed (the web proxy writes its own
//! `web_session_start` and `web_session_end`, which carry the grant and are written when the
//! session ends rather than when a video rendered afterwards is sealed), and for every protocol
//! [`ACTION_POLICY_ENFORCED`] when a policy limit ends a session ([`record_stop`]). An operator's
//! terminate is audited by the admin API as `session_terminated`.

use crate::live::{LiveHandle, LiveSession, SessionLimits, StopRequest};
use crate::recording::{Recorder, RecordingSettings, SessionInfo};
use crate::store::Store;
use anyhow::Result;
use psmgate_codecs::transcript::EventKind;
use psmgate_storage::audit::{AuditRecord, SharedAuditLog};
use psmgate_storage::backend::Backend;
use psmgate_storage::index::Index;
use psmgate_storage::manifest::RecordingState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Accepts connections until `shutdown` flips to true; each runs `handle` as its own task in a
/// span named `protocol` with the client's address. A session's error is logged, never
/// propagated: one client cannot stop the listener.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: &'static str,
    shutdown: watch::Receiver<bool>,
    handle: F,
) -> Result<()>
where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut stop = shutdown.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, protocol, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        let span = tracing::info_span!("session", protocol, client = %peer);
        let session = handle(tcp, peer, shutdown.clone());
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                if let Err(e) = session.await {
                    tracing::warn!(error = %format!("{e:#}"), "session ended with an error");
                }
            },
            span,
        ));
    }
}

/// Audit action: a VNC or RDP session was authorised and its recording opened. Actor: the user;
/// target: the target; with the session id and recording folder.
pub const ACTION_SESSION_START: &str = "session_start";
/// Audit action: a VNC or RDP session ended and its recording was sealed; the detail says why.
pub const ACTION_SESSION_END: &str = "session_end";
/// Audit action: a policy limit ended a session (`max-session`, `idle-timeout`, `grant-expiry`,
/// …); actor `policy`, the detail names the rule, the user and the reason.
pub const ACTION_POLICY_ENFORCED: &str = "policy_enforced";

/// Appends `record` to `audit`; a failure is logged as an error.
fn append(audit: &SharedAuditLog, record: &AuditRecord<'_>) {
    if let Err(e) = audit.append_record(time::OffsetDateTime::now_utc(), record) {
        tracing::error!(error = %e, action = record.action, "could not write the audit log");
    }
}

/// Appends an entry to the audit log (`recordings/audit.jsonl`); a failure to do so is logged
/// as an error (the session's own outcome does not depend on it).
pub fn audit(store: &Store, actor: &str, action: &str, detail: &str) {
    audit_action(store, actor, action, "", detail);
}

/// Appends an admin or gateway action on `target` (empty: none) to the signed audit log; a
/// failure is logged as an error.
pub fn audit_action(store: &Store, actor: &str, action: &str, target: &str, detail: &str) {
    let record = AuditRecord {
        action,
        actor,
        target,
        detail,
        ..Default::default()
    };
    append(&store.audit, &record);
}

/// Appends a session's `action` (actor `actor`, target the session's) to `audit`, with its
/// session id and recording folder.
fn audit_session(
    audit: &SharedAuditLog,
    rec: &Recorder,
    info: &SessionInfo,
    action: &str,
    actor: &str,
    detail: &str,
) {
    append(
        audit,
        &AuditRecord {
            action,
            actor,
            target: &info.target,
            session_id: rec.session_id(),
            dir: rec.dir(),
            detail,
        },
    );
}

/// True for sessions whose start and end [`start_recording`] and [`seal`] audit (see the module
/// documentation).
fn audits_start_and_end(info: &SessionInfo) -> bool {
    info.protocol != "web"
}

/// A session's recording together with where it is stored and whose session it is: what
/// [`seal`] needs to make its transcript searchable and to audit the session's end, and what
/// [`record_stop`] needs to audit a policy limit. Cloning shares the same recording.
///
/// It dereferences to the session's [`Recorder`] (through its `Arc`), so a protocol gateway
/// hands it wherever a recorder is expected.
#[derive(Clone)]
pub struct SessionRecording {
    rec: Arc<Recorder>,
    store: Option<Arc<StoreParts>>,
}

/// The parts of the [`Store`] a sealed recording goes into.
struct StoreParts {
    backend: Arc<dyn Backend>,
    index: Arc<dyn Index>,
    audit: Arc<SharedAuditLog>,
    info: SessionInfo,
}

impl SessionRecording {
    /// A recording that is sealed without being made searchable or audited (one not opened by
    /// [`start_recording`], as in tests).
    pub fn detached(rec: Arc<Recorder>) -> Self {
        Self { rec, store: None }
    }

    /// The session's recorder.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.rec
    }
}

impl std::ops::Deref for SessionRecording {
    type Target = Arc<Recorder>;

    fn deref(&self) -> &Arc<Recorder> {
        &self.rec
    }
}

impl std::fmt::Debug for SessionRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecording")
            .field("session", &self.rec.session_id())
            .field("stored", &self.store.is_some())
            .finish()
    }
}

/// Opens a session's recording (manifest and index row exist when this returns) and, for VNC
/// and RDP, audits the session's start.
pub async fn start_recording(
    store: &Store,
    info: SessionInfo,
    settings: RecordingSettings,
) -> Result<SessionRecording> {
    let (backend, key, index) = (
        store.backend.clone(),
        store.key.clone(),
        store.index.clone(),
    );
    let opened = info.clone();
    crate::metrics::session(&opened.protocol, false);
    let rec = Arc::new(
        tokio::task::spawn_blocking(move || Recorder::start(backend, key, index, info, settings))
            .await??,
    );
    crate::metrics::session(&opened.protocol, true);
    if audits_start_and_end(&opened) {
        audit_session(
            &store.audit,
            &rec,
            &opened,
            ACTION_SESSION_START,
            &opened.user,
            &format!(
                "protocol={} client={} policy={}",
                opened.protocol, opened.client_addr, opened.policy_version
            ),
        );
    }
    Ok(SessionRecording {
        rec,
        store: Some(Arc::new(StoreParts {
            backend: store.backend.clone(),
            index: store.index.clone(),
            audit: store.audit.clone(),
            info: opened,
        })),
    })
}

/// Stores the searchable text of the sealed recording `id` in `dir` (on the blocking pool). A
/// failure is logged; the recording is indexed again at the next start.
async fn index_text(backend: Arc<dyn Backend>, index: Arc<dyn Index>, id: String, dir: String) {
    let job = tokio::task::spawn_blocking(move || {
        psmgate_storage::search::index_recording(backend.as_ref(), index.as_ref(), &id, &dir)
    });
    match job.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(
            error = %e,
            "could not make the recording searchable (retried at the next start)"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "indexing the recording's text failed (retried at the next start)"
        ),
    }
}

/// Lists the session recorded by `rec` among the live sessions until the handle is dropped
/// (keep it until the recording is sealed).
pub fn go_live(
    store: &Store,
    rec: &Arc<Recorder>,
    info: &SessionInfo,
    limits: SessionLimits,
) -> LiveHandle {
    store.live.register(
        LiveSession {
            session_id: rec.session_id().to_owned(),
            protocol: info.protocol.clone(),
            user: info.user.clone(),
            target: info.target.clone(),
            client_addr: info.client_addr.clone(),
            started_at: time::OffsetDateTime::now_utc(),
            dir: rec.dir().to_owned(),
        },
        limits,
        Arc::downgrade(rec),
    )
}

/// Resolves when one of `limits` is reached: the deadline passes, or no input was recorded for
/// the idle time (checked every second).
pub(crate) async fn limit_reached(rec: &Recorder, limits: &SessionLimits) -> StopRequest {
    if limits.deadline.is_none() && limits.idle.is_none() {
        return std::future::pending().await;
    }
    loop {
        let now = tokio::time::Instant::now();
        if let Some((at, req)) = &limits.deadline {
            if now >= *at {
                return req.clone();
            }
        }
        if let Some(idle) = limits.idle {
            if rec.idle_for() >= idle {
                return StopRequest {
                    actor: "policy".into(),
                    reason: format!("no input for {} s", idle.as_secs()),
                    rule: "idle-timeout".into(),
                };
            }
        }
        let mut wake = now + Duration::from_secs(1);
        if let Some((at, _)) = &limits.deadline {
            wake = wake.min(*at);
        }
        tokio::time::sleep_until(wake).await;
    }
}

/// Records that `request` ended the session: a `policy` event naming who and why, and, when a
/// policy limit ended it (actor `policy`), a [`ACTION_POLICY_ENFORCED`] audit entry.
pub fn record_stop(rec: &SessionRecording, request: &StopRequest) {
    crate::metrics::enforced(&request.rule);
    let event = EventKind::Policy {
        rule: request.rule.clone(),
        action: "terminated".into(),
        detail: Some(request.describe()),
    };
    if let Err(e) = rec.event(event) {
        tracing::warn!(error = %e, "could not record the termination event");
    }
    if request.actor == "policy" {
        if let Some(StoreParts { audit, info, .. }) = rec.store.as_deref() {
            audit_session(
                audit,
                rec,
                info,
                ACTION_POLICY_ENFORCED,
                "policy",
                &format!(
                    "rule={} user={} protocol={} reason={}",
                    request.rule, info.user, info.protocol, request.reason
                ),
            );
        }
    }
}

/// Seals `rec` with the session's outcome: `completed` with the reason the session ended, or
/// `failed` when the recording itself failed. A recording opened by [`start_recording`] is then
/// made searchable: its transcript's text goes into the index (a failure to do so is logged and
/// never fails the seal), and the end of a VNC or RDP session is audited.
pub async fn seal(rec: &SessionRecording, outcome: &Result<String>) {
    let (state, reason) = match outcome {
        Ok(reason) => (RecordingState::Completed, reason.clone()),
        Err(e) => {
            let failed = rec.failure().borrow().is_some();
            (
                if failed {
                    RecordingState::Failed
                } else {
                    RecordingState::Completed
                },
                format!("{e:#}"),
            )
        }
    };
    let rec2 = rec.recorder().clone();
    let reason2 = reason.clone();
    let search = rec.store.as_deref();
    let sealed = match tokio::task::spawn_blocking(move || rec2.finish(state, &reason2)).await {
        Ok(Ok(m)) => {
            tracing::info!(session = %m.session_id, reason = %reason, "session ended; recording sealed");
            if let Some(t) = &search {
                index_text(
                    t.backend.clone(),
                    t.index.clone(),
                    m.session_id,
                    rec.dir().to_owned(),
                )
                .await;
            }
            state.as_str()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "session ended; sealing failed (recovered at next start)");
            "unsealed"
        }
        Err(e) => {
            tracing::error!(error = %e, "sealing task failed (recovered at next start)");
            "unsealed"
        }
    };
    crate::metrics::outcome(&crate::metrics::global().sessions_ended, sealed);
    if let Some(t) = search.filter(|t| audits_start_and_end(&t.info)) {
        audit_session(
            &t.audit,
            rec,
            &t.info,
            ACTION_SESSION_END,
            &t.info.user,
            &format!(
                "protocol={} recording={sealed} reason={reason}",
                t.info.protocol
            ),
        );
    }
}

/// How a relayed session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Why, in words (the recording's end reason).
    pub reason: String,
    /// The recording failed: the session was ended because of it (fail-closed).
    pub recording_failed: bool,
}

/// Runs `relay` until it ends (its output is the reason), the recording fails, the session is
/// stopped from outside (`live`: an operator's terminate, recorded as a `policy` event), or the
/// gateway shuts down — whichever comes first.
pub async fn until_end(
    rec: &SessionRecording,
    relay: impl Future<Output = String>,
    live: &mut LiveHandle,
    shutdown: &mut watch::Receiver<bool>,
) -> Ending {
    let mut failure = rec.failure();
    let limits = live.limits().clone();
    let (reason, recording_failed) = tokio::select! {
        why = relay => (why, false),
        f = failure.wait_for(|f| f.is_some()) => {
            (f.map(|v| v.clone().unwrap_or_default()).unwrap_or_default(), true)
        }
        req = live.stopped() => {
            tracing::warn!(actor = %req.actor, rule = %req.rule, reason = %req.reason, "session stopped by an operator");
            record_stop(rec, &req);
            (req.describe(), false)
        }
        req = limit_reached(rec, &limits) => {
            tracing::warn!(rule = %req.rule, reason = %req.reason, "session limit reached");
            record_stop(rec, &req);
            (req.describe(), false)
        }
        _ = shutdown.wait_for(|s| *s) => ("gateway shutting down".to_string(), false),
    };
    // A relay task may notice the stopped recorder (and win the race) before the failure is
    // seen here; the session still ends because the recording failed.
    let failed = rec.failure().borrow().clone();
    let (reason, recording_failed) = match failed {
        Some(why) if !recording_failed => (why, true),
        _ => (reason, recording_failed),
    };
    if recording_failed {
        tracing::warn!(reason = %reason, "recording failed; disconnecting the client (fail-closed)");
    }
    Ending {
        reason,
        recording_failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSettings;
    use psmgate_codecs::transcript::{keysym, Input};
    use psmgate_storage::index::ListFilter;

    fn type_line(rec: &Recorder, line: &str) {
        for c in line.chars().chain(['\r']) {
            let (key, ch) = keysym::describe(keysym::from_char(c));
            for down in [true, false] {
                rec.input(Input::Key {
                    key: key.clone(),
                    ch,
                    down,
                })
                .unwrap();
            }
        }
    }

    fn found(store: &Store, words: &str) -> Vec<String> {
        store
            .index
            .list(&ListFilter {
                text: Some(words.into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_starts_policy_ends_and_ends_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&psmgate_policy::Config::default(), Some(dir.path())).unwrap();
        let info = |protocol: &str| SessionInfo {
            protocol: protocol.into(),
            user: "alice".into(),
            target: "lab-vnc".into(),
            client_addr: "127.0.0.1:50000".into(),
            policy_version: "sha256:00".into(),
        };
        let rec = start_recording(&store, info("vnc"), RecordingSettings::default())
            .await
            .unwrap();
        let limit = StopRequest {
            actor: "policy".into(),
            reason: "grant expired".into(),
            rule: "grant-expiry".into(),
        };
        record_stop(&rec, &limit);
        // An operator's terminate is audited where it is asked for, not here.
        record_stop(&rec, &StopRequest::terminate("bob", "enough"));
        seal(&rec, &Ok(limit.describe())).await;
        // Web sessions are audited by the web proxy, except for policy limits.
        let web = start_recording(&store, info("web"), RecordingSettings::default())
            .await
            .unwrap();
        record_stop(&web, &limit);
        seal(&web, &Ok("client went away".into())).await;

        let entries = store.audit.read_page(0, 100).unwrap().entries;
        let got: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|e| (e.action.as_str(), e.actor.as_str(), e.session_id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (ACTION_SESSION_START, "alice", rec.session_id()),
                (ACTION_POLICY_ENFORCED, "policy", rec.session_id()),
                (ACTION_SESSION_END, "alice", rec.session_id()),
                (ACTION_POLICY_ENFORCED, "policy", web.session_id()),
            ]
        );
        assert!(entries.iter().all(|e| e.target == "lab-vnc"));
        assert_eq!(entries[0].dir, rec.dir());
        assert_eq!(
            entries[0].detail,
            "protocol=vnc client=127.0.0.1:50000 policy=sha256:00"
        );
        assert_eq!(
            entries[1].detail,
            "rule=grant-expiry user=alice protocol=vnc reason=grant expired"
        );
        assert_eq!(
            entries[2].detail,
            "protocol=vnc recording=completed reason=terminated by policy: grant expired"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sealed_recording_is_searchable_by_what_was_typed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&psmgate_policy::Config::default(), Some(dir.path())).unwrap();
        let info = SessionInfo {
            protocol: "vnc".into(),
            user: "alice".into(),
            target: "lab-vnc".into(),
            ..SessionInfo::default()
        };
        let rec = start_recording(&store, info.clone(), RecordingSettings::default())
            .await
            .unwrap();
        type_line(&rec, "kubectl get pods");
        rec.event(EventKind::Title {
            title: "Cluster console".into(),
        })
        .unwrap();
        let masked = RecordingSettings {
            keystrokes: psmgate_codecs::transcript::KeystrokeMode::Mask,
            ..RecordingSettings::default()
        };
        let secret = start_recording(&store, info, masked).await.unwrap();
        type_line(&secret, "hunter2 kubectl");

        seal(&rec, &Ok("client disconnected".into())).await;
        seal(&secret, &Ok("client disconnected".into())).await;
        assert_eq!(found(&store, "kubectl pods"), [rec.session_id()]);
        assert_eq!(found(&store, "cluster"), [rec.session_id()]);
        assert!(found(&store, "hunter2").is_empty());
        assert!(store.index.without_text().unwrap().is_empty());
    }
}
