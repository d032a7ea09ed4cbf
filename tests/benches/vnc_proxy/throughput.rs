//! Part 2: bulk throughput. Back-to-back non-incremental full-screen updates (one request
//! outstanding), Raw and ZRLE, directly from x11vnc and through psmgate, alternating in rounds.

use crate::gateway::{process_cpu_seconds, Gateway, TargetSpec};
use crate::stats::fmt;
use crate::viewer::Viewer;
use crate::xclient::xterm;
use anyhow::{bail, Result};
use psmgate::vnc::encoding;
use psmgate_e2e::peers::{X11Vnc, XDisplay};
use std::time::{Duration, Instant};

/// Alternating rounds per encoding (each path runs `seconds / ROUNDS` per round).
const ROUNDS: u32 = 4;

/// Options of the throughput part.
pub struct Options {
    /// Screen size.
    pub width: u32,
    /// Screen size.
    pub height: u32,
    /// Measuring time per path and encoding.
    pub seconds: f64,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: u64,
    updates: u64,
    secs: f64,
    gateway_cpu: f64,
}

/// Runs the part and prints its report.
pub fn run(opts: &Options) -> Result<()> {
    const PW: &str = "benchpw2";
    println!(
        "\n## 2. Bulk throughput (back-to-back non-incremental full updates of {}×{}), {:.0} s per path and encoding",
        opts.width, opts.height, opts.seconds
    );
    let display = XDisplay::start(opts.width, opts.height)?;
    // A full screen of coloured directory listings: realistic content for ZRLE.
    let (_filler, _) = xterm(
        &display,
        &[
            "-geometry",
            &format!("{}x{}+0+0", opts.width / 6 - 2, opts.height / 13 - 1),
        ],
        "ls -lR --color=always /usr/lib /usr/share 2>/dev/null | paste - - - | head -n 3000; \
         exec sleep 1000000",
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let target = X11Vnc::start(&display, Some(PW))?;
    let mut gw = Gateway::start(&[TargetSpec {
        name: "lab".into(),
        port: target.port(),
        password: PW.into(),
    }])?;
    let token = gw.grant("lab")?;
    println!(
        "\nsetup: Xvfb + a screen-filling xterm of `ls -lR --color | paste - - -` output + \
         x11vnc -localhost -forever -shared -noxdamage -rfbauth; one request outstanding; one \
         viewer connected at a time, direct and proxied alternating in {ROUNDS} rounds; gateway CPU from /proc/<pid>/stat during the proxied runs.\n\
         psmgate config:\n```toml\n{}```",
        gw.config_text
    );
    println!(
        "\n| encoding | path | MB/s | updates/s | kB per update | gateway CPU (% of a core) | proxied / direct |"
    );
    println!("|---|---|---|---|---|---|---|");
    let load_before = crate::gateway::loadavg();
    for (enc, name) in [(encoding::RAW, "Raw"), (encoding::ZRLE, "ZRLE")] {
        let mut tally = [Tally::default(); 2];
        let slice = Duration::from_secs_f64(opts.seconds / f64::from(ROUNDS));
        for _ in 0..ROUNDS {
            for (path, t) in tally.iter_mut().enumerate() {
                // One viewer at a time: x11vnc serves its first client differently from later
                // ones, so two connected viewers would not be measured alike.
                let mut v = if path == 0 {
                    Viewer::connect(target.port(), Some(PW), &[enc])?
                } else {
                    Viewer::connect(gw.vnc_port, Some(&token), &[enc])?
                };
                full_update(&mut v)?; // warm-up
                let cpu0 = process_cpu_seconds(gw.pid()).unwrap_or(0.0);
                let (b0, u0) = (v.bytes_in, v.updates);
                let t0 = Instant::now();
                while t0.elapsed() < slice {
                    full_update(&mut v)?;
                }
                t.secs += t0.elapsed().as_secs_f64();
                t.bytes += v.bytes_in - b0;
                t.updates += v.updates - u0;
                t.gateway_cpu += process_cpu_seconds(gw.pid()).unwrap_or(0.0) - cpu0;
            }
        }
        let mbs = |t: &Tally| t.bytes as f64 / 1e6 / t.secs;
        for (path, label) in ["direct", "through psmgate"].iter().enumerate() {
            let t = &tally[path];
            let ratio = if path == 1 {
                format!(
                    "{:.1} % (MB/s), {:.1} % (updates/s)",
                    100.0 * mbs(t) / mbs(&tally[0]),
                    100.0 * (t.updates as f64 / t.secs) / (tally[0].updates as f64 / tally[0].secs)
                )
            } else {
                String::new()
            };
            println!(
                "| {name} | {label} | {:.1} | {:.1} | {:.0} | {} | {ratio} |",
                mbs(t),
                t.updates as f64 / t.secs,
                t.bytes as f64 / 1e3 / t.updates.max(1) as f64,
                if path == 1 {
                    fmt(Some(100.0 * t.gateway_cpu / t.secs), 0)
                } else {
                    "—".into()
                },
            );
        }
    }
    gw.stop();
    println!(
        "\nload average before/after: {load_before} / {} (target: proxied ≥ 95 % of direct)",
        crate::gateway::loadavg()
    );
    Ok(())
}

/// Requests the whole screen (non-incremental) and waits for the update.
fn full_update(v: &mut Viewer) -> Result<()> {
    v.request(false)?;
    if v.next_update(Instant::now() + Duration::from_secs(30))?
        .is_none()
    {
        bail!("no full update within 30 s");
    }
    Ok(())
}
