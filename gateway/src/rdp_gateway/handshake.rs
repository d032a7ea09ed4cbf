//! The two connection legs up to the MCS connect: X.224 negotiation, TLS and CredSSP, towards
//! the client (psmgate as the server) and towards the target (psmgate as the client).
//!
//! CredSSP binds the NTLM exchange to the TLS public key each side sees ([MS-CSSP] 3.1.5), so
//! a gateway that records must run two separate CredSSP legs: the client proves the gateway
//! credential (an access token) to psmgate under psmgate's certificate, and psmgate proves the
//! vaulted target credential to the target under the target's certificate. The client never
//! sees the target credential and the target never sees the token.
//!
//! The client leg uses sspi's CredSSP server directly rather than `ironrdp-acceptor`'s CredSSP
//! sequence: the acceptor checks one fixed identity, while psmgate must look the password up
//! by the user and target the client names (every usable grant of that user on that target is
//! a candidate NTLM password), and then learn from the delegated credentials which token was
//! used so that a one-time grant is consumed.

use super::login::Login;
use crate::access::{AccessError, TokenAuthenticator};
use anyhow::{anyhow, bail, Context, Result};
use ironrdp_connector::sspi;
use ironrdp_connector::sspi::credssp::{
    CredSspServer, CredentialsProxy, EarlyUserAuthResult, NStatusCode, ServerMode, ServerState,
    TsRequest,
};
use ironrdp_connector::sspi::generator::GeneratorState;
use ironrdp_connector::sspi::{AuthIdentity, Username};
use ironrdp_pdu::nego::{
    ConnectionConfirm, ConnectionRequest, FailureCode, NegoRequestData, RequestFlags,
    ResponseFlags, SecurityProtocol,
};
use ironrdp_pdu::x224::X224;
use psmgate_storage::tokens::Grant;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest CredSSP message accepted (a TSRequest with NTLM tokens is a few KiB).
const MAX_TS_REQUEST: usize = 64 * 1024;
/// Most grants offered to the NTLM verifier for one user and target.
const MAX_CANDIDATES: usize = 16;

/// Bytes read from a peer but not consumed yet, carried from one stage to the next.
#[derive(Debug, Default)]
pub struct Leftover(pub Vec<u8>);

/// Reads until `size(buf)` knows the length of the next message and that many bytes are
/// there; returns the message and keeps the rest in `buf`.
async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
    max: usize,
    size: impl Fn(&[u8]) -> Result<Option<usize>>,
) -> Result<Vec<u8>> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some(len) = size(buf)? {
            if len > max {
                bail!("{what}: message of {len} bytes is over the {max}-byte limit");
            }
            if buf.len() >= len {
                let rest = buf.split_off(len);
                return Ok(std::mem::replace(buf, rest));
            }
        }
        let n = s
            .read(&mut chunk)
            .await
            .with_context(|| format!("reading {what}"))?;
        if n == 0 {
            bail!("connection closed while waiting for {what}");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one TPKT frame (the X.224 negotiation is slow path only).
async fn read_tpkt<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Vec<u8>> {
    read_message(
        s,
        buf,
        what,
        crate::rdp::framing::MAX_FRAME,
        |b| match ironrdp_pdu::find_size(b) {
            Ok(Some(info)) if info.action == ironrdp_pdu::Action::X224 && b[0] == 3 => {
                if info.length < 4 {
                    return Err(anyhow!("{what}: TPKT length {} out of range", info.length));
                }
                Ok(Some(info.length))
            }
            Ok(Some(_)) => Err(anyhow!("{what}: not a TPKT frame")),
            Ok(None) => Ok(None),
            Err(e) => Err(anyhow!("{what}: malformed RDP frame header: {e}")),
        },
    )
    .await
}

/// Reads one CredSSP TSRequest.
async fn read_ts_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Vec<u8>> {
    read_message(
        s,
        buf,
        what,
        MAX_TS_REQUEST,
        |b| match TsRequest::read_length(b) {
            Ok(len) => Ok(Some(len)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(anyhow!("{what}: not a CredSSP message: {e}")),
        },
    )
    .await
}

async fn send(s: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<()> {
    s.write_all(bytes).await?;
    s.flush().await?;
    Ok(())
}

fn encode_ts_request(ts: TsRequest) -> Result<Vec<u8>> {
    let len = usize::from(
        ts.buffer_len()
            .map_err(|e| anyhow!("CredSSP encoding: {e}"))?,
    );
    let mut out = Vec::with_capacity(len);
    ts.encode_ts_request(&mut out)
        .map_err(|e| anyhow!("CredSSP encoding: {e}"))?;
    Ok(out)
}

/// What the client asked for in its X.224 Connection Request.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// The request as received (its protocol flags go to the target unchanged).
    pub request: ConnectionRequest,
    /// What psmgate selected towards the client.
    pub selected: SecurityProtocol,
}

/// Why the client leg refused a client, for the audit log.
#[derive(Debug, thiserror::Error)]
pub enum ClientLegError {
    /// The client cannot do NLA, which psmgate requires (it authenticates the admin).
    #[error("client does not offer NLA (CredSSP); requested {0}")]
    NoNla(String),
    /// The client required a mode in which it does not delegate credentials.
    #[error("client requires Restricted Admin or Remote Credential Guard mode, which a recording gateway cannot serve")]
    RestrictedAdmin,
    /// The NLA sign-in failed.
    #[error("NLA sign-in refused: {0}")]
    SignIn(String),
    /// The token was refused after NLA.
    #[error("access denied: {0}")]
    Access(#[from] AccessError),
    /// Anything else (I/O, malformed messages).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Reads the client's Connection Request and answers it: NLA (HYBRID_EX when offered, else
/// HYBRID) or a failure naming NLA as required.
pub async fn negotiate_client<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<ClientRequest, ClientLegError> {
    let frame = read_tpkt(s, buf, "the client's X.224 Connection Request").await?;
    let X224(request) = ironrdp_core::decode::<X224<ConnectionRequest>>(&frame)
        .map_err(|e| anyhow!("malformed X.224 Connection Request: {e}"))?;
    let offered = request.protocol;
    let selected = if offered.contains(SecurityProtocol::HYBRID_EX) {
        SecurityProtocol::HYBRID_EX
    } else if offered.contains(SecurityProtocol::HYBRID) {
        SecurityProtocol::HYBRID
    } else {
        let refuse = ironrdp_core::encode_vec(&X224(ConnectionConfirm::Failure {
            code: FailureCode::HYBRID_REQUIRED_BY_SERVER,
        }))
        .map_err(|e| anyhow!("encoding X.224 failure: {e}"))?;
        let _ = send(s, &refuse).await;
        return Err(ClientLegError::NoNla(format!("{offered:?}")));
    };
    if request.flags.intersects(
        RequestFlags::RESTRICTED_ADMIN_MODE_REQUIRED
            | RequestFlags::REDIRECTED_AUTHENTICATION_MODE_REQUIRED,
    ) {
        let refuse = ironrdp_core::encode_vec(&X224(ConnectionConfirm::Failure {
            code: FailureCode::HYBRID_REQUIRED_BY_SERVER,
        }))
        .map_err(|e| anyhow!("encoding X.224 failure: {e}"))?;
        let _ = send(s, &refuse).await;
        return Err(ClientLegError::RestrictedAdmin);
    }
    let confirm = ironrdp_core::encode_vec(&X224(ConnectionConfirm::Response {
        flags: ResponseFlags::EXTENDED_CLIENT_DATA_SUPPORTED,
        protocol: selected,
    }))
    .map_err(|e| anyhow!("encoding X.224 Connection Confirm: {e}"))?;
    send(s, &confirm).await?;
    Ok(ClientRequest { request, selected })
}

/// The grants a signing-in user may prove, offered to sspi's NTLM verifier.
struct GrantCandidates {
    auth: Arc<TokenAuthenticator>,
    targets: Vec<String>,
    /// The login the client named (set when NTLM asks for candidates).
    login: Arc<std::sync::Mutex<Option<Login>>>,
}

impl GrantCandidates {
    fn candidates(&mut self, username: &Username) -> std::io::Result<Vec<AuthIdentity>> {
        let login = Login::parse(username.inner()).ok_or_else(|| {
            std::io::Error::other("user name names no target (use user@target or TARGET\\user)")
        })?;
        let target = login
            .resolve_target(self.targets.iter().map(String::as_str))
            .unwrap_or_else(|| login.target.clone());
        if let Ok(mut seen) = self.login.lock() {
            *seen = Some(Login {
                user: login.user.clone(),
                target: target.clone(),
            });
        }
        let grants = self
            .auth
            .usable_grants(
                &login.user,
                &target,
                time::OffsetDateTime::now_utc(),
                MAX_CANDIDATES,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "access grants could not be read");
                std::io::Error::other(e)
            })?;
        tracing::debug!(user = %login.user, target = %target, candidates = grants.len(), "NLA sign-in candidates");
        if grants.is_empty() {
            return Err(std::io::Error::other(
                "no usable grant for this user and target",
            ));
        }
        Ok(grants
            .into_iter()
            .map(|g| AuthIdentity {
                username: username.clone(),
                password: g.token.expose().to_string().into(),
            })
            .collect())
    }
}

impl CredentialsProxy for GrantCandidates {
    type AuthenticationData = AuthIdentity;

    fn auth_data_by_user(&mut self, username: &Username) -> std::io::Result<AuthIdentity> {
        self.candidates(username)?
            .into_iter()
            .next()
            .ok_or_else(|| std::io::Error::other("no usable grant"))
    }

    fn auth_data_candidates_by_user(
        &mut self,
        username: &Username,
    ) -> std::io::Result<Vec<AuthIdentity>> {
        self.candidates(username)
    }

    fn auth_data(&mut self) -> std::io::Result<Vec<AuthIdentity>> {
        // Only Negotiate (Kerberos) mode asks for every identity up front; psmgate runs NTLM.
        Ok(Vec::new())
    }
}

/// A client that proved a grant: the grant, and the login it named.
#[derive(Debug)]
pub struct SignedIn {
    /// The redeemed grant (user and target come from it).
    pub grant: Grant,
}

/// Runs CredSSP as the server towards the client (inside psmgate's TLS), then redeems the
/// delegated token. `public_key` is psmgate's certificate's subject public key.
pub async fn authenticate_client<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    selected: SecurityProtocol,
    auth: Arc<TokenAuthenticator>,
    targets: Vec<String>,
    peer: IpAddr,
    public_key: Vec<u8>,
) -> Result<SignedIn, ClientLegError> {
    auth.check_rate(peer, Instant::now())?;
    let seen = Arc::new(std::sync::Mutex::new(None::<Login>));
    let proxy = GrantCandidates {
        auth: auth.clone(),
        targets,
        login: seen.clone(),
    };
    let seen_login = || seen.lock().ok().and_then(|l| l.clone());
    let mut server = CredSspServer::new(
        public_key,
        proxy,
        ServerMode::Ntlm(sspi::ntlm::NtlmConfig::new(peer.to_string())),
    )
    .map_err(|e| anyhow!("CredSSP server: {e}"))?;
    let outcome = credssp_server_loop(s, buf, &mut server).await;
    let early = selected.contains(SecurityProtocol::HYBRID_EX);
    let identity = match outcome {
        Ok(identity) => identity,
        Err(e) => {
            auth.record_failure(peer, Instant::now());
            if early {
                let mut out = Vec::new();
                let _ = EarlyUserAuthResult::AccessDenied.to_buffer(&mut out);
                let _ = send(s, &out).await;
            }
            let who = seen_login()
                .map(|l| format!(" (user {} on target {})", l.user, l.target))
                .unwrap_or_default();
            return Err(ClientLegError::SignIn(format!("{e:#}{who}")));
        }
    };
    let login = Login::parse(identity.username.inner())
        .ok_or_else(|| ClientLegError::SignIn("delegated user name names no target".into()))?;
    let target = seen_login()
        .map(|l| l.target)
        .unwrap_or(login.target.clone());
    let token = identity.password.as_ref().to_string();
    let redeemed = auth.redeem(
        peer,
        &login.user,
        &target,
        &token,
        time::OffsetDateTime::now_utc(),
        Instant::now(),
    );
    drop(token);
    match redeemed {
        Ok(grant) => {
            if early {
                let mut out = Vec::new();
                EarlyUserAuthResult::Success
                    .to_buffer(&mut out)
                    .map_err(|e| anyhow!("encoding Early User Authorization Result: {e}"))?;
                send(s, &out).await?;
            }
            Ok(SignedIn { grant })
        }
        Err(e) => {
            if early {
                let mut out = Vec::new();
                let _ = EarlyUserAuthResult::AccessDenied.to_buffer(&mut out);
                let _ = send(s, &out).await;
            }
            Err(e.into())
        }
    }
}

/// The CredSSP server exchange; returns the delegated credentials.
async fn credssp_server_loop<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    server: &mut CredSspServer<GrantCandidates>,
) -> Result<AuthIdentity> {
    loop {
        let msg = read_ts_request(s, buf, "the client's CredSSP message").await?;
        let request =
            TsRequest::from_buffer(&msg).map_err(|e| anyhow!("malformed CredSSP message: {e}"))?;
        let result = {
            let mut generator = server.process(request);
            match generator.start() {
                GeneratorState::Completed(r) => r,
                GeneratorState::Suspended(_) => {
                    bail!("CredSSP asked for a network exchange (Kerberos), which psmgate does not do")
                }
            }
        };
        match result {
            Ok(ServerState::ReplyNeeded(ts)) => send(s, &encode_ts_request(ts)?).await?,
            Ok(ServerState::Finished(identity)) => return Ok(identity),
            Err(err) => {
                let logon_failure = err.error.error_type == sspi::ErrorKind::LogonDenied;
                if let Some(ts) = err.ts_request {
                    let mut ts = *ts;
                    if logon_failure {
                        ts.error_code = Some(NStatusCode::LOGON_FAILURE);
                    }
                    if let Ok(bytes) = encode_ts_request(ts) {
                        let _ = send(s, &bytes).await;
                    }
                }
                if logon_failure {
                    bail!("wrong password, or no usable grant for this user and target");
                }
                bail!("CredSSP failed: {}", err.error);
            }
        }
    }
}

/// The target leg's outcome before MCS.
#[derive(Debug, Clone, Copy)]
pub struct TargetLeg {
    /// What the target selected.
    pub selected: SecurityProtocol,
}

/// Sends the client's Connection Request on to the target (protocol flags unchanged: mstsc
/// rejects a connection whose flags were rewritten, error 0x609), with the target account as
/// the routing cookie, and reads the target's choice.
pub async fn negotiate_target<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    client: &ConnectionRequest,
    cookie: Option<&str>,
) -> Result<TargetLeg> {
    let request = ConnectionRequest {
        nego_data: cookie.map(|c| NegoRequestData::cookie(c.chars().take(9).collect())),
        flags: client.flags,
        protocol: client.protocol,
        correlation_info: client.correlation_info.clone(),
    };
    let bytes = ironrdp_core::encode_vec(&X224(request))
        .map_err(|e| anyhow!("encoding X.224 request: {e}"))?;
    send(s, &bytes).await?;
    let frame = read_tpkt(s, buf, "the target's X.224 Connection Confirm").await?;
    let X224(confirm) = ironrdp_core::decode::<X224<ConnectionConfirm>>(&frame)
        .map_err(|e| anyhow!("target sent a malformed X.224 Connection Confirm: {e}"))?;
    match confirm {
        ConnectionConfirm::Response { protocol, .. } => {
            if protocol.intersects(
                SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX | SecurityProtocol::SSL,
            ) {
                Ok(TargetLeg { selected: protocol })
            } else {
                bail!("target selected security {protocol:?}; psmgate needs TLS or NLA towards the target (Standard RDP Security is not supported)")
            }
        }
        ConnectionConfirm::Failure { code } => {
            bail!(
                "target refused the connection request (RDP negotiation failure code {})",
                u32::from(code)
            )
        }
    }
}

/// The vaulted account psmgate signs in to the target with.
#[derive(Clone)]
pub struct TargetAccount {
    /// User name (`user`, `DOMAIN\user` or `user@domain`).
    pub username: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for TargetAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetAccount")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Runs CredSSP as the client towards the target with the vaulted account. Errors never
/// contain the password.
pub async fn authenticate_target<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    selected: SecurityProtocol,
    server_name: &str,
    account: &TargetAccount,
    server_public_key: Vec<u8>,
) -> Result<()> {
    use ironrdp_connector::credssp::CredsspSequence;
    let credentials = ironrdp_connector::Credentials::UsernamePassword {
        username: account.username.clone(),
        password: account.password.clone(),
    };
    let (mut sequence, mut ts_request) = CredsspSequence::init(
        credentials,
        None,
        selected,
        ironrdp_connector::ServerName::new(server_name.to_string()),
        server_public_key,
        None,
    )
    .map_err(|e| anyhow!("CredSSP client: {}", e.kind()))?;
    let mut out = ironrdp_core::WriteBuf::new();
    loop {
        let state = {
            let mut generator = sequence.process_ts_request(ts_request);
            match generator.start() {
                GeneratorState::Completed(r) => r,
                GeneratorState::Suspended(_) => {
                    bail!("target CredSSP needs Kerberos, which psmgate does not do")
                }
            }
        };
        let state =
            state.map_err(|e| anyhow!("target NLA failed: {}", e.error_type_description()))?;
        out.clear();
        let written = sequence
            .handle_process_result(state, &mut out)
            .map_err(|e| anyhow!("target NLA failed: {}", e.kind()))?;
        if let Some(n) = written.size() {
            send(s, &out[..n]).await?;
        }
        let Some(hint) = sequence.next_pdu_hint() else {
            return Ok(());
        };
        let msg = read_message(s, buf, "the target's CredSSP message", MAX_TS_REQUEST, |b| {
            hint.find_size(b)
                .map(|o| o.map(|(_, n)| n))
                .map_err(|e| anyhow!("target sent a malformed CredSSP message: {e}"))
        })
        .await
        .map_err(|e| anyhow!("target NLA failed (the target closed the connection or sent garbage; a wrong vaulted password ends this way): {e:#}"))?;
        match sequence.decode_server_message(&msg) {
            Ok(Some(next)) => {
                if let Some(code) = next.error_code {
                    bail!("target NLA refused the vaulted credentials (NTSTATUS {code:?})");
                }
                ts_request = next;
            }
            Ok(None) => return Ok(()),
            Err(e) => bail!("target NLA failed: {}", e.kind()),
        }
    }
}

/// Describes an sspi error without its context (which could echo input).
trait DescribeSspi {
    fn error_type_description(&self) -> String;
}

impl DescribeSspi for ironrdp_connector::sspi::Error {
    fn error_type_description(&self) -> String {
        format!("{:?}", self.error_type)
    }
}
