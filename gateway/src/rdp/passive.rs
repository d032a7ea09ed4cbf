//! Passive decoding of the server → client graphics stream into the recording.
//!
//! The RDP relay forwards every frame unchanged; this module only watches the server's side.
//! [`PassiveDecoder`] follows the activation state of the connection itself (Server Demand
//! Active, Deactivate All), feeds the graphics-bearing frames to an `ironrdp-session`
//! [`ActiveStage`] that paints a [`DecodedImage`], and copies the damaged parts of that image
//! into the recording's [`Framebuffer`] on request. Anything the stage would send back to the
//! server (frame acknowledgements, auto-detect responses…) is discarded: the real client answers.
//!
//! What is decoded (the relay rewrites the client capabilities so that the server sends nothing
//! else): fast-path and slow-path bitmap updates (raw 8/15/16/24/32 bpp, interleaved RLE, RDP 6.0
//! planar), fast-path surface bits with RemoteFX or uncompressed data, palettes, and pointer
//! updates (rendered into the image in software, so the recording shows the cursor). GDI drawing
//! orders, NSCodec surface bits and the graphics pipeline (EGFX, a dynamic virtual channel) are
//! not decoded; neither is bulk-compressed (MPPC) data, so the client's compression request must
//! be removed on the way to the server.
//!
//! Servers differ in a few details this module copes with:
//! - padded `TS_BITMAP_DATA`: xrdp and FreeRDP round the bitmap width up to a multiple of four
//!   pixels and raw rows are padded to four bytes; `ironrdp-session` 0.13 treats the header width
//!   as the source stride and crops to the destination rectangle (tested below);
//! - several Share Control PDUs batched in one MCS Send Data Indication: they are split here and
//!   handled one by one, so finalization PDUs next to graphics do not cost the graphics;
//! - Deactivation-Reactivation: every Server Demand Active builds a new stage with the new share
//!   id, so the fast-path and slow-path processors both use it.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ironrdp_core::{decode_cursor, ReadCursor};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::fast_path::{
    FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::input::fast_path::FastPathInputEvent;
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use ironrdp_pdu::mcs::{McsMessage, SendDataIndication};
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::rdp::server_error_info::{
    ErrorInfo, ProtocolIndependentCode, ServerSetErrorInfoPdu,
};
use ironrdp_pdu::surface_commands::SurfaceCommand;
use ironrdp_pdu::x224::X224;
use ironrdp_pdu::Action;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput, SessionResult};
use ironrdp_svc::StaticChannelSet;
use psmgate_codecs::framebuffer::{Framebuffer, FramebufferError};
use psmgate_codecs::Rect;

/// Largest desktop side accepted from a Server Demand Active (the RDP limit), so that a peer
/// cannot make the decoder allocate more than 8192 × 8192 pixels.
pub const MAX_DESKTOP_SIDE: u16 = 8192;

/// Damage rectangles kept before they are merged into their bounding box.
const MAX_DAMAGE_RECTS: usize = 64;

/// Longest error message kept from the decoder.
const MAX_MESSAGE_LEN: usize = 512;

// Share Control PDU types ([MS-RDPBCGR] 2.2.8.1.1.1.1), low four bits of `pduType`.
const PDUTYPE_DEMAND_ACTIVE: u16 = 0x1;
const PDUTYPE_DEACTIVATE_ALL: u16 = 0x6;
const PDUTYPE_DATA: u16 = 0x7;
// `totalLength` of a T.128 Flow PDU, which carries nothing for the decoder.
const FLOW_PDU_MARKER: u16 = 0x8000;
// Share Data PDU types ([MS-RDPBCGR] 2.2.8.1.1.1.2), `pduType2` at this offset of the PDU.
const PDUTYPE2_OFFSET: usize = 14;
const PDUTYPE2_UPDATE: u8 = 0x02;
const PDUTYPE2_POINTER: u8 = 0x1b;
const PDUTYPE2_SET_ERROR_INFO: u8 = 0x2f;
// Offset of `errorInfo` in a Set Error Info PDU: Share Control header with share id (10) and
// Share Data header (8).
const ERROR_INFO_OFFSET: usize = 18;
// Capability set type of the Bitmap capability set ([MS-RDPBCGR] 2.2.7.1.2).
const CAPSTYPE_BITMAP: u16 = 0x0002;

/// Something the recorder has to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoderEvent {
    /// The server (re)activated the session with this desktop size: resize the recording before
    /// the next [`PassiveDecoder::flush_into`]. The whole desktop counts as damaged.
    Activated {
        /// Desktop width in pixels.
        width: u16,
        /// Desktop height in pixels.
        height: u16,
    },
    /// The server sent Deactivate All; nothing is decoded until the next activation.
    Deactivated,
    /// The server ends the session (Set Error Info or MCS Disconnect Provider Ultimatum); the
    /// text is a human-readable reason. A server may send both, so this can come twice.
    Terminated(String),
}

/// Errors of the passive decoder. None of them leaves the decoder unusable.
#[derive(Debug, thiserror::Error)]
pub enum PassiveError {
    /// One frame could not be decoded; the following frames are decoded as usual.
    #[error("RDP graphics decoding failed: {message}")]
    Decode {
        /// What went wrong (protocol fields and sizes, never pixel data).
        message: String,
    },
    /// A Server Demand Active announced a desktop size that is zero or too large.
    #[error("server announced an unusable desktop size {width}x{height}")]
    DesktopSize {
        /// Announced width.
        width: u16,
        /// Announced height.
        height: u16,
    },
    /// Copying into the recording's framebuffer failed.
    #[error(transparent)]
    Framebuffer(#[from] FramebufferError),
}

impl PassiveError {
    fn decode(message: impl Into<String>) -> Self {
        let mut message = message.into();
        truncate(&mut message, MAX_MESSAGE_LEN);
        Self::Decode { message }
    }
}

/// Decodes the server → client side of a relayed RDP connection into an image.
///
/// Created once the MCS channel ids are known, it is fed every complete server frame in order
/// with [`PassiveDecoder::server_frame`] and the admin's pointer moves with
/// [`PassiveDecoder::client_pointer`]; [`PassiveDecoder::flush_into`] copies what changed into the
/// recording. It never produces bytes for either peer.
pub struct PassiveDecoder {
    io_channel_id: u16,
    user_channel_id: u16,
    message_channel_id: Option<u16>,
    share_id: u32,
    /// Present while the session is active.
    stage: Option<ActiveStage>,
    /// The desktop since the first activation (kept while deactivated).
    image: Option<DecodedImage>,
    /// Last pointer position the client reported, restored after a reactivation.
    last_pointer: Option<(u16, u16)>,
    damage: Damage,
    /// One converted row, reused by `flush_into`.
    row: Vec<u32>,
}

impl fmt::Debug for PassiveDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassiveDecoder")
            .field("io_channel_id", &self.io_channel_id)
            .field("user_channel_id", &self.user_channel_id)
            .field("message_channel_id", &self.message_channel_id)
            .field("share_id", &self.share_id)
            .field("active", &self.stage.is_some())
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

/// What one Share Control PDU of the io channel means to the decoder.
enum IoPdu {
    DemandActive {
        share_id: u32,
        width: u16,
        height: u16,
    },
    DeactivateAll,
    /// Slow-path graphics or pointer update, decoded by the stage.
    Graphics,
    ErrorInfo(Option<String>),
    /// Licensing, finalization (Synchronize, Control, Font Map), session info, sound…
    Other,
}

impl PassiveDecoder {
    /// A decoder for a connection whose MCS user channel, I/O channel and (optional) message
    /// channel have these ids. It stays inactive until the server's Demand Active.
    pub fn new(io_channel_id: u16, user_channel_id: u16, message_channel_id: Option<u16>) -> Self {
        Self {
            io_channel_id,
            user_channel_id,
            message_channel_id,
            share_id: 0,
            stage: None,
            image: None,
            last_pointer: None,
            damage: Damage::default(),
            row: Vec::new(),
        }
    }

    /// Desktop size of the last activation, `None` before the first one.
    pub fn size(&self) -> Option<(u16, u16)> {
        self.image
            .as_ref()
            .map(|image| (image.width(), image.height()))
    }

    /// True between a Server Demand Active and the next Deactivate All.
    pub fn is_active(&self) -> bool {
        self.stage.is_some()
    }

    /// Decodes one complete server → client frame (TPKT or fast-path, headers included).
    ///
    /// An error concerns this frame only; the decoder goes on with the next one. Frames of
    /// virtual channels, licensing and finalization PDUs, and fast-path frames while the session
    /// is not active are ignored.
    pub fn server_frame(
        &mut self,
        action: Action,
        frame: &[u8],
    ) -> Result<Vec<DecoderEvent>, PassiveError> {
        match action {
            Action::FastPath => {
                if self.stage.is_none() {
                    return Ok(Vec::new());
                }
                check_surface_commands(frame)?;
                self.run_stage(|stage, image| stage.process(image, Action::FastPath, frame, None))
            }
            Action::X224 => self.x224_frame(frame),
        }
    }

    /// The admin moved the mouse to `(x, y)`: moves the cursor drawn into the image.
    pub fn client_pointer(&mut self, x: u16, y: u16) {
        self.last_pointer = Some((x, y));
        if self.stage.is_some() {
            // A failure only leaves the cursor where it was.
            let _ = self
                .run_stage(|stage, image| stage.process_fastpath_input(image, &[mouse_move(x, y)]));
        }
    }

    /// Copies every damaged part of the image into `fb` (clipped to both sizes) and clears the
    /// damage. The caller resizes `fb` on [`DecoderEvent::Activated`] first.
    pub fn flush_into(&mut self, fb: &mut Framebuffer) -> Result<(), PassiveError> {
        let Self {
            image, damage, row, ..
        } = self;
        let Some(image) = image.as_ref() else {
            damage.clear();
            return Ok(());
        };
        let (image_width, image_height) = (u32::from(image.width()), u32::from(image.height()));
        let width = image_width.min(fb.width());
        let height = image_height.min(fb.height());
        let stride = image.stride();
        let data = image.data();

        for rect in damage.take(image.width(), image.height()) {
            let (x0, y0) = (u32::from(rect.left), u32::from(rect.top));
            let x1 = (u32::from(rect.right) + 1).min(width);
            let y1 = (u32::from(rect.bottom) + 1).min(height);
            if x0 >= x1 || y0 >= y1 {
                continue;
            }
            let w = usize::try_from(x1 - x0).unwrap_or(0);
            row.clear();
            row.resize(w, 0);
            for y in y0..y1 {
                let start = usize::try_from(y)
                    .ok()
                    .and_then(|y| y.checked_mul(stride))
                    .and_then(|offset| offset.checked_add(usize::try_from(x0).ok()? * 4));
                let Some(src) = start.and_then(|start| data.get(start..start + w * 4)) else {
                    break;
                };
                for (dst, px) in row.iter_mut().zip(src.chunks_exact(4)) {
                    if let [r, g, b, _] = *px {
                        *dst = u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
                    }
                }
                fb.put_rect(Rect::new(x0, y, x1 - x0, 1), row, w)?;
            }
        }
        Ok(())
    }

    fn x224_frame(&mut self, frame: &[u8]) -> Result<Vec<DecoderEvent>, PassiveError> {
        // TPKT version 3, then the X.224 TPDU: length indicator, code.
        let (Some(3), Some(&li), Some(&code)) = (frame.first(), frame.get(4), frame.get(5)) else {
            return Err(PassiveError::decode("not a TPKT/X.224 frame"));
        };
        match code & 0xF0 {
            // Connection Request/Confirm, Disconnect Request: not graphics.
            0xE0 | 0xD0 | 0x80 => return Ok(Vec::new()),
            0xF0 => {}
            other => {
                return Err(PassiveError::decode(format!(
                    "unexpected X.224 TPDU code 0x{other:02X}"
                )));
            }
        }
        // MCS Connect Response (BER application tag 102) precedes the domain PDUs.
        let payload = frame.get(usize::from(li) + 5..).unwrap_or_default();
        if payload.starts_with(&[0x7F, 0x66]) {
            return Ok(Vec::new());
        }
        let message = ironrdp_core::decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|error| PassiveError::decode(describe(&error)))?;
        match message.0 {
            McsMessage::SendDataIndication(indication) => {
                if indication.channel_id != self.io_channel_id {
                    // Static virtual channels and the message channel carry no graphics.
                    return Ok(Vec::new());
                }
                self.io_channel(frame, indication.initiator_id, &indication.user_data)
            }
            McsMessage::DisconnectProviderUltimatum(ultimatum) => {
                Ok(vec![DecoderEvent::Terminated(
                    ultimatum.reason.description().to_owned(),
                )])
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Handles the user data of a Send Data Indication on the io channel, which may hold several
    /// Share Control PDUs one after the other.
    fn io_channel(
        &mut self,
        frame: &[u8],
        initiator_id: u16,
        data: &[u8],
    ) -> Result<Vec<DecoderEvent>, PassiveError> {
        // A Basic Security Header instead of a Share Control header (its `flagsHi` where the
        // Share Control header has the non-zero `pduType`): licensing, multitransport, standard
        // security redirection. Nothing to decode.
        if data.get(2..4) == Some(&[0, 0]) {
            return Ok(Vec::new());
        }

        let mut events = Vec::new();
        let mut first_error = None;
        let mut offset = 0usize;
        while offset < data.len() {
            let rest = data.get(offset..).unwrap_or_default();
            let Some(total_length) = read_u16(rest, 0) else {
                break;
            };
            if total_length == FLOW_PDU_MARKER {
                break;
            }
            let total_length = usize::from(total_length);
            let pdu = match rest.get(..total_length) {
                Some(pdu) if total_length >= 6 => pdu,
                // Some servers declare a length that does not match a lone PDU: decode it whole.
                _ if offset == 0 => rest,
                // Trailing bytes after complete PDUs.
                _ => break,
            };
            let whole = offset == 0 && pdu.len() == data.len();
            offset += pdu.len();

            let result = match classify(pdu) {
                Ok(IoPdu::DemandActive {
                    share_id,
                    width,
                    height,
                }) => self
                    .activate(share_id, width, height)
                    .map(|event| vec![event]),
                Ok(IoPdu::DeactivateAll) => Ok(self.deactivate().into_iter().collect()),
                Ok(IoPdu::ErrorInfo(reason)) => {
                    Ok(reason.map(DecoderEvent::Terminated).into_iter().collect())
                }
                Ok(IoPdu::Graphics) if self.stage.is_some() => {
                    if whole {
                        self.run_stage(|stage, image| {
                            stage.process(image, Action::X224, frame, None)
                        })
                    } else {
                        // The PDU alone, so that the stage sees nothing it does not handle.
                        let sub_frame = ironrdp_core::encode_vec(&X224(
                            McsMessage::SendDataIndication(SendDataIndication {
                                initiator_id,
                                channel_id: self.io_channel_id,
                                user_data: Cow::Borrowed(pdu),
                            }),
                        ));
                        match sub_frame {
                            Ok(sub_frame) => self.run_stage(|stage, image| {
                                stage.process(image, Action::X224, &sub_frame, None)
                            }),
                            Err(error) => Err(PassiveError::decode(describe(&error))),
                        }
                    }
                }
                Ok(IoPdu::Graphics | IoPdu::Other) => Ok(Vec::new()),
                Err(error) => Err(error),
            };
            match result {
                Ok(more) => events.extend(more),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }

        match first_error {
            // Events (an activation, a termination) matter more than one bad PDU next to them.
            Some(error) if events.is_empty() => Err(error),
            Some(error) => {
                tracing::debug!(%error, "RDP graphics: PDU skipped in a batch");
                Ok(events)
            }
            None => Ok(events),
        }
    }

    fn activate(
        &mut self,
        share_id: u32,
        width: u16,
        height: u16,
    ) -> Result<DecoderEvent, PassiveError> {
        if width == 0 || height == 0 || width > MAX_DESKTOP_SIDE || height > MAX_DESKTOP_SIDE {
            return Err(PassiveError::DesktopSize { width, height });
        }
        let image = match self.image.take() {
            // Same size (e.g. a reconnection of the session): keep the picture until repainted.
            Some(image) if image.width() == width && image.height() == height => image,
            _ => DecodedImage::new(PixelFormat::RgbA32, width, height),
        };
        self.image = Some(image);
        self.share_id = share_id;
        self.stage = Some(self.new_stage());
        self.damage.set_full();
        if let Some((x, y)) = self.last_pointer {
            let _ = self
                .run_stage(|stage, image| stage.process_fastpath_input(image, &[mouse_move(x, y)]));
        }
        Ok(DecoderEvent::Activated { width, height })
    }

    fn deactivate(&mut self) -> Option<DecoderEvent> {
        self.stage.take().map(|_| DecoderEvent::Deactivated)
    }

    fn new_stage(&self) -> ActiveStage {
        ActiveStageBuilder {
            static_channels: StaticChannelSet::new(),
            user_channel_id: self.user_channel_id,
            io_channel_id: self.io_channel_id,
            message_channel_id: self.message_channel_id,
            share_id: self.share_id,
            compression_type: None,
            enable_server_pointer: true,
            pointer_software_rendering: true,
        }
        .build()
    }

    /// Runs the stage on the image, turning its output into damage and events.
    ///
    /// The stage is third-party code fed with network input; should it panic, the panic stays
    /// here: the frame is reported as an error and a fresh stage takes over.
    fn run_stage<F>(&mut self, run: F) -> Result<Vec<DecoderEvent>, PassiveError>
    where
        F: FnOnce(&mut ActiveStage, &mut DecodedImage) -> SessionResult<Vec<ActiveStageOutput>>,
    {
        let (Some(stage), Some(image)) = (self.stage.as_mut(), self.image.as_mut()) else {
            return Ok(Vec::new());
        };
        let outputs = match catch_unwind(AssertUnwindSafe(|| run(stage, image))) {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(error)) => return Err(PassiveError::decode(describe(&error))),
            Err(_) => {
                self.stage = Some(self.new_stage());
                self.damage.set_full();
                return Err(PassiveError::decode(
                    "decoder rejected a malformed update (panic contained)",
                ));
            }
        };

        let mut events = Vec::new();
        for output in outputs {
            match output {
                ActiveStageOutput::GraphicsUpdate(rect) => self.damage.add(&rect),
                ActiveStageOutput::Terminate(reason) => {
                    events.push(DecoderEvent::Terminated(reason.description()))
                }
                ActiveStageOutput::DeactivateAll => events.extend(self.deactivate()),
                // Responses are the real client's business; pointer changes are already drawn
                // into the image (software rendering) and reported as graphics updates.
                _ => {}
            }
        }
        Ok(events)
    }
}

/// Classifies one Share Control PDU of the io channel.
fn classify(pdu: &[u8]) -> Result<IoPdu, PassiveError> {
    let pdu_type =
        read_u16(pdu, 2).ok_or_else(|| PassiveError::decode("truncated Share Control header"))?;
    match pdu_type & 0x000F {
        PDUTYPE_DEMAND_ACTIVE => demand_active(pdu),
        PDUTYPE_DEACTIVATE_ALL => Ok(IoPdu::DeactivateAll),
        PDUTYPE_DATA => match pdu.get(PDUTYPE2_OFFSET).copied() {
            Some(PDUTYPE2_UPDATE | PDUTYPE2_POINTER) => Ok(IoPdu::Graphics),
            Some(PDUTYPE2_SET_ERROR_INFO) => Ok(IoPdu::ErrorInfo(error_info(pdu))),
            Some(_) => Ok(IoPdu::Other),
            None => Err(PassiveError::decode("truncated Share Data header")),
        },
        _ => Ok(IoPdu::Other),
    }
}

/// Share id and desktop size of a Server Demand Active PDU.
fn demand_active(pdu: &[u8]) -> Result<IoPdu, PassiveError> {
    let decoded = ironrdp_core::decode::<ShareControlHeader>(pdu).map_err(|error| describe(&error));
    let (share_id, size) = match decoded {
        Ok(ShareControlHeader {
            share_control_pdu: ShareControlPdu::ServerDemandActive(demand),
            share_id,
            ..
        }) => {
            let size = demand.pdu.capability_sets.iter().find_map(|set| match set {
                CapabilitySet::Bitmap(bitmap) => {
                    Some((bitmap.desktop_width, bitmap.desktop_height))
                }
                _ => None,
            });
            (share_id, size)
        }
        // A capability set the library rejects must not cost the recording: find the Bitmap
        // capability set by walking the raw PDU.
        Ok(_) | Err(_) => scan_demand_active(pdu).ok_or_else(|| {
            PassiveError::decode(format!(
                "undecodable Server Demand Active PDU: {}",
                decoded.err().unwrap_or_default()
            ))
        })?,
    };
    let (width, height) = size.ok_or_else(|| {
        PassiveError::decode("Server Demand Active PDU without a Bitmap capability set")
    })?;
    Ok(IoPdu::DemandActive {
        share_id,
        width,
        height,
    })
}

/// Minimal walk of a Server Demand Active PDU ([MS-RDPBCGR] 2.2.1.13.1): share id and the
/// desktop size of the Bitmap capability set, if there is one.
fn scan_demand_active(pdu: &[u8]) -> Option<(u32, Option<(u16, u16)>)> {
    let share_id = u32::from_le_bytes(pdu.get(6..10)?.try_into().ok()?);
    let source_len = usize::from(read_u16(pdu, 10)?);
    let mut offset = 14usize.checked_add(source_len)?;
    let count = read_u16(pdu, offset)?;
    offset = offset.checked_add(4)?;
    for _ in 0..count {
        let set_type = read_u16(pdu, offset)?;
        let set_len = usize::from(read_u16(pdu, offset + 2)?);
        if set_len < 4 {
            return None;
        }
        if set_type == CAPSTYPE_BITMAP {
            let width = read_u16(pdu, offset + 12)?;
            let height = read_u16(pdu, offset + 14)?;
            return Some((share_id, Some((width, height))));
        }
        offset = offset.checked_add(set_len)?;
    }
    Some((share_id, None))
}

/// The reason carried by a Set Error Info PDU, `None` for "no error".
fn error_info(pdu: &[u8]) -> Option<String> {
    if let Ok(ShareControlHeader {
        share_control_pdu: ShareControlPdu::Data(data),
        ..
    }) = ironrdp_core::decode::<ShareControlHeader>(pdu)
    {
        if let ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(info)) = data.share_data_pdu {
            return match info {
                ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::None) => None,
                info => Some(info.description()),
            };
        }
    }
    // A code the library does not know.
    let code = u32::from_le_bytes(
        pdu.get(ERROR_INFO_OFFSET..ERROR_INFO_OFFSET + 4)?
            .try_into()
            .ok()?,
    );
    (code != 0).then(|| format!("server error info 0x{code:08X}"))
}

/// Refuses surface bits with an empty or inverted destination in unfragmented fast-path updates:
/// `ironrdp-session` 0.13 computes `right - 1` and `bottom - 1` on them unchecked. (Fragmented
/// ones reach the stage, whose panics [`PassiveDecoder::run_stage`] contains.)
fn check_surface_commands(frame: &[u8]) -> Result<(), PassiveError> {
    let mut src = ReadCursor::new(frame);
    if decode_cursor::<FastPathHeader>(&mut src).is_err() {
        // The stage reports it.
        return Ok(());
    }
    while !src.is_empty() {
        let Ok(update) = decode_cursor::<FastPathUpdatePdu<'_>>(&mut src) else {
            return Ok(());
        };
        let compressed = update
            .compression_flags
            .is_some_and(|flags| !flags.is_empty());
        if update.update_code != UpdateCode::SurfaceCommands
            || update.fragmentation != Fragmentation::Single
            || compressed
        {
            continue;
        }
        let Ok(FastPathUpdate::SurfaceCommands(commands)) =
            FastPathUpdate::decode_with_code(update.data, UpdateCode::SurfaceCommands)
        else {
            continue;
        };
        for command in commands {
            if let SurfaceCommand::SetSurfaceBits(bits) | SurfaceCommand::StreamSurfaceBits(bits) =
                command
            {
                let d = bits.destination;
                if d.right <= d.left || d.bottom <= d.top {
                    return Err(PassiveError::decode(format!(
                        "surface bits with an empty destination ({}, {})-({}, {})",
                        d.left, d.top, d.right, d.bottom
                    )));
                }
            }
        }
    }
    Ok(())
}

fn mouse_move(x: u16, y: u16) -> FastPathInputEvent {
    FastPathInputEvent::MouseEvent(MousePdu {
        flags: PointerFlags::MOVE,
        number_of_wheel_rotation_units: 0,
        x_position: x,
        y_position: y,
    })
}

fn read_u16(data: &[u8], offset: usize) -> Option<u16> {
    let bytes = data.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn describe(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        if message.len() > MAX_MESSAGE_LEN {
            break;
        }
        message.push_str(", caused by: ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn truncate(message: &mut String, max: usize) {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
}

/// Damaged parts of the image since the last flush.
#[derive(Debug, Default)]
struct Damage {
    full: bool,
    rects: Vec<InclusiveRectangle>,
}

impl Damage {
    fn set_full(&mut self) {
        self.full = true;
        self.rects.clear();
    }

    fn clear(&mut self) {
        self.full = false;
        self.rects.clear();
    }

    fn add(&mut self, rect: &InclusiveRectangle) {
        if self.full || rect.left > rect.right || rect.top > rect.bottom {
            return;
        }
        if self.rects.iter().any(|r| contains(r, rect)) {
            return;
        }
        self.rects.retain(|r| !contains(rect, r));
        if self.rects.len() >= MAX_DAMAGE_RECTS {
            let mut bounds = rect.clone();
            for r in &self.rects {
                bounds = InclusiveRectangle {
                    left: bounds.left.min(r.left),
                    top: bounds.top.min(r.top),
                    right: bounds.right.max(r.right),
                    bottom: bounds.bottom.max(r.bottom),
                };
            }
            self.rects.clear();
            self.rects.push(bounds);
        } else {
            self.rects.push(rect.clone());
        }
    }

    /// The damage as rectangles (the whole `width`×`height` image when fully damaged), cleared.
    fn take(&mut self, width: u16, height: u16) -> Vec<InclusiveRectangle> {
        if std::mem::take(&mut self.full) {
            self.rects.clear();
            if width == 0 || height == 0 {
                return Vec::new();
            }
            return vec![InclusiveRectangle {
                left: 0,
                top: 0,
                right: width - 1,
                bottom: height - 1,
            }];
        }
        std::mem::take(&mut self.rects)
    }
}

fn contains(outer: &InclusiveRectangle, inner: &InclusiveRectangle) -> bool {
    outer.left <= inner.left
        && outer.top <= inner.top
        && outer.right >= inner.right
        && outer.bottom >= inner.bottom
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::{encode_vec, Encode};
    use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
    use ironrdp_pdu::fast_path::EncryptionFlags;
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason};
    use ironrdp_pdu::pointer::{ColorPointerAttribute, Point16, PointerUpdateData};
    use ironrdp_pdu::rdp::capability_sets::{
        Bitmap, BitmapDrawingFlags, DemandActive, ServerDemandActive,
    };
    use ironrdp_pdu::rdp::client_info::CompressionType;
    use ironrdp_pdu::rdp::finalization_messages::{
        ControlAction, ControlPdu, FontPdu, SynchronizePdu,
    };
    use ironrdp_pdu::rdp::headers::{CompressionFlags, ShareDataHeader, StreamPriority};
    use ironrdp_pdu::surface_commands::{ExtendedBitmapDataPdu, SurfaceBitsPdu, SurfaceCommand};
    use proptest::prelude::*;

    const IO: u16 = 1003;
    const USER: u16 = 1007;
    const SERVER: u16 = 1002;

    fn indication(channel_id: u16, user_data: &[u8]) -> Vec<u8> {
        encode_vec(&X224(McsMessage::SendDataIndication(SendDataIndication {
            initiator_id: SERVER,
            channel_id,
            user_data: Cow::Borrowed(user_data),
        })))
        .unwrap()
    }

    fn share_control(pdu: ShareControlPdu, share_id: u32) -> Vec<u8> {
        encode_vec(&ShareControlHeader {
            share_control_pdu: pdu,
            pdu_source: SERVER,
            share_id,
        })
        .unwrap()
    }

    fn share_data(pdu: ShareDataPdu, share_id: u32) -> Vec<u8> {
        share_control(
            ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: pdu,
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
            share_id,
        )
    }

    fn demand_active_pdu(share_id: u32, width: u16, height: u16) -> Vec<u8> {
        share_control(
            ShareControlPdu::ServerDemandActive(ServerDemandActive {
                pdu: DemandActive {
                    source_descriptor: "RDP".to_owned(),
                    capability_sets: vec![CapabilitySet::Bitmap(Bitmap {
                        pref_bits_per_pix: 32,
                        desktop_width: width,
                        desktop_height: height,
                        desktop_resize_flag: true,
                        drawing_flags: BitmapDrawingFlags::empty(),
                    })],
                },
            }),
            share_id,
        )
    }

    fn demand_active(share_id: u32, width: u16, height: u16) -> Vec<u8> {
        indication(IO, &demand_active_pdu(share_id, width, height))
    }

    fn deactivate_all(share_id: u32) -> Vec<u8> {
        indication(
            IO,
            &share_control(
                ShareControlPdu::ServerDeactivateAll(
                    ironrdp_pdu::rdp::headers::ServerDeactivateAll,
                ),
                share_id,
            ),
        )
    }

    fn fast_path(update_code: UpdateCode, data: &[u8]) -> Vec<u8> {
        let update = FastPathUpdatePdu {
            fragmentation: Fragmentation::Single,
            update_code,
            compression_flags: None,
            compression_type: None,
            data,
        };
        let mut frame = encode_vec(&FastPathHeader::new(
            EncryptionFlags::empty(),
            update.size(),
        ))
        .unwrap();
        frame.extend_from_slice(&encode_vec(&update).unwrap());
        frame
    }

    /// A raw bitmap painted at `(left, top)`: `rows` top-down, each `width` colours; encoded
    /// with `stride_px` pixels per row (≥ width, the extra ones garbage) at `bpp` 24 or 32,
    /// rows bottom-up and padded to four bytes as [MS-RDPBCGR] 2.2.9.1.1.3.1.2.2 says.
    fn raw_bitmap(left: u16, top: u16, rows: &[Vec<u32>], stride_px: u16, bpp: u16) -> Vec<u8> {
        let height = rows.len();
        let width = rows[0].len();
        let bytes_pp = usize::from(bpp / 8);
        let row_bytes = usize::from(stride_px) * bytes_pp;
        let padded = (row_bytes + 3) & !3;
        let mut data = Vec::new();
        for row in rows.iter().rev() {
            let mut line = Vec::new();
            for x in 0..usize::from(stride_px) {
                let c = row.get(x).copied().unwrap_or(0x00AB_CDEF);
                let [b, g, r, _] = c.to_le_bytes();
                line.extend_from_slice(&[b, g, r]);
                if bpp == 32 {
                    line.push(0xFF);
                }
            }
            line.resize(padded, 0x77);
            data.extend_from_slice(&line);
        }
        encode_vec(&BitmapUpdateData {
            rectangles: vec![BitmapData {
                rectangle: InclusiveRectangle {
                    left,
                    top,
                    right: left + width as u16 - 1,
                    bottom: top + height as u16 - 1,
                },
                width: stride_px,
                height: height as u16,
                bits_per_pixel: bpp,
                compression_flags: Compression::empty(),
                compressed_data_header: None,
                bitmap_data: &data,
            }],
        })
        .unwrap()
    }

    /// A `width`×`height` picture whose every pixel differs.
    fn picture(width: usize, height: usize, seed: u32) -> Vec<Vec<u32>> {
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| {
                        (seed.wrapping_mul(0x0101_0101)
                            ^ ((x as u32) << 16 | (y as u32) << 8 | (x * y) as u32))
                            & 0x00FF_FFFF
                    })
                    .collect()
            })
            .collect()
    }

    fn activated(width: u16, height: u16) -> (PassiveDecoder, Framebuffer) {
        let mut decoder = PassiveDecoder::new(IO, USER, None);
        let events = decoder
            .server_frame(Action::X224, &demand_active(0x1_03EA, width, height))
            .unwrap();
        assert_eq!(events, vec![DecoderEvent::Activated { width, height }]);
        let mut fb = Framebuffer::new(u32::from(width), u32::from(height)).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        (decoder, fb)
    }

    fn assert_painted(fb: &Framebuffer, left: u32, top: u32, rows: &[Vec<u32>]) {
        for (y, row) in rows.iter().enumerate() {
            for (x, &c) in row.iter().enumerate() {
                let (px, py) = (left + x as u32, top + y as u32);
                assert_eq!(fb.pixel(px, py), c, "pixel ({px}, {py})");
            }
        }
    }

    #[test]
    fn demand_active_activates_with_the_bitmap_capability_size() {
        let mut decoder = PassiveDecoder::new(IO, USER, Some(1008));
        assert!(!decoder.is_active());
        assert_eq!(decoder.size(), None);
        let events = decoder
            .server_frame(Action::X224, &demand_active(0x1_03EA, 800, 600))
            .unwrap();
        assert_eq!(
            events,
            vec![DecoderEvent::Activated {
                width: 800,
                height: 600
            }]
        );
        assert!(decoder.is_active());
        assert_eq!(decoder.size(), Some((800, 600)));
        assert_eq!(decoder.share_id, 0x1_03EA);
    }

    #[test]
    fn whole_image_is_damaged_after_activation() {
        let (mut decoder, _) = activated(64, 48);
        let mut fb = Framebuffer::new(64, 48).unwrap();
        fb.fill_rect(Rect::new(0, 0, 64, 48), 0x00FF_FFFF).unwrap();
        decoder
            .server_frame(Action::X224, &demand_active(7, 64, 48))
            .unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert!(
            fb.pixels().iter().all(|&p| p == 0),
            "black image copied over everything"
        );
        // Damage was cleared: a second flush copies nothing.
        fb.fill_rect(Rect::new(0, 0, 64, 48), 0x0012_3456).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert!(fb.pixels().iter().all(|&p| p == 0x0012_3456));
    }

    #[test]
    fn fast_path_raw_32bpp_bitmap_is_painted_in_place() {
        let (mut decoder, mut fb) = activated(800, 600);
        let rows = picture(16, 8, 1);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(100, 50, &rows, 16, 32));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 100, 50, &rows);
        assert_eq!(fb.pixel(99, 50), 0);
        assert_eq!(fb.pixel(116, 50), 0);
        assert_eq!(fb.pixel(100, 58), 0);
    }

    #[test]
    fn odd_width_bitmaps_with_padded_rows_are_not_sheared() {
        let (mut decoder, mut fb) = activated(800, 600);
        // 13 px at 24 bpp: 39 bytes a row, padded to 40.
        let rows = picture(13, 7, 2);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(3, 5, &rows, 13, 24));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        // xrdp style: a 13 px rectangle sent as a 16 px wide bitmap, at 32 and 24 bpp.
        let rows32 = picture(13, 9, 3);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(200, 100, &rows32, 16, 32));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        let rows24 = picture(13, 6, 4);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(400, 300, &rows24, 16, 24));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        // 15 px at 24 bpp inside a 17 px bitmap: 51 bytes a row, padded to 52.
        let rows_odd = picture(15, 5, 5);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(600, 500, &rows_odd, 17, 24));
        decoder.server_frame(Action::FastPath, &frame).unwrap();

        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 3, 5, &rows);
        assert_painted(&fb, 200, 100, &rows32);
        assert_painted(&fb, 400, 300, &rows24);
        assert_painted(&fb, 600, 500, &rows_odd);
        // The padding columns were not painted.
        assert_eq!(fb.pixel(213, 100), 0);
        assert_eq!(fb.pixel(413, 300), 0);
        assert_eq!(fb.pixel(615, 500), 0);
    }

    /// The same picture as an RDP 6.0 planar (RLE) bitmap stream, `stride_px` pixels wide.
    fn planar_bitmap(left: u16, top: u16, rows: &[Vec<u32>], stride_px: u16) -> Vec<u8> {
        let height = rows.len();
        let width = rows[0].len();
        // Planar streams are bottom-up like raw bitmaps.
        let pixels: Vec<u32> = rows
            .iter()
            .rev()
            .flat_map(|row| {
                (0..usize::from(stride_px)).map(|x| row.get(x).copied().unwrap_or(0x00AB_CDEF))
            })
            .collect();
        let channel = |shift: u32| pixels.iter().map(move |c| (c >> shift) as u8);
        let mut stream = vec![0; pixels.len() * 4 + 64];
        let len = ironrdp_graphics::rdp6::BitmapStreamEncoder::new(usize::from(stride_px), height)
            .encode_channels_stream((channel(16), channel(8), channel(0)), &mut stream, true)
            .unwrap();
        encode_vec(&BitmapUpdateData {
            rectangles: vec![BitmapData {
                rectangle: InclusiveRectangle {
                    left,
                    top,
                    right: left + width as u16 - 1,
                    bottom: top + height as u16 - 1,
                },
                width: stride_px,
                height: height as u16,
                bits_per_pixel: 32,
                compression_flags: Compression::BITMAP_COMPRESSION
                    | Compression::NO_BITMAP_COMPRESSION_HDR,
                compressed_data_header: None,
                bitmap_data: &stream[..len],
            }],
        })
        .unwrap()
    }

    #[test]
    fn rdp6_planar_bitmaps_are_painted_upright_and_cropped() {
        let (mut decoder, mut fb) = activated(800, 600);
        let rows = picture(13, 10, 13);
        let frame = fast_path(UpdateCode::Bitmap, &planar_bitmap(50, 60, &rows, 16));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 50, 60, &rows);
        assert_eq!(fb.pixel(63, 60), 0);
    }

    #[test]
    fn header_only_deactivate_all_from_xrdp() {
        let (mut decoder, _) = activated(800, 600);
        // xrdp sends the six-byte Share Control header alone, without a share id.
        let frame = indication(IO, &[0x06, 0x00, 0x16, 0x00, 0xEA, 0x03]);
        assert_eq!(
            decoder.server_frame(Action::X224, &frame).unwrap(),
            vec![DecoderEvent::Deactivated]
        );
        assert!(!decoder.is_active());
    }

    fn slow_path_bitmap(share_id: u32, bitmap_update: &[u8]) -> Vec<u8> {
        // ShareDataPdu::Update has no encoder: build the two headers by hand.
        let mut pdu = Vec::new();
        let total = 18 + bitmap_update.len();
        pdu.extend_from_slice(&(total as u16).to_le_bytes());
        pdu.extend_from_slice(&0x0017u16.to_le_bytes()); // Data PDU, version 1
        pdu.extend_from_slice(&SERVER.to_le_bytes());
        pdu.extend_from_slice(&share_id.to_le_bytes());
        pdu.push(0); // pad
        pdu.push(2); // stream: medium
        pdu.extend_from_slice(&(bitmap_update.len() as u16 + 4).to_le_bytes());
        pdu.push(PDUTYPE2_UPDATE);
        pdu.push(0); // not compressed
        pdu.extend_from_slice(&0u16.to_le_bytes());
        pdu.extend_from_slice(bitmap_update); // updateType = bitmap, numberRectangles, rectangles
        pdu
    }

    #[test]
    fn slow_path_bitmap_update_is_painted() {
        let (mut decoder, mut fb) = activated(800, 600);
        let rows = picture(13, 4, 6);
        let pdu = slow_path_bitmap(0x1_03EA, &raw_bitmap(10, 20, &rows, 16, 32));
        decoder
            .server_frame(Action::X224, &indication(IO, &pdu))
            .unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 10, 20, &rows);
    }

    #[test]
    fn batched_finalization_pdus_do_not_hide_graphics() {
        let (mut decoder, mut fb) = activated(800, 600);
        let share_id = 0x1_03EA;
        let mut batch = share_data(
            ShareDataPdu::Synchronize(SynchronizePdu {
                target_user_id: USER,
            }),
            share_id,
        );
        batch.extend(share_data(
            ShareDataPdu::Control(ControlPdu {
                action: ControlAction::Cooperate,
                grant_id: 0,
                control_id: 0,
            }),
            share_id,
        ));
        let rows = picture(8, 3, 7);
        batch.extend(slow_path_bitmap(
            share_id,
            &raw_bitmap(30, 40, &rows, 8, 24),
        ));
        batch.extend(share_data(
            ShareDataPdu::FontMap(FontPdu::default()),
            share_id,
        ));
        let events = decoder
            .server_frame(Action::X224, &indication(IO, &batch))
            .unwrap();
        assert!(events.is_empty());
        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 30, 40, &rows);
    }

    #[test]
    fn connection_sequence_pdus_before_and_after_activation_are_not_errors() {
        let mut decoder = PassiveDecoder::new(IO, USER, None);
        // X.224 Connection Confirm, MCS Connect Response, Attach User Confirm, licensing.
        let cc = [
            0x03, 0x00, 0x00, 0x13, 0x0E, 0xD0, 0, 0, 0x12, 0x34, 0, 0x02, 0x1F, 0x08, 0, 0x02, 0,
            0, 0,
        ];
        assert_eq!(decoder.server_frame(Action::X224, &cc).unwrap(), vec![]);
        let connect_response = [
            0x03, 0x00, 0x00, 0x0B, 0x02, 0xF0, 0x80, 0x7F, 0x66, 0x82, 0x01,
        ];
        assert_eq!(
            decoder
                .server_frame(Action::X224, &connect_response)
                .unwrap(),
            vec![]
        );
        let attach = encode_vec(&X224(McsMessage::AttachUserConfirm(
            ironrdp_pdu::mcs::AttachUserConfirm {
                result: 0,
                initiator_id: USER,
            },
        )))
        .unwrap();
        assert_eq!(decoder.server_frame(Action::X224, &attach).unwrap(), vec![]);
        // Server License Error PDU (valid client): Basic Security Header with SEC_LICENSE_PKT.
        let license = [
            0x80, 0x00, 0x00, 0x00, 0xFF, 0x03, 0x10, 0x00, 0x07, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            decoder
                .server_frame(Action::X224, &indication(IO, &license))
                .unwrap(),
            vec![]
        );
        // Fast-path before activation is ignored.
        let frame = fast_path(
            UpdateCode::Bitmap,
            &raw_bitmap(0, 0, &picture(4, 4, 1), 4, 32),
        );
        assert_eq!(
            decoder.server_frame(Action::FastPath, &frame).unwrap(),
            vec![]
        );

        decoder
            .server_frame(Action::X224, &demand_active(5, 640, 480))
            .unwrap();
        for pdu in [
            ShareDataPdu::Synchronize(SynchronizePdu {
                target_user_id: USER,
            }),
            ShareDataPdu::Control(ControlPdu {
                action: ControlAction::Cooperate,
                grant_id: 0,
                control_id: 0,
            }),
            ShareDataPdu::Control(ControlPdu {
                action: ControlAction::GrantedControl,
                grant_id: USER,
                control_id: u32::from(SERVER),
            }),
            ShareDataPdu::FontMap(FontPdu::default()),
        ] {
            let frame = indication(IO, &share_data(pdu, 5));
            assert_eq!(decoder.server_frame(Action::X224, &frame).unwrap(), vec![]);
        }
        assert!(decoder.is_active());
    }

    #[test]
    fn reactivation_resizes_and_uses_the_new_share_id() {
        let (mut decoder, _) = activated(800, 600);
        assert_eq!(
            decoder
                .server_frame(Action::X224, &deactivate_all(0x1_03EA))
                .unwrap(),
            vec![DecoderEvent::Deactivated]
        );
        assert!(!decoder.is_active());
        // Nothing is decoded while deactivated.
        let frame = fast_path(
            UpdateCode::Bitmap,
            &raw_bitmap(0, 0, &picture(4, 4, 1), 4, 32),
        );
        assert_eq!(
            decoder.server_frame(Action::FastPath, &frame).unwrap(),
            vec![]
        );

        let events = decoder
            .server_frame(Action::X224, &demand_active(0x2_03EA, 1024, 768))
            .unwrap();
        assert_eq!(
            events,
            vec![DecoderEvent::Activated {
                width: 1024,
                height: 768
            }]
        );
        assert_eq!(decoder.size(), Some((1024, 768)));
        assert_eq!(decoder.share_id, 0x2_03EA);

        let mut fb = Framebuffer::new(800, 600).unwrap();
        fb.resize(1024, 768).unwrap();
        let rows = picture(13, 5, 8);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(1000, 760, &rows, 16, 32));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 1000, 760, &rows);
    }

    #[test]
    fn batched_deactivate_and_demand_active_in_one_frame() {
        let (mut decoder, _) = activated(800, 600);
        let mut batch = share_control(
            ShareControlPdu::ServerDeactivateAll(ironrdp_pdu::rdp::headers::ServerDeactivateAll),
            1,
        );
        batch.extend(demand_active_pdu(9, 1280, 720));
        let events = decoder
            .server_frame(Action::X224, &indication(IO, &batch))
            .unwrap();
        assert_eq!(
            events,
            vec![
                DecoderEvent::Deactivated,
                DecoderEvent::Activated {
                    width: 1280,
                    height: 720
                }
            ]
        );
    }

    #[test]
    fn flush_copies_the_overlap_when_sizes_differ() {
        let (mut decoder, _) = activated(64, 64);
        let rows = picture(16, 16, 9);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(40, 40, &rows, 16, 32));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        let mut fb = Framebuffer::new(50, 48).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        for y in 40..48 {
            for x in 40..50 {
                assert_eq!(fb.pixel(x, y), rows[(y - 40) as usize][(x - 40) as usize]);
            }
        }
    }

    #[test]
    fn frames_on_other_channels_are_ignored() {
        let (mut decoder, mut fb) = activated(800, 600);
        // A graphics update and a Demand Active on a virtual channel (e.g. cliprdr) and on the
        // message channel: neither is decoded.
        let pdu = slow_path_bitmap(0x1_03EA, &raw_bitmap(0, 0, &picture(8, 8, 1), 8, 32));
        for channel in [1004, 1005, 1008] {
            assert_eq!(
                decoder
                    .server_frame(Action::X224, &indication(channel, &pdu))
                    .unwrap(),
                vec![]
            );
            let frame = indication(channel, &demand_active_pdu(3, 320, 200));
            assert_eq!(decoder.server_frame(Action::X224, &frame).unwrap(), vec![]);
            assert_eq!(
                decoder
                    .server_frame(
                        Action::X224,
                        &indication(channel, b"\x07\x00\x00\x00garbage")
                    )
                    .unwrap(),
                vec![]
            );
        }
        assert_eq!(decoder.size(), Some((800, 600)));
        decoder.flush_into(&mut fb).unwrap();
        assert!(fb.pixels().iter().all(|&p| p == 0));
    }

    #[test]
    fn garbage_is_an_error_and_decoding_goes_on() {
        let (mut decoder, mut fb) = activated(800, 600);
        // An update code that does not exist.
        let garbage_fast_path = [0x00, 0x06, 0x0F, 0x00, 0x00, 0x00];
        let err = decoder
            .server_frame(Action::FastPath, &garbage_fast_path)
            .unwrap_err();
        assert!(matches!(err, PassiveError::Decode { .. }), "{err}");
        assert!(decoder
            .server_frame(Action::X224, b"\x03\x00\x00\x09\x02\xF0\x80\xFF\xFF")
            .is_err());
        assert!(decoder.server_frame(Action::X224, b"garbage").is_err());
        // A truncated Data PDU on the io channel.
        assert!(decoder
            .server_frame(
                Action::X224,
                &indication(IO, &[0x40, 0x00, 0x17, 0x00, 0xEA, 0x03])
            )
            .is_err());
        assert!(decoder.is_active());

        let rows = picture(5, 5, 10);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(7, 7, &rows, 8, 32));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert_painted(&fb, 7, 7, &rows);
    }

    fn empty_surface_bits() -> Vec<u8> {
        // Surface bits with an empty exclusive destination (right = 0): the library computes
        // `right - 1` on it.
        let command = SurfaceCommand::SetSurfaceBits(SurfaceBitsPdu {
            destination: ExclusiveRectangle {
                left: 0,
                top: 0,
                right: 0,
                bottom: 0,
            },
            extended_bitmap_data: ExtendedBitmapDataPdu {
                bpp: 32,
                codec_id: 0,
                width: 0,
                height: 0,
                header: None,
                data: &[],
            },
        });
        encode_vec(&command).unwrap()
    }

    fn fragment(fragmentation: Fragmentation, data: &[u8]) -> Vec<u8> {
        let update = FastPathUpdatePdu {
            fragmentation,
            update_code: UpdateCode::SurfaceCommands,
            compression_flags: None,
            compression_type: None,
            data,
        };
        let mut frame = encode_vec(&FastPathHeader::new(
            EncryptionFlags::empty(),
            update.size(),
        ))
        .unwrap();
        frame.extend_from_slice(&encode_vec(&update).unwrap());
        frame
    }

    fn assert_still_decodes(decoder: &mut PassiveDecoder, fb: &mut Framebuffer, seed: u32) {
        assert!(decoder.is_active());
        let rows = picture(4, 4, seed);
        let frame = fast_path(UpdateCode::Bitmap, &raw_bitmap(1, 1, &rows, 4, 32));
        decoder.server_frame(Action::FastPath, &frame).unwrap();
        decoder.flush_into(fb).unwrap();
        assert_painted(fb, 1, 1, &rows);
    }

    #[test]
    fn surface_bits_with_an_empty_destination_are_refused() {
        let (mut decoder, mut fb) = activated(320, 200);
        let frame = fast_path(UpdateCode::SurfaceCommands, &empty_surface_bits());
        let err = decoder.server_frame(Action::FastPath, &frame).unwrap_err();
        assert!(err.to_string().contains("empty destination"), "{err}");
        assert_still_decodes(&mut decoder, &mut fb, 11);
    }

    #[test]
    fn a_panicking_update_is_contained() {
        let (mut decoder, mut fb) = activated(320, 200);
        // Fragmented, the same update gets past the check and reaches the library.
        let data = empty_surface_bits();
        let (first, last) = data.split_at(data.len() / 2);
        let first = fragment(Fragmentation::First, first);
        assert_eq!(
            decoder.server_frame(Action::FastPath, &first).unwrap(),
            vec![]
        );
        let result = decoder.server_frame(Action::FastPath, &fragment(Fragmentation::Last, last));
        if cfg!(debug_assertions) {
            // Built with overflow checks the library panics; the panic became this error.
            let err = result.unwrap_err();
            assert!(err.to_string().contains("panic contained"), "{err}");
        }
        assert_still_decodes(&mut decoder, &mut fb, 12);
    }

    #[test]
    fn set_error_info_and_disconnect_ultimatum_terminate() {
        let mut decoder = PassiveDecoder::new(IO, USER, None);
        let info = share_data(
            ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(
                ErrorInfo::ProtocolIndependentCode(
                    ProtocolIndependentCode::RpcInitiatedDisconnectByuser,
                ),
            )),
            0,
        );
        // Before activation (e.g. refused during licensing) as well as after.
        let events = decoder
            .server_frame(Action::X224, &indication(IO, &info))
            .unwrap();
        let [DecoderEvent::Terminated(reason)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert!(!reason.is_empty());

        decoder
            .server_frame(Action::X224, &demand_active(1, 100, 100))
            .unwrap();
        let none = share_data(
            ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(
                ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::None),
            )),
            1,
        );
        assert_eq!(
            decoder
                .server_frame(Action::X224, &indication(IO, &none))
                .unwrap(),
            vec![]
        );

        let dpu = encode_vec(&X224(McsMessage::DisconnectProviderUltimatum(
            DisconnectProviderUltimatum::from_reason(DisconnectReason::ProviderInitiated),
        )))
        .unwrap();
        assert_eq!(
            decoder.server_frame(Action::X224, &dpu).unwrap(),
            vec![DecoderEvent::Terminated(
                "server-initiated disconnect".to_owned()
            )]
        );
    }

    #[test]
    fn unusable_desktop_sizes_are_refused() {
        let mut decoder = PassiveDecoder::new(IO, USER, None);
        for (w, h) in [(0, 600), (800, 0), (MAX_DESKTOP_SIDE + 1, 600)] {
            let err = decoder
                .server_frame(Action::X224, &demand_active(1, w, h))
                .unwrap_err();
            assert!(matches!(err, PassiveError::DesktopSize { .. }));
        }
        assert!(!decoder.is_active());
    }

    #[test]
    fn demand_active_the_library_rejects_is_scanned() {
        // Without the trailing session id the library refuses the PDU.
        let mut pdu = demand_active_pdu(0x42, 1920, 1080);
        pdu.truncate(pdu.len() - 4);
        let len = pdu.len() as u16;
        pdu[..2].copy_from_slice(&len.to_le_bytes());
        assert!(ironrdp_core::decode::<ShareControlHeader>(&pdu).is_err());
        let mut decoder = PassiveDecoder::new(IO, USER, None);
        let events = decoder
            .server_frame(Action::X224, &indication(IO, &pdu))
            .unwrap();
        assert_eq!(
            events,
            vec![DecoderEvent::Activated {
                width: 1920,
                height: 1080
            }]
        );
        assert_eq!(decoder.share_id, 0x42);
    }

    /// A 2×2 colour pointer, hot spot at its top-left corner, all pixels opaque `colour`.
    fn color_pointer(colour: u32) -> Vec<u8> {
        let [b, g, r, _] = colour.to_le_bytes();
        // 24 bpp XOR mask rows padded to 2 bytes (6 bytes), 1 bpp AND mask rows padded to 2.
        let xor_mask = [b, g, r, b, g, r, b, g, r, b, g, r];
        let and_mask = [0u8; 4];
        let update = FastPathUpdate::Pointer(PointerUpdateData::Color(ColorPointerAttribute {
            cache_index: 0,
            hot_spot: Point16 { x: 0, y: 0 },
            width: 2,
            height: 2,
            xor_mask: &xor_mask,
            and_mask: &and_mask,
        }));
        fast_path(UpdateCode::ColorPointer, &encode_vec(&update).unwrap())
    }

    /// Red, give or take the rounding of the cursor's alpha blending.
    fn is_red(pixel: u32) -> bool {
        pixel >> 16 >= 0xF0 && pixel & 0xFFFF == 0
    }

    #[test]
    fn the_cursor_is_drawn_and_follows_the_client_pointer() {
        let (mut decoder, mut fb) = activated(200, 100);
        decoder.client_pointer(10, 20);
        decoder
            .server_frame(Action::FastPath, &color_pointer(0x00FF_0000))
            .unwrap();
        decoder.flush_into(&mut fb).unwrap();
        assert!(is_red(fb.pixel(10, 20)));
        assert!(is_red(fb.pixel(11, 21)));
        assert_eq!(fb.pixel(12, 22), 0);

        decoder.client_pointer(150, 60);
        decoder.flush_into(&mut fb).unwrap();
        assert_eq!(fb.pixel(10, 20), 0, "background restored");
        assert!(is_red(fb.pixel(150, 60)));
    }

    #[test]
    fn damage_is_bounded() {
        let mut damage = Damage::default();
        for i in 0..1000u16 {
            damage.add(&InclusiveRectangle {
                left: i,
                top: i,
                right: i,
                bottom: i,
            });
        }
        assert!(damage.rects.len() <= MAX_DAMAGE_RECTS);
        let rects = damage.take(2000, 2000);
        let covered = |x: u16| {
            rects
                .iter()
                .any(|r| r.left <= x && x <= r.right && r.top <= x && x <= r.bottom)
        };
        assert!((0..1000).all(covered));
        assert!(damage.take(2000, 2000).is_empty());
    }

    #[test]
    fn decoder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<PassiveDecoder>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), fast in any::<bool>()) {
            let action = if fast { Action::FastPath } else { Action::X224 };
            let mut fresh = PassiveDecoder::new(IO, USER, Some(1008));
            let _ = fresh.server_frame(action, &bytes);
            let (mut decoder, mut fb) = activated(64, 48);
            let _ = decoder.server_frame(action, &bytes);
            // Arbitrary bytes inside a valid envelope reach the decoders proper.
            if fast {
                let code = UpdateCode::Bitmap;
                let _ = decoder.server_frame(Action::FastPath, &fast_path(code, &bytes));
                let _ = decoder.server_frame(Action::FastPath, &fast_path(UpdateCode::SurfaceCommands, &bytes));
            } else {
                let mut pdu = slow_path_bitmap(0x1_03EA, &[]);
                pdu.extend_from_slice(&bytes);
                let len = pdu.len() as u16;
                pdu[..2].copy_from_slice(&len.to_le_bytes());
                let _ = decoder.server_frame(Action::X224, &indication(IO, &pdu));
                let _ = decoder.server_frame(Action::X224, &indication(IO, &bytes));
            }
            decoder.client_pointer(30, 30);
            prop_assert!(decoder.flush_into(&mut fb).is_ok());
        }
    }
}
