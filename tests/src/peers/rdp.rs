//! RDP peers: FreeRDP's shadow server and xrdp (in front of x11vnc) as targets, and FreeRDP's
//! `xfreerdp` (2.11) as the client, each on its own X display.
//!
//! | type | program | security | credentials |
//! |---|---|---|---|
//! | [`ShadowServer`] | `freerdp-shadow-cli` mirroring an [`XDisplay`] | NLA (CredSSP/NTLM) or TLS | NLA: a SAM file made with `winpr-hash` (no Linux account); TLS: `-auth`, none at all |
//! | [`XrdpServer`] | `xrdp` 0.9 with `libvnc.so` towards [`X11Vnc`] | TLS only (xrdp never does NLA) | the RDP password is the VNC password |
//! | [`RdpClient`] | `xfreerdp` on its own Xvfb, driven with xdotool | `/sec:nla`, `/sec:tls` or negotiated | `/u:` `/p:` `/d:` |
//!
//! Both servers get their own self-signed certificate ([`ShadowServer::certificate`],
//! [`XrdpServer::certificate`]); [`cert_fingerprint`] turns one into the pin that
//! [`CertCheck::Fingerprint`] expects. [`wait_for_rdp`] and [`x224_probe`] look at a server's
//! answer to an X.224 Connection Request.
//!
//! xfreerdp exit codes seen with these peers are in [`exit_code`].

use super::demo::DemoApp;
use super::process::{run_captured, run_ok, tail, PeerProcess, TempDir, POLL};
use super::vnc::{free_port, X11Vnc};
use super::xserver::{check_screen_size, screenshot, XDisplay, X_TOOL_TIMEOUT};
use super::{require_tool, PeerError, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long an RDP server may take to answer its first X.224 Connection Request.
const RDP_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many ports to try when another program takes the chosen one first.
const PORT_ATTEMPTS: u32 = 5;
/// Per-step deadline of one X.224 probe (connect, write, read).
const PROBE_IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of the certificate and SAM-file helpers.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of an `xfreerdp +auth-only` run.
const AUTH_ONLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long xfreerdp may take to exit after SIGINT before its group is terminated.
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);
/// Largest TPKT packet accepted as a Connection Confirm (a real one is 11 to 19 bytes).
const MAX_CONFIRM_LEN: usize = 512;
/// Window title prefix of xfreerdp's session window (`FreeRDP: host:port`).
const SESSION_WINDOW: &str = "^FreeRDP: ";

/// Log lines of a shadow server or xrdp that could not bind its port.
const PORT_COLLISIONS: &[&str] = &[
    "Port already used",           // freerdp-shadow-cli
    "trans_listen_address failed", // xrdp
    "Address already in use",      // either, depending on version
    "xrdp_listen_get_port failed", // xrdp
];

/// `requestedProtocols` / `selectedProtocol` bit: TLS (`PROTOCOL_SSL`).
pub const PROTOCOL_SSL: u32 = 0x1;
/// `requestedProtocols` / `selectedProtocol` bit: CredSSP, i.e. NLA (`PROTOCOL_HYBRID`).
pub const PROTOCOL_HYBRID: u32 = 0x2;

/// Exit codes of `xfreerdp` (FreeRDP 2.11) seen with these peers, and what they meant.
///
/// The values are FreeRDP's `XF_EXIT_*` codes; note that 1 is both "disconnected by the server"
/// and "no X display" (`failed to open display`).
pub mod exit_code {
    /// The server ended the session, or xfreerdp could not open its X display (it cannot run
    /// without one, not even `+auth-only`).
    pub const DISCONNECT: i32 = 1;
    /// Transport connection failed; also a PAM rejection at the shadow server.
    pub const CONNECT_FAILED: i32 = 131;
    /// Authentication failure.
    pub const AUTH_FAILURE: i32 = 132;
    /// Security negotiation failed: `/sec:nla` towards xrdp (no NLA), `/sec:rdp` towards a
    /// TLS-only server, or a relative `HOME` (certificate store initialisation failed).
    pub const NEGOTIATION_FAILED: i32 = 133;
    /// Logon failure.
    pub const LOGON_FAILURE: i32 = 134;
    /// TLS failed, e.g. the server certificate does not match `/cert:fingerprint:…`.
    pub const TLS_FAILED: i32 = 143;
    /// Transport closed during connection: a wrong NLA password at the shadow server.
    pub const TRANSPORT_CLOSED: i32 = 147;
    /// Wrong password, as reported by servers that say so.
    pub const WRONG_PASSWORD: i32 = 154;

    /// A short description of `code` for error messages.
    pub fn describe(code: i32) -> &'static str {
        match code {
            0 => "success",
            DISCONNECT => "disconnected (or no X display)",
            CONNECT_FAILED => "connection failed",
            AUTH_FAILURE => "authentication failure",
            NEGOTIATION_FAILED => "security negotiation failed",
            LOGON_FAILURE => "logon failure",
            TLS_FAILED => "TLS failed (certificate mismatch?)",
            TRANSPORT_CLOSED => "transport closed (wrong NLA password?)",
            WRONG_PASSWORD => "wrong password",
            _ => "see FreeRDP's XF_EXIT_* codes",
        }
    }
}

/// The security protocol a server enforces or a client requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdpSecurity {
    /// Network Level Authentication (CredSSP over TLS, NTLM here).
    Nla,
    /// TLS without NLA; credentials travel in the RDP Client Info PDU.
    Tls,
}

impl RdpSecurity {
    /// The FreeRDP `/sec:` value.
    fn arg(self) -> &'static str {
        match self {
            RdpSecurity::Nla => "nla",
            RdpSecurity::Tls => "tls",
        }
    }
}

/// What an RDP server answered to an X.224 Connection Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X224Confirm {
    /// An RDP Negotiation Response.
    Selected {
        /// The selected protocol: 0 standard RDP security, [`PROTOCOL_SSL`], [`PROTOCOL_HYBRID`].
        protocol: u32,
        /// The response's flags (e.g. 0x01 extended client data supported).
        flags: u8,
    },
    /// An RDP Negotiation Failure with its failure code (e.g. 1 `SSL_REQUIRED_BY_SERVER`,
    /// 2 `SSL_NOT_ALLOWED_BY_SERVER`, 5 `HYBRID_REQUIRED_BY_SERVER`).
    Failure(u32),
    /// A Connection Confirm without negotiation data (standard RDP security only).
    NoNegotiation,
}

/// Connects to 127.0.0.1:`port`, sends an X.224 Connection Request asking for the protocols
/// `requested` (a mix of [`PROTOCOL_SSL`] and [`PROTOCOL_HYBRID`]) and returns the server's
/// Connection Confirm; then hangs up. Servers log the aborted connection as an error.
pub fn x224_probe(port: u16, requested: u32) -> Result<X224Confirm> {
    let what = format!("X.224 handshake with 127.0.0.1:{port}");
    let io = |e| PeerError::io(what.clone(), e);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_IO_TIMEOUT).map_err(io)?;
    stream
        .set_read_timeout(Some(PROBE_IO_TIMEOUT))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(PROBE_IO_TIMEOUT))
        .map_err(io)?;
    stream
        .write_all(&connection_request(requested))
        .map_err(io)?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).map_err(io)?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[0] != 3 || !(11..=MAX_CONFIRM_LEN).contains(&len) {
        return Err(PeerError::Failed {
            what,
            detail: format!("not a TPKT Connection Confirm: header {header:02x?}"),
        });
    }
    let mut packet = header.to_vec();
    packet.resize(len, 0);
    stream.read_exact(&mut packet[4..]).map_err(io)?;
    parse_confirm(&packet).map_err(|detail| PeerError::Failed { what, detail })
}

/// Waits until 127.0.0.1:`port` answers an X.224 Connection Request (asking for TLS and NLA)
/// with a TPKT Connection Confirm, and returns that answer. Connection errors are retried
/// until `timeout`; any other answer is an error at once.
pub fn wait_for_rdp(port: u16, timeout: Duration) -> Result<X224Confirm> {
    let deadline = Instant::now() + timeout;
    loop {
        match x224_probe(port, PROTOCOL_SSL | PROTOCOL_HYBRID) {
            Ok(confirm) => return Ok(confirm),
            Err(PeerError::Io { .. }) if Instant::now() < deadline => std::thread::sleep(POLL),
            Err(PeerError::Io { source, .. }) => {
                return Err(PeerError::Timeout {
                    what: format!(
                        "an X.224 Connection Confirm from 127.0.0.1:{port} (last error: {source})"
                    ),
                    after: timeout,
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// TPKT + X.224 Connection Request + RDP Negotiation Request (19 bytes).
fn connection_request(requested: u32) -> Vec<u8> {
    let mut packet = vec![
        3, 0, 0, 19, // TPKT: version 3, length 19
        14, 0xe0, 0, 0, 0, 0, 0, // X.224 CR: LI 14, code, dst-ref, src-ref, class 0
        1, 0, 8, 0, // RDP_NEG_REQ: type 1, flags 0, length 8
    ];
    packet.extend_from_slice(&requested.to_le_bytes());
    packet
}

/// Parses a whole TPKT packet holding an X.224 Connection Confirm.
fn parse_confirm(packet: &[u8]) -> std::result::Result<X224Confirm, String> {
    let code = packet
        .get(5)
        .ok_or("packet too short for an X.224 header")?;
    if code & 0xf0 != 0xd0 {
        return Err(format!(
            "X.224 code {code:#04x} is not a Connection Confirm (0xd0)"
        ));
    }
    // TPKT header (4) + X.224 CC (7), then the optional negotiation structure (8).
    let Some(neg) = packet.get(11..19) else {
        return Ok(X224Confirm::NoNegotiation);
    };
    let value = u32::from_le_bytes([neg[4], neg[5], neg[6], neg[7]]);
    match neg[0] {
        2 => Ok(X224Confirm::Selected {
            protocol: value,
            flags: neg[1],
        }),
        3 => Ok(X224Confirm::Failure(value)),
        other => Err(format!("unknown negotiation type {other}")),
    }
}

/// The SHA-256 fingerprint of a PEM certificate as xfreerdp's `/cert:fingerprint:` wants it:
/// `sha256:aa:bb:…` (lowercase, colon-separated; from `openssl x509 -fingerprint -sha256`).
pub fn cert_fingerprint(pem: &Path) -> Result<String> {
    require_tool("openssl")?;
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(pem),
        "openssl x509 -fingerprint",
        HELPER_TIMEOUT,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .split_once('=')
        .map(|(_, hex)| format!("sha256:{}", hex.to_ascii_lowercase()))
        .ok_or_else(|| PeerError::Failed {
            what: "openssl x509 -fingerprint".into(),
            detail: format!("unexpected output {text:?}"),
        })
}

/// Writes a self-signed RSA certificate and its key (PEM) with `openssl req`.
fn self_signed_cert(cert: &Path, key: &Path, name: &str) -> Result<()> {
    require_tool("openssl")?;
    run_ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args(["-subj", &format!("/CN={name}")])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
        "openssl req (self-signed certificate)",
        HELPER_TIMEOUT,
    )
    .map(|_| ())
}

/// `path` made absolute (FreeRDP fails with a relative `HOME`).
fn absolute(path: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&path)
        .map_err(|e| PeerError::io(format!("making {} absolute", path.display()), e))
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|e| PeerError::io(format!("creating {}", path.display()), e))
}

fn read_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Sends SIGINT to process group `pgid`.
fn interrupt_group(pgid: u32) {
    // The shell's built-in `kill` reaches a whole process group without extra dependencies.
    let _ = Command::new("sh")
        .args(["-c", "kill -s INT -- \"-$1\"", "sh", &pgid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until a freshly spawned RDP server answers on `port`. Ok(false) if the port was taken
/// (the caller retries with another one). `extra_log` is a log file the server writes itself.
fn wait_for_server(process: &mut PeerProcess, port: u16, extra_log: Option<&Path>) -> Result<bool> {
    let deadline = Instant::now() + RDP_START_TIMEOUT;
    let collided = |process: &PeerProcess| {
        let mut log = process.log_text();
        if let Some(path) = extra_log {
            log.push_str(&read_text(path));
        }
        PORT_COLLISIONS.iter().any(|c| log.contains(c))
    };
    loop {
        if let Some(status) = process.exited() {
            if collided(process) {
                return Ok(false);
            }
            return Err(process.startup_error(format!("exited with {status}")));
        }
        match x224_probe(port, PROTOCOL_SSL | PROTOCOL_HYBRID) {
            // Another program may hold the port while ours gives up on it: make sure ours runs.
            Ok(_) if process.exited().is_some() => continue,
            Ok(_) => return Ok(true),
            Err(PeerError::Io { .. }) => {}
            Err(e) => return Err(process.startup_error(e.to_string())),
        }
        if Instant::now() >= deadline {
            return Err(process.startup_error(format!(
                "no X.224 Connection Confirm on 127.0.0.1:{port} within {RDP_START_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// How [`ShadowServer::start`] sets up the server.
#[derive(Debug, Clone)]
pub struct ShadowOptions {
    /// NLA against a SAM file holding `user`/`password`, or TLS without authentication.
    pub sec: RdpSecurity,
    /// The account NLA accepts (ignored with TLS).
    pub user: String,
    /// Its password (ignored with TLS).
    pub password: String,
    /// Screen width of the mirrored display.
    pub width: u32,
    /// Screen height of the mirrored display.
    pub height: u32,
}

/// FreeRDP's shadow server (`freerdp-shadow-cli`, FreeRDP 2.11) on 127.0.0.1, mirroring a fresh
/// [`XDisplay`] with a [`DemoApp`]; stopped on drop.
///
/// NLA (`/sec:nla /sam-file:F`) checks the credentials against a SAM file written with
/// `winpr-hash -u USER -p PASS -f sam`, no Linux account involved; a wrong password makes the
/// client exit with [`exit_code::TRANSPORT_CLOSED`] within about 0.5 s. TLS runs with `-auth`:
/// no authentication at all (authentication is on by default, despite `--help`, and would use
/// PAM). The certificate is a fresh self-signed one in `$HOME/.config/freerdp/shadow/` (the
/// server's own `HOME`). All clients share the one display.
pub struct ShadowServer {
    port: u16,
    process: PeerProcess,
    app: DemoApp,
    display: XDisplay,
    cert: PathBuf,
    _dir: TempDir,
}

impl ShadowServer {
    /// Starts the display, the demo app, then the server on a free port; returns once the port
    /// answers an X.224 Connection Request.
    pub fn start(opts: ShadowOptions) -> Result<Self> {
        check_screen_size("freerdp-shadow-cli", opts.width, opts.height)?;
        require_tool("freerdp-shadow-cli")?;
        if opts.sec == RdpSecurity::Nla {
            require_tool("winpr-hash")?;
        }
        let dir = TempDir::new("rdp-shadow")?;
        let home = absolute(dir.join("home"))?;
        let shadow_dir = home.join(".config/freerdp/shadow");
        create_dir(&shadow_dir)?;
        let cert = shadow_dir.join("shadow.crt");
        self_signed_cert(&cert, &shadow_dir.join("shadow.key"), "rdp-shadow.test")?;
        let security: Vec<String> = match opts.sec {
            RdpSecurity::Nla => {
                let sam = absolute(dir.join("sam"))?;
                let out = run_ok(
                    Command::new("winpr-hash").args([
                        "-u",
                        &opts.user,
                        "-p",
                        &opts.password,
                        "-f",
                        "sam",
                    ]),
                    "winpr-hash",
                    HELPER_TIMEOUT,
                )?;
                std::fs::write(&sam, &out.stdout)
                    .map_err(|e| PeerError::io(format!("writing {}", sam.display()), e))?;
                vec!["/sec:nla".into(), format!("/sam-file:{}", sam.display())]
            }
            RdpSecurity::Tls => vec!["/sec:tls".into(), "-auth".into()],
        };

        let display = XDisplay::start(opts.width, opts.height)?;
        let app = DemoApp::start(&display)?;
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut cmd = display.command("freerdp-shadow-cli");
            cmd.env("HOME", &home)
                .arg(format!("/port:{port}"))
                .arg("/bind-address:127.0.0.1")
                .args(&security);
            let log = dir.join(&format!("shadow-{attempt}.log"));
            let mut process = PeerProcess::spawn("freerdp-shadow-cli", &mut cmd, &log)?;
            if wait_for_server(&mut process, port, None)? {
                return Ok(ShadowServer {
                    port,
                    process,
                    app,
                    display,
                    cert,
                    _dir: dir,
                });
            }
            last_error = Some(process.startup_error(format!("port {port} busy")));
        }
        Err(last_error.unwrap_or_else(|| PeerError::Failed {
            what: "freerdp-shadow-cli".into(),
            detail: "no free port".into(),
        }))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for xfreerdp's `/v:` or a gateway's target.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The mirrored X display (for xdotool, screenshots, more apps).
    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    /// The demo app on that display.
    pub fn app(&self) -> &DemoApp {
        &self.app
    }

    /// The server's log file (output with FreeRDP's default log level; every X.224 probe
    /// leaves a few harmless ERROR lines).
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The server's certificate (PEM).
    pub fn certificate(&self) -> &Path {
        &self.cert
    }

    /// The pin of [`certificate`](Self::certificate) for [`CertCheck::Fingerprint`].
    pub fn cert_fingerprint(&self) -> Result<String> {
        cert_fingerprint(&self.cert)
    }
}

/// How [`XrdpServer::start`] sets up the server.
#[derive(Debug, Clone)]
pub struct XrdpOptions {
    /// The VNC password of x11vnc, which is also the RDP password clients must send (VNC uses
    /// at most 8 characters of it).
    pub password: String,
    /// Screen width of the display behind x11vnc.
    pub width: u32,
    /// Screen height of the display behind x11vnc.
    pub height: u32,
}

/// xrdp 0.9 on 127.0.0.1 in front of [`X11Vnc`] serving a fresh [`XDisplay`] with a
/// [`DemoApp`]; stopped on drop.
///
/// xrdp runs with `--nodaemon --config FILE` from its own folder: `security_layer=tls` with a
/// fresh self-signed certificate, `autorun=` a `libvnc.so` section (no login dialog, no
/// xrdp-sesman), `password=ask` (the client's RDP password goes to x11vnc). xrdp never does
/// NLA: `/sec:nla` fails with [`exit_code::NEGOTIATION_FAILED`]. A wrong password does not
/// disconnect: xrdp shows a "VNC password failed" dialog inside the session and logs it, so judge
/// by the demo app's file or [`XrdpServer::log_text`]. It keeps `/run/xrdp/sockdir` (mode 3777),
/// a fixed path: created here when missing (xrdp running as root creates it too).
pub struct XrdpServer {
    port: u16,
    process: PeerProcess,
    vnc: X11Vnc,
    app: DemoApp,
    display: XDisplay,
    cert: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl XrdpServer {
    /// Starts the display, the demo app, x11vnc with `opts.password`, then xrdp on a free
    /// port; returns once xrdp answers an X.224 Connection Request.
    pub fn start(opts: XrdpOptions) -> Result<Self> {
        check_screen_size("xrdp", opts.width, opts.height)?;
        let xrdp = xrdp_program()?;
        let dir = TempDir::new("xrdp")?;
        let cert = absolute(dir.join("cert.pem"))?;
        let key = absolute(dir.join("key.pem"))?;
        self_signed_cert(&cert, &key, "xrdp.test")?;
        ensure_xrdp_sockdir()?;

        let display = XDisplay::start(opts.width, opts.height)?;
        let app = DemoApp::start(&display)?;
        let vnc = X11Vnc::start(&display, Some(&opts.password))?;
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log = absolute(dir.join(&format!("xrdp-{attempt}.log")))?;
            let ini = dir.join(&format!("xrdp-{attempt}.ini"));
            std::fs::write(&ini, xrdp_ini(port, &cert, &key, &log, vnc.port()))
                .map_err(|e| PeerError::io(format!("writing {}", ini.display()), e))?;
            let mut cmd = Command::new(&xrdp);
            cmd.args(["--nodaemon", "--config"]).arg(&ini);
            let stdout = dir.join(&format!("xrdp-{attempt}.out"));
            let mut process = PeerProcess::spawn("xrdp", &mut cmd, &stdout)?;
            if wait_for_server(&mut process, port, Some(&log))? {
                return Ok(XrdpServer {
                    port,
                    process,
                    vnc,
                    app,
                    display,
                    cert,
                    log,
                    _dir: dir,
                });
            }
            last_error = Some(
                process.startup_error(format!("port {port} busy\n{}", tail(&read_text(&log), 10))),
            );
        }
        Err(last_error.unwrap_or_else(|| PeerError::Failed {
            what: "xrdp".into(),
            detail: "no free port".into(),
        }))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for xfreerdp's `/v:` or a gateway's target.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The X display behind x11vnc.
    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    /// The demo app on that display.
    pub fn app(&self) -> &DemoApp {
        &self.app
    }

    /// The x11vnc between xrdp and the display.
    pub fn vnc(&self) -> &X11Vnc {
        &self.vnc
    }

    /// xrdp's own log file (`LogFile=`; its standard output stays nearly empty).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// xrdp's log so far (e.g. `VNC password failed`, `connected ok`).
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// Waits until xrdp's log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout {
                    what: format!("xrdp to log {needle:?}; its log:\n{}", tail(&log, 25)),
                    after: timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The server's certificate (PEM).
    pub fn certificate(&self) -> &Path {
        &self.cert
    }

    /// The pin of [`certificate`](Self::certificate) for [`CertCheck::Fingerprint`].
    pub fn cert_fingerprint(&self) -> Result<String> {
        cert_fingerprint(&self.cert)
    }

    /// Stops xrdp now (also done on drop).
    fn stop(&mut self) {
        self.process.stop();
    }
}

impl Drop for XrdpServer {
    fn drop(&mut self) {
        // xrdp (and its per-connection children) before x11vnc, the app and the display.
        self.stop();
    }
}

/// `xrdp` from `PATH`, else `/usr/sbin/xrdp` (not on every user's `PATH`).
fn xrdp_program() -> Result<PathBuf> {
    require_tool("xrdp").or_else(|missing| {
        let sbin = PathBuf::from("/usr/sbin/xrdp");
        if sbin.is_file() {
            Ok(sbin)
        } else {
            Err(missing)
        }
    })
}

/// `/run/xrdp/sockdir` as xrdp-sesman makes it: sessions put their sockets there.
fn ensure_xrdp_sockdir() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let sockdir = Path::new("/run/xrdp/sockdir");
    if sockdir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(sockdir)
        .and_then(|()| std::fs::set_permissions(sockdir, std::fs::Permissions::from_mode(0o3777)))
        .map_err(|e| {
            PeerError::io(
                "creating /run/xrdp/sockdir (mode 3777; xrdp needs it, create it as root)",
                e,
            )
        })
}

/// xrdp.ini: TLS, autorun into a libvnc section pointing at x11vnc.
fn xrdp_ini(port: u16, cert: &Path, key: &Path, log: &Path, vnc_port: u16) -> String {
    format!(
        "[Globals]
ini_version=1
fork=true
port=tcp://127.0.0.1:{port}
tcp_nodelay=true
security_layer=tls
crypt_level=high
certificate={cert}
key_file={key}
ssl_protocols=TLSv1.2, TLSv1.3
autorun=vnctarget
allow_channels=true
max_bpp=32
new_cursors=true
use_fastpath=both

[Logging]
LogFile={log}
LogLevel=INFO
EnableSyslog=false

[Channels]
rdpdr=false
rdpsnd=false
drdynvc=true
cliprdr=true
rail=false
xrdpvr=false
tcutils=false

[vnctarget]
name=vnctarget
lib=libvnc.so
ip=127.0.0.1
port={vnc_port}
username=na
password=ask
",
        cert = cert.display(),
        key = key.display(),
        log = log.display(),
    )
}

/// How xfreerdp checks the server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CertCheck {
    /// `/cert:ignore`: accept any certificate.
    #[default]
    Ignore,
    /// `/cert:fingerprint:PIN`: accept only the certificate with this pin, `sha256:aa:bb:…`
    /// (see [`cert_fingerprint`]); a mismatch exits with [`exit_code::TLS_FAILED`].
    Fingerprint(String),
}

/// How [`RdpClient::start`] and [`RdpClient::auth_only`] connect.
#[derive(Debug, Clone)]
pub struct RdpClientOptions {
    /// The server, `host:port` (`/v:`).
    pub address: String,
    /// The user name (`/u:`; left out when empty).
    pub user: String,
    /// The password (`/p:`).
    pub password: String,
    /// The domain (`/d:`).
    pub domain: Option<String>,
    /// `/sec:nla` or `/sec:tls`; `None` lets client and server negotiate.
    pub sec: Option<RdpSecurity>,
    /// Session size (`/size:`), also the size of the client's own Xvfb.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Certificate check.
    pub cert: CertCheck,
    /// More xfreerdp arguments, appended last (e.g. `-grab-keyboard`, `/gfx`).
    pub extra_args: Vec<String>,
}

impl Default for RdpClientOptions {
    fn default() -> Self {
        RdpClientOptions {
            address: String::new(),
            user: String::new(),
            password: String::new(),
            domain: None,
            sec: None,
            width: 1024,
            height: 768,
            cert: CertCheck::Ignore,
            extra_args: Vec::new(),
        }
    }
}

impl RdpClientOptions {
    /// The xfreerdp arguments for these options.
    fn args(&self) -> Vec<String> {
        let mut args = vec![format!("/v:{}", self.address)];
        if !self.user.is_empty() {
            args.push(format!("/u:{}", self.user));
        }
        args.push(format!("/p:{}", self.password));
        if let Some(domain) = &self.domain {
            args.push(format!("/d:{domain}"));
        }
        if let Some(sec) = self.sec {
            args.push(format!("/sec:{}", sec.arg()));
        }
        args.push(match &self.cert {
            CertCheck::Ignore => "/cert:ignore".to_owned(),
            CertCheck::Fingerprint(pin) => format!("/cert:fingerprint:{pin}"),
        });
        args.push(format!("/size:{}x{}", self.width, self.height));
        args.push("/log-level:INFO".into());
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// `xfreerdp` (FreeRDP 2.11) on its own Xvfb of the session's size, driven with xdotool;
/// stopped on drop (SIGINT, then TERM and KILL to its process group).
///
/// It runs under `stdbuf -oL -eL` (its INFO lines go to standard output and would be lost in a
/// buffer when it is stopped) with `/log-level:INFO`, its own absolute `HOME` (it writes
/// `$HOME/.config/freerdp`), and the keyboard grab left on (the default): xdotool's keystrokes
/// reach the session once the window has the focus, which every input method here gives it
/// first. Without a window manager the session window sits at (0, 0), so a point on the
/// client's display is the same point on the server's screen when the sizes match.
///
/// Typing: plain ASCII text is safe; xdotool maps characters missing from the client's keymap
/// onto spare keycodes, which xfreerdp cannot turn into scancodes.
pub struct RdpClient {
    process: PeerProcess,
    window: Option<String>,
    display: XDisplay,
    _dir: TempDir,
}

impl RdpClient {
    /// Starts an Xvfb of the session size and xfreerdp on it. Returns at once; see
    /// [`RdpClient::wait_connected`].
    pub fn start(opts: RdpClientOptions) -> Result<Self> {
        check_screen_size("xfreerdp", opts.width, opts.height)?;
        require_tool("xfreerdp")?;
        require_tool("stdbuf")?;
        require_tool("xdotool")?;
        let dir = TempDir::new("xfreerdp")?;
        let home = absolute(dir.join("home"))?;
        create_dir(&home)?;
        let display = XDisplay::start(opts.width, opts.height)?;
        let mut cmd = display.command("stdbuf");
        cmd.env("HOME", &home)
            .args(["-oL", "-eL", "xfreerdp"])
            .args(opts.args());
        let process = PeerProcess::spawn("xfreerdp", &mut cmd, &dir.join("xfreerdp.log"))?;
        Ok(RdpClient {
            process,
            window: None,
            display,
            _dir: dir,
        })
    }

    /// Runs `xfreerdp … +auth-only` (on a throwaway Xvfb: xfreerdp needs a display even for
    /// that) and returns its exit code: 0 when the credentials were accepted,
    /// [`exit_code::TRANSPORT_CLOSED`] for a wrong NLA password at the shadow server,
    /// [`exit_code::TLS_FAILED`] for a certificate that does not match the pin. Only meaningful
    /// with NLA: with TLS it returns 0 for any password.
    pub fn auth_only(opts: RdpClientOptions) -> Result<i32> {
        require_tool("xfreerdp")?;
        let dir = TempDir::new("xfreerdp-auth")?;
        let home = absolute(dir.join("home"))?;
        create_dir(&home)?;
        let display = XDisplay::start(640, 480)?;
        let mut cmd = display.command("xfreerdp");
        cmd.env("HOME", &home).args(opts.args()).arg("+auth-only");
        let out = run_captured(&mut cmd, None, AUTH_ONLY_TIMEOUT)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(code) => {
                if code != 0 {
                    // Shown only if the calling test fails.
                    eprintln!(
                        "xfreerdp +auth-only exited with {code} ({}):\n{}",
                        exit_code::describe(code),
                        tail(&text, 15)
                    );
                }
                Ok(code)
            }
            None => Err(PeerError::Failed {
                what: "xfreerdp +auth-only".into(),
                detail: format!("{}\n{}", out.status, tail(&text, 15)),
            }),
        }
    }

    /// Waits until the session window (`FreeRDP: host:port`) is mapped. With NLA that means
    /// the credentials were accepted; with TLS the server may still refuse them afterwards. An
    /// error if xfreerdp exits first (with its exit code, its meaning and the log's tail) or
    /// takes longer than `timeout`.
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.exited() {
                let reason = match status.code() {
                    Some(code) => {
                        format!("it exited with code {code} ({})", exit_code::describe(code))
                    }
                    None => format!("it exited ({status})"),
                };
                return Err(self.process.startup_error(reason));
            }
            if let Some(window) = self.find_window()? {
                self.window = Some(window);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self
                    .process
                    .startup_error(format!("no session window after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The session window's id (decimal), once [`wait_connected`](Self::wait_connected)
    /// succeeded.
    pub fn window(&self) -> Option<&str> {
        self.window.as_deref()
    }

    /// Types `text` into the session (`xdotool type --delay 30`), after focusing the window.
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.focus()?;
        self.xdotool(&["type", "--delay", "30", text])
    }

    /// Presses and releases keys (`xdotool key`, X key names such as `Return` or `ctrl+c`;
    /// several separated by spaces), after focusing the window.
    pub fn key(&self, keys: &str) -> Result<()> {
        self.focus()?;
        let mut args = vec!["key", "--delay", "30"];
        args.extend(keys.split_whitespace());
        self.xdotool(&args)
    }

    /// Moves the pointer to (`x`, `y`) and clicks `button` (1 left, 2 middle, 3 right).
    pub fn click(&self, x: u32, y: u32, button: u8) -> Result<()> {
        self.mouse_move(x, y)?;
        // Let the move reach the server before the press, as a person would.
        std::thread::sleep(Duration::from_millis(100));
        self.xdotool(&["click", &button.to_string()])
    }

    /// Moves the pointer to (`x`, `y`) on the client's display, after focusing the window.
    pub fn mouse_move(&self, x: u32, y: u32) -> Result<()> {
        self.focus()?;
        self.xdotool(&["mousemove", "--sync", &x.to_string(), &y.to_string()])
    }

    /// A PNG of the client's whole display (the session window covers it), valid while the
    /// client lives.
    pub fn screenshot(&self) -> Result<PathBuf> {
        screenshot(&self.display)
    }

    /// Waits up to `timeout` for xfreerdp to exit; returns its exit code (`None` if a signal
    /// ended it). An error if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.exited() {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout {
                    what: format!(
                        "xfreerdp to exit; its log ends:\n{}",
                        tail(&self.log_text(), 15)
                    ),
                    after: timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether xfreerdp is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.exited().is_none()
    }

    /// xfreerdp's log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// xfreerdp's log file (kept while a test is panicking).
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// The client's X display.
    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    /// Disconnects: SIGINT (xfreerdp then prints a harmless backtrace and dies of the signal,
    /// so [`wait_exit`](Self::wait_exit) gives `None`), up to 3 s to exit, then TERM and KILL
    /// to its process group. Also done on drop.
    pub fn stop(&mut self) {
        if self.process.exited().is_none() {
            interrupt_group(self.process.pid());
            let deadline = Instant::now() + INTERRUPT_GRACE;
            while self.process.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        self.process.stop();
    }

    /// The session window, if mapped.
    fn find_window(&self) -> Result<Option<String>> {
        let out = run_captured(
            self.display.command("xdotool").args([
                "search",
                "--onlyvisible",
                "--name",
                SESSION_WINDOW,
            ]),
            None,
            X_TOOL_TIMEOUT,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned))
    }

    /// Gives the session window the keyboard focus.
    fn focus(&self) -> Result<()> {
        let window = match &self.window {
            Some(w) => w.clone(),
            None => self.find_window()?.ok_or_else(|| PeerError::Failed {
                what: "xfreerdp".into(),
                detail: "no session window to send input to (not connected)".into(),
            })?,
        };
        self.xdotool(&["windowfocus", "--sync", &window])
    }

    fn xdotool(&self, args: &[&str]) -> Result<()> {
        run_ok(
            self.display.command("xdotool").args(args),
            &format!("xdotool {}", args.join(" ")),
            X_TOOL_TIMEOUT,
        )
        .map(|_| ())
    }
}

impl Drop for RdpClient {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_request_asks_for_the_given_protocols() {
        assert_eq!(
            connection_request(PROTOCOL_SSL | PROTOCOL_HYBRID),
            [3, 0, 0, 19, 14, 0xe0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 3, 0, 0, 0]
        );
    }

    #[test]
    fn confirms_seen_from_the_real_servers_parse() {
        // freerdp-shadow-cli with /sec:nla, and xrdp with security_layer=tls.
        let shadow = [3, 0, 0, 19, 14, 0xd0, 0, 0, 0, 0, 0, 2, 3, 8, 0, 2, 0, 0, 0];
        let xrdp = [
            3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 2, 1, 8, 0, 1, 0, 0, 0,
        ];
        assert_eq!(
            parse_confirm(&shadow),
            Ok(X224Confirm::Selected {
                protocol: PROTOCOL_HYBRID,
                flags: 3
            })
        );
        assert_eq!(
            parse_confirm(&xrdp),
            Ok(X224Confirm::Selected {
                protocol: PROTOCOL_SSL,
                flags: 1
            })
        );
    }

    #[test]
    fn failures_short_confirms_and_other_tpdus() {
        let failure = [3, 0, 0, 19, 14, 0xd0, 0, 0, 0, 0, 0, 3, 0, 8, 0, 5, 0, 0, 0];
        assert_eq!(parse_confirm(&failure), Ok(X224Confirm::Failure(5)));
        let bare = [3, 0, 0, 11, 6, 0xd0, 0, 0, 0, 0, 0];
        assert_eq!(parse_confirm(&bare), Ok(X224Confirm::NoNegotiation));
        let request = connection_request(PROTOCOL_SSL);
        assert!(parse_confirm(&request).is_err());
        assert!(parse_confirm(&[3, 0]).is_err());
        let mut odd = failure;
        odd[11] = 9;
        assert!(parse_confirm(&odd).is_err());
    }

    #[test]
    fn arbitrary_answers_never_panic_the_parser() {
        // A small xorshift generator: deterministic, no extra dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..4096u64 {
            let len = (next() % 40) as usize;
            let mut packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Every other case looks like a Connection Confirm, to reach the negotiation part.
            if case % 2 == 0 && packet.len() > 5 {
                packet[5] = 0xd0;
            }
            let _ = parse_confirm(&packet);
        }
    }

    #[test]
    fn client_arguments() {
        let opts = RdpClientOptions {
            address: "127.0.0.1:3389".into(),
            user: "alice".into(),
            password: "pw".into(),
            domain: Some("LAB".into()),
            sec: Some(RdpSecurity::Nla),
            width: 800,
            height: 600,
            cert: CertCheck::Fingerprint("sha256:aa:bb".into()),
            extra_args: vec!["-grab-keyboard".into()],
        };
        assert_eq!(
            opts.args(),
            [
                "/v:127.0.0.1:3389",
                "/u:alice",
                "/p:pw",
                "/d:LAB",
                "/sec:nla",
                "/cert:fingerprint:sha256:aa:bb",
                "/size:800x600",
                "/log-level:INFO",
                "-grab-keyboard",
            ]
        );
        let plain = RdpClientOptions {
            address: "h:1".into(),
            ..RdpClientOptions::default()
        };
        assert_eq!(
            plain.args(),
            [
                "/v:h:1",
                "/p:",
                "/cert:ignore",
                "/size:1024x768",
                "/log-level:INFO"
            ]
        );
    }

    #[test]
    fn exit_codes_are_described() {
        assert!(exit_code::describe(exit_code::TRANSPORT_CLOSED).contains("NLA"));
        assert!(exit_code::describe(exit_code::TLS_FAILED).contains("TLS"));
        assert!(exit_code::describe(200).contains("XF_EXIT"));
    }
}
