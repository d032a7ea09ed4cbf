//! The video of a web session end to end: headless Chromium (driven by Playwright) browses the
//! local console through psmgate; the gateway replays the session's masked DOM recording in its
//! own headless Chromium and records screenshots of the replay as AV1 video. The video must show
//! what the browser showed (compared with the browser's own screenshots) and must not show what
//! the DOM recording masked. Also measures the renderer's CPU time.

mod vnc_support;
mod web_support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vnc_support::manifest;
use web_support::{drive, gateway, gateway_ca, stop, Console, PASSWORD};

/// How long the browser waits after a page is ready before its screenshot: the in-page
/// recorder sends a batch every second, and the gateway renders it on arrival.
const SETTLE_MS: u64 = 2500;
/// The busy part of the session: the app's list changes every 250 ms for this long.
const BUSY_MS: u64 = 15_000;

/// A box in CSS pixels, as `getBoundingClientRect` gives it.
#[derive(Debug, Clone, Copy)]
struct Box {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Box {
    fn from_value(v: &Value) -> Box {
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
        Box {
            x: f("x"),
            y: f("y"),
            w: f("width"),
            h: f("height"),
        }
    }

    /// The whole pixels inside, `inset` pixels in from each edge: (x0, y0, x1, y1), exclusive.
    fn pixels(&self, inset: u32) -> (u32, u32, u32, u32) {
        let (x0, y0) = (self.x.ceil() as u32 + inset, self.y.ceil() as u32 + inset);
        let x1 = ((self.x + self.w).floor() as u32).saturating_sub(inset);
        let y1 = ((self.y + self.h).floor() as u32).saturating_sub(inset);
        assert!(x1 > x0 + 4 && y1 > y0 + 4, "box too small: {self:?}");
        (x0, y0, x1, y1)
    }

    /// Whether pixel (x, y) is within `margin` pixels of the box.
    fn near(&self, x: u32, y: u32, margin: f64) -> bool {
        let (x, y) = (f64::from(x), f64::from(y));
        x >= self.x - margin
            && x < self.x + self.w + margin
            && y >= self.y - margin
            && y < self.y + self.h + margin
    }
}

/// Pixels in `area` (x0, y0, x1, y1) of an RGB24 picture `width` wide whose every channel is
/// below 96: text, not background, borders or the grey of a masked box.
fn dark_pixels(rgb: &[u8], width: u32, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
    let mut n = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            let i = ((y * width + x) * 3) as usize;
            if rgb[i] < 96 && rgb[i + 1] < 96 && rgb[i + 2] < 96 {
                n += 1;
            }
        }
    }
    n
}

/// One `/proc/<pid>/stat`: (pid, ppid, process group, name, CPU ticks of the process and of
/// its collected children).
fn proc_stats() -> Vec<(u32, u32, u32, String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After the name: state ppid pgrp … utime(11) stime(12) cutime(13) cstime(14).
        out.push((
            pid,
            num(1) as u32,
            num(2) as u32,
            name,
            num(11) + num(12) + num(13) + num(14),
        ));
    }
    out
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    let o = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// CPU seconds used so far by the Chromium processes gateway `gw` started: their whole process
/// groups (renderers, GPU and utility processes), with their collected children.
fn renderer_cpu(gw: u32, ticks: f64) -> (f64, usize) {
    let procs = proc_stats();
    let groups: HashSet<u32> = procs
        .iter()
        .filter(|(_, ppid, _, name, _)| *ppid == gw && name.starts_with("chrom"))
        .map(|(pid, ..)| *pid)
        .collect();
    let cpu = procs
        .iter()
        .filter(|(_, _, pgrp, ..)| groups.contains(pgrp))
        .map(|p| p.4)
        .sum::<u64>();
    (cpu as f64 / ticks, groups.len())
}

fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// The renderer's CPU seconds at `ms` since the epoch (the last sample before it).
fn cpu_at(samples: &[(f64, f64)], ms: f64) -> f64 {
    samples
        .iter()
        .take_while(|(t, _)| *t <= ms)
        .last()
        .map_or(0.0, |s| s.1)
}

fn decoded_frames(rec: &Path, tmp: &Path, period: usize, w: u32, h: u32) -> Vec<Vec<u8>> {
    let m = manifest(rec);
    let mp4 = tmp.join(format!("period{period}.mp4"));
    std::fs::write(&mp4, psmgate_e2e::period_mp4(rec, &m, period)).unwrap();
    psmgate_e2e::rgb24(&mp4)
        .chunks_exact((w * h * 3) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn a_web_session_is_recorded_as_video_of_what_the_admin_saw() {
    let c = Console::start();
    let gw = gateway(&c);
    let token = gw.grant("console", &["--ttl", "10m"]);
    let gw_ca = gateway_ca(&gw);
    let shots = tempfile::tempdir().unwrap();
    let base = format!("https://127.0.0.1:{}", c.console);

    // The renderer's CPU time, sampled while the browser works.
    let ticks = clock_ticks();
    let samples = Arc::new(Mutex::new(Vec::<(f64, f64)>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, done, pid) = (samples.clone(), done.clone(), gw.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let (cpu, _) = renderer_cpu(pid, ticks);
                samples
                    .lock()
                    .unwrap()
                    .push((epoch_ms(SystemTime::now()), cpu));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let started = Instant::now();
    let rect = |sel: &str| {
        format!("(() => {{ const r = document.querySelector({sel:?}).getBoundingClientRect(); return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()")
    };
    let results = drive(&json!({
        "proxy": format!("http://127.0.0.1:{}", gw.web_port),
        "username": "alice@console",
        "password": token,
        "ca": [gw_ca],
        "shots": shots.path(),
        "timeout": 30000,
        "steps": [
            {"goto": format!("{base}/login")},
            {"fill": "input[name=username]", "value": "alice"},
            {"fill": "input[name=password]", "value": PASSWORD},
            {"click": "#signin", "waitForNavigation": true},
            {"waitFor": "body[data-ready='1']", "timeout": 15000},
            {"sleep": SETTLE_MS},
            {"screenshot": "app.png"},
            {"eval": "[innerWidth, innerHeight]"},
            // A busy console: the list changes four times a second.
            {"eval": "Date.now()"},
            {"eval": format!("new Promise((done) => {{ let i = 0; const t = setInterval(() => {{ document.getElementById('items').textContent = 'tick ' + (i++); if (i * 250 >= {BUSY_MS}) {{ clearInterval(t); done(i); }} }}, 250); }})")},
            {"eval": "Date.now()"},
            {"goto": format!("{base}/secret")},
            {"sleep": SETTLE_MS},
            {"eval": rect("#api-key")},
            {"eval": rect(".secret-text")},
            {"screenshot": "secret.png"},
        ]
    }));
    let browsing = started.elapsed();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let (cpu, browsers) = renderer_cpu(gw.pid(), ticks);
    for (i, r) in results.iter().enumerate() {
        assert!(r.get("error").is_none(), "step {i}: {r} in {results:?}");
    }
    assert_eq!(
        results[4]["found"], true,
        "the app did not finish: {results:?}"
    );
    let viewport = (
        results[7]["value"][0].as_u64().unwrap() as u32,
        results[7]["value"][1].as_u64().unwrap() as u32,
    );
    let (busy_from, busy_to) = (
        results[8]["value"].as_f64().unwrap(),
        results[10]["value"].as_f64().unwrap(),
    );
    let api_key = Box::from_value(&results[13]["value"]);
    let secret_text = Box::from_value(&results[14]["value"]);

    // The renderer's cost: one Chromium for the session.
    assert_eq!(browsers, 1, "one renderer Chromium per web session");
    let samples = samples.lock().unwrap().clone();
    let busy_cpu = cpu_at(&samples, busy_to) - cpu_at(&samples, busy_from);
    let busy_s = (busy_to - busy_from) / 1000.0;
    eprintln!(
        "web video renderer CPU: {cpu:.2} s over {:.1} s of browsing = {:.1} CPU-s per minute \
         (busy console, 4 DOM changes a second: {busy_cpu:.2} s over {busy_s:.1} s = {:.1} CPU-s per minute)",
        browsing.as_secs_f64(),
        cpu / browsing.as_secs_f64() * 60.0,
        busy_cpu / busy_s * 60.0,
    );
    assert!(cpu > 0.0, "no renderer CPU time measured");

    // Sealed at shutdown: the renderer rendered what it had first.
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let m = manifest(&rec);
    let periods = m["periods"].as_array().unwrap();
    assert!(!periods.is_empty(), "no video: {}", gw.log());
    let last = periods.len() - 1;
    let (w, h) = (
        periods[last]["width"].as_u64().unwrap() as u32,
        periods[last]["height"].as_u64().unwrap() as u32,
    );
    assert_eq!((w, h), viewport, "the video is the browser's viewport");
    let tmp = tempfile::tempdir().unwrap();
    let frames = decoded_frames(&rec, tmp.path(), last, w, h);
    assert!(!frames.is_empty(), "no frames");
    let app = psmgate_e2e::rgb24(&shots.path().join("app.png"));
    let secret = psmgate_e2e::rgb24(&shots.path().join("secret.png"));
    assert_eq!(app.len(), (w * h * 3) as usize);

    // 1. The app as the browser showed it is in the video.
    let best_app = frames
        .iter()
        .map(|f| psmgate_e2e::psnr_rgb(f, &app, w, h, |_, _| false))
        .fold(0.0, f64::max);
    eprintln!("app page: best frame {best_app:.1} dB against the browser's screenshot");
    assert!(
        best_app >= 20.0,
        "no frame shows the app ({best_app:.1} dB)"
    );

    // 2. The last frame is the keys page as the browser showed it, except for what was masked.
    let last_frame = frames.last().unwrap();
    let masked = |x: u32, y: u32| api_key.near(x, y, 4.0) || secret_text.near(x, y, 4.0);
    let psnr = psmgate_e2e::psnr_rgb(last_frame, &secret, w, h, masked);
    eprintln!("keys page: last frame {psnr:.1} dB against the browser's screenshot (masked boxes left out)");
    assert!(
        psnr >= 20.0,
        "the last frame is not the keys page ({psnr:.1} dB)"
    );

    // 3. What was masked is not legible: the browser showed text in both boxes, the video shows
    //    none (3 pixels in from the edges, where borders and the encoder's blur are).
    for (what, b) in [("#api-key", api_key), (".secret-text", secret_text)] {
        let area = b.pixels(3);
        let shown = dark_pixels(&secret, w, area);
        assert!(
            shown > 20,
            "the browser showed no text in {what} ({shown} dark pixels)"
        );
        let recorded = dark_pixels(last_frame, w, area);
        assert_eq!(recorded, 0, "{what} is legible in the video");
    }
    // The rest of the page is drawn: the plain text next to the secrets is there.
    let plain = dark_pixels(last_frame, w, (0, 0, w, h));
    assert!(plain > 200, "the keys page is blank in the video");
}
