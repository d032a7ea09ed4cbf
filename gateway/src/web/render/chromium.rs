//! One headless Chromium driven over its DevTools pipe.
//!
//! Chromium reads commands on fd 3 and writes answers and events on fd 4
//! (`--remote-debugging-pipe`). It runs in its own process group, with a private profile
//! folder (also its `HOME`), and dies with the thread that started it (`PR_SET_PDEATHSIG`), so a
//! gateway that is killed leaves no browser behind. It can reach nothing: every host name
//! resolves to nothing and every request, loopback included, goes to a proxy on the discard
//! port, where nothing listens.
//!
//! Every command has a timeout; a browser that closes its pipe, answers garbage or does not
//! answer in time is an error, and the caller gives it up ([`Chromium::close`] or drop kills
//! the whole process group).

use super::cdp::{self, CdpError, Framer, Incoming};
use serde_json::Value;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

/// Chromium's switches: headless, no first-run or background work, no extensions, sound or
/// scrollbars, no start-up window (the caller opens its page), and no network.
pub const ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-startup-window",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
    // A replayed page never fetches anything (images, fonts, style sheets of the original site).
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
];

/// Profile folders are named `psmgate-render-<gateway pid>-<uuid>`.
const PROFILE_PREFIX: &str = "psmgate-render-";

/// Removes the profile folders a gateway that was killed (and could not clean up) left in
/// `tmp`: those of this user whose gateway process is gone.
fn sweep_stale_profiles(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    // SAFETY: no arguments, cannot fail.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PROFILE_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = e
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => {
                    tracing::debug!(folder = %e.path().display(), "removed a stale renderer profile")
                }
                Err(err) => {
                    tracing::debug!(error = %err, "could not remove a stale renderer profile")
                }
            }
        }
    }
}

/// Lines of Chromium's standard error kept for error messages.
const STDERR_LINES: usize = 12;
/// Longest standard error line kept.
const STDERR_LINE: usize = 300;

/// What went wrong with the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The profile folder or the process could not be created.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The protocol broke or Chromium refused a command.
    #[error(transparent)]
    Protocol(#[from] CdpError),
    /// No answer in time.
    #[error("Chromium did not answer {method} within {timeout:?}")]
    Timeout {
        /// The command.
        method: String,
        /// Its timeout.
        timeout: Duration,
    },
    /// Chromium closed the pipe (it exited or crashed).
    #[error("Chromium closed its DevTools pipe{0}")]
    Closed(String),
    /// The page went away (crashed or closed).
    #[error("the replay page went away ({0})")]
    Detached(String),
    /// Reading or writing the pipe failed.
    #[error("DevTools pipe: {0}")]
    Io(#[from] io::Error),
}

/// A running Chromium.
pub struct Chromium {
    child: Child,
    writer: pipe::Sender,
    reader: pipe::Receiver,
    framer: Framer,
    buf: Vec<u8>,
    next_id: u64,
    profile: PathBuf,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Set once a command failed: the stream may be out of step, nothing more is sent.
    broken: bool,
    reaped: bool,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

/// A pipe whose ends are closed on exec.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the child between fork and exec: the command pipe's read end to fd 3, the answer pipe's
/// write end to fd 4 (both may already sit at 3 or 4, so they are moved out of the way first),
/// and death with the starting thread. Only async-signal-safe calls.
fn place_pipe_ends(commands: RawFd, answers: RawFd, parent: libc::pid_t) -> io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: plain descriptor and process calls on descriptors this process owns.
    unsafe {
        let c = check(libc::fcntl(commands, libc::F_DUPFD, 10))?;
        let a = check(libc::fcntl(answers, libc::F_DUPFD, 10))?;
        check(libc::dup2(c, 3))?;
        check(libc::dup2(a, 4))?;
        libc::close(c);
        libc::close(a);
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        if libc::getppid() != parent {
            // The gateway is already gone.
            libc::_exit(1);
        }
    }
    Ok(())
}

impl Chromium {
    /// Starts `exe` with a new profile folder below `tmp`. Needs a Tokio runtime (the pipes
    /// register with it); the browser dies with the calling thread.
    pub fn launch(exe: &Path, tmp: &Path) -> Result<Chromium, BrowserError> {
        let spawn_err = |source| BrowserError::Spawn {
            path: exe.to_path_buf(),
            source,
        };
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| sweep_stale_profiles(tmp));
        let profile = tmp.join(format!(
            "{PROFILE_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&profile)
            .map_err(spawn_err)?;
        match Self::spawn(exe, &profile) {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                Err(spawn_err(e))
            }
        }
    }

    fn spawn(exe: &Path, profile: &Path) -> io::Result<Chromium> {
        let (cmd_read, cmd_write) = cloexec_pipe()?;
        let (ans_read, ans_write) = cloexec_pipe()?;
        // Fewer wake-ups for screenshots (best effort).
        // SAFETY: a valid descriptor; failure leaves the default size.
        unsafe { libc::fcntl(ans_read.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        let (c, a) = (cmd_read.as_raw_fd(), ans_write.as_raw_fd());
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = Command::new(exe);
        cmd.args(ARGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .env("HOME", profile)
            .env("XDG_CONFIG_HOME", profile)
            .env("XDG_CACHE_HOME", profile)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure only makes async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || place_pipe_ends(c, a, parent));
        }
        let mut child = cmd.spawn()?;
        drop((cmd_read, ans_write));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let started = (|| -> io::Result<_> {
            let writer = pipe::Sender::from_owned_fd(cmd_write)?;
            let reader = pipe::Receiver::from_owned_fd(ans_read)?;
            if let Some(err) = child.stderr.take() {
                let rx = pipe::Receiver::from_owned_fd(OwnedFd::from(err))?;
                tokio::spawn(keep_stderr(rx, stderr.clone()));
            }
            Ok((writer, reader))
        })();
        let (writer, reader) = match started {
            Ok(p) => p,
            Err(e) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Chromium {
            child,
            writer,
            reader,
            framer: Framer::default(),
            buf: vec![0; 256 * 1024],
            next_id: 1,
            profile: profile.to_path_buf(),
            stderr,
            broken: false,
            reaped: false,
        })
    }

    /// The browser's process id (also its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines Chromium wrote to standard error, for messages.
    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            format!(
                " (its last messages: {})",
                lines.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    }

    /// Sends `method` with `params` (to page `session`, or the browser) and waits at most
    /// `timeout` for its answer. Events read meanwhile are dropped, except those saying the
    /// page went away.
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, BrowserError> {
        if self.broken {
            return Err(BrowserError::Closed(" (after an earlier failure)".into()));
        }
        let id = self.next_id;
        self.next_id += 1;
        let msg = cdp::encode(id, method, params, session);
        let r = tokio::time::timeout(timeout, self.exchange(id, method, &msg)).await;
        let r = match r {
            Ok(r) => r,
            Err(_) => Err(BrowserError::Timeout {
                method: method.to_string(),
                timeout,
            }),
        };
        if let Err(e) = &r {
            if !matches!(e, BrowserError::Protocol(CdpError::Remote { .. })) {
                self.broken = true;
            }
        }
        r
    }

    async fn exchange(&mut self, id: u64, method: &str, msg: &[u8]) -> Result<Value, BrowserError> {
        if let Err(e) = self.writer.write_all(msg).await {
            return Err(if e.kind() == io::ErrorKind::BrokenPipe {
                BrowserError::Closed(self.stderr_tail())
            } else {
                e.into()
            });
        }
        loop {
            while let Some(m) = self.framer.next_message()? {
                match cdp::parse(&m)? {
                    Incoming::Response {
                        id: rid, result, ..
                    } if rid == id => {
                        return result.map_err(|(code, message)| {
                            CdpError::Remote {
                                method: method.to_string(),
                                code,
                                message,
                            }
                            .into()
                        })
                    }
                    Incoming::Event { method: ev, .. }
                        if ev == "Target.detachedFromTarget"
                            || ev == "Inspector.detached"
                            || ev == "Inspector.targetCrashed"
                            || ev == "Target.targetCrashed" =>
                    {
                        return Err(BrowserError::Detached(ev));
                    }
                    _ => {}
                }
            }
            let n = self.reader.read(&mut self.buf).await?;
            if n == 0 {
                return Err(BrowserError::Closed(self.stderr_tail()));
            }
            self.framer.push(&self.buf[..n]);
        }
    }

    /// Asks Chromium to close, waits up to `grace` for it to exit, then kills what is left of
    /// its process group and removes its profile.
    pub async fn close(mut self, grace: Duration) {
        if !self.broken {
            let _ = self
                .call("Browser.close", serde_json::json!({}), None, grace)
                .await;
        }
        let deadline = Instant::now() + grace;
        while !exited(self.child.id()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.reap();
    }

    /// Kills the process group (stragglers included) and collects the browser.
    fn reap(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        // The browser is not collected yet, so its pid (the group id) cannot have been reused.
        kill_group(self.child.id());
        let _ = self.child.wait();
        if let Err(e) = std::fs::remove_dir_all(&self.profile) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(error = %e, "could not remove the renderer's profile folder");
            }
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Kills process group `pgid` (a browser started by [`Chromium::launch`]).
pub fn kill_group(pgid: u32) {
    if let Ok(p) = libc::pid_t::try_from(pgid) {
        if p > 1 {
            // SAFETY: signals a process group this module created.
            unsafe { libc::kill(-p, libc::SIGKILL) };
        }
    }
}

/// Whether process `pid` (a child of this process) has exited, without collecting it.
fn exited(pid: libc::id_t) -> bool {
    // SAFETY: `info` is plain data waitid fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waits on our own child without collecting it (WNOWAIT) or blocking (WNOHANG).
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: `si_pid` is valid to read for a waitid result.
    r != 0 || unsafe { info.si_pid() } != 0
}

/// Keeps the last lines of Chromium's standard error (logged at debug level) until it closes.
async fn keep_stderr(rx: pipe::Receiver, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = tokio::io::BufReader::new(rx.take(64 * 1024 * 1024)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(STDERR_LINE).collect();
        tracing::debug!(target: "psmgate::web::render::chromium", "{line}");
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= STDERR_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Chromium: a shell script answering on fd 4 what it reads on fd 3.
    fn fake(dir: &Path, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("fake-chromium");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn commands_reach_fd_3_and_answers_come_from_fd_4() {
        let dir = tempfile::tempdir().unwrap();
        // Reads one command, checks it is on fd 3, answers id 1 with an event first.
        let exe = fake(
            dir.path(),
            r#"head -c 20 <&3 | grep -q '"id":1' || exit 3
printf '{"method":"X.y","params":{}}\000{"id":1,"result":{"ok":true}}\000' >&4
sleep 5"#,
        );
        rt().block_on(async {
            let mut c = Chromium::launch(&exe, dir.path()).unwrap();
            let profile = c.profile.clone();
            assert!(profile.is_dir());
            let v = c
                .call("A.b", serde_json::json!({}), None, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(v, serde_json::json!({"ok": true}));
            let t = Instant::now();
            c.close(Duration::from_millis(200)).await;
            assert!(t.elapsed() < Duration::from_secs(3));
            assert!(!profile.exists());
        });
    }

    #[test]
    fn a_silent_browser_times_out_and_a_dead_one_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let silent = fake(dir.path(), "sleep 30");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let dead = fake(&other, "echo gone >&2; exit 0");
        rt().block_on(async {
            let mut c = Chromium::launch(&silent, dir.path()).unwrap();
            let pid = c.pid();
            let t = Instant::now();
            let e = c
                .call(
                    "A.b",
                    serde_json::json!({}),
                    None,
                    Duration::from_millis(300),
                )
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::Timeout { .. }), "{e}");
            assert!(t.elapsed() < Duration::from_secs(3));
            // Once out of step, nothing more is sent.
            assert!(c
                .call("A.b", serde_json::json!({}), None, Duration::from_secs(1))
                .await
                .is_err());
            drop(c);
            assert!(!Path::new(&format!("/proc/{pid}")).exists() || exited(pid));

            let mut c = Chromium::launch(&dead, dir.path()).unwrap();
            let e = c
                .call("A.b", serde_json::json!({}), None, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::Closed(_)), "{e}");
            c.close(Duration::from_millis(100)).await;
        });
    }

    #[test]
    fn garbage_and_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let exe = fake(
            dir.path(),
            r#"printf '{"id":1,"error":{"code":-32000,"message":"nope"}}\000[1,2]\000' >&4
sleep 5"#,
        );
        rt().block_on(async {
            let mut c = Chromium::launch(&exe, dir.path()).unwrap();
            let e = c
                .call("A.b", serde_json::json!({}), None, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &e,
                    BrowserError::Protocol(CdpError::Remote { code: -32000, .. })
                ),
                "{e}"
            );
            let e = c
                .call("A.c", serde_json::json!({}), None, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, BrowserError::Protocol(CdpError::Malformed(_))),
                "{e}"
            );
            c.close(Duration::from_millis(100)).await;
        });
    }

    #[test]
    fn profiles_of_gone_gateways_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("psmgate-render-999999999-abc");
        let live = dir
            .path()
            .join(format!("psmgate-render-{}-def", std::process::id()));
        let other = dir.path().join("psmgate-render-notapid");
        for d in [&stale, &live, &other] {
            std::fs::create_dir_all(d.join("Default")).unwrap();
        }
        sweep_stale_profiles(dir.path());
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn a_missing_executable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = rt()
            .block_on(async { Chromium::launch(&dir.path().join("nope"), dir.path()) })
            .unwrap_err();
        assert!(matches!(e, BrowserError::Spawn { .. }), "{e}");
        // No profile folder is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
