//! The web console gateway: browsers use psmgate as their HTTP(S) proxy; it intercepts TLS with
//! its own CA, names the admin from `Proxy-Authorization`, applies the web rules per host and
//! records every exchange.
//!
//! Per browser request:
//! 1. Identity ([`session`]): `Basic user@target:token` → the live session of that grant, or a
//!    new one (the token is redeemed and the recording opened first). No or bad credentials:
//!    407, audited, nothing forwarded.
//! 2. Policy (`psmgate_policy::Config::web_decision`, per host): `record` intercepts the TLS
//!    connection with a leaf from [`ca::WebCa`]; `tunnel` passes the CONNECT through untouched
//!    (only the tunnel itself is recorded); `deny` intercepts too, so that every request gets
//!    the block page (403 naming the rule) instead of a connection error.
//! 3. Upstream ([`upstream`]): TLS verified against the system roots and `web.extra_roots`,
//!    HTTP/1.1 or HTTP/2, `TCP_NODELAY` on both sides.
//! 4. Transcript ([`handler`]): each exchange is an `http` event when its response body ends
//!    (method, URL, status, sizes, timing, content type, headers) with secret headers, query
//!    values and body fields redacted ([`redact`]) before the event exists; request bodies only
//!    when a rule asks. WebSocket messages are counted and sized, never stored.
//! 5. Video ([`render`]): the masked DOM events of each recorded batch are also replayed in a
//!    headless Chromium the gateway runs for the session, and screenshots of the replay become
//!    the recording's AV1 video, as for VNC and RDP — while the session runs
//!    (`web.video = "live"`), or once it ended (`"after"`: the batches are kept meanwhile, and
//!    at most `web.render_workers` sessions are rendered at once). The video is derived from
//!    the DOM recording: without Chromium the session goes on without it.
//! 6. End: `web.idle_timeout` without requests, the grant's expiry, a recording failure
//!    (fail-closed: further requests get a "session ended" page) or the gateway stopping seals
//!    the recording (after the live video renderer has rendered what it was given). A video
//!    rendered after the session delays only the sealing: the session itself has ended.

pub mod body;
pub mod ca;
pub mod csp;
pub mod dom;
pub mod handler;
pub mod inject;
pub mod page;
pub mod pages;
pub mod recorder;
pub mod redact;
pub mod render;
pub mod reserved;
pub mod session;
pub mod upstream;

use crate::access::TokenAuthenticator;
use crate::store::Store;
use anyhow::{Context, Result};
use psmgate_policy::Config;
use session::{Sessions, WebSession};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Most WebSocket connections tracked at once; beyond it the bookkeeping starts over (messages
/// of sockets opened before are then forwarded without being counted).
const MAX_SOCKETS: usize = 10_000;
/// How often idle and expired sessions are looked for.
const REAP_EVERY: Duration = Duration::from_secs(2);

/// What the web gateway needs.
pub struct WebGateway {
    /// The policy in force (each session keeps the one in force when it started; the proxy
    /// reads it per request).
    pub policy: Arc<crate::policy_cell::PolicyCell>,
    /// Data store.
    pub store: Store,
    /// Access-token checks.
    pub auth: Arc<TokenAuthenticator>,
    /// Live sessions.
    pub sessions: Sessions,
    /// Videos rendered after their sessions (`web.video = "after"`).
    pub renders: render::pool::AfterRenders,
    sockets: Mutex<HashMap<SocketAddr, (Arc<WebSession>, String)>>,
}

impl std::fmt::Debug for WebGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebGateway").finish_non_exhaustive()
    }
}

impl WebGateway {
    /// A gateway over `policy`, `store` and `auth`. How many videos are rendered at once after
    /// their sessions (`web.render_workers`) is read here: a change waits for a restart.
    pub fn new(
        policy: Arc<crate::policy_cell::PolicyCell>,
        store: Store,
        auth: Arc<TokenAuthenticator>,
    ) -> Self {
        let renders = render::pool::AfterRenders::new(policy.get().web.render_workers);
        WebGateway {
            policy,
            store,
            auth,
            sessions: Sessions::default(),
            renders,
            sockets: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force now.
    pub fn config(&self) -> Arc<Config> {
        self.policy.get()
    }

    /// Writes an audit entry.
    pub fn audit(&self, action: &str, detail: &str) {
        crate::supervisor::audit(&self.store, "web-gateway", action, detail);
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, (Arc<WebSession>, String)>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A WebSocket upgrade from browser connection `client` in `session`.
    pub fn websocket_opened(&self, client: SocketAddr, session: Arc<WebSession>, url: String) {
        let mut s = self.sockets();
        if s.len() >= MAX_SOCKETS {
            s.clear();
        }
        s.insert(client, (session, url));
    }

    /// The session and URL of the WebSocket on browser connection `client`.
    pub fn websocket_session(&self, client: SocketAddr) -> Option<(Arc<WebSession>, String)> {
        self.sockets().get(&client).cloned()
    }

    /// The WebSocket on `client` closed.
    pub fn websocket_closed(&self, client: SocketAddr) {
        self.sockets().remove(&client);
    }
}

/// A listener for the proxy: `TCP_NODELAY` set on it is inherited by every accepted browser
/// connection.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .context("creating the web proxy socket")?;
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding web proxy listener {addr}"))?;
    socket.listen(1024).context("listening")
}

/// Runs the proxy on `listener` until `shutdown`; then ends every session. Videos rendered after
/// their sessions: renders under way get `render::pool::SHUTDOWN_GRACE` to finish; recordings
/// still waiting for theirs, and those of the sessions ended now, are sealed without video (a
/// `marker` event says so). Returns once every recording is sealed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Arc<WebGateway>,
    ca: ca::WebCa,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    anyhow::ensure!(
        recorder::available(),
        "the in-page web recorder was not installed when psmgate was built: run `npm ci` in web-recorder (scripts/install-deps.sh --build does), then rebuild"
    );
    let roots = Arc::new(upstream::roots(&gw.config().web.extra_roots)?);
    let connector = upstream::connector(roots.clone())?;
    let ws_tls = Arc::new(upstream::client_config(roots, &[])?);
    let mut stop = shutdown.clone();
    let proxy = hudsucker::Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(connector)
        .with_http_handler(handler::Handler::new(gw.clone()))
        .with_websocket_handler(handler::WsHandler::new(gw.clone()))
        .with_websocket_connector(hudsucker::tokio_tungstenite::Connector::Rustls(ws_tls))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .build()
        .context("building the web proxy")?;
    let reaper = {
        let gw = gw.clone();
        let idle = gw.config().web.idle_timeout.get();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REAP_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                gw.sessions.reap(&gw, idle, false).await;
            }
        })
    };
    let r = proxy.start().await.context("web proxy");
    if r.is_ok() {
        let _ = shutdown.wait_for(|s| *s).await;
    }
    reaper.abort();
    // Nothing starts rendering from now on.
    gw.renders.close();
    let waiting = gw.renders.pending();
    let ended = gw.sessions.reap(&gw, Duration::ZERO, true).await;
    if ended > 0 {
        tracing::info!(ended, "web sessions sealed at shutdown");
    }
    if waiting > 0 {
        tracing::info!(
            recordings = waiting,
            "sealing the web recordings whose video is rendered after the session (renders under way may finish first)"
        );
    }
    gw.renders.shutdown().await;
    r
}
