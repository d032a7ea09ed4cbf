//! Who is browsing: `Proxy-Authorization` → a live web session with its recording.
//!
//! A browser sends its proxy credentials on every CONNECT and every plain-HTTP request, over
//! many connections. psmgate makes one session (one recording) per access grant: the first
//! request with a valid token redeems it (one-time tokens are consumed then) and opens the
//! recording; later requests with the same credentials join that session. The session ends —
//! and its recording is sealed — after `web.idle_timeout` without requests, when the grant
//! expires, or when the gateway stops. A later request with the same token then fails like any
//! used or expired token. With `web.video = "after"` the session ends then too, but its
//! recording stays open until its video is rendered (see `render`'s module docs).
//!
//! The user name names the target like an RDP sign-in: `alice@aws-console` or
//! `AWS-CONSOLE\alice`; the password is the token.

use super::render::pool::AfterJob;
use super::render::queue::QueuedEvent;
use super::render::spool::{Spool, Spooled, MAX_SPOOL_BYTES};
use super::render::{RenderOptions, Renderer};
use super::WebGateway;
use crate::access::AccessError;
use crate::live::{LiveHandle, SessionLimits, StopRequest};
use crate::rdp_gateway::login::Login;
use crate::recording::SessionInfo;
use crate::supervisor::SessionRecording;
use anyhow::{bail, Result};
use base64::Engine as _;
use psmgate_codecs::transcript::EventKind;
use psmgate_policy::{Protocol, WebVideo};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Proxy credentials as the browser sent them.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    /// User and target.
    pub login: Login,
    /// The access token.
    pub token: String,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not even be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsProblem {
    /// No `Proxy-Authorization` header.
    #[error("no proxy credentials")]
    Missing,
    /// Not `Basic`, not base64, not UTF-8 or no `:`.
    #[error("proxy credentials are not Basic user:token")]
    Malformed,
    /// The user name does not name a target.
    #[error("the proxy user name names no target (use user@target)")]
    NoTarget,
}

/// Reads a `Proxy-Authorization` value (`Basic base64(user@target:token)`).
pub fn parse_credentials(value: Option<&[u8]>) -> Result<ProxyCredentials, CredentialsProblem> {
    let value = value.ok_or(CredentialsProblem::Missing)?;
    let text = std::str::from_utf8(value).map_err(|_| CredentialsProblem::Malformed)?;
    let (scheme, rest) = text
        .trim()
        .split_once(' ')
        .ok_or(CredentialsProblem::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(CredentialsProblem::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| CredentialsProblem::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| CredentialsProblem::Malformed)?;
    let (name, token) = decoded
        .split_once(':')
        .ok_or(CredentialsProblem::Malformed)?;
    let login = Login::parse(name).ok_or(CredentialsProblem::NoTarget)?;
    Ok(ProxyCredentials {
        login,
        token: token.to_string(),
    })
}

/// A live web session.
pub struct WebSession {
    /// The grant it runs under.
    pub grant_id: i64,
    /// Gateway user.
    pub user: String,
    /// Web target.
    pub target: String,
    /// Its recording.
    pub rec: SessionRecording,
    /// The grant's expiry, when no rule's terms apply to the session (no deadline watches it):
    /// requests after it are refused and `reap` ends the session. Under a rule, the rule's
    /// `end_at_grant_expiry` decides, through the session's deadline.
    pub expires_at: Option<OffsetDateTime>,
    last_seen: Mutex<Instant>,
    /// The session's tracing span.
    pub span: tracing::Span,
    /// The in-page recorders of this session's pages.
    pub recorders: Mutex<RecorderWatch>,
    /// The rule that ended the session and why (further requests get the block page).
    terminated: Mutex<Option<(String, String)>>,
    /// An operator's lock: while it holds, requests get the lock page.
    lock: tokio::sync::watch::Receiver<Option<crate::live::LockRequest>>,
    /// Set once the recording is being sealed.
    sealing: std::sync::atomic::AtomicBool,
    /// The video renderer (`web.video = "live"` with Chromium available), until the session
    /// ends.
    renderer: Mutex<Option<Renderer>>,
    /// What the video is rendered from once the session ended (`web.video = "after"` with
    /// Chromium available), until the session ends.
    spool: Mutex<Option<Spool>>,
    /// How the video is rendered.
    render_options: RenderOptions,
    /// Its place among the live sessions, until its recording is sealed (or handed to the
    /// video renders).
    live: Mutex<Option<LiveHandle>>,
}

/// Ends `session` by policy when it is stopped from outside (an operator's terminate) or one
/// of its `limits` is reached (`max_session`, grant expiry, or the rule's `idle_timeout`: no
/// user input on its pages for that long): the transcript gets the `policy` event, every
/// further request the block page, and the next reap seals the recording. The watching task
/// ends with the session's live handle.
fn watch_stop(
    session: &Arc<WebSession>,
    mut stop: tokio::sync::watch::Receiver<Option<StopRequest>>,
    limits: SessionLimits,
) {
    let weak = Arc::downgrade(session);
    let rec = session.rec.recorder().clone();
    tokio::spawn(async move {
        let at_deadline = crate::supervisor::limit_reached(&rec, &limits);
        let req = tokio::select! {
            r = stop.wait_for(Option::is_some) => match r {
                Ok(r) => r.clone(),
                Err(_) => None,
            },
            req = at_deadline => Some(req),
        };
        let (Some(req), Some(s)) = (req, weak.upgrade()) else {
            return;
        };
        if s.terminated().is_none() && !s.sealing.load(std::sync::atomic::Ordering::SeqCst) {
            s.span.in_scope(|| {
                tracing::warn!(actor = %req.actor, rule = %req.rule, reason = %req.reason, "web session stopped")
            });
            crate::supervisor::record_stop(&s.rec, &req);
            s.terminate(&req.rule, &req.describe());
        }
    });
}

/// Most pages tracked per session (injected but not yet reporting, or reporting).
const MAX_PAGES: usize = 1024;

/// The in-page recorders of a session: which injected pages have not reported yet, which report,
/// and their masking state. A page that was injected but never reports within the heartbeat
/// timeout, or a reporting page that falls silent (without saying it was hidden or closed),
/// while the session keeps making requests, means the recorder was blocked or removed.
#[derive(Default)]
pub struct RecorderWatch {
    /// Page id → when its HTML was injected.
    pending: HashMap<String, Instant>,
    /// Page id → last batch.
    live: HashMap<String, Instant>,
    /// Page id → server-side masking state.
    pub states: HashMap<String, super::dom::PageState>,
    /// Page id → last title recorded.
    titles: HashMap<String, String>,
    /// Every page id issued to this session (bounded like the rest).
    issued: std::collections::HashSet<String>,
}

impl RecorderWatch {
    /// A page's HTML got the recorder.
    pub fn injected(&mut self, page: &str) {
        if self.pending.len() >= MAX_PAGES {
            // Bounded: the oldest half goes (a flood of pages cannot grow memory).
            let mut ages: Vec<(String, Instant)> = self.pending.drain().collect();
            ages.sort_by_key(|(_, t)| *t);
            self.pending = ages.split_off(ages.len() / 2).into_iter().collect();
        }
        self.pending.insert(page.to_string(), Instant::now());
        if self.issued.len() >= 4 * MAX_PAGES {
            self.issued.clear();
        }
        self.issued.insert(page.to_string());
    }

    /// A batch arrived from `page`: `gone` when the page said it was hidden or closed (it may
    /// fall silent then).
    pub fn reported(&mut self, page: &str, gone: bool) {
        self.pending.remove(page);
        if gone {
            self.live.remove(page);
        } else {
            if self.live.len() >= MAX_PAGES {
                self.live.clear();
            }
            self.live.insert(page.to_string(), Instant::now());
        }
        if self.states.len() >= MAX_PAGES {
            self.states.clear();
        }
    }

    /// Notes `page`'s title; true when it differs from the last one recorded for that page.
    pub fn title_changed(&mut self, page: &str, title: &str) -> bool {
        if self.titles.get(page).is_some_and(|t| t == title) {
            return false;
        }
        if self.titles.len() >= MAX_PAGES {
            self.titles.clear();
        }
        self.titles.insert(page.to_string(), title.to_string());
        true
    }

    /// Whether `page` is an id this session's proxy issued.
    pub fn knows(&self, page: &str) -> bool {
        self.issued.contains(page)
    }

    /// Why the recorders look blocked, if they do (`timeout`: `web.heartbeat_timeout`).
    pub fn silent(&self, timeout: Duration) -> Option<String> {
        if let Some(t) = self
            .pending
            .values()
            .filter(|t| t.elapsed() > timeout)
            .min()
        {
            return Some(format!(
                "a recorded page did not start its recorder within {} s (injected {} s ago)",
                timeout.as_secs(),
                t.elapsed().as_secs()
            ));
        }
        if let Some(t) = self.live.values().filter(|t| t.elapsed() > timeout).min() {
            return Some(format!(
                "a recorded page's recorder stopped reporting {} s ago",
                t.elapsed().as_secs()
            ));
        }
        None
    }
}

impl std::fmt::Debug for WebSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSession")
            .field("grant_id", &self.grant_id)
            .field("user", &self.user)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl WebSession {
    /// Ends the session by policy `rule`: every further request gets the block page naming it.
    /// The first reason given is kept.
    pub fn terminate(&self, rule: &str, why: &str) {
        let mut t = self.terminated.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_none() {
            *t = Some((rule.to_string(), why.to_string()));
        }
    }

    /// The operator's lock on the session, while one holds.
    pub fn locked(&self) -> Option<crate::live::LockRequest> {
        self.lock.borrow().clone()
    }

    /// Why policy ended the session, if it did.
    pub fn terminated(&self) -> Option<String> {
        self.terminated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, why)| why.clone())
    }

    /// The rule that ended the session, if one did.
    pub fn termination_rule(&self) -> Option<String> {
        self.terminated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(rule, _)| rule.clone())
    }

    /// The recorder watch.
    pub fn recorders(&self) -> std::sync::MutexGuard<'_, RecorderWatch> {
        self.recorders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes activity now.
    pub fn touch(&self) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Time since the last request.
    pub fn idle(&self) -> Duration {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Whether the session's DOM batches are to be fed to a live video renderer
    /// ([`WebSession::feed_video`]). A video rendered after the session keeps the batches
    /// itself, from [`WebSession::event`].
    pub fn renders_video(&self) -> bool {
        self.renderer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Hands masked rrweb events of `page`, as recorded, to the video renderer (if any); never
    /// waits.
    pub fn feed_video(&self, page: &str, events: Vec<serde_json::Value>) {
        if let Some(r) = self
            .renderer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            r.feed(page, events);
        }
    }

    /// Records `kind`; a failed recording ends the session (fail-closed) and the caller refuses
    /// the request. A `dom` event's masked events are also kept, as stored and with the
    /// event's time, for a video rendered after the session.
    pub fn event(&self, kind: EventKind) -> Result<()> {
        let spooled = match &kind {
            EventKind::Dom { page, events, .. } if !events.is_empty() && self.spools() => Some((
                page.clone(),
                events.iter().map(QueuedEvent::new).collect::<Vec<_>>(),
            )),
            _ => None,
        };
        let t = self
            .rec
            .stamped_event(kind)
            .map_err(|e| anyhow::anyhow!("recording failed: {e}"))?;
        if let Some((page, events)) = spooled {
            self.spool(t, &page, events);
        }
        Ok(())
    }

    /// Whether `dom` events are kept for a video after the session (and there is room).
    fn spools(&self) -> bool {
        self.spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|s| !s.is_closed())
    }

    /// Keeps a `dom` event's events, recorded at `t`, for the video after the session.
    fn spool(&self, t: u64, page: &str, events: Vec<QueuedEvent>) {
        let pushed = match self
            .spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(s) => s.push(t, page, events),
            None => return,
        };
        if pushed == Spooled::Full {
            let _g = self.span.enter();
            let mib = MAX_SPOOL_BYTES / (1024 * 1024);
            tracing::warn!(
                "the DOM recording passed the {mib} MiB kept for the video rendered after the session: the video ends here (the DOM recording goes on)"
            );
            let label = format!(
                "video incomplete: the DOM recording passed the {mib} MiB kept for the video; the video ends here (the DOM recording goes on)"
            );
            if let Err(e) = self.rec.event(EventKind::Marker { label }) {
                tracing::debug!(error = %e, "the video marker could not be recorded");
            }
        }
    }
}

/// The live sessions, by token digest.
#[derive(Default)]
pub struct Sessions {
    live: tokio::sync::Mutex<HashMap<[u8; 32], Arc<WebSession>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// Why a request was refused at the proxy's door (the browser gets 407).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Credentials unreadable or absent.
    #[error("{0}")]
    Credentials(CredentialsProblem),
    /// The token was refused (the precise reason is audited).
    #[error("access denied: {0}")]
    Denied(String),
    /// The session could not start (policy, recording).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl Sessions {
    /// The session `credentials` belong to, started if need be.
    pub async fn authenticate(
        &self,
        gw: &WebGateway,
        header: Option<&[u8]>,
        client: IpAddr,
    ) -> Result<Arc<WebSession>, Refusal> {
        let creds = match parse_credentials(header) {
            Ok(c) => c,
            Err(CredentialsProblem::Missing) => {
                return Err(Refusal::Credentials(CredentialsProblem::Missing))
            }
            Err(p) => {
                gw.auth.record_failure(client, Instant::now());
                gw.audit("web_auth_failed", &format!("client={client} reason={p}"));
                return Err(Refusal::Credentials(p));
            }
        };
        let digest: [u8; 32] = Sha256::digest(creds.token.as_bytes()).into();
        // One redemption at a time: a browser opens several connections at once with the same
        // fresh one-time token, and only the first may consume it.
        let mut live = self.live.lock().await;
        if let Some(s) = live.get(&digest) {
            if s.user == creds.login.user
                && s.target.eq_ignore_ascii_case(&creds.login.target)
                && (s.terminated().is_some()
                    || (s.expires_at.is_none_or(|e| OffsetDateTime::now_utc() < e)
                        && s.rec.failure().borrow().is_none()))
            {
                s.touch();
                return Ok(s.clone());
            }
        }
        // A client that failed too often recently is refused before its token is looked at.
        if gw.auth.check_rate(client, Instant::now()).is_err() {
            gw.audit(
                "web_auth_failed",
                &format!(
                    "client={client} user={} target={} reason=too many failed attempts",
                    creds.login.user, creds.login.target
                ),
            );
            return Err(Refusal::Denied("too many failed attempts".into()));
        }
        let session = self.start(gw, &creds, client).await.inspect_err(|e| {
            gw.audit(
                "web_auth_failed",
                &format!(
                    "client={client} user={} target={} reason={e}",
                    creds.login.user, creds.login.target
                ),
            );
        })?;
        live.insert(digest, session.clone());
        Ok(session)
    }

    async fn start(
        &self,
        gw: &WebGateway,
        creds: &ProxyCredentials,
        client: IpAddr,
    ) -> Result<Arc<WebSession>, Refusal> {
        let config = &gw.config();
        let target = creds
            .login
            .resolve_target(
                config
                    .targets
                    .iter()
                    .filter(|(_, t)| t.protocol == Protocol::Web)
                    .map(|(n, _)| n.as_str()),
            )
            .ok_or_else(|| {
                gw.auth.record_failure(client, Instant::now());
                Refusal::Denied(format!("unknown web target {:?}", creds.login.target))
            })?;
        let now = OffsetDateTime::now_utc();
        let grant = match gw.auth.redeem(
            client,
            &creds.login.user,
            &target,
            &creds.token,
            now,
            Instant::now(),
        ) {
            Ok(g) => g,
            Err(AccessError::Denied(d)) => return Err(Refusal::Denied(d.audit_reason().into())),
            Err(e) => return Err(Refusal::Failed(e.into())),
        };
        let (user, target) = (grant.user.clone(), grant.target.clone());
        if !config.is_allowed(&user, &target).allowed {
            return Err(Refusal::Denied("no rule allows it".into()));
        }
        let settings =
            crate::settings::recording_settings(config, Some(&target)).map_err(Refusal::Failed)?;
        let max_fps = settings.max_fps;
        let info = SessionInfo {
            protocol: "web".into(),
            user: user.clone(),
            target: target.clone(),
            client_addr: client.to_string(),
            policy_version: config.policy_version(),
        };
        let rec = crate::supervisor::start_recording(&gw.store, info.clone(), settings)
            .await
            .map_err(Refusal::Failed)?;
        let limits = SessionLimits::for_grant(config, &grant);
        let watched = limits.clone();
        // Under a rule, its terms decide: the deadline above ends the session at the grant's
        // expiry (with the `policy` event) when the rule says so. Without one, the grant's
        // expiry is checked here (by `reap` and each sign-in).
        let expires_at = config
            .access_policy(&user, &target, now)
            .is_none()
            .then_some(grant.expires_at);
        let live = crate::supervisor::go_live(&gw.store, &rec, &info, limits);
        let stop = live.stop_signal();
        let span = tracing::info_span!("web_session", session = %rec.session_id(), user = %user, target = %target);
        span.in_scope(|| tracing::info!(client = %client, "web session started; recording"));
        // The video is derived from the DOM recording: without it the session goes on.
        let render_options = RenderOptions::new(&config.web, max_fps);
        let (renderer, spool) = match config.web.video {
            WebVideo::Off => (None, None),
            WebVideo::Live => {
                match Renderer::start(rec.recorder().clone(), render_options.clone()).await {
                    Ok(r) => (Some(r), None),
                    Err(e) => {
                        span.in_scope(|| super::render::unavailable(&e));
                        (None, None)
                    }
                }
            }
            // Checked now: without Chromium nothing is kept for a video that cannot be made.
            WebVideo::After => match super::render::available(config.web.chromium.as_deref()) {
                Ok(_) => (None, Some(Spool::new(MAX_SPOOL_BYTES))),
                Err(e) => {
                    span.in_scope(|| super::render::unavailable(&e));
                    (None, None)
                }
            },
        };
        gw.audit(
            "web_session_start",
            &format!(
                "client={client} user={user} target={target} grant={} session={}",
                grant.id,
                rec.session_id()
            ),
        );
        let session = Arc::new(WebSession {
            grant_id: grant.id,
            user,
            target,
            rec,
            expires_at,
            last_seen: Mutex::new(Instant::now()),
            span,
            recorders: Mutex::new(RecorderWatch::default()),
            terminated: Mutex::new(None),
            lock: live.lock_signal(),
            sealing: std::sync::atomic::AtomicBool::new(false),
            renderer: Mutex::new(renderer),
            spool: Mutex::new(spool),
            render_options,
            live: Mutex::new(Some(live)),
        });
        watch_stop(&session, stop, watched);
        Ok(session)
    }

    /// Ends the sessions idle for `idle` or past their grant's expiry (all of them when
    /// `everything`), sealing their recordings. Returns how many ended. A session whose video
    /// is rendered after it ends is handed to the gateway's renders instead, which seal its
    /// recording once the video is done; this does not wait for that.
    pub async fn reap(&self, gw: &WebGateway, idle: Duration, everything: bool) -> usize {
        let ending: Vec<(Arc<WebSession>, String)> = {
            let mut live = self.live.lock().await;
            let now = OffsetDateTime::now_utc();
            let mut out = Vec::new();
            live.retain(|_, s| {
                let why = if let Some(t) = s.terminated() {
                    // Sealed now with the policy's reason; kept until idle, so that its requests
                    // keep getting the block page.
                    if !s.sealing.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        out.push((s.clone(), format!("ended by policy: {t}")));
                    }
                    return !everything && s.idle() < idle;
                } else if everything {
                    Some("gateway shutting down".to_string())
                } else if let Some(f) = s.rec.failure().borrow().clone() {
                    Some(format!("recording failed: {f}"))
                } else if s.expires_at.is_some_and(|e| now >= e) {
                    Some("access grant expired".to_string())
                } else if s.idle() >= idle {
                    Some(format!("idle for {} s", s.idle().as_secs()))
                } else {
                    None
                };
                match why {
                    Some(w) => {
                        if !s.sealing.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            out.push((s.clone(), w));
                        }
                        false
                    }
                    None => true,
                }
            });
            out
        };
        let n = ending.len();
        // The video renderers render what they were given before the recordings are sealed,
        // all at once (each within its time limit).
        let mut finishing = tokio::task::JoinSet::new();
        for (s, _) in &ending {
            let r = s.renderer.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(r) = r {
                finishing.spawn(r.finish());
            }
        }
        while finishing.join_next().await.is_some() {}
        for (s, why) in ending {
            // No longer live: off the list before its recording is sealed or its video made.
            drop(s.live.lock().unwrap_or_else(|p| p.into_inner()).take());
            let failed = why.starts_with("recording failed");
            let outcome = if failed {
                Err(anyhow::anyhow!(why.clone()))
            } else {
                Ok(why.clone())
            };
            let spool = s.spool.lock().unwrap_or_else(|p| p.into_inner()).take();
            match spool {
                Some(spool) => {
                    // The session ends now; its recording is sealed once its video is done.
                    let end_ms = s.rec.mark_ended();
                    s.span.in_scope(|| {
                        tracing::info!(
                            batches = spool.len(),
                            spooled_bytes = spool.bytes(),
                            reason = %why,
                            "web session ended; its video is rendered before the recording is sealed"
                        )
                    });
                    gw.renders.submit(AfterJob {
                        rec: s.rec.clone(),
                        spool,
                        end_ms,
                        options: s.render_options.clone(),
                        outcome,
                        span: s.span.clone(),
                    });
                }
                None => crate::supervisor::seal(&s.rec, &outcome).await,
            }
            gw.audit(
                "web_session_end",
                &format!(
                    "user={} target={} session={} reason={why}",
                    s.user,
                    s.target,
                    s.rec.session_id()
                ),
            );
        }
        n
    }

    /// Number of live sessions.
    pub async fn len(&self) -> usize {
        self.live.lock().await.len()
    }

    /// True when no session is live.
    pub async fn is_empty(&self) -> bool {
        self.live.lock().await.is_empty()
    }
}

/// Refuses a request whose session cannot go on.
pub fn ensure_recording(s: &WebSession) -> Result<()> {
    if let Some(f) = s.rec.failure().borrow().clone() {
        bail!("recording failed: {f}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes()
    }

    #[test]
    fn credentials_name_user_target_and_token() {
        let c = parse_credentials(Some(&basic("alice@aws-console:tok:en"))).unwrap();
        assert_eq!(c.login.user, "alice");
        assert_eq!(c.login.target, "aws-console");
        assert_eq!(c.token, "tok:en");
        let c = parse_credentials(Some(&basic("AWS\\alice:t"))).unwrap();
        assert_eq!(
            (c.login.user.as_str(), c.login.target.as_str()),
            ("alice", "AWS")
        );
        // The token never shows in debug output.
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn unreadable_credentials_say_why() {
        assert_eq!(parse_credentials(None), Err(CredentialsProblem::Missing));
        assert_eq!(
            parse_credentials(Some(b"Bearer abc")),
            Err(CredentialsProblem::Malformed)
        );
        assert_eq!(
            parse_credentials(Some(b"Basic !!!")),
            Err(CredentialsProblem::Malformed)
        );
        assert_eq!(
            parse_credentials(Some(&basic("alice-no-colon"))),
            Err(CredentialsProblem::Malformed)
        );
        assert_eq!(
            parse_credentials(Some(&basic("alice:tok"))),
            Err(CredentialsProblem::NoTarget)
        );
        assert_eq!(
            parse_credentials(Some(&[0xff, 0xfe])),
            Err(CredentialsProblem::Malformed)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_header_is_handled(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let _ = parse_credentials(Some(&bytes));
            let mut b = b"Basic ".to_vec();
            b.extend_from_slice(&bytes);
            let _ = parse_credentials(Some(&b));
        }
    }
}
