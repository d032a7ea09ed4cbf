//! Clipboard policy in the VNC relay: which cut-text transfers cross the gateway, what the
//! transcript keeps of them, and how a denied ServerCutText is kept from the viewer.
//!
//! Viewer → target messages are parsed before they are forwarded, so a denied ClientCutText is
//! simply not forwarded. Target → viewer bytes are forwarded as they arrive, before parsing,
//! so that a screen update reaches the viewer without waiting for the recorder. When the
//! target's clipboard must not reach the viewer, the relay instead runs the target's bytes
//! through a [`CutTextGate`]: bytes are forwarded once the parser has seen them and they are
//! known not to belong to a ServerCutText message; the bytes of a ServerCutText are dropped.

use crate::vnc::{encoding, CutText};
use psmgate_codecs::transcript::{ClipboardDirection, EventKind};
use psmgate_policy::{ClipboardAccess, ClipboardLog, ClipboardPolicy};

/// RFB message type of ServerCutText.
const SERVER_CUT_TEXT: u8 = 3;

/// Longest clipboard text recorded verbatim with `log = "content"`; longer transfers are
/// recorded as length and digest.
pub const MAX_LOGGED_CONTENT: usize = 256 * 1024;

/// The clipboard policy of one session (with its log level already as applied, see
/// [`psmgate_policy::Config::effective_clipboard`]).
#[derive(Debug, Clone, Copy)]
pub struct ClipboardGuard {
    policy: ClipboardPolicy,
}

/// The decision on one transfer and the transcript events that record it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Forward the message.
    pub allowed: bool,
    /// A `clipboard` event, and for a denial a `policy` event naming the rule.
    pub events: Vec<EventKind>,
}

impl ClipboardGuard {
    /// A guard enforcing `policy`.
    pub fn new(policy: ClipboardPolicy) -> Self {
        ClipboardGuard { policy }
    }

    /// True when ServerCutText may reach the viewer (then the relay keeps its fast path).
    pub fn to_client_allowed(&self) -> bool {
        self.policy.to_client == ClipboardAccess::Allow
    }

    /// Whether the viewer may negotiate the Extended Clipboard pseudo-encoding. It is removed
    /// when a direction is denied or content is logged: its notify/request/provide exchange
    /// spreads one transfer over messages in both directions, and its payload is compressed,
    /// so per-message decisions and content logging need the classic, one-message form.
    pub fn keeps_extended_clipboard(&self) -> bool {
        self.policy.to_target == ClipboardAccess::Allow
            && self.policy.to_client == ClipboardAccess::Allow
            && self.policy.log != ClipboardLog::Content
    }

    /// The viewer's SetEncodings list as forwarded to the target.
    pub fn filter_encodings(&self, requested: &[i32]) -> Vec<i32> {
        let mut kept = encoding::filter_encodings(requested);
        if !self.keeps_extended_clipboard() {
            kept.retain(|&e| e != encoding::EXTENDED_CLIPBOARD);
        }
        kept
    }

    /// Decides one transfer and builds its transcript events.
    pub fn transfer(&self, direction: ClipboardDirection, text: &CutText) -> Transfer {
        let complete = !text.truncated();
        let verbatim = complete && !text.extended && text.text.len() <= MAX_LOGGED_CONTENT;
        self.decide(
            direction,
            u64::from(text.total_len),
            complete.then_some(text.text.as_slice()),
            || verbatim.then(|| text.latin1()),
        )
    }

    /// Decides one transfer seen as bytes rather than as a cut-text message (the RDP clipboard
    /// channel) and builds its transcript events.
    ///
    /// `data` is what was seen of the payload and `total_len` its full length in bytes; a
    /// digest is only computed over a payload seen whole (`data.len() == total_len`). With
    /// `utf8_text`, `data` is UTF-8 text that `log = "content"` records (up to
    /// [`MAX_LOGGED_CONTENT`] bytes, invalid sequences replaced); otherwise it is opaque
    /// (images, file contents, other formats) and at most its length and digest are recorded.
    pub fn transfer_bytes(
        &self,
        direction: ClipboardDirection,
        data: &[u8],
        total_len: u64,
        utf8_text: bool,
    ) -> Transfer {
        let complete = data.len() as u64 == total_len;
        let verbatim = complete && utf8_text && data.len() <= MAX_LOGGED_CONTENT;
        self.decide(direction, total_len, complete.then_some(data), || {
            verbatim.then(|| String::from_utf8_lossy(data).into_owned())
        })
    }

    /// The decision and events for a transfer of `len` bytes; `whole` is the payload when it
    /// was seen completely, `verbatim` yields the text `log = "content"` may record.
    fn decide(
        &self,
        direction: ClipboardDirection,
        len: u64,
        whole: Option<&[u8]>,
        verbatim: impl FnOnce() -> Option<String>,
    ) -> Transfer {
        let (access, rule, towards) = match direction {
            ClipboardDirection::ToTarget => {
                (self.policy.to_target, "clipboard.to_target", "the target")
            }
            ClipboardDirection::ToClient => {
                (self.policy.to_client, "clipboard.to_client", "the viewer")
            }
        };
        let allowed = access == ClipboardAccess::Allow;
        let digest = || {
            use sha2::Digest as _;
            whole.map(|w| hex::encode(sha2::Sha256::digest(w)))
        };
        let (sha256, content) = match self.policy.log {
            ClipboardLog::Length => (None, None),
            ClipboardLog::Digest => (digest(), None),
            ClipboardLog::Content => (digest(), verbatim()),
        };
        let mut events = vec![EventKind::Clipboard {
            direction,
            len,
            sha256,
            text: content,
            allowed,
        }];
        if !allowed {
            events.push(EventKind::Policy {
                rule: rule.to_string(),
                action: "blocked".to_string(),
                detail: Some(format!(
                    "clipboard transfer of {len} bytes to {towards} dropped"
                )),
            });
        }
        Transfer { allowed, events }
    }
}

/// What the message currently being parsed is, as far as the gate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its first byte has not been looked at yet.
    Unknown,
    /// A ServerCutText: its bytes are dropped.
    CutText,
    /// Anything else: its bytes are forwarded.
    Other,
}

/// Keeps ServerCutText messages out of the target → viewer byte stream.
///
/// Sans-I/O companion of a [`crate::vnc::ServerStream`]: for each chunk from the target call
/// [`received`](Self::received) and feed the parser; for each parsed event call
/// [`parsed`](Self::parsed) with its length and whether the parser is then at a message
/// boundary; once the parser wants more bytes call [`release`](Self::release). The bytes
/// appended to `out` are exactly the target's stream without its ServerCutText messages, in
/// order. A chunk's bytes are released by the end of that chunk's processing, except that
/// nothing of a ServerCutText is ever released, so the gate holds at most one chunk.
///
/// The stream starts at a message boundary (right after ServerInit). A message's kind is read
/// from its first byte, and since bytes of a message are only released after its kind is
/// known, a ServerCutText is recognised before any of it could leave.
#[derive(Debug)]
pub struct CutTextGate {
    /// Received bytes neither released nor dropped; `held[0]` is at stream offset `base`.
    held: Vec<u8>,
    base: u64,
    /// Stream offset up to which the parser's events account for the bytes.
    parsed: u64,
    /// Kind of the message starting at offset `parsed` when the last boundary was passed.
    kind: Kind,
    /// ServerCutText messages dropped so far.
    dropped: u64,
}

impl Default for CutTextGate {
    fn default() -> Self {
        Self::new()
    }
}

impl CutTextGate {
    /// A gate at the start of the stream (a message boundary).
    pub fn new() -> Self {
        CutTextGate {
            held: Vec::new(),
            base: 0,
            parsed: 0,
            kind: Kind::Unknown,
            dropped: 0,
        }
    }

    /// Takes a chunk received from the target (the same bytes the parser is fed).
    pub fn received(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
    }

    /// Accounts for a parsed event of `len` bytes; `at_boundary` is the parser's
    /// [`crate::vnc::ServerStream::at_message_boundary`] right after returning it.
    pub fn parsed(&mut self, len: usize, at_boundary: bool, out: &mut Vec<u8>) {
        self.parsed += len as u64;
        if !at_boundary {
            return;
        }
        // The message ends at `parsed`; what of it is still held goes out or is dropped.
        self.resolve();
        let n = usize::try_from(self.parsed.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.held.len());
        match self.kind {
            Kind::CutText => {
                self.held.drain(..n);
                self.dropped += 1;
            }
            Kind::Other | Kind::Unknown => out.extend(self.held.drain(..n)),
        }
        self.base += n as u64;
        self.kind = Kind::Unknown;
    }

    /// Called when the parser needs more bytes: every byte still held belongs to the message
    /// being parsed; it is released unless that message is a ServerCutText (then it is
    /// dropped).
    pub fn release(&mut self, out: &mut Vec<u8>) {
        self.resolve();
        self.base += self.held.len() as u64;
        match self.kind {
            Kind::CutText => self.held.clear(),
            Kind::Other | Kind::Unknown => out.append(&mut self.held),
        }
    }

    /// ServerCutText messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Reads the current message's kind from its first byte once that byte is held. While the
    /// kind is unknown nothing of the message has been released, so its first byte is
    /// `held[0]`.
    fn resolve(&mut self) {
        if self.kind == Kind::Unknown {
            if let Some(&first) = self.held.first() {
                self.kind = if first == SERVER_CUT_TEXT {
                    Kind::CutText
                } else {
                    Kind::Other
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::{PixelFormat, ServerEvent, ServerStream};
    use psmgate_codecs::framebuffer::Framebuffer;

    fn format() -> PixelFormat {
        PixelFormat::from_bytes(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
    }

    fn raw_update(x: u16, w: u16, h: u16, fill: u8) -> Vec<u8> {
        let mut m = vec![0, 0, 0, 1];
        for v in [x, 0, w, h] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.extend_from_slice(&0i32.to_be_bytes());
        m.extend(std::iter::repeat_n(
            fill,
            usize::from(w) * usize::from(h) * 4,
        ));
        m
    }

    fn cut_text(text: &[u8]) -> Vec<u8> {
        let mut m = vec![3, 0, 0, 0];
        m.extend_from_slice(&(text.len() as u32).to_be_bytes());
        m.extend_from_slice(text);
        m
    }

    /// Runs `stream` through a gate in chunks of `chunk` bytes; returns the forwarded bytes,
    /// the cut texts parsed and, per chunk, how many bytes stayed held.
    fn gate(stream: &[u8], chunk: usize) -> (Vec<u8>, Vec<Vec<u8>>, usize) {
        let mut parser = ServerStream::new(format()).unwrap();
        let mut fb = Framebuffer::new(64, 64).unwrap();
        let mut g = CutTextGate::new();
        let (mut out, mut texts, mut max_held) = (Vec::new(), Vec::new(), 0);
        for c in stream.chunks(chunk) {
            g.received(c);
            parser.feed(c);
            while let Some(p) = parser.next_event(&mut fb).unwrap() {
                g.parsed(p.len, parser.at_message_boundary(), &mut out);
                if let ServerEvent::CutText(t) = p.event {
                    texts.push(t.text);
                }
            }
            g.release(&mut out);
            max_held = max_held.max(g.held.len());
        }
        (out, texts, max_held)
    }

    #[test]
    fn cut_text_is_removed_at_every_chunking() {
        let parts: Vec<(Vec<u8>, bool)> = vec![
            (raw_update(0, 4, 2, 0x11), true),
            (cut_text(b"top secret"), false),
            (vec![2], true), // Bell
            (cut_text(b""), false),
            (raw_update(4, 3, 3, 0x03), true), // pixel bytes equal to the cut-text type
            (cut_text(&[3u8; 40]), false),
            (cut_text(b"x"), false),
            (vec![2], true),
        ];
        let stream: Vec<u8> = parts.iter().flat_map(|(b, _)| b.clone()).collect();
        let expected: Vec<u8> = parts
            .iter()
            .filter(|(_, keep)| *keep)
            .flat_map(|(b, _)| b.clone())
            .collect();
        for chunk in 1..=stream.len() {
            let (out, texts, held) = gate(&stream, chunk);
            assert_eq!(out, expected, "chunk {chunk}");
            assert_eq!(texts.len(), 4, "chunk {chunk}");
            assert_eq!(texts[0], b"top secret");
            assert_eq!(held, 0, "nothing stays held after a chunk (chunk {chunk})");
        }
    }

    #[test]
    fn updates_stream_through_before_they_are_complete() {
        let update = raw_update(0, 8, 8, 0x7f);
        let half = update.len() / 2;
        let mut parser = ServerStream::new(format()).unwrap();
        let mut fb = Framebuffer::new(64, 64).unwrap();
        let mut g = CutTextGate::new();
        let mut out = Vec::new();
        g.received(&update[..half]);
        parser.feed(&update[..half]);
        assert!(parser.next_event(&mut fb).unwrap().is_none());
        g.release(&mut out);
        assert_eq!(out, update[..half], "the first half goes out at once");
        // A text message's first bytes are held back (here: dropped) until it is complete.
        let text = cut_text(b"secret");
        let mut rest = update[half..].to_vec();
        rest.extend_from_slice(&text[..5]);
        g.received(&rest);
        parser.feed(&rest);
        while let Some(p) = parser.next_event(&mut fb).unwrap() {
            g.parsed(p.len, parser.at_message_boundary(), &mut out);
        }
        g.release(&mut out);
        assert_eq!(out, update);
        g.received(&text[5..]);
        parser.feed(&text[5..]);
        let p = parser.next_event(&mut fb).unwrap().unwrap();
        g.parsed(p.len, parser.at_message_boundary(), &mut out);
        g.release(&mut out);
        assert_eq!(out, update);
        assert_eq!(g.dropped(), 1);
    }

    fn text(bytes: &[u8], total_len: u32, extended: bool) -> CutText {
        CutText {
            total_len,
            text: bytes.to_vec(),
            extended,
        }
    }

    fn policy(
        to_target: ClipboardAccess,
        to_client: ClipboardAccess,
        log: ClipboardLog,
    ) -> ClipboardGuard {
        ClipboardGuard::new(ClipboardPolicy {
            to_target,
            to_client,
            log,
        })
    }

    #[test]
    fn transfers_are_decided_and_logged_per_policy() {
        use ClipboardAccess::{Allow, Deny};
        let t = text(b"hunter2", 7, false);
        let sha = "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7";
        let g = policy(Allow, Deny, ClipboardLog::Digest);
        let up = g.transfer(ClipboardDirection::ToTarget, &t);
        assert!(up.allowed);
        assert_eq!(
            up.events,
            vec![EventKind::Clipboard {
                direction: ClipboardDirection::ToTarget,
                len: 7,
                sha256: Some(sha.into()),
                text: None,
                allowed: true
            }]
        );
        let down = g.transfer(ClipboardDirection::ToClient, &t);
        assert!(!down.allowed);
        assert_eq!(down.events.len(), 2);
        assert!(matches!(
            &down.events[1],
            EventKind::Policy { rule, action, .. } if rule == "clipboard.to_client" && action == "blocked"
        ));
        let g = policy(Deny, Allow, ClipboardLog::Length);
        let up = g.transfer(ClipboardDirection::ToTarget, &t);
        assert!(!up.allowed);
        assert!(matches!(
            &up.events[0],
            EventKind::Clipboard {
                sha256: None,
                text: None,
                allowed: false,
                len: 7,
                ..
            }
        ));
        assert!(matches!(
            &up.events[1],
            EventKind::Policy { rule, .. } if rule == "clipboard.to_target"
        ));
        let g = policy(Allow, Allow, ClipboardLog::Content);
        let up = g.transfer(ClipboardDirection::ToTarget, &t);
        assert!(matches!(
            &up.events[0],
            EventKind::Clipboard { text: Some(s), sha256: Some(_), .. } if s == "hunter2"
        ));
        // Content that psmgate did not see whole, or that is compressed, is not written.
        let cut = g.transfer(ClipboardDirection::ToTarget, &text(b"hun", 7, false));
        assert!(matches!(
            &cut.events[0],
            EventKind::Clipboard {
                text: None,
                sha256: None,
                len: 7,
                ..
            }
        ));
        let ext = g.transfer(
            ClipboardDirection::ToTarget,
            &text(b"\x10\0\0\x01", 4, true),
        );
        assert!(matches!(
            &ext.events[0],
            EventKind::Clipboard {
                text: None,
                sha256: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn extended_clipboard_is_only_negotiated_when_every_transfer_is_forwarded() {
        use ClipboardAccess::{Allow, Deny};
        let asked = [encoding::ZRLE, encoding::EXTENDED_CLIPBOARD];
        let open = policy(Allow, Allow, ClipboardLog::Digest);
        assert_eq!(open.filter_encodings(&asked), asked);
        for g in [
            policy(Deny, Allow, ClipboardLog::Digest),
            policy(Allow, Deny, ClipboardLog::Digest),
            policy(Allow, Allow, ClipboardLog::Content),
        ] {
            assert_eq!(g.filter_encodings(&asked), [encoding::ZRLE]);
        }
    }
}
