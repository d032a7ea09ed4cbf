//! X clients the bench starts on a target display (xterms running scripted output), each in its
//! own process group and stopped on drop; window geometry via xdotool.

use anyhow::{bail, Context, Result};
use psmgate_codecs::Rect;
use psmgate_e2e::peers::XDisplay;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An X client in its own process group; SIGTERM (then SIGKILL) to the group on drop.
pub struct XClient {
    child: Child,
    /// The window's instance name (for `xdotool search --classname`).
    pub instance: String,
}

/// Starts `xterm -name <unique> ARGS… -e sh -c SCRIPT` on `display`, waits until its window is
/// mapped and returns it with the window's rectangle.
pub fn xterm(display: &XDisplay, args: &[&str], script: &str) -> Result<(XClient, Rect)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let instance = format!(
        "psmgate-bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let child = Command::new("xterm")
        .env("DISPLAY", display.name())
        .env_remove("XAUTHORITY")
        .args(["-name", &instance])
        .args(args)
        .args(["-e", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting xterm")?;
    let client = XClient { child, instance };
    let rect = window_rect(display, &client.instance)?;
    Ok((client, rect))
}

/// Polls xdotool until the window with instance name `instance` is visible; returns its
/// position and size.
fn window_rect(display: &XDisplay, instance: &str) -> Result<Rect> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("xdotool")
            .env("DISPLAY", display.name())
            .env_remove("XAUTHORITY")
            .args([
                "search",
                "--onlyvisible",
                "--classname",
                &format!("^{instance}$"),
                "getwindowgeometry",
                "--shell",
            ])
            .output()
            .context("running xdotool")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| -> Option<u32> {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(x), Some(y), Some(w), Some(h)) =
            (get("X"), get("Y"), get("WIDTH"), get("HEIGHT"))
        {
            return Ok(Rect::new(x, y, w, h));
        }
        if Instant::now() >= deadline {
            bail!(
                "xterm {instance} did not map a window on {}",
                display.name()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for XClient {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}
