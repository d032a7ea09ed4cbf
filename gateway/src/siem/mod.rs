//! SIEM export: every entry of the audit log (`recordings/audit.jsonl`) forwarded to each
//! `[[siem]]` sink, in order, none skipped.
//!
//! The audit log is durable, ordered and written before anything it records takes effect, so
//! it is the buffer: a sink does not keep a queue of its own. One task per sink reads the
//! entries after its delivery cursor (`<data_dir>/siem/<name>.cursor`, [`cursor`]), writes them
//! ([`format`], [`sink`]) and moves the cursor on once they are delivered. While the receiver is
//! unreachable nothing is read; entries wait in the audit log, and the task retries with
//! exponential backoff (0.5 s doubling to 30 s), logging a warning once per outage, an error once
//! when the backlog passes the sink's `alert_backlog` entries or its oldest entry is older than
//! `alert_delay`, and how long the outage lasted when delivery resumes. Nothing is dropped:
//! an entry that cannot be read (a damaged log) stops the sink with an error until it can.
//!
//! # Delivery
//!
//! - A file: an entry is delivered once written and synced (`fdatasync`).
//! - A receiver over TCP or TLS: plain syslog over TCP has no acknowledgement, and a write that
//!   succeeds only means the bytes are in the local send queue. An entry counts as delivered when
//!   the receiver's TCP has acknowledged every byte written so far (`SIOCOUTQ` is 0) and the
//!   connection then stayed open for [`Timing::settle`] (1 s): a receiver that stops or crashes
//!   before reading what it was sent closes or resets the connection, which is seen, and those
//!   entries are sent again on the next connection. Before each write the connection is checked
//!   for a close by the receiver, so that the first entry after a receiver went away is not
//!   written into a dead connection.
//!
//! Delivery is at least once: after a reconnection (or a gateway restart) the entries of the last
//! second or so before it may arrive twice. Every message carries the entry's `seq` and `head`,
//! by which a SIEM can drop duplicates (and check the hash chain). A receiver that loses entries
//! it had read (its own queue lost in a crash) is beyond what TCP can tell; use a receiver with a
//! disk-assisted queue.
//!
//! # Starting and configuration changes
//!
//! A sink without a cursor starts at the first entry of the log, or, with `start = "end"`, after
//! the last entry written when it first starts. A cursor that names an entry the log no longer
//! holds (the log was replaced or cut) is reported as an error and the sink starts again from
//! the first entry. The sinks follow the policy in force: a reload that adds, changes or removes
//! a `[[siem]]` sink starts, restarts or stops its task within [`RECONCILE`] (the cursor stays).

pub mod cef;
pub mod cursor;
pub mod format;
pub mod sink;
pub mod syslog;
pub mod tail;

use crate::policy_cell::PolicyCell;
use crate::store::Store;
use anyhow::{anyhow, Result};
use format::Encoder;
use psmgate_policy::{SiemSink, SiemStart, SiemTransport};
use psmgate_storage::backend::Backend;
use sink::{Connection, Destination};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tail::{Backlog, Position, TailError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the policy in force is compared with the running sinks.
pub const RECONCILE: Duration = Duration::from_secs(2);
/// Most entries written at once.
const BATCH: usize = 256;
/// Most batches written and not yet confirmed on one connection (what is sent again after a
/// failure is at most this many batches).
const MAX_UNCONFIRMED_BATCHES: usize = 64;

/// The pace of a sink task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the log is looked at for new entries while nothing is pending.
    pub poll: Duration,
    /// How long a connection must stay open after the receiver acknowledged bytes before the
    /// entries in them count as delivered.
    pub settle: Duration,
    /// First retry delay after a failure.
    pub backoff_first: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(200),
            settle: Duration::from_secs(1),
            backoff_first: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What every sink task of a gateway shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The recordings backend holding the audit log.
    pub backend: Arc<dyn Backend>,
    /// The data folder (cursors go to its `siem/`).
    pub data_dir: PathBuf,
    /// The gateway's host name, written into every message.
    pub hostname: String,
    /// The pace.
    pub timing: Timing,
}

/// The host name of this machine (`/proc/sys/kernel/hostname`, else `/etc/hostname`), or `-`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// Starts the sinks of the policy in force and keeps them in line with it (see the module
/// documentation) until `shutdown` turns true.
pub fn spawn(
    store: &Store,
    policy: Arc<PolicyCell>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let shared = Arc::new(Shared {
        backend: store.backend.clone(),
        data_dir: store.data_dir.clone(),
        hostname: hostname(),
        timing: Timing::default(),
    });
    tokio::spawn(async move {
        let mut running: BTreeMap<String, (SiemSink, JoinHandle<()>)> = BTreeMap::new();
        let mut seen: Option<Arc<psmgate_policy::Config>> = None;
        loop {
            let config = policy.get();
            if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &config)) {
                reconcile(&mut running, &config.siem, &shared, &shutdown);
                seen = Some(config);
            }
            tokio::select! {
                _ = tokio::time::sleep(RECONCILE) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        for (_, (_, task)) in running {
            task.abort();
        }
    })
}

/// Stops the tasks of sinks no longer wanted (or changed) and starts those missing.
fn reconcile(
    running: &mut BTreeMap<String, (SiemSink, JoinHandle<()>)>,
    wanted: &[SiemSink],
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
) {
    running.retain(|name, (sink, task)| {
        let keep = wanted.contains(sink) && !task.is_finished();
        if !keep {
            task.abort();
            tracing::info!(sink = %name, "SIEM sink stopped (removed or changed by a reload)");
        }
        keep
    });
    for sink in wanted {
        if running.contains_key(&sink.name) {
            continue;
        }
        let task = tokio::spawn(run(sink.clone(), shared.clone(), shutdown.clone()));
        running.insert(sink.name.clone(), (sink.clone(), task));
    }
}

/// Retry delays: [`Timing::backoff_first`], doubling up to [`Timing::backoff_max`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff at its first delay.
    pub fn new(timing: &Timing) -> Self {
        Self {
            next: timing.backoff_first,
            first: timing.backoff_first,
            max: timing.backoff_max,
        }
    }

    /// The delay before the next attempt; the one after is twice as long (at most the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// What a sink says about an outage: a warning when it begins, an error once when the backlog
/// passes a limit, a note when it ends.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    alerted: bool,
    /// The last audit log problem reported (repeated only when it changes).
    log_problem: Option<String>,
}

impl Outage {
    fn failed(&mut self, sink: &SiemSink, error: &anyhow::Error) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                sink = %sink.name,
                error = %format!("{error:#}"),
                "SIEM sink unreachable; audit entries wait in the audit log and are sent when it is back"
            );
        } else {
            tracing::debug!(sink = %sink.name, error = %format!("{error:#}"), "SIEM sink still unreachable");
        }
    }

    fn log_failed(&mut self, sink: &SiemSink, error: &TailError) {
        let text = error.to_string();
        if self.log_problem.as_deref() != Some(text.as_str()) {
            tracing::error!(sink = %sink.name, error = %text, "SIEM sink cannot read the audit log on; nothing is sent past this point until it can");
            self.log_problem = Some(text);
        }
    }

    fn delivering(&mut self, sink: &SiemSink) {
        self.log_problem = None;
        if let Some(since) = self.since.take() {
            tracing::info!(
                sink = %sink.name,
                outage_s = since.elapsed().as_secs_f64(),
                "SIEM sink reachable again; sending what waited"
            );
        }
        self.alerted = false;
    }

    /// Reports a backlog beyond the sink's limits, once per outage.
    fn backlog(&mut self, sink: &SiemSink, entries: u64, oldest: Option<&str>) {
        if self.alerted || self.since.is_none() {
            return;
        }
        let age = oldest
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (time::OffsetDateTime::now_utc() - t).max(time::Duration::ZERO));
        let too_old = age.is_some_and(|a| a > sink.alert_delay.get());
        if entries > u64::from(sink.alert_backlog) || too_old {
            self.alerted = true;
            tracing::error!(
                sink = %sink.name,
                entries,
                oldest = oldest.unwrap_or("-"),
                "SIEM sink backlog beyond its alert limits (alert_backlog {}, alert_delay {}); the entries are kept in the audit log",
                sink.alert_backlog,
                sink.alert_delay
            );
        }
    }
}

/// Why a connection's delivery loop ended.
enum Stop {
    /// The destination failed: reconnect after a delay.
    Sink(anyhow::Error),
    /// The audit log could not be read on.
    Log(TailError),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Sink(e.into())
    }
}

/// Runs a blocking audit log operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, TailError> + Send + 'static,
) -> std::result::Result<T, TailError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(TailError::Io(std::io::Error::other(e))))
}

/// A sink's task: forwards the audit log to `sink` until `shutdown` turns true.
pub async fn run(sink: SiemSink, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut forwarder = Forwarder {
        cursor_path: cursor::path(&shared.data_dir, &sink.name),
        encoder: Encoder {
            format: sink.format,
            lines: sink.transport == SiemTransport::File,
            header: syslog::Header {
                facility: sink.facility.code(),
                hostname: shared.hostname.clone(),
                app_name: sink.app_name.clone(),
            },
        },
        backoff: Backoff::new(&shared.timing),
        outage: Outage::default(),
        backlog: Backlog::default(),
        sink,
        shared,
    };
    tokio::select! {
        _ = forwarder.forward() => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

struct Forwarder {
    sink: SiemSink,
    shared: Arc<Shared>,
    cursor_path: PathBuf,
    encoder: Encoder,
    backoff: Backoff,
    outage: Outage,
    backlog: Backlog,
}

impl Forwarder {
    async fn forward(&mut self) {
        let mut delivered = loop {
            match self.start().await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::error!(sink = %self.sink.name, error = %format!("{e:#}"), "SIEM sink cannot find where to start; retrying");
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        };
        self.backoff.reset();
        tracing::info!(sink = %self.sink.name, after_seq = delivered.seq, "SIEM sink started");
        loop {
            let stop = match Destination::of(&self.sink) {
                Err(e) => Stop::Sink(e),
                Ok(dest) => match dest.connect().await {
                    Err(e) => Stop::Sink(e),
                    Ok(mut conn) => self.deliver(&mut conn, &mut delivered).await,
                },
            };
            match stop {
                Stop::Sink(e) => {
                    self.outage.failed(&self.sink, &e);
                    let (backend, from) = (self.shared.backend.clone(), delivered);
                    let mut backlog = std::mem::take(&mut self.backlog);
                    let counted = blocking(move || {
                        let n = backlog.count(backend.as_ref(), from);
                        Ok((n, backlog))
                    })
                    .await;
                    if let Ok((n, backlog)) = counted {
                        self.backlog = backlog;
                        if let Ok((entries, oldest)) = n {
                            self.outage.backlog(&self.sink, entries, oldest.as_deref());
                        }
                    }
                }
                Stop::Log(e @ (TailError::Shrunk { .. } | TailError::Chain { .. })) => {
                    delivered = self.recheck(delivered, &e).await;
                    continue;
                }
                Stop::Log(e) => self.outage.log_failed(&self.sink, &e),
            }
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }

    /// Where to start: after the cursor's entry, or as `start` says for a new sink.
    async fn start(&self) -> Result<Position> {
        let (backend, path, start, name) = (
            self.shared.backend.clone(),
            self.cursor_path.clone(),
            self.sink.start,
            self.sink.name.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<Position> {
            let Some(c) = cursor::load(&path)? else {
                let p = match start {
                    SiemStart::Beginning => Position::default(),
                    SiemStart::End => tail::end(backend.as_ref())?,
                };
                cursor::save(&path, &cursor::Cursor { seq: p.seq, head: p.head })?;
                return Ok(p);
            };
            match tail::find(backend.as_ref(), c.seq) {
                Ok(p) if p.head == c.head => Ok(p),
                Ok(_) | Err(TailError::Short { .. }) => {
                    tracing::error!(sink = %name, seq = c.seq, "the audit log no longer holds the last entry delivered to this SIEM sink (replaced or cut); forwarding it again from its first entry");
                    let p = Position::default();
                    cursor::save(&path, &cursor::Cursor { seq: 0, head: None })?;
                    Ok(p)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(|e| anyhow!("{e}"))?
    }

    /// After the log changed under the sink: the same position if the log still holds the
    /// delivered entry (the damage is after it), else the start of the log.
    async fn recheck(&mut self, delivered: Position, problem: &TailError) -> Position {
        let backend = self.shared.backend.clone();
        match blocking(move || tail::find(backend.as_ref(), delivered.seq)).await {
            Ok(p) if p.head == delivered.head => {
                self.outage.log_failed(&self.sink, problem);
                tokio::time::sleep(self.backoff.next_delay()).await;
                delivered
            }
            Ok(_) | Err(TailError::Short { .. }) => {
                tracing::error!(sink = %self.sink.name, seq = delivered.seq, error = %problem, "the audit log no longer holds the last entry delivered to this SIEM sink (replaced or cut); forwarding it again from its first entry");
                self.commit(Position::default()).await;
                Position::default()
            }
            Err(e) => {
                self.outage.log_failed(&self.sink, &e);
                tokio::time::sleep(self.backoff.next_delay()).await;
                delivered
            }
        }
    }

    /// Stores `p` as the cursor. A failure is logged: delivery goes on (after a restart the
    /// entries since the stored cursor are sent again).
    async fn commit(&self, p: Position) {
        let path = self.cursor_path.clone();
        let saved = tokio::task::spawn_blocking(move || {
            cursor::save(
                &path,
                &cursor::Cursor {
                    seq: p.seq,
                    head: p.head,
                },
            )
        })
        .await
        .map_err(|e| anyhow!("{e}"))
        .and_then(|r| r);
        if let Err(e) = saved {
            tracing::warn!(sink = %self.sink.name, error = %format!("{e:#}"), "could not store the SIEM delivery cursor (entries since the last one stored are sent again after a restart)");
        }
    }

    /// Sends entries on `conn` until it fails, moving `delivered` on as they are delivered.
    async fn deliver(&mut self, conn: &mut Connection, delivered: &mut Position) -> Stop {
        let timing = self.shared.timing;
        let mut sent = *delivered;
        // Bytes written on this connection.
        let mut written = 0u64;
        // For each batch written: the position after it, the bytes written up to its end, and
        // since when the receiver's TCP has acknowledged them.
        let mut unconfirmed: VecDeque<(Position, u64, Option<Instant>)> = VecDeque::new();
        loop {
            match conn.peer_closed().await {
                Ok(false) => {}
                Ok(true) => return Stop::Sink(anyhow!("the receiver closed the connection")),
                Err(e) => return Stop::Sink(anyhow!(e).context("the connection broke")),
            }
            if !unconfirmed.is_empty() {
                let acked = match conn.acknowledged(written) {
                    Ok(n) => n,
                    Err(e) => return e.into(),
                };
                let now = Instant::now();
                for (_, end, at) in unconfirmed.iter_mut() {
                    if *end <= acked {
                        at.get_or_insert(now);
                    }
                }
                let mut newest = None;
                while let Some((p, _, Some(at))) = unconfirmed.front() {
                    if at.elapsed() < timing.settle {
                        break;
                    }
                    newest = Some(*p);
                    unconfirmed.pop_front();
                }
                if let Some(p) = newest {
                    *delivered = p;
                    self.commit(p).await;
                    self.outage.delivering(&self.sink);
                    self.backoff.reset();
                }
            }
            let room = unconfirmed.len() < MAX_UNCONFIRMED_BATCHES;
            let batch = if room {
                let backend = self.shared.backend.clone();
                match blocking(move || tail::read_after(backend.as_ref(), sent, BATCH)).await {
                    Ok(b) => b,
                    Err(e) => return Stop::Log(e),
                }
            } else {
                Vec::new()
            };
            let Some(last) = batch.last().map(|r| r.after) else {
                if unconfirmed.is_empty() {
                    // Connected, and everything is delivered.
                    self.outage.delivering(&self.sink);
                    self.backoff.reset();
                }
                tokio::time::sleep(timing.poll).await;
                continue;
            };
            let bytes: Vec<u8> = batch
                .iter()
                .flat_map(|r| self.encoder.encode(&r.entry))
                .collect();
            if let Err(e) = conn.send(&bytes).await {
                return Stop::Sink(anyhow!(e).context("sending to the SIEM sink"));
            }
            sent = last;
            written += bytes.len() as u64;
            if conn.is_network() {
                unconfirmed.push_back((last, written, None));
            } else {
                *delivered = last;
                self.commit(last).await;
                self.outage.delivering(&self.sink);
                self.backoff.reset();
            }
            if batch.len() < BATCH {
                tokio::time::sleep(timing.poll.min(timing.settle)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
