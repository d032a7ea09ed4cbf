//! What every protocol gateway does around a session, whatever the protocol: accept connections
//! (one task and one tracing span per client), write audit entries, open the recording before
//! anything connects onward, and seal it with the reason the session ended.

use crate::recording::{Recorder, RecordingSettings, SessionInfo};
use crate::store::Store;
use anyhow::Result;
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

/// Appends an entry to the audit log (`recordings/audit.jsonl`); a failure to do so is logged
/// as an error (the session's own outcome does not depend on it).
pub fn audit(store: &Store, actor: &str, action: &str, detail: &str) {
    let r = psmgate_storage::audit::AuditLog::open(store.backend.clone()).and_then(|mut a| {
        a.append(
            time::OffsetDateTime::now_utc(),
            action,
            "",
            "",
            actor,
            detail,
        )
        .map(|_| ())
    });
    if let Err(e) = r {
        tracing::error!(error = %e, "could not write the audit log");
    }
}

/// Opens a session's recording (manifest and index row exist when this returns).
pub async fn start_recording(
    store: &Store,
    info: SessionInfo,
    settings: RecordingSettings,
) -> Result<Arc<Recorder>> {
    let (backend, key, index) = (
        store.backend.clone(),
        store.key.clone(),
        store.index.clone(),
    );
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || Recorder::start(backend, key, index, info, settings))
            .await??,
    ))
}

/// Seals `rec` with the session's outcome: `completed` with the reason the session ended, or
/// `failed` when the recording itself failed.
pub async fn seal(rec: &Arc<Recorder>, outcome: &Result<String>) {
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
    let rec2 = rec.clone();
    let reason2 = reason.clone();
    match tokio::task::spawn_blocking(move || rec2.finish(state, &reason2)).await {
        Ok(Ok(m)) => {
            tracing::info!(session = %m.session_id, reason = %reason, "session ended; recording sealed")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "session ended; sealing failed (recovered at next start)")
        }
        Err(e) => tracing::error!(error = %e, "sealing task failed (recovered at next start)"),
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

/// Runs `relay` until it ends (its output is the reason), the recording fails, or the gateway
/// shuts down — whichever comes first.
pub async fn until_end(
    rec: &Recorder,
    relay: impl Future<Output = String>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ending {
    let mut failure = rec.failure();
    let (reason, recording_failed) = tokio::select! {
        why = relay => (why, false),
        f = failure.wait_for(|f| f.is_some()) => {
            (f.map(|v| v.clone().unwrap_or_default()).unwrap_or_default(), true)
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
