//! RDP proxy benchmark: what psmgate adds between xfreerdp and an RDP server (FreeRDP's shadow
//! server with NLA), compared with the same client connected directly.
//!
//! ```sh
//! cargo build --release -p psmgate --features svt-av1
//! cargo bench -p psmgate-e2e --features svt-av1 --bench rdp_proxy -- [PARTS] [OPTIONS]
//! ```
//!
//! PARTS (default: all): `latency`, `throughput`, `cpu`, `concurrency`.
//!
//! OPTIONS:
//! * `--iterations N`          key presses per path in the latency part (default 100)
//! * `--throughput-seconds S`  measuring time per path in the throughput part (default 20)
//! * `--seconds S`             length of the recorded session in the CPU part (default 60)
//! * `--sessions LIST`         session counts of the concurrency part (default 2,4,8)
//! * `--session-seconds S`     measured time per session count (default 30)
//! * `--size WxH`              screen size of the target and every client (default 1920x1080)
//! * `--client-args "A B"`     more xfreerdp arguments for every client, direct or not
//!   (default `/network:lan /rfx`: RemoteFX surface bits on both paths; see below)
//! * `--recording "K = V; …"`  `[recording]` settings for the gateway (default: none, i.e.
//!   the product defaults), e.g. `--recording "max_fps = 2"`
//!
//! xfreerdp 2.11's default connection type (`/network:auto`) turns on the graphics pipeline
//! (EGFX), which the shadow server then uses towards a direct client, while psmgate withdraws
//! EGFX (its recorder does not decode it) and the proxied session uses RemoteFX surface bits.
//! `/network:lan /rfx` gives both paths the same encoding, so the comparison isolates the proxy;
//! `--client-args ""` compares with xfreerdp's defaults instead.
//!
//! The gateway under test is `target/release/psmgate` (or `PSMGATE_BIN`); the peers (Xvfb,
//! xterm, xdotool, xfreerdp, freerdp-shadow-cli, winpr-hash, ffmpeg, ss) come from
//! `scripts/install-peers.sh` and the system. Every process the bench starts is stopped when its
//! part ends, also on errors; interrupting the bench with Ctrl-C skips that cleanup (the peers
//! run in their own process groups).

mod concurrency;
mod cpu;
mod gateway;
mod latency;
#[allow(dead_code)]
#[path = "../vnc_proxy/recording.rs"]
mod recording;
mod screen;
#[path = "../vnc_proxy/stats.rs"]
mod stats;
mod throughput;
/// The VNC bench's gateway module, for its process and machine figures.
#[allow(dead_code)]
#[path = "../vnc_proxy/gateway.rs"]
mod vnc_gateway;
#[path = "../vnc_proxy/xclient.rs"]
mod xclient;
mod xproto;

use anyhow::{bail, Context, Result};

/// xfreerdp arguments of every client unless `--client-args` says otherwise.
const DEFAULT_CLIENT_ARGS: &[&str] = &["/network:lan", "/rfx"];

struct Args {
    parts: Vec<String>,
    iterations: usize,
    throughput_seconds: f64,
    seconds: f64,
    sessions: Vec<usize>,
    session_seconds: f64,
    width: u32,
    height: u32,
    client_args: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        parts: Vec::new(),
        iterations: 100,
        throughput_seconds: 20.0,
        seconds: 60.0,
        sessions: vec![2, 4, 8],
        session_seconds: 30.0,
        width: 1920,
        height: 1080,
        client_args: DEFAULT_CLIENT_ARGS.iter().map(|a| a.to_string()).collect(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // Added by `cargo bench` to every bench binary.
            "--bench" => {}
            "latency" | "throughput" | "cpu" | "concurrency" => a.parts.push(arg),
            "--iterations" => a.iterations = value("--iterations")?.parse()?,
            "--throughput-seconds" => {
                a.throughput_seconds = value("--throughput-seconds")?.parse()?
            }
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
            "--client-args" => {
                a.client_args = value("--client-args")?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            }
            "--recording" => {
                let settings = value("--recording")?
                    .split(';')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                let _ = gateway::RECORDING.set(settings);
            }
            other => bail!("unknown argument {other:?} (see tests/benches/rdp_proxy/main.rs)"),
        }
    }
    if a.parts.is_empty() {
        a.parts = ["latency", "throughput", "cpu", "concurrency"]
            .map(String::from)
            .to_vec();
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let bin = vnc_gateway::psmgate_bin()?;
    println!("# psmgate RDP proxy benchmark");
    println!(
        "\ngateway: {}; machine: {} cores, load average {}; args: {}",
        bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        vnc_gateway::loadavg(),
        std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect::<Vec<_>>()
            .join(" ")
    );
    for part in &a.parts {
        let started = std::time::Instant::now();
        match part.as_str() {
            "latency" => latency::run(&latency::Options {
                width: a.width,
                height: a.height,
                iterations: a.iterations,
                client_args: a.client_args.clone(),
            })?,
            "throughput" => throughput::run(&throughput::Options {
                width: a.width,
                height: a.height,
                seconds: a.throughput_seconds,
                client_args: a.client_args.clone(),
            })?,
            "cpu" => cpu::run(&cpu::Options {
                width: a.width,
                height: a.height,
                seconds: a.seconds,
                client_args: a.client_args.clone(),
            })?,
            _ => concurrency::run(&concurrency::Options {
                width: a.width,
                height: a.height,
                sessions: a.sessions.clone(),
                seconds: a.session_seconds,
                client_args: a.client_args.clone(),
            })?,
        }
        eprintln!("part {part} took {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}
