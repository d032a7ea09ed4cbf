//! A session recorded through the real recorder (threads, scheduler, encoder, muxer, chained
//! storage) with a masked region holding a bright planted pattern. Every stored frame is decoded
//! with ffmpeg (libdav1d): the masked region must be black in every frame, the rest must match
//! the source, and the transcript must hold the typed text but not what was typed in mask mode.

use psmgate::recording::{MaskRule, Recorder, RecordingSettings, SessionInfo};
use psmgate_codecs::transcript::{keysym, Input};
use psmgate_codecs::Rect;
use psmgate_e2e::{decode_luma, period_mp4, psnr};
use psmgate_storage::backend::LocalBackend;
use psmgate_storage::index::SqliteIndex;
use psmgate_storage::keys::GatewayKey;
use psmgate_storage::manifest::RecordingState;
use std::sync::Arc;
use std::time::Duration;

const W: u32 = 640;
const H: u32 = 480;
/// The masked region (policy: x=400 y=40 w=160 h=120).
const MASK: Rect = Rect::new(400, 40, 160, 120);

/// Draws "text": glyph-like strokes of `seed`-dependent shapes on a dark background, plus the
/// planted secret (white stripes) inside the masked region.
fn draw_state(k: u32) -> Vec<u32> {
    let mut px = vec![0x1e1e28u32; (W * H) as usize];
    for line in 0..20u32 {
        for ch in 0..60u32 {
            let code = (line * 7 + ch * 13 + k * 31) % 11;
            if code < 3 {
                continue;
            }
            let (x0, y0) = (10 + ch * 10, 10 + line * 22);
            for y in 0..14 {
                for x in 0..7 {
                    let on = match code {
                        3 => x == 0 || y == 0,
                        4 => x == 6 || y == 13,
                        5 => x == y / 2,
                        6 => y == 7 || x == 3,
                        7 => (x + y) % 5 == 0,
                        8 => x == 0 || x == 6,
                        9 => y % 4 == 0,
                        _ => x == 3,
                    };
                    if on {
                        px[((y0 + y) * W + x0 + x) as usize] = 0xd0d0d0;
                    }
                }
            }
        }
    }
    // The planted secret: bright stripes that change with every state.
    for y in MASK.y..MASK.bottom() {
        for x in MASK.x..MASK.right() {
            if (x + y + k) % 4 < 2 {
                px[(y * W + x) as usize] = 0xffffff;
            }
        }
    }
    px
}

#[test]
fn masked_region_is_black_in_every_frame_and_the_rest_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Arc::new(LocalBackend::new(tmp.path().join("rec")).unwrap());
    let key = Arc::new(GatewayKey::generate());
    let index = Arc::new(SqliteIndex::open(&tmp.path().join("index.sqlite3")).unwrap());
    use psmgate_policy::Dim;
    let mut settings = RecordingSettings::default();
    settings.masks.push(MaskRule {
        id: "planted".into(),
        region: psmgate_policy::MaskRegion {
            id: "planted".into(),
            x: Dim::Px(MASK.x),
            y: Dim::Px(MASK.y),
            width: Dim::Px(MASK.w),
            height: Dim::Px(MASK.h),
        },
    });
    let info = SessionInfo {
        protocol: "test".into(),
        user: "alice".into(),
        target: "lab".into(),
        ..Default::default()
    };
    let rec = Recorder::start(backend, key.clone(), index, info, settings).unwrap();
    rec.resize(W, H).unwrap();

    // Six states, each held 1 s; type while they show.
    let mut shown = Vec::new();
    for k in 0..6u32 {
        let px = draw_state(k);
        let t = rec.now_ms();
        rec.screen(|fb| fb.put_rect(Rect::new(0, 0, W, H), &px, W as usize))
            .unwrap();
        shown.push((t, px));
        for c in format!("ls /etc/k{k}\n").chars() {
            let (key, ch) = keysym::describe(keysym::from_char(c));
            rec.input(Input::Key {
                key: key.clone(),
                ch,
                down: true,
            })
            .unwrap();
            rec.input(Input::Key {
                key,
                ch,
                down: false,
            })
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let manifest = rec
        .finish(RecordingState::Completed, "test finished")
        .unwrap();
    assert_eq!(manifest.state, RecordingState::Completed);
    assert_eq!(manifest.mask_rule_ids, vec!["planted".to_string()]);

    let dir = tmp.path().join("rec").join(rec.dir());
    let mjson: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mp4 = tmp.path().join("all.mp4");
    std::fs::write(&mp4, period_mp4(&dir, &mjson, 0)).unwrap();
    let frames = decode_luma(&mp4, W, H);
    assert!(
        frames.len() >= 6,
        "expected a frame per state, got {}",
        frames.len()
    );

    for f in &frames {
        // 1. The masked region is black in every decoded frame: its interior exactly so (up to
        //    coding noise), and nowhere in it is there any trace of the planted stripes. (Its
        //    outermost pixels may carry ringing from the unmasked content next to it: the encoder
        //    saw black there, but a lossy transform block can straddle the edge.)
        let inner = Rect::new(MASK.x + 8, MASK.y + 8, MASK.w - 16, MASK.h - 16);
        let (mut inner_max, mut sum, mut n) = (0u8, 0u64, 0u64);
        for k in 0..6u32 {
            // Stripe phase of every state: mean luma on the stripes minus mean luma between them.
            let (mut on, mut on_n, mut off, mut off_n) = (0u64, 0u64, 0u64, 0u64);
            for y in MASK.y..MASK.bottom() {
                for x in MASK.x..MASK.right() {
                    let v = u64::from(f.y[(y * W + x) as usize]);
                    if (x + y + k) % 4 < 2 {
                        on += v;
                        on_n += 1;
                    } else {
                        off += v;
                        off_n += 1;
                    }
                }
            }
            let contrast = on as f64 / on_n as f64 - off as f64 / off_n as f64;
            assert!(
                contrast.abs() < 2.0,
                "frame at {} ms: stripe pattern {k} shows through ({contrast:.1})",
                f.pts_ms
            );
        }
        for y in MASK.y..MASK.bottom() {
            for x in MASK.x..MASK.right() {
                let v = f.y[(y * W + x) as usize];
                sum += u64::from(v);
                n += 1;
                if inner.contains(x, y) {
                    inner_max = inner_max.max(v);
                }
            }
        }
        assert!(
            inner_max <= 200,
            "frame at {} ms: masked interior has luma {inner_max}",
            f.pts_ms
        );
        let mean = sum as f64 / n as f64;
        assert!(
            mean <= 18.0,
            "frame at {} ms: masked region mean luma {mean:.1}",
            f.pts_ms
        );
    }
    // 2. Away from state changes, frames match the (masked) source they show.
    let mut compared = 0;
    for f in &frames {
        let Some(i) = shown.iter().rposition(|(t, _)| *t <= f.pts_ms) else {
            continue;
        };
        let next_change = shown.get(i + 1).map(|(t, _)| *t).unwrap_or(u64::MAX);
        if next_change.saturating_sub(f.pts_ms) < 150 {
            continue;
        }
        let mut src = psmgate_codecs::yuv::YuvFrame::black(W, H);
        src.convert_from_xrgb(&shown[i].1, W, H, Rect::new(0, 0, W, H));
        let text_area = psnr(&f.y, &src.y, W, 0, 0, 390, H);
        assert!(
            text_area >= 40.0,
            "frame at {} ms: text PSNR {text_area:.1} dB < 40",
            f.pts_ms
        );
        compared += 1;
    }
    assert!(compared >= 4, "too few frames compared: {compared}");

    // 3. Every state held for 1 s is on screen in the video within 0.5 s of when it appeared:
    //    the frame displayed at (appearance + 500 ms) shows it.
    for (k, (t, px)) in shown.iter().enumerate() {
        let at = t + 500;
        let f = frames
            .iter()
            .rev()
            .find(|f| f.pts_ms <= at)
            .expect("a frame is displayed");
        let mut src = psmgate_codecs::yuv::YuvFrame::black(W, H);
        src.convert_from_xrgb(px, W, H, Rect::new(0, 0, W, H));
        let p = psnr(&f.y, &src.y, W, 0, 0, 390, H);
        assert!(
            p >= 40.0,
            "state {k} (from {t} ms) is not what the video shows at {at} ms ({p:.1} dB)"
        );
    }

    // 4. The transcript holds the typed text runs.
    let mut transcript = String::new();
    for f in mjson["events"].as_array().unwrap() {
        transcript.push_str(&std::fs::read_to_string(dir.join(f.as_str().unwrap())).unwrap());
    }
    for k in 0..6 {
        assert!(
            transcript.contains(&format!("\"text\":\"ls /etc/k{k}\"")),
            "text run {k} missing"
        );
    }

    // 5. It verifies.
    let report = psmgate_storage::verify::verify(
        &LocalBackend::new(tmp.path().join("rec")).unwrap(),
        rec.dir(),
        Some(key.verifying_key()),
        &mut |_, _| {},
    );
    assert!(report.ok, "{}", psmgate::report::verify_text(&report));
}
