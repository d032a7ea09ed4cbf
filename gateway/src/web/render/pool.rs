//! Web session videos rendered after their sessions ended (`web.video = "after"`): at most
//! `web.render_workers` at a time, each within a time limit; each recording is sealed once its
//! video is done (see [After the session](super#after-the-session)).
//!
//! A session's job, from the moment the session ended:
//! 1. waits for a free worker, at most until the session's time limit ([`RENDER_LIMIT`]);
//! 2. replays the session's spooled batches in a Chromium of its own ([`Renderer::replay`]),
//!    until done or the time limit;
//! 3. seals the recording. A render that did not happen or did not finish leaves a `marker`
//!    event saying so and how far the video goes, and a warning.
//!
//! When the gateway stops ([`AfterRenders::close`], then [`AfterRenders::shutdown`]), nothing
//! new starts rendering: jobs waiting for a worker, and sessions ending from then on, are sealed
//! at once without video; renders under way get [`SHUTDOWN_GRACE`] to finish and are then
//! stopped with the video so far.

use super::spool::Spool;
use super::{unavailable, RenderOptions, Renderer};
use crate::recording::Recorder;
use crate::supervisor::SessionRecording;
use psmgate_codecs::transcript::EventKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// Longest time from a session's end until its recording is sealed: waiting for a worker and
/// rendering together.
pub const RENDER_LIMIT: Duration = Duration::from_secs(10 * 60);
/// How long renders under way may go on once the gateway stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a stopped render's Chromium gets to close before the recording is sealed.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Most renders at once, whatever the policy says (it allows 1..=16).
const MAX_WORKERS: u32 = 16;

/// One ended web session whose video is to be rendered.
pub struct AfterJob {
    /// Its recording, open until the job seals it.
    pub rec: SessionRecording,
    /// The batches the session kept for its video.
    pub spool: Spool,
    /// When the session ended (transcript ms, `Recorder::mark_ended`).
    pub end_ms: u64,
    /// How to render.
    pub options: RenderOptions,
    /// How the recording is sealed: the reason the session ended, or its failure.
    pub outcome: anyhow::Result<String>,
    /// The session's tracing span.
    pub span: tracing::Span,
}

impl std::fmt::Debug for AfterJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterJob")
            .field("session", &self.rec.session_id())
            .field("batches", &self.spool.len())
            .field("end_ms", &self.end_ms)
            .finish_non_exhaustive()
    }
}

/// The renders after sessions of one gateway.
pub struct AfterRenders {
    workers: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    jobs: Mutex<JoinSet<()>>,
    limit: Duration,
    grace: Duration,
}

impl std::fmt::Debug for AfterRenders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterRenders")
            .field("free_workers", &self.workers.available_permits())
            .finish_non_exhaustive()
    }
}

impl AfterRenders {
    /// At most `workers` renders at once (`web.render_workers`), with [`RENDER_LIMIT`] and
    /// [`SHUTDOWN_GRACE`].
    pub fn new(workers: u32) -> AfterRenders {
        AfterRenders::with_limits(workers, RENDER_LIMIT, SHUTDOWN_GRACE)
    }

    /// [`AfterRenders::new`] with other limits: `limit` per session, `grace` at shutdown.
    pub fn with_limits(workers: u32, limit: Duration, grace: Duration) -> AfterRenders {
        let (stop, _) = watch::channel(false);
        AfterRenders {
            workers: Arc::new(Semaphore::new(workers.clamp(1, MAX_WORKERS) as usize)),
            stop,
            jobs: Mutex::new(JoinSet::new()),
            limit,
            grace,
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        // Jobs that are done are forgotten.
        while jobs.try_join_next().is_some() {}
        jobs
    }

    /// Takes an ended session: its video is rendered when a worker is free, then its recording
    /// is sealed. Never waits. Needs the Tokio runtime.
    pub fn submit(&self, job: AfterJob) {
        let span = job.span.clone();
        let run = run(
            job,
            self.workers.clone(),
            self.stop.subscribe(),
            self.limit,
            self.grace,
        );
        self.jobs().spawn(run.instrument(span));
    }

    /// Recordings not sealed yet: waiting for a worker or being rendered.
    pub fn pending(&self) -> usize {
        self.jobs().len()
    }

    /// The gateway stops: nothing starts rendering any more. Jobs waiting for a worker, and
    /// jobs submitted from now on, seal their recordings at once without video; renders under
    /// way get the shutdown grace.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    /// [`AfterRenders::close`], then waits until every recording is sealed (at most about the
    /// shutdown grace, plus closing Chromium and sealing).
    pub async fn shutdown(&self) {
        self.close();
        loop {
            let mut jobs = std::mem::take(&mut *self.jobs());
            if jobs.is_empty() {
                return;
            }
            while jobs.join_next().await.is_some() {}
        }
    }
}

/// Records a `marker` event (at the session's end: the recording noted it) and logs it.
fn note(rec: &Recorder, label: String) {
    tracing::warn!("{label}");
    if let Err(e) = rec.event(EventKind::Marker { label }) {
        tracing::debug!(error = %e, "the video marker could not be recorded");
    }
}

/// `ms` as seconds, for messages.
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Resolves when the gateway stops (or the pool is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run(
    job: AfterJob,
    workers: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    limit: Duration,
    grace: Duration,
) {
    let AfterJob {
        rec,
        spool,
        end_ms,
        options,
        outcome,
        ..
    } = job;
    let deadline = Instant::now() + limit;
    let failed = rec.failure().borrow().is_some();
    if failed || spool.is_empty() {
        // Nothing to render (a failed recording takes no more frames).
        crate::supervisor::seal(&rec, &outcome).await;
        return;
    }
    let permit = if *stop.borrow() {
        None
    } else {
        tokio::select! {
            p = workers.acquire_owned() => p.ok(),
            _ = tokio::time::sleep_until(deadline) => None,
            _ = stopping(&mut stop) => None,
        }
    };
    let Some(_permit) = permit else {
        let why = if *stop.borrow() {
            "the gateway stopped before its turn".to_string()
        } else {
            format!(
                "its turn did not come within {} (web.render_workers)",
                seconds(limit.as_millis() as u64)
            )
        };
        note(
            &rec,
            format!("video not rendered: {why}; the DOM recording is complete"),
        );
        crate::supervisor::seal(&rec, &outcome).await;
        return;
    };
    let started = std::time::Instant::now();
    let mut r = match Renderer::replay(
        rec.recorder().clone(),
        spool.into_batches(),
        end_ms,
        options,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            unavailable(&e);
            crate::supervisor::seal(&rec, &outcome).await;
            return;
        }
    };
    let stopped = tokio::select! {
        _ = r.wait() => None,
        _ = tokio::time::sleep_until(deadline) => Some(format!(
            "rendering reached the time limit of {}",
            seconds(limit.as_millis() as u64)
        )),
        _ = stopping(&mut stop) => {
            tokio::select! {
                _ = r.wait() => None,
                _ = tokio::time::sleep(grace) => Some("the gateway stopped while it was rendered".to_string()),
            }
        }
    };
    match stopped {
        Some(why) => {
            r.stop();
            let _ = tokio::time::timeout(STOP_WAIT, r.wait()).await;
            note(
                &rec,
                format!(
                    "video incomplete: {why}; the video covers the session up to {} (the DOM recording is complete)",
                    seconds(r.rendered_to())
                ),
            );
        }
        None => tracing::info!(
            frames = r.frames(),
            secs = format!("{:.1}", started.elapsed().as_secs_f64()),
            "web session video rendered after the session"
        ),
    }
    drop(r);
    crate::supervisor::seal(&rec, &outcome).await;
}

#[cfg(test)]
mod tests {
    use super::super::testing::{profiles_left, recorder, replayer_built, rt};
    use super::*;
    use psmgate_policy::WebConfig;
    use psmgate_storage::backend::Backend;
    use serde_json::{json, Value};
    use std::path::Path;

    /// Render options whose "Chromium" (written to `dir`) starts and then never answers: its
    /// render lasts until stopped; then `N` recordings in a store in `dir`, and the store's
    /// backend to read them back.
    fn stuck_renders<const N: usize>(
        dir: &Path,
    ) -> (RenderOptions, [Arc<Recorder>; N], Arc<dyn Backend>) {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("chromium");
        std::fs::write(&exe, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut opts = RenderOptions::new(&WebConfig::default(), 10);
        opts.chromium = Some(exe);
        opts.tmp_dir = dir.to_path_buf();
        opts.call_timeout = Duration::from_secs(600);
        opts.start_timeout = Duration::from_secs(600);
        let recs: [_; N] = std::array::from_fn(|_| recorder(dir));
        let backend = recs[0].1.clone();
        (opts, recs.map(|(rec, _)| rec), backend)
    }

    fn job(rec: &Arc<Recorder>, opts: &RenderOptions) -> AfterJob {
        let mut spool = Spool::new(super::super::spool::MAX_SPOOL_BYTES);
        let events = [
            json!({"type": 4, "data": {"href": "https://console.invalid/", "width": 320, "height": 200}, "timestamp": 1}),
        ];
        spool.push(
            100,
            "p",
            events
                .iter()
                .map(super::super::queue::QueuedEvent::new)
                .collect(),
        );
        AfterJob {
            rec: SessionRecording::detached(rec.clone()),
            spool,
            end_ms: rec.mark_ended(),
            options: opts.clone(),
            outcome: Ok("test".into()),
            span: tracing::Span::none(),
        }
    }

    /// The `marker` labels of a sealed recording.
    fn markers(backend: &dyn Backend, rec: &Recorder) -> Vec<String> {
        let dir = rec.dir();
        let m: Value =
            serde_json::from_slice(&backend.read(&format!("{dir}/manifest.json")).unwrap())
                .unwrap();
        let mut out = Vec::new();
        for f in m["events"].as_array().unwrap() {
            let text = backend
                .read(&format!("{dir}/{}", f.as_str().unwrap()))
                .unwrap();
            for line in String::from_utf8(text).unwrap().lines() {
                let e: Value = serde_json::from_str(line).unwrap();
                if e["type"] == "marker" {
                    out.push(e["label"].as_str().unwrap().to_string());
                }
            }
        }
        out
    }

    #[test]
    fn renders_wait_for_a_worker_and_end_at_the_time_limit() {
        if !replayer_built() {
            // Refused before any Chromium runs: nothing to wait for.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (opts, [a, b], backend) = stuck_renders(dir.path());
        let started = std::time::Instant::now();
        rt().block_on(async {
            let pool = AfterRenders::with_limits(1, Duration::from_millis(1500), SHUTDOWN_GRACE);
            // Both end at once: one gets the worker, the other waits.
            pool.submit(job(&a, &opts));
            pool.submit(job(&b, &opts));
            assert_eq!(pool.pending(), 2);
            while pool.pending() > 0 {
                assert!(started.elapsed() < Duration::from_secs(20), "not sealed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        // Both sealed at about the limit, not when the stuck browser would have given up.
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert!(started.elapsed() < Duration::from_secs(12));
        let mut got = [markers(backend.as_ref(), &a), markers(backend.as_ref(), &b)];
        got.sort();
        assert_eq!(got[0].len(), 1, "{got:?}");
        assert!(
            got[0][0].starts_with("video incomplete: rendering reached the time limit of 1.5 s; the video covers the session up to 0.0 s"),
            "{got:?}"
        );
        assert_eq!(
            got[1],
            ["video not rendered: its turn did not come within 1.5 s (web.render_workers); the DOM recording is complete"]
        );
        // The stuck browser is gone with its profile folder.
        let left = profiles_left(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn shutdown_seals_waiting_recordings_at_once_and_stops_renders_after_the_grace() {
        if !replayer_built() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (opts, [a, b, c, empty], backend) = stuck_renders(dir.path());
        let (elapsed, pending_after) = rt().block_on(async {
            let pool =
                AfterRenders::with_limits(1, Duration::from_secs(600), Duration::from_millis(1000));
            pool.submit(job(&a, &opts));
            tokio::time::sleep(Duration::from_millis(200)).await;
            pool.submit(job(&b, &opts));
            // Nothing spooled: sealed at once, without a marker.
            let mut j = job(&empty, &opts);
            j.spool = Spool::new(10);
            pool.submit(j);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let started = std::time::Instant::now();
            pool.close();
            // Ending after the gateway began to stop: sealed at once too.
            pool.submit(job(&c, &opts));
            pool.shutdown().await;
            (started.elapsed(), pool.pending())
        });
        assert_eq!(pending_after, 0);
        assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
        let ma = markers(backend.as_ref(), &a);
        assert_eq!(ma.len(), 1, "{ma:?}");
        assert!(
            ma[0].starts_with(
                "video incomplete: the gateway stopped while it was rendered; the video covers the session up to"
            ),
            "{ma:?}"
        );
        for r in [&b, &c] {
            let m = markers(backend.as_ref(), r);
            assert_eq!(
                m,
                ["video not rendered: the gateway stopped before its turn; the DOM recording is complete"]
            );
        }
        assert!(markers(backend.as_ref(), &empty).is_empty());
    }
}
