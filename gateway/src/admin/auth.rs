//! Who is calling: sign-in with a local user's password, sign-in sessions, the break-glass admin
//! token, and the permission checks every route makes.
//!
//! Credentials, in the order they are looked at:
//! 1. `Authorization: Bearer <token>` — a sign-in token (`psl_…`, from `POST /api/login`) or the
//!    break-glass admin token (`<data>/admin-token`, printed by `psmgate serve`);
//! 2. the `psmgate_session` cookie (set by `POST /api/login`) or the `psmgate_token` cookie (set
//!    by `/login?token=<admin token>`).
//!
//! Requests authenticated by a cookie that change something (`POST`) must send
//! `Content-Type: application/json`: a cross-site form cannot, so a page elsewhere cannot make
//! the browser act for its user (the cookies are `SameSite=Strict` as well).
//!
//! Sign-in tokens are stored hashed; a session ends after [`LOGIN_TTL`] or [`LOGIN_IDLE`] without
//! use. Failed sign-ins are limited per client address ([`crate::access::FailureLimiter`]) and
//! audited without the password.

use super::respond::{constant_time_eq, error, json, read_json, Resp};
use super::AdminState;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use psmgate_policy::rbac::Permission;
use psmgate_policy::Config;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Longest life of a sign-in session.
pub const LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);
/// A sign-in session unused this long ends.
pub const LOGIN_IDLE: Duration = Duration::from_secs(30 * 60);
/// Name of the break-glass principal (the admin token), as audited.
pub const ADMIN_TOKEN_PRINCIPAL: &str = "admin-token";

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (or [`ADMIN_TOKEN_PRINCIPAL`]).
    pub name: String,
    /// How the caller authenticated.
    pub kind: PrincipalKind,
}

/// How a principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The break-glass admin token: every permission.
    AdminToken,
    /// A sign-in session of a configured user.
    Login {
        /// The session's presented token (to end it on logout).
        token: String,
        /// How the user signed in (`password`, `oidc`).
        via: String,
    },
}

/// How the credentials arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer`.
    Header,
    /// A cookie.
    Cookie,
}

impl Principal {
    /// True when the principal holds `perm` on `target` (`None`: a global permission, or a
    /// target-scoped one on at least one target).
    pub fn permits(&self, config: &Config, perm: Permission, target: Option<&str>) -> bool {
        match self.kind {
            PrincipalKind::AdminToken => true,
            PrincipalKind::Login { .. } => config.permits(&self.name, perm, target),
        }
    }

    /// The targets on which the principal holds `perm`.
    pub fn targets_with(&self, config: &Config, perm: Permission) -> Vec<String> {
        match self.kind {
            PrincipalKind::AdminToken => config.targets.keys().cloned().collect(),
            PrincipalKind::Login { .. } => config.permitted_targets(&self.name, perm),
        }
    }

    /// Every permission the principal holds somewhere.
    pub fn permissions(&self, config: &Config) -> Vec<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(|p| self.permits(config, *p, None))
            .collect()
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned())
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    cookie_in(req.headers(), name)
}

/// The value of cookie `name` among `headers`' `Cookie` headers.
pub fn cookie_in(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_owned)
        })
}

/// The request's principal, if its credentials are valid. Blocks (token database).
pub fn authenticate(state: &AdminState, req: &Request<Incoming>) -> Option<(Principal, Carrier)> {
    let (presented, carrier) = match bearer(req) {
        Some(t) => (t, Carrier::Header),
        None => (
            cookie(req, "psmgate_session").or_else(|| cookie(req, "psmgate_token"))?,
            Carrier::Cookie,
        ),
    };
    if constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
        return Some((
            Principal {
                name: ADMIN_TOKEN_PRINCIPAL.to_owned(),
                kind: PrincipalKind::AdminToken,
            },
            carrier,
        ));
    }
    let now = OffsetDateTime::now_utc();
    let session = match state.tokens.lookup_login(&presented, LOGIN_IDLE, now) {
        Ok(s) => s?,
        Err(e) => {
            tracing::error!(error = %e, "sign-in session lookup failed");
            return None;
        }
    };
    // A user removed from the policy loses access at once, whatever sessions remain.
    let config = state.config();
    config.users.get(&session.user)?;
    Some((
        Principal {
            name: session.user,
            kind: PrincipalKind::Login {
                token: presented,
                via: session.via,
            },
        },
        carrier,
    ))
}

/// `POST /api/login` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

/// `POST /api/login`: checks a local user's password and opens a sign-in session.
pub async fn login(
    state: &std::sync::Arc<AdminState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Resp {
    let ip = peer.ip();
    if let Err(wait) = state.limiter().check(ip, Instant::now()) {
        tracing::warn!(%peer, "sign-in refused: too many failures");
        crate::metrics::outcome(&crate::metrics::global().logins, "rate_limited");
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed sign-ins from this address; try again later",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let body: LoginBody = match read_json(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let state2 = state.clone();
    let user = body.user.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let config = state2.config();
        let ok = config
            .users
            .get(&body.user)
            .and_then(|u| u.password_hash.as_deref())
            .is_some_and(|h| psmgate_policy::password::verify_password(h, &body.password));
        if !ok {
            return Ok(None);
        }
        state2
            .tokens
            .create_login(&body.user, "password", LOGIN_TTL, OffsetDateTime::now_utc())
            .map(Some)
    })
    .await;
    match outcome {
        Ok(Ok(Some((token, session)))) => {
            crate::metrics::outcome(&crate::metrics::global().logins, "ok");
            state.audit(
                &user,
                psmgate_storage::audit::ACTION_LOGIN,
                "",
                &format!("from {peer}"),
            );
            let config = state.config();
            let principal = Principal {
                name: user.clone(),
                kind: PrincipalKind::Login {
                    token: token.expose().to_owned(),
                    via: "password".to_owned(),
                },
            };
            let mut r = json(&json!({
                "user": user,
                "token": token.expose(),
                "expires_at": crate::report::rfc3339(session.expires_at),
                "roles": config.users.get(&user).map(|u| u.roles.clone()).unwrap_or_default(),
                "permissions": principal.permissions(&config),
            }));
            if let Ok(v) = HeaderValue::from_str(&session_cookie(token.expose())) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Ok(None)) => {
            crate::metrics::outcome(&crate::metrics::global().logins, "failed");
            state.limiter().record_failure(ip, Instant::now());
            state.audit(
                &user,
                psmgate_storage::audit::ACTION_LOGIN_FAILED,
                "",
                &format!("from {peer}"),
            );
            tracing::warn!(%peer, "sign-in failed");
            error(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "unknown user or wrong password",
            )
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not open a sign-in session");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not sign in",
            )
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not sign in",
        ),
    }
}

/// The `Set-Cookie` value that hands a sign-in session's token to the browser.
pub fn session_cookie(token: &str) -> String {
    format!(
        "psmgate_session={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        LOGIN_TTL.as_secs()
    )
}

/// `POST /api/logout`: ends the caller's sign-in session and clears the cookies.
pub fn logout(state: &AdminState, who: &Principal) -> Resp {
    if let PrincipalKind::Login { token, .. } = &who.kind {
        if let Err(e) = state.tokens.revoke_login(token, OffsetDateTime::now_utc()) {
            tracing::error!(error = %e, "could not end a sign-in session");
        }
    }
    state.audit(&who.name, psmgate_storage::audit::ACTION_LOGOUT, "", "");
    let mut r = json(&json!({ "ok": true }));
    for c in ["psmgate_session", "psmgate_token"] {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{c}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"
        )) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// `GET /api/me`: the caller, how they signed in, their roles and permissions.
pub fn me(state: &AdminState, who: &Principal) -> Resp {
    let config = state.config();
    let (roles, via) = match &who.kind {
        PrincipalKind::AdminToken => (vec!["admin".to_owned()], ADMIN_TOKEN_PRINCIPAL),
        PrincipalKind::Login { via, .. } => (
            config
                .users
                .get(&who.name)
                .map(|u| u.roles.clone())
                .unwrap_or_default(),
            via.as_str(),
        ),
    };
    json(&json!({
        "user": who.name,
        "via": via,
        "display_name": config.users.get(&who.name).and_then(|u| u.display_name.clone()),
        "roles": roles,
        "permissions": who.permissions(&config),
    }))
}
