//! The policy in force, shared by every gateway part, and its reload (SIGHUP or
//! `POST /api/config/reload`) without dropping live sessions.
//!
//! Each session takes the policy in force when it starts ([`PolicyCell::get`]) and keeps it to
//! its end; a reload changes what new sessions, sign-ins, requests and API calls see. A reload
//! reads the configuration file again, validates it as `check-config` does (schema, references,
//! secrets that must resolve); a file that fails any check is rejected with its diagnostics and
//! the policy in force stays.
//!
//! What the running process cannot change in place stays as it is until a restart: `[gateway]`
//! (listeners, TLS, data folder) and `[storage]` are kept from the running policy, and the reload
//! names them in [`Reloaded::restart_needed`]; so is a first target of a protocol whose listener
//! is not running.

use psmgate_policy::{Config, Protocol};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The policy in force.
#[derive(Debug)]
pub struct PolicyCell {
    current: RwLock<Arc<Config>>,
    /// The file it was loaded from (`None`: embedded defaults; nothing to reload).
    path: Option<PathBuf>,
    /// `[gateway]` as the file said it when the process started (before command-line
    /// overrides): a reload reports a restart as needed only when the file changed it.
    file_gateway: psmgate_policy::GatewayConfig,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Policy version before.
    pub old_version: String,
    /// Policy version now in force.
    pub new_version: String,
    /// Changes that were not applied and wait for a restart.
    pub restart_needed: Vec<String>,
}

/// Why a reload was refused (the policy in force stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway runs on embedded defaults.
    #[error("the gateway runs on embedded defaults: there is no configuration file to reload")]
    NoFile,
    /// The file is unreadable or invalid; the message lists every problem.
    #[error("{0}")]
    Invalid(#[from] psmgate_policy::ConfigError),
}

impl PolicyCell {
    /// `config`, loaded from `path` (when it came from a file), as it runs.
    pub fn new(config: Config, path: Option<PathBuf>) -> Arc<Self> {
        let file_gateway = config.gateway.clone();
        Self::with_file_gateway(config, path, file_gateway)
    }

    /// [`PolicyCell::new`] for a policy whose `[gateway]` was changed on the command line:
    /// `file_gateway` is the section as the file says it.
    pub fn with_file_gateway(
        config: Config,
        path: Option<PathBuf>,
        file_gateway: psmgate_policy::GatewayConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(config)),
            path,
            file_gateway,
        })
    }

    /// The policy in force now.
    pub fn get(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads, validates and puts in force the configuration file again. Blocks (file I/O).
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let mut fresh = Config::load(path)?;
        fresh.check_secrets()?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let restart_needed = keep_running_parts(&current, &self.file_gateway, &mut fresh);
        let reloaded = Reloaded {
            old_version: current.policy_version(),
            new_version: fresh.policy_version(),
            restart_needed,
        };
        *current = Arc::new(fresh);
        Ok(reloaded)
    }
}

/// Copies into `fresh` what only a restart changes, and says what differed.
fn keep_running_parts(
    running: &Config,
    file_gateway: &psmgate_policy::GatewayConfig,
    fresh: &mut Config,
) -> Vec<String> {
    let mut differs = Vec::new();
    if fresh.gateway != *file_gateway {
        differs.push("[gateway] (listeners, TLS, data folder)".to_owned());
    }
    fresh.gateway = running.gateway.clone();
    if fresh.storage != running.storage {
        differs.push("[storage]".to_owned());
        fresh.storage = running.storage.clone();
    }
    for (protocol, name) in [
        (Protocol::Vnc, "VNC"),
        (Protocol::Rdp, "RDP"),
        (Protocol::Web, "web"),
    ] {
        let has = |c: &Config| c.targets.values().any(|t| t.protocol == protocol);
        if has(fresh) && !has(running) {
            differs.push(format!(
                "the first {name} target (its listener starts at restart)"
            ));
        }
    }
    differs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, text: &str) -> PathBuf {
        let p = dir.join("psmgate.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const BASE: &str =
        "[gateway]\nadmin_listen = \"127.0.0.1:9443\"\n\n[users.alice]\nroles = [\"user\"]\n\n\
        [targets.t]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:5901\"\n\n\
        [[rules]]\nid = \"r\"\nusers = [\"alice\"]\ntargets = [\"t\"]\n";

    #[test]
    fn a_valid_file_replaces_the_policy_and_an_invalid_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), BASE);
        let cell = PolicyCell::new(Config::load(&path).unwrap(), Some(path.clone()));
        let before = cell.get();
        std::fs::write(&path, format!("{BASE}\n[users.bob]\nroles = [\"user\"]\n")).unwrap();
        let r = cell.reload().unwrap();
        assert_ne!(r.old_version, r.new_version);
        assert!(r.restart_needed.is_empty(), "{r:?}");
        assert!(cell.get().users.contains_key("bob"));
        // A session that started before keeps its policy.
        assert!(!before.users.contains_key("bob"));

        std::fs::write(
            &path,
            format!("{BASE}\n[[rules]]\nid = \"r2\"\nusers = [\"nobody\"]\ntargets = [\"t\"]\n"),
        )
        .unwrap();
        let e = cell.reload().unwrap_err().to_string();
        assert!(e.contains("nobody"), "{e}");
        assert!(
            cell.get().users.contains_key("bob"),
            "the policy in force stays"
        );
    }

    #[test]
    fn listener_changes_wait_for_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), BASE);
        let cell = PolicyCell::new(Config::load(&path).unwrap(), Some(path.clone()));
        std::fs::write(&path, BASE.replace("9443", "9444")).unwrap();
        let r = cell.reload().unwrap();
        assert_eq!(r.restart_needed.len(), 1, "{r:?}");
        assert_eq!(cell.get().gateway.admin_listen.port(), 9443);
        let none = PolicyCell::new(Config::default(), None);
        assert!(matches!(none.reload(), Err(ReloadError::NoFile)));
    }
}
