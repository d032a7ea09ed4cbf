//! A `psmgate serve` process with one RDP target (`lab-rdp`), its access grants, log and
//! recordings, and the peers of a bench run: FreeRDP's shadow server as the target and xfreerdp
//! clients, connected directly or through the gateway.

use crate::vnc_gateway::{cli, grant_retrying, serve_log_tail, spawn_serve};
use crate::xproto::XConn;
use anyhow::{bail, Context, Result};
use psmgate_e2e::peers::{
    free_port, wait_for_rdp, RdpClient, RdpClientOptions, RdpSecurity, ShadowOptions, ShadowServer,
};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The gateway user every bench session runs as.
pub const USER: &str = "alice";
/// The gateway's name of the target.
pub const TARGET: &str = "lab-rdp";
/// The vaulted account at the shadow server (a SAM entry, no Linux account).
pub const TARGET_USER: &str = "tgtadmin";
/// Its password.
pub const TARGET_PASSWORD: &str = "Vault3d-Secr3t!";
/// Extra `[recording]` settings for every gateway (from `--recording`), empty for the defaults.
pub static RECORDING: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// How long a client may take to show its session window.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `psmgate serve --no-tls` (the RDP listener always speaks TLS), stopped on drop.
pub struct Gateway {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The RDP listener's port on 127.0.0.1.
    pub rdp_port: u16,
    /// The configuration text, as written.
    pub config_text: String,
}

impl Gateway {
    /// Writes a configuration whose `lab-rdp` target is `address` with the vaulted account,
    /// starts the gateway and waits until its RDP listener answers an X.224 request.
    pub fn start(address: &str) -> Result<Gateway> {
        let dir = tempfile::Builder::new()
            .prefix("psmgate-rdp-bench-")
            .tempdir()?;
        let (admin_port, rdp_port) = (free_port()?, free_port()?);
        std::fs::write(dir.path().join("target.pass"), TARGET_PASSWORD)?;
        let text = format!(
            "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             admin_tls = false\nvnc_listen = \"127.0.0.1:0\"\nweb_listen = \"127.0.0.1:0\"\n\
             rdp_listen = \"127.0.0.1:{rdp_port}\"\n\n\
             [users.{USER}]\nroles = [\"admin\"]\n\n\
             [targets.{TARGET}]\nprotocol = \"rdp\"\naddress = \"{address}\"\n\
             username = \"{TARGET_USER}\"\npassword = {{ file = \"target.pass\" }}\n\n\
             [[rules]]\nid = \"bench\"\nusers = [\"{USER}\"]\ntargets = \"*\"\n"
        );
        let mut text = text;
        if let Some(r) = RECORDING.get().filter(|r| !r.is_empty()) {
            text.push_str(&format!("\n[recording]\n{r}\n"));
        }
        let (child, config) = spawn_serve(dir.path(), &text)?;
        let mut gw = Gateway {
            child: Some(child),
            dir,
            config,
            rdp_port,
            config_text: text,
        };
        if let Err(e) = wait_for_rdp(rdp_port, Duration::from_secs(30)) {
            if let Some(status) = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("psmgate exited with {status}:\n{}", gw.log_tail(30));
            }
            bail!(
                "psmgate's RDP listener did not answer: {e}\n{}",
                gw.log_tail(30)
            );
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

    /// The gateway's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// The last `n` lines of the gateway's log.
    pub fn log_tail(&self, n: usize) -> String {
        serve_log_tail(self.dir.path(), n)
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Server frames the recorder could not decode, summed over the sessions that ended: the
    /// `errors=N` of the end-of-session summaries, or the per-frame warnings where a session
    /// logged no summary (the per-frame warnings stop after 10 per session).
    pub fn decode_errors(&self) -> u64 {
        let summaries: Vec<u64> = self
            .log_lines("server frames that could not be decoded")
            .iter()
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("errors="))
                    .and_then(|v| v.parse().ok())
            })
            .collect();
        let single = self.log_lines("a server frame could not be decoded").len() as u64;
        summaries.iter().sum::<u64>().max(single)
    }

    /// Runs a `psmgate` subcommand against this gateway's configuration.
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        cli(&self.config, args)
    }

    /// Issues an access token for [`USER`] on [`TARGET`] (valid for several sessions, 2 hours).
    pub fn grant(&self) -> Result<String> {
        // `serve` opens the token database after binding its listeners: retry a racing grant.
        grant_retrying(&self.config, USER, TARGET)
    }

    /// `psmgate verify` of the recording folder `rec`.
    pub fn verify(&self, rec: &std::path::Path) -> Result<()> {
        let id = rec
            .file_name()
            .and_then(|f| f.to_str())
            .context("recording folder name")?;
        let o = self.cli(&["verify", id])?;
        if !o.status.success() {
            bail!(
                "psmgate verify {id} failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(())
    }

    /// Waits up to `timeout` until `n` recordings are sealed; returns all recording folders.
    pub fn sealed(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs = psmgate_e2e::recordings(&self.data());
            let sealed = recs
                .iter()
                .filter(|r| r.join("manifest.json").exists())
                .count();
            if sealed >= n || Instant::now() >= deadline {
                return recs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the gateway with SIGTERM (it seals open recordings), SIGKILL after 20 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::vnc_gateway::stop_gracefully(child);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the shadow server (NLA with the vaulted account) mirroring a fresh `width`×`height`
/// Xvfb with the harness's demo app (a maximized xterm running `cat`, with the keyboard focus).
pub fn start_target(width: u32, height: u32) -> Result<ShadowServer> {
    Ok(ShadowServer::start(ShadowOptions {
        sec: RdpSecurity::Nla,
        user: TARGET_USER.into(),
        password: TARGET_PASSWORD.into(),
        width,
        height,
    })?)
}

/// Which way a client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// xfreerdp → shadow server, with the vaulted account.
    Direct,
    /// xfreerdp → psmgate → shadow server, as `alice@lab-rdp` with an access token.
    Proxied,
}

impl Path {
    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Proxied => "through psmgate",
        }
    }
}

/// The client options for `path`: the session has the target's size, NLA, extra `args`.
pub fn client_options(
    path: Path,
    target: &ShadowServer,
    gw: &Gateway,
    token: &str,
    args: &[String],
) -> RdpClientOptions {
    let (w, h) = target.display().size();
    let (address, user, password) = match path {
        Path::Direct => (
            target.address(),
            TARGET_USER.to_owned(),
            TARGET_PASSWORD.to_owned(),
        ),
        Path::Proxied => (
            format!("127.0.0.1:{}", gw.rdp_port),
            format!("{USER}@{TARGET}"),
            token.to_owned(),
        ),
    };
    RdpClientOptions {
        address,
        user,
        password,
        sec: Some(RdpSecurity::Nla),
        width: w,
        height: h,
        extra_args: args.to_vec(),
        ..RdpClientOptions::default()
    }
}

/// A connected xfreerdp whose session window has the keyboard focus, with an X connection to
/// its display for reading the screen and sending keys.
pub struct Client {
    /// The client process and its Xvfb.
    pub rdp: RdpClient,
    /// Which way it connected.
    pub path: Path,
}

impl Client {
    /// Starts xfreerdp and waits for its session window (but see [`Client::wait_ready`]).
    pub fn start(opts: RdpClientOptions, path: Path) -> Result<Client> {
        Ok(Client {
            rdp: RdpClient::start(opts)?,
            path,
        })
    }

    /// Waits for the session window, focuses it and returns an X connection to the display.
    pub fn wait_ready(&mut self) -> Result<XConn> {
        self.rdp
            .wait_connected(CONNECT_TIMEOUT)
            .with_context(|| format!("{} client did not connect", self.path.label()))?;
        let window = self.rdp.window().context("no session window")?.to_owned();
        let o = Command::new("xdotool")
            .env("DISPLAY", self.rdp.display().name())
            .env_remove("XAUTHORITY")
            .args(["windowfocus", "--sync", &window])
            .output()
            .context("running xdotool")?;
        if !o.status.success() {
            bail!(
                "xdotool windowfocus: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        XConn::connect(self.rdp.display().number())
    }

    /// Starts a client and waits until it is ready, retrying once (a loaded machine sometimes
    /// makes xfreerdp give up on a connection).
    pub fn connect(opts: RdpClientOptions, path: Path) -> Result<(Client, XConn)> {
        let mut c = Client::start(opts.clone(), path)?;
        match c.wait_ready() {
            Ok(conn) => Ok((c, conn)),
            Err(first) => {
                eprintln!("{} client failed, retrying once: {first:#}", path.label());
                drop(c);
                let mut c = Client::start(opts, path)?;
                let conn = c.wait_ready()?;
                Ok((c, conn))
            }
        }
    }

    /// A second X connection to the client's display.
    pub fn conn(&self) -> Result<XConn> {
        XConn::connect(self.rdp.display().number())
    }
}

/// Bytes the kernel has received on established TCP connections to 127.0.0.1:`port` (the
/// client's side of the RDP connection, `tcpi_bytes_received` via `ss`).
pub fn bytes_received_to(port: u16) -> Result<u64> {
    let o = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .context("running ss")?;
    let text = String::from_utf8_lossy(&o.stdout);
    Ok(text
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("bytes_received:"))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// The first process whose command line contains every one of `needles`.
pub fn find_pid(needles: &[&str]) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        needles.iter().all(|n| text.contains(n))
    })
}

/// CPU seconds of each thread of process `pid` so far, summed by thread name (names of the
/// recorder's per-session threads, `rec-<id>`, become `rec-*`; trailing digits are dropped).
pub fn thread_cpu_seconds(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let name = if comm.starts_with("rec-") {
            "rec-*".to_owned()
        } else {
            comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_')
                .to_owned()
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += ticks / 100.0;
    }
    out
}

/// The growth of each entry from `before` to `after`, as % of `secs`, largest first, and the
/// rest of `process` (the process's CPU seconds over the same window): threads that exited in
/// between.
pub fn thread_share(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    process: f64,
    secs: f64,
) -> String {
    let mut v: Vec<(String, f64)> = after
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                100.0 * (a - before.get(k).copied().unwrap_or(0.0)) / secs,
            )
        })
        .collect();
    let live: f64 = v.iter().map(|(_, p)| p).sum();
    v.retain(|(_, p)| *p >= 0.5);
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut parts: Vec<String> = v.iter().map(|(k, p)| format!("{k} {p:.0} %")).collect();
    parts.push(format!(
        "threads that exited within the window {:.0} %",
        (100.0 * process / secs - live).max(0.0)
    ));
    parts.join(", ")
}

/// The local ports of the xfreerdp connections to 127.0.0.1:`port`, by the `DISPLAY` of the
/// xfreerdp process that owns each (from `ss -tnp` and `/proc/<pid>/environ`).
pub fn client_ports_by_display(port: u16) -> Result<std::collections::HashMap<String, u16>> {
    let o = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .context("running ss")?;
    let mut out = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let local = line
            .split_whitespace()
            .find(|f| f.contains(':') && !f.starts_with("users:"))
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok());
        let pid = line
            .split("pid=")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u32>().ok());
        let (Some(local), Some(pid)) = (local, pid) else {
            continue;
        };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if let Some(display) = environ
            .split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(b"DISPLAY="))
        {
            out.insert(String::from_utf8_lossy(display).into_owned(), local);
        }
    }
    Ok(out)
}
