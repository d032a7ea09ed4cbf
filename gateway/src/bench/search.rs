//! `psmgate bench-search`: recordings search over a synthetic SQLite index.
//!
//! A fresh index database receives `sessions` synthetic recordings, each as the gateway writes a
//! sealed one: its row, then its searchable text (two transactions). Sessions are spread over a
//! year, in start order, among 200 users and 500 targets (VNC 45 %, RDP 35 %, web 20 %; a few
//! users and targets take most sessions). Each session's text is 200–600 words drawn from a
//! 50,000-word vocabulary with a Zipf distribution (exponent 1): the first 240 ranks are words
//! an administrator types or sees (commands, paths, services, log terms), the rest made-up words
//! standing for host names, ticket numbers and identifiers; lines of 3–12 words. Everything is
//! drawn from a seeded generator, so a seed always gives the same index.
//!
//! Then each query kind runs `queries` times through [`Index::list`] (the admin API's path),
//! asking for one page of `limit` rows, and its latency is measured:
//! - `user`: one user's sessions;
//! - `target+time`: one target's sessions in a 30-day window;
//! - `text common`: one of the 20 most frequent words (in nearly every session);
//! - `text rare`: one word of rank 20,000–50,000 (in about 0.1 % of the sessions or fewer);
//! - `text two words`: two words of rank 50–2,000;
//! - `text prefix`: the first 4 letters of a word of rank 100–5,000 (prefix match);
//! - `text+user`: a word of rank 20–500 in one user's sessions (a selective filter: the search
//!   starts from the user's sessions);
//! - `text+protocol`: a word of rank 20–500 in one protocol's sessions (a filter most sessions
//!   pass: the search reads the word's matches newest first).
//!
//! Every query's last word is matched as a prefix when it has 3 letters or more, as the admin
//! API does.

use anyhow::{bail, Context, Result};
use psmgate_storage::index::{Index, Integrity, ListFilter, SessionRow, SqliteIndex};
use psmgate_storage::manifest::RecordingState;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct SearchBenchOptions {
    /// Sessions in the index.
    pub sessions: u64,
    /// Queries of each kind.
    pub queries: u32,
    /// Rows asked for per query (one page).
    pub limit: u32,
    /// Generator seed.
    pub seed: u64,
    /// Folder for the index database (kept); `None`: a new folder in the system temporary
    /// folder, removed afterwards.
    pub dir: Option<PathBuf>,
}

/// Latencies of one query kind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryKindResult {
    /// The kind (see the module documentation).
    pub kind: String,
    /// The first query of the kind, as a user would type it.
    pub example: String,
    /// Queries run.
    pub queries: u32,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest query, milliseconds.
    pub max_ms: f64,
    /// Rows returned per query, mean.
    pub rows_mean: f64,
    /// Sessions matching per query without a page limit, mean over the first (up to) 20
    /// queries (measured apart, untimed).
    pub matches_mean: f64,
}

/// The benchmark's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchBenchReport {
    /// Sessions indexed.
    pub sessions: u64,
    /// Queries per kind.
    pub queries_per_kind: u32,
    /// Rows asked for per query.
    pub limit: u32,
    /// Generator seed.
    pub seed: u64,
    /// Wall time of the inserts (row and text of every session), seconds.
    pub insert_seconds: f64,
    /// Sessions indexed per second.
    pub sessions_per_second: f64,
    /// Searchable text stored, bytes (before indexing).
    pub text_bytes: u64,
    /// Size of the index on disk (database, WAL and shared-memory files), bytes.
    pub index_bytes: u64,
    /// Latencies per query kind.
    pub kinds: Vec<QueryKindResult>,
}

/// Words an administrator types or sees, most frequent first (ranks 0–239 of the vocabulary).
const COMMON_WORDS: &[&str] = &[
    "sudo",
    "ls",
    "cd",
    "cat",
    "grep",
    "the",
    "var",
    "log",
    "etc",
    "systemctl",
    "status",
    "tail",
    "less",
    "vim",
    "nginx",
    "service",
    "restart",
    "ps",
    "aux",
    "df",
    "free",
    "top",
    "htop",
    "journalctl",
    "error",
    "warning",
    "info",
    "docker",
    "kubectl",
    "get",
    "pods",
    "ssh",
    "user",
    "root",
    "home",
    "admin",
    "config",
    "conf",
    "yaml",
    "json",
    "apt",
    "update",
    "upgrade",
    "install",
    "remove",
    "mysql",
    "postgres",
    "psql",
    "select",
    "from",
    "where",
    "table",
    "backup",
    "restore",
    "tar",
    "gzip",
    "cp",
    "mv",
    "rm",
    "mkdir",
    "chmod",
    "chown",
    "find",
    "name",
    "type",
    "echo",
    "export",
    "path",
    "bin",
    "usr",
    "local",
    "opt",
    "srv",
    "tmp",
    "proc",
    "sys",
    "dev",
    "mnt",
    "disk",
    "mount",
    "umount",
    "fstab",
    "network",
    "interface",
    "ip",
    "addr",
    "route",
    "ping",
    "curl",
    "wget",
    "http",
    "https",
    "api",
    "v1",
    "health",
    "metrics",
    "prometheus",
    "grafana",
    "dashboard",
    "alert",
    "firewall",
    "iptables",
    "ufw",
    "allow",
    "deny",
    "port",
    "listen",
    "socket",
    "ss",
    "netstat",
    "tcp",
    "udp",
    "dns",
    "resolv",
    "hosts",
    "cron",
    "crontab",
    "schedule",
    "job",
    "queue",
    "worker",
    "process",
    "kill",
    "signal",
    "memory",
    "cpu",
    "load",
    "uptime",
    "kernel",
    "dmesg",
    "syslog",
    "auth",
    "secure",
    "audit",
    "sshd",
    "pam",
    "ldap",
    "kerberos",
    "certificate",
    "openssl",
    "tls",
    "key",
    "cert",
    "renew",
    "expire",
    "password",
    "passwd",
    "shadow",
    "group",
    "usermod",
    "useradd",
    "sudoers",
    "visudo",
    "git",
    "pull",
    "push",
    "commit",
    "branch",
    "deploy",
    "release",
    "rollback",
    "helm",
    "chart",
    "namespace",
    "deployment",
    "replica",
    "scale",
    "node",
    "cluster",
    "ingress",
    "secret",
    "configmap",
    "volume",
    "storage",
    "snapshot",
    "vmware",
    "esxi",
    "vcenter",
    "hyperv",
    "rdp",
    "vnc",
    "desktop",
    "explorer",
    "powershell",
    "cmd",
    "registry",
    "regedit",
    "event",
    "viewer",
    "security",
    "application",
    "system",
    "services",
    "task",
    "manager",
    "scheduler",
    "policy",
    "gpupdate",
    "active",
    "directory",
    "domain",
    "controller",
    "dhcp",
    "scope",
    "lease",
    "iis",
    "site",
    "pool",
    "recycle",
    "sql",
    "server",
    "agent",
    "database",
    "query",
    "index",
    "rebuild",
    "statistics",
    "maintenance",
    "window",
    "change",
    "ticket",
    "incident",
    "approved",
    "emergency",
    "patch",
    "reboot",
    "shutdown",
    "failover",
    "replication",
    "lag",
    "primary",
    "standby",
    "redis",
    "cache",
    "flush",
    "elastic",
    "kibana",
    "logstash",
    "filebeat",
    "vault",
    "token",
    "rotate",
    "console",
];

/// Vocabulary size: the common words and made-up ones.
const VOCABULARY: usize = 50_000;
/// Syllables of the made-up words.
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fe", "gu", "hi", "jo", "bu",
];
/// The day the synthetic year ends.
const YEAR_END: i64 = 1_795_305_600; // 2026-11-22T00:00:00Z
const DAY: i64 = 86_400;

/// A small, fast, seeded generator (SplitMix64): the same seed gives the same index on every
/// machine and version.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)`.
#[derive(Debug, Clone)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 0..n {
            sum += 1.0 / (r as f64 + 1.0);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// Word `rank` of the vocabulary.
fn word(rank: usize) -> String {
    if let Some(w) = COMMON_WORDS.get(rank) {
        return (*w).to_owned();
    }
    // Three or more syllables from the rank's base-16 digits: unique and one token each.
    let mut n = rank;
    let mut out = String::new();
    for _ in 0..3 {
        out.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    while n > 0 {
        out.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    out
}

/// The synthetic sessions' users, targets and words.
#[derive(Debug)]
struct Generator {
    rng: Rng,
    vocabulary: Vec<String>,
    words: Zipf,
    users: Vec<String>,
    user_pick: Zipf,
    targets: Vec<(String, &'static str)>,
    target_pick: Zipf,
}

impl Generator {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let users = (0..200).map(|i| format!("admin{i:03}")).collect();
        let kinds = ["db", "web", "app", "dc", "jump", "kube", "win", "esx"];
        let envs = ["prod", "stage", "dev", "lab"];
        let targets = (0..500)
            .map(|i| {
                let protocol = match rng.range(0, 100) {
                    0..=44 => "vnc",
                    45..=79 => "rdp",
                    _ => "web",
                };
                (
                    format!(
                        "{}-{}-{i:03}",
                        kinds[i % kinds.len()],
                        envs[(i / 8) % envs.len()]
                    ),
                    protocol,
                )
            })
            .collect();
        Generator {
            rng,
            vocabulary: (0..VOCABULARY).map(word).collect(),
            words: Zipf::new(VOCABULARY),
            users,
            user_pick: Zipf::new(200),
            targets,
            target_pick: Zipf::new(500),
        }
    }

    /// Session `i` of `n` (start times increase with `i` across the year) and its text.
    fn session(&mut self, i: u64, n: u64) -> Result<(SessionRow, String)> {
        let year_ns = i128::from(365 * DAY) * 1_000_000_000;
        let span = (year_ns / i128::from(n.max(1))).max(1);
        let start_ns = i128::from(YEAR_END - 365 * DAY) * 1_000_000_000
            + i128::from(i) * span
            + i128::from(self.rng.range(0, span as u64));
        let started_at = OffsetDateTime::from_unix_timestamp_nanos(start_ns)?;
        let duration_ms = self.rng.range(30_000, 4 * 3_600_000);
        let user = self.users[self.user_pick.draw(&mut self.rng)].clone();
        let (target, protocol) = self.targets[self.target_pick.draw(&mut self.rng)].clone();
        let id = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.rng.next_u64() as u32,
            self.rng.next_u64() as u16,
            self.rng.next_u64() & 0xfff,
            self.rng.next_u64() & 0xfff,
            self.rng.next_u64() & 0xffff_ffff_ffff
        );
        let row = SessionRow {
            dir: psmgate_storage::layout::recording_dir(started_at, &id),
            id,
            protocol: protocol.to_owned(),
            user,
            target,
            client_addr: format!("10.{}.{}.{}:50000", i % 250, (i / 250) % 250, i % 7),
            started_at,
            ended_at: Some(started_at + Duration::from_millis(duration_ms)),
            duration_ms: Some(duration_ms),
            bytes: duration_ms * 40,
            state: RecordingState::Completed,
            integrity: Integrity::unknown(),
            legal_hold: false,
            created: started_at,
        };
        Ok((row, self.text()))
    }

    /// 200–600 words in lines of 3–12.
    fn text(&mut self) -> String {
        let words = self.rng.range(200, 601);
        let mut out = String::with_capacity(words as usize * 8);
        let mut line_left = 0;
        for _ in 0..words {
            if line_left == 0 {
                if !out.is_empty() {
                    out.push('\n');
                }
                line_left = self.rng.range(3, 13);
            } else {
                out.push(' ');
            }
            out.push_str(&self.vocabulary[self.words.draw(&mut self.rng)]);
            line_left -= 1;
        }
        out
    }
}

/// One query kind: its name and how to make its `i`-th filter.
type MakeFilter = fn(&mut Generator, &mut Rng) -> ListFilter;

fn query_kinds() -> Vec<(&'static str, MakeFilter)> {
    fn ranked(g: &Generator, rng: &mut Rng, lo: usize, hi: usize) -> String {
        g.vocabulary[rng.range(lo as u64, hi as u64) as usize].clone()
    }
    fn text(words: String) -> ListFilter {
        ListFilter {
            text: Some(words),
            ..Default::default()
        }
    }
    vec![
        ("user", |g, rng| ListFilter {
            user: Some(g.users[rng.range(0, g.users.len() as u64) as usize].clone()),
            ..Default::default()
        }),
        ("target+time", |g, rng| {
            let from = YEAR_END - 365 * DAY + rng.range(0, 335) as i64 * DAY;
            let t = |s: i64| OffsetDateTime::from_unix_timestamp(s).ok();
            ListFilter {
                target: Some(
                    g.targets[rng.range(0, g.targets.len() as u64) as usize]
                        .0
                        .clone(),
                ),
                since: t(from),
                until: t(from + 30 * DAY),
                ..Default::default()
            }
        }),
        ("text common", |g, rng| text(ranked(g, rng, 0, 20))),
        ("text rare", |g, rng| {
            text(ranked(g, rng, 20_000, VOCABULARY))
        }),
        ("text two words", |g, rng| {
            text(format!(
                "{} {}",
                ranked(g, rng, 50, 2000),
                ranked(g, rng, 50, 2000)
            ))
        }),
        ("text prefix", |g, rng| {
            text(ranked(g, rng, 100, 5000).chars().take(4).collect())
        }),
        ("text+user", |g, rng| ListFilter {
            user: Some(g.users[rng.range(0, g.users.len() as u64) as usize].clone()),
            ..text(ranked(g, rng, 20, 500))
        }),
        ("text+protocol", |g, rng| ListFilter {
            protocol: Some(["vnc", "rdp", "web"][rng.range(0, 3) as usize].to_owned()),
            ..text(ranked(g, rng, 20, 500))
        }),
    ]
}

/// How a filter reads, for the report.
fn describe(f: &ListFilter) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &f.text {
        parts.push(format!("q={t}"));
    }
    if let Some(u) = &f.user {
        parts.push(format!("user={u}"));
    }
    if let Some(t) = &f.target {
        parts.push(format!("target={t}"));
    }
    if let Some(p) = &f.protocol {
        parts.push(format!("protocol={p}"));
    }
    if let (Some(s), Some(u)) = (f.since, f.until) {
        parts.push(format!("{}..{}", s.date(), u.date()));
    }
    parts.join(" ")
}

/// The `q`-quantile of sorted durations, in milliseconds (nearest rank).
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Runs the benchmark.
pub fn run(opts: &SearchBenchOptions) -> Result<SearchBenchReport> {
    if opts.sessions == 0 || opts.queries == 0 || opts.limit == 0 {
        bail!("--sessions, --queries and --limit must be at least 1");
    }
    let (dir, temporary) = match &opts.dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
            let d = std::env::temp_dir().join(format!(
                "psmgate-bench-search-{}-{nanos}",
                std::process::id()
            ));
            (d, true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(opts, &dir);
    if temporary {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the benchmark index");
        }
    }
    result
}

fn run_in(opts: &SearchBenchOptions, dir: &std::path::Path) -> Result<SearchBenchReport> {
    let path = dir.join("bench-index.sqlite3");
    if path.exists() {
        bail!("{} exists; the benchmark needs a new index", path.display());
    }
    let index = SqliteIndex::open(&path).context("opening the benchmark index")?;
    let mut generator = Generator::new(opts.seed);
    let mut text_bytes = 0u64;
    let mut insert = Duration::ZERO;
    for i in 0..opts.sessions {
        let (row, text) = generator.session(i, opts.sessions)?;
        text_bytes += text.len() as u64;
        let t = Instant::now();
        index.upsert(&row)?;
        index.set_text(&row.id, &text)?;
        insert += t.elapsed();
    }
    let index_bytes = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).ok().map(|m| m.len())
        })
        .sum();

    let mut rng = Rng(opts.seed ^ 0x5eed_0f5e_a4c4_0000);
    let mut kinds = Vec::new();
    for (kind, make) in query_kinds() {
        let filters: Vec<ListFilter> = (0..opts.queries)
            .map(|_| ListFilter {
                limit: Some(opts.limit),
                ..make(&mut generator, &mut rng)
            })
            .collect();
        let mut times = Vec::with_capacity(filters.len());
        let mut rows = 0usize;
        for f in &filters {
            let t = Instant::now();
            let found = index.list(f)?;
            times.push(t.elapsed());
            rows += found.len();
        }
        times.sort();
        let sampled = &filters[..filters.len().min(20)];
        let mut matches = 0usize;
        for f in sampled {
            matches += index
                .list(&ListFilter {
                    limit: None,
                    ..f.clone()
                })?
                .len();
        }
        kinds.push(QueryKindResult {
            kind: kind.to_owned(),
            example: describe(&filters[0]),
            queries: opts.queries,
            p50_ms: quantile_ms(&times, 0.5),
            p99_ms: quantile_ms(&times, 0.99),
            max_ms: quantile_ms(&times, 1.0),
            rows_mean: rows as f64 / filters.len() as f64,
            matches_mean: matches as f64 / sampled.len() as f64,
        });
    }
    Ok(SearchBenchReport {
        sessions: opts.sessions,
        queries_per_kind: opts.queries,
        limit: opts.limit,
        seed: opts.seed,
        insert_seconds: insert.as_secs_f64(),
        sessions_per_second: opts.sessions as f64 / insert.as_secs_f64().max(1e-9),
        text_bytes,
        index_bytes,
        kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_zipf_shaped() {
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        let (ra, ta) = a.session(3, 10).unwrap();
        let (rb, tb) = b.session(3, 10).unwrap();
        assert_eq!((ra, ta.clone()), (rb, tb));
        let words = ta.split_whitespace().count();
        assert!((200..=600).contains(&words), "{words}");
        // The most frequent word is far more frequent than a word of rank 1000.
        let mut rng = Rng(1);
        let z = Zipf::new(VOCABULARY);
        let draws: Vec<usize> = (0..100_000).map(|_| z.draw(&mut rng)).collect();
        let count = |r: usize| draws.iter().filter(|&&d| d == r).count();
        assert!(
            count(0) > 50 * count(1000).max(1),
            "{} {}",
            count(0),
            count(1000)
        );
        // Made-up words are distinct single tokens.
        assert_eq!(word(0), "sudo");
        let tail: std::collections::HashSet<String> =
            (COMMON_WORDS.len()..VOCABULARY).map(word).collect();
        assert_eq!(tail.len(), VOCABULARY - COMMON_WORDS.len());
        assert!(tail
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_lowercase())));
        assert!(tail.iter().all(|w| !COMMON_WORDS.contains(&w.as_str())));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let d = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(quantile_ms(&d, 0.5), 50.0);
        assert_eq!(quantile_ms(&d, 0.99), 99.0);
        assert_eq!(quantile_ms(&d, 1.0), 100.0);
        assert_eq!(quantile_ms(&ms(&[4]), 0.99), 4.0);
    }

    #[test]
    fn a_small_run_measures_every_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = SearchBenchOptions {
            sessions: 300,
            queries: 5,
            limit: 10,
            seed: 3,
            dir: Some(tmp.path().to_path_buf()),
        };
        let r = run(&opts).unwrap();
        assert_eq!(r.sessions, 300);
        assert!(r.text_bytes > 300 * 200 * 2, "{}", r.text_bytes);
        assert!(r.index_bytes > 0 && r.sessions_per_second > 0.0);
        let kinds: Vec<&str> = r.kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "user",
                "target+time",
                "text common",
                "text rare",
                "text two words",
                "text prefix",
                "text+user",
                "text+protocol"
            ]
        );
        for k in &r.kinds {
            assert_eq!(k.queries, 5);
            assert!(k.p50_ms <= k.p99_ms && k.p99_ms <= k.max_ms, "{k:?}");
            assert!(k.rows_mean <= 10.0, "{k:?}");
            assert!(k.matches_mean >= k.rows_mean, "{k:?}");
        }
        let common = &r.kinds[2];
        assert_eq!(common.rows_mean, 10.0, "a top-20 word is in most sessions");
        assert!(common.matches_mean > 100.0, "{common:?}");
        // The index is kept in a given folder, and a second run there refuses to reuse it.
        assert!(tmp.path().join("bench-index.sqlite3").exists());
        assert!(run(&opts).is_err());
    }
}
