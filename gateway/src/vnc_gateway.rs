//! The VNC gateway: any RFB viewer → psmgate → VNC server, recorded.
//!
//! Per connection ([`session`]):
//! 1. psmgate is the RFB server to the viewer ([`crate::vnc_handshake::server`]): VNC
//!    Authentication where the password is an access token (`psmgate access grant`); the token
//!    names the user and the target. A wrong, expired or used token fails inside RFB with the
//!    generic reason, is audited with the precise one, and no target connection is made. As
//!    `gateway.vnc_tls` says, VeNCrypt (X509Vnc) is offered first or required: the viewer then
//!    gets TLS with the gateway's certificate ([`crate::vnc_handshake::vencrypt`]) and the token
//!    check and the whole session run inside it.
//! 2. Policy is checked, then the recording is opened — before anything connects onward.
//! 3. psmgate connects to the target as an RFB client ([`crate::vnc_handshake::client`]) with the
//!    vaulted password (never logged), and sends the viewer the target's ServerInit under a
//!    psmgate name.
//! 4. Relay. Target → viewer bytes are forwarded as they arrive and then parsed
//!    ([`crate::vnc::ServerStream`]) into the recorder's framebuffer: forwarding never waits on
//!    recording. Viewer → target messages are parsed ([`crate::vnc::ClientStream`]): keys and
//!    pointer go to the transcript, `SetEncodings` is cut down to what psmgate decodes, and a
//!    `SetPixelFormat` is followed by the decoder.
//! 5. Clipboard ([`clipboard`]): every ClientCutText and ServerCutText is a `clipboard`
//!    transcript event; the target's `clipboard` policy decides whether it is forwarded. A
//!    denied ClientCutText is not forwarded. When ServerCutText is denied, target → viewer
//!    bytes go through a [`clipboard::CutTextGate`] instead of the fast path: they are
//!    forwarded once parsed, without the ServerCutText messages.
//! 6. The session ends when either side closes, the recording fails (fail-closed: the viewer
//!    is disconnected as soon as the recorder reports the failure), or the gateway stops; the
//!    recording is then sealed and indexed, with a reason naming the side that ended it.

pub mod clipboard;
pub mod input_gate;

use input_gate::{InputGate, Verdict};

use crate::access::{TokenAuthenticator, VncAuthAttempt, VIEWER_FAILURE_REASON};
use crate::recording::{Recorder, SessionInfo};
use crate::store::Store;
use crate::vnc::{ClientEvent, ClientStream, PixelFormat, ServerEvent, ServerStream};
use crate::vnc_handshake::client::{ClientEvent as TargetEvent, ClientHandshake, ClientOptions};
use crate::vnc_handshake::server::{ServerEvent as ViewerEvent, ServerHandshake, ServerOptions};
use crate::vnc_handshake::vncauth::VncPassword;
use crate::vnc_handshake::{SecurityType, ServerInit};
use anyhow::{anyhow, bail, Context, Result};
use clipboard::{ClipboardGuard, CutTextGate};
use psmgate_codecs::transcript::{keysym, ClipboardDirection, EventKind, Input};
use psmgate_policy::{Protocol, TargetAddress, VncTls};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a viewer may take for the whole RFB handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to and authenticating with the target may take.
const TARGET_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest viewer message held while incomplete (the clipboard limit plus headroom).
const MAX_VIEWER_MESSAGE: usize = crate::vnc::limits::MAX_CUT_TEXT_KEPT + 64 * 1024;
/// Read buffer per direction.
const READ_CHUNK: usize = 64 * 1024;
/// How long the decoder may take, once the session ends, to record what was already forwarded.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the VNC gateway needs.
pub struct VncGateway {
    /// The policy in force (each session keeps the one in force when it started).
    pub policy: Arc<crate::policy_cell::PolicyCell>,
    /// Data store.
    pub store: Store,
    /// Access-token checks.
    pub auth: TokenAuthenticator,
    /// TLS towards viewers (the gateway's certificate); needed unless `gateway.vnc_tls` is
    /// `off`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl VncGateway {
    /// The security types offered to viewers, as `gateway.vnc_tls` says.
    fn offered(&self) -> Result<Vec<SecurityType>> {
        let vencrypt = SecurityType::Other(SecurityType::VENCRYPT);
        Ok(
            match (self.policy.get().gateway.vnc_tls, self.tls.is_some()) {
                (VncTls::Off, _) => vec![SecurityType::VncAuth],
                (VncTls::Offer, true) => vec![vencrypt, SecurityType::VncAuth],
                (VncTls::Require, true) => vec![vencrypt],
                (_, false) => bail!("gateway.vnc_tls needs a TLS certificate, and none is loaded"),
            },
        )
    }
}

/// The TLS acceptor for viewers, from the gateway's TLS configuration.
///
/// TLS 1.3 half-RTT data is allowed: psmgate sends the VNC Authentication challenge right after
/// its handshake flight. TigerVNC's viewer sends its Finished message with `MSG_MORE` and then
/// waits for the challenge, so a server that waited for that Finished first would wait for good.
/// The challenge is a random nonce; sending it before the client's Finished discloses nothing.
pub fn viewer_tls(config: &rustls::ServerConfig) -> tokio_rustls::TlsAcceptor {
    let mut config = config.clone();
    config.send_half_rtt_data = true;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A viewer connection the relay runs on: plain TCP, or TLS over TCP.
pub trait ViewerIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The receiving half.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The sending half.
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// Splits the connection for the two relay directions.
    fn into_halves(self) -> (Self::Reader, Self::Writer);
}

impl ViewerIo for TcpStream {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;
    fn into_halves(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

/// A viewer connection inside TLS.
type TlsViewer = tokio_rustls::server::TlsStream<TcpStream>;

impl ViewerIo for TlsViewer {
    type Reader = tokio::io::ReadHalf<TlsViewer>;
    type Writer = tokio::io::WriteHalf<TlsViewer>;
    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}

/// Sends `bytes` and flushes (TLS holds records until flushed; for TCP this costs nothing).
async fn send(w: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

impl std::fmt::Debug for VncGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncGateway").finish_non_exhaustive()
    }
}

/// Accepts viewers until `shutdown` flips to true; each connection runs as its own task.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<VncGateway>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    crate::supervisor::accept_loop(listener, "vnc", shutdown, move |tcp, peer, stop| {
        session(gw.clone(), tcp, peer, stop)
    })
    .await
}

/// Reads once into `buf`; `Ok(0)` is end of stream.
async fn read_some(r: &mut (impl AsyncReadExt + Unpin), buf: &mut [u8]) -> Result<usize> {
    Ok(r.read(buf).await?)
}

/// An authenticated viewer, on the connection it authenticated over.
enum Accepted {
    /// Plain RFB.
    Plain(TcpStream),
    /// RFB inside TLS (VeNCrypt).
    Tls(Box<TlsViewer>),
}

/// What [`drive_viewer`] stopped for.
enum Step {
    /// The viewer chose VeNCrypt: run the TLS handshake next.
    StartTls,
    /// The token was accepted.
    Authenticated(psmgate_storage::tokens::Grant),
}

/// The viewer side of the handshake up to the authenticated grant, through TLS when the viewer
/// chose VeNCrypt.
async fn authenticate_viewer(
    gw: &VncGateway,
    mut tcp: TcpStream,
    peer: SocketAddr,
) -> Result<(Accepted, ServerHandshake, psmgate_storage::tokens::Grant)> {
    let mut challenge = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut challenge);
    let mut hs = ServerHandshake::new(ServerOptions {
        security_types: gw.offered()?,
        challenge,
    })?;
    match drive_viewer(gw, &mut hs, &mut tcp, peer, &challenge).await? {
        Step::Authenticated(grant) => Ok((Accepted::Plain(tcp), hs, grant)),
        Step::StartTls => {
            let acceptor = gw
                .tls
                .clone()
                .ok_or_else(|| anyhow!("VeNCrypt chosen without a TLS certificate"))?;
            // The challenge goes out inside TLS as soon as the server's flight is sent.
            hs.tls_established()?;
            let challenge_out = hs.take_output();
            let mut tls = acceptor
                .accept_with(tcp, |conn| {
                    // Buffered in rustls (never fails for in-memory plaintext).
                    let _ = std::io::Write::write_all(&mut conn.writer(), &challenge_out);
                })
                .await
                .context("TLS handshake with the viewer failed")?;
            tracing::debug!("viewer connection is TLS (VeNCrypt X509Vnc)");
            match drive_viewer(gw, &mut hs, &mut tls, peer, &challenge).await? {
                Step::Authenticated(grant) => Ok((Accepted::Tls(Box::new(tls)), hs, grant)),
                Step::StartTls => bail!("viewer negotiated TLS twice"),
            }
        }
    }
}

/// Runs the handshake on `conn` until TLS must start or the token was checked.
async fn drive_viewer(
    gw: &VncGateway,
    hs: &mut ServerHandshake,
    conn: &mut (impl AsyncRead + AsyncWrite + Unpin),
    peer: SocketAddr,
    challenge: &[u8; 16],
) -> Result<Step> {
    let mut buf = vec![0u8; 4096];
    loop {
        let out = hs.take_output();
        if !out.is_empty() {
            send(conn, &out).await?;
        }
        if let Some(ev) = hs.poll_event() {
            let response = match ev {
                ViewerEvent::NeedsVerification { response } => response,
                ViewerEvent::StartTls => return Ok(Step::StartTls),
                ViewerEvent::ClientInit { .. } => continue,
            };
            let attempt = VncAuthAttempt {
                client: peer.ip(),
                target: None,
                challenge,
                response: &response,
            };
            match gw
                .auth
                .authenticate(&attempt, time::OffsetDateTime::now_utc(), Instant::now())
            {
                Ok(grant) => {
                    hs.accept()?;
                    let out = hs.take_output();
                    send(conn, &out).await?;
                    return Ok(Step::Authenticated(grant));
                }
                Err(e) => {
                    let why = match &e {
                        crate::access::AccessError::Denied(d) => d.audit_reason().to_string(),
                        crate::access::AccessError::Store(s) => format!("token store error: {s}"),
                    };
                    audit(
                        gw,
                        "vnc_auth_failed",
                        &format!("client={peer} reason={why}"),
                    );
                    tracing::warn!(reason = %why, "VNC authentication refused");
                    hs.reject(VIEWER_FAILURE_REASON)?;
                    let out = hs.take_output();
                    let _ = send(conn, &out).await;
                    bail!("viewer authentication failed: {why}");
                }
            }
        }
        let n = read_some(conn, &mut buf).await?;
        if n == 0 {
            bail!("viewer closed the connection during the handshake");
        }
        if let Err(e) = hs.feed(&buf[..n]) {
            // A refusal queued with the error (VeNCrypt, RFB 3.3) still reaches the viewer.
            let out = hs.take_output();
            if !out.is_empty() {
                let _ = send(conn, &out).await;
            }
            return Err(e.into());
        }
    }
}

fn audit(gw: &VncGateway, action: &str, detail: &str) {
    crate::supervisor::audit(&gw.store, "vnc-gateway", action, detail);
}

/// Connects and authenticates to the target; returns the stream, the target's ServerInit and any
/// bytes that followed it.
async fn connect_target(
    addr: &str,
    password: Option<VncPassword>,
) -> Result<(TcpStream, ServerInit, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("target {addr} is unreachable"))?;
    let _ = tcp.set_nodelay(true);
    let mut hs = ClientHandshake::new(ClientOptions {
        password,
        shared: true,
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let out = hs.take_output();
        if !out.is_empty() {
            tcp.write_all(&out).await?;
        }
        while let Some(ev) = hs.poll_event() {
            if let TargetEvent::ServerInit(init) = ev {
                let rest = hs.take_leftover();
                return Ok((tcp, init, rest));
            }
        }
        let n = read_some(&mut tcp, &mut buf).await?;
        if n == 0 {
            bail!("target closed the connection during the handshake");
        }
        hs.feed(&buf[..n])
            .map_err(|e| anyhow!("target handshake failed: {e}"))?;
    }
}

/// One viewer connection, start to seal.
pub async fn session(
    gw: Arc<VncGateway>,
    viewer: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let _ = viewer.set_nodelay(true);
    let (conn, viewer_hs, grant) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, authenticate_viewer(&gw, viewer, peer))
            .await
            .map_err(|_| anyhow!("viewer did not finish the handshake in time"))??;
    match conn {
        Accepted::Plain(tcp) => authorised(gw, tcp, viewer_hs, grant, peer, shutdown).await,
        Accepted::Tls(tls) => authorised(gw, *tls, viewer_hs, grant, peer, shutdown).await,
    }
}

/// An authenticated viewer: policy, recording, target, relay, seal.
async fn authorised<V: ViewerIo>(
    gw: Arc<VncGateway>,
    viewer: V,
    mut viewer_hs: ServerHandshake,
    grant: psmgate_storage::tokens::Grant,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let (user, target_name) = (grant.user.clone(), grant.target.clone());
    let config = gw.policy.get();
    let Some(target) = config.target(&target_name) else {
        audit(
            &gw,
            "vnc_denied",
            &format!("client={peer} user={user} target={target_name} reason=unknown target"),
        );
        bail!("token names unknown target {target_name}");
    };
    let decision = config.is_allowed(&user, &target_name);
    if target.protocol != Protocol::Vnc || !decision.allowed {
        audit(
            &gw,
            "vnc_denied",
            &format!("client={peer} user={user} target={target_name} reason=no rule allows it"),
        );
        bail!("policy does not allow {user} to reach {target_name} over VNC");
    }
    let TargetAddress::HostPort { host, port } = &target.address else {
        bail!("target {target_name} has no host:port address");
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let password = match &target.password {
        Some(r) => {
            let secret = r
                .resolve()
                .map_err(|e| anyhow!("target {target_name} password: {e}"))?;
            Some(VncPassword::new(secret.expose().to_vec()))
        }
        None => None,
    };

    let guard = ClipboardGuard::new(config.effective_clipboard(&target_name).unwrap_or_default());
    // The recording exists before anything connects onward.
    let settings = crate::settings::recording_settings(&config, Some(&target_name))?;
    let info = SessionInfo {
        protocol: "vnc".into(),
        user: user.clone(),
        target: target_name.clone(),
        client_addr: peer.to_string(),
        policy_version: config.policy_version(),
    };
    let rec = crate::supervisor::start_recording(&gw.store, info.clone(), settings).await?;
    let limits = crate::live::SessionLimits::for_grant(&config, &grant);
    let mut live = crate::supervisor::go_live(&gw.store, &rec, &info, limits);
    tracing::info!(session = rec.session_id(), user = %user, target = %target_name, "VNC session authorised; recording");
    let outcome = run_session(
        &rec,
        &mut viewer_hs,
        viewer,
        Onward {
            addr: &addr,
            password,
            name: &target_name,
            guard,
        },
        &mut live,
        &mut shutdown,
    )
    .await;
    crate::supervisor::seal(&rec, &outcome).await;
    drop(live);
    outcome.map(|_| ())
}

/// Where and how a session continues once the viewer is authorised.
struct Onward<'a> {
    /// `host:port` of the target.
    addr: &'a str,
    /// The vaulted target password.
    password: Option<VncPassword>,
    /// The target's name.
    name: &'a str,
    /// The target's clipboard policy.
    guard: ClipboardGuard,
}

async fn run_session<V: ViewerIo>(
    rec: &crate::supervisor::SessionRecording,
    viewer_hs: &mut ServerHandshake,
    mut viewer: V,
    onward: Onward<'_>,
    live: &mut crate::live::LiveHandle,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<String> {
    let Onward {
        addr,
        password,
        name: target_name,
        guard,
    } = onward;
    let (target, init, target_rest) =
        match tokio::time::timeout(TARGET_TIMEOUT, connect_target(addr, password)).await {
            Ok(r) => r?,
            Err(_) => bail!("target {addr} did not complete the handshake in time"),
        };
    // The viewer's ClientInit arrives after our security result; wait for it.
    let mut buf = vec![0u8; 4096];
    while !viewer_hs.is_complete() {
        if let Some(ViewerEvent::ClientInit { .. }) = viewer_hs.poll_event() {
            break;
        }
        let n = read_some(&mut viewer, &mut buf).await?;
        if n == 0 {
            bail!("viewer closed the connection before ClientInit");
        }
        viewer_hs.feed(&buf[..n])?;
    }
    // The viewer decodes in the target's native format unless it asks for another; psmgate's
    // decoder follows. A colour-map target is switched to true colour for both.
    let native = init.pixel_format;
    let (format, force) = if native.validate_for_decoder().is_ok() {
        (native, false)
    } else {
        (PixelFormat::FORCED, true)
    };
    let mut shown = init.with_name(format!("psmgate: {target_name}"));
    if force {
        shown.pixel_format = format;
    }
    viewer_hs.send_server_init(&shown)?;
    let out = viewer_hs.take_output();
    send(&mut viewer, &out).await?;
    let viewer_rest = viewer_hs.take_leftover();
    rec.resize(u32::from(init.width), u32::from(init.height))?;

    let (target_r, mut target_w) = target.into_split();
    if force {
        target_w
            .write_all(&ClientEvent::SetPixelFormat(format).to_bytes())
            .await?;
    }
    let (viewer_r, viewer_w) = viewer.into_halves();
    let server_stream = ServerStream::new(format)?;
    let (fmt_tx, fmt_rx) = tokio::sync::mpsc::unbounded_channel::<PixelFormat>();
    let (drain_tx, drain_rx) = watch::channel(false);
    let down = tokio::spawn(target_to_viewer(
        rec.recorder().clone(),
        Downstream {
            target: target_r,
            viewer: viewer_w,
            stream: server_stream,
            gate: (!guard.to_client_allowed()).then(CutTextGate::new),
            guard,
        },
        target_rest,
        fmt_rx,
        drain_rx,
    ));
    let up = tokio::spawn(viewer_to_target(
        rec.recorder().clone(),
        viewer_r,
        target_w,
        guard,
        viewer_rest,
        fmt_tx,
        live.lock_signal(),
    ));
    let (mut down, mut up) = (down, up);
    let relay_end = |r: Result<Result<String>, tokio::task::JoinError>| match r {
        Ok(Ok(why)) => why,
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => format!("relay task failed: {e}"),
    };
    let relay = async {
        tokio::select! {
            r = &mut down => relay_end(r),
            r = &mut up => relay_end(r),
        }
    };
    let end = crate::supervisor::until_end(rec, relay, live, shutdown).await;
    up.abort();
    if !end.recording_failed && !down.is_finished() {
        // Everything the viewer was sent belongs in the recording: the target half stops
        // reading and lets the decoder finish what was forwarded (a viewer typically leaves
        // right after the update it asked for).
        let _ = drain_tx.send(true);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), &mut down).await;
    }
    down.abort();
    if end.recording_failed {
        // Both halves of the viewer's socket belong to the relay tasks: once they are
        // cancelled the viewer's connection is closed, before the seal is attempted.
        let _ = down.await;
        let _ = up.await;
        bail!("recording failed, session ended: {}", end.reason);
    }
    Ok(end.reason)
}

/// The target → viewer half of the relay.
struct Downstream<W> {
    target: OwnedReadHalf,
    viewer: W,
    stream: ServerStream,
    /// Present when ServerCutText must not reach the viewer: bytes are then forwarded after
    /// parsing, through the gate, instead of before.
    gate: Option<CutTextGate>,
    guard: ClipboardGuard,
}

/// Chunks of target output waiting for the decoder (each at most [`READ_CHUNK`]): 64 MiB. Only a
/// decoder that far behind makes forwarding wait; memory stays bounded.
const DECODE_QUEUE_CHUNKS: usize = 1024;

/// Target → viewer: forward first, then decode into the recording. Without a clipboard gate the
/// decoder runs as its own task fed through a bounded queue, so forwarding proceeds while the
/// previous chunk is being decoded; with a gate (ServerCutText denied) bytes must be parsed
/// before they may be forwarded, so both happen in this task.
///
/// When `drain` turns true (the session is ending for another reason), reading stops and the
/// decoder gets up to [`DRAIN_TIMEOUT`] to record what was already forwarded.
async fn target_to_viewer<W: AsyncWrite + Unpin>(
    rec: Arc<Recorder>,
    mut d: Downstream<W>,
    first: Vec<u8>,
    formats: tokio::sync::mpsc::UnboundedReceiver<PixelFormat>,
    mut drain: watch::Receiver<bool>,
) -> Result<String> {
    if d.gate.is_some() {
        return target_to_viewer_gated(rec, d, first, formats).await;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(DECODE_QUEUE_CHUNKS);
    let decoder = tokio::spawn(decode_loop(rec, d.stream, d.guard, formats, rx));
    // Dropping this task (abort) must not leave the decoder running detached.
    let mut decoder = AbortOnDrop(decoder);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending = first;
    loop {
        if !pending.is_empty() {
            send(&mut d.viewer, &pending)
                .await
                .context("writing to the viewer")?;
            if tx.send(std::mem::take(&mut pending)).await.is_err() {
                // The decoder stopped: its error says why.
                return match (&mut decoder.0).await {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => bail!("recording decoder stopped"),
                    Err(e) => bail!("recording decoder failed: {e}"),
                };
            }
        }
        let n = tokio::select! {
            r = d.target.read(&mut buf) => r.context("reading from the target")?,
            // Only `true` is ever sent; a dropped sender means the session is gone too.
            _ = drain.changed() => {
                // The session is over for the viewer: close its side now (a terminated
                // session's viewer is cut at once) and let the decoder finish.
                drop(d.viewer);
                drop(tx);
                return match tokio::time::timeout(DRAIN_TIMEOUT, &mut decoder.0).await {
                    Ok(Ok(r)) => r.map(|()| "session ended".into()),
                    Ok(Err(e)) => bail!("recording decoder failed: {e}"),
                    Err(_) => {
                        tracing::warn!("the decoder did not finish in time; the recording may miss the last update");
                        Ok("session ended".into())
                    }
                };
            }
            r = &mut decoder.0 => {
                return match r {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => bail!("recording decoder stopped"),
                    Err(e) => bail!("recording decoder failed: {e}"),
                };
            }
        };
        if n == 0 {
            // Let the decoder finish what was forwarded, so the recording has it.
            drop(tx);
            match (&mut decoder.0).await {
                Ok(r) => r?,
                Err(e) => bail!("recording decoder failed: {e}"),
            }
            return Ok("target closed the connection".into());
        }
        pending = buf[..n].to_vec();
    }
}

/// A task handle that aborts its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decodes forwarded target output into the recording.
async fn decode_loop(
    rec: Arc<Recorder>,
    mut stream: ServerStream,
    guard: ClipboardGuard,
    mut formats: tokio::sync::mpsc::UnboundedReceiver<PixelFormat>,
    mut chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    while let Some(chunk) = chunks.recv().await {
        while let Ok(f) = formats.try_recv() {
            stream.set_pixel_format(f)?;
        }
        stream.feed(&chunk);
        while let Some(event) = next_server_event(&rec, &mut stream)? {
            record_server_event(&rec, &guard, event)?;
        }
    }
    Ok(())
}

/// The next complete target message, decoded into the recording's framebuffer.
fn next_server_event(
    rec: &Recorder,
    stream: &mut ServerStream,
) -> Result<Option<crate::vnc::Parsed<ServerEvent>>> {
    match rec.screen(|fb| Ok(stream.next_event(fb))) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => bail!("target sent data psmgate cannot decode: {e}"),
        Err(e) => bail!("recording refused the screen update: {e}"),
    }
}

/// What a target message means for the transcript.
fn record_server_event(
    rec: &Recorder,
    guard: &ClipboardGuard,
    parsed: crate::vnc::Parsed<ServerEvent>,
) -> Result<()> {
    match parsed.event {
        ServerEvent::Resize { width, height } => {
            rec.resize(u32::from(width), u32::from(height))?;
        }
        ServerEvent::DesktopName(name) => {
            rec.event(EventKind::Title { title: name })?;
        }
        ServerEvent::CutText(t) => {
            for e in guard.transfer(ClipboardDirection::ToClient, &t).events {
                rec.event(e)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Target → viewer through the clipboard gate: parse, then forward what the gate releases.
async fn target_to_viewer_gated<W: AsyncWrite + Unpin>(
    rec: Arc<Recorder>,
    mut d: Downstream<W>,
    first: Vec<u8>,
    mut formats: tokio::sync::mpsc::UnboundedReceiver<PixelFormat>,
) -> Result<String> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending = first;
    let mut out = Vec::new();
    loop {
        if let Some(gate) = d.gate.as_mut() {
            if !pending.is_empty() {
                gate.received(&pending);
                while let Ok(f) = formats.try_recv() {
                    d.stream.set_pixel_format(f)?;
                }
                d.stream.feed(&pending);
                while let Some(parsed) = next_server_event(&rec, &mut d.stream)? {
                    gate.parsed(parsed.len, d.stream.at_message_boundary(), &mut out);
                    record_server_event(&rec, &d.guard, parsed)?;
                }
                gate.release(&mut out);
                if !out.is_empty() {
                    send(&mut d.viewer, &out)
                        .await
                        .context("writing to the viewer")?;
                    out.clear();
                }
            }
        }
        let n = d
            .target
            .read(&mut buf)
            .await
            .context("reading from the target")?;
        if n == 0 {
            return Ok("target closed the connection".into());
        }
        pending = buf[..n].to_vec();
    }
}

/// Records the button changes from mask `before` to `after` at (`x`, `y`): presses and
/// releases of buttons 1–3, wheel steps for buttons 4–7 pressed.
fn record_buttons(rec: &Recorder, before: u8, after: u8, x: u32, y: u32) -> Result<()> {
    for b in 0..8u8 {
        let bit = 1u8 << b;
        if (after ^ before) & bit == 0 {
            continue;
        }
        let down = after & bit != 0;
        match b {
            3 | 4 if down => rec.input(Input::Wheel {
                dx: 0,
                dy: if b == 3 { -1 } else { 1 },
            })?,
            5 | 6 if down => rec.input(Input::Wheel {
                dx: if b == 5 { -1 } else { 1 },
                dy: 0,
            })?,
            0..=2 => rec.input(Input::Button {
                button: b + 1,
                down,
                x,
                y,
            })?,
            _ => {}
        }
    }
    Ok(())
}

/// Viewer → target: parse every message, record input, rewrite what must be rewritten.
async fn viewer_to_target<R: AsyncRead + Unpin>(
    rec: Arc<Recorder>,
    mut viewer: R,
    mut target: OwnedWriteHalf,
    guard: ClipboardGuard,
    first: Vec<u8>,
    formats: tokio::sync::mpsc::UnboundedSender<PixelFormat>,
    lock: tokio::sync::watch::Receiver<Option<crate::live::LockRequest>>,
) -> Result<String> {
    let mut gate = InputGate::new();
    let mut stream = ClientStream::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut raw: Vec<u8> = Vec::new();
    let mut buttons = 0u8;
    let mut requested_update = false;
    let mut data = first;
    loop {
        if !data.is_empty() {
            gate.set_locked(lock.borrow().is_some());
            stream.feed(&data);
            raw.extend_from_slice(&data);
            let mut out = Vec::with_capacity(raw.len());
            let mut used = 0usize;
            while let Some(p) = stream
                .next_event()
                .map_err(|e| anyhow!("viewer sent a malformed message: {e}"))?
            {
                let bytes = &raw[used..used + p.len];
                used += p.len;
                match &p.event {
                    ClientEvent::SetEncodings(list) => {
                        let kept = guard.filter_encodings(list);
                        out.extend_from_slice(&ClientEvent::SetEncodings(kept).to_bytes());
                        continue;
                    }
                    ClientEvent::SetPixelFormat(f) => {
                        f.validate_for_decoder().map_err(|e| {
                            anyhow!("viewer asked for an unsupported pixel format: {e}")
                        })?;
                        if requested_update {
                            bail!("viewer changed its pixel format mid-session; set a fixed colour level in the viewer");
                        }
                        let _ = formats.send(*f);
                    }
                    ClientEvent::UpdateRequest { .. } => requested_update = true,
                    ClientEvent::Key { keysym: ks, down }
                    | ClientEvent::QemuKey {
                        keysym: ks, down, ..
                    } => {
                        if gate.key(*ks, *down) == Verdict::Drop {
                            continue;
                        }
                        let (key, ch) = keysym::describe(*ks);
                        rec.input(Input::Key {
                            key,
                            ch,
                            down: *down,
                        })?;
                    }
                    ClientEvent::Pointer { mask, x, y } => {
                        let sent = match gate.pointer(*mask) {
                            Verdict::Pass => *mask,
                            Verdict::Drop => continue,
                            Verdict::Pointer(released) => released,
                        };
                        let (px, py) = (u32::from(*x), u32::from(*y));
                        record_buttons(&rec, buttons, sent, px, py)?;
                        buttons = sent;
                        rec.input(Input::Pointer { x: px, y: py })?;
                        if sent != *mask {
                            // Locked: only the releases of what the target holds go on.
                            let released = ClientEvent::Pointer {
                                mask: sent,
                                x: *x,
                                y: *y,
                            };
                            out.extend_from_slice(&released.to_bytes());
                            continue;
                        }
                    }
                    ClientEvent::CutText(t) => {
                        if gate.cut_text() == Verdict::Drop {
                            continue;
                        }
                        let transfer = guard.transfer(ClipboardDirection::ToTarget, t);
                        for e in transfer.events {
                            rec.event(e)?;
                        }
                        if !transfer.allowed {
                            continue;
                        }
                    }
                    _ => {}
                }
                out.extend_from_slice(bytes);
            }
            raw.drain(..used);
            // A message is forwarded once complete, so an incomplete one is held here: bound it
            // (a viewer announcing a huge clipboard must not grow the gateway's memory).
            if raw.len() > MAX_VIEWER_MESSAGE {
                bail!(
                    "viewer sent a message over {} MiB (clipboard too large); session ended",
                    MAX_VIEWER_MESSAGE >> 20
                );
            }
            if !out.is_empty() {
                target
                    .write_all(&out)
                    .await
                    .context("writing to the target")?;
            }
        }
        let n = viewer
            .read(&mut buf)
            .await
            .context("reading from the viewer")?;
        if n == 0 {
            return Ok("viewer closed the connection".into());
        }
        data = buf[..n].to_vec();
    }
}
