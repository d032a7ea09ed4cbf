//! References to secrets kept outside the configuration, and the secrets themselves.
//!
//! The configuration never holds a secret value: it names a file or an environment variable.
//! [`Secret`] keeps the resolved bytes out of logs (`Debug`/`Display` print `***`) and zeroes
//! them when dropped.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest secret file read, in bytes. Secrets are passwords and keys, not documents.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file whose whole content (minus one trailing newline) is the secret.
    File {
        /// The path as written in the configuration.
        path: PathBuf,
        /// The path to read: absolute, or joined to the configuration file's directory.
        resolved: PathBuf,
    },
    /// An environment variable of the gateway process.
    Env {
        /// Variable name (`[A-Za-z_][A-Za-z0-9_]*`).
        var: String,
    },
}

/// Why a secret could not be resolved. Never contains the secret or file content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be opened or read.
    #[error("secret file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_SECRET_FILE`].
    #[error("secret file {path} is larger than {MAX_SECRET_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The environment variable is not set.
    #[error("environment variable {var} is not set")]
    EnvMissing {
        /// The variable.
        var: String,
    },
    /// The secret is empty.
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// A file reference; a relative `path` is taken relative to `base_dir`.
    pub fn file(path: impl Into<PathBuf>, base_dir: &Path) -> Self {
        let path = path.into();
        let resolved = if path.is_absolute() {
            path.clone()
        } else {
            base_dir.join(&path)
        };
        SecretRef::File { path, resolved }
    }

    /// An environment variable reference.
    pub fn env(var: impl Into<String>) -> Self {
        SecretRef::Env { var: var.into() }
    }

    /// Reads the secret now. One trailing `\n` or `\r\n` is removed from file content.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let bytes = match self {
            SecretRef::File { resolved, .. } => read_file(resolved)?,
            SecretRef::Env { var } => {
                let v = std::env::var_os(var)
                    .ok_or_else(|| SecretError::EnvMissing { var: var.clone() })?;
                Zeroizing::new(v.into_encoded_bytes())
            }
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(Secret(bytes))
    }
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    if len > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge {
            path: path.to_owned(),
        });
    }
    // Reserve up front so reading never reallocates and leaves copies behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE as usize + 1));
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge {
            path: path.to_owned(),
        });
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(buf)
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File { resolved, .. } => write!(f, "file {}", resolved.display()),
            SecretRef::Env { var } => write!(f, "env {var}"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl Serialize for SecretRef {
    /// Serialised as written (`{ file = "…" }` / `{ env = "…" }`), so the policy version does not
    /// depend on where the configuration is installed.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            SecretRef::File { path, .. } => m.serialize_entry("file", &path.to_string_lossy())?,
            SecretRef::Env { var } => m.serialize_entry("env", var)?,
        }
        m.end()
    }
}

/// True for a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A resolved secret. Prints as `***`; its bytes are zeroed on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes obtained elsewhere.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The secret bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secrets_strip_one_newline_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p"), b"hunter2\r\n").unwrap();
        let r = SecretRef::file("p", dir.path());
        let s = r.resolve().unwrap();
        assert_eq!(s.expose(), b"hunter2");
        assert_eq!(s.expose_str(), Some("hunter2"));
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn errors_name_the_source_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SecretRef::file("nope", dir.path()).resolve().unwrap_err();
        assert!(matches!(missing, SecretError::Unreadable { .. }));
        assert!(missing.to_string().contains("nope"));

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b's'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let e = SecretRef::file(&big, dir.path()).resolve().unwrap_err();
        assert!(matches!(e, SecretError::TooLarge { .. }));
        assert!(!e.to_string().contains("sss"));

        std::fs::write(dir.path().join("empty"), b"\n").unwrap();
        assert!(matches!(
            SecretRef::file("empty", dir.path()).resolve(),
            Err(SecretError::Empty(_))
        ));

        let e = SecretRef::env("PSMGATE_TEST_SURELY_UNSET_VAR")
            .resolve()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable PSMGATE_TEST_SURELY_UNSET_VAR is not set"
        );
    }

    #[test]
    fn absolute_file_refs_stay_absolute() {
        let abs = if cfg!(windows) {
            "C:\\s\\p"
        } else {
            "/etc/psmgate/p"
        };
        let r = SecretRef::file(abs, Path::new("/elsewhere"));
        assert!(matches!(r, SecretRef::File { ref resolved, .. } if resolved == Path::new(abs)));
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_x", "PSM_GATE_1"] {
            assert!(is_valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "Ä"] {
            assert!(!is_valid_env_name(bad), "{bad}");
        }
    }
}
