//! Wire types shared by both handshake sides: protocol versions, security types and the
//! ServerInit message. The pixel format is [`crate::vnc::PixelFormat`], shared with the message
//! codecs.

use std::fmt;

use crate::vnc::{PixelFormat, PIXEL_FORMAT_LEN};

/// Longest reason string accepted from a peer or sent to one, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// Longest desktop name accepted from a target or sent to a viewer, in bytes.
pub const MAX_NAME_LEN: usize = 4096;

/// Largest framebuffer width or height accepted from a target.
pub const MAX_DIMENSION: u16 = 16384;

/// Length of a ProtocolVersion message (`"RFB xxx.yyy\n"`).
pub(crate) const VERSION_LEN: usize = 12;

/// Length of the fixed part of ServerInit (sizes, pixel format, name length).
pub(crate) const SERVER_INIT_HEADER_LEN: usize = 24;

/// An RFB protocol version psmgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// RFB 3.3: the server chooses the security type; no reason string on failure.
    V3_3,
    /// RFB 3.7: the client chooses from a list of security types.
    V3_7,
    /// RFB 3.8: like 3.7, plus SecurityResult for None and a reason string on failure.
    V3_8,
}

impl ProtocolVersion {
    /// The ProtocolVersion message for this version.
    pub fn banner(self) -> &'static [u8; VERSION_LEN] {
        match self {
            ProtocolVersion::V3_3 => b"RFB 003.003\n",
            ProtocolVersion::V3_7 => b"RFB 003.007\n",
            ProtocolVersion::V3_8 => b"RFB 003.008\n",
        }
    }

    /// The version psmgate (as server, offering 3.8) uses with a viewer that answered
    /// `major.minor`.
    ///
    /// RFC 6143 §7.1.1: versions other than 3.3, 3.7 and 3.8 "should be interpreted as 3.3";
    /// that is done for 3.4–3.6 (old UltraVNC/TightVNC builds). Apple Screen Sharing answers
    /// 3.889 and speaks the 3.8 handshake, as do clients that answer any other minor above 8, so
    /// those get 3.8. Major versions other than 3 and minors below 3 are refused.
    pub fn for_viewer(major: u16, minor: u16) -> Result<Self, VersionError> {
        match (major, minor) {
            (3, 3..=6) => Ok(ProtocolVersion::V3_3),
            (3, 7) => Ok(ProtocolVersion::V3_7),
            (3, 8..) => Ok(ProtocolVersion::V3_8),
            _ => Err(VersionError::Unsupported { major, minor }),
        }
    }

    /// The version psmgate (as client, preferring 3.8) uses with a server that offered
    /// `major.minor`: the highest version not above the server's.
    ///
    /// Servers announcing a later major version (RealVNC's `005.000`) accept 3.8 clients.
    pub fn for_server(major: u16, minor: u16) -> Result<Self, VersionError> {
        match (major, minor) {
            (3, 3..=6) => Ok(ProtocolVersion::V3_3),
            (3, 7) => Ok(ProtocolVersion::V3_7),
            (3, 8..) | (4.., _) => Ok(ProtocolVersion::V3_8),
            _ => Err(VersionError::Unsupported { major, minor }),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_3 => "3.3",
            ProtocolVersion::V3_7 => "3.7",
            ProtocolVersion::V3_8 => "3.8",
        })
    }
}

/// A ProtocolVersion message that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not of the form `"RFB xxx.yyy\n"`.
    #[error("malformed RFB protocol version {0}")]
    Malformed(String),
    /// Well-formed, but a version psmgate does not speak.
    #[error("unsupported RFB protocol version {major}.{minor}")]
    Unsupported {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
}

/// Parses a ProtocolVersion message into `(major, minor)`.
pub(crate) fn parse_banner(b: &[u8]) -> Result<(u16, u16), VersionError> {
    let malformed = || VersionError::Malformed(format!("{:?}", String::from_utf8_lossy(b)));
    if b.len() != VERSION_LEN || &b[..4] != b"RFB " || b[7] != b'.' || b[11] != b'\n' {
        return Err(malformed());
    }
    let num = |d: &[u8]| -> Option<u16> {
        d.iter().try_fold(0u16, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
        })
    };
    match (num(&b[4..7]), num(&b[8..11])) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(malformed()),
    }
}

/// An RFB security type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityType {
    /// No authentication (1).
    None,
    /// VNC Authentication: DES challenge-response (2).
    VncAuth,
    /// Any other type (VeNCrypt is 19, …), not spoken by psmgate.
    Other(u8),
}

impl SecurityType {
    /// Number of VeNCrypt, offered first by Xvnc/TigerVNC by default.
    pub const VENCRYPT: u8 = 19;

    /// The type for a wire number.
    pub fn from_u8(n: u8) -> Self {
        match n {
            1 => SecurityType::None,
            2 => SecurityType::VncAuth,
            n => SecurityType::Other(n),
        }
    }

    /// The wire number.
    pub fn to_u8(self) -> u8 {
        match self {
            SecurityType::None => 1,
            SecurityType::VncAuth => 2,
            SecurityType::Other(n) => n,
        }
    }
}

impl fmt::Display for SecurityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecurityType::None => f.write_str("None (1)"),
            SecurityType::VncAuth => f.write_str("VNC Authentication (2)"),
            SecurityType::Other(Self::VENCRYPT) => f.write_str("VeNCrypt (19)"),
            SecurityType::Other(n) => write!(f, "type {n}"),
        }
    }
}

/// The ServerInit message: framebuffer size, pixel format and desktop name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    /// Framebuffer width in pixels.
    pub width: u16,
    /// Framebuffer height in pixels.
    pub height: u16,
    /// The server's natural pixel format (may be a colour-map format; see
    /// [`PixelFormat::validate_for_handshake`]).
    pub pixel_format: PixelFormat,
    /// Desktop name.
    pub name: String,
}

impl ServerInit {
    /// The wire form. A name longer than [`MAX_NAME_LEN`] bytes is cut at a character boundary.
    pub fn encode(&self) -> Vec<u8> {
        let name = truncate_utf8(&self.name, MAX_NAME_LEN);
        let mut out = Vec::with_capacity(SERVER_INIT_HEADER_LEN + name.len());
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.pixel_format.to_bytes());
        // `name` is at most MAX_NAME_LEN bytes, which fits in u32.
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out
    }

    /// This ServerInit with the desktop name replaced by `name` (what psmgate shows the viewer,
    /// for example `"psmgate: lab-vnc"`).
    pub fn with_name(&self, name: impl Into<String>) -> Self {
        ServerInit {
            name: name.into(),
            ..self.clone()
        }
    }

    /// Parses a ServerInit at the start of `buf`.
    ///
    /// `Ok(None)`: incomplete, more bytes are needed. `Ok(Some((init, n)))`: parsed from the
    /// first `n` bytes. Errors describe what is invalid.
    pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, String> {
        let Some(header) = buf.get(..SERVER_INIT_HEADER_LEN) else {
            return Ok(None);
        };
        let width = u16::from_be_bytes([header[0], header[1]]);
        let height = u16::from_be_bytes([header[2], header[3]]);
        for (what, v) in [("width", width), ("height", height)] {
            if v == 0 || v > MAX_DIMENSION {
                return Err(format!(
                    "framebuffer {what} {v} outside 1..={MAX_DIMENSION}"
                ));
            }
        }
        let mut pf = [0u8; PIXEL_FORMAT_LEN];
        pf.copy_from_slice(&header[4..20]);
        let pixel_format = PixelFormat::from_bytes(&pf);
        pixel_format
            .validate_for_handshake()
            .map_err(|e| format!("unusable pixel format: {e}"))?;
        let name_len = u32::from_be_bytes([header[20], header[21], header[22], header[23]]);
        let name_len = usize::try_from(name_len)
            .ok()
            .filter(|&n| n <= MAX_NAME_LEN)
            .ok_or_else(|| {
                format!("desktop name of {name_len} bytes exceeds {MAX_NAME_LEN} bytes")
            })?;
        let end = SERVER_INIT_HEADER_LEN + name_len;
        let Some(name) = buf.get(SERVER_INIT_HEADER_LEN..end) else {
            return Ok(None);
        };
        let init = ServerInit {
            width,
            height,
            pixel_format,
            name: sanitize_text(name),
        };
        Ok(Some((init, end)))
    }
}

/// Peer-supplied text made safe to log and display: invalid UTF-8 and control characters are
/// replaced with U+FFFD.
pub(crate) fn sanitize_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners_parse_back() {
        for v in [
            ProtocolVersion::V3_3,
            ProtocolVersion::V3_7,
            ProtocolVersion::V3_8,
        ] {
            let (major, minor) = parse_banner(v.banner()).unwrap();
            assert_eq!(ProtocolVersion::for_viewer(major, minor).unwrap(), v);
            assert_eq!(ProtocolVersion::for_server(major, minor).unwrap(), v);
        }
    }

    #[test]
    fn malformed_banners_are_rejected() {
        for b in [
            &b"RFB 003.008\r"[..],
            b"RFB 003.00x\n",
            b"rfb 003.008\n",
            b"RFB 003,008\n",
            b"RFB 03.008\n",
            b"RFB 003.0088\n",
        ] {
            assert!(
                matches!(parse_banner(b), Err(VersionError::Malformed(_))),
                "{b:?}"
            );
        }
    }

    #[test]
    fn odd_viewer_versions_are_mapped_or_refused() {
        let v = |b: &[u8]| {
            let (major, minor) = parse_banner(b)?;
            ProtocolVersion::for_viewer(major, minor)
        };
        assert_eq!(v(b"RFB 003.005\n"), Ok(ProtocolVersion::V3_3));
        assert_eq!(v(b"RFB 003.006\n"), Ok(ProtocolVersion::V3_3));
        assert_eq!(v(b"RFB 003.889\n"), Ok(ProtocolVersion::V3_8));
        assert_eq!(
            v(b"RFB 003.002\n"),
            Err(VersionError::Unsupported { major: 3, minor: 2 })
        );
        assert_eq!(
            v(b"RFB 004.001\n"),
            Err(VersionError::Unsupported { major: 4, minor: 1 })
        );
        assert_eq!(
            ProtocolVersion::for_server(5, 0),
            Ok(ProtocolVersion::V3_8),
            "RealVNC servers announce 5.0"
        );
    }

    #[test]
    fn server_init_round_trips() {
        let init = ServerInit {
            width: 1024,
            height: 768,
            pixel_format: PixelFormat::FORCED,
            name: "desk".into(),
        };
        let wire = init.encode();
        assert_eq!(wire.len(), 28);
        assert_eq!(ServerInit::parse(&wire).unwrap(), Some((init, 28)));
        assert_eq!(ServerInit::parse(&wire[..27]).unwrap(), None);
        assert_eq!(ServerInit::parse(&wire[..10]).unwrap(), None);
    }

    #[test]
    fn oversize_names_are_cut_when_sending_and_refused_when_receiving() {
        let init = ServerInit {
            width: 1,
            height: 1,
            pixel_format: PixelFormat::FORCED,
            name: "é".repeat(MAX_NAME_LEN), // 2 bytes each
        };
        let wire = init.encode();
        assert_eq!(wire.len(), SERVER_INIT_HEADER_LEN + MAX_NAME_LEN);
        let (back, _) = ServerInit::parse(&wire).unwrap().unwrap();
        assert_eq!(back.name.chars().count(), MAX_NAME_LEN / 2);

        let mut big = wire.clone();
        big[20..24].copy_from_slice(&(MAX_NAME_LEN as u32 + 1).to_be_bytes());
        assert!(ServerInit::parse(&big).unwrap_err().contains("exceeds"));
        big[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(ServerInit::parse(&big).is_err());
    }

    #[test]
    fn server_init_rejects_bad_sizes() {
        let mut wire = ServerInit {
            width: 1,
            height: 1,
            pixel_format: PixelFormat::FORCED,
            name: String::new(),
        }
        .encode();
        wire[0..2].copy_from_slice(&0u16.to_be_bytes());
        assert!(ServerInit::parse(&wire).is_err());
        wire[0..2].copy_from_slice(&(MAX_DIMENSION + 1).to_be_bytes());
        assert!(ServerInit::parse(&wire).is_err());
        wire[0..2].copy_from_slice(&MAX_DIMENSION.to_be_bytes());
        assert!(ServerInit::parse(&wire).is_ok());
    }

    #[test]
    fn sanitize_replaces_controls_and_bad_utf8() {
        assert_eq!(sanitize_text(b"a\x1b[2Jb\xffc"), "a\u{FFFD}[2Jb\u{FFFD}c");
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("aé", 3), "aé");
    }

    #[test]
    fn security_type_names() {
        assert_eq!(SecurityType::from_u8(2), SecurityType::VncAuth);
        assert_eq!(SecurityType::from_u8(19).to_string(), "VeNCrypt (19)");
        assert_eq!(SecurityType::Other(16).to_u8(), 16);
    }
}
