//! The admin listener's TLS identity: configured files, or a self-signed certificate generated
//! on first start and kept in the data folder (private key mode 0600).

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// Loads `cert.pem`/`key.pem` from `dir`, generating them for `localhost`/`127.0.0.1` first if
/// missing. Returns the rustls server config and the certificate's SHA-256 fingerprint.
pub fn load_or_generate(dir: &Path) -> Result<(Arc<rustls::ServerConfig>, String)> {
    load_or_generate_with(dir, rustls::DEFAULT_VERSIONS)
}

/// [`load_or_generate`] limited to the given TLS versions.
pub fn load_or_generate_with(
    dir: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(Arc<rustls::ServerConfig>, String)> {
    let cert_path = dir.join("admin-cert.pem");
    let key_path = dir.join("admin-key.pem");
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let ck =
            rcgen::generate_simple_self_signed(names).context("generating admin certificate")?;
        write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, ck.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        tracing::info!(cert = %cert_path.display(), "generated self-signed admin certificate");
    }
    let cert_pem =
        std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key_pem =
        std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let certs: Vec<_> = rustls_pemfile_certs(&cert_pem)?;
    let fingerprint = certs
        .first()
        .map(|c| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(c.as_ref())))
        .unwrap_or_default();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow::anyhow!("{}: no usable private key: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("admin certificate and key do not match")?;
    Ok((Arc::new(config), fingerprint))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("bad certificate PEM: {e}"))?;
    anyhow::ensure!(!certs.is_empty(), "certificate file holds no certificate");
    Ok(certs)
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// The gateway's leaf certificate (DER) as [`load_or_generate`] serves it: RDP's CredSSP binds
/// to the public key inside it.
pub fn leaf_certificate(dir: &Path) -> Result<rustls::pki_types::CertificateDer<'static>> {
    let cert_path = dir.join("admin-cert.pem");
    let pem =
        std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    rustls_pemfile_certs(&pem)?
        .into_iter()
        .next()
        .context("certificate file holds no certificate")
}

/// The `subjectPublicKey` bits of a DER certificate: what CredSSP's public-key binding
/// ([MS-CSSP] 3.1.5) covers.
pub fn subject_public_key(cert_der: &[u8]) -> Result<Vec<u8>> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert_der).context("parsing a TLS certificate")?;
    Ok(cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec())
}
