//! Configuration errors that point at the file, line, column and field.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The configuration's name (usually its path).
    pub file: String,
    /// 1-based line, when the configuration came from text.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the configuration came from text.
    pub column: Option<usize>,
    /// Field path such as `targets.lab-vnc.masks[1].width`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: path: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a configuration could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The text is not TOML, or does not fit the schema (unknown key, wrong type). Such errors
    /// stop interpretation, so only the first is reported.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The document fits the schema but its values are wrong. Every problem found is listed.
    #[error("{}", join(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// All located problems (one for [`ConfigError::Syntax`], none for [`ConfigError::Read`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Syntax(d) => std::slice::from_ref(d),
            ConfigError::Invalid(v) => v,
        }
    }
}

fn join(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A problem found before it is located: field path and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: String,
    pub message: String,
}

/// Collects issues while lowering and validating.
#[derive(Debug, Default)]
pub(crate) struct Issues(pub Vec<Issue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// `base.key`, quoting keys that are not bare TOML keys so paths stay unambiguous.
pub(crate) fn key_path(base: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if base.is_empty() {
        key
    } else {
        format!("{base}.{key}")
    }
}

/// `base[index]`.
pub(crate) fn index_path(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}
