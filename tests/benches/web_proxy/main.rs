//! Web proxy benchmark: what psmgate's web console proxy adds between an HTTPS client and a
//! server, on three paths to the same local origin:
//! 1. direct (client → origin),
//! 2. through psmgate with the host under a `tunnel` web rule (CONNECT passed through),
//! 3. through psmgate with the host recorded (TLS intercepted with the gateway CA, every
//!    exchange an `http` transcript event) — the default for a web target's `domains`.
//!
//! ```sh
//! cargo build --release -p psmgate --features svt-av1
//! cargo bench -p psmgate-e2e --features svt-av1 --bench web_proxy -- [OPTIONS]
//! ```
//!
//! OPTIONS (counts are per path and round; the paths take turns within every round):
//! * `--rounds N`       rounds (default 5)
//! * `--setups N`       new connections, each with one `/small` request (default 500)
//! * `--requests N`     sequential `/small` requests on one kept-alive connection (default 20000)
//! * `--big N`          `/big` downloads on one connection (default 100)
//! * `--pages N`        `/page` requests over the parallel connections (default 50000)
//! * `--connections N`  parallel kept-alive connections for `/page` (default 6, like a browser)
//!
//! The origin runs inside the bench: hyper 1 (HTTP/1.1) over tokio-rustls (ring) with a leaf
//! from a throw-away rcgen CA, on 127.0.0.1 (the web target's domain, recorded) and on
//! 127.0.0.2 (a `tunnel` rule), serving `GET /small` (200 bytes, text/plain), `GET /page`
//! (50 KiB, text/html) and `GET /big` (4 MiB, application/octet-stream). The client is
//! hyper-util's legacy client over connections the bench opens itself: TCP, `CONNECT` with
//! `Proxy-Authorization: Basic base64(alice@console:TOKEN)` when through psmgate, then TLS
//! trusting the origin CA (direct, tunnel) or the gateway CA (`psmgate ca export`; intercepted).
//!
//! The gateway under test is `target/release/psmgate` (or `PSMGATE_BIN`), started with a
//! temporary configuration and stopped (SIGTERM, sealing the web session's recording) at the end;
//! the bench then checks that the transcript holds one `http` event per intercepted request and
//! one `CONNECT` event per tunnelled connection, and runs `psmgate verify` on the recording.

mod client;
mod gateway;
mod measure;
mod origin;
mod report;
#[path = "../vnc_proxy/stats.rs"]
mod stats;
/// The VNC bench's gateway module, for the binary, CPU times and the graceful stop.
#[allow(dead_code)]
#[path = "../vnc_proxy/gateway.rs"]
mod vnc_gateway;

use anyhow::{bail, Context, Result};
use client::{Connector, Proxy};
use measure::{BenchPath, Figures, Kind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Args {
    rounds: usize,
    setups: usize,
    requests: usize,
    big: usize,
    pages: usize,
    connections: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        rounds: 5,
        setups: 500,
        requests: 20_000,
        big: 100,
        pages: 50_000,
        connections: 6,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut count = |name: &str| -> Result<usize> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            let n: usize = v
                .parse()
                .with_context(|| format!("{name} needs a count, not {v:?}"))?;
            if n == 0 {
                bail!("{name} needs a positive count");
            }
            Ok(n)
        };
        match arg.as_str() {
            // Added by `cargo bench` to every bench binary.
            "--bench" => {}
            "--rounds" => a.rounds = count("--rounds")?,
            "--setups" => a.setups = count("--setups")?,
            "--requests" => a.requests = count("--requests")?,
            "--big" => a.big = count("--big")?,
            "--pages" => a.pages = count("--pages")?,
            "--connections" => a.connections = count("--connections")?,
            other => bail!("unknown argument {other:?} (see tests/benches/web_proxy/main.rs)"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let bin = vnc_gateway::psmgate_bin()?;
    let args = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect::<Vec<_>>()
        .join(" ");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = vnc_gateway::loadavg();
    println!("# psmgate web proxy benchmark");
    println!(
        "\ngateway: {}; machine: {cores} cores, load average {load}; args: {args}",
        bin.display()
    );
    let meta = serde_json::json!({
        "bench": "web_proxy",
        "gateway": bin.display().to_string(),
        "cores": cores,
        "load_average": load,
        "args": args,
        "rounds": a.rounds,
        "connections": a.connections,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let started = Instant::now();
    runtime.block_on(run(&a, meta))?;
    eprintln!("the bench took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run(a: &Args, meta: serde_json::Value) -> Result<()> {
    let origin = origin::Origin::start().await?;
    let mut gw = gateway::Gateway::start(origin.recorded.port(), &origin.ca_pem)?;
    let token = gw.grant()?;
    let gateway_ca = CertificateDer::from_pem_slice(gw.ca_pem()?.as_bytes())
        .context("reading the gateway CA from `psmgate ca export`")?;
    let proxy = Proxy::new(
        SocketAddr::from(([127, 0, 0, 1], gw.web_port)),
        &format!("{}@{}", gateway::USER, gateway::TARGET),
        &token,
    );
    let pid = gw.pid();
    let paths = [
        BenchPath {
            kind: Kind::Direct,
            base: format!("https://{}", origin.recorded),
            connector: Connector::new(None, origin.ca_der.clone())?,
            served: origin.recorded_served.clone(),
            gateway_pid: pid,
        },
        BenchPath {
            kind: Kind::Tunnel,
            base: format!("https://{}", origin.tunnelled),
            connector: Connector::new(Some(proxy.clone()), origin.ca_der.clone())?,
            served: origin.tunnelled_served.clone(),
            gateway_pid: pid,
        },
        BenchPath {
            kind: Kind::Intercepted,
            base: format!("https://{}", origin.recorded),
            connector: Connector::new(Some(proxy), gateway_ca)?,
            served: origin.recorded_served.clone(),
            gateway_pid: pid,
        },
    ];
    println!(
        "\nsetup: origin in the bench process (hyper 1 HTTP/1.1 + tokio-rustls, ring) on {} \
         (web target `console`, recorded) and {} (`tunnel` rule); psmgate web proxy on \
         127.0.0.1:{}; client: hyper-util legacy client, HTTP/1.1 keep-alive, own CONNECT + TLS; \
         {} rounds, per path and round: {} new connections, {} sequential /small, {} /big, {} \
         /page over {} connections; paths take turns within each measurement.",
        origin.recorded,
        origin.tunnelled,
        gw.web_port,
        a.rounds,
        a.setups,
        a.requests,
        a.big,
        a.pages,
        a.connections
    );
    let mut figures: Vec<Figures> = paths.iter().map(|_| Figures::default()).collect();
    let measured = async {
        for (p, f) in paths.iter().zip(figures.iter_mut()) {
            measure::warm_up(p, &origin.content, f).await?;
        }
        for round in 1..=a.rounds {
            let t = Instant::now();
            for (p, f) in paths.iter().zip(figures.iter_mut()) {
                measure::setups(p, &origin.content, a.setups, f).await?;
            }
            for (p, f) in paths.iter().zip(figures.iter_mut()) {
                measure::small(p, &origin.content, a.requests, f).await?;
            }
            for (p, f) in paths.iter().zip(figures.iter_mut()) {
                measure::big(p, &origin.content, a.big, f).await?;
            }
            for (p, f) in paths.iter().zip(figures.iter_mut()) {
                measure::page(p, &origin.content, a.pages, a.connections, f).await?;
            }
            eprintln!(
                "round {round}/{} took {:.1} s",
                a.rounds,
                t.elapsed().as_secs_f64()
            );
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = measured {
        bail!("{e:#}\n\ngateway log:\n{}", gw.log_tail(30));
    }
    let summaries: Vec<report::Summary> = paths
        .iter()
        .zip(&figures)
        .map(|(p, f)| report::Summary::new(p.kind, f, origin.content.page.body.len()))
        .collect();
    report::print(&summaries, a.connections, meta);
    transcript_check(&mut gw, &paths, &figures)
}

/// Stops the gateway and compares its sealed transcript with what was sent.
fn transcript_check(
    gw: &mut gateway::Gateway,
    paths: &[BenchPath],
    figures: &[Figures],
) -> Result<()> {
    let sent = |k: Kind| -> (u64, usize) {
        paths
            .iter()
            .zip(figures)
            .find(|(p, _)| p.kind == k)
            .map_or((0, 0), |(_, f)| (f.requests_sent, f.connections_opened))
    };
    let (intercepted_requests, _) = sent(Kind::Intercepted);
    let (_, tunnel_connections) = sent(Kind::Tunnel);
    let recs = gw.stop_and_collect(Duration::from_secs(30));
    let [rec] = recs.as_slice() else {
        bail!("expected one web session recording, found {}", recs.len());
    };
    let events = gateway::http_events(rec)?;
    let recorded = events.iter().filter(|e| e["action"] == "record").count() as u64;
    let tunnelled = events
        .iter()
        .filter(|e| e["action"] == "tunnel" && e["method"] == "CONNECT")
        .count();
    let verified = gw.verify(rec);
    let bytes = dir_bytes(rec);
    println!(
        "\ntranscript of the web session: {recorded} recorded `http` events for \
         {intercepted_requests} intercepted requests; {tunnelled} `tunnel` CONNECT events for \
         {tunnel_connections} tunnelled connections; psmgate verify: {}; recording {:.1} MB, \
         {:.0} bytes per intercepted request",
        if verified.is_ok() { "ok" } else { "**failed**" },
        bytes as f64 / 1e6,
        bytes as f64 / intercepted_requests.max(1) as f64
    );
    verified?;
    if recorded != intercepted_requests || tunnelled != tunnel_connections {
        bail!("the transcript does not match the requests and connections sent");
    }
    Ok(())
}

/// Total size of the files below `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += dir_bytes(&p);
        } else {
            n += e.metadata().map_or(0, |m| m.len());
        }
    }
    n
}
