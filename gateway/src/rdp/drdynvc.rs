//! Dynamic virtual channel policy on the `drdynvc` static virtual channel ([MS-RDPEDYC]).
//!
//! [`DynamicChannelFilter`] sees every virtual channel payload of one session's `drdynvc`
//! channel (the user data of an MCS Send Data Request from the client or Send Data Indication
//! from the server: an 8-byte `CHANNEL_PDU_HEADER` and a chunk) and returns a
//! [`Verdict`] for it, exactly like [`crate::rdp::cliprdr::ClipboardFilter`]: forward it, drop
//! it, or drop it and send answers back to the side that sent it. It is sans-I/O; transcript
//! events are collected and handed out by [`DynamicChannelFilter::take_events`].
//!
//! # Channels
//!
//! Dynamic channels are always opened by the server, with a Create Request that names the
//! channel. The filter lets a channel open only when its name is on the allow-list given to
//! [`DynamicChannelFilter::new`] (compared exactly, case included; see
//! [`psmgate_policy::Config::rdp_dynamic_channels`]). The graphics pipeline
//! ([`psmgate_policy::RDP_GRAPHICS_DYNAMIC_CHANNEL`]) is refused even if listed: psmgate
//! withdraws graphics pipeline support and could not record its frames.
//!
//! | PDU (`Cmd`) | from | verdict |
//! |---|---|---|
//! | Create Request (`0x01`), allowed name | server | forwarded; the channel id is remembered as requested |
//! | Create Request (`0x01`), any other name | server | dropped; the server gets a Create Response with `STATUS_ACCESS_DENIED` in the client's name |
//! | Create Response (`0x01`) | client | forwarded for a requested channel (a failure status forgets the id), else dropped |
//! | Data First, Data, and their compressed forms (`0x02`, `0x03`, `0x06`, `0x07`) | either | forwarded on a remembered channel, else dropped |
//! | Close (`0x04`) | either | forwarded on a remembered channel, else dropped; the other side's answering Close is forwarded too, then the id is forgotten |
//! | Capabilities (`0x05`), Soft-Sync Request/Response (`0x08`, `0x09`) | either | forwarded |
//! | anything else, or a PDU that cannot be read | either | dropped |
//!
//! Everything fails closed: a payload without a readable header, a bulk-compressed chunk
//! (psmgate turns bulk compression off), a continuation chunk without its first chunk, an
//! unknown command or an invalid channel id size is dropped. Only the capability exchange is
//! forwarded whatever its content, as it carries no channel data.
//!
//! # Events
//!
//! Every Create Request becomes one `policy` event with rule [`POLICY_RULE`]
//! (`rdp-dynamic-channels`), the channel name as detail (non-printable bytes as `\xNN`), and
//! action `allowed` or `blocked`, so the transcript lists every dynamic channel the target
//! opened or tried to open. Data, closes and malformed PDUs are not logged.
//!
//! # Reassembly
//!
//! A PDU larger than the negotiated chunk size arrives in several chunks (`CHANNEL_FLAG_FIRST`
//! … `CHANNEL_FLAG_LAST`). The decision for a PDU is taken on its first chunk, which holds the
//! dynamic channel header, and applies to every chunk of it, so no chunk is held back; the
//! continuation chunks are paired with their first chunk and counted against the announced
//! length (chunks past it are dropped). A refusal is answered with the last chunk. Bytes are
//! gathered only for a Create Request whose name does not end in its first chunk (the chunk
//! size is at least 1600 bytes, so servers never send one): it cannot be let through, as its
//! first chunk is already dropped, so it is refused, and up to
//! [`psmgate_policy::MAX_RDP_DYNAMIC_CHANNEL_NAME`] bytes of the name are kept for the event.
//! A PDU announced larger than the limit (default [`DEFAULT_MAX_PDU`]) is forwarded only when
//! it is data on a remembered channel; anything else that large is dropped (a Create Request
//! refused).
//!
//! At most [`MAX_CHANNELS`] channel ids are remembered; a Create Request beyond that is
//! refused. Memory use is therefore bounded whatever the peers send.

use crate::rdp::vchannel::{
    single_chunk, split_chunk, u32_at, Verdict, CHANNEL_FLAG_FIRST, CHANNEL_FLAG_LAST,
    CHANNEL_FLAG_SHOW_PROTOCOL, CHANNEL_PACKET_COMPRESSED,
};
use psmgate_codecs::transcript::EventKind;
use psmgate_policy::{MAX_RDP_DYNAMIC_CHANNEL_NAME, RDP_GRAPHICS_DYNAMIC_CHANNEL};
use std::collections::{HashMap, HashSet};

/// Name of the static virtual channel that carries dynamic virtual channels.
pub const CHANNEL_NAME: &str = "drdynvc";

/// Default limit on one `drdynvc` PDU (all its chunks together): 1 MiB.
pub const DEFAULT_MAX_PDU: usize = 1024 * 1024;

/// Most dynamic channel ids remembered at once per session.
pub const MAX_CHANNELS: usize = 1024;

/// `CreationStatus` of the Create Response sent for a refused channel: `STATUS_ACCESS_DENIED`.
pub const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;

/// Rule id of the `policy` events this filter records.
pub const POLICY_RULE: &str = "rdp-dynamic-channels";

const CMD_CREATE: u8 = 0x01;
const CMD_DATA_FIRST: u8 = 0x02;
const CMD_DATA: u8 = 0x03;
const CMD_CLOSE: u8 = 0x04;
const CMD_CAPABILITY: u8 = 0x05;
const CMD_DATA_FIRST_COMPRESSED: u8 = 0x06;
const CMD_DATA_COMPRESSED: u8 = 0x07;
const CMD_SOFT_SYNC_REQUEST: u8 = 0x08;
const CMD_SOFT_SYNC_RESPONSE: u8 = 0x09;

/// The two ends of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Where a remembered channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    /// The Create Request was forwarded; the client has not answered yet.
    Requested,
    /// The client accepted it.
    Open,
    /// This side sent a Close; the other side's answering Close is still to come.
    Closing(Side),
}

/// How a channel id is written: 1, 2 or 4 bytes (`cbId` 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChannelId {
    cb_id: u8,
    id: u32,
}

/// What happens to every chunk of the PDU being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Forward,
    Drop,
    /// A refused Create Request: dropped, answered with the last chunk.
    Refuse(ChannelId),
}

/// A PDU whose chunks are arriving.
#[derive(Debug)]
struct Pending {
    plan: Plan,
    /// Length announced in the channel header (all chunks together).
    total: usize,
    /// Bytes received so far.
    received: usize,
    /// The start of a channel name that did not end in the first chunk (bounded).
    name: Option<Vec<u8>>,
}

/// Per-side state.
#[derive(Debug, Default)]
struct SideState {
    pending: Option<Pending>,
    /// Whether this side's chunks carry `CHANNEL_FLAG_SHOW_PROTOCOL` (mirrored in replies
    /// made in its name).
    show_protocol: bool,
}

/// Applies a dynamic channel allow-list to one session's `drdynvc` channel (see the module
/// documentation).
#[derive(Debug)]
pub struct DynamicChannelFilter {
    allowed: HashSet<String>,
    max_pdu: usize,
    channels: HashMap<u32, ChannelState>,
    client: SideState,
    server: SideState,
    events: Vec<EventKind>,
}

impl DynamicChannelFilter {
    /// A filter letting the channels named in `allowed` open (exact names, as from
    /// [`psmgate_policy::Config::rdp_dynamic_channels`]), with the default PDU limit.
    pub fn new(allowed: Vec<String>) -> Self {
        Self::with_max_pdu(allowed, DEFAULT_MAX_PDU)
    }

    /// A filter whose PDUs may be at most `max_pdu` bytes (all chunks together, without
    /// channel headers) unless they are data on a channel the filter let open.
    pub fn with_max_pdu(allowed: Vec<String>, max_pdu: usize) -> Self {
        DynamicChannelFilter {
            allowed: allowed
                .into_iter()
                .filter(|n| !n.eq_ignore_ascii_case(RDP_GRAPHICS_DYNAMIC_CHANNEL))
                .collect(),
            max_pdu,
            channels: HashMap::new(),
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

    fn state(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn chunk(&mut self, side: Side, chunk: &[u8]) -> Verdict {
        let Some((length, flags, data)) = split_chunk(chunk) else {
            return Verdict::Drop;
        };
        let last = flags & CHANNEL_FLAG_LAST != 0;
        let mut pending = if flags & CHANNEL_FLAG_FIRST != 0 {
            self.state(side).show_protocol = flags & CHANNEL_FLAG_SHOW_PROTOCOL != 0;
            // A new PDU abandons one left unfinished (its refusal, if any, goes unanswered).
            if let Some(old) = self.state(side).pending.take() {
                self.log_split_name(&old);
            }
            let total = usize::try_from(length).unwrap_or(usize::MAX);
            let readable = flags & CHANNEL_PACKET_COMPRESSED == 0;
            self.start(side, total, readable, last, data)
        } else {
            // A continuation without its first chunk is dropped.
            let Some(mut pending) = self.state(side).pending.take() else {
                return Verdict::Drop;
            };
            pending.received = pending.received.saturating_add(data.len());
            if let Some(name) = &mut pending.name {
                let room = MAX_RDP_DYNAMIC_CHANNEL_NAME
                    .saturating_add(1)
                    .saturating_sub(name.len());
                name.extend(data.iter().take(room));
            }
            pending
        };
        if pending.received > pending.total && pending.plan == Plan::Forward {
            // More than announced: the rest is not part of the PDU the decision was taken on.
            pending.plan = Plan::Drop;
        }
        if last {
            self.finish(pending)
        } else {
            let verdict = match pending.plan {
                Plan::Forward => Verdict::Forward,
                Plan::Drop | Plan::Refuse(_) => Verdict::Drop,
            };
            self.state(side).pending = Some(pending);
            verdict
        }
    }

    /// Decides a PDU from its first chunk (`data`, without the channel header).
    fn start(
        &mut self,
        side: Side,
        total: usize,
        readable: bool,
        last: bool,
        data: &[u8],
    ) -> Pending {
        let mut pending = Pending {
            plan: Plan::Drop,
            total,
            received: data.len(),
            name: None,
        };
        let oversize = total > self.max_pdu;
        let header = if readable { data.first() } else { None };
        let Some(&header) = header else {
            return pending;
        };
        let cmd = header >> 4;
        let sp = (header >> 2) & 0x03;
        let cb_id = header & 0x03;
        let rest = data.get(1..).unwrap_or_default();
        pending.plan = match cmd {
            CMD_CAPABILITY | CMD_SOFT_SYNC_REQUEST | CMD_SOFT_SYNC_RESPONSE if !oversize => {
                Plan::Forward
            }
            CMD_CREATE => match side {
                Side::Server => self.create_request(cb_id, rest, oversize, last, &mut pending.name),
                Side::Client if !oversize => self.create_response(cb_id, rest),
                Side::Client => Plan::Drop,
            },
            CMD_DATA_FIRST | CMD_DATA_FIRST_COMPRESSED => match read_id(cb_id, rest) {
                Some((id, after)) if len_size(sp).is_some_and(|n| after.len() >= n) => {
                    self.data(id.id)
                }
                _ => Plan::Drop,
            },
            CMD_DATA | CMD_DATA_COMPRESSED => match read_id(cb_id, rest) {
                Some((id, _)) => self.data(id.id),
                None => Plan::Drop,
            },
            CMD_CLOSE if !oversize => match read_id(cb_id, rest) {
                Some((id, _)) => self.close(side, id.id),
                None => Plan::Drop,
            },
            _ => Plan::Drop,
        };
        pending
    }

    /// A Create Request from the server: `rest` is what follows the header byte.
    fn create_request(
        &mut self,
        cb_id: u8,
        rest: &[u8],
        oversize: bool,
        last: bool,
        split_name: &mut Option<Vec<u8>>,
    ) -> Plan {
        let Some((id, name_bytes)) = read_id(cb_id, rest) else {
            // Without a channel id there is nobody to answer.
            return Plan::Drop;
        };
        let terminated = name_bytes.contains(&0);
        let name = match name_bytes.iter().position(|&b| b == 0) {
            Some(end) => name_bytes.get(..end).unwrap_or_default(),
            None if !last => {
                // The name goes on in the next chunk: refused, named when complete.
                let keep = name_bytes
                    .len()
                    .min(MAX_RDP_DYNAMIC_CHANNEL_NAME.saturating_add(1));
                *split_name = Some(name_bytes.get(..keep).unwrap_or_default().to_vec());
                self.channels.remove(&id.id);
                return Plan::Refuse(id);
            }
            // Not terminated at all: refused under what was sent.
            None => name_bytes,
        };
        let listed = terminated
            && std::str::from_utf8(name)
                .ok()
                .filter(|n| self.allowed.contains(*n))
                .is_some();
        let room = self.channels.len() < MAX_CHANNELS || self.channels.contains_key(&id.id);
        let shown = display_name(name);
        if listed && !oversize && room {
            self.channels.insert(id.id, ChannelState::Requested);
            self.event("allowed", shown);
            Plan::Forward
        } else {
            // An id reused for a refused channel no longer carries the old one.
            self.channels.remove(&id.id);
            let detail = if listed && !room {
                format!("{shown} (more than {MAX_CHANNELS} dynamic channels)")
            } else {
                shown
            };
            self.event("blocked", detail);
            Plan::Refuse(id)
        }
    }

    /// A Create Response from the client.
    fn create_response(&mut self, cb_id: u8, rest: &[u8]) -> Plan {
        let Some((id, after)) = read_id(cb_id, rest) else {
            return Plan::Drop;
        };
        let Some(status) = u32_at(after, 0) else {
            return Plan::Drop;
        };
        if self.channels.get(&id.id) != Some(&ChannelState::Requested) {
            // An answer to a request the client never saw, or a second answer.
            return Plan::Drop;
        }
        // `CreationStatus` is an HRESULT: negative means the client did not open it.
        if status & 0x8000_0000 != 0 {
            self.channels.remove(&id.id);
        } else {
            self.channels.insert(id.id, ChannelState::Open);
        }
        Plan::Forward
    }

    /// Data on channel `id`.
    fn data(&self, id: u32) -> Plan {
        if self.channels.contains_key(&id) {
            Plan::Forward
        } else {
            Plan::Drop
        }
    }

    /// A Close from `side` for channel `id`.
    fn close(&mut self, side: Side, id: u32) -> Plan {
        match self.channels.get(&id).copied() {
            None => Plan::Drop,
            Some(ChannelState::Closing(by)) if by != side => {
                self.channels.remove(&id);
                Plan::Forward
            }
            Some(ChannelState::Closing(_)) => Plan::Forward,
            Some(ChannelState::Requested | ChannelState::Open) => {
                self.channels.insert(id, ChannelState::Closing(side));
                Plan::Forward
            }
        }
    }

    /// The verdict for the last chunk of a PDU.
    fn finish(&mut self, pending: Pending) -> Verdict {
        self.log_split_name(&pending);
        match pending.plan {
            Plan::Forward => Verdict::Forward,
            Plan::Drop => Verdict::Drop,
            Plan::Refuse(id) => {
                Verdict::DropAndReply(vec![encode_refusal(id, self.client.show_protocol)])
            }
        }
    }

    /// Records the refusal of a Create Request whose name spanned chunks.
    fn log_split_name(&mut self, pending: &Pending) {
        if let (Plan::Refuse(_), Some(name)) = (pending.plan, &pending.name) {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let shown = display_name(name.get(..end).unwrap_or_default());
            self.event(
                "blocked",
                format!("{shown} (channel name split across chunks)"),
            );
        }
    }

    fn event(&mut self, action: &str, detail: String) {
        self.events.push(EventKind::Policy {
            rule: POLICY_RULE.to_owned(),
            action: action.to_owned(),
            detail: Some(detail),
        });
    }
}

/// Size of the `Length` field of a Data First PDU for its `Sp` bits.
fn len_size(sp: u8) -> Option<usize> {
    match sp {
        0 => Some(1),
        1 => Some(2),
        2 => Some(4),
        _ => None,
    }
}

/// Reads a channel id of `cb_id` size from the start of `b`; returns it and what follows.
fn read_id(cb_id: u8, b: &[u8]) -> Option<(ChannelId, &[u8])> {
    let (id, n) = match cb_id {
        0 => (u32::from(*b.first()?), 1),
        1 => (
            u32::from(u16::from_le_bytes(b.get(..2)?.try_into().ok()?)),
            2,
        ),
        2 => (u32_at(b, 0)?, 4),
        _ => return None,
    };
    Some((ChannelId { cb_id, id }, b.get(n..)?))
}

/// A channel name for the transcript: printable ASCII as is, other bytes as `\xNN`, at most
/// [`MAX_RDP_DYNAMIC_CHANNEL_NAME`] bytes (longer names end in `…`).
fn display_name(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len().min(MAX_RDP_DYNAMIC_CHANNEL_NAME));
    for &b in name.iter().take(MAX_RDP_DYNAMIC_CHANNEL_NAME) {
        if b == b' ' || b.is_ascii_graphic() {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if name.len() > MAX_RDP_DYNAMIC_CHANNEL_NAME {
        s.push('…');
    }
    s
}

/// A single-chunk Create Response refusing channel `id` with `STATUS_ACCESS_DENIED`, in the
/// client's framing.
fn encode_refusal(id: ChannelId, show_protocol: bool) -> Vec<u8> {
    let mut pdu = Vec::with_capacity(9);
    pdu.push((CMD_CREATE << 4) | id.cb_id);
    let bytes = id.id.to_le_bytes();
    match id.cb_id {
        0 => pdu.extend_from_slice(bytes.get(..1).unwrap_or_default()),
        1 => pdu.extend_from_slice(bytes.get(..2).unwrap_or_default()),
        _ => pdu.extend_from_slice(&bytes),
    }
    pdu.extend_from_slice(&STATUS_ACCESS_DENIED.to_le_bytes());
    single_chunk(&pdu, show_protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIRST_LAST: u32 = CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST;
    const DISPLAY: &str = "Microsoft::Windows::RDS::DisplayControl";

    fn chunk(total: usize, flags: u32, data: &[u8]) -> Vec<u8> {
        let mut v = (total as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn single(pdu: &[u8]) -> Vec<u8> {
        chunk(pdu.len(), FIRST_LAST, pdu)
    }

    fn id_bytes(cb_id: u8, id: u32) -> Vec<u8> {
        let b = id.to_le_bytes();
        match cb_id {
            0 => b[..1].to_vec(),
            1 => b[..2].to_vec(),
            _ => b.to_vec(),
        }
    }

    fn create_req(cb_id: u8, id: u32, name: &str) -> Vec<u8> {
        let mut v = vec![(CMD_CREATE << 4) | cb_id];
        v.extend(id_bytes(cb_id, id));
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        v
    }

    fn create_rsp(cb_id: u8, id: u32, status: u32) -> Vec<u8> {
        let mut v = vec![(CMD_CREATE << 4) | cb_id];
        v.extend(id_bytes(cb_id, id));
        v.extend_from_slice(&status.to_le_bytes());
        v
    }

    fn data(cb_id: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(CMD_DATA << 4) | cb_id];
        v.extend(id_bytes(cb_id, id));
        v.extend_from_slice(payload);
        v
    }

    fn data_first(cb_id: u8, id: u32, total: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(CMD_DATA_FIRST << 4) | (2 << 2) | cb_id];
        v.extend(id_bytes(cb_id, id));
        v.extend_from_slice(&total.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn close(cb_id: u8, id: u32) -> Vec<u8> {
        let mut v = vec![(CMD_CLOSE << 4) | cb_id];
        v.extend(id_bytes(cb_id, id));
        v
    }

    fn filter(allowed: &[&str]) -> DynamicChannelFilter {
        DynamicChannelFilter::new(allowed.iter().map(|s| (*s).to_owned()).collect())
    }

    fn policy(action: &str, detail: &str) -> EventKind {
        EventKind::Policy {
            rule: "rdp-dynamic-channels".into(),
            action: action.into(),
            detail: Some(detail.into()),
        }
    }

    /// Opens channel `id` (1-byte id) through the filter.
    fn open(f: &mut DynamicChannelFilter, id: u32, name: &str) {
        assert_eq!(
            f.from_server(&single(&create_req(0, id, name))),
            Verdict::Forward
        );
        assert_eq!(
            f.from_client(&single(&create_rsp(0, id, 0))),
            Verdict::Forward
        );
    }

    #[test]
    fn capabilities_and_soft_sync_pass() {
        let mut f = filter(&[]);
        let caps_v3 = [
            0x50, 0, 3, 0, 0xA8, 0x3C, 0x1E, 0x0F, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(f.from_server(&single(&caps_v3)), Verdict::Forward);
        assert_eq!(f.from_client(&single(&[0x50, 0, 3, 0])), Verdict::Forward);
        // Even when short: the exchange carries no channel data.
        assert_eq!(f.from_server(&single(&[0x50])), Verdict::Forward);
        let soft_sync = [0x80, 0, 8, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(f.from_server(&single(&soft_sync)), Verdict::Forward);
        assert_eq!(
            f.from_client(&single(&[0x90, 0, 0, 0, 0, 0])),
            Verdict::Forward
        );
        assert!(f.take_events().is_empty());
    }

    #[test]
    fn allowed_channel_opens_carries_data_and_closes() {
        let mut f = filter(&[DISPLAY, "AUDIO_INPUT"]);
        assert_eq!(
            f.from_server(&single(&create_req(0, 3, DISPLAY))),
            Verdict::Forward
        );
        assert_eq!(f.take_events(), vec![policy("allowed", DISPLAY)]);
        assert_eq!(
            f.from_client(&single(&create_rsp(0, 3, 0))),
            Verdict::Forward
        );
        assert_eq!(f.channels.get(&3), Some(&ChannelState::Open));
        assert_eq!(
            f.from_client(&single(&data(0, 3, b"resize"))),
            Verdict::Forward
        );
        assert_eq!(
            f.from_server(&single(&data(0, 3, b"caps"))),
            Verdict::Forward
        );
        // The same id written with 2 or 4 bytes is the same channel.
        assert_eq!(f.from_server(&single(&data(1, 3, b"x"))), Verdict::Forward);
        assert_eq!(f.from_client(&single(&data(2, 3, b"x"))), Verdict::Forward);
        // The server closes, the client answers; both cross, then the id is forgotten.
        assert_eq!(f.from_server(&single(&close(0, 3))), Verdict::Forward);
        assert_eq!(f.from_client(&single(&close(0, 3))), Verdict::Forward);
        assert!(f.channels.is_empty());
        assert_eq!(f.from_server(&single(&data(0, 3, b"late"))), Verdict::Drop);
        assert_eq!(f.from_client(&single(&close(0, 3))), Verdict::Drop);
        // A client-initiated close works the same way.
        open(&mut f, 4, "AUDIO_INPUT");
        assert_eq!(f.from_client(&single(&close(0, 4))), Verdict::Forward);
        assert_eq!(f.from_client(&single(&close(0, 4))), Verdict::Forward);
        assert_eq!(f.from_server(&single(&data(0, 4, b"x"))), Verdict::Forward);
        assert_eq!(f.from_server(&single(&close(0, 4))), Verdict::Forward);
        assert_eq!(f.from_server(&single(&data(0, 4, b"x"))), Verdict::Drop);
        assert!(f.channels.is_empty());
    }

    #[test]
    fn denied_channels_are_refused_with_exact_replies() {
        let mut f = filter(&[DISPLAY]);
        // 1-byte id.
        assert_eq!(
            f.from_server(&single(&create_req(0, 0x07, "FileRedirectorChannel"))),
            Verdict::DropAndReply(vec![vec![
                6, 0, 0, 0, 3, 0, 0, 0, 0x10, 0x07, 0x22, 0x00, 0x00, 0xC0
            ]])
        );
        // 2-byte id.
        assert_eq!(
            f.from_server(&single(&create_req(1, 0x1234, "PNPDR"))),
            Verdict::DropAndReply(vec![vec![
                7, 0, 0, 0, 3, 0, 0, 0, 0x11, 0x34, 0x12, 0x22, 0x00, 0x00, 0xC0
            ]])
        );
        // 4-byte id.
        assert_eq!(
            f.from_server(&single(&create_req(2, 0xDEAD_BEEF, "URBDRC"))),
            Verdict::DropAndReply(vec![vec![
                9, 0, 0, 0, 3, 0, 0, 0, 0x12, 0xEF, 0xBE, 0xAD, 0xDE, 0x22, 0x00, 0x00, 0xC0
            ]])
        );
        // Case matters.
        assert!(matches!(
            f.from_server(&single(&create_req(0, 9, &DISPLAY.to_lowercase()))),
            Verdict::DropAndReply(_)
        ));
        assert_eq!(
            f.take_events(),
            vec![
                policy("blocked", "FileRedirectorChannel"),
                policy("blocked", "PNPDR"),
                policy("blocked", "URBDRC"),
                policy("blocked", &DISPLAY.to_lowercase()),
            ]
        );
        // Nothing on a refused channel crosses, from either side.
        for id in [0x07, 0x1234, 0xDEAD_BEEF, 9] {
            for cb_id in [0u8, 1, 2] {
                assert_eq!(
                    f.from_server(&single(&data(cb_id, id, b"x"))),
                    Verdict::Drop
                );
                assert_eq!(
                    f.from_client(&single(&data(cb_id, id, b"x"))),
                    Verdict::Drop
                );
                assert_eq!(
                    f.from_server(&single(&data_first(cb_id, id, 10, b"x"))),
                    Verdict::Drop
                );
            }
            assert_eq!(f.from_client(&single(&create_rsp(2, id, 0))), Verdict::Drop);
            assert_eq!(f.from_server(&single(&close(2, id))), Verdict::Drop);
            assert_eq!(f.from_client(&single(&close(2, id))), Verdict::Drop);
        }
        // Compressed data as well.
        let mut compressed = data(0, 7, b"x");
        compressed[0] = CMD_DATA_COMPRESSED << 4;
        assert_eq!(f.from_server(&single(&compressed)), Verdict::Drop);
        assert!(f.channels.is_empty());
        assert!(f.take_events().is_empty());
    }

    #[test]
    fn the_graphics_pipeline_is_refused_even_when_listed() {
        let mut f = filter(&[RDP_GRAPHICS_DYNAMIC_CHANNEL, DISPLAY]);
        assert!(matches!(
            f.from_server(&single(&create_req(0, 1, RDP_GRAPHICS_DYNAMIC_CHANNEL))),
            Verdict::DropAndReply(_)
        ));
        assert_eq!(
            f.take_events(),
            vec![policy("blocked", "Microsoft::Windows::RDS::Graphics")]
        );
        assert_eq!(
            f.from_server(&single(&create_req(0, 2, DISPLAY))),
            Verdict::Forward
        );
    }

    #[test]
    fn replies_mirror_the_clients_show_protocol_flag() {
        let mut f = filter(&[]);
        f.from_client(&chunk(
            4,
            FIRST_LAST | CHANNEL_FLAG_SHOW_PROTOCOL,
            &[0x50, 0, 1, 0],
        ));
        assert_eq!(
            f.from_server(&single(&create_req(0, 5, "x"))),
            Verdict::DropAndReply(vec![vec![
                6, 0, 0, 0, 0x13, 0, 0, 0, 0x10, 0x05, 0x22, 0x00, 0x00, 0xC0
            ]])
        );
    }

    #[test]
    fn failed_or_unexpected_create_responses() {
        let mut f = filter(&["AUDIO_INPUT"]);
        f.from_server(&single(&create_req(0, 1, "AUDIO_INPUT")));
        // The client declines (E_FAIL): forwarded, and the id forgotten.
        assert_eq!(
            f.from_client(&single(&create_rsp(0, 1, 0x8000_4005))),
            Verdict::Forward
        );
        assert!(f.channels.is_empty());
        assert_eq!(f.from_server(&single(&data(0, 1, b"x"))), Verdict::Drop);
        // A second answer, or one without a status, is dropped.
        open(&mut f, 2, "AUDIO_INPUT");
        assert_eq!(f.from_client(&single(&create_rsp(0, 2, 0))), Verdict::Drop);
        f.from_server(&single(&create_req(0, 3, "AUDIO_INPUT")));
        assert_eq!(f.from_client(&single(&[0x10, 3, 0, 0])), Verdict::Drop);
        assert_eq!(f.channels.get(&3), Some(&ChannelState::Requested));
        // An id reused for a refused channel stops carrying the old one.
        assert!(matches!(
            f.from_server(&single(&create_req(0, 2, "PNPDR"))),
            Verdict::DropAndReply(_)
        ));
        assert_eq!(f.from_client(&single(&data(0, 2, b"x"))), Verdict::Drop);
    }

    #[test]
    fn malformed_payloads_are_dropped() {
        let mut f = filter(&["A"]);
        open(&mut f, 1, "A");
        f.take_events();
        for bad in [
            vec![],
            vec![1, 0, 0],
            chunk(0, FIRST_LAST, &[]),
            // Invalid id size (cbId = 3).
            single(&[0x33, 1, 0, 0, 0, 0]),
            // Truncated ids.
            single(&[0x32, 1, 0]),
            single(&[0x31, 1]),
            single(&[0x30]),
            // Data First with an invalid or truncated length field.
            single(&[0x2C, 1, 0, 0, 0, 0]),
            single(&[0x28, 1, 0]),
            // Unknown commands.
            single(&[0x00, 1]),
            single(&[0xA0, 1, 0]),
            single(&[0xF0, 1, 0]),
            // A bulk-compressed chunk cannot be read.
            chunk(2, FIRST_LAST | CHANNEL_PACKET_COMPRESSED, &data(0, 1, b"x")),
            // A continuation without its first chunk.
            chunk(10, CHANNEL_FLAG_LAST, &data(0, 1, b"x")),
        ] {
            assert_eq!(f.from_server(&bad), Verdict::Drop, "{bad:?}");
            assert_eq!(f.from_client(&bad), Verdict::Drop, "{bad:?}");
        }
        // Without a channel id there is nobody to answer.
        assert_eq!(f.from_server(&single(&[0x12, 1, 0])), Verdict::Drop);
        // A name that is not terminated is refused under what was sent.
        assert!(matches!(
            f.from_server(&single(&[0x10, 9, b'A'])),
            Verdict::DropAndReply(_)
        ));
        // Non-printable bytes are escaped in the event.
        assert!(matches!(
            f.from_server(&single(&[0x10, 8, b'A', 0x07, 0xFF, 0])),
            Verdict::DropAndReply(_)
        ));
        assert_eq!(
            f.take_events(),
            vec![policy("blocked", "A"), policy("blocked", "A\\x07\\xff")]
        );
        // The channel opened before is still usable.
        assert_eq!(f.from_server(&single(&data(0, 1, b"x"))), Verdict::Forward);
    }

    #[test]
    fn chunked_pdus_follow_their_first_chunk() {
        let mut f = filter(&["AUDIO_PLAYBACK_DVC"]);
        open(&mut f, 6, "AUDIO_PLAYBACK_DVC");
        let pdu = data_first(0, 6, 500, &[0x41; 500]);
        let (a, rest) = pdu.split_at(100);
        let (b, c) = rest.split_at(250);
        let chunks = [
            chunk(pdu.len(), CHANNEL_FLAG_FIRST, a),
            chunk(pdu.len(), 0, b),
            chunk(pdu.len(), CHANNEL_FLAG_LAST, c),
        ];
        for ch in &chunks {
            assert_eq!(f.from_server(ch), Verdict::Forward);
        }
        // On an unknown channel every chunk is dropped.
        let pdu = data_first(0, 7, 500, &[0x41; 500]);
        let (a, rest) = pdu.split_at(100);
        let (b, c) = rest.split_at(250);
        assert_eq!(
            f.from_server(&chunk(pdu.len(), CHANNEL_FLAG_FIRST, a)),
            Verdict::Drop
        );
        // The other direction is independent.
        assert_eq!(f.from_client(&single(&data(0, 6, b"x"))), Verdict::Forward);
        assert_eq!(f.from_server(&chunk(pdu.len(), 0, b)), Verdict::Drop);
        assert_eq!(
            f.from_server(&chunk(pdu.len(), CHANNEL_FLAG_LAST, c)),
            Verdict::Drop
        );
        // Chunks past the announced length are dropped.
        let pdu = data(0, 6, &[0x42; 20]);
        assert_eq!(
            f.from_server(&chunk(pdu.len(), CHANNEL_FLAG_FIRST, &pdu)),
            Verdict::Forward
        );
        assert_eq!(f.from_server(&chunk(pdu.len(), 0, b"extra")), Verdict::Drop);
        assert_eq!(
            f.from_server(&chunk(pdu.len(), CHANNEL_FLAG_LAST, b"x")),
            Verdict::Drop
        );
        // A new first chunk abandons an unfinished PDU; its continuation is then an orphan.
        assert_eq!(
            f.from_server(&chunk(100, CHANNEL_FLAG_FIRST, &data(0, 6, &[0; 10]))),
            Verdict::Forward
        );
        assert_eq!(f.from_server(&single(&data(0, 7, b"x"))), Verdict::Drop);
        assert_eq!(
            f.from_server(&chunk(100, CHANNEL_FLAG_LAST, &[0; 90])),
            Verdict::Drop
        );
    }

    #[test]
    fn a_create_request_split_inside_its_name_is_refused_and_named() {
        let mut f = filter(&[DISPLAY]);
        f.from_client(&chunk(
            4,
            FIRST_LAST | CHANNEL_FLAG_SHOW_PROTOCOL,
            &[0x50, 0, 1, 0],
        ));
        let pdu = create_req(1, 0x0102, DISPLAY);
        let (a, rest) = pdu.split_at(10);
        let (b, c) = rest.split_at(10);
        assert_eq!(
            f.from_server(&chunk(pdu.len(), CHANNEL_FLAG_FIRST, a)),
            Verdict::Drop
        );
        assert_eq!(f.from_server(&chunk(pdu.len(), 0, b)), Verdict::Drop);
        assert!(f.take_events().is_empty(), "named once complete");
        assert_eq!(
            f.from_server(&chunk(pdu.len(), CHANNEL_FLAG_LAST, c)),
            Verdict::DropAndReply(vec![vec![
                7, 0, 0, 0, 0x13, 0, 0, 0, 0x11, 0x02, 0x01, 0x22, 0x00, 0x00, 0xC0
            ]])
        );
        assert_eq!(
            f.take_events(),
            vec![policy(
                "blocked",
                &format!("{DISPLAY} (channel name split across chunks)")
            )]
        );
        assert!(f.channels.is_empty());
        // A request whose name ends in its first chunk is decided there, even if more follows.
        let pdu = create_req(0, 4, DISPLAY);
        assert_eq!(
            f.from_server(&chunk(pdu.len() + 3, CHANNEL_FLAG_FIRST, &pdu)),
            Verdict::Forward
        );
        assert_eq!(
            f.from_server(&chunk(pdu.len() + 3, CHANNEL_FLAG_LAST, &[0, 0, 0])),
            Verdict::Forward
        );
        // A split name is gathered only up to the longest name.
        let mut long = vec![0x10, 9];
        long.extend_from_slice(&[b'n'; 300]);
        f.take_events();
        f.from_server(&chunk(2000, CHANNEL_FLAG_FIRST, &long));
        f.from_server(&chunk(2000, 0, &[b'n'; 1000]));
        assert!(f
            .server
            .pending
            .as_ref()
            .and_then(|p| p.name.as_ref())
            .is_some_and(|n| n.len() == MAX_RDP_DYNAMIC_CHANNEL_NAME + 1));
        assert!(matches!(
            f.from_server(&chunk(2000, CHANNEL_FLAG_LAST, &[0; 698])),
            Verdict::DropAndReply(_)
        ));
        let events = f.take_events();
        assert!(
            matches!(&events[..], [EventKind::Policy { detail: Some(d), .. }] if d.starts_with(&format!("{}…", "n".repeat(256)))),
            "{events:?}"
        );
    }

    #[test]
    fn oversize_pdus_cross_only_as_data_on_open_channels() {
        let mut f = DynamicChannelFilter::with_max_pdu(vec!["A".into()], 64);
        assert_eq!(f.max_pdu(), 64);
        assert_eq!(DynamicChannelFilter::new(vec![]).max_pdu(), DEFAULT_MAX_PDU);
        open(&mut f, 1, "A");
        f.take_events();
        let head = data_first(0, 1, 100, &[0; 40]);
        assert_eq!(
            f.from_server(&chunk(106, CHANNEL_FLAG_FIRST, &head)),
            Verdict::Forward
        );
        assert_eq!(
            f.from_server(&chunk(106, CHANNEL_FLAG_LAST, &[0; 60])),
            Verdict::Forward
        );
        assert!(f.server.pending.is_none());
        // Anything else that large is dropped; a create request is refused.
        assert_eq!(
            f.from_server(&chunk(100, CHANNEL_FLAG_FIRST, &data(0, 2, &[0; 40]))),
            Verdict::Drop
        );
        assert_eq!(
            f.from_server(&chunk(100, CHANNEL_FLAG_FIRST, &[0x50, 0, 1, 0])),
            Verdict::Drop
        );
        assert_eq!(
            f.from_server(&chunk(100, CHANNEL_FLAG_FIRST, &create_req(0, 3, "A"))),
            Verdict::Drop
        );
        assert!(matches!(
            f.from_server(&chunk(100, CHANNEL_FLAG_LAST, &[0; 90])),
            Verdict::DropAndReply(_)
        ));
        assert_eq!(f.take_events(), vec![policy("blocked", "A")]);
        assert_eq!(
            f.from_client(&chunk(100, FIRST_LAST, &close(0, 1))),
            Verdict::Drop
        );
        assert_eq!(f.channels.get(&1), Some(&ChannelState::Open));
    }

    #[test]
    fn remembered_channels_are_bounded() {
        let mut f = filter(&["A"]);
        for id in 0..MAX_CHANNELS as u32 {
            assert_eq!(
                f.from_server(&single(&create_req(1, id, "A"))),
                Verdict::Forward
            );
        }
        f.take_events();
        assert!(matches!(
            f.from_server(&single(&create_req(1, 5000, "A"))),
            Verdict::DropAndReply(_)
        ));
        assert_eq!(
            f.take_events(),
            vec![policy("blocked", "A (more than 1024 dynamic channels)")]
        );
        // Re-creating a remembered id needs no room.
        assert_eq!(
            f.from_server(&single(&create_req(1, 7, "A"))),
            Verdict::Forward
        );
        assert_eq!(f.channels.len(), MAX_CHANNELS);
    }

    /// Chunks that look like drdynvc traffic: plausible headers, commands, ids and names.
    fn plausible_chunk() -> impl Strategy<Value = Vec<u8>> {
        (
            0u32..300,
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(2),
                Just(3),
                Just(0x13),
                Just(0x0020_0003),
                any::<u32>()
            ],
            0u8..=0xFF,
            0u32..8,
            prop_oneof![
                Just(b"A\0".to_vec()),
                Just(b"B\0".to_vec()),
                Just(b"Microsoft::Windows::RDS::Graphics\0".to_vec()),
                Just(vec![0, 0, 0, 0]),
                Just(vec![0x22, 0, 0, 0xC0]),
                prop::collection::vec(any::<u8>(), 0..40),
            ],
        )
            .prop_map(|(total, flags, header, id, body)| {
                let mut v = total.to_le_bytes().to_vec();
                v.extend_from_slice(&flags.to_le_bytes());
                v.push(header);
                v.extend(id.to_le_bytes().iter().take(match header & 3 {
                    0 => 1,
                    1 => 2,
                    _ => 4,
                }));
                v.extend_from_slice(&body);
                v
            })
    }

    fn any_chunk() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![prop::collection::vec(any::<u8>(), 0..64), plausible_chunk()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_chunk_sequences_never_panic(
            open_list in any::<bool>(),
            max in prop_oneof![Just(16usize), Just(DEFAULT_MAX_PDU)],
            chunks in prop::collection::vec((any::<bool>(), any_chunk()), 0..60),
        ) {
            let allowed = if open_list {
                vec!["A".to_owned(), RDP_GRAPHICS_DYNAMIC_CHANNEL.to_owned()]
            } else {
                Vec::new()
            };
            let mut f = DynamicChannelFilter::with_max_pdu(allowed, max);
            for (from_client, c) in &chunks {
                let v = if *from_client { f.from_client(c) } else { f.from_server(c) };
                match &v {
                    Verdict::DropAndReply(replies) => {
                        // Only create requests from the server are answered, with one
                        // well-formed refusal.
                        prop_assert!(!*from_client);
                        prop_assert_eq!(replies.len(), 1);
                        let r = &replies[0];
                        prop_assert_eq!(u32_at(r, 0).map(|l| l as usize + 8), Some(r.len()));
                        prop_assert_eq!(r.get(8).map(|h| h >> 4), Some(CMD_CREATE));
                        prop_assert_eq!(u32_at(r, r.len() - 4), Some(STATUS_ACCESS_DENIED));
                    }
                    Verdict::Forward if !open_list => {
                        // With nothing allowed, no first chunk of channel traffic crosses.
                        let flags = u32_at(c, 4).unwrap_or(0);
                        if flags & CHANNEL_FLAG_FIRST != 0 {
                            let cmd = c.get(8).map(|h| h >> 4);
                            prop_assert!(
                                matches!(cmd, Some(CMD_CAPABILITY | CMD_SOFT_SYNC_REQUEST | CMD_SOFT_SYNC_RESPONSE)),
                                "{:?}", c
                            );
                        }
                    }
                    _ => {}
                }
                prop_assert!(f.channels.len() <= MAX_CHANNELS);
                for e in f.take_events() {
                    if let EventKind::Policy { action, detail, .. } = e {
                        // The graphics pipeline never opens.
                        prop_assert!(!(action == "allowed"
                            && detail.as_deref() == Some(RDP_GRAPHICS_DYNAMIC_CHANNEL)));
                    }
                }
            }
            prop_assert!(!open_list || f.channels.len() <= chunks.len());
        }
    }
}
