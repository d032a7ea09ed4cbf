//! [`Recorder`]: the per-session handle, and the worker thread behind it.

use super::settings::RecordingSettings;
use super::sink::StorageSink;
use super::viewers::{self, Followed, Viewers};
use psmgate_codecs::framebuffer::{Framebuffer, FramebufferError};
use psmgate_codecs::mask::MaskSet;
use psmgate_codecs::schedule::{Decision, FrameScheduler};
use psmgate_codecs::transcript::{Event, EventKind, Input, Transcriber};
use psmgate_codecs::video::{VideoError, VideoOutput, VideoTrack};
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
/// Most flushes of the video track while its clock catches up to one given time (each flush
/// moves it forward; this only bounds an encoder that never gives its frames back).
const MAX_CATCH_UP: usize = 64;
/// How often a caller waiting for the worker (see [`Recorder::screen_at`]) looks whether the
/// recording stopped meanwhile.
const CLOCK_WAIT: Duration = Duration::from_millis(200);

struct State {
    fb: Option<Framebuffer>,
    dirty_at: Option<u64>,
    inputs: Vec<(u64, Input)>,
    events: Vec<Event>,
    stop: Option<(RecordingState, String)>,
    stopped: Option<String>,
    /// The transcript time the caller asked the video to reach ([`Recorder::screen_at`],
    /// [`Recorder::resize_at`]); `None` while the video follows the wall clock.
    clock: Option<u64>,
    /// The transcript time up to which the worker made every frame that was due (timed video).
    reached: u64,
    /// A timed change is being applied at `clock`: a frame due exactly then waits for it.
    applying: bool,
    /// When the session itself ended (transcript ms, wall time), when that was noted before the
    /// recording is sealed ([`Recorder::mark_ended`]).
    ended: Option<(u64, OffsetDateTime)>,
}

struct Shared {
    start: Instant,
    state: Mutex<State>,
    cond: Condvar,
    /// Wakes callers waiting for the worker's timed video clock.
    clock_cond: Condvar,
    failure: watch::Sender<Option<String>>,
    /// Transcript time (ms) of the latest input; idle time is measured from it.
    last_input_ms: std::sync::atomic::AtomicU64,
    /// Who follows the recording live (see [`viewers`]).
    viewers: Viewers,
}

impl Followed for Shared {
    fn viewers(&self) -> &Viewers {
        &self.viewers
    }

    fn wake(&self) {
        self.cond.notify_one();
    }
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
    /// The session's screen masks (also applied to thumbnails).
    masks: Vec<super::settings::MaskRule>,
}

/// A small, masked picture of a session's screen now (RGB, 8 bits per channel).
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height × 3` bytes, rows top to bottom.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thumbnail({}x{})", self.width, self.height)
    }
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
            last_input_ms: std::sync::atomic::AtomicU64::new(0),
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
                clock: None,
                reached: 0,
                applying: false,
                ended: None,
            }),
            cond: Condvar::new(),
            clock_cond: Condvar::new(),
            failure,
            viewers: Viewers::default(),
        });
        let followed: std::sync::Weak<dyn Followed> = Arc::downgrade(&shared) as _;
        let registration = viewers::register(&session_id, followed);
        let sink = StorageSink::new(writer);
        let worker_shared = shared.clone();
        let masks = settings.masks.clone();
        let after_seal = AfterSeal {
            dir: dir.clone(),
            ..after_seal
        };
        let span = tracing::info_span!("recorder", session = %session_id);
        let worker = std::thread::Builder::new()
            .name(format!("rec-{}", &session_id[..8]))
            .spawn(move || {
                let _g = span.enter();
                let sealed = run(worker_shared, sink, settings, after_seal);
                // Sealed (or failed): no longer followed.
                drop(registration);
                sealed
            })
            .map_err(|e| RecorderError::Worker(e.to_string()))?;
        Ok(Recorder {
            shared,
            worker: Mutex::new(Some(worker)),
            session_id,
            dir,
            masks,
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
        // Once the video follows given times, a wall-clock change happens at the latest of them.
        let t = st.clock.unwrap_or(t);
        if Self::apply_resize(&mut st, t, width, height)? {
            drop(st);
            self.shared.cond.notify_one();
        }
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
        let t = st.clock.unwrap_or(t);
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

    /// Sets or changes the screen size as of transcript time `t_ms`; see
    /// [`Recorder::screen_at`]. The transcript's `resize` event has that time.
    pub fn resize_at(&self, t_ms: u64, width: u32, height: u32) -> Result<(), RecorderError> {
        let (mut st, t) = self.advance(t_ms)?;
        let r = Self::apply_resize(&mut st, t, width, height);
        st.applying = false;
        drop(st);
        self.shared.cond.notify_one();
        r.map(drop)
    }

    /// Applies pixel changes as of transcript time `t_ms` instead of now: for a video made
    /// from what a session recorded, after the fact (a web session's DOM recording replayed
    /// once the session ended).
    ///
    /// From the first call of this or [`Recorder::resize_at`] on, the video follows the times
    /// given instead of the wall clock. They never go backwards (an earlier time counts as the
    /// latest one given). Frames are made on that clock as they are on the wall clock — when
    /// the screen changed, at most `max_fps` a second, each showing the newest state at its
    /// time — and each frame's timestamp is its transcript time, so video and transcript share
    /// one timeline. The video track's flushes happen at the times they are due on that clock.
    /// Before the change is applied the worker makes every frame due before `t_ms` from the
    /// screen as it was, so, unlike [`Recorder::screen`], this waits for the worker (usually
    /// briefly; longer while it encodes): call it where blocking is fine. Wall-clock calls made
    /// afterwards count as happening at the latest time given.
    pub fn screen_at<R>(
        &self,
        t_ms: u64,
        f: impl FnOnce(&mut Framebuffer) -> Result<R, FramebufferError>,
    ) -> Result<R, RecorderError> {
        let (mut st, t) = self.advance(t_ms)?;
        let r = match st.fb.as_mut() {
            None => Err(RecorderError::Screen(FramebufferError::BadSize(0, 0))),
            Some(fb) => f(fb).map_err(RecorderError::from),
        };
        if st.fb.as_ref().is_some_and(Framebuffer::is_dirty) {
            st.dirty_at.get_or_insert(t);
        }
        st.applying = false;
        drop(st);
        self.shared.cond.notify_one();
        r
    }

    /// Notes that the session itself ended now, although its recording is sealed later (after
    /// its video was made from what it recorded, see [`Recorder::screen_at`]): the transcript's
    /// `session` `end` event and the manifest's end time are this time, and events recorded
    /// from now on are stamped with it. The first call counts. Returns the time (ms).
    pub fn mark_ended(&self) -> u64 {
        let t = self.shared.now_ms();
        let mut st = self.shared.lock();
        st.ended.get_or_insert((t, OffsetDateTime::now_utc())).0
    }

    /// Records an input event (masked by the worker per policy before it is stored).
    pub fn input(&self, input: Input) -> Result<(), RecorderError> {
        let t = self.shared.now_ms();
        self.shared
            .last_input_ms
            .fetch_max(t, std::sync::atomic::Ordering::Relaxed);
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        if st.inputs.len() >= MAX_QUEUED {
            drop(st);
            self.fail(&RecorderError::QueueOverflow);
            return Err(RecorderError::QueueOverflow);
        }
        let t = Self::stamp(&st, t);
        st.inputs.push((t, input));
        Ok(())
    }

    /// Records a metadata event (title, clipboard, policy, marker, …) at the current time.
    pub fn event(&self, kind: EventKind) -> Result<(), RecorderError> {
        self.stamped_event(kind).map(drop)
    }

    /// [`Recorder::event`], returning the transcript time the event got.
    pub fn stamped_event(&self, kind: EventKind) -> Result<u64, RecorderError> {
        let t = self.shared.now_ms();
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        if st.events.len() >= MAX_QUEUED {
            drop(st);
            self.fail(&RecorderError::QueueOverflow);
            return Err(RecorderError::QueueOverflow);
        }
        let t = Self::stamp(&st, t);
        st.events.push(Event { t, kind });
        Ok(t)
    }

    /// The time an input or event at `t` gets: never after the session's end once noted.
    fn stamp(st: &State, t: u64) -> u64 {
        st.ended.map_or(t, |(end, _)| t.min(end))
    }

    /// Resizes the framebuffer at `t`; true when the size changed.
    fn apply_resize(
        st: &mut State,
        t: u64,
        width: u32,
        height: u32,
    ) -> Result<bool, RecorderError> {
        match st.fb.as_mut() {
            Some(fb) if (fb.width(), fb.height()) == (width, height) => return Ok(false),
            Some(fb) => fb.resize(width, height)?,
            None => st.fb = Some(Framebuffer::new(width, height)?),
        }
        st.dirty_at.get_or_insert(t);
        st.events.push(Event {
            t,
            kind: EventKind::Resize { width, height },
        });
        Ok(true)
    }

    /// Timed video: moves the video's clock to `t` (never back) and waits until the worker made
    /// every frame due before it. Returns the lock, with `applying` set, and the time.
    fn advance(&self, t: u64) -> Result<(MutexGuard<'_, State>, u64), RecorderError> {
        let mut st = self.shared.lock();
        Self::check_running(&st)?;
        let t = t.max(st.clock.unwrap_or(0));
        st.clock = Some(t);
        st.applying = true;
        self.shared.cond.notify_one();
        while st.reached < t {
            if let Err(e) = Self::check_running(&st) {
                st.applying = false;
                return Err(e);
            }
            st = match self.shared.clock_cond.wait_timeout(st, CLOCK_WAIT) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        if let Err(e) = Self::check_running(&st) {
            st.applying = false;
            return Err(e);
        }
        Ok((st, t))
    }

    /// The screen as it is now, scaled down to at most `max_width` pixels wide (nearest
    /// sample), with the session's masks painted black: a sample inside a masked region is
    /// never read from the screen. `None` before the protocol said the screen size.
    pub fn thumbnail(&self, max_width: u32) -> Option<Thumbnail> {
        let st = self.shared.lock();
        let fb = st.fb.as_ref()?;
        let (w, h) = (fb.width(), fb.height());
        let scale = (f64::from(w) / f64::from(max_width.max(1))).max(1.0);
        let tw = ((f64::from(w) / scale).round() as u32).clamp(1, w);
        let th = ((f64::from(h) / scale).round() as u32).clamp(1, h);
        let masks = psmgate_codecs::mask::MaskSet::new(
            self.masks.iter().map(|m| {
                let (x, y, mw, mh) = m.region.resolve(w, h);
                psmgate_codecs::mask::Mask {
                    id: m.id.clone(),
                    rect: Rect::new(x, y, mw, mh),
                }
            }),
            w,
            h,
        );
        let mut rgb = Vec::with_capacity((tw * th * 3) as usize);
        for ty in 0..th {
            let y = (((f64::from(ty) + 0.5) * scale) as u32).min(h - 1);
            for tx in 0..tw {
                let x = (((f64::from(tx) + 0.5) * scale) as u32).min(w - 1);
                let p = if masks.covers(x, y) {
                    0
                } else {
                    fb.pixel(x, y)
                };
                rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
            }
        }
        Some(Thumbnail {
            width: tw,
            height: th,
            rgb,
        })
    }

    /// Inputs and events waiting for the worker.
    pub fn queue_depth(&self) -> usize {
        let st = self.shared.lock();
        st.inputs.len() + st.events.len()
    }

    /// Notes that the user did something now without recording an input event (a web page's
    /// DOM recording holds the input itself): resets [`Recorder::idle_for`].
    pub fn note_input(&self) {
        let t = self.shared.now_ms();
        self.shared
            .last_input_ms
            .fetch_max(t, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the latest input (or since the session started, before any).
    pub fn idle_for(&self) -> Duration {
        let last = self
            .shared
            .last_input_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_millis(self.shared.now_ms().saturating_sub(last))
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
        self.shared.clock_cond.notify_all();
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
    /// Timed video: the time the video track's flushes were brought to.
    video_now: u64,
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
        video_now: 0,
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
    let ended = {
        let mut st = shared.lock();
        st.stopped = Some(reason.clone());
        st.ended.map(|(_, at)| at)
    };
    shared.clock_cond.notify_all();
    let sealed = match ended {
        Some(at) => sink.seal_at(state, &reason, at),
        None => sink.seal(state, &reason),
    };
    // The seal record and its checkpoint are chained (or sealing failed): no read waits for more.
    shared.viewers.end();
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
            let ended = st.ended.map(|(t, _)| t);
            let timed = st.clock.is_some();
            // Shorter fragments while someone follows the recording live (on the wall clock
            // only: a video made after the fact is not watched as it is made).
            let live = (!timed && shared.viewers.watched()).then_some(viewers::LIVE_FRAGMENT_MS);
            if self.video.live_interval() != live {
                self.video.set_live_interval(live);
            }
            // A frame at `frame_at`; then the video's clock is at `until`.
            let (frame_at, until) = match st.clock {
                None => {
                    let encode = self.sched.poll(now) == Decision::EncodeNow
                        || (stop.is_some() && self.sched.dirty_since().is_some());
                    (encode.then_some(now), now)
                }
                Some(target) => {
                    let end = stop.is_some().then(|| ended.unwrap_or(target));
                    self.timed_step(target, st.reached, st.applying, end)
                }
            };
            let mut snapshot = None;
            let mut changed_at = None;
            if let Some(at) = frame_at {
                if let Some(fb) = st.fb.as_mut() {
                    snapshot = Some(self.snapshot(fb));
                }
                changed_at = self.sched.dirty_since();
                self.sched.encoded(at);
            }
            let advancing = timed && st.reached < until;
            if frame_at.is_none()
                && !advancing
                && inputs.is_empty()
                && events.is_empty()
                && stop.is_none()
            {
                let wait = self.wait_ms(now, timed);
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
            if let (Some((size, damage)), Some(at)) = (snapshot, frame_at) {
                if timed {
                    self.video_until(at, &mut outs)?;
                }
                let encoding = Instant::now();
                self.video.frame(
                    at,
                    &self.shadow,
                    size.0,
                    size.1,
                    &damage,
                    &self.masks,
                    &mut outs,
                )?;
                let m = crate::metrics::global();
                m.encode_seconds.observe(encoding.elapsed().as_secs_f64());
                // Wall-clock lag means something only on the session's live clock.
                if let (false, Some(changed)) = (timed, changed_at) {
                    let lag_ms = self.shared.now_ms().saturating_sub(changed);
                    m.encode_lag_seconds.observe(lag_ms as f64 / 1000.0);
                }
            }
            if timed {
                self.video_until(until, &mut outs)?;
                let mut st = shared.lock();
                st.reached = st.reached.max(until);
                drop(st);
                shared.clock_cond.notify_all();
            } else {
                self.video.poll(now, &mut outs)?;
            }
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
                    t: ended.unwrap_or(now),
                    kind: EventKind::Session {
                        phase: "end".into(),
                        detail: Some(reason.clone()),
                    },
                });
                // Timed video ends at the session's end (`until`, at least the last time given).
                self.video
                    .finish(if timed { until } else { now }, &mut outs)?;
                for o in outs.drain(..) {
                    sink.video(o)?;
                }
                self.flush_events(sink)?;
                return Ok((state, reason));
            }
            let mut chained = wrote_video;
            if wrote_video || due {
                chained |= self.flush_events(sink)?;
            }
            chained |= sink.checkpoint_if_due(Instant::now())?;
            if chained {
                shared.viewers.wrote();
            }
        }
    }

    /// Writes the pending transcript events; true when there were some.
    fn flush_events(&mut self, sink: &mut StorageSink) -> Result<bool, RecorderError> {
        let any = !self.pending.is_empty();
        if any {
            self.pending.sort_by_key(|e| e.t);
            sink.events(&self.pending)?;
            self.pending.clear();
        }
        self.pending_since = None;
        Ok(any)
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

    /// Timed video (see [`Recorder::screen_at`]): the frame to make now, if any, and the time
    /// the video's clock reaches. `target` is the time asked for, `reached` the time reached so
    /// far, `applying` whether a change at `target` is being applied; `end` is set when the
    /// recording stops (the session's end).
    ///
    /// A frame due before `target` shows the screen before the change at `target`; one due
    /// exactly then waits for that change. At the end the last change is never dropped: it is
    /// framed when due, or at the end if that comes first.
    fn timed_step(
        &self,
        target: u64,
        reached: u64,
        applying: bool,
        end: Option<u64>,
    ) -> (Option<u64>, u64) {
        let until = end.map_or(target, |e| e.max(target));
        let frame_at = self.sched.next_frame_at().and_then(|due| {
            let due = due.max(reached);
            if end.is_some() {
                // The latest state is shown before the end, so that its frame (which lasts at
                // least a millisecond) ends with the session.
                Some(due.min(until.saturating_sub(1)).max(reached))
            } else if due < target || (due == target && !applying) {
                Some(due)
            } else {
                None
            }
        });
        (frame_at, until)
    }

    /// Timed video: flushes what the video track has due before `t`, at the times it is due
    /// (fragments, closing an idle frame), as the wall clock would have.
    fn video_until(&mut self, t: u64, outs: &mut Vec<VideoOutput>) -> Result<(), RecorderError> {
        for _ in 0..MAX_CATCH_UP {
            match self.video.next_deadline(self.video_now) {
                Some(d) if d < t => {
                    self.video.poll(d, outs)?;
                    if d <= self.video_now {
                        break;
                    }
                    self.video_now = d;
                }
                _ => break,
            }
        }
        self.video_now = self.video_now.max(t);
        Ok(())
    }

    /// How long the worker may sleep: until the next frame is due, the video track has a
    /// deadline, events must be written, or at most a second (checkpoints, text commits). A
    /// timed video's frames and deadlines are on its own clock: its caller wakes the worker.
    fn wait_ms(&self, now: u64, timed: bool) -> u64 {
        let mut until = now + 1000;
        if !timed {
            if let Decision::At(t) = self.sched.poll(now) {
                until = until.min(t);
            }
            if let Some(t) = self.video.next_deadline(now) {
                until = until.min(t);
            }
        }
        if let Some(s) = self.pending_since {
            until = until.min(s + self.settings.events_flush_ms);
        }
        until.saturating_sub(now)
    }
}

#[cfg(test)]
impl Recorder {
    /// A web session's recording in a new store in `dir` (default configuration and
    /// settings), and the store's backend to read it back.
    pub(crate) fn start_in_test_store(dir: &std::path::Path) -> (Recorder, Arc<dyn Backend>) {
        let config = psmgate_policy::Config::default();
        let store = crate::store::Store::open(&config, Some(dir)).unwrap();
        let info = SessionInfo {
            protocol: "web".into(),
            ..SessionInfo::default()
        };
        let rec = Recorder::start(
            store.backend.clone(),
            store.key.clone(),
            store.index.clone(),
            info,
            RecordingSettings::default(),
        )
        .unwrap();
        (rec, store.backend.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmgate_storage::manifest::Manifest;

    #[test]
    fn thumbnails_are_scaled_and_never_show_a_masked_pixel() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&psmgate_policy::Config::default(), Some(dir.path()))
            .unwrap();
        use psmgate_policy::mask::Dim;
        let mask = crate::recording::MaskRule {
            id: "left-half".into(),
            region: psmgate_policy::MaskRegion {
                id: "left-half".into(),
                x: Dim::Px(0),
                y: Dim::Px(0),
                width: Dim::Percent(50.0),
                height: Dim::Percent(100.0),
            },
        };
        let rec = Recorder::start(
            store.backend.clone(),
            store.key.clone(),
            store.index.clone(),
            SessionInfo::default(),
            RecordingSettings {
                masks: vec![mask],
                ..RecordingSettings::default()
            },
        )
        .unwrap();
        assert!(rec.thumbnail(320).is_none(), "no screen yet");
        rec.resize(1280, 720).unwrap();
        rec.screen(|fb| fb.fill_rect(Rect::new(0, 0, 1280, 720), 0x00ff_8040))
            .unwrap();
        let t = rec.thumbnail(320).unwrap();
        assert_eq!((t.width, t.height), (320, 180));
        assert_eq!(t.rgb.len(), 320 * 180 * 3);
        for y in 0..180 {
            for x in 0..320 {
                let i = ((y * 320 + x) * 3) as usize;
                let px = &t.rgb[i..i + 3];
                if x < 160 {
                    assert_eq!(px, [0, 0, 0], "masked half at {x},{y}");
                } else {
                    assert_eq!(px, [0xff, 0x80, 0x40], "screen at {x},{y}");
                }
            }
        }
        // Never scaled up.
        assert_eq!(rec.thumbnail(5000).unwrap().width, 1280);
        rec.finish(RecordingState::Completed, "test").unwrap();
    }

    /// Fills the whole 64×64 screen with `color` as of `t`.
    fn paint(rec: &Recorder, t: u64, color: u32) {
        rec.screen_at(t, |fb| fb.fill_rect(Rect::new(0, 0, 64, 64), color))
            .unwrap();
    }

    /// The children of one MP4 box body: (type, body).
    fn boxes(mut b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            assert!(size >= 8 && size <= b.len(), "bad box size {size}");
            out.push((b[4..8].try_into().unwrap(), &b[8..size]));
            b = &b[size..];
        }
        out
    }

    /// (start, duration) in ms of every sample of the recording's video, in order.
    fn samples(backend: &dyn Backend, rec_dir: &str, m: &Manifest) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for seg in m.periods.iter().flat_map(|p| &p.segments) {
            let bytes = backend.read(&format!("{rec_dir}/{}", seg.file)).unwrap();
            for (kind, moof) in boxes(&bytes) {
                if &kind != b"moof" {
                    continue;
                }
                let traf = boxes(moof)
                    .into_iter()
                    .find(|(k, _)| k == b"traf")
                    .unwrap()
                    .1;
                let mut t = 0;
                for (k, body) in boxes(traf) {
                    if &k == b"tfdt" {
                        t = u64::from_be_bytes(body[4..12].try_into().unwrap());
                    } else if &k == b"trun" {
                        let n = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                        for i in 0..n {
                            let at = 12 + i * 12;
                            let d = u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                            out.push((t, u64::from(d)));
                            t += u64::from(d);
                        }
                    }
                }
            }
        }
        out
    }

    /// The recording's transcript events.
    fn transcript(backend: &dyn Backend, rec_dir: &str, m: &Manifest) -> Vec<Event> {
        m.events
            .iter()
            .flat_map(|f| {
                let text = backend.read(&format!("{rec_dir}/{f}")).unwrap();
                String::from_utf8(text)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<Event>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn frames_written_after_the_fact_have_the_times_given() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, backend) = Recorder::start_in_test_store(dir.path());
        rec.resize_at(1000, 64, 64).unwrap();
        paint(&rec, 1000, 0x00ff_0000);
        paint(&rec, 5000, 0x0000_ff00);
        // 50 ms later: over the rate of 10 frames a second, framed at 5100 — as shown until
        // the next change, which comes much later.
        paint(&rec, 5050, 0x0000_00ff);
        paint(&rec, 9000, 0x00ff_ffff);
        // The session's clock is far behind the times given: they are what counts.
        assert!(rec.now_ms() < 5000);
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        assert_eq!(m.periods.len(), 1);
        let s = samples(backend.as_ref(), rec.dir(), &m);
        let starts: Vec<u64> = s.iter().map(|x| x.0).collect();
        // The first frame starts the video at 0, as every recording's does.
        for t in [0, 5000, 5100, 9000] {
            assert!(starts.contains(&t), "no frame at {t}: {s:?}");
        }
        assert!(
            !starts.contains(&5050),
            "the rate limit was not kept: {s:?}"
        );
        // One timeline without gaps, ending with the last time given.
        for w in s.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "{s:?}");
        }
        let (last, d) = *s.last().unwrap();
        assert_eq!((last, last + d), (9000, 9001), "{s:?}");
        // Fragments were flushed while the clock moved on, as on the wall clock (the frame at
        // 5100 was closed at 6100, long before 9000).
        assert!(starts.iter().any(|t| (6000..9000).contains(t)), "{s:?}");
        let resizes: Vec<u64> = transcript(backend.as_ref(), rec.dir(), &m)
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Resize { .. }))
            .map(|e| e.t)
            .collect();
        assert_eq!(resizes, [1000]);
    }

    #[test]
    fn times_given_never_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, backend) = Recorder::start_in_test_store(dir.path());
        rec.resize_at(300, 64, 64).unwrap();
        paint(&rec, 300, 0x0011_1111);
        paint(&rec, 2000, 0x0022_2222);
        // Earlier than the last time given: counts as that time.
        paint(&rec, 1000, 0x0033_3333);
        rec.resize_at(500, 32, 32).unwrap();
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        let s = samples(backend.as_ref(), rec.dir(), &m);
        assert!(s.windows(2).all(|w| w[0].0 < w[1].0), "{s:?}");
        assert!(s.iter().all(|x| x.0 <= 2003), "{s:?}");
        assert_eq!(m.periods.len(), 2);
        assert!(m.periods[1].start_ms >= 2000, "{:?}", m.periods);
        let resizes: Vec<u64> = transcript(backend.as_ref(), rec.dir(), &m)
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Resize { .. }))
            .map(|e| e.t)
            .collect();
        assert_eq!(resizes, [300, 2000]);
    }

    #[test]
    fn a_session_that_ended_before_its_recording_ends_there() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, backend) = Recorder::start_in_test_store(dir.path());
        rec.event(EventKind::Marker {
            label: "before".into(),
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let end = rec.mark_ended();
        assert_eq!(rec.mark_ended(), end, "the first end counts");
        // The video made afterwards, at the session's times.
        rec.resize_at(end / 2, 64, 64).unwrap();
        paint(&rec, end / 2, 0x0044_4444);
        std::thread::sleep(Duration::from_millis(300));
        let t = rec
            .stamped_event(EventKind::Marker {
                label: "after".into(),
            })
            .unwrap();
        assert_eq!(t, end, "events after the end are stamped at the end");
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        // The manifest's end is the session's, not the sealing's.
        let duration = m.duration_ms.unwrap();
        assert!(
            duration + 5 >= end && duration <= end + 100,
            "{duration} ms, ended at {end}"
        );
        let events = transcript(backend.as_ref(), rec.dir(), &m);
        let last = events.iter().max_by_key(|e| e.t).unwrap();
        assert!(
            matches!(&last.kind, EventKind::Session { phase, .. } if phase == "end"),
            "{events:?}"
        );
        assert_eq!(last.t, end);
        assert!(events.iter().all(|e| e.t <= end), "{events:?}");
        // The last frame lasts until the end.
        let s = samples(backend.as_ref(), rec.dir(), &m);
        let (start, d) = *s.last().unwrap();
        assert_eq!(start + d, end, "{s:?}");
    }

    #[test]
    fn a_read_following_the_chain_waits_for_the_next_lines_and_ends_with_the_seal() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&psmgate_policy::Config::default(), Some(dir.path()))
            .unwrap();
        let rec = Recorder::start(
            store.backend.clone(),
            store.key.clone(),
            store.index.clone(),
            SessionInfo::default(),
            RecordingSettings::default(),
        )
        .unwrap();
        let id = rec.session_id().to_string();
        let chain = format!("{}/chain.jsonl", rec.dir());
        let chain_len = || store.backend.len(&chain).unwrap().unwrap_or(0);
        let fragments = || {
            let text = String::from_utf8(store.backend.read(&chain).unwrap_or_default()).unwrap();
            text.lines()
                .filter(|l| l.contains("\"video/000001.m4s\"") && !l.contains("\"offset\":0,"))
                .count()
        };
        rec.resize(64, 64).unwrap();
        rec.screen(|fb| fb.fill_rect(Rect::new(0, 0, 64, 64), 0x0012_3456))
            .unwrap();
        // A reader asks for the lines after those it has: it is answered once there are more.
        for _ in 0..3 {
            let have = chain_len();
            let range = format!("bytes={}-", have.saturating_sub(1));
            super::viewers::follow_chain(&store, &id, Some(&range), Some("10"));
            if fragments() > 0 {
                break;
            }
            assert!(chain_len() > have, "answered without new lines");
        }
        assert!(fragments() > 0, "a fragment was chained");
        // A reader waiting when the recording ends is answered with the seal, not at its timeout.
        let before = chain_len();
        let range = format!("bytes={}-", before - 1);
        let (seen, waited) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let started = Instant::now();
                super::viewers::follow_chain(&store, &id, Some(&range), Some("10"));
                (chain_len(), started.elapsed())
            });
            std::thread::sleep(Duration::from_millis(50));
            rec.finish(RecordingState::Completed, "test").unwrap();
            reader.join().unwrap()
        });
        assert!(seen > before, "the reader saw the new lines");
        assert!(
            waited < super::viewers::MAX_WAIT,
            "answered after {waited:?}"
        );
        let sealed = String::from_utf8(store.backend.read(&chain).unwrap()).unwrap();
        assert!(sealed.contains("\"file\":\"manifest.json\""));
        // No recording in progress any more: reads are not held.
        let started = Instant::now();
        super::viewers::follow_chain(&store, &id, Some("bytes=0-"), Some("10"));
        assert!(!super::viewers::note_reader(&id));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_stopped_recording_refuses_frames_after_the_fact() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, _backend) = Recorder::start_in_test_store(dir.path());
        rec.resize_at(10, 64, 64).unwrap();
        rec.finish(RecordingState::Completed, "test").unwrap();
        assert!(matches!(
            rec.screen_at(20, |_| Ok(())),
            Err(RecorderError::Stopped(_))
        ));
        assert!(matches!(
            rec.resize_at(20, 8, 8),
            Err(RecorderError::Stopped(_))
        ));
    }
}
