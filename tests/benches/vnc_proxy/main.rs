//! VNC proxy benchmark: what psmgate adds between a VNC viewer and an x11vnc target.
//!
//! ```sh
//! cargo build --release -p psmgate --features svt-av1
//! cargo bench -p psmgate-e2e --features svt-av1 --bench vnc_proxy -- [PARTS] [OPTIONS]
//! ```
//!
//! PARTS (default: all): `latency`, `throughput`, `concurrency`.
//!
//! OPTIONS:
//! * `--iterations N`   key presses per path in the latency part (default 200)
//! * `--seconds S`      measuring time per path and encoding in the throughput part (default 10)
//! * `--sessions LIST`  session counts of the concurrency part (default 5,10,20,30)
//! * `--session-seconds S`  measured time per session count (default 60)
//! * `--size WxH`       screen size of every target (default 1920x1080)
//!
//! The gateway under test is `target/release/psmgate` (or `PSMGATE_BIN`); the peers (Xvfb,
//! x11vnc, xterm, xdotool, ffmpeg) come from `scripts/install-peers.sh`. Every process the
//! bench starts is stopped when its part ends, also on errors; interrupting the bench with
//! Ctrl-C skips that cleanup (the peers run in their own process groups).

mod concurrency;
mod gateway;
mod latency;
mod recording;
mod stats;
mod throughput;
mod viewer;
mod xclient;

use anyhow::{bail, Context, Result};

struct Args {
    parts: Vec<String>,
    iterations: usize,
    seconds: f64,
    sessions: Vec<usize>,
    session_seconds: f64,
    width: u32,
    height: u32,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        parts: Vec::new(),
        iterations: 200,
        seconds: 10.0,
        sessions: vec![5, 10, 20, 30],
        session_seconds: 60.0,
        width: 1920,
        height: 1080,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // Added by `cargo bench` to every bench binary.
            "--bench" => {}
            "latency" | "throughput" | "concurrency" => a.parts.push(arg),
            "--iterations" => a.iterations = value("--iterations")?.parse()?,
            "--seconds" => a.seconds = value("--seconds")?.parse()?,
            "--session-seconds" => a.session_seconds = value("--session-seconds")?.parse()?,
            "--sessions" => {
                a.sessions = value("--sessions")?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
                if a.sessions.is_empty() || a.sessions.contains(&0) {
                    bail!("--sessions needs positive counts");
                }
            }
            "--size" => {
                let v = value("--size")?;
                let (w, h) = v.split_once('x').context("--size is WxH")?;
                (a.width, a.height) = (w.parse()?, h.parse()?);
            }
            other => bail!("unknown argument {other:?} (see tests/benches/vnc_proxy/main.rs)"),
        }
    }
    if a.parts.is_empty() {
        a.parts = vec!["latency".into(), "throughput".into(), "concurrency".into()];
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let bin = gateway::psmgate_bin()?;
    println!("# psmgate VNC proxy benchmark");
    println!(
        "\ngateway: {}; machine: {} cores, load average {}; args: {}",
        bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        gateway::loadavg(),
        std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect::<Vec<_>>()
            .join(" ")
    );
    for part in &a.parts {
        match part.as_str() {
            "latency" => latency::run(&latency::Options {
                width: a.width,
                height: a.height,
                iterations: a.iterations,
            })?,
            "throughput" => throughput::run(&throughput::Options {
                width: a.width,
                height: a.height,
                seconds: a.seconds,
            })?,
            _ => concurrency::run(&concurrency::Options {
                width: a.width,
                height: a.height,
                sessions: a.sessions.clone(),
                seconds: a.session_seconds,
            })?,
        }
    }
    Ok(())
}
