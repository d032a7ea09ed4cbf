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
//!
//! A session's roles are resolved on every request against the policy in force
//! ([`Config::session_roles`]): the user's roles under `[users.<name>]` and, for an OpenID
//! Connect sign-in, those `[oidc.group_roles]` gives the provider groups the session keeps. A
//! session without standing under the current policy (a user no longer configured, whose groups
//! grant no role either) is refused at once.

use super::respond::{constant_time_eq, error, json, read_json, Resp};
use super::AdminState;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use psmgate_policy::rbac::Permission;
use psmgate_policy::Config;
use psmgate_storage::tokens::TokenStore;
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
    /// A sign-in session.
    Login {
        /// The session's presented token (to end it on logout).
        token: String,
        /// How the user signed in (`password`, `oidc`).
        via: String,
        /// The identity provider's groups the session keeps (an OpenID Connect sign-in);
        /// `None` for a password sign-in.
        groups: Option<Vec<String>>,
        /// The role entries the session holds, resolved against the policy the request was
        /// authenticated under.
        roles: Vec<String>,
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
        match &self.kind {
            PrincipalKind::AdminToken => true,
            PrincipalKind::Login { roles, .. } => config.roles_permit(roles, perm, target),
        }
    }

    /// The targets on which the principal holds `perm`.
    pub fn targets_with(&self, config: &Config, perm: Permission) -> Vec<String> {
        match &self.kind {
            PrincipalKind::AdminToken => config.targets.keys().cloned().collect(),
            PrincipalKind::Login { roles, .. } => config.roles_permitted_targets(roles, perm),
        }
    }

    /// The principal's role entries (`["admin"]` for the admin token).
    pub fn roles(&self) -> Vec<String> {
        match &self.kind {
            PrincipalKind::AdminToken => vec!["admin".to_owned()],
            PrincipalKind::Login { roles, .. } => roles.clone(),
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
    let config = state.config();
    let principal = login_principal(&state.tokens, &config, presented, OffsetDateTime::now_utc())?;
    Some((principal, carrier))
}

/// The principal of the sign-in token `presented` under `config` at `now`; `None` for a token
/// of no usable session, and for a session without standing under `config`: a user removed
/// from the policy, or someone signed in with OpenID Connect who is not configured and none of
/// whose groups grants a role any more, loses access at once. Blocks (token database).
pub fn login_principal(
    tokens: &TokenStore,
    config: &Config,
    presented: String,
    now: OffsetDateTime,
) -> Option<Principal> {
    let session = match tokens.lookup_login(&presented, LOGIN_IDLE, now) {
        Ok(s) => s?,
        Err(e) => {
            tracing::error!(error = %e, "sign-in session lookup failed");
            return None;
        }
    };
    let Some(roles) = config.session_roles(&session.user, session.groups.as_deref()) else {
        tracing::debug!(user = %session.user, "sign-in session without standing under the policy in force");
        return None;
    };
    Some(Principal {
        name: session.user,
        kind: PrincipalKind::Login {
            token: presented,
            via: session.via,
            groups: session.groups,
            roles,
        },
    })
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
                    groups: None,
                    roles: config.session_roles(&user, None).unwrap_or_default(),
                },
            };
            let mut r = json(&json!({
                "user": user,
                "token": token.expose(),
                "expires_at": crate::report::rfc3339(session.expires_at),
                "roles": principal.roles(),
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

/// `GET /api/me`: the caller, how they signed in, their roles and permissions, and for an
/// OpenID Connect sign-in the provider's groups the session keeps.
pub fn me(state: &AdminState, who: &Principal) -> Resp {
    json(&me_json(&state.config(), who))
}

/// The body of `GET /api/me` for `who` under `config`.
fn me_json(config: &Config, who: &Principal) -> serde_json::Value {
    let (via, groups) = match &who.kind {
        PrincipalKind::AdminToken => (ADMIN_TOKEN_PRINCIPAL, None),
        PrincipalKind::Login { via, groups, .. } => (via.as_str(), groups.as_ref()),
    };
    let mut body = json!({
        "user": who.name,
        "via": via,
        "display_name": config.users.get(&who.name).and_then(|u| u.display_name.clone()),
        "roles": who.roles(),
        "permissions": who.permissions(config),
    });
    if let Some(groups) = groups {
        body["groups"] = json!(groups);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_cell::PolicyCell;
    use std::path::PathBuf;
    use std::sync::Arc;

    /// Targets, alice (user) and `[oidc]` mapping `mapping` (lines of `[oidc.group_roles]`).
    fn policy(mapping: &str) -> String {
        format!(
            "[targets.db1]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:5901\"\n\n\
             [targets.web1]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:5902\"\n\n\
             [target_groups]\ndatabases = [\"db1\"]\n\n\
             [users.alice]\nroles = [\"user\"]\n\n\
             [oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"psmgate\"\n\
             redirect_url = \"https://psmgate.example.com/api/oidc/callback\"\n\
             groups_claim = \"groups\"\n\n[oidc.group_roles]\n{mapping}"
        )
    }

    const MAPPING: &str = "auditors = [\"auditor\"]\ndba = [\"reviewer@databases\"]\n";

    fn cell(dir: &std::path::Path, text: &str) -> (Arc<PolicyCell>, PathBuf) {
        let path = dir.join("psmgate.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        (PolicyCell::new(config, Some(path.clone())), path)
    }

    fn groups(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Opens a session of `user` keeping `groups`; its token.
    fn sign_in(tokens: &TokenStore, user: &str, groups: Option<Vec<String>>) -> String {
        let via = if groups.is_some() { "oidc" } else { "password" };
        let (token, _) = tokens
            .create_login_with_groups(
                user,
                via,
                groups.as_deref(),
                LOGIN_TTL,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        token.expose().to_owned()
    }

    fn principal(tokens: &TokenStore, config: &Config, token: &str) -> Option<Principal> {
        login_principal(tokens, config, token.to_owned(), OffsetDateTime::now_utc())
    }

    #[test]
    fn roles_come_from_the_user_and_the_groups() {
        let dir = tempfile::tempdir().unwrap();
        let (cell, _) = cell(dir.path(), &policy(MAPPING));
        let config = cell.get();
        let tokens = TokenStore::open_in_memory().unwrap();

        // Carol is not configured: her groups alone decide.
        let carol = sign_in(&tokens, "carol", groups(&["auditors", "unmapped"]));
        let who = principal(&tokens, &config, &carol).expect("carol's groups give a role");
        assert_eq!(who.name, "carol");
        assert_eq!(who.roles(), ["auditor"]);
        assert!(who.permits(&config, Permission::ViewAudit, None));
        assert!(who.permits(&config, Permission::ViewRecordings, Some("web1")));
        assert!(!who.permits(&config, Permission::Manage, None));
        assert!(!who.permits(&config, Permission::Connect, Some("db1")));
        let me = me_json(&config, &who);
        assert_eq!(me["via"], "oidc");
        assert_eq!(me["groups"], serde_json::json!(["auditors", "unmapped"]));
        assert_eq!(me["roles"], serde_json::json!(["auditor"]));
        assert_eq!(me["display_name"], serde_json::Value::Null);
        assert!(me["permissions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("view_audit")));

        // Alice is configured: her roles, then her groups'.
        let alice = sign_in(&tokens, "alice", groups(&["dba"]));
        let who = principal(&tokens, &config, &alice).unwrap();
        assert_eq!(who.roles(), ["user", "reviewer@databases"]);
        assert!(who.permits(&config, Permission::WatchLive, Some("db1")));
        assert!(!who.permits(&config, Permission::WatchLive, Some("web1")));
        assert_eq!(
            who.targets_with(&config, Permission::ExportRecordings),
            ["db1"]
        );
        // A password sign-in keeps no groups and shows none.
        let password = sign_in(&tokens, "alice", None);
        let who = principal(&tokens, &config, &password).unwrap();
        assert_eq!(who.roles(), ["user"]);
        assert!(!who.permits(&config, Permission::WatchLive, Some("db1")));
        let me = me_json(&config, &who);
        assert_eq!(me["via"], "password");
        assert!(me.get("groups").is_none(), "{me}");

        // Nobody configured, no mapped group: no standing.
        let dave = sign_in(&tokens, "dave", groups(&["unmapped"]));
        assert!(principal(&tokens, &config, &dave).is_none());
        let erin = sign_in(&tokens, "erin", None);
        assert!(principal(&tokens, &config, &erin).is_none());
    }

    #[test]
    fn a_reload_that_removes_a_mapping_takes_its_roles_away_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cell, path) = cell(dir.path(), &policy(MAPPING));
        let tokens = TokenStore::open_in_memory().unwrap();
        let carol = sign_in(&tokens, "carol", groups(&["auditors"]));
        let alice = sign_in(&tokens, "alice", groups(&["dba", "auditors"]));
        let before = cell.get();
        let who = principal(&tokens, &before, &alice).unwrap();
        assert!(who.permits(&before, Permission::ViewAudit, None));
        assert!(principal(&tokens, &before, &carol).is_some());

        // The auditors mapping goes: carol is left with no role, alice with her own and dba's.
        std::fs::write(&path, policy("dba = [\"reviewer@databases\"]\n")).unwrap();
        cell.reload().unwrap();
        let after = cell.get();
        assert!(principal(&tokens, &after, &carol).is_none());
        let who = principal(&tokens, &after, &alice).unwrap();
        assert_eq!(who.roles(), ["user", "reviewer@databases"]);
        assert!(!who.permits(&after, Permission::ViewAudit, None));
        assert!(who.permits(&after, Permission::WatchLive, Some("db1")));

        // A group mapped to another role: the new role applies to the same session.
        std::fs::write(&path, policy("auditors = [\"admin\"]\n")).unwrap();
        cell.reload().unwrap();
        let now = cell.get();
        let who = principal(&tokens, &now, &alice).unwrap();
        assert_eq!(who.roles(), ["user", "admin"]);
        assert!(who.permits(&now, Permission::Manage, None));
    }
}
