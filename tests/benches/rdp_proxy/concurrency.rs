//! Part 4: concurrency. N xfreerdp clients at once through one gateway to one shadow server (all
//! share the target's desktop), each session recorded. The target runs an activity terminal
//! (a line every 250 ms, a 300-line burst every 10 s) and a counter that changes every 1.2 s.
//!
//! While the sessions run, the bench polls the counter region on the target's own display
//! (every [`STATE_POLL`]) and on every client's display (every [`CLIENT_POLL`]), noting every
//! state with the time it appeared, and it tails every recording's `chain.jsonl`, noting when
//! each video fragment became durable. Afterwards every recording must be sealed `completed` and
//! pass `psmgate verify`; its counter region is decoded (ffmpeg), and every state held ≥ 1 s on
//! the target that its client showed must match a frame (luma PSNR ≥ [`MATCH_DB`] and
//! ≥ [`MARGIN_DB`] better than any other state). States the client never showed either (the
//! shadow server skips states when it is behind) are counted apart: nothing reached psmgate to
//! record. Recordings are matched to their clients by the client address in the manifest. Recording lag = the state appeared on the
//! target → the chain record of the fragment holding its first matching frame was seen: the
//! whole way through shadow capture, RDP, psmgate's decoder, the encoder and storage.

use crate::cpu::ACTIVITY;
use crate::gateway::{
    client_options, client_ports_by_display, start_target, Client, Gateway, Path,
};
use crate::recording::{decode_region, luma_of, manifest, psnr, ChainTail};
use crate::stats::{fmt, ms, percentile};
use crate::vnc_gateway::{machine_jiffies, process_cpu_seconds};
use crate::xclient::xterm;
use crate::xproto::XConn;
use anyhow::Result;
use psmgate_codecs::Rect;
use psmgate_e2e::peers::ShadowServer;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Polling interval of the counter on the target.
const STATE_POLL: Duration = Duration::from_millis(20);
/// Polling interval of the counter on the clients' displays (all clients in turn).
const CLIENT_POLL: Duration = Duration::from_millis(50);
/// Chain polling interval (resolution of the lag figures).
const CHAIN_POLL: Duration = Duration::from_millis(100);
/// A decoded frame shows a state when its luma PSNR against it is at least this …
const MATCH_DB: f64 = 26.0;
/// … and this much better than against any state with different content.
const MARGIN_DB: f64 = 3.0;
/// States must be held this long to be required in the recording.
const HELD: Duration = Duration::from_secs(1);
/// States seen this close to the end are left out of the lag figures.
const LAG_TAIL: Duration = Duration::from_secs(5);
/// Pass threshold of the lag p99, as in the VNC bench: two fragment flush periods plus 1 s
/// with room for a loaded machine.
const LAG_P99_LIMIT_MS: f64 = 5000.0;
/// Time after the last client connected before measuring.
const WARM_UP: Duration = Duration::from_secs(3);
/// Counter: the next number every 1.2 s.
const COUNTER: &str = "i=0; while :; do printf '\\r%06d' $i; i=$((i+1)); sleep 1.2; done";

/// Options of the concurrency part.
pub struct Options {
    /// Screen size of the target and every client.
    pub width: u32,
    /// Screen size of the target and every client.
    pub height: u32,
    /// Session counts to try, in order.
    pub sessions: Vec<usize>,
    /// Measured time per session count.
    pub seconds: f64,
    /// Extra xfreerdp arguments.
    pub client_args: Vec<String>,
}

/// One row of the result table.
struct Row {
    n: usize,
    connect_s: f64,
    dropped: usize,
    sealed_ok: usize,
    gateway_cpu: f64,
    machine_busy: f64,
    required: usize,
    missing: usize,
    undelivered: usize,
    lags: Vec<f64>,
    decode_errors: u64,
    load: String,
    notes: Vec<String>,
}

impl Row {
    fn passes(&self) -> bool {
        self.dropped == 0
            && self.sealed_ok == self.n
            && self.missing == 0
            && percentile(&self.lags, 99.0).is_some_and(|p| p <= LAG_P99_LIMIT_MS)
    }
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    println!(
        "\n## 4. Concurrency: N recorded {}×{} sessions through one gateway to one shadow server, {:.0} s each",
        opts.width, opts.height, opts.seconds
    );
    let target = start_target(opts.width, opts.height)?;
    let (_activity, _) = xterm(target.display(), &["-geometry", "100x30+0+0"], ACTIVITY)?;
    let pos = format!(
        "8x1+{}+{}",
        opts.width.saturating_sub(220),
        opts.height.saturating_sub(60)
    );
    let (_counter, win) = xterm(
        target.display(),
        &["-fn", "10x20", "-geometry", &pos],
        COUNTER,
    )?;
    // Even edges for 4:2:0 cropping; the extra pixels are static background.
    let (x, y) = (win.x & !1, win.y & !1);
    let region = Rect::new(
        x,
        y,
        ((win.right() + 1) & !1).min(opts.width) - x,
        ((win.bottom() + 1) & !1).min(opts.height) - y,
    );
    println!(
        "\ntarget: Xvfb + DemoApp + an xterm 100x30 at +0+0 printing a line every 250 ms and 300 \
         lines of `ls -l --color` every 10 s + an xterm -fn 10x20 showing a counter that changes \
         every 1.2 s, served by one freerdp-shadow-cli /sec:nla. N xfreerdp clients through a \
         fresh gateway per N (`/sec:nla /cert:ignore{}`, each on its own Xvfb), {} s warm-up after \
         the last connected. Gateway CPU from /proc/<pid>/stat over the measured window. A session \
         stayed up when its xfreerdp still ran at the end. Each client's display is polled every {} ms \
         for the counter too. Lag = counter state appears on the \
         target (polled every {} ms) → chain record of the fragment holding it seen (polled every \
         {} ms; states in the last {} s excluded). Pass: every session up, sealed `completed`, \
         verified, no state held ≥ 1 s on the target and shown by its client missing from its \
         recording, lag p99 ≤ {} s.",
        opts.client_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>(),
        WARM_UP.as_secs(),
        CLIENT_POLL.as_millis(),
        STATE_POLL.as_millis(),
        CHAIN_POLL.as_millis(),
        LAG_TAIL.as_secs(),
        LAG_P99_LIMIT_MS / 1000.0
    );
    let mut rows = Vec::new();
    for &n in &opts.sessions {
        match run_n(n, opts, &target, region) {
            Ok(row) => {
                println!("\nN = {n}: {}", if row.passes() { "pass" } else { "FAIL" });
                for note in row.notes.iter().take(20) {
                    println!("  - {note}");
                }
                rows.push(row);
            }
            Err(e) => println!("\nN = {n}: could not run: {e:#}"),
        }
    }
    println!(
        "\n| N | connect s (all) | dropped | sealed + verified | gateway CPU (% of a core) | per session | machine busy (2 cores) | held states shown by the client | not recorded | held states the client never showed | lag p50 / p99 / max s | decode errors | load avg (1/5/15) | pass |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {} | {} / {} | {:.0} | {:.1} | {:.0} % | {} | {} | {} | {} / {} / {} | {} | {} | {} |",
            r.n,
            r.connect_s,
            r.dropped,
            r.sealed_ok,
            r.n,
            r.gateway_cpu,
            r.gateway_cpu / r.n as f64,
            r.machine_busy,
            r.required,
            r.missing,
            r.undelivered,
            fmt(percentile(&r.lags, 50.0).map(|v| v / 1000.0), 2),
            fmt(percentile(&r.lags, 99.0).map(|v| v / 1000.0), 2),
            fmt(percentile(&r.lags, 100.0).map(|v| v / 1000.0), 2),
            r.decode_errors,
            r.load,
            if r.passes() { "yes" } else { "**no**" },
        );
    }
    let best = rows.iter().filter(|r| r.passes()).map(|r| r.n).max();
    println!(
        "\nlargest N that passed: {}",
        best.map_or("none".to_owned(), |n| n.to_string())
    );
    Ok(())
}

/// A counter state seen on the target.
struct State {
    at: Instant,
    luma: Vec<u8>,
}

fn run_n(n: usize, opts: &Options, target: &ShadowServer, region: Rect) -> Result<Row> {
    let mut gw = Gateway::start(&target.address())?;
    let token = gw.grant()?;
    let mut row = Row {
        n,
        connect_s: 0.0,
        dropped: 0,
        sealed_ok: 0,
        gateway_cpu: 0.0,
        machine_busy: 0.0,
        required: 0,
        missing: 0,
        undelivered: 0,
        lags: Vec::new(),
        decode_errors: 0,
        load: String::new(),
        notes: Vec::new(),
    };
    let t_connect = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Client::start(
            client_options(Path::Proxied, target, &gw, &token, &opts.client_args),
            Path::Proxied,
        )?);
    }
    let mut up = Vec::new();
    let mut conns = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        match c.wait_ready() {
            Ok(conn) => {
                up.push(i);
                conns.push(conn);
            }
            Err(e) => {
                row.dropped += 1;
                row.notes
                    .push(format!("session {}: did not connect: {e:#}", i + 1));
            }
        }
    }
    row.connect_s = t_connect.elapsed().as_secs_f64();
    eprintln!(
        "N = {n}: {} of {n} clients connected in {:.0} s",
        up.len(),
        row.connect_s
    );
    // Which recording is whose: the manifest names the client's address.
    let ports = client_ports_by_display(gw.rdp_port)?;
    let client_of_port: HashMap<u16, usize> = up
        .iter()
        .enumerate()
        .filter_map(|(k, &i)| Some((*ports.get(&clients[i].rdp.display().name())?, k)))
        .collect();
    std::thread::sleep(WARM_UP);
    let data = gw.data();
    let stop_states = AtomicBool::new(false);
    let stop_chains = AtomicBool::new(false);
    let tails: Mutex<HashMap<PathBuf, ChainTail>> = Mutex::new(HashMap::new());
    let mut tconn = XConn::connect(target.display().number())?;
    let pid = gw.pid();
    let (cpu0, mj0) = (
        process_cpu_seconds(pid).unwrap_or(0.0),
        machine_jiffies().unwrap_or((0, 0)),
    );
    let t0 = Instant::now();
    let mut t_end = t0;
    let (states, seen) = std::thread::scope(|s| -> Result<(Vec<State>, Vec<Vec<State>>)> {
        let chains = s.spawn(|| poll_chains(&data, &tails, &stop_chains));
        let poller = s.spawn(|| poll_states(&mut tconn, region, &stop_states));
        let client_poller = s.spawn(|| poll_clients(&mut conns, region, &stop_states));
        std::thread::sleep(Duration::from_secs_f64(opts.seconds));
        let (cpu1, mj1) = (
            process_cpu_seconds(pid).unwrap_or(0.0),
            machine_jiffies().unwrap_or((0, 0)),
        );
        t_end = Instant::now();
        let secs = t_end.duration_since(t0).as_secs_f64();
        row.gateway_cpu = 100.0 * (cpu1 - cpu0) / secs;
        row.machine_busy = 100.0 * (mj1.0 - mj0.0) as f64 / (mj1.1 - mj0.1).max(1) as f64;
        row.load = crate::vnc_gateway::loadavg();
        stop_states.store(true, Ordering::SeqCst);
        for &i in &up {
            if !clients[i].rdp.is_running() {
                row.dropped += 1;
                row.notes.push(format!(
                    "session {}: xfreerdp exited during the run: {}",
                    i + 1,
                    clients[i]
                        .rdp
                        .log_text()
                        .lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" / ")
                ));
            }
        }
        // Hang up all clients at once; the gateway seals each recording.
        std::thread::scope(|s2| {
            for c in clients.iter_mut() {
                s2.spawn(move || c.rdp.stop());
            }
        });
        gw.sealed(up.len(), Duration::from_secs(90));
        std::thread::sleep(CHAIN_POLL * 2);
        stop_chains.store(true, Ordering::SeqCst);
        let _ = chains.join();
        let seen = client_poller
            .join()
            .unwrap_or_else(|_| anyhow::bail!("client poller panicked"))?;
        let states = poller
            .join()
            .unwrap_or_else(|_| anyhow::bail!("state poller panicked"))?;
        Ok((states, seen))
    })?;
    drop(clients);
    let tails = tails.into_inner().unwrap_or_else(|p| p.into_inner());
    let scratch = tempfile::Builder::new()
        .prefix("psmgate-rdp-bench-decode-")
        .tempdir()?;
    let recs = psmgate_e2e::recordings(&data);
    if recs.len() != up.len() {
        row.notes.push(format!(
            "{} recordings for {} connected sessions",
            recs.len(),
            up.len()
        ));
    }
    for (i, rec) in recs.iter().enumerate() {
        let name = format!("recording {}", i + 1);
        let client = manifest(rec)
            .ok()
            .and_then(|m| {
                m["client_addr"]
                    .as_str()?
                    .rsplit_once(':')?
                    .1
                    .parse::<u16>()
                    .ok()
            })
            .and_then(|p| client_of_port.get(&p))
            .and_then(|&k| seen.get(k));
        if client.is_none() {
            row.notes.push(format!(
                "{name}: client not identified; its screen is not compared"
            ));
        }
        match manifest(rec) {
            Ok(m) if m["state"].as_str() == Some("completed") => match gw.verify(rec) {
                Ok(()) => row.sealed_ok += 1,
                Err(e) => row.notes.push(format!("{name}: {e:#}")),
            },
            Ok(m) => row.notes.push(format!(
                "{name}: state {} ({})",
                m["state"],
                m["end_reason"].as_str().unwrap_or("")
            )),
            Err(e) => {
                row.notes.push(format!("{name}: {e:#}"));
                continue;
            }
        }
        match analyse(
            rec,
            region,
            &states,
            client.map(Vec::as_slice),
            tails.get(rec),
            t0,
            t_end,
            scratch.path(),
        ) {
            Ok(a) => {
                row.required += a.required;
                row.missing += a.missing.len();
                row.undelivered += a.undelivered;
                row.lags.extend(a.lags);
                if !a.missing.is_empty() {
                    row.notes.push(format!(
                        "{name}: {} of {} held states not in the recording (at {:?} s; best PSNR {:?})",
                        a.missing.len(),
                        a.required,
                        a.missing.iter().map(|m| m.0).collect::<Vec<_>>(),
                        a.missing.iter().map(|m| m.1).collect::<Vec<_>>(),
                    ));
                }
                row.notes
                    .extend(a.notes.into_iter().map(|m| format!("{name}: {m}")));
            }
            Err(e) => row.notes.push(format!(
                "{name}: analysis failed: {e:#} (session end: {})",
                manifest(rec)
                    .ok()
                    .and_then(|m| m["end_reason"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            )),
        }
    }
    row.decode_errors = gw.decode_errors();
    for l in gw
        .log_lines("ERROR")
        .into_iter()
        .chain(gw.log_lines("session ended with an error"))
        // The bench's own readiness probe hangs up inside the TLS handshake.
        .filter(|l| !l.contains("tls handshake eof"))
        .take(5)
    {
        row.notes.push(format!("gateway log: {l}"));
    }
    gw.stop();
    Ok(row)
}

/// Notes every change of `region` on the target until `stop`.
fn poll_states(conn: &mut XConn, region: Rect, stop: &AtomicBool) -> Result<Vec<State>> {
    let mut out: Vec<State> = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    while !stop.load(Ordering::SeqCst) {
        let px = conn.image(region.x, region.y, region.w, region.h)?;
        let at = Instant::now();
        if last.as_ref() != Some(&px) {
            out.push(State {
                at,
                luma: luma_of_image(&px),
            });
            last = Some(px);
        }
        std::thread::sleep(STATE_POLL);
    }
    Ok(out)
}

/// Notes every change of `region` on each client's display until `stop`.
fn poll_clients(conns: &mut [XConn], region: Rect, stop: &AtomicBool) -> Result<Vec<Vec<State>>> {
    let mut out: Vec<Vec<State>> = conns.iter().map(|_| Vec::new()).collect();
    let mut last: Vec<Option<Vec<u8>>> = conns.iter().map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        let tick = Instant::now();
        for (k, conn) in conns.iter_mut().enumerate() {
            let px = conn.image(region.x, region.y, region.w, region.h)?;
            if last[k].as_ref() != Some(&px) {
                out[k].push(State {
                    at: Instant::now(),
                    luma: luma_of_image(&px),
                });
                last[k] = Some(px);
            }
        }
        std::thread::sleep(CLIENT_POLL.saturating_sub(tick.elapsed()));
    }
    Ok(out)
}

/// Luma of `GetImage` ZPixmap pixels (B, G, R, pad).
fn luma_of_image(px: &[u8]) -> Vec<u8> {
    let rgb: Vec<u32> = px
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
        .collect();
    luma_of(&rgb)
}

fn poll_chains(
    data: &std::path::Path,
    tails: &Mutex<HashMap<PathBuf, ChainTail>>,
    stop: &AtomicBool,
) {
    loop {
        let last = stop.load(Ordering::SeqCst);
        let now = Instant::now();
        let mut tails = tails.lock().unwrap_or_else(|p| p.into_inner());
        for dir in psmgate_e2e::recordings(data) {
            tails
                .entry(dir.clone())
                .or_insert_with(|| ChainTail::new(dir));
        }
        for t in tails.values_mut() {
            t.poll(now);
        }
        drop(tails);
        if last {
            return;
        }
        std::thread::sleep(CHAIN_POLL);
    }
}

struct Analysis {
    required: usize,
    /// (seconds since the window started, best PSNR) of each missing state.
    missing: Vec<(f64, f64)>,
    /// Held states the client never showed either.
    undelivered: usize,
    lags: Vec<f64>,
    notes: Vec<String>,
}

/// For every state, the first of `images` that shows it (luma PSNR ≥ [`MATCH_DB`] and
/// ≥ [`MARGIN_DB`] better than against any state with other content), and its best PSNR.
fn first_matches(images: &[Vec<u8>], states: &[State]) -> (Vec<Option<usize>>, Vec<f64>) {
    let mut first: Vec<Option<usize>> = vec![None; states.len()];
    let mut best_seen = vec![0f64; states.len()];
    for (j, f) in images.iter().enumerate() {
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
                first[k] = Some(j);
            }
        }
    }
    (first, best_seen)
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    rec: &std::path::Path,
    region: Rect,
    states: &[State],
    client: Option<&[State]>,
    tail: Option<&ChainTail>,
    t0: Instant,
    t_end: Instant,
    scratch: &std::path::Path,
) -> Result<Analysis> {
    let frames = decode_region(rec, region, scratch)?;
    let mut a = Analysis {
        required: 0,
        missing: Vec::new(),
        undelivered: 0,
        lags: Vec::new(),
        notes: Vec::new(),
    };
    match tail {
        Some(t) if t.frames() != frames.len() as u64 => a.notes.push(format!(
            "chain tail counted {} frames, ffmpeg decoded {}",
            t.frames(),
            frames.len()
        )),
        Some(t) => a.notes.extend(t.problems.iter().take(3).cloned()),
        None => a.notes.push("recording never seen while running".into()),
    }
    let (first, best_seen) = first_matches(&frames, states);
    let shown: Vec<bool> = match client {
        Some(c) => {
            let images: Vec<Vec<u8>> = c.iter().map(|s| s.luma.clone()).collect();
            first_matches(&images, states)
                .0
                .iter()
                .map(Option::is_some)
                .collect()
        }
        None => vec![true; states.len()],
    };
    // The first state was already on screen when polling began: its start is unknown.
    for (k, s) in states.iter().enumerate().skip(1) {
        let until = states.get(k + 1).map_or(t_end, |n| n.at);
        if until.duration_since(s.at) < HELD {
            continue;
        }
        let Some(j) = first[k] else {
            if shown[k] {
                a.required += 1;
                a.missing.push((
                    (s.at.duration_since(t0).as_secs_f64() * 10.0).round() / 10.0,
                    (best_seen[k] * 10.0).round() / 10.0,
                ));
            } else {
                a.undelivered += 1;
            }
            continue;
        };
        a.required += 1;
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
