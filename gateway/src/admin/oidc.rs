//! OpenID Connect sign-in to the web UI and admin API: the authorization code flow with PKCE
//! (S256), `state` and `nonce`, configured by `[oidc]`.
//!
//! - `GET /api/oidc` — `{"enabled": bool, "label": "…"}`: whether the UI offers "Sign in with
//!   <label>".
//! - `GET /api/oidc/login[?next=/ui/]` — starts a sign-in attempt and sends the browser (303) to
//!   the provider. The attempt (state → nonce, PKCE verifier, where to go next) is kept by the
//!   gateway for at most 10 minutes and bound to the browser by a short-lived `psmgate_oidc`
//!   cookie (`HttpOnly`, `SameSite=Lax` so that it comes back with the provider's redirect).
//! - `GET /api/oidc/callback?code=…&state=…` — the provider's answer: the code is exchanged at
//!   the token endpoint (with the client secret, `client_secret_basic` or `_post` as the provider
//!   offers), the ID token verified (signature with the provider's published keys, issuer,
//!   audience, times, nonce), and the user named by `oidc.user_claim` (of the ID token, else of
//!   the userinfo answer) signed in — if that user is configured under `[users.<name>]`, or if
//!   one of the user's groups at the provider (`oidc.groups_claim`, looked up the same way; see
//!   [`groups`]) has roles under `[oidc.group_roles]`. The session keeps the groups, not the
//!   roles: they are resolved against the policy in force on every request. The browser gets
//!   the `psmgate_session` cookie a password sign-in gives and goes (303) to `next`, a path on
//!   this site.
//!
//! Sign-ins are audited (`login`, detail `oidc from <address>`), refusals too (`login_failed`
//! with the reason, never a code or token) and count against the same per-address limit as
//! failed password sign-ins. Errors are JSON, or a short HTML page for a browser.
//!
//! The client follows the policy in force: a reload that changes `[oidc]` builds a new one (and
//! drops the attempts under way).

pub mod discovery;
pub mod flow;
pub mod groups;
pub mod id_token;
pub mod jws;
mod provider;

use super::auth::{cookie_in, session_cookie, ADMIN_TOKEN_PRINCIPAL, LOGIN_TTL};
use super::respond::{self, error, html_escape, Resp};
use super::AdminState;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, StatusCode};
use provider::{Provider, ProviderError};
use psmgate_policy::{Config, OidcConfig};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use time::OffsetDateTime;

/// The cookie that binds a sign-in attempt to the browser that started it.
pub const BINDING_COOKIE: &str = "psmgate_oidc";
/// Longest user name shown in messages and the audit log when the provider names someone
/// unknown.
const MAX_SHOWN_NAME: usize = 64;

/// The OpenID Connect client of the policy in force (none while `[oidc]` is absent).
#[derive(Debug, Default)]
pub struct OidcState {
    current: Mutex<Option<Arc<Provider>>>,
}

impl OidcState {
    /// The client for `config`'s `[oidc]`: the one kept when the section is unchanged but for
    /// `group_roles` (which sign-ins read from the policy in force), else a new one. `Ok(None)`
    /// when OIDC sign-in is not configured.
    fn provider(&self, config: &Config) -> Result<Option<Arc<Provider>>, String> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let Some(wanted) = &config.oidc else {
            *current = None;
            return Ok(None);
        };
        if let Some(p) = current.as_ref().filter(|p| same_client(&p.config, wanted)) {
            return Ok(Some(p.clone()));
        }
        let p = Arc::new(Provider::new(wanted.clone()).map_err(|e| format!("{e:#}"))?);
        *current = Some(p.clone());
        Ok(Some(p))
    }
}

/// Whether a client built for `a` serves `b` as well: they differ at most in `group_roles`.
fn same_client(a: &OidcConfig, b: &OidcConfig) -> bool {
    let without_mapping = |c: &OidcConfig| OidcConfig {
        group_roles: Default::default(),
        ..c.clone()
    };
    without_mapping(a) == without_mapping(b)
}

/// Serves the public OIDC operations `oidcStatus`, `oidcLogin` and `oidcCallback`.
pub async fn handle(
    state: &Arc<AdminState>,
    id: &str,
    headers: &HeaderMap,
    query: &str,
    peer: SocketAddr,
) -> Resp {
    let html = wants_html(headers);
    match id {
        "oidcStatus" => status(state),
        "oidcLogin" => login(state, query, html).await,
        "oidcCallback" => callback(state, headers, query, peer, html).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "not found"),
    }
}

/// True when the client is a browser navigating (it accepts HTML).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// A refusal: its status, error code and words.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The user the provider named, when it got that far (the audit record's actor).
    user: Option<String>,
}

fn refusal(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
        user: None,
    }
}

/// The error as JSON, or as a short page with a way back for a browser.
fn respond_refusal(r: &Refusal, html: bool) -> Resp {
    if !html {
        return error(r.status, r.code, r.message.clone());
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>psmgate: sign-in refused</title>\n<link rel=\"stylesheet\" href=\"/ui/ui.css\">\n\
         </head>\n<body>\n<main>\n<h1>Sign-in refused</h1>\n\
         <p id=\"oidc-error\" class=\"error\" data-code=\"{}\">{}</p>\n\
         <p><a href=\"/ui/\">Back to sign-in</a></p>\n</main>\n</body>\n</html>\n",
        r.code,
        html_escape(&r.message)
    );
    let mut resp = respond::bytes("text/html; charset=utf-8", page.into_bytes());
    *resp.status_mut() = r.status;
    resp
}

/// The client of the policy in force, or the refusal to show.
fn enabled(state: &AdminState) -> Result<Arc<Provider>, Refusal> {
    match state.oidc.provider(&state.config()) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(refusal(
            StatusCode::NOT_FOUND,
            "oidc_disabled",
            "OpenID Connect sign-in is not configured on this gateway",
        )),
        Err(e) => {
            tracing::error!(error = %e, "OpenID Connect sign-in cannot start");
            Err(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "oidc_misconfigured",
                format!("OpenID Connect sign-in is misconfigured: {e}"),
            ))
        }
    }
}

fn unreachable(p: &Provider, e: &ProviderError) -> Refusal {
    p.forget();
    tracing::warn!(error = %e, "OpenID provider failed");
    refusal(StatusCode::BAD_GATEWAY, "provider_failed", e.to_string())
}

/// `GET /api/oidc`.
fn status(state: &AdminState) -> Resp {
    let config = state.config();
    respond::json(&json!({
        "enabled": config.oidc.is_some(),
        "label": config.oidc.as_ref().map(|o| o.button_label.clone()),
    }))
}

/// `GET /api/oidc/login`.
async fn login(state: &Arc<AdminState>, query: &str, html: bool) -> Resp {
    let provider = match enabled(state) {
        Ok(p) => p,
        Err(r) => return respond_refusal(&r, html),
    };
    let d = match provider.discovery().await {
        Ok(d) => d,
        Err(e) => return respond_refusal(&unreachable(&provider, &e), html),
    };
    let now = Instant::now();
    let next = respond::query_param(query, "next");
    let (attempt, pending) = flow::new_attempt(next.as_deref(), now);
    let challenge = flow::pkce_challenge(&pending.verifier);
    let url = flow::authorize_url(&flow::AuthorizeRequest {
        endpoint: &d.authorization_endpoint,
        client_id: &provider.config.client_id,
        redirect_url: &provider.config.redirect_url,
        scopes: &provider.config.scopes,
        state: &attempt,
        nonce: &pending.nonce,
        code_challenge: &challenge,
    });
    let cookie = format!(
        "{BINDING_COOKIE}={}; Path=/api/oidc/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
        pending.binding,
        flow::PENDING_TTL.as_secs()
    );
    provider.pending().insert(attempt, pending, now);
    let mut r = respond::see_other(&url);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /api/oidc/callback`.
async fn callback(
    state: &Arc<AdminState>,
    headers: &HeaderMap,
    query: &str,
    peer: SocketAddr,
    html: bool,
) -> Resp {
    // Without OIDC (or with a client that cannot be built) this is no sign-in attempt.
    let provider = match enabled(state) {
        Ok(p) => p,
        Err(r) => return respond_refusal(&r, html),
    };
    let ip = peer.ip();
    if let Err(wait) = state.limiter().check(ip, Instant::now()) {
        tracing::warn!(%peer, "OIDC sign-in refused: too many failures");
        crate::metrics::outcome(&crate::metrics::global().logins, "rate_limited");
        let mut r = respond_refusal(
            &refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed sign-ins from this address; try again later",
            ),
            html,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let outcome = match sign_in(state, &provider, headers, query).await {
        Ok(s) => open_session(state, &s.user, &s.groups)
            .await
            .map(|token| (s, token)),
        Err(r) => Err(r),
    };
    let mut resp = match outcome {
        Ok((SignedIn { user, groups, next }, token)) => {
            crate::metrics::outcome(&crate::metrics::global().logins, "ok");
            state.audit(
                &user,
                psmgate_storage::audit::ACTION_LOGIN,
                "",
                &format!("oidc from {peer}"),
            );
            tracing::info!(%peer, %user, groups = groups.len(), "signed in with OpenID Connect");
            let mut r = respond::see_other(&next);
            if let Ok(v) = HeaderValue::from_str(&session_cookie(&token)) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(r) => {
            if r.status != StatusCode::INTERNAL_SERVER_ERROR {
                crate::metrics::outcome(&crate::metrics::global().logins, "failed");
                state.limiter().record_failure(ip, Instant::now());
                state.audit(
                    r.user.as_deref().unwrap_or(""),
                    psmgate_storage::audit::ACTION_LOGIN_FAILED,
                    "",
                    &format!("oidc from {peer}: {}", r.message),
                );
            }
            tracing::warn!(%peer, reason = %r.message, "OIDC sign-in refused");
            respond_refusal(&r, html)
        }
    };
    // The attempt is over either way.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{BINDING_COOKIE}=; Path=/api/oidc/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Who the provider signed in, and where to go next.
#[derive(Debug)]
struct SignedIn {
    /// The user `oidc.user_claim` names.
    user: String,
    /// The user's groups at the provider (empty without `oidc.groups_claim`).
    groups: Vec<String>,
    /// The path to send the browser to.
    next: String,
}

/// The userinfo answer for the subject `sub`, asked for at most once per sign-in (kept in
/// `cache`); `None` without an access token or a userinfo endpoint.
async fn userinfo<'c>(
    provider: &Provider,
    d: &discovery::Discovery,
    access_token: Option<&str>,
    sub: &str,
    cache: &'c mut Option<Option<Map<String, Value>>>,
) -> Result<Option<&'c Map<String, Value>>, Refusal> {
    if cache.is_none() {
        let info = match access_token {
            Some(at) => provider
                .userinfo(d, at, sub)
                .await
                .map_err(|e| unreachable(provider, &e))?,
            None => None,
        };
        *cache = Some(info);
    }
    Ok(cache.as_ref().and_then(Option::as_ref))
}

/// Longest name, in bytes, of someone signed in who is not configured (what a session holds).
const MAX_USER_NAME: usize = psmgate_storage::tokens::MAX_NAME_LEN;

/// Whether `user`, not configured under `[users]`, can be the name of a sign-in session and the
/// audit log's actor: 1..=[`MAX_USER_NAME`] bytes, not only spaces, without control characters,
/// and not the admin token's name.
fn usable_unconfigured_name(user: &str) -> bool {
    !user.trim().is_empty()
        && user.len() <= MAX_USER_NAME
        && !user.chars().any(char::is_control)
        && user != ADMIN_TOKEN_PRINCIPAL
}

/// Why someone the provider signed in has no standing under `config`, if they have none: a name
/// that cannot be a user, or neither a configured user nor in a group with roles.
fn standing_refusal(config: &Config, user: &str, groups: &[String]) -> Option<Refusal> {
    let shown = discovery::printable(user, MAX_SHOWN_NAME);
    let refuse = |code, message| {
        Some(Refusal {
            status: StatusCode::FORBIDDEN,
            code,
            message,
            user: Some(shown.clone()),
        })
    };
    if config.session_roles(user, Some(groups)).is_some() {
        if config.users.contains_key(user) || usable_unconfigured_name(user) {
            return None;
        }
        return refuse(
            "bad_user_name",
            format!(
                "{shown:?} signed in at the OpenID provider but cannot be a psmgate user name (1..={MAX_USER_NAME} bytes without control characters, not {ADMIN_TOKEN_PRINCIPAL:?})"
            ),
        );
    }
    let reads_groups = config
        .oidc
        .as_ref()
        .is_some_and(|o| o.groups_claim.is_some());
    let message = if reads_groups {
        format!(
            "{shown:?} signed in at the OpenID provider but is not a psmgate user, and none of their groups has roles under [oidc.group_roles]; an administrator must add [users.{shown}] to the policy or map one of their groups"
        )
    } else {
        format!(
            "{shown:?} signed in at the OpenID provider but is not a psmgate user; an administrator must add [users.{shown}] to the policy"
        )
    };
    refuse("not_a_user", message)
}

/// Checks the provider's answer; who it signed in (a configured user, or someone whose groups
/// have roles) and where to go next.
async fn sign_in(
    state: &AdminState,
    provider: &Provider,
    headers: &HeaderMap,
    query: &str,
) -> Result<SignedIn, Refusal> {
    let params = flow::CallbackParams::parse(query);
    let bad = |code, message: String| refusal(StatusCode::BAD_REQUEST, code, message);
    let Some(attempt) = params.state.as_deref() else {
        return Err(bad(
            "missing_state",
            "the provider's answer has no state; start the sign-in again".into(),
        ));
    };
    let binding = cookie_in(headers, BINDING_COOKIE);
    let pending = provider
        .pending()
        .take(attempt, binding.as_deref(), Instant::now())
        .map_err(|e| bad("bad_state", e.to_string()))?;
    if let Some(e) = &params.error {
        let words = match &params.error_description {
            Some(d) => format!("{e}: {d}"),
            None => e.clone(),
        };
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "provider_refused",
            format!(
                "the OpenID provider did not sign you in ({})",
                discovery::printable(&words, 300)
            ),
        ));
    }
    let Some(code) = params.code.as_deref() else {
        return Err(bad(
            "missing_code",
            "the provider's answer has no code".into(),
        ));
    };
    let d = provider
        .discovery()
        .await
        .map_err(|e| unreachable(provider, &e))?;
    if params.iss.as_deref().is_some_and(|iss| iss != d.issuer) {
        return Err(bad(
            "issuer_mismatch",
            "the answer comes from another issuer than the configured provider".into(),
        ));
    }
    let tokens = provider
        .exchange(&d, code, &pending.verifier)
        .await
        .map_err(|e| {
            if e.is_refusal() {
                refusal(
                    StatusCode::UNAUTHORIZED,
                    "code_refused",
                    format!("the provider refused the sign-in code: {e}"),
                )
            } else {
                unreachable(provider, &e)
            }
        })?;
    let rejected = |e: &dyn std::fmt::Display| {
        refusal(
            StatusCode::UNAUTHORIZED,
            "bad_id_token",
            format!("the provider's ID token was refused: {e}"),
        )
    };
    let header = jws::parse(&tokens.id_token).map_err(|e| rejected(&e))?;
    let keys = provider
        .keys_for(&d, header.header())
        .await
        .map_err(|e| unreachable(provider, &e))?;
    let token = id_token::verify(
        &tokens.id_token,
        &keys,
        &id_token::Expected {
            issuer: &d.issuer,
            client_id: &provider.config.client_id,
            nonce: &pending.nonce,
            now: OffsetDateTime::now_utc().unix_timestamp(),
        },
    )
    .map_err(|e| rejected(&e))?;
    // Claims come from the ID token, else from the userinfo answer.
    let access_token = tokens.access_token.as_deref();
    let mut info = None;
    let claim = &provider.config.user_claim;
    let user = match token.string_claim(claim) {
        Some(u) => u.to_owned(),
        None => {
            tracing::debug!(%claim, "the ID token does not name the user; asking the userinfo endpoint");
            userinfo(provider, &d, access_token, &token.sub, &mut info)
                .await?
                .and_then(|m| m.get(claim.as_str()))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    refusal(
                        StatusCode::UNAUTHORIZED,
                        "no_user_claim",
                        format!("the provider did not say who you are: no {claim} claim"),
                    )
                })?
        }
    };
    let groups = match &provider.config.groups_claim {
        None => Vec::new(),
        Some(claim) => {
            let value = match token.claims.get(claim) {
                Some(v) => Some(v.clone()),
                None => {
                    tracing::debug!(%claim, "the ID token lists no groups; asking the userinfo endpoint");
                    userinfo(provider, &d, access_token, &token.sub, &mut info)
                        .await?
                        .and_then(|m| m.get(claim.as_str()))
                        .cloned()
                }
            };
            match value {
                Some(v) => {
                    let g = groups::from_claim(claim, &v);
                    if let Some(w) = &g.warning {
                        tracing::warn!(user = %discovery::printable(&user, MAX_SHOWN_NAME), "{w}");
                    }
                    g.names
                }
                None => {
                    tracing::debug!(%claim, "the provider lists no groups of the user");
                    Vec::new()
                }
            }
        }
    };
    if let Some(r) = standing_refusal(&state.config(), &user, &groups) {
        return Err(r);
    }
    Ok(SignedIn {
        user,
        groups,
        next: pending.next,
    })
}

/// Opens a sign-in session for `user` that keeps `groups`; its token.
async fn open_session(
    state: &Arc<AdminState>,
    user: &str,
    groups: &[String],
) -> Result<String, Refusal> {
    let (s, u, g) = (state.clone(), user.to_owned(), groups.to_vec());
    let opened = tokio::task::spawn_blocking(move || {
        s.tokens.create_login_with_groups(
            &u,
            "oidc",
            Some(&g),
            LOGIN_TTL,
            OffsetDateTime::now_utc(),
        )
    })
    .await;
    match opened {
        Ok(Ok((token, _))) => Ok(token.expose().to_owned()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not open a sign-in session");
            Err(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not sign in",
            ))
        }
        Err(_) => Err(refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not sign in",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: Resp) -> String {
        String::from_utf8(super::respond::body_bytes(r).to_vec()).unwrap()
    }

    #[test]
    fn refusals_are_json_or_an_escaped_page() {
        let r = Refusal {
            status: StatusCode::FORBIDDEN,
            code: "not_a_user",
            message: "\"<mallory>\" is not a psmgate user".into(),
            user: None,
        };
        let json = respond_refusal(&r, false);
        assert_eq!(json.status(), StatusCode::FORBIDDEN);
        let v: serde_json::Value = serde_json::from_str(&body(json)).unwrap();
        assert_eq!(v["error"], "not_a_user");
        assert_eq!(v["message"], "\"<mallory>\" is not a psmgate user");
        let page = respond_refusal(&r, true);
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let text = body(page);
        assert!(
            text.contains("&quot;&lt;mallory&gt;&quot; is not a psmgate user"),
            "{text}"
        );
        assert!(!text.contains("<mallory>"));
    }

    fn policy(oidc_extra: &str) -> Config {
        let text = format!(
            "[users.alice]\nroles = [\"user\"]\n\n\
             [oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"psmgate\"\n\
             redirect_url = \"https://psmgate.example.com/api/oidc/callback\"\n{oidc_extra}"
        );
        Config::from_toml_str(&text, "psmgate.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_new_group_mapping_keeps_the_client() {
        let a = policy("groups_claim = \"groups\"\n[oidc.group_roles]\nauditors = [\"auditor\"]\n");
        let b = policy("groups_claim = \"groups\"\n[oidc.group_roles]\nadmins = [\"admin\"]\n");
        let c = policy("groups_claim = \"roles\"\n[oidc.group_roles]\nauditors = [\"auditor\"]\n");
        let state = OidcState::default();
        let first = state.provider(&a).unwrap().unwrap();
        let kept = state.provider(&b).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &kept));
        let rebuilt = state.provider(&c).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        assert_eq!(rebuilt.config.groups_claim.as_deref(), Some("roles"));
        assert!(state.provider(&policy("")).unwrap().is_some());
        let mut off = policy("");
        off.oidc = None;
        assert!(state.provider(&off).unwrap().is_none());
    }

    #[test]
    fn who_may_sign_in() {
        let c = policy("groups_claim = \"groups\"\n[oidc.group_roles]\nauditors = [\"auditor\"]\n");
        // Configured, with or without groups; not configured, in a mapped group.
        assert!(standing_refusal(&c, "alice", &[]).is_none());
        assert!(standing_refusal(&c, "alice", &strings(&["other"])).is_none());
        assert!(standing_refusal(&c, "carol", &strings(&["other", "auditors"])).is_none());
        assert!(standing_refusal(&c, "carol@example.com", &strings(&["auditors"])).is_none());
        // Not configured, no mapped group.
        let r = standing_refusal(&c, "mallory", &strings(&["other"])).unwrap();
        assert_eq!((r.status, r.code), (StatusCode::FORBIDDEN, "not_a_user"));
        assert!(
            r.message.starts_with(
                "\"mallory\" signed in at the OpenID provider but is not a psmgate user, and none of their groups has roles under [oidc.group_roles]"
            ),
            "{}",
            r.message
        );
        assert_eq!(r.user.as_deref(), Some("mallory"));
        // A mapped group does not make an unusable name a user.
        for name in [
            ADMIN_TOKEN_PRINCIPAL.to_owned(),
            " ".to_owned(),
            "a\u{7}b".to_owned(),
            "x".repeat(MAX_USER_NAME + 1),
        ] {
            let r = standing_refusal(&c, &name, &strings(&["auditors"])).unwrap();
            assert_eq!(r.code, "bad_user_name", "{name:?}");
            assert!(r
                .user
                .as_deref()
                .is_some_and(|u| u.len() <= MAX_SHOWN_NAME * 4));
        }
        assert!(
            standing_refusal(&c, &"x".repeat(MAX_USER_NAME), &strings(&["auditors"])).is_none()
        );
        // Without groups_claim, the refusal says what it always said.
        let r = standing_refusal(&policy(""), "mallory", &strings(&["auditors"])).unwrap();
        assert_eq!(
            r.message,
            "\"mallory\" signed in at the OpenID provider but is not a psmgate user; an administrator must add [users.mallory] to the policy"
        );
    }

    #[test]
    fn browsers_get_pages() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&h));
    }
}
