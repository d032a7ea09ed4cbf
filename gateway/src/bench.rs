//! `psmgate bench`: the standard workload through the real recording pipeline.
//!
//! The standard synthetic desktop session (see `psmgate_codecs::synth` for the exact mix) runs
//! on a simulated clock through the same stages as a live session — framebuffer damage,
//! scheduler, YUV conversion, masking, AV1 encoding, fMP4 muxing, hash-chained signed storage —
//! on one encoder thread, as the recorder runs them. Simulation keeps a 10-minute session from
//! taking 10 minutes while staying faithful: the clock advances to the next screen change, and
//! every encode occupies the encoder for the wall time it really took, so changes that arrive
//! meanwhile coalesce exactly as they would live. Reported:
//! - encode CPU seconds per session minute (process CPU time of the pipeline, one encoder thread),
//! - bytes per hour of session (everything stored: video, transcript, chain, manifest),
//! - quality: PSNR and SSIM (luma) of decoded frames against exactly the masked picture the encoder
//!   was given, for the first frame after every `quality_every_s` seconds,
//! - worst lag behind live: the longest time from a screen change to its frame being stored.

pub mod search;

use crate::recording::{MaskRule, StorageSink};
use anyhow::{Context, Result};
use psmgate_codecs::encoder::EncoderKind;
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::mask::MaskSet;
use psmgate_codecs::schedule::{Decision, FrameScheduler};
use psmgate_codecs::synth::Workload;
use psmgate_codecs::video::{VideoConfig, VideoOutput, VideoTrack};
use psmgate_codecs::yuv::YuvFrame;
use psmgate_codecs::Rect;
use psmgate_storage::backend::{Backend, LocalBackend};
use psmgate_storage::keys::GatewayKey;
use psmgate_storage::manifest::{Manifest, RecordingState};
use psmgate_storage::writer::RecordingWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Encoders to measure.
    pub encoders: Vec<EncoderKind>,
    /// Session length in minutes.
    pub minutes: f64,
    /// Screen width.
    pub width: u32,
    /// Screen height.
    pub height: u32,
    /// Workload seed.
    pub seed: u64,
    /// Frame-rate cap.
    pub max_fps: u32,
    /// Quantizer (None = backend default).
    pub quantizer: Option<u8>,
    /// Speed/preset (None = backend default).
    pub speed: Option<u8>,
    /// Where recordings are written (kept for inspection).
    pub out: PathBuf,
    /// Moments (session seconds) between quality samples.
    pub quality_every_s: u64,
}

/// One encoder's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Encoder name.
    pub encoder: String,
    /// Quantizer used.
    pub quantizer: u8,
    /// Speed/preset used.
    pub speed: u8,
    /// Session minutes simulated.
    pub session_minutes: f64,
    /// Frames encoded (real states).
    pub frames: u64,
    /// Bridge frames encoded.
    pub bridge_frames: u64,
    /// Keyframes.
    pub keyframes: u64,
    /// Process CPU seconds spent in the pipeline.
    pub cpu_seconds: f64,
    /// CPU seconds per session minute.
    pub cpu_s_per_session_min: f64,
    /// Average share of one core over the session.
    pub core_share_percent: f64,
    /// Bytes stored.
    pub bytes: u64,
    /// Bytes per session hour.
    pub bytes_per_hour: f64,
    /// Mean luma PSNR over sampled moments (dB).
    pub psnr_db: f64,
    /// Worst sampled luma PSNR (dB).
    pub psnr_min_db: f64,
    /// Mean luma SSIM over sampled moments.
    pub ssim: f64,
    /// Quality samples taken.
    pub quality_samples: usize,
    /// Worst time from a screen change to its frame being stored (ms), after the first frame.
    pub worst_lag_ms: u64,
    /// 99th percentile of that lag (ms).
    pub lag_p99_ms: u64,
    /// Time to store the first frame, including encoder start-up (ms).
    pub first_frame_ms: u64,
    /// Video bytes by workload phase (attributed when written, so ±2 s at phase edges).
    pub video_bytes_by_phase: std::collections::BTreeMap<String, u64>,
    /// Recording folder.
    pub recording: String,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and has no other effects.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs the benchmark for each encoder.
pub fn run(opts: &BenchOptions, masks: &[MaskRule]) -> Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for &kind in &opts.encoders {
        results.push(run_one(opts, kind, masks)?);
    }
    Ok(results)
}

fn run_one(opts: &BenchOptions, kind: EncoderKind, mask_rules: &[MaskRule]) -> Result<BenchResult> {
    let root = opts.out.join(kind.as_str());
    std::fs::create_dir_all(&root)?;
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&root)?);
    let key = Arc::new(GatewayKey::generate());
    let session = uuid::Uuid::new_v4().to_string();
    let mut manifest = Manifest::new(&session, "bench", time::OffsetDateTime::now_utc());
    manifest.user = "bench".into();
    manifest.target = "standard-workload".into();
    manifest.encoder = kind.as_str().into();
    let writer = RecordingWriter::create(backend.clone(), key.clone(), manifest)?;
    let dir = writer.dir().to_string();
    let mut sink = StorageSink::new(writer);

    let defaults = psmgate_codecs::encoder::EncoderConfig::for_size(kind, 2, 2);
    let vcfg = VideoConfig {
        encoder: kind,
        quantizer: opts.quantizer.unwrap_or(defaults.quantizer),
        speed: opts.speed.unwrap_or(defaults.speed),
        ..VideoConfig::default()
    };
    let (w, h) = (opts.width, opts.height);
    let settings = crate::recording::RecordingSettings {
        masks: mask_rules.to_vec(),
        ..Default::default()
    };
    let masks: MaskSet = settings.masks_for(w, h);
    let duration_ms = (opts.minutes * 60_000.0) as u64;
    let mut workload = Workload::standard(opts.seed, w, h, duration_ms);
    let mut fb = Framebuffer::new(w, h)?;
    let mut shadow = vec![0u32; (w * h) as usize];
    let (quantizer, speed) = (vcfg.quantizer, vcfg.speed);
    let mut video = VideoTrack::new(vcfg);
    let mut sched = FrameScheduler::new(opts.max_fps);
    let mut outs = Vec::new();
    let mut samples: Vec<(u64, YuvFrame)> = Vec::new();
    let mut next_sample = 0;

    let cpu0 = cpu_seconds();
    let mut t = 0u64;
    let mut busy_until = 0u64;
    let mut lags: Vec<u64> = Vec::new();
    let mut by_phase: std::collections::BTreeMap<&'static str, u64> = Default::default();
    loop {
        let _ = workload.advance(t, &mut fb);
        if fb.is_dirty() {
            sched.changed(t);
        }
        if t >= busy_until && sched.poll(t) == Decision::EncodeNow {
            let dirty_since = sched.dirty_since().unwrap_or(t);
            let damage = fb.take_damage();
            for r in &damage {
                fb.copy_into(*r, &mut shadow);
            }
            // Reference pictures for quality: exactly what this frame hands the encoder (the
            // masked screen), so PSNR measures coding loss, not timing.
            if t >= next_sample && t < duration_ms {
                let mut y = YuvFrame::black(w, h);
                y.convert_from_xrgb(&shadow, w, h, Rect::new(0, 0, w, h));
                masks.apply(&mut y);
                samples.push((t, y));
                next_sample += opts.quality_every_s * 1000;
            }
            let started = Instant::now();
            video.frame(t, &shadow, w, h, &damage, &masks, &mut outs)?;
            let phase = workload
                .phase_at(t.min(duration_ms.saturating_sub(1)))
                .name();
            store(&mut sink, &mut outs, by_phase.entry(phase).or_default())?;
            let took = started.elapsed().as_millis() as u64;
            busy_until = t + took;
            lags.push(busy_until - dirty_since);
            sched.encoded(t);
        }
        if t >= busy_until {
            let started = Instant::now();
            video.poll(t, &mut outs)?;
            if !outs.is_empty() {
                let phase = workload
                    .phase_at(t.min(duration_ms.saturating_sub(1)))
                    .name();
                store(&mut sink, &mut outs, by_phase.entry(phase).or_default())?;
                busy_until = t + started.elapsed().as_millis() as u64;
            }
        }
        if t >= duration_ms {
            break;
        }
        let mut next = workload
            .next_change_after(t)
            .unwrap_or(duration_ms)
            .min(duration_ms);
        if let Decision::At(d) = sched.poll(t) {
            next = next.min(d);
        }
        if sched.dirty_since().is_some() && busy_until > t {
            next = next.min(busy_until);
        }
        if let Some(d) = video.next_deadline(t) {
            next = next.min(d.max(busy_until));
        }
        t = next.max(t + 1);
    }
    video.finish(duration_ms, &mut outs)?;
    let last = workload.phase_at(duration_ms.saturating_sub(1)).name();
    store(&mut sink, &mut outs, by_phase.entry(last).or_default())?;
    let cpu = cpu_seconds() - cpu0;
    let first_frame_ms = lags.first().copied().unwrap_or(0);
    let mut steady: Vec<u64> = lags.iter().skip(1).copied().collect();
    steady.sort_unstable();
    let worst_lag = steady.last().copied().unwrap_or(0);
    let lag_p99 = steady
        .get(steady.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0);
    let stats = video.stats();
    let manifest = sink.seal(RecordingState::Completed, "benchmark finished")?;
    let folder = root.join(&dir);
    let bytes = dir_size(&folder)?;
    let (psnr, psnr_min, ssim) = quality(&folder, &manifest, &samples, w, h)?;
    let minutes = opts.minutes;
    Ok(BenchResult {
        encoder: kind.as_str().into(),
        quantizer,
        speed,
        session_minutes: minutes,
        frames: stats.frames,
        bridge_frames: stats.bridge_frames,
        keyframes: stats.keyframes,
        cpu_seconds: cpu,
        cpu_s_per_session_min: cpu / minutes,
        core_share_percent: cpu / (minutes * 60.0) * 100.0,
        bytes,
        bytes_per_hour: bytes as f64 * 60.0 / minutes,
        psnr_db: psnr,
        psnr_min_db: psnr_min,
        ssim,
        quality_samples: samples.len(),
        worst_lag_ms: worst_lag,
        lag_p99_ms: lag_p99,
        first_frame_ms,
        video_bytes_by_phase: by_phase
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        recording: folder.display().to_string(),
    })
}

/// Writes the outputs to storage, adding their size to `counter`.
fn store(sink: &mut StorageSink, outs: &mut Vec<VideoOutput>, counter: &mut u64) -> Result<()> {
    for o in outs.drain(..) {
        *counter += o.bytes().len() as u64;
        sink.video(o)?;
    }
    Ok(())
}

fn dir_size(p: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(p)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// Decodes the recording with ffmpeg at each sample moment and compares luma.
fn quality(
    folder: &Path,
    manifest: &Manifest,
    samples: &[(u64, YuvFrame)],
    w: u32,
    h: u32,
) -> Result<(f64, f64, f64)> {
    if samples.is_empty() {
        return Ok((0.0, 0.0, 0.0));
    }
    let period = manifest.periods.first().context("recording has no video")?;
    let mut mp4 = std::fs::read(folder.join(&period.init))?;
    for s in &period.segments {
        mp4.extend(std::fs::read(folder.join(&s.file))?);
    }
    let path = folder.join("bench-all.mp4");
    std::fs::write(&path, &mp4)?;
    let (mut sum_p, mut min_p, mut sum_s) = (0.0, f64::MAX, 0.0);
    for (t, reference) in samples {
        // Seek to the sample's presentation time: that frame.
        let out = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-ss",
                &format!("{:.3}", *t as f64 / 1000.0),
                "-i",
            ])
            .arg(&path)
            .args([
                "-frames:v",
                "1",
                "-vf",
                &format!("crop={w}:{h}:0:0"),
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-",
            ])
            .output()
            .context("running ffmpeg (needed to measure quality)")?;
        anyhow::ensure!(
            out.status.success(),
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Raw 4:2:0 without range conversion: the luma plane comes first.
        let luma = usize::try_from(u64::from(w) * u64::from(h))?;
        anyhow::ensure!(
            out.stdout.len() == luma * 3 / 2,
            "decoded frame has an unexpected size"
        );
        let decoded = &out.stdout[..luma];
        let dw = w;
        if std::env::var_os("PSMGATE_BENCH_DUMP").is_some() {
            let hdr = format!("P5\n{w} {h}\n255\n");
            let _ = std::fs::write(
                folder.join(format!("ref-{t}.pgm")),
                [hdr.as_bytes(), &reference.y[..luma]].concat(),
            );
            let _ = std::fs::write(
                folder.join(format!("dec-{t}.pgm")),
                [hdr.as_bytes(), decoded].concat(),
            );
        }
        let p = psnr_luma(&reference.y, reference.width, decoded, dw, w, h);
        let s = ssim_luma(&reference.y, reference.width, decoded, dw, w, h);
        sum_p += p;
        min_p = min_p.min(p);
        sum_s += s;
    }
    let _ = std::fs::remove_file(&path);
    let n = samples.len() as f64;
    Ok((sum_p / n, min_p, sum_s / n))
}

/// Luma PSNR over the visible `w`×`h` area.
pub fn psnr_luma(a: &[u8], a_stride: u32, b: &[u8], b_stride: u32, w: u32, h: u32) -> f64 {
    let mut se = 0f64;
    for y in 0..h {
        for x in 0..w {
            let pa = f64::from(a[(y * a_stride + x) as usize]);
            let pb = f64::from(*b.get((y * b_stride + x) as usize).unwrap_or(&0));
            se += (pa - pb) * (pa - pb);
        }
    }
    let mse = se / f64::from(w * h);
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Mean SSIM over 8×8 blocks of luma.
pub fn ssim_luma(a: &[u8], a_stride: u32, b: &[u8], b_stride: u32, w: u32, h: u32) -> f64 {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut n) = (0.0, 0u64);
    for by in (0..h.saturating_sub(7)).step_by(8) {
        for bx in (0..w.saturating_sub(7)).step_by(8) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
            for y in by..by + 8 {
                for x in bx..bx + 8 {
                    let pa = f64::from(a[(y * a_stride + x) as usize]);
                    let pb = f64::from(*b.get((y * b_stride + x) as usize).unwrap_or(&0));
                    sa += pa;
                    sb += pb;
                    saa += pa * pa;
                    sbb += pb * pb;
                    sab += pa * pb;
                }
            }
            let m = 64.0;
            let (ma, mb) = (sa / m, sb / m);
            let (va, vb, cov) = (saa / m - ma * ma, sbb / m - mb * mb, sab / m - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
        }
    }
    if n == 0 {
        1.0
    } else {
        total / n as f64
    }
}
