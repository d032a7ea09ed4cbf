//! rav1e backend: pure Rust, always built.
//!
//! rav1e runs in low-latency mode (no frame reordering, every frame shown in order), with scene
//! detection off and an effectively infinite keyframe interval: keyframes happen only on the
//! first frame and where the caller forces them. The sequence header signals BT.709 colour in
//! limited range.
//!
//! # Buffering
//!
//! rav1e cannot emit a frame before it has seen some frames after it, even in low-latency mode:
//! its frame-type lookahead reads three frames past the one it codes next (its RDO lookahead is
//! set to the minimum, one frame, which falls inside that window). So it holds the newest
//! [`LOOKAHEAD_FRAMES`] (4) frames: after `n` calls to [`Encoder::encode`], exactly
//! `n - 4` packets have come out, [`Encoder::pending`] stays at 4 in steady state (one packet
//! per call), and [`Encoder::finish`] returns the rest. Every call returns every packet rav1e
//! has ready. At 10 frames/s that is 400 ms of latency, which only delays fragment writing.

use super::{
    check_frame, strip_temporal_delimiters, EncodeError, Encoder, EncoderConfig, EncoderKind,
    Packet,
};
use crate::yuv::YuvFrame;
use rav1e::prelude as ra;

/// Frames rav1e holds back before the packet of the oldest one comes out (steady state).
pub const LOOKAHEAD_FRAMES: usize = 4;

/// Maps the common 0–63 quantizer to rav1e's 0–255 scale (rounded to nearest).
fn rav1e_quantizer(q: u8) -> usize {
    (usize::from(q.min(63)) * 255 + 31) / 63
}

/// AV1 encoder using rav1e.
pub struct Rav1eEncoder {
    ctx: ra::Context<u8>,
    width: u32,
    height: u32,
    /// Frames accepted by rav1e.
    sent: usize,
    /// Packets handed back to the caller.
    returned: usize,
    finished: bool,
}

impl std::fmt::Debug for Rav1eEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rav1eEncoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("sent", &self.sent)
            .field("returned", &self.returned)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Rav1eEncoder {
    /// Starts an encoder. Sizes must be even and at least 16×16 (see
    /// [`super::padded_size`]); `speed` is rav1e's 0–10 (values above 10 act as 10).
    pub fn new(config: &EncoderConfig) -> Result<Self, EncodeError> {
        let (w, h) = (config.width, config.height);
        if w % 2 != 0 || h % 2 != 0 || w < 16 || h < 16 || w > 16384 || h > 16384 {
            return Err(EncodeError::Config(format!(
                "rav1e needs even sizes from 16x16 to 16384x16384, got {w}x{h}"
            )));
        }
        let mut enc = ra::EncoderConfig::with_speed_preset(config.speed.min(10));
        enc.width = w as usize;
        enc.height = h as usize;
        enc.bit_depth = 8;
        enc.chroma_sampling = ra::ChromaSampling::Cs420;
        enc.pixel_range = ra::PixelRange::Limited;
        enc.color_description = Some(ra::ColorDescription {
            color_primaries: ra::ColorPrimaries::BT709,
            transfer_characteristics: ra::TransferCharacteristics::BT709,
            matrix_coefficients: ra::MatrixCoefficients::BT709,
        });
        // Nominal rate; only used for rate control, which is off (constant quantizer).
        enc.time_base = ra::Rational { num: 1, den: 30 };
        enc.still_picture = false;
        enc.low_latency = true;
        enc.quantizer = rav1e_quantizer(config.quantizer);
        enc.bitrate = 0;
        // 0 means "no maximum": keyframes only when forced (and the first frame).
        enc.set_key_frame_interval(0, 0);
        enc.speed_settings.rdo_lookahead_frames = 1;
        enc.speed_settings.scene_detection_mode = ra::SceneDetectionSpeed::None;
        if config.threads > 1 {
            enc.tiles = config.threads;
        }
        let ctx = ra::Config::new()
            .with_encoder_config(enc)
            .with_threads(config.threads)
            .new_context::<u8>()
            .map_err(|e| EncodeError::Config(format!("rav1e: {e}")))?;
        Ok(Self {
            ctx,
            width: w,
            height: h,
            sent: 0,
            returned: 0,
            finished: false,
        })
    }

    /// Collects every packet rav1e has ready.
    fn drain(&mut self) -> Result<Vec<Packet>, EncodeError> {
        let mut out = Vec::new();
        loop {
            match self.ctx.receive_packet() {
                Ok(packet) => {
                    out.push(convert(packet)?);
                    self.returned += 1;
                }
                // A frame was encoded but produced no packet yet; ask again.
                Err(ra::EncoderStatus::Encoded) => {}
                Err(ra::EncoderStatus::NeedMoreData) | Err(ra::EncoderStatus::LimitReached) => {
                    return Ok(out)
                }
                Err(e) => return Err(EncodeError::Backend(format!("rav1e: {e}"))),
            }
        }
    }
}

/// Turns a rav1e packet into ours: pts from the frame's opaque data, no temporal delimiter.
fn convert(packet: ra::Packet<u8>) -> Result<Packet, EncodeError> {
    let pts = packet
        .opaque
        .and_then(|o| o.downcast::<u64>().ok())
        .map(|b| *b)
        .ok_or_else(|| {
            EncodeError::Backend(format!(
                "rav1e packet for input frame {} lost its timestamp",
                packet.input_frameno
            ))
        })?;
    let keyframe = packet.frame_type == ra::FrameType::KEY;
    let (data, has_sequence_header) = strip_temporal_delimiters(&packet.data)?;
    if keyframe && !has_sequence_header {
        return Err(EncodeError::Backend(
            "rav1e keyframe without a sequence header".into(),
        ));
    }
    Ok(Packet {
        data,
        pts,
        keyframe,
    })
}

impl Encoder for Rav1eEncoder {
    fn encode(
        &mut self,
        frame: &YuvFrame,
        pts: u64,
        force_keyframe: bool,
    ) -> Result<Vec<Packet>, EncodeError> {
        if self.finished {
            return Err(EncodeError::Backend(
                "rav1e encoder already finished".into(),
            ));
        }
        check_frame(frame, self.width, self.height)?;
        let mut input = self.ctx.new_frame();
        let (w, cw) = (self.width as usize, self.width as usize / 2);
        input.planes[0].copy_from_raw_u8(&frame.y, w, 1);
        input.planes[1].copy_from_raw_u8(&frame.u, cw, 1);
        input.planes[2].copy_from_raw_u8(&frame.v, cw, 1);
        let params = ra::FrameParameters {
            frame_type_override: if force_keyframe {
                ra::FrameTypeOverride::Key
            } else {
                ra::FrameTypeOverride::No
            },
            opaque: Some(ra::Opaque::new(pts)),
            t35_metadata: Box::new([]),
        };
        self.ctx
            .send_frame((input, params))
            .map_err(|e| EncodeError::Backend(format!("rav1e refused a frame: {e}")))?;
        self.sent += 1;
        self.drain()
    }

    fn pending(&self) -> usize {
        self.sent - self.returned
    }

    fn finish(&mut self) -> Result<Vec<Packet>, EncodeError> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.finished = true;
        self.ctx.flush();
        let out = self.drain()?;
        if self.pending() != 0 {
            return Err(EncodeError::Backend(format!(
                "rav1e finished with {} frames unaccounted for",
                self.pending()
            )));
        }
        Ok(out)
    }

    fn kind(&self) -> EncoderKind {
        EncoderKind::Rav1e
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{conformance, measure_fps, synthetic_frame};
    use super::*;

    #[test]
    fn encoder_rav1e_quantizer_mapping() {
        assert_eq!(rav1e_quantizer(0), 0);
        assert_eq!(rav1e_quantizer(63), 255);
        assert_eq!(rav1e_quantizer(200), 255);
        assert_eq!(rav1e_quantizer(40), 162);
    }

    #[test]
    fn encoder_rav1e_conformance_320x240() {
        conformance(EncoderKind::Rav1e, 320, 240);
    }

    #[test]
    fn encoder_rav1e_conformance_1280x720() {
        conformance(EncoderKind::Rav1e, 1280, 720);
    }

    #[test]
    fn encoder_rav1e_buffering_is_as_documented() {
        let config = EncoderConfig::for_size(EncoderKind::Rav1e, 64, 64);
        let mut enc = Rav1eEncoder::new(&config).unwrap();
        let mut out = 0;
        for i in 0..12u32 {
            out += enc
                .encode(&synthetic_frame(64, 64, i), u64::from(i), false)
                .unwrap()
                .len();
            let sent = i as usize + 1;
            assert_eq!(
                out,
                sent.saturating_sub(LOOKAHEAD_FRAMES),
                "after {sent} frames"
            );
            assert_eq!(enc.pending(), sent.min(LOOKAHEAD_FRAMES));
        }
        assert_eq!(enc.finish().unwrap().len(), LOOKAHEAD_FRAMES);
        assert!(
            enc.encode(&synthetic_frame(64, 64, 0), 99, false).is_err(),
            "finished"
        );
        assert!(enc.finish().unwrap().is_empty());
    }

    #[test]
    fn encoder_rav1e_rejects_bad_config() {
        for (w, h) in [(15, 16), (8, 8), (321, 240)] {
            let config = EncoderConfig::for_size(EncoderKind::Rav1e, w, h);
            assert!(
                matches!(Rav1eEncoder::new(&config), Err(EncodeError::Config(_))),
                "{w}x{h}"
            );
        }
    }

    #[test]
    #[ignore = "speed measurement; run with --ignored --nocapture"]
    fn encoder_rav1e_speed_720p() {
        let fps = measure_fps(EncoderKind::Rav1e, 60);
        println!("rav1e 1280x720: {fps:.1} frames/s");
    }
}
