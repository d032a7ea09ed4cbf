//! The whole configuration: loading, defaults, accessors and the policy version.

use crate::error::{ConfigError, Diagnostic, Issues};
use crate::lower::{lower, RawFile};
use crate::mask::MaskRegion;
use crate::model::*;
use crate::rbac::RoleDef;
use crate::siem::SiemSink;
use crate::source::Source;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A psmgate configuration. Built with [`Config::load`], [`Config::from_toml_str`] or
/// [`Config::default`]; configurations built by those are valid.
///
/// Fields hold values as written (after defaults); relative paths are relative to the
/// configuration file's directory (see [`Config::base_dir`]).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[recording]`.
    pub recording: RecordingConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[roles.<name>]`: custom roles (see [`crate::rbac`]; the built-in ones are not here).
    #[serde(rename = "roles", skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_roles: BTreeMap<String, RoleDef>,
    /// `[users.<name>]`.
    pub users: BTreeMap<String, User>,
    /// `[targets.<name>]`.
    pub targets: BTreeMap<String, Target>,
    /// `[target_groups]`: group name → target names, referenced as `"@name"` in
    /// `rules[].targets` and as `role@name` in users' roles.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub target_groups: BTreeMap<String, Vec<String>>,
    /// `[[rules]]`, in file order.
    pub rules: Vec<Rule>,
    /// `[web]`.
    pub web: WebConfig,
    /// `[[web_rules]]`, in file order (see [`Config::web_decision`]).
    pub web_rules: Vec<WebRule>,
    /// `[oidc]`: OpenID Connect sign-in; `None` (and left out of the canonical form) when the
    /// section is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// `[[siem]]`: where the audit log is forwarded, in file order. Left out of the canonical
    /// form when empty, so that configurations without it keep their policy version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub siem: Vec<SiemSink>,
    #[serde(skip)]
    source: Arc<Source>,
}

impl Default for Config {
    /// The embedded defaults: what an empty file means. Relative paths are relative to the
    /// current directory.
    fn default() -> Self {
        Self {
            gateway: GatewayConfig::default(),
            storage: StorageConfig::default(),
            recording: RecordingConfig::default(),
            retention: RetentionConfig::default(),
            custom_roles: BTreeMap::new(),
            users: BTreeMap::new(),
            targets: BTreeMap::new(),
            target_groups: BTreeMap::new(),
            rules: Vec::new(),
            web: WebConfig::default(),
            web_rules: Vec::new(),
            oidc: None,
            siem: Vec::new(),
            source: Arc::new(Source::unlocated("<defaults>", PathBuf::from("."))),
        }
    }
}

impl Config {
    /// Reads and validates the configuration at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.to_string_lossy())
    }

    /// Parses and validates TOML text. `source_name` names the text in errors and, read as a
    /// path, its parent directory is the base for relative paths (the current directory when it
    /// has none).
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let base_dir = match Path::new(source_name).parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
            let src = Source::text_only(source_name, base_dir.clone(), text);
            ConfigError::Syntax(src.at_span(e.span(), first_line(e.message())))
        })?;
        let source = Source::new(source_name, base_dir.clone(), text, &doc);
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax(source.at_span(e.span(), first_line(e.message()))))?;
        let mut issues = Issues::default();
        let l = lower(raw, &base_dir, &mut issues);
        let config = Config {
            gateway: l.gateway,
            storage: l.storage,
            recording: l.recording,
            retention: l.retention,
            custom_roles: l.custom_roles,
            users: l.users,
            targets: l.targets,
            target_groups: l.target_groups,
            rules: l.rules,
            web: l.web,
            web_rules: l.web_rules,
            oidc: l.oidc,
            siem: l.siem,
            source: Arc::new(source),
        };
        crate::check::check(&config, &mut issues);
        if issues.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(config.locate(issues)))
        }
    }

    /// Checks every semantic rule and reports all problems found.
    ///
    /// Configurations from [`Config::load`] and [`Config::from_toml_str`] are already valid; call
    /// this after changing fields in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut issues = Issues::default();
        crate::check::check(self, &mut issues);
        if issues.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.locate(issues)))
        }
    }

    /// Tries to read every secret the configuration references and reports those that fail
    /// (never their content). Useful for `check-config` on the gateway host.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        let mut issues = Issues::default();
        for (path, secret) in crate::check::secret_refs(self) {
            if let Err(e) = secret.resolve() {
                issues.push(path, e.to_string());
            }
        }
        if issues.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.locate(issues)))
        }
    }

    fn locate(&self, issues: Issues) -> Vec<Diagnostic> {
        issues.0.iter().map(|i| self.source.locate(i)).collect()
    }

    /// The name the configuration was loaded under.
    pub fn source_name(&self) -> &str {
        &self.source.name
    }

    /// The directory relative paths are relative to.
    pub fn base_dir(&self) -> &Path {
        &self.source.base_dir
    }

    /// `gateway.data_dir` resolved against [`Config::base_dir`].
    pub fn data_dir(&self) -> PathBuf {
        self.base_dir().join(&self.gateway.data_dir)
    }

    /// The effective configuration (defaults filled in, comments and layout dropped) as TOML with
    /// a stable key order. Secret references appear as written; secret values never do.
    pub fn canonical_toml(&self) -> String {
        // Every type here serialises to TOML (no `None` in arrays, string map keys, no NaN);
        // the debug form is a deterministic stand-in should that ever change.
        toml::to_string(self).unwrap_or_else(|_| format!("{self:?}"))
    }

    /// `"sha256:"` + hex SHA-256 of [`Config::canonical_toml`]; recorded in every manifest.
    pub fn policy_version(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.canonical_toml().as_bytes()))
        )
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.get(name)
    }

    /// The keystroke mode for sessions to `target`: its own, else `recording.keystrokes`.
    pub fn effective_keystrokes(&self, target: &str) -> Option<KeystrokeMode> {
        self.target(target)
            .map(|t| t.keystrokes.unwrap_or(self.recording.keystrokes))
    }

    /// Days recordings of `target` are kept (0 = forever): its own, else `retention.days`.
    pub fn retention_days(&self, target: &str) -> Option<u32> {
        self.target(target)
            .map(|t| t.retention_days.unwrap_or(self.retention.days))
    }

    /// The clipboard policy of `target`, with its log level as applied
    /// ([`ClipboardPolicy::effective_log`] under the target's keystroke mode).
    pub fn effective_clipboard(&self, target: &str) -> Option<ClipboardPolicy> {
        let t = self.target(target)?;
        let keystrokes = t.keystrokes.unwrap_or(self.recording.keystrokes);
        Some(ClipboardPolicy {
            log: t.clipboard.effective_log(keystrokes),
            ..t.clipboard
        })
    }

    /// The static virtual channels sessions to `target` may use, lower-case, without
    /// duplicates, in the order configured: `rdp_channels` (or [`DEFAULT_RDP_CHANNELS`] when it
    /// is not set), less `cliprdr` when the target's clipboard policy denies both directions
    /// (the channel would carry nothing allowed). Empty for unknown targets and for targets that
    /// do not speak RDP, so that a caller fails closed.
    pub fn rdp_channels(&self, target: &str) -> Vec<String> {
        let Some(t) = self.target(target) else {
            return Vec::new();
        };
        if t.protocol != Protocol::Rdp {
            return Vec::new();
        }
        let configured: Vec<String> = match &t.rdp_channels {
            // Names that do not validate (possible only when fields were changed in code) are
            // left out rather than passed on.
            Some(list) => list
                .iter()
                .filter(|c| crate::check::is_valid_rdp_channel_name(c))
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            None => DEFAULT_RDP_CHANNELS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        };
        let clipboard_closed = t.clipboard.to_target == ClipboardAccess::Deny
            && t.clipboard.to_client == ClipboardAccess::Deny;
        let mut out: Vec<String> = Vec::with_capacity(configured.len());
        for c in configured {
            if (clipboard_closed && c == "cliprdr") || out.contains(&c) {
                continue;
            }
            out.push(c);
        }
        out
    }

    /// The dynamic virtual channels sessions to `target` may open, exact names without
    /// duplicates, in the order configured: `rdp_dynamic_channels` (or
    /// [`DEFAULT_RDP_DYNAMIC_CHANNELS`] when it is not set), never
    /// [`RDP_GRAPHICS_DYNAMIC_CHANNEL`] (refused when loading; left out here should it have been
    /// set in code). Empty when `drdynvc` is not among [`Config::rdp_channels`] (no dynamic
    /// channel can be opened then), for unknown targets and for targets that do not speak RDP,
    /// so that a caller fails closed.
    pub fn rdp_dynamic_channels(&self, target: &str) -> Vec<String> {
        let Some(t) = self.target(target) else {
            return Vec::new();
        };
        if t.protocol != Protocol::Rdp || !self.rdp_channels(target).iter().any(|c| c == "drdynvc")
        {
            return Vec::new();
        }
        let configured: Vec<&str> = match &t.rdp_dynamic_channels {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_RDP_DYNAMIC_CHANNELS.to_vec(),
        };
        let mut out: Vec<String> = Vec::with_capacity(configured.len());
        for c in configured {
            // Names that do not validate (possible only when fields were changed in code) are
            // left out rather than passed on.
            if !crate::check::is_valid_rdp_dynamic_channel_name(c)
                || c.eq_ignore_ascii_case(RDP_GRAPHICS_DYNAMIC_CHANNEL)
                || out.iter().any(|o| o == c)
            {
                continue;
            }
            out.push(c.to_owned());
        }
        out
    }

    /// Screen masks of `target`.
    pub fn masks(&self, target: &str) -> Option<&[MaskRegion]> {
        self.target(target).map(|t| t.masks.as_slice())
    }
}

fn first_line(s: &str) -> String {
    s.trim().lines().next().unwrap_or("").to_owned()
}
