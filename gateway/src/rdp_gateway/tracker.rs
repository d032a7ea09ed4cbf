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

use crate::rdp::cliprdr::{ClipboardFilter, Verdict};
use crate::rdp::drdynvc::DynamicChannelFilter;
use crate::rdp::framing::Frame;
use crate::rdp::input::InputDecoder;
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
        }
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
                match self.input.slow_path(&frame.bytes) {
                    Ok(Some(inputs)) => {
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
mod tests {
    use super::*;
    use crate::rdp::framing::FrameSplitter;
    use crate::rdp::passive::{DecoderEvent, PassiveDecoder};

    fn tracker() -> Tracker {
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
}
