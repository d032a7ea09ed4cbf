//! Part 1: added latency. A key pressed on a client's X display (XTEST) travels xfreerdp →
//! (psmgate →) shadow server → the target's xterm, which echoes it; the shadow server sends the
//! change to every client, and each client's own X display shows it when xfreerdp paints it.
//!
//! Three xfreerdp clients are connected at once: direct, through psmgate, direct. The sender
//! alternates between the first direct client and the proxied one, which gives the end-to-end
//! latency of both paths under the same machine load. Every echo is also timed on all three
//! client displays, so the proxied arrival minus the mean of the two direct arrivals is
//! psmgate's added latency on the target → client leg for the very same screen change; the
//! difference between the two direct clients is the method's noise floor.
//!
//! An arrival is when the client's display first shows the final state of the text line being
//! typed (the line's strip polled with `GetImage` every [`POLL_EVERY`]).

use crate::gateway::{client_options, start_target, Client, Gateway, Path};
use crate::screen::{calibrate, settle, watch, Changes, POLL_EVERY};
use crate::stats::{fmt, ms, percentile};
use crate::xproto::{XConn, XK_RETURN};
use anyhow::{bail, Context, Result};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// No change for this long after the last one means the echo is finished.
const QUIET_AFTER_KEY: Duration = Duration::from_millis(200);
/// No change for this long means the line is idle before a key press.
const QUIET_BEFORE_KEY: Duration = Duration::from_millis(100);
/// An echo that has not started after this long counts as missed.
const ECHO_TIMEOUT: Duration = Duration::from_secs(3);
/// Characters per line before an (unmeasured) Enter, so the xterm never scrolls.
const LINE_CHARS: usize = 60;

/// Options of the latency part.
pub struct Options {
    /// Screen size.
    pub width: u32,
    /// Screen size.
    pub height: u32,
    /// Key presses measured per path.
    pub iterations: usize,
    /// Extra xfreerdp arguments.
    pub client_args: Vec<String>,
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    println!(
        "\n## 1. Added latency (key press → echoed glyph shown on the client's display), {}×{}, {} presses per path",
        opts.width, opts.height, opts.iterations
    );
    let target = start_target(opts.width, opts.height)?;
    let mut gw = Gateway::start(&target.address())?;
    let token = gw.grant()?;
    let mut tconn = XConn::connect(target.display().number())?;
    let cells = calibrate(&mut tconn, opts.width, opts.height)?;
    let paths = [Path::Direct, Path::Proxied, Path::Direct];
    let mut clients = Vec::new();
    let mut watchers = Vec::new();
    let mut senders = Vec::new();
    for p in paths {
        let (c, watcher) = Client::connect(
            client_options(p, &target, &gw, &token, &opts.client_args),
            p,
        )?;
        watchers.push(watcher);
        senders.push(c.conn()?);
        clients.push(c);
    }
    println!(
        "\nsetup: Xvfb + DemoApp (maximized xterm running `cat`) + freerdp-shadow-cli /sec:nla \
         (SAM file) on port {}; three xfreerdp 2.11 clients (`/sec:nla /cert:ignore /size:{}x{}{}`, \
         each on its own Xvfb) connected at once: direct, through psmgate, direct; keys sent with \
         XTEST on the sending client's display (first direct and proxied alternate); every \
         client's display polled with GetImage every {} µs on the strip of the line being typed \
         ({}×{} px cells at ({}, {})).\npsmgate config:\n```toml\n{}```",
        target.port(),
        opts.width,
        opts.height,
        opts.client_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>(),
        POLL_EVERY.as_micros(),
        cells.w,
        cells.h,
        cells.x,
        cells.y,
        gw.config_text
    );
    let mut e2e: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // Echoes (on any display) whose first change was not yet the final state.
    let mut piecewise = 0usize;
    let mut observed = 0usize;
    let mut missed = [0usize; 2];
    let mut paired: Vec<f64> = Vec::new();
    let mut raw_pairs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut floor: Vec<f64> = Vec::new();
    let load_before = crate::vnc_gateway::loadavg();
    let cpu0 = crate::vnc_gateway::process_cpu_seconds(gw.pid()).unwrap_or(0.0);
    let started = Instant::now();
    let mut line = 0u32;
    let mut strip = cells.line(line, LINE_CHARS as u32 + 2, opts.width, opts.height);
    for i in 0..opts.iterations * 2 {
        let sender = i % 2;
        if i > 0 && i % LINE_CHARS == 0 {
            settle_all(&mut watchers, strip)?;
            senders[0].tap(XK_RETURN)?;
            line += 1;
            strip = cells.line(line, LINE_CHARS as u32 + 2, opts.width, opts.height);
        }
        settle_all(&mut watchers, strip)?;
        for c in clients.iter_mut() {
            if !c.rdp.is_running() {
                bail!(
                    "the {} client exited:\n{}\n{}",
                    c.path.label(),
                    c.rdp.log_text(),
                    gw.log_tail(20)
                );
            }
        }
        let keysym = u32::from(b'a' + (i % 26) as u8);
        let keycode = senders[sender]
            .keycode(keysym)
            .context("no keycode for a letter")?;
        let start = Barrier::new(4);
        let (t0, changes) = std::thread::scope(|s| -> Result<(Instant, Vec<Changes>)> {
            let handles: Vec<_> = watchers
                .iter_mut()
                .map(|w| {
                    let start = &start;
                    s.spawn(move || watch(w, strip, start, QUIET_AFTER_KEY, ECHO_TIMEOUT))
                })
                .collect();
            start.wait();
            let t0 = Instant::now();
            senders[sender].key(keycode, true)?;
            senders[sender].key(keycode, false)?;
            let changes = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("watcher panicked")))
                .collect::<Result<Vec<_>>>()?;
            Ok((t0, changes))
        })?;
        // The sender's own display; clients 0 and 1 are the two senders.
        match changes[sender].complete() {
            Some(t) => e2e[sender].push(ms(t.duration_since(t0))),
            None => missed[sender] += 1,
        }
        let done: Vec<Option<Instant>> = changes.iter().map(Changes::complete).collect();
        if let [Some(ta), Some(tp), Some(tb)] = done[..] {
            let (da, db) = (signed_ms(ta, tp), signed_ms(tb, tp));
            raw_pairs[0].push(da);
            raw_pairs[1].push(db);
            paired.push((da + db) / 2.0);
            floor.push(signed_ms(ta, tb));
        }
        for c in &changes {
            if let (Some(f), Some(t)) = (c.first(), c.complete()) {
                observed += 1;
                piecewise += usize::from(f != t);
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu = crate::vnc_gateway::process_cpu_seconds(gw.pid()).unwrap_or(0.0) - cpu0;
    drop(clients);
    gw.stop();
    println!(
        "\nmeasured in {:.0} s; gateway CPU {:.1} % of a core; load average before/after: {load_before} / {}",
        elapsed.as_secs_f64(),
        100.0 * cpu / elapsed.as_secs_f64(),
        crate::vnc_gateway::loadavg()
    );
    println!(
        "\n**End to end** (the sending client: key sent → its display shows the completed echo; \
         {piecewise} of {observed} echoes arrived in more than one screen change):\n"
    );
    println!("| path | presses | missed | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (path, name) in ["direct (xfreerdp → shadow)", "through psmgate"]
        .iter()
        .enumerate()
    {
        let v = &e2e[path];
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            v.len(),
            missed[path],
            fmt(percentile(v, 50.0), 1),
            fmt(percentile(v, 90.0), 1),
            fmt(percentile(v, 99.0), 1),
            fmt(percentile(v, 100.0), 1),
        );
    }
    let added = |p: f64| -> Option<f64> { Some(percentile(&e2e[1], p)? - percentile(&e2e[0], p)?) };
    println!(
        "\ndifference of the end-to-end percentiles (through − direct): p50 {} ms, p99 {} ms \
         (includes the client → target leg and the shadow server's capture jitter)",
        fmt(added(50.0), 2),
        fmt(added(99.0), 2)
    );
    let p99 = percentile(&paired, 99.0);
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<f64>>();
    let floor_p99 = percentile(&abs(&floor), 99.0);
    let verdict = match (p99, floor_p99) {
        (Some(v), _) if v <= 1.0 => "met".to_owned(),
        (Some(v), Some(f)) if v <= f => {
            format!("not shown: within this method's noise (|direct − direct| p99 {f:.1} ms)")
        }
        (Some(_), _) => "NOT met".to_owned(),
        (None, _) => "no data".to_owned(),
    };
    println!(
        "\n**Paired** (the same echo seen by three clients at once: arrival through psmgate − \
         mean arrival of the two direct clients; the target → client leg only; medians against \
         each alone: {} / {} ms), {} echoes: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, min {} ms \
         → target ≤ 1 ms added at p99: {}",
        fmt(percentile(&raw_pairs[0], 50.0), 3),
        fmt(percentile(&raw_pairs[1], 50.0), 3),
        paired.len(),
        fmt(percentile(&paired, 50.0), 3),
        fmt(percentile(&paired, 90.0), 3),
        fmt(p99, 3),
        fmt(percentile(&paired, 100.0), 3),
        fmt(paired.iter().copied().reduce(f64::min), 3),
        verdict
    );
    println!(
        "\n**Noise floor** (second direct client − first direct client, same echoes; nothing is \
         added between them): p50 {} ms, p90 {} ms, p99 {} ms; |difference| p99 {} ms \
         (paired |difference| p99 {} ms)",
        fmt(percentile(&floor, 50.0), 3),
        fmt(percentile(&floor, 90.0), 3),
        fmt(percentile(&floor, 99.0), 3),
        fmt(floor_p99, 3),
        fmt(percentile(&abs(&paired), 99.0), 3),
    );
    Ok(())
}

fn settle_all(watchers: &mut [XConn], strip: psmgate_codecs::Rect) -> Result<()> {
    let mut refs: Vec<&mut XConn> = watchers.iter_mut().collect();
    settle(&mut refs, strip, QUIET_BEFORE_KEY, Duration::from_secs(3))?;
    Ok(())
}

/// `b − a` in ms, negative when `b` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    match b.checked_duration_since(a) {
        Some(d) => ms(d),
        None => -ms(a.duration_since(b)),
    }
}
