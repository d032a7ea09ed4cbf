//! Part 1: added latency. A key press typed into the DemoApp xterm (which echoes it) until the
//! FramebufferUpdate that completes the echoed glyph arrives.
//!
//! Three viewers are connected at once: direct, through psmgate, direct. The sender alternates
//! between the first direct viewer and the proxied one, which gives the end-to-end latency of
//! both paths under the same machine load. Every echo is also timed by all three viewers, so
//! the proxied arrival minus the mean of the two direct arrivals is psmgate's added latency on
//! the target → viewer leg for the very same screen change, free of x11vnc's polling jitter;
//! the difference between the two direct viewers is the method's noise floor.

use crate::gateway::{Gateway, TargetSpec};
use crate::stats::{fmt, ms, percentile};
use crate::viewer::{copy_rect, Viewer};
use anyhow::{anyhow, bail, Result};
use psmgate::vnc::encoding;
use psmgate_codecs::Rect;
use psmgate_e2e::peers::{DemoApp, X11Vnc, XDisplay};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// No update for this long after the last one means the echo is finished.
const QUIET_AFTER_KEY: Duration = Duration::from_millis(200);
/// No update for this long means the screen is idle before a key press.
const QUIET_BEFORE_KEY: Duration = Duration::from_millis(100);
/// An echo that has not started after this long counts as missed.
const ECHO_TIMEOUT: Duration = Duration::from_secs(3);
/// Characters per line before an (unmeasured) Enter, so the xterm never scrolls.
const LINE_CHARS: usize = 60;
/// X11 keysym of Return.
const XK_RETURN: u32 = 0xff0d;

/// Options of the latency part.
pub struct Options {
    /// Screen size.
    pub width: u32,
    /// Screen size.
    pub height: u32,
    /// Key presses measured per path.
    pub iterations: usize,
}

/// Changed tiles of one update and their pixels afterwards.
type Tiles = Vec<(Rect, Vec<u32>)>;

/// What a viewer thread is told to do.
enum Cmd {
    /// Settle (idle screen, request outstanding), then report ready.
    Settle,
    /// Optionally press `keysym` (when this viewer is the sender), then time the echo.
    Go { send: Option<u32> },
    /// Press and release Return (unmeasured).
    Enter,
}

/// A viewer thread's answer to [`Cmd::Go`].
struct Echo {
    /// When the key was sent (sender only).
    sent: Option<Instant>,
    /// When the update completing the echo arrived.
    complete: Option<Instant>,
}

/// Runs one viewer: settles on command, and times echoes.
fn viewer_thread(
    mut v: Viewer,
    cmds: mpsc::Receiver<Cmd>,
    ready: mpsc::Sender<Result<Option<Echo>>>,
) {
    for cmd in cmds {
        let r = match cmd {
            Cmd::Settle => v
                .settle(QUIET_BEFORE_KEY, Duration::from_secs(3))
                .map(|_| None),
            Cmd::Enter => v
                .key(XK_RETURN, true)
                .and_then(|()| v.key(XK_RETURN, false))
                .map(|()| None),
            Cmd::Go { send } => measure_echo(&mut v, send).map(Some),
        };
        let failed = r.is_err();
        if ready.send(r).is_err() || failed {
            return;
        }
    }
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    const PW: &str = "benchpw1";
    println!(
        "\n## 1. Added latency (key press → echoed glyph complete), {}×{}, {} presses per path",
        opts.width, opts.height, opts.iterations
    );
    let display = XDisplay::start(opts.width, opts.height)?;
    let _app = DemoApp::start(&display)?;
    let target = X11Vnc::start(&display, Some(PW))?;
    let mut gw = Gateway::start(&[TargetSpec {
        name: "lab".into(),
        port: target.port(),
        password: PW.into(),
    }])?;
    let token = gw.grant("lab")?;
    print_setup(&gw, &target);
    let encodings = [encoding::ZRLE];
    // x11vnc serves its clients one after the other; with the proxied viewer connected between
    // two direct ones, the mean of the two direct arrivals cancels that order.
    let viewers = [
        Viewer::connect(target.port(), Some(PW), &encodings)?,
        Viewer::connect(gw.vnc_port, Some(&token), &encodings)?,
        Viewer::connect(target.port(), Some(PW), &encodings)?,
    ];
    let mut e2e: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut missed = [0usize; 2];
    let mut paired: Vec<f64> = Vec::new();
    let mut raw_pairs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // The second direct viewer − the first: what the method reports where nothing is added.
    let mut floor: Vec<f64> = Vec::new();
    let load_before = crate::gateway::loadavg();
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let mut links = Vec::new();
        for mut v in viewers {
            v.request(false)?;
            if v.next_update(Instant::now() + Duration::from_secs(10))?
                .is_none()
            {
                bail!("no initial screen from the server");
            }
            let (cmd_tx, cmd_rx) = mpsc::channel();
            let (res_tx, res_rx) = mpsc::channel();
            s.spawn(move || viewer_thread(v, cmd_rx, res_tx));
            links.push((cmd_tx, res_rx));
        }
        let round = |cmd: &dyn Fn(usize) -> Cmd| -> Result<Vec<Option<Echo>>> {
            for (i, (tx, _)) in links.iter().enumerate() {
                tx.send(cmd(i))
                    .map_err(|_| anyhow!("viewer thread ended"))?;
            }
            links
                .iter()
                .map(|(_, rx)| rx.recv().map_err(|_| anyhow!("viewer thread ended"))?)
                .collect()
        };
        for i in 0..opts.iterations * 2 {
            let sender = i % 2;
            round(&|_| Cmd::Settle)?;
            if i > 0 && i % LINE_CHARS == 0 {
                round(&|p| if p == 0 { Cmd::Enter } else { Cmd::Settle })?;
                round(&|_| Cmd::Settle)?;
            }
            let keysym = u32::from(b'a' + (i % 26) as u8);
            let echoes = round(&|p| Cmd::Go {
                send: (p == sender).then_some(keysym),
            })?;
            let (Some(a), Some(p), Some(b)) = (&echoes[0], &echoes[1], &echoes[2]) else {
                bail!("viewer thread gave no echo result");
            };
            let mine = if sender == 0 { a } else { p };
            match (mine.sent, mine.complete) {
                (Some(t0), Some(t1)) => e2e[sender].push(ms(t1.duration_since(t0))),
                _ => missed[sender] += 1,
            }
            if let (Some(ta), Some(tp), Some(tb)) = (a.complete, p.complete, b.complete) {
                let (da, db) = (signed_ms(ta, tp), signed_ms(tb, tp));
                raw_pairs[0].push(da);
                raw_pairs[1].push(db);
                paired.push((da + db) / 2.0);
                floor.push(signed_ms(ta, tb));
            }
        }
        drop(links);
        Ok(())
    })?;
    let elapsed = started.elapsed();
    gw.stop();
    println!(
        "\nmeasured in {:.0} s; load average before/after: {load_before} / {}",
        elapsed.as_secs_f64(),
        crate::gateway::loadavg()
    );
    println!("\n**End to end** (the sending viewer: key sent → update completing the echo):\n");
    println!("| path | presses | missed | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (path, name) in ["direct (viewer → x11vnc)", "through psmgate"]
        .iter()
        .enumerate()
    {
        let v = &e2e[path];
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            v.len(),
            missed[path],
            fmt(percentile(v, 50.0), 2),
            fmt(percentile(v, 90.0), 2),
            fmt(percentile(v, 99.0), 2),
            fmt(percentile(v, 100.0), 2),
        );
    }
    let added = |p: f64| -> Option<f64> { Some(percentile(&e2e[1], p)? - percentile(&e2e[0], p)?) };
    println!(
        "\ndifference of the end-to-end percentiles (through − direct): p50 {} ms, p99 {} ms \
         (dominated by x11vnc's screen polling jitter, see the paired figure)",
        fmt(added(50.0), 2),
        fmt(added(99.0), 2)
    );
    let p99 = percentile(&paired, 99.0);
    println!(
        "\n**Paired** (the same echo seen by three viewers at once: arrival through psmgate − \
         mean arrival of the two direct viewers connected before and after it; the target → \
         viewer leg only; medians against each alone: {} / {} ms), {} presses: p50 {} ms, \
         p90 {} ms, p99 {} ms, max {} ms, min {} ms → target ≤ 1 ms added at p99: {}",
        fmt(percentile(&raw_pairs[0], 50.0), 3),
        fmt(percentile(&raw_pairs[1], 50.0), 3),
        paired.len(),
        fmt(percentile(&paired, 50.0), 3),
        fmt(percentile(&paired, 90.0), 3),
        fmt(p99, 3),
        fmt(percentile(&paired, 100.0), 3),
        fmt(paired.iter().copied().reduce(f64::min), 3),
        match p99 {
            Some(v) if v <= 1.0 => "met",
            Some(_) => "NOT met",
            None => "no data",
        }
    );
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<f64>>();
    println!(
        "\n**Noise floor** (second direct viewer − first direct viewer, same echoes; nothing is \
         added between them): p50 {} ms, p90 {} ms, p99 {} ms; |difference| p99 {} ms \
         (paired |difference| p99 {} ms)",
        fmt(percentile(&floor, 50.0), 3),
        fmt(percentile(&floor, 90.0), 3),
        fmt(percentile(&floor, 99.0), 3),
        fmt(percentile(&abs(&floor), 99.0), 3),
        fmt(percentile(&abs(&paired), 99.0), 3),
    );
    Ok(())
}

/// `b − a` in ms, negative when `b` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    match b.checked_duration_since(a) {
        Some(d) => ms(d),
        None => -ms(a.duration_since(b)),
    }
}

fn print_setup(gw: &Gateway, target: &X11Vnc) {
    println!(
        "\nsetup: Xvfb + DemoApp (xterm running `cat`) + x11vnc -localhost -forever -shared \
         -noxdamage -rfbauth (port {}); viewer encodings: ZRLE; one incremental request always \
         outstanding; three viewers connected at once (direct, through psmgate, direct), the sending viewer alternates between the first two.\npsmgate config:\n```toml\n{}```",
        target.port(),
        gw.config_text
    );
}

/// With the screen idle (an incremental request outstanding), presses `send` if given, and
/// times the update after which the screen equals its final echoed state (no update for
/// [`QUIET_AFTER_KEY`]); `complete` is `None` if the screen did not change. Releases the key
/// afterwards.
fn measure_echo(v: &mut Viewer, send: Option<u32>) -> Result<Echo> {
    let before = v.fb().pixels().to_vec();
    v.fb_mut().take_damage();
    let t0 = Instant::now();
    if let Some(k) = send {
        v.key(k, true)?;
    }
    let mut updates: Vec<(Instant, Tiles)> = Vec::new();
    loop {
        let deadline = match updates.last() {
            None => t0 + ECHO_TIMEOUT,
            Some((t, _)) => *t + QUIET_AFTER_KEY,
        };
        let Some(t) = v.next_update(deadline)? else {
            break;
        };
        v.request(true)?;
        let damage = v.fb_mut().take_damage();
        let tiles = damage
            .into_iter()
            .map(|r| (r, copy_rect(v.fb(), r)))
            .collect();
        updates.push((t, tiles));
    }
    if let Some(k) = send {
        v.key(k, false)?;
    }
    let sent = send.map(|_| t0);
    let after = v.fb().pixels();
    if after == before.as_slice() {
        return Ok(Echo {
            sent,
            complete: None,
        });
    }
    // Replay the updates onto the idle screen; the first that yields the final state is the one
    // that completed the echo.
    let width = v.fb().width() as usize;
    let mut work = before;
    for (t, tiles) in &updates {
        for (r, px) in tiles {
            for (row_i, row) in (r.y..r.bottom()).enumerate() {
                let o = row as usize * width + r.x as usize;
                let src = &px[row_i * r.w as usize..(row_i + 1) * r.w as usize];
                work[o..o + r.w as usize].copy_from_slice(src);
            }
        }
        if work.as_slice() == after {
            return Ok(Echo {
                sent,
                complete: Some(*t),
            });
        }
    }
    Ok(Echo {
        sent,
        complete: None,
    })
}
