//! X servers (Xvfb, or TigerVNC's Xvnc) on free display numbers, and X-side checks.

use super::process::{run_captured, run_ok, PeerProcess, TempDir, POLL};
use super::{helper_script, require_tool, venv_python, PeerError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Display numbers the harness picks from: `FIRST_DISPLAY..FIRST_DISPLAY + DISPLAY_COUNT`.
const FIRST_DISPLAY: u32 = 100;
const DISPLAY_COUNT: u32 = 900;
/// How many display numbers (and ports) to try before giving up.
const START_ATTEMPTS: u32 = 8;
/// How long an X server may take to accept clients.
const X_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest screen width or height the harness asks an X server for.
pub(crate) const MAX_SCREEN_SIDE: u32 = 8192;
/// Deadline for short X helpers (xdpyinfo, xdotool, screen grabs).
pub(crate) const X_TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Log lines of an X server that lost a race for its display number or its TCP port.
const COLLISIONS: &[&str] = &[
    "already active for display",
    "Cannot establish any listening sockets",
    "Address already in use",
    "Could not create lock file",
];

/// A running X server on display `:N`, stopped on drop.
pub struct XDisplay {
    number: u32,
    width: u32,
    height: u32,
    shots: AtomicU32,
    server: PeerProcess,
    dir: TempDir,
}

impl XDisplay {
    /// Starts `Xvfb :N -screen 0 WxHx24 -nolisten tcp -noreset` on a free display and waits
    /// until `xdpyinfo` answers.
    pub fn start(width: u32, height: u32) -> Result<Self> {
        check_screen_size("Xvfb", width, height)?;
        require_tool("Xvfb")?;
        let (server, number, _, dir) = start_x_server("Xvfb", false, |display, _| {
            let mut cmd = Command::new("Xvfb");
            cmd.arg(format!(":{display}"))
                .args(["-screen", "0", &format!("{width}x{height}x24")])
                .args(["-nolisten", "tcp", "-noreset"]);
            cmd
        })?;
        Ok(Self::from_parts(number, width, height, server, dir))
    }

    pub(crate) fn from_parts(
        number: u32,
        width: u32,
        height: u32,
        server: PeerProcess,
        dir: TempDir,
    ) -> Self {
        XDisplay {
            number,
            width,
            height,
            shots: AtomicU32::new(0),
            server,
            dir,
        }
    }

    /// The display number `N`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The display name `:N`, as for `DISPLAY`.
    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }

    /// Screen size in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The X server's log file.
    pub fn log(&self) -> &Path {
        self.server.log()
    }

    /// A command for an X client on this display.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DISPLAY", self.name()).env_remove("XAUTHORITY");
        cmd
    }
}

/// Where the pointer is on `display`, via `xdotool getmouselocation`.
pub fn mouse_location(display: &XDisplay) -> Result<(i32, i32)> {
    require_tool("xdotool")?;
    let out = run_ok(
        display
            .command("xdotool")
            .args(["getmouselocation", "--shell"]),
        "xdotool getmouselocation",
        X_TOOL_TIMEOUT,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> Option<i32> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
    };
    match (value("X"), value("Y")) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => Err(PeerError::Failed {
            what: "xdotool getmouselocation".into(),
            detail: format!("unexpected output {text:?}"),
        }),
    }
}

/// Saves a PNG of the whole screen of `display` into its temporary folder and returns the path
/// (valid while `display` lives).
pub fn screenshot(display: &XDisplay) -> Result<PathBuf> {
    let python = venv_python()?;
    let script = helper_script("xgrab.py")?;
    let n = display.shots.fetch_add(1, Ordering::Relaxed);
    let png = display.dir.join(&format!("screenshot-{n}.png"));
    run_ok(
        Command::new(python)
            .arg(script)
            .arg(display.name())
            .arg(&png),
        "screen grab (tests/peers/xgrab.py)",
        X_TOOL_TIMEOUT,
    )?;
    Ok(png)
}

/// Rejects sizes the X servers cannot serve (Xvfb crashes on a 0×0 screen).
pub(crate) fn check_screen_size(what: &str, width: u32, height: u32) -> Result<()> {
    let ok = |side: u32| (1..=MAX_SCREEN_SIDE).contains(&side);
    if ok(width) && ok(height) {
        Ok(())
    } else {
        Err(PeerError::Failed {
            what: what.to_owned(),
            detail: format!("screen size {width}x{height} is outside 1..={MAX_SCREEN_SIDE}"),
        })
    }
}

/// Starts an X server built by `make(display, port)` on a free display (and, when `with_port`,
/// a free TCP port). Retries with other numbers when the server reports a collision.
/// Returns the server, its display number, its port (0 without `with_port`) and its folder.
pub(crate) fn start_x_server(
    what: &str,
    with_port: bool,
    mut make: impl FnMut(u32, u16) -> Command,
) -> Result<(PeerProcess, u32, u16, TempDir)> {
    require_tool("xdpyinfo")?;
    let dir = TempDir::new(&what.to_lowercase())?;
    let mut last_collision = None;
    for _ in 0..START_ATTEMPTS {
        let display = free_display();
        let port = if with_port {
            super::vnc::free_port()?
        } else {
            0
        };
        let log = dir.join(&format!("{what}-{display}.log"));
        let mut server = PeerProcess::spawn(what, &mut make(display, port), &log)?;
        match wait_for_x(&mut server, display, with_port)? {
            XStart::Ready => return Ok((server, display, port, dir)),
            XStart::Collision(line) => last_collision = Some(server.startup_error(line)),
        }
    }
    Err(last_collision.unwrap_or_else(|| PeerError::Failed {
        what: what.to_owned(),
        detail: "no free display number".into(),
    }))
}

enum XStart {
    Ready,
    /// Another server holds the display number or port; try other ones.
    Collision(String),
}

fn wait_for_x(server: &mut PeerProcess, display: u32, with_port: bool) -> Result<XStart> {
    let deadline = Instant::now() + X_START_TIMEOUT;
    loop {
        if let Some(status) = server.exited() {
            let log = server.log_text();
            if let Some(c) = COLLISIONS.iter().find(|c| log.contains(*c)) {
                return Ok(XStart::Collision(format!("display :{display} busy ({c})")));
            }
            return Err(server.startup_error(format!("exited with {status}")));
        }
        // Xvnc prints this once its RFB listener is bound; the X socket comes right after.
        let listening = !with_port || server.log_text().contains("Listening for VNC connections");
        if listening && x_answers(display)? {
            // xdpyinfo may have reached another server that won the race for this number:
            // the lock file names the winner.
            if lock_owner(display) == Some(server.pid()) {
                return Ok(XStart::Ready);
            }
            server.stop();
            return Ok(XStart::Collision(format!(
                "display :{display} is served by another process"
            )));
        }
        if Instant::now() >= deadline {
            return Err(server.startup_error(format!(
                "display :{display} did not answer xdpyinfo within {X_START_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn x_answers(display: u32) -> Result<bool> {
    let out = run_captured(
        Command::new("xdpyinfo")
            .args(["-display", &format!(":{display}")])
            .env_remove("XAUTHORITY"),
        None,
        X_TOOL_TIMEOUT,
    )?;
    Ok(out.status.success())
}

/// The pid in `/tmp/.X<N>-lock`, the X server's own claim on display `N`.
fn lock_owner(display: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/tmp/.X{display}-lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A display number with neither a lock file nor a socket. Threads of one process walk the
/// range from a per-process offset, so they do not compete for the same numbers; the X server's
/// own lock file settles races with other processes.
fn free_display() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(53) % DISPLAY_COUNT;
    let mut candidate = 0;
    for _ in 0..DISPLAY_COUNT {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        candidate = FIRST_DISPLAY + (offset + step) % DISPLAY_COUNT;
        let lock = PathBuf::from(format!("/tmp/.X{candidate}-lock"));
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{candidate}"));
        if !lock.exists() && !socket.exists() {
            break;
        }
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_screen_sizes_are_refused_before_starting_anything() {
        for (w, h) in [(0, 768), (1024, 0), (MAX_SCREEN_SIDE + 1, 10)] {
            let err = XDisplay::start(w, h).err().expect("size must be refused");
            assert!(err.to_string().contains("outside"), "{err}");
        }
        assert!(check_screen_size("Xvfb", 1, MAX_SCREEN_SIDE).is_ok());
    }
}
