//! VeNCrypt (RFB security type 19), psmgate's side as the server, up to the TLS go-ahead.
//!
//! ```text
//! psmgate → viewer   u8 0, u8 2                    VeNCrypt version 0.2 (on creation)
//! viewer  → psmgate  u8 major, u8 minor            must be 0.2
//! psmgate → viewer   u8 0 (accepted)   |   u8 0xFF and close (any other version)
//! psmgate → viewer   u8 count, count × u32 subtype
//! viewer  → psmgate  u32 chosen subtype
//! psmgate → viewer   u8 1 (go ahead: TLS next) |   u8 0 and close (subtype not offered)
//! ```
//!
//! After the go-ahead both sides run a TLS handshake (psmgate presents its certificate), and
//! the rest of the RFB handshake — VNC Authentication with the access token, SecurityResult,
//! ClientInit, ServerInit — and the whole session run inside TLS.
//!
//! psmgate offers only X509Vnc (261): the access token, checked by VNC Authentication, is the
//! viewer's identity, so no subtype without VNC Authentication (X509None, TLSNone, Plain, …) is
//! ever offered, nor the anonymous-TLS subtypes (no certificate to check).
//!
//! Errors are terminal; output queued before an error (the refusal byte) should still be sent
//! before closing the connection.

use std::fmt;

/// A VeNCrypt subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subtype(pub u32);

impl Subtype {
    /// Plain user name and password, no TLS (256).
    pub const PLAIN: Subtype = Subtype(256);
    /// Anonymous TLS, no authentication (257).
    pub const TLS_NONE: Subtype = Subtype(257);
    /// Anonymous TLS, then VNC Authentication (258).
    pub const TLS_VNC: Subtype = Subtype(258);
    /// Anonymous TLS, then plain user name and password (259).
    pub const TLS_PLAIN: Subtype = Subtype(259);
    /// TLS with an X.509 certificate, no authentication (260). Never offered by psmgate.
    pub const X509_NONE: Subtype = Subtype(260);
    /// TLS with an X.509 certificate, then VNC Authentication (261): what psmgate offers.
    pub const X509_VNC: Subtype = Subtype(261);
    /// TLS with an X.509 certificate, then plain user name and password (262).
    pub const X509_PLAIN: Subtype = Subtype(262);

    /// The name VeNCrypt implementations use for this subtype, if it is a known one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            256 => "Plain",
            257 => "TLSNone",
            258 => "TLSVnc",
            259 => "TLSPlain",
            260 => "X509None",
            261 => "X509Vnc",
            262 => "X509Plain",
            _ => return None,
        })
    }
}

impl fmt::Display for Subtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The subtypes psmgate offers, in order of preference.
pub const OFFERED: [Subtype; 1] = [Subtype::X509_VNC];

/// Why the VeNCrypt negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VencryptError {
    /// The viewer asked for a VeNCrypt version other than 0.2.
    #[error("viewer asked for VeNCrypt version {major}.{minor}; only 0.2 is spoken")]
    UnsupportedVersion {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The viewer chose a subtype that was not offered.
    #[error("viewer chose VeNCrypt subtype {0}, which was not offered")]
    SubtypeNotOffered(Subtype),
    /// The viewer sent bytes after its choice, before TLS was set up.
    #[error("viewer sent data before the TLS handshake could start")]
    UnexpectedData,
    /// The negotiation already failed.
    #[error("the VeNCrypt negotiation with the viewer is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Version,
    Choice,
    Done(Subtype),
    Closed,
}

/// The VeNCrypt negotiation state machine (server side). See the [module documentation](self).
#[derive(Debug)]
pub struct VencryptServer {
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Default for VencryptServer {
    fn default() -> Self {
        Self::new()
    }
}

impl VencryptServer {
    /// Starts the negotiation; the version 0.2 message is queued for sending at once.
    pub fn new() -> Self {
        VencryptServer {
            state: State::Version,
            input: Vec::new(),
            output: vec![0, 2],
        }
    }

    /// Processes bytes received from the viewer. Returns the chosen subtype once the go-ahead
    /// byte is queued: send the output, then start the TLS handshake.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Subtype>, VencryptError> {
        if self.state == State::Closed {
            return Err(VencryptError::Closed);
        }
        self.input.extend_from_slice(data);
        loop {
            match self.state {
                State::Version => {
                    let [major, minor, ..] = self.input[..] else {
                        return Ok(None);
                    };
                    self.input.drain(..2);
                    if (major, minor) != (0, 2) {
                        self.output.push(0xFF);
                        return self.fail(VencryptError::UnsupportedVersion { major, minor });
                    }
                    self.output.push(0);
                    // One subtype: the count fits in a byte.
                    self.output.push(OFFERED.len() as u8);
                    for s in OFFERED {
                        self.output.extend_from_slice(&s.0.to_be_bytes());
                    }
                    self.state = State::Choice;
                }
                State::Choice => {
                    let [a, b, c, d, ..] = self.input[..] else {
                        return Ok(None);
                    };
                    self.input.drain(..4);
                    let chosen = Subtype(u32::from_be_bytes([a, b, c, d]));
                    if !OFFERED.contains(&chosen) {
                        self.output.push(0);
                        return self.fail(VencryptError::SubtypeNotOffered(chosen));
                    }
                    // The viewer waits for the go-ahead before its TLS ClientHello.
                    if !self.input.is_empty() {
                        return self.fail(VencryptError::UnexpectedData);
                    }
                    self.output.push(1);
                    self.state = State::Done(chosen);
                    return Ok(Some(chosen));
                }
                State::Done(_) => {
                    if !self.input.is_empty() {
                        return self.fail(VencryptError::UnexpectedData);
                    }
                    return Ok(None);
                }
                State::Closed => return Err(VencryptError::Closed),
            }
        }
    }

    /// Bytes to send to the viewer (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The chosen subtype, once the negotiation succeeded.
    pub fn chosen(&self) -> Option<Subtype> {
        match self.state {
            State::Done(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the negotiation failed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn fail<T>(&mut self, err: VencryptError) -> Result<T, VencryptError> {
        self.state = State::Closed;
        self.input.clear();
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `data` one byte at a time; nothing may come back before the last byte.
    fn feed_bytewise(vc: &mut VencryptServer, data: &[u8]) -> Option<Subtype> {
        let mut last = None;
        for (i, b) in data.iter().enumerate() {
            last = vc.feed(std::slice::from_ref(b)).unwrap();
            if i + 1 < data.len() {
                assert!(vc.take_output().is_empty(), "output before byte {i}");
                assert_eq!(last, None);
            }
        }
        last
    }

    #[test]
    fn negotiates_x509vnc_byte_by_byte() {
        let mut vc = VencryptServer::new();
        assert_eq!(vc.take_output(), [0, 2]);
        assert_eq!(feed_bytewise(&mut vc, &[0, 2]), None);
        // Accepted, one subtype: X509Vnc (261 = 0x105). X509None (260) is never offered.
        assert_eq!(vc.take_output(), [0, 1, 0, 0, 1, 5]);
        assert_eq!(vc.chosen(), None);
        assert_eq!(
            feed_bytewise(&mut vc, &261u32.to_be_bytes()),
            Some(Subtype::X509_VNC)
        );
        assert_eq!(vc.take_output(), [1]);
        assert_eq!(vc.chosen(), Some(Subtype::X509_VNC));
        assert!(!vc.is_closed());
    }

    #[test]
    fn all_at_once() {
        let mut vc = VencryptServer::new();
        vc.take_output();
        let mut data = vec![0, 2];
        data.extend_from_slice(&261u32.to_be_bytes());
        assert_eq!(vc.feed(&data), Ok(Some(Subtype::X509_VNC)));
        assert_eq!(vc.take_output(), [0, 1, 0, 0, 1, 5, 1]);
    }

    #[test]
    fn other_versions_are_refused() {
        for (major, minor) in [(0, 1), (0, 3), (1, 2), (2, 0), (0xFF, 0xFF)] {
            let mut vc = VencryptServer::new();
            vc.take_output();
            assert_eq!(
                vc.feed(&[major, minor]),
                Err(VencryptError::UnsupportedVersion { major, minor })
            );
            assert_eq!(vc.take_output(), [0xFF], "refusal byte for {major}.{minor}");
            assert!(vc.is_closed());
            assert_eq!(vc.feed(&[0]), Err(VencryptError::Closed));
        }
    }

    #[test]
    fn unoffered_subtypes_are_refused_cleanly() {
        for s in [
            Subtype::X509_NONE,
            Subtype::TLS_NONE,
            Subtype::TLS_VNC,
            Subtype::PLAIN,
            Subtype::X509_PLAIN,
            Subtype(2),
            Subtype(u32::MAX),
        ] {
            let mut vc = VencryptServer::new();
            vc.feed(&[0, 2]).unwrap();
            vc.take_output();
            assert_eq!(
                vc.feed(&s.0.to_be_bytes()),
                Err(VencryptError::SubtypeNotOffered(s))
            );
            // A 0 where the go-ahead would be: the viewer reports the failure and closes.
            assert_eq!(vc.take_output(), [0]);
            assert!(vc.is_closed());
            assert_eq!(vc.chosen(), None);
        }
    }

    #[test]
    fn data_before_tls_is_refused() {
        let mut vc = VencryptServer::new();
        let mut data = vec![0, 2];
        data.extend_from_slice(&261u32.to_be_bytes());
        data.push(0x16);
        assert_eq!(vc.feed(&data), Err(VencryptError::UnexpectedData));
        assert!(vc.is_closed());
        let mut vc = VencryptServer::new();
        data.pop();
        vc.feed(&data).unwrap();
        assert_eq!(vc.feed(&[0x16]), Err(VencryptError::UnexpectedData));
    }

    #[test]
    fn subtype_names() {
        assert_eq!(Subtype::X509_VNC.to_string(), "X509Vnc (261)");
        assert_eq!(Subtype(7).to_string(), "7");
        assert_eq!(
            VencryptError::SubtypeNotOffered(Subtype::X509_NONE).to_string(),
            "viewer chose VeNCrypt subtype X509None (260), which was not offered"
        );
    }

    proptest! {
        /// Arbitrary viewer input never panics; after a failure everything is refused.
        #[test]
        fn random_input_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..8),
            with_version in any::<bool>(),
        ) {
            let mut vc = VencryptServer::new();
            if with_version {
                vc.feed(&[0, 2]).unwrap();
            }
            let mut failed = false;
            for c in &chunks {
                match vc.feed(c) {
                    Ok(Some(s)) => prop_assert_eq!(s, Subtype::X509_VNC),
                    Ok(None) => prop_assert!(!failed),
                    Err(_) => {
                        failed = true;
                        prop_assert!(vc.is_closed());
                    }
                }
                let _ = vc.take_output();
            }
        }
    }
}
