//! TigerVNC's GUI viewer (`vncviewer`) on its own Xvfb display, driven with xdotool.

use super::process::{run_ok, PeerProcess, TempDir, POLL};
use super::vnc::vnc_password_file;
use super::xserver::XDisplay;
use super::{require_tool, PeerError, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deadline of one xdotool run.
const XDOTOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the viewer logs once the RFB session runs (after the ServerInit).
const CONNECTED: &str = "Using pixel format";

/// Log lines that mean the viewer gave up (it then shows a dialog and keeps running).
const FAILURES: [&str; 4] = [
    "Authentication failure",
    "Authentication failed",
    "TLS Handshake failed",
    "unable to connect to socket",
];

/// How [`VncViewer::start`] connects.
#[derive(Debug, Clone, Default)]
pub struct ViewerOptions {
    /// TigerVNC's `-SecurityTypes` list, e.g. `"X509Vnc"` or `"VncAuth"` (`None`: the default).
    pub security_types: Option<String>,
    /// The CA certificate (PEM) that the server's certificate must chain to (`-X509CA`).
    pub x509_ca: Option<PathBuf>,
}

/// A running `vncviewer` connected (or connecting) to a server, full screen on its own
/// [`XDisplay`], stopped on drop.
///
/// It runs with `-FullScreen -RemoteResize=0 -Shared=1`, the password from a `vncpasswd -f`
/// file, and its own `HOME` (it writes `~/.vnc` and `~/.fltk`). With a display the size of the
/// server's screen, a point on the viewer's display is the same point on the server's.
pub struct VncViewer {
    process: PeerProcess,
    display: XDisplay,
    _dir: TempDir,
}

impl VncViewer {
    /// Starts an Xvfb of `width`×`height` and a viewer on it connecting to `server`
    /// (`HOST::PORT`) with `password`. Returns at once; see [`VncViewer::wait_connected`].
    pub fn start(
        server: &str,
        password: &str,
        width: u32,
        height: u32,
        options: &ViewerOptions,
    ) -> Result<Self> {
        require_tool("vncviewer")?;
        require_tool("xdotool")?;
        let display = XDisplay::start(width, height)?;
        let dir = TempDir::new("vncviewer")?;
        let passwd = vnc_password_file(&dir, password)?;
        let home = dir.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| PeerError::io(format!("creating {}", home.display()), e))?;
        let mut cmd = display.command("vncviewer");
        cmd.env("HOME", &home)
            .args(["-Log", "*:stderr:100"])
            .arg("-PasswordFile")
            .arg(&passwd)
            .args(["-FullScreen", "-RemoteResize=0", "-Shared=1"]);
        if let Some(types) = &options.security_types {
            cmd.args(["-SecurityTypes", types]);
        }
        if let Some(ca) = &options.x509_ca {
            cmd.arg("-X509CA").arg(ca);
        }
        cmd.arg(server);
        let process = PeerProcess::spawn("vncviewer", &mut cmd, &dir.join("vncviewer.log"))?;
        Ok(VncViewer {
            process,
            display,
            _dir: dir,
        })
    }

    /// Waits until the viewer shows the remote desktop; an error if it reports a failure,
    /// exits, or takes longer than `timeout`.
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.process.log_text();
            if log.contains(CONNECTED) {
                return Ok(());
            }
            if let Some(f) = FAILURES.iter().find(|f| log.contains(*f)) {
                return Err(self.process.startup_error(format!("it reported {f:?}")));
            }
            if let Some(status) = self.process.exited() {
                return Err(self.process.startup_error(format!("it exited ({status})")));
            }
            if Instant::now() >= deadline {
                return Err(self
                    .process
                    .startup_error(format!("not connected after {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the viewer's log contains `needle`; returns the log.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.process.log_text();
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout {
                    what: format!("vncviewer to log {needle:?}; its log:\n{log}"),
                    after: timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Types `text` into the viewer's window (`xdotool type`).
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.xdotool(&["type", "--delay", "30", text])
    }

    /// Presses and releases keys (`xdotool key`, X key names such as `Return`).
    pub fn key(&self, keys: &str) -> Result<()> {
        self.xdotool(&["key", keys])
    }

    /// Moves the pointer to (`x`, `y`) on the viewer's display and clicks `button`.
    pub fn click(&self, x: u32, y: u32, button: u8) -> Result<()> {
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string()])?;
        // Let the move reach the server before the press, as a person would.
        std::thread::sleep(Duration::from_millis(100));
        self.xdotool(&["click", &button.to_string()])
    }

    /// The viewer's log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The viewer's log file (kept while a test is panicking).
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// The viewer's X display.
    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    fn xdotool(&self, args: &[&str]) -> Result<()> {
        run_ok(
            self.display.command("xdotool").args(args),
            &format!("xdotool {}", args.join(" ")),
            XDOTOOL_TIMEOUT,
        )
        .map(|_| ())
    }
}
