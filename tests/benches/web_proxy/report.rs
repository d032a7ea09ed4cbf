//! The figures as three Markdown tables and one JSON line.

use crate::capture::CaptureFigures;
use crate::measure::{Figures, Kind};
use crate::stats::{fmt, ms, percentile};

/// Summary figures of one path (the JSON object, and the tables' cells).
pub struct Summary {
    kind: Kind,
    setup_p50: Option<f64>,
    setup_p99: Option<f64>,
    connect_p50: Option<f64>,
    tls_p50: Option<f64>,
    first_p50: Option<f64>,
    first_p99: Option<f64>,
    small_p50: Option<f64>,
    small_p90: Option<f64>,
    small_p99: Option<f64>,
    small_max: Option<f64>,
    small_count: usize,
    small_connections: usize,
    small_gateway_us: Option<f64>,
    big_mb_s: Option<f64>,
    big_min_max: (Option<f64>, Option<f64>),
    big_connections: usize,
    big_gateway_pct: Option<f64>,
    page_req_s: Option<f64>,
    page_min_max: (Option<f64>, Option<f64>),
    page_mb_s: Option<f64>,
    page_connections: usize,
    page_origin_connections: u64,
    page_gateway_s_per_1000: Option<f64>,
    page_gateway_pct: Option<f64>,
    page_bench_pct: Option<f64>,
    page_machine_pct: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then_some(a / b)
}

fn min_max(v: &[f64]) -> (Option<f64>, Option<f64>) {
    (
        v.iter().copied().reduce(f64::min),
        v.iter().copied().reduce(f64::max),
    )
}

impl Summary {
    /// Summarises `f`, measured on `kind`, with `page_bytes` per `/page` response.
    pub fn new(kind: Kind, f: &Figures, page_bytes: usize) -> Summary {
        let setup: Vec<f64> = f.setups.iter().map(|s| ms(s.total())).collect();
        let connect: Vec<f64> = f.setups.iter().map(|s| ms(s.connect)).collect();
        let tls: Vec<f64> = f.setups.iter().map(|s| ms(s.tls)).collect();
        Summary {
            kind,
            setup_p50: percentile(&setup, 50.0),
            setup_p99: percentile(&setup, 99.0),
            connect_p50: percentile(&connect, 50.0),
            tls_p50: percentile(&tls, 50.0),
            first_p50: percentile(&f.first_ms, 50.0),
            first_p99: percentile(&f.first_ms, 99.0),
            small_p50: percentile(&f.small_ms, 50.0),
            small_p90: percentile(&f.small_ms, 90.0),
            small_p99: percentile(&f.small_ms, 99.0),
            small_max: percentile(&f.small_ms, 100.0),
            small_count: f.small_ms.len(),
            small_connections: f.small_connections,
            small_gateway_us: ratio(f.small_gateway_cpu * 1e6, f.small_ms.len() as f64),
            big_mb_s: ratio(f.big_bytes as f64 / 1e6, f.big_secs),
            big_min_max: min_max(&f.big_rounds),
            big_connections: f.big_connections,
            big_gateway_pct: ratio(100.0 * f.big_gateway_cpu, f.big_secs),
            page_req_s: ratio(f.page_requests as f64, f.page_secs),
            page_min_max: min_max(&f.page_rounds),
            page_mb_s: ratio(
                f.page_requests as f64 * page_bytes as f64 / 1e6,
                f.page_secs,
            ),
            page_connections: f.page_connections,
            page_origin_connections: f.page_origin_connections,
            page_gateway_s_per_1000: ratio(1000.0 * f.page_gateway_cpu, f.page_requests as f64),
            page_gateway_pct: ratio(100.0 * f.page_gateway_cpu, f.page_secs),
            page_bench_pct: ratio(100.0 * f.page_bench_cpu, f.page_secs),
            page_machine_pct: ratio(100.0 * f.page_machine.0 as f64, f.page_machine.1 as f64),
        }
    }

    fn json(&self, direct: &Summary) -> serde_json::Value {
        let added = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        serde_json::json!({
            "setup_ms_p50": round(self.setup_p50, 4),
            "setup_ms_p99": round(self.setup_p99, 4),
            "connect_ms_p50": round(self.connect_p50, 4),
            "tls_ms_p50": round(self.tls_p50, 4),
            "first_request_ms_p50": round(self.first_p50, 4),
            "first_request_ms_p99": round(self.first_p99, 4),
            "small_ms_p50": round(self.small_p50, 4),
            "small_ms_p90": round(self.small_p90, 4),
            "small_ms_p99": round(self.small_p99, 4),
            "small_added_ms_p50": round(added(self.small_p50, direct.small_p50), 4),
            "small_added_ms_p99": round(added(self.small_p99, direct.small_p99), 4),
            "setup_added_ms_p50": round(added(self.setup_p50, direct.setup_p50), 4),
            "small_requests": self.small_count,
            "small_connections": self.small_connections,
            "gateway_cpu_us_per_small": round(self.small_gateway_us, 1),
            "big_mb_s": round(self.big_mb_s, 1),
            "big_connections": self.big_connections,
            "big_gateway_cpu_pct": round(self.big_gateway_pct, 1),
            "page_req_s": round(self.page_req_s, 0),
            "page_mb_s": round(self.page_mb_s, 1),
            "page_connections": self.page_connections,
            "page_origin_connections": self.page_origin_connections,
            "gateway_cpu_s_per_1000_pages": round(self.page_gateway_s_per_1000, 4),
            "page_gateway_cpu_pct": round(self.page_gateway_pct, 1),
            "page_bench_cpu_pct": round(self.page_bench_pct, 1),
            "page_machine_busy_pct": round(self.page_machine_pct, 1),
        })
    }
}

/// Summary figures of one kind of DOM batch.
struct BatchSummary {
    batches: u64,
    kb: Option<f64>,
    per_s: Option<f64>,
    rounds_min_max: (Option<f64>, Option<f64>),
    ms_p50: Option<f64>,
    ms_p99: Option<f64>,
    gateway_us: Option<f64>,
    gateway_us_per_kb: Option<f64>,
    stored_bytes: Option<f64>,
}

impl BatchSummary {
    fn new(
        batches: u64,
        bytes: u64,
        secs: f64,
        rounds: &[f64],
        times_ms: &[f64],
        gateway_cpu: f64,
        stored_bytes: Option<f64>,
    ) -> BatchSummary {
        BatchSummary {
            batches,
            kb: ratio(bytes as f64 / 1e3, batches as f64),
            per_s: ratio(batches as f64, secs),
            rounds_min_max: min_max(rounds),
            ms_p50: percentile(times_ms, 50.0),
            ms_p99: percentile(times_ms, 99.0),
            gateway_us: ratio(gateway_cpu * 1e6, batches as f64),
            gateway_us_per_kb: ratio(gateway_cpu * 1e6, bytes as f64 / 1e3),
            stored_bytes,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "batches": self.batches,
            "kb_per_batch": round(self.kb, 2),
            "batches_per_s": round(self.per_s, 0),
            "post_ms_p50": round(self.ms_p50, 3),
            "post_ms_p99": round(self.ms_p99, 3),
            "gateway_cpu_us_per_batch": round(self.gateway_us, 0),
            "gateway_cpu_us_per_kb": round(self.gateway_us_per_kb, 1),
            "stored_bytes_per_batch": round(self.stored_bytes, 0),
        })
    }
}

/// Summary figures of the DOM capture.
pub struct DomSummary {
    snapshot_elements: usize,
    snapshot: BatchSummary,
    incremental: BatchSummary,
}

impl DomSummary {
    /// Summarises `c`; `stored` is the mean transcript bytes of a stored full-snapshot and
    /// incremental batch, when the transcript could be read.
    pub fn new(c: &CaptureFigures, stored: Option<(Option<f64>, Option<f64>)>) -> DomSummary {
        let (snapshot_stored, incremental_stored) = stored.unwrap_or((None, None));
        let snapshot_secs = c.snapshot_ms.iter().sum::<f64>() / 1e3;
        DomSummary {
            snapshot_elements: c.snapshot_elements,
            snapshot: BatchSummary::new(
                c.snapshot_batches,
                c.snapshot_bytes,
                snapshot_secs,
                &[],
                &c.snapshot_ms,
                c.snapshot_gateway_cpu,
                snapshot_stored,
            ),
            incremental: BatchSummary::new(
                c.incremental_batches,
                c.incremental_bytes,
                c.incremental_secs,
                &c.incremental_rounds,
                &c.incremental_ms,
                c.incremental_gateway_cpu,
                incremental_stored,
            ),
        }
    }

    /// Gateway CPU seconds per minute of browsing at one incremental batch a second.
    fn cpu_s_per_minute(&self) -> Option<f64> {
        self.incremental.gateway_us.map(|us| us * 60.0 / 1e6)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "snapshot_elements": self.snapshot_elements,
            "full_snapshot": self.snapshot.json(),
            "incremental": self.incremental.json(),
            "gateway_cpu_s_per_minute_at_1_batch_per_s": round(self.cpu_s_per_minute(), 4),
        })
    }

    fn print(&self) {
        println!("\n### DOM capture at the gateway (recorded path; KB = 1000 bytes)\n");
        println!(
            "| batch | batches | KB per batch | batches/s, one connection (rounds min–max) | POST → 204 ms p50 / p99 | gateway CPU µs per batch | gateway CPU µs per KB | stored bytes per batch (`dom` event) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let rows = [
            (
                format!("full snapshot ({} elements)", self.snapshot_elements),
                &self.snapshot,
            ),
            (
                "incremental (1 s of a busy console)".to_owned(),
                &self.incremental,
            ),
        ];
        for (label, b) in rows {
            let rounds = match b.rounds_min_max {
                (Some(lo), Some(hi)) => format!(" ({lo:.0}–{hi:.0})"),
                _ => String::new(),
            };
            println!(
                "| {label} | {} | {} | **{}**{rounds} | {} / {} | **{}** | {} | {} |",
                b.batches,
                fmt(b.kb, 1),
                fmt(b.per_s, 0),
                fmt(b.ms_p50, 3),
                fmt(b.ms_p99, 3),
                fmt(b.gateway_us, 0),
                fmt(b.gateway_us_per_kb, 1),
                fmt(b.stored_bytes, 0),
            );
        }
        println!(
            "\ngateway CPU at the recorder's rate (one incremental batch a second): **{} CPU-s per \
             minute of browsing**, plus {} ms per page load (its full snapshot)",
            fmt(self.cpu_s_per_minute(), 3),
            fmt(self.snapshot.gateway_us.map(|us| us / 1e3), 1),
        );
    }
}

/// `x` rounded to `digits` decimals.
fn round(x: Option<f64>, digits: i32) -> Option<f64> {
    let scale = 10f64.powi(digits);
    x.map(|v| (v * scale).round() / scale)
}

/// Prints the tables and the JSON line. `meta` goes into the JSON as is.
pub fn print(summaries: &[Summary], dom: &DomSummary, connections: usize, meta: serde_json::Value) {
    let Some(direct) = summaries.iter().find(|s| s.kind == Kind::Direct) else {
        return;
    };
    let added = |a: Option<f64>, b: Option<f64>, digits: usize| {
        a.zip(b)
            .map_or_else(|| "—".to_owned(), |(a, b)| format!("{:+.digits$}", a - b))
    };
    println!("\n### Latency (ms)\n");
    println!(
        "| path | connection setup p50 / p99 (TCP + CONNECT + TLS) | of which CONNECT / TLS p50 | new connection + first /small p50 / p99 | /small kept alive p50 / p90 / p99 / max | added /small p50 / p99 | added setup p50 | requests (connections) | gateway CPU µs per /small |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in summaries {
        println!(
            "| {} | {} / {} | {} / {} | {} / {} | **{}** / {} / **{}** / {} | {} / {} | {} | {} ({}) | {} |",
            s.kind.label(),
            fmt(s.setup_p50, 2),
            fmt(s.setup_p99, 2),
            fmt(s.connect_p50, 2),
            fmt(s.tls_p50, 2),
            fmt(s.first_p50, 2),
            fmt(s.first_p99, 2),
            fmt(s.small_p50, 3),
            fmt(s.small_p90, 3),
            fmt(s.small_p99, 3),
            fmt(s.small_max, 3),
            added(s.small_p50, direct.small_p50, 3),
            added(s.small_p99, direct.small_p99, 3),
            added(s.setup_p50, direct.setup_p50, 2),
            s.small_count,
            s.small_connections,
            fmt(s.small_gateway_us, 0),
        );
    }
    println!("\n### Throughput\n");
    println!(
        "| path | /big MB/s, 1 connection (rounds min–max) | gateway CPU during /big | /page req/s, {connections} connections (rounds min–max) | /page MB/s | gateway CPU s per 1000 /page | gateway CPU during /page | client + origin CPU during /page | machine busy during /page | client connections /big; /page (at the origin) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in summaries {
        println!(
            "| {} | **{}** ({}–{}) | {} % | **{}** ({}–{}) | {} | **{}** | {} % | {} % | {} % | {}; {} ({}) |",
            s.kind.label(),
            fmt(s.big_mb_s, 1),
            fmt(s.big_min_max.0, 1),
            fmt(s.big_min_max.1, 1),
            fmt(s.big_gateway_pct, 0),
            fmt(s.page_req_s, 0),
            fmt(s.page_min_max.0, 0),
            fmt(s.page_min_max.1, 0),
            fmt(s.page_mb_s, 1),
            fmt(s.page_gateway_s_per_1000, 3),
            fmt(s.page_gateway_pct, 0),
            fmt(s.page_bench_pct, 0),
            fmt(s.page_machine_pct, 0),
            s.big_connections,
            s.page_connections,
            s.page_origin_connections,
        );
    }
    dom.print();
    let mut paths = serde_json::Map::new();
    for s in summaries {
        paths.insert(s.kind.key().to_owned(), s.json(direct));
    }
    let mut line = meta;
    line["paths"] = serde_json::Value::Object(paths);
    line["dom_capture"] = dom.json();
    println!("\n{line}");
}
