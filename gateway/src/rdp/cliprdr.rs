//! Clipboard policy and logging on the `cliprdr` static virtual channel ([MS-RDPECLIP]).
//!
//! [`ClipboardFilter`] sees every virtual channel payload of one session's `cliprdr` channel (the
//! user data of an MCS Send Data Request from the client or Send Data Indication from the
//! server: an 8-byte `CHANNEL_PDU_HEADER` and a chunk) and returns a [`Verdict`] for it:
//! forward it, drop it, or drop it and send answers back to the side that sent it. It is
//! sans-I/O; transcript events are collected and handed out by
//! [`ClipboardFilter::take_events`].
//!
//! # Directions
//!
//! The RDP clipboard is lazy: the side where something was copied announces its formats
//! (Format List), the other side asks for one format when the user pastes (Format Data
//! Request) and receives it (Format Data Response). Files are fetched in pieces the same way
//! (File Contents Request / Response). Copying on the target and pasting at the client is the
//! `to_client` direction, the reverse is `to_target`. For a denied direction:
//!
//! | PDU from the side that owns the data | verdict |
//! |---|---|
//! | Format List | dropped; the sender gets a Format List Response (`CB_RESPONSE_OK`), so it is not left waiting |
//! | Format Data Response | dropped (the list was never forwarded; this is defence in depth) |
//! | File Contents Response | dropped |
//!
//! | PDU from the side that would receive the data | verdict |
//! |---|---|
//! | Format Data Request | dropped; the sender gets a Format Data Response with `CB_RESPONSE_FAIL` |
//! | File Contents Request | dropped; the sender gets a File Contents Response with `CB_RESPONSE_FAIL` |
//!
//! Every other clipboard PDU (capabilities, monitor ready, list responses, temporary
//! directory, lock/unlock) is forwarded. A payload that cannot be read (too short, compressed,
//! a continuation chunk without a first chunk, an unknown message type) is forwarded only when
//! the direction of the data its sender could carry is allowed (client → `to_target`, server →
//! `to_client`), and dropped otherwise.
//!
//! # Reassembly
//!
//! Virtual channel data larger than the negotiated chunk size arrives in several chunks
//! (`CHANNEL_FLAG_FIRST` … `CHANNEL_FLAG_LAST`). The decision for a PDU is taken on its first
//! chunk, which holds the clipboard header, and applies to every chunk of it, so no chunk has
//! to be held back; the chunks are also gathered so that the whole PDU can be read once its
//! last chunk arrives (requested format, stream id, the data to log). Replies are sent with
//! the last chunk. A PDU announced larger than the limit (default [`DEFAULT_MAX_PDU`]) is not
//! gathered at all: all of its chunks are dropped and it is logged as a too-large transfer.
//!
//! # Logging
//!
//! Each Format Data Response, forwarded or dropped, becomes a `clipboard` event through the
//! session's [`ClipboardGuard`] (and a `policy` event when dropped). When the preceding Format
//! Data Request of the other side asked for `CF_UNICODETEXT`, the UTF-16LE data is decoded (up
//! to its NUL terminator) and `len`, `sha256` and, with `log = "content"`, `text` describe that
//! text as UTF-8; any other format is opaque: its length and, when the policy asks for it, its
//! digest, never a text. File Contents Responses carrying file data are logged the same way
//! as opaque data. A dropped Format List or request is recorded as a `policy` event.
//!
//! # Encoding
//!
//! The few PDUs this module reads or writes are fixed little-endian layouts (an 8-byte
//! `CLIPRDR_HEADER`, then at most a few 32-bit fields), so they are read and written here
//! directly. The `ironrdp-cliprdr` crate is not used: the gateway does not terminate the
//! channel but relays it, and only needs the headers, the request fields and the raw
//! response data, which a full clipboard backend would not give back unchanged.

use crate::vnc_gateway::clipboard::ClipboardGuard;
use psmgate_codecs::transcript::{ClipboardDirection, EventKind};
use psmgate_policy::{ClipboardAccess, ClipboardPolicy};

/// Name of the clipboard static virtual channel.
pub const CHANNEL_NAME: &str = "cliprdr";

/// Default limit on one clipboard PDU (all its chunks together): 16 MiB.
pub const DEFAULT_MAX_PDU: usize = 16 * 1024 * 1024;

use crate::rdp::vchannel::{single_chunk, split_chunk, u32_at, CHANNEL_PACKET_COMPRESSED};
pub use crate::rdp::vchannel::{
    Verdict, CHANNEL_FLAG_FIRST, CHANNEL_FLAG_LAST, CHANNEL_FLAG_SHOW_PROTOCOL,
};

/// Clipboard format id of UTF-16LE text with a NUL terminator.
pub const CF_UNICODETEXT: u32 = 13;

const CLIPRDR_HEADER_LEN: usize = 8;

const CB_MONITOR_READY: u16 = 0x0001;
const CB_FORMAT_LIST: u16 = 0x0002;
const CB_FORMAT_LIST_RESPONSE: u16 = 0x0003;
const CB_FORMAT_DATA_REQUEST: u16 = 0x0004;
const CB_FORMAT_DATA_RESPONSE: u16 = 0x0005;
const CB_TEMP_DIRECTORY: u16 = 0x0006;
const CB_CLIP_CAPS: u16 = 0x0007;
const CB_FILECONTENTS_REQUEST: u16 = 0x0008;
const CB_FILECONTENTS_RESPONSE: u16 = 0x0009;
const CB_LOCK_CLIPDATA: u16 = 0x000A;
const CB_UNLOCK_CLIPDATA: u16 = 0x000B;

const CB_RESPONSE_OK: u16 = 0x0001;
const CB_RESPONSE_FAIL: u16 = 0x0002;

/// `dwFlags` of a File Contents Request asking for the file size, not its data.
const FILECONTENTS_SIZE: u32 = 0x0000_0001;

/// File Contents Requests remembered per side (to tell size answers from data answers).
const MAX_FILE_REQUESTS: usize = 32;

/// The two ends of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Side {
    /// Direction of data this side sends (its own clipboard).
    fn outbound(self) -> ClipboardDirection {
        match self {
            Side::Client => ClipboardDirection::ToTarget,
            Side::Server => ClipboardDirection::ToClient,
        }
    }

    /// Direction of data this side receives.
    fn inbound(self) -> ClipboardDirection {
        match self {
            Side::Client => ClipboardDirection::ToClient,
            Side::Server => ClipboardDirection::ToTarget,
        }
    }
}

/// The answer sent back for a dropped PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Format List Response, `CB_RESPONSE_OK`.
    FormatListOk,
    /// Format Data Response, `CB_RESPONSE_FAIL`.
    FormatDataFail,
    /// File Contents Response, `CB_RESPONSE_FAIL`, with the request's stream id.
    FileContentsFail,
}

/// What happens to every chunk of the PDU being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Forward,
    Drop,
    /// Dropped; answered when the last chunk has arrived.
    Reply(Reply),
    /// Larger than the limit: dropped, not gathered.
    Oversize,
}

/// A PDU whose chunks are arriving.
#[derive(Debug)]
struct Pending {
    plan: Plan,
    /// Clipboard message type, when the first chunk held a readable header.
    msg_type: Option<u16>,
    /// Length announced in the channel header (all chunks together).
    total: usize,
    /// The PDU's bytes so far (only for PDUs whose body is read, and within `total`).
    buf: Vec<u8>,
    /// Whether the body is gathered.
    gather: bool,
    /// More bytes arrived than announced; what was gathered is incomplete or inconsistent.
    inconsistent: bool,
}

/// Per-side state.
#[derive(Debug, Default)]
struct SideState {
    pending: Option<Pending>,
    /// Whether this side's chunks carry `CHANNEL_FLAG_SHOW_PROTOCOL` (mirrored in replies
    /// made in its name).
    show_protocol: bool,
    /// Format this side asked the other side for in its last forwarded Format Data Request.
    requested_format: Option<u32>,
    /// `(streamId, dwFlags)` of this side's forwarded File Contents Requests, oldest first.
    file_requests: Vec<(u32, u32)>,
}

/// Applies a clipboard policy to one session's `cliprdr` channel (see the module
/// documentation).
#[derive(Debug)]
pub struct ClipboardFilter {
    policy: ClipboardPolicy,
    guard: ClipboardGuard,
    max_pdu: usize,
    client: SideState,
    server: SideState,
    events: Vec<EventKind>,
}

impl ClipboardFilter {
    /// A filter enforcing `policy` (with its log level as applied, see
    /// [`psmgate_policy::Config::effective_clipboard`]) with the default PDU limit.
    pub fn new(policy: ClipboardPolicy) -> Self {
        Self::with_max_pdu(policy, DEFAULT_MAX_PDU)
    }

    /// A filter whose clipboard PDUs may be at most `max_pdu` bytes (all chunks together,
    /// without channel headers); larger ones are dropped and logged as too large.
    pub fn with_max_pdu(policy: ClipboardPolicy, max_pdu: usize) -> Self {
        ClipboardFilter {
            policy,
            guard: ClipboardGuard::new(policy),
            max_pdu,
            client: SideState::default(),
            server: SideState::default(),
            events: Vec::new(),
        }
    }

    /// The PDU size limit in bytes.
    pub fn max_pdu(&self) -> usize {
        self.max_pdu
    }

    /// Decides a virtual channel payload (`CHANNEL_PDU_HEADER` and chunk) sent by the client.
    pub fn from_client(&mut self, chunk: &[u8]) -> Verdict {
        self.chunk(Side::Client, chunk)
    }

    /// Decides a virtual channel payload (`CHANNEL_PDU_HEADER` and chunk) sent by the server.
    pub fn from_server(&mut self, chunk: &[u8]) -> Verdict {
        self.chunk(Side::Server, chunk)
    }

    /// The transcript events produced since the last call.
    pub fn take_events(&mut self) -> Vec<EventKind> {
        std::mem::take(&mut self.events)
    }

    fn allowed(&self, direction: ClipboardDirection) -> bool {
        let access = match direction {
            ClipboardDirection::ToTarget => self.policy.to_target,
            ClipboardDirection::ToClient => self.policy.to_client,
        };
        access == ClipboardAccess::Allow
    }

    fn state(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn other(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Client => &mut self.server,
            Side::Server => &mut self.client,
        }
    }

    /// The plan for content that cannot be read: forwarded only if what the sender could
    /// carry may cross.
    fn opaque_plan(&self, side: Side) -> Plan {
        if self.allowed(side.outbound()) {
            Plan::Forward
        } else {
            Plan::Drop
        }
    }

    fn chunk(&mut self, side: Side, chunk: &[u8]) -> Verdict {
        let Some((length, flags, data)) = split_chunk(chunk) else {
            return verdict(self.opaque_plan(side));
        };
        let last = flags & CHANNEL_FLAG_LAST != 0;
        if flags & CHANNEL_FLAG_FIRST != 0 {
            self.state(side).show_protocol = flags & CHANNEL_FLAG_SHOW_PROTOCOL != 0;
            // A new PDU abandons one left unfinished.
            let pending = self.start(side, length, flags, data);
            self.state(side).pending = Some(pending);
        } else if self.state(side).pending.is_none() {
            // A continuation without its first chunk.
            return verdict(self.opaque_plan(side));
        }
        let Some(mut pending) = self.state(side).pending.take() else {
            return verdict(self.opaque_plan(side));
        };
        if pending.gather {
            if pending.buf.len().saturating_add(data.len()) <= pending.total {
                pending.buf.extend_from_slice(data);
            } else {
                pending.inconsistent = true;
            }
        }
        if last {
            self.finish(side, pending)
        } else {
            let plan = pending.plan;
            self.state(side).pending = Some(pending);
            verdict(plan)
        }
    }

    /// Decides a PDU from its first chunk.
    fn start(&mut self, side: Side, length: u32, flags: u32, data: &[u8]) -> Pending {
        let total = usize::try_from(length).unwrap_or(usize::MAX);
        let header = (flags & CHANNEL_PACKET_COMPRESSED == 0)
            .then(|| u16_at(data, 0).zip(u16_at(data, 2)))
            .flatten();
        if total > self.max_pdu {
            self.oversize(side, total, header.map(|h| h.0));
            return Pending {
                plan: Plan::Oversize,
                msg_type: header.map(|h| h.0),
                total,
                buf: Vec::new(),
                gather: false,
                inconsistent: false,
            };
        }
        let (plan, msg_type) = match header {
            Some((msg_type, _)) => match self.plan(side, msg_type) {
                Some(plan) => (plan, Some(msg_type)),
                None => (self.opaque_plan(side), None),
            },
            None => (self.opaque_plan(side), None),
        };
        let gather = matches!(
            msg_type,
            Some(
                CB_FORMAT_DATA_REQUEST
                    | CB_FORMAT_DATA_RESPONSE
                    | CB_FILECONTENTS_REQUEST
                    | CB_FILECONTENTS_RESPONSE
            )
        );
        Pending {
            plan,
            msg_type,
            total,
            buf: if gather {
                Vec::with_capacity(total.min(64 * 1024))
            } else {
                Vec::new()
            },
            gather,
            inconsistent: false,
        }
    }

    /// The plan for a clipboard message of a known type; `None` for an unknown type.
    fn plan(&self, side: Side, msg_type: u16) -> Option<Plan> {
        let gate = |direction: ClipboardDirection, denied: Plan| {
            if self.allowed(direction) {
                Plan::Forward
            } else {
                denied
            }
        };
        Some(match msg_type {
            CB_FORMAT_LIST => gate(side.outbound(), Plan::Reply(Reply::FormatListOk)),
            CB_FORMAT_DATA_REQUEST => gate(side.inbound(), Plan::Reply(Reply::FormatDataFail)),
            CB_FORMAT_DATA_RESPONSE | CB_FILECONTENTS_RESPONSE => gate(side.outbound(), Plan::Drop),
            CB_FILECONTENTS_REQUEST => gate(side.inbound(), Plan::Reply(Reply::FileContentsFail)),
            CB_MONITOR_READY
            | CB_FORMAT_LIST_RESPONSE
            | CB_TEMP_DIRECTORY
            | CB_CLIP_CAPS
            | CB_LOCK_CLIPDATA
            | CB_UNLOCK_CLIPDATA => Plan::Forward,
            _ => return None,
        })
    }

    /// Logs a PDU dropped for its size.
    fn oversize(&mut self, side: Side, total: usize, msg_type: Option<u16>) {
        if msg_type == Some(CB_FORMAT_DATA_RESPONSE) {
            self.other(side).requested_format = None;
        }
        let direction = side.outbound();
        let transfer = self
            .guard
            .transfer_bytes(direction, &[], total as u64, false);
        for mut event in transfer.events {
            match &mut event {
                EventKind::Clipboard { allowed, .. } => {
                    *allowed = false;
                    self.events.push(event);
                }
                // Replaced by the size-limit event below.
                EventKind::Policy { .. } => {}
                _ => self.events.push(event),
            }
        }
        self.events.push(EventKind::Policy {
            rule: "clipboard.size_limit".to_string(),
            action: "blocked".to_string(),
            detail: Some(format!(
                "clipboard message of {total} bytes {} exceeds the limit of {} bytes and was dropped",
                towards(direction),
                self.max_pdu
            )),
        });
    }

    /// Completes a PDU on its last chunk: reads what it carries, logs, answers.
    fn finish(&mut self, side: Side, pending: Pending) -> Verdict {
        let Pending {
            plan,
            msg_type,
            total,
            buf,
            inconsistent,
            ..
        } = pending;
        let Some(msg_type) = msg_type else {
            return verdict(plan);
        };
        if plan == Plan::Oversize {
            return Verdict::Drop;
        }
        let msg_flags = u16_at(&buf, 2).unwrap_or(0);
        let data_len = u32_at(&buf, 4).map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let body = buf.get(CLIPRDR_HEADER_LEN..).unwrap_or(&[]);
        let body_complete = !inconsistent && buf.len() == total && body.len() >= data_len;
        let body = body.get(..data_len).unwrap_or(body);
        let forwarded = plan == Plan::Forward;
        let mut stream_id = 0;
        match msg_type {
            CB_FORMAT_LIST if !forwarded => self.blocked(
                side.outbound(),
                format!("clipboard formats offered by {} dropped", side_name(side)),
            ),
            CB_FORMAT_DATA_REQUEST => {
                if forwarded {
                    self.state(side).requested_format = u32_at(body, 0);
                } else {
                    self.blocked(
                        side.inbound(),
                        format!("request for clipboard data by {} refused", side_name(side)),
                    );
                }
            }
            CB_FORMAT_DATA_RESPONSE => {
                let requested = self.other(side).requested_format.take();
                if msg_flags & CB_RESPONSE_FAIL == 0 {
                    self.log_data(side, requested, body, data_len, body_complete);
                }
            }
            CB_FILECONTENTS_REQUEST => {
                stream_id = u32_at(body, 0).unwrap_or(0);
                if forwarded {
                    let dw_flags = u32_at(body, 8).unwrap_or(0);
                    let requests = &mut self.state(side).file_requests;
                    requests.retain(|&(id, _)| id != stream_id);
                    if requests.len() >= MAX_FILE_REQUESTS {
                        requests.remove(0);
                    }
                    requests.push((stream_id, dw_flags));
                } else {
                    self.blocked(
                        side.inbound(),
                        format!("request for file contents by {} refused", side_name(side)),
                    );
                }
            }
            CB_FILECONTENTS_RESPONSE => {
                let id = u32_at(body, 0);
                let requests = &mut self.other(side).file_requests;
                let request = id.and_then(|id| {
                    let i = requests.iter().position(|&(r, _)| r == id)?;
                    Some(requests.remove(i))
                });
                let size_answer = request.is_some_and(|(_, f)| f & FILECONTENTS_SIZE != 0);
                if msg_flags & CB_RESPONSE_FAIL == 0 && !size_answer {
                    let data = body.get(4..).unwrap_or(&[]);
                    let len = data_len.saturating_sub(4);
                    self.log_data(side, None, data, len, body_complete);
                }
            }
            _ => {}
        }
        match plan {
            Plan::Reply(reply) => {
                // The answer is made in the name of the other side.
                let show = self.other(side).show_protocol;
                Verdict::DropAndReply(vec![encode_reply(reply, stream_id, show)])
            }
            other => verdict(other),
        }
    }

    /// Logs data sent by `side`: `data` is what was received of `len` bytes in `format`.
    fn log_data(
        &mut self,
        side: Side,
        format: Option<u32>,
        data: &[u8],
        len: usize,
        complete: bool,
    ) {
        let direction = side.outbound();
        let transfer = if format == Some(CF_UNICODETEXT) && complete {
            let text = utf16le_text(data);
            self.guard
                .transfer_bytes(direction, text.as_bytes(), text.len() as u64, true)
        } else if complete {
            self.guard
                .transfer_bytes(direction, data, data.len() as u64, false)
        } else {
            self.guard.transfer_bytes(direction, &[], len as u64, false)
        };
        self.events.extend(transfer.events);
    }

    /// Records a dropped offer or request (no data crossed).
    fn blocked(&mut self, direction: ClipboardDirection, detail: String) {
        self.events.push(EventKind::Policy {
            rule: match direction {
                ClipboardDirection::ToTarget => "clipboard.to_target",
                ClipboardDirection::ToClient => "clipboard.to_client",
            }
            .to_string(),
            action: "blocked".to_string(),
            detail: Some(detail),
        });
    }
}

fn verdict(plan: Plan) -> Verdict {
    match plan {
        Plan::Forward => Verdict::Forward,
        Plan::Drop | Plan::Reply(_) | Plan::Oversize => Verdict::Drop,
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "the client",
        Side::Server => "the target",
    }
}

fn towards(direction: ClipboardDirection) -> &'static str {
    match direction {
        ClipboardDirection::ToTarget => "to the target",
        ClipboardDirection::ToClient => "to the client",
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

/// UTF-16LE text up to its first NUL (or the end; an odd last byte is ignored), unpaired
/// surrogates replaced by U+FFFD.
fn utf16le_text(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => 0,
        })
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// A `CLIPRDR_HEADER` and body in one virtual channel payload (first and last chunk).
fn encode_pdu(msg_type: u16, msg_flags: u16, body: &[u8], show_protocol: bool) -> Vec<u8> {
    let mut pdu = Vec::with_capacity(CLIPRDR_HEADER_LEN + body.len());
    pdu.extend_from_slice(&msg_type.to_le_bytes());
    pdu.extend_from_slice(&msg_flags.to_le_bytes());
    // Replies are a few bytes long, far below u32::MAX.
    pdu.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    pdu.extend_from_slice(body);
    single_chunk(&pdu, show_protocol)
}

fn encode_reply(reply: Reply, stream_id: u32, show_protocol: bool) -> Vec<u8> {
    match reply {
        Reply::FormatListOk => {
            encode_pdu(CB_FORMAT_LIST_RESPONSE, CB_RESPONSE_OK, &[], show_protocol)
        }
        Reply::FormatDataFail => encode_pdu(
            CB_FORMAT_DATA_RESPONSE,
            CB_RESPONSE_FAIL,
            &[],
            show_protocol,
        ),
        Reply::FileContentsFail => encode_pdu(
            CB_FILECONTENTS_RESPONSE,
            CB_RESPONSE_FAIL,
            &stream_id.to_le_bytes(),
            show_protocol,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use psmgate_policy::ClipboardLog;
    use sha2::Digest as _;
    use ClipboardAccess::{Allow, Deny};

    const FIRST_LAST: u32 = CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST;

    fn filter(
        to_target: ClipboardAccess,
        to_client: ClipboardAccess,
        log: ClipboardLog,
    ) -> ClipboardFilter {
        ClipboardFilter::new(ClipboardPolicy {
            to_target,
            to_client,
            log,
        })
    }

    /// A clipboard PDU (header and body) without channel header.
    fn cliprdr(msg_type: u16, msg_flags: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&msg_type.to_le_bytes());
        v.extend_from_slice(&msg_flags.to_le_bytes());
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    /// One channel chunk.
    fn chunk(total: usize, flags: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(total as u32).to_le_bytes());
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A clipboard PDU in one chunk.
    fn single(msg_type: u16, msg_flags: u16, body: &[u8]) -> Vec<u8> {
        let pdu = cliprdr(msg_type, msg_flags, body);
        chunk(pdu.len(), FIRST_LAST, &pdu)
    }

    fn utf16(text: &str) -> Vec<u8> {
        text.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    fn format_list() -> Vec<u8> {
        // Long format names: id 13 with an empty name.
        single(CB_FORMAT_LIST, 0, &[13, 0, 0, 0, 0, 0])
    }

    fn data_request(format: u32) -> Vec<u8> {
        single(CB_FORMAT_DATA_REQUEST, 0, &format.to_le_bytes())
    }

    fn data_response(data: &[u8]) -> Vec<u8> {
        single(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_OK, data)
    }

    fn file_request(stream: u32, flags: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [stream, 0, flags, 0, 0, 4096] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        single(CB_FILECONTENTS_REQUEST, 0, &b)
    }

    fn file_response(stream: u32, data: &[u8]) -> Vec<u8> {
        let mut b = stream.to_le_bytes().to_vec();
        b.extend_from_slice(data);
        single(CB_FILECONTENTS_RESPONSE, CB_RESPONSE_OK, &b)
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(b))
    }

    fn clipboard_events(events: &[EventKind]) -> Vec<&EventKind> {
        events
            .iter()
            .filter(|e| matches!(e, EventKind::Clipboard { .. }))
            .collect()
    }

    #[test]
    fn text_copied_on_the_target_reaches_the_client_and_is_logged() {
        let mut f = filter(Allow, Allow, ClipboardLog::Content);
        let text = "héllo ✓ 𝄞";
        assert_eq!(f.from_server(&format_list()), Verdict::Forward);
        assert_eq!(
            f.from_client(&single(CB_FORMAT_LIST_RESPONSE, CB_RESPONSE_OK, &[])),
            Verdict::Forward
        );
        assert_eq!(
            f.from_client(&data_request(CF_UNICODETEXT)),
            Verdict::Forward
        );
        assert!(f.take_events().is_empty());
        assert_eq!(
            f.from_server(&data_response(&utf16(text))),
            Verdict::Forward
        );
        assert_eq!(
            f.take_events(),
            vec![EventKind::Clipboard {
                direction: ClipboardDirection::ToClient,
                len: text.len() as u64,
                sha256: Some(sha(text.as_bytes())),
                text: Some(text.to_owned()),
                allowed: true,
            }]
        );
        // The request is answered once: a second response is not read as text.
        assert_eq!(f.from_server(&data_response(&utf16("x"))), Verdict::Forward);
        let events = f.take_events();
        assert!(
            matches!(
                &events[..],
                [EventKind::Clipboard {
                    text: None,
                    len: 4,
                    ..
                }]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn denied_to_client_drops_the_target_offer_and_answers_it() {
        let mut f = filter(Allow, Deny, ClipboardLog::Digest);
        let ok = vec![8, 0, 0, 0, 3, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(
            f.from_server(&format_list()),
            Verdict::DropAndReply(vec![ok])
        );
        let events = f.take_events();
        assert!(
            matches!(&events[..], [EventKind::Policy { rule, action, .. }] if rule == "clipboard.to_client" && action == "blocked"),
            "{events:?}"
        );
        // A request for the target's data is answered with a failure instead of forwarded.
        let fail = vec![8, 0, 0, 0, 3, 0, 0, 0, 5, 0, 2, 0, 0, 0, 0, 0];
        assert_eq!(
            f.from_client(&data_request(CF_UNICODETEXT)),
            Verdict::DropAndReply(vec![fail])
        );
        f.take_events();
        // Data the target sends anyway is dropped and recorded as blocked.
        let text = utf16("secret");
        assert_eq!(f.from_server(&data_response(&text)), Verdict::Drop);
        let events = f.take_events();
        assert_eq!(
            events[0],
            EventKind::Clipboard {
                direction: ClipboardDirection::ToClient,
                len: text.len() as u64,
                sha256: Some(sha(&text)),
                text: None,
                allowed: false,
            }
        );
        assert!(
            matches!(&events[1], EventKind::Policy { rule, .. } if rule == "clipboard.to_client")
        );
        // The other direction still works.
        assert_eq!(f.from_client(&format_list()), Verdict::Forward);
        assert_eq!(
            f.from_server(&data_request(CF_UNICODETEXT)),
            Verdict::Forward
        );
        assert_eq!(
            f.from_client(&data_response(&utf16("ok"))),
            Verdict::Forward
        );
        let events = f.take_events();
        assert_eq!(
            events,
            vec![EventKind::Clipboard {
                direction: ClipboardDirection::ToTarget,
                len: 2,
                sha256: Some(sha(b"ok")),
                text: None,
                allowed: true,
            }]
        );
        // Capabilities and other control messages pass.
        assert_eq!(
            f.from_server(&single(CB_MONITOR_READY, 0, &[])),
            Verdict::Forward
        );
        assert_eq!(
            f.from_client(&single(CB_CLIP_CAPS, 0, &[1, 0, 0, 0])),
            Verdict::Forward
        );
    }

    #[test]
    fn denied_to_target_is_symmetric() {
        let mut f = filter(Deny, Allow, ClipboardLog::Content);
        assert!(
            matches!(f.from_client(&format_list()), Verdict::DropAndReply(r) if r.len() == 1 && r[0][8] == 3)
        );
        assert!(
            matches!(f.from_server(&data_request(CF_UNICODETEXT)), Verdict::DropAndReply(r) if r[0][8] == 5 && r[0][10] == 2)
        );
        f.take_events();
        assert_eq!(f.from_client(&data_response(&utf16("pw"))), Verdict::Drop);
        let events = f.take_events();
        // Never forwarded, so the format is unknown: no text, even with `content`.
        assert!(
            matches!(
                &events[..],
                [
                    EventKind::Clipboard {
                        direction: ClipboardDirection::ToTarget,
                        text: None,
                        allowed: false,
                        ..
                    },
                    EventKind::Policy { .. }
                ]
            ),
            "{events:?}"
        );
        assert_eq!(f.from_server(&format_list()), Verdict::Forward);
    }

    #[test]
    fn log_levels_and_formats() {
        let text = utf16("abc");
        // Length only.
        let mut f = filter(Allow, Allow, ClipboardLog::Length);
        f.from_client(&data_request(CF_UNICODETEXT));
        f.from_server(&data_response(&text));
        assert_eq!(
            f.take_events(),
            vec![EventKind::Clipboard {
                direction: ClipboardDirection::ToClient,
                len: 3,
                sha256: None,
                text: None,
                allowed: true
            }]
        );
        // Other formats: length and digest of the raw data, never text.
        let mut f = filter(Allow, Allow, ClipboardLog::Content);
        f.from_client(&data_request(1));
        f.from_server(&data_response(b"abc\0"));
        assert_eq!(
            f.take_events(),
            vec![EventKind::Clipboard {
                direction: ClipboardDirection::ToClient,
                len: 4,
                sha256: Some(sha(b"abc\0")),
                text: None,
                allowed: true
            }]
        );
        // A failed response is no transfer.
        f.from_client(&data_request(CF_UNICODETEXT));
        assert_eq!(
            f.from_server(&single(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_FAIL, &[])),
            Verdict::Forward
        );
        assert!(f.take_events().is_empty());
    }

    #[test]
    fn chunked_pdus_are_reassembled() {
        let text: String = "0123456789".repeat(30);
        let pdu = cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_OK, &utf16(&text));
        let (a, rest) = pdu.split_at(100);
        let (b, c) = rest.split_at(250);
        let chunks = [
            chunk(
                pdu.len(),
                CHANNEL_FLAG_FIRST | CHANNEL_FLAG_SHOW_PROTOCOL,
                a,
            ),
            chunk(pdu.len(), CHANNEL_FLAG_SHOW_PROTOCOL, b),
            chunk(pdu.len(), CHANNEL_FLAG_LAST | CHANNEL_FLAG_SHOW_PROTOCOL, c),
        ];
        let mut f = filter(Allow, Allow, ClipboardLog::Content);
        f.from_client(&data_request(CF_UNICODETEXT));
        for (i, ch) in chunks.iter().enumerate() {
            assert_eq!(f.from_server(ch), Verdict::Forward);
            if i < 2 {
                assert!(f.take_events().is_empty(), "logged before the last chunk");
            }
        }
        let events = f.take_events();
        assert!(
            matches!(&events[..], [EventKind::Clipboard { text: Some(t), allowed: true, .. }] if *t == text),
            "{events:?}"
        );
        // Denied: every chunk is dropped, the transfer logged once.
        let mut f = filter(Allow, Deny, ClipboardLog::Digest);
        for ch in &chunks {
            assert_eq!(f.from_server(ch), Verdict::Drop);
        }
        let events = f.take_events();
        assert_eq!(clipboard_events(&events).len(), 1);
        // A split request is answered after its last chunk, in the sender's framing.
        let list = cliprdr(CB_FORMAT_LIST, 0, &[13, 0, 0, 0, 0, 0]);
        let (a, b) = list.split_at(5);
        f.from_client(&chunk(list.len(), FIRST_LAST, &list));
        assert_eq!(
            f.from_server(&chunk(
                list.len(),
                CHANNEL_FLAG_FIRST | CHANNEL_FLAG_SHOW_PROTOCOL,
                a
            )),
            Verdict::Drop
        );
        let reply = f.from_server(&chunk(
            list.len(),
            CHANNEL_FLAG_LAST | CHANNEL_FLAG_SHOW_PROTOCOL,
            b,
        ));
        // The reply is made in the client's name; the client did not use SHOW_PROTOCOL.
        assert_eq!(
            reply,
            Verdict::DropAndReply(vec![vec![8, 0, 0, 0, 3, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0, 0]])
        );
        let mut f = filter(Deny, Allow, ClipboardLog::Digest);
        f.from_server(&chunk(
            4,
            FIRST_LAST | CHANNEL_FLAG_SHOW_PROTOCOL,
            &[1, 0, 0, 0],
        ));
        assert_eq!(
            f.from_client(&format_list()),
            Verdict::DropAndReply(vec![vec![
                8, 0, 0, 0, 0x13, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0, 0
            ]])
        );
    }

    #[test]
    fn oversize_pdus_are_dropped_whole_and_not_buffered() {
        let mut f = ClipboardFilter::with_max_pdu(
            ClipboardPolicy {
                to_target: Allow,
                to_client: Allow,
                log: ClipboardLog::Content,
            },
            1024,
        );
        assert_eq!(f.max_pdu(), 1024);
        f.from_client(&data_request(CF_UNICODETEXT));
        let total = 4096;
        let head = cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_OK, &[0x41; 1000]);
        let mut head = head[..1000].to_vec();
        head[4..8].copy_from_slice(&((total - 8) as u32).to_le_bytes());
        assert_eq!(
            f.from_server(&chunk(total, CHANNEL_FLAG_FIRST, &head)),
            Verdict::Drop
        );
        assert_eq!(f.server.pending.as_ref().map(|p| p.buf.capacity()), Some(0));
        assert_eq!(
            f.from_server(&chunk(total, 0, &[0x41; 2000])),
            Verdict::Drop
        );
        assert_eq!(
            f.from_server(&chunk(total, CHANNEL_FLAG_LAST, &[0x41; 1096])),
            Verdict::Drop
        );
        let events = f.take_events();
        assert_eq!(
            events[0],
            EventKind::Clipboard {
                direction: ClipboardDirection::ToClient,
                len: total as u64,
                sha256: None,
                text: None,
                allowed: false,
            }
        );
        assert!(
            matches!(&events[1..], [EventKind::Policy { rule, detail: Some(d), .. }] if rule == "clipboard.size_limit" && d.contains("4096")),
            "{events:?}"
        );
        // The next PDU is handled normally.
        assert_eq!(f.from_server(&format_list()), Verdict::Forward);
        // The default limit is 16 MiB.
        let mut f = filter(Allow, Allow, ClipboardLog::Digest);
        let big = chunk(
            DEFAULT_MAX_PDU + 1,
            CHANNEL_FLAG_FIRST,
            &cliprdr(CB_FORMAT_DATA_RESPONSE, 1, &[0; 16]),
        );
        assert_eq!(f.from_server(&big), Verdict::Drop);
        let exact = chunk(
            DEFAULT_MAX_PDU,
            CHANNEL_FLAG_FIRST,
            &cliprdr(CB_FORMAT_DATA_RESPONSE, 1, &[0; 16]),
        );
        assert_eq!(f.from_server(&exact), Verdict::Forward);
    }

    #[test]
    fn utf16_text_is_decoded_up_to_its_terminator() {
        assert_eq!(utf16le_text(&utf16("a€𝄞")), "a€𝄞");
        assert_eq!(utf16le_text(&[0x68, 0, 0x69, 0, 0, 0, 0x78, 0]), "hi");
        assert_eq!(utf16le_text(&[0x68, 0, 0x69]), "h", "odd last byte");
        assert_eq!(
            utf16le_text(&[0x3D, 0xD8, 0x41, 0]),
            "\u{FFFD}A",
            "lone surrogate"
        );
        assert_eq!(utf16le_text(&[]), "");
        // Windows line ends are kept as sent.
        assert_eq!(utf16le_text(&utf16("a\r\nb")), "a\r\nb");
    }

    #[test]
    fn file_transfers_follow_the_direction_rules() {
        let mut f = filter(Allow, Deny, ClipboardLog::Digest);
        let fail = Verdict::DropAndReply(vec![vec![
            12, 0, 0, 0, 3, 0, 0, 0, 9, 0, 2, 0, 4, 0, 0, 0, 7, 0, 0, 0,
        ]]);
        assert_eq!(f.from_client(&file_request(7, 2)), fail);
        assert_eq!(
            f.from_server(&file_response(7, b"file data")),
            Verdict::Drop
        );
        let events = f.take_events();
        assert!(
            matches!(
                &events[..],
                [
                    EventKind::Policy { .. },
                    EventKind::Clipboard {
                        len: 9,
                        allowed: false,
                        ..
                    },
                    EventKind::Policy { .. }
                ]
            ),
            "{events:?}"
        );
        // Allowed towards the target: size answers are not transfers, data answers are.
        assert_eq!(
            f.from_server(&file_request(1, FILECONTENTS_SIZE)),
            Verdict::Forward
        );
        assert_eq!(
            f.from_client(&file_response(1, &9u64.to_le_bytes())),
            Verdict::Forward
        );
        assert!(f.take_events().is_empty());
        assert_eq!(f.from_server(&file_request(2, 2)), Verdict::Forward);
        assert_eq!(
            f.from_client(&file_response(2, b"contents")),
            Verdict::Forward
        );
        assert_eq!(
            f.take_events(),
            vec![EventKind::Clipboard {
                direction: ClipboardDirection::ToTarget,
                len: 8,
                sha256: Some(sha(b"contents")),
                text: None,
                allowed: true,
            }]
        );
    }

    #[test]
    fn unreadable_payloads_follow_the_sender_direction() {
        let mut f = filter(Allow, Deny, ClipboardLog::Digest);
        for bad in [
            vec![],
            vec![1, 2, 3],
            chunk(2, FIRST_LAST, &[2, 0]),
            chunk(16, CHANNEL_FLAG_LAST, &[5, 0, 1, 0, 8, 0, 0, 0]),
            chunk(
                16,
                FIRST_LAST | CHANNEL_PACKET_COMPRESSED,
                &[5, 0, 1, 0, 8, 0, 0, 0],
            ),
            single(0x7777, 0, &[1, 2, 3]),
        ] {
            assert_eq!(f.from_client(&bad), Verdict::Forward, "{bad:?}");
            assert_eq!(f.from_server(&bad), Verdict::Drop, "{bad:?}");
        }
        // A truncated request is still decided by its type.
        assert!(matches!(
            f.from_client(&chunk(
                12,
                FIRST_LAST,
                &cliprdr(CB_FORMAT_DATA_REQUEST, 0, &[])
            )),
            Verdict::DropAndReply(_)
        ));
        assert!(f
            .take_events()
            .iter()
            .all(|e| !matches!(e, EventKind::Clipboard { allowed: true, .. })));
    }

    fn any_policy() -> impl Strategy<Value = ClipboardPolicy> {
        let access = prop_oneof![Just(Allow), Just(Deny)];
        let log = prop_oneof![
            Just(ClipboardLog::Length),
            Just(ClipboardLog::Digest),
            Just(ClipboardLog::Content)
        ];
        (access.clone(), access, log).prop_map(|(to_target, to_client, log)| ClipboardPolicy {
            to_target,
            to_client,
            log,
        })
    }

    /// Chunks that look like channel traffic: plausible headers, clipboard types and flags.
    fn plausible_chunk() -> impl Strategy<Value = Vec<u8>> {
        (
            0u32..200,
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(2),
                Just(3),
                Just(0x13),
                Just(0x0020_0003),
                any::<u32>()
            ],
            0u16..13,
            0u16..4,
            0u32..200,
            prop::collection::vec(any::<u8>(), 0..120),
            any::<bool>(),
        )
            .prop_map(
                |(total, flags, msg_type, msg_flags, data_len, body, with_header)| {
                    let mut v = total.to_le_bytes().to_vec();
                    v.extend_from_slice(&flags.to_le_bytes());
                    if with_header {
                        v.extend_from_slice(&msg_type.to_le_bytes());
                        v.extend_from_slice(&msg_flags.to_le_bytes());
                        v.extend_from_slice(&data_len.to_le_bytes());
                    }
                    v.extend_from_slice(&body);
                    v
                },
            )
    }

    fn any_chunk() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![prop::collection::vec(any::<u8>(), 0..64), plausible_chunk()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_chunk_sequences_never_panic(
            policy in any_policy(),
            max in prop_oneof![Just(64usize), Just(DEFAULT_MAX_PDU)],
            chunks in prop::collection::vec((any::<bool>(), any_chunk()), 0..40),
        ) {
            let mut f = ClipboardFilter::with_max_pdu(policy, max);
            for (from_client, c) in &chunks {
                let v = if *from_client { f.from_client(c) } else { f.from_server(c) };
                if let Verdict::DropAndReply(replies) = &v {
                    for r in replies {
                        // Replies are well-formed single-chunk clipboard PDUs.
                        prop_assert_eq!(u32_at(r, 0).map(|l| l as usize + 8), Some(r.len()));
                        prop_assert_eq!(u32_at(r, 8 + 4).map(|l| l as usize + 16), Some(r.len()));
                    }
                }
                // Data only crosses in allowed directions.
                for e in f.take_events() {
                    if let EventKind::Clipboard { direction, allowed: true, text, .. } = e {
                        let access = match direction {
                            ClipboardDirection::ToTarget => policy.to_target,
                            ClipboardDirection::ToClient => policy.to_client,
                        };
                        prop_assert_eq!(access, Allow);
                        prop_assert!(text.is_none() || policy.log == ClipboardLog::Content);
                    }
                }
            }
        }
    }
}
