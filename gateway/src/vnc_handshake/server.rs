//! psmgate as RFB server, facing the viewer.
//!
//! ```text
//! psmgate → viewer   "RFB 003.008\n"                    (on creation)
//! viewer  → psmgate  "RFB 003.00x\n"
//! 3.3:     psmgate → u32 security type (+ 16-byte challenge for VNC Authentication)
//! 3.7/3.8: psmgate → u8 count, types;  viewer → u8 chosen type (+ challenge for type 2)
//! viewer  → psmgate  16-byte response           → ServerEvent::NeedsVerification
//! caller: accept() → u32 0 (OK)   |   reject(reason) → u32 1 (+ reason in 3.8), closed
//! viewer  → psmgate  ClientInit (u8 shared)     → ServerEvent::ClientInit
//! caller: send_server_init(target's ServerInit, renamed)  → handshake complete
//! ```
//!
//! With security type None, 3.8 still sends SecurityResult OK; 3.3 and 3.7 go straight to
//! ClientInit.
//!
//! With VeNCrypt (19, RFB 3.7 and 3.8 only) the viewer's choice is followed by the
//! [`vencrypt`](super::vencrypt) negotiation; once its go-ahead is queued the caller gets
//! [`ServerEvent::StartTls`], sends the output, runs the TLS handshake, calls
//! [`ServerHandshake::tls_established`] and continues over TLS from the VNC Authentication
//! challenge on. An RFB 3.3 viewer cannot choose: it gets the first offered type other than
//! VeNCrypt, or a connection failure when VeNCrypt is the only one.
//!
//! Errors are terminal. Output queued before an error (for example the failure message of
//! [`ServerHandshake::reject`]) should still be sent before closing the connection.

use std::collections::VecDeque;

use super::types::{parse_banner, truncate_utf8, VERSION_LEN};
use super::vencrypt::{VencryptError, VencryptServer};
use super::vncauth::CHALLENGE_LEN;
use super::{
    ProtocolVersion, SecurityType, ServerInit, VersionError, MAX_BUFFERED, MAX_REASON_LEN,
};

/// Configuration of one viewer handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Security types to offer, in order of preference. Only [`SecurityType::None`] (offer it
    /// only when policy allows unauthenticated viewers), [`SecurityType::VncAuth`] and VeNCrypt
    /// (`SecurityType::Other(SecurityType::VENCRYPT)`, X509Vnc: TLS then VNC Authentication)
    /// are valid. RFB 3.3 viewers get the first one other than VeNCrypt.
    pub security_types: Vec<SecurityType>,
    /// The VNC Authentication challenge: 16 bytes from a cryptographic random source.
    pub challenge: [u8; CHALLENGE_LEN],
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The viewer answered the challenge. Find the secret for which
    /// [`vncauth::verify`](super::vncauth::verify) accepts `response`, then call
    /// [`ServerHandshake::accept`] or [`ServerHandshake::reject`].
    NeedsVerification {
        /// The viewer's 16-byte response.
        response: [u8; CHALLENGE_LEN],
    },
    /// VeNCrypt was negotiated. Send the output, run the TLS handshake on the connection (the
    /// viewer speaks first), then call [`ServerHandshake::tls_established`] and continue over
    /// TLS.
    StartTls,
    /// The viewer sent ClientInit. Connect to the target, then call
    /// [`ServerHandshake::send_server_init`].
    ClientInit {
        /// Whether the viewer asked to share the desktop with other clients.
        shared: bool,
    },
}

/// Why the viewer handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// The options are unusable.
    #[error("invalid VNC handshake options: {0}")]
    InvalidOptions(&'static str),
    /// The viewer's ProtocolVersion was malformed or unsupported.
    #[error("viewer: {0}")]
    Version(#[from] VersionError),
    /// The viewer chose a security type that was not offered.
    #[error("viewer chose security type {0}, which was not offered")]
    SecurityTypeNotOffered(u8),
    /// The VeNCrypt negotiation failed.
    #[error("{0}")]
    Vencrypt(#[from] VencryptError),
    /// An RFB 3.3 viewer cannot choose VeNCrypt and nothing else is offered.
    #[error("viewer speaks RFB 3.3, which cannot negotiate the required VeNCrypt (TLS)")]
    TlsRequired,
    /// The viewer sent more data than the handshake allows.
    #[error("viewer sent more than {MAX_BUFFERED} bytes during the handshake")]
    TooMuchInput,
    /// The caller called a method that does not fit the current step.
    #[error("{0} called at the wrong step of the VNC handshake")]
    WrongStep(&'static str),
    /// The handshake already failed or the viewer was rejected.
    #[error("the VNC handshake with the viewer is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Version,
    SecurityChoice,
    Vencrypt,
    AwaitingTls,
    AuthResponse,
    Verifying,
    ClientInit,
    ServerInit,
    Done,
    Closed,
}

/// The viewer-side handshake state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct ServerHandshake {
    options: ServerOptions,
    state: State,
    version: Option<ProtocolVersion>,
    security: Option<SecurityType>,
    vencrypt: Option<VencryptServer>,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<ServerEvent>,
}

impl ServerHandshake {
    /// Starts a handshake; the ProtocolVersion message is queued for sending at once.
    pub fn new(options: ServerOptions) -> Result<Self, ServerError> {
        let types = &options.security_types;
        if types.is_empty() {
            return Err(ServerError::InvalidOptions("no security type to offer"));
        }
        if types.iter().any(|t| {
            !matches!(
                t,
                SecurityType::None
                    | SecurityType::VncAuth
                    | SecurityType::Other(SecurityType::VENCRYPT)
            )
        }) {
            return Err(ServerError::InvalidOptions(
                "only None, VNC Authentication and VeNCrypt can be offered",
            ));
        }
        if types
            .iter()
            .enumerate()
            .any(|(i, t)| types[..i].contains(t))
        {
            return Err(ServerError::InvalidOptions("security types listed twice"));
        }
        Ok(ServerHandshake {
            options,
            state: State::Version,
            version: None,
            security: None,
            vencrypt: None,
            input: Vec::new(),
            output: ProtocolVersion::V3_8.banner().to_vec(),
            events: VecDeque::new(),
        })
    }

    /// Processes bytes received from the viewer.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ServerError> {
        if self.state == State::Closed {
            return Err(ServerError::Closed);
        }
        self.input.extend_from_slice(data);
        if self.state != State::Done && self.input.len() > MAX_BUFFERED {
            return self.fail(ServerError::TooMuchInput);
        }
        self.advance()
    }

    /// Bytes to send to the viewer (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The next event the caller must act on, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Accepts the viewer's response (after [`ServerEvent::NeedsVerification`]).
    pub fn accept(&mut self) -> Result<(), ServerError> {
        self.expect_step(State::Verifying, "accept")?;
        self.output.extend_from_slice(&0u32.to_be_bytes());
        self.state = State::ClientInit;
        self.advance()
    }

    /// Continues after [`ServerEvent::StartTls`] once TLS is being set up on the connection:
    /// queues the VNC Authentication challenge. From here on, everything is sent and received
    /// over TLS (the challenge may be handed to the TLS layer before its handshake completes, as
    /// TLS 1.3 half-RTT data).
    pub fn tls_established(&mut self) -> Result<(), ServerError> {
        self.expect_step(State::AwaitingTls, "tls_established")?;
        self.output.extend_from_slice(&self.options.challenge);
        self.state = State::AuthResponse;
        self.advance()
    }

    /// Refuses the viewer (after [`ServerEvent::NeedsVerification`]): queues SecurityResult
    /// "failed", with `reason` in RFB 3.8 (cut to [`MAX_REASON_LEN`] bytes), and closes the
    /// handshake. Send the output, then close the connection.
    ///
    /// `reason` is shown to the viewer: keep it generic ("authentication failed").
    pub fn reject(&mut self, reason: &str) -> Result<(), ServerError> {
        self.expect_step(State::Verifying, "reject")?;
        self.output.extend_from_slice(&1u32.to_be_bytes());
        if self.version == Some(ProtocolVersion::V3_8) {
            let reason = truncate_utf8(reason, MAX_REASON_LEN);
            // At most MAX_REASON_LEN bytes: fits in u32.
            self.output
                .extend_from_slice(&(reason.len() as u32).to_be_bytes());
            self.output.extend_from_slice(reason.as_bytes());
        }
        self.state = State::Closed;
        self.input.clear();
        Ok(())
    }

    /// Sends the ServerInit (after [`ServerEvent::ClientInit`]), completing the handshake.
    ///
    /// Pass the target's ServerInit with the desktop name psmgate wants the viewer to see, for
    /// example `target_init.with_name(format!("psmgate: {target}"))`.
    pub fn send_server_init(&mut self, init: &ServerInit) -> Result<(), ServerError> {
        self.expect_step(State::ServerInit, "send_server_init")?;
        self.output.extend_from_slice(&init.encode());
        self.state = State::Done;
        Ok(())
    }

    /// Whether the handshake completed.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the handshake failed or the viewer was rejected.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The negotiated protocol version, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The security type in use, once chosen.
    pub fn security_type(&self) -> Option<SecurityType> {
        self.security
    }

    /// Bytes received after the handshake's last message, for the message codec (drained).
    /// Empty until the handshake is complete.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        if self.state == State::Done {
            std::mem::take(&mut self.input)
        } else {
            Vec::new()
        }
    }

    fn expect_step(&mut self, state: State, what: &'static str) -> Result<(), ServerError> {
        match self.state {
            s if s == state => Ok(()),
            State::Closed => Err(ServerError::Closed),
            _ => Err(ServerError::WrongStep(what)),
        }
    }

    fn fail<T>(&mut self, err: ServerError) -> Result<T, ServerError> {
        self.state = State::Closed;
        self.input.clear();
        self.events.clear();
        Err(err)
    }

    /// Removes and returns the first `n` buffered bytes, if that many are buffered.
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.input.len() >= n).then(|| self.input.drain(..n).collect())
    }

    fn advance(&mut self) -> Result<(), ServerError> {
        loop {
            match self.state {
                State::Version => {
                    let Some(banner) = self.take(VERSION_LEN) else {
                        return Ok(());
                    };
                    let version = match parse_banner(&banner)
                        .and_then(|(major, minor)| ProtocolVersion::for_viewer(major, minor))
                    {
                        Ok(v) => v,
                        Err(e) => return self.fail(e.into()),
                    };
                    self.version = Some(version);
                    if let Err(e) = self.offer_security(version) {
                        return self.fail(e);
                    }
                }
                State::SecurityChoice => {
                    let Some(choice) = self.take(1) else {
                        return Ok(());
                    };
                    let chosen = SecurityType::from_u8(choice[0]);
                    if !self.options.security_types.contains(&chosen) {
                        return self.fail(ServerError::SecurityTypeNotOffered(choice[0]));
                    }
                    self.start_security(chosen);
                }
                State::Vencrypt => {
                    let data = std::mem::take(&mut self.input);
                    let Some(vc) = self.vencrypt.as_mut() else {
                        return self.fail(ServerError::WrongStep("VeNCrypt negotiation"));
                    };
                    let res = vc.feed(&data);
                    self.output.extend_from_slice(&vc.take_output());
                    match res {
                        Ok(Some(_)) => {
                            self.events.push_back(ServerEvent::StartTls);
                            self.state = State::AwaitingTls;
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => return self.fail(e.into()),
                    }
                }
                State::AwaitingTls => {
                    // The viewer waits for TLS; bytes here are not part of the handshake.
                    if !self.input.is_empty() {
                        return self.fail(VencryptError::UnexpectedData.into());
                    }
                    return Ok(());
                }
                State::AuthResponse => {
                    let Some(bytes) = self.take(CHALLENGE_LEN) else {
                        return Ok(());
                    };
                    let mut response = [0u8; CHALLENGE_LEN];
                    response.copy_from_slice(&bytes);
                    self.events
                        .push_back(ServerEvent::NeedsVerification { response });
                    self.state = State::Verifying;
                }
                State::ClientInit => {
                    let Some(flag) = self.take(1) else {
                        return Ok(());
                    };
                    self.events.push_back(ServerEvent::ClientInit {
                        shared: flag[0] != 0,
                    });
                    self.state = State::ServerInit;
                }
                State::Verifying | State::ServerInit | State::Done | State::Closed => return Ok(()),
            }
        }
    }

    fn offer_security(&mut self, version: ProtocolVersion) -> Result<(), ServerError> {
        if version == ProtocolVersion::V3_3 {
            // The server decides, among the types a 3.3 viewer can follow.
            let Some(chosen) = self
                .options
                .security_types
                .iter()
                .copied()
                .find(|t| *t != SecurityType::Other(SecurityType::VENCRYPT))
            else {
                // Security type 0 (connection failed) with a reason.
                let reason =
                    "TLS (VeNCrypt) is required: use a viewer that speaks RFB 3.7 or later";
                self.output.extend_from_slice(&0u32.to_be_bytes());
                // A short literal: fits in u32.
                self.output
                    .extend_from_slice(&(reason.len() as u32).to_be_bytes());
                self.output.extend_from_slice(reason.as_bytes());
                return Err(ServerError::TlsRequired);
            };
            self.output
                .extend_from_slice(&u32::from(chosen.to_u8()).to_be_bytes());
            self.start_security(chosen);
        } else {
            let types = &self.options.security_types;
            // At most three distinct types (checked in `new`).
            self.output.push(types.len() as u8);
            self.output.extend(types.iter().map(|t| t.to_u8()));
            self.state = State::SecurityChoice;
        }
        Ok(())
    }

    fn start_security(&mut self, chosen: SecurityType) {
        self.security = Some(chosen);
        if chosen == SecurityType::Other(SecurityType::VENCRYPT) {
            let mut vc = VencryptServer::new();
            self.output.extend_from_slice(&vc.take_output());
            self.vencrypt = Some(vc);
            self.state = State::Vencrypt;
        } else if chosen == SecurityType::VncAuth {
            self.output.extend_from_slice(&self.options.challenge);
            self.state = State::AuthResponse;
        } else {
            if self.version == Some(ProtocolVersion::V3_8) {
                self.output.extend_from_slice(&0u32.to_be_bytes());
            }
            self.state = State::ClientInit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::vncauth;
    use super::super::PixelFormat;
    use super::*;
    use proptest::prelude::*;

    const CHALLENGE: [u8; 16] = *b"0123456789abcdef";
    const TOKEN: &[u8] = b"Tk3n-x_9";

    fn vnc_auth_only() -> ServerOptions {
        ServerOptions {
            security_types: vec![SecurityType::VncAuth],
            challenge: CHALLENGE,
        }
    }

    fn target_init() -> ServerInit {
        ServerInit {
            width: 800,
            height: 600,
            pixel_format: PixelFormat::FORCED,
            name: "real desktop".into(),
        }
    }

    /// Feeds `data` one byte at a time, asserting nothing is sent back until the last byte.
    fn feed_bytewise(hs: &mut ServerHandshake, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            hs.feed(std::slice::from_ref(b)).unwrap();
            if i + 1 < data.len() {
                assert!(hs.take_output().is_empty(), "output before byte {i}");
                assert_eq!(hs.poll_event(), None, "event before byte {i}");
            }
        }
    }

    fn expected_server_init(name: &str) -> Vec<u8> {
        let mut v = vec![0x03, 0x20, 0x02, 0x58];
        v.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        v.extend_from_slice(&(name.len() as u32).to_be_bytes());
        v.extend_from_slice(name.as_bytes());
        v
    }

    /// Drives a full VNC Authentication handshake for `banner`, returning the bytes sent after
    /// the ProtocolVersion (security negotiation + challenge) for inspection.
    fn full_vnc_auth(banner: &[u8], expected_negotiation: &[u8], choose: Option<u8>) {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.008\n");
        feed_bytewise(&mut hs, banner);
        let mut expected = expected_negotiation.to_vec();
        if choose.is_none() {
            expected.extend_from_slice(&CHALLENGE);
        }
        assert_eq!(hs.take_output(), expected);
        if let Some(t) = choose {
            feed_bytewise(&mut hs, &[t]);
            assert_eq!(hs.take_output(), CHALLENGE);
        }
        let response = vncauth::response(TOKEN, &CHALLENGE);
        feed_bytewise(&mut hs, &response);
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::NeedsVerification { response })
        );
        assert!(hs.take_output().is_empty());
        assert!(vncauth::verify(TOKEN, &CHALLENGE, &response));
        hs.accept().unwrap();
        assert_eq!(hs.take_output(), [0, 0, 0, 0]);
        feed_bytewise(&mut hs, &[1]);
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::ClientInit { shared: true })
        );
        assert!(!hs.is_complete());
        hs.send_server_init(&target_init().with_name("psmgate: lab-vnc"))
            .unwrap();
        assert_eq!(hs.take_output(), expected_server_init("psmgate: lab-vnc"));
        assert!(hs.is_complete());
        assert_eq!(hs.security_type(), Some(SecurityType::VncAuth));
    }

    #[test]
    fn rfb_3_8_vnc_auth() {
        full_vnc_auth(b"RFB 003.008\n", &[1, 2], Some(2));
    }

    #[test]
    fn rfb_3_7_vnc_auth() {
        full_vnc_auth(b"RFB 003.007\n", &[1, 2], Some(2));
    }

    #[test]
    fn rfb_3_3_vnc_auth() {
        full_vnc_auth(b"RFB 003.003\n", &[0, 0, 0, 2], None);
    }

    #[test]
    fn old_and_apple_versions() {
        // 3.5 is treated as 3.3 (RFC 6143 §7.1.1), Apple's 3.889 as 3.8.
        full_vnc_auth(b"RFB 003.005\n", &[0, 0, 0, 2], None);
        full_vnc_auth(b"RFB 003.889\n", &[1, 2], Some(2));
    }

    #[test]
    fn unsupported_version_is_refused() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        let err = hs.feed(b"RFB 004.000\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "viewer: unsupported RFB protocol version 4.0"
        );
        assert!(hs.is_closed());
        assert_eq!(hs.feed(b"x"), Err(ServerError::Closed));
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        assert!(matches!(
            hs.feed(b"GET / HTTP/1.1\r\n"),
            Err(ServerError::Version(VersionError::Malformed(_)))
        ));
    }

    #[test]
    fn wrong_token_3_8_sends_reason_and_closes() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        hs.feed(b"RFB 003.008\n").unwrap();
        hs.feed(&[2]).unwrap();
        hs.take_output();
        let response = vncauth::response(b"wrong!!!", &CHALLENGE);
        hs.feed(&response).unwrap();
        let Some(ServerEvent::NeedsVerification { response: r }) = hs.poll_event() else {
            panic!("no verification event");
        };
        assert!(!vncauth::verify(TOKEN, &CHALLENGE, &r));
        hs.reject("authentication failed").unwrap();
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 21];
        expected.extend_from_slice(b"authentication failed");
        assert_eq!(hs.take_output(), expected);
        assert!(hs.is_closed());
        assert_eq!(hs.feed(&[1]), Err(ServerError::Closed));
        assert_eq!(hs.accept(), Err(ServerError::Closed));
    }

    #[test]
    fn wrong_token_3_7_and_3_3_send_no_reason() {
        for (banner, choose) in [(&b"RFB 003.007\n"[..], true), (b"RFB 003.003\n", false)] {
            let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
            hs.feed(banner).unwrap();
            if choose {
                hs.feed(&[2]).unwrap();
            }
            hs.feed(&[0u8; 16]).unwrap();
            hs.take_output();
            assert!(hs.poll_event().is_some());
            hs.reject("authentication failed").unwrap();
            assert_eq!(hs.take_output(), [0, 0, 0, 1]);
        }
    }

    #[test]
    fn oversize_reason_is_cut() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        hs.feed(b"RFB 003.008\n").unwrap();
        hs.feed(&[2]).unwrap();
        hs.feed(&[0u8; 16]).unwrap();
        hs.take_output();
        hs.reject(&"é".repeat(MAX_REASON_LEN)).unwrap();
        let out = hs.take_output();
        let len = u32::from_be_bytes([out[4], out[5], out[6], out[7]]) as usize;
        assert_eq!(len, MAX_REASON_LEN);
        assert_eq!(out.len(), 8 + MAX_REASON_LEN);
        assert!(std::str::from_utf8(&out[8..]).is_ok());
    }

    #[test]
    fn security_none_per_version() {
        let opts = ServerOptions {
            security_types: vec![SecurityType::None],
            challenge: CHALLENGE,
        };
        // 3.8: list, choice, SecurityResult OK.
        let mut hs = ServerHandshake::new(opts.clone()).unwrap();
        hs.take_output();
        hs.feed(b"RFB 003.008\n\x01").unwrap();
        assert_eq!(hs.take_output(), [1, 1, 0, 0, 0, 0]);
        hs.feed(&[0]).unwrap();
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::ClientInit { shared: false })
        );
        // 3.7: list, choice, no SecurityResult.
        let mut hs = ServerHandshake::new(opts.clone()).unwrap();
        hs.take_output();
        hs.feed(b"RFB 003.007\n\x01\x01").unwrap();
        assert_eq!(hs.take_output(), [1, 1]);
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::ClientInit { shared: true })
        );
        // 3.3: the type, nothing else.
        let mut hs = ServerHandshake::new(opts).unwrap();
        hs.take_output();
        hs.feed(b"RFB 003.003\n\x01").unwrap();
        assert_eq!(hs.take_output(), [0, 0, 0, 1]);
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::ClientInit { shared: true })
        );
        assert_eq!(hs.security_type(), Some(SecurityType::None));
    }

    #[test]
    fn unoffered_security_type_is_refused() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        hs.feed(b"RFB 003.008\n").unwrap();
        assert_eq!(hs.feed(&[1]), Err(ServerError::SecurityTypeNotOffered(1)));
        assert!(hs.is_closed());
    }

    #[test]
    fn invalid_options_are_refused() {
        let mk = |types: Vec<SecurityType>| {
            ServerHandshake::new(ServerOptions {
                security_types: types,
                challenge: CHALLENGE,
            })
            .map(|_| ())
        };
        assert!(mk(vec![]).is_err());
        assert!(mk(vec![SecurityType::Other(18)]).is_err());
        assert!(mk(vec![SecurityType::Other(19)]).is_ok());
        assert!(mk(vec![
            SecurityType::Other(19),
            SecurityType::VncAuth,
            SecurityType::Other(19)
        ])
        .is_err());
        assert!(mk(vec![SecurityType::VncAuth, SecurityType::VncAuth]).is_err());
        assert!(mk(vec![SecurityType::VncAuth, SecurityType::None]).is_ok());
    }

    fn vencrypt_first() -> ServerOptions {
        ServerOptions {
            security_types: vec![
                SecurityType::Other(SecurityType::VENCRYPT),
                SecurityType::VncAuth,
            ],
            challenge: CHALLENGE,
        }
    }

    #[test]
    fn vencrypt_x509vnc_then_vnc_auth() {
        let mut hs = ServerHandshake::new(vencrypt_first()).unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.008\n");
        feed_bytewise(&mut hs, b"RFB 003.008\n");
        assert_eq!(hs.take_output(), [2, 19, 2]);
        // Choosing VeNCrypt starts its negotiation: version 0.2.
        feed_bytewise(&mut hs, &[19]);
        assert_eq!(hs.take_output(), [0, 2]);
        feed_bytewise(&mut hs, &[0, 2]);
        assert_eq!(hs.take_output(), [0, 1, 0, 0, 1, 5]);
        feed_bytewise(&mut hs, &261u32.to_be_bytes());
        assert_eq!(hs.take_output(), [1]);
        assert_eq!(hs.poll_event(), Some(ServerEvent::StartTls));
        assert_eq!(
            hs.security_type(),
            Some(SecurityType::Other(SecurityType::VENCRYPT))
        );
        // Nothing may arrive before TLS is set up, and nothing continues without it.
        assert_eq!(hs.accept(), Err(ServerError::WrongStep("accept")));
        hs.tls_established().unwrap();
        assert_eq!(hs.take_output(), CHALLENGE);
        let response = vncauth::response(TOKEN, &CHALLENGE);
        feed_bytewise(&mut hs, &response);
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::NeedsVerification { response })
        );
        hs.accept().unwrap();
        assert_eq!(hs.take_output(), [0, 0, 0, 0]);
        hs.feed(&[1]).unwrap();
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::ClientInit { shared: true })
        );
        hs.send_server_init(&target_init()).unwrap();
        assert!(hs.is_complete());
    }

    #[test]
    fn vencrypt_failures_close_the_handshake() {
        // Unknown subtype: a 0 instead of the go-ahead, then closed.
        let mut hs = ServerHandshake::new(vencrypt_first()).unwrap();
        hs.feed(b"RFB 003.008\n\x13\x00\x02").unwrap();
        hs.take_output();
        let err = hs.feed(&260u32.to_be_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "viewer chose VeNCrypt subtype X509None (260), which was not offered"
        );
        assert_eq!(hs.take_output(), [0]);
        assert!(hs.is_closed());
        // Bad version.
        let mut hs = ServerHandshake::new(vencrypt_first()).unwrap();
        hs.feed(b"RFB 003.007\n\x13").unwrap();
        hs.take_output();
        assert!(matches!(
            hs.feed(&[0, 1]),
            Err(ServerError::Vencrypt(VencryptError::UnsupportedVersion {
                major: 0,
                minor: 1
            }))
        ));
        assert_eq!(hs.take_output(), [0xFF]);
        // Bytes before TLS.
        let mut hs = ServerHandshake::new(vencrypt_first()).unwrap();
        hs.feed(b"RFB 003.008\n\x13\x00\x02\x00\x00\x01\x05")
            .unwrap();
        assert_eq!(hs.poll_event(), Some(ServerEvent::StartTls));
        assert!(hs.feed(&[0x16]).is_err());
        assert!(hs.is_closed());
    }

    #[test]
    fn rfb_3_3_viewers_and_required_tls() {
        // Offered VeNCrypt and VNC Authentication: a 3.3 viewer gets VNC Authentication.
        let mut hs = ServerHandshake::new(vencrypt_first()).unwrap();
        hs.take_output();
        hs.feed(b"RFB 003.003\n").unwrap();
        let mut expected = vec![0, 0, 0, 2];
        expected.extend_from_slice(&CHALLENGE);
        assert_eq!(hs.take_output(), expected);
        // VeNCrypt only: connection failed, with a reason.
        let mut hs = ServerHandshake::new(ServerOptions {
            security_types: vec![SecurityType::Other(SecurityType::VENCRYPT)],
            challenge: CHALLENGE,
        })
        .unwrap();
        hs.take_output();
        assert_eq!(hs.feed(b"RFB 003.003\n"), Err(ServerError::TlsRequired));
        let out = hs.take_output();
        assert_eq!(out[..4], [0, 0, 0, 0]);
        let len = u32::from_be_bytes([out[4], out[5], out[6], out[7]]) as usize;
        assert!(std::str::from_utf8(&out[8..8 + len])
            .unwrap()
            .contains("TLS"));
        assert!(hs.is_closed());
        // VeNCrypt only, 3.8 viewer choosing VNC Authentication: refused.
        let mut hs = ServerHandshake::new(ServerOptions {
            security_types: vec![SecurityType::Other(SecurityType::VENCRYPT)],
            challenge: CHALLENGE,
        })
        .unwrap();
        hs.feed(b"RFB 003.008\n").unwrap();
        assert_eq!(hs.take_output()[12..], [1, 19]);
        assert_eq!(hs.feed(&[2]), Err(ServerError::SecurityTypeNotOffered(2)));
    }

    #[test]
    fn calls_out_of_order_are_errors() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        assert_eq!(hs.accept(), Err(ServerError::WrongStep("accept")));
        assert_eq!(
            hs.send_server_init(&target_init()),
            Err(ServerError::WrongStep("send_server_init"))
        );
        assert_eq!(hs.reject("x"), Err(ServerError::WrongStep("reject")));
    }

    #[test]
    fn pipelined_bytes_are_kept_for_the_codec() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        // Everything up to the response in one read.
        let mut data = b"RFB 003.008\n\x02".to_vec();
        data.extend_from_slice(&vncauth::response(TOKEN, &CHALLENGE));
        hs.feed(&data).unwrap();
        assert!(matches!(
            hs.poll_event(),
            Some(ServerEvent::NeedsVerification { .. })
        ));
        // ClientInit and a SetPixelFormat arrive before the caller has verified.
        hs.feed(&[0, 0, 0, 0, 0]).unwrap();
        assert_eq!(hs.poll_event(), None);
        hs.accept().unwrap();
        assert_eq!(
            hs.poll_event(),
            Some(ServerEvent::ClientInit { shared: false })
        );
        assert!(hs.take_leftover().is_empty(), "nothing before completion");
        hs.send_server_init(&target_init()).unwrap();
        assert_eq!(hs.take_leftover(), [0, 0, 0, 0]);
    }

    #[test]
    fn flooding_is_refused() {
        let mut hs = ServerHandshake::new(vnc_auth_only()).unwrap();
        hs.feed(b"RFB 003.008\n\x02").unwrap();
        hs.feed(&[0u8; 16]).unwrap();
        let err = hs.feed(&vec![0u8; MAX_BUFFERED + 1]).unwrap_err();
        assert_eq!(err, ServerError::TooMuchInput);
    }

    proptest! {
        /// Arbitrary viewer input never panics, and the state machine never emits events after
        /// failing.
        #[test]
        fn random_input_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            with_banner in any::<bool>(),
        ) {
            let mut hs = ServerHandshake::new(ServerOptions {
                security_types: vec![SecurityType::Other(SecurityType::VENCRYPT), SecurityType::VncAuth, SecurityType::None],
                challenge: CHALLENGE,
            }).unwrap();
            if with_banner {
                hs.feed(b"RFB 003.008\n").unwrap();
            }
            for c in &chunks {
                let res = hs.feed(c);
                while let Some(ev) = hs.poll_event() {
                    match ev {
                        ServerEvent::NeedsVerification { .. } => hs.accept().unwrap(),
                        ServerEvent::ClientInit { .. } => hs.send_server_init(&target_init()).unwrap(),
                        ServerEvent::StartTls => hs.tls_established().unwrap(),
                    }
                }
                if res.is_err() {
                    prop_assert!(hs.is_closed());
                    break;
                }
            }
            let _ = hs.take_output();
            let _ = hs.take_leftover();
        }
    }
}
