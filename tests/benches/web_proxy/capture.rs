//! DOM capture at the gateway, on the recorded path: the bench plays the in-page recorder of
//! one intercepted `/page` (its page id taken from the script element psmgate inserted) and
//! posts that page's rrweb batches to `/__psmgate/events` one after another on one kept-alive
//! connection, as the recorder does — full snapshots first, then incremental batches of a busy
//! console ([`crate::console`]). Every batch must be answered `204`; the gateway masks each
//! and stores it as a `dom` transcript event. The gateway's CPU time is taken around each
//! phase, after waiting for it to go quiet (its recording worker writes queued events after the
//! responses have gone).

use crate::client::{get_body, post};
use crate::console::{ConsolePage, Secrets};
use crate::measure::{BenchPath, Figures, Kind};
use crate::stats::ms;
use crate::vnc_gateway::process_cpu_seconds;
use anyhow::{bail, Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use std::time::{Duration, Instant};

/// Where the recorder posts its batches on every intercepted origin.
const EVENTS_PATH: &str = "/__psmgate/events";
/// What precedes the page id in the script element psmgate inserts.
const PAGE_PARAM: &[u8] = b"/__psmgate/recorder.js?page=";

/// What was measured over every round.
#[derive(Default)]
pub struct CaptureFigures {
    /// Elements in the full snapshot.
    pub snapshot_elements: usize,
    /// Full-snapshot batches posted.
    pub snapshot_batches: u64,
    /// Their bytes.
    pub snapshot_bytes: u64,
    /// POST → 204 of each, ms.
    pub snapshot_ms: Vec<f64>,
    /// Gateway CPU seconds during the full-snapshot phases.
    pub snapshot_gateway_cpu: f64,
    /// Incremental batches posted.
    pub incremental_batches: u64,
    /// Their bytes.
    pub incremental_bytes: u64,
    /// Their time, s.
    pub incremental_secs: f64,
    /// Batches/s of each round.
    pub incremental_rounds: Vec<f64>,
    /// POST → 204 of each, ms.
    pub incremental_ms: Vec<f64>,
    /// Gateway CPU seconds during the incremental phases.
    pub incremental_gateway_cpu: f64,
    /// Every page played: its id and how many full-snapshot and incremental batches it sent
    /// (sequence numbers from 0, the snapshots first).
    pub pages: Vec<(String, u64, u64)>,
}

/// The page id in the script element psmgate inserted into `body`.
fn page_id(body: &[u8]) -> Result<String> {
    let at = body
        .windows(PAGE_PARAM.len())
        .position(|w| w == PAGE_PARAM)
        .context("the intercepted page has no recorder script element")?;
    let rest = &body[at + PAGE_PARAM.len()..];
    let end = rest
        .iter()
        .take(65)
        .position(|&b| b == b'"')
        .context("the recorder script element's page id does not end")?;
    let id = std::str::from_utf8(&rest[..end]).context("the page id is not UTF-8")?;
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        bail!("the recorder script element names the page {id:?}, not a page id");
    }
    Ok(id.to_owned())
}

/// Waits (up to 30 s) until the gateway uses less than one clock tick of CPU in 200 ms.
pub async fn settle(pid: u32) {
    let mut last = process_cpu_seconds(pid).unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = process_cpu_seconds(pid).unwrap_or(0.0);
        if now - last < 0.015 {
            return;
        }
        last = now;
    }
}

/// Posts `bodies` in order, each checked for `204`; returns the time it took.
async fn post_all(
    p: &BenchPath,
    client: &crate::client::BenchClient<Full<Bytes>>,
    bodies: Vec<Bytes>,
    times: &mut Vec<f64>,
) -> Result<f64> {
    let url = p.url(EVENTS_PATH)?;
    let t0 = Instant::now();
    for (i, body) in bodies.into_iter().enumerate() {
        let t = Instant::now();
        let (status, answer) = post(client, &url, "application/json", body).await?;
        times.push(ms(t.elapsed()));
        if status != hyper::StatusCode::NO_CONTENT {
            bail!(
                "batch {i}: POST {EVENTS_PATH} answered {status}: {}",
                String::from_utf8_lossy(&answer).trim()
            );
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// One round: a new page, `snapshots` full-snapshot batches, then `batches` incremental ones.
/// `f` (the recorded path's figures) counts the `/page` request.
pub async fn round(
    p: &BenchPath,
    f: &mut Figures,
    secrets: &Secrets,
    snapshots: usize,
    batches: usize,
    c: &mut CaptureFigures,
) -> Result<()> {
    if p.kind != Kind::Intercepted {
        bail!("DOM capture runs on the recorded path only");
    }
    let before = p.served.snapshot();
    let url = p.url("/page")?;
    let page = {
        let client = p.connector.client();
        let got = get_body(&client, &url).await?;
        f.requests_sent += 1;
        page_id(&got.body)?
    };
    let mut console = ConsolePage::new(&page, &url.to_string(), secrets);
    c.snapshot_elements = console.snapshot_elements;
    // The bodies are made before the clock starts: the client shares the machine's cores.
    let snapshot_bodies: Vec<Bytes> = (0..snapshots)
        .map(|_| Bytes::from(console.snapshot_batch()))
        .collect();
    let incremental_bodies: Vec<Bytes> = (0..batches)
        .map(|_| Bytes::from(console.incremental_batch()))
        .collect();
    let client = p.connector.client_for::<Full<Bytes>>();

    settle(p.gateway_pid).await;
    let cpu0 = p.gateway_cpu();
    c.snapshot_bytes += snapshot_bodies.iter().map(|b| b.len() as u64).sum::<u64>();
    post_all(p, &client, snapshot_bodies, &mut c.snapshot_ms).await?;
    settle(p.gateway_pid).await;
    c.snapshot_gateway_cpu += p.gateway_cpu() - cpu0;
    c.snapshot_batches += snapshots as u64;

    let cpu0 = p.gateway_cpu();
    c.incremental_bytes += incremental_bodies
        .iter()
        .map(|b| b.len() as u64)
        .sum::<u64>();
    let secs = post_all(p, &client, incremental_bodies, &mut c.incremental_ms).await?;
    settle(p.gateway_pid).await;
    c.incremental_gateway_cpu += p.gateway_cpu() - cpu0;
    c.incremental_batches += batches as u64;
    c.incremental_secs += secs;
    c.incremental_rounds.push(batches as f64 / secs);
    c.pages.push((page, snapshots as u64, batches as u64));

    // The batches are answered by the proxy: the origin served the page only.
    let after = p.served.snapshot();
    if after.1 - before.1 != 1 {
        bail!(
            "DOM capture: the origin answered {} requests, 1 (the page) was sent to it",
            after.1 - before.1
        );
    }
    f.connections_opened += p.connector.take_setups().len();
    Ok(())
}
