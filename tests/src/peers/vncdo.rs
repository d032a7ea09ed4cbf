//! vncdotool's `vncdo`, the scripted VNC viewer.

use super::process::run_captured;
use super::{helper_script, venv_python, Result};
use std::process::{Command, Output};
use std::time::Duration;

/// Default deadline of one [`vncdo`] run.
pub const VNCDO_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `vncdo -s SERVER [-p PASSWORD] COMMANDS...` with stdin from /dev/null and a
/// [`VNCDO_TIMEOUT`] deadline, and returns its output.
///
/// `server` is `HOST::PORT` (e.g. `127.0.0.1::5901`); `commands` are vncdo's, e.g.
/// `["type", "hello", "key", "enter", "move", "100", "120", "click", "1", "capture", "/abs/x.png"]`.
/// The vncdo used is `tests/peers/vncdo.py`, which fixes vncdotool 1.4.2's capture of servers
/// that paint the screen in several rectangles (TigerVNC).
///
/// Exit codes (vncdotool 1.4.2): 0 success, 2 bad arguments, 3 authentication failed,
/// 10 connection failed, 11 connection lost (also when a password is needed but none given).
/// An `Err` means vncdo could not be run or did not finish in time, not that it failed.
pub fn vncdo(server: &str, password: Option<&str>, commands: &[&str]) -> Result<Output> {
    vncdo_with_timeout(server, password, commands, VNCDO_TIMEOUT)
}

/// [`vncdo`] with an explicit deadline; on timeout the process is stopped.
pub fn vncdo_with_timeout(
    server: &str,
    password: Option<&str>,
    commands: &[&str],
    timeout: Duration,
) -> Result<Output> {
    let python = venv_python()?;
    let script = helper_script("vncdo.py")?;
    let mut cmd = Command::new(python);
    cmd.arg(script).args(["-s", server]);
    if let Some(pw) = password {
        cmd.args(["-p", pw]);
    }
    cmd.args(commands)
        // Twisted's deprecation warnings would bury vncdo's own messages.
        .env("PYTHONWARNINGS", "ignore")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_captured(&mut cmd, None, timeout)
}
