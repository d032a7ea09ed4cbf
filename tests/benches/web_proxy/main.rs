//! Web proxy benchmark: what psmgate's web console proxy adds between an HTTPS client and a
//! server, on three paths to the same local origin:
//! 1. direct (client → origin),
//! 2. through psmgate with the host under a `tunnel` web rule (CONNECT passed through),
//! 3. through psmgate with the host recorded (TLS intercepted with the gateway CA, every
//!    exchange an `http` transcript event, the in-page recorder's script inserted into HTML
//!    pages) — the default for a web target's `domains`.
//!
//! On the recorded path it also measures DOM capture at the gateway: the bench plays the in-page
//! recorder of an intercepted `/page` (page id from the inserted script element) and posts its
//! rrweb batches to `/__psmgate/events` — a full snapshot of a ~1,000-element console page, then
//! incremental batches of a busy console (see `console.rs`) — each answered `204`, masked by the
//! gateway (selector `.secret`, pattern `AKIA[0-9A-Z]{16}`, password inputs) and stored as a
//! `dom` transcript event.
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
//! * `--snapshots N`    full-snapshot DOM batches of the round's page (default 20)
//! * `--batches N`      incremental DOM batches after them (default 1000)
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
//! the bench then checks that the transcript holds one `http` event per intercepted request, one
//! `CONNECT` event per tunnelled connection and one `dom` event per posted batch, that none of the
//! secrets planted in the batches (masked text, password, access key id) is in any file of the
//! gateway's data folder while the page's visible text is, and runs `psmgate verify` on the
//! recording.

mod capture;
mod client;
mod console;
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
    snapshots: usize,
    batches: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        rounds: 5,
        setups: 500,
        requests: 20_000,
        big: 100,
        pages: 50_000,
        connections: 6,
        snapshots: 20,
        batches: 1000,
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
            "--snapshots" => a.snapshots = count("--snapshots")?,
            "--batches" => a.batches = count("--batches")?,
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
        "dom_snapshots": a.snapshots,
        "dom_batches": a.batches,
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
         /page over {} connections; paths take turns within each measurement. DOM capture, \
         recorded path, per round: one /page, then {} full-snapshot and {} incremental batches \
         posted one at a time on one connection.",
        origin.recorded,
        origin.tunnelled,
        gw.web_port,
        a.rounds,
        a.setups,
        a.requests,
        a.big,
        a.pages,
        a.connections,
        a.snapshots,
        a.batches
    );
    let secrets = console::Secrets::new();
    let mut capture = capture::CaptureFigures::default();
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
            for (p, f) in paths.iter().zip(figures.iter_mut()) {
                if p.kind == Kind::Intercepted {
                    capture::round(p, f, &secrets, a.snapshots, a.batches, &mut capture).await?;
                }
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
    let transcript = read_transcript(&mut gw, &capture, &secrets);
    let dom = report::DomSummary::new(&capture, transcript.as_ref().ok().map(|t| t.dom_stored));
    report::print(&summaries, &dom, a.connections, meta);
    transcript?.check(&gw, &paths, &figures, &capture)
}

/// What the sealed recording of the web session holds.
struct Transcript {
    rec: std::path::PathBuf,
    /// Recorded `http` events.
    recorded: u64,
    /// Transcript bytes of the recorded `http` events.
    recorded_bytes: usize,
    /// `tunnel` CONNECT events.
    tunnelled: usize,
    /// `dom` events by (page, seq): the bytes of each transcript line.
    dom: std::collections::HashMap<(String, u64), usize>,
    /// All `dom` events (a repeated (page, seq) counts each time).
    dom_events: usize,
    /// Mean transcript bytes of a stored full-snapshot and incremental batch.
    dom_stored: (Option<f64>, Option<f64>),
    /// Files of the data folder holding each planted secret (none may).
    leaks: Vec<(&'static str, Vec<std::path::PathBuf>)>,
    /// Files holding the page's visible marker.
    visible_in: usize,
}

/// Stops the gateway and reads its sealed transcript and data folder.
fn read_transcript(
    gw: &mut gateway::Gateway,
    capture: &capture::CaptureFigures,
    secrets: &console::Secrets,
) -> Result<Transcript> {
    let recs = gw.stop_and_collect(Duration::from_secs(30));
    let [rec] = recs.as_slice() else {
        bail!("expected one web session recording, found {}", recs.len());
    };
    let events = gateway::transcript(rec)?;
    let recorded_events = || {
        events
            .iter()
            .filter(|(e, _)| e["type"] == "http" && e["action"] == "record")
    };
    let recorded = recorded_events().count() as u64;
    let recorded_bytes = recorded_events().map(|(_, bytes)| bytes).sum();
    let tunnelled = events
        .iter()
        .filter(|(e, _)| e["type"] == "http" && e["action"] == "tunnel" && e["method"] == "CONNECT")
        .count();
    let mut dom = std::collections::HashMap::new();
    let mut dom_events = 0;
    for (e, bytes) in &events {
        if e["type"] != "dom" {
            continue;
        }
        dom_events += 1;
        if let (Some(page), Some(seq)) = (e["page"].as_str(), e["seq"].as_u64()) {
            dom.insert((page.to_owned(), seq), *bytes);
        }
    }
    let (mut snapshot, mut incremental) = ((0usize, 0usize), (0usize, 0usize));
    for (page, snapshots, _) in &capture.pages {
        for ((p, seq), bytes) in &dom {
            if p == page {
                let class = if seq < snapshots {
                    &mut snapshot
                } else {
                    &mut incremental
                };
                class.0 += bytes;
                class.1 += 1;
            }
        }
    }
    let mean = |(bytes, n): (usize, usize)| (n > 0).then(|| bytes as f64 / n as f64);
    let mut leaks = Vec::new();
    let mut visible_in = 0;
    let files = files_below(&gw.data());
    let hidden = secrets.hidden();
    let mut found: Vec<Vec<std::path::PathBuf>> = vec![Vec::new(); hidden.len()];
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, (_, secret)) in hidden.iter().enumerate() {
            if contains(&bytes, secret.as_bytes()) {
                found[i].push(file.clone());
            }
        }
        visible_in += usize::from(contains(&bytes, secrets.visible.as_bytes()));
    }
    for ((what, _), files) in hidden.iter().zip(found) {
        leaks.push((*what, files));
    }
    Ok(Transcript {
        rec: rec.clone(),
        recorded,
        recorded_bytes,
        tunnelled,
        dom,
        dom_events,
        dom_stored: (mean(snapshot), mean(incremental)),
        leaks,
        visible_in,
    })
}

impl Transcript {
    /// Compares the transcript with what was sent, prints the comparison and fails on any
    /// difference, on a planted secret found, or when `psmgate verify` fails.
    fn check(
        &self,
        gw: &gateway::Gateway,
        paths: &[BenchPath],
        figures: &[Figures],
        capture: &capture::CaptureFigures,
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
        let posted: u64 = capture.pages.iter().map(|(_, s, i)| s + i).sum();
        let every_batch_once = capture
            .pages
            .iter()
            .all(|(page, s, i)| (0..s + i).all(|seq| self.dom.contains_key(&(page.clone(), seq))));
        let verified = gw.verify(&self.rec);
        let bytes = dir_bytes(&self.rec);
        let leaked: Vec<String> = self
            .leaks
            .iter()
            .filter(|(_, files)| !files.is_empty())
            .map(|(what, files)| format!("{what} in {}", files[0].display()))
            .collect();
        println!(
            "\ntranscript of the web session: {} recorded `http` events for \
             {intercepted_requests} intercepted requests; {} `tunnel` CONNECT events for \
             {tunnel_connections} tunnelled connections; {} `dom` events for {posted} posted \
             batches ({}); psmgate verify: {}; recording {:.1} MB, `http` events {:.0} bytes \
             each",
            self.recorded,
            self.tunnelled,
            self.dom_events,
            if every_batch_once {
                "each batch once"
            } else {
                "**batches missing**"
            },
            if verified.is_ok() { "ok" } else { "**failed**" },
            bytes as f64 / 1e6,
            self.recorded_bytes as f64 / self.recorded.max(1) as f64,
        );
        println!(
            "planted secrets (masked text, password, access key id) in the gateway's data \
             folder: {}; the page's visible text in {} file(s)",
            if leaked.is_empty() {
                "none".to_owned()
            } else {
                format!("**{}**", leaked.join("; "))
            },
            self.visible_in
        );
        verified?;
        if self.recorded != intercepted_requests || self.tunnelled != tunnel_connections {
            bail!("the transcript does not match the requests and connections sent");
        }
        if self.dom_events as u64 != posted || !every_batch_once {
            bail!("the transcript does not hold one `dom` event per posted batch");
        }
        if !leaked.is_empty() {
            bail!("planted secrets were recorded: {}", leaked.join("; "));
        }
        if self.visible_in == 0 {
            bail!("the page's visible text is in no file: the search for secrets proves nothing");
        }
        Ok(())
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file below `dir`.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out
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
