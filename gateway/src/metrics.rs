//! Prometheus metrics (`GET /metrics` on the admin listener): the indicators a PSM programme is
//! judged by, and the gateway's internals.
//!
//! Counters are process-wide ([`global`]) and incremented where things happen (the supervisor,
//! the admin API, the web proxy, the recording sink). Values that are state rather than events —
//! live sessions, recordings by integrity, stored bytes, coverage and integrity ratios — are read
//! from the live registry and the index when scraped ([`render`]).
//!
//! | metric | meaning |
//! |---|---|
//! | `psmgate_sessions_admitted_total{protocol}` | sessions policy let through (a recording is opened next) |
//! | `psmgate_sessions_recorded_total{protocol}` | of those, sessions whose recording opened (only those connect onward) |
//! | `psmgate_session_coverage_ratio` | recorded / admitted since start (1 when none) |
//! | `psmgate_sessions_ended_total{outcome}` | sealed recordings by outcome (`completed`, `failed`) |
//! | `psmgate_live_sessions{protocol}` | sessions running now |
//! | `psmgate_recordings{integrity}` | recordings in the index by last verification (`ok`, `failed`, `unknown`) |
//! | `psmgate_recording_integrity_ratio` | verified / (verified + failed) in the index (1 when none) |
//! | `psmgate_storage_bytes` | bytes of all indexed recordings (its rate is storage growth) |
//! | `psmgate_policy_enforcements_total{rule}` | sessions ended by policy (terminate, limits, recorder heartbeat) |
//! | `psmgate_logins_total{outcome}` | web UI / API sign-ins (`ok`, `failed`, `rate_limited`) |
//! | `psmgate_access_requests_total{outcome}` | just-in-time requests (`requested`, `approved`, `auto_approved`, `denied`, `cancelled`) |
//! | `psmgate_access_approval_seconds` | request → decision time of approved requests |
//! | `psmgate_recording_bytes_total` | bytes written into recordings (its rate is the write rate) |
//! | `psmgate_replay_requests_total` | manifests served to players (a replay starting) |
//! | `psmgate_time_to_replay_seconds` | a player's manifest request → its first video segment request |
//! | `psmgate_encode_lag_seconds` | screen change → its frame encoded (live sessions) |
//! | `psmgate_encode_seconds` | time in the AV1 encoder per frame |
//! | `psmgate_recorder_queue_depth` | inputs and events waiting for live sessions' recorders |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use psmgate_storage::index::IntegrityStatus;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

/// A `protocol` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    /// `vnc`, `rdp`, `web`, `demo`.
    pub protocol: String,
}

/// An `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// What happened.
    pub outcome: String,
}

/// A `rule` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// Policy rule or mechanism id.
    pub rule: String,
}

/// An `integrity` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrityLabel {
    /// Index integrity status.
    pub integrity: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Sessions admitted by policy.
    pub sessions_admitted: Family<ProtocolLabel, Counter>,
    /// Sessions whose recording opened.
    pub sessions_recorded: Family<ProtocolLabel, Counter>,
    /// Sealed recordings by outcome.
    pub sessions_ended: Family<OutcomeLabel, Counter>,
    /// Sessions ended by policy, by rule.
    pub policy_enforcements: Family<RuleLabel, Counter>,
    /// Sign-ins by outcome.
    pub logins: Family<OutcomeLabel, Counter>,
    /// Access requests by outcome.
    pub access_requests: Family<OutcomeLabel, Counter>,
    /// Request → approval time.
    pub access_approval_seconds: Histogram,
    /// Bytes written into recordings.
    pub recording_bytes: Counter,
    /// Manifests served to players.
    pub replay_requests: Counter,
    /// Manifest request → first media segment request of a player.
    pub time_to_replay_seconds: Histogram,
    /// Screen change → frame encoded (live sessions).
    pub encode_lag_seconds: Histogram,
    /// Time in the encoder per frame.
    pub encode_seconds: Histogram,
    queue_depth: Gauge,
    coverage: Gauge<f64, AtomicU64>,
    live: Family<ProtocolLabel, Gauge>,
    recordings: Family<IntegrityLabel, Gauge>,
    integrity_ratio: Gauge<f64, AtomicU64>,
    storage_bytes: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("psmgate");
        let m = Self {
            sessions_admitted: Family::default(),
            sessions_recorded: Family::default(),
            sessions_ended: Family::default(),
            policy_enforcements: Family::default(),
            logins: Family::default(),
            access_requests: Family::default(),
            access_approval_seconds: Histogram::new([
                10.0,
                30.0,
                60.0,
                300.0,
                900.0,
                3600.0,
                4.0 * 3600.0,
                24.0 * 3600.0,
            ]),
            recording_bytes: Counter::default(),
            replay_requests: Counter::default(),
            time_to_replay_seconds: Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            encode_lag_seconds: Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            encode_seconds: Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
            queue_depth: Gauge::default(),
            coverage: Gauge::default(),
            live: Family::default(),
            recordings: Family::default(),
            integrity_ratio: Gauge::default(),
            storage_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sessions_admitted",
            "Sessions policy let through (a recording is opened next)",
            m.sessions_admitted.clone(),
        );
        registry.register(
            "sessions_recorded",
            "Admitted sessions whose recording opened (only those connect onward)",
            m.sessions_recorded.clone(),
        );
        registry.register(
            "session_coverage_ratio",
            "Recorded / admitted privileged sessions since the gateway started",
            m.coverage.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sealed recordings by outcome",
            m.sessions_ended.clone(),
        );
        registry.register("live_sessions", "Sessions running now", m.live.clone());
        registry.register(
            "recordings",
            "Recordings in the index by their last verification",
            m.recordings.clone(),
        );
        registry.register(
            "recording_integrity_ratio",
            "Verified / (verified + failed) recordings in the index",
            m.integrity_ratio.clone(),
        );
        registry.register(
            "storage_bytes",
            "Bytes of all indexed recordings",
            m.storage_bytes.clone(),
        );
        registry.register(
            "policy_enforcements",
            "Sessions ended by policy, by rule",
            m.policy_enforcements.clone(),
        );
        registry.register(
            "logins",
            "Web UI and API sign-ins by outcome",
            m.logins.clone(),
        );
        registry.register(
            "access_requests",
            "Just-in-time access requests by outcome",
            m.access_requests.clone(),
        );
        registry.register(
            "access_approval_seconds",
            "Time from a just-in-time request to its approval",
            m.access_approval_seconds.clone(),
        );
        registry.register(
            "recording_bytes",
            "Bytes written into recordings",
            m.recording_bytes.clone(),
        );
        registry.register(
            "replay_requests",
            "Recording manifests served to players",
            m.replay_requests.clone(),
        );
        registry.register(
            "time_to_replay_seconds",
            "Time from a player's manifest request to its first video segment request",
            m.time_to_replay_seconds.clone(),
        );
        registry.register(
            "encode_lag_seconds",
            "Time from a screen change to its frame being encoded",
            m.encode_lag_seconds.clone(),
        );
        registry.register(
            "encode_seconds",
            "Time spent in the AV1 encoder per frame",
            m.encode_seconds.clone(),
        );
        registry.register(
            "recorder_queue_depth",
            "Inputs and events waiting for the recorders of live sessions",
            m.queue_depth.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one event of `family` under `label`.
    pub fn count<L>(family: &Family<L, Counter>, label: L)
    where
        L: Clone + std::hash::Hash + Eq,
    {
        family.get_or_create(&label).inc();
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Shorthand: counts a session admitted (`recorded == false`) or recorded for `protocol`.
pub fn session(protocol: &str, recorded: bool) {
    let m = global();
    let family = if recorded {
        &m.sessions_recorded
    } else {
        &m.sessions_admitted
    };
    Metrics::count(
        family,
        ProtocolLabel {
            protocol: protocol.to_owned(),
        },
    );
}

/// Shorthand: counts `outcome` in `family`.
pub fn outcome(family: &Family<OutcomeLabel, Counter>, outcome: &str) {
    Metrics::count(
        family,
        OutcomeLabel {
            outcome: outcome.to_owned(),
        },
    );
}

/// Shorthand: counts a session ended by policy `rule`.
pub fn enforced(rule: &str) {
    Metrics::count(
        &global().policy_enforcements,
        RuleLabel {
            rule: rule.to_owned(),
        },
    );
}

/// State read when scraped.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Running sessions per protocol.
    pub live: Vec<(String, i64)>,
    /// Indexed recordings per integrity status.
    pub recordings: Vec<(String, i64)>,
    /// Bytes of all indexed recordings.
    pub storage_bytes: i64,
    /// Inputs and events queued in live sessions' recorders.
    pub queue_depth: i64,
}

/// Privileged sessions since the gateway started, over every protocol: (admitted by policy,
/// recorded) — the two sides of session coverage.
pub fn session_counts() -> (u64, u64) {
    let m = global();
    let sum = |f: &Family<ProtocolLabel, Counter>| -> u64 {
        ["vnc", "rdp", "web", "demo"]
            .iter()
            .map(|p| {
                f.get_or_create(&ProtocolLabel {
                    protocol: (*p).to_owned(),
                })
                .get()
            })
            .sum()
    };
    (sum(&m.sessions_admitted), sum(&m.sessions_recorded))
}

/// The exposition text (Prometheus text format 0.0.4 / OpenMetrics) with `snap`'s state.
pub fn render(snap: &Snapshot) -> String {
    let m = global();
    let (admitted, recorded) = session_counts();
    m.coverage.set(if admitted == 0 {
        1.0
    } else {
        recorded as f64 / admitted as f64
    });
    m.live.clear();
    for (p, n) in &snap.live {
        m.live
            .get_or_create(&ProtocolLabel {
                protocol: p.clone(),
            })
            .set(*n);
    }
    m.recordings.clear();
    let (mut verified, mut failed) = (0i64, 0i64);
    for (status, n) in &snap.recordings {
        m.recordings
            .get_or_create(&IntegrityLabel {
                integrity: status.clone(),
            })
            .set(*n);
        match status.as_str() {
            s if s == IntegrityStatus::Ok.as_str() => verified += n,
            s if s == IntegrityStatus::Failed.as_str() => failed += n,
            _ => {}
        }
    }
    m.integrity_ratio.set(if verified + failed == 0 {
        1.0
    } else {
        verified as f64 / (verified + failed) as f64
    });
    m.storage_bytes.set(snap.storage_bytes);
    m.queue_depth.set(snap.queue_depth);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_counters_and_scraped_state() {
        session("vnc", false);
        session("vnc", true);
        enforced("terminate");
        outcome(&global().logins, "ok");
        global().access_approval_seconds.observe(42.0);
        let text = render(&Snapshot {
            live: vec![("rdp".into(), 2)],
            recordings: vec![
                ("ok".into(), 3),
                ("failed".into(), 1),
                ("unknown".into(), 5),
            ],
            storage_bytes: 12345,
            queue_depth: 7,
        });
        for needle in [
            "psmgate_sessions_admitted_total{protocol=\"vnc\"}",
            "psmgate_sessions_recorded_total{protocol=\"vnc\"}",
            "psmgate_policy_enforcements_total{rule=\"terminate\"}",
            "psmgate_logins_total{outcome=\"ok\"}",
            "psmgate_live_sessions{protocol=\"rdp\"} 2",
            "psmgate_recordings{integrity=\"ok\"} 3",
            "psmgate_recording_integrity_ratio 0.75",
            "psmgate_storage_bytes 12345",
            "psmgate_recorder_queue_depth 7",
            "psmgate_encode_seconds_count",
            "psmgate_encode_lag_seconds_count",
            "psmgate_time_to_replay_seconds_count",
            "psmgate_access_approval_seconds_bucket{le=\"60.0\"}",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }
}
