//! The video track of one recording: framebuffer states in, init segments and fragments out.
//!
//! [`VideoTrack`] is sans-I/O: the recorder calls [`VideoTrack::frame`] with the current screen
//! and its damage when the scheduler says so, [`VideoTrack::poll`] from time to time and
//! [`VideoTrack::finish`] at the end; every call appends [`VideoOutput`]s (bytes plus where they
//! go) which the recorder writes to storage and hashes into the chain.
//!
//! # Timeline
//! Frames are only made when the screen changed, so samples have variable durations and each
//! sample lasts until the next one starts: the track's timeline has no gaps (Media Source
//! Extensions stall on gaps). A sample's duration is known once the next frame exists, which on
//! an idle screen may be minutes later. To bound what a crash can lose, a fragment is flushed
//! once its oldest sample is `fragment_max_ms` old; if by then the screen has been still for
//! `idle_close_ms`, the last real frame is *closed*: a copy of the current (masked) picture is
//! encoded at the close time as a bridge sample (nearly free for an AV1 encoder), so the real
//! frame's duration ends there and is flushed. The bridge then simply lasts until the next change.
//! Encoders that hold frames internally are pumped with further copies until the real frame
//! comes out. While nothing changes nothing is encoded: an idle screen costs no CPU (unless it is
//! watched live, see below).
//!
//! A sample's duration is also known once the frame after it is in the encoder (frames go in in
//! time order), so a flush writes every sample that comes before the newest frame sent, even
//! while the encoder still holds that frame.
//!
//! # Live interval
//! While someone watches the recording live, [`VideoTrack::set_live_interval`] shortens both
//! times (never below [`MIN_FRAGMENT_MS`]): more, smaller fragments, so a change reaches the
//! viewer sooner. A still screen's picture is then also extended every interval (another bridge
//! copy, which gives the previous one its duration), so the track's timeline keeps up with the
//! clock and the viewer never has to play through a still stretch to reach the next change.
//! Without a viewer the configured times apply and an idle screen costs nothing, so storage and
//! chain overhead stay as configured.
//!
//! # Segments and periods
//! Every media segment starts with a keyframe. A new keyframe, and so a new segment, is forced
//! when the inter-frame bytes since the last keyframe pass a budget or after a maximum interval.
//! A change of screen size ends the period: the encoder is drained and a new init segment (new
//! period) starts at the new size.

use crate::av1;
use crate::encoder::{self, EncodeError, Encoder, EncoderConfig, EncoderKind, Packet};
use crate::fmp4::{self, Sample, TrackConfig};
use crate::geometry::Rect;
use crate::mask::MaskSet;
use crate::yuv::YuvFrame;
use std::collections::VecDeque;

/// Video settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// Backend.
    pub encoder: EncoderKind,
    /// Quantizer 0..=63.
    pub quantizer: u8,
    /// Backend speed/preset.
    pub speed: u8,
    /// Encoder threads.
    pub threads: usize,
    /// A fragment is flushed once its oldest sample is this old.
    pub fragment_max_ms: u64,
    /// After this long without change, the last frame is closed (see module docs).
    pub idle_close_ms: u64,
    /// Longest time between keyframes.
    pub keyframe_max_interval_ms: u64,
    /// Inter-frame bytes after which the next frame is a keyframe.
    pub keyframe_byte_budget: u64,
}

impl Default for VideoConfig {
    fn default() -> Self {
        let kind = EncoderKind::preferred();
        let base = EncoderConfig::for_size(kind, 2, 2);
        Self {
            encoder: kind,
            quantizer: base.quantizer,
            speed: base.speed,
            threads: 1,
            fragment_max_ms: 1000,
            idle_close_ms: 1000,
            keyframe_max_interval_ms: 5 * 60 * 1000,
            keyframe_byte_budget: 2 * 1024 * 1024,
        }
    }
}

/// Bytes produced by the track and where they belong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoOutput {
    /// A new period (screen size) starts with this init segment.
    Init {
        /// Period number, from 1.
        period: u32,
        /// Screen width.
        width: u32,
        /// Screen height.
        height: u32,
        /// Session time the period starts at.
        start_ms: u64,
        /// RFC 6381 codec string, e.g. `av01.0.08M.08`.
        codec: String,
        /// The init segment.
        bytes: Vec<u8>,
    },
    /// A new media segment file starts with these bytes.
    SegmentStart {
        /// Period the segment belongs to.
        period: u32,
        /// Segment number, from 1, unique across periods.
        segment: u32,
        /// Session time of its first sample.
        start_ms: u64,
        /// The segment header (`styp`).
        bytes: Vec<u8>,
    },
    /// A fragment (`moof`+`mdat`) appended to the current segment.
    Fragment {
        /// Segment number.
        segment: u32,
        /// Session time of its first sample.
        start_ms: u64,
        /// Summed sample durations.
        duration_ms: u64,
        /// Number of samples.
        samples: u32,
        /// The fragment.
        bytes: Vec<u8>,
    },
}

impl VideoOutput {
    /// The bytes to store.
    pub fn bytes(&self) -> &[u8] {
        match self {
            VideoOutput::Init { bytes, .. }
            | VideoOutput::SegmentStart { bytes, .. }
            | VideoOutput::Fragment { bytes, .. } => bytes,
        }
    }
}

/// Video track errors.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Encoder failure.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Muxer failure.
    #[error("muxing failed: {0}")]
    Mux(String),
    /// The first packet of a period carried no sequence header.
    #[error("keyframe without AV1 sequence header")]
    NoSequenceHeader,
    /// Frame called after finish.
    #[error("video track already finished")]
    Finished,
}

#[derive(Debug)]
struct Queued {
    pts: u64,
    bridge: bool,
}

#[derive(Debug)]
struct Ready {
    pts: u64,
    bridge: bool,
    keyframe: bool,
    data: Vec<u8>,
}

/// Counters for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoStats {
    /// Frames of real screen states encoded.
    pub frames: u64,
    /// Bridge/pump copies encoded.
    pub bridge_frames: u64,
    /// Keyframes produced.
    pub keyframes: u64,
    /// Bytes of samples written.
    pub sample_bytes: u64,
    /// Fragments written.
    pub fragments: u64,
    /// Screen changes skipped because they lay entirely under masks.
    pub masked_only: u64,
}

/// Longest run of pump copies fed to an encoder that holds frames back.
const MAX_PUMP: usize = 32;

/// The shortest flush interval [`VideoTrack::set_live_interval`] sets (ms): each flush costs a
/// fragment header, a chain record and two fsyncs.
pub const MIN_FRAGMENT_MS: u64 = 200;

/// One recording's video track.
pub struct VideoTrack {
    cfg: VideoConfig,
    encoder: Option<Box<dyn Encoder>>,
    yuv: YuvFrame,
    screen: (u32, u32),
    period: u32,
    period_started: bool,
    segment: u32,
    fragment_seq: u32,
    in_encoder: VecDeque<Queued>,
    ready: VecDeque<Ready>,
    written_end: Option<u64>,
    last_keyframe_pts: u64,
    inter_bytes: u64,
    last_pts: Option<u64>,
    force_key: bool,
    finished: bool,
    stats: VideoStats,
    /// Flush interval while watched live ([`VideoTrack::set_live_interval`]).
    live_ms: Option<u64>,
}

impl std::fmt::Debug for VideoTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoTrack")
            .field("screen", &self.screen)
            .field("period", &self.period)
            .field("segment", &self.segment)
            .finish_non_exhaustive()
    }
}

impl VideoTrack {
    /// A track that has not produced anything yet.
    pub fn new(cfg: VideoConfig) -> Self {
        Self {
            cfg,
            encoder: None,
            yuv: YuvFrame::black(2, 2),
            screen: (0, 0),
            period: 0,
            period_started: false,
            segment: 0,
            fragment_seq: 0,
            in_encoder: VecDeque::new(),
            ready: VecDeque::new(),
            written_end: None,
            last_keyframe_pts: 0,
            inter_bytes: 0,
            last_pts: None,
            force_key: true,
            finished: false,
            stats: VideoStats::default(),
            live_ms: None,
        }
    }

    /// While someone watches the recording live: flush a fragment once its oldest sample is
    /// `interval_ms` old, and close the last frame after `interval_ms` without change, instead of
    /// the configured `fragment_max_ms` and `idle_close_ms`. The interval is raised to
    /// [`MIN_FRAGMENT_MS`] and never lengthens a configured time. `None` returns to the
    /// configured times. Takes effect at the next [`VideoTrack::poll`] or
    /// [`VideoTrack::next_deadline`].
    pub fn set_live_interval(&mut self, interval_ms: Option<u64>) {
        self.live_ms = interval_ms.map(|ms| ms.max(MIN_FRAGMENT_MS));
    }

    /// The live interval in force, if any (see [`VideoTrack::set_live_interval`]).
    pub fn live_interval(&self) -> Option<u64> {
        self.live_ms
    }

    /// How old a fragment's oldest sample may get before it is flushed, now.
    fn fragment_ms(&self) -> u64 {
        self.live_ms.map_or(self.cfg.fragment_max_ms, |l| {
            l.min(self.cfg.fragment_max_ms)
        })
    }

    /// How long the screen stays still before its last frame is closed, now.
    fn idle_ms(&self) -> u64 {
        self.live_ms
            .map_or(self.cfg.idle_close_ms, |l| l.min(self.cfg.idle_close_ms))
    }

    /// Counters so far.
    pub fn stats(&self) -> VideoStats {
        self.stats
    }

    /// The encoder in use, once the first frame was made.
    pub fn encoder_kind(&self) -> EncoderKind {
        self.cfg.encoder
    }

    /// True when some real screen state is not yet in a written fragment.
    pub fn has_unflushed(&self) -> bool {
        self.ready.iter().any(|r| !r.bridge) || self.in_encoder.iter().any(|q| !q.bridge)
    }

    /// When [`VideoTrack::poll`] next has work (as seen at `now`), if ever without a new frame.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        if !self.has_unflushed() {
            return self.still_extend_at().map(|t| t.max(now));
        }
        let oldest = self.oldest_pts()?;
        let due = oldest + self.fragment_ms();
        if now < due {
            return Some(due);
        }
        let idle_at = self.last_pts.unwrap_or(oldest) + self.idle_ms();
        Some(idle_at.max(now))
    }

    /// Encodes the screen state at `now` ms: `pixels` is the whole `width`×`height` screen
    /// (`0x00RRGGBB`), `damage` what changed since the previous call, `masks` the masks in force
    /// for this size.
    #[allow(clippy::too_many_arguments)]
    pub fn frame(
        &mut self,
        now: u64,
        pixels: &[u32],
        width: u32,
        height: u32,
        damage: &[Rect],
        masks: &MaskSet,
        out: &mut Vec<VideoOutput>,
    ) -> Result<(), VideoError> {
        if self.finished {
            return Err(VideoError::Finished);
        }
        // Timestamps never go backwards and never collide.
        let now = match self.last_pts {
            Some(last) => now.max(last + 1),
            None => 0,
        };
        let new_period = (width, height) != self.screen || self.encoder.is_none();
        if !new_period && !damage.is_empty() && damage.iter().all(|r| masks.hides(r)) {
            // Only masked pixels changed: the encoder's picture is the same. Nothing to do.
            self.stats.masked_only += 1;
            return Ok(());
        }
        if new_period {
            self.end_period(now, out)?;
            self.start_period(width, height)?;
            self.yuv
                .convert_from_xrgb(pixels, width, height, Rect::new(0, 0, width, height));
        } else {
            for r in damage {
                self.yuv.convert_from_xrgb(pixels, width, height, *r);
            }
        }
        masks.apply(&mut self.yuv);
        // A change of most of the screen (app switch, new page) is coded as a keyframe: it costs
        // about what an inter frame would, is coded at keyframe quality, and gives the player a
        // random-access point exactly where the picture changed.
        let changed: u64 = damage.iter().map(Rect::area).sum();
        let full = u64::from(width) * u64::from(height);
        let key = self.force_key
            || changed * 2 >= full
            || now.saturating_sub(self.last_keyframe_pts) >= self.cfg.keyframe_max_interval_ms
            || self.inter_bytes >= self.cfg.keyframe_byte_budget;
        self.encode(now, key, false, out)?;
        self.stats.frames += 1;
        Ok(())
    }

    /// Flushes what is due at `now` (see the module docs).
    pub fn poll(&mut self, now: u64, out: &mut Vec<VideoOutput>) -> Result<(), VideoError> {
        if !self.has_unflushed() {
            return self.extend_still(now, out);
        }
        match self.oldest_pts() {
            Some(oldest) if now >= oldest + self.fragment_ms() => {}
            _ => return Ok(()),
        }
        let newest = self.last_pts.unwrap_or(0);
        if now.saturating_sub(newest) < self.idle_ms() {
            // Still changing: flush every sample whose duration is known — each one ends where
            // the next begins, and the newest ready one where the first frame the encoder still
            // holds begins.
            let held = self.in_encoder.iter().map(|q| q.pts).min();
            let known = match held {
                Some(_) => self.ready.len(),
                None => self.ready.len().saturating_sub(1),
            };
            if known > 0 {
                self.write(known, held, out)?;
            }
            return Ok(());
        }
        // Idle: close the last real frame with a bridge copy at `now`.
        let close_at = now.max(newest + 1);
        self.encode(close_at, false, true, out)?;
        let mut pumped = 0;
        while self
            .in_encoder
            .iter()
            .any(|q| !q.bridge && q.pts < close_at)
            && pumped < MAX_PUMP
        {
            pumped += 1;
            self.encode(close_at + pumped as u64, false, true, out)?;
        }
        let n = self.ready.iter().take_while(|r| r.pts < close_at).count();
        if n > 0 {
            self.write(n, Some(close_at), out)?;
        }
        Ok(())
    }

    /// While watched live, a still screen's picture is extended every live interval: a bridge
    /// copy at `now` gives the bridge before it its duration, which is then written. So the
    /// timeline keeps up with the clock and a viewer at the live edge sees the next change as
    /// soon as it is flushed, instead of first playing the still stretch.
    fn extend_still(&mut self, now: u64, out: &mut Vec<VideoOutput>) -> Result<(), VideoError> {
        let due = match self.still_extend_at() {
            Some(due) if now >= due => due,
            _ => return Ok(()),
        };
        let close_at = now.max(due);
        self.encode(close_at, false, true, out)?;
        // An encoder that holds several frames gives back what came before the copy.
        let mut pumped = 0;
        while self.in_encoder.iter().any(|q| q.pts < close_at) && pumped < MAX_PUMP {
            pumped += 1;
            self.encode(close_at + pumped as u64, false, true, out)?;
        }
        let n = self.ready.iter().take_while(|r| r.pts < close_at).count();
        if n > 0 {
            let held = self.in_encoder.iter().map(|q| q.pts).min();
            self.write(n, Some(held.unwrap_or(close_at)), out)?;
        }
        Ok(())
    }

    /// When a still screen's picture is next extended (see [`VideoTrack::extend_still`]): only
    /// while watched live, once every real frame is written and a bridge copy is still open.
    fn still_extend_at(&self) -> Option<u64> {
        let live = self.live_ms?;
        if self.has_unflushed() || (self.ready.is_empty() && self.in_encoder.is_empty()) {
            return None;
        }
        Some(self.last_pts? + live)
    }

    /// Ends the track at `now`: drains the encoder and writes everything.
    pub fn finish(&mut self, now: u64, out: &mut Vec<VideoOutput>) -> Result<(), VideoError> {
        if self.finished {
            return Ok(());
        }
        self.end_period(now, out)?;
        self.finished = true;
        Ok(())
    }

    fn oldest_pts(&self) -> Option<u64> {
        self.ready
            .iter()
            .map(|r| r.pts)
            .chain(self.in_encoder.iter().map(|q| q.pts))
            .min()
    }

    fn start_period(&mut self, width: u32, height: u32) -> Result<(), VideoError> {
        let (cw, ch) = encoder::padded_size(self.cfg.encoder, width, height);
        let ecfg = EncoderConfig {
            width: cw,
            height: ch,
            quantizer: self.cfg.quantizer,
            speed: self.cfg.speed,
            threads: self.cfg.threads,
        };
        self.encoder = Some(encoder::create(self.cfg.encoder, &ecfg)?);
        self.yuv = YuvFrame::black(cw, ch);
        self.screen = (width, height);
        self.period += 1;
        self.period_started = false;
        self.force_key = true;
        Ok(())
    }

    fn end_period(&mut self, now: u64, out: &mut Vec<VideoOutput>) -> Result<(), VideoError> {
        let Some(mut enc) = self.encoder.take() else {
            return Ok(());
        };
        let packets = enc.finish()?;
        self.take_packets(packets, out)?;
        self.in_encoder.clear();
        if !self.ready.is_empty() {
            let end = now.max(self.ready.back().map(|r| r.pts + 1).unwrap_or(now));
            self.write(self.ready.len(), Some(end), out)?;
        }
        Ok(())
    }

    fn encode(
        &mut self,
        pts: u64,
        key: bool,
        bridge: bool,
        out: &mut Vec<VideoOutput>,
    ) -> Result<(), VideoError> {
        let enc = self.encoder.as_mut().ok_or(VideoError::Finished)?;
        self.in_encoder.push_back(Queued { pts, bridge });
        self.last_pts = Some(self.last_pts.map_or(pts, |l| l.max(pts)));
        if bridge {
            self.stats.bridge_frames += 1;
        }
        let packets = enc.encode(&self.yuv, pts, key)?;
        if key {
            self.force_key = false;
            self.last_keyframe_pts = pts;
        }
        self.take_packets(packets, out)
    }

    fn take_packets(
        &mut self,
        packets: Vec<Packet>,
        out: &mut Vec<VideoOutput>,
    ) -> Result<(), VideoError> {
        for p in packets {
            let bridge = match self.in_encoder.iter().position(|q| q.pts == p.pts) {
                Some(i) => self.in_encoder.remove(i).map(|q| q.bridge).unwrap_or(false),
                None => false,
            };
            if p.keyframe {
                // A keyframe starts a new segment: everything before it goes out first.
                if !self.ready.is_empty() {
                    self.write(self.ready.len(), Some(p.pts), out)?;
                }
                self.stats.keyframes += 1;
                self.inter_bytes = 0;
                if !self.period_started {
                    let seq = av1::find_sequence_header(&p.data)
                        .ok_or(VideoError::NoSequenceHeader)?
                        .to_vec();
                    let codec = av1::parse_sequence_header(&seq)
                        .map(|h| av1::codec_string(&h))
                        .map_err(|e| VideoError::Mux(e.to_string()))?;
                    let bytes = fmp4::init_segment(&TrackConfig {
                        width: self.screen.0,
                        height: self.screen.1,
                        timescale: 1000,
                        sequence_header: seq,
                    })
                    .map_err(|e| VideoError::Mux(e.to_string()))?;
                    out.push(VideoOutput::Init {
                        period: self.period,
                        width: self.screen.0,
                        height: self.screen.1,
                        start_ms: p.pts,
                        codec,
                        bytes,
                    });
                    self.period_started = true;
                }
                self.segment += 1;
                out.push(VideoOutput::SegmentStart {
                    period: self.period,
                    segment: self.segment,
                    start_ms: p.pts,
                    bytes: fmp4::segment_header(),
                });
            } else {
                self.inter_bytes += p.data.len() as u64;
            }
            self.ready.push_back(Ready {
                pts: p.pts,
                bridge,
                keyframe: p.keyframe,
                data: p.data,
            });
        }
        Ok(())
    }

    /// Writes the first `n` ready samples as one fragment. The last one ends at the next ready
    /// sample, or at `end` when given.
    fn write(
        &mut self,
        n: usize,
        end: Option<u64>,
        out: &mut Vec<VideoOutput>,
    ) -> Result<(), VideoError> {
        let n = n.min(self.ready.len());
        if n == 0 {
            return Ok(());
        }
        let next_after = self.ready.get(n).map(|r| r.pts);
        let taken: Vec<Ready> = self.ready.drain(..n).collect();
        let start = self.written_end.unwrap_or(taken[0].pts);
        let mut samples = Vec::with_capacity(n);
        let mut t = start;
        for (i, r) in taken.iter().enumerate() {
            let next = taken
                .get(i + 1)
                .map(|x| x.pts)
                .or(next_after)
                .or(end)
                .unwrap_or(r.pts + 1);
            let next = next.max(t + 1);
            samples.push(Sample {
                data: r.data.clone(),
                duration: u32::try_from(next - t)
                    .map_err(|_| VideoError::Mux("sample too long".into()))?,
                keyframe: r.keyframe,
            });
            t = next;
        }
        self.fragment_seq += 1;
        let bytes = fmp4::fragment(self.fragment_seq, start, &samples)
            .map_err(|e| VideoError::Mux(e.to_string()))?;
        self.stats.fragments += 1;
        self.stats.sample_bytes += samples.iter().map(|s| s.data.len() as u64).sum::<u64>();
        out.push(VideoOutput::Fragment {
            segment: self.segment,
            start_ms: start,
            duration_ms: t - start,
            samples: samples.len() as u32,
            bytes,
        });
        self.written_end = Some(t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskSet;

    const W: u32 = 64;
    const H: u32 = 48;

    /// A track with the timing the tests reason about spelled out (not the defaults).
    fn track() -> VideoTrack {
        VideoTrack::new(VideoConfig {
            encoder: EncoderKind::Rav1e,
            quantizer: 60,
            speed: 10,
            fragment_max_ms: 2000,
            idle_close_ms: 1000,
            keyframe_max_interval_ms: 60_000,
            ..VideoConfig::default()
        })
    }

    fn screen(k: u32) -> Vec<u32> {
        (0..W * H)
            .map(|i| {
                if (i + k * 7).is_multiple_of(13) {
                    0xffffff
                } else {
                    0x202020
                }
            })
            .collect()
    }

    /// A frame whose damage is a small area (a typed character): an inter frame.
    fn frame(v: &mut VideoTrack, t: u64, k: u32, out: &mut Vec<VideoOutput>) {
        let damage = [Rect::new(0, 0, 16, 16)];
        v.frame(t, &screen(k), W, H, &damage, &MaskSet::default(), out)
            .unwrap();
    }

    /// Fragments tile the timeline without gaps or overlaps and end where asked.
    fn assert_contiguous(out: &[VideoOutput], end: u64) {
        let mut t = 0;
        for o in out {
            if let VideoOutput::Fragment {
                start_ms,
                duration_ms,
                ..
            } = o
            {
                assert_eq!(*start_ms, t, "gap or overlap before fragment at {start_ms}");
                t = start_ms + duration_ms;
            }
        }
        assert_eq!(t, end, "timeline ends at {t}, expected {end}");
    }

    #[test]
    fn idle_screen_is_closed_by_one_bridge_and_then_costs_nothing() {
        let mut v = track();
        let mut out = Vec::new();
        for (i, t) in [0u64, 100, 200].into_iter().enumerate() {
            frame(&mut v, t, i as u32, &mut out);
        }
        // Still changing recently: nothing due before the fragment deadline.
        v.poll(1500, &mut out).unwrap();
        assert!(!out
            .iter()
            .any(|o| matches!(o, VideoOutput::Fragment { .. })));
        // Idle past the deadline: the last real frame is closed by a bridge and flushed.
        v.poll(2500, &mut out).unwrap();
        // One bridge, plus pump copies for an encoder that holds frames back (rav1e).
        let bridges = v.stats().bridge_frames;
        assert!(bridges >= 1);
        assert!(!v.has_unflushed());
        assert_eq!(
            v.next_deadline(2500),
            None,
            "idle: no more work until the screen changes"
        );
        for t in [5000, 8000, 9000] {
            v.poll(t, &mut out).unwrap();
        }
        assert_eq!(v.stats().bridge_frames, bridges, "idle costs no encodes");
        frame(&mut v, 10_000, 9, &mut out);
        v.finish(11_000, &mut out).unwrap();
        assert_contiguous(&out, 11_000);
        assert_eq!(v.stats().frames, 4);
    }

    #[test]
    fn active_screen_flushes_at_least_every_fragment_interval() {
        let mut v = track();
        let mut out = Vec::new();
        let mut last_flush = 0;
        let mut worst = 0;
        for i in 0..60u32 {
            let t = u64::from(i) * 100;
            frame(&mut v, t, i, &mut out);
            v.poll(t, &mut out).unwrap();
            if let Some(VideoOutput::Fragment {
                start_ms,
                duration_ms,
                ..
            }) = out.last()
            {
                last_flush = start_ms + duration_ms;
            }
            worst = worst.max(t - last_flush);
        }
        v.finish(6000, &mut out).unwrap();
        assert!(worst <= 2100, "a change stayed unwritten for {worst} ms");
        assert_contiguous(&out, 6000);
    }

    /// End (ms) of the last fragment in `out`, if any.
    fn flushed_to(out: &[VideoOutput]) -> Option<u64> {
        out.iter().rev().find_map(|o| match o {
            VideoOutput::Fragment {
                start_ms,
                duration_ms,
                ..
            } => Some(start_ms + duration_ms),
            _ => None,
        })
    }

    #[test]
    fn a_live_interval_flushes_sooner_and_closes_a_still_frame_sooner() {
        let mut v = track();
        let mut out = Vec::new();
        for (i, t) in [0u64, 100, 200].into_iter().enumerate() {
            frame(&mut v, t, i as u32, &mut out);
        }
        // The configured times (2 s, 1 s): nothing due yet.
        assert_eq!(v.next_deadline(300), Some(2000));
        v.poll(600, &mut out).unwrap();
        assert_eq!(flushed_to(&out), None);

        v.set_live_interval(Some(250));
        assert_eq!(v.live_interval(), Some(250));
        assert_eq!(v.next_deadline(300), Some(450), "200 + 250: idle close");
        // Still for 400 ms (> 250): the last frame is closed and everything written.
        v.poll(600, &mut out).unwrap();
        assert_eq!(flushed_to(&out), Some(600));
        assert!(!v.has_unflushed());

        // Changing again: a fragment is due once its oldest sample is 250 ms old.
        for (i, t) in [1000u64, 1100].into_iter().enumerate() {
            frame(&mut v, t, 10 + i as u32, &mut out);
        }
        let oldest = v.oldest_pts().unwrap();
        assert_eq!(v.next_deadline(oldest), Some(oldest + 250));

        // Back to the configured times.
        v.set_live_interval(None);
        assert_eq!(v.live_interval(), None);
        let oldest = v.oldest_pts().unwrap();
        assert_eq!(v.next_deadline(1300), Some(oldest + 2000));
        v.finish(1500, &mut out).unwrap();
        assert_contiguous(&out, 1500);
    }

    #[test]
    fn a_still_screen_watched_live_keeps_its_timeline_up_with_the_clock() {
        let mut v = track();
        v.set_live_interval(Some(250));
        let mut out = Vec::new();
        for (i, t) in [0u64, 100, 200].into_iter().enumerate() {
            frame(&mut v, t, i as u32, &mut out);
        }
        v.poll(450, &mut out).unwrap();
        assert_eq!(flushed_to(&out), Some(450), "the last frame is closed");
        let frames = v.stats().frames;
        // Still: the picture is extended every 250 ms, the written timeline ending at the clock.
        // (An encoder that holds frames back gets a few more copies, a millisecond apart.)
        for _ in 0..3 {
            let before = flushed_to(&out).unwrap();
            let due = v.next_deadline(before).unwrap();
            assert!(due >= before + 250 && due <= before + 250 + MAX_PUMP as u64);
            v.poll(due - 1, &mut out).unwrap();
            assert_eq!(flushed_to(&out), Some(before), "nothing before it is due");
            v.poll(due, &mut out).unwrap();
            assert_eq!(flushed_to(&out), Some(due));
        }
        assert_eq!(v.stats().frames, frames, "only copies were encoded");
        // Nobody watching: a still screen costs nothing again.
        let written = flushed_to(&out);
        v.set_live_interval(None);
        assert_eq!(v.next_deadline(1500), None);
        v.poll(5000, &mut out).unwrap();
        assert_eq!(flushed_to(&out), written);
        frame(&mut v, 6000, 7, &mut out);
        v.finish(6500, &mut out).unwrap();
        assert_contiguous(&out, 6500);
    }

    #[test]
    fn a_live_interval_has_a_floor_and_never_lengthens_the_configured_times() {
        let mut v = track();
        v.set_live_interval(Some(10));
        assert_eq!(v.live_interval(), Some(MIN_FRAGMENT_MS));
        let mut out = Vec::new();
        frame(&mut v, 0, 0, &mut out);
        frame(&mut v, 50, 1, &mut out);
        assert_eq!(v.next_deadline(60), Some(MIN_FRAGMENT_MS));
        v.set_live_interval(Some(60_000));
        assert_eq!(
            v.next_deadline(60),
            Some(2000),
            "the configured 2 s still apply"
        );
    }

    #[test]
    fn a_sample_is_flushed_once_the_frame_after_it_is_in_the_encoder() {
        let mut v = track();
        let mut out = Vec::new();
        v.set_live_interval(Some(MIN_FRAGMENT_MS));
        let mut t = 0;
        // Until the encoder gave back some packets and still holds a later frame, and the oldest
        // sample is due.
        while v.ready.is_empty() || v.in_encoder.is_empty() || t < 400 {
            frame(&mut v, t, (t / 100) as u32, &mut out);
            t += 100;
            assert!(t < 10_000, "the encoder gave nothing back");
        }
        let held = v.in_encoder.iter().map(|q| q.pts).min().unwrap();
        let newest_ready = v.ready.back().unwrap().pts;
        assert!(newest_ready < held);
        // Changing (the newest frame is from now) and due: every ready sample goes out, the
        // newest ending where the held frame starts.
        v.poll(t - 100, &mut out).unwrap();
        assert!(v.ready.is_empty(), "{} samples left", v.ready.len());
        assert_eq!(flushed_to(&out), Some(held));
        v.finish(t + 100, &mut out).unwrap();
        assert_contiguous(&out, t + 100);
    }

    #[test]
    fn keyframe_interval_starts_segments_and_resize_starts_a_period() {
        let mut v = VideoTrack::new(VideoConfig {
            encoder: EncoderKind::Rav1e,
            quantizer: 60,
            speed: 10,
            keyframe_max_interval_ms: 1000,
            ..VideoConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..25u32 {
            frame(&mut v, u64::from(i) * 100, i, &mut out);
        }
        let segments = out
            .iter()
            .filter(|o| matches!(o, VideoOutput::SegmentStart { .. }))
            .count();
        assert_eq!(segments, 3, "keyframes at 0, 1000 and 2000 ms");
        // A new size: the old period is drained, a new init follows.
        v.frame(
            2600,
            &vec![0; 32 * 32],
            32,
            32,
            &[],
            &MaskSet::default(),
            &mut out,
        )
        .unwrap();
        v.finish(3000, &mut out).unwrap();
        let inits: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                VideoOutput::Init {
                    period,
                    width,
                    codec,
                    ..
                } => Some((*period, *width, codec.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(inits.len(), 2);
        assert_eq!(
            (inits[0].0, inits[0].1, inits[1].0, inits[1].1),
            (1, 64, 2, 32)
        );
        assert!(inits[0].2.starts_with("av01.0."));
        assert_contiguous(&out, 3000);
        // Segment starts always come before the fragments of that segment.
        let mut seg = 0;
        for o in &out {
            match o {
                VideoOutput::SegmentStart { segment, .. } => seg = *segment,
                VideoOutput::Fragment { segment, .. } => assert_eq!(*segment, seg),
                VideoOutput::Init { .. } => {}
            }
        }
    }

    #[test]
    fn a_change_of_most_of_the_screen_is_a_keyframe() {
        let mut v = track();
        let mut out = Vec::new();
        frame(&mut v, 0, 0, &mut out);
        frame(&mut v, 100, 1, &mut out);
        let half = [Rect::new(0, 0, W, H / 2)];
        v.frame(200, &screen(2), W, H, &half, &MaskSet::default(), &mut out)
            .unwrap();
        v.finish(300, &mut out).unwrap();
        let segments = out
            .iter()
            .filter(|o| matches!(o, VideoOutput::SegmentStart { .. }))
            .count();
        assert_eq!(
            segments, 2,
            "the half-screen change at 200 ms starts a segment"
        );
        assert_eq!(v.stats().keyframes, 2);
    }

    #[test]
    fn changes_under_a_mask_cost_no_encode() {
        use crate::mask::Mask;
        let masks = MaskSet::new(
            [Mask {
                id: "m".into(),
                rect: Rect::new(0, 0, 32, 32),
            }],
            W,
            H,
        );
        let mut v = track();
        let mut out = Vec::new();
        let inside = [Rect::new(0, 0, 16, 16)];
        let outside = [Rect::new(32, 16, 16, 16)];
        v.frame(0, &screen(0), W, H, &inside, &masks, &mut out)
            .unwrap();
        v.frame(100, &screen(1), W, H, &inside, &masks, &mut out)
            .unwrap();
        v.frame(200, &screen(2), W, H, &inside, &masks, &mut out)
            .unwrap();
        assert_eq!((v.stats().frames, v.stats().masked_only), (1, 2));
        v.frame(300, &screen(3), W, H, &outside, &masks, &mut out)
            .unwrap();
        assert_eq!(v.stats().frames, 2);
    }

    #[test]
    fn first_frame_starts_at_zero_and_times_never_collide() {
        let mut v = track();
        let mut out = Vec::new();
        frame(&mut v, 750, 0, &mut out);
        frame(&mut v, 750, 1, &mut out);
        frame(&mut v, 740, 2, &mut out);
        v.finish(1000, &mut out).unwrap();
        assert_contiguous(&out, 1000);
        assert!(matches!(out[0], VideoOutput::Init { start_ms: 0, .. }));
    }
}
