//! The gateway signing key (Ed25519).
//!
//! The private key is stored as a PKCS#8 PEM file readable by its owner only (mode `0600`).
//! A key file that group or others can read is refused, because a leaked key lets anyone forge
//! checkpoints.
//!
//! The key signs chain checkpoints (message format: [`crate::chain::checkpoint_message`]) and
//! audit log entries (message format: [`crate::audit::audit_signature_message`]); the two
//! messages start with different domain prefixes, so neither signature can pass for the other.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::audit::audit_signature_message;
use crate::chain::{checkpoint_message, Digest};

/// Errors of loading, generating or parsing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("gateway key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "gateway key file {path} is accessible by group or others (mode {mode:03o}); \
         it must be private to its owner: run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not hold a PKCS#8 Ed25519 private key.
    #[error("gateway key file {path} does not hold a PKCS#8 PEM Ed25519 private key: {reason}")]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A base64 public key could not be parsed.
    #[error("invalid Ed25519 public key: {0}")]
    InvalidPublicKey(String),
}

/// The gateway's Ed25519 key pair.
pub struct GatewayKey {
    signing: SigningKey,
    verifying: VerifyingKey,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("GatewayKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl GatewayKey {
    /// Wraps an existing signing key.
    pub fn from_signing_key(signing: SigningKey) -> Self {
        let verifying = signing.verifying_key();
        GatewayKey { signing, verifying }
    }

    /// A fresh random key held in memory only.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Loads the key at `path`, or generates one and stores it there (mode `0600`) if the file
    /// does not exist.
    ///
    /// Fails if an existing file is readable or writable by group or others, or does not hold
    /// an Ed25519 PKCS#8 PEM key.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let key = Self::generate();
        match key.store_new(path) {
            Ok(()) => Ok(key),
            // Another process created the key first: use that one.
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                Self::load(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Loads the key at `path`, checking its permissions first.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = fs::metadata(path).map_err(io_err)?;
        check_permissions(path, &meta)?;
        let pem = fs::read_to_string(path).map_err(io_err)?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_signing_key(signing))
    }

    /// Writes the key to a new file at `path` with mode `0600`; never replaces an existing file.
    fn store_new(&self, path: &Path) -> Result<(), KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let pem = self
            .signing
            .to_pkcs8_pem(Default::default())
            .map_err(|e| KeyError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_err)?;
        let written = file
            .write_all(pem.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(io_err(e));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(dir) = fs::File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The public key as standard base64 of its raw 32 bytes.
    pub fn public_key_base64(&self) -> String {
        B64.encode(self.verifying.as_bytes())
    }

    /// The key id: the first 16 hex characters of SHA-256 of the raw 32-byte public key.
    pub fn key_id(&self) -> String {
        key_id(&self.verifying)
    }

    /// Signs the checkpoint message for `session_id`, `seq` and `head`.
    pub fn sign_checkpoint(&self, session_id: &str, seq: u64, head: &Digest) -> Signature {
        use ed25519_dalek::Signer as _;
        self.signing
            .sign(&checkpoint_message(session_id, seq, head))
    }

    /// Signs the audit entry message for `seq` and `head`.
    pub fn sign_audit(&self, seq: u64, head: &Digest) -> Signature {
        use ed25519_dalek::Signer as _;
        self.signing.sign(&audit_signature_message(seq, head))
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

/// The key id of `key`: the first 16 hex characters of SHA-256 of its raw 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Parses a public key given as standard base64 of its raw 32 bytes.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, KeyError> {
    let raw = B64
        .decode(b64)
        .map_err(|e| KeyError::InvalidPublicKey(format!("not base64: {e}")))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|v: Vec<u8>| KeyError::InvalidPublicKey(format!("{} bytes, not 32", v.len())))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
}

/// Parses a signature given as standard base64 of its raw 64 bytes (canonical encoding only).
pub fn parse_signature(b64: &str) -> Option<Signature> {
    let raw = B64.decode(b64).ok()?;
    let raw: [u8; 64] = raw.try_into().ok()?;
    Some(Signature::from_bytes(&raw))
}

/// Checks a checkpoint signature (strict Ed25519 verification).
pub fn verify_checkpoint(
    key: &VerifyingKey,
    session_id: &str,
    seq: u64,
    head: &Digest,
    signature: &Signature,
) -> bool {
    key.verify_strict(&checkpoint_message(session_id, seq, head), signature)
        .is_ok()
}

/// Checks an audit entry signature (strict Ed25519 verification).
pub fn verify_audit_signature(
    key: &VerifyingKey,
    seq: u64,
    head: &Digest,
    signature: &Signature,
) -> bool {
    key.verify_strict(&audit_signature_message(seq, head), signature)
        .is_ok()
}

/// Encodes a signature as standard base64.
pub fn signature_base64(signature: &Signature) -> String {
    B64.encode(signature.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let key = GatewayKey::generate();
        let head = Digest([7u8; 32]);
        let sig = key.sign_checkpoint("s", 3, &head);
        assert!(verify_checkpoint(key.verifying_key(), "s", 3, &head, &sig));
        assert!(!verify_checkpoint(key.verifying_key(), "s", 4, &head, &sig));
        assert!(!verify_checkpoint(key.verifying_key(), "t", 3, &head, &sig));
        let parsed = parse_public_key(&key.public_key_base64()).unwrap();
        assert_eq!(&parsed, key.verifying_key());
        assert_eq!(key.key_id().len(), 16);
        let sig2 = parse_signature(&signature_base64(&sig)).unwrap();
        assert_eq!(sig, sig2);
    }

    #[test]
    fn audit_signatures_are_separate_from_checkpoints() {
        let key = GatewayKey::generate();
        let head = Digest([9u8; 32]);
        let sig = key.sign_audit(5, &head);
        assert!(verify_audit_signature(key.verifying_key(), 5, &head, &sig));
        assert!(!verify_audit_signature(key.verifying_key(), 6, &head, &sig));
        assert!(!verify_audit_signature(
            key.verifying_key(),
            5,
            &Digest([8u8; 32]),
            &sig
        ));
        let other = GatewayKey::generate();
        assert!(!verify_audit_signature(
            other.verifying_key(),
            5,
            &head,
            &sig
        ));
        // Neither kind of signature passes for the other, even with an empty session id.
        assert!(!verify_checkpoint(key.verifying_key(), "", 5, &head, &sig));
        let checkpoint = key.sign_checkpoint("", 5, &head);
        assert!(!verify_audit_signature(
            key.verifying_key(),
            5,
            &head,
            &checkpoint
        ));
    }
}
