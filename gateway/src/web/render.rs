//! The video of a web session: its DOM recording replayed in a headless Chromium, and
//! screenshots of the replay written into the session's recorder, which masks screen regions and
//! encodes AV1 as for VNC and RDP. `web.video` says when: `"live"`, while the session runs, or
//! `"after"`, once it ended (see [After the session](#after-the-session)).
//!
//! # Live
//!
//! One [`Renderer`] per web session. [`Renderer::start`] starts Chromium ([`chromium`]) on a
//! thread of its own (with its own single-threaded runtime: screenshots are decoded there, never
//! on the proxy's threads, and the browser dies with that thread if the gateway is killed). The
//! thread opens an `about:blank` page sized to the admin's viewport, evaluates rrweb's replayer
//! bundle and psmgate's glue (`web-recorder/replay.js`) into it, and then, for every batch the
//! proxy records as a `dom` event:
//!
//! 1. [`Renderer::feed`] queues the batch's events — the masked ones, exactly as stored — without
//!    waiting ([`queue`]: bounded; when the renderer is behind, the oldest batches go and the
//!    page waits for its next full snapshot, with a warning).
//! 2. The thread sends them to `window.__feed` ([`cdp`]: `Runtime.evaluate`), which applies them
//!    at once and answers with the replayed viewport's size (rrweb Meta and viewport events).
//! 3. When something visible changed, at most `recording.max_fps` times a second, it sets the
//!    viewport to that size (`Emulation.setDeviceMetricsOverride`), takes a PNG screenshot
//!    (`Page.captureScreenshot`) and writes its pixels into the recorder ([`frame`]); the
//!    framebuffer keeps only the tiles that changed as damage.
//!
//! [`Renderer::finish`] renders what is still queued, then closes Chromium, within a time limit;
//! the session code calls it before sealing the recording. The DOM recording is the evidence and
//! the video is derived from it: when Chromium is missing, does not start or fails later, the
//! session goes on without video and a warning is logged (see [`unavailable`]).
//!
//! Frames are stamped with the wall clock when they are written (`Recorder::screen`), a little
//! after the DOM events they show (the in-page recorder sends a batch a second).
//!
//! # After the session
//!
//! Nothing is rendered while the session runs. The session keeps the masked events of each
//! `dom` event it stores, with the event's transcript time, in a [`spool::Spool`] (64 MiB per
//! session; the first batch over that ends the video there: a warning and a `marker` event say
//! so, and the DOM recording goes on as usual). When the session ends, the proxy forgets it at
//! once (the user-visible end does not wait) and hands the spool to [`pool::AfterRenders`],
//! which renders at most `web.render_workers` sessions at a time; the others wait with their
//! recordings open. [`Renderer::replay`] runs the same Chromium and replay page as live
//! rendering and replays the spooled batches in *virtual time*: in transcript order, as fast as
//! Chromium goes, with the session's clock read from the batches. A `codecs` frame scheduler on
//! that clock decides when frames are due (when something visible changed, at most
//! `recording.max_fps` a second); a frame due before a batch shows the page before that batch.
//! Each screenshot is written with `Recorder::screen_at` at its transcript time, so frame
//! timestamps are the session's own (the first frame starts the video at 0, as in every
//! recording). The recording's end was noted when the session ended
//! (`Recorder::mark_ended`), so its transcript and manifest end then, not when the video is
//! done; the last frame lasts until that end.
//!
//! Limits, each sealing the recording with the video rendered so far and a `marker` event:
//! 10 minutes per session from its end ([`pool::RENDER_LIMIT`], its wait included); and the
//! gateway stopping, which seals sessions still waiting (and those still live) at once without
//! video and gives the renders under way [`pool::SHUTDOWN_GRACE`] to finish. A gateway that is
//! killed leaves the waiting recordings unsealed: the next start recovers them as
//! `interrupted`, with their DOM recording and without video. Rendering after the session costs
//! about the CPU of live rendering for the same frames (one Chromium start, one screenshot per
//! frame), but in one burst per session and bounded by `web.render_workers`, and idle time
//! costs nothing.

pub mod cdp;
pub mod chromium;
pub mod frame;
pub mod pool;
pub mod queue;
pub mod spool;

use crate::recording::Recorder;
use chromium::{BrowserError, Chromium};
use psmgate_codecs::schedule::FrameScheduler;
use psmgate_policy::WebConfig;
use queue::{FeedQueue, QueuedBatch, QueuedEvent};
use serde_json::{json, Value};
use spool::SpooledBatch;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// Where Chromium is looked for when the policy names none (then `chromium` on `PATH`).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// Largest viewport side rendered; a larger replayed viewport is cut to it.
pub const MAX_SIDE: u32 = 4096;
/// Viewport before the first page says its size.
const INITIAL_VIEWPORT: (u32, u32) = (1024, 768);
/// Most serialized event bytes queued per session.
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;
/// Most batches queued per session (consecutive batches of one page count as one).
const MAX_QUEUED_BATCHES: usize = 256;
/// Largest expression sent in one `Runtime.evaluate` (bigger batches go in several).
const MAX_EVAL_BYTES: usize = 4 * 1024 * 1024;
/// Shortest time between two overflow warnings of one session.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How a session's renderer runs.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The Chromium executable; `None`: [`DEFAULT_CHROMIUM`], else `chromium` on `PATH`.
    pub chromium: Option<PathBuf>,
    /// Most frames a second (`recording.max_fps`).
    pub max_fps: u32,
    /// Longest wait for one DevTools command.
    pub call_timeout: Duration,
    /// Longest wait for the replay page to be ready after Chromium started.
    pub start_timeout: Duration,
    /// Longest time [`Renderer::finish`] takes.
    pub finish_timeout: Duration,
    /// Where Chromium's private profile folder goes.
    pub tmp_dir: PathBuf,
}

impl RenderOptions {
    /// The options the `[web]` policy section and `max_fps` give.
    pub fn new(web: &WebConfig, max_fps: u32) -> RenderOptions {
        RenderOptions {
            chromium: web.chromium.clone(),
            max_fps,
            call_timeout: Duration::from_secs(20),
            start_timeout: Duration::from_secs(30),
            finish_timeout: Duration::from_secs(30),
            tmp_dir: std::env::temp_dir(),
        }
    }
}

/// Why there is no video.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No Chromium executable.
    #[error("{0}")]
    NotFound(String),
    /// The replayer bundle was not installed when psmgate was built.
    #[error("rrweb's replayer was not installed when psmgate was built (run `npm ci` in web-recorder, then rebuild)")]
    NoReplayer,
    /// Chromium failed.
    #[error(transparent)]
    Browser(#[from] BrowserError),
    /// The replay page did not load.
    #[error("the replay page did not load: {0}")]
    Page(String),
    /// A script in the replay page threw.
    #[error("the replay page threw: {0}")]
    Script(String),
    /// A screenshot could not be read.
    #[error("unusable screenshot: {0}")]
    Frame(String),
    /// The renderer's thread could not be started.
    #[error("cannot start the renderer thread: {0}")]
    Thread(String),
}

/// The Chromium executable to run: `configured`, else [`DEFAULT_CHROMIUM`], else `chromium`
/// on `PATH`.
pub fn find_chromium(configured: Option<&Path>) -> Result<PathBuf, RenderError> {
    fn runnable(p: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    if let Some(p) = configured {
        return if runnable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(RenderError::NotFound(format!(
                "web.chromium {} is not an executable file",
                p.display()
            )))
        };
    }
    if runnable(Path::new(DEFAULT_CHROMIUM)) {
        return Ok(PathBuf::from(DEFAULT_CHROMIUM));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_absolute() && runnable(p))
        .ok_or_else(|| {
            RenderError::NotFound(format!(
                "no Chromium: neither {DEFAULT_CHROMIUM} nor chromium on PATH (install it, or set web.chromium)"
            ))
        })
}

/// Whether this gateway can render video: a Chromium executable (see [`find_chromium`]) and
/// rrweb's replayer bundle. Returns the executable.
pub fn available(configured: Option<&Path>) -> Result<PathBuf, RenderError> {
    let exe = find_chromium(configured)?;
    super::recorder::RRWEB_REPLAY.ok_or(RenderError::NoReplayer)?;
    Ok(exe)
}

/// Logs that web sessions get no video, as a warning the first time a reason is seen (and
/// whenever it changes), at debug level after that: an operator without Chromium gets one
/// warning, not one per session.
pub fn unavailable(reason: &dyn std::fmt::Display) {
    static LAST: Mutex<Option<String>> = Mutex::new(None);
    let text = reason.to_string();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.as_deref() == Some(text.as_str()) {
        tracing::debug!(reason = %text, "web session recorded without video");
    } else {
        tracing::warn!(reason = %text, "web sessions are recorded without video (the DOM recording only) until this is fixed");
        *last = Some(text);
    }
}

/// What the proxy and the renderer's thread share.
struct Shared {
    state: Mutex<QueueState>,
    notify: Notify,
    /// Chromium's process group, 0 before it runs.
    pgid: AtomicU32,
    /// Frames written into the recorder.
    frames: AtomicU64,
    /// Replaying after the session: transcript time of the last batch replayed.
    rendered_to: AtomicU64,
}

struct QueueState {
    queue: FeedQueue,
    /// No more batches come; render what is queued and stop.
    closed: bool,
    /// Stop now, without rendering.
    abandoned: bool,
    /// The renderer stopped (failed): batches are not queued any more.
    dead: bool,
    dropped: usize,
    last_warning: Option<Instant>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a renderer replays.
enum Source {
    /// Batches fed as the session records them ([`Renderer::feed`]).
    Live,
    /// A session's spooled batches, in transcript order, replayed on the session's clock;
    /// `end_ms`: when the session ended.
    Spooled {
        batches: Vec<SpooledBatch>,
        end_ms: u64,
    },
}

/// The video renderer of one web session.
pub struct Renderer {
    shared: Arc<Shared>,
    done: Option<oneshot::Receiver<()>>,
    finish_timeout: Duration,
    span: tracing::Span,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("pgid", &self.shared.pgid.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Starts Chromium for one web session recorded by `rec`. Returns once the browser process
    /// runs; its replay page loads meanwhile (batches fed before are queued). Fails when there
    /// is no Chromium or no replayer bundle, or the process cannot be started.
    pub async fn start(rec: Arc<Recorder>, opts: RenderOptions) -> anyhow::Result<Renderer> {
        Self::launch(rec, opts, Source::Live).await
    }

    /// Starts Chromium to replay a web session's spooled batches after the session (see
    /// [After the session](self#after-the-session)): frames are written at the batches'
    /// transcript times, the last one lasting until `end_ms`. Returns once the browser process
    /// runs; [`Renderer::wait`] waits for the end of the replay. Fails like [`Renderer::start`].
    pub async fn replay(
        rec: Arc<Recorder>,
        batches: Vec<SpooledBatch>,
        end_ms: u64,
        opts: RenderOptions,
    ) -> anyhow::Result<Renderer> {
        let r = Self::launch(rec, opts, Source::Spooled { batches, end_ms }).await?;
        r.shared.lock().closed = true;
        Ok(r)
    }

    async fn launch(
        rec: Arc<Recorder>,
        opts: RenderOptions,
        source: Source,
    ) -> anyhow::Result<Renderer> {
        let exe = find_chromium(opts.chromium.as_deref())?;
        let bundle = super::recorder::RRWEB_REPLAY.ok_or(RenderError::NoReplayer)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState {
                queue: FeedQueue::new(MAX_QUEUED_BYTES, MAX_QUEUED_BATCHES),
                closed: false,
                abandoned: false,
                dead: false,
                dropped: 0,
                last_warning: None,
            }),
            notify: Notify::new(),
            pgid: AtomicU32::new(0),
            frames: AtomicU64::new(0),
            rendered_to: AtomicU64::new(0),
        });
        let span = tracing::info_span!("web_video", session = %rec.session_id());
        let (launched_tx, launched_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let worker = Worker {
            rec,
            shared: shared.clone(),
            opts: opts.clone(),
            bundle,
            span: span.clone(),
        };
        std::thread::Builder::new()
            .name("web-video".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = launched_tx.send(Err(RenderError::Thread(e.to_string())));
                        return;
                    }
                };
                rt.block_on(worker.run(exe, launched_tx, source));
                let _ = done_tx.send(());
            })
            .map_err(|e| RenderError::Thread(e.to_string()))?;
        match launched_rx.await {
            Ok(Ok(())) => Ok(Renderer {
                shared,
                done: Some(done_rx),
                finish_timeout: opts.finish_timeout,
                span,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(RenderError::Thread("the renderer thread ended at once".into()).into()),
        }
    }

    /// Queues masked rrweb events of one page (never waits; see [`queue`] for what happens when
    /// the renderer is behind).
    pub fn feed(&self, page: &str, events: Vec<Value>) {
        if events.is_empty() {
            return;
        }
        {
            let st = self.shared.lock();
            if st.dead || st.closed {
                return;
            }
        }
        // Serialized before the lock is taken.
        let queued: Vec<QueuedEvent> = events.iter().map(QueuedEvent::new).collect();
        drop(events);
        let mut st = self.shared.lock();
        if st.dead || st.closed {
            return;
        }
        let pushed = st.queue.push(page, queued);
        if pushed.dropped > 0 {
            st.dropped += pushed.dropped;
            if st.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                let _g = self.span.enter();
                tracing::warn!(
                    dropped_events = st.dropped,
                    "the web video renderer is behind: older DOM events were left out of the video (it resumes at the page's next full snapshot; the DOM recording has them all)"
                );
                st.dropped = 0;
                st.last_warning = Some(Instant::now());
            }
        }
        drop(st);
        self.shared.notify.notify_one();
    }

    /// Frames written into the session's recorder so far.
    pub fn frames(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }

    /// Replaying after the session: the transcript time (ms) of the last batch replayed.
    pub fn rendered_to(&self) -> u64 {
        self.shared.rendered_to.load(Ordering::Relaxed)
    }

    /// Waits until the renderer's thread ended (everything rendered, stopped or failed) and
    /// Chromium is closed. Cancel-safe: waiting again after a cancelled wait goes on waiting.
    pub async fn wait(&mut self) {
        if let Some(done) = self.done.as_mut() {
            let _ = done.await;
            self.done = None;
        }
    }

    /// Stops rendering now, without rendering the rest: Chromium is killed. [`Renderer::wait`]
    /// then returns as soon as the thread noticed.
    pub fn stop(&self) {
        self.abandon();
    }

    /// Renders what is queued, then stops Chromium; within the finish timeout, after which
    /// Chromium is killed.
    pub async fn finish(mut self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
        if let Some(done) = self.done.take() {
            if tokio::time::timeout(self.finish_timeout, done)
                .await
                .is_err()
            {
                let _g = self.span.enter();
                tracing::warn!(
                    "the web video renderer did not finish within {:?}; stopped (the end of the session may be missing from the video)",
                    self.finish_timeout
                );
                self.abandon();
            }
        }
    }

    fn abandon(&self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
            st.abandoned = true;
        }
        self.shared.notify.notify_one();
        let pgid = self.shared.pgid.load(Ordering::SeqCst);
        if pgid != 0 {
            chromium::kill_group(pgid);
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        if self.done.is_some() {
            // Never finished: stop without rendering the rest.
            self.abandon();
        }
    }
}

/// The renderer's thread.
struct Worker {
    rec: Arc<Recorder>,
    shared: Arc<Shared>,
    opts: RenderOptions,
    bundle: &'static str,
    span: tracing::Span,
}

/// What the replay page says after a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    /// The page on screen.
    page: String,
    width: u32,
    height: u32,
}

impl Shown {
    fn from_value(v: &Value) -> Option<Shown> {
        let side = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(|n| n.min(MAX_SIDE))
        };
        Some(Shown {
            page: v.get("page")?.as_str()?.to_string(),
            width: side("width")?,
            height: side("height")?,
        })
    }
}

/// Why rendering stopped early.
enum Stop {
    /// Nothing to report: the recorder takes no more frames (sealed or failed), or the failure
    /// was reported already.
    Quiet,
    /// Chromium failed.
    Failed(RenderError),
}

impl From<BrowserError> for Stop {
    fn from(e: BrowserError) -> Stop {
        Stop::Failed(e.into())
    }
}

impl Worker {
    async fn run(
        self,
        exe: PathBuf,
        launched: oneshot::Sender<Result<(), RenderError>>,
        source: Source,
    ) {
        let _g = self.span.clone().entered();
        let mut browser = match Chromium::launch(&exe, &self.opts.tmp_dir) {
            Ok(b) => b,
            Err(e) => {
                let _ = launched.send(Err(e.into()));
                return;
            }
        };
        self.shared.pgid.store(browser.pid(), Ordering::SeqCst);
        let _ = launched.send(Ok(()));
        let setup = tokio::time::timeout(self.opts.start_timeout, self.open_page(&mut browser));
        let outcome = match setup.await {
            Ok(Ok(session)) => {
                tracing::debug!(chromium = %exe.display(), "web video renderer ready");
                match source {
                    Source::Live => self.render(&mut browser, &session).await,
                    Source::Spooled { batches, end_ms } => {
                        self.replay(&mut browser, &session, batches, end_ms).await
                    }
                }
            }
            Ok(Err(e)) => {
                // Not a failure when the session was given up meanwhile (Chromium was killed).
                if !self.shared.lock().abandoned {
                    unavailable(&e);
                }
                Err(Stop::Quiet)
            }
            Err(_) => {
                unavailable(&RenderError::Page(format!(
                    "not ready within {:?}",
                    self.opts.start_timeout
                )));
                Err(Stop::Quiet)
            }
        };
        if let Err(Stop::Failed(e)) = &outcome {
            // A renderer that was stopped fails as its browser is killed: that was said already.
            if !self.shared.lock().abandoned {
                tracing::warn!(error = %e, "the web video renderer failed; the rest of the session is recorded without video");
            }
        }
        {
            let mut st = self.shared.lock();
            st.dead = true;
            st.queue.take();
        }
        browser.close(Duration::from_secs(3)).await;
        self.shared.pgid.store(0, Ordering::SeqCst);
    }

    async fn call(
        &self,
        b: &mut Chromium,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, BrowserError> {
        b.call(method, params, session, self.opts.call_timeout)
            .await
    }

    /// Opens the replay page; returns its DevTools session.
    async fn open_page(&self, b: &mut Chromium) -> Result<String, RenderError> {
        let target = self
            .call(
                b,
                "Target.createTarget",
                json!({"url": "about:blank"}),
                None,
            )
            .await?;
        let target = target
            .get("targetId")
            .and_then(Value::as_str)
            .ok_or_else(|| RenderError::Page("no targetId".into()))?
            .to_string();
        let attached = self
            .call(
                b,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
                None,
            )
            .await?;
        let session = attached
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| RenderError::Page("no sessionId".into()))?
            .to_string();
        self.viewport(b, &session, INITIAL_VIEWPORT).await?;
        let script = format!(
            "{}\n;{}\n;typeof window.__feed",
            self.bundle,
            super::recorder::REPLAY_GLUE
        );
        let r = self.evaluate(b, &session, script, false).await?;
        match r {
            Value::String(s) if s == "function" => Ok(session),
            other => Err(RenderError::Page(format!(
                "the replayer did not start ({other})"
            ))),
        }
    }

    async fn viewport(
        &self,
        b: &mut Chromium,
        session: &str,
        (width, height): (u32, u32),
    ) -> Result<(), BrowserError> {
        self.call(
            b,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            Some(session),
        )
        .await
        .map(drop)
    }

    /// Evaluates `expression` in the page; its value, or the exception's description.
    async fn evaluate(
        &self,
        b: &mut Chromium,
        session: &str,
        expression: String,
        await_promise: bool,
    ) -> Result<Value, RenderError> {
        let r = self
            .call(
                b,
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": await_promise, "returnByValue": true}),
                Some(session),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex
                .pointer("/exception/description")
                .or_else(|| ex.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("an exception");
            return Err(RenderError::Script(text.chars().take(300).collect()));
        }
        Ok(r.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    /// Replays the queued batches and takes frames until the queue is closed and empty.
    async fn render(&self, b: &mut Chromium, session: &str) -> Result<(), Stop> {
        let gap = Duration::from_millis(1000 / u64::from(self.opts.max_fps.max(1)));
        let mut viewport = INITIAL_VIEWPORT;
        let mut shown: Option<Shown> = None;
        // The page of the last frame: another page on screen (the admin switched tabs) needs a
        // frame even when nothing in it changed.
        let mut framed: Option<String> = None;
        let mut changed = false;
        let mut last_frame: Option<Instant> = None;
        loop {
            let (batches, closed) = {
                let mut st = self.shared.lock();
                if st.abandoned {
                    return Ok(());
                }
                (st.queue.take(), st.closed)
            };
            for batch in &batches {
                if let Some(s) = self.feed(b, session, batch).await? {
                    shown = Some(s);
                }
                changed |= batch.events.iter().any(|e| e.visible);
            }
            if let Some(s) = &shown {
                changed |= framed.as_deref() != Some(s.page.as_str());
            }
            let due = last_frame.map(|t| t + gap);
            let now = Instant::now();
            if changed && (closed || due.is_none_or(|d| now >= d)) {
                if let Some(s) = &shown {
                    if (s.width, s.height) != viewport {
                        self.viewport(b, session, (s.width, s.height)).await?;
                        viewport = (s.width, s.height);
                    }
                    self.frame(b, session, None).await?;
                    last_frame = Some(Instant::now());
                    framed = Some(s.page.clone());
                }
                changed = false;
                continue;
            }
            if closed && batches.is_empty() {
                return Ok(());
            }
            if batches.is_empty() {
                match due.filter(|_| changed) {
                    Some(d) => {
                        tokio::select! {
                            _ = self.shared.notify.notified() => {}
                            _ = tokio::time::sleep_until(d.into()) => {}
                        }
                    }
                    None => self.shared.notify.notified().await,
                }
            }
        }
    }

    /// Replays a session's spooled batches on the session's clock (see
    /// [After the session](self#after-the-session)), frames written at their transcript times.
    async fn replay(
        &self,
        b: &mut Chromium,
        session: &str,
        batches: Vec<SpooledBatch>,
        end_ms: u64,
    ) -> Result<(), Stop> {
        let mut sched = FrameScheduler::new(self.opts.max_fps);
        let mut viewport = INITIAL_VIEWPORT;
        let mut shown: Option<Shown> = None;
        // The page of the last frame: another page on screen needs a frame.
        let mut framed: Option<String> = None;
        for batch in batches {
            if self.shared.lock().abandoned {
                return Ok(());
            }
            let t = batch.t.min(end_ms);
            // A frame due before this batch shows the page as it was before it.
            if let Some(at) = sched.next_frame_at().filter(|at| *at < t) {
                self.frame_at(b, session, shown.as_ref(), &mut viewport, at)
                    .await?;
                framed = shown.as_ref().map(|s| s.page.clone()).or(framed);
                sched.encoded(at);
            }
            let batch = QueuedBatch {
                page: batch.page,
                events: batch.events,
            };
            if let Some(s) = self.feed(b, session, &batch).await? {
                shown = Some(s);
            }
            let switched = shown
                .as_ref()
                .is_some_and(|s| framed.as_deref() != Some(s.page.as_str()));
            if switched || batch.events.iter().any(|e| e.visible) {
                sched.changed(t);
            }
            self.shared.rendered_to.store(t, Ordering::Relaxed);
        }
        if self.shared.lock().abandoned {
            return Ok(());
        }
        // The last change, when due, or at the session's end if that comes first.
        if let Some(at) = sched.next_frame_at() {
            self.frame_at(b, session, shown.as_ref(), &mut viewport, at.min(end_ms))
                .await?;
        }
        self.shared.rendered_to.store(end_ms, Ordering::Relaxed);
        Ok(())
    }

    /// Replaying after the session: a frame of what the page shows (`shown`, at its size) at
    /// transcript time `at`. Nothing before the first page.
    async fn frame_at(
        &self,
        b: &mut Chromium,
        session: &str,
        shown: Option<&Shown>,
        viewport: &mut (u32, u32),
        at: u64,
    ) -> Result<(), Stop> {
        let Some(s) = shown else {
            return Ok(());
        };
        if (s.width, s.height) != *viewport {
            self.viewport(b, session, (s.width, s.height)).await?;
            *viewport = (s.width, s.height);
        }
        self.frame(b, session, Some(at)).await
    }

    /// Sends one batch to the replay page; what it shows afterwards.
    async fn feed(
        &self,
        b: &mut Chromium,
        session: &str,
        batch: &QueuedBatch,
    ) -> Result<Option<Shown>, Stop> {
        let page = Value::String(batch.page.clone()).to_string();
        let mut shown = None;
        let mut events = batch.events.iter().peekable();
        while events.peek().is_some() {
            let mut expr = format!("window.__feed({page},[");
            let mut first = true;
            while let Some(e) = events.peek() {
                if !first && expr.len() + e.json.len() > MAX_EVAL_BYTES {
                    break;
                }
                if !first {
                    expr.push(',');
                }
                expr.push_str(&e.json);
                first = false;
                events.next();
            }
            expr.push_str("])");
            match self.evaluate(b, session, expr, true).await {
                Ok(v) => shown = Shown::from_value(&v).or(shown),
                // The glue catches what a bad event throws; anything else is kept going past.
                Err(RenderError::Script(e)) => {
                    tracing::debug!(error = %e, "a batch did not replay")
                }
                Err(e) => return Err(Stop::Failed(e)),
            }
        }
        Ok(shown)
    }

    /// Takes a screenshot and makes it the session's screen, now or (after the session) as of
    /// transcript time `at`.
    async fn frame(&self, b: &mut Chromium, session: &str, at: Option<u64>) -> Result<(), Stop> {
        let shot = self
            .call(
                b,
                "Page.captureScreenshot",
                json!({"format": "png", "optimizeForSpeed": true, "captureBeyondViewport": false}),
                Some(session),
            )
            .await?;
        let data = shot.get("data").and_then(Value::as_str).unwrap_or_default();
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| Stop::Failed(RenderError::Frame(format!("not base64: {e}"))))?;
        let pic = frame::decode_png(&png, MAX_SIDE)
            .map_err(|e| Stop::Failed(RenderError::Frame(e.to_string())))?;
        // After the session the recorder's worker is waited for (briefly) on this thread, which
        // runs nothing else meanwhile: the next screenshot waits until this frame is taken.
        let shown = match at {
            None => frame::show(&self.rec, &pic),
            Some(t) => frame::show_at(&self.rec, t, &pic),
        };
        match shown {
            Ok(()) => {
                self.shared.frames.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(frame::FrameError::Recorder(e)) => {
                tracing::debug!(error = %e, "the recorder takes no more frames");
                Err(Stop::Quiet)
            }
            Err(e) => Err(Stop::Failed(RenderError::Frame(e.to_string()))),
        }
    }
}

/// What the tests of rendering share.
#[cfg(test)]
mod testing {
    use super::*;
    use psmgate_storage::backend::Backend;

    /// A web session's recording in a new store in `dir`, and the store's backend to read it
    /// back.
    pub(super) fn recorder(dir: &Path) -> (Arc<Recorder>, Arc<dyn Backend>) {
        let (rec, backend) = Recorder::start_in_test_store(dir);
        (Arc::new(rec), backend)
    }

    /// `available`, which CI requires.
    fn required_in_ci(available: bool) -> bool {
        assert!(
            available || std::env::var_os("CI").is_none(),
            "CI renders web video: install Chromium and run npm ci in web-recorder"
        );
        available
    }

    /// Whether this build holds the replayer bundle (refused before any Chromium runs without
    /// it); CI builds must.
    pub(super) fn replayer_built() -> bool {
        required_in_ci(crate::web::recorder::RRWEB_REPLAY.is_some())
    }

    /// Whether web video can be rendered here: Chromium is found and the replayer bundle
    /// built; CI must be able to.
    pub(super) fn can_render() -> bool {
        required_in_ci(find_chromium(None).is_ok() && crate::web::recorder::RRWEB_REPLAY.is_some())
    }

    /// The Chromium profile folders (`psmgate-render-…`) left in `dir`.
    pub(super) fn profiles_left(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("psmgate-render-")
            })
            .map(|e| e.path())
            .collect()
    }

    /// A Tokio runtime with two worker threads.
    pub(super) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{can_render, profiles_left, rt};
    use super::*;
    use psmgate_storage::manifest::RecordingState;

    /// A web session's recording in a new store in `dir`, and render options that keep their
    /// temporary files there.
    fn recorder_and_options(dir: &Path) -> (Arc<Recorder>, RenderOptions) {
        let mut opts = RenderOptions::new(&WebConfig::default(), 10);
        opts.tmp_dir = dir.to_path_buf();
        (super::testing::recorder(dir).0, opts)
    }

    /// A page of 320x200: a black box and masked text.
    fn page_events() -> Vec<Value> {
        page_events_loading("data:,")
    }

    /// [`page_events`] with an image and a style sheet from `url`.
    fn page_events_loading(url: &str) -> Vec<Value> {
        vec![
            json!({"type": 4, "data": {"href": "https://console.invalid/", "width": 320, "height": 200}, "timestamp": 1}),
            json!({"type": 2, "timestamp": 2, "data": {"initialOffset": {"left": 0, "top": 0}, "node":
                {"type": 0, "id": 1, "childNodes": [
                    {"type": 2, "id": 2, "tagName": "html", "attributes": {}, "childNodes": [
                        {"type": 2, "id": 3, "tagName": "head", "attributes": {}, "childNodes": [
                            {"type": 2, "id": 8, "tagName": "link", "attributes": {"rel": "stylesheet", "href": format!("{url}/style.css")}, "childNodes": []}]},
                        {"type": 2, "id": 4, "tagName": "body", "attributes": {"style": "margin:0;background:#fff"}, "childNodes": [
                            {"type": 2, "id": 5, "tagName": "div", "attributes": {"style": "width:100px;height:50px;background:#000"}, "childNodes": []},
                            {"type": 2, "id": 9, "tagName": "img", "attributes": {"src": format!("{url}/logo.png")}, "childNodes": []},
                            {"type": 2, "id": 6, "tagName": "p", "attributes": {}, "childNodes": [
                                {"type": 3, "id": 7, "textContent": "*****"}]}]}]}]}}}),
        ]
    }

    #[test]
    fn a_replayed_page_becomes_the_sessions_screen() {
        if !can_render() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (rec, opts) = recorder_and_options(dir.path());
        // The replayed page refers to a server on loopback, which it must never reach.
        let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        origin.set_nonblocking(true).unwrap();
        let url = format!("http://{}", origin.local_addr().unwrap());
        rt().block_on(async {
            let r = Renderer::start(rec.clone(), opts).await.unwrap();
            // Incremental events of a page never snapshotted are skipped by the replay page.
            r.feed(
                "other",
                vec![json!({"type": 3, "data": {"source": 0}, "timestamp": 0})],
            );
            r.feed("p1", page_events_loading(&url));
            frames(&r, 1).await;
            r.finish().await;
        });
        assert!(
            matches!(origin.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the replayed page reached the network"
        );
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        assert_eq!(m.periods.len(), 1, "{:?}", m.periods);
        assert_eq!((m.periods[0].width, m.periods[0].height), (320, 200));
        assert!(!m.periods[0].segments.is_empty());
        // Chromium's profile folder is gone.
        let left = profiles_left(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    /// Waits until `r` wrote `n` frames, and a little more for the recorder to encode the last
    /// one (it encodes at most 10 frames a second).
    async fn frames(r: &Renderer, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.frames() < n {
            assert!(Instant::now() < deadline, "{} frames, not {n}", r.frames());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Another page of 200x100, empty.
    fn other_page_events() -> Vec<Value> {
        vec![
            json!({"type": 4, "data": {"href": "https://console.invalid/b", "width": 200, "height": 100}, "timestamp": 5}),
            json!({"type": 2, "timestamp": 6, "data": {"initialOffset": {"left": 0, "top": 0}, "node":
                {"type": 0, "id": 1, "childNodes": [
                    {"type": 2, "id": 2, "tagName": "html", "attributes": {}, "childNodes": [
                        {"type": 2, "id": 3, "tagName": "head", "attributes": {}, "childNodes": []},
                        {"type": 2, "id": 4, "tagName": "body", "attributes": {}, "childNodes": []}]}]}}}),
        ]
    }

    #[test]
    fn the_page_whose_events_came_last_is_on_screen() {
        if !can_render() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (rec, opts) = recorder_and_options(dir.path());
        rt().block_on(async {
            let r = Renderer::start(rec.clone(), opts).await.unwrap();
            r.feed("tab-a", page_events());
            frames(&r, 1).await;
            r.feed("tab-b", other_page_events());
            frames(&r, 2).await;
            // Back to the first tab: a change there brings it back on screen, at its size.
            r.feed(
                "tab-a",
                vec![json!({"type": 3, "timestamp": 7, "data": {"source": 0,
                    "texts": [{"id": 7, "value": "hello"}], "attributes": [], "removes": [], "adds": []}})],
            );
            frames(&r, 3).await;
            // Mouse moves in the tab on screen change nothing drawn: no frame.
            r.feed(
                "tab-a",
                vec![json!({"type": 3, "timestamp": 8, "data": {"source": 1, "positions": [{"x": 1, "y": 1, "id": 4, "timeOffset": 0}]}})],
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(r.frames(), 3);
            r.finish().await;
        });
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        let sizes: Vec<(u32, u32)> = m.periods.iter().map(|p| (p.width, p.height)).collect();
        assert_eq!(sizes, [(320, 200), (200, 100), (320, 200)]);
    }

    /// `events` of `page` spooled at `t`.
    fn spooled(t: u64, page: &str, events: Vec<Value>) -> SpooledBatch {
        SpooledBatch {
            t,
            page: page.into(),
            events: events.iter().map(QueuedEvent::new).collect(),
        }
    }

    #[test]
    fn a_session_is_replayed_after_it_ended_on_its_own_clock() {
        if !can_render() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (rec, opts) = recorder_and_options(dir.path());
        let batches = vec![
            spooled(2000, "tab-a", page_events()),
            spooled(6000, "tab-b", other_page_events()),
            // 20 ms later, back to the first tab: framed at 6100 (10 frames a second).
            spooled(
                6020,
                "tab-a",
                vec![json!({"type": 3, "timestamp": 7, "data": {"source": 0,
                    "texts": [{"id": 7, "value": "hello"}], "attributes": [], "removes": [], "adds": []}})],
            ),
            // Mouse moves change nothing drawn.
            spooled(
                7000,
                "tab-a",
                vec![
                    json!({"type": 3, "timestamp": 8, "data": {"source": 1, "positions": [{"x": 1, "y": 1, "id": 4, "timeOffset": 0}]}}),
                ],
            ),
        ];
        let started = Instant::now();
        let frames = rt().block_on(async {
            let mut r = Renderer::replay(rec.clone(), batches, 9000, opts)
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(60), r.wait())
                .await
                .expect("the replay did not end");
            assert_eq!(r.rendered_to(), 9000);
            r.frames()
        });
        assert_eq!(frames, 3);
        // Virtual time: 9 s of session in much less.
        assert!(started.elapsed() < Duration::from_secs(9));
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        let periods: Vec<(u32, u32, u64)> = m
            .periods
            .iter()
            .map(|p| (p.width, p.height, p.start_ms))
            .collect();
        // The first frame starts the video at 0 (as every recording's does); the others are at
        // the session's times, not when they were rendered.
        assert_eq!(periods, [(320, 200, 0), (200, 100, 6000), (320, 200, 6100)]);
    }

    #[test]
    fn a_browser_that_dies_leaves_the_session_without_video() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("chromium");
        std::fs::write(
            &exe,
            "#!/bin/sh
exit 1
",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (rec, mut opts) = recorder_and_options(dir.path());
        opts.chromium = Some(exe);
        let started = Instant::now();
        rt().block_on(async {
            let Ok(r) = Renderer::start(rec.clone(), opts).await else {
                // No replayer bundle in this build: refused before Chromium runs.
                assert!(super::super::recorder::RRWEB_REPLAY.is_none());
                return;
            };
            for _ in 0..100 {
                r.feed("p1", page_events());
            }
            r.finish().await;
        });
        assert!(started.elapsed() < Duration::from_secs(15));
        let m = rec.finish(RecordingState::Completed, "test").unwrap();
        assert!(m.periods.is_empty());
    }

    #[test]
    fn chromium_is_found_where_configured_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("chrome");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let e = find_chromium(Some(&exe)).unwrap_err();
        assert!(e.to_string().contains("not an executable"), "{e}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_chromium(Some(&exe)).unwrap(), exe);
        assert!(find_chromium(Some(dir.path())).is_err());
        assert!(find_chromium(Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn the_replay_state_is_read_safely() {
        assert_eq!(
            Shown::from_value(&json!({"page": "p", "width": 1024, "height": 768})),
            Some(Shown {
                page: "p".into(),
                width: 1024,
                height: 768
            })
        );
        assert_eq!(
            Shown::from_value(&json!({"page": "q", "width": 99999, "height": 10})),
            Some(Shown {
                page: "q".into(),
                width: MAX_SIDE,
                height: 10
            })
        );
        for v in [
            json!({"page": "p", "width": 0, "height": 768}),
            json!({"page": null, "width": 0, "height": 0}),
            json!({"width": 1024, "height": 768}),
            json!({"page": "p", "width": -1, "height": 768}),
            json!({"page": "p", "width": "1", "height": 768}),
            json!(null),
            json!({"page": "p", "width": 5_000_000_000u64, "height": 1}),
        ] {
            assert_eq!(Shown::from_value(&v), None, "{v}");
        }
    }
}
