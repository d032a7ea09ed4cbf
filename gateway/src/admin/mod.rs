//! The admin listener: the web UI, the player, and the admin API (JSON over HTTPS).
//!
//! Pages and static files:
//! - `GET /` — the web UI (`/ui/`: sign-in, the overview and on-call dashboards, live sessions,
//!   access requests, recordings)
//! - `GET /player/…` — the static player (`/player/?id=<session-id>`)
//! - `GET /login?token=…` — break-glass sign-in with the admin token (sets a cookie)
//! - `GET /healthz`
//!
//! The API's operations, and the permission each needs, are listed once in [`ops::OPERATIONS`];
//! `GET /api/openapi.json` serves their OpenAPI description (`gateway/openapi.json`, checked
//! against the table by a test). Who the caller is comes from [`auth`]. Errors are JSON
//! `{"error": "<code>", "message": "…"}` with 400 (bad input), 401 (no or bad credentials),
//! 403 (not permitted), 404, 405, 409 (state conflict), 413 and 429 (sign-in rate limit).
//!
//! Every action that changes something is written to the signed, hash-chained audit log.

// Handlers return a ready error response as their `Err`: it is built once per failed request,
// so its size costs nothing that boxing would save.
#![allow(clippy::result_large_err)]

mod access_api;
pub mod auth;
pub mod dashboard;
mod dashboard_api;
mod live_api;
mod lock_api;
pub mod oidc;
pub mod ops;
mod recordings;
pub mod respond;

use crate::access::FailureLimiter;
use crate::policy_cell::PolicyCell;
use crate::store::Store;
use anyhow::{Context, Result};
use auth::{Carrier, Principal};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ops::{Access, Matched};
use psmgate_policy::rbac::Permission;
use psmgate_policy::Config;
use psmgate_storage::tokens::TokenStore;
use respond::{error, text, Resp};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;

/// Failed sign-ins allowed per client address per [`LOGIN_FAILURE_WINDOW`].
pub const LOGIN_MAX_FAILURES: usize = 5;
/// The window of [`LOGIN_MAX_FAILURES`].
pub const LOGIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Shared state of the admin server.
pub struct AdminState {
    /// Data store (recordings, index, live sessions).
    pub store: Store,
    /// The break-glass admin bearer token.
    pub token: String,
    /// Access grants, access requests and sign-in sessions.
    pub tokens: Arc<TokenStore>,
    /// The policy in force.
    pub policy: Arc<PolicyCell>,
    /// OpenID Connect sign-in, following the policy's `[oidc]`.
    pub oidc: oidc::OidcState,
    limiter: Mutex<FailureLimiter>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// The admin server's state.
    pub fn new(
        store: Store,
        token: String,
        policy: Arc<PolicyCell>,
        tokens: Arc<TokenStore>,
    ) -> Self {
        Self {
            store,
            token,
            tokens,
            policy,
            oidc: oidc::OidcState::default(),
            limiter: Mutex::new(FailureLimiter::new(
                LOGIN_MAX_FAILURES,
                LOGIN_FAILURE_WINDOW,
            )),
        }
    }

    /// The policy in force.
    pub fn config(&self) -> Arc<Config> {
        self.policy.get()
    }

    /// The sign-in failure limiter.
    pub fn limiter(&self) -> MutexGuard<'_, FailureLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes an admin action to the audit log; a failure is logged as an error.
    pub fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) {
        crate::supervisor::audit_action(&self.store, actor, action, target, detail);
    }
}

/// Serves until `shutdown` resolves. With `tls`, connections are TLS.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut shutdown = shutdown;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r.context("accepting admin connection")?,
            _ = shutdown.changed() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req, peer).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let result = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(tls) => builder.serve_connection(TokioIo::new(tls), svc).await,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "admin TLS handshake failed");
                        return;
                    }
                },
                None => builder.serve_connection(TokioIo::new(tcp), svc).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn handle(state: &Arc<AdminState>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let mut resp = route(state, req, peer).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 403 naming the permission that was missing.
pub fn forbidden(perm: Permission, target: Option<&str>) -> Resp {
    let perm = serde_json::to_value(perm)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let msg = match target {
        Some(t) => format!("requires the {perm} permission on target {t}"),
        None => format!("requires the {perm} permission"),
    };
    error(StatusCode::FORBIDDEN, "forbidden", msg)
}

async fn route(state: &Arc<AdminState>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    if path.starts_with("/api/") || path == "/metrics" {
        return api(state, req, &path, &query, peer).await;
    }
    if !get {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path.as_str() {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/login" => return recordings::token_login(state, &query, peer),
        "/" => return respond::see_other("/ui/"),
        "/player" => return respond::see_other("/player/"),
        "/ui" => return respond::see_other("/ui/"),
        _ => {}
    }
    for (prefix, files) in [
        (
            "/player/",
            crate::assets::player_file as fn(&str) -> Option<&'static [u8]>,
        ),
        ("/ui/", crate::assets::ui_file),
    ] {
        if let Some(rel) = path.strip_prefix(prefix) {
            let rel = if rel.is_empty() { "index.html" } else { rel };
            return match files(rel) {
                Some(b) => respond::bytes(crate::assets::content_type(rel), b.to_vec()),
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            };
        }
    }
    text(StatusCode::NOT_FOUND, "not found\n")
}

async fn api(
    state: &Arc<AdminState>,
    req: Request<Incoming>,
    path: &str,
    query: &str,
    peer: SocketAddr,
) -> Resp {
    let (op, params) = match ops::find(req.method().as_str(), path) {
        Matched::Op(op, params) => (op, params),
        Matched::WrongMethod => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {path}", req.method()),
            )
        }
        Matched::NotFound => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no API path {path}"),
            )
        }
    };
    let params: Vec<String> = params.into_iter().map(respond::percent_decode).collect();
    if op.access == Access::Public {
        return match op.id {
            "login" => auth::login(state, req, peer).await,
            "oidcStatus" | "oidcLogin" | "oidcCallback" => {
                oidc::handle(state, op.id, req.headers(), query, peer).await
            }
            "openapi" => respond::bytes("application/json", OPENAPI.as_bytes().to_vec()),
            _ => error(StatusCode::NOT_FOUND, "not_found", "not found"),
        };
    }
    let st = state.clone();
    let (req, who) = match tokio::task::spawn_blocking(move || {
        let who = auth::authenticate(&st, &req);
        (req, who)
    })
    .await
    {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    };
    let Some((who, carrier)) = who else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in (POST /api/login) and send the token as Authorization: Bearer <token>",
        );
    };
    if carrier == Carrier::Cookie && req.method() == Method::POST && !is_json(&req) {
        return error(
            StatusCode::FORBIDDEN,
            "csrf",
            "requests signed in by cookie must send Content-Type: application/json",
        );
    }
    let config = state.config();
    let allowed = match op.access {
        Access::Public | Access::SignedIn => true,
        Access::Global(p) | Access::Target(p) => who.permits(&config, p, None),
    };
    if !allowed {
        return match op.access {
            Access::Global(p) | Access::Target(p) => forbidden(p, None),
            _ => error(StatusCode::FORBIDDEN, "forbidden", "not permitted"),
        };
    }
    dispatch(state, op.id, &params, query, req, &who).await
}

fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The OpenAPI document of the admin API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn dispatch(
    state: &Arc<AdminState>,
    id: &str,
    params: &[String],
    query: &str,
    req: Request<Incoming>,
    who: &Principal,
) -> Resp {
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    match id {
        "logout" => blocking(state, who, auth::logout).await,
        "me" => auth::me(state, who),
        "listTargets" => targets(state, who),
        "metrics" => blocking(state, who, |s, _| metrics(s)).await,
        "reloadConfig" => {
            blocking(state, who, |s, w| {
                match reload_policy(&s.store, &s.policy, &w.name) {
                    Ok(r) => respond::json(&serde_json::json!({
                        "old_version": r.old_version,
                        "new_version": r.new_version,
                        "restart_needed": r.restart_needed,
                    })),
                    Err(e) => error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_config",
                        e.to_string(),
                    ),
                }
            })
            .await
        }
        "listLiveSessions" => live_api::list(state, who),
        "getDashboard" => {
            let q = query.to_owned();
            blocking(state, who, move |s, w| dashboard_api::overview(s, w, &q)).await
        }
        "getOnCall" => blocking(state, who, dashboard_api::oncall).await,
        "liveThumbnail" => {
            let id = p(0).to_owned();
            blocking(state, who, move |s, w| live_api::thumbnail(s, w, &id)).await
        }
        "terminateSession" => live_api::terminate(state, who, p(0), req.into_body()).await,
        "lockSession" => lock_api::lock(state, who, p(0), req.into_body()).await,
        "resumeSession" => lock_api::resume(state, who, p(0), req.into_body()).await,
        "listAccessRequests" => {
            let q = query.to_owned();
            blocking(state, who, move |s, w| access_api::list(s, w, &q)).await
        }
        "createAccessRequest" => access_api::create(state, who, req.into_body()).await,
        "getAccessRequest" => {
            let id = p(0).to_owned();
            blocking(state, who, move |s, w| access_api::get(s, w, &id)).await
        }
        "approveAccessRequest" | "denyAccessRequest" => {
            let decision = if id == "approveAccessRequest" {
                access_api::Decision::Approve
            } else {
                access_api::Decision::Deny
            };
            access_api::decide(state, who, p(0), decision, req.into_body()).await
        }
        "cancelAccessRequest" => {
            let id = p(0).to_owned();
            blocking(state, who, move |s, w| access_api::cancel(s, w, &id)).await
        }
        "listAudit" => {
            let q = query.to_owned();
            blocking(state, who, move |s, _| recordings::audit_page(s, &q)).await
        }
        "listRecordings" | "getManifest" | "verifyRecording" | "getRecordingFile" => {
            let range = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (id, params, q) = (id.to_owned(), params.to_vec(), query.to_owned());
            blocking(state, who, move |s, w| {
                recordings::handle(s, w, &id, &params, &q, range.as_deref())
            })
            .await
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "not found"),
    }
}

/// Reloads the policy for `actor` (an admin, or `sighup`): audited as `config_reloaded` with the
/// new policy version, or `config_rejected` with the reason (the policy in force stays).
/// Blocks (file I/O).
pub fn reload_policy(
    store: &Store,
    policy: &PolicyCell,
    actor: &str,
) -> Result<crate::policy_cell::Reloaded, crate::policy_cell::ReloadError> {
    match policy.reload() {
        Ok(r) => {
            let pending = if r.restart_needed.is_empty() {
                String::new()
            } else {
                format!("; waiting for a restart: {}", r.restart_needed.join(", "))
            };
            tracing::info!(old = %r.old_version, new = %r.new_version, restart_needed = ?r.restart_needed, "policy reloaded");
            crate::supervisor::audit_action(
                store,
                actor,
                psmgate_storage::audit::ACTION_CONFIG_RELOADED,
                "",
                &format!("policy {} -> {}{pending}", r.old_version, r.new_version),
            );
            Ok(r)
        }
        Err(e) => {
            tracing::error!(error = %e, "new policy rejected; the policy in force stays");
            crate::supervisor::audit_action(
                store,
                actor,
                psmgate_storage::audit::ACTION_CONFIG_REJECTED,
                "",
                &e.to_string(),
            );
            Err(e)
        }
    }
}

/// `GET /metrics`: the Prometheus exposition, with the live sessions and the index's state.
fn metrics(state: &AdminState) -> Resp {
    let mut live = std::collections::BTreeMap::<String, i64>::new();
    for s in state.store.live.list() {
        *live.entry(s.protocol).or_default() += 1;
    }
    let mut snap = crate::metrics::Snapshot {
        live: live.into_iter().collect(),
        queue_depth: i64::try_from(state.store.live.queue_depth()).unwrap_or(i64::MAX),
        ..Default::default()
    };
    match state.store.index.stats() {
        Ok(stats) => {
            snap.storage_bytes = i64::try_from(stats.bytes).unwrap_or(i64::MAX);
            snap.recordings = stats
                .by_integrity
                .into_iter()
                .map(|(status, n)| (status, i64::try_from(n).unwrap_or(i64::MAX)))
                .collect();
        }
        Err(e) => tracing::error!(error = %e, "metrics: reading the index failed"),
    }
    let mut r = respond::bytes(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        crate::metrics::render(&snap).into_bytes(),
    );
    *r.status_mut() = StatusCode::OK;
    r
}

/// Runs a handler that touches storage on the blocking pool.
async fn blocking(
    state: &Arc<AdminState>,
    who: &Principal,
    f: impl FnOnce(&AdminState, &Principal) -> Resp + Send + 'static,
) -> Resp {
    let (s, w) = (state.clone(), who.clone());
    tokio::task::spawn_blocking(move || f(&s, &w))
        .await
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        })
}

/// `GET /api/targets`: the targets the caller can do something with, and what.
fn targets(state: &AdminState, who: &Principal) -> Resp {
    let config = state.config();
    let list: Vec<serde_json::Value> = config
        .targets
        .iter()
        .filter_map(|(name, t)| {
            let perms: Vec<Permission> = Permission::ALL
                .iter()
                .copied()
                .filter(|p| p.is_target_scoped() && who.permits(&config, *p, Some(name)))
                .collect();
            (!perms.is_empty()).then(|| {
                serde_json::json!({
                    "name": name,
                    "protocol": t.protocol.as_str(),
                    "permissions": perms,
                })
            })
        })
        .collect();
    respond::json(&serde_json::json!({ "targets": list }))
}
