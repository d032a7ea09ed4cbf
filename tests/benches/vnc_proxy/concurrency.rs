//! Part 3: concurrency. N simultaneous recorded sessions, each a Xvfb + x11vnc target with
//! scripted activity and a visible counter, each watched by a bench viewer through psmgate.
//!
//! Per session the target runs two xterms: an activity terminal printing a line every 250 ms
//! (scrolling once full), and a counter printing the next number every 1.2 s. The viewer keeps
//! incremental updates flowing and records every state of the counter region it sees, with the
//! time it saw it. While the sessions run, a poller tails every recording's `chain.jsonl` and
//! notes when each video fragment became durable and how many frames it holds.
//!
//! Afterwards each recording is decoded (ffmpeg, counter region only) and
//! * every counter state the viewer saw for ≥ 1 s must match some decoded frame (luma PSNR
//!   ≥ [`MATCH_DB`] and ≥ [`MARGIN_DB`] better than any other state);
//! * the lag of a state is the time from when the viewer saw it until the chain record of the
//!   fragment holding its first matching frame was seen (poll resolution [`POLL`]).

use crate::gateway::{machine_jiffies, process_cpu_seconds, Gateway, TargetSpec};
use crate::recording::{decode_region, luma_of, manifest, psnr, recordings_by_target, ChainTail};
use crate::stats::{fmt, ms, percentile};
use crate::viewer::{copy_rect, Viewer};
use crate::xclient::{xterm, XClient};
use anyhow::{Context, Result};
use psmgate::vnc::encoding;
use psmgate_codecs::Rect;
use psmgate_e2e::peers::{X11Vnc, XDisplay};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Chain polling interval (resolution of the lag figures).
const POLL: Duration = Duration::from_millis(100);
/// A decoded frame shows a state when its luma PSNR against it is at least this …
const MATCH_DB: f64 = 26.0;
/// … and this much better than against any state with different content.
const MARGIN_DB: f64 = 3.0;
/// States must be held this long to be required in the recording.
const HELD: Duration = Duration::from_secs(1);
/// States seen this close to the end are left out of the lag figures (they may only be
/// written when the session ends).
const LAG_TAIL: Duration = Duration::from_secs(5);
/// A viewer that gets no update for this long counts as stalled.
const STALL: Duration = Duration::from_secs(10);
/// Pass threshold of the lag p99: two fragment flush periods (2 s each) plus 1 s.
const LAG_P99_LIMIT_MS: f64 = 5000.0;
/// Targets started at once.
const START_PARALLEL: usize = 4;
/// Activity terminal: a line every 250 ms.
const ACTIVITY: &str = "i=0; while :; do i=$((i+1)); \
    printf 'line %06d  the quick brown fox jumps over the lazy dog  0123456789 ABCDEF\\n' $i; \
    sleep 0.25; done";
/// Counter: the next number every 1.2 s.
const COUNTER: &str = "i=0; while :; do printf '\\r%06d' $i; i=$((i+1)); sleep 1.2; done";

/// Options of the concurrency part.
pub struct Options {
    /// Screen size of every target.
    pub width: u32,
    /// Screen size of every target.
    pub height: u32,
    /// Session counts to try, in order.
    pub sessions: Vec<usize>,
    /// Measured time per session count.
    pub seconds: f64,
}

struct Target {
    vnc: X11Vnc,
    region: Rect,
    password: String,
    _counter: XClient,
    _activity: XClient,
    _display: XDisplay,
}

fn start_target(i: usize, opts: &Options) -> Result<Target> {
    let display = XDisplay::start(opts.width, opts.height)?;
    let (activity, _) = xterm(&display, &["-geometry", "100x30+0+0"], ACTIVITY)?;
    let pos = format!(
        "8x1+{}+{}",
        opts.width.saturating_sub(220),
        opts.height.saturating_sub(60)
    );
    let (counter, win) = xterm(&display, &["-fn", "10x20", "-geometry", &pos], COUNTER)?;
    // Grow to even edges for 4:2:0 cropping; the extra pixels are static background.
    let x = win.x & !1;
    let y = win.y & !1;
    let region = Rect::new(
        x,
        y,
        ((win.right() + 1) & !1).min(opts.width) - x,
        ((win.bottom() + 1) & !1).min(opts.height) - y,
    );
    let password = format!("pw{i:06}");
    let vnc = X11Vnc::start(&display, Some(&password))?;
    Ok(Target {
        vnc,
        region,
        password,
        _counter: counter,
        _activity: activity,
        _display: display,
    })
}

/// A counter-region state seen by a viewer.
struct State {
    at: Instant,
    luma: Vec<u8>,
}

#[derive(Default)]
struct ViewerReport {
    states: Vec<State>,
    error: Option<String>,
    updates: u64,
    bytes: u64,
    max_gap: Duration,
}

fn watch(
    port: u16,
    token: &str,
    region: Rect,
    stop: &AtomicBool,
    up: &AtomicUsize,
    window: &OnceLock<Instant>,
) -> ViewerReport {
    let mut rep = ViewerReport::default();
    let mut v = match Viewer::connect(port, Some(token), &[encoding::ZRLE]) {
        Ok(v) => v,
        Err(e) => {
            rep.error = Some(format!("connect: {e:#}"));
            return rep;
        }
    };
    up.fetch_add(1, Ordering::SeqCst);
    let mut last_px: Option<Vec<u32>> = None;
    // Gaps are measured between updates; the first one waits for the session to be set up.
    let mut last_update: Option<Instant> = None;
    let connected = Instant::now();
    let r = (|| -> Result<()> {
        v.request(false)?;
        while !stop.load(Ordering::SeqCst) {
            match v.next_update(Instant::now() + Duration::from_millis(200))? {
                Some(t) => {
                    v.request(true)?;
                    // Gaps count inside the measured window only.
                    if let (Some(prev), Some(&from)) = (last_update, window.get()) {
                        if prev >= from {
                            rep.max_gap = rep.max_gap.max(t.duration_since(prev));
                        }
                    }
                    last_update = Some(t);
                    let px = copy_rect(v.fb(), region);
                    if last_px.as_ref() != Some(&px) {
                        rep.states.push(State {
                            at: t,
                            luma: luma_of(&px),
                        });
                        last_px = Some(px);
                    }
                }
                None if last_update.unwrap_or(connected).elapsed() > STALL => {
                    anyhow::bail!("stalled: no update for {STALL:?}")
                }
                None => {}
            }
        }
        Ok(())
    })();
    if let Err(e) = r {
        rep.error = Some(format!("{e:#}"));
    }
    rep.updates = v.updates;
    rep.bytes = v.bytes_in;
    rep
}

/// One row of the result table.
struct Row {
    n: usize,
    dropped: usize,
    gateway_cpu: f64,
    machine_busy: f64,
    updates_per_s: f64,
    kbps: f64,
    max_gap: Duration,
    required: usize,
    missing: usize,
    lags: Vec<f64>,
    not_ok: usize,
    notes: Vec<String>,
    load: String,
    match_db: f64,
    other_db: f64,
}

impl Row {
    fn passes(&self) -> bool {
        self.dropped == 0
            && self.missing == 0
            && self.not_ok == 0
            && percentile(&self.lags, 99.0).is_some_and(|p| p <= LAG_P99_LIMIT_MS)
    }
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    println!(
        "\n## 3. Concurrency: N recorded {}×{} sessions with scripted activity, {:.0} s each",
        opts.width, opts.height, opts.seconds
    );
    println!(
        "\nper target: Xvfb + x11vnc -localhost -forever -shared -noxdamage -rfbauth; xterm \
         100x30 at +0+0 printing a line every 250 ms; xterm -fn 10x20 printing a counter that \
         changes every 1.2 s. Per session one bench viewer through psmgate (ZRLE, one \
         incremental request outstanding). Gateway CPU from /proc/<pid>/stat over the measured \
         window; lag = viewer sees a counter state → chain record of the fragment holding it \
         seen (polled every {} ms; states in the last {} s excluded); a state held ≥ 1 s must \
         match a decoded frame (luma PSNR ≥ {MATCH_DB} dB, ≥ {MARGIN_DB} dB better than any \
         other state). Pass: no dropped session, no missing state, every recording completed \
         and verified, lag p99 ≤ {} s.",
        POLL.as_millis(),
        LAG_TAIL.as_secs(),
        LAG_P99_LIMIT_MS / 1000.0
    );
    let mut rows = Vec::new();
    for &n in &opts.sessions {
        match run_n(n, opts) {
            Ok(row) => {
                print_row_notes(&row);
                rows.push(row);
            }
            Err(e) => println!("\nN = {n}: could not run: {e:#}"),
        }
    }
    println!(
        "\n| N | dropped | gateway CPU (% of a core) | per session | machine busy (2 cores) | \
         updates/s per viewer | kB/s per viewer | max update gap s (measured window) | states held ≥ 1 s | missing | \
         lag p50 / p99 / max s | load avg (1/5/15) | pass |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} % | {:.1} | {:.0} | {:.1} | {} | {} | {} / {} / {} | {} | {} |",
            r.n,
            r.dropped,
            r.gateway_cpu,
            r.gateway_cpu / r.n as f64,
            r.machine_busy,
            r.updates_per_s,
            r.kbps,
            r.max_gap.as_secs_f64(),
            r.required,
            r.missing,
            fmt(percentile(&r.lags, 50.0).map(|v| v / 1000.0), 2),
            fmt(percentile(&r.lags, 99.0).map(|v| v / 1000.0), 2),
            fmt(percentile(&r.lags, 100.0).map(|v| v / 1000.0), 2),
            r.load,
            if r.passes() { "yes" } else { "**no**" },
        );
    }
    let best = rows.iter().filter(|r| r.passes()).map(|r| r.n).max();
    println!(
        "\nlargest N that passed: {} (target N ≥ 20)",
        best.map_or("none".to_owned(), |n| n.to_string())
    );
    Ok(())
}

fn print_row_notes(row: &Row) {
    println!(
        "\nN = {}: {} (state matches: lowest PSNR {:.1} dB against the state, highest {:.1} dB \
         against any other state)",
        row.n,
        if row.passes() { "pass" } else { "FAIL" },
        row.match_db,
        row.other_db
    );
    for note in row.notes.iter().take(40) {
        println!("  - {note}");
    }
    if row.notes.len() > 40 {
        println!("  - … {} more", row.notes.len() - 40);
    }
}

fn run_n(n: usize, opts: &Options) -> Result<Row> {
    let setup = Instant::now();
    let targets = start_targets(n, opts)?;
    let specs: Vec<TargetSpec> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| TargetSpec {
            name: format!("t{:02}", i + 1),
            port: t.vnc.port(),
            password: t.password.clone(),
        })
        .collect();
    let mut gw = Gateway::start(&specs)?;
    if n == opts.sessions[0] {
        println!(
            "\npsmgate config (N = {n}; one target section per session):\n```toml\n{}```",
            gw.config_text
        );
    }
    let tokens = specs
        .iter()
        .map(|s| gw.grant(&s.name))
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "N = {n}: {} targets up in {:.0} s",
        n,
        setup.elapsed().as_secs_f64()
    );
    let stop = AtomicBool::new(false);
    let stop_poll = AtomicBool::new(false);
    let up = AtomicUsize::new(0);
    let measured_from = OnceLock::new();
    let tails: Mutex<HashMap<String, ChainTail>> = Mutex::new(HashMap::new());
    let root = gw.recordings();
    let port = gw.vnc_port;
    let pid = gw.pid();
    let mut window = (0.0, 0.0, (0u64, 0u64), String::new());
    let mut t_end = Instant::now();
    let reports: Vec<ViewerReport> = std::thread::scope(|s| {
        let poller = s.spawn(|| poll_chains(&root, n, &tails, &stop_poll));
        let handles: Vec<_> = targets
            .iter()
            .zip(&tokens)
            .map(|(t, tok)| {
                let (stop, up, region, from) = (&stop, &up, t.region, &measured_from);
                s.spawn(move || watch(port, tok, region, stop, up, from))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while up.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(3));
        let cpu0 = process_cpu_seconds(pid).unwrap_or(0.0);
        let mj0 = machine_jiffies().unwrap_or((0, 0));
        let t0 = Instant::now();
        let _ = measured_from.set(t0);
        std::thread::sleep(Duration::from_secs_f64(opts.seconds));
        let cpu1 = process_cpu_seconds(pid).unwrap_or(0.0);
        let mj1 = machine_jiffies().unwrap_or((0, 0));
        t_end = Instant::now();
        window = (
            cpu1 - cpu0,
            t_end.duration_since(t0).as_secs_f64(),
            (mj1.0 - mj0.0, mj1.1 - mj0.1),
            crate::gateway::loadavg(),
        );
        stop.store(true, Ordering::SeqCst);
        let reports: Vec<ViewerReport> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        // Sessions end when the viewers hang up; wait for the seals so the tails are complete.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline
            && recordings_by_target(&root)
                .values()
                .filter(|r| r.join("manifest.json").exists())
                .count()
                < n
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(POLL * 2);
        stop_poll.store(true, Ordering::SeqCst);
        let _ = poller.join();
        reports
    });
    gw.stop();
    let tails = tails.into_inner().unwrap_or_else(|p| p.into_inner());
    let (cpu, secs, (busy, total), load) = window;
    let mut row = Row {
        n,
        dropped: 0,
        gateway_cpu: 100.0 * cpu / secs,
        machine_busy: if total > 0 {
            100.0 * busy as f64 / total as f64
        } else {
            0.0
        },
        updates_per_s: 0.0,
        kbps: 0.0,
        max_gap: Duration::ZERO,
        required: 0,
        missing: 0,
        lags: Vec::new(),
        not_ok: 0,
        notes: Vec::new(),
        load,
        match_db: f64::INFINITY,
        other_db: 0.0,
    };
    let run_secs = opts.seconds + 3.0;
    let scratch = tempfile::Builder::new()
        .prefix("psmgate-bench-decode-")
        .tempdir()?;
    let recs = recordings_by_target(&gw.recordings());
    for (i, (spec, rep)) in specs.iter().zip(&reports).enumerate() {
        row.updates_per_s += rep.updates as f64 / run_secs / n as f64;
        row.kbps += rep.bytes as f64 / 1000.0 / run_secs / n as f64;
        row.max_gap = row.max_gap.max(rep.max_gap);
        if let Some(e) = &rep.error {
            row.dropped += 1;
            row.notes
                .push(format!("{}: viewer dropped: {e}", spec.name));
        }
        let Some(rec) = recs.get(&spec.name) else {
            row.not_ok += 1;
            row.notes.push(format!("{}: no recording", spec.name));
            continue;
        };
        if let Err(e) = check_recording(&gw, rec) {
            row.not_ok += 1;
            row.notes.push(format!("{}: {e:#}", spec.name));
            continue;
        }
        let tail = tails.get(&spec.name);
        match analyse(rec, targets[i].region, rep, tail, t_end, scratch.path()) {
            Ok(a) => {
                row.required += a.required;
                row.missing += a.missing.len();
                row.lags.extend(a.lags);
                row.match_db = row.match_db.min(a.match_db);
                row.other_db = row.other_db.max(a.other_db);
                if !a.missing.is_empty() {
                    row.notes.push(format!(
                        "{}: {} of {} held states not in the recording (seen at {:?} s; best PSNR {:?})",
                        spec.name,
                        a.missing.len(),
                        a.required,
                        a.missing.iter().map(|m| m.0).collect::<Vec<_>>(),
                        a.missing.iter().map(|m| m.1).collect::<Vec<_>>(),
                    ));
                }
                row.notes
                    .extend(a.notes.into_iter().map(|m| format!("{}: {m}", spec.name)));
            }
            Err(e) => {
                row.not_ok += 1;
                row.notes
                    .push(format!("{}: analysis failed: {e:#}", spec.name));
            }
        }
    }
    for l in gw.log_lines("ERROR").into_iter().take(5) {
        row.notes.push(format!("gateway log: {l}"));
    }
    drop(targets);
    Ok(row)
}

fn start_targets(n: usize, opts: &Options) -> Result<Vec<Target>> {
    let mut out = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch: Vec<usize> = (next..(next + START_PARALLEL).min(n)).collect();
        let started: Vec<Result<Target>> = std::thread::scope(|s| {
            let hs: Vec<_> = batch
                .iter()
                .map(|&i| s.spawn(move || start_target(i, opts)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("target start panicked")))
                })
                .collect()
        });
        for t in started {
            out.push(t.context("starting a target")?);
        }
        next += batch.len();
    }
    Ok(out)
}

fn poll_chains(
    root: &std::path::Path,
    n: usize,
    tails: &Mutex<HashMap<String, ChainTail>>,
    stop: &AtomicBool,
) {
    loop {
        let last = stop.load(Ordering::SeqCst);
        let now = Instant::now();
        let mut tails = tails.lock().unwrap_or_else(|p| p.into_inner());
        if tails.len() < n {
            for (target, dir) in recordings_by_target(root) {
                tails.entry(target).or_insert_with(|| ChainTail::new(dir));
            }
        }
        for t in tails.values_mut() {
            t.poll(now);
        }
        drop(tails);
        if last {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// The sealed state is `completed` and `psmgate verify` passes.
fn check_recording(gw: &Gateway, rec: &std::path::Path) -> Result<()> {
    let m = manifest(rec)?;
    if m["state"].as_str() != Some("completed") {
        anyhow::bail!(
            "recording state {} ({})",
            m["state"],
            m["end_reason"].as_str().unwrap_or("")
        );
    }
    let id = rec
        .file_name()
        .and_then(|f| f.to_str())
        .context("recording folder name")?;
    let o = gw.cli(&["verify", id])?;
    if !o.status.success() {
        anyhow::bail!(
            "psmgate verify failed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    Ok(())
}

struct Analysis {
    required: usize,
    /// (seconds since the first state, best PSNR) of each missing state.
    missing: Vec<(f64, f64)>,
    lags: Vec<f64>,
    notes: Vec<String>,
    /// Lowest PSNR of a first matching frame against its state.
    match_db: f64,
    /// Highest PSNR of such a frame against any other state.
    other_db: f64,
}

fn analyse(
    rec: &std::path::Path,
    region: Rect,
    rep: &ViewerReport,
    tail: Option<&ChainTail>,
    t_end: Instant,
    scratch: &std::path::Path,
) -> Result<Analysis> {
    let frames = decode_region(rec, region, scratch)?;
    let mut notes = Vec::new();
    if let Some(t) = tail {
        if t.frames() != frames.len() as u64 {
            notes.push(format!(
                "chain tail counted {} frames, ffmpeg decoded {}",
                t.frames(),
                frames.len()
            ));
        }
        notes.extend(t.problems.iter().take(3).cloned());
    } else {
        notes.push("recording never seen while running".into());
    }
    let states = &rep.states;
    // First frame showing each state.
    let mut first: Vec<Option<(usize, f64, f64)>> = vec![None; states.len()];
    let mut best_seen = vec![0f64; states.len()];
    for (j, f) in frames.iter().enumerate() {
        let scores: Vec<f64> = states.iter().map(|s| psnr(f, &s.luma)).collect();
        let best = scores.iter().copied().fold(f64::MIN, f64::max);
        let second = scores
            .iter()
            .copied()
            .filter(|&p| p < best - 1e-9)
            .fold(0.0, f64::max);
        for (k, &p) in scores.iter().enumerate() {
            best_seen[k] = best_seen[k].max(p);
            if p == best && best >= MATCH_DB && best - second >= MARGIN_DB && first[k].is_none() {
                first[k] = Some((j, best, second));
            }
        }
    }
    let origin = states.first().map(|s| s.at);
    let mut a = Analysis {
        required: 0,
        missing: Vec::new(),
        lags: Vec::new(),
        notes,
        match_db: f64::INFINITY,
        other_db: 0.0,
    };
    for (k, s) in states.iter().enumerate() {
        let until = states.get(k + 1).map_or(t_end, |n| n.at);
        if until.duration_since(s.at) < HELD {
            continue;
        }
        a.required += 1;
        let Some((j, best, second)) = first[k] else {
            let since = origin.map_or(0.0, |o| s.at.duration_since(o).as_secs_f64());
            a.missing.push((
                (since * 10.0).round() / 10.0,
                (best_seen[k] * 10.0).round() / 10.0,
            ));
            continue;
        };
        a.match_db = a.match_db.min(best);
        a.other_db = a.other_db.max(second);
        if s.at + LAG_TAIL > t_end {
            continue;
        }
        if let Some(frag) = tail.and_then(|t| t.fragment_of(j as u64)) {
            a.lags.push(match frag.seen.checked_duration_since(s.at) {
                Some(d) => ms(d),
                None => -ms(s.at.duration_since(frag.seen)),
            });
        }
    }
    Ok(a)
}
