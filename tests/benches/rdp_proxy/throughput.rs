//! Part 2: bulk throughput. A screen-filling xterm scrolls coloured `ls -lR` output, so the
//! whole screen changes all the time: paced (a new page about every 100 ms) and flat out. One
//! client at a time, direct and through psmgate alternating in rounds, counts what reaches it: bytes (the kernel's
//! `tcpi_bytes_received` of the client's connection) and display changes (three full-width rows
//! of the client's own display polled every [`ROW_POLL`]).

use crate::gateway::{
    bytes_received_to, client_options, find_pid, start_target, thread_cpu_seconds, thread_share,
    Client, Gateway, Path,
};
use crate::stats::fmt;
use crate::vnc_gateway::{machine_jiffies, process_cpu_seconds};
use crate::xclient::xterm;
use crate::xproto::{digest, XConn};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Alternating rounds (each path runs `seconds / ROUNDS` per round).
const ROUNDS: u32 = 4;
/// Time after connecting before measuring.
const WARM_UP: Duration = Duration::from_secs(3);
/// Polling interval of the client's display rows.
const ROW_POLL: Duration = Duration::from_millis(2);

/// Options of the throughput part.
pub struct Options {
    /// Screen size.
    pub width: u32,
    /// Screen size.
    pub height: u32,
    /// Measuring time per path.
    pub seconds: f64,
    /// Extra xfreerdp arguments.
    pub client_args: Vec<String>,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: u64,
    changes: u64,
    secs: f64,
    gateway_cpu: f64,
    shadow_cpu: f64,
    client_cpu: f64,
    busy: u64,
    total: u64,
}

/// The workloads for an xterm of `rows` lines: a name and the script of the xterm.
fn workloads(rows: u32) -> [(&'static str, String); 2] {
    let page = rows.saturating_sub(2).max(1);
    [
        (
            "paced: a new page of text every ~100 ms",
            format!(
                "f=$(mktemp); trap 'rm -f \"$f\"; exit' HUP INT TERM; \
                 ls -lR --color=always /usr/lib /usr/share 2>/dev/null | paste - - - > \"$f\"; \
                 n=$(wc -l < \"$f\"); i=0; while :; do s=$(( (i * {page}) % (n - 2 * {page}) + 1 )); \
                 sed -n \"${{s}},$((s + {page} - 1))p\" \"$f\"; i=$((i + 1)); sleep 0.1; done"
            ),
        ),
        (
            "flat out: `ls -lR --color` (3 entries a line) in a loop",
            "while :; do ls -lR --color=always /usr/lib /usr/share 2>/dev/null | paste - - -; done"
                .to_owned(),
        ),
    ]
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    println!(
        "\n## 2. Bulk throughput (full-screen scrolling text at {}×{}), {:.0} s per path and workload",
        opts.width, opts.height, opts.seconds
    );
    let target = start_target(opts.width, opts.height)?;
    let mut gw = Gateway::start(&target.address())?;
    let token = gw.grant()?;
    let shadow_pid = find_pid(&["freerdp-shadow-cli", &format!("/port:{}", target.port())]);
    println!(
        "\nsetup: Xvfb + a screen-filling xterm ({} columns × {} lines) + freerdp-shadow-cli \
         /sec:nla; one xfreerdp client at a time (`/sec:nla /cert:ignore{}`), direct and through \
         psmgate alternating in {ROUNDS} rounds, {} s warm-up after each connect; bytes = \
         tcpi_bytes_received of the client's connection (`ss -ti`); display changes = changes of \
         three full-width rows of the client's display (at 1/4, 1/2, 3/4 of the height) polled \
         every {} ms; CPU of the gateway, the shadow server and xfreerdp from /proc/<pid>/stat, \
         machine busy from /proc/stat (the rest is mostly the xterm and the Xvfbs).",
        opts.width / 6 - 2,
        opts.height / 13 - 1,
        opts.client_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>(),
        WARM_UP.as_secs(),
        ROW_POLL.as_millis()
    );
    let load_before = crate::vnc_gateway::loadavg();
    let slice = Duration::from_secs_f64(opts.seconds / f64::from(ROUNDS));
    let mut sessions = 0;
    let mut results = Vec::new();
    for (name, script) in workloads(opts.height / 13 - 1) {
        let (filler, _) = xterm(
            target.display(),
            &[
                "-geometry",
                &format!("{}x{}+0+0", opts.width / 6 - 2, opts.height / 13 - 1),
            ],
            &script,
        )?;
        std::thread::sleep(Duration::from_secs(2));
        let mut tally = [Tally::default(); 2];
        let mut threads: BTreeMap<String, f64> = BTreeMap::new();
        let mut zero: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..ROUNDS {
            for (i, path) in [Path::Direct, Path::Proxied].into_iter().enumerate() {
                let port = match path {
                    Path::Direct => target.port(),
                    Path::Proxied => gw.rdp_port,
                };
                let (mut c, mut conn) = Client::connect(
                    client_options(path, &target, &gw, &token, &opts.client_args),
                    path,
                )?;
                let client_pid = find_pid(&["xfreerdp", &format!("/v:127.0.0.1:{port}")]);
                std::thread::sleep(WARM_UP);
                let stop = AtomicBool::new(false);
                let cpu = |pid: Option<u32>| pid.and_then(process_cpu_seconds).unwrap_or(0.0);
                let (b0, g0, s0, c0, mj0) = (
                    bytes_received_to(port)?,
                    cpu(Some(gw.pid())),
                    cpu(shadow_pid),
                    cpu(client_pid),
                    machine_jiffies().unwrap_or((0, 0)),
                );
                let th0 = thread_cpu_seconds(gw.pid());
                let t0 = Instant::now();
                let changes = std::thread::scope(|s| -> Result<u64> {
                    let h = s.spawn(|| count_changes(&mut conn, opts.width, opts.height, &stop));
                    std::thread::sleep(slice);
                    stop.store(true, Ordering::SeqCst);
                    h.join().unwrap_or_else(|_| bail!("poller panicked"))
                })?;
                let secs = t0.elapsed().as_secs_f64();
                if path == Path::Proxied {
                    for (k, v) in thread_cpu_seconds(gw.pid()) {
                        *threads.entry(k.clone()).or_insert(0.0) +=
                            v - th0.get(&k).copied().unwrap_or(0.0);
                        zero.entry(k).or_insert(0.0);
                    }
                }
                let (b1, g1, s1, c1, mj1) = (
                    bytes_received_to(port)?,
                    cpu(Some(gw.pid())),
                    cpu(shadow_pid),
                    cpu(client_pid),
                    machine_jiffies().unwrap_or((0, 0)),
                );
                if !c.rdp.is_running() {
                    bail!("the {} client exited:\n{}", path.label(), c.rdp.log_text());
                }
                let t = &mut tally[i];
                t.bytes += b1.saturating_sub(b0);
                t.changes += changes;
                t.secs += secs;
                t.gateway_cpu += g1 - g0;
                t.shadow_cpu += s1 - s0;
                t.client_cpu += c1 - c0;
                t.busy += mj1.0 - mj0.0;
                t.total += mj1.1 - mj0.1;
                drop(c);
                if path == Path::Proxied {
                    // Let the gateway seal the recording before the next direct round.
                    sessions += 1;
                    gw.sealed(sessions, Duration::from_secs(30));
                }
            }
        }
        drop(filler);
        let split = thread_share(&zero, &threads, tally[1].gateway_cpu, tally[1].secs);
        results.push((name, tally, split));
    }
    println!(
        "\n| workload | path | MB/s to the client | display changes/s | kB per change | CPU % of a core: gateway / shadow / xfreerdp | machine busy (2 cores) | proxied / direct |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mbs = |t: &Tally| t.bytes as f64 / 1e6 / t.secs;
    let cps = |t: &Tally| t.changes as f64 / t.secs;
    for (name, tally, _) in &results {
        for (i, path) in [Path::Direct, Path::Proxied].into_iter().enumerate() {
            let t = &tally[i];
            let ratio = if i == 1 {
                format!(
                    "**{:.1} %** (changes/s), {:.1} % (MB/s)",
                    100.0 * cps(t) / cps(&tally[0]),
                    100.0 * mbs(t) / mbs(&tally[0]),
                )
            } else {
                String::new()
            };
            println!(
                "| {} | {} | {:.2} | {:.1} | {:.0} | {} / {:.0} / {:.0} | {:.0} % | {ratio} |",
                if i == 0 { *name } else { "" },
                path.label(),
                mbs(t),
                cps(t),
                t.bytes as f64 / 1e3 / t.changes.max(1) as f64,
                if i == 1 {
                    fmt(Some(100.0 * t.gateway_cpu / t.secs), 0)
                } else {
                    "—".into()
                },
                100.0 * t.shadow_cpu / t.secs,
                100.0 * t.client_cpu / t.secs,
                100.0 * t.busy as f64 / t.total.max(1) as f64,
            );
        }
    }
    println!();
    for (name, _, split) in &results {
        println!("gateway CPU by thread, {name}: {split}  ");
    }
    let errors = gw.decode_errors();
    gw.stop();
    println!(
        "\nrecorder decode errors: {errors}; load average before/after: {load_before} / {} \
         (target: proxied ≥ 95 % of direct)",
        crate::vnc_gateway::loadavg()
    );
    Ok(())
}

/// Counts changes of three full-width rows of the display until `stop`.
fn count_changes(conn: &mut XConn, w: u32, h: u32, stop: &AtomicBool) -> Result<u64> {
    let rows = [h / 4, h / 2, 3 * h / 4];
    let mut last = 0u64;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let mut d = 0u64;
        for &y in &rows {
            d = d.rotate_left(21) ^ digest(&conn.image(0, y, w, 1)?);
        }
        if d != last {
            if last != 0 {
                n += 1;
            }
            last = d;
        }
        std::thread::sleep(ROW_POLL);
    }
    Ok(n)
}
