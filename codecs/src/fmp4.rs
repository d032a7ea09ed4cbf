//! Fragmented MP4 (CMAF-style) writer for one AV1 video track, sans-I/O.
//!
//! Output layout (see `docs/recording-format.md`):
//!
//! ```text
//! init.mp4     ftyp moov                      <- init_segment()
//! 000001.m4s   styp                           <- segment_header()
//!              moof mdat  moof mdat  ...      <- fragment(), appended as the recording goes
//! ```
//!
//! The boxes are written by hand instead of through a general MP4 library because the recorder
//! needs byte-exact control over each piece it emits: every init segment, segment header and
//! fragment is a self-contained byte range that is hashed into the recording's hash chain and
//! flushed to storage on its own, and one segment file grows by appending many fragments. A
//! library that owns the file, rewrites earlier boxes, interleaves its own indexes or decides
//! fragment boundaries itself would break the chain's "append-only, contiguous ranges" contract.
//! The writer is also small enough to audit in full: every box below is listed with its
//! ISO/IEC 14496-12 layout, and the AV1 specifics follow the AV1-ISOBMFF binding.
//!
//! Track layout: track id 1, timescale as configured (the recorder uses 1000, i.e. milliseconds,
//! because frames have variable timing), no edit list, no composition offsets (AV1 samples are
//! in presentation order). Each fragment has one `traf` with `default-base-is-moof`, a version-1
//! `tfdt` and a `trun` carrying the duration, size and flags of every sample.

use crate::av1::{self, Av1Error, SequenceHeader};

/// The track id of the single video track.
pub const TRACK_ID: u32 = 1;

/// Sample flags of a sync sample: `sample_depends_on` = 2 (does not depend on others),
/// `sample_is_non_sync_sample` = 0.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Sample flags of any other sample: `sample_depends_on` = 1 (depends on others),
/// `sample_is_non_sync_sample` = 1.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// `tfhd` flag: the base data offset is the first byte of the enclosing `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data-offset-present, sample-duration-present, sample-size-present,
/// sample-flags-present.
const TRUN_FLAGS: u32 = 0x00_0001 | 0x00_0100 | 0x00_0200 | 0x00_0400;
/// `tkhd` flags: track_enabled, track_in_movie.
const TKHD_FLAGS: u32 = 0x00_0003;

/// Unity transformation matrix of `mvhd` and `tkhd`.
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// Informative compressor name recommended by AV1-ISOBMFF (length byte, then the name).
const COMPRESSOR_NAME: &[u8] = b"\x0aAOM Coding";

/// Errors from the fMP4 writer. None of them carries media data.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// The track configuration's sequence header does not parse.
    #[error("invalid AV1 sequence header: {0}")]
    SequenceHeader(#[from] Av1Error),
    /// Timescale 0 cannot express time.
    #[error("timescale must be greater than zero")]
    ZeroTimescale,
    /// The display size is zero or beyond the 16-bit integer part of the `tkhd` fields.
    #[error("track size {width}x{height} is outside 1..=65535 in some dimension")]
    InvalidSize {
        /// Configured width.
        width: u32,
        /// Configured height.
        height: u32,
    },
    /// The coded size of the sequence header does not fit the 16-bit sample entry fields.
    #[error("coded size {width}x{height} does not fit the 16-bit sample entry fields")]
    CodedSizeTooLarge {
        /// `max_frame_width_minus_1 + 1`.
        width: u32,
        /// `max_frame_height_minus_1 + 1`.
        height: u32,
    },
    /// The display size exceeds the coded size announced by the sequence header.
    #[error(
        "track size {width}x{height} exceeds the coded size {coded_width}x{coded_height} of the \
         sequence header"
    )]
    LargerThanCoded {
        /// Configured width.
        width: u32,
        /// Configured height.
        height: u32,
        /// Coded width from the sequence header.
        coded_width: u32,
        /// Coded height from the sequence header.
        coded_height: u32,
    },
    /// A fragment needs at least one sample.
    #[error("a fragment needs at least one sample")]
    NoSamples,
    /// A sample holds no bytes, which is never a valid AV1 temporal unit.
    #[error("sample {0} of the fragment is empty")]
    EmptySample(usize),
    /// A size or count does not fit its 32-bit field.
    #[error("{0} does not fit the 32-bit field of the box format")]
    TooLarge(&'static str),
}

/// Describes the video track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// Display width in pixels (`tkhd`); at most the coded width of the sequence header. When
    /// smaller, a clean aperture box crops the right-hand padding.
    pub width: u32,
    /// Display height in pixels (`tkhd`); at most the coded height of the sequence header.
    pub height: u32,
    /// Time units per second for all durations and decode times (1000 in the recorder).
    pub timescale: u32,
    /// The sequence header OBU (header, size field, payload), e.g. from
    /// [`av1::find_sequence_header`] on the first keyframe.
    pub sequence_header: Vec<u8>,
}

/// One AV1 sample: the OBUs of one temporal unit, without temporal delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The temporal unit (Low Overhead Bitstream Format, `obu_has_size_field` = 1).
    pub data: Vec<u8>,
    /// Duration in track timescale units (time until the next sample).
    pub duration: u32,
    /// True for a random access point: a shown key frame preceded by the sequence header.
    pub keyframe: bool,
}

/// Writes the init segment: `ftyp` and `moov` with one AV1 track and `mvex` for fragments.
///
/// The `av01` sample entry takes its coded size from the sequence header (as AV1-ISOBMFF
/// requires) and carries `av1C`, a `colr` box of type `nclx` with the sequence header's colour
/// description (2 = unspecified where it has none) and, when the display size is smaller than
/// the coded size, a `clap` box cropping the padding on the right and bottom.
///
/// `ftyp` brands: major `iso6`; compatible `iso6` (the structural brand whose boxes are used,
/// e.g. `tfdt` and `default-base-is-moof`), `cmfc` (CMAF structural constraints) and `av01`
/// (required by AV1-ISOBMFF for files carrying an `av01` track).
pub fn init_segment(cfg: &TrackConfig) -> Result<Vec<u8>, Fmp4Error> {
    if cfg.timescale == 0 {
        return Err(Fmp4Error::ZeroTimescale);
    }
    let (width, height) = (cfg.width, cfg.height);
    if width == 0 || height == 0 || width > 0xffff || height > 0xffff {
        return Err(Fmp4Error::InvalidSize { width, height });
    }
    let seq = av1::parse_sequence_header(&cfg.sequence_header)?;
    let (coded_width, coded_height) = (seq.max_frame_width, seq.max_frame_height);
    if coded_width > 0xffff || coded_height > 0xffff {
        return Err(Fmp4Error::CodedSizeTooLarge {
            width: coded_width,
            height: coded_height,
        });
    }
    if width > coded_width || height > coded_height {
        return Err(Fmp4Error::LargerThanCoded {
            width,
            height,
            coded_width,
            coded_height,
        });
    }
    let av1c = av1::av1c_box_payload(&cfg.sequence_header)?;

    let mut w = BoxWriter::with_capacity(1024 + av1c.len());
    w.boxed(b"ftyp", |w| {
        w.fourcc(b"iso6"); // major brand
        w.u32(0); // minor version
        for brand in [b"iso6", b"cmfc", b"av01"] {
            w.fourcc(brand);
        }
        Ok(())
    })?;
    w.boxed(b"moov", |w| {
        write_mvhd(w, cfg.timescale)?;
        write_trak(w, cfg, &seq, &av1c)?;
        w.boxed(b"mvex", |w| {
            w.full_box(b"trex", 0, 0, |w| {
                w.u32(TRACK_ID);
                w.u32(1); // default_sample_description_index
                w.u32(0); // default_sample_duration
                w.u32(0); // default_sample_size
                w.u32(0); // default_sample_flags
                Ok(())
            })
        })
    })?;
    Ok(w.into_bytes())
}

/// Writes the `styp` box that starts every media segment file: major brand `cmfs` (CMAF
/// segment), compatible with `cmfs` and `msdh` (DASH media segment).
pub fn segment_header() -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(24);
    w.u32(24);
    w.fourcc(b"styp");
    w.fourcc(b"cmfs"); // major brand
    w.u32(0); // minor version
    w.fourcc(b"cmfs");
    w.fourcc(b"msdh");
    w.into_bytes()
}

/// Writes one movie fragment: `moof` (`mfhd`, `traf` with `tfhd`, `tfdt`, `trun`) and the
/// `mdat` holding the samples back to back.
///
/// `sequence_number` is the `mfhd` sequence number (the caller keeps it increasing across the
/// whole track); `base_media_decode_time` is the decode time of the first sample in timescale
/// units, i.e. the sum of the durations of all earlier samples of the track.
pub fn fragment(
    sequence_number: u32,
    base_media_decode_time: u64,
    samples: &[Sample],
) -> Result<Vec<u8>, Fmp4Error> {
    if samples.is_empty() {
        return Err(Fmp4Error::NoSamples);
    }
    if let Some(index) = samples.iter().position(|s| s.data.is_empty()) {
        return Err(Fmp4Error::EmptySample(index));
    }
    let sample_count =
        u32::try_from(samples.len()).map_err(|_| Fmp4Error::TooLarge("sample count"))?;
    let payload_len: u64 = samples.iter().map(|s| s.data.len() as u64).sum();
    let mdat_len = checked_size(payload_len.saturating_add(8), "mdat size")?;
    // Every sample size then fits u32 as well, being part of the mdat payload.
    let moof_estimate = 100usize.saturating_add(samples.len().saturating_mul(12));

    let mut w = BoxWriter::with_capacity(moof_estimate.saturating_add(mdat_len as usize));
    let mut data_offset_at = 0;
    w.boxed(b"moof", |w| {
        w.full_box(b"mfhd", 0, 0, |w| {
            w.u32(sequence_number);
            Ok(())
        })?;
        w.boxed(b"traf", |w| {
            w.full_box(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |w| {
                w.u32(TRACK_ID);
                Ok(())
            })?;
            w.full_box(b"tfdt", 1, 0, |w| {
                w.u64(base_media_decode_time);
                Ok(())
            })?;
            w.full_box(b"trun", 0, TRUN_FLAGS, |w| {
                w.u32(sample_count);
                data_offset_at = w.len();
                w.u32(0); // data_offset, patched once the moof size is known
                for s in samples {
                    w.u32(s.duration);
                    w.u32(s.data.len() as u32);
                    w.u32(if s.keyframe {
                        SYNC_SAMPLE_FLAGS
                    } else {
                        NON_SYNC_SAMPLE_FLAGS
                    });
                }
                Ok(())
            })
        })
    })?;
    // default-base-is-moof: the offset counts from the first byte of the moof (offset 0 here)
    // to the first byte of mdat payload, after the 8-byte mdat header.
    let data_offset = w
        .len()
        .checked_add(8)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or(Fmp4Error::TooLarge("trun data_offset"))?;
    w.patch_u32(data_offset_at, data_offset as u32);

    w.u32(mdat_len);
    w.fourcc(b"mdat");
    for s in samples {
        w.bytes(&s.data);
    }
    Ok(w.into_bytes())
}

/// `trak` > `tkhd`, `mdia` > (`mdhd`, `hdlr`, `minf`).
fn write_trak(
    w: &mut BoxWriter,
    cfg: &TrackConfig,
    seq: &SequenceHeader,
    av1c: &[u8],
) -> Result<(), Fmp4Error> {
    w.boxed(b"trak", |w| {
        write_tkhd(w, cfg.width, cfg.height)?;
        w.boxed(b"mdia", |w| {
            write_mdhd(w, cfg.timescale)?;
            write_hdlr(w)?;
            write_minf(w, cfg, seq, av1c)
        })
    })
}

/// `minf` > `vmhd`, `dinf` > `dref` > `url ` (self-contained), `stbl`.
fn write_minf(
    w: &mut BoxWriter,
    cfg: &TrackConfig,
    seq: &SequenceHeader,
    av1c: &[u8],
) -> Result<(), Fmp4Error> {
    w.boxed(b"minf", |w| {
        w.full_box(b"vmhd", 0, 1, |w| {
            w.u16(0); // graphicsmode
            w.zeros(6); // opcolor
            Ok(())
        })?;
        w.boxed(b"dinf", |w| {
            w.full_box(b"dref", 0, 0, |w| {
                w.u32(1); // entry_count
                          // flags = 1: the media data is in the same file.
                w.full_box(b"url ", 0, 1, |_| Ok(()))
            })
        })?;
        w.boxed(b"stbl", |w| {
            w.full_box(b"stsd", 0, 0, |w| {
                w.u32(1); // entry_count
                write_av01(w, cfg, seq, av1c)
            })?;
            // Empty sample tables: every sample lives in a movie fragment.
            w.full_box(b"stts", 0, 0, |w| {
                w.u32(0); // entry_count
                Ok(())
            })?;
            w.full_box(b"stsc", 0, 0, |w| {
                w.u32(0); // entry_count
                Ok(())
            })?;
            w.full_box(b"stsz", 0, 0, |w| {
                w.u32(0); // sample_size
                w.u32(0); // sample_count
                Ok(())
            })?;
            w.full_box(b"stco", 0, 0, |w| {
                w.u32(0); // entry_count
                Ok(())
            })
        })
    })
}

/// `mvhd`, version 0: no creation times (recordings carry their own), duration unknown (0) as
/// the movie is fragmented.
fn write_mvhd(w: &mut BoxWriter, timescale: u32) -> Result<(), Fmp4Error> {
    w.full_box(b"mvhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(timescale);
        w.u32(0); // duration
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(2 + 8); // reserved
        UNITY_MATRIX.iter().for_each(|v| w.u32(*v));
        w.zeros(24); // pre_defined
        w.u32(TRACK_ID + 1); // next_track_ID
        Ok(())
    })
}

/// `tkhd`, version 0: enabled, in movie, display size in 16.16 fixed point.
fn write_tkhd(w: &mut BoxWriter, width: u32, height: u32) -> Result<(), Fmp4Error> {
    w.full_box(b"tkhd", 0, TKHD_FLAGS, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(TRACK_ID);
        w.u32(0); // reserved
        w.u32(0); // duration
        w.zeros(8); // reserved
        w.u16(0); // layer
        w.u16(0); // alternate_group
        w.u16(0); // volume: 0 for video
        w.u16(0); // reserved
        UNITY_MATRIX.iter().for_each(|v| w.u32(*v));
        w.u32(width << 16);
        w.u32(height << 16);
        Ok(())
    })
}

/// `mdhd`, version 0, language `und`.
fn write_mdhd(w: &mut BoxWriter, timescale: u32) -> Result<(), Fmp4Error> {
    w.full_box(b"mdhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(timescale);
        w.u32(0); // duration
                  // ISO-639-2/T "und", three 5-bit letters (value - 0x60) after a zero pad bit.
        let lang = b"und"
            .iter()
            .fold(0u16, |acc, c| (acc << 5) | u16::from(c - 0x60));
        w.u16(lang);
        w.u16(0); // pre_defined
        Ok(())
    })
}

/// `hdlr` of a video track.
fn write_hdlr(w: &mut BoxWriter) -> Result<(), Fmp4Error> {
    w.full_box(b"hdlr", 0, 0, |w| {
        w.u32(0); // pre_defined
        w.fourcc(b"vide");
        w.zeros(12); // reserved
        w.bytes(b"VideoHandler\0");
        Ok(())
    })
}

/// The `av01` sample entry (`VisualSampleEntry` + `av1C` + `colr` [+ `clap`]).
fn write_av01(
    w: &mut BoxWriter,
    cfg: &TrackConfig,
    seq: &SequenceHeader,
    av1c: &[u8],
) -> Result<(), Fmp4Error> {
    // Both fit u16: checked by init_segment.
    let (coded_width, coded_height) = (seq.max_frame_width, seq.max_frame_height);
    w.boxed(b"av01", |w| {
        w.zeros(6); // SampleEntry reserved
        w.u16(1); // data_reference_index
        w.u16(0); // pre_defined
        w.u16(0); // reserved
        w.zeros(12); // pre_defined
        w.u16(coded_width as u16);
        w.u16(coded_height as u16);
        w.u32(0x0048_0000); // horizresolution 72 dpi
        w.u32(0x0048_0000); // vertresolution 72 dpi
        w.u32(0); // reserved
        w.u16(1); // frame_count
        let mut name = [0u8; 32];
        name[..COMPRESSOR_NAME.len()].copy_from_slice(COMPRESSOR_NAME);
        w.bytes(&name);
        w.u16(0x0018); // depth: colour, no alpha
        w.u16(0xffff); // pre_defined = -1
        w.boxed(b"av1C", |w| {
            w.bytes(av1c);
            Ok(())
        })?;
        w.boxed(b"colr", |w| {
            let c = &seq.color;
            w.fourcc(b"nclx");
            w.u16(c.color_primaries.into());
            w.u16(c.transfer_characteristics.into());
            w.u16(c.matrix_coefficients.into());
            w.u8(u8::from(c.full_range) << 7);
            Ok(())
        })?;
        if (cfg.width, cfg.height) != (coded_width, coded_height) {
            // Clean aperture of width x height at the top-left corner: its centre lies
            // (width - coded_width) / 2 pixels from the centre of the coded picture.
            w.boxed(b"clap", |w| {
                w.u32(cfg.width);
                w.u32(1);
                w.u32(cfg.height);
                w.u32(1);
                w.u32(cfg.width.wrapping_sub(coded_width)); // int(32), two's complement
                w.u32(2);
                w.u32(cfg.height.wrapping_sub(coded_height));
                w.u32(2);
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// Converts a box size to its 32-bit field (the writer never emits 64-bit `largesize` boxes).
fn checked_size(len: u64, what: &'static str) -> Result<u32, Fmp4Error> {
    u32::try_from(len).map_err(|_| Fmp4Error::TooLarge(what))
}

/// Appends big-endian fields and boxes whose sizes are filled in when they close.
struct BoxWriter {
    buf: Vec<u8>,
}

impl BoxWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn fourcc(&mut self, v: &[u8; 4]) {
        self.buf.extend_from_slice(v);
    }

    fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Writes a box: 32-bit size, type, then whatever `body` writes.
    fn boxed(
        &mut self,
        kind: &[u8; 4],
        body: impl FnOnce(&mut Self) -> Result<(), Fmp4Error>,
    ) -> Result<(), Fmp4Error> {
        let start = self.buf.len();
        self.u32(0);
        self.fourcc(kind);
        body(self)?;
        let size =
            u32::try_from(self.buf.len() - start).map_err(|_| Fmp4Error::TooLarge("box size"))?;
        self.patch_u32(start, size);
        Ok(())
    }

    /// Writes a full box: a box whose body starts with an 8-bit version and 24-bit flags.
    fn full_box(
        &mut self,
        kind: &[u8; 4],
        version: u8,
        flags: u32,
        body: impl FnOnce(&mut Self) -> Result<(), Fmp4Error>,
    ) -> Result<(), Fmp4Error> {
        self.boxed(kind, |w| {
            w.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
            body(w)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// SVT-AV1 sequence header: 320x240, 8-bit 4:2:0, BT.709, limited range.
    const SEQ_320X240: &str = "0a0e000000043cffbcfbf91010101040";

    fn seq_header() -> Vec<u8> {
        hex::decode(SEQ_320X240).expect("valid hex")
    }

    fn config() -> TrackConfig {
        TrackConfig {
            width: 320,
            height: 240,
            timescale: 1000,
            sequence_header: seq_header(),
        }
    }

    /// A parsed box: type, byte range in the parsed buffer, and children for containers.
    #[derive(Debug)]
    struct Node {
        kind: String,
        start: usize,
        size: usize,
        /// Offset of the body (after the 8-byte header) in the buffer.
        body: usize,
        children: Vec<Node>,
    }

    impl Node {
        fn child(&self, kind: &str) -> &Node {
            self.children
                .iter()
                .find(|c| c.kind == kind)
                .unwrap_or_else(|| panic!("{} has no {kind}", self.kind))
        }
        fn path(&self, path: &str) -> &Node {
            path.split('/').fold(self, |n, k| n.child(k))
        }
        fn kinds(&self) -> Vec<&str> {
            self.children.iter().map(|c| c.kind.as_str()).collect()
        }
        fn body<'a>(&self, data: &'a [u8]) -> &'a [u8] {
            &data[self.body..self.start + self.size]
        }
    }

    /// Bytes to skip before the child boxes of a container, if `kind` is one.
    fn child_offset(kind: &str) -> Option<usize> {
        match kind {
            "moov" | "trak" | "mdia" | "minf" | "dinf" | "stbl" | "mvex" | "moof" | "traf" => {
                Some(0)
            }
            "stsd" | "dref" => Some(8), // version/flags + entry_count
            "av01" => Some(78),         // VisualSampleEntry fields
            _ => None,
        }
    }

    /// Parses `data[start..end]` as a sequence of boxes that must cover the range exactly.
    fn walk(data: &[u8], mut start: usize, end: usize) -> Vec<Node> {
        let mut nodes = Vec::new();
        while start < end {
            assert!(end - start >= 8, "box header truncated at {start}");
            let size = u32::from_be_bytes(data[start..start + 4].try_into().unwrap()) as usize;
            let kind = String::from_utf8_lossy(&data[start + 4..start + 8]).into_owned();
            assert!(
                size >= 8 && start + size <= end,
                "box {kind} at {start} has bad size {size}"
            );
            let children = match child_offset(&kind) {
                Some(skip) => walk(data, start + 8 + skip, start + size),
                None => Vec::new(),
            };
            nodes.push(Node {
                kind,
                start,
                size,
                body: start + 8,
                children,
            });
            start += size;
        }
        assert_eq!(start, end, "boxes overrun their container");
        nodes
    }

    fn root(data: &[u8]) -> Node {
        Node {
            kind: "file".into(),
            start: 0,
            size: data.len(),
            body: 0,
            children: walk(data, 0, data.len()),
        }
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
    }

    #[test]
    fn init_segment_layout() {
        let init = init_segment(&config()).expect("valid config");
        let file = root(&init);
        assert_eq!(file.kinds(), ["ftyp", "moov"]);
        assert_eq!(file.child("ftyp").body(&init), b"iso6\0\0\0\0iso6cmfcav01");
        let moov = file.child("moov");
        assert_eq!(moov.kinds(), ["mvhd", "trak", "mvex"]);
        assert_eq!(moov.path("trak").kinds(), ["tkhd", "mdia"]);
        assert_eq!(moov.path("trak/mdia").kinds(), ["mdhd", "hdlr", "minf"]);
        assert_eq!(
            moov.path("trak/mdia/minf").kinds(),
            ["vmhd", "dinf", "stbl"]
        );
        assert_eq!(moov.path("trak/mdia/minf/dinf/dref").kinds(), ["url "]);
        let stbl = moov.path("trak/mdia/minf/stbl");
        assert_eq!(stbl.kinds(), ["stsd", "stts", "stsc", "stsz", "stco"]);
        let av01 = stbl.path("stsd/av01");
        assert_eq!(
            av01.kinds(),
            ["av1C", "colr"],
            "no clap when display = coded size"
        );

        let mvhd = moov.child("mvhd").body(&init);
        assert_eq!(mvhd.len(), 100);
        assert_eq!(be32(mvhd, 12), 1000, "mvhd timescale");
        assert_eq!(be32(mvhd, 96), 2, "next_track_ID");
        let tkhd = moov.path("trak/tkhd").body(&init);
        assert_eq!(be32(tkhd, 0), 3, "version 0, enabled + in movie");
        assert_eq!(be32(tkhd, 12), TRACK_ID);
        assert_eq!((be32(tkhd, 76), be32(tkhd, 80)), (320 << 16, 240 << 16));
        let mdhd = moov.path("trak/mdia/mdhd").body(&init);
        assert_eq!(be32(mdhd, 12), 1000, "mdhd timescale");
        assert_eq!(be16(mdhd, 20), 0x55c4, "language und");
        assert_eq!(&moov.path("trak/mdia/hdlr").body(&init)[8..12], b"vide");

        let stsd = stbl.child("stsd").body(&init);
        assert_eq!(be32(stsd, 4), 1, "one sample entry");
        let entry = av01.body(&init);
        assert_eq!(be16(entry, 6), 1, "data_reference_index");
        assert_eq!((be16(entry, 24), be16(entry, 26)), (320, 240));
        assert_eq!(be16(entry, 32 + 8), 1, "frame_count");
        assert_eq!(&entry[42..53], b"\x0aAOM Coding");
        assert_eq!(be16(entry, 74), 0x18, "depth");
        assert_eq!(be16(entry, 76), 0xffff, "pre_defined -1");
        let av1c = av01.child("av1C").body(&init);
        assert_eq!(av1c, av1::av1c_box_payload(&seq_header()).expect("valid"));
        assert_eq!(
            av01.child("colr").body(&init),
            b"nclx\0\x01\0\x01\0\x01\x00"
        );
        for empty in ["stts", "stsc", "stco"] {
            assert_eq!(
                stbl.child(empty).body(&init),
                [0; 8],
                "{empty} has no entries"
            );
        }
        assert_eq!(stbl.child("stsz").body(&init), [0; 12]);
        let trex = moov.path("mvex/trex").body(&init);
        assert_eq!(
            trex,
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn display_smaller_than_coded_adds_clean_aperture() {
        let cfg = TrackConfig {
            width: 319,
            height: 239,
            ..config()
        };
        let init = init_segment(&cfg).expect("valid config");
        let file = root(&init);
        let av01 = file.path("moov/trak/mdia/minf/stbl/stsd/av01");
        assert_eq!(av01.kinds(), ["av1C", "colr", "clap"]);
        let clap = av01.child("clap").body(&init);
        let fields: Vec<i32> = (0..8).map(|i| be32(clap, i * 4) as i32).collect();
        assert_eq!(fields, [319, 1, 239, 1, -1, 2, -1, 2]);
        let tkhd = file.path("moov/trak/tkhd").body(&init);
        assert_eq!((be32(tkhd, 76), be32(tkhd, 80)), (319 << 16, 239 << 16));
        // The sample entry keeps the coded size.
        assert_eq!(
            (be16(av01.body(&init), 24), be16(av01.body(&init), 26)),
            (320, 240)
        );
    }

    #[test]
    fn init_segment_rejects_bad_configs() {
        let bigger = TrackConfig {
            width: 322,
            ..config()
        };
        assert!(matches!(
            init_segment(&bigger),
            Err(Fmp4Error::LargerThanCoded { .. })
        ));
        let zero = TrackConfig {
            height: 0,
            ..config()
        };
        assert!(matches!(
            init_segment(&zero),
            Err(Fmp4Error::InvalidSize { .. })
        ));
        let huge = TrackConfig {
            width: 70_000,
            ..config()
        };
        assert!(matches!(
            init_segment(&huge),
            Err(Fmp4Error::InvalidSize { .. })
        ));
        let no_time = TrackConfig {
            timescale: 0,
            ..config()
        };
        assert!(matches!(
            init_segment(&no_time),
            Err(Fmp4Error::ZeroTimescale)
        ));
        let garbage = TrackConfig {
            sequence_header: vec![0x0a, 0x03, 1, 2, 3],
            ..config()
        };
        assert!(matches!(
            init_segment(&garbage),
            Err(Fmp4Error::SequenceHeader(_))
        ));
        let td = TrackConfig {
            sequence_header: vec![0x12, 0x00],
            ..config()
        };
        assert!(matches!(
            init_segment(&td),
            Err(Fmp4Error::SequenceHeader(_))
        ));
    }

    #[test]
    fn segment_header_is_styp() {
        let styp = segment_header();
        let file = root(&styp);
        assert_eq!(file.kinds(), ["styp"]);
        assert_eq!(file.child("styp").body(&styp), b"cmfs\0\0\0\0cmfsmsdh");
    }

    /// Parsed `trun` entries: (duration, size, flags).
    fn check_fragment(frag: &[u8], seq: u32, bmdt: u64, samples: &[Sample]) {
        let file = root(frag);
        assert_eq!(file.kinds(), ["moof", "mdat"]);
        let moof = file.child("moof");
        assert_eq!(moof.kinds(), ["mfhd", "traf"]);
        assert_eq!(moof.path("traf").kinds(), ["tfhd", "tfdt", "trun"]);
        assert_eq!(be32(moof.child("mfhd").body(frag), 4), seq);
        let tfhd = moof.path("traf/tfhd").body(frag);
        assert_eq!(
            tfhd,
            [0, 2, 0, 0, 0, 0, 0, 1],
            "default-base-is-moof, track 1"
        );
        let tfdt = moof.path("traf/tfdt").body(frag);
        assert_eq!(tfdt[0], 1, "tfdt version 1");
        assert_eq!(u64::from_be_bytes(tfdt[4..12].try_into().unwrap()), bmdt);
        let trun = moof.path("traf/trun").body(frag);
        assert_eq!(be32(trun, 0), 0x0000_0701);
        assert_eq!(be32(trun, 4) as usize, samples.len());
        assert_eq!(trun.len(), 12 + 12 * samples.len());
        let mdat = file.child("mdat");
        let data_offset = be32(trun, 8) as usize;
        assert_eq!(moof.start, 0);
        assert_eq!(
            data_offset, mdat.body,
            "data_offset points at the mdat payload"
        );
        let mut at = data_offset;
        for (i, s) in samples.iter().enumerate() {
            let e = 12 + 12 * i;
            assert_eq!(be32(trun, e), s.duration);
            assert_eq!(be32(trun, e + 4) as usize, s.data.len());
            let flags = be32(trun, e + 8);
            assert_eq!(
                flags >> 24 & 3,
                if s.keyframe { 2 } else { 1 },
                "sample_depends_on"
            );
            assert_eq!(
                flags >> 16 & 1,
                u32::from(!s.keyframe),
                "sample_is_non_sync_sample"
            );
            assert_eq!(&frag[at..at + s.data.len()], &s.data[..]);
            at += s.data.len();
        }
        assert_eq!(at, frag.len(), "mdat holds exactly the samples");
    }

    #[test]
    fn fragment_layout() {
        let samples = vec![
            Sample {
                data: vec![0x32, 0x01, 0xaa],
                duration: 40,
                keyframe: true,
            },
            Sample {
                data: vec![0x32, 0x02, 0xbb, 0xcc],
                duration: 17,
                keyframe: false,
            },
            Sample {
                data: vec![0x32, 0x00],
                duration: 1000,
                keyframe: false,
            },
        ];
        let frag = fragment(7, 123_456_789_012, &samples).expect("valid fragment");
        check_fragment(&frag, 7, 123_456_789_012, &samples);
    }

    #[test]
    fn fragment_errors() {
        assert!(matches!(fragment(1, 0, &[]), Err(Fmp4Error::NoSamples)));
        let samples = [
            Sample {
                data: vec![1],
                duration: 1,
                keyframe: true,
            },
            Sample {
                data: vec![],
                duration: 1,
                keyframe: false,
            },
        ];
        assert!(matches!(
            fragment(1, 0, &samples),
            Err(Fmp4Error::EmptySample(1))
        ));
    }

    #[test]
    fn sizes_beyond_u32_are_errors() {
        assert_eq!(checked_size(u64::from(u32::MAX), "x").ok(), Some(u32::MAX));
        assert!(matches!(
            checked_size(u64::from(u32::MAX) + 1, "mdat size"),
            Err(Fmp4Error::TooLarge("mdat size"))
        ));
    }

    /// A temporary directory removed on drop, unless `PSMGATE_KEEP_TEST_FILES` is set (then its
    /// path is printed, for inspecting the files by hand).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir = std::env::temp_dir()
                .join(format!("psmgate-fmp4-test-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if std::env::var_os("PSMGATE_KEEP_TEST_FILES").is_some() {
                eprintln!("test files kept in {}", self.0.display());
                return;
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Encodes `frames` 320x240 frames of a light square moving over a dark background with
    /// rav1e (low latency, speed 10), forcing keyframes at `keyframes`. Returns the temporal
    /// units without temporal delimiters and rav1e's keyframe flag.
    fn encode_clip(frames: usize, keyframes: &[usize]) -> Vec<(Vec<u8>, bool)> {
        use rav1e::prelude::*;
        const W: usize = 320;
        const H: usize = 240;
        let mut enc = EncoderConfig::with_speed_preset(10);
        enc.width = W;
        enc.height = H;
        enc.low_latency = true;
        enc.level_idx = Some(8);
        enc.set_key_frame_interval(0, 1000);
        enc.speed_settings.scene_detection_mode = SceneDetectionSpeed::None;
        let cfg = Config::new().with_encoder_config(enc).with_threads(1);
        let mut ctx: Context<u8> = cfg.new_context().expect("valid rav1e config");
        let mut out = Vec::new();
        let drain = |ctx: &mut Context<u8>, out: &mut Vec<(Vec<u8>, bool)>| loop {
            match ctx.receive_packet() {
                Ok(p) => {
                    let stripped = av1::strip_temporal_delimiters(&p.data);
                    assert!(
                        stripped.len() < p.data.len(),
                        "rav1e packets start with a TD"
                    );
                    out.push((stripped, p.frame_type == FrameType::KEY));
                }
                Err(EncoderStatus::Encoded) => {}
                Err(EncoderStatus::NeedMoreData | EncoderStatus::LimitReached) => break,
                Err(e) => panic!("rav1e failed: {e:?}"),
            }
        };
        for i in 0..frames {
            let mut frame = ctx.new_frame();
            let (sx, sy) = (8 + i * 8, 16 + i * 4);
            let luma: Vec<u8> = (0..W * H)
                .map(|p| {
                    let (x, y) = (p % W, p / W);
                    if (sx..sx + 48).contains(&x) && (sy..sy + 48).contains(&y) {
                        220
                    } else {
                        40
                    }
                })
                .collect();
            frame.planes[0].copy_from_raw_u8(&luma, W, 1);
            let chroma = vec![128u8; (W / 2) * (H / 2)];
            frame.planes[1].copy_from_raw_u8(&chroma, W / 2, 1);
            frame.planes[2].copy_from_raw_u8(&chroma, W / 2, 1);
            let frame_type_override = if keyframes.contains(&i) {
                FrameTypeOverride::Key
            } else {
                FrameTypeOverride::No
            };
            let params = FrameParameters {
                frame_type_override,
                ..Default::default()
            };
            ctx.send_frame((frame, params))
                .expect("rav1e accepts the frame");
            drain(&mut ctx, &mut out);
        }
        ctx.flush();
        drain(&mut ctx, &mut out);
        out
    }

    /// Runs `tool args...` and returns (stdout, stderr); the tool must exist and succeed.
    fn run(tool: &str, args: &[&str]) -> (Vec<u8>, String) {
        let out = Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} must be installed to run this test: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{tool} {args:?} failed: {stderr}");
        (out.stdout, stderr)
    }

    /// ffprobe's view of a file: codec, size, frames decoded, start and duration in seconds,
    /// and per packet (pts, sync flag).
    struct Probe {
        codec: String,
        width: u64,
        height: u64,
        frames: u64,
        start: f64,
        duration: f64,
        packets: Vec<(i64, bool)>,
    }

    fn probe(file: &Path) -> Probe {
        let path = file.to_str().expect("UTF-8 temp path");
        let args = [
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames:format=start_time,duration",
            "-show_entries",
            "packet=pts,flags",
            "-of",
            "json",
            path,
        ];
        let (stdout, stderr) = run("ffprobe", &args);
        assert!(
            stderr.trim().is_empty(),
            "ffprobe complained about {path}: {stderr}"
        );
        let v: serde_json::Value = serde_json::from_slice(&stdout).expect("ffprobe JSON");
        let num = |x: &serde_json::Value| -> f64 {
            x.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| x.as_f64())
                .unwrap_or_else(|| panic!("not a number: {x} in {v}"))
        };
        let stream = &v["streams"][0];
        let packets = v["packets"]
            .as_array()
            .expect("packets")
            .iter()
            .map(|p| {
                (
                    num(&p["pts"]) as i64,
                    p["flags"].as_str().expect("flags").starts_with('K'),
                )
            })
            .collect();
        Probe {
            codec: stream["codec_name"]
                .as_str()
                .expect("codec_name")
                .to_owned(),
            width: stream["width"].as_u64().expect("width"),
            height: stream["height"].as_u64().expect("height"),
            frames: num(&stream["nb_read_frames"]) as u64,
            start: num(&v["format"]["start_time"]),
            duration: num(&v["format"]["duration"]),
            packets,
        }
    }

    /// Decodes `file` with ffmpeg to 8-bit gray frames; asserts ffmpeg reports nothing.
    ///
    /// `-enc_time_base -1` keeps the input's millisecond time base for the output: without it
    /// ffmpeg 5.1 rounds variable frame times to its estimated average frame rate and its null
    /// muxer then reports colliding timestamps, which says nothing about the file. The raw
    /// output also needs `-fps_mode passthrough`, or ffmpeg repeats frames to a constant rate.
    fn decode_gray(file: &Path) -> Vec<u8> {
        let path = file.to_str().expect("UTF-8 temp path");
        let null_args = [
            "-v",
            "error",
            "-i",
            path,
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ];
        let (_, stderr) = run("ffmpeg", &null_args);
        assert!(
            stderr.trim().is_empty(),
            "ffmpeg errors decoding {path}: {stderr}"
        );
        let raw_args = [
            "-v",
            "error",
            "-i",
            path,
            "-enc_time_base",
            "-1",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ];
        let (frames, stderr) = run("ffmpeg", &raw_args);
        assert!(
            stderr.trim().is_empty(),
            "ffmpeg errors decoding {path}: {stderr}"
        );
        frames
    }

    /// Centre of the bright pixels of a 320x240 gray frame.
    fn bright_centre(frame: &[u8]) -> (f64, f64) {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for (p, v) in frame.iter().enumerate() {
            if *v > 130 {
                sx += (p % 320) as f64;
                sy += (p / 320) as f64;
                n += 1.0;
            }
        }
        assert!(n > 0.0, "frame has no bright square");
        (sx / n, sy / n)
    }

    /// rav1e output, muxed into an init segment and two segment files, read back by ffprobe and
    /// decoded by ffmpeg: as a whole, and each segment alone behind the init segment.
    #[test]
    fn rav1e_stream_plays_in_ffmpeg() {
        const FRAMES: usize = 30;
        let packets = encode_clip(FRAMES, &[0, 15]);
        assert_eq!(packets.len(), FRAMES);
        let keys: Vec<usize> = (0..FRAMES).filter(|i| packets[*i].1).collect();
        assert_eq!(keys, [0, 15], "keyframes exactly where forced");

        let seq = av1::find_sequence_header(&packets[0].0).expect("keyframe carries the header");
        let parsed = av1::parse_sequence_header(seq).expect("rav1e header parses");
        assert_eq!(av1::codec_string(&parsed), "av01.0.08M.08");
        assert_eq!(
            (parsed.max_frame_width, parsed.max_frame_height),
            (320, 240)
        );
        assert!(av1::find_sequence_header(&packets[15].0).is_some());
        assert!(av1::find_sequence_header(&packets[1].0).is_none());

        // Variable frame timing, in milliseconds.
        let durations: Vec<u32> = (0..FRAMES).map(|i| [33, 40, 17, 100, 50][i % 5]).collect();
        let ms =
            |r: std::ops::Range<usize>| -> u64 { durations[r].iter().map(|d| u64::from(*d)).sum() };
        let samples: Vec<Sample> = packets
            .iter()
            .zip(&durations)
            .map(|((data, keyframe), d)| Sample {
                data: data.clone(),
                duration: *d,
                keyframe: *keyframe,
            })
            .collect();
        let cfg = TrackConfig {
            width: 320,
            height: 240,
            timescale: 1000,
            sequence_header: seq.to_vec(),
        };
        let init = init_segment(&cfg).expect("init segment");

        // Segment 1: frames 0..15 in 3 fragments; segment 2: frames 15..30 in 2 fragments.
        let layout: [&[std::ops::Range<usize>]; 2] = [&[0..5, 5..10, 10..15], &[15..22, 22..30]];
        let mut sequence_number = 0;
        let mut segments = Vec::new();
        for ranges in layout {
            let mut segment = segment_header();
            for range in ranges {
                sequence_number += 1;
                let start = ms(0..range.start);
                let frag =
                    fragment(sequence_number, start, &samples[range.clone()]).expect("fragment");
                check_fragment(&frag, sequence_number, start, &samples[range.clone()]);
                segment.extend_from_slice(&frag);
            }
            segments.push(segment);
        }

        let dir = TempDir::new();
        let write = |name: &str, parts: &[&[u8]]| -> PathBuf {
            let path = dir.0.join(name);
            std::fs::write(&path, parts.concat()).expect("write test file");
            path
        };
        let whole = write("whole.mp4", &[&init, &segments[0], &segments[1]]);
        let first = write("first.mp4", &[&init, &segments[0]]);
        let second = write("second.mp4", &[&init, &segments[1]]);

        for (file, range) in [(&whole, 0..FRAMES), (&first, 0..15), (&second, 15..FRAMES)] {
            let name = file.display();
            let p = probe(file);
            assert_eq!(p.codec, "av1", "{name}");
            assert_eq!((p.width, p.height), (320, 240), "{name}");
            assert_eq!(p.frames, range.len() as u64, "{name}: frames decoded");
            assert_eq!(p.packets.len(), range.len(), "{name}: packets");
            for (k, (pts, key)) in p.packets.iter().enumerate() {
                let i = range.start + k;
                assert_eq!(*pts, ms(0..i) as i64, "{name}: pts of frame {i}");
                assert_eq!(*key, i == 0 || i == 15, "{name}: sync flag of frame {i}");
            }
            // The timeline starts at the first fragment's decode time and ends after the last
            // sample's duration. ffmpeg reports the duration of a file that starts later either
            // as the span of its samples or as their end time, depending on the version.
            let (start_ms, end_ms, span_ms) = (
                ms(0..range.start) as f64,
                ms(0..range.end) as f64,
                ms(range.clone()) as f64,
            );
            assert!(
                (p.start * 1000.0 - start_ms).abs() < 0.5,
                "{name}: start {}",
                p.start
            );
            let d = p.duration * 1000.0;
            assert!(
                (d - span_ms).abs() < 0.5 || (range.start > 0 && (d - end_ms).abs() < 0.5),
                "{name}: duration {d} ms, samples span {span_ms} ms and end at {end_ms} ms"
            );

            // The pictures come out in order: the square moves 8 px right, 4 px down a frame.
            let gray = decode_gray(file);
            assert_eq!(
                gray.len(),
                range.len() * 320 * 240,
                "{name}: decoded frames"
            );
            for (k, frame) in gray.chunks_exact(320 * 240).enumerate() {
                let i = (range.start + k) as f64;
                let (x, y) = bright_centre(frame);
                let (want_x, want_y) = (8.0 + 8.0 * i + 23.5, 16.0 + 4.0 * i + 23.5);
                assert!(
                    (x - want_x).abs() < 2.0 && (y - want_y).abs() < 2.0,
                    "{name}: frame {i} square at ({x:.1}, {y:.1}), expected ({want_x}, {want_y})"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_fragments_parse_back(
            seq in any::<u32>(),
            bmdt in any::<u64>(),
            raw in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..300), any::<u32>(), any::<bool>()),
                1..40,
            ),
        ) {
            let samples: Vec<Sample> = raw
                .into_iter()
                .map(|(data, duration, keyframe)| Sample { data, duration, keyframe })
                .collect();
            let frag = fragment(seq, bmdt, &samples).expect("valid fragment");
            check_fragment(&frag, seq, bmdt, &samples);
        }
    }
}
