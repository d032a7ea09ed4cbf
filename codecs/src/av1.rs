//! Sans-I/O helpers for AV1 bitstreams in the Low Overhead Bitstream Format.
//!
//! What the muxer needs from an AV1 encoder's output, and nothing more:
//!
//! - walk the OBUs of a temporal unit ([`obus`]), drop temporal delimiters
//!   ([`strip_temporal_delimiters`]) and find the sequence header OBU ([`find_sequence_header`]);
//! - parse the sequence header ([`parse_sequence_header`], AV1 specification section 5.5)
//!   far enough to fill the `av1C` box ([`av1c_box_payload`]) and the RFC 6381 codecs parameter
//!   ([`codec_string`]).
//!
//! Everything here takes untrusted bytes: parsing never panics, never reads outside its input,
//! allocates at most the size of its input, and every loop is bounded by the input length or by
//! a constant from the specification.

use std::fmt;

/// Errors from parsing AV1 OBUs and sequence headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Av1Error {
    /// The input ended inside an OBU header or its extension byte.
    #[error("OBU header truncated at byte {offset}")]
    TruncatedHeader {
        /// Byte offset of the OBU in the input.
        offset: usize,
    },
    /// The forbidden bit of an OBU header is set.
    #[error("OBU at byte {offset} has its forbidden bit set")]
    ForbiddenBit {
        /// Byte offset of the OBU in the input.
        offset: usize,
    },
    /// The `obu_size` field is not a valid leb128 value of at most 8 bytes and 32 bits.
    #[error("invalid leb128 obu_size at byte {offset}")]
    InvalidSize {
        /// Byte offset of the size field in the input.
        offset: usize,
    },
    /// The OBU declares more payload than the input holds.
    #[error("OBU at byte {offset} declares {size} payload bytes but only {available} remain")]
    Overrun {
        /// Byte offset of the OBU in the input.
        offset: usize,
        /// Declared payload size.
        size: u64,
        /// Bytes left in the input after the OBU header.
        available: usize,
    },
    /// The input holds no OBU at all.
    #[error("no OBU in the input")]
    Empty,
    /// An OBU other than a sequence header was given where a sequence header is required.
    #[error("expected a sequence header OBU, found {0}")]
    NotSequenceHeader(ObuType),
    /// Bytes follow the single OBU that was expected.
    #[error("{0} unexpected bytes after the sequence header OBU")]
    TrailingData(usize),
    /// The sequence header payload ended before the named syntax element.
    #[error("sequence header truncated before {0}")]
    Truncated(&'static str),
    /// The sequence header uses a reserved profile number.
    #[error("seq_profile {0} is reserved")]
    ReservedProfile(u8),
    /// The sequence header violates a constraint of the specification.
    #[error("invalid sequence header: {0}")]
    Invalid(&'static str),
}

/// OBU types (AV1 specification section 6.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObuType {
    /// `OBU_SEQUENCE_HEADER` (1).
    SequenceHeader,
    /// `OBU_TEMPORAL_DELIMITER` (2).
    TemporalDelimiter,
    /// `OBU_FRAME_HEADER` (3).
    FrameHeader,
    /// `OBU_TILE_GROUP` (4).
    TileGroup,
    /// `OBU_METADATA` (5).
    Metadata,
    /// `OBU_FRAME` (6).
    Frame,
    /// `OBU_REDUNDANT_FRAME_HEADER` (7).
    RedundantFrameHeader,
    /// `OBU_TILE_LIST` (8).
    TileList,
    /// `OBU_PADDING` (15).
    Padding,
    /// A reserved type (0, 9–14).
    Reserved(u8),
}

impl ObuType {
    /// Maps the 4-bit `obu_type` field to a type.
    pub fn from_bits(value: u8) -> Self {
        match value & 0x0f {
            1 => ObuType::SequenceHeader,
            2 => ObuType::TemporalDelimiter,
            3 => ObuType::FrameHeader,
            4 => ObuType::TileGroup,
            5 => ObuType::Metadata,
            6 => ObuType::Frame,
            7 => ObuType::RedundantFrameHeader,
            8 => ObuType::TileList,
            15 => ObuType::Padding,
            other => ObuType::Reserved(other),
        }
    }

    /// The 4-bit `obu_type` value.
    pub fn to_bits(self) -> u8 {
        match self {
            ObuType::SequenceHeader => 1,
            ObuType::TemporalDelimiter => 2,
            ObuType::FrameHeader => 3,
            ObuType::TileGroup => 4,
            ObuType::Metadata => 5,
            ObuType::Frame => 6,
            ObuType::RedundantFrameHeader => 7,
            ObuType::TileList => 8,
            ObuType::Padding => 15,
            ObuType::Reserved(v) => v & 0x0f,
        }
    }
}

impl fmt::Display for ObuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObuType::SequenceHeader => f.write_str("OBU_SEQUENCE_HEADER"),
            ObuType::TemporalDelimiter => f.write_str("OBU_TEMPORAL_DELIMITER"),
            ObuType::FrameHeader => f.write_str("OBU_FRAME_HEADER"),
            ObuType::TileGroup => f.write_str("OBU_TILE_GROUP"),
            ObuType::Metadata => f.write_str("OBU_METADATA"),
            ObuType::Frame => f.write_str("OBU_FRAME"),
            ObuType::RedundantFrameHeader => f.write_str("OBU_REDUNDANT_FRAME_HEADER"),
            ObuType::TileList => f.write_str("OBU_TILE_LIST"),
            ObuType::Padding => f.write_str("OBU_PADDING"),
            ObuType::Reserved(v) => write!(f, "reserved OBU type {v}"),
        }
    }
}

/// The decoded `obu_header()` (section 5.3.2), including the optional extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObuHeader {
    /// `obu_type`.
    pub obu_type: ObuType,
    /// `obu_extension_flag`: an extension byte follows the header byte.
    pub has_extension: bool,
    /// `obu_has_size_field`: a leb128 `obu_size` follows the header.
    pub has_size_field: bool,
    /// `temporal_id` from the extension (0 without one).
    pub temporal_id: u8,
    /// `spatial_id` from the extension (0 without one).
    pub spatial_id: u8,
}

/// One OBU, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// The decoded header.
    pub header: ObuHeader,
    /// Byte offset of the OBU in the input.
    pub offset: usize,
    /// The whole OBU: header, extension, size field and payload.
    pub raw: &'a [u8],
    /// The payload only.
    pub payload: &'a [u8],
}

/// Largest leb128 value the specification allows for `obu_size`: (1 << 32) - 1.
const MAX_LEB128_VALUE: u64 = u32::MAX as u64;
/// A leb128 field takes at most 8 bytes (section 4.10.5).
const MAX_LEB128_BYTES: usize = 8;

/// Decodes a leb128 value (section 4.10.5) from the start of `data`.
///
/// Returns the value and the number of bytes it took, or `None` when `data` ends inside the
/// value, the value takes more than 8 bytes, or it exceeds `(1 << 32) - 1`.
pub fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in data.iter().take(MAX_LEB128_BYTES).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value <= MAX_LEB128_VALUE).then_some((value, i + 1));
        }
    }
    None
}

/// Appends `value` as leb128 in the fewest bytes.
pub fn write_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Iterator over the OBUs of a byte buffer; see [`obus`].
///
/// Yields `Err` once for the first OBU that does not parse, then stops.
#[derive(Debug, Clone)]
pub struct ObuIter<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> ObuIter<'a> {
    /// Byte offset of the next OBU (after an error: of the OBU that failed).
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn parse_one(&self) -> Result<(Obu<'a>, usize), Av1Error> {
        let offset = self.pos;
        let rest = self.data.get(offset..).unwrap_or_default();
        let first = *rest.first().ok_or(Av1Error::TruncatedHeader { offset })?;
        if first & 0x80 != 0 {
            return Err(Av1Error::ForbiddenBit { offset });
        }
        let obu_type = ObuType::from_bits(first >> 3);
        let has_extension = first & 0x04 != 0;
        let has_size_field = first & 0x02 != 0;
        let mut header_len = 1;
        let (mut temporal_id, mut spatial_id) = (0, 0);
        if has_extension {
            let ext = *rest.get(1).ok_or(Av1Error::TruncatedHeader { offset })?;
            temporal_id = ext >> 5;
            spatial_id = (ext >> 3) & 0x03;
            header_len = 2;
        }
        let after_header = rest.get(header_len..).unwrap_or_default();
        let (payload_len, size_len) = if has_size_field {
            let (size, size_len) = read_leb128(after_header).ok_or(Av1Error::InvalidSize {
                offset: offset + header_len,
            })?;
            let available = after_header.len() - size_len;
            let payload_len = usize::try_from(size)
                .ok()
                .filter(|len| *len <= available)
                .ok_or(Av1Error::Overrun {
                    offset,
                    size,
                    available,
                })?;
            (payload_len, size_len)
        } else {
            (after_header.len(), 0)
        };
        let total = header_len + size_len + payload_len;
        let raw = rest
            .get(..total)
            .ok_or(Av1Error::TruncatedHeader { offset })?;
        let payload = raw.get(header_len + size_len..).unwrap_or_default();
        let header = ObuHeader {
            obu_type,
            has_extension,
            has_size_field,
            temporal_id,
            spatial_id,
        };
        Ok((
            Obu {
                header,
                offset,
                raw,
                payload,
            },
            total,
        ))
    }
}

impl<'a> Iterator for ObuIter<'a> {
    type Item = Result<Obu<'a>, Av1Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        match self.parse_one() {
            Ok((obu, len)) => {
                // Every OBU takes at least its header byte, so the walk always advances.
                self.pos += len;
                Some(Ok(obu))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Walks the OBUs of `data` (Low Overhead Bitstream Format).
///
/// An OBU without a size field extends to the end of `data`, as the specification allows for the
/// last OBU of an ISOBMFF sample.
pub fn obus(data: &[u8]) -> ObuIter<'_> {
    ObuIter {
        data,
        pos: 0,
        done: false,
    }
}

/// Returns `data` without its temporal delimiter OBUs, which AV1-in-ISOBMFF samples should not
/// carry.
///
/// From the first byte that does not parse as an OBU on, the input is copied unchanged: the
/// function never drops bytes it cannot identify.
pub fn strip_temporal_delimiters(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut iter = obus(data);
    loop {
        let start = iter.offset();
        match iter.next() {
            None => break,
            Some(Ok(obu)) => {
                if obu.header.obu_type != ObuType::TemporalDelimiter {
                    out.extend_from_slice(obu.raw);
                }
            }
            Some(Err(_)) => {
                out.extend_from_slice(data.get(start..).unwrap_or_default());
                break;
            }
        }
    }
    out
}

/// The first sequence header OBU of `data` (header, size field and payload), if any OBU before
/// it and the OBU itself parse.
pub fn find_sequence_header(data: &[u8]) -> Option<&[u8]> {
    for obu in obus(data) {
        let obu = obu.ok()?;
        if obu.header.obu_type == ObuType::SequenceHeader {
            return Some(obu.raw);
        }
    }
    None
}

/// Parses a complete sequence header OBU, as returned by [`find_sequence_header`]; the same as
/// [`SequenceHeader::parse_obu`].
pub fn parse_sequence_header(obu: &[u8]) -> Result<SequenceHeader, Av1Error> {
    SequenceHeader::parse_obu(obu)
}

/// Colour configuration of a sequence header (`color_config()`, section 5.5.2), with the values
/// the specification infers for fields that are not coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColorConfig {
    /// `high_bitdepth`.
    pub high_bitdepth: bool,
    /// `twelve_bit` (false when not coded).
    pub twelve_bit: bool,
    /// `BitDepth`: 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub mono_chrome: bool,
    /// `color_description_present_flag`.
    pub color_description_present: bool,
    /// `color_primaries` (2 = unspecified when not coded).
    pub color_primaries: u8,
    /// `transfer_characteristics` (2 = unspecified when not coded).
    pub transfer_characteristics: u8,
    /// `matrix_coefficients` (2 = unspecified when not coded).
    pub matrix_coefficients: u8,
    /// `color_range`: true = full range.
    pub full_range: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position` (0 = unknown when not coded).
    pub chroma_sample_position: u8,
    /// `separate_uv_delta_q`.
    pub separate_uv_delta_q: bool,
}

/// The fields of a sequence header OBU (section 5.5) that containers and codec strings need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub seq_profile: u8,
    /// `still_picture`.
    pub still_picture: bool,
    /// `reduced_still_picture_header`.
    pub reduced_still_picture_header: bool,
    /// `timing_info_present_flag`.
    pub timing_info_present: bool,
    /// `operating_points_cnt_minus_1 + 1`.
    pub operating_points: u8,
    /// `seq_level_idx[0]`.
    pub seq_level_idx_0: u8,
    /// `seq_tier[0]` (0 Main, 1 High).
    pub seq_tier_0: u8,
    /// `max_frame_width_minus_1 + 1`.
    pub max_frame_width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub max_frame_height: u32,
    /// Colour configuration.
    pub color: ColorConfig,
    /// `film_grain_params_present`.
    pub film_grain_params_present: bool,
}

/// `CP_BT_709`.
const CP_BT_709: u8 = 1;
/// `TC_SRGB`.
const TC_SRGB: u8 = 13;
/// `MC_IDENTITY`.
const MC_IDENTITY: u8 = 0;
/// `CP_UNSPECIFIED`, `TC_UNSPECIFIED`, `MC_UNSPECIFIED`.
const UNSPECIFIED: u8 = 2;

impl SequenceHeader {
    /// Parses a complete sequence header OBU (header, size field, payload), as returned by
    /// [`find_sequence_header`]. Bytes after the OBU are an error.
    pub fn parse_obu(obu: &[u8]) -> Result<Self, Av1Error> {
        let obu = single_sequence_header_obu(obu)?;
        Self::parse_payload(obu.payload)
    }

    /// Parses the payload of a sequence header OBU (`sequence_header_obu()` followed by
    /// `trailing_bits()`).
    pub fn parse_payload(payload: &[u8]) -> Result<Self, Av1Error> {
        let mut r = BitReader::new(payload);
        let seq_profile = r.bits(3, "seq_profile")? as u8;
        if seq_profile > 2 {
            return Err(Av1Error::ReservedProfile(seq_profile));
        }
        let still_picture = r.flag("still_picture")?;
        let reduced_still_picture_header = r.flag("reduced_still_picture_header")?;
        if reduced_still_picture_header && !still_picture {
            return Err(Av1Error::Invalid(
                "reduced_still_picture_header without still_picture",
            ));
        }
        let (timing_info_present, operating_points, seq_level_idx_0, seq_tier_0) =
            if reduced_still_picture_header {
                (false, 1, r.bits(5, "seq_level_idx[0]")? as u8, 0)
            } else {
                parse_operating_points(&mut r)?
            };

        let frame_width_bits = r.bits(4, "frame_width_bits_minus_1")? + 1;
        let frame_height_bits = r.bits(4, "frame_height_bits_minus_1")? + 1;
        let max_frame_width = r.bits(frame_width_bits, "max_frame_width_minus_1")? + 1;
        let max_frame_height = r.bits(frame_height_bits, "max_frame_height_minus_1")? + 1;
        let frame_id_numbers_present =
            !reduced_still_picture_header && r.flag("frame_id_numbers_present_flag")?;
        if frame_id_numbers_present {
            r.skip(4, "delta_frame_id_length_minus_2")?;
            r.skip(3, "additional_frame_id_length_minus_1")?;
        }
        r.skip(1, "use_128x128_superblock")?;
        r.skip(1, "enable_filter_intra")?;
        r.skip(1, "enable_intra_edge_filter")?;
        if !reduced_still_picture_header {
            parse_inter_tools(&mut r)?;
        }
        r.skip(1, "enable_superres")?;
        r.skip(1, "enable_cdef")?;
        r.skip(1, "enable_restoration")?;
        let color = parse_color_config(&mut r, seq_profile)?;
        let film_grain_params_present = r.flag("film_grain_params_present")?;
        r.trailing_bits()?;

        Ok(SequenceHeader {
            seq_profile,
            still_picture,
            reduced_still_picture_header,
            timing_info_present,
            operating_points,
            seq_level_idx_0,
            seq_tier_0,
            max_frame_width,
            max_frame_height,
            color,
            film_grain_params_present,
        })
    }
}

/// `timing_info()`, `decoder_model_info()` and the operating point loop of
/// `sequence_header_obu()`. Returns (timing_info_present, operating point count,
/// seq_level_idx[0], seq_tier[0]).
fn parse_operating_points(r: &mut BitReader<'_>) -> Result<(bool, u8, u8, u8), Av1Error> {
    let timing_info_present = r.flag("timing_info_present_flag")?;
    let mut buffer_delay_length = 0;
    let mut decoder_model_info_present = false;
    if timing_info_present {
        r.skip(32, "num_units_in_display_tick")?;
        r.skip(32, "time_scale")?;
        if r.flag("equal_picture_interval")? {
            r.uvlc("num_ticks_per_picture_minus_1")?;
        }
        decoder_model_info_present = r.flag("decoder_model_info_present_flag")?;
        if decoder_model_info_present {
            buffer_delay_length = r.bits(5, "buffer_delay_length_minus_1")? + 1;
            r.skip(32, "num_units_in_decoding_tick")?;
            r.skip(5, "buffer_removal_time_length_minus_1")?;
            r.skip(5, "frame_presentation_time_length_minus_1")?;
        }
    }
    let initial_display_delay_present = r.flag("initial_display_delay_present_flag")?;
    let count = r.bits(5, "operating_points_cnt_minus_1")? + 1;
    let (mut level0, mut tier0) = (0, 0);
    for i in 0..count {
        r.skip(12, "operating_point_idc")?;
        let level = r.bits(5, "seq_level_idx")? as u8;
        let tier = if level > 7 {
            r.bits(1, "seq_tier")? as u8
        } else {
            0
        };
        if decoder_model_info_present && r.flag("decoder_model_present_for_this_op")? {
            r.skip(buffer_delay_length, "decoder_buffer_delay")?;
            r.skip(buffer_delay_length, "encoder_buffer_delay")?;
            r.skip(1, "low_delay_mode_flag")?;
        }
        if initial_display_delay_present && r.flag("initial_display_delay_present_for_this_op")? {
            r.skip(4, "initial_display_delay_minus_1")?;
        }
        if i == 0 {
            (level0, tier0) = (level, tier);
        }
    }
    Ok((timing_info_present, count as u8, level0, tier0))
}

/// The inter-coding tool flags of `sequence_header_obu()` (absent with a reduced still picture
/// header). Nothing here is kept; the bits have to be consumed to reach `color_config()`.
fn parse_inter_tools(r: &mut BitReader<'_>) -> Result<(), Av1Error> {
    r.skip(1, "enable_interintra_compound")?;
    r.skip(1, "enable_masked_compound")?;
    r.skip(1, "enable_warped_motion")?;
    r.skip(1, "enable_dual_filter")?;
    let enable_order_hint = r.flag("enable_order_hint")?;
    if enable_order_hint {
        r.skip(1, "enable_jnt_comp")?;
        r.skip(1, "enable_ref_frame_mvs")?;
    }
    // seq_choose_screen_content_tools = 1 means SELECT_SCREEN_CONTENT_TOOLS (> 0).
    let force_screen_content_tools = if r.flag("seq_choose_screen_content_tools")? {
        true
    } else {
        r.flag("seq_force_screen_content_tools")?
    };
    if force_screen_content_tools && !r.flag("seq_choose_integer_mv")? {
        r.skip(1, "seq_force_integer_mv")?;
    }
    if enable_order_hint {
        r.skip(3, "order_hint_bits_minus_1")?;
    }
    Ok(())
}

/// `color_config()` (section 5.5.2).
fn parse_color_config(r: &mut BitReader<'_>, seq_profile: u8) -> Result<ColorConfig, Av1Error> {
    let high_bitdepth = r.flag("high_bitdepth")?;
    let twelve_bit = seq_profile == 2 && high_bitdepth && r.flag("twelve_bit")?;
    let bit_depth = match (high_bitdepth, twelve_bit) {
        (false, _) => 8,
        (true, false) => 10,
        (true, true) => 12,
    };
    let mono_chrome = seq_profile != 1 && r.flag("mono_chrome")?;
    let color_description_present = r.flag("color_description_present_flag")?;
    let (color_primaries, transfer_characteristics, matrix_coefficients) =
        if color_description_present {
            (
                r.bits(8, "color_primaries")? as u8,
                r.bits(8, "transfer_characteristics")? as u8,
                r.bits(8, "matrix_coefficients")? as u8,
            )
        } else {
            (UNSPECIFIED, UNSPECIFIED, UNSPECIFIED)
        };
    let mut cfg = ColorConfig {
        high_bitdepth,
        twelve_bit,
        bit_depth,
        mono_chrome,
        color_description_present,
        color_primaries,
        transfer_characteristics,
        matrix_coefficients,
        full_range: false,
        subsampling_x: true,
        subsampling_y: true,
        chroma_sample_position: 0,
        separate_uv_delta_q: false,
    };
    if mono_chrome {
        cfg.full_range = r.flag("color_range")?;
        return Ok(cfg);
    }
    if color_primaries == CP_BT_709
        && transfer_characteristics == TC_SRGB
        && matrix_coefficients == MC_IDENTITY
    {
        cfg.full_range = true;
        cfg.subsampling_x = false;
        cfg.subsampling_y = false;
    } else {
        cfg.full_range = r.flag("color_range")?;
        match seq_profile {
            0 => {}
            1 => {
                cfg.subsampling_x = false;
                cfg.subsampling_y = false;
            }
            _ if bit_depth == 12 => {
                cfg.subsampling_x = r.flag("subsampling_x")?;
                cfg.subsampling_y = cfg.subsampling_x && r.flag("subsampling_y")?;
            }
            _ => cfg.subsampling_y = false,
        }
        if cfg.subsampling_x && cfg.subsampling_y {
            cfg.chroma_sample_position = r.bits(2, "chroma_sample_position")? as u8;
        }
    }
    cfg.separate_uv_delta_q = r.flag("separate_uv_delta_q")?;
    Ok(cfg)
}

/// Checks that `data` is exactly one sequence header OBU and returns it.
fn single_sequence_header_obu(data: &[u8]) -> Result<Obu<'_>, Av1Error> {
    let mut iter = obus(data);
    let obu = iter.next().ok_or(Av1Error::Empty)??;
    if obu.header.obu_type != ObuType::SequenceHeader {
        return Err(Av1Error::NotSequenceHeader(obu.header.obu_type));
    }
    let rest = data.len() - obu.raw.len();
    if rest != 0 {
        return Err(Av1Error::TrailingData(rest));
    }
    Ok(obu)
}

/// Builds the `AV1CodecConfigurationRecord` (the payload of the `av1C` box, AV1-ISOBMFF
/// section 2.3) for one sequence header OBU.
///
/// The record states no `initial_presentation_delay` and carries the sequence header as its only
/// config OBU, copied byte for byte; an OBU without a size field gets one, as `configOBUs`
/// requires `obu_has_size_field = 1`.
pub fn av1c_box_payload(seq_header_obu: &[u8]) -> Result<Vec<u8>, Av1Error> {
    let obu = single_sequence_header_obu(seq_header_obu)?;
    let seq = SequenceHeader::parse_payload(obu.payload)?;
    let c = &seq.color;
    let mut out = Vec::with_capacity(4 + seq_header_obu.len() + MAX_LEB128_BYTES);
    out.push(0x81); // marker = 1, version = 1
    out.push((seq.seq_profile << 5) | (seq.seq_level_idx_0 & 0x1f));
    out.push(
        (seq.seq_tier_0 & 1) << 7
            | u8::from(c.high_bitdepth) << 6
            | u8::from(c.twelve_bit) << 5
            | u8::from(c.mono_chrome) << 4
            | u8::from(c.subsampling_x) << 3
            | u8::from(c.subsampling_y) << 2
            | (c.chroma_sample_position & 0x03),
    );
    out.push(0); // reserved, initial_presentation_delay_present = 0, reserved
    if obu.header.has_size_field {
        out.extend_from_slice(obu.raw);
    } else {
        let header_len = obu.raw.len() - obu.payload.len();
        out.extend(obu.raw.iter().take(header_len).enumerate().map(|(i, b)| {
            if i == 0 {
                b | 0x02
            } else {
                *b
            }
        }));
        write_leb128(&mut out, obu.payload.len() as u64);
        out.extend_from_slice(obu.payload);
    }
    Ok(out)
}

/// The RFC 6381 codecs parameter in its short form, `av01.P.LLT.DD` (AV1-ISOBMFF section 5):
/// profile, two-digit `seq_level_idx[0]`, tier `M`/`H`, two-digit bit depth. Example:
/// `av01.0.08M.08` for Main profile, level 4.0, Main tier, 8-bit.
///
/// The optional colour fields are left out; readers then assume 4:2:0, BT.709, limited range.
pub fn codec_string(seq: &SequenceHeader) -> String {
    format!(
        "av01.{}.{:02}{}.{:02}",
        seq.seq_profile,
        seq.seq_level_idx_0,
        if seq.seq_tier_0 == 0 { 'M' } else { 'H' },
        seq.color.bit_depth
    )
}

/// The RFC 6381 codecs parameter with every optional field, as in
/// `av01.0.04M.10.0.112.09.16.09.0`, taking the colour fields from the sequence header (which
/// is what the `colr` box written by [`crate::fmp4`] states).
pub fn codec_string_full(seq: &SequenceHeader) -> String {
    let c = &seq.color;
    let position = if c.subsampling_x && c.subsampling_y {
        c.chroma_sample_position
    } else {
        0
    };
    format!(
        "{}.{}.{}{}{}.{:02}.{:02}.{:02}.{}",
        codec_string(seq),
        u8::from(c.mono_chrome),
        u8::from(c.subsampling_x),
        u8::from(c.subsampling_y),
        position,
        c.color_primaries,
        c.transfer_characteristics,
        c.matrix_coefficients,
        u8::from(c.full_range)
    )
}

/// MSB-first bit reader over a byte slice (the `f(n)` descriptor of the specification).
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits; never more than `data.len() * 8`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_mul(8).saturating_sub(self.pos)
    }

    fn bit(&mut self, what: &'static str) -> Result<u32, Av1Error> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(Av1Error::Truncated(what))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    /// Reads `n` bits, `n <= 32`.
    fn bits(&mut self, n: u32, what: &'static str) -> Result<u32, Av1Error> {
        debug_assert!(n <= 32);
        if (n as usize) > self.remaining() {
            return Err(Av1Error::Truncated(what));
        }
        let mut value: u64 = 0;
        for _ in 0..n.min(32) {
            value = (value << 1) | u64::from(self.bit(what)?);
        }
        Ok(value as u32)
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, Av1Error> {
        Ok(self.bit(what)? == 1)
    }

    fn skip(&mut self, n: u32, what: &'static str) -> Result<(), Av1Error> {
        if (n as usize) > self.remaining() {
            return Err(Av1Error::Truncated(what));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// `uvlc()` (section 4.10.3); the value is not needed, only its length.
    fn uvlc(&mut self, what: &'static str) -> Result<(), Av1Error> {
        let mut leading_zeros: u32 = 0;
        while !self.flag(what)? {
            leading_zeros += 1;
        }
        if leading_zeros < 32 {
            self.skip(leading_zeros, what)?;
        }
        Ok(())
    }

    /// `trailing_bits()`: a one bit, then zero bits up to the end of the payload.
    fn trailing_bits(&mut self) -> Result<(), Av1Error> {
        if !self.flag("trailing_one_bit")? {
            return Err(Av1Error::Invalid("trailing_one_bit is not 1"));
        }
        while self.remaining() > 0 {
            if self.flag("trailing_zero_bit")? {
                return Err(Av1Error::Invalid("non-zero bits after trailing_one_bit"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real sequence header OBUs from other encoders (ffmpeg 5.1, `-f obu`).
    /// SVT-AV1 1.4.1, 320x240 yuv420p, BT.709 primaries/transfer/matrix, limited range.
    const SVT_420_BT709: &str = "0a0e000000043cffbcfbf91010101040";
    /// libaom 3.6, 352x288 yuv444p10le, full range, no colour description.
    const AOM_444_10BIT: &str = "0a0a20000004457e3e6d7ca9";
    /// libaom 3.6, 64x48 gray, still picture with reduced header, full range.
    const AOM_GRAY_STILL: &str = "0a0618157fbda540";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector is valid hex")
    }

    /// MSB-first bit writer used to build sequence headers field by field.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn put(&mut self, n: u32, value: u64) {
            for i in (0..n).rev() {
                if self.bits & 7 == 0 {
                    self.bytes.push(0);
                }
                let bit = ((value >> i) & 1) as u8;
                let last = self.bytes.len() - 1;
                self.bytes[last] |= bit << (7 - self.bits % 8);
                self.bits += 1;
            }
        }
        fn flag(&mut self, v: bool) {
            self.put(1, u64::from(v));
        }
        fn uvlc(&mut self, value: u32) {
            let v = u64::from(value) + 1;
            let len = 64 - v.leading_zeros();
            self.put(len - 1, 0);
            self.put(len, v);
        }
        fn finish(mut self) -> Vec<u8> {
            self.flag(true);
            while self.bits & 7 != 0 {
                self.flag(false);
            }
            self.bytes
        }
    }

    /// Every knob of `sequence_header_obu()` that changes its layout.
    #[derive(Debug, Clone)]
    struct Spec {
        profile: u8,
        reduced: bool,
        still: bool,
        timing: Option<(Option<u32>, Option<u8>)>,
        initial_display_delay: bool,
        ops: Vec<(u16, u8, bool, bool, bool)>,
        width_bits: u32,
        height_bits: u32,
        width: u32,
        height: u32,
        frame_id: bool,
        order_hint: bool,
        choose_sct: bool,
        force_sct: bool,
        choose_int_mv: bool,
        high_bitdepth: bool,
        twelve_bit: bool,
        mono: bool,
        color: Option<(u8, u8, u8)>,
        full_range: bool,
        sx: bool,
        sy: bool,
        csp: u8,
        sep_uv: bool,
        film_grain: bool,
    }

    impl Spec {
        fn payload(&self) -> Vec<u8> {
            let mut w = BitWriter::default();
            w.put(3, self.profile.into());
            w.flag(self.still);
            w.flag(self.reduced);
            if self.reduced {
                w.put(5, self.ops[0].1.into());
            } else {
                w.flag(self.timing.is_some());
                let mut buffer_delay_len = 0;
                if let Some((interval, model)) = self.timing {
                    w.put(32, 1001);
                    w.put(32, 60000);
                    w.flag(interval.is_some());
                    if let Some(ticks) = interval {
                        w.uvlc(ticks);
                    }
                    w.flag(model.is_some());
                    if let Some(len_minus_1) = model {
                        buffer_delay_len = u32::from(len_minus_1) + 1;
                        w.put(5, len_minus_1.into());
                        w.put(32, 90000);
                        w.put(5, 3);
                        w.put(5, 7);
                    }
                }
                w.flag(self.initial_display_delay);
                w.put(5, (self.ops.len() - 1) as u64);
                for &(idc, level, tier, model_present, delay_present) in &self.ops {
                    w.put(12, idc.into());
                    w.put(5, level.into());
                    if level > 7 {
                        w.flag(tier);
                    }
                    if matches!(self.timing, Some((_, Some(_)))) {
                        w.flag(model_present);
                        if model_present {
                            w.put(buffer_delay_len, 5);
                            w.put(buffer_delay_len, 3);
                            w.flag(true);
                        }
                    }
                    if self.initial_display_delay {
                        w.flag(delay_present);
                        if delay_present {
                            w.put(4, 9);
                        }
                    }
                }
            }
            w.put(4, (self.width_bits - 1).into());
            w.put(4, (self.height_bits - 1).into());
            w.put(self.width_bits, (self.width - 1).into());
            w.put(self.height_bits, (self.height - 1).into());
            if !self.reduced {
                w.flag(self.frame_id);
                if self.frame_id {
                    w.put(4, 5);
                    w.put(3, 2);
                }
            }
            w.put(3, 0b101); // 128x128 superblock, filter intra, intra edge
            if !self.reduced {
                w.put(4, 0b1010);
                w.flag(self.order_hint);
                if self.order_hint {
                    w.put(2, 0b11);
                }
                w.flag(self.choose_sct);
                if !self.choose_sct {
                    w.flag(self.force_sct);
                }
                if self.choose_sct || self.force_sct {
                    w.flag(self.choose_int_mv);
                    if !self.choose_int_mv {
                        w.flag(true);
                    }
                }
                if self.order_hint {
                    w.put(3, 6);
                }
            }
            w.put(3, 0b011); // superres, cdef, restoration
                             // color_config()
            w.flag(self.high_bitdepth);
            if self.profile == 2 && self.high_bitdepth {
                w.flag(self.twelve_bit);
            }
            if self.profile != 1 {
                w.flag(self.mono);
            }
            w.flag(self.color.is_some());
            if let Some((cp, tc, mc)) = self.color {
                w.put(8, cp.into());
                w.put(8, tc.into());
                w.put(8, mc.into());
            }
            let mono = self.mono && self.profile != 1;
            if mono {
                w.flag(self.full_range);
            } else {
                if self.color != Some((1, 13, 0)) {
                    w.flag(self.full_range);
                    let (sx, sy) = self.subsampling();
                    if self.profile == 2 && self.bit_depth() == 12 {
                        w.flag(sx);
                        if sx {
                            w.flag(sy);
                        }
                    }
                    if sx && sy {
                        w.put(2, self.csp.into());
                    }
                }
                w.flag(self.sep_uv);
            }
            w.flag(self.film_grain);
            w.finish()
        }

        fn bit_depth(&self) -> u8 {
            match (self.high_bitdepth, self.profile == 2 && self.twelve_bit) {
                (false, _) => 8,
                (true, false) => 10,
                (true, true) => 12,
            }
        }

        fn subsampling(&self) -> (bool, bool) {
            match self.profile {
                0 => (true, true),
                1 => (false, false),
                _ if self.bit_depth() == 12 => (self.sx, self.sx && self.sy),
                _ => (true, false),
            }
        }

        fn expected(&self) -> SequenceHeader {
            let mono = self.mono && self.profile != 1;
            let srgb = !mono && self.color == Some((1, 13, 0));
            let (sx, sy) = if mono {
                (true, true)
            } else if srgb {
                (false, false)
            } else {
                self.subsampling()
            };
            let (cp, tc, mc) = self.color.unwrap_or((2, 2, 2));
            let level = self.ops[0].1;
            SequenceHeader {
                seq_profile: self.profile,
                still_picture: self.still,
                reduced_still_picture_header: self.reduced,
                timing_info_present: !self.reduced && self.timing.is_some(),
                operating_points: if self.reduced {
                    1
                } else {
                    self.ops.len() as u8
                },
                seq_level_idx_0: level,
                seq_tier_0: u8::from(level > 7 && self.ops[0].2 && !self.reduced),
                max_frame_width: self.width,
                max_frame_height: self.height,
                color: ColorConfig {
                    high_bitdepth: self.high_bitdepth,
                    twelve_bit: self.profile == 2 && self.high_bitdepth && self.twelve_bit,
                    bit_depth: self.bit_depth(),
                    mono_chrome: mono,
                    color_description_present: self.color.is_some(),
                    color_primaries: cp,
                    transfer_characteristics: tc,
                    matrix_coefficients: mc,
                    full_range: if srgb { true } else { self.full_range },
                    subsampling_x: sx,
                    subsampling_y: sy,
                    chroma_sample_position: if !mono && !srgb && sx && sy {
                        self.csp
                    } else {
                        0
                    },
                    separate_uv_delta_q: !mono && self.sep_uv,
                },
                film_grain_params_present: self.film_grain,
            }
        }

        fn obu(&self) -> Vec<u8> {
            let payload = self.payload();
            let mut obu = vec![0x0a];
            write_leb128(&mut obu, payload.len() as u64);
            obu.extend_from_slice(&payload);
            obu
        }
    }

    fn spec_strategy() -> impl Strategy<Value = Spec> {
        let head = (
            0u8..=2,
            any::<bool>(),
            any::<bool>(),
            proptest::option::of((
                proptest::option::of(0u32..5000),
                proptest::option::of(0u8..32),
            )),
            any::<bool>(),
            proptest::collection::vec(
                (
                    0u16..4096,
                    0u8..32,
                    any::<bool>(),
                    any::<bool>(),
                    any::<bool>(),
                ),
                1..=32,
            ),
        );
        let size = (1u32..=16, 1u32..=16)
            .prop_flat_map(|(wb, hb)| (Just(wb), Just(hb), 1u32..=(1 << wb), 1u32..=(1 << hb)));
        let tools = (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        );
        let color = (
            (any::<bool>(), any::<bool>(), any::<bool>()),
            proptest::option::of(prop_oneof![
                Just((1u8, 13u8, 0u8)),
                Just((1, 1, 1)),
                (any::<u8>(), any::<u8>(), any::<u8>())
            ]),
            (
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                0u8..4,
                any::<bool>(),
                any::<bool>(),
            ),
        );
        (head, size, tools, color).prop_map(
            |(
                (profile, reduced, still, timing, idd, ops),
                (width_bits, height_bits, width, height),
                (frame_id, order_hint, choose_sct, force_sct, choose_int_mv),
                ((high_bitdepth, twelve_bit, mono), color, (full_range, sx, sy, csp, sep_uv, fg)),
            )| Spec {
                profile,
                reduced,
                // A reduced still picture header requires still_picture.
                still: still || reduced,
                timing,
                initial_display_delay: idd,
                ops,
                width_bits,
                height_bits,
                width,
                height,
                frame_id,
                order_hint,
                choose_sct,
                force_sct,
                choose_int_mv,
                high_bitdepth,
                twelve_bit,
                mono,
                color,
                full_range,
                sx,
                sy,
                csp,
                sep_uv,
                film_grain: fg,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes never panic any entry point, and the outputs stay consistent.
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut covered = 0;
            for obu in obus(&data) {
                match obu {
                    Ok(obu) => {
                        prop_assert_eq!(obu.offset, covered);
                        prop_assert!(!obu.raw.is_empty());
                        covered += obu.raw.len();
                    }
                    Err(_) => break,
                }
            }
            prop_assert!(covered <= data.len());
            let stripped = strip_temporal_delimiters(&data);
            prop_assert!(stripped.len() <= data.len());
            if let Some(sh) = find_sequence_header(&data) {
                prop_assert_eq!(ObuType::from_bits(sh[0] >> 3), ObuType::SequenceHeader);
                let _ = SequenceHeader::parse_obu(sh);
                let _ = av1c_box_payload(sh);
            }
            let _ = SequenceHeader::parse_obu(&data);
            let _ = SequenceHeader::parse_payload(&data);
            if let Ok(rec) = av1c_box_payload(&data) {
                prop_assert_eq!(rec[0], 0x81);
            }
        }

        /// Random bytes behind a sequence header OBU header exercise the field parser itself.
        #[test]
        fn random_sequence_header_payloads_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            let mut obu = vec![0x0a];
            write_leb128(&mut obu, payload.len() as u64);
            obu.extend_from_slice(&payload);
            if let Ok(seq) = SequenceHeader::parse_obu(&obu) {
                prop_assert!(matches!(seq.color.bit_depth, 8 | 10 | 12));
                let rec = av1c_box_payload(&obu).expect("parsed header gives a record");
                prop_assert_eq!(&rec[4..], &obu[..]);
                prop_assert!(codec_string(&seq).starts_with("av01."));
            }
        }

        /// Every layout of the sequence header parses back to the fields that were written.
        #[test]
        fn generated_sequence_headers_round_trip(spec in spec_strategy()) {
            let obu = spec.obu();
            let parsed = SequenceHeader::parse_obu(&obu);
            prop_assert_eq!(parsed, Ok(spec.expected()));
            // Any truncation of the payload is detected.
            let payload = spec.payload();
            for cut in 0..payload.len() {
                prop_assert!(SequenceHeader::parse_payload(&payload[..cut]).is_err());
            }
        }

        #[test]
        fn leb128_round_trips(value in 0u64..=u64::from(u32::MAX)) {
            let mut buf = Vec::new();
            write_leb128(&mut buf, value);
            prop_assert_eq!(read_leb128(&buf), Some((value, buf.len())));
        }
    }

    #[test]
    fn leb128_limits() {
        assert_eq!(read_leb128(&[]), None);
        assert_eq!(read_leb128(&[0x80]), None);
        assert_eq!(read_leb128(&[0x00]), Some((0, 1)));
        // Non-minimal encodings are allowed (up to 8 bytes).
        assert_eq!(read_leb128(&[0x81, 0x80, 0x00]), Some((1, 3)));
        assert_eq!(
            read_leb128(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some((u64::from(u32::MAX), 5))
        );
        assert_eq!(
            read_leb128(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            None,
            "2^32 is too big"
        );
        assert_eq!(read_leb128(&[0x80; 9]), None, "more than 8 bytes");
    }

    #[test]
    fn obu_walk_reads_headers_extensions_and_sizes() {
        // TD; padding with extension (temporal 5, spatial 2) and 3-byte payload; a last OBU
        // (metadata) without size field.
        let data = [0x12, 0x00, 0x7e, 0b1011_0000, 0x03, 1, 2, 3, 0x28, 9, 9];
        let list: Vec<_> = obus(&data).collect::<Result<_, _>>().expect("valid OBUs");
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].header.obu_type, ObuType::TemporalDelimiter);
        assert!(list[0].payload.is_empty());
        assert_eq!(list[1].header.obu_type, ObuType::Padding);
        assert!(list[1].header.has_extension);
        assert_eq!(
            (list[1].header.temporal_id, list[1].header.spatial_id),
            (5, 2)
        );
        assert_eq!(list[1].payload, &[1, 2, 3]);
        assert_eq!(list[1].offset, 2);
        assert_eq!(list[2].header.obu_type, ObuType::Metadata);
        assert!(!list[2].header.has_size_field);
        assert_eq!(list[2].payload, &[9, 9]);
        assert_eq!(strip_temporal_delimiters(&data), &data[2..]);
    }

    #[test]
    fn obu_walk_reports_errors_once() {
        let overrun = [0x0a, 0x05, 1, 2];
        let mut it = obus(&overrun);
        assert_eq!(
            it.next(),
            Some(Err(Av1Error::Overrun {
                offset: 0,
                size: 5,
                available: 2
            }))
        );
        assert_eq!(it.next(), None);
        assert_eq!(
            obus(&[0x92, 0x00]).next(),
            Some(Err(Av1Error::ForbiddenBit { offset: 0 }))
        );
        assert_eq!(
            obus(&[0x16]).next(),
            Some(Err(Av1Error::TruncatedHeader { offset: 0 }))
        );
        assert_eq!(
            obus(&[0x12, 0x00, 0x0a, 0x80]).nth(1),
            Some(Err(Av1Error::InvalidSize { offset: 3 }))
        );
    }

    #[test]
    fn strip_keeps_unparsable_tail() {
        let data = [0x12, 0x00, 0x32, 0x01, 0xaa, 0x12, 0x00, 0x0a, 0x09, 1];
        // TD dropped, tile group kept, TD dropped, overrunning OBU kept verbatim.
        assert_eq!(
            strip_temporal_delimiters(&data),
            [0x32, 0x01, 0xaa, 0x0a, 0x09, 1]
        );
    }

    #[test]
    fn finds_sequence_header_after_other_obus() {
        let sh = unhex(SVT_420_BT709);
        let mut tu = vec![0x12, 0x00, 0x2a, 0x01, 0x00];
        tu.extend_from_slice(&sh);
        tu.extend_from_slice(&[0x32, 0x02, 0xab, 0xcd]);
        assert_eq!(find_sequence_header(&tu), Some(&sh[..]));
        assert_eq!(find_sequence_header(&tu[..4]), None);
        assert_eq!(find_sequence_header(&[0x32, 0x02, 0xab, 0xcd]), None);
    }

    #[test]
    fn parses_svt_av1_header() {
        let seq = SequenceHeader::parse_obu(&unhex(SVT_420_BT709)).expect("valid");
        assert_eq!(seq.seq_profile, 0);
        assert!(!seq.still_picture && !seq.reduced_still_picture_header);
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (320, 240));
        let c = seq.color;
        assert_eq!(c.bit_depth, 8);
        assert!(!c.mono_chrome && c.subsampling_x && c.subsampling_y);
        assert!(c.color_description_present);
        assert_eq!(
            (
                c.color_primaries,
                c.transfer_characteristics,
                c.matrix_coefficients
            ),
            (1, 1, 1)
        );
        assert!(!c.full_range);
        assert_eq!(
            codec_string_full(&seq),
            format!("{}.0.110.01.01.01.0", codec_string(&seq))
        );
    }

    #[test]
    fn parses_libaom_444_10bit_header() {
        let seq = SequenceHeader::parse_obu(&unhex(AOM_444_10BIT)).expect("valid");
        assert_eq!(seq.seq_profile, 1);
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (352, 288));
        let c = seq.color;
        assert_eq!(c.bit_depth, 10);
        assert!(c.high_bitdepth && !c.twelve_bit && !c.mono_chrome);
        assert!(!c.subsampling_x && !c.subsampling_y);
        assert!(!c.color_description_present && c.full_range);
        assert_eq!(
            codec_string(&seq),
            format!("av01.1.{:02}M.10", seq.seq_level_idx_0)
        );
        let rec = av1c_box_payload(&unhex(AOM_444_10BIT)).expect("valid");
        assert_eq!(rec[1] >> 5, 1);
        assert_eq!(
            rec[2] & 0b0111_1111,
            0b0100_0000,
            "high_bitdepth only, 4:4:4"
        );
    }

    #[test]
    fn parses_reduced_still_picture_header() {
        let obu = unhex(AOM_GRAY_STILL);
        let seq = SequenceHeader::parse_obu(&obu).expect("valid");
        assert!(seq.still_picture && seq.reduced_still_picture_header);
        assert_eq!(seq.seq_level_idx_0, 0);
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (64, 48));
        assert!(seq.color.mono_chrome && seq.color.full_range);
        assert_eq!(seq.color.chroma_sample_position, 0);
        assert_eq!(
            av1c_box_payload(&obu).expect("valid")[..4],
            [0x81, 0x00, 0b0001_1100, 0]
        );
        assert_eq!(codec_string_full(&seq), "av01.0.00M.08.1.110.02.02.02.1");
    }

    /// A header from rav1e with timing info, a level above 7 (tier bit coded), a colour
    /// description, full range and a chroma sample position.
    #[test]
    fn parses_rav1e_header_with_timing_info() {
        use rav1e::prelude::*;
        let mut enc = EncoderConfig::with_speed_preset(10);
        enc.width = 64;
        enc.height = 48;
        enc.time_base = Rational { num: 1, den: 25 };
        enc.enable_timing_info = true;
        enc.level_idx = Some(9);
        enc.pixel_range = PixelRange::Full;
        enc.chroma_sample_position = ChromaSamplePosition::Colocated;
        enc.color_description = Some(ColorDescription {
            color_primaries: ColorPrimaries::BT709,
            transfer_characteristics: TransferCharacteristics::BT709,
            matrix_coefficients: MatrixCoefficients::BT709,
        });
        let cfg = Config::new().with_encoder_config(enc).with_threads(1);
        let mut ctx: Context<u8> = cfg.new_context().expect("valid rav1e config");
        let frame = ctx.new_frame();
        ctx.send_frame(frame).expect("frame accepted");
        ctx.flush();
        let packet = loop {
            match ctx.receive_packet() {
                Ok(p) => break p,
                Err(EncoderStatus::Encoded) => {}
                Err(e) => panic!("rav1e failed: {e:?}"),
            }
        };
        let sh = find_sequence_header(&packet.data).expect("keyframe has a sequence header");
        let seq = parse_sequence_header(sh).expect("valid");
        assert!(seq.timing_info_present);
        assert_eq!((seq.seq_level_idx_0, seq.seq_tier_0), (9, 0));
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (64, 48));
        let c = seq.color;
        assert_eq!(
            (
                c.color_primaries,
                c.transfer_characteristics,
                c.matrix_coefficients
            ),
            (1, 1, 1)
        );
        assert!(c.full_range);
        assert_eq!(c.chroma_sample_position, 2, "CSP_COLOCATED");
        assert_eq!(codec_string_full(&seq), "av01.0.09M.08.0.112.01.01.01.1");
        let rec = av1c_box_payload(sh).expect("valid");
        assert_eq!(rec[..4], [0x81, 0x09, 0b0000_1110, 0x00]);
    }

    #[test]
    fn av1c_record_for_known_header() {
        // Main profile, level 4.0 (idx 8), High tier, 8-bit 4:2:0 colocated (position 2), BT.709.
        let spec = Spec {
            profile: 0,
            reduced: false,
            still: false,
            timing: None,
            initial_display_delay: false,
            ops: vec![(0, 8, true, false, false)],
            width_bits: 11,
            height_bits: 11,
            width: 1920,
            height: 1080,
            frame_id: false,
            order_hint: true,
            choose_sct: true,
            force_sct: false,
            choose_int_mv: true,
            high_bitdepth: false,
            twelve_bit: false,
            mono: false,
            color: Some((1, 1, 1)),
            full_range: false,
            sx: true,
            sy: true,
            csp: 2,
            sep_uv: false,
            film_grain: false,
        };
        let obu = spec.obu();
        let rec = av1c_box_payload(&obu).expect("valid");
        assert_eq!(rec[..4], [0x81, 0x08, 0b1000_1110, 0x00]);
        assert_eq!(&rec[4..], &obu[..]);
        let seq = SequenceHeader::parse_obu(&obu).expect("valid");
        assert_eq!(codec_string(&seq), "av01.0.08H.08");
        assert_eq!(codec_string_full(&seq), "av01.0.08H.08.0.112.01.01.01.0");
    }

    #[test]
    fn codec_string_matches_examples() {
        let mut seq = SequenceHeader::parse_obu(&unhex(SVT_420_BT709)).expect("valid");
        seq.seq_level_idx_0 = 8;
        seq.seq_tier_0 = 0;
        assert_eq!(codec_string(&seq), "av01.0.08M.08");
        seq.seq_level_idx_0 = 1;
        assert_eq!(codec_string(&seq), "av01.0.01M.08");
        seq.seq_level_idx_0 = 31;
        seq.seq_profile = 2;
        seq.seq_tier_0 = 1;
        seq.color.bit_depth = 12;
        assert_eq!(codec_string(&seq), "av01.2.31H.12");
    }

    #[test]
    fn av1c_adds_missing_size_field() {
        let sized = unhex(SVT_420_BT709);
        let mut unsized_obu = vec![sized[0] & !0x02];
        unsized_obu.extend_from_slice(&sized[2..]);
        let rec = av1c_box_payload(&unsized_obu).expect("valid");
        assert_eq!(&rec[4..], &sized[..]);
    }

    #[test]
    fn sequence_header_errors() {
        let sh = unhex(SVT_420_BT709);
        let mut with_tail = sh.clone();
        with_tail.push(0x12);
        assert_eq!(
            SequenceHeader::parse_obu(&with_tail),
            Err(Av1Error::TrailingData(1))
        );
        assert_eq!(SequenceHeader::parse_obu(&[]), Err(Av1Error::Empty));
        assert_eq!(
            av1c_box_payload(&[0x12, 0x00]),
            Err(Av1Error::NotSequenceHeader(ObuType::TemporalDelimiter))
        );
        assert_eq!(
            SequenceHeader::parse_payload(&[0xe0]),
            Err(Av1Error::ReservedProfile(7))
        );
        // Flip the trailing one bit: the parse must notice it no longer lines up.
        let mut bad = sh.clone();
        let last = bad.len() - 1;
        bad[last] = 0;
        assert!(matches!(
            SequenceHeader::parse_obu(&bad),
            Err(Av1Error::Invalid(_))
        ));
    }
}
