//! The connection-sequence PDUs psmgate changes on their way through the RDP gateway.
//!
//! psmgate sits between the administrator's RDP client and the target server
//! ([MS-RDPBCGR] 1.3.1.1 connection sequence). It terminates TLS and NLA on both sides, so the
//! PDUs it relays are plain, and it changes a few of them:
//!
//! - the MCS Connect Initial (2.2.1.3): the security protocol psmgate selected with the server,
//!   the graphics pipeline flag, and the static virtual channels policy allows
//!   ([`rewrite_connect_initial`]);
//! - the MCS Connect Response (2.2.1.4): one channel id per channel the *client* asked for,
//!   with ids psmgate answers itself for the channels it removed ([`rewrite_connect_response`],
//!   [`channel_join_request`], [`channel_join_confirm`]);
//! - the Client Info PDU (2.2.1.11): the vaulted credentials instead of the client's, and no bulk
//!   compression ([`rewrite_client_info`]);
//! - the Client Confirm Active PDU (2.2.1.13.2): capabilities limited to what the recorder
//!   decodes ([`rewrite_confirm_active`], see [`super::capabilities`]).
//!
//! It also reads a few server PDUs ([`attach_user_confirm`], [`demand_active`],
//! [`is_deactivate_all`]).
//!
//! Every function takes the complete bytes of one frame (TPKT header included) and is total:
//! malformed input yields an error or `None`, never a panic. The functions are sans-I/O.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/

use std::borrow::Cow;
use std::fmt;

use ironrdp_core::{decode, encode_vec, DecodeError, EncodeError};
use ironrdp_pdu::gcc::{
    ChannelDef, ClientEarlyCapabilityFlags, ConferenceCreateRequest, ConferenceCreateResponse,
    ServerEarlyCapabilityFlags,
};
use ironrdp_pdu::mcs::{self, McsMessage};
use ironrdp_pdu::nego;
use ironrdp_pdu::rdp::client_info::{ClientInfoFlags, CompressionType, Credentials};
use ironrdp_pdu::rdp::headers::{BasicSecurityHeaderFlags, ShareControlHeader, ShareControlPdu};
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::x224::{X224Data, X224};

use super::capabilities;

/// First channel id psmgate hands out, in the Connect Response it forwards to the client, for a
/// static virtual channel it removed from the Connect Initial. Ids count up from here, skipping
/// any id the server uses.
pub const FAKE_CHANNEL_ID_BASE: u16 = 0xFF00;

/// TPKT version byte ([MS-RDPBCGR] 2.2.1.1, T.123).
const TPKT_VERSION: u8 = 0x03;
/// MCS user ids start here (T.125 `UserId`, PER-encoded as an offset from it).
const MCS_BASE_USER_ID: u16 = 1001;
/// `rt-successful` (T.125 `Result`).
const MCS_RESULT_SUCCESSFUL: u8 = 0;
/// `TS_PROTOCOL_VERSION` in the high bits of `pduType` ([MS-RDPBCGR] 2.2.8.1.1.1.1).
const SHARE_CONTROL_VERSION: u16 = 0x0010;
/// `PDUTYPE_DEMANDACTIVEPDU`.
const PDUTYPE_DEMAND_ACTIVE: u16 = 0x1;
/// `PDUTYPE_CONFIRMACTIVEPDU`.
const PDUTYPE_CONFIRM_ACTIVE: u16 = 0x3;
/// `PDUTYPE_DEACTIVATEALLPDU`.
const PDUTYPE_DEACTIVATE_ALL: u16 = 0x6;
/// `CAPSTYPE_BITMAP` ([MS-RDPBCGR] 2.2.7.1.2).
const CAPSTYPE_BITMAP: u16 = 0x0002;

/// Why a PDU could not be rewritten.
///
/// Messages never contain credentials: decoding errors name the PDU and the field, not values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The bytes are not one complete TPKT frame.
    #[error("not a complete TPKT frame: {0}")]
    NotTpkt(&'static str),
    /// The frame is a TPKT frame but its content could not be decoded.
    #[error("cannot decode {pdu}: {reason}")]
    Decode {
        /// The PDU being decoded.
        pdu: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// The rewritten PDU could not be encoded (e.g. it would no longer fit a frame).
    #[error("cannot encode {pdu}: {reason}")]
    Encode {
        /// The PDU being encoded.
        pdu: &'static str,
        /// The encoder's explanation.
        reason: String,
    },
    /// The server returned a different number of static channel ids than psmgate requested.
    #[error("the server returned {got} static channel ids for {expected} requested channels")]
    ChannelCountMismatch {
        /// Channels psmgate kept in the Connect Initial.
        expected: usize,
        /// Channel ids in the server's network data.
        got: usize,
    },
    /// No unused MCS channel id was left for a removed channel.
    #[error("no unused channel id left above {FAKE_CHANNEL_ID_BASE:#06x} for a removed channel")]
    ChannelIdsExhausted,
    /// The Client Info PDU is encrypted (Standard RDP Security), which psmgate does not support.
    #[error("the Client Info PDU is encrypted with Standard RDP Security, which is not supported")]
    EncryptedClientInfo,
}

impl RewriteError {
    fn decode(pdu: &'static str, err: &DecodeError) -> Self {
        Self::Decode {
            pdu,
            reason: err.report().to_string(),
        }
    }

    fn encode(pdu: &'static str, err: &EncodeError) -> Self {
        Self::Encode {
            pdu,
            reason: err.report().to_string(),
        }
    }
}

/// What psmgate changes in the client's MCS Connect Initial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInitialPatch {
    /// The security protocol psmgate negotiated with the server, written to
    /// `serverSelectedProtocol` ([MS-RDPBCGR] 2.2.1.3.2).
    pub server_selected_protocol: nego::SecurityProtocol,
    /// Static virtual channels to keep, lower-case; a channel is kept iff its name, lower-cased,
    /// is in the list.
    pub allowed_channels: Vec<String>,
    /// Clear `RNS_UD_CS_SUPPORT_DYNVC_GFX_PROTOCOL`, so the server does not use the graphics
    /// pipeline ([MS-RDPEGFX]), which the recorder does not decode.
    pub strip_gfx: bool,
}

/// One static virtual channel the client asked for ([MS-RDPBCGR] 2.2.1.3.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel name, lower-cased (channel names are at most seven ANSI characters).
    pub name: String,
    /// Whether psmgate forwarded the channel to the server.
    pub kept: bool,
}

/// What the client announced in its MCS Connect Initial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInitialInfo {
    /// The client's static virtual channels, in the client's order.
    pub channels: Vec<ChannelInfo>,
    /// `keyboardLayout` (an input locale identifier, e.g. 0x409).
    pub keyboard_layout: u32,
    /// `desktopWidth`.
    pub desktop_width: u16,
    /// `desktopHeight`.
    pub desktop_height: u16,
    /// `earlyCapabilityFlags` as the client sent them (0 when absent).
    pub early_capability_flags: u16,
    /// `clientName`.
    pub client_name: String,
}

/// The channel ids the client sees after [`rewrite_connect_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponseInfo {
    /// The MCS I/O channel id (`MCSChannelId`, [MS-RDPBCGR] 2.2.1.4.4).
    pub io_channel_id: u16,
    /// The message channel id, when the server created one (2.2.1.4.5).
    pub message_channel_id: Option<u16>,
    /// One entry per channel the client asked for, in its order: name, id as the client sees
    /// it, and whether the id is the server's (`true`) or one psmgate made up (`false`).
    pub channel_ids: Vec<(String, u16, bool)>,
}

/// Credentials psmgate logs on to the target with.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetCredentials {
    /// User name.
    pub username: String,
    /// Domain, if any.
    pub domain: Option<String>,
    /// Password; never shown by `Debug`.
    pub password: String,
}

impl fmt::Debug for TargetCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetCredentials")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The identity the client itself put in its Client Info PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfoSeen {
    /// User name the client sent.
    pub username: String,
    /// Domain the client sent, if any.
    pub domain: Option<String>,
}

/// What psmgate learns from a Server Demand Active PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandActiveInfo {
    /// `shareId` ([MS-RDPBCGR] 2.2.1.13.1.1).
    pub share_id: u32,
    /// `desktopWidth` of the Bitmap Capability Set (2.2.7.1.2).
    pub width: u16,
    /// `desktopHeight` of the Bitmap Capability Set.
    pub height: u16,
}

/// Rewrites the client's MCS Connect Initial PDU with GCC Conference Create Request
/// ([MS-RDPBCGR] 2.2.1.3).
///
/// - `serverSelectedProtocol` (Client Core Data, 2.2.1.3.2) becomes
///   `patch.server_selected_protocol` (left absent if the client's core data is too short to
///   carry it);
/// - `RNS_UD_CS_SUPPORT_DYNVC_GFX_PROTOCOL` is cleared when `patch.strip_gfx`;
/// - `RNS_UD_CS_SUPPORT_SKIP_CHANNELJOIN` is always cleared, so the client joins every channel
///   (2.2.1.8) and psmgate can answer joins of the channels it removed;
/// - channels not in `patch.allowed_channels` are removed from the Client Network Data
///   (2.2.1.3.4).
///
/// GCC user data blocks IronRDP does not model are not forwarded. Returns the new frame and
/// what the client announced.
pub fn rewrite_connect_initial(
    frame: &[u8],
    patch: &ConnectInitialPatch,
) -> Result<(Vec<u8>, ConnectInitialInfo), RewriteError> {
    const PDU: &str = "MCS Connect Initial";

    let data = x224_data(frame)?;
    let mut connect_initial: mcs::ConnectInitial =
        decode(&data).map_err(|e| RewriteError::decode(PDU, &e))?;
    let mut gcc = connect_initial.conference_create_request.into_gcc_blocks();

    let defs: Vec<ChannelDef> = gcc
        .network
        .as_ref()
        .map(|n| n.channels.clone())
        .unwrap_or_default();
    let channels: Vec<ChannelInfo> = defs
        .iter()
        .map(|def| {
            let name = channel_name(def);
            let kept = patch
                .allowed_channels
                .iter()
                .any(|allowed| allowed.to_lowercase() == name);
            ChannelInfo { name, kept }
        })
        .collect();
    if let Some(network) = gcc.network.as_mut() {
        network.channels = defs
            .into_iter()
            .zip(&channels)
            .filter(|(_, info)| info.kept)
            .map(|(def, _)| def)
            .collect();
    }

    let core = &mut gcc.core;
    let info = ConnectInitialInfo {
        channels,
        keyboard_layout: core.keyboard_layout,
        desktop_width: core.desktop_width,
        desktop_height: core.desktop_height,
        early_capability_flags: core
            .optional_data
            .early_capability_flags
            .map_or(0, |f| f.bits()),
        client_name: core.client_name.clone(),
    };

    let optional = &mut core.optional_data;
    if optional.server_selected_protocol.is_some() || optional.connection_type.is_some() {
        optional.server_selected_protocol = Some(patch.server_selected_protocol);
    }
    if let Some(flags) = optional.early_capability_flags.as_mut() {
        flags.remove(ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN);
        if patch.strip_gfx {
            flags.remove(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL);
        }
    }

    connect_initial.conference_create_request =
        ConferenceCreateRequest::new(gcc).map_err(|e| RewriteError::decode(PDU, &e))?;
    let body = encode_vec(&connect_initial).map_err(|e| RewriteError::encode(PDU, &e))?;
    Ok((wrap_x224_data(body, PDU)?, info))
}

/// Rewrites the server's MCS Connect Response PDU with GCC Conference Create Response
/// ([MS-RDPBCGR] 2.2.1.4) for the client.
///
/// The server answered for the channels psmgate kept; the client expects one id per channel it
/// asked for (Server Network Data `channelIdArray`, 2.2.1.4.4). The rebuilt array holds the
/// server's ids for kept channels and ids from [`FAKE_CHANNEL_ID_BASE`] upward, distinct from
/// every id the server uses, for removed ones. `SC_SKIP_CHANNELJOIN_SUPPORTED` is cleared
/// (see [`rewrite_connect_initial`]).
///
/// `client_channels` is [`ConnectInitialInfo::channels`]. Errors with
/// [`RewriteError::ChannelCountMismatch`] if the server returned another number of ids than
/// channels were kept.
pub fn rewrite_connect_response(
    frame: &[u8],
    client_channels: &[ChannelInfo],
) -> Result<(Vec<u8>, ConnectResponseInfo), RewriteError> {
    rewrite_connect_response_for_client(frame, client_channels, None)
}

/// [`rewrite_connect_response`], also setting `clientRequestedProtocols` (Server Core Data,
/// [MS-RDPBCGR] 2.2.1.4.2) to what the client requested from psmgate in its X.224 Connection
/// Request, when `client_requested_protocols` is given and the server sent the field. The server
/// echoes what psmgate requested, which a client may compare with its own request.
pub fn rewrite_connect_response_for_client(
    frame: &[u8],
    client_channels: &[ChannelInfo],
    client_requested_protocols: Option<nego::SecurityProtocol>,
) -> Result<(Vec<u8>, ConnectResponseInfo), RewriteError> {
    const PDU: &str = "MCS Connect Response";

    let data = x224_data(frame)?;
    let mut response: mcs::ConnectResponse =
        decode(&data).map_err(|e| RewriteError::decode(PDU, &e))?;
    let user_id = conference_user_id(&response.conference_create_response)?;
    let mut gcc = response.conference_create_response.into_gcc_blocks();

    let expected = client_channels.iter().filter(|c| c.kept).count();
    let got = gcc.network.channel_ids.len();
    if expected != got {
        return Err(RewriteError::ChannelCountMismatch { expected, got });
    }

    let io_channel_id = gcc.network.io_channel;
    let message_channel_id = gcc
        .message_channel
        .as_ref()
        .map(|m| m.mcs_message_channel_id);
    let mut used: Vec<u16> = gcc.network.channel_ids.clone();
    used.push(io_channel_id);
    used.extend(message_channel_id);

    let mut real_ids = gcc.network.channel_ids.iter().copied();
    let mut candidate = FAKE_CHANNEL_ID_BASE;
    let mut ids = Vec::with_capacity(client_channels.len());
    let mut channel_ids = Vec::with_capacity(client_channels.len());
    for channel in client_channels {
        if channel.kept {
            let id = real_ids
                .next()
                .ok_or(RewriteError::ChannelCountMismatch { expected, got })?;
            ids.push(id);
            channel_ids.push((channel.name.clone(), id, true));
        } else {
            while used.contains(&candidate) {
                candidate = candidate
                    .checked_add(1)
                    .ok_or(RewriteError::ChannelIdsExhausted)?;
            }
            let id = candidate;
            used.push(id);
            ids.push(id);
            channel_ids.push((channel.name.clone(), id, false));
        }
    }
    gcc.network.channel_ids = ids;

    let optional = &mut gcc.core.optional_data;
    if let Some(flags) = optional.early_capability_flags.as_mut() {
        flags.remove(ServerEarlyCapabilityFlags::SKIP_CHANNELJOIN_SUPPORTED);
    }
    if let (Some(requested), Some(field)) = (
        client_requested_protocols,
        optional.client_requested_protocols.as_mut(),
    ) {
        *field = requested;
    }

    response.conference_create_response =
        ConferenceCreateResponse::new(user_id, gcc).map_err(|e| RewriteError::decode(PDU, &e))?;
    let body = encode_vec(&response).map_err(|e| RewriteError::encode(PDU, &e))?;
    let info = ConnectResponseInfo {
        io_channel_id,
        message_channel_id,
        channel_ids,
    };
    Ok((wrap_x224_data(body, PDU)?, info))
}

/// The user channel id from a successful server → client MCS Attach User Confirm
/// ([MS-RDPBCGR] 2.2.1.7, T.125 `AttachUserConfirm` `initiator`); `None` for any other frame or
/// an unsuccessful confirm.
pub fn attach_user_confirm(frame: &[u8]) -> Option<u16> {
    match decode_mcs(frame)? {
        McsMessage::AttachUserConfirm(confirm) if confirm.result == MCS_RESULT_SUCCESSFUL => {
            Some(confirm.initiator_id)
        }
        _ => None,
    }
}

/// `(initiator (user id), channel id)` from a client → server MCS Channel Join Request
/// ([MS-RDPBCGR] 2.2.1.8); `None` for any other frame.
pub fn channel_join_request(frame: &[u8]) -> Option<(u16, u16)> {
    match decode_mcs(frame)? {
        McsMessage::ChannelJoinRequest(request) => Some((request.initiator_id, request.channel_id)),
        _ => None,
    }
}

/// A successful MCS Channel Join Confirm frame ([MS-RDPBCGR] 2.2.1.9) for `channel_id`, as
/// psmgate sends it to the client for a channel it removed.
///
/// MCS user ids are at least 1001 (T.125); a smaller `user_id` is encoded as 1001.
pub fn channel_join_confirm(user_id: u16, channel_id: u16) -> Vec<u8> {
    let confirm = |initiator_id| {
        encode_vec(&X224(mcs::ChannelJoinConfirm {
            result: MCS_RESULT_SUCCESSFUL,
            initiator_id,
            requested_channel_id: channel_id,
            channel_id,
        }))
    };
    confirm(user_id)
        .or_else(|_| confirm(user_id.max(MCS_BASE_USER_ID)))
        .unwrap_or_default()
}

/// Rewrites a client → server Client Info PDU ([MS-RDPBCGR] 2.2.1.11) with the target
/// credentials.
///
/// If `frame` is an MCS Send Data Request whose user data starts with a basic security header
/// carrying `SEC_INFO_PKT` (2.2.8.1.1.2.1), the Info Packet (2.2.1.11.1.1) gets `creds` as user
/// name, domain and password (a password cookie the client sent is dropped), `INFO_AUTOLOGON`
/// and `INFO_UNICODE` set, `INFO_PASSWORD_IS_SC_PIN` and `INFO_COMPRESSION` cleared and the
/// compression type reset, so the server never bulk-compresses (3.1.8). The strings are
/// encoded as UTF-16 so that any password can be represented.
///
/// Returns the new frame and the user name and domain the client had sent, `Ok(None)` for any
/// other frame. An encrypted Info Packet (Standard RDP Security) is an error.
pub fn rewrite_client_info(
    frame: &[u8],
    creds: &TargetCredentials,
) -> Result<Option<(Vec<u8>, ClientInfoSeen)>, RewriteError> {
    const PDU: &str = "Client Info PDU";

    let Some(McsMessage::SendDataRequest(request)) = decode_mcs(frame) else {
        return Ok(None);
    };
    let Some(flags) = read_u16_le(&request.user_data, 0) else {
        return Ok(None);
    };
    let flags = BasicSecurityHeaderFlags::from_bits_truncate(flags);
    if !flags.contains(BasicSecurityHeaderFlags::INFO_PKT) {
        return Ok(None);
    }
    if flags.contains(BasicSecurityHeaderFlags::ENCRYPT) {
        return Err(RewriteError::EncryptedClientInfo);
    }

    let mut pdu: ClientInfoPdu =
        decode(&request.user_data).map_err(|e| RewriteError::decode(PDU, &e))?;
    let info = &mut pdu.client_info;
    let seen = ClientInfoSeen {
        username: info.credentials.username.clone(),
        domain: info.credentials.domain.clone(),
    };

    info.credentials = Credentials {
        username: creds.username.clone(),
        password: creds.password.clone(),
        domain: creds.domain.clone().filter(|d| !d.is_empty()),
    };
    info.password_cookie = None;
    info.flags
        .insert(ClientInfoFlags::AUTOLOGON | ClientInfoFlags::UNICODE);
    info.flags
        .remove(ClientInfoFlags::COMPRESSION | ClientInfoFlags::PASSWORD_IS_SC_PIN);
    info.compression_type = CompressionType::K8;

    let user_data = encode_vec(&pdu).map_err(|e| RewriteError::encode(PDU, &e))?;
    let out = reencode_send_data_request(&request, user_data, PDU)?;
    Ok(Some((out, seen)))
}

/// Restricts the capabilities in a client → server Client Confirm Active PDU
/// ([MS-RDPBCGR] 2.2.1.13.2) with [`capabilities::restrict`].
///
/// If `frame` is an MCS Send Data Request (on any channel) whose user data is a Share Control
/// PDU (2.2.8.1.1.1.1) of type `PDUTYPE_CONFIRMACTIVEPDU` with a `totalLength` equal to the user
/// data length, the capability sets are restricted and the PDU re-encoded with its lengths and
/// count recomputed. Returns the new frame and the notes describing each change, `Ok(None)` for
/// any other frame.
#[allow(clippy::type_complexity)]
pub fn rewrite_confirm_active(
    frame: &[u8],
) -> Result<Option<(Vec<u8>, Vec<String>)>, RewriteError> {
    const PDU: &str = "Client Confirm Active PDU";

    let Some(McsMessage::SendDataRequest(request)) = decode_mcs(frame) else {
        return Ok(None);
    };
    if share_control_type(&request.user_data, true) != Some(PDUTYPE_CONFIRM_ACTIVE) {
        return Ok(None);
    }

    let mut header: ShareControlHeader =
        decode(&request.user_data).map_err(|e| RewriteError::decode(PDU, &e))?;
    let ShareControlPdu::ClientConfirmActive(confirm) = &mut header.share_control_pdu else {
        return Ok(None);
    };
    let notes = capabilities::restrict(&mut confirm.pdu.capability_sets);

    let user_data = encode_vec(&header).map_err(|e| RewriteError::encode(PDU, &e))?;
    let out = reencode_send_data_request(&request, user_data, PDU)?;
    Ok(Some((out, notes)))
}

/// Share id and desktop size from a server → client Server Demand Active PDU
/// ([MS-RDPBCGR] 2.2.1.13.1): `shareId` (2.2.1.13.1.1) and the Bitmap Capability Set's
/// `desktopWidth`/`desktopHeight` (2.2.7.1.2). `None` for any other frame or if the PDU has no
/// Bitmap Capability Set.
///
/// Only the fields needed are read, so capability sets psmgate does not know do not matter.
pub fn demand_active(frame: &[u8]) -> Option<DemandActiveInfo> {
    let McsMessage::SendDataIndication(indication) = decode_mcs(frame)? else {
        return None;
    };
    let data: &[u8] = &indication.user_data;
    if share_control_type(data, false)? != PDUTYPE_DEMAND_ACTIVE {
        return None;
    }

    // Share Control Header (6), shareId (4), lengthSourceDescriptor (2),
    // lengthCombinedCapabilities (2), sourceDescriptor, numberCapabilities (2), pad2Octets (2).
    let share_id = read_u32_le(data, 6)?;
    let source_descriptor_len = usize::from(read_u16_le(data, 10)?);
    let mut pos = 14usize.checked_add(source_descriptor_len)?;
    let count = read_u16_le(data, pos)?;
    pos = pos.checked_add(4)?;

    for _ in 0..count {
        let cap_type = read_u16_le(data, pos)?;
        let cap_len = usize::from(read_u16_le(data, pos.checked_add(2)?)?);
        if cap_len < 4 {
            return None;
        }
        if cap_type == CAPSTYPE_BITMAP {
            if cap_len < 16 {
                return None;
            }
            // preferredBitsPerPixel, receive1BitPerPixel, receive4BitsPerPixel,
            // receive8BitsPerPixel, desktopWidth, desktopHeight.
            let width = read_u16_le(data, pos.checked_add(12)?)?;
            let height = read_u16_le(data, pos.checked_add(14)?)?;
            return Some(DemandActiveInfo {
                share_id,
                width,
                height,
            });
        }
        pos = pos.checked_add(cap_len)?;
    }
    None
}

/// Whether `frame` is a server → client Server Deactivate All PDU ([MS-RDPBCGR] 2.2.3.1), which
/// starts a deactivation-reactivation sequence (1.3.1.3).
pub fn is_deactivate_all(frame: &[u8]) -> bool {
    match decode_mcs(frame) {
        Some(McsMessage::SendDataIndication(indication)) => {
            share_control_type(&indication.user_data, false) == Some(PDUTYPE_DEACTIVATE_ALL)
        }
        _ => false,
    }
}

/// Checks that `frame` is exactly one TPKT frame ([MS-RDPBCGR] 2.2.1.1: version 3, big-endian
/// length covering the whole frame).
fn check_tpkt(frame: &[u8]) -> Result<(), RewriteError> {
    if frame.first() != Some(&TPKT_VERSION) {
        return Err(RewriteError::NotTpkt(
            "first byte is not the TPKT version 3",
        ));
    }
    let declared =
        read_u16_be(frame, 2).ok_or(RewriteError::NotTpkt("shorter than a TPKT header"))?;
    let declared = usize::from(declared);
    if declared != frame.len() {
        return Err(RewriteError::NotTpkt(
            "TPKT length differs from the frame length",
        ));
    }
    Ok(())
}

/// The user data of an X.224 Data TPDU (X.224 13.7, [MS-RDPBCGR] 2.2.1.1).
fn x224_data(frame: &[u8]) -> Result<Cow<'_, [u8]>, RewriteError> {
    check_tpkt(frame)?;
    let tpdu: X224<X224Data<'_>> =
        decode(frame).map_err(|e| RewriteError::decode("X.224 Data TPDU", &e))?;
    Ok(tpdu.0.data)
}

/// Wraps `data` in an X.224 Data TPDU and a TPKT header.
fn wrap_x224_data(data: Vec<u8>, pdu: &'static str) -> Result<Vec<u8>, RewriteError> {
    encode_vec(&X224(X224Data {
        data: Cow::Owned(data),
    }))
    .map_err(|e| RewriteError::encode(pdu, &e))
}

/// The MCS domain PDU of a slow-path frame (T.125, [MS-RDPBCGR] 2.2.8.1.1.1), if any.
fn decode_mcs(frame: &[u8]) -> Option<McsMessage<'_>> {
    check_tpkt(frame).ok()?;
    decode::<X224<McsMessage<'_>>>(frame)
        .ok()
        .map(|x224| x224.0)
}

/// The same Send Data Request with new user data, as a frame.
fn reencode_send_data_request(
    request: &mcs::SendDataRequest<'_>,
    user_data: Vec<u8>,
    pdu: &'static str,
) -> Result<Vec<u8>, RewriteError> {
    let out = mcs::SendDataRequest {
        initiator_id: request.initiator_id,
        channel_id: request.channel_id,
        user_data: Cow::Owned(user_data),
    };
    encode_vec(&X224(out)).map_err(|e| RewriteError::encode(pdu, &e))
}

/// The share control `pduType` type bits of `data` if it starts with a Share Control Header
/// ([MS-RDPBCGR] 2.2.8.1.1.1.1) of protocol version 1; with `exact_length`, `totalLength` must
/// also equal the length of `data` (which rules out virtual channel chunks).
fn share_control_type(data: &[u8], exact_length: bool) -> Option<u16> {
    let total_length = usize::from(read_u16_le(data, 0)?);
    let pdu_type = read_u16_le(data, 2)?;
    read_u16_le(data, 4)?;
    if pdu_type & !0xF != SHARE_CONTROL_VERSION {
        return None;
    }
    if exact_length && total_length != data.len() {
        return None;
    }
    Some(pdu_type & 0xF)
}

/// The `nodeID` (MCS user id of the server) of a Conference Create Response, which IronRDP
/// keeps private: read back from its own encoding (T.124 `ConnectData` with key, `connectPDU`
/// length, `ConferenceCreateResponse` choice, then `nodeID` as a PER offset from 1001).
fn conference_user_id(response: &ConferenceCreateResponse) -> Result<u16, RewriteError> {
    const PDU: &str = "GCC Conference Create Response";
    let err = || RewriteError::Decode {
        pdu: PDU,
        reason: "unexpected encoding of the conference create response".to_owned(),
    };

    let bytes = encode_vec(response).map_err(|e| RewriteError::encode(PDU, &e))?;
    // Key choice (1), object identifier length (1) and value (5).
    let mut pos = 7usize;
    let length_first = *bytes.get(pos).ok_or_else(err)?;
    pos += if length_first & 0x80 != 0 { 2 } else { 1 };
    // ConnectGCCPDU choice (1).
    pos += 1;
    read_u16_be(&bytes, pos)
        .ok_or_else(err)?
        .checked_add(MCS_BASE_USER_ID)
        .ok_or_else(err)
}

/// A static channel name ([MS-RDPBCGR] 2.2.1.3.4.1, up to seven ANSI characters), lower-cased.
fn channel_name(def: &ChannelDef) -> String {
    def.name
        .as_bytes()
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect::<String>()
        .to_lowercase()
}

fn read_u16_le(data: &[u8], pos: usize) -> Option<u16> {
    let bytes = data.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u16_be(data: &[u8], pos: usize) -> Option<u16> {
    let bytes = data.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn read_u32_le(data: &[u8], pos: usize) -> Option<u32> {
    let bytes = data.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use ironrdp_pdu::gcc::{
        ChannelName, ChannelOptions, ClientCoreData, ClientCoreOptionalData, ClientGccBlocks,
        ClientNetworkData, ClientSecurityData, ColorDepth, ConnectionType, HighColorDepth,
        KeyboardType, RdpVersion, SecureAccessSequence, ServerCoreData, ServerCoreOptionalData,
        ServerGccBlocks, ServerMessageChannelData, ServerNetworkData, ServerSecurityData,
        SupportedColorDepths,
    };
    use ironrdp_pdu::rdp::capability_sets::{
        Bitmap, BitmapDrawingFlags, CapabilitySet, ClientConfirmActive, DemandActive,
        ServerDemandActive, SERVER_CHANNEL_ID,
    };
    use ironrdp_pdu::rdp::client_info::{
        AddressFamily, ClientInfo, ExtendedClientInfo, ExtendedClientOptionalInfo,
    };
    use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, ServerDeactivateAll};
    use proptest::prelude::*;

    use super::*;

    pub(crate) const CHANNELS: [&str; 4] = ["cliprdr", "rdpdr", "rdpsnd", "drdynvc"];
    pub(crate) const PASSWORD: &str = "Sécret-Pässw0rd!";
    pub(crate) const USER_ID: u16 = 1007;
    pub(crate) const IO_CHANNEL: u16 = 1003;

    pub(crate) fn client_gcc() -> ClientGccBlocks {
        ClientGccBlocks {
            core: ClientCoreData {
                version: RdpVersion::V10_7,
                desktop_width: 1920,
                desktop_height: 1080,
                color_depth: ColorDepth::Bpp8,
                sec_access_sequence: SecureAccessSequence::Del,
                keyboard_layout: 0x0407,
                client_build: 22621,
                client_name: "ADMIN-PC".to_owned(),
                keyboard_type: KeyboardType::IBM_ENHANCED,
                keyboard_subtype: 0,
                keyboard_functional_keys_count: 12,
                ime_file_name: String::new(),
                optional_data: ClientCoreOptionalData {
                    post_beta2_color_depth: Some(ColorDepth::Bpp8),
                    client_product_id: Some(1),
                    serial_number: Some(0),
                    high_color_depth: Some(HighColorDepth::Bpp24),
                    supported_color_depths: Some(SupportedColorDepths::all()),
                    early_capability_flags: Some(
                        ClientEarlyCapabilityFlags::SUPPORT_ERR_INFO_PDU
                            | ClientEarlyCapabilityFlags::WANT_32_BPP_SESSION
                            | ClientEarlyCapabilityFlags::VALID_CONNECTION_TYPE
                            | ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL
                            | ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN,
                    ),
                    dig_product_id: Some(String::new()),
                    connection_type: Some(ConnectionType::Lan),
                    server_selected_protocol: Some(nego::SecurityProtocol::SSL),
                    desktop_physical_width: None,
                    desktop_physical_height: None,
                    desktop_orientation: None,
                    desktop_scale_factor: None,
                    device_scale_factor: None,
                },
            },
            security: ClientSecurityData::no_security(),
            network: Some(ClientNetworkData {
                channels: CHANNELS
                    .iter()
                    .map(|name| ChannelDef {
                        name: ChannelName::from_utf8(name).expect("ascii name"),
                        options: ChannelOptions::INITIALIZED | ChannelOptions::COMPRESS_RDP,
                    })
                    .collect(),
            }),
            cluster: None,
            monitor: None,
            message_channel: None,
            multi_transport_channel: None,
            monitor_extended: None,
        }
    }

    pub(crate) fn connect_initial_frame() -> Vec<u8> {
        let ci = mcs::ConnectInitial::with_gcc_blocks(client_gcc()).expect("connect initial");
        wrap_x224_data(encode_vec(&ci).expect("encode"), "test").expect("wrap")
    }

    fn patch(allowed: &[&str], strip_gfx: bool) -> ConnectInitialPatch {
        ConnectInitialPatch {
            server_selected_protocol: nego::SecurityProtocol::HYBRID,
            allowed_channels: allowed.iter().map(|s| (*s).to_owned()).collect(),
            strip_gfx,
        }
    }

    fn decode_connect_initial(frame: &[u8]) -> mcs::ConnectInitial {
        let data = x224_data(frame).expect("x224");
        decode(&data).expect("connect initial")
    }

    pub(crate) fn server_gcc(channel_ids: Vec<u16>, message_channel: bool) -> ServerGccBlocks {
        ServerGccBlocks {
            core: ServerCoreData {
                version: RdpVersion::V10_7,
                optional_data: ServerCoreOptionalData {
                    client_requested_protocols: Some(nego::SecurityProtocol::HYBRID),
                    early_capability_flags: Some(
                        ServerEarlyCapabilityFlags::EDGE_ACTIONS_SUPPORTED_V1
                            | ServerEarlyCapabilityFlags::SKIP_CHANNELJOIN_SUPPORTED,
                    ),
                },
            },
            network: ServerNetworkData {
                channel_ids,
                io_channel: IO_CHANNEL,
            },
            security: ServerSecurityData::no_security(),
            message_channel: message_channel.then_some(ServerMessageChannelData {
                mcs_message_channel_id: 1008,
            }),
            multi_transport_channel: None,
        }
    }

    pub(crate) fn connect_response(gcc: ServerGccBlocks) -> mcs::ConnectResponse {
        mcs::ConnectResponse {
            conference_create_response: ConferenceCreateResponse::new(1002, gcc).expect("ccr"),
            called_connect_id: 0,
            domain_parameters: mcs::DomainParameters::target(),
        }
    }

    pub(crate) fn connect_response_frame(channel_ids: Vec<u16>, message_channel: bool) -> Vec<u8> {
        let response = connect_response(server_gcc(channel_ids, message_channel));
        wrap_x224_data(encode_vec(&response).expect("encode"), "test").expect("wrap")
    }

    pub(crate) fn client_info_frame(password: &str) -> Vec<u8> {
        let pdu = ClientInfoPdu {
            security_header: BasicSecurityHeader {
                flags: BasicSecurityHeaderFlags::INFO_PKT,
            },
            client_info: ClientInfo {
                credentials: Credentials {
                    username: "alice".to_owned(),
                    password: password.to_owned(),
                    domain: Some("CORP".to_owned()),
                },
                password_cookie: None,
                code_page: 0,
                flags: ClientInfoFlags::MOUSE
                    | ClientInfoFlags::UNICODE
                    | ClientInfoFlags::LOGON_NOTIFY
                    | ClientInfoFlags::COMPRESSION
                    | ClientInfoFlags::ENABLE_WINDOWS_KEY,
                compression_type: CompressionType::Rdp61,
                alternate_shell: String::new(),
                work_dir: String::new(),
                extra_info: ExtendedClientInfo {
                    address_family: AddressFamily::INET,
                    address: "10.0.0.5".to_owned(),
                    dir: "C:\\Windows\\System32\\mstscax.dll".to_owned(),
                    optional_data: ExtendedClientOptionalInfo::default(),
                },
            },
        };
        send_data_request(IO_CHANNEL, encode_vec(&pdu).expect("encode"))
    }

    pub(crate) fn send_data_request(channel_id: u16, user_data: Vec<u8>) -> Vec<u8> {
        encode_vec(&X224(mcs::SendDataRequest {
            initiator_id: USER_ID,
            channel_id,
            user_data: Cow::Owned(user_data),
        }))
        .expect("encode")
    }

    pub(crate) fn send_data_indication(channel_id: u16, user_data: Vec<u8>) -> Vec<u8> {
        encode_vec(&X224(mcs::SendDataIndication {
            initiator_id: 1002,
            channel_id,
            user_data: Cow::Owned(user_data),
        }))
        .expect("encode")
    }

    fn creds() -> TargetCredentials {
        TargetCredentials {
            username: "svc-admin".to_owned(),
            domain: Some("TARGET".to_owned()),
            password: "V4ult3d/Pa55".to_owned(),
        }
    }

    pub(crate) fn confirm_active_frame(caps: Vec<CapabilitySet>) -> Vec<u8> {
        let header = ShareControlHeader {
            share_control_pdu: ShareControlPdu::ClientConfirmActive(ClientConfirmActive {
                originator_id: SERVER_CHANNEL_ID,
                pdu: DemandActive {
                    source_descriptor: "MSTSC".to_owned(),
                    capability_sets: caps,
                },
            }),
            pdu_source: USER_ID,
            share_id: 0x0001_03EA,
        };
        send_data_request(IO_CHANNEL, encode_vec(&header).expect("encode"))
    }

    /// GUID of the "ignore" bitmap codec ([MS-RDPBCGR] 2.2.7.2.10.1.1), as encoded.
    const GUID_IGNORE_BYTES: [u8; 16] = [
        0xa6, 0x51, 0x43, 0x9c, 0x35, 0x35, 0xae, 0x42, 0x91, 0x0c, 0xcd, 0xfc, 0xe5, 0x76, 0x0b,
        0x58,
    ];

    /// A Confirm Active frame with the rich capability sets, whose codec of unknown GUID (which
    /// IronRDP decodes but cannot encode) is written as an "ignore" codec and then given an
    /// unknown GUID in the bytes.
    pub(crate) fn rich_confirm_active_frame() -> Vec<u8> {
        use ironrdp_pdu::rdp::capability_sets::CodecProperty;
        let mut caps = capabilities::tests::rich_client_caps();
        for cap in &mut caps {
            if let CapabilitySet::BitmapCodecs(codecs) = cap {
                for codec in &mut codecs.0 {
                    if codec.property == CodecProperty::None {
                        codec.property = CodecProperty::Ignore;
                    }
                }
            }
        }
        let mut frame = confirm_active_frame(caps);
        let at = frame
            .windows(16)
            .position(|w| w == GUID_IGNORE_BYTES)
            .expect("ignore codec in frame");
        frame[at..at + 16].copy_from_slice(&[0x5A; 16]);
        frame
    }

    pub(crate) fn demand_active_frame() -> Vec<u8> {
        let header = ShareControlHeader {
            share_control_pdu: ShareControlPdu::ServerDemandActive(ServerDemandActive {
                pdu: DemandActive {
                    source_descriptor: "RDP".to_owned(),
                    capability_sets: vec![
                        CapabilitySet::Share(vec![0xEA, 0x03, 0, 0]),
                        CapabilitySet::Bitmap(Bitmap {
                            pref_bits_per_pix: 32,
                            desktop_width: 1280,
                            desktop_height: 720,
                            desktop_resize_flag: true,
                            drawing_flags: BitmapDrawingFlags::ALLOW_SKIP_ALPHA,
                        }),
                    ],
                },
            }),
            pdu_source: 0x03EA,
            share_id: 0x0001_03EA,
        };
        send_data_indication(IO_CHANNEL, encode_vec(&header).expect("encode"))
    }

    pub(crate) fn deactivate_all_frame() -> Vec<u8> {
        let header = ShareControlHeader {
            share_control_pdu: ShareControlPdu::ServerDeactivateAll(ServerDeactivateAll),
            pdu_source: 0x03EA,
            share_id: 0x0001_03EA,
        };
        send_data_indication(IO_CHANNEL, encode_vec(&header).expect("encode"))
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn connect_initial_keeps_allowed_channels_and_patches_core_data() {
        let frame = connect_initial_frame();
        let (out, info) = rewrite_connect_initial(&frame, &patch(&["cliprdr", "drdynvc"], true))
            .expect("rewrite");

        assert_eq!(
            info.channels,
            vec![
                ChannelInfo {
                    name: "cliprdr".into(),
                    kept: true
                },
                ChannelInfo {
                    name: "rdpdr".into(),
                    kept: false
                },
                ChannelInfo {
                    name: "rdpsnd".into(),
                    kept: false
                },
                ChannelInfo {
                    name: "drdynvc".into(),
                    kept: true
                },
            ]
        );
        assert_eq!(info.keyboard_layout, 0x0407);
        assert_eq!((info.desktop_width, info.desktop_height), (1920, 1080));
        assert_eq!(info.client_name, "ADMIN-PC");
        let sent_flags = client_gcc()
            .core
            .optional_data
            .early_capability_flags
            .expect("flags");
        assert_eq!(info.early_capability_flags, sent_flags.bits());

        let original = decode_connect_initial(&frame);
        let rewritten = decode_connect_initial(&out);
        let gcc = rewritten.conference_create_request.gcc_blocks();
        let names: Vec<_> = gcc
            .network
            .as_ref()
            .expect("network")
            .channels
            .iter()
            .map(channel_name)
            .collect();
        assert_eq!(names, vec!["cliprdr", "drdynvc"]);
        assert_eq!(
            gcc.core.optional_data.server_selected_protocol,
            Some(nego::SecurityProtocol::HYBRID)
        );
        let flags = gcc
            .core
            .optional_data
            .early_capability_flags
            .expect("flags");
        assert!(!flags.contains(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL));
        assert!(!flags.contains(ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN));
        assert!(flags.contains(ClientEarlyCapabilityFlags::WANT_32_BPP_SESSION));

        // Everything else is unchanged.
        let mut expected = client_gcc();
        expected.core.optional_data.server_selected_protocol = Some(nego::SecurityProtocol::HYBRID);
        expected.core.optional_data.early_capability_flags = Some(flags);
        if let Some(network) = expected.network.as_mut() {
            network
                .channels
                .retain(|c| matches!(channel_name(c).as_str(), "cliprdr" | "drdynvc"));
        }
        assert_eq!(gcc, &expected);
        assert_eq!(rewritten.target_parameters, original.target_parameters);
        assert_eq!(rewritten.max_parameters, original.max_parameters);
        assert_eq!(
            rewritten.called_domain_selector,
            original.called_domain_selector
        );
    }

    #[test]
    fn connect_initial_keeps_gfx_unless_asked_and_matches_case_insensitively() {
        let (out, info) = rewrite_connect_initial(
            &connect_initial_frame(),
            &patch(&["CLIPRDR", "rdpsnd"], false),
        )
        .expect("rewrite");
        let kept: Vec<_> = info
            .channels
            .iter()
            .filter(|c| c.kept)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(kept, vec!["cliprdr", "rdpsnd"]);
        let rewritten = decode_connect_initial(&out);
        let flags = rewritten
            .conference_create_request
            .gcc_blocks()
            .core
            .optional_data
            .early_capability_flags
            .expect("flags");
        assert!(flags.contains(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL));
    }

    #[test]
    fn connect_initial_can_remove_every_channel() {
        let (out, info) =
            rewrite_connect_initial(&connect_initial_frame(), &patch(&[], true)).expect("rewrite");
        assert!(info.channels.iter().all(|c| !c.kept));
        let rewritten = decode_connect_initial(&out);
        let network = rewritten
            .conference_create_request
            .gcc_blocks()
            .network
            .clone();
        assert_eq!(network.map(|n| n.channels.len()), Some(0));
    }

    #[test]
    fn connect_response_gets_fake_ids_at_removed_positions() {
        let (_, ci_info) = rewrite_connect_initial(
            &connect_initial_frame(),
            &patch(&["cliprdr", "drdynvc"], true),
        )
        .expect("ci");
        // The server answers for the two kept channels; 0xFF00 is taken by the server.
        let frame = connect_response_frame(vec![1004, 0xFF00], true);
        let (out, info) = rewrite_connect_response(&frame, &ci_info.channels).expect("rewrite");

        assert_eq!(info.io_channel_id, IO_CHANNEL);
        assert_eq!(info.message_channel_id, Some(1008));
        assert_eq!(
            info.channel_ids,
            vec![
                ("cliprdr".to_owned(), 1004, true),
                ("rdpdr".to_owned(), 0xFF01, false),
                ("rdpsnd".to_owned(), 0xFF02, false),
                ("drdynvc".to_owned(), 0xFF00, true),
            ]
        );

        let data = x224_data(&out).expect("x224");
        let decoded: mcs::ConnectResponse = decode(&data).expect("decode");
        let mut expected_gcc = server_gcc(vec![1004, 0xFF01, 0xFF02, 0xFF00], true);
        expected_gcc.core.optional_data.early_capability_flags =
            Some(ServerEarlyCapabilityFlags::EDGE_ACTIONS_SUPPORTED_V1);
        assert_eq!(decoded, connect_response(expected_gcc));
    }

    #[test]
    fn connect_response_sets_the_client_requested_protocols() {
        let channels = vec![ChannelInfo {
            name: "cliprdr".into(),
            kept: true,
        }];
        let frame = connect_response_frame(vec![1004], false);
        let (out, _) = rewrite_connect_response_for_client(
            &frame,
            &channels,
            Some(nego::SecurityProtocol::SSL),
        )
        .expect("ok");
        let data = x224_data(&out).expect("x224");
        let decoded: mcs::ConnectResponse = decode(&data).expect("decode");
        assert_eq!(
            decoded
                .conference_create_response
                .gcc_blocks()
                .core
                .optional_data
                .client_requested_protocols,
            Some(nego::SecurityProtocol::SSL)
        );
    }

    #[test]
    fn connect_response_with_a_wrong_channel_count_is_an_error() {
        let channels: Vec<ChannelInfo> = CHANNELS
            .iter()
            .map(|n| ChannelInfo {
                name: (*n).to_owned(),
                kept: true,
            })
            .collect();
        let frame = connect_response_frame(vec![1004, 1005], false);
        assert_eq!(
            rewrite_connect_response(&frame, &channels),
            Err(RewriteError::ChannelCountMismatch {
                expected: 4,
                got: 2
            })
        );
    }

    #[test]
    fn mcs_domain_pdus() {
        let confirm = encode_vec(&X224(mcs::AttachUserConfirm {
            result: 0,
            initiator_id: USER_ID,
        }))
        .expect("encode");
        assert_eq!(attach_user_confirm(&confirm), Some(USER_ID));
        let refused = encode_vec(&X224(mcs::AttachUserConfirm {
            result: 1,
            initiator_id: USER_ID,
        }))
        .expect("encode");
        assert_eq!(attach_user_confirm(&refused), None);

        let join = encode_vec(&X224(mcs::ChannelJoinRequest {
            initiator_id: USER_ID,
            channel_id: 0xFF01,
        }))
        .expect("encode");
        assert_eq!(channel_join_request(&join), Some((USER_ID, 0xFF01)));
        assert_eq!(attach_user_confirm(&join), None);
        assert_eq!(channel_join_request(&confirm), None);

        let answer = channel_join_confirm(USER_ID, 0xFF01);
        let decoded = decode::<X224<McsMessage<'_>>>(&answer).expect("decode").0;
        assert_eq!(
            decoded,
            McsMessage::ChannelJoinConfirm(mcs::ChannelJoinConfirm {
                result: 0,
                initiator_id: USER_ID,
                requested_channel_id: 0xFF01,
                channel_id: 0xFF01,
            })
        );
        assert!(!channel_join_confirm(0, 5).is_empty());
    }

    #[test]
    fn client_info_gets_the_target_credentials_and_no_compression() {
        let frame = client_info_frame(PASSWORD);
        let (out, seen) = rewrite_client_info(&frame, &creds())
            .expect("ok")
            .expect("client info");
        assert_eq!(
            seen,
            ClientInfoSeen {
                username: "alice".into(),
                domain: Some("CORP".into())
            }
        );

        let Some(McsMessage::SendDataRequest(request)) = decode_mcs(&out) else {
            panic!("not a send data request");
        };
        assert_eq!(
            (request.initiator_id, request.channel_id),
            (USER_ID, IO_CHANNEL)
        );
        let pdu: ClientInfoPdu = decode(&request.user_data).expect("decode");
        let info = pdu.client_info;
        assert_eq!(info.credentials.username, "svc-admin");
        assert_eq!(info.credentials.domain.as_deref(), Some("TARGET"));
        assert_eq!(info.credentials.password, "V4ult3d/Pa55");
        assert!(info.flags.contains(ClientInfoFlags::AUTOLOGON));
        assert!(!info.flags.contains(ClientInfoFlags::COMPRESSION));
        assert_eq!(info.compression_type, CompressionType::K8);
        assert!(info
            .flags
            .contains(ClientInfoFlags::LOGON_NOTIFY | ClientInfoFlags::MOUSE));
        assert_eq!(info.extra_info.address, "10.0.0.5");

        let utf16: Vec<u8> = PASSWORD.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(
            contains(&frame, &utf16),
            "the test frame carries the password"
        );
        assert!(!contains(&out, &utf16));
        assert!(!contains(&out, PASSWORD.as_bytes()));
        // Not even a prefix long enough to identify it.
        assert!(!contains(&out, &utf16[..8]));
    }

    #[test]
    fn other_frames_are_not_client_info() {
        assert_eq!(
            rewrite_client_info(&confirm_active_frame(Vec::new()), &creds()),
            Ok(None)
        );
        assert_eq!(
            rewrite_client_info(&connect_initial_frame(), &creds()),
            Ok(None)
        );
        assert_eq!(
            rewrite_client_info(&[0x30, 0x03, 0x01, 0x02], &creds()),
            Ok(None)
        );
        let encrypted = send_data_request(IO_CHANNEL, vec![0x48, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            rewrite_client_info(&encrypted, &creds()),
            Err(RewriteError::EncryptedClientInfo)
        );
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let shown = format!("{:?}", creds());
        assert!(shown.contains("svc-admin"));
        assert!(!shown.contains("V4ult3d"));
        let err = rewrite_client_info(
            &send_data_request(IO_CHANNEL, vec![0x40, 0, 0, 0, 1]),
            &creds(),
        )
        .expect_err("truncated info packet");
        assert!(!err.to_string().contains("V4ult3d"));
    }

    #[test]
    fn confirm_active_is_restricted() {
        let caps = capabilities::tests::rich_client_caps();
        let frame = rich_confirm_active_frame();
        let (out, notes) = rewrite_confirm_active(&frame)
            .expect("ok")
            .expect("confirm active");
        assert!(notes.iter().any(|n| n == "drawing orders disabled"));
        assert!(notes.iter().any(|n| n.contains("NSCodec")));
        assert!(notes
            .iter()
            .any(|n| n == "bitmap codec unknown (id 9) removed"));
        assert!(out.len() < frame.len());

        let Some(McsMessage::SendDataRequest(request)) = decode_mcs(&out) else {
            panic!("not a send data request");
        };
        assert_eq!(
            usize::from(read_u16_le(&request.user_data, 0).expect("len")),
            request.user_data.len()
        );
        let header: ShareControlHeader = decode(&request.user_data).expect("decode");
        assert_eq!((header.pdu_source, header.share_id), (USER_ID, 0x0001_03EA));
        let ShareControlPdu::ClientConfirmActive(confirm) = header.share_control_pdu else {
            panic!("not a confirm active");
        };
        assert_eq!(confirm.originator_id, SERVER_CHANNEL_ID);
        assert_eq!(confirm.pdu.source_descriptor, "MSTSC");
        let mut expected = caps;
        capabilities::restrict(&mut expected);
        assert_eq!(confirm.pdu.capability_sets, expected);

        // A second pass changes nothing.
        let (again, notes) = rewrite_confirm_active(&out)
            .expect("ok")
            .expect("confirm active");
        assert!(notes.is_empty());
        assert_eq!(again, out);
    }

    #[test]
    fn other_frames_are_not_confirm_active() {
        assert_eq!(rewrite_confirm_active(&client_info_frame("x")), Ok(None));
        assert_eq!(rewrite_confirm_active(&demand_active_frame()), Ok(None));
        // A virtual channel chunk whose length's high half looks like a confirm active type.
        let mut chunk = 0x0013_0010u32.to_le_bytes().to_vec();
        chunk.extend_from_slice(&3u32.to_le_bytes());
        chunk.extend_from_slice(&[0; 32]);
        assert_eq!(
            rewrite_confirm_active(&send_data_request(1004, chunk)),
            Ok(None)
        );
    }

    #[test]
    fn demand_active_and_deactivate_all() {
        let frame = demand_active_frame();
        assert_eq!(
            demand_active(&frame),
            Some(DemandActiveInfo {
                share_id: 0x0001_03EA,
                width: 1280,
                height: 720
            })
        );
        assert!(!is_deactivate_all(&frame));
        assert!(is_deactivate_all(&deactivate_all_frame()));
        assert_eq!(demand_active(&deactivate_all_frame()), None);
        assert_eq!(demand_active(&confirm_active_frame(Vec::new())), None);
        assert!(!is_deactivate_all(&confirm_active_frame(Vec::new())));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let frame = connect_initial_frame();
        assert!(matches!(
            rewrite_connect_initial(&frame[..frame.len() - 1], &patch(&[], true)),
            Err(RewriteError::NotTpkt(_))
        ));
        assert!(rewrite_connect_initial(&[], &patch(&[], true)).is_err());
        assert!(rewrite_connect_response(&frame, &[]).is_err());
        assert_eq!(attach_user_confirm(&[0x03, 0, 0, 4]), None);
    }

    fn all_functions(bytes: &[u8]) {
        let _ = rewrite_connect_initial(bytes, &patch(&["cliprdr", "rdpsnd"], true));
        let channels: Vec<ChannelInfo> = CHANNELS
            .iter()
            .enumerate()
            .map(|(i, n)| ChannelInfo {
                name: (*n).to_owned(),
                kept: i % 2 == 0,
            })
            .collect();
        let _ = rewrite_connect_response(bytes, &channels);
        let _ = rewrite_connect_response_for_client(bytes, &[], Some(nego::SecurityProtocol::SSL));
        let _ = attach_user_confirm(bytes);
        let _ = channel_join_request(bytes);
        let _ = rewrite_client_info(bytes, &creds());
        let _ = rewrite_confirm_active(bytes);
        let _ = demand_active(bytes);
        let _ = is_deactivate_all(bytes);
    }

    fn valid_frames() -> Vec<Vec<u8>> {
        vec![
            connect_initial_frame(),
            connect_response_frame(vec![1004, 1005], true),
            client_info_frame(PASSWORD),
            rich_confirm_active_frame(),
            demand_active_frame(),
            deactivate_all_frame(),
            channel_join_confirm(USER_ID, 1004),
        ]
    }

    /// Arbitrary bytes, half of them behind a plausible TPKT + X.224 Data header.
    fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..600),
            any::<bool>(),
        )
            .prop_map(|(body, framed)| {
                if !framed {
                    return body;
                }
                let len = u16::try_from(body.len() + 7).unwrap_or(u16::MAX);
                let mut frame = vec![0x03, 0x00];
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(&[0x02, 0xF0, 0x80]);
                frame.extend_from_slice(&body);
                frame
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in arb_frame()) {
            all_functions(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(
            which in 0usize..7,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
            fix_length in any::<bool>(),
        ) {
            let mut frame = valid_frames().swap_remove(which);
            for (at, xor) in flips {
                let i = at.index(frame.len());
                frame[i] ^= xor;
            }
            if truncate {
                frame.truncate(cut.index(frame.len()));
            }
            if fix_length && frame.len() >= 4 {
                let len = u16::try_from(frame.len()).unwrap_or(u16::MAX).to_be_bytes();
                frame[0] = 0x03;
                frame[2] = len[0];
                frame[3] = len[1];
            }
            all_functions(&frame);
        }
    }
}
