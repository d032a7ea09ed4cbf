//! The AV1 encoder interface and its backends.
//!
//! Every backend takes 8-bit 4:2:0 [`YuvFrame`]s (BT.709, limited range) in display order and
//! returns [`Packet`]s: one temporal unit each, with the temporal-delimiter OBU removed (as CMAF
//! wants), keyframes carrying the sequence header. Backends run in low-delay mode with no frame
//! reordering, so packets come out in the order frames went in, one per frame. They may hold a
//! few frames back (rav1e 4, SVT-AV1 1; see [`Encoder::pending`]) until later frames arrive or
//! [`Encoder::finish`] drains them. Keyframes happen on the first frame and where the caller
//! forces them, never on the encoder's own initiative.

use crate::yuv::YuvFrame;
use serde::{Deserialize, Serialize};

pub mod rav1e_backend;
#[cfg(feature = "svt-av1")]
pub mod svt;

/// Which AV1 implementation encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderKind {
    /// SVT-AV1 through the system library (cargo feature `svt-av1`).
    SvtAv1,
    /// rav1e, pure Rust, always built.
    Rav1e,
}

impl EncoderKind {
    /// The backend this build prefers: SVT-AV1 when compiled in (it measured faster, smaller and
    /// sharper on the standard workload, see BENCHMARKS.md), rav1e otherwise.
    pub fn preferred() -> Self {
        if cfg!(feature = "svt-av1") {
            EncoderKind::SvtAv1
        } else {
            EncoderKind::Rav1e
        }
    }

    /// Short stable name, as used in config and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            EncoderKind::SvtAv1 => "svt-av1",
            EncoderKind::Rav1e => "rav1e",
        }
    }
}

/// Settings common to every backend.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Coded width in pixels (even).
    pub width: u32,
    /// Coded height in pixels (even).
    pub height: u32,
    /// Quantizer, 0 (best) to 63 (smallest); mapped to each backend's own scale.
    pub quantizer: u8,
    /// Speed: rav1e speed 0–10, SVT-AV1 preset 0–13.
    pub speed: u8,
    /// Worker threads the encoder may use (0 = backend default).
    pub threads: usize,
}

impl EncoderConfig {
    /// Defaults for screen content at a given size.
    pub fn for_size(kind: EncoderKind, width: u32, height: u32) -> Self {
        let (quantizer, speed) = match kind {
            EncoderKind::SvtAv1 => (44, 11),
            EncoderKind::Rav1e => (40, 10),
        };
        Self {
            width,
            height,
            quantizer,
            speed,
            threads: 1,
        }
    }
}

/// One encoded temporal unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// OBUs of the temporal unit (no temporal delimiter), low-overhead format with sizes.
    pub data: Vec<u8>,
    /// Presentation time in milliseconds, as given to [`Encoder::encode`].
    pub pts: u64,
    /// True for a keyframe (random access point).
    pub keyframe: bool,
}

/// Encoder failures. Messages never contain pixel data.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The backend rejected its configuration.
    #[error("encoder configuration rejected: {0}")]
    Config(String),
    /// The backend failed while encoding.
    #[error("encoder failed: {0}")]
    Backend(String),
    /// The frame does not match the configured size.
    #[error("frame is {got_w}x{got_h}, encoder expects {want_w}x{want_h}")]
    FrameSize {
        /// Frame width.
        got_w: u32,
        /// Frame height.
        got_h: u32,
        /// Configured width.
        want_w: u32,
        /// Configured height.
        want_h: u32,
    },
    /// The requested backend is not compiled into this build.
    #[error("encoder {0} is not available in this build")]
    Unavailable(&'static str),
}

/// An AV1 encoder in low-delay mode.
pub trait Encoder: Send {
    /// Encodes `frame` shown at `pts` ms. Returns every packet that became ready, in order;
    /// possibly none when the backend holds frames internally (see [`Encoder::pending`]).
    fn encode(
        &mut self,
        frame: &YuvFrame,
        pts: u64,
        force_keyframe: bool,
    ) -> Result<Vec<Packet>, EncodeError>;

    /// Frames sent whose packets have not come out yet.
    fn pending(&self) -> usize;

    /// Ends the stream and returns the remaining packets. The encoder is unusable afterwards.
    fn finish(&mut self) -> Result<Vec<Packet>, EncodeError>;

    /// Which backend this is.
    fn kind(&self) -> EncoderKind;
}

/// The backends compiled into this build, preferred first.
pub fn available() -> Vec<EncoderKind> {
    let mut kinds = Vec::with_capacity(2);
    if cfg!(feature = "svt-av1") {
        kinds.push(EncoderKind::SvtAv1);
    }
    kinds.push(EncoderKind::Rav1e);
    kinds
}

/// The coded size a backend needs for a `width`×`height` screen.
///
/// The recorder pads frames to this size (with black, see [`YuvFrame::black`]) before encoding.
/// Every backend needs even sizes (4:2:0). rav1e accepts even sizes from 16×16 up, SVT-AV1 1.4
/// even sizes from 64×64 up; neither needs multiples of 8 (both pad internally and signal the
/// exact size, so decoders show exactly `width`×`height`). Screens smaller than the minimum get
/// black borders right and bottom.
pub fn padded_size(kind: EncoderKind, width: u32, height: u32) -> (u32, u32) {
    let min = match kind {
        EncoderKind::Rav1e => 16,
        EncoderKind::SvtAv1 => 64,
    };
    // Saturating: absurd sizes stay absurd (and the backend rejects them) instead of wrapping.
    let even = |v: u32| v.max(min).min(u32::MAX - 1).saturating_add(1) & !1;
    (even(width), even(height))
}

/// Checks that `frame` has the configured size and consistent plane lengths.
pub(crate) fn check_frame(frame: &YuvFrame, width: u32, height: u32) -> Result<(), EncodeError> {
    if frame.width != width || frame.height != height {
        return Err(EncodeError::FrameSize {
            got_w: frame.width,
            got_h: frame.height,
            want_w: width,
            want_h: height,
        });
    }
    let luma = width as usize * height as usize;
    let chroma = (width as usize / 2) * (height as usize / 2);
    if frame.y.len() != luma || frame.u.len() != chroma || frame.v.len() != chroma {
        return Err(EncodeError::Backend(format!(
            "frame planes hold {}/{}/{} bytes, {width}x{height} 4:2:0 needs {luma}/{chroma}/{chroma}",
            frame.y.len(),
            frame.u.len(),
            frame.v.len()
        )));
    }
    Ok(())
}

/// OBU type of a sequence header (AV1 specification, section 6.2.2).
pub(crate) const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter.
pub(crate) const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// One OBU inside a buffer of low-overhead-format OBUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObuSpan {
    /// `obu_type` from the OBU header.
    pub kind: u8,
    /// Byte offset of the OBU header.
    pub start: usize,
    /// Byte offset just past the OBU payload.
    pub end: usize,
}

/// Splits encoder output into OBUs. Fails on truncated or malformed headers, which would mean
/// the backend produced something other than the low-overhead bitstream format.
pub(crate) fn obu_spans(data: &[u8]) -> Result<Vec<ObuSpan>, EncodeError> {
    let bad =
        |what: &str, at: usize| EncodeError::Backend(format!("malformed OBU at byte {at}: {what}"));
    let mut spans = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let header = data[pos];
        if header & 0x80 != 0 {
            return Err(bad("forbidden bit set", pos));
        }
        let kind = (header >> 3) & 0x0f;
        let has_extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut cursor = pos + 1 + usize::from(has_extension);
        if cursor > data.len() {
            return Err(bad("truncated header", pos));
        }
        let end = if has_size {
            let mut size: u64 = 0;
            let mut i = 0;
            loop {
                let byte = *data.get(cursor).ok_or_else(|| bad("truncated size", pos))?;
                cursor += 1;
                size |= u64::from(byte & 0x7f) << (7 * i);
                i += 1;
                if byte & 0x80 == 0 {
                    break;
                }
                if i == 8 {
                    return Err(bad("size field too long", pos));
                }
            }
            usize::try_from(size)
                .ok()
                .and_then(|s| cursor.checked_add(s))
                .filter(|&e| e <= data.len())
                .ok_or_else(|| bad("payload runs past the end", pos))?
        } else {
            data.len()
        };
        spans.push(ObuSpan {
            kind,
            start: pos,
            end,
        });
        pos = end;
    }
    Ok(spans)
}

/// Removes temporal-delimiter OBUs and reports whether a sequence header is present.
pub(crate) fn strip_temporal_delimiters(data: &[u8]) -> Result<(Vec<u8>, bool), EncodeError> {
    let spans = obu_spans(data)?;
    let mut out = Vec::with_capacity(data.len());
    let mut has_sequence_header = false;
    for span in spans {
        match span.kind {
            OBU_TEMPORAL_DELIMITER => {}
            kind => {
                has_sequence_header |= kind == OBU_SEQUENCE_HEADER;
                out.extend_from_slice(&data[span.start..span.end]);
            }
        }
    }
    Ok((out, has_sequence_header))
}

/// Creates an encoder of the given kind.
pub fn create(kind: EncoderKind, config: &EncoderConfig) -> Result<Box<dyn Encoder>, EncodeError> {
    match kind {
        EncoderKind::Rav1e => Ok(Box::new(rav1e_backend::Rav1eEncoder::new(config)?)),
        #[cfg(feature = "svt-av1")]
        EncoderKind::SvtAv1 => Ok(Box::new(svt::SvtEncoder::new(config)?)),
        #[cfg(not(feature = "svt-av1"))]
        EncoderKind::SvtAv1 => Err(EncodeError::Unavailable("svt-av1")),
    }
}

/// Shared checks every backend's tests run: synthetic input, IVF output, decoding with ffmpeg
/// (libdav1d) and PSNR against the input.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::process::Command;

    /// A gradient background with a band of text-like detail and a rectangle that moves with
    /// `index`.
    pub fn synthetic_frame(width: u32, height: u32, index: u32) -> YuvFrame {
        let mut f = YuvFrame::black(width, height);
        let (w, h) = (width as usize, height as usize);
        let (rx, ry) = (
            (index as usize * 7) % (w / 2),
            (index as usize * 5) % (h / 2),
        );
        let (rw, rh) = (w / 4, h / 4);
        for y in 0..h {
            for x in 0..w {
                let inside = x >= rx && x < rx + rw && y >= ry && y < ry + rh;
                // A band of text-like high-contrast 2x2 cells near the bottom.
                let text =
                    y >= h * 3 / 4 && y < h * 3 / 4 + 16 && (x / 2 * 31 + y / 2 * 17) % 5 < 2;
                f.y[y * w + x] = if inside {
                    220
                } else if text {
                    235
                } else {
                    (16 + (x * 200) / w) as u8
                };
            }
        }
        for y in 0..h / 2 {
            for x in 0..w / 2 {
                let inside = x * 2 >= rx && x * 2 < rx + rw && y * 2 >= ry && y * 2 < ry + rh;
                f.u[y * (w / 2) + x] = if inside {
                    90
                } else {
                    (64 + (y * 256) / h) as u8
                };
                f.v[y * (w / 2) + x] = if inside { 200 } else { 128 };
            }
        }
        f
    }

    /// Writes packets as an IVF file (timebase 1/1000, so `pts` are milliseconds).
    pub fn write_ivf(path: &Path, width: u32, height: u32, packets: &[Packet]) {
        let mut out = Vec::new();
        out.extend_from_slice(b"DKIF");
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&32u16.to_le_bytes());
        out.extend_from_slice(b"AV01");
        out.extend_from_slice(&(width as u16).to_le_bytes());
        out.extend_from_slice(&(height as u16).to_le_bytes());
        out.extend_from_slice(&1000u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(packets.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for p in packets {
            out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&p.pts.to_le_bytes());
            out.extend_from_slice(&p.data);
        }
        let mut file = std::fs::File::create(path).expect("create ivf");
        file.write_all(&out).expect("write ivf");
    }

    /// Decodes an IVF file with ffmpeg + libdav1d into frames. ffmpeg is a test requirement.
    pub fn decode_ivf(path: &Path, width: u32, height: u32) -> Vec<YuvFrame> {
        let output = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-c:v",
                "libdav1d",
                "-f",
                "ivf",
                "-i",
            ])
            .arg(path)
            .args([
                "-fps_mode",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-",
            ])
            .output()
            .expect("ffmpeg (with libdav1d) is required to run the encoder tests");
        assert!(
            output.status.success(),
            "ffmpeg failed to decode: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (luma, chroma) = ((width * height) as usize, (width * height / 4) as usize);
        let frame_len = luma + 2 * chroma;
        assert_eq!(
            output.stdout.len() % frame_len,
            0,
            "decoded size is not whole frames"
        );
        output
            .stdout
            .chunks(frame_len)
            .map(|c| YuvFrame {
                width,
                height,
                y: c[..luma].to_vec(),
                u: c[luma..luma + chroma].to_vec(),
                v: c[luma + chroma..].to_vec(),
            })
            .collect()
    }

    /// PSNR over all three planes, in dB (capped at 100 for identical frames).
    pub fn psnr(a: &YuvFrame, b: &YuvFrame) -> f64 {
        let mut sse = 0f64;
        let mut n = 0usize;
        for (pa, pb) in [(&a.y, &b.y), (&a.u, &b.u), (&a.v, &b.v)] {
            assert_eq!(pa.len(), pb.len());
            sse += pa
                .iter()
                .zip(pb.iter())
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum::<f64>();
            n += pa.len();
        }
        if sse == 0.0 {
            return 100.0;
        }
        10.0 * (255.0f64 * 255.0 * n as f64 / sse).log10()
    }

    fn obu_kinds(data: &[u8]) -> Vec<u8> {
        obu_spans(data)
            .expect("packet parses as OBUs")
            .iter()
            .map(|s| s.kind)
            .collect()
    }

    /// Encodes 20 frames (keyframe forced at frame 10) and checks order, pts, keyframes, OBUs,
    /// size errors, `pending()` bookkeeping and that ffmpeg decodes the result at ≥ 35 dB.
    pub fn conformance(kind: EncoderKind, width: u32, height: u32) {
        const FRAMES: u32 = 20;
        const FORCED: usize = 10;
        let config = EncoderConfig::for_size(kind, width, height);
        let mut encoder = create(kind, &config).expect("encoder starts");
        assert_eq!(encoder.kind(), kind);
        let frames: Vec<YuvFrame> = (0..FRAMES)
            .map(|i| synthetic_frame(width, height, i))
            .collect();
        // Irregular timestamps, as a screen recorder produces.
        let pts: Vec<u64> = (0..FRAMES as u64)
            .map(|i| 1000 + i * 40 + (i % 3) * 7)
            .collect();
        let mut packets = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let out = encoder.encode(frame, pts[i], i == FORCED).expect("encode");
            packets.extend(out);
            assert_eq!(
                encoder.pending(),
                i + 1 - packets.len(),
                "pending() after frame {i}"
            );
            if i == 5 {
                let wrong = YuvFrame::black(width + 2, height);
                match encoder.encode(&wrong, 1, false) {
                    Err(EncodeError::FrameSize { got_w, want_w, .. }) => {
                        assert_eq!((got_w, want_w), (width + 2, width))
                    }
                    other => panic!("wrong-size frame accepted: {other:?}"),
                }
                assert_eq!(
                    encoder.pending(),
                    i + 1 - packets.len(),
                    "a rejected frame is not pending"
                );
            }
        }
        packets.extend(encoder.finish().expect("finish"));
        assert_eq!(encoder.pending(), 0);
        assert_eq!(packets.len(), FRAMES as usize, "one packet per frame");
        assert_eq!(
            packets.iter().map(|p| p.pts).collect::<Vec<_>>(),
            pts,
            "pts in input order"
        );
        let keyframes: Vec<usize> = packets
            .iter()
            .enumerate()
            .filter(|(_, p)| p.keyframe)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            keyframes,
            vec![0, FORCED],
            "keyframes only where the caller asked (and first)"
        );
        let first_header = obu_spans(&packets[0].data).expect("OBUs")[0];
        let first_header = &packets[0].data[first_header.start..first_header.end];
        for (i, p) in packets.iter().enumerate() {
            let spans = obu_spans(&p.data).expect("packet parses as OBUs");
            if p.keyframe {
                let header = &p.data[spans[0].start..spans[0].end];
                assert_eq!(header, first_header, "packet {i}: sequence header changed");
            }
            let kinds = obu_kinds(&p.data);
            assert!(
                !kinds.contains(&OBU_TEMPORAL_DELIMITER),
                "packet {i} has a temporal delimiter"
            );
            assert_eq!(
                kinds.first() == Some(&OBU_SEQUENCE_HEADER),
                p.keyframe,
                "packet {i}: sequence header first exactly on keyframes, OBUs {kinds:?}"
            );
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let all = dir.path().join("all.ivf");
        write_ivf(&all, width, height, &packets);
        let decoded = decode_ivf(&all, width, height);
        assert_eq!(
            decoded.len(),
            frames.len(),
            "every packet decodes to a frame"
        );
        for (i, (d, f)) in decoded.iter().zip(&frames).enumerate() {
            let db = psnr(d, f);
            assert!(db >= 35.0, "frame {i} PSNR {db:.1} dB < 35 dB");
            if let Some(next) = frames.get(i + 1) {
                // The threshold tells frames apart: the next input is far below it.
                assert!(psnr(d, next) < 35.0, "frames {i} and {} look alike", i + 1);
            }
        }
        // The sequence header signals BT.709, limited range.
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=color_range,color_space,color_transfer,color_primaries"])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(&all)
            .output()
            .expect("ffprobe is required to run the encoder tests");
        let probe = String::from_utf8_lossy(&probe.stdout);
        for want in [
            "color_range=tv",
            "color_space=bt709",
            "color_transfer=bt709",
            "color_primaries=bt709",
        ] {
            assert!(
                probe.lines().any(|l| l == want),
                "{want} missing in {probe}"
            );
        }
        // The forced keyframe is a real random access point: decoding can start there.
        let tail = dir.path().join("tail.ivf");
        write_ivf(&tail, width, height, &packets[FORCED..]);
        let decoded = decode_ivf(&tail, width, height);
        assert_eq!(decoded.len(), frames.len() - FORCED);
        for (d, f) in decoded.iter().zip(&frames[FORCED..]) {
            assert!(psnr(d, f) >= 35.0, "decoding from the forced keyframe");
        }
    }

    /// Encodes `frames` 1280x720 frames and returns frames per second (wall clock).
    pub fn measure_fps(kind: EncoderKind, frames: u32) -> f64 {
        let (width, height) = (1280, 720);
        let config = EncoderConfig::for_size(kind, width, height);
        let mut encoder = create(kind, &config).expect("encoder starts");
        let input: Vec<YuvFrame> = (0..frames)
            .map(|i| synthetic_frame(width, height, i))
            .collect();
        let start = std::time::Instant::now();
        let mut count = 0;
        for (i, frame) in input.iter().enumerate() {
            count += encoder
                .encode(frame, i as u64 * 33, i == 0)
                .expect("encode")
                .len();
        }
        count += encoder.finish().expect("finish").len();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(count, frames as usize);
        f64::from(frames) / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_obu_split_and_strip() {
        // TD (no payload), sequence header with 2 payload bytes, frame OBU with 1 byte.
        let data = [0x12, 0x00, 0x0a, 0x02, 0xaa, 0xbb, 0x32, 0x01, 0xcc];
        let spans = obu_spans(&data).unwrap();
        assert_eq!(
            spans.iter().map(|s| s.kind).collect::<Vec<_>>(),
            vec![2, 1, 6]
        );
        let (out, seq) = strip_temporal_delimiters(&data).unwrap();
        assert_eq!(out, &data[2..]);
        assert!(seq);
        assert!(
            obu_spans(&[0x32, 0x05, 0x00]).is_err(),
            "payload past the end"
        );
        assert!(obu_spans(&[0x92, 0x00]).is_err(), "forbidden bit");
        assert!(obu_spans(&[0x32, 0x80]).is_err(), "truncated size");
    }

    #[test]
    fn encoder_sizes_not_multiple_of_8_round_trip() {
        for kind in available() {
            test_support::conformance(kind, 330, 250);
        }
    }

    #[test]
    fn encoder_padded_sizes_and_availability() {
        assert_eq!(padded_size(EncoderKind::Rav1e, 1279, 719), (1280, 720));
        assert_eq!(padded_size(EncoderKind::Rav1e, 4, 4), (16, 16));
        assert_eq!(padded_size(EncoderKind::SvtAv1, 1366, 767), (1366, 768));
        assert_eq!(padded_size(EncoderKind::SvtAv1, 32, 700), (64, 700));
        assert_eq!(
            padded_size(EncoderKind::SvtAv1, u32::MAX, 0),
            (u32::MAX - 1, 64)
        );
        let kinds = available();
        assert_eq!(kinds.first(), Some(&EncoderKind::preferred()));
        assert!(kinds.contains(&EncoderKind::Rav1e));
        assert_eq!(
            kinds.contains(&EncoderKind::SvtAv1),
            cfg!(feature = "svt-av1")
        );
    }
}
