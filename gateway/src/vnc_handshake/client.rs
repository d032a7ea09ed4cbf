//! psmgate as RFB client, facing the target VNC server.
//!
//! ```text
//! target  → psmgate  "RFB xxx.yyy\n"
//! psmgate → target   "RFB 003.00x\n"    (3.8 unless the target is older)
//! 3.3:     target → u32 security type (0: u32 length + reason)
//! 3.7/3.8: target → u8 count, types (count 0: reason);  psmgate → chosen type
//! VNC Authentication: target → 16-byte challenge;  psmgate → DES response
//! target  → psmgate  SecurityResult u32 (3.8: reason on failure)
//! psmgate → target   ClientInit (shared flag)
//! target  → psmgate  ServerInit                 → ClientEvent::ServerInit, complete
//! ```
//!
//! psmgate uses VNC Authentication when the target offers it and a password is vaulted, else
//! None when offered. Other types (VeNCrypt, offered first by Xvnc, …) are skipped; a target
//! offering nothing usable fails with [`ClientError::UnsupportedSecurityTypes`].
//!
//! No error or `Debug` output contains the password.

use std::collections::VecDeque;

use super::types::{parse_banner, sanitize_text, VERSION_LEN};
use super::vncauth::{VncPassword, CHALLENGE_LEN};
use super::{
    ProtocolVersion, SecurityType, ServerInit, VersionError, MAX_BUFFERED, MAX_REASON_LEN,
};

/// Configuration of one target handshake.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The target's vaulted password, if it has one. Only its first 8 bytes are used.
    pub password: Option<VncPassword>,
    /// The ClientInit shared flag: `true` leaves other viewers of the target connected.
    pub shared: bool,
}

/// Progress the caller may want to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The target accepted psmgate (or needs no authentication).
    Authenticated {
        /// The security type used.
        security: SecurityType,
    },
    /// The target's ServerInit arrived: the handshake is complete.
    ServerInit(ServerInit),
}

/// Why the target handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The target's ProtocolVersion was malformed or unsupported.
    #[error("target: {0}")]
    Version(#[from] VersionError),
    /// The target refused the connection before authentication.
    #[error("target refused the connection: {reason}")]
    Refused {
        /// The target's reason (sanitized).
        reason: String,
    },
    /// The target offers no security type psmgate speaks.
    #[error("target offers unsupported security types {0:?}")]
    UnsupportedSecurityTypes(Vec<u32>),
    /// The target requires VNC Authentication and no password is vaulted for it.
    #[error("target requires VNC Authentication but no password is configured for it")]
    PasswordRequired,
    /// The target rejected the vaulted password.
    #[error("target rejected the gateway's credentials{}", reason_suffix(.reason))]
    AuthenticationFailed {
        /// The target's reason (RFB 3.8 only; sanitized).
        reason: Option<String>,
    },
    /// The target (RFB 3.3) reported too many authentication attempts.
    #[error("target refused authentication: too many attempts")]
    TooManyAttempts,
    /// The SecurityResult was neither OK nor failed.
    #[error("target sent an invalid SecurityResult {0}")]
    InvalidSecurityResult(u32),
    /// The ServerInit was unusable.
    #[error("target sent an invalid ServerInit: {0}")]
    InvalidServerInit(String),
    /// The target sent more data than the handshake allows.
    #[error("target sent more than {MAX_BUFFERED} bytes during the handshake")]
    TooMuchInput,
    /// The handshake already failed.
    #[error("the VNC handshake with the target is closed")]
    Closed,
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// Which failure a reason string belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReasonFor {
    Refused,
    AuthFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Version,
    SecurityType33,
    SecurityCount,
    SecurityList(usize),
    Challenge,
    SecurityResult,
    Reason(ReasonFor),
    ServerInit,
    Done,
    Closed,
}

/// The target-side handshake state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct ClientHandshake {
    options: ClientOptions,
    state: State,
    version: Option<ProtocolVersion>,
    security: Option<SecurityType>,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<ClientEvent>,
}

impl ClientHandshake {
    /// Starts a handshake (the target speaks first, so nothing is queued yet).
    pub fn new(options: ClientOptions) -> Self {
        ClientHandshake {
            options,
            state: State::Version,
            version: None,
            security: None,
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Processes bytes received from the target.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ClientError> {
        if self.state == State::Closed {
            return Err(ClientError::Closed);
        }
        self.input.extend_from_slice(data);
        let result = self.advance();
        if result.is_ok() && self.state != State::Done && self.input.len() > MAX_BUFFERED {
            return self.fail(ClientError::TooMuchInput);
        }
        result
    }

    /// Bytes to send to the target (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Whether the handshake completed (ServerInit received).
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the handshake failed.
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

    /// Bytes received after ServerInit, for the message codec (drained). Empty until the
    /// handshake is complete.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        if self.state == State::Done {
            std::mem::take(&mut self.input)
        } else {
            Vec::new()
        }
    }

    fn fail<T>(&mut self, err: ClientError) -> Result<T, ClientError> {
        self.state = State::Closed;
        self.input.clear();
        Err(err)
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.input.len() >= n).then(|| self.input.drain(..n).collect())
    }

    fn take_u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn advance(&mut self) -> Result<(), ClientError> {
        loop {
            let step = match self.state {
                State::Version => self.on_version(),
                State::SecurityType33 => self.on_security_type_33(),
                State::SecurityCount => self.on_security_count(),
                State::SecurityList(n) => self.on_security_list(n),
                State::Challenge => self.on_challenge(),
                State::SecurityResult => self.on_security_result(),
                State::Reason(kind) => self.on_reason(kind),
                State::ServerInit => self.on_server_init(),
                State::Done | State::Closed => return Ok(()),
            };
            match step {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                Err(e) => return self.fail(e),
            }
        }
    }

    // Each step returns Ok(true) when it consumed input and changed state, Ok(false) when it
    // needs more input.

    fn on_version(&mut self) -> Result<bool, ClientError> {
        let Some(banner) = self.take(VERSION_LEN) else {
            return Ok(false);
        };
        let (major, minor) = parse_banner(&banner)?;
        let version = ProtocolVersion::for_server(major, minor)?;
        self.version = Some(version);
        self.output.extend_from_slice(version.banner());
        self.state = if version == ProtocolVersion::V3_3 {
            State::SecurityType33
        } else {
            State::SecurityCount
        };
        Ok(true)
    }

    fn on_security_type_33(&mut self) -> Result<bool, ClientError> {
        let Some(t) = self.take_u32() else {
            return Ok(false);
        };
        match t {
            0 => self.state = State::Reason(ReasonFor::Refused),
            1 => self.start_security(SecurityType::None)?,
            2 if self.options.password.is_some() => self.start_security(SecurityType::VncAuth)?,
            2 => return Err(ClientError::PasswordRequired),
            other => return Err(ClientError::UnsupportedSecurityTypes(vec![other])),
        }
        Ok(true)
    }

    fn on_security_count(&mut self) -> Result<bool, ClientError> {
        let Some(n) = self.take(1) else {
            return Ok(false);
        };
        self.state = match n[0] {
            0 => State::Reason(ReasonFor::Refused),
            n => State::SecurityList(usize::from(n)),
        };
        Ok(true)
    }

    fn on_security_list(&mut self, n: usize) -> Result<bool, ClientError> {
        let Some(list) = self.take(n) else {
            return Ok(false);
        };
        let offered: Vec<SecurityType> = list.iter().copied().map(SecurityType::from_u8).collect();
        let has = |t| offered.contains(&t);
        let chosen = if self.options.password.is_some() && has(SecurityType::VncAuth) {
            SecurityType::VncAuth
        } else if has(SecurityType::None) {
            SecurityType::None
        } else if has(SecurityType::VncAuth) {
            return Err(ClientError::PasswordRequired);
        } else {
            return Err(ClientError::UnsupportedSecurityTypes(
                list.iter().map(|&t| u32::from(t)).collect(),
            ));
        };
        self.output.push(chosen.to_u8());
        self.start_security(chosen)?;
        Ok(true)
    }

    fn start_security(&mut self, chosen: SecurityType) -> Result<(), ClientError> {
        self.security = Some(chosen);
        if chosen == SecurityType::VncAuth {
            self.state = State::Challenge;
        } else if self.version == Some(ProtocolVersion::V3_8) {
            self.state = State::SecurityResult;
        } else {
            self.authenticated();
        }
        Ok(())
    }

    fn on_challenge(&mut self) -> Result<bool, ClientError> {
        let Some(bytes) = self.take(CHALLENGE_LEN) else {
            return Ok(false);
        };
        let mut challenge = [0u8; CHALLENGE_LEN];
        challenge.copy_from_slice(&bytes);
        let password = self
            .options
            .password
            .as_ref()
            .ok_or(ClientError::PasswordRequired)?;
        let response = password.response(&challenge);
        self.output.extend_from_slice(&response);
        self.state = State::SecurityResult;
        Ok(true)
    }

    fn on_security_result(&mut self) -> Result<bool, ClientError> {
        let Some(result) = self.take_u32() else {
            return Ok(false);
        };
        match (result, self.version) {
            (0, _) => self.authenticated(),
            (1, Some(ProtocolVersion::V3_8)) => self.state = State::Reason(ReasonFor::AuthFailed),
            (1, _) => return Err(ClientError::AuthenticationFailed { reason: None }),
            (2, Some(ProtocolVersion::V3_3)) => return Err(ClientError::TooManyAttempts),
            (other, _) => return Err(ClientError::InvalidSecurityResult(other)),
        }
        Ok(true)
    }

    fn on_reason(&mut self, kind: ReasonFor) -> Result<bool, ClientError> {
        let Some(len_bytes) = self.input.get(..4) else {
            return Ok(false);
        };
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let reason = match usize::try_from(len).ok().filter(|&n| n <= MAX_REASON_LEN) {
            Some(n) => match self.input.get(4..4 + n) {
                Some(text) => sanitize_text(text),
                None => return Ok(false),
            },
            // Not worth waiting for: the connection is failing anyway.
            None => format!("(reason of {len} bytes not shown: longer than {MAX_REASON_LEN})"),
        };
        Err(match kind {
            ReasonFor::Refused => ClientError::Refused { reason },
            ReasonFor::AuthFailed => ClientError::AuthenticationFailed {
                reason: Some(reason),
            },
        })
    }

    fn authenticated(&mut self) {
        if let Some(security) = self.security {
            self.events
                .push_back(ClientEvent::Authenticated { security });
        }
        self.output.push(u8::from(self.options.shared));
        self.state = State::ServerInit;
    }

    fn on_server_init(&mut self) -> Result<bool, ClientError> {
        match ServerInit::parse(&self.input) {
            Ok(None) => Ok(false),
            Ok(Some((init, used))) => {
                self.input.drain(..used);
                self.events.push_back(ClientEvent::ServerInit(init));
                self.state = State::Done;
                Ok(true)
            }
            Err(e) => Err(ClientError::InvalidServerInit(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::vncauth;
    use super::super::PixelFormat;
    use super::*;
    use proptest::prelude::*;

    const PASSWORD: &str = "vault-pw-secret";
    const CHALLENGE: [u8; 16] = *b"fedcba9876543210";

    fn with_password() -> ClientOptions {
        ClientOptions {
            password: Some(VncPassword::new(PASSWORD)),
            shared: true,
        }
    }

    fn server_init_bytes(name: &[u8]) -> Vec<u8> {
        let mut v = vec![0x07, 0x80, 0x04, 0x38]; // 1920 x 1080
        v.extend_from_slice(&PixelFormat::FORCED.to_bytes());
        v.extend_from_slice(&(name.len() as u32).to_be_bytes());
        v.extend_from_slice(name);
        v
    }

    /// Feeds `data` byte by byte; returns everything the client sent meanwhile.
    fn feed_bytewise(hs: &mut ClientHandshake, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        for b in data {
            hs.feed(std::slice::from_ref(b))?;
            out.extend(hs.take_output());
        }
        Ok(out)
    }

    fn assert_complete(hs: &mut ClientHandshake, security: SecurityType) {
        assert_eq!(
            hs.poll_event(),
            Some(ClientEvent::Authenticated { security })
        );
        let Some(ClientEvent::ServerInit(init)) = hs.poll_event() else {
            panic!("no ServerInit");
        };
        assert_eq!((init.width, init.height), (1920, 1080));
        assert_eq!(init.name, "xvnc:1");
        assert!(hs.is_complete());
    }

    fn expected_response() -> [u8; 16] {
        vncauth::response(&PASSWORD.as_bytes()[..8], &CHALLENGE)
    }

    #[test]
    fn rfb_3_8_vnc_auth_skipping_vencrypt() {
        let mut hs = ClientHandshake::new(with_password());
        let mut script: Vec<(&[u8], Vec<u8>)> = vec![
            (b"RFB 003.008\n", b"RFB 003.008\n".to_vec()),
            (&[2, 19, 2], vec![2]),
            (&CHALLENGE, expected_response().to_vec()),
            (&[0, 0, 0, 0], vec![1]),
        ];
        let init = server_init_bytes(b"xvnc:1");
        script.push((&init, vec![]));
        for (from_target, expected) in script {
            assert_eq!(feed_bytewise(&mut hs, from_target).unwrap(), expected);
        }
        assert_complete(&mut hs, SecurityType::VncAuth);
        assert_eq!(hs.version(), Some(ProtocolVersion::V3_8));
    }

    #[test]
    fn rfb_3_7_vnc_auth() {
        let mut hs = ClientHandshake::new(with_password());
        assert_eq!(
            feed_bytewise(&mut hs, b"RFB 003.007\n").unwrap(),
            b"RFB 003.007\n"
        );
        assert_eq!(feed_bytewise(&mut hs, &[1, 2]).unwrap(), [2]);
        assert_eq!(
            feed_bytewise(&mut hs, &CHALLENGE).unwrap(),
            expected_response()
        );
        assert_eq!(feed_bytewise(&mut hs, &[0, 0, 0, 0]).unwrap(), [1]);
        feed_bytewise(&mut hs, &server_init_bytes(b"xvnc:1")).unwrap();
        assert_complete(&mut hs, SecurityType::VncAuth);
    }

    #[test]
    fn rfb_3_3_vnc_auth() {
        let mut hs = ClientHandshake::new(ClientOptions {
            shared: false,
            ..with_password()
        });
        assert_eq!(
            feed_bytewise(&mut hs, b"RFB 003.003\n").unwrap(),
            b"RFB 003.003\n"
        );
        assert!(feed_bytewise(&mut hs, &[0, 0, 0, 2]).unwrap().is_empty());
        assert_eq!(
            feed_bytewise(&mut hs, &CHALLENGE).unwrap(),
            expected_response()
        );
        assert_eq!(feed_bytewise(&mut hs, &[0, 0, 0, 0]).unwrap(), [0]);
        feed_bytewise(&mut hs, &server_init_bytes(b"xvnc:1")).unwrap();
        assert_complete(&mut hs, SecurityType::VncAuth);
    }

    #[test]
    fn newer_servers_get_3_8_and_old_ones_3_3() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 005.000\n").unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.008\n");
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.006\n").unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.003\n");
    }

    #[test]
    fn security_none_per_version() {
        let no_password = ClientOptions {
            password: None,
            shared: true,
        };
        // 3.8: SecurityResult follows None.
        let mut hs = ClientHandshake::new(no_password.clone());
        let mut data = b"RFB 003.008\n\x01\x01\0\0\0\0".to_vec();
        data.extend(server_init_bytes(b"xvnc:1"));
        data.extend_from_slice(&[0, 1, 2]); // a FramebufferUpdate already on its way
        hs.feed(&data).unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.008\n\x01\x01");
        assert_complete(&mut hs, SecurityType::None);
        assert_eq!(hs.take_leftover(), [0, 1, 2]);
        // 3.7: no SecurityResult.
        let mut hs = ClientHandshake::new(no_password.clone());
        let mut data = b"RFB 003.007\n\x01\x01".to_vec();
        data.extend(server_init_bytes(b"xvnc:1"));
        hs.feed(&data).unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.007\n\x01\x01");
        assert_complete(&mut hs, SecurityType::None);
        // 3.3.
        let mut hs = ClientHandshake::new(no_password);
        let mut data = b"RFB 003.003\n\0\0\0\x01".to_vec();
        data.extend(server_init_bytes(b"xvnc:1"));
        hs.feed(&data).unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.003\n\x01");
        assert_complete(&mut hs, SecurityType::None);
    }

    #[test]
    fn prefers_vnc_auth_with_a_password_and_none_without() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.008\n\x02\x01\x02").unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.008\n\x02");
        let mut hs = ClientHandshake::new(ClientOptions {
            password: None,
            shared: true,
        });
        hs.feed(b"RFB 003.008\n\x02\x02\x01").unwrap();
        assert_eq!(hs.take_output(), b"RFB 003.008\n\x01");
    }

    #[test]
    fn only_vencrypt_is_a_clear_error() {
        let mut hs = ClientHandshake::new(with_password());
        let err = hs.feed(b"RFB 003.008\n\x01\x13").unwrap_err();
        assert_eq!(
            err.to_string(),
            "target offers unsupported security types [19]"
        );
        assert!(hs.is_closed());
        assert_eq!(hs.feed(b""), Err(ClientError::Closed));
    }

    #[test]
    fn vnc_auth_without_password_is_a_clear_error() {
        let options = ClientOptions {
            password: None,
            shared: true,
        };
        let mut hs = ClientHandshake::new(options.clone());
        assert_eq!(
            hs.feed(b"RFB 003.008\n\x02\x13\x02"),
            Err(ClientError::PasswordRequired)
        );
        let mut hs = ClientHandshake::new(options);
        assert_eq!(
            hs.feed(b"RFB 003.003\n\0\0\0\x02"),
            Err(ClientError::PasswordRequired)
        );
    }

    #[test]
    fn refusal_reasons_are_reported() {
        let mut hs = ClientHandshake::new(with_password());
        let err = hs
            .feed(b"RFB 003.008\n\x00\0\0\0\x0btoo many\x1bxx")
            .unwrap_err();
        assert_eq!(
            err,
            ClientError::Refused {
                reason: "too many\u{FFFD}xx".into()
            }
        );
        let mut hs = ClientHandshake::new(with_password());
        let err = hs.feed(b"RFB 003.003\n\0\0\0\0\0\0\0\x04busy").unwrap_err();
        assert_eq!(err.to_string(), "target refused the connection: busy");
    }

    #[test]
    fn wrong_password_3_8_reports_the_reason_without_the_password() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.008\n\x01\x02").unwrap();
        hs.feed(&CHALLENGE).unwrap();
        let mut result = vec![0, 0, 0, 1, 0, 0, 0, 21];
        result.extend_from_slice(b"Authentication failed");
        let err = feed_bytewise(&mut hs, &result).unwrap_err();
        assert_eq!(
            err.to_string(),
            "target rejected the gateway's credentials: Authentication failed"
        );
        for text in [err.to_string(), format!("{err:?}"), format!("{hs:?}")] {
            assert!(!text.contains(&PASSWORD[..8]), "{text}");
        }
    }

    #[test]
    fn wrong_password_3_7_and_3_3() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.007\n\x01\x02").unwrap();
        hs.feed(&CHALLENGE).unwrap();
        assert_eq!(
            hs.feed(&[0, 0, 0, 1]),
            Err(ClientError::AuthenticationFailed { reason: None })
        );
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.003\n\0\0\0\x02").unwrap();
        hs.feed(&CHALLENGE).unwrap();
        assert_eq!(hs.feed(&[0, 0, 0, 2]), Err(ClientError::TooManyAttempts));
    }

    #[test]
    fn oversize_reason_fails_without_waiting_for_it() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.008\n\x01\x02").unwrap();
        hs.feed(&CHALLENGE).unwrap();
        let err = hs.feed(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            err.to_string().contains("4294967295 bytes not shown"),
            "{err}"
        );
    }

    #[test]
    fn invalid_server_init_is_refused() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.008\n\x01\x02").unwrap();
        hs.feed(&CHALLENGE).unwrap();
        hs.feed(&[0, 0, 0, 0]).unwrap();
        let mut init = server_init_bytes(b"x");
        init[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = hs.feed(&init).unwrap_err();
        assert!(matches!(err, ClientError::InvalidServerInit(_)), "{err}");
        assert!(err.to_string().contains("100000 bytes"), "{err}");
    }

    #[test]
    fn invalid_security_result() {
        let mut hs = ClientHandshake::new(with_password());
        hs.feed(b"RFB 003.008\n\x01\x02").unwrap();
        hs.feed(&CHALLENGE).unwrap();
        assert_eq!(
            hs.feed(&[0, 0, 0, 7]),
            Err(ClientError::InvalidSecurityResult(7))
        );
    }

    proptest! {
        /// Arbitrary target input never panics, and failures close the handshake.
        #[test]
        fn random_input_never_panics(
            prefix in prop_oneof![
                Just(&b""[..]),
                Just(&b"RFB 003.003\n"[..]),
                Just(&b"RFB 003.008\n"[..]),
                Just(&b"RFB 003.008\n\x01\x02"[..]),
            ],
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let mut hs = ClientHandshake::new(with_password());
            let _ = hs.feed(prefix);
            for c in &chunks {
                if hs.feed(c).is_err() {
                    prop_assert!(hs.is_closed());
                    break;
                }
            }
            while let Some(ev) = hs.poll_event() {
                if let ClientEvent::ServerInit(init) = ev {
                    prop_assert!(init.width >= 1 && init.height >= 1);
                    prop_assert!(init.name.len() <= 3 * super::super::MAX_NAME_LEN);
                }
            }
            let out = hs.take_output();
            let text = String::from_utf8_lossy(&out);
            prop_assert!(!text.contains(&PASSWORD[..8]));
        }
    }
}
