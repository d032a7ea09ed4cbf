//! One sign-in attempt, without I/O: the random `state`, `nonce` and PKCE verifier (RFC 7636,
//! S256), the authorization URL, the attempts waiting for the provider's answer (bounded, each
//! for at most [`PENDING_TTL`], bound to the browser that started it), the callback's parameters
//! and where the browser goes once signed in.

use crate::admin::respond::percent_encode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use psmgate_policy::TokenEndpointAuthMethod;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a sign-in attempt waits for the provider's answer.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Most sign-in attempts waiting at once; past it the oldest is dropped.
pub const MAX_PENDING: usize = 1024;
/// Where the browser goes after signing in when the attempt names no (acceptable) place.
pub const DEFAULT_NEXT: &str = "/ui/";
/// Longest `next` kept, in bytes.
pub const MAX_NEXT: usize = 512;

/// 256 random bits, base64url (43 characters): states, nonces, PKCE verifiers, browser bindings.
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The PKCE S256 challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `next` when it is a path on this site (`/…`, not `//…`, no backslash, printable ASCII, at
/// most [`MAX_NEXT`] bytes), else [`DEFAULT_NEXT`]: the callback never sends the browser
/// elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= MAX_NEXT
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_owned()
        }
        _ => DEFAULT_NEXT.to_owned(),
    }
}

/// `application/x-www-form-urlencoded` text of `pairs` (also a URL query).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What the authorization request says.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    /// The provider's `authorization_endpoint` (may have a query of its own).
    pub endpoint: &'a str,
    /// The gateway's client id.
    pub client_id: &'a str,
    /// The gateway's callback.
    pub redirect_url: &'a str,
    /// Scopes asked for.
    pub scopes: &'a [String],
    /// The attempt's state.
    pub state: &'a str,
    /// The attempt's nonce.
    pub nonce: &'a str,
    /// The PKCE S256 challenge.
    pub code_challenge: &'a str,
}

/// The URL the browser is sent to: the authorization code flow with PKCE S256.
pub fn authorize_url(r: &AuthorizeRequest<'_>) -> String {
    let scope = r.scopes.join(" ");
    let query = form_encode(&[
        ("response_type", "code"),
        ("client_id", r.client_id),
        ("redirect_uri", r.redirect_url),
        ("scope", &scope),
        ("state", r.state),
        ("nonce", r.nonce),
        ("code_challenge", r.code_challenge),
        ("code_challenge_method", "S256"),
    ]);
    let sep = if r.endpoint.contains('?') { '&' } else { '?' };
    format!("{}{sep}{query}", r.endpoint)
}

/// A sign-in attempt waiting for the provider's answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Pending {
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier sent with the code.
    pub verifier: String,
    /// The value of the browser's binding cookie.
    pub binding: String,
    /// Where the browser goes once signed in.
    pub next: String,
    created: Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// A new attempt: its state (the key), and what is kept for the callback.
pub fn new_attempt(next: Option<&str>, now: Instant) -> (String, Pending) {
    (
        random_token(),
        Pending {
            nonce: random_token(),
            verifier: random_token(),
            binding: random_token(),
            next: safe_next(next),
            created: now,
        },
    )
}

/// Why a callback matches no waiting attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    /// No attempt has this state (never started, already used, or dropped).
    #[error("this sign-in attempt is unknown or was already used; start again")]
    Unknown,
    /// The attempt waited longer than [`PENDING_TTL`].
    #[error("this sign-in attempt took too long; start again")]
    Expired,
    /// The browser does not hold the attempt's binding cookie.
    #[error("this sign-in was not started in this browser; start again")]
    OtherBrowser,
}

/// The attempts waiting for the provider's answer, by state.
#[derive(Debug, Default)]
pub struct PendingLogins {
    by_state: HashMap<String, Pending>,
}

impl PendingLogins {
    /// Keeps `pending` under `state`, first dropping expired attempts and, when full, the oldest.
    pub fn insert(&mut self, state: String, pending: Pending, now: Instant) {
        self.by_state
            .retain(|_, p| now.saturating_duration_since(p.created) < PENDING_TTL);
        while self.by_state.len() >= MAX_PENDING {
            let Some(oldest) = self
                .by_state
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            self.by_state.remove(&oldest);
        }
        self.by_state.insert(state, pending);
    }

    /// Takes the attempt of `state` (it can be used once) if it is still waiting and
    /// `binding` (the browser's cookie) is its own.
    pub fn take(
        &mut self,
        state: &str,
        binding: Option<&str>,
        now: Instant,
    ) -> Result<Pending, PendingError> {
        let p = self.by_state.remove(state).ok_or(PendingError::Unknown)?;
        if now.saturating_duration_since(p.created) >= PENDING_TTL {
            return Err(PendingError::Expired);
        }
        match binding {
            Some(b)
                if crate::admin::respond::constant_time_eq(b.as_bytes(), p.binding.as_bytes()) =>
            {
                Ok(p)
            }
            _ => Err(PendingError::OtherBrowser),
        }
    }

    /// How many attempts are kept.
    pub fn len(&self) -> usize {
        self.by_state.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.by_state.is_empty()
    }
}

/// The provider's answer, as the browser brings it to the callback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The attempt's state.
    pub state: Option<String>,
    /// The issuer (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
    /// An error code instead of a code.
    pub error: Option<String>,
    /// The error's description.
    pub error_description: Option<String>,
}

impl CallbackParams {
    /// The parameters of the callback's query.
    pub fn parse(query: &str) -> CallbackParams {
        let get = |name| {
            crate::admin::respond::query_param(query, name)
                .filter(|v| !v.is_empty())
                .map(|v| v.chars().take(2048).collect())
        };
        CallbackParams {
            code: get("code"),
            state: get("state"),
            iss: get("iss"),
            error: get("error"),
            error_description: get("error_description"),
        }
    }
}

/// How the gateway authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret.
    Basic,
    /// The client id and secret in the form body.
    Post,
    /// A public client: the client id in the form, PKCE only.
    None,
}

/// The method to use: without a secret `none`; with one, the configured method, else
/// `client_secret_basic` unless the provider lists only `client_secret_post` (no list means
/// basic, RFC 8414).
pub fn choose_client_auth(
    configured: Option<TokenEndpointAuthMethod>,
    supported: Option<&[String]>,
    has_secret: bool,
) -> ClientAuth {
    match (has_secret, configured) {
        (false, _) => return ClientAuth::None,
        (true, Some(TokenEndpointAuthMethod::ClientSecretBasic)) => return ClientAuth::Basic,
        (true, Some(TokenEndpointAuthMethod::ClientSecretPost)) => return ClientAuth::Post,
        (true, None) => {}
    }
    let listed = |m: &str| supported.is_some_and(|s| s.iter().any(|x| x == m));
    if supported.is_none() || listed("client_secret_basic") || !listed("client_secret_post") {
        ClientAuth::Basic
    } else {
        ClientAuth::Post
    }
}

/// The token request's form body and `Authorization` header value (for [`ClientAuth::Basic`]).
pub fn token_request(
    auth: ClientAuth,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    redirect_url: &str,
    verifier: &str,
) -> (String, Option<String>) {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_url),
        ("code_verifier", verifier),
    ];
    let secret = secret.unwrap_or_default();
    let header = match auth {
        ClientAuth::Basic => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                percent_encode(client_id),
                percent_encode(secret)
            ))
        )),
        ClientAuth::Post => {
            pairs.push(("client_id", client_id));
            pairs.push(("client_secret", secret));
            None
        }
        ClientAuth::None => {
            pairs.push(("client_id", client_id));
            None
        }
    };
    (form_encode(&pairs), header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::respond::query_param;

    #[test]
    fn pkce_matches_the_rfc_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
    }

    #[test]
    fn authorize_url_holds_every_parameter() {
        let scopes = vec!["openid".to_owned(), "profile".to_owned()];
        let r = AuthorizeRequest {
            endpoint: "https://idp/auth?tenant=a b",
            client_id: "psm gate",
            redirect_url: "https://gw:8443/api/oidc/callback",
            scopes: &scopes,
            state: "st",
            nonce: "no",
            code_challenge: "ch",
        };
        let url = authorize_url(&r);
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://idp/auth");
        assert!(query.starts_with("tenant=a b&response_type=code&"), "{url}");
        for (k, v) in [
            ("response_type", "code"),
            ("client_id", "psm gate"),
            ("redirect_uri", "https://gw:8443/api/oidc/callback"),
            ("scope", "openid profile"),
            ("state", "st"),
            ("nonce", "no"),
            ("code_challenge", "ch"),
            ("code_challenge_method", "S256"),
        ] {
            assert_eq!(query_param(query, k).as_deref(), Some(v), "{k} in {url}");
        }
        let plain = authorize_url(&AuthorizeRequest {
            endpoint: "https://idp/auth",
            ..r
        });
        assert!(plain.starts_with("https://idp/auth?response_type=code&"));
    }

    #[test]
    fn next_stays_on_the_site() {
        assert_eq!(safe_next(Some("/ui/#/access")), "/ui/#/access");
        assert_eq!(safe_next(Some("/player/?id=1")), "/player/?id=1");
        for bad in [
            None,
            Some(""),
            Some("ui/"),
            Some("//evil.example/"),
            Some("/\\evil.example/"),
            Some("https://evil.example/"),
            Some("/a b"),
            Some("/a\nb"),
        ] {
            assert_eq!(safe_next(bad), DEFAULT_NEXT, "{bad:?}");
        }
        assert_eq!(
            safe_next(Some(&format!("/{}", "a".repeat(MAX_NEXT)))),
            DEFAULT_NEXT
        );
    }

    #[test]
    fn attempts_are_used_once_by_their_browser_within_their_time() {
        let t0 = Instant::now();
        let mut p = PendingLogins::default();
        let (state, pending) = new_attempt(Some("/ui/#/live"), t0);
        let binding = pending.binding.clone();
        assert_eq!(pending.next, "/ui/#/live");
        p.insert(state.clone(), pending.clone(), t0);
        assert_eq!(
            p.take("other", Some(&binding), t0),
            Err(PendingError::Unknown)
        );
        assert_eq!(
            p.take(&state, Some("another-browser"), t0),
            Err(PendingError::OtherBrowser)
        );
        // A refused callback used the attempt up.
        assert_eq!(
            p.take(&state, Some(&binding), t0),
            Err(PendingError::Unknown)
        );
        p.insert(state.clone(), pending.clone(), t0);
        assert_eq!(p.take(&state, None, t0), Err(PendingError::OtherBrowser));
        p.insert(state.clone(), pending.clone(), t0);
        let got = p
            .take(&state, Some(&binding), t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(got, pending);
        assert!(p.is_empty());
        p.insert(state.clone(), pending, t0);
        assert_eq!(
            p.take(&state, Some(&binding), t0 + PENDING_TTL),
            Err(PendingError::Expired)
        );
    }

    #[test]
    fn waiting_attempts_are_bounded() {
        let t0 = Instant::now();
        let mut p = PendingLogins::default();
        let (first, _) = new_attempt(None, t0);
        for i in 0..MAX_PENDING + 10 {
            let (s, a) = new_attempt(None, t0 + Duration::from_millis(i as u64));
            let s = if i == 0 { first.clone() } else { s };
            p.insert(s, a, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(p.take(&first, Some("x"), t0), Err(PendingError::Unknown));
        // Expired ones go first.
        let later = t0 + PENDING_TTL + Duration::from_secs(5);
        let (s, a) = new_attempt(None, later);
        p.insert(s, a, later);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn callback_parameters() {
        let c = CallbackParams::parse("code=abc%2Fd&state=s1&iss=https%3A%2F%2Fidp&x=1");
        assert_eq!(c.code.as_deref(), Some("abc/d"));
        assert_eq!(c.state.as_deref(), Some("s1"));
        assert_eq!(c.iss.as_deref(), Some("https://idp"));
        assert_eq!(c.error, None);
        let c = CallbackParams::parse("error=access_denied&error_description=no+way&state=");
        assert_eq!(c.error.as_deref(), Some("access_denied"));
        assert_eq!(c.error_description.as_deref(), Some("no way"));
        assert_eq!(c.state, None);
        assert_eq!(CallbackParams::parse(""), CallbackParams::default());
    }

    #[test]
    fn client_authentication() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let both = v(&["client_secret_post", "client_secret_basic"]);
        assert_eq!(choose_client_auth(None, None, true), ClientAuth::Basic);
        assert_eq!(
            choose_client_auth(None, Some(&v(&["client_secret_post"])), true),
            ClientAuth::Post
        );
        assert_eq!(
            choose_client_auth(None, Some(&both), true),
            ClientAuth::Basic
        );
        assert_eq!(
            choose_client_auth(
                Some(TokenEndpointAuthMethod::ClientSecretPost),
                Some(&both),
                true
            ),
            ClientAuth::Post
        );
        assert_eq!(
            choose_client_auth(Some(TokenEndpointAuthMethod::ClientSecretBasic), None, true),
            ClientAuth::Basic
        );
        assert_eq!(
            choose_client_auth(None, Some(&v(&["client_secret_post"])), false),
            ClientAuth::None
        );
        let (body, header) = token_request(
            ClientAuth::Basic,
            "gw",
            Some("s:ec"),
            "c/1",
            "https://g/cb",
            "v",
        );
        assert_eq!(
            header.as_deref(),
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("gw:s%3Aec")
            ))
            .as_deref()
        );
        assert_eq!(query_param(&body, "code").as_deref(), Some("c/1"));
        assert_eq!(query_param(&body, "code_verifier").as_deref(), Some("v"));
        assert_eq!(
            query_param(&body, "grant_type").as_deref(),
            Some("authorization_code")
        );
        assert_eq!(query_param(&body, "client_secret"), None);
        let (body, header) = token_request(
            ClientAuth::Post,
            "gw",
            Some("sec"),
            "c",
            "https://g/cb",
            "v",
        );
        assert_eq!(header, None);
        assert_eq!(query_param(&body, "client_secret").as_deref(), Some("sec"));
        let (body, _) = token_request(ClientAuth::None, "gw", None, "c", "https://g/cb", "v");
        assert_eq!(query_param(&body, "client_id").as_deref(), Some("gw"));
        assert_eq!(query_param(&body, "client_secret"), None);
    }
}
