//! The RDP gateway: mstsc / FreeRDP → psmgate (TLS + NLA) → RDP server, recorded.
//!
//! Per connection ([`session`]):
//! 1. X.224 negotiation with the client ([`handshake::negotiate_client`]): psmgate requires
//!    NLA (CredSSP) and selects HYBRID_EX when offered, else HYBRID; a client that cannot do NLA
//!    gets the standard "HYBRID required" failure.
//! 2. TLS with the gateway's certificate, then CredSSP as the server
//!    ([`handshake::authenticate_client`]). The admin signs in as `user@target` or
//!    `TARGET\user` ([`login`]) with an access token from `psmgate access grant` as the
//!    password. A wrong token fails inside NLA exactly like a wrong password at a real server
//!    (STATUS_LOGON_FAILURE), is audited with the precise reason, and nothing connects onward.
//! 3. Policy is checked and the recording is opened — before anything connects onward.
//! 4. The target: the client's X.224 request is sent on with its protocol flags unchanged,
//!    then TLS (the target's certificate fingerprint is logged) and, when the target selected
//!    NLA, CredSSP as the client with the vaulted account ([`handshake::authenticate_target`]).
//!    A target that only does TLS (xrdp) gets the vaulted account in the Client Info PDU.
//! 5. Relay ([`relay`], [`tracker`]): frames are forwarded as they arrive, a few
//!    connection-sequence PDUs are rewritten on the way (selected protocol, denied channels,
//!    credentials, capabilities), input goes to the transcript, the clipboard channel follows
//!    the target's policy, and server graphics are decoded passively into the recording.
//! 6. The session ends when either side closes, the recording fails (fail-closed), or the
//!    gateway stops; the recording is sealed with the reason.

pub mod handshake;
pub mod login;
pub mod relay;
pub mod tracker;

use crate::access::{AccessError, TokenAuthenticator};
use crate::rdp::cliprdr::ClipboardFilter;
use crate::rdp::drdynvc::DynamicChannelFilter;
use crate::rdp::pdu_rewrite::TargetCredentials;
use crate::recording::SessionInfo;
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use handshake::{ClientLegError, TargetAccount};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::server_error_info::ProtocolIndependentCode;
use psmgate_policy::{Protocol, TargetAddress};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracker::{Tracker, TrackerConfig};

/// How long a client may take from TCP connect to a finished NLA sign-in.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting and signing in to the target may take.
const TARGET_TIMEOUT: Duration = Duration::from_secs(20);

/// What the RDP gateway needs.
pub struct RdpGateway {
    /// The policy in force (each session keeps the one in force when it started).
    pub policy: Arc<crate::policy_cell::PolicyCell>,
    /// Data store.
    pub store: Store,
    /// Access-token checks.
    pub auth: Arc<TokenAuthenticator>,
    /// TLS towards clients (the gateway's certificate).
    pub tls: tokio_rustls::TlsAcceptor,
    /// The subject public key of that certificate (CredSSP binds to it).
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for RdpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpGateway").finish_non_exhaustive()
    }
}

/// The TLS acceptor for RDP clients, from the gateway's TLS configuration.
///
/// No TLS 1.3 session tickets are sent: nothing resumes an RDP session's TLS, and FreeRDP 2
/// stalls when tickets arrive in the same read as the first CredSSP reply (OpenSSL consumes
/// both records, reports the ticket as "want read", and the client then waits on a socket that
/// has nothing more to say).
pub fn client_tls(config: &rustls::ServerConfig) -> tokio_rustls::TlsAcceptor {
    let mut config = config.clone();
    config.send_tls13_tickets = 0;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Accepts RDP clients until `shutdown` flips to true; each connection runs as its own task.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<RdpGateway>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    crate::supervisor::accept_loop(listener, "rdp", shutdown, move |tcp, peer, stop| {
        session(gw.clone(), tcp, peer, stop)
    })
    .await
}

fn audit(gw: &RdpGateway, action: &str, detail: &str) {
    crate::supervisor::audit(&gw.store, "rdp-gateway", action, detail);
}

/// The client leg up to a redeemed grant.
async fn sign_in(
    gw: &RdpGateway,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Vec<u8>,
    handshake::ClientRequest,
    psmgate_storage::tokens::Grant,
)> {
    let mut tcp = tcp;
    let mut buf = Vec::new();
    let refused = |e: ClientLegError| -> anyhow::Error {
        let why = match &e {
            ClientLegError::Access(AccessError::Denied(d)) => d.to_string(),
            other => other.to_string(),
        };
        audit(
            gw,
            "rdp_auth_failed",
            &format!("client={peer} reason={why}"),
        );
        tracing::warn!(reason = %why, "RDP sign-in refused");
        anyhow!("client sign-in refused: {why}")
    };
    let request = handshake::negotiate_client(&mut tcp, &mut buf)
        .await
        .map_err(refused)?;
    if !buf.is_empty() {
        bail!("client sent data before the X.224 Connection Confirm");
    }
    let mut tls = gw
        .tls
        .accept(tcp)
        .await
        .context("TLS handshake with the client failed")?;
    let targets: Vec<String> = gw.policy.get().targets.keys().cloned().collect();
    let signed = handshake::authenticate_client(
        &mut tls,
        &mut buf,
        request.selected,
        gw.auth.clone(),
        targets,
        peer.ip(),
        gw.public_key.clone(),
    )
    .await
    .map_err(refused)?;
    Ok((tls, buf, request, signed.grant))
}

/// One client connection, start to seal.
pub async fn session(
    gw: Arc<RdpGateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let _ = tcp.set_nodelay(true);
    let (client, client_rest, request, grant) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, sign_in(&gw, tcp, peer))
            .await
            .map_err(|_| anyhow!("client did not finish the NLA sign-in in time"))??;
    let (user, target_name) = (grant.user.clone(), grant.target.clone());
    let config = gw.policy.get();
    let Some(target) = config.target(&target_name) else {
        audit(
            &gw,
            "rdp_denied",
            &format!("client={peer} user={user} target={target_name} reason=unknown target"),
        );
        bail!("grant names unknown target {target_name}");
    };
    if target.protocol != Protocol::Rdp || !config.is_allowed(&user, &target_name).allowed {
        audit(
            &gw,
            "rdp_denied",
            &format!("client={peer} user={user} target={target_name} reason=no rule allows it"),
        );
        bail!("policy does not allow {user} to reach {target_name} over RDP");
    }
    let TargetAddress::HostPort { host, port } = &target.address else {
        bail!("target {target_name} has no host:port address");
    };
    let (host, port) = (host.clone(), *port);
    let account = TargetAccount {
        username: target.username.clone().unwrap_or_default(),
        password: match &target.password {
            Some(r) => {
                let secret = r
                    .resolve()
                    .map_err(|e| anyhow!("target {target_name} password: {e}"))?;
                String::from_utf8(secret.expose().to_vec())
                    .map_err(|_| anyhow!("target {target_name} password is not UTF-8"))?
            }
            None => String::new(),
        },
    };
    let allowed_channels = config.rdp_channels(&target_name);
    let dynamic_channels = config.rdp_dynamic_channels(&target_name);
    let clipboard = config.effective_clipboard(&target_name).unwrap_or_default();
    let settings = crate::settings::recording_settings(&config, Some(&target_name))?;
    let info = SessionInfo {
        protocol: "rdp".into(),
        user: user.clone(),
        target: target_name.clone(),
        client_addr: peer.to_string(),
        policy_version: config.policy_version(),
    };
    let rec = crate::supervisor::start_recording(&gw.store, info.clone(), settings).await?;
    let limits = crate::live::SessionLimits::for_grant(&config, &grant);
    let mut live = crate::supervisor::go_live(&gw.store, &rec, &info, limits);
    tracing::info!(session = rec.session_id(), user = %user, target = %target_name, "RDP session authorised; recording");
    let onward = Onward {
        host: &host,
        port,
        account,
        request: &request.request,
        allowed_channels,
        clipboard: ClipboardFilter::new(clipboard),
        dynamic_channels: DynamicChannelFilter::new(dynamic_channels),
    };
    let outcome = run_session(&rec, client, client_rest, onward, &mut live, shutdown).await;
    crate::supervisor::seal(&rec, &outcome).await;
    drop(live);
    outcome.map(|_| ())
}

/// Where and how the session continues once the client is signed in.
struct Onward<'a> {
    host: &'a str,
    port: u16,
    account: TargetAccount,
    request: &'a ironrdp_pdu::nego::ConnectionRequest,
    allowed_channels: Vec<String>,
    clipboard: ClipboardFilter,
    dynamic_channels: DynamicChannelFilter,
}

/// The target leg: TCP, X.224, TLS and (when selected) NLA.
async fn connect_target(
    o: &Onward<'_>,
) -> Result<(
    tokio_rustls::client::TlsStream<TcpStream>,
    Vec<u8>,
    SecurityProtocol,
    String,
)> {
    let addr = if o.host.contains(':') {
        format!("[{}]:{}", o.host, o.port)
    } else {
        format!("{}:{}", o.host, o.port)
    };
    let mut tcp = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("target {addr} is unreachable"))?;
    let _ = tcp.set_nodelay(true);
    let mut buf = Vec::new();
    let cookie = o.account.username.rsplit('\\').next().unwrap_or_default();
    let leg = handshake::negotiate_target(
        &mut tcp,
        &mut buf,
        o.request,
        (!cookie.is_empty()).then_some(cookie),
    )
    .await?;
    if !buf.is_empty() {
        bail!("target sent data before TLS started");
    }
    let name = rustls::pki_types::ServerName::try_from(o.host.to_string())
        .map_err(|e| anyhow!("target host {} is not a valid TLS name: {e}", o.host))?;
    let connector = tokio_rustls::TlsConnector::from(target_tls_config()?);
    let mut tls = connector
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with target {addr} failed"))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow!("target {addr} presented no TLS certificate"))?
        .clone();
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert.as_ref()));
    if leg
        .selected
        .intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX)
    {
        let key = crate::tls::subject_public_key(cert.as_ref())?;
        handshake::authenticate_target(&mut tls, &mut buf, leg.selected, o.host, &o.account, key)
            .await?;
    }
    Ok((tls, buf, leg.selected, fingerprint))
}

async fn run_session(
    rec: &crate::supervisor::SessionRecording,
    client: tokio_rustls::server::TlsStream<TcpStream>,
    client_rest: Vec<u8>,
    onward: Onward<'_>,
    live: &mut crate::live::LiveHandle,
    mut shutdown: watch::Receiver<bool>,
) -> Result<String> {
    let (target, target_rest, selected, fingerprint) =
        match tokio::time::timeout(TARGET_TIMEOUT, connect_target(&onward)).await {
            Ok(r) => r?,
            Err(_) => bail!("target did not complete the connection in time"),
        };
    tracing::info!(target_cert_sha256 = %fingerprint, protocol = ?selected, "connected to the target");
    let (username, domain) = split_account(&onward.account.username);
    let tracker = Tracker::new(TrackerConfig {
        target_protocol: selected,
        client_protocols: onward.request.protocol,
        allowed_channels: onward.allowed_channels,
        credentials: TargetCredentials {
            username,
            domain,
            password: onward.account.password.clone(),
        },
        clipboard: onward.clipboard,
        dynamic_channels: onward.dynamic_channels,
    });
    let (bye, bye_rx) = tokio::sync::oneshot::channel();
    let mut relay = tokio::spawn(relay::relay(
        rec.recorder().clone(),
        tracker,
        client,
        client_rest,
        target,
        target_rest,
        bye_rx,
        live.lock_signal(),
    ));
    let running = async {
        match (&mut relay).await {
            Ok(Ok(why)) => why,
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => format!("relay task failed: {e}"),
        }
    };
    let end = crate::supervisor::until_end(rec, running, live, &mut shutdown).await;
    if !relay.is_finished() {
        // psmgate ends the session: tell the client why, where RDP has a way to.
        let code = if end.recording_failed {
            ProtocolIndependentCode::ServerDeniedConnection
        } else {
            ProtocolIndependentCode::ServerShutdown
        };
        let _ = bye.send(code);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut relay).await;
        relay.abort();
    }
    if end.recording_failed {
        bail!("recording failed, session ended: {}", end.reason);
    }
    Ok(end.reason)
}

/// `DOMAIN\user` → (`user`, `DOMAIN`); `user@domain` and `user` stay whole.
fn split_account(username: &str) -> (String, Option<String>) {
    match username.split_once('\\') {
        Some((d, u)) => (u.to_string(), Some(d.to_string())),
        None => (username.to_string(), None),
    }
}

/// TLS towards targets. RDP servers nearly always present self-signed certificates (Windows
/// generates one per host), so the chain is not verified; the certificate's SHA-256
/// fingerprint is logged for every session. What protects the credential is NLA: CredSSP binds
/// the exchange to the key psmgate sees.
fn target_tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (see [`target_tls_config`]) while still checking that the
/// handshake is signed by the key in it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
