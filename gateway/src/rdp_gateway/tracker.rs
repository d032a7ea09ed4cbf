//! The relayed connection's state, sans-I/O: each frame from either side goes in, and out come
//! the frames to forward (possibly rewritten), frames psmgate answers itself, transcript input
//! and events, and the frames the passive decoder needs.
//!
//! From the MCS Connect Initial on ([MS-RDPBCGR] 1.3.1.1):
//! - Connect Initial (client): the selected protocol is set to what the *target* selected,
//!   channels the target's policy denies are removed, and EGFX support is withdrawn so that the
//!   server sends bitmap updates psmgate decodes ([`crate::rdp::pdu_rewrite`]).
//! - Connect Response (server): the client gets a channel id for every channel it asked for;
//!   removed channels get ids the server never uses, and psmgate answers their joins itself.
//! - Attach User Confirm (server): the user channel id; passive decoding starts.
//! - Client Info (client): the client's credentials (user@target and the access token) are
//!   replaced by the vaulted target account, and bulk compression is turned off.
//! - Confirm Active (client): capabilities restricted to what psmgate decodes.
//! - Input (client, fast and slow path): to the transcript.
//! - `cliprdr` data (both ways): the target's clipboard policy.
//! - `drdynvc` data (both ways): the target's dynamic channel allow-list (denied channels are
//!   refused to the server on the client's behalf and never reach the client).
//! - An operator's lock ([`Tracker::set_locked`]): the client's input is held back, and the
//!   keys and buttons it held are released on the target.

use crate::rdp::cliprdr::{ClipboardFilter, Verdict};
use crate::rdp::drdynvc::DynamicChannelFilter;
use crate::rdp::framing::Frame;
use crate::rdp::input::{
    encode_fast_path, encode_slow_path, InputDecoder, InputError, SlowPathRoute,
};
use crate::rdp::pdu_rewrite::{
    self, ChannelInfo, ConnectInitialPatch, ConnectResponseInfo, TargetCredentials,
};
use anyhow::{anyhow, Result};
use ironrdp_pdu::mcs::{
    DisconnectProviderUltimatum, DisconnectReason, McsMessage, SendDataIndication, SendDataRequest,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    decode_io_channel, CompressionFlags, IoChannelPdu, ShareControlHeader, ShareControlPdu,
    ShareDataHeader, ShareDataPdu, StreamPriority,
};
use ironrdp_pdu::rdp::server_error_info::{
    ErrorInfo, ProtocolIndependentCode, ServerSetErrorInfoPdu,
};
use ironrdp_pdu::x224::X224;
use ironrdp_pdu::Action;
use psmgate_codecs::transcript::{EventKind, Input};
use std::borrow::Cow;

/// What the relay must do with the result of one frame.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes to the target.
    ToServer(Vec<u8>),
    /// Send these bytes to the client.
    ToClient(Vec<u8>),
    /// Record this input.
    Input(Input),
    /// Record this transcript event.
    Event(EventKind),
    /// The MCS ids are known: start the passive decoder.
    StartDecoder {
        /// I/O channel.
        io_channel: u16,
        /// User channel.
        user_channel: u16,
        /// Message channel, when negotiated.
        message_channel: Option<u16>,
    },
    /// A server frame for the passive decoder.
    Decode(Frame),
    /// The admin's pointer moved (the recording draws the cursor there).
    Pointer(u16, u16),
}

/// How the tracker rewrites the connection.
pub struct TrackerConfig {
    /// The protocol the target selected (goes into the client's core data).
    pub target_protocol: SecurityProtocol,
    /// The protocols the client requested in its X.224 request (the server echoes what it
    /// was asked for in its core data; the client gets its own request back).
    pub client_protocols: SecurityProtocol,
    /// Static channels the target's policy allows (lower case).
    pub allowed_channels: Vec<String>,
    /// The vaulted account that replaces the client's credentials in Client Info.
    pub credentials: TargetCredentials,
    /// The clipboard policy.
    pub clipboard: ClipboardFilter,
    /// The dynamic channel allow-list.
    pub dynamic_channels: DynamicChannelFilter,
}

/// How the client sends its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputPath {
    /// Fast-path input frames.
    Fast,
    /// Slow-path Input PDUs on the I/O channel.
    Slow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ConnectInitial,
    ConnectResponse,
    Running,
}

/// State shared by both directions of one relayed connection.
pub struct Tracker {
    cfg: TrackerConfig,
    phase: Phase,
    client_channels: Vec<ChannelInfo>,
    ids: Option<ConnectResponseInfo>,
    user_channel: Option<u16>,
    cliprdr: Option<u16>,
    drdynvc: Option<u16>,
    fake: Vec<u16>,
    input: InputDecoder,
    last_pointer: Option<(u16, u16)>,
    server_initiator: Option<u16>,
    decoding: bool,
    dropped_fake: u64,
    client_info_seen: bool,
    share_id: Option<u32>,
    /// An operator holds the client's input back ([`Tracker::set_locked`]).
    locked: bool,
    /// How the client last sent input (psmgate's own input travels the same way).
    input_path: Option<InputPath>,
    /// The client sent fast-path input encrypted with Standard RDP Security.
    encrypted_input: bool,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("phase", &self.phase)
            .field("user_channel", &self.user_channel)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker waiting for the client's MCS Connect Initial.
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            phase: Phase::ConnectInitial,
            client_channels: Vec::new(),
            ids: None,
            user_channel: None,
            cliprdr: None,
            drdynvc: None,
            fake: Vec::new(),
            input: InputDecoder::new(0x409),
            last_pointer: None,
            server_initiator: None,
            decoding: false,
            dropped_fake: 0,
            client_info_seen: false,
            share_id: None,
            locked: false,
            input_path: None,
            encrypted_input: false,
        }
    }

    /// Starts (`true`) or ends (`false`) an operator's lock on the client's input.
    ///
    /// While locked, the client's input (fast-path input frames, and slow-path Input PDUs on
    /// the I/O channel) is held back: it reaches neither the target nor the transcript, and the
    /// input decoder does not take it in, so that its key, lock-key and pointer state stays the
    /// target's and input after the lock is read the way the target reads it. Everything else
    /// (the connection sequence, virtual channels under their policies, the server's output)
    /// flows as before.
    ///
    /// When a lock starts on a running connection, the returned steps send the target the
    /// releases of every key and mouse button the client holds, the way the client sends its
    /// own input (fast path, or a slow-path Input PDU when that is what the client uses), so
    /// that nothing stays held down on the target; they are not recorded as input. Before the
    /// connection runs the lock is only noted (nothing can be held yet). The end of a lock
    /// returns nothing: the client's next input flows again.
    ///
    /// psmgate writes input only where the connection is secured by TLS (always so for the
    /// connections it relays); were Standard RDP Security encryption in use, nothing is sent
    /// and a warning is logged, since frames psmgate wrote would lack the session's encryption.
    pub fn set_locked(&mut self, locked: bool) -> Vec<Step> {
        let starts = locked && !self.locked;
        self.locked = locked;
        if !starts || self.phase != Phase::Running {
            return Vec::new();
        }
        self.release_held()
    }

    /// Whether an operator holds the client's input back.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Frames that release what the client holds, for the target; the decoder takes them in.
    fn release_held(&mut self) -> Vec<Step> {
        let releases = self.input.releases();
        if releases.is_empty() {
            return Vec::new();
        }
        // SecurityProtocol 0 is Standard RDP Security; every other protocol is TLS-based.
        if self.cfg.target_protocol.is_empty() || self.encrypted_input {
            tracing::warn!(
                events = releases.len(),
                "the connection uses Standard RDP Security encryption: the keys and buttons the client holds cannot be released on the target"
            );
            return Vec::new();
        }
        match self.encode_releases(&releases) {
            Ok(frames) => {
                self.input.apply_sent(&releases);
                frames.into_iter().map(Step::ToServer).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the keys and buttons the client holds could not be released on the target");
                Vec::new()
            }
        }
    }

    fn encode_releases(
        &self,
        events: &[ironrdp_pdu::input::fast_path::FastPathInputEvent],
    ) -> Result<Vec<Vec<u8>>, InputError> {
        if self.input_path == Some(InputPath::Slow) {
            let route = match (&self.ids, self.user_channel, self.share_id) {
                (Some(ids), Some(user_channel), Some(share_id)) => Some(SlowPathRoute {
                    user_channel,
                    io_channel: ids.io_channel_id,
                    share_id,
                }),
                _ => None,
            };
            if let Some(route) = route {
                return Ok(encode_slow_path(events, route)?.into_iter().collect());
            }
        }
        encode_fast_path(events)
    }

    /// Frames the client sent on channels psmgate removed (dropped).
    pub fn dropped_on_removed_channels(&self) -> u64 {
        self.dropped_fake
    }

    /// What psmgate sends the client when it ends an active session itself (fail-closed,
    /// shutdown): a Set Error Info PDU with `code`, which clients show as the reason
    /// ([MS-RDPBCGR] 2.2.5.1.1), then an MCS Disconnect Provider Ultimatum. `None` before the
    /// capability exchange (no share to send it in): the client then just sees the connection
    /// close.
    pub fn goodbye(&self, code: ProtocolIndependentCode) -> Option<Vec<u8>> {
        let io = self.ids.as_ref()?.io_channel_id;
        let share_id = self.share_id?;
        let source = self.server_initiator?;
        let pdu = ShareControlHeader {
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(
                    ErrorInfo::ProtocolIndependentCode(code),
                )),
                stream_priority: StreamPriority::Low,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
            pdu_source: source,
            share_id,
        };
        let user_data = ironrdp_core::encode_vec(&pdu).ok()?;
        let mut out = ironrdp_core::encode_vec(&X224(SendDataIndication {
            initiator_id: source,
            channel_id: io,
            user_data: Cow::Owned(user_data),
        }))
        .ok()?;
        out.extend(
            ironrdp_core::encode_vec(&X224(McsMessage::DisconnectProviderUltimatum(
                DisconnectProviderUltimatum::from_reason(DisconnectReason::ProviderInitiated),
            )))
            .ok()?,
        );
        Some(out)
    }

    /// One frame from the client.
    pub fn from_client(&mut self, frame: Frame) -> Result<Vec<Step>> {
        let mut out = Vec::new();
        match self.phase {
            Phase::ConnectInitial => {
                if frame.action != Action::X224 {
                    return Err(anyhow!(
                        "client sent fast-path data before MCS Connect Initial"
                    ));
                }
                let patch = ConnectInitialPatch {
                    server_selected_protocol: self.cfg.target_protocol,
                    allowed_channels: self.cfg.allowed_channels.clone(),
                    strip_gfx: true,
                };
                let (bytes, info) = pdu_rewrite::rewrite_connect_initial(&frame.bytes, &patch)
                    .map_err(|e| anyhow!("client's MCS Connect Initial: {e}"))?;
                self.input = InputDecoder::new(info.keyboard_layout);
                let removed: Vec<&str> = info
                    .channels
                    .iter()
                    .filter(|c| !c.kept)
                    .map(|c| c.name.as_str())
                    .collect();
                if !removed.is_empty() {
                    out.push(Step::Event(EventKind::Policy {
                        rule: "rdp-channels".into(),
                        action: "removed".into(),
                        detail: Some(format!(
                            "virtual channels denied by policy and removed from negotiation: {}",
                            removed.join(", ")
                        )),
                    }));
                }
                let kept: Vec<&str> = info
                    .channels
                    .iter()
                    .filter(|c| c.kept)
                    .map(|c| c.name.as_str())
                    .collect();
                out.push(Step::Event(EventKind::Marker {
                    label: format!(
                        "RDP client {:?}, {}x{}, keyboard layout 0x{:04x}, channels: {}",
                        info.client_name,
                        info.desktop_width,
                        info.desktop_height,
                        info.keyboard_layout,
                        if kept.is_empty() {
                            "none".to_string()
                        } else {
                            kept.join(", ")
                        }
                    ),
                }));
                self.client_channels = info.channels;
                self.phase = Phase::ConnectResponse;
                out.push(Step::ToServer(bytes));
            }
            Phase::ConnectResponse => {
                // Nothing may follow the Connect Initial before the response.
                return Err(anyhow!(
                    "client sent data before the target's MCS Connect Response"
                ));
            }
            Phase::Running => self.client_running(frame, &mut out)?,
        }
        Ok(out)
    }

    fn client_running(&mut self, frame: Frame, out: &mut Vec<Step>) -> Result<()> {
        if frame.action == Action::FastPath {
            // The two high bits of the header are the encryption flags.
            if frame.bytes.first().is_some_and(|h| h >> 6 != 0) {
                self.encrypted_input = true;
            }
            if self.locked {
                // Every client fast-path frame is input: held back.
                return Ok(());
            }
            self.input_path = Some(InputPath::Fast);
            // Forward first, then record.
            let inputs = self.input.fast_path(&frame.bytes);
            out.push(Step::ToServer(frame.bytes));
            match inputs {
                Ok(inputs) => self.push_inputs(inputs, out),
                Err(e) => tracing::debug!(error = %e, "undecodable fast-path input (forwarded)"),
            }
            return Ok(());
        }
        if let Some((user, channel)) = pdu_rewrite::channel_join_request(&frame.bytes) {
            if self.fake.contains(&channel) {
                out.push(Step::ToClient(pdu_rewrite::channel_join_confirm(
                    user, channel,
                )));
                return Ok(());
            }
        }
        let io_channel = self.ids.as_ref().map(|i| i.io_channel_id);
        let channel = match ironrdp_core::decode::<X224<McsMessage<'_>>>(&frame.bytes) {
            Ok(X224(McsMessage::SendDataRequest(req))) => Some((req.initiator_id, req.channel_id)),
            _ => None,
        };
        match channel {
            Some((_, c)) if Some(c) == io_channel => {
                if !self.client_info_seen {
                    if let Some((bytes, _seen)) =
                        pdu_rewrite::rewrite_client_info(&frame.bytes, &self.cfg.credentials)
                            .map_err(|e| anyhow!("client's Client Info PDU: {e}"))?
                    {
                        self.client_info_seen = true;
                        out.push(Step::ToServer(bytes));
                        return Ok(());
                    }
                }
                if let Some((bytes, notes)) = pdu_rewrite::rewrite_confirm_active(&frame.bytes)
                    .map_err(|e| anyhow!("client's Confirm Active PDU: {e}"))?
                {
                    out.push(Step::ToServer(bytes));
                    if !notes.is_empty() {
                        tracing::debug!(changes = %notes.join("; "), "client capabilities restricted");
                    }
                    return Ok(());
                }
                if self.locked {
                    match self.input.slow_path_events(&frame.bytes) {
                        Ok(None) => {}
                        // An Input PDU, or what may be one: held back.
                        Ok(Some(_)) | Err(_) => return Ok(()),
                    }
                } else {
                    match self.input.slow_path(&frame.bytes) {
                        Ok(Some(inputs)) => {
                            self.input_path = Some(InputPath::Slow);
                            out.push(Step::ToServer(frame.bytes));
                            self.push_inputs(inputs, out);
                            return Ok(());
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "undecodable slow-path input (forwarded)")
                        }
                    }
                }
            }
            Some((initiator, c)) => {
                if self.fake.contains(&c) {
                    self.dropped_fake += 1;
                    return Ok(());
                }
                if Some(c) == self.cliprdr {
                    let verdict = match ironrdp_core::decode::<X224<McsMessage<'_>>>(&frame.bytes) {
                        Ok(X224(McsMessage::SendDataRequest(req))) => {
                            self.cfg.clipboard.from_client(&req.user_data)
                        }
                        _ => return Err(anyhow!("clipboard frame changed under decoding")),
                    };
                    self.apply_verdict(verdict, frame.bytes, true, initiator, c, out)?;
                    return Ok(());
                }
                if Some(c) == self.drdynvc {
                    let verdict = match ironrdp_core::decode::<X224<McsMessage<'_>>>(&frame.bytes) {
                        Ok(X224(McsMessage::SendDataRequest(req))) => {
                            self.cfg.dynamic_channels.from_client(&req.user_data)
                        }
                        _ => return Err(anyhow!("drdynvc frame changed under decoding")),
                    };
                    self.apply_verdict(verdict, frame.bytes, true, initiator, c, out)?;
                    return Ok(());
                }
            }
            None => {}
        }
        out.push(Step::ToServer(frame.bytes));
        Ok(())
    }

    fn push_inputs(&mut self, inputs: Vec<Input>, out: &mut Vec<Step>) {
        for i in inputs {
            out.push(Step::Input(i));
        }
        let p = self.input.pointer_position();
        if p.is_some() && p != self.last_pointer {
            self.last_pointer = p;
            if let Some((x, y)) = p {
                out.push(Step::Pointer(x, y));
            }
        }
    }

    /// Applies a clipboard verdict for a frame that came from the client (`from_client`) or
    /// the server.
    fn apply_verdict(
        &mut self,
        verdict: Verdict,
        original: Vec<u8>,
        from_client: bool,
        _initiator: u16,
        channel: u16,
        out: &mut Vec<Step>,
    ) -> Result<()> {
        match verdict {
            Verdict::Forward => out.push(if from_client {
                Step::ToServer(original)
            } else {
                Step::ToClient(original)
            }),
            Verdict::Drop => {}
            Verdict::DropAndReply(replies) => {
                for payload in replies {
                    if from_client {
                        // Back to the client, as if the server had answered.
                        let initiator = self.server_initiator.unwrap_or(1002);
                        let pdu = SendDataIndication {
                            initiator_id: initiator,
                            channel_id: channel,
                            user_data: Cow::Owned(payload),
                        };
                        out.push(Step::ToClient(
                            ironrdp_core::encode_vec(&X224(pdu))
                                .map_err(|e| anyhow!("encoding a virtual channel reply: {e}"))?,
                        ));
                    } else {
                        let initiator = self
                            .user_channel
                            .ok_or_else(|| anyhow!("virtual channel data before Attach User"))?;
                        let pdu = SendDataRequest {
                            initiator_id: initiator,
                            channel_id: channel,
                            user_data: Cow::Owned(payload),
                        };
                        out.push(Step::ToServer(
                            ironrdp_core::encode_vec(&X224(pdu))
                                .map_err(|e| anyhow!("encoding a virtual channel reply: {e}"))?,
                        ));
                    }
                }
            }
        }
        for e in self.cfg.clipboard.take_events() {
            out.push(Step::Event(e));
        }
        for e in self.cfg.dynamic_channels.take_events() {
            out.push(Step::Event(e));
        }
        Ok(())
    }

    /// One frame from the target.
    pub fn from_server(&mut self, frame: Frame) -> Result<Vec<Step>> {
        let mut out = Vec::new();
        match self.phase {
            Phase::ConnectInitial => {
                return Err(anyhow!(
                    "target sent data before the client's MCS Connect Initial"
                ))
            }
            Phase::ConnectResponse => {
                if frame.action != Action::X224 {
                    return Err(anyhow!(
                        "target sent fast-path data before MCS Connect Response"
                    ));
                }
                let (bytes, info) = pdu_rewrite::rewrite_connect_response_for_client(
                    &frame.bytes,
                    &self.client_channels,
                    Some(self.cfg.client_protocols),
                )
                .map_err(|e| anyhow!("target's MCS Connect Response: {e}"))?;
                for (name, id, real) in &info.channel_ids {
                    if !real {
                        self.fake.push(*id);
                    } else if name.eq_ignore_ascii_case(crate::rdp::cliprdr::CHANNEL_NAME) {
                        self.cliprdr = Some(*id);
                    } else if name.eq_ignore_ascii_case(crate::rdp::drdynvc::CHANNEL_NAME) {
                        self.drdynvc = Some(*id);
                    }
                }
                self.ids = Some(info);
                self.phase = Phase::Running;
                out.push(Step::ToClient(bytes));
            }
            Phase::Running => self.server_running(frame, &mut out)?,
        }
        Ok(out)
    }

    fn server_running(&mut self, frame: Frame, out: &mut Vec<Step>) -> Result<()> {
        if frame.action == Action::FastPath {
            out.push(Step::ToClient(frame.bytes.clone()));
            if self.decoding {
                out.push(Step::Decode(frame));
            }
            return Ok(());
        }
        if self.user_channel.is_none() {
            if let Some(user) = pdu_rewrite::attach_user_confirm(&frame.bytes) {
                self.user_channel = Some(user);
                if let Some(ids) = &self.ids {
                    out.push(Step::StartDecoder {
                        io_channel: ids.io_channel_id,
                        user_channel: user,
                        message_channel: ids.message_channel_id,
                    });
                    self.decoding = true;
                }
                out.push(Step::ToClient(frame.bytes));
                return Ok(());
            }
        }
        let io_channel = self.ids.as_ref().map(|i| i.io_channel_id);
        let channel = match ironrdp_core::decode::<X224<McsMessage<'_>>>(&frame.bytes) {
            Ok(X224(McsMessage::SendDataIndication(ind))) => {
                self.server_initiator.get_or_insert(ind.initiator_id);
                if Some(ind.channel_id) == io_channel {
                    if let Some(active) = pdu_rewrite::demand_active(&frame.bytes) {
                        self.share_id = Some(active.share_id);
                    }
                    let ctx = ironrdp_pdu::mcs::SendDataIndicationCtx {
                        initiator_id: ind.initiator_id,
                        channel_id: ind.channel_id,
                        user_data: &ind.user_data,
                    };
                    if let Ok(IoChannelPdu::ServerRedirection(r)) = decode_io_channel(ctx) {
                        if !r.is_informational() {
                            return Err(anyhow!(
                                "target sent a Server Redirection PDU (connection broker), which would send the client around psmgate; session ended"
                            ));
                        }
                    }
                }
                if Some(ind.channel_id) == self.cliprdr {
                    let verdict = self.cfg.clipboard.from_server(&ind.user_data);
                    let (initiator, channel) = (ind.initiator_id, ind.channel_id);
                    self.apply_verdict(verdict, frame.bytes, false, initiator, channel, out)?;
                    return Ok(());
                }
                if Some(ind.channel_id) == self.drdynvc {
                    let verdict = self.cfg.dynamic_channels.from_server(&ind.user_data);
                    let (initiator, channel) = (ind.initiator_id, ind.channel_id);
                    self.apply_verdict(verdict, frame.bytes, false, initiator, channel, out)?;
                    return Ok(());
                }
                Some(ind.channel_id)
            }
            _ => None,
        };
        let for_decoder = self.decoding
            && match (&self.ids, channel) {
                (Some(ids), Some(c)) => c == ids.io_channel_id || Some(c) == ids.message_channel_id,
                // MCS control PDUs (e.g. Disconnect Provider Ultimatum).
                (_, None) => true,
                _ => false,
            };
        if for_decoder {
            out.push(Step::ToClient(frame.bytes.clone()));
            out.push(Step::Decode(frame));
        } else {
            out.push(Step::ToClient(frame.bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rdp::framing::FrameSplitter;
    use crate::rdp::passive::{DecoderEvent, PassiveDecoder};

    /// A tracker for a client and target that speak TLS + NLA, allowing the clipboard channel.
    pub(in crate::rdp_gateway) fn tracker() -> Tracker {
        Tracker::new(TrackerConfig {
            target_protocol: SecurityProtocol::HYBRID,
            client_protocols: SecurityProtocol::SSL | SecurityProtocol::HYBRID,
            allowed_channels: vec!["cliprdr".into()],
            credentials: TargetCredentials {
                username: "svc".into(),
                domain: None,
                password: "pw".into(),
            },
            clipboard: ClipboardFilter::new(psmgate_policy::ClipboardPolicy::default()),
            dynamic_channels: DynamicChannelFilter::new(Vec::new()),
        })
    }

    #[test]
    fn no_goodbye_before_the_share_exists() {
        let mut t = tracker();
        assert!(t.goodbye(ProtocolIndependentCode::ServerShutdown).is_none());
        t.ids = Some(ConnectResponseInfo {
            io_channel_id: 1003,
            message_channel_id: None,
            channel_ids: Vec::new(),
        });
        t.server_initiator = Some(1002);
        assert!(t.goodbye(ProtocolIndependentCode::ServerShutdown).is_none());
    }

    #[test]
    fn goodbye_is_a_set_error_info_and_a_disconnect_a_client_understands() {
        let mut t = tracker();
        t.ids = Some(ConnectResponseInfo {
            io_channel_id: 1003,
            message_channel_id: None,
            channel_ids: Vec::new(),
        });
        t.server_initiator = Some(1002);
        t.share_id = Some(0x0001_03ea);
        let bytes = t
            .goodbye(ProtocolIndependentCode::ServerDeniedConnection)
            .expect("frames");
        let mut split = FrameSplitter::new();
        split.feed(&bytes);
        let mut decoder = PassiveDecoder::new(1003, 1007, None);
        let mut terminated = Vec::new();
        let mut frames = 0;
        while let Some(f) = split.next_frame().unwrap() {
            frames += 1;
            for e in decoder.server_frame(f.action, &f.bytes).unwrap_or_default() {
                if let DecoderEvent::Terminated(why) = e {
                    terminated.push(why);
                }
            }
        }
        assert_eq!(frames, 2, "Set Error Info, then the MCS disconnect");
        assert!(
            terminated
                .iter()
                .any(|w| w.to_lowercase().contains("denied")),
            "{terminated:?}"
        );
    }

    use crate::rdp::pdu_rewrite::tests as frames;
    use proptest::prelude::*;

    fn x224(bytes: Vec<u8>) -> Frame {
        Frame {
            action: Action::X224,
            bytes,
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The connection sequence as the tracker sees it: Connect Initial with four channels (one
    /// denied), the server's answer for three, Attach User, a join of the removed channel, Client
    /// Info, then a fast-path key press.
    #[test]
    fn connection_sequence_is_rewritten_answered_and_recorded() {
        let mut t = tracker();
        // 1. Connect Initial: rdpdr, rdpsnd and drdynvc are not allowed here (only cliprdr).
        let out = t
            .from_client(x224(frames::connect_initial_frame()))
            .unwrap();
        let forwarded = out.iter().find_map(|s| match s {
            Step::ToServer(b) => Some(b.clone()),
            _ => None,
        });
        let forwarded = forwarded.expect("Connect Initial forwarded");
        assert!(
            !contains(&forwarded, b"rdpdr"),
            "denied channel reached the target"
        );
        assert!(contains(&forwarded, b"cliprdr"));
        assert!(out.iter().any(|s| matches!(s,
            Step::Event(EventKind::Policy { rule, detail: Some(d), .. })
                if rule == "rdp-channels" && d.contains("rdpdr"))));
        // 2. The server answers for the one channel it was asked for.
        let out = t
            .from_server(x224(frames::connect_response_frame(vec![1004], false)))
            .unwrap();
        assert!(matches!(out.as_slice(), [Step::ToClient(_)]));
        assert_eq!(t.cliprdr, Some(1004));
        assert_eq!(t.fake.len(), 3, "three removed channels got ids");
        // 3. Attach User Confirm starts the decoder.
        let confirm = ironrdp_core::encode_vec(&X224(McsMessage::AttachUserConfirm(
            ironrdp_pdu::mcs::AttachUserConfirm {
                result: 0,
                initiator_id: frames::USER_ID,
            },
        )))
        .unwrap();
        let out = t.from_server(x224(confirm)).unwrap();
        assert!(out.iter().any(|s| matches!(
            s,
            Step::StartDecoder {
                io_channel: 1003,
                ..
            }
        )));
        // 4. The client joins a removed channel: psmgate answers, the target never hears of it.
        let fake = t.fake[0];
        let join = ironrdp_core::encode_vec(&X224(McsMessage::ChannelJoinRequest(
            ironrdp_pdu::mcs::ChannelJoinRequest {
                initiator_id: frames::USER_ID,
                channel_id: fake,
            },
        )))
        .unwrap();
        let out = t.from_client(x224(join)).unwrap();
        assert!(matches!(out.as_slice(), [Step::ToClient(_)]));
        // 5. Data on the removed channel is dropped.
        let out = t
            .from_client(x224(frames::send_data_request(fake, vec![0; 16])))
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(t.dropped_on_removed_channels(), 1);
        // 6. Client Info: the vaulted account replaces what the client sent.
        let out = t
            .from_client(x224(frames::client_info_frame(frames::PASSWORD)))
            .unwrap();
        let [Step::ToServer(info)] = out.as_slice() else {
            panic!("Client Info not forwarded once: {out:?}");
        };
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        assert!(
            !contains(info, &utf16(frames::PASSWORD)),
            "client password forwarded"
        );
        assert!(contains(info, &utf16("svc")), "vaulted account missing");
        // 7. Fast-path input: forwarded first, then recorded.
        // One event (numEvents 1 in the header byte), length 4, scancode 0x1E pressed.
        let key_a = vec![0x04, 0x04, 0x00, 0x1e];
        let out = t
            .from_client(Frame {
                action: Action::FastPath,
                bytes: key_a.clone(),
            })
            .unwrap();
        assert!(matches!(&out[0], Step::ToServer(b) if *b == key_a));
        assert!(out.iter().any(|s| matches!(
            s,
            Step::Input(Input::Key {
                ch: Some('a'),
                down: true,
                ..
            })
        )));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever either side sends, in whatever order, the tracker answers with steps or an
        /// error, never a panic.
        #[test]
        fn arbitrary_frames_never_panic(
            seq in proptest::collection::vec(
                (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)),
                0..24,
            )
        ) {
            let mut t = tracker();
            // Half the runs start from a real connect sequence, so that the running phase
            // sees garbage too.
            if seq.first().is_some_and(|(a, _, _)| *a) {
                let _ = t.from_client(x224(frames::connect_initial_frame()));
                let _ = t.from_server(x224(frames::connect_response_frame(vec![1004], false)));
            }
            for (from_client, fast, bytes) in seq {
                let frame = Frame {
                    action: if fast { Action::FastPath } else { Action::X224 },
                    bytes,
                };
                let _ = if from_client { t.from_client(frame) } else { t.from_server(frame) };
            }
        }
    }

    // --- operator lock ---------------------------------------------------------------------

    use crate::rdp::input::InputDecoder as Decoder;
    use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
    use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
    use ironrdp_pdu::input::InputEvent;

    /// The share id of [`frames::demand_active_frame`].
    const SHARE_ID: u32 = 0x0001_03EA;

    /// A tracker through the connection sequence (Attach User, Client Info, Demand Active):
    /// input flows.
    fn running_with(target_protocol: SecurityProtocol) -> Tracker {
        let mut t = tracker();
        t.cfg.target_protocol = target_protocol;
        t.from_client(x224(frames::connect_initial_frame()))
            .unwrap();
        t.from_server(x224(frames::connect_response_frame(vec![1004], false)))
            .unwrap();
        let confirm = ironrdp_core::encode_vec(&X224(McsMessage::AttachUserConfirm(
            ironrdp_pdu::mcs::AttachUserConfirm {
                result: 0,
                initiator_id: frames::USER_ID,
            },
        )))
        .unwrap();
        t.from_server(x224(confirm)).unwrap();
        t.from_client(x224(frames::client_info_frame(frames::PASSWORD)))
            .unwrap();
        t.from_server(x224(frames::demand_active_frame())).unwrap();
        assert_eq!(t.phase, Phase::Running);
        assert_eq!(t.share_id, Some(SHARE_ID));
        t
    }

    fn running() -> Tracker {
        running_with(SecurityProtocol::HYBRID)
    }

    fn key(sc: u8, extended: bool, down: bool) -> FastPathInputEvent {
        let mut flags = KeyboardFlags::empty();
        flags.set(KeyboardFlags::EXTENDED, extended);
        flags.set(KeyboardFlags::RELEASE, !down);
        FastPathInputEvent::KeyboardEvent(flags, sc)
    }

    fn mouse(flags: PointerFlags, x: u16, y: u16) -> FastPathInputEvent {
        FastPathInputEvent::MouseEvent(MousePdu {
            flags,
            number_of_wheel_rotation_units: 0,
            x_position: x,
            y_position: y,
        })
    }

    fn fast(events: &[FastPathInputEvent]) -> Frame {
        let mut frames = crate::rdp::input::encode_fast_path(events).unwrap();
        assert_eq!(frames.len(), 1);
        Frame {
            action: Action::FastPath,
            bytes: frames.remove(0),
        }
    }

    fn route() -> SlowPathRoute {
        SlowPathRoute {
            user_channel: frames::USER_ID,
            io_channel: frames::IO_CHANNEL,
            share_id: SHARE_ID,
        }
    }

    fn slow(events: &[FastPathInputEvent]) -> Frame {
        x224(encode_slow_path(events, route()).unwrap().unwrap())
    }

    /// A clipboard capabilities PDU from the client, in one channel chunk (CHANNEL_FLAG_FIRST |
    /// CHANNEL_FLAG_LAST).
    fn clipboard_caps() -> Frame {
        let pdu = [0x07, 0x00, 0x00, 0x00, 4, 0, 0, 0, 1, 0, 0, 0];
        let mut chunk = u32::try_from(pdu.len()).unwrap().to_le_bytes().to_vec();
        chunk.extend_from_slice(&3u32.to_le_bytes());
        chunk.extend_from_slice(&pdu);
        x224(frames::send_data_request(1004, chunk))
    }

    fn to_server(steps: &[Step]) -> Vec<Vec<u8>> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::ToServer(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    fn recorded(steps: &[Step]) -> usize {
        steps
            .iter()
            .filter(|s| matches!(s, Step::Input(_) | Step::Pointer(..)))
            .count()
    }

    /// The events of a fast-path input frame, decoded by IronRDP.
    fn fast_events(bytes: &[u8]) -> Vec<FastPathInputEvent> {
        ironrdp_core::decode::<FastPathInput>(bytes)
            .expect("a fast-path input frame")
            .input_events()
            .to_vec()
    }

    #[test]
    fn a_lock_releases_exactly_the_keys_and_buttons_held() {
        let mut t = running();
        let out = t
            .from_client(fast(&[
                key(0x2A, false, true), // Shift
                key(0x1E, false, true), // A
                key(0x1D, true, true),  // right Ctrl
                key(0x30, false, true), // B, pressed and released
                key(0x30, false, false),
                mouse(PointerFlags::MOVE, 100, 200),
                mouse(PointerFlags::DOWN | PointerFlags::LEFT_BUTTON, 100, 200),
                mouse(PointerFlags::DOWN | PointerFlags::RIGHT_BUTTON, 100, 200),
                mouse(PointerFlags::RIGHT_BUTTON, 100, 200),
            ]))
            .unwrap();
        assert_eq!(to_server(&out).len(), 1);
        assert!(recorded(&out) > 0);
        let steps = t.set_locked(true);
        assert!(t.is_locked());
        let sent = to_server(&steps);
        assert_eq!(
            sent.len(),
            steps.len(),
            "only frames for the target: {steps:?}"
        );
        let [release] = sent.as_slice() else {
            panic!("one release frame: {steps:?}");
        };
        // Other keys before modifiers, then the button at the pointer's position.
        assert_eq!(
            fast_events(release),
            [
                key(0x1E, false, false),
                key(0x1D, true, false),
                key(0x2A, false, false),
                mouse(PointerFlags::LEFT_BUTTON, 100, 200),
            ]
        );
        // An independent decoder that saw the client's input and then the releases holds
        // nothing.
        let mut check = Decoder::new(0x407);
        check
            .fast_path(&fast(&[key(0x2A, false, true), key(0x1E, false, true)]).bytes)
            .unwrap();
        let releases = check.fast_path(release).unwrap();
        assert!(releases.iter().all(|i| matches!(
            i,
            Input::Key { down: false, .. } | Input::Button { down: false, .. }
        )));
        assert!(t.input.held_keys().is_empty());
        assert!(t.input.held_buttons().is_empty());
        // Locking again while locked sends nothing more.
        assert!(t.set_locked(true).is_empty());
    }

    #[test]
    fn locked_input_is_held_back_while_other_traffic_flows() {
        let mut t = running();
        assert!(t.set_locked(true).is_empty(), "nothing held, nothing sent");
        // A key press, its release, a click: nothing reaches the target or the transcript.
        for frame in [
            fast(&[key(0x1E, false, true)]),
            fast(&[key(0x1E, false, false)]),
            fast(&[mouse(
                PointerFlags::MOVE | PointerFlags::DOWN | PointerFlags::LEFT_BUTTON,
                5,
                5,
            )]),
            slow(&[key(0x1F, false, true)]),
            // Not decodable as input, but fast-path from the client all the same.
            Frame {
                action: Action::FastPath,
                bytes: vec![0x04, 0x04, 0xFF, 0xFF],
            },
        ] {
            let out = t.from_client(frame).unwrap();
            assert!(out.is_empty(), "{out:?}");
        }
        // The held-back input changed nothing the target would see.
        assert!(t.input.held_keys().is_empty());
        assert!(t.input.held_buttons().is_empty());
        assert_eq!(t.input.pointer_position(), None);
        // The clipboard channel still flows…
        let out = t.from_client(clipboard_caps()).unwrap();
        assert_eq!(to_server(&out).len(), 1, "{out:?}");
        // …and so does the I/O channel's other traffic (a reactivation's Confirm Active).
        let out = t
            .from_client(x224(frames::rich_confirm_active_frame()))
            .unwrap();
        assert_eq!(to_server(&out).len(), 1, "{out:?}");
        // So does the server's output.
        let out = t
            .from_server(Frame {
                action: Action::FastPath,
                bytes: vec![0x00, 0x03, 0x00],
            })
            .unwrap();
        assert!(out.iter().any(|s| matches!(s, Step::ToClient(_))));
    }

    #[test]
    fn resuming_lets_the_next_input_through() {
        let mut t = running();
        let out = t.from_client(fast(&[key(0x1E, false, true)])).unwrap();
        assert_eq!(to_server(&out).len(), 1);
        assert_eq!(to_server(&t.set_locked(true)).len(), 1);
        // The user lets go of A while locked: the target already had it released.
        assert!(t
            .from_client(fast(&[key(0x1E, false, false)]))
            .unwrap()
            .is_empty());
        assert!(t.set_locked(false).is_empty());
        assert!(!t.is_locked());
        let frame = fast(&[key(0x30, false, true)]);
        let bytes = frame.bytes.clone();
        let out = t.from_client(frame).unwrap();
        assert_eq!(to_server(&out), [bytes]);
        assert!(out.iter().any(|s| matches!(
            s,
            Step::Input(Input::Key {
                ch: Some('b'),
                down: true,
                ..
            })
        )));
        let out = t.from_client(slow(&[key(0x30, false, false)])).unwrap();
        assert_eq!(to_server(&out).len(), 1);
        assert_eq!(recorded(&out), 1);
        // Resuming when not locked sends nothing either.
        assert!(t.set_locked(false).is_empty());
    }

    #[test]
    fn input_after_a_lock_is_read_as_the_target_reads_it() {
        let mut t = running();
        t.set_locked(true);
        // Shift and Caps Lock pressed while locked never reached the target…
        for frame in [
            fast(&[key(0x2A, false, true)]),
            fast(&[key(0x3A, false, true), key(0x3A, false, false)]),
        ] {
            assert!(t.from_client(frame).unwrap().is_empty());
        }
        t.set_locked(false);
        // …so A types a lower-case a there, and in the transcript.
        let out = t.from_client(fast(&[key(0x1E, false, true)])).unwrap();
        assert!(
            out.iter().any(|s| matches!(
                s,
                Step::Input(Input::Key {
                    ch: Some('a'),
                    down: true,
                    ..
                })
            )),
            "{out:?}"
        );
        assert!(!t.input.caps_lock());
    }

    #[test]
    fn slow_path_clients_get_their_releases_the_slow_way() {
        let mut t = running();
        let out = t
            .from_client(slow(&[
                key(0x38, false, true), // left Alt
                key(0x0F, false, true), // Tab
            ]))
            .unwrap();
        assert_eq!(to_server(&out).len(), 1);
        assert_eq!(recorded(&out), 2);
        let sent = to_server(&t.set_locked(true));
        let [release] = sent.as_slice() else {
            panic!("one release frame: {sent:?}");
        };
        let events = Decoder::new(0x409)
            .slow_path_events(release)
            .unwrap()
            .expect("an Input PDU");
        let released: Vec<(u16, bool)> = events
            .iter()
            .map(|e| match e {
                InputEvent::ScanCode(pdu) => (
                    pdu.key_code,
                    pdu.flags
                        .contains(ironrdp_pdu::input::scan_code::KeyboardFlags::RELEASE),
                ),
                other => panic!("not a key: {other:?}"),
            })
            .collect();
        assert_eq!(released, [(0x0F, true), (0x38, true)]);
        // Sent as the client: its user channel on the I/O channel, in the current share.
        assert!(matches!(
            ironrdp_core::decode::<X224<McsMessage<'_>>>(release),
            Ok(X224(McsMessage::SendDataRequest(r)))
                if r.initiator_id == frames::USER_ID && r.channel_id == frames::IO_CHANNEL
        ));
        // Slow-path input while locked is held back.
        let out = t.from_client(slow(&[key(0x0F, false, false)])).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_lock_set_before_the_connection_runs_holds_from_the_start() {
        let mut t = tracker();
        assert!(t.set_locked(true).is_empty());
        t.from_client(x224(frames::connect_initial_frame()))
            .unwrap();
        assert!(t.set_locked(true).is_empty());
        t.from_server(x224(frames::connect_response_frame(vec![1004], false)))
            .unwrap();
        // The connection sequence itself still flows.
        let out = t
            .from_client(x224(frames::client_info_frame(frames::PASSWORD)))
            .unwrap();
        assert_eq!(to_server(&out).len(), 1);
        assert!(t
            .from_client(fast(&[key(0x1E, false, true)]))
            .unwrap()
            .is_empty());
        t.set_locked(false);
        let out = t.from_client(fast(&[key(0x1E, false, true)])).unwrap();
        assert_eq!(to_server(&out).len(), 1);
    }

    #[test]
    fn without_tls_no_input_is_written() {
        // Standard RDP Security (no TLS): frames psmgate wrote would lack its encryption.
        let mut t = running_with(SecurityProtocol::empty());
        t.from_client(fast(&[key(0x1E, false, true)])).unwrap();
        assert!(t.set_locked(true).is_empty());
        // Input is held back all the same.
        assert!(t
            .from_client(fast(&[key(0x1F, false, true)]))
            .unwrap()
            .is_empty());
        // Encrypted fast-path input from the client (header bits 6–7) has the same effect.
        let mut t = running();
        t.from_client(fast(&[key(0x1E, false, true)])).unwrap();
        t.from_client(Frame {
            action: Action::FastPath,
            bytes: vec![0x84, 0x04, 0x00, 0x00],
        })
        .unwrap();
        assert!(t.set_locked(true).is_empty());
    }

    /// Each event of an input frame psmgate sent (fast or slow path), and whether it only
    /// releases a key or button.
    fn releases(bytes: &[u8]) -> Vec<(String, bool)> {
        use ironrdp_pdu::input::mouse_rel::PointerRelFlags;
        use ironrdp_pdu::input::mouse_x::PointerXFlags;
        use ironrdp_pdu::input::scan_code::KeyboardFlags as ScanFlags;
        if bytes.first() == Some(&3) {
            let events = Decoder::new(0x409)
                .slow_path_events(bytes)
                .expect("a slow-path frame")
                .expect("an Input PDU");
            return events
                .into_iter()
                .map(|e| {
                    let release = match &e {
                        InputEvent::ScanCode(p) => p.flags.contains(ScanFlags::RELEASE),
                        InputEvent::Mouse(p) => {
                            !p.flags.intersects(PointerFlags::DOWN | PointerFlags::MOVE)
                        }
                        InputEvent::MouseX(p) => !p.flags.contains(PointerXFlags::DOWN),
                        InputEvent::MouseRel(p) => {
                            p.x_delta == 0
                                && p.y_delta == 0
                                && !p.flags.contains(PointerRelFlags::DOWN)
                        }
                        _ => false,
                    };
                    (format!("{e:?}"), release)
                })
                .collect();
        }
        fast_events(bytes)
            .into_iter()
            .map(|e| {
                let release = match e {
                    FastPathInputEvent::KeyboardEvent(f, _) => f.contains(KeyboardFlags::RELEASE),
                    FastPathInputEvent::MouseEvent(p) => {
                        !p.flags.intersects(PointerFlags::DOWN | PointerFlags::MOVE)
                    }
                    FastPathInputEvent::MouseEventEx(p) => !p.flags.contains(PointerXFlags::DOWN),
                    FastPathInputEvent::MouseEventRel(p) => {
                        p.x_delta == 0 && p.y_delta == 0 && !p.flags.contains(PointerRelFlags::DOWN)
                    }
                    _ => false,
                };
                (format!("{e:?}"), release)
            })
            .collect()
    }

    /// One client event for the property test: (kind, flags, value).
    fn arbitrary_event(kind: u8, flags: u8, value: u16) -> FastPathInputEvent {
        let [lo, hi] = value.to_le_bytes();
        match kind % 5 {
            0 | 1 => key(lo & 0x7F, flags & 1 != 0, flags & 2 != 0),
            2 => mouse(
                PointerFlags::from_bits_retain(u16::from(flags & 0xF8) << 8),
                u16::from(lo),
                u16::from(hi),
            ),
            3 => FastPathInputEvent::MouseEventEx(ironrdp_pdu::input::MouseXPdu {
                flags: ironrdp_pdu::input::mouse_x::PointerXFlags::from_bits_retain(
                    (u16::from(flags & 0x80) << 8) | u16::from(flags & 0x03),
                ),
                x_position: u16::from(lo),
                y_position: u16::from(hi),
            }),
            _ => FastPathInputEvent::MouseEventRel(ironrdp_pdu::input::MouseRelPdu {
                flags: ironrdp_pdu::input::mouse_rel::PointerRelFlags::from_bits_retain(
                    (u16::from(flags & 0xF8) << 8) | u16::from(flags & 0x03),
                ),
                x_delta: i16::from(lo as i8),
                y_delta: i16::from(hi as i8),
            }),
        }
    }

    /// What the client does next in the property test.
    #[derive(Debug, Clone)]
    enum Act {
        Fast(Vec<(u8, u8, u16)>),
        Slow(Vec<(u8, u8, u16)>),
        Garbage(Vec<u8>),
        Clipboard,
        Lock(bool),
    }

    fn act() -> impl Strategy<Value = Act> {
        let events = proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>()), 1..8);
        prop_oneof![
            events.clone().prop_map(Act::Fast),
            events.prop_map(Act::Slow),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Act::Garbage),
            Just(Act::Clipboard),
            any::<bool>().prop_map(Act::Lock),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the client types and clicks, whenever the lock comes and goes: nothing
        /// panics, no input reaches the target or the transcript while locked, what a lock sends
        /// only releases, and after it nothing is held.
        #[test]
        fn nothing_gets_through_a_lock(acts in proptest::collection::vec(act(), 0..40)) {
            let mut t = running();
            for a in acts {
                let locked = t.is_locked();
                match a {
                    Act::Lock(on) => {
                        let steps = t.set_locked(on);
                        prop_assert_eq!(to_server(&steps).len(), steps.len());
                        if !on || locked {
                            prop_assert!(steps.is_empty());
                        }
                        for bytes in to_server(&steps) {
                            for (e, release) in releases(&bytes) {
                                prop_assert!(release, "not a release: {}", e);
                            }
                        }
                        if on {
                            prop_assert!(t.input.held_keys().is_empty());
                            prop_assert!(t.input.held_buttons().is_empty());
                        }
                    }
                    Act::Fast(evs) | Act::Slow(evs) if locked => {
                        let evs: Vec<_> = evs.into_iter().map(|(k, f, v)| arbitrary_event(k, f, v)).collect();
                        prop_assert!(t.from_client(fast(&evs)).unwrap().is_empty());
                        prop_assert!(t.from_client(slow(&evs)).unwrap().is_empty());
                    }
                    Act::Fast(evs) => {
                        let evs: Vec<_> = evs.into_iter().map(|(k, f, v)| arbitrary_event(k, f, v)).collect();
                        let out = t.from_client(fast(&evs)).unwrap();
                        prop_assert_eq!(to_server(&out).len(), 1);
                    }
                    Act::Slow(evs) => {
                        let evs: Vec<_> = evs.into_iter().map(|(k, f, v)| arbitrary_event(k, f, v)).collect();
                        let out = t.from_client(slow(&evs)).unwrap();
                        prop_assert_eq!(to_server(&out).len(), 1);
                    }
                    Act::Garbage(mut bytes) => {
                        if let Some(h) = bytes.first_mut() {
                            *h &= 0x3C; // a fast-path input header, unencrypted
                        }
                        let out = t.from_client(Frame { action: Action::FastPath, bytes });
                        if locked {
                            prop_assert!(out.unwrap().is_empty());
                        }
                    }
                    Act::Clipboard => {
                        let out = t.from_client(clipboard_caps()).unwrap();
                        prop_assert_eq!(to_server(&out).len(), 1);
                    }
                }
            }
        }
    }
}
