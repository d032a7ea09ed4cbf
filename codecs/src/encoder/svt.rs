//! SVT-AV1 backend: FFI to the system `libSvtAv1Enc` 1.4.x (cargo feature `svt-av1`).
//!
//! Settings: preset from [`EncoderConfig::speed`] (0–13), CRF rate control with
//! [`EncoderConfig::quantizer`] as the quality (1–63; 0 is raised to 1), screen-content tools
//! on, low-delay prediction (frames coded in display order, no reordering, no lookahead, no
//! temporal filtering), no periodic keyframes and no scene-change keyframes (keyframes come
//! only on the first frame and where the caller forces them), BT.709 limited-range colour in the
//! sequence header, and [`EncoderConfig::threads`] logical processors (0 = all).
//!
//! Sizes: width and height must be even, from 64×64 to 16384×8704. Multiples of 8 are not
//! needed: SVT-AV1 pads internally and signals the exact size (tested at 330×250).
//!
//! Latency: SVT-AV1 1.4.1 in low-delay mode releases the packet of a frame once the next
//! picture has been sent, so [`Encoder::encode`] returns the packet of the *previous* frame:
//! it waits (sleeping between polls, at most [`PACKET_TIMEOUT`]) until every frame before the
//! one just sent has come out, and also returns the new frame's packet if it is already ready.
//! [`Encoder::pending`] is therefore 1 in steady state; [`Encoder::finish`] returns the last.
//!
//! Keyframes: 1.4.1 refuses `force_key_frames` outside random-access mode and ignores a key
//! `pic_type` in low-delay mode. A forced keyframe therefore ends the running SVT-AV1 instance
//! (draining its packets) and starts a new one with identical settings, whose first picture is
//! a keyframe with the same sequence header; this costs about 10–40 ms at 720p–1080p. SVT-AV1
//! writes the sequence header on every keyframe; the backend checks that it is present and
//! unchanged, and strips temporal delimiters.
//!
//! The FFI structs are mirrored by hand from the 1.4.1 headers. A C probe compiled by
//! `build.rs` reports the C compiler's offsets and sizes; [`SvtEncoder::new`] refuses to start
//! when the struct sizes differ and the tests compare every field. The library version is also
//! checked at start-up: later 1.x releases drop fields from these structs under the same soname.

use super::{
    check_frame, obu_spans, strip_temporal_delimiters, EncodeError, Encoder, EncoderConfig,
    EncoderKind, Packet, OBU_SEQUENCE_HEADER,
};
use crate::yuv::YuvFrame;
use std::collections::VecDeque;
use std::ffi::CStr;
use std::mem::size_of;
use std::ptr;
use std::time::{Duration, Instant};

/// Longest the backend waits for a packet that is due ([`Encoder::encode`]) or for the end of
/// the stream ([`Encoder::finish`]) before failing with [`EncodeError::Backend`].
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(20);

/// Hand-written bindings to `EbSvtAv1Enc.h` 1.4.1 (only what the backend uses).
#[allow(non_camel_case_types, dead_code)]
pub(crate) mod ffi {
    use std::ffi::{c_char, c_void};

    /// Declares a `#[repr(C)]` struct and a table of its fields' `(name, offset, size)`, which
    /// the layout tests compare with the C compiler's view.
    macro_rules! c_struct {
        ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
            $(#[$meta])*
            #[repr(C)]
            #[derive(Clone, Copy)]
            pub struct $name { $($(#[$fmeta])* pub $field: $ty,)* }

            impl $name {
                /// Every field as `(name, offset, size)`, in declaration order.
                #[cfg(test)]
                pub(crate) fn fields() -> Vec<(&'static str, usize, usize)> {
                    fn size_of_field<T>(_: *const T) -> usize {
                        std::mem::size_of::<T>()
                    }
                    let probe = std::mem::MaybeUninit::<$name>::uninit();
                    let base = probe.as_ptr();
                    vec![$((
                        stringify!($field),
                        std::mem::offset_of!($name, $field),
                        // SAFETY: only the address of the field is taken, nothing is read.
                        size_of_field(unsafe { std::ptr::addr_of!((*base).$field) }),
                    ),)*]
                }
            }
        };
    }

    /// `Bool` in the SVT-AV1 API is a `uint8_t`.
    pub type Bool = u8;
    /// `EbErrorType` (a C enum).
    pub type EbErrorType = i32;

    pub const EB_ERROR_NONE: EbErrorType = 0;
    pub const EB_ERROR_BAD_PARAMETER: EbErrorType = 0x8000_1005_u32 as i32;
    pub const EB_NO_ERROR_EMPTY_QUEUE: EbErrorType = 0x8000_2033_u32 as i32;

    pub const EB_AV1_KEY_PICTURE: u32 = 3;
    pub const EB_AV1_INVALID_PICTURE: u32 = 0xFF;
    pub const EB_BUFFERFLAG_EOS: u32 = 0x1;
    pub const EB_BUFFERFLAG_ERROR_MASK: u32 = 0xFFFF_FFF0;
    pub const EB_YUV420: u32 = 1;
    pub const EB_EIGHT_BIT: u32 = 8;
    pub const SVT_AV1_KF_REFRESH: u32 = 2;
    pub const SVT_AV1_PRED_LOW_DELAY_B: u8 = 1;
    pub const SVT_AV1_RC_MODE_CQP_OR_CRF: u32 = 0;
    pub const EB_CICP_BT_709: u32 = 1;
    pub const EB_CR_STUDIO_RANGE: u32 = 0;

    /// Opaque encoder component.
    #[repr(C)]
    pub struct EbComponentType {
        _private: [u8; 0],
    }

    c_struct! {
        /// `struct EbSvtAv1ChromaPoints` (nested, checked through its parent's size).
        pub struct EbSvtAv1ChromaPoints {
            pub x: u16,
            pub y: u16,
        }
    }

    c_struct! {
        /// `struct EbSvtAv1MasteringDisplayInfo`.
        pub struct EbSvtAv1MasteringDisplayInfo {
            pub r: EbSvtAv1ChromaPoints,
            pub g: EbSvtAv1ChromaPoints,
            pub b: EbSvtAv1ChromaPoints,
            pub white_point: EbSvtAv1ChromaPoints,
            pub max_luma: u32,
            pub min_luma: u32,
        }
    }

    c_struct! {
        /// `struct EbContentLightLevel`.
        pub struct EbContentLightLevel {
            pub max_cll: u16,
            pub max_fall: u16,
        }
    }

    c_struct! {
        /// `SvtAv1FixedBuf`.
        pub struct SvtAv1FixedBuf {
            pub buf: *mut c_void,
            pub sz: u64,
        }
    }

    c_struct! {
        /// `PredictionStructureConfigEntry` (deprecated in 1.4, still in the struct).
        pub struct PredictionStructureConfigEntry {
            pub temporal_layer_index: u32,
            pub decode_order: u32,
            pub ref_list0: [i32; 4],
            pub ref_list1: [i32; 4],
        }
    }

    c_struct! {
        /// `EbSvtAv1EncConfiguration` of SVT-AV1 1.4.1 (ABI version 6), field by field. C enums
        /// are `u32`, `Bool` is `u8`, `int` is `i32`.
        pub struct EbSvtAv1EncConfiguration {
            pub enc_mode: i8,
            pub intra_period_length: i32,
            pub intra_refresh_type: u32,
            pub hierarchical_levels: u32,
            pub pred_structure: u8,
            pub source_width: u32,
            pub source_height: u32,
            pub forced_max_frame_width: u32,
            pub forced_max_frame_height: u32,
            pub frame_rate_numerator: u32,
            pub frame_rate_denominator: u32,
            pub encoder_bit_depth: u32,
            pub encoder_color_format: u32,
            pub compressed_ten_bit_format: u32,
            pub high_dynamic_range_input: Bool,
            pub profile: u32,
            pub tier: u32,
            pub level: u32,
            pub color_description_present_flag: Bool,
            pub color_primaries: u32,
            pub transfer_characteristics: u32,
            pub matrix_coefficients: u32,
            pub color_range: u32,
            pub mastering_display: EbSvtAv1MasteringDisplayInfo,
            pub content_light_level: EbContentLightLevel,
            pub chroma_sample_position: u32,
            pub rate_control_mode: u32,
            pub qp: u32,
            pub use_qp_file: Bool,
            pub target_bit_rate: u32,
            pub max_bit_rate: u32,
            pub vbv_bufsize: u32,
            pub max_qp_allowed: u32,
            pub min_qp_allowed: u32,
            pub vbr_bias_pct: u32,
            pub vbr_min_section_pct: u32,
            pub vbr_max_section_pct: u32,
            pub under_shoot_pct: u32,
            pub over_shoot_pct: u32,
            pub mbr_over_shoot_pct: u32,
            pub starting_buffer_level_ms: i64,
            pub optimal_buffer_level_ms: i64,
            pub maximum_buffer_size_ms: i64,
            pub rc_stats_buffer: SvtAv1FixedBuf,
            pub pass: i32,
            pub use_fixed_qindex_offsets: u8,
            pub qindex_offsets: [i32; 6],
            pub key_frame_chroma_qindex_offset: i32,
            pub key_frame_qindex_offset: i32,
            pub chroma_qindex_offsets: [i32; 6],
            pub luma_y_dc_qindex_offset: i32,
            pub chroma_u_dc_qindex_offset: i32,
            pub chroma_u_ac_qindex_offset: i32,
            pub chroma_v_dc_qindex_offset: i32,
            pub chroma_v_ac_qindex_offset: i32,
            pub enable_dlf_flag: Bool,
            pub film_grain_denoise_strength: u32,
            pub film_grain_denoise_apply: u8,
            pub cdef_level: i32,
            pub enable_restoration_filtering: i32,
            pub enable_mfmv: i32,
            pub scene_change_detection: u32,
            pub restricted_motion_vector: Bool,
            pub tile_columns: i32,
            pub tile_rows: i32,
            pub look_ahead_distance: u32,
            pub enable_tpl_la: u8,
            pub recode_loop: u32,
            pub screen_content_mode: u32,
            pub enable_adaptive_quantization: u8,
            pub enable_tf: Bool,
            pub enable_overlays: Bool,
            pub tune: u8,
            pub superres_mode: u8,
            pub superres_denom: u8,
            pub superres_kf_denom: u8,
            pub superres_qthres: u8,
            pub superres_kf_qthres: u8,
            pub superres_auto_search_type: u8,
            pub pred_struct: [PredictionStructureConfigEntry; 32],
            pub enable_manual_pred_struct: Bool,
            pub manual_pred_struct_entry_num: i32,
            pub fast_decode: Bool,
            pub sframe_dist: i32,
            pub sframe_mode: u32,
            pub channel_id: u32,
            pub active_channel_count: u32,
            pub logical_processors: u32,
            pub pin_threads: u32,
            pub target_socket: i32,
            pub use_cpu_flags: u64,
            pub stat_report: u32,
            pub recon_enabled: Bool,
            pub force_key_frames: Bool,
            pub multiply_keyint: Bool,
            pub resize_mode: u8,
            pub resize_denom: u8,
            pub resize_kf_denom: u8,
            pub enable_qm: Bool,
            pub min_qm_level: u8,
            pub max_qm_level: u8,
            pub gop_constraint_rc: Bool,
        }
    }

    c_struct! {
        /// `EbBufferHeaderType`: input pictures and output packets.
        pub struct EbBufferHeaderType {
            pub size: u32,
            pub p_buffer: *mut u8,
            pub n_filled_len: u32,
            pub n_alloc_len: u32,
            pub p_app_private: *mut c_void,
            pub wrapper_ptr: *mut c_void,
            pub n_tick_count: u32,
            pub dts: i64,
            pub pts: i64,
            pub qp: u32,
            pub pic_type: u32,
            pub luma_sse: u64,
            pub cr_sse: u64,
            pub cb_sse: u64,
            pub flags: u32,
            pub luma_ssim: f64,
            pub cr_ssim: f64,
            pub cb_ssim: f64,
            pub metadata: *mut c_void,
        }
    }

    c_struct! {
        /// `EbSvtIOFormat`: the planes of an input picture.
        pub struct EbSvtIOFormat {
            pub luma: *mut u8,
            pub cb: *mut u8,
            pub cr: *mut u8,
            pub luma_ext: *mut u8,
            pub cb_ext: *mut u8,
            pub cr_ext: *mut u8,
            pub y_stride: u32,
            pub cr_stride: u32,
            pub cb_stride: u32,
            pub width: u32,
            pub height: u32,
            pub origin_x: u32,
            pub origin_y: u32,
            pub color_fmt: u32,
            pub bit_depth: u32,
        }
    }

    /// One row of the C layout probe compiled by `build.rs`.
    #[repr(C)]
    pub struct ProbeField {
        pub name: *const c_char,
        pub offset: usize,
        pub size: usize,
    }

    // Linked by build.rs (pkg-config module `SvtAv1Enc`).
    extern "C" {
        pub fn svt_av1_get_version() -> *const c_char;
        pub fn svt_av1_enc_init_handle(
            p_handle: *mut *mut EbComponentType,
            p_app_data: *mut c_void,
            config_ptr: *mut EbSvtAv1EncConfiguration,
        ) -> EbErrorType;
        pub fn svt_av1_enc_set_parameter(
            handle: *mut EbComponentType,
            config: *mut EbSvtAv1EncConfiguration,
        ) -> EbErrorType;
        pub fn svt_av1_enc_init(handle: *mut EbComponentType) -> EbErrorType;
        pub fn svt_av1_enc_stream_header(
            handle: *mut EbComponentType,
            output_stream_ptr: *mut *mut EbBufferHeaderType,
        ) -> EbErrorType;
        pub fn svt_av1_enc_stream_header_release(
            stream_header_ptr: *mut EbBufferHeaderType,
        ) -> EbErrorType;
        pub fn svt_av1_enc_send_picture(
            handle: *mut EbComponentType,
            p_buffer: *mut EbBufferHeaderType,
        ) -> EbErrorType;
        pub fn svt_av1_enc_get_packet(
            handle: *mut EbComponentType,
            p_buffer: *mut *mut EbBufferHeaderType,
            pic_send_done: u8,
        ) -> EbErrorType;
        pub fn svt_av1_enc_release_out_buffer(p_buffer: *mut *mut EbBufferHeaderType);
        pub fn svt_av1_enc_deinit(handle: *mut EbComponentType) -> EbErrorType;
        pub fn svt_av1_enc_deinit_handle(handle: *mut EbComponentType) -> EbErrorType;
    }

    extern "C" {
        /// From the `build.rs` probe: `sizeof` of struct `index` (0 past the last) and its fields.
        pub fn psmgate_svt_layout(
            index: u32,
            fields: *mut *const ProbeField,
            count: *mut usize,
        ) -> usize;
    }

    /// Probe indices, in `build.rs` order.
    pub const PROBE_CONFIG: u32 = 0;
    pub const PROBE_BUFFER_HEADER: u32 = 1;
    pub const PROBE_IO_FORMAT: u32 = 2;

    /// The C compiler's `sizeof` and field table for probe struct `index`.
    pub fn probe(index: u32) -> (usize, Vec<(String, usize, usize)>) {
        let mut fields: *const ProbeField = std::ptr::null();
        let mut count = 0usize;
        // SAFETY: the probe writes a pointer to a static table and its length.
        let size = unsafe { psmgate_svt_layout(index, &mut fields, &mut count) };
        if fields.is_null() {
            return (size, Vec::new());
        }
        // SAFETY: `fields` points to `count` static entries with NUL-terminated static names.
        let rows = unsafe { std::slice::from_raw_parts(fields, count) };
        let rows = rows
            .iter()
            .map(|f| {
                // SAFETY: see above.
                let name = unsafe { std::ffi::CStr::from_ptr(f.name) };
                (name.to_string_lossy().into_owned(), f.offset, f.size)
            })
            .collect();
        (size, rows)
    }
}

/// Runs an SVT-AV1 call and turns a failure into an error naming the call.
fn check(call: &str, status: ffi::EbErrorType) -> Result<(), EncodeError> {
    match status {
        ffi::EB_ERROR_NONE => Ok(()),
        ffi::EB_ERROR_BAD_PARAMETER => Err(EncodeError::Config(format!(
            "SVT-AV1 {call} rejected a parameter (its log on stderr names it)"
        ))),
        other => Err(EncodeError::Backend(format!(
            "SVT-AV1 {call} failed with error {:#x}",
            other as u32
        ))),
    }
}

/// Refuses to run when the Rust mirrors and the C headers disagree on struct sizes, or when the
/// loaded library is not 1.4.x.
fn check_abi() -> Result<(), EncodeError> {
    let expected = [
        (
            ffi::PROBE_CONFIG,
            "EbSvtAv1EncConfiguration",
            size_of::<ffi::EbSvtAv1EncConfiguration>(),
        ),
        (
            ffi::PROBE_BUFFER_HEADER,
            "EbBufferHeaderType",
            size_of::<ffi::EbBufferHeaderType>(),
        ),
        (
            ffi::PROBE_IO_FORMAT,
            "EbSvtIOFormat",
            size_of::<ffi::EbSvtIOFormat>(),
        ),
    ];
    for (index, name, rust) in expected {
        let (c, _) = ffi::probe(index);
        if c != rust {
            return Err(EncodeError::Config(format!(
                "SVT-AV1 {name} is {c} bytes in the C headers but {rust} in this build"
            )));
        }
    }
    // SAFETY: returns a pointer to a static NUL-terminated string (or null).
    let version = unsafe { ffi::svt_av1_get_version() };
    let version = if version.is_null() {
        String::new()
    } else {
        // SAFETY: non-null, static and NUL-terminated per the API.
        unsafe { CStr::from_ptr(version) }
            .to_string_lossy()
            .into_owned()
    };
    if !version.trim_start_matches('v').starts_with("1.4.") {
        return Err(EncodeError::Unavailable(
            "svt-av1 (the loaded libSvtAv1Enc is not version 1.4.x)",
        ));
    }
    Ok(())
}

/// Sleeps between polls: 0.1 ms at first, doubling up to 2 ms.
struct Backoff {
    nap: Duration,
    deadline: Instant,
}

impl Backoff {
    fn new() -> Self {
        Self {
            nap: Duration::from_micros(100),
            deadline: Instant::now() + PACKET_TIMEOUT,
        }
    }

    /// Sleeps once; fails when the deadline has passed.
    fn wait(&mut self, what: &str) -> Result<(), EncodeError> {
        if Instant::now() > self.deadline {
            return Err(EncodeError::Backend(format!(
                "SVT-AV1 produced no {what} within {} s",
                PACKET_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(self.nap);
        self.nap = (self.nap * 2).min(Duration::from_millis(2));
        Ok(())
    }
}

/// A packet as the library returned it (temporal delimiter still in).
struct RawPacket {
    /// The number given to the frame at `send`.
    number: i64,
    keyframe: bool,
    data: Vec<u8>,
}

/// What one non-blocking poll found.
enum Poll {
    /// Nothing ready yet.
    Empty,
    /// A packet.
    Packet(RawPacket),
    /// A buffer without data (the end-of-stream marker).
    Marker,
}

/// One SVT-AV1 encoder instance (a handle from `svt_av1_enc_init_handle`).
///
/// SVT-AV1 1.4.1 hangs in `svt_av1_enc_deinit` when an initialised instance never received a
/// picture, and logs an error when it did not get an end of stream. So teardown always sends an
/// end of stream (after a black picture if none was sent), drains it, then deinitialises.
struct Instance {
    handle: *mut ffi::EbComponentType,
    /// `svt_av1_enc_init` succeeded, so `svt_av1_enc_deinit` is due.
    initialized: bool,
    width: u32,
    height: u32,
    /// Pictures sent.
    sent: u64,
    eos_sent: bool,
    /// The end-of-stream marker came out.
    ended: bool,
    /// Draining failed; the library may be stuck, so the handle is leaked rather than freed.
    broken: bool,
}

impl Instance {
    fn start(config: &EncoderConfig) -> Result<Self, EncodeError> {
        let threads = u32::try_from(config.threads)
            .map_err(|_| EncodeError::Config(format!("{} threads is too many", config.threads)))?;
        let mut instance = Self {
            handle: ptr::null_mut(),
            initialized: false,
            width: config.width,
            height: config.height,
            sent: 0,
            eos_sent: false,
            ended: false,
            broken: false,
        };
        // SAFETY: all-zero is a valid value for this plain-data struct; init_handle then fills
        // in the library defaults.
        let mut cfg: ffi::EbSvtAv1EncConfiguration = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointers; on success the handle is owned by `instance` (see Drop).
        check("init_handle", unsafe {
            ffi::svt_av1_enc_init_handle(&mut instance.handle, ptr::null_mut(), &mut cfg)
        })?;
        if instance.handle.is_null() {
            return Err(EncodeError::Backend(
                "SVT-AV1 init_handle returned no handle".into(),
            ));
        }
        cfg.enc_mode = config.speed.min(13) as i8;
        cfg.source_width = config.width;
        cfg.source_height = config.height;
        // Nominal; timing is carried by the container, not the bitstream.
        cfg.frame_rate_numerator = 30;
        cfg.frame_rate_denominator = 1;
        cfg.encoder_bit_depth = ffi::EB_EIGHT_BIT;
        cfg.encoder_color_format = ffi::EB_YUV420;
        cfg.color_description_present_flag = 1;
        cfg.color_primaries = ffi::EB_CICP_BT_709;
        cfg.transfer_characteristics = ffi::EB_CICP_BT_709;
        cfg.matrix_coefficients = ffi::EB_CICP_BT_709;
        cfg.color_range = ffi::EB_CR_STUDIO_RANGE;
        // CRF: CQP/CRF mode with adaptive quantization left at its default.
        cfg.rate_control_mode = ffi::SVT_AV1_RC_MODE_CQP_OR_CRF;
        cfg.qp = u32::from(config.quantizer.clamp(1, 63));
        cfg.screen_content_mode = 1;
        cfg.pred_structure = ffi::SVT_AV1_PRED_LOW_DELAY_B;
        cfg.look_ahead_distance = 0;
        cfg.enable_tf = 0;
        cfg.enable_overlays = 0;
        cfg.intra_period_length = -1;
        cfg.intra_refresh_type = ffi::SVT_AV1_KF_REFRESH;
        cfg.scene_change_detection = 0;
        // 1.4.1 rejects force_key_frames outside random access; see `SvtEncoder::encode`.
        cfg.force_key_frames = 0;
        cfg.logical_processors = threads;
        cfg.recon_enabled = 0;
        cfg.stat_report = 0;
        // SAFETY: handle is live; the library copies the configuration.
        check("set_parameter", unsafe {
            ffi::svt_av1_enc_set_parameter(instance.handle, &mut cfg)
        })?;
        // SAFETY: handle is live and configured.
        check("init", unsafe { ffi::svt_av1_enc_init(instance.handle) })?;
        instance.initialized = true;
        Ok(instance)
    }

    /// Sends one picture, numbered `number`. `pic_type` is left to the encoder.
    fn send(&mut self, frame: &YuvFrame, number: i64) -> Result<(), EncodeError> {
        check_frame(frame, self.width, self.height)?;
        if self.eos_sent {
            return Err(EncodeError::Backend(
                "SVT-AV1 instance already ended".into(),
            ));
        }
        // The library only reads the planes: it copies the picture during send_picture.
        let mut planes = ffi::EbSvtIOFormat {
            luma: frame.y.as_ptr().cast_mut(),
            cb: frame.u.as_ptr().cast_mut(),
            cr: frame.v.as_ptr().cast_mut(),
            luma_ext: ptr::null_mut(),
            cb_ext: ptr::null_mut(),
            cr_ext: ptr::null_mut(),
            y_stride: self.width,
            cr_stride: self.width / 2,
            cb_stride: self.width / 2,
            width: self.width,
            height: self.height,
            origin_x: 0,
            origin_y: 0,
            color_fmt: ffi::EB_YUV420,
            bit_depth: ffi::EB_EIGHT_BIT,
        };
        let mut input = buffer_header();
        input.p_buffer = ptr::addr_of_mut!(planes).cast();
        input.n_filled_len = u32::try_from(frame.y.len() + frame.u.len() + frame.v.len())
            .map_err(|_| EncodeError::Config("frame too large".into()))?;
        input.pts = number;
        // SAFETY: `input` and `planes` outlive the call; the planes hold a whole 4:2:0 frame of
        // the configured size (checked above).
        check("send_picture", unsafe {
            ffi::svt_av1_enc_send_picture(self.handle, &mut input)
        })?;
        self.sent += 1;
        Ok(())
    }

    /// Sends the end of stream (after a black picture if none was sent, see [`Instance`]).
    fn send_eos(&mut self) -> Result<(), EncodeError> {
        if self.eos_sent {
            return Ok(());
        }
        if self.sent == 0 {
            self.send(&YuvFrame::black(self.width, self.height), -1)?;
        }
        let mut eos = buffer_header();
        eos.flags = ffi::EB_BUFFERFLAG_EOS;
        // SAFETY: an end-of-stream header carries no picture.
        check("send_picture (end of stream)", unsafe {
            ffi::svt_av1_enc_send_picture(self.handle, &mut eos)
        })?;
        self.eos_sent = true;
        Ok(())
    }

    /// Takes one packet if one is ready, without blocking.
    fn poll(&mut self) -> Result<Poll, EncodeError> {
        if self.ended {
            return Ok(Poll::Empty);
        }
        let mut out: *mut ffi::EbBufferHeaderType = ptr::null_mut();
        // SAFETY: handle is initialised; on success `out` is released below.
        let status = unsafe { ffi::svt_av1_enc_get_packet(self.handle, &mut out, 0) };
        if status == ffi::EB_NO_ERROR_EMPTY_QUEUE {
            return Ok(Poll::Empty);
        }
        check("get_packet", status)?;
        if out.is_null() {
            return Err(EncodeError::Backend(
                "SVT-AV1 get_packet returned no buffer".into(),
            ));
        }
        // SAFETY: `out` is a live output buffer until released.
        let (flags, pic_type, number, data) =
            unsafe { ((*out).flags, (*out).pic_type, (*out).pts, buffer_bytes(out)) };
        // SAFETY: releases the buffer obtained above exactly once.
        unsafe { ffi::svt_av1_enc_release_out_buffer(&mut out) };
        if flags & ffi::EB_BUFFERFLAG_ERROR_MASK != 0 {
            return Err(EncodeError::Backend(format!(
                "SVT-AV1 reported an encode error (flags {flags:#x})"
            )));
        }
        self.ended |= flags & ffi::EB_BUFFERFLAG_EOS != 0;
        if data.is_empty() {
            return Ok(Poll::Marker);
        }
        let keyframe = pic_type == ffi::EB_AV1_KEY_PICTURE;
        Ok(Poll::Packet(RawPacket {
            number,
            keyframe,
            data,
        }))
    }

    /// Ends the stream and returns every remaining packet.
    fn drain(&mut self) -> Result<Vec<RawPacket>, EncodeError> {
        let result = self.drain_inner();
        self.broken |= result.is_err();
        result
    }

    fn drain_inner(&mut self) -> Result<Vec<RawPacket>, EncodeError> {
        self.send_eos()?;
        let mut packets = Vec::new();
        let mut backoff = Backoff::new();
        while !self.ended {
            match self.poll()? {
                Poll::Packet(p) => packets.push(p),
                Poll::Marker => {}
                Poll::Empty => backoff.wait("end of stream")?,
            }
        }
        Ok(packets)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.handle.is_null() {
            return;
        }
        if self.initialized && !self.ended && !self.broken {
            if let Err(e) = self.drain() {
                tracing::error!(error = %e, "SVT-AV1 instance did not end its stream");
            }
        }
        if self.broken {
            // Deinitialising now could hang the thread inside the library; leaking one broken
            // instance is the lesser harm.
            tracing::error!("leaking an SVT-AV1 instance that failed to end its stream");
            return;
        }
        // SAFETY: the handle came from init_handle and is released exactly once, here; deinit
        // only after a successful init. Errors cannot be reported from Drop.
        unsafe {
            if self.initialized {
                ffi::svt_av1_enc_deinit(self.handle);
            }
            ffi::svt_av1_enc_deinit_handle(self.handle);
        }
        self.handle = ptr::null_mut();
    }
}

/// AV1 encoder using the system SVT-AV1 library.
pub struct SvtEncoder {
    config: EncoderConfig,
    /// `None` only after [`Encoder::finish`].
    instance: Option<Instance>,
    /// Frames sent and not yet returned, oldest first: (number given to SVT, caller pts).
    queue: VecDeque<(i64, u64)>,
    /// Number of the next frame sent to the current instance.
    next_number: i64,
    /// The sequence header OBU of the stream; every keyframe must repeat it byte for byte.
    sequence_header: Option<Vec<u8>>,
}

// SAFETY: an SVT-AV1 handle is not bound to the thread that created it (the library runs its
// own worker threads and synchronises internally); this type only touches it through `&mut
// self` or in `Drop`, so it is never used from two threads at once. It is not `Sync`.
unsafe impl Send for SvtEncoder {}

impl std::fmt::Debug for SvtEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvtEncoder")
            .field("width", &self.config.width)
            .field("height", &self.config.height)
            .field("pending", &self.queue.len())
            .field("finished", &self.instance.is_none())
            .finish()
    }
}

impl SvtEncoder {
    /// Starts an encoder. See the module documentation for sizes and settings.
    pub fn new(config: &EncoderConfig) -> Result<Self, EncodeError> {
        let (w, h) = (config.width, config.height);
        if w % 2 != 0 || h % 2 != 0 || w < 64 || h < 64 || w > 16384 || h > 8704 {
            return Err(EncodeError::Config(format!(
                "SVT-AV1 needs even sizes from 64x64 to 16384x8704, got {w}x{h}"
            )));
        }
        check_abi()?;
        Ok(Self {
            config: config.clone(),
            instance: Some(Instance::start(config)?),
            queue: VecDeque::new(),
            next_number: 0,
            sequence_header: None,
        })
    }

    /// Maps a raw packet to the caller's frame: it must be the oldest one waiting.
    fn accept(&mut self, raw: RawPacket) -> Result<Packet, EncodeError> {
        let Some(&(expected, pts)) = self.queue.front() else {
            return Err(EncodeError::Backend(
                "SVT-AV1 returned a packet for no frame".into(),
            ));
        };
        if raw.number != expected {
            return Err(EncodeError::Backend(format!(
                "SVT-AV1 returned frame {} while frame {expected} was due",
                raw.number
            )));
        }
        self.queue.pop_front();
        let (data, has_sequence_header) = strip_temporal_delimiters(&raw.data)?;
        if raw.keyframe {
            let spans = obu_spans(&data)?;
            let header = spans
                .iter()
                .find(|s| s.kind == OBU_SEQUENCE_HEADER)
                .filter(|_| has_sequence_header)
                .map(|s| &data[s.start..s.end])
                .ok_or_else(|| {
                    EncodeError::Backend("SVT-AV1 keyframe without a sequence header".into())
                })?;
            match &self.sequence_header {
                None => self.sequence_header = Some(header.to_vec()),
                Some(first) if first.as_slice() == header => {}
                Some(_) => {
                    return Err(EncodeError::Backend(
                        "SVT-AV1 changed the sequence header mid-stream".into(),
                    ))
                }
            }
        }
        Ok(Packet {
            data,
            pts,
            keyframe: raw.keyframe,
        })
    }

    /// Ends the current instance and returns its remaining packets, mapped to the caller's.
    fn end_instance(&mut self) -> Result<Vec<Packet>, EncodeError> {
        let Some(mut instance) = self.instance.take() else {
            return Ok(Vec::new());
        };
        let raw = instance.drain()?;
        drop(instance);
        let mut packets = Vec::with_capacity(raw.len());
        for p in raw {
            // A black picture sent only to let an unused instance end has no caller frame.
            if p.number >= 0 {
                packets.push(self.accept(p)?);
            }
        }
        if !self.queue.is_empty() {
            return Err(EncodeError::Backend(format!(
                "SVT-AV1 ended the stream with {} frames missing",
                self.queue.len()
            )));
        }
        Ok(packets)
    }
}

/// Copies the filled part of an SVT-AV1 buffer.
///
/// # Safety
/// `header` must point to a live buffer header whose `p_buffer` holds `n_filled_len` bytes.
unsafe fn buffer_bytes(header: *const ffi::EbBufferHeaderType) -> Vec<u8> {
    let (data, len) = ((*header).p_buffer, (*header).n_filled_len as usize);
    if data.is_null() || len == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(data, len).to_vec()
    }
}

/// A buffer header with everything but `size` empty.
fn buffer_header() -> ffi::EbBufferHeaderType {
    ffi::EbBufferHeaderType {
        size: size_of::<ffi::EbBufferHeaderType>() as u32,
        p_buffer: ptr::null_mut(),
        n_filled_len: 0,
        n_alloc_len: 0,
        p_app_private: ptr::null_mut(),
        wrapper_ptr: ptr::null_mut(),
        n_tick_count: 0,
        dts: 0,
        pts: 0,
        qp: 0,
        pic_type: ffi::EB_AV1_INVALID_PICTURE,
        luma_sse: 0,
        cr_sse: 0,
        cb_sse: 0,
        flags: 0,
        luma_ssim: 0.0,
        cr_ssim: 0.0,
        cb_ssim: 0.0,
        metadata: ptr::null_mut(),
    }
}

impl Encoder for SvtEncoder {
    fn encode(
        &mut self,
        frame: &YuvFrame,
        pts: u64,
        force_keyframe: bool,
    ) -> Result<Vec<Packet>, EncodeError> {
        if self.instance.is_none() {
            return Err(EncodeError::Backend(
                "SVT-AV1 encoder already finished (or failed to restart)".into(),
            ));
        }
        check_frame(frame, self.config.width, self.config.height)?;
        let mut packets = Vec::new();
        let fresh = self.instance.as_ref().is_some_and(|i| i.sent == 0);
        if force_keyframe && !fresh {
            // SVT-AV1 1.4.1 cannot force a keyframe in low-delay mode, but the first picture of
            // an instance is always one: end this instance (its last packet comes out now) and
            // continue in a new one with the same settings, hence the same sequence header.
            packets.extend(self.end_instance()?);
            self.instance = Some(Instance::start(&self.config)?);
            self.next_number = 0;
        }
        let number = self.next_number;
        let instance = self
            .instance
            .as_mut()
            .ok_or_else(|| EncodeError::Backend("SVT-AV1 instance missing".into()))?;
        instance.send(frame, number)?;
        self.next_number += 1;
        self.queue.push_back((number, pts));

        // Wait for every earlier frame (SVT-AV1 releases a packet once the next picture is in),
        // then take whatever else is ready without waiting.
        let mut backoff = Backoff::new();
        loop {
            let waiting_for_older = self.queue.front().is_some_and(|&(n, _)| n != number);
            let polled = match self.instance.as_mut() {
                Some(instance) => instance.poll()?,
                None => Poll::Empty,
            };
            match polled {
                Poll::Packet(raw) => packets.push(self.accept(raw)?),
                Poll::Marker => {}
                Poll::Empty if waiting_for_older => backoff.wait("packet")?,
                Poll::Empty => break,
            }
        }
        Ok(packets)
    }

    fn pending(&self) -> usize {
        self.queue.len()
    }

    fn finish(&mut self) -> Result<Vec<Packet>, EncodeError> {
        self.end_instance()
    }

    fn kind(&self) -> EncoderKind {
        EncoderKind::SvtAv1
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{conformance, measure_fps, synthetic_frame};
    use super::*;

    fn assert_layout(
        index: u32,
        name: &str,
        rust_size: usize,
        rust: Vec<(&'static str, usize, usize)>,
    ) {
        let (c_size, c) = ffi::probe(index);
        assert_eq!(c_size, rust_size, "sizeof({name})");
        let rust: Vec<(String, usize, usize)> = rust
            .into_iter()
            .map(|(n, o, s)| (n.to_string(), o, s))
            .collect();
        for (i, (r, c)) in rust.iter().zip(&c).enumerate() {
            assert_eq!(r, c, "{name} field {i}: Rust (name, offset, size) vs C");
        }
        assert_eq!(rust.len(), c.len(), "{name} field count");
    }

    #[test]
    fn encoder_svt_ffi_layout_matches_c_headers() {
        use std::mem::size_of;
        assert_layout(
            0,
            "EbSvtAv1EncConfiguration",
            size_of::<ffi::EbSvtAv1EncConfiguration>(),
            ffi::EbSvtAv1EncConfiguration::fields(),
        );
        assert_layout(
            1,
            "EbBufferHeaderType",
            size_of::<ffi::EbBufferHeaderType>(),
            ffi::EbBufferHeaderType::fields(),
        );
        assert_layout(
            2,
            "EbSvtIOFormat",
            size_of::<ffi::EbSvtIOFormat>(),
            ffi::EbSvtIOFormat::fields(),
        );
        assert_layout(
            3,
            "EbSvtAv1MasteringDisplayInfo",
            size_of::<ffi::EbSvtAv1MasteringDisplayInfo>(),
            ffi::EbSvtAv1MasteringDisplayInfo::fields(),
        );
        assert_layout(
            4,
            "EbContentLightLevel",
            size_of::<ffi::EbContentLightLevel>(),
            ffi::EbContentLightLevel::fields(),
        );
        assert_layout(
            5,
            "SvtAv1FixedBuf",
            size_of::<ffi::SvtAv1FixedBuf>(),
            ffi::SvtAv1FixedBuf::fields(),
        );
        assert_layout(
            6,
            "PredictionStructureConfigEntry",
            size_of::<ffi::PredictionStructureConfigEntry>(),
            ffi::PredictionStructureConfigEntry::fields(),
        );
        assert_eq!(
            ffi::probe(7),
            (0, Vec::new()),
            "probe has exactly 7 structs"
        );
        check_abi().expect("ABI check passes on the build machine");
    }

    #[test]
    fn encoder_svt_conformance_320x240() {
        conformance(EncoderKind::SvtAv1, 320, 240);
    }

    #[test]
    fn encoder_svt_conformance_1280x720() {
        conformance(EncoderKind::SvtAv1, 1280, 720);
    }

    #[test]
    fn encoder_svt_rejects_bad_sizes() {
        for (w, h) in [(62, 64), (64, 62), (65, 64), (16386, 64)] {
            let config = EncoderConfig::for_size(EncoderKind::SvtAv1, w, h);
            assert!(
                matches!(SvtEncoder::new(&config), Err(EncodeError::Config(_))),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn encoder_svt_lifecycle_one_frame_behind() {
        let config = EncoderConfig::for_size(EncoderKind::SvtAv1, 64, 64);
        // Dropped unused and dropped mid-stream: both must tear down without hanging.
        drop(SvtEncoder::new(&config).unwrap());
        {
            let mut enc = SvtEncoder::new(&config).unwrap();
            assert!(enc
                .encode(&synthetic_frame(64, 64, 0), 0, false)
                .unwrap()
                .is_empty());
            assert_eq!(enc.pending(), 1);
        }
        let mut enc = SvtEncoder::new(&config).unwrap();
        for i in 0..4u32 {
            let out = enc
                .encode(&synthetic_frame(64, 64, i), u64::from(i) * 10, false)
                .unwrap();
            let want: Vec<u64> = if i == 0 {
                vec![]
            } else {
                vec![u64::from(i - 1) * 10]
            };
            assert_eq!(
                out.iter().map(|p| p.pts).collect::<Vec<_>>(),
                want,
                "frame {i}"
            );
            assert_eq!(enc.pending(), 1, "one frame held back");
        }
        let last = enc.finish().unwrap();
        assert_eq!(last.iter().map(|p| p.pts).collect::<Vec<_>>(), vec![30]);
        assert!(enc.finish().unwrap().is_empty());
        assert!(
            enc.encode(&synthetic_frame(64, 64, 0), 99, false).is_err(),
            "finished"
        );
    }

    #[test]
    fn encoder_svt_forced_keyframes_back_to_back() {
        let config = EncoderConfig::for_size(EncoderKind::SvtAv1, 64, 64);
        let mut enc = SvtEncoder::new(&config).unwrap();
        let mut packets = Vec::new();
        for (i, force) in [true, true, true, false, true].into_iter().enumerate() {
            packets.extend(
                enc.encode(&synthetic_frame(64, 64, i as u32), i as u64, force)
                    .unwrap(),
            );
        }
        packets.extend(enc.finish().unwrap());
        assert_eq!(
            packets.iter().map(|p| p.pts).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            packets.iter().map(|p| p.keyframe).collect::<Vec<_>>(),
            vec![true, true, true, false, true]
        );
    }

    #[test]
    #[ignore = "speed measurement; run with --ignored --nocapture"]
    fn encoder_svt_speed_720p() {
        let fps = measure_fps(EncoderKind::SvtAv1, 60);
        println!("SVT-AV1 1280x720: {fps:.1} frames/s");
    }
}
