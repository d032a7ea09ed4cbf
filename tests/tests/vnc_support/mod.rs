//! Shared by the VNC gateway end-to-end tests: a `psmgate serve` under test ([`Gateway`]), a
//! minimal RFB viewer written against the protocol ([`RawViewer`]) for what vncdotool cannot
//! do (clipboard, leaving mid-frame), a tmpfs mount for disk-full cases, and transcript and log
//! helpers.

#![allow(dead_code)] // each test file uses a different part

use psmgate::vnc::{PixelFormat, ServerEvent, ServerStream};
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_e2e::peers::free_port;
use psmgate_e2e::{psmgate_bin, recordings};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the gateway under test is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// The target's VNC password, written to a secret file.
    pub password: Option<&'a str>,
    /// Extra TOML lines for the `lab-vnc` target (e.g. a clipboard policy).
    pub lab_extra: &'a str,
    /// More configuration appended at the end (e.g. RDP targets).
    pub extra_config: &'a str,
}

pub use psmgate_e2e::Tmpfs;

/// A running `psmgate serve` with its own data folder, config and ports; killed on drop.
pub struct Gateway {
    child: Child,
    /// Dropped before `dir`, so the folder is unmounted before it is removed.
    mount: Option<Tmpfs>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The admin listener (web UI, player and admin API; plain HTTP: `serve --no-tls`).
    pub admin_port: u16,
    pub vnc_port: u16,
    /// The RDP listener (serving only when the configuration has RDP targets).
    pub rdp_port: u16,
    /// The web proxy listener (serving only when the configuration has web targets).
    pub web_port: u16,
}

impl Gateway {
    /// A gateway whose `lab-vnc` target is 127.0.0.1:`target_port`.
    pub fn start(target_port: u16, target_password: Option<&str>) -> Gateway {
        Self::start_with(
            target_port,
            Options {
                password: target_password,
                ..Options::default()
            },
        )
    }

    /// [`Gateway::start`] with more options.
    pub fn start_with(target_port: u16, opts: Options<'_>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        Self::launch(dir, None, target_port, opts, None)
    }

    /// [`Gateway::start_with`] whose users and rules are `users_and_rules` (TOML `[users.…]`,
    /// `[roles.…]` and `[[rules]]`) instead of the default: alice, an admin, allowed on every
    /// target without approval.
    pub fn start_with_users(target_port: u16, opts: Options<'_>, users_and_rules: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        Self::launch(dir, None, target_port, opts, Some(users_and_rules))
    }

    /// A gateway whose data folder is a tmpfs of `size`; `None` where tmpfs cannot be mounted
    /// (not root), which CI does not accept.
    pub fn on_tmpfs(target_port: u16, opts: Options<'_>, size: &str) -> Option<Gateway> {
        let dir = tempfile::tempdir().unwrap();
        let Some(mount) = Tmpfs::mount(&dir.path().join("data"), size) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount a tmpfs (run as root)"
            );
            return None;
        };
        Some(Self::launch(dir, Some(mount), target_port, opts, None))
    }

    fn launch(
        dir: tempfile::TempDir,
        mount: Option<Tmpfs>,
        target_port: u16,
        opts: Options<'_>,
        users_and_rules: Option<&str>,
    ) -> Gateway {
        let (admin_port, vnc_port, rdp_port, web_port) = (
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
        );
        let password = match opts.password {
            Some(pw) => {
                std::fs::write(dir.path().join("target.pass"), pw).unwrap();
                "password = { file = \"target.pass\" }\n".to_string()
            }
            None => String::new(),
        };
        let config = dir.path().join("psmgate.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
                 vnc_listen = \"127.0.0.1:{vnc_port}\"\nrdp_listen = \"127.0.0.1:{rdp_port}\"\nweb_listen = \"127.0.0.1:{web_port}\"\n\n{}\n\
                 [targets.lab-vnc]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{target_port}\"\n{password}\
                 masks = [{{ id = \"top-right\", x = \"75%\", y = 0, width = \"25%\", height = \"20%\" }}]\n{}\n\n\
                 [targets.down-vnc]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{}\"\n\n{}\n\n{}\n",
                users_and_rules.unwrap_or("[users.alice]\nroles = [\"admin\"]\n"),
                opts.lab_extra,
                free_port().unwrap(),
                if users_and_rules.is_some() {
                    ""
                } else {
                    "[[rules]]\nid = \"alice-lab\"\nusers = [\"alice\"]\ntargets = \"*\""
                },
                opts.extra_config
            ),
        )
        .unwrap();
        let child = spawn_serve(&config, dir.path());
        let gw = Gateway {
            child,
            mount,
            dir,
            config,
            admin_port,
            vnc_port,
            rdp_port,
            web_port,
        };
        gw.wait_listening();
        gw
    }

    /// Waits for the RFB banner, not just a listening socket: `serve` binds the VNC listener
    /// before it opens the access-token database, and a `psmgate access grant` racing that
    /// first open can fail.
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let greets = || -> std::io::Result<bool> {
            let mut tcp = TcpStream::connect(("127.0.0.1", self.vnc_port))?;
            tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut banner = [0u8; 12];
            tcp.read_exact(&mut banner)?;
            Ok(&banner == b"RFB 003.008\n")
        };
        while !greets().unwrap_or(false) {
            assert!(
                Instant::now() < deadline,
                "gateway did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the gateway and starts it again on the same data folder and configuration (its
    /// log is appended to).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_serve(&self.config, self.dir.path());
        self.wait_listening();
    }

    /// The mounted tmpfs, for gateways from [`Gateway::on_tmpfs`].
    pub fn tmpfs(&self) -> Option<&Tmpfs> {
        self.mount.as_ref()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a `psmgate` command against this gateway's configuration.
    pub fn psmgate(&self, args: &[&str]) -> std::process::Output {
        Command::new(psmgate_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// A token for alice on `target`.
    pub fn grant(&self, target: &str, extra: &[&str]) -> String {
        let mut args = vec!["access", "grant", "--user", "alice", "--target", target];
        args.extend_from_slice(extra);
        let o = self.psmgate(&args);
        assert!(
            o.status.success(),
            "grant failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    /// `127.0.0.1::PORT` for vncdo.
    pub fn server(&self) -> String {
        format!("127.0.0.1::{}", self.vnc_port)
    }

    /// The data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `method` `path` on the admin API with the gateway's admin token (a JSON `body` for
    /// POST); the status and the JSON answer (`null` when there is none).
    pub fn admin_api(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let token = std::fs::read_to_string(self.data().join("admin-token")).unwrap();
        let (status, body) =
            psmgate_e2e::http_call(self.admin_port, method, path, Some(token.trim()), body);
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The gateway's log so far (ANSI colours removed).
    pub fn log(&self) -> String {
        log(self.dir.path())
    }

    /// Waits until `n` recordings are sealed.
    pub fn sealed(&self, n: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let recs = recordings(&self.data());
            if recs
                .iter()
                .filter(|r| r.join("manifest.json").exists())
                .count()
                >= n
            {
                return recs;
            }
            assert!(
                Instant::now() < deadline,
                "recordings not sealed: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a recording folder exists (the session was authorised) and returns it.
    pub fn recording_started(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = recordings(&self.data()).into_iter().next() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no recording started: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `psmgate verify` of a recording folder succeeds.
    pub fn assert_verifies(&self, rec: &Path) {
        let id = rec.file_name().unwrap().to_str().unwrap();
        let o = self.psmgate(&["verify", id]);
        assert!(
            o.status.success(),
            "verify {id}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(config: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .unwrap();
    Command::new(psmgate_bin())
        .arg("--config")
        .arg(config)
        .args(["serve", "--no-tls"])
        .env(
            "PSMGATE_LOG",
            std::env::var("PSMGATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// The serve log in `dir`, without ANSI escape sequences.
pub fn log(dir: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Seconds since the Unix epoch of a log line's leading RFC 3339 UTC timestamp
/// (`2026-11-22T10:00:00.123456Z …`).
pub fn log_line_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// Now, in seconds since the Unix epoch.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The recording's manifest.
pub fn manifest(rec: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(rec.join("manifest.json")).unwrap()).unwrap()
}

/// The recording's transcript, all files concatenated.
pub fn transcript(rec: &Path) -> String {
    let m = manifest(rec);
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(rec.join(f.as_str().unwrap())).unwrap())
        .collect()
}

/// The transcript's events of type `kind`.
pub fn events_of(rec: &Path, kind: &str) -> Vec<serde_json::Value> {
    transcript(rec)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs `xdotool ARGS` on X display `display` (e.g. `:12`).
pub fn xdotool(display: &str, args: &[&str]) {
    let o = Command::new("xdotool")
        .env("DISPLAY", display)
        .env_remove("XAUTHORITY")
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A minimal RFB 3.8 viewer: VNC authentication with a token, Raw encoding only, messages
/// parsed with psmgate's own [`ServerStream`] (an independent check of what crossed the
/// gateway is done on the target side).
pub struct RawViewer {
    tcp: TcpStream,
    stream: ServerStream,
    fb: Framebuffer,
    /// Screen width from ServerInit.
    pub width: u16,
    /// Screen height from ServerInit.
    pub height: u16,
    /// Bytes per pixel of the session's pixel format.
    pub bytes_per_pixel: usize,
}

impl RawViewer {
    /// Connects to the gateway on `port` and authenticates with `token`; asks for Raw.
    pub fn connect(port: u16, token: &str) -> std::io::Result<RawViewer> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let mut version = [0u8; 12];
        tcp.read_exact(&mut version)?;
        assert_eq!(&version, b"RFB 003.008\n");
        tcp.write_all(b"RFB 003.008\n")?;
        let mut n = [0u8; 1];
        tcp.read_exact(&mut n)?;
        let mut types = vec![0u8; usize::from(n[0])];
        tcp.read_exact(&mut types)?;
        // VeNCrypt (19) first with the default `gateway.vnc_tls = "offer"`; this viewer takes 2.
        assert_eq!(types.last(), Some(&2), "psmgate offers VNC authentication");
        tcp.write_all(&[2])?;
        let mut challenge = [0u8; 16];
        tcp.read_exact(&mut challenge)?;
        tcp.write_all(&psmgate::vnc_handshake::vncauth::response(
            token.as_bytes(),
            &challenge,
        ))?;
        let mut result = [0u8; 4];
        tcp.read_exact(&mut result)?;
        if result != [0; 4] {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "authentication failed",
            ));
        }
        tcp.write_all(&[1])?; // shared
        let mut init = [0u8; 24];
        tcp.read_exact(&mut init)?;
        let width = u16::from_be_bytes([init[0], init[1]]);
        let height = u16::from_be_bytes([init[2], init[3]]);
        let pf: [u8; 16] = init[4..20].try_into().unwrap();
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        let mut name = vec![0u8; name_len as usize];
        tcp.read_exact(&mut name)?;
        let format = PixelFormat::from_bytes(&pf);
        let mut v = RawViewer {
            tcp,
            stream: ServerStream::new(format).unwrap(),
            fb: Framebuffer::new(u32::from(width), u32::from(height)).unwrap(),
            width,
            height,
            bytes_per_pixel: usize::from(pf[0] / 8),
        };
        // SetEncodings: Raw only.
        v.send(&[2, 0, 0, 1, 0, 0, 0, 0])?;
        Ok(v)
    }

    /// Rectangles received so far by encoding number.
    pub fn rects_by_encoding(&self) -> std::collections::BTreeMap<i32, u64> {
        self.stream.rects_by_encoding().clone()
    }

    /// Replaces the encodings asked for (SetEncodings), most preferred first.
    pub fn set_encodings(&mut self, encodings: &[i32]) -> std::io::Result<()> {
        let mut msg = vec![2u8, 0];
        msg.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in encodings {
            msg.extend_from_slice(&e.to_be_bytes());
        }
        self.send(&msg)
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes)
    }

    /// FramebufferUpdateRequest for the whole screen.
    pub fn request_update(&mut self, incremental: bool) -> std::io::Result<()> {
        let mut m = vec![3, u8::from(incremental), 0, 0, 0, 0];
        m.extend_from_slice(&self.width.to_be_bytes());
        m.extend_from_slice(&self.height.to_be_bytes());
        self.send(&m)
    }

    /// KeyEvent down and up for `keysym`.
    pub fn tap(&mut self, keysym: u32) -> std::io::Result<()> {
        for down in [1u8, 0] {
            let mut m = vec![4, down, 0, 0];
            m.extend_from_slice(&keysym.to_be_bytes());
            self.send(&m)?;
        }
        Ok(())
    }

    /// ClientCutText with `text` (ISO 8859-1).
    pub fn cut_text(&mut self, text: &[u8]) -> std::io::Result<()> {
        let mut m = vec![6, 0, 0, 0];
        m.extend_from_slice(&(text.len() as u32).to_be_bytes());
        m.extend_from_slice(text);
        self.send(&m)
    }

    /// Reads exactly `n` bytes of whatever the gateway sends (not parsed).
    pub fn read_raw(&mut self, n: usize) -> std::io::Result<()> {
        let mut buf = vec![0u8; n];
        self.tcp.read_exact(&mut buf)
    }

    /// Reads and parses until an event arrives; `Ok(None)` when `timeout` passes first.
    pub fn next_event(&mut self, timeout: Duration) -> std::io::Result<Option<ServerEvent>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(p) = self
                .stream
                .next_event(&mut self.fb)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                return Ok(Some(p.event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.tcp.set_read_timeout(Some(left))?;
            match self.tcp.read(&mut buf) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "gateway closed the connection",
                    ))
                }
                Ok(n) => self.stream.feed(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the gateway closes the connection (end of stream or reset), reading and
    /// discarding what arrives; returns when that happened, or `None` after `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Option<f64> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = self
                .tcp
                .set_read_timeout(Some(left.min(Duration::from_millis(50))));
            match self.tcp.read(&mut buf) {
                Ok(0) => return Some(now_secs()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(now_secs()),
            }
        }
    }

    /// Closes the connection.
    pub fn close(self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}
