//! Real, independently written VNC and RDP peers for end-to-end tests.
//!
//! Every peer runs on 127.0.0.1 (or a local X display) as a separate program, in its own process
//! group, and is stopped when its handle is dropped (SIGTERM to the group, SIGKILL after a grace
//! period). Display numbers and TCP ports are chosen by probing, so tests may run in parallel,
//! in one process or several. Each peer keeps its logs in its own temporary folder, which is
//! removed on drop, except while a test is panicking: then its path is printed and it is kept.
//!
//! | type | program |
//! |---|---|
//! | [`XDisplay`] | `Xvfb` (X server without a screen) |
//! | [`DemoApp`] | `xterm` running `cat > FILE`: what reaches the target lands in `FILE` |
//! | [`X11Vnc`] | `x11vnc` serving an [`XDisplay`] |
//! | [`Xvnc`] | TigerVNC's `Xvnc` (an X server that is also a VNC server) with a [`DemoApp`] |
//! | [`vncdo`] | vncdotool's `vncdo` (scripted VNC viewer) from a Python virtual environment |
//! | [`VncViewer`] | TigerVNC's GUI `vncviewer` on its own Xvfb, driven with xdotool |
//! | [`ShadowServer`] | FreeRDP's `freerdp-shadow-cli` mirroring an [`XDisplay`] with a [`DemoApp`] (NLA or TLS) |
//! | [`XrdpServer`] | `xrdp` (TLS) in front of [`X11Vnc`] on an [`XDisplay`] with a [`DemoApp`] |
//! | [`RdpClient`] | FreeRDP's `xfreerdp` on its own Xvfb, driven with xdotool (see [`rdp`]) |
//!
//! Checks: [`DemoApp::typed`] (what reached the target), [`mouse_location`], [`screenshot`] (the
//! X server's own view), [`png_size`] and [`image_difference`] (a viewer's capture against that
//! view), [`rfb_hello`] (version and security types a server offers), [`wait_for_rfb`],
//! [`x224_probe`] and [`wait_for_rdp`] (an RDP server's X.224 Connection Confirm).
//! [`free_port`] hands out ports for other listeners, e.g. the gateway under test.
//!
//! ```no_run
//! use psmgate_e2e::peers::{vncdo, DemoApp, X11Vnc, XDisplay};
//! use std::time::Duration;
//!
//! let display = XDisplay::start(1024, 768)?;
//! let app = DemoApp::start(&display)?;
//! let vnc = X11Vnc::start(&display, Some("s3cret"))?;
//! let out = vncdo(&vnc.server(), Some("s3cret"), &["type", "hi", "key", "enter"])?;
//! assert!(out.status.success());
//! app.wait_for_typed("hi\n", Duration::from_secs(5))?;
//! # Ok::<(), psmgate_e2e::peers::PeerError>(())
//! ```
//!
//! The programs come from `scripts/install-peers.sh`; when one is missing the error says so.
//! The virtual environment lives in `target/peers-venv` unless `PSMGATE_PEERS_VENV` names
//! another folder (relative paths are taken from the repository root).

mod demo;
mod image;
mod process;
pub mod rdp;
mod rfb;
mod viewer;
mod vnc;
mod vncdo;
mod xserver;

pub use demo::DemoApp;
pub use image::{image_difference, png_size};
pub use rdp::{
    cert_fingerprint, wait_for_rdp, x224_probe, CertCheck, RdpClient, RdpClientOptions,
    RdpSecurity, ShadowOptions, ShadowServer, X224Confirm, XrdpOptions, XrdpServer,
};
pub use rfb::{rfb_hello, wait_for_rfb, RfbHello};
pub use viewer::{ViewerOptions, VncViewer};
pub use vnc::{free_port, X11Vnc, Xvnc};
pub use vncdo::{vncdo, vncdo_with_timeout, VNCDO_TIMEOUT};
pub use xserver::{mouse_location, screenshot, XDisplay};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hint printed with every "missing peer" error.
pub const INSTALL_HINT: &str = "run scripts/install-peers.sh";

/// Why a peer could not be started or used. `Debug` shows the same text as `Display`, so that
/// `expect` in a test prints the readable message (with the installer hint or the log tail).
#[derive(thiserror::Error)]
pub enum PeerError {
    /// A program the harness needs is not on `PATH`.
    #[error("`{tool}` is not installed ({INSTALL_HINT})")]
    Missing {
        /// Program name.
        tool: String,
    },
    /// The Python virtual environment with vncdotool is missing or incomplete.
    #[error(
        "no vncdotool environment at {} ({INSTALL_HINT}, or point PSMGATE_PEERS_VENV at one)",
        path.display()
    )]
    MissingVenv {
        /// Where the environment was expected.
        path: PathBuf,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A peer exited or misbehaved while starting.
    #[error("{what} did not start: {reason}\n--- end of {} ---\n{tail}", log.display())]
    Startup {
        /// Which peer.
        what: String,
        /// What went wrong.
        reason: String,
        /// Its log file (kept only while a test is panicking).
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        after: Duration,
    },
    /// A helper program ran but reported failure or unexpected output.
    #[error("{what}: {detail}")]
    Failed {
        /// Which program or step.
        what: String,
        /// Its exit status and output, or the parse problem.
        detail: String,
    },
}

impl std::fmt::Debug for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Result of the peer harness.
pub type Result<T> = std::result::Result<T, PeerError>;

impl PeerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        PeerError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Checks that `tool` is an executable on `PATH`; the error names the installer.
pub fn require_tool(tool: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| PeerError::Missing {
            tool: tool.to_owned(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The repository root (parent of the `tests` crate).
fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(crate_dir).to_path_buf()
}

/// The Python virtual environment holding vncdotool and Pillow.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("PSMGATE_PEERS_VENV") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target").join("peers-venv"),
    }
}

/// The virtual environment's Python interpreter, checked to exist.
pub(crate) fn venv_python() -> Result<PathBuf> {
    let python = venv_dir().join("bin").join("python");
    if is_executable(&python) {
        Ok(python)
    } else {
        Err(PeerError::MissingVenv { path: venv_dir() })
    }
}

/// A helper script shipped in `tests/peers/`, checked to exist.
pub(crate) fn helper_script(name: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(PeerError::Failed {
            what: "peer helper scripts".into(),
            detail: format!("{} is missing from the checkout", path.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_the_installer() {
        let err = require_tool("psmgate-no-such-peer").expect_err("tool must be missing");
        let msg = err.to_string();
        assert!(msg.contains("psmgate-no-such-peer"), "{msg}");
        assert!(msg.contains("scripts/install-peers.sh"), "{msg}");
    }

    #[test]
    fn a_missing_venv_names_the_installer_and_the_variable() {
        let msg = PeerError::MissingVenv {
            path: PathBuf::from("/nowhere/venv"),
        }
        .to_string();
        assert!(msg.contains("/nowhere/venv"), "{msg}");
        assert!(msg.contains("scripts/install-peers.sh"), "{msg}");
        assert!(msg.contains("PSMGATE_PEERS_VENV"), "{msg}");
    }

    #[test]
    fn a_present_tool_is_found() {
        let sh = require_tool("sh").expect("sh is always installed");
        assert!(sh.ends_with("sh"));
    }

    #[test]
    fn relative_venv_paths_are_taken_from_the_repository_root() {
        // Only checks the default: tests run in parallel, so the variable is not modified here.
        if std::env::var_os("PSMGATE_PEERS_VENV").is_none() {
            assert_eq!(venv_dir(), repo_root().join("target/peers-venv"));
        }
    }
}
