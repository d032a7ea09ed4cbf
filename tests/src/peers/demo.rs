//! The demo application on a target display: an xterm whose keyboard input ends up in a file.

use super::process::{run_captured, run_ok, PeerProcess, TempDir, POLL};
use super::xserver::{XDisplay, X_TOOL_TIMEOUT};
use super::{require_tool, PeerError, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long the xterm may take to map its window.
const MAP_TIMEOUT: Duration = Duration::from_secs(15);

/// A maximized `xterm -e sh -c 'exec cat > FILE'` with the keyboard focus: every line typed
/// into the display (terminated by Enter) is appended to `FILE`, an exact, image-free proof
/// that input reached the target. Stopped on drop.
pub struct DemoApp {
    window: String,
    typed: PathBuf,
    process: PeerProcess,
    _dir: TempDir,
}

impl DemoApp {
    /// Starts the xterm on `display`, waits until its window is mapped, then gives it the
    /// keyboard focus (without a window manager focus would otherwise follow the pointer).
    pub fn start(display: &XDisplay) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        require_tool("xterm")?;
        require_tool("xdotool")?;
        let dir = TempDir::new("demo-app")?;
        let typed = dir.join("typed.txt");
        std::fs::write(&typed, b"")
            .map_err(|e| PeerError::io(format!("creating {}", typed.display()), e))?;
        // A unique instance name finds this window even if several apps share a display.
        let instance = format!(
            "psmgate-demo-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = display.command("xterm");
        cmd.args(["-name", &instance, "-maximized", "-e", "sh", "-c"])
            .arg("exec cat > \"$1\"")
            .arg("sh")
            .arg(&typed);
        let mut process = PeerProcess::spawn("xterm", &mut cmd, &dir.join("xterm.log"))?;
        let window = wait_for_window(display, &mut process, &instance)?;
        run_ok(
            display
                .command("xdotool")
                .args(["windowfocus", "--sync", &window]),
            "xdotool windowfocus",
            X_TOOL_TIMEOUT,
        )
        .map_err(|e| process.startup_error(format!("could not focus its window: {e}")))?;
        Ok(DemoApp {
            window,
            typed,
            process,
            _dir: dir,
        })
    }

    /// Everything typed into the app so far (complete lines; the terminal holds back a line
    /// until Enter). Empty if the file cannot be read.
    pub fn typed(&self) -> String {
        std::fs::read(&self.typed)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until [`typed`](Self::typed) contains `needle`, and returns it.
    pub fn wait_for_typed(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let typed = self.typed();
            if typed.contains(needle) {
                return Ok(typed);
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout {
                    what: format!("the demo app to receive {needle:?} (it has {typed:?})"),
                    after: timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The file receiving the typed text.
    pub fn typed_path(&self) -> &Path {
        &self.typed
    }

    /// The X window id of the xterm (decimal, as xdotool prints it).
    pub fn window(&self) -> &str {
        &self.window
    }

    /// The xterm's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

/// Polls `xdotool search --onlyvisible` until the xterm's window is mapped.
fn wait_for_window(
    display: &XDisplay,
    process: &mut PeerProcess,
    instance: &str,
) -> Result<String> {
    let deadline = Instant::now() + MAP_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            return Err(process.startup_error(format!("exited with {status}")));
        }
        let out = run_captured(
            display.command("xdotool").args([
                "search",
                "--onlyvisible",
                "--classname",
                &format!("^{instance}$"),
            ]),
            None,
            X_TOOL_TIMEOUT,
        )?;
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned);
        if let Some(window) = found {
            return Ok(window);
        }
        if Instant::now() >= deadline {
            return Err(process.startup_error(format!(
                "no visible window on {} within {MAP_TIMEOUT:?}",
                display.name()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
