//! [`Recorder`]: the per-session handle, and the worker thread behind it.

use super::settings::RecordingSettings;
use super::sink::StorageSink;
use psmgate_codecs::framebuffer::{Framebuffer, FramebufferError};
use psmgate_codecs::mask::MaskSet;
use psmgate_codecs::schedule::{Decision, FrameScheduler};
use psmgate_codecs::transcript::{Event, EventKind, Input, Transcriber};
use psmgate_codecs::video::{VideoError, VideoTrack};
use psmgate_codecs::Rect;
use psmgate_storage::backend::Backend;
use psmgate_storage::index::{Index, Integrity, IntegrityStatus, SessionRow};
use psmgate_storage::keys::GatewayKey;
use psmgate_storage::manifest::{Manifest, RecordingState};
use psmgate_storage::writer::RecordingWriter;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::watch;

/// Who and what a session is, for the manifest and index.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// `vnc`, `rdp`, `web` or `demo`.
    pub protocol: String,
    /// Gateway user.
    pub user: String,
    /// Target name.
    pub target: String,
    /// Client address.
    pub client_addr: String,
    /// Policy version in force.
    pub policy_version: String,
}

/// Recorder failures.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// Storage failed (disk full, permissions, …).
    #[error("recording storage failed: {0}")]
    Storage(#[from] psmgate_storage::Error),
    /// Video output arrived out of order.
    #[error("recording failed: {0}")]
    Sink(#[from] super::sink::SinkError),
    /// Video pipeline failed.
    #[error("video recording failed: {0}")]
    Video(#[from] VideoError),
    /// Bad screen geometry from the protocol.
    #[error("screen update rejected: {0}")]
    Screen(#[from] FramebufferError),
    /// The transcript queue overflowed (the worker cannot keep up); events would be lost.
    #[error("transcript queue overflow: the recorder cannot keep up")]
    QueueOverflow,
    /// The recorder already stopped (after a failure or finish).
    #[error("recording has stopped: {0}")]
    Stopped(String),
    /// The index could not be updated.
    #[error("recordings index failed: {0}")]
    Index(String),
    /// The worker thread could not be started or panicked.
    #[error("recorder worker failed: {0}")]
    Worker(String),
}

/// Most inputs/events queued before the worker takes them.
const MAX_QUEUED: usize = 100_000;

struct State {
    fb: Option<Framebuffer>,
    dirty_at: Option<u64>,
    inputs: Vec<(u64, Input)>,
    events: Vec<Event>,
    stop: Option<(RecordingState, String)>,
    stopped: Option<String>,
}

struct Shared {
    start: Instant,
    state: Mutex<State>,
    cond: Condvar,
    failure: watch::Sender<Option<String>>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that
        // matters more than losing the session; keep going with the inner value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The recording of one session. Cheap to share by reference across the proxy's tasks.
pub struct Recorder {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<Result<Manifest, RecorderError>>>>,
    session_id: String,
    dir: String,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Opens the recording (manifest, index row) and starts its worker. Call this before
    /// connecting to the target: no recording, no session.
    pub fn start(
        backend: Arc<dyn Backend>,
        key: Arc<GatewayKey>,
        index: Arc<dyn Index>,
        info: SessionInfo,
        settings: RecordingSettings,
    ) -> Result<Recorder, RecorderError> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let started = OffsetDateTime::now_utc();
        let mut manifest = Manifest::new(&session_id, &info.protocol, started);
        manifest.user = info.user.clone();
        manifest.target = info.target.clone();
        manifest.client_addr = info.client_addr.clone();
        manifest.policy_version = info.policy_version.clone();
        manifest.mask_rule_ids = settings.mask_ids();
        manifest.encoder = settings.video.encoder.as_str().to_string();
        manifest.gateway = format!("psmgate {}", env!("CARGO_PKG_VERSION"));
        let after_seal = AfterSeal {
            backend: backend.clone(),
            key: key.clone(),
            index: index.clone(),
            dir: String::new(),
        };
        let writer = RecordingWriter::create(backend, key, manifest)?;
        let dir = writer.dir().to_string();
        index
            .upsert(&SessionRow::from_manifest(
                writer.manifest(),
                &dir,
                0,
                OffsetDateTime::now_utc(),
            ))
            .map_err(|e| RecorderError::Index(e.to_string()))?;
        let (failure, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            start: Instant::now(),
            state: Mutex::new(State {
                fb: None,
                dirty_at: None,
                inputs: Vec::new(),
                events: vec![Event {
                    t: 0,
                    kind: EventKind::Session {
                        phase: "start".into(),
                        detail: None,
                    },
                }],
                stop: None,
                stopped: None,
            }),
            cond: Condvar::new(),
            failure,
        });
        let sink = StorageSink::new(writer);
        let worker_shared = shared.clone();
        let after_seal = AfterSeal {
            dir: dir.clone(),
            ..after_seal
        };
        let span = tracing::info_span!("recorder", session = %session_id);
        let worker = std::thread::Builder::new()
            .name(format!("rec-{}", &session_id[..8]))
            .spawn(move || {
                let _g = span.enter();
                run(worker_shared, sink, settings, after_seal)
            })
            .map_err(|e| RecorderError::Worker(e.to_string()))?;
        Ok(Recorder {
            shared,
            worker: Mutex::new(Some(worker)),
            session_id,
            dir,
        })
    }

    /// The session id (also the recording's folder name).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The recording folder below the storage root.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Milliseconds since the session started (the transcript's clock).
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// Sets or changes the screen size (the protocol's desktop size).
    pub fn resize(&self, width: u32, height: u32) -> Result<(), RecorderError> {
        let t = self.shared.now_ms();
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        match st.fb.as_mut() {
            Some(fb) if (fb.width(), fb.height()) == (width, height) => return Ok(()),
            Some(fb) => fb.resize(width, height)?,
            None => st.fb = Some(Framebuffer::new(width, height)?),
        }
        st.dirty_at.get_or_insert(t);
        st.events.push(Event {
            t,
            kind: EventKind::Resize { width, height },
        });
        drop(st);
        self.shared.cond.notify_one();
        Ok(())
    }

    /// Applies pixel changes to the framebuffer. Returns what `f` returns; fails if no screen
    /// size was set or the recording stopped. Never waits for encoding.
    pub fn screen<R>(
        &self,
        f: impl FnOnce(&mut Framebuffer) -> Result<R, FramebufferError>,
    ) -> Result<R, RecorderError> {
        let t = self.shared.now_ms();
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        let fb = st
            .fb
            .as_mut()
            .ok_or(RecorderError::Screen(FramebufferError::BadSize(0, 0)))?;
        let r = f(fb)?;
        if fb.is_dirty() && st.dirty_at.is_none() {
            st.dirty_at = Some(t);
            drop(st);
            self.shared.cond.notify_one();
        }
        Ok(r)
    }

    /// Records an input event (masked by the worker per policy before it is stored).
    pub fn input(&self, input: Input) -> Result<(), RecorderError> {
        let t = self.shared.now_ms();
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        if st.inputs.len() >= MAX_QUEUED {
            drop(st);
            self.fail(&RecorderError::QueueOverflow);
            return Err(RecorderError::QueueOverflow);
        }
        st.inputs.push((t, input));
        Ok(())
    }

    /// Records a metadata event (title, clipboard, policy, marker, …) at the current time.
    pub fn event(&self, kind: EventKind) -> Result<(), RecorderError> {
        let t = self.shared.now_ms();
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        if st.events.len() >= MAX_QUEUED {
            drop(st);
            self.fail(&RecorderError::QueueOverflow);
            return Err(RecorderError::QueueOverflow);
        }
        st.events.push(Event { t, kind });
        Ok(())
    }

    /// Watches for a recording failure: `Some(reason)` once recording failed.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.failure.subscribe()
    }

    /// Ends the recording: flushes, seals with `state`, updates the index. Blocks until sealed.
    pub fn finish(&self, state: RecordingState, reason: &str) -> Result<Manifest, RecorderError> {
        {
            let mut st = self.shared.lock();
            if st.stop.is_none() {
                st.stop = Some((state, reason.to_string()));
            }
        }
        self.shared.cond.notify_one();
        let handle = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle {
            Some(h) => h
                .join()
                .map_err(|_| RecorderError::Worker("recorder thread panicked".into()))?,
            None => Err(RecorderError::Stopped("already finished".into())),
        }
    }

    fn check_running(st: &State) -> Result<(), RecorderError> {
        match (&st.stopped, &st.stop) {
            (Some(why), _) => Err(RecorderError::Stopped(why.clone())),
            (None, Some(_)) => Err(RecorderError::Stopped("finishing".into())),
            _ => Ok(()),
        }
    }

    fn fail(&self, err: &RecorderError) {
        let msg = err.to_string();
        let mut st = self.shared.lock();
        if st.stop.is_none() {
            st.stop = Some((RecordingState::Failed, msg.clone()));
        }
        drop(st);
        self.shared.failure.send_replace(Some(msg));
        self.shared.cond.notify_one();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A proxy that forgets to finish still gets a sealed recording.
        let mut st = self.shared.lock();
        if st.stop.is_none() {
            st.stop = Some((RecordingState::Completed, "session ended".into()));
        }
        drop(st);
        self.shared.cond.notify_one();
    }
}

/// The worker's per-session state.
struct Worker {
    shared: Arc<Shared>,
    settings: RecordingSettings,
    video: VideoTrack,
    sched: FrameScheduler,
    transcriber: Transcriber,
    shadow: Vec<u32>,
    size: (u32, u32),
    masks: MaskSet,
    pending: Vec<Event>,
    pending_since: Option<u64>,
}

/// What the worker needs once the recording is sealed: index it and verify it, so the index
/// shows the recording's integrity from the start.
struct AfterSeal {
    backend: Arc<dyn Backend>,
    key: Arc<GatewayKey>,
    index: Arc<dyn Index>,
    dir: String,
}

impl AfterSeal {
    fn record(&self, manifest: &Manifest) {
        let bytes = manifest.segment_bytes();
        let row = SessionRow::from_manifest(manifest, &self.dir, bytes, OffsetDateTime::now_utc());
        if let Err(e) = self.index.upsert(&row) {
            tracing::error!(error = %e, "index update failed after seal");
            return;
        }
        let report = psmgate_storage::verify::verify(
            self.backend.as_ref(),
            &self.dir,
            Some(self.key.verifying_key()),
            &mut |_, _| {},
        );
        let integrity = Integrity {
            status: if report.ok {
                IntegrityStatus::Ok
            } else {
                IntegrityStatus::Failed
            },
            message: report.problems.first().map(|p| p.message.clone()),
            verified_at: Some(OffsetDateTime::now_utc()),
        };
        if !report.ok {
            tracing::error!(problem = ?integrity.message, "a freshly sealed recording does not verify");
        }
        if let Err(e) = self.index.set_integrity(&manifest.session_id, &integrity) {
            tracing::error!(error = %e, "could not store the integrity result");
        }
    }
}

fn run(
    shared: Arc<Shared>,
    mut sink: StorageSink,
    settings: RecordingSettings,
    after_seal: AfterSeal,
) -> Result<Manifest, RecorderError> {
    let mut w = Worker {
        shared: shared.clone(),
        video: VideoTrack::new(settings.video.clone()),
        sched: FrameScheduler::new(settings.max_fps),
        transcriber: Transcriber::new(settings.keystrokes, MaskSet::default()),
        settings,
        shadow: Vec::new(),
        size: (0, 0),
        masks: MaskSet::default(),
        pending: Vec::new(),
        pending_since: None,
    };
    let outcome = w.run(&mut sink);
    let (state, reason) = match &outcome {
        Ok(stop) => stop.clone(),
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "recording failed; ending session");
            shared.failure.send_replace(Some(msg.clone()));
            (RecordingState::Failed, msg)
        }
    };
    {
        let mut st = shared.lock();
        st.stopped = Some(reason.clone());
    }
    let sealed = sink.seal(state, &reason);
    match sealed {
        Ok(manifest) => {
            after_seal.record(&manifest);
            tracing::info!(state = %manifest.state, reason = %reason, "recording sealed");
            outcome.map(|_| manifest)
        }
        Err(e) => {
            tracing::error!(error = %e, "sealing failed; the next start recovers the recording");
            shared.failure.send_replace(Some(e.to_string()));
            Err(e.into())
        }
    }
}

impl Worker {
    /// Runs until asked to stop; returns the requested final state.
    fn run(&mut self, sink: &mut StorageSink) -> Result<(RecordingState, String), RecorderError> {
        let mut outs = Vec::new();
        let shared = self.shared.clone();
        loop {
            let mut st = shared.lock();
            let now = self.shared.now_ms();
            if let Some(d) = st.dirty_at.take() {
                self.sched.changed(d);
            }
            let inputs = std::mem::take(&mut st.inputs);
            let events = std::mem::take(&mut st.events);
            let stop = st.stop.clone();
            let encode = self.sched.poll(now) == Decision::EncodeNow
                || (stop.is_some() && self.sched.dirty_since().is_some());
            let mut snapshot = None;
            if encode {
                if let Some(fb) = st.fb.as_mut() {
                    snapshot = Some(self.snapshot(fb));
                }
                self.sched.encoded(now);
            }
            if !encode && inputs.is_empty() && events.is_empty() && stop.is_none() {
                let wait = self.wait_ms(now);
                if wait > 0 {
                    let _unused = shared
                        .cond
                        .wait_timeout(st, Duration::from_millis(wait))
                        .unwrap_or_else(|p| p.into_inner());
                    continue;
                }
            }
            drop(st);

            for (t, input) in inputs {
                self.transcriber.input(t, input, &mut self.pending);
            }
            self.pending.extend(events);
            if let Some((size, damage)) = snapshot {
                self.video.frame(
                    now,
                    &self.shadow,
                    size.0,
                    size.1,
                    &damage,
                    &self.masks,
                    &mut outs,
                )?;
            }
            self.video.poll(now, &mut outs)?;
            let wrote_video = !outs.is_empty();
            for o in outs.drain(..) {
                sink.video(o)?;
            }
            self.transcriber.tick(now, &mut self.pending);
            if !self.pending.is_empty() && self.pending_since.is_none() {
                self.pending_since = Some(now);
            }
            let due = self
                .pending_since
                .is_some_and(|s| now.saturating_sub(s) >= self.settings.events_flush_ms);
            if let Some((state, reason)) = stop {
                self.transcriber.commit(&mut self.pending);
                self.pending.push(Event {
                    t: now,
                    kind: EventKind::Session {
                        phase: "end".into(),
                        detail: Some(reason.clone()),
                    },
                });
                self.video.finish(now, &mut outs)?;
                for o in outs.drain(..) {
                    sink.video(o)?;
                }
                self.flush_events(sink)?;
                return Ok((state, reason));
            }
            if wrote_video || due {
                self.flush_events(sink)?;
            }
            sink.checkpoint_if_due(Instant::now())?;
        }
    }

    fn flush_events(&mut self, sink: &mut StorageSink) -> Result<(), RecorderError> {
        if !self.pending.is_empty() {
            self.pending.sort_by_key(|e| e.t);
            sink.events(&self.pending)?;
            self.pending.clear();
        }
        self.pending_since = None;
        Ok(())
    }

    /// Copies what changed into the worker's own copy of the screen, so the protocol's lock is
    /// held only for a memcpy, never for conversion or encoding.
    fn snapshot(&mut self, fb: &mut Framebuffer) -> ((u32, u32), Vec<Rect>) {
        let size = (fb.width(), fb.height());
        let damage = fb.take_damage();
        if size != self.size {
            self.size = size;
            self.shadow = fb.pixels().to_vec();
            self.masks = self.settings.masks_for(size.0, size.1);
            self.transcriber.set_masks(self.masks.clone());
        } else {
            for r in &damage {
                fb.copy_into(*r, &mut self.shadow);
            }
        }
        (size, damage)
    }

    /// How long the worker may sleep: until the next frame is due, the video track has a
    /// deadline, events must be written, or at most a second (checkpoints, text commits).
    fn wait_ms(&self, now: u64) -> u64 {
        let mut until = now + 1000;
        if let Decision::At(t) = self.sched.poll(now) {
            until = until.min(t);
        }
        if let Some(t) = self.video.next_deadline(now) {
            until = until.min(t);
        }
        if let Some(s) = self.pending_since {
            until = until.min(s + self.settings.events_flush_ms);
        }
        until.saturating_sub(now)
    }
}
