//! Child processes in their own process groups, stopped on drop, and temporary folders.

use super::{PeerError, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a stopped peer may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Polling interval while waiting for processes and files.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// A temporary folder, removed on drop unless the current thread is panicking.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/psmgate-peers-<kind>-<pid>-<n>`.
    pub(crate) fn new(kind: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("psmgate-peers-{kind}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                // Left behind by an earlier process with the same id: take the next name.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(PeerError::io(
                        format!("creating the folder {}", path.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// A path inside the folder.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("peer logs kept in {}", self.path.display());
        } else {
            // Best effort: a leftover folder in the temporary directory is harmless.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A long-running peer: its own process group, stdout and stderr appended to a log file,
/// stopped (TERM, then KILL, to the whole group) on drop.
pub(crate) struct PeerProcess {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl PeerProcess {
    /// Spawns `cmd` with stdin from /dev/null and both output streams in `log`.
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let out = File::create(log)
            .map_err(|e| PeerError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| PeerError::io(format!("opening {}", log.display()), e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| spawn_error(cmd, e))?;
        Ok(PeerProcess {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            stopped: false,
        })
    }

    /// The process id (also its process-group id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The log so far, as text.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// A startup error for this peer, quoting the end of its log.
    pub(crate) fn startup_error(&self, reason: impl Into<String>) -> PeerError {
        PeerError::Startup {
            what: self.name.clone(),
            reason: reason.into(),
            log: self.log.clone(),
            tail: tail(&self.log_text(), 25),
        }
    }

    /// Stops the process group: SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        stop_group(&mut self.child);
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> PeerError {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if e.kind() == std::io::ErrorKind::NotFound {
        PeerError::Missing { tool: program }
    } else {
        PeerError::io(format!("starting {program}"), e)
    }
}

/// Sends `signal` (a name such as `TERM`) to process group `pgid`; false if it was not delivered.
fn signal_group(pgid: u32, signal: &str) -> bool {
    // The shell's built-in `kill` reaches a whole process group without extra dependencies.
    Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" -- \"-$2\"",
            "sh",
            signal,
            &pgid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// TERM to the child's process group, wait up to [`STOP_GRACE`], then KILL the group and reap.
fn stop_group(child: &mut Child) {
    let pgid = child.id();
    if matches!(child.try_wait(), Ok(None)) {
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
    // Members that ignored TERM, or outlived the leader.
    if !signal_group(pgid, "KILL") {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Runs a short-lived helper in its own process group with a deadline; stdin gets `input`
/// (or /dev/null), stdout and stderr are captured. On timeout the group is stopped.
pub(crate) fn run_captured(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| spawn_error(cmd, e))?;
    let stdin = child.stdin.take();
    let bytes = input.map(<[u8]>::to_vec).unwrap_or_default();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A helper that exits without reading its input is not an error here.
            let _ = stdin.write_all(&bytes);
        }
    });
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                stop_group(&mut child);
                return Err(PeerError::Timeout {
                    what: format!("{program} did not finish"),
                    after: timeout,
                });
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(PeerError::io(format!("waiting for {program}"), e)),
        }
    };
    let _ = writer.join();
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // Partial output is still useful when the pipe breaks.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs a helper and requires success; the error quotes its exit status and stderr.
pub(crate) fn run_ok(cmd: &mut Command, what: &str, timeout: Duration) -> Result<Output> {
    let out = run_captured(cmd, None, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(PeerError::Failed {
            what: what.to_owned(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_and_status() {
        let out = run_captured(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"in"),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_hanging_helper_times_out_and_is_stopped() {
        let started = Instant::now();
        let err = run_captured(
            Command::new("sh").args(["-c", "sleep 30"]),
            None,
            Duration::from_millis(300),
        )
        .expect_err("must time out");
        assert!(matches!(err, PeerError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn dropping_a_peer_stops_its_whole_group() {
        let dir = TempDir::new("unit").expect("temp dir");
        let pidfile = dir.join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // The grandchild ignores nothing special; it must die with the group.
        cmd.args(["-c", "sleep 30 & echo $! > \"$1\"; wait", "sh"])
            .arg(&pidfile);
        let peer = PeerProcess::spawn("sleeper", &mut cmd, &dir.join("log")).expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(5);
        let grandchild = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile) {
                if let Ok(pid) = s.trim().parse::<u32>() {
                    break pid;
                }
            }
            assert!(Instant::now() < deadline, "grandchild never started");
            std::thread::sleep(POLL);
        };
        drop(peer);
        // The grandchild is not our child: it is reaped by init once dead; /proc shows it
        // gone or a zombie.
        let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let alive = state
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X");
        assert!(!alive, "grandchild {grandchild} survived: {state}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
