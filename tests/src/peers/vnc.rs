//! VNC servers: x11vnc serving an Xvfb display, and TigerVNC's Xvnc.

use super::demo::DemoApp;
use super::process::{run_captured, run_ok, PeerProcess, TempDir, POLL};
use super::rfb::wait_for_rfb;
use super::xserver::{check_screen_size, start_x_server, XDisplay};
use super::{require_tool, PeerError, Result};
use std::collections::HashSet;
use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a VNC server may take to listen and greet.
const VNC_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many ports to try when another program takes the chosen one first.
const PORT_ATTEMPTS: u32 = 5;
/// Deadline for the password-file helpers.
const PASSWD_TIMEOUT: Duration = Duration::from_secs(10);

/// `x11vnc` serving an [`XDisplay`] on 127.0.0.1, stopped on drop.
///
/// Options: `-localhost -forever -shared -noxdamage`, and `-rfbauth FILE` (security type 2,
/// VNC authentication) or `-nopw` (type 1, none).
pub struct X11Vnc {
    port: u16,
    process: PeerProcess,
    _dir: TempDir,
}

impl X11Vnc {
    /// Starts x11vnc on a free port for `display`; returns once the port greets with an RFB
    /// banner.
    pub fn start(display: &XDisplay, password: Option<&str>) -> Result<Self> {
        require_tool("x11vnc")?;
        let dir = TempDir::new("x11vnc")?;
        let auth: Vec<OsString> = match password {
            Some(pw) => {
                let file = dir.join("passwd");
                run_ok(
                    Command::new("x11vnc")
                        .arg("-storepasswd")
                        .arg(pw)
                        .arg(&file),
                    "x11vnc -storepasswd",
                    PASSWD_TIMEOUT,
                )?;
                vec!["-rfbauth".into(), file.into_os_string()]
            }
            None => vec!["-nopw".into()],
        };
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut cmd = Command::new("x11vnc");
            cmd.args(["-display", &display.name()])
                .args(["-rfbport", &port.to_string()])
                .args(["-localhost", "-forever", "-shared", "-noxdamage"])
                .args(&auth)
                .env_remove("XAUTHORITY");
            let log = dir.join(&format!("x11vnc-{attempt}.log"));
            let mut process = PeerProcess::spawn("x11vnc", &mut cmd, &log)?;
            if wait_for_x11vnc(&mut process, port)? {
                return Ok(X11Vnc {
                    port,
                    process,
                    _dir: dir,
                });
            }
            last_error = Some(process.startup_error(format!("port {port} busy")));
        }
        Err(last_error.unwrap_or_else(|| PeerError::Failed {
            what: "x11vnc".into(),
            detail: "no free port".into(),
        }))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1::PORT`, the server argument of vncdo and vncviewer.
    pub fn server(&self) -> String {
        format!("127.0.0.1::{}", self.port)
    }

    /// x11vnc's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

/// Ok(true) once x11vnc listens on 127.0.0.1:`port` and greets, Ok(false) if the port was taken.
fn wait_for_x11vnc(process: &mut PeerProcess, port: u16) -> Result<bool> {
    let ready = format!("Listening for VNC connections on TCP port {port}");
    let deadline = Instant::now() + VNC_START_TIMEOUT;
    loop {
        let log = process.log_text();
        // With the IPv4 port taken x11vnc keeps running on IPv6 only.
        if log.contains("ListenOnTCPPort: Address already in use") {
            process.stop();
            return Ok(false);
        }
        if let Some(status) = process.exited() {
            return Err(process.startup_error(format!("exited with {status}")));
        }
        if log.contains(&ready) {
            let left = deadline.saturating_duration_since(Instant::now());
            wait_for_rfb(port, left).map_err(|e| process.startup_error(e.to_string()))?;
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Err(process.startup_error(format!(
                "not listening on port {port} within {VNC_START_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// TigerVNC's `Xvnc` (an X server with a built-in VNC server) on a free display and port, with
/// a [`DemoApp`] on it; stopped on drop.
///
/// Security types are explicit (`-SecurityTypes VncAuth` with a password file, or `None`): the
/// default would offer VeNCrypt first.
pub struct Xvnc {
    port: u16,
    app: DemoApp,
    display: XDisplay,
    /// Xvnc reads the password file at every authentication, so it lives as long as Xvnc.
    _passwd_dir: TempDir,
}

impl Xvnc {
    /// Starts Xvnc with a `width`×`height` screen (depth 24) on 127.0.0.1, then the demo app;
    /// returns once the port greets with an RFB banner.
    pub fn start(width: u32, height: u32, password: Option<&str>) -> Result<Self> {
        check_screen_size("Xvnc", width, height)?;
        require_tool("Xvnc")?;
        let passwd_dir = TempDir::new("xvnc-passwd")?;
        let security: Vec<OsString> = match password {
            Some(pw) => {
                let file = vnc_password_file(&passwd_dir, pw)?;
                vec![
                    "-SecurityTypes".into(),
                    "VncAuth".into(),
                    "-PasswordFile".into(),
                    file.into_os_string(),
                ]
            }
            None => vec!["-SecurityTypes".into(), "None".into()],
        };
        let (server, number, port, dir) = start_x_server("Xvnc", true, |display, port| {
            let mut cmd = Command::new("Xvnc");
            cmd.arg(format!(":{display}"))
                .args(["-geometry", &format!("{width}x{height}"), "-depth", "24"])
                .args(["-rfbport", &port.to_string(), "-localhost"])
                .args(["-nolisten", "tcp", "-AlwaysShared"])
                .args(&security);
            cmd
        })?;
        let display = XDisplay::from_parts(number, width, height, server, dir);
        wait_for_rfb(port, VNC_START_TIMEOUT)?;
        let app = DemoApp::start(&display)?;
        Ok(Xvnc {
            port,
            app,
            display,
            _passwd_dir: passwd_dir,
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1::PORT`, the server argument of vncdo and vncviewer.
    pub fn server(&self) -> String {
        format!("127.0.0.1::{}", self.port)
    }

    /// Xvnc's X display (for xdotool, screenshots, more apps).
    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    /// The demo app running on it.
    pub fn app(&self) -> &DemoApp {
        &self.app
    }
}

/// Writes a TigerVNC password file (`vncpasswd -f`) for `password` into `dir`.
pub(crate) fn vnc_password_file(dir: &TempDir, password: &str) -> Result<PathBuf> {
    require_tool("vncpasswd")?;
    let out = run_captured(
        Command::new("vncpasswd").arg("-f"),
        Some(format!("{password}\n").as_bytes()),
        PASSWD_TIMEOUT,
    )?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(PeerError::Failed {
            what: "vncpasswd -f".into(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let file = dir.join("passwd");
    std::fs::write(&file, &out.stdout)
        .map_err(|e| PeerError::io(format!("writing {}", file.display()), e))?;
    Ok(file)
}

/// A TCP port that was free on 127.0.0.1 a moment ago and has not been handed out before by
/// this process (for a gateway under test, say). Whoever binds it must still cope with another
/// program taking it in between; the peers here retry with a new port.
pub fn free_port() -> Result<u16> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| PeerError::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| PeerError::io("reading a probe socket's address", e))?
            .port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(PeerError::Failed {
        what: "port selection".into(),
        detail: "the kernel kept offering ports already handed out".into(),
    })
}
