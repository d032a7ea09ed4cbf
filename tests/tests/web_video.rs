//! The video of a web session end to end: headless Chromium (driven by Playwright) browses the
//! local console through psmgate; the gateway replays the session's masked DOM recording in its
//! own headless Chromium and records screenshots of the replay as AV1 video — live, or once the
//! session ended (`web.video = "after"`, on the session's own clock). The video must show what
//! the browser showed (compared with the browser's own screenshots) and must not show what the
//! DOM recording masked. Also measures the renderer's CPU time.

mod vnc_support;
mod web_support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vnc_support::{events_of, log_line_time, manifest, Gateway};
use web_support::{
    console_config, drive, gateway, start_web_gateway, stop, Console, ProxyAccess, PASSWORD,
};

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

/// Browses through the gateway's web proxy with `access`, taking `steps` (screenshots into
/// `shots`); returns drive.mjs's results.
fn browse(access: &ProxyAccess, shots: &Path, steps: Vec<Value>) -> Vec<Value> {
    drive(&access.input(json!({"shots": shots, "timeout": 30000, "steps": steps})))
}

/// Steps 0–6: sign in to the console at `base`, wait for its app (step 4 finds it ready), let
/// the recording catch up and take the screenshot `app.png`.
fn app_shot_steps(base: &str) -> Vec<Value> {
    vec![
        json!({"goto": format!("{base}/login")}),
        json!({"fill": "input[name=username]", "value": "alice"}),
        json!({"fill": "input[name=password]", "value": PASSWORD}),
        json!({"click": "#signin", "waitForNavigation": true}),
        json!({"waitFor": "body[data-ready='1']", "timeout": 15000}),
        json!({"sleep": SETTLE_MS}),
        json!({"screenshot": "app.png"}),
    ]
}

/// Five steps: open the keys page at `base`, let the recording catch up, tell the boxes of
/// `#api-key` and `.secret-text` (third and fourth step) and take the screenshot `secret.png`.
fn keys_shot_steps(base: &str) -> Vec<Value> {
    vec![
        json!({"goto": format!("{base}/secret")}),
        json!({"sleep": SETTLE_MS}),
        json!({"eval": rect("#api-key")}),
        json!({"eval": rect(".secret-text")}),
        json!({"screenshot": "secret.png"}),
    ]
}

/// A script giving the bounding box of the element `sel` selects (see [`Box::from_value`]).
fn rect(sel: &str) -> String {
    format!("(() => {{ const r = document.querySelector({sel:?}).getBoundingClientRect(); return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()")
}

#[test]
fn a_web_session_is_recorded_as_video_of_what_the_admin_saw() {
    let c = Console::start();
    let gw = gateway(&c);
    let alice = ProxyAccess::alice(&gw, "console");
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
    let results = browse(
        &alice,
        shots.path(),
        [
            app_shot_steps(&base),
            vec![
                json!({"eval": "[innerWidth, innerHeight]"}),
                // A busy console: the list changes four times a second.
                json!({"eval": "Date.now()"}),
                json!({"eval": format!("new Promise((done) => {{ let i = 0; const t = setInterval(() => {{ document.getElementById('items').textContent = 'tick ' + (i++); if (i * 250 >= {BUSY_MS}) {{ clearInterval(t); done(i); }} }}, 250); }})")}),
                json!({"eval": "Date.now()"}),
            ],
            keys_shot_steps(&base),
        ]
        .concat(),
    );
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

/// A gateway for the console like [`gateway`], rendering video after each session, which ends
/// after 10 s without requests.
fn gateway_rendering_after(c: &Console) -> Gateway {
    let web = r#"idle_timeout = "10s"
heartbeat_timeout = "15s"
video = "after"
render_workers = 1
"#;
    start_web_gateway(&console_config(c, web, ""))
}

/// Luma pixels that differ by more than 48 between two frames: a change on screen, not the
/// encoder refining a picture that stayed the same.
fn changed_pixels(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.abs_diff(**y) > 48)
        .count()
}

#[test]
fn a_web_session_rendered_after_it_ended_is_video_on_the_sessions_clock() {
    let c = Console::start();
    let gw = gateway_rendering_after(&c);
    let alice = ProxyAccess::alice(&gw, "console");
    let shots = tempfile::tempdir().unwrap();
    let base = format!("https://127.0.0.1:{}", c.console);
    let (ticks, pid) = (clock_ticks(), gw.pid());
    let results = browse(
        &alice,
        shots.path(),
        [
            app_shot_steps(&base),
            vec![
                json!({"eval": "[innerWidth, innerHeight, Date.now()]"}),
                // The list changes four times a second for 4 s.
                json!({"eval": "new Promise((done) => { let i = 0; const t = setInterval(() => { document.getElementById('items').textContent = 'tick ' + (i++); if (i >= 16) { clearInterval(t); done(i); } }, 250); })"}),
            ],
            keys_shot_steps(&base),
            vec![json!({"eval": "Date.now()"})],
        ]
        .concat(),
    );
    for (i, r) in results.iter().enumerate() {
        assert!(r.get("error").is_none(), "step {i}: {r} in {results:?}");
    }
    assert_eq!(
        results[4]["found"], true,
        "the app did not finish: {results:?}"
    );
    let v = &results[7]["value"];
    let viewport = (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32);
    let app_shot_epoch_ms = v[2].as_f64().unwrap();
    let api_key = Box::from_value(&results[11]["value"]);
    let secret_text = Box::from_value(&results[12]["value"]);
    let secret_shot_epoch_ms = results[14]["value"].as_f64().unwrap();
    let browsed = Instant::now();

    // Nothing is rendered while the session runs: no Chromium of the gateway's so far.
    assert_eq!(
        renderer_cpu(pid, ticks).1,
        0,
        "a renderer ran during the session"
    );

    // The session ends 10 s after its last request; then its video is rendered and the
    // recording sealed. The renderer's CPU is sampled meanwhile (its Chromium is gone after).
    let mut cpu = 0.0f64;
    let mut renderers = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let rec = loop {
        let (c, n) = renderer_cpu(pid, ticks);
        cpu = cpu.max(c);
        renderers = renderers.max(n);
        // Sealed: the manifest is written, and the seal record after it (logged then).
        if let Some(r) = psmgate_e2e::recordings(&gw.data())
            .into_iter()
            .find(|r| r.join("manifest.json").exists())
        {
            if gw.log().contains("recording sealed") {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "not sealed: {}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let sealed_after = browsed.elapsed();
    assert_eq!(renderers, 1, "one renderer Chromium for the session");
    gw.assert_verifies(&rec);
    let log = gw.log();

    let line_time = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .and_then(log_line_time)
            .unwrap_or_else(|| panic!("no {needle:?} in the log: {log}"))
    };
    let m = manifest(&rec);
    // Times on the session's clock (the manifest's start is taken as the recording is created,
    // a moment before its clock starts: they agree within a second).
    let started_epoch_ms = log_line_time(&format!("{} x", m["started_at"].as_str().unwrap()))
        .expect("started_at")
        * 1000.0;
    let session_ms = |epoch_ms: f64| (epoch_ms - started_epoch_ms).max(0.0) as u64;
    // The session's span is from its start to its `session end` event, which is when it ended
    // (logged then), not when its video was done and the recording sealed; the manifest says
    // the same.
    let end = events_of(&rec, "session")
        .iter()
        .filter(|e| e["phase"] == "end")
        .map(|e| e["t"].as_u64().unwrap())
        .next()
        .expect("no session end");
    let ended =
        session_ms(line_time("its video is rendered before the recording is sealed") * 1000.0);
    let sealed = session_ms(line_time("recording sealed") * 1000.0);
    assert!(
        end.abs_diff(ended) < 1000,
        "the session ended at {ended} ms, its recording says {end}"
    );
    assert!(
        sealed >= end + 300,
        "sealed at {sealed} ms, the session ended at {end}: rendering took no time?"
    );
    let duration = m["duration_ms"].as_u64().unwrap();
    assert!(
        duration.abs_diff(end) < 1000,
        "duration {duration} ms, end at {end}"
    );
    let dom_times: Vec<u64> = events_of(&rec, "dom")
        .iter()
        .map(|e| e["t"].as_u64().unwrap())
        .collect();
    assert!(dom_times.len() >= 5, "{dom_times:?}");
    // It ended 10 s after its last request (idle), which came after its last DOM batch.
    let last_batch = *dom_times.iter().max().unwrap();
    assert!(
        end + 50 >= last_batch + 10_000 && end <= session_ms(secret_shot_epoch_ms) + 15_000,
        "the session ended at {end} ms, its last DOM batch was at {last_batch} ms"
    );

    let periods = m["periods"].as_array().unwrap();
    assert!(!periods.is_empty(), "no video: {log}");
    let last = periods.len() - 1;
    let size = |p: &Value| {
        (
            p["width"].as_u64().unwrap() as u32,
            p["height"].as_u64().unwrap() as u32,
        )
    };
    assert_eq!(
        size(&periods[last]),
        viewport,
        "the video is the browser's viewport"
    );
    let tmp = tempfile::tempdir().unwrap();
    // Every frame of every period, with its time on the session's clock.
    let mut frames = Vec::new();
    for (i, p) in periods.iter().enumerate() {
        let (w, h) = size(p);
        let mp4 = tmp.path().join(format!("period{i}.mp4"));
        std::fs::write(&mp4, psmgate_e2e::period_mp4(&rec, &m, i)).unwrap();
        let luma = psmgate_e2e::decode_luma(&mp4, w, h);
        let rgb = psmgate_e2e::rgb24(&mp4);
        assert_eq!(rgb.len(), luma.len() * (w * h * 3) as usize);
        for (f, pic) in luma.into_iter().zip(rgb.chunks_exact((w * h * 3) as usize)) {
            frames.push((i, f.pts_ms, f.y, pic.to_vec()));
        }
    }
    // Within the session's span, in order.
    for w in frames.windows(2) {
        assert!(
            w[0].1 < w[1].1,
            "frame times out of order: {} then {}",
            w[0].1,
            w[1].1
        );
    }
    let times: Vec<u64> = frames.iter().map(|f| f.1).collect();
    assert!(
        times.iter().all(|t| *t <= end),
        "frames after the session's end ({end} ms): {times:?}"
    );
    let segments = periods[last]["segments"].as_array().unwrap();
    let seg = segments.last().unwrap();
    let video_end = seg["start_ms"].as_u64().unwrap() + seg["duration_ms"].as_u64().unwrap();
    assert!(
        video_end.abs_diff(end) <= 2,
        "the video ends at {video_end} ms, the session at {end}"
    );
    // Each frame is at the time of the DOM batch that made it (at most 100 ms later: 10 frames
    // a second), not when it was rendered — or it is the video track's copy closing a frame
    // that stayed on screen for a second (`idle_close_ms`; the encoder may refine the picture
    // then). The first frame starts the video at 0.
    for pair in frames.windows(2) {
        let (prev, t) = (pair[0].1, pair[1].1);
        let batch = dom_times.iter().rev().find(|b| **b <= t);
        let at_batch = batch.is_some_and(|b| t - b <= 150);
        let closing = t >= prev + 1000 && t <= prev + 1040;
        assert!(
            at_batch || closing,
            "a frame at {t} ms: the last DOM batch before it at {batch:?} ms, the frame before at {prev} ms (batches: {dom_times:?}, frames: {times:?})"
        );
    }
    let changes = frames
        .windows(2)
        .filter(|p| p[0].0 == p[1].0 && changed_pixels(&p[0].2, &p[1].2) >= 30)
        .count();
    assert!(changes >= 4, "only {changes} changes on screen: {times:?}");

    // What the video shows at the moment of each browser screenshot is what the browser showed.
    let (w, h) = viewport;
    let at = |ms: u64| {
        frames
            .iter()
            .rev()
            .find(|f| f.1 <= ms && size(&periods[f.0]) == viewport)
            .unwrap_or_else(|| panic!("no frame of the viewport's size by {ms} ms: {times:?}"))
    };
    let app = psmgate_e2e::rgb24(&shots.path().join("app.png"));
    assert_eq!(app.len(), (w * h * 3) as usize);
    let app_at = session_ms(app_shot_epoch_ms);
    let shown = at(app_at);
    let psnr = psmgate_e2e::psnr_rgb(&shown.3, &app, w, h, |_, _| false);
    eprintln!(
        "app page: the frame shown at {app_at} ms (from {} ms) is {psnr:.1} dB against the browser's screenshot",
        shown.1
    );
    assert!(
        psnr >= 20.0,
        "the video does not show the app at {app_at} ms ({psnr:.1} dB)"
    );
    let secret = psmgate_e2e::rgb24(&shots.path().join("secret.png"));
    let masked = |x: u32, y: u32| api_key.near(x, y, 4.0) || secret_text.near(x, y, 4.0);
    let secret_at = session_ms(secret_shot_epoch_ms);
    let shown = at(secret_at);
    let psnr = psmgate_e2e::psnr_rgb(&shown.3, &secret, w, h, masked);
    eprintln!(
        "keys page: the frame shown at {secret_at} ms (from {} ms) is {psnr:.1} dB against the browser's screenshot (masked boxes left out)",
        shown.1
    );
    assert!(
        psnr >= 20.0,
        "the video does not show the keys page at {secret_at} ms ({psnr:.1} dB)"
    );
    // What was masked is not legible.
    for (what, b) in [("#api-key", api_key), (".secret-text", secret_text)] {
        let area = b.pixels(3);
        assert!(
            dark_pixels(&secret, w, area) > 20,
            "the browser showed no text in {what}"
        );
        assert_eq!(
            dark_pixels(&shown.3, w, area),
            0,
            "{what} is legible in the video"
        );
    }

    let session_s = end as f64 / 1000.0;
    eprintln!(
        "web video rendered after the session: renderer CPU {cpu:.2} s for {session_s:.1} s of session = {:.1} CPU-s per minute of session; recording sealed {:.1} s after the session ended, {:.1} s after the browser was done ({} frames)",
        cpu / session_s * 60.0,
        (sealed - end) as f64 / 1000.0,
        sealed_after.as_secs_f64(),
        frames.len(),
    );
    assert!(cpu > 0.0, "no renderer CPU time measured");

    // A gateway with nothing left to render stops at once.
    let stopping = Instant::now();
    stop(&gw);
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            stopping.elapsed() < Duration::from_secs(20),
            "the gateway did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
