//! The web proxy under bad input, end to end against the real `psmgate serve`: malformed HTTP on
//! the proxy port, unusable proxy credentials, hostile requests inside an intercepted tunnel
//! (oversized headers, a large upload, the reserved `/__psmgate/` path and forged recorder
//! batches) and broken web servers (closed port, untrusted certificate, reset mid-body).
//!
//! Every case must get a precise refusal or a closed connection, never a panic or a hang; the
//! gateway must go on serving a good request afterwards; and no secret sent with the bad request
//! may reach the log or the recording.
//!
//! The browser side is written here against the protocol (raw bytes, rustls for the tunnel), so
//! that requests no browser would send can be sent. The web servers are small threads here (a
//! TLS origin that echoes what it received, one that resets mid-body, one with an untrusted
//! certificate) and tests/web/console-server.mjs, whose `/__state` tells what reached it.

mod vnc_support;
mod web_support;

use base64::Engine as _;
use psmgate_e2e::peers::free_port;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vnc_support::{events_of, walk, Gateway, Options};

/// Longest a read or write may block before the peer is taken to hang.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
const MIB: usize = 1024 * 1024;
/// Planted in the bad requests (secret headers, secret query values, bodies): it must appear in
/// no log line and no recording file.
const MARK: &str = "MARK-planted-e41c07d9";
/// A host no rule and no target domain matches: denied (rule `default-deny`).
const DENIED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 framing over any byte stream (the proxy's answers, the origin's requests)

/// A message head: first line and headers (names lowercase).
#[derive(Debug, Clone)]
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(bytes: &[u8]) -> Head {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Head { first, headers }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The status of a response head (0 when there is none).
    fn status(&self) -> u16 {
        self.first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// A response as the client saw it.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: Head,
    body: Vec<u8>,
    /// The whole body arrived (by its length or its last chunk).
    complete: bool,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A byte stream read by HTTP/1.1 framing.
struct Wire<S> {
    s: S,
    buf: Vec<u8>,
    ended: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<S: Read + Write> Wire<S> {
    fn new(s: S) -> Self {
        Wire {
            s,
            buf: Vec::new(),
            ended: false,
        }
    }

    /// Reads more; `Ok(false)` once the stream ended (a close, a reset or a TLS stream cut
    /// without close_notify all count as its end); a timeout is an error.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(e)
                }
                Err(_) => break,
            }
        }
        self.ended = true;
        Ok(false)
    }

    /// The bytes up to `delimiter` (which is consumed); `None` when the stream ended first.
    fn until(&mut self, delimiter: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = find(&self.buf, delimiter) {
                let out = self.buf[..i].to_vec();
                self.buf.drain(..i + delimiter.len());
                return Ok(Some(out));
            }
            if self.buf.len() > limit {
                return Err(std::io::Error::new(ErrorKind::InvalidData, "line too long"));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Passes up to `n` bytes to `sink`; returns how many (fewer when the stream ended).
    fn take(&mut self, n: u64, sink: &mut dyn FnMut(&[u8])) -> std::io::Result<u64> {
        let mut got = 0u64;
        while got < n {
            if self.buf.is_empty() && !self.fill()? {
                break;
            }
            let k = usize::try_from(n - got)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            sink(&self.buf[..k]);
            self.buf.drain(..k);
            got += k as u64;
        }
        Ok(got)
    }

    /// The body framed by `head` into `sink`: (bytes, complete). Without a length a response
    /// body runs to the end of the stream (`to_end`); a request body is empty.
    fn body(
        &mut self,
        head: &Head,
        to_end: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> std::io::Result<(u64, bool)> {
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            let mut total = 0;
            loop {
                let Some(line) = self.until(b"\r\n", 4096)? else {
                    return Ok((total, false));
                };
                let text = String::from_utf8_lossy(&line);
                let size = text.split(';').next().unwrap_or_default().trim();
                let Ok(size) = u64::from_str_radix(size, 16) else {
                    return Ok((total, false));
                };
                if size == 0 {
                    loop {
                        match self.until(b"\r\n", 64 * 1024)? {
                            Some(trailer) if trailer.is_empty() => return Ok((total, true)),
                            Some(_) => {}
                            None => return Ok((total, false)),
                        }
                    }
                }
                let got = self.take(size, sink)?;
                total += got;
                if got < size || self.until(b"\r\n", 2)?.is_none_or(|l| !l.is_empty()) {
                    return Ok((total, false));
                }
            }
        }
        match head
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(n) => {
                let got = self.take(n, sink)?;
                Ok((got, got == n))
            }
            None if to_end => Ok((self.take(u64::MAX, sink)?, true)),
            None => Ok((0, true)),
        }
    }

    /// Reads one response (its body too unless `head_only`); `None` when the connection closed
    /// before a status line. A hang fails the test.
    fn reply(&mut self, head_only: bool) -> Option<Reply> {
        let head = match self.until(b"\r\n\r\n", 2 * MIB) {
            Ok(Some(h)) => Head::parse(&h),
            Ok(None) => return None,
            Err(e) => panic!("no answer from the proxy ({e}): it hangs"),
        };
        let mut body = Vec::new();
        let complete = if head_only {
            true
        } else {
            self.body(&head, true, &mut |d| body.extend_from_slice(d))
                .unwrap_or_else(|e| panic!("the body of {:?} stalled: {e}", head.first))
                .1
        };
        Some(Reply {
            status: head.status(),
            head,
            body,
            complete,
        })
    }

    /// Writes `bytes`; a peer that stops reading (it answered already) is not an error here,
    /// what it answered is what the test checks.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).and_then(|()| self.s.flush());
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates and web servers

/// A throw-away CA and a server configuration for 127.0.0.1 and [`DENIED`] signed by it.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.subject_alt_names = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V4(DENIED)),
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// A TLS client configuration trusting exactly the certificates of `ca_pem`.
fn client_tls(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// What an origin does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Reads the whole body and answers 200 with JSON saying what arrived.
    Echo,
    /// Answers 200 announcing 1 MiB, sends 64 KiB, then resets the connection.
    ResetMidBody,
}

/// One request an origin received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    head: Head,
    body_bytes: u64,
    complete: bool,
}

/// A web server (TLS or plain), a thread per connection.
struct Origin {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    /// An origin on 127.0.0.1.
    fn start(tls: Option<Arc<rustls::ServerConfig>>, behaviour: Behaviour) -> Origin {
        Self::start_on(Ipv4Addr::LOCALHOST, tls, behaviour)
    }

    fn start_on(
        host: Ipv4Addr,
        tls: Option<Arc<rustls::ServerConfig>>,
        behaviour: Behaviour,
    ) -> Origin {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (tls, log) = (tls.clone(), log.clone());
                std::thread::spawn(move || serve_origin(tcp, tls, behaviour, &log));
            }
        });
        Origin { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_origin(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    behaviour: Behaviour,
    seen: &Mutex<Vec<Seen>>,
) {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    match tls {
        None => {
            let mut w = Wire::new(tcp);
            if origin_exchanges(&mut w, behaviour, seen) {
                reset(w.s);
            }
        }
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut w = Wire::new(rustls::StreamOwned::new(conn, tcp));
            if origin_exchanges(&mut w, behaviour, seen) {
                reset(w.s.sock);
            }
        }
    }
}

/// Serves requests until the connection ends; true when it is to be reset.
fn origin_exchanges<S: Read + Write>(
    w: &mut Wire<S>,
    behaviour: Behaviour,
    seen: &Mutex<Vec<Seen>>,
) -> bool {
    loop {
        let Ok(Some(raw)) = w.until(b"\r\n\r\n", 4 * MIB) else {
            return false;
        };
        let head = Head::parse(&raw);
        let mut first = head.first.split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let (body_bytes, complete) = w.body(&head, false, &mut |_| {}).unwrap_or((0, false));
        seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            head,
            body_bytes,
            complete,
        });
        if !complete {
            return false;
        }
        match behaviour {
            Behaviour::Echo => {
                let body = serde_json::json!({"path": path, "body_bytes": body_bytes}).to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if w.s
                    .write_all(reply.as_bytes())
                    .and_then(|()| w.s.flush())
                    .is_err()
                {
                    return false;
                }
            }
            Behaviour::ResetMidBody => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {MIB}\r\n\r\n"
                );
                w.send(head.as_bytes());
                w.send(&vec![b'r'; 64 * 1024]);
                // Let the proxy pass the head and the first bytes on before the reset.
                std::thread::sleep(Duration::from_millis(500));
                return true;
            }
        }
    }
}

/// Closes `tcp` with a reset (RST) instead of an orderly end.
fn reset(tcp: TcpStream) {
    let socket = tokio::net::TcpSocket::from_std_stream(tcp);
    let _ = socket.set_zero_linger();
}

/// The console server (tests/web/console-server.mjs); killed on drop.
struct Console {
    child: Child,
    ca_pem: Vec<u8>,
    ca: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Console {
    fn start() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let (child, v) = web_support::spawn_console(dir.path(), &[]);
        let ca = PathBuf::from(v["ca"].as_str().unwrap());
        Console {
            child,
            ca_pem: std::fs::read(&ca).unwrap(),
            ca,
            port: u16::try_from(v["console"].as_u64().unwrap()).unwrap(),
            _dir: dir,
        }
    }

    /// What the console saw (`GET /__state`, fetched directly, not through the proxy).
    fn state(&self) -> Value {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let conn = rustls::ClientConnection::new(
            client_tls(&self.ca_pem),
            ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        )
        .unwrap();
        let mut w = Wire::new(rustls::StreamOwned::new(conn, tcp));
        w.send(&get(self.port, "/__state", ""));
        let r = w.reply(false).expect("the console answers /__state");
        serde_json::from_slice(&r.body).unwrap()
    }

    /// The paths of the requests that reached the console.
    fn paths(&self) -> Vec<String> {
        self.state()["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["path"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway and the browser side

/// Web configuration: target `console` records 127.0.0.1 (every port) and keeps request
/// bodies, target `other` is 127.0.0.2; upstream TLS trusts `roots`.
fn web_config(roots: &[&Path], heartbeat: &str) -> String {
    let roots: Vec<String> = roots
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        r#"
[targets.console]
protocol = "web"
address = "https://127.0.0.1/"
domains = ["127.0.0.1"]

[targets.other]
protocol = "web"
address = "https://127.0.0.2/"
domains = ["127.0.0.2"]

[web]
extra_roots = [{roots}]
idle_timeout = "10m"
heartbeat_timeout = "{heartbeat}"

[[web_rules]]
id = "console-bodies"
domains = ["127.0.0.1"]
action = "record"
record_bodies = true
"#,
        roots = roots.join(", ")
    )
}

/// A gateway with `extra` configuration whose web proxy listens.
fn gateway(extra: &str) -> Gateway {
    let gw = Gateway::start_with(
        free_port().unwrap(),
        Options {
            extra_config: extra,
            ..Options::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, gw.web_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "web proxy did not listen: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

/// Writes `text` to `dir/name`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `Basic base64(credentials)`.
fn basic(credentials: &[u8]) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// A TCP connection to the proxy from source address `source` (the proxy counts failed sign-ins
/// per address).
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let tcp = rt
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
            s.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .await
        })
        .unwrap_or_else(|e| panic!("connecting from {source}: {e}"));
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp
}

fn with_timeouts(tcp: TcpStream) -> TcpStream {
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp
}

/// Sends `bytes` to the proxy port on a new connection (then half-closes it when `close`) and
/// reads the answer: `None` when the proxy closed the connection without one.
fn probe(port: u16, bytes: &[u8], close: bool) -> Option<Reply> {
    let tcp = with_timeouts(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap());
    probe_on(tcp, bytes, close)
}

/// [`probe`] on connection `tcp`.
fn probe_on(tcp: TcpStream, bytes: &[u8], close: bool) -> Option<Reply> {
    let mut w = Wire::new(tcp);
    w.send(bytes);
    if close {
        let _ = w.s.shutdown(std::net::Shutdown::Write);
    }
    // A CONNECT answered 200 has no body: the tunnel follows.
    let head_only = bytes.starts_with(b"CONNECT");
    let r = w.reply(head_only)?;
    if head_only && r.status != 200 {
        // Refused CONNECTs have a body.
        let mut body = Vec::new();
        let (_, complete) = w
            .body(&r.head, true, &mut |d| body.extend_from_slice(d))
            .unwrap();
        return Some(Reply {
            body,
            complete,
            ..r
        });
    }
    Some(r)
}

/// The proxy refused `what` cleanly: one of `statuses`, or a closed connection.
fn assert_refused(what: &str, answer: &Option<Reply>, statuses: &[u16]) {
    if let Some(r) = answer {
        assert!(
            statuses.contains(&r.status),
            "{what}: expected one of {statuses:?} or a closed connection, got {:?} {}",
            r.head.first,
            r.text()
        );
    }
}

/// `GET path` for 127.0.0.1:`port` with `extra` header lines.
fn get(port: u16, path: &str, extra: &str) -> Vec<u8> {
    get_at(Ipv4Addr::LOCALHOST, port, path, extra)
}

/// `GET path` for `host`:`port` with `extra` header lines.
fn get_at(host: Ipv4Addr, port: u16, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// `POST path` for `port` with a body of `content_type`.
fn post(port: u16, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

type Tls = Wire<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A browser signed in to the proxy, trusting the gateway CA.
struct Browser {
    proxy: u16,
    authorization: String,
    /// The gateway CA (PEM).
    ca_pem: Vec<u8>,
    tls: Arc<rustls::ClientConfig>,
}

impl Browser {
    fn new(gw: &Gateway, token: &str) -> Browser {
        let o = gw.psmgate(&["ca", "export"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Browser {
            proxy: gw.web_port,
            authorization: basic(format!("alice@console:{token}").as_bytes()),
            tls: client_tls(&o.stdout),
            ca_pem: o.stdout,
        }
    }

    /// A CONNECT to `host`:`port` answered 200: the connection, ready for the tunnel's bytes;
    /// else the proxy's answer.
    fn connect(&self, host: Ipv4Addr, port: u16) -> Result<TcpStream, Option<Reply>> {
        let tcp = with_timeouts(TcpStream::connect((Ipv4Addr::LOCALHOST, self.proxy)).unwrap());
        tcp.set_nodelay(true).unwrap();
        let mut w = Wire::new(tcp);
        w.send(
            format!(
                "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\
                 Proxy-Authorization: {}\r\n\r\n",
                self.authorization
            )
            .as_bytes(),
        );
        let Some(r) = w.reply(true) else {
            return Err(None);
        };
        if r.status != 200 {
            return Err(Some(r));
        }
        assert!(w.buf.is_empty(), "bytes after the CONNECT answer");
        Ok(w.s)
    }

    /// An intercepted tunnel to 127.0.0.1:`port`, or the proxy's answer to the CONNECT.
    fn tunnel(&self, port: u16) -> Result<Tls, Option<Reply>> {
        let tcp = self.connect(Ipv4Addr::LOCALHOST, port)?;
        let conn = rustls::ClientConnection::new(
            self.tls.clone(),
            ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        )
        .unwrap();
        Ok(Wire::new(rustls::StreamOwned::new(conn, tcp)))
    }

    /// Sends `request` through a new tunnel to `port`; the answer, `None` when the proxy closed
    /// the connection without one.
    fn send(&self, port: u16, request: &[u8]) -> Option<Reply> {
        let mut t = self
            .tunnel(port)
            .unwrap_or_else(|r| panic!("CONNECT refused: {r:?}"));
        t.send(request);
        t.reply(false)
    }

    /// [`Browser::send`] that must be answered.
    fn must(&self, port: u16, request: &[u8]) -> Reply {
        let head = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
        self.send(port, request)
            .unwrap_or_else(|| panic!("no answer to {head:?}"))
    }
}

/// Stops the gateway the way an operator does (SIGTERM): live web sessions are sealed.
fn stop(gw: &Gateway) {
    let o = Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
}

/// No panic in the gateway's log.
fn assert_no_panic(gw: &Gateway) {
    let log = gw.log();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
}

/// None of `secrets` is in the gateway's log or in any file of its data folder but the token
/// database (which holds tokens by design).
fn assert_no_secrets(gw: &Gateway, secrets: &[&str]) {
    let mut places = vec![("the log".to_string(), gw.log())];
    for f in walk(&gw.data()) {
        if f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("access.sqlite3"))
        {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        places.push((f.display().to_string(), text));
    }
    for secret in secrets {
        for (place, text) in &places {
            assert!(!text.contains(secret), "{secret:?} leaked into {place}");
        }
    }
}

/// The details of the `web_auth_failed` audit entries so far.
fn auth_failures(gw: &Gateway) -> Vec<String> {
    std::fs::read_to_string(gw.data().join("recordings/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["action"] == "web_auth_failed")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits for the gateway's only recording to be sealed; returns it.
fn sealed_recording(gw: &Gateway) -> PathBuf {
    stop(gw);
    let recs = gw.sealed(1);
    assert_eq!(recs.len(), 1, "one session per grant: {recs:?}");
    let rec = recs.into_iter().next().unwrap();
    gw.assert_verifies(&rec);
    rec
}

/// The transcript's `http` event whose URL contains `needle`.
fn http_event(events: &[Value], needle: &str) -> Value {
    events
        .iter()
        .find(|e| e["url"].as_str().is_some_and(|u| u.contains(needle)))
        .unwrap_or_else(|| panic!("no http event for {needle:?} in {events:#?}"))
        .clone()
}

// ---------------------------------------------------------------------------------------------
// 1. Malformed HTTP on the proxy port

#[test]
fn malformed_http_on_the_proxy_port_is_refused_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // Plain-HTTP proxy requests go to this origin; the CA only makes the trust store non-empty.
    let roots = write(dir.path(), "origin-ca.pem", &pki("unused").ca_pem);
    let origin = Origin::start(None, Behaviour::Echo);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let auth = format!(
        "Proxy-Authorization: {}\r\n",
        basic(format!("alice@console:{token}").as_bytes())
    );
    let o = origin.port;
    let url = format!("http://127.0.0.1:{o}");
    let secret = format!("Authorization: Bearer {MARK}\r\n");
    let good = get(o, &format!("{url}/good"), &auth);

    let many_headers: String = (0..10_000).map(|i| format!("X-H{i}: {MARK}\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, bool, &[u16])> = vec![
        (
            "garbage bytes",
            [b"\x00\xff\x16garbage ".as_slice(), MARK.as_bytes(), b"\x01\r\n\r\n"].concat(),
            false,
            &[400],
        ),
        (
            "a request line without version",
            format!("GET {url}/?token={MARK}\r\n{auth}\r\n").into_bytes(),
            false,
            &[400],
        ),
        (
            "CONNECT without a target",
            format!("CONNECT  HTTP/1.1\r\n{auth}{secret}\r\n").into_bytes(),
            false,
            &[400],
        ),
        (
            "CONNECT to a path instead of host:port",
            format!("CONNECT /{MARK} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n").into_bytes(),
            false,
            &[400],
        ),
        (
            "CONNECT to a path, without credentials",
            format!("CONNECT /{MARK} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
            false,
            &[407],
        ),
        (
            "a header line without colon",
            format!("GET {url}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}NoColon{MARK}\r\n\r\n")
                .into_bytes(),
            false,
            &[400],
        ),
        (
            "a NUL byte in a header",
            format!("GET {url}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}X-Note: a\0{MARK}\r\n\r\n")
                .into_bytes(),
            false,
            &[400],
        ),
        (
            "a 1 MiB header value",
            format!(
                "GET {url}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}X-Big: {}{MARK}\r\n\r\n",
                "a".repeat(MIB)
            )
            .into_bytes(),
            false,
            &[431],
        ),
        (
            "10,000 headers",
            format!("GET {url}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{many_headers}\r\n")
                .into_bytes(),
            false,
            &[431],
        ),
        // Bodies stream to the server as they arrive, so one that breaks off fails the exchange
        // with the server: 502 naming the cause (400 would do as well).
        (
            "a chunked body with a bad chunk size",
            format!(
                "POST {url}/chunked?password={MARK} HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n{auth}{secret}\
                 Transfer-Encoding: chunked\r\n\r\nZZ{MARK}\r\nabc\r\n0\r\n\r\n"
            )
            .into_bytes(),
            false,
            &[400, 502],
        ),
        (
            "a body shorter than its Content-Length, then the end",
            format!(
                "POST {url}/short?password={MARK} HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n{auth}{secret}\
                 Content-Length: 1000\r\n\r\npassword={MARK}"
            )
            .into_bytes(),
            true,
            &[400, 502],
        ),
    ];
    for (what, bytes, close, statuses) in &cases {
        let answer = probe(gw.web_port, bytes, *close);
        assert_refused(what, &answer, statuses);
        if let Some(r) = &answer {
            assert!(
                !r.text().contains(MARK),
                "{what}: the answer echoes the secret"
            );
        }
        let ok = probe(gw.web_port, &good, false)
            .unwrap_or_else(|| panic!("after {what}, the proxy stopped serving: {}", gw.log()));
        assert_eq!(ok.status, 200, "after {what}: {}", ok.text());
        assert!(ok.text().contains("/good"), "{}", ok.text());
    }
    // The CONNECT to a path is refused for what it is.
    let r = probe(gw.web_port, &cases[3].1, false).unwrap();
    assert!(r.text().contains("host:port"), "{}", r.text());
    // No broken request reached the origin as a whole one.
    for s in origin.seen() {
        assert!(
            s.path.starts_with("/good") || !s.complete,
            "a broken request was forwarded whole: {s:?}"
        );
    }
    assert_no_panic(&gw);

    // The two requests that reached the transcript carry no secret and say what went wrong.
    let rec = sealed_recording(&gw);
    let events = events_of(&rec, "http");
    for path in ["/chunked", "/short"] {
        let e = http_event(&events, path);
        assert!(
            e["error"].is_string() || e["status"].as_u64().is_some_and(|s| s >= 400),
            "{e}"
        );
        assert!(
            e["url"].as_str().unwrap().contains("password=[redacted]"),
            "{e}"
        );
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["url"].as_str().unwrap().ends_with("/good"))
            .count(),
        cases.len(),
        "one good request after each case"
    );
    assert_no_secrets(&gw, &[MARK, &token]);
}

/// A CONNECT must name a port (RFC 9110 §9.3.6: a CONNECT without one is refused, typically with
/// 400). psmgate answers 200 and waits for the tunnel's first bytes.
#[test]
fn a_connect_without_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let roots = write(dir.path(), "origin-ca.pem", &pki("unused").ca_pem);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let request = format!(
        "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: {}\r\n\r\n",
        basic(format!("alice@console:{token}").as_bytes())
    );
    let answer = probe(gw.web_port, request.as_bytes(), false);
    assert_refused("CONNECT without port", &answer, &[400]);
    assert_no_panic(&gw);
}

// ---------------------------------------------------------------------------------------------
// 2. Unusable proxy credentials

/// Issues a grant for alice on `target`; returns its token and id.
fn grant_with_id(gw: &Gateway, target: &str) -> (String, String) {
    let o = gw.psmgate(&[
        "access", "grant", "--user", "alice", "--target", target, "--ttl", "10m",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    let id = said
        .split_whitespace()
        .skip_while(|w| *w != "grant")
        .nth(1)
        .unwrap_or_else(|| panic!("no grant id in {said:?}"))
        .to_string();
    (token, id)
}

#[test]
fn unusable_proxy_credentials_get_407_and_an_audit_line_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let roots = write(dir.path(), "origin-ca.pem", &pki("unused").ca_pem);
    let origin = Origin::start(None, Behaviour::Echo);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let good = gw.grant("console", &["--ttl", "10m"]);
    let expired = gw.grant("console", &["--ttl", "1s"]);
    let expires = Instant::now() + Duration::from_millis(1500);
    let (revoked, id) = grant_with_id(&gw, "console");
    let o = gw.psmgate(&["access", "revoke", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let foreign = gw.grant("other", &["--ttl", "10m"]);
    std::thread::sleep(expires.saturating_duration_since(Instant::now()));
    let mut source = 0u8;

    let creds = |s: &str| basic(format!("alice@console:{s}").as_bytes()).into_bytes();
    let not_utf8 = [b"\xff\xfealice@console:".as_slice(), good.as_bytes()].concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid base64",
            format!("Basic !!{MARK}!!").into_bytes(),
            "not Basic user:token",
        ),
        (
            "a header value that is not UTF-8",
            [b"Basic \xff\xfe".as_slice(), MARK.as_bytes()].concat(),
            "not Basic user:token",
        ),
        (
            "credentials that are not UTF-8",
            basic(&not_utf8).into_bytes(),
            "not Basic user:token",
        ),
        (
            "credentials without colon",
            basic(format!("alice@console{good}").as_bytes()).into_bytes(),
            "not Basic user:token",
        ),
        (
            "an empty user",
            basic(format!("@console:{good}").as_bytes()).into_bytes(),
            "names no target",
        ),
        ("an expired token", creds(&expired), "token expired"),
        ("a revoked token", creds(&revoked), "token revoked"),
        (
            "a token for another target",
            creds(&foreign),
            "not granted for this target",
        ),
    ];
    let o = origin.port;
    for (what, value, reason) in &cases {
        let header = [b"Proxy-Authorization: ".as_slice(), value, b"\r\n"].concat();
        let plain = [
            format!("GET http://127.0.0.1:{o}/ HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n").as_bytes(),
            &header,
            b"Connection: close\r\n\r\n",
        ]
        .concat();
        let connect = [
            format!("CONNECT 127.0.0.1:{o} HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\n").as_bytes(),
            &header,
            b"\r\n",
        ]
        .concat();
        for (how, request) in [("plain", plain), ("CONNECT", connect)] {
            let before = auth_failures(&gw).len();
            // Each attempt from its own address: the proxy refuses an address after a few
            // failures (a case of its own below), which would hide the precise reasons here.
            source += 1;
            let tcp = connect_from(Ipv4Addr::new(127, 0, 3, source), gw.web_port);
            let r = probe_on(tcp, &request, false)
                .unwrap_or_else(|| panic!("{what} ({how}): closed without an answer"));
            assert_eq!(r.status, 407, "{what} ({how}): {}", r.text());
            assert!(
                r.head
                    .header("proxy-authenticate")
                    .is_some_and(|v| v.starts_with("Basic")),
                "{what} ({how}): {:?}",
                r.head
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            let failures = loop {
                let f = auth_failures(&gw);
                if f.len() > before || Instant::now() > deadline {
                    break f;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(
                failures.len(),
                before + 1,
                "{what} ({how}): not audited once"
            );
            let detail = failures.last().unwrap();
            assert!(detail.contains(reason), "{what} ({how}): {detail}");
            for secret in [MARK, &good, &expired, &revoked, &foreign] {
                assert!(!detail.contains(secret), "{what} ({how}): {detail}");
            }
        }
    }
    // Nothing was forwarded and no session started.
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
    assert!(psmgate_e2e::recordings(&gw.data()).is_empty());
    assert_no_panic(&gw);

    // The good token still works (from another address: the failures above are counted against
    // theirs).
    let tcp = with_timeouts(connect_from(Ipv4Addr::new(127, 0, 0, 2), gw.web_port));
    let r = probe_on(
        tcp,
        &get(
            o,
            &format!("http://127.0.0.1:{o}/good"),
            &format!(
                "Proxy-Authorization: {}\r\n",
                String::from_utf8(creds(&good)).unwrap()
            ),
        ),
        false,
    )
    .expect("an answer to the good request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.seen().len(), 1);
    assert_no_secrets(&gw, &[MARK, &good, &expired, &revoked, &foreign]);
}

/// Failed sign-ins are counted per address (as for VNC and RDP, 5 a minute): after that, the
/// address is refused even with a good token. The web proxy counts the failures but never
/// checks the count, so it keeps checking every guess.
#[test]
fn repeated_bad_tokens_from_one_address_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let roots = write(dir.path(), "origin-ca.pem", &pki("unused").ca_pem);
    let origin = Origin::start(None, Behaviour::Echo);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let good = gw.grant("console", &["--ttl", "10m"]);
    let source = Ipv4Addr::new(127, 0, 0, 3);
    let o = origin.port;
    let attempt = |token: &str| {
        let tcp = with_timeouts(connect_from(source, gw.web_port));
        let auth = format!(
            "Proxy-Authorization: {}\r\n",
            basic(format!("alice@console:{token}").as_bytes())
        );
        probe_on(
            tcp,
            &get(o, &format!("http://127.0.0.1:{o}/"), &auth),
            false,
        )
        .map(|r| r.status)
    };
    for i in 0..6 {
        assert_eq!(attempt(&format!("wrong{i}")), Some(407));
    }
    assert_eq!(
        attempt(&good),
        Some(407),
        "a good token right after 6 failures from the same address was accepted"
    );
    assert!(auth_failures(&gw)
        .iter()
        .any(|d| d.contains("too many failed attempts")));
    assert!(origin.seen().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. Inside an intercepted tunnel

/// The page id psmgate gave an HTML page (from its injected script).
fn page_id(html: &str) -> String {
    let start = html
        .find("recorder.js?page=")
        .unwrap_or_else(|| panic!("no recorder in {html}"))
        + "recorder.js?page=".len();
    html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

#[test]
fn the_reserved_path_is_answered_by_the_proxy_and_forged_batches_are_refused() {
    let console = Console::start();
    let gw = gateway(&web_config(&[&console.ca], "10m"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let b = Browser::new(&gw, &token);
    let p = console.port;
    let secret = format!("Authorization: Bearer {MARK}\r\nCookie: session={MARK}\r\n");

    // A page the proxy served (and put its recorder in).
    let page = b.must(p, &get(p, "/login", "Accept: text/html\r\n"));
    assert_eq!(page.status, 200, "{}", page.text());
    let id = page_id(&page.text());

    // The recorder script.
    let js = b.must(p, &get(p, &format!("/__psmgate/recorder.js?page={id}"), ""));
    assert_eq!(js.status, 200, "{}", js.text());
    assert!(
        js.head
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript")),
        "{:?}",
        js.head
    );
    assert_eq!(js.head.header("x-content-type-options"), Some("nosniff"));
    assert!(js.text().contains(&format!("\"page\":\"{id}\"")));
    assert!(js.body.len() > 10_000, "the rrweb bundle is missing");

    // Unknown reserved paths: 404 from the proxy, whatever the method.
    let unknown = format!("/__psmgate/unknown?token={MARK}");
    let r = b.must(p, &get(p, &unknown, &secret));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = b.must(p, &post(p, &unknown, "text/plain", MARK.as_bytes()));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = b.must(p, &get(p, "/__psmgate/events", ""));
    assert_eq!(r.status, 404, "GET of the batch endpoint: {}", r.text());

    // Batches.
    let events = "/__psmgate/events";
    let batch = |page: &str, seq: u64, events: &str| -> Vec<u8> {
        format!(
            r#"{{"page":"{page}","seq":{seq},"url":"https://127.0.0.1:{p}/login?password={MARK}","title":"Console sign-in","events":{events}}}"#
        )
        .into_bytes()
    };
    let meta = format!(
        r#"{{"type":4,"data":{{"href":"https://127.0.0.1:{p}/login","width":800,"height":600}},"timestamp":1}}"#
    );
    let twenty_thousand = format!(
        "[{}]",
        vec![r#"{"type":4,"timestamp":1}"#; 20_000].join(",")
    );
    let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
    let mut five_mib = batch(&id, 1, "[");
    five_mib.extend(std::iter::repeat_n(b' ', 5 * MIB));
    five_mib.extend_from_slice(b"]}");
    let bad: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid JSON",
            format!(r#"{{"page":"{id}","seq":1,"#).into_bytes(),
            400,
        ),
        ("not JSON at all", MARK.as_bytes().to_vec(), 400),
        ("a 5 MiB body", five_mib, 413),
        (
            "a page the session never served",
            batch("feedfacefeedfacefeedface", 1, &format!("[{meta}]")),
            403,
        ),
        ("20,000 events", batch(&id, 1, &twenty_thousand), 400),
        ("JSON nested 10,000 levels", batch(&id, 1, &deep), 400),
        ("an event that is a number", batch(&id, 1, "[1]"), 400),
        (
            "an event that is a string",
            batch(&id, 1, &format!("[\"{MARK}\"]")),
            400,
        ),
        ("events that are not a list", batch(&id, 1, "{}"), 400),
    ];
    for (what, body, status) in &bad {
        let r = b.send(p, &post(p, events, "application/json", body));
        let r = r.unwrap_or_else(|| panic!("{what}: closed without an answer: {}", gw.log()));
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        assert!(
            !r.text().contains(MARK),
            "{what}: the answer echoes the secret"
        );
    }
    // A good batch for the served page is still taken.
    let r = b.must(
        p,
        &post(
            p,
            events,
            "application/json",
            &batch(&id, 2, &format!("[{meta}]")),
        ),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // And pages are still served.
    let again = b.must(p, &get(p, "/login", &secret));
    assert_eq!(again.status, 200);
    assert_no_panic(&gw);

    // Nothing under the reserved path reached the console.
    let paths = console.paths();
    assert!(
        !paths.iter().any(|p| p.contains("__psmgate")),
        "forwarded: {paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "/login").count(),
        2,
        "{paths:?}"
    );

    // The transcript: the two page loads, the one good batch, no reserved traffic as `http`.
    let rec = sealed_recording(&gw);
    let http = events_of(&rec, "http");
    assert!(
        !http
            .iter()
            .any(|e| e["url"].as_str().unwrap().contains("__psmgate")),
        "{http:#?}"
    );
    assert_eq!(http.len(), 2, "{http:#?}");
    let dom = events_of(&rec, "dom");
    assert_eq!(dom.len(), 1, "{dom:#?}");
    assert_eq!(dom[0]["page"], id.as_str());
    assert_eq!(dom[0]["seq"], 2);
    assert!(dom[0]["url"]
        .as_str()
        .unwrap()
        .contains("password=[redacted]"));
    assert_no_secrets(&gw, &[MARK, &token]);
}

#[test]
fn oversized_headers_and_large_bodies_through_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = pki("origin");
    let roots = write(dir.path(), "origin-ca.pem", &trusted.ca_pem);
    let origin = Origin::start(Some(trusted.server.clone()), Behaviour::Echo);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let b = Browser::new(&gw, &token);
    let o = origin.port;

    // Request heads too large for the proxy: refused there, never forwarded.
    let big = get(
        o,
        "/big-header",
        &format!("X-Big: {}{MARK}\r\n", "b".repeat(MIB)),
    );
    assert_refused("a 1 MiB header inside the tunnel", &b.send(o, &big), &[431]);
    let many: String = (0..10_000).map(|i| format!("X-H{i}: {MARK}\r\n")).collect();
    let r = b.send(o, &get(o, "/many-headers", &many));
    assert_refused("10,000 headers inside the tunnel", &r, &[431]);
    assert!(
        !origin
            .seen()
            .iter()
            .any(|s| s.path.starts_with("/big-header") || s.path.starts_with("/many-headers")),
        "an oversized head was forwarded"
    );
    // A large but acceptable head (a 48 KiB cookie) goes through, its value not recorded.
    let cookie = format!("Cookie: a={}; session={MARK}\r\n", "c".repeat(48 * 1024));
    let r = b.must(o, &get(o, "/big-cookie", &cookie));
    assert_eq!(r.status, 200, "{}", r.text());

    // A 20 MiB form upload: forwarded whole, sized in the transcript, its secret field kept out
    // (one in the recorded first 64 KiB, one past it).
    let mut upload = format!("password={MARK}&data=").into_bytes();
    upload.resize(20 * MIB - 64, b'u');
    upload.extend_from_slice(format!("&token={MARK}").as_bytes());
    upload.resize(20 * MIB, b'v');
    let r = b.must(
        o,
        &post(
            o,
            &format!("/upload?password={MARK}"),
            "application/x-www-form-urlencoded",
            &upload,
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["body_bytes"], 20 * MIB as u64);
    let upload_reply_bytes = r.body.len();
    // A JSON body nested deeper than the body redaction parses (within the recorded 64 KiB) is
    // forwarded and recorded as its size.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let r = b.must(o, &post(o, "/deep", "application/json", deep.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let good = b.must(o, &get(o, "/good", ""));
    assert_eq!(good.status, 200);
    assert_no_panic(&gw);

    let seen = origin.seen();
    let upload_seen = seen.iter().find(|s| s.path.starts_with("/upload")).unwrap();
    assert!(upload_seen.complete && upload_seen.body_bytes == 20 * MIB as u64);
    assert_eq!(upload_seen.method, "POST");
    let big_cookie = seen.iter().find(|s| s.path == "/big-cookie").unwrap();
    assert!(big_cookie
        .head
        .header("cookie")
        .is_some_and(|c| c.contains(MARK)));
    assert!(
        seen.iter()
            .all(|s| s.head.header("proxy-authorization").is_none()),
        "proxy credentials were forwarded"
    );

    let rec = sealed_recording(&gw);
    let events = events_of(&rec, "http");
    let up = http_event(&events, "/upload");
    assert_eq!(up["status"], 200, "{up}");
    assert_eq!(up["req_bytes"], 20 * MIB as u64, "{up}");
    assert_eq!(up["resp_bytes"], upload_reply_bytes as u64, "{up}");
    let body = up["body"].as_str().unwrap();
    assert!(
        body.starts_with("password=[redacted]") && body.contains(&format!("{} bytes", 20 * MIB)),
        "{}",
        &body[..body.len().min(200)]
    );
    assert!(
        body.len() <= 64 * 1024 + 100,
        "the recorded body is not bounded"
    );
    let deep_event = http_event(&events, "/deep");
    assert_eq!(deep_event["req_bytes"], deep.len() as u64);
    assert!(
        deep_event["body"]
            .as_str()
            .unwrap()
            .contains("bytes of application/json, not valid JSON"),
        "{deep_event}"
    );
    let cookie_event = http_event(&events, "/big-cookie");
    assert!(cookie_event["request_headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "cookie" && h[1] == "[redacted]"));
    assert!(!events
        .iter()
        .any(|e| e["url"].as_str().unwrap().contains("-header")));
    assert_no_secrets(&gw, &[MARK, &token]);
}

// ---------------------------------------------------------------------------------------------
// 4. Web servers that fail

#[test]
fn failing_web_servers_get_a_502_page_and_a_recorded_error() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = pki("origin");
    let untrusted = pki("stranger");
    let roots = write(dir.path(), "origin-ca.pem", &trusted.ca_pem);
    let good = Origin::start(Some(trusted.server.clone()), Behaviour::Echo);
    let resetting = Origin::start(Some(trusted.server.clone()), Behaviour::ResetMidBody);
    let stranger = Origin::start(Some(untrusted.server.clone()), Behaviour::Echo);
    let closed = free_port().unwrap();
    let gw = gateway(&web_config(&[&roots], "15s"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let b = Browser::new(&gw, &token);
    let secret = format!("Authorization: Bearer {MARK}\r\n");

    // Nothing listens.
    let r = b.must(
        closed,
        &get(closed, &format!("/closed?token={MARK}"), &secret),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains("could not reach the server"),
        "{}",
        r.text()
    );
    assert!(r.text().to_lowercase().contains("refused"), "{}", r.text());
    // A certificate from a CA that is not in web.extra_roots.
    let r = b.must(stranger.port, &get(stranger.port, "/stranger", &secret));
    assert_eq!(r.status, 502, "{}", r.text());
    let says_untrusted = |t: &str| {
        t.contains("certificate") && (t.contains("UnknownIssuer") || t.contains("not trusted"))
    };
    assert!(says_untrusted(&r.text()), "{}", r.text());
    assert!(
        stranger.seen().is_empty(),
        "a request reached an untrusted server"
    );
    // A server that resets the connection in the middle of the body.
    let r = b
        .send(resetting.port, &get(resetting.port, "/reset", &secret))
        .expect("the response head arrives before the reset");
    assert_eq!(r.status, 200);
    assert!(
        !r.complete && r.body.len() < MIB,
        "a cut body was passed on as complete ({} bytes)",
        r.body.len()
    );
    // The proxy still serves.
    let ok = b.must(good.port, &get(good.port, "/good", ""));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_no_panic(&gw);

    let rec = sealed_recording(&gw);
    let events = events_of(&rec, "http");
    let e = http_event(&events, "/closed");
    assert!(e["status"].is_null(), "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{e}"
    );
    assert!(
        e["url"].as_str().unwrap().contains("token=[redacted]"),
        "{e}"
    );
    let e = http_event(&events, "/stranger");
    assert!(says_untrusted(e["error"].as_str().unwrap()), "{e}");
    let e = http_event(&events, "/reset");
    assert_eq!(e["status"], 200, "{e}");
    assert!(
        e["error"].is_string(),
        "a cut response recorded as whole: {e}"
    );
    assert!(e["resp_bytes"].as_u64().unwrap() < MIB as u64, "{e}");
    let e = http_event(&events, "/good");
    assert!(e["error"].is_null() && e["status"] == 200, "{e}");
    assert_no_secrets(&gw, &[MARK, &token]);
}

// ---------------------------------------------------------------------------------------------
// 5. What a tunnel carries when it is not a TLS handshake in one piece

/// A TCP stream whose first write sends one byte alone, then pauses: legal TCP, and what a
/// client that wants to get past the interception can do.
struct FirstByteAlone {
    tcp: TcpStream,
    first: bool,
}

impl Read for FirstByteAlone {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for FirstByteAlone {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.first && !buf.is_empty() {
            self.first = false;
            let n = self.tcp.write(&buf[..1])?;
            std::thread::sleep(Duration::from_millis(200));
            return Ok(n);
        }
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// Every CONNECT to a recorded or denied host is intercepted, so that each request inside is
/// recorded or gets the block page. The proxy library decides how by the tunnel's first read:
/// `GET ` is served as HTTP, `16 03` as TLS, and anything else is passed through to the host
/// untouched. A plain-text request other than GET thus reaches a denied host.
#[test]
fn a_tunnel_to_a_denied_host_carries_no_plain_text_request_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let roots = write(dir.path(), "origin-ca.pem", &pki("unused").ca_pem);
    let denied = Origin::start_on(DENIED, None, Behaviour::Echo);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let b = Browser::new(&gw, &token);
    let answer = match b.connect(DENIED, denied.port) {
        Err(r) => r,
        Ok(tcp) => {
            let body = format!("secret={MARK}");
            let request = format!(
                "POST /exfiltrate HTTP/1.1\r\nHost: {DENIED}:{}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                denied.port,
                body.len()
            );
            probe_on(tcp, request.as_bytes(), false)
        }
    };
    assert_refused("POST in plain text to a denied host", &answer, &[403]);
    assert!(
        denied.seen().is_empty(),
        "the denied host received {:?}",
        denied.seen()
    );
    assert_no_panic(&gw);
}

/// The same with TLS: a ClientHello whose first byte arrives alone is not recognised as TLS by
/// the proxy library. It must never give the client an end-to-end TLS session with the host
/// itself (its own certificate), outside the recording and past deny rules: the tunnel leads
/// nowhere instead (psmgate points unrecognised tunnels of recorded and denied hosts at port 0).
#[test]
fn tls_whose_first_byte_arrives_alone_never_reaches_the_host_uninspected() {
    let dir = tempfile::tempdir().unwrap();
    let origin_pki = pki("origin");
    let roots = write(dir.path(), "origin-ca.pem", &origin_pki.ca_pem);
    let recorded = Origin::start(Some(origin_pki.server.clone()), Behaviour::Echo);
    let denied = Origin::start_on(DENIED, Some(origin_pki.server.clone()), Behaviour::Echo);
    let gw = gateway(&web_config(&[&roots], "15s"));
    let token = gw.grant("console", &["--ttl", "10m"]);
    let b = Browser::new(&gw, &token);
    // The client trusts the gateway CA and the web servers' own CA, as browsers trust public
    // CAs: what it gets shows which one answered.
    let trust = client_tls(&[b.ca_pem.as_slice(), origin_pki.ca_pem.as_bytes()].concat());
    let mut problems = Vec::new();
    for (host, origin, what) in [
        (Ipv4Addr::LOCALHOST, &recorded, "recorded"),
        (DENIED, &denied, "denied"),
    ] {
        let tcp = b
            .connect(host, origin.port)
            .unwrap_or_else(|r| panic!("CONNECT to the {what} host refused: {r:?}"));
        let conn = rustls::ClientConnection::new(trust.clone(), ServerName::from(IpAddr::V4(host)))
            .unwrap();
        let split = FirstByteAlone { tcp, first: true };
        let mut w = Wire::new(rustls::StreamOwned::new(conn, split));
        w.send(&get_at(host, origin.port, &format!("/{what}"), ""));
        let r = w.reply(false);
        let leaf =
            w.s.conn
                .peer_certificates()
                .and_then(|c| c.first().cloned());
        let host_itself = leaf.is_some_and(|leaf| {
            // The gateway's leaves are issued under its CA's name.
            !String::from_utf8_lossy(leaf.as_ref()).contains("psmgate web proxy CA")
        });
        if host_itself {
            problems.push(format!(
                "{what} host: a TLS session with the host itself (its own certificate); answer {:?}",
                r.map(|r| r.head.first)
            ));
        }
        if !origin.seen().is_empty() {
            problems.push(format!("the {what} host received {:?}", origin.seen()));
        }
    }
    assert_no_panic(&gw);
    assert!(problems.is_empty(), "{problems:#?}");
}
