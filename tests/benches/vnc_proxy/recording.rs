//! Reading psmgate recordings while they are written and after they are sealed: which
//! recording belongs to which target, when each video fragment became durable (by tailing
//! `chain.jsonl`), how many frames each fragment holds (`trun` sample counts), and the decoded
//! luma of a screen region (ffmpeg).

use anyhow::{bail, Context, Result};
use psmgate_codecs::Rect;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A video fragment as seen while recording.
#[derive(Debug, Clone, Copy)]
pub struct FragmentSeen {
    /// Index of its first frame in the recording (frames counted from 0).
    pub first_frame: u64,
    /// Frames it holds.
    pub frames: u64,
    /// When its chain record was first seen (the bytes were durable by then).
    pub seen: Instant,
}

/// Follows one recording's `chain.jsonl`.
pub struct ChainTail {
    dir: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    frames: u64,
    /// Fragments in order.
    pub fragments: Vec<FragmentSeen>,
    /// Chain lines that could not be interpreted.
    pub problems: Vec<String>,
}

impl ChainTail {
    /// Starts following the recording in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        ChainTail {
            dir,
            offset: 0,
            partial: Vec::new(),
            frames: 0,
            fragments: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Reads chain lines appended since the last call.
    pub fn poll(&mut self, now: Instant) {
        let Ok(mut f) = std::fs::File::open(self.dir.join("chain.jsonl")) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            self.record(&line, now);
        }
    }

    fn record(&mut self, line: &[u8], now: Instant) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            self.problems
                .push(format!("unparsable chain line in {}", self.dir.display()));
            return;
        };
        let Some(file) = v["file"].as_str() else {
            return; // a checkpoint
        };
        if !(file.starts_with("video/") && file.ends_with(".m4s")) {
            return;
        }
        let (Some(offset), Some(len)) = (v["offset"].as_u64(), v["len"].as_u64()) else {
            self.problems
                .push(format!("chain record without range: {file}"));
            return;
        };
        match read_range(&self.dir.join(file), offset, len).map(|b| count_samples(&b)) {
            Ok(0) => {}
            Ok(n) => {
                self.fragments.push(FragmentSeen {
                    first_frame: self.frames,
                    frames: n,
                    seen: now,
                });
                self.frames += n;
            }
            Err(e) => self.problems.push(format!("{file}@{offset}: {e:#}")),
        }
    }

    /// Frames in all fragments seen so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The fragment holding frame `index`.
    pub fn fragment_of(&self, index: u64) -> Option<&FragmentSeen> {
        self.fragments
            .iter()
            .find(|f| index >= f.first_frame && index < f.first_frame + f.frames)
    }
}

fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; usize::try_from(len)?];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Iterates the ISO-BMFF boxes in `data`: (type, payload). Stops at the first malformed header.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let hdr = data.get(pos..pos + 8)?;
        let size32 = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        let kind = [hdr[4], hdr[5], hdr[6], hdr[7]];
        let (header, size) = match size32 {
            0 => (8, data.len() - pos),
            1 => {
                let l = data.get(pos + 8..pos + 16)?;
                let s = u64::from_be_bytes(l.try_into().ok()?);
                (16, usize::try_from(s).ok()?)
            }
            s => (8, s),
        };
        if size < header {
            return None;
        }
        let body = data.get(pos + header..pos.checked_add(size)?)?;
        pos += size;
        Some((kind, body))
    })
}

/// Frames (samples) in the movie fragments of `data`: the sum of `moof/traf/trun` sample
/// counts.
pub fn count_samples(data: &[u8]) -> u64 {
    let mut n = 0u64;
    for (kind, moof) in boxes(data) {
        if &kind != b"moof" {
            continue;
        }
        for (kind, traf) in boxes(moof) {
            if &kind != b"traf" {
                continue;
            }
            for (kind, trun) in boxes(traf) {
                if &kind == b"trun" && trun.len() >= 8 {
                    n += u64::from(u32::from_be_bytes([trun[4], trun[5], trun[6], trun[7]]));
                }
            }
        }
    }
    n
}

/// Recording folders below the storage root (`YYYY/MM/DD/<id>`) with their target name, from
/// `manifest.json` or `manifest.partial.json`.
pub fn recordings_by_target(root: &Path) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if depth < 3 {
                stack.push((p, depth + 1));
                continue;
            }
            let manifest = ["manifest.json", "manifest.partial.json"]
                .iter()
                .find_map(|m| std::fs::read(p.join(m)).ok())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(t) = manifest.as_ref().and_then(|m| m["target"].as_str()) {
                out.insert(t.to_owned(), p);
            }
        }
    }
    out
}

/// The sealed manifest of a recording.
pub fn manifest(rec: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(rec.join("manifest.json"))
        .with_context(|| format!("{} is not sealed", rec.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// The luma plane of `region` (even-aligned) in every frame of the recording's first period,
/// decoded by ffmpeg (libdav1d), in decode order, one frame per sample.
pub fn decode_region(rec: &Path, region: Rect, scratch: &Path) -> Result<Vec<Vec<u8>>> {
    let m = manifest(rec)?;
    if m["periods"].as_array().map_or(0, Vec::len) != 1 {
        bail!("{}: expected one period (no resize)", rec.display());
    }
    let mp4 = scratch.join("period.mp4");
    std::fs::write(&mp4, psmgate_e2e::period_mp4(rec, &m, 0))?;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&mp4)
        .args([
            "-vf",
            &format!("crop={}:{}:{}:{}", region.w, region.h, region.x, region.y),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ])
        .output()
        .context("running ffmpeg")?;
    let _ = std::fs::remove_file(&mp4);
    if !out.status.success() {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    }
    let luma = (region.w * region.h) as usize;
    let frame = luma * 3 / 2;
    if out.stdout.len() % frame != 0 {
        bail!("decoded size is not a whole number of frames");
    }
    Ok(out
        .stdout
        .chunks_exact(frame)
        .map(|f| f[..luma].to_vec())
        .collect())
}

/// BT.709 limited-range luma of `0x00RRGGBB` pixels (the recorder's conversion).
pub fn luma_of(px: &[u32]) -> Vec<u8> {
    px.iter()
        .map(|&p| {
            let (r, g, b) = (
                f64::from((p >> 16) & 0xff),
                f64::from((p >> 8) & 0xff),
                f64::from(p & 0xff),
            );
            let y = 16.0 + 219.0 * (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0;
            y.round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// PSNR of two equally long luma planes.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum();
    if se == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / (se / a.len() as f64)).log10()
    }
}
