//! Talking to the OpenID provider: its discovery document (kept for an hour, fetched again after
//! a failure), its keys (kept by key id; fetched again for an unknown key id at most every
//! [`KEYS_REFETCH_INTERVAL`]), the code exchange and the userinfo request. HTTPS verified
//! against the system roots and `oidc.extra_roots` with `ring`; every request is bounded in
//! time and size.

use super::discovery::{self, Discovery, DocumentError, TokenResponse};
use super::flow::{self, PendingLogins};
use super::jws::{Header, JwkSet, JwsError};
use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use psmgate_policy::OidcConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one request to the provider may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the provider.
pub const MAX_ANSWER: usize = 1024 * 1024;
/// How long the discovery document and the keys are kept.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Least time between two fetches of the keys caused by unknown key ids.
pub const KEYS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why talking to the provider failed. Never holds a secret, a code or a token.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer (connection, TLS, timeout).
    #[error("the OpenID provider could not be reached at {url}: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An answer with an unexpected status.
    #[error("the OpenID provider answered {status} at {url}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The URL called.
        url: String,
        /// The status.
        status: StatusCode,
        /// The OAuth error in the answer, if any.
        detail: Option<String>,
    },
    /// An answer of the wrong form.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The key set.
    #[error(transparent)]
    Keys(#[from] JwsError),
    /// The client secret could not be read.
    #[error("oidc.client_secret: {0}")]
    Secret(String),
}

impl ProviderError {
    /// True when the provider refused what the gateway sent (a 4xx answer), rather than failed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ProviderError::Status { status, .. } if status.is_client_error())
    }
}

struct Cached<T> {
    value: Arc<T>,
    fetched: Instant,
}

/// The client of one `[oidc]` configuration, and the sign-in attempts started with it.
pub struct Provider {
    /// The configuration it was built for.
    pub config: OidcConfig,
    http: HttpClient,
    discovery: Mutex<Option<Cached<Discovery>>>,
    keys: Mutex<Option<Cached<JwkSet>>>,
    pending: Mutex<PendingLogins>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Trusted roots: the system's, then each PEM file of `oidc.extra_roots`.
fn roots(config: &OidcConfig) -> anyhow::Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = store.add_parsable_certificates(native.certs);
    for (path, written) in config
        .extra_roots
        .iter()
        .zip(&config.extra_roots_as_written)
    {
        let what = || format!("oidc.extra_roots entry {}", written.display());
        let pem = std::fs::read(path).with_context(|| format!("reading {}", what()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{}: bad certificate PEM: {e}", what()))?;
        anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", what());
        for c in certs {
            store
                .add(c)
                .with_context(|| format!("{}: unusable root certificate", what()))?;
        }
    }
    anyhow::ensure!(
        !store.is_empty(),
        "no trusted root certificates: install the system's (ca-certificates) or set oidc.extra_roots"
    );
    Ok(store)
}

impl Provider {
    /// A client for `config` (reads `oidc.extra_roots`; talks to nobody yet).
    pub fn new(config: OidcConfig) -> anyhow::Result<Provider> {
        let roots = Arc::new(roots(&config)?);
        let tls = crate::web::upstream::client_config(roots, &[])?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Provider {
            config,
            http: Client::builder(TokioExecutor::new()).build(connector),
            discovery: Mutex::new(None),
            keys: Mutex::new(None),
            pending: Mutex::new(PendingLogins::default()),
        })
    }

    /// The sign-in attempts waiting for the provider's answer.
    pub fn pending(&self) -> MutexGuard<'_, PendingLogins> {
        lock(&self.pending)
    }

    /// One request; the status and the answer's body.
    async fn call(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        form: Option<String>,
    ) -> Result<(StatusCode, Bytes), ProviderError> {
        let unreachable = |reason: String| ProviderError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "psmgate");
        if let Some(a) = authorization {
            let mut v = HeaderValue::from_str(a)
                .map_err(|_| ProviderError::Secret("is not usable in an HTTP header".into()))?;
            v.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, v);
        }
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))?
    }

    /// A GET that must answer 200.
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Bytes, ProviderError> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let (status, body) = self.call(Method::GET, url, auth.as_deref(), None).await?;
        if status != StatusCode::OK {
            return Err(ProviderError::Status {
                url: url.to_owned(),
                status,
                detail: discovery::oauth_error(&body),
            });
        }
        Ok(body)
    }

    /// The discovery document: kept for [`CACHE_TTL`], fetched when there is none.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, ProviderError> {
        if let Some(c) = lock(&self.discovery).as_ref() {
            if c.fetched.elapsed() < CACHE_TTL {
                return Ok(c.value.clone());
            }
        }
        let url = discovery::discovery_url(&self.config.issuer);
        let body = self.get(&url, None).await?;
        let d = Arc::new(discovery::parse_discovery(&body, &self.config.issuer)?);
        *lock(&self.discovery) = Some(Cached {
            value: d.clone(),
            fetched: Instant::now(),
        });
        Ok(d)
    }

    /// Drops the discovery document kept, so that the next sign-in fetches it again (after a
    /// failure that may come from a provider that changed). Keys are fetched again by key id.
    pub fn forget(&self) {
        *lock(&self.discovery) = None;
    }

    /// The keys to verify a token with `header`: those kept, or fetched again when none is
    /// kept, they are older than [`CACHE_TTL`], or none fits the header's key id and the last
    /// fetch is more than [`KEYS_REFETCH_INTERVAL`] ago.
    pub async fn keys_for(
        &self,
        d: &Discovery,
        header: &Header,
    ) -> Result<Arc<JwkSet>, ProviderError> {
        let kept = lock(&self.keys)
            .as_ref()
            .map(|c| (c.value.clone(), c.fetched.elapsed()));
        if let Some((set, age)) = &kept {
            let fresh = *age < CACHE_TTL;
            if (fresh && set.has_candidate(header)) || *age < KEYS_REFETCH_INTERVAL {
                return Ok(set.clone());
            }
        }
        // Mark the fetch first, so that concurrent sign-ins with unknown keys do not all fetch.
        if let Some(c) = lock(&self.keys).as_mut() {
            c.fetched = Instant::now();
        }
        let body = self.get(&d.jwks_uri, None).await?;
        let set = Arc::new(JwkSet::parse(&body)?);
        *lock(&self.keys) = Some(Cached {
            value: set.clone(),
            fetched: Instant::now(),
        });
        Ok(set)
    }

    /// Exchanges `code` (with the PKCE `verifier`) at the token endpoint.
    pub async fn exchange(
        &self,
        d: &Discovery,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let secret = match &self.config.client_secret {
            Some(r) => Some(
                r.resolve()
                    .map_err(|e| ProviderError::Secret(e.to_string()))?,
            ),
            None => None,
        };
        let secret_text = match &secret {
            Some(s) => Some(
                s.expose_str()
                    .ok_or_else(|| ProviderError::Secret("is not UTF-8 text".into()))?,
            ),
            None => None,
        };
        let auth = flow::choose_client_auth(
            self.config.token_endpoint_auth_method,
            d.token_endpoint_auth_methods_supported.as_deref(),
            secret.is_some(),
        );
        let (form, authorization) = flow::token_request(
            auth,
            &self.config.client_id,
            secret_text,
            code,
            &self.config.redirect_url,
            verifier,
        );
        let (status, body) = self
            .call(
                Method::POST,
                &d.token_endpoint,
                authorization.as_deref(),
                Some(form),
            )
            .await?;
        if status != StatusCode::OK {
            return Err(ProviderError::Status {
                url: d.token_endpoint.clone(),
                status,
                detail: discovery::oauth_error(&body),
            });
        }
        Ok(discovery::parse_token_response(&body)?)
    }

    /// The userinfo claims of `sub`, with the access token.
    pub async fn userinfo(
        &self,
        d: &Discovery,
        access_token: &str,
        sub: &str,
    ) -> Result<Option<Map<String, Value>>, ProviderError> {
        let Some(url) = &d.userinfo_endpoint else {
            return Ok(None);
        };
        let body = self.get(url, Some(access_token)).await?;
        Ok(Some(discovery::parse_userinfo(&body, sub)?))
    }
}

/// An error with its sources, for a message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A provider on plain HTTP at 127.0.0.1 serving a discovery document and a key set with
    /// key `kid`; counts the requests of each.
    async fn serve(kid: &'static str) -> (String, Arc<[AtomicUsize; 2]>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (b, c) = (base.clone(), counts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (b, c) = (b.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: Request<hyper::body::Incoming>| {
                            let body = match req.uri().path() {
                                "/.well-known/openid-configuration" => {
                                    c[0].fetch_add(1, Ordering::SeqCst);
                                    serde_json::json!({
                                        "issuer": b,
                                        "authorization_endpoint": format!("{b}/auth"),
                                        "token_endpoint": format!("{b}/token"),
                                        "jwks_uri": format!("{b}/jwks"),
                                    })
                                }
                                _ => {
                                    c[1].fetch_add(1, Ordering::SeqCst);
                                    serde_json::json!({"keys": [
                                        {"kty": "EC", "crv": "P-256", "kid": kid, "x": "AA", "y": "AA"}
                                    ]})
                                }
                            };
                            async move {
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from(body.to_string()),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (base, counts)
    }

    /// A configuration for `issuer` trusting a throw-away root (kept in `dir`), so that a client
    /// can be built whatever the system's roots.
    fn config(issuer: &str, dir: &std::path::Path) -> OidcConfig {
        let root = rcgen::generate_simple_self_signed(vec!["root.test".to_owned()]).unwrap();
        let pem = dir.join("root.pem");
        std::fs::write(&pem, root.cert.pem()).unwrap();
        OidcConfig {
            issuer: issuer.to_owned(),
            client_id: "gw".into(),
            client_secret: None,
            token_endpoint_auth_method: None,
            redirect_url: "http://127.0.0.1:1/api/oidc/callback".into(),
            scopes: vec!["openid".into()],
            user_claim: "preferred_username".into(),
            extra_roots: vec![pem.clone()],
            extra_roots_as_written: vec![pem],
            button_label: "x".into(),
            groups_claim: None,
            group_roles: Default::default(),
        }
    }

    fn header(kid: &str) -> Header {
        Header {
            alg: super::super::jws::Alg::Es256,
            kid: Some(kid.to_owned()),
        }
    }

    #[tokio::test]
    async fn documents_are_kept_and_keys_fetched_again_sparingly() {
        let (base, counts) = serve("k1").await;
        let count = |i: usize| counts[i].load(Ordering::SeqCst);
        let dir = tempfile::tempdir().unwrap();
        let p = Provider::new(config(&base, dir.path())).unwrap();
        let d = p.discovery().await.unwrap();
        assert_eq!(d.jwks_uri, format!("{base}/jwks"));
        p.discovery().await.unwrap();
        assert_eq!(count(0), 1, "the discovery document is kept");
        p.forget();
        p.discovery().await.unwrap();
        assert_eq!(count(0), 2, "and fetched again once forgotten");

        let keys = p.keys_for(&d, &header("k1")).await.unwrap();
        assert_eq!(keys.keys().len(), 1);
        p.keys_for(&d, &header("k1")).await.unwrap();
        assert_eq!(count(1), 1, "known key ids use the kept keys");
        // An unknown key id right after a fetch: no new fetch.
        let keys = p.keys_for(&d, &header("k2")).await.unwrap();
        assert!(!keys.has_candidate(&header("k2")));
        assert_eq!(count(1), 1);
        // Once the interval has passed, an unknown key id fetches the keys again.
        if let Some(c) = lock(&p.keys).as_mut() {
            c.fetched = Instant::now()
                .checked_sub(KEYS_REFETCH_INTERVAL + Duration::from_secs(1))
                .unwrap_or(c.fetched);
        }
        p.keys_for(&d, &header("k2")).await.unwrap();
        assert_eq!(count(1), 2);
        p.keys_for(&d, &header("k2")).await.unwrap();
        assert_eq!(count(1), 2);
    }

    #[test]
    fn unreadable_extra_roots_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config("https://idp.test", dir.path());
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        c.extra_roots = vec![bad];
        c.extra_roots_as_written = vec![std::path::PathBuf::from("ca/bad.pem")];
        let e = Provider::new(c).unwrap_err();
        assert!(
            format!("{e:#}").contains("oidc.extra_roots entry ca/bad.pem"),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_named() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let p = Provider::new(config(&format!("http://127.0.0.1:{port}"), dir.path())).unwrap();
        let e = p.discovery().await.unwrap_err();
        assert!(matches!(e, ProviderError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.is_refusal());
    }
}
