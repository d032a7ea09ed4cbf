//! The web proxy's certificate authority: generated on first start, kept in the data folder
//! (private key mode 0600), and used to issue a short-lived leaf certificate per intercepted
//! host. Browsers trust it once (`psmgate ca export` prints the PEM).
//!
//! The CA's name carries a digest of its public key, so two gateways never issue under the same
//! name, and the name can be rebuilt from the key alone: at start the issuer is reconstructed
//! from the stored key (what a leaf's issuer name and authority key identifier need), while the
//! stored certificate is what users trust.

use anyhow::{anyhow, Context, Result};
use hudsucker::certificate_authority::CertificateAuthority;
use hudsucker::hyper::http::uri::Authority;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// File names inside the CA folder.
const CA_CERT: &str = "web-ca.pem";
const CA_KEY: &str = "web-ca-key.pem";
/// How long the CA is valid for.
const CA_VALIDITY_DAYS: i64 = 3650;
/// How long an issued leaf is valid for (browsers cap publicly trusted leaves at 398 days;
/// short-lived ones leave nothing useful behind).
const LEAF_VALIDITY_DAYS: i64 = 30;
/// Leaves kept in memory; the cache is emptied when full.
const LEAF_CACHE: usize = 1024;

/// The gateway CA and its leaf cache.
pub struct WebCa {
    cert_pem: String,
    fingerprint: String,
    issuer: rcgen::Certificate,
    issuer_key: KeyPair,
    /// One key for every leaf of this process.
    leaf_key: KeyPair,
    cache: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
    /// Presented when no leaf can be issued: every handshake fails.
    refuse: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for WebCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCa")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl WebCa {
    /// Loads the CA from `dir`, generating it first when missing.
    pub fn load_or_generate(dir: &Path) -> Result<WebCa> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if !cert_path.exists() || !key_path.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = KeyPair::generate().context("generating the web proxy CA key")?;
            let now = OffsetDateTime::now_utc();
            let mut params = ca_params(&key);
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
            let cert = params
                .self_signed(&key)
                .context("signing the web proxy CA")?;
            crate::tls::write_private(&key_path, key.serialize_pem().as_bytes())?;
            std::fs::write(&cert_path, cert.pem())
                .with_context(|| format!("writing {}", cert_path.display()))?;
            tracing::info!(cert = %cert_path.display(), "generated the web proxy CA");
        }
        let cert_pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        Self::from_pem(&cert_pem, &key_pem)
            .with_context(|| format!("loading the web proxy CA from {}", dir.display()))
    }

    /// Builds the CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<WebCa> {
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| anyhow!("bad CA certificate PEM: {e}"))?;
        let issuer_key = KeyPair::from_pem(key_pem).context("bad CA key PEM")?;
        let mut params = ca_params(&issuer_key);
        // Only the name, key identifier method and key usages of the issuer reach a leaf.
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let issuer = params
            .self_signed(&issuer_key)
            .context("rebuilding the CA issuer")?;
        // The stored certificate must be the one for this key.
        let spki = crate::tls::subject_public_key(der.as_ref())?;
        anyhow::ensure!(
            spki == issuer_key.public_key_raw(),
            "the CA certificate does not belong to the CA key"
        );
        let leaf_key = KeyPair::generate().context("generating the leaf key")?;
        Ok(WebCa {
            cert_pem: cert_pem.to_string(),
            fingerprint: hex::encode(Sha256::digest(der.as_ref())),
            issuer,
            issuer_key,
            leaf_key,
            cache: Mutex::new(HashMap::new()),
            refuse: Arc::new(no_certificate()?),
        })
    }

    /// The CA certificate (PEM), for browser and OS trust stores.
    pub fn pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (hex).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The TLS server configuration presented to the browser for `host` (a DNS name or IP
    /// literal, without port); cached per host.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.lock().get(&host) {
            return Ok(c.clone());
        }
        let config = Arc::new(self.issue(&host)?);
        let mut cache = self.lock();
        if cache.len() >= LEAF_CACHE {
            cache.clear();
        }
        cache.insert(host, config.clone());
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<rustls::ServerConfig>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a leaf for `host` and wraps it in a server configuration.
    fn issue(&self, host: &str) -> Result<rustls::ServerConfig> {
        let leaf = self.leaf_certificate(host)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.issuer.der().clone()], key)
            .context("leaf certificate and key")?;
        // The browser side speaks HTTP/1.1 (WebSocket upgrades included).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A leaf certificate for `host` signed by the CA (DER).
    pub fn leaf_certificate(&self, host: &str) -> Result<CertificateDer<'static>> {
        let san = match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|_| anyhow!("{host:?} is not a host name a certificate can carry"))?,
            ),
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![san];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
        params.serial_number = Some(rand::random::<u64>().into());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer, &self.issuer_key)
            .with_context(|| format!("issuing a certificate for {host}"))?;
        Ok(cert.der().clone())
    }
}

/// The CA's parameters; its name derives from its key.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let id = hex::encode(&Sha256::digest(key.public_key_raw())[..6]);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "psmgate");
    dn.push(DnType::CommonName, format!("psmgate web proxy CA {id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl CertificateAuthority for WebCa {
    async fn gen_server_config(&self, authority: &Authority) -> Arc<rustls::ServerConfig> {
        match self.server_config(authority.host()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(host = %authority.host(), error = %format!("{e:#}"), "no certificate for this host");
                self.refuse.clone()
            }
        }
    }
}

/// A server configuration that fails every handshake (no certificate to present).
fn no_certificate() -> Result<rustls::ServerConfig> {
    #[derive(Debug)]
    struct Nothing;
    impl rustls::server::ResolvesServerCert for Nothing {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Nothing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(ca: &WebCa, host: &str, leaf: &CertificateDer<'static>) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        verifier
            .verify_server_cert(leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn leaves_chain_to_the_stored_ca_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = WebCa::load_or_generate(dir.path()).unwrap();
        let again = WebCa::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.pem(), again.pem());
        for host in ["console.example.com", "127.0.0.1"] {
            let leaf = again.leaf_certificate(host).unwrap();
            verify(&first, host, &leaf).unwrap();
        }
        // A leaf is for its host only.
        let leaf = again.leaf_certificate("a.example.com").unwrap();
        assert!(verify(&first, "b.example.com", &leaf).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn another_ca_does_not_vouch_for_the_leaves() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ca_a = WebCa::load_or_generate(a.path()).unwrap();
        let ca_b = WebCa::load_or_generate(b.path()).unwrap();
        let leaf = ca_a.leaf_certificate("example.com").unwrap();
        assert!(verify(&ca_b, "example.com", &leaf).is_err());
    }

    #[test]
    fn a_mismatched_key_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let _ = WebCa::load_or_generate(a.path()).unwrap();
        let _ = WebCa::load_or_generate(b.path()).unwrap();
        let cert = std::fs::read_to_string(a.path().join(CA_CERT)).unwrap();
        let key = std::fs::read_to_string(b.path().join(CA_KEY)).unwrap();
        let e = WebCa::from_pem(&cert, &key).unwrap_err();
        assert!(format!("{e:#}").contains("does not belong"), "{e:#}");
    }

    #[test]
    fn server_configs_are_cached_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let ca = WebCa::load_or_generate(dir.path()).unwrap();
        let a = ca.server_config("Example.COM.").unwrap();
        let b = ca.server_config("example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
