//! The measurements, each run for one path at a time: connection setups, sequential `/small`
//! requests on one kept-alive connection, `/big` downloads on one connection and `/page`
//! requests over several parallel connections. Every measurement checks that the origin answered
//! exactly the requests sent, and takes the gateway's CPU time around it.

use crate::client::{get_body, get_counted, Connector, Setup};
use crate::origin::{Content, Resource, Served};
use crate::stats::ms;
use crate::vnc_gateway::{machine_jiffies, process_cpu_seconds};
use anyhow::{bail, Context, Result};
use hyper::Uri;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The three ways to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client → origin.
    Direct,
    /// Client → psmgate (CONNECT passed through under a `tunnel` rule) → origin.
    Tunnel,
    /// Client → psmgate (TLS intercepted, every exchange recorded) → origin.
    Intercepted,
}

impl Kind {
    /// Short name (JSON key).
    pub fn key(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Tunnel => "tunnel",
            Kind::Intercepted => "intercepted",
        }
    }

    /// Table label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct (client → origin)",
            Kind::Tunnel => "psmgate, `tunnel` rule (CONNECT pass-through)",
            Kind::Intercepted => "psmgate, recorded (TLS intercepted)",
        }
    }
}

/// One path to the origin.
pub struct BenchPath {
    /// Which one.
    pub kind: Kind,
    /// `https://host:port` of the origin as the client names it.
    pub base: String,
    /// The client's connector (proxy or not, trusted CA).
    pub connector: Connector,
    /// What the origin listener at the end of this path served.
    pub served: Arc<Served>,
    /// The gateway's process id (for its CPU time).
    pub gateway_pid: u32,
}

impl BenchPath {
    /// The URL of `path` on this path's origin.
    pub fn url(&self, path: &str) -> Result<Uri> {
        format!("{}{path}", self.base)
            .parse()
            .with_context(|| format!("URL of {path}"))
    }

    /// The gateway's CPU seconds so far.
    pub fn gateway_cpu(&self) -> f64 {
        process_cpu_seconds(self.gateway_pid).unwrap_or(0.0)
    }
}

/// What was measured on one path, over every round.
#[derive(Default)]
pub struct Figures {
    /// New connections: TCP, CONNECT and TLS times.
    pub setups: Vec<Setup>,
    /// New connection + first `/small` response, ms.
    pub first_ms: Vec<f64>,
    /// `/small` on a kept-alive connection, ms per request.
    pub small_ms: Vec<f64>,
    /// Connections the `/small` runs opened (one per round when keep-alive works).
    pub small_connections: usize,
    /// Gateway CPU seconds during the `/small` runs.
    pub small_gateway_cpu: f64,
    /// `/big` bytes received in the timed downloads.
    pub big_bytes: u64,
    /// Their time, s.
    pub big_secs: f64,
    /// MB/s of each round.
    pub big_rounds: Vec<f64>,
    /// Connections the `/big` runs opened.
    pub big_connections: usize,
    /// Gateway CPU seconds during the `/big` runs.
    pub big_gateway_cpu: f64,
    /// `/page` requests in the timed runs.
    pub page_requests: u64,
    /// Their time, s.
    pub page_secs: f64,
    /// Requests/s of each round.
    pub page_rounds: Vec<f64>,
    /// Client connections the `/page` runs opened.
    pub page_connections: usize,
    /// Connections the origin accepted during the `/page` runs.
    pub page_origin_connections: u64,
    /// Gateway CPU seconds during the `/page` runs.
    pub page_gateway_cpu: f64,
    /// Bench process (client + origin) CPU seconds during the `/page` runs.
    pub page_bench_cpu: f64,
    /// Busy and total jiffies of the whole machine during the `/page` runs.
    pub page_machine: (u64, u64),
    /// Every request sent on this path, warm-ups included.
    pub requests_sent: u64,
    /// Every connection opened on this path, warm-ups included.
    pub connections_opened: usize,
}

/// Checks that the origin answered `sent` requests since `before`.
fn check_served(p: &BenchPath, before: (u64, u64), sent: u64, what: &str) -> Result<u64> {
    let after = p.served.snapshot();
    if after.1 - before.1 != sent {
        bail!(
            "{} {what}: the origin answered {} requests, {sent} were sent",
            p.kind.key(),
            after.1 - before.1
        );
    }
    Ok(after.0 - before.0)
}

/// The script element psmgate inserts into an intercepted HTML page (a 24-hex-digit page id and
/// a 24-character nonce): intercepted pages are that much longer.
pub const INJECTED_TAG_LEN: usize =
    "<script src=\"/__psmgate/recorder.js?page=\" nonce=\"\"></script>".len() + 24 + 24;

/// `body` without psmgate's recorder script element, if it has one.
fn without_recorder(body: &[u8]) -> Vec<u8> {
    let start = b"<script src=\"/__psmgate/recorder.js?page=";
    let Some(i) = body.windows(start.len()).position(|w| w == start) else {
        return body.to_vec();
    };
    let end = b"</script>";
    match body[i..].windows(end.len()).position(|w| w == end) {
        Some(j) => [&body[..i], &body[i + j + end.len()..]].concat(),
        None => body.to_vec(),
    }
}

/// How long `r` is as `p` delivers it.
fn delivered_len(p: &BenchPath, r: &Resource) -> usize {
    let html = r.content_type.starts_with("text/html");
    r.body.len()
        + if html && p.kind == Kind::Intercepted {
            INJECTED_TAG_LEN
        } else {
            0
        }
}

/// Fetches each resource once and compares it with what the origin serves (an intercepted HTML
/// page must be the origin's with exactly the recorder's script element added).
pub async fn warm_up(p: &BenchPath, content: &Content, f: &mut Figures) -> Result<()> {
    let client = p.connector.client();
    for r in [&content.small, &content.page, &content.big] {
        let got = get_body(&client, &p.url(r.path)?).await?;
        f.requests_sent += 1;
        let injected = got.body.len() != r.body.len();
        if without_recorder(&got.body) != r.body
            || injected != (delivered_len(p, r) != r.body.len())
            || got.body.len() != delivered_len(p, r)
        {
            bail!(
                "{} {}: the body differs from the origin's ({} bytes, expected {})",
                p.kind.key(),
                r.path,
                got.body.len(),
                r.body.len()
            );
        }
        if got.content_type != r.content_type {
            bail!(
                "{} {}: Content-Type {:?}, expected {:?}",
                p.kind.key(),
                r.path,
                got.content_type,
                r.content_type
            );
        }
    }
    f.connections_opened += p.connector.take_setups().len();
    Ok(())
}

/// `n` new connections, each with one `/small` request.
pub async fn setups(p: &BenchPath, content: &Content, n: usize, f: &mut Figures) -> Result<()> {
    let url = p.url(content.small.path)?;
    let before = p.served.snapshot();
    for _ in 0..n {
        let client = p.connector.client();
        let t0 = Instant::now();
        get_counted(&client, &url, content.small.body.len()).await?;
        f.first_ms.push(ms(t0.elapsed()));
        f.requests_sent += 1;
    }
    check_served(p, before, n as u64, "connection setups")?;
    let s = p.connector.take_setups();
    if s.len() != n {
        bail!("{}: {} connections for {n} setups", p.kind.key(), s.len());
    }
    f.connections_opened += s.len();
    f.setups.extend(s);
    Ok(())
}

/// `n` sequential `/small` requests on one kept-alive connection (after 20 untimed ones).
pub async fn small(p: &BenchPath, content: &Content, n: usize, f: &mut Figures) -> Result<()> {
    const WARM: usize = 20;
    let url = p.url(content.small.path)?;
    let client = p.connector.client();
    let before = p.served.snapshot();
    for _ in 0..WARM {
        get_counted(&client, &url, content.small.body.len()).await?;
    }
    let cpu0 = p.gateway_cpu();
    for _ in 0..n {
        let t0 = Instant::now();
        get_counted(&client, &url, content.small.body.len()).await?;
        f.small_ms.push(ms(t0.elapsed()));
    }
    f.small_gateway_cpu += p.gateway_cpu() - cpu0;
    f.requests_sent += (WARM + n) as u64;
    check_served(p, before, (WARM + n) as u64, "/small")?;
    let opened = p.connector.take_setups().len();
    f.small_connections += opened;
    f.connections_opened += opened;
    Ok(())
}

/// `n` sequential `/big` downloads on one connection (after one untimed).
pub async fn big(p: &BenchPath, content: &Content, n: usize, f: &mut Figures) -> Result<()> {
    let url = p.url(content.big.path)?;
    let len = content.big.body.len();
    let client = p.connector.client();
    let before = p.served.snapshot();
    get_counted(&client, &url, len).await?;
    let cpu0 = p.gateway_cpu();
    let t0 = Instant::now();
    for _ in 0..n {
        get_counted(&client, &url, len).await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    f.big_gateway_cpu += p.gateway_cpu() - cpu0;
    f.big_bytes += (n * len) as u64;
    f.big_secs += secs;
    f.big_rounds.push((n * len) as f64 / 1e6 / secs);
    f.requests_sent += n as u64 + 1;
    check_served(p, before, n as u64 + 1, "/big")?;
    let opened = p.connector.take_setups().len();
    f.big_connections += opened;
    f.connections_opened += opened;
    Ok(())
}

/// `n` `/page` requests over `connections` parallel kept-alive connections (each opened with
/// one untimed request first).
pub async fn page(
    p: &BenchPath,
    content: &Content,
    n: usize,
    connections: usize,
    f: &mut Figures,
) -> Result<()> {
    let url = p.url(content.page.path)?;
    let len = delivered_len(p, &content.page);
    let before = p.served.snapshot();
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = p.connector.client();
        get_counted(&client, &url, len).await?;
        clients.push(client);
    }
    let next = Arc::new(AtomicU64::new(0));
    let (cpu0, bench0, machine0) = (
        p.gateway_cpu(),
        process_cpu_seconds(std::process::id()).unwrap_or(0.0),
        machine_jiffies().unwrap_or((0, 0)),
    );
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for client in clients {
        let (next, url) = (next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                get_counted(&client, &url, len).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("a /page task panicked")??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let machine1 = machine_jiffies().unwrap_or((0, 0));
    f.page_machine.0 += machine1.0.saturating_sub(machine0.0);
    f.page_machine.1 += machine1.1.saturating_sub(machine0.1);
    f.page_gateway_cpu += p.gateway_cpu() - cpu0;
    f.page_bench_cpu += process_cpu_seconds(std::process::id()).unwrap_or(0.0) - bench0;
    f.page_requests += n as u64;
    f.page_secs += secs;
    f.page_rounds.push(n as f64 / secs);
    f.requests_sent += (n + connections) as u64;
    f.page_origin_connections += check_served(p, before, (n + connections) as u64, "/page")?;
    let opened = p.connector.take_setups().len();
    f.page_connections += opened;
    f.connections_opened += opened;
    Ok(())
}
