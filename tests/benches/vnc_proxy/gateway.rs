//! A `psmgate serve` process under test: its configuration, access grants, CPU time, and a
//! graceful stop (SIGTERM, so open recordings are sealed).

use anyhow::{bail, Context, Result};
use psmgate_e2e::peers::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gateway user every bench session runs as.
pub const USER: &str = "bench";

/// One VNC target in the generated configuration.
pub struct TargetSpec {
    /// Target name.
    pub name: String,
    /// x11vnc's port on 127.0.0.1.
    pub port: u16,
    /// x11vnc's password, stored in a file next to the configuration.
    pub password: String,
}

/// A running `psmgate serve --no-tls`, stopped on drop.
pub struct Gateway {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The VNC listener's port on 127.0.0.1.
    pub vnc_port: u16,
    /// The configuration text, as written.
    pub config_text: String,
}

/// The `psmgate` binary to benchmark: `PSMGATE_BIN`, else the release build next to this bench.
pub fn psmgate_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PSMGATE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/release/deps/vnc_proxy-… → target/release/psmgate
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("psmgate"))
        .context("locating the target directory")?;
    if !bin.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build --release -p psmgate --features svt-av1` \
             (or point PSMGATE_BIN at a psmgate binary)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Writes `text` as `dir/psmgate.toml` and starts `psmgate serve --no-tls` on it, its log (no
/// colours) in `dir/serve.log`. Returns the process and the configuration's path.
pub fn spawn_serve(dir: &Path, text: &str) -> Result<(Child, PathBuf)> {
    let config = dir.join("psmgate.toml");
    std::fs::write(&config, text)?;
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let child = Command::new(psmgate_bin()?)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--no-tls"])
        .env("PSMGATE_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting psmgate serve")?;
    Ok((child, config))
}

/// Runs a `psmgate` subcommand against the configuration at `config`.
pub fn cli(config: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new(psmgate_bin()?)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PSMGATE_LOG", "warn")
        .output()
        .with_context(|| format!("running psmgate {}", args.join(" ")))
}

/// Issues an access token for `user` on `target` (several sessions, 2 hours), retrying while a
/// just-started `serve` is still opening the token database.
pub fn grant_retrying(config: &Path, user: &str, target: &str) -> Result<String> {
    let mut last = String::new();
    for _ in 0..10 {
        let o = cli(
            config,
            &[
                "access", "grant", "--user", user, "--target", target, "--ttl", "2h",
            ],
        )?;
        if o.status.success() {
            return Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned());
        }
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("psmgate access grant failed: {last}")
}

/// The last `n` lines of the log of the gateway started in `dir` by [`spawn_serve`].
pub fn serve_log_tail(dir: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits (30 s at most) until 127.0.0.1:`port` accepts connections; fails at once, with the log
/// from `dir`, if `child` exits first.
pub fn wait_listening(child: &mut Child, dir: &Path, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("psmgate exited with {status}:\n{}", serve_log_tail(dir, 30));
        }
        if Instant::now() >= deadline {
            bail!(
                "psmgate did not listen in time:\n{}",
                serve_log_tail(dir, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Gateway {
    /// Writes a configuration with `targets` (one rule lets [`USER`] reach all of them), starts
    /// the gateway and waits until its VNC port accepts connections.
    pub fn start(targets: &[TargetSpec]) -> Result<Gateway> {
        let dir = tempfile::Builder::new()
            .prefix("psmgate-bench-")
            .tempdir()?;
        let (admin_port, vnc_port) = (free_port()?, free_port()?);
        let mut text = format!(
            "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             admin_tls = false\nvnc_listen = \"127.0.0.1:{vnc_port}\"\n\n\
             [users.{USER}]\nroles = [\"admin\"]\n\n"
        );
        for t in targets {
            let file = format!("{}.pass", t.name);
            std::fs::write(dir.path().join(&file), &t.password)?;
            text.push_str(&format!(
                "[targets.{}]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{}\"\n\
                 password = {{ file = \"{file}\" }}\n\n",
                t.name, t.port
            ));
        }
        text.push_str(&format!(
            "[[rules]]\nid = \"bench\"\nusers = [\"{USER}\"]\ntargets = \"*\"\n"
        ));
        let (child, config) = spawn_serve(dir.path(), &text)?;
        let mut gw = Gateway {
            child: Some(child),
            dir,
            config,
            vnc_port,
            config_text: text,
        };
        if let Some(child) = gw.child.as_mut() {
            wait_listening(child, gw.dir.path(), vnc_port)?;
        }
        Ok(gw)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The storage root holding the recordings.
    pub fn recordings(&self) -> PathBuf {
        self.data().join("recordings")
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("serve.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Runs a `psmgate` subcommand against this gateway's configuration.
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        cli(&self.config, args)
    }

    /// Issues an access token for `target` (valid for several sessions, 2 hours).
    pub fn grant(&self, target: &str) -> Result<String> {
        grant_retrying(&self.config, USER, target)
    }

    /// Stops the gateway with SIGTERM (it seals open recordings), SIGKILL after 20 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_gracefully(child);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a `psmgate serve` with SIGTERM (it seals open recordings), SIGKILL after 20 s.
pub fn stop_gracefully(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// User + system CPU time of process `pid` so far, in seconds (from `/proc/<pid>/stat`).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Busy and total jiffies of the whole machine (from `/proc/stat`).
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The 1/5/15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
