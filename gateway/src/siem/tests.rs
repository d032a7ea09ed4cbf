//! Sink tasks against receivers written here: a syslog receiver over TCP and TLS that goes away
//! and comes back, a file, cursors, reloads.

use super::*;
use psmgate_storage::audit::{AuditEntry, AuditLog, AuditRecord};
use psmgate_storage::backend::LocalBackend;
use std::collections::BTreeSet;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

const FAST: Timing = Timing {
    poll: Duration::from_millis(20),
    settle: Duration::from_millis(150),
    backoff_first: Duration::from_millis(50),
    backoff_max: Duration::from_millis(200),
};

struct Setup {
    dir: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    log: AuditLog,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> =
            Arc::new(LocalBackend::new(dir.path().join("recordings")).unwrap());
        let log = AuditLog::open(backend.clone()).unwrap();
        Setup { dir, backend, log }
    }

    fn append(&mut self, n: usize, action: &str) {
        for i in 0..n {
            self.log
                .append_record(
                    time::OffsetDateTime::now_utc(),
                    &AuditRecord {
                        action,
                        actor: "alice",
                        target: "lab-vnc",
                        detail: &format!("entry {i} \"quoted\" ] \\ \n"),
                        ..AuditRecord::default()
                    },
                )
                .unwrap();
        }
    }

    fn entries(&self) -> Vec<AuditEntry> {
        AuditLog::read_all(self.backend.as_ref()).unwrap()
    }

    fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            backend: self.backend.clone(),
            data_dir: self.dir.path().to_owned(),
            hostname: "gw-test".into(),
            timing: FAST,
        })
    }

    fn cursor(&self, name: &str) -> Option<u64> {
        cursor::load(&cursor::path(self.dir.path(), name))
            .unwrap()
            .map(|c| c.seq)
    }

    async fn wait_cursor(&self, name: &str, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cursor(name) != Some(seq) {
            assert!(
                Instant::now() < deadline,
                "cursor {:?}, expected {seq}",
                self.cursor(name)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A syslog receiver: accepts connections on a port and reports, per connection, the seq of
/// each octet-counted frame received. Dropping it closes the port and every connection.
struct Receiver {
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `seq` parameter of a syslog message.
fn seq_of(msg: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(msg);
    let at = text.find(" seq=\"").expect("seq parameter") + 6;
    text[at..].split('"').next().unwrap().parse().unwrap()
}

impl Receiver {
    async fn start(
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
        out: mpsc::UnboundedSender<(usize, u64)>,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            for n in 0.. {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (out, tls) = (out.clone(), tls.clone());
                conns.spawn(async move {
                    let mut stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match tls {
                        Some(c) => {
                            let Ok(s) = tokio_rustls::TlsAcceptor::from(c).accept(tcp).await else {
                                return;
                            };
                            Box::new(s)
                        }
                        None => Box::new(tcp),
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(k) = stream.read(&mut chunk).await {
                        if k == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..k]);
                        // Complete frames only.
                        while let Some(space) = buf.iter().position(|&b| b == b' ') {
                            let len: usize =
                                std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
                            if buf.len() < space + 1 + len {
                                break;
                            }
                            let frame: Vec<u8> = buf.drain(..space + 1 + len).collect();
                            let _ = out.send((n, seq_of(&frame[space + 1..])));
                        }
                    }
                });
            }
        });
        Receiver { task }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Receives until every seq of `want` arrived; returns everything received meanwhile.
async fn until_all(
    rx: &mut mpsc::UnboundedReceiver<(usize, u64)>,
    want: &BTreeSet<u64>,
    got: &mut Vec<(usize, u64)>,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut missing: BTreeSet<u64> = want.clone();
    for (_, s) in got.iter() {
        missing.remove(s);
    }
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(x)) => {
                missing.remove(&x.1);
                got.push(x);
            }
            _ => panic!(
                "{} of {} not received: {missing:?}",
                missing.len(),
                want.len()
            ),
        }
    }
}

/// Within each connection, seqs only go up by one.
fn assert_in_order(got: &[(usize, u64)]) {
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for &(conn, seq) in got {
        if let Some(prev) = last.insert(conn, seq) {
            assert_eq!(seq, prev + 1, "connection {conn}: {got:?}");
        }
    }
}

fn tcp_sink(name: &str, port: u16) -> SiemSink {
    let mut s = SiemSink::new(name, SiemTransport::Tcp);
    s.address = Some(format!("127.0.0.1:{port}"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_goes_away_misses_nothing() {
    let mut setup = Setup::new();
    setup.append(5, "login");
    let port = free_port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver = Receiver::start(port, None, tx.clone()).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(tcp_sink("soc", port), setup.shared(), stop_rx));
    let mut got = Vec::new();
    until_all(&mut rx, &(1..=5).collect(), &mut got).await;
    setup.wait_cursor("soc", 5).await;

    // The receiver goes away; entries written meanwhile wait in the log.
    drop(receiver);
    tokio::time::sleep(Duration::from_millis(100)).await;
    setup.append(5, "login_failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.cursor("soc"), Some(5));
    let _back = Receiver::start(port, None, tx).await;
    until_all(&mut rx, &(1..=10).collect(), &mut got).await;
    setup.wait_cursor("soc", 10).await;
    assert_in_order(&got);
    let seqs: BTreeSet<u64> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=10).collect());

    // A sink started again resumes after its cursor.
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    setup.append(1, "logout");
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(tcp_sink("soc", port), setup.shared(), stop_rx));
    let mut again = Vec::new();
    until_all(&mut rx, &[11].into(), &mut again).await;
    assert!(again.iter().all(|(_, s)| *s == 11), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_receiver_holds_the_cursor_back() {
    let mut setup = Setup::new();
    setup.append(3, "login");
    // A listener that accepts (the kernel does) but whose connections are never read: the
    // bytes are acknowledged, so delivery counts after the settle time.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(tcp_sink("quiet", port), setup.shared(), stop_rx));
    setup.wait_cursor("quiet", 0).await;
    setup.wait_cursor("quiet", 3).await;
    // Once the listener is gone for good, nothing more is counted as delivered.
    drop(listener);
    setup.append(2, "login");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(setup.cursor("quiet"), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_receivers_get_the_same_messages() {
    let mut setup = Setup::new();
    setup.append(4, "access_approved");
    let ca = crate::web::ca::WebCa::load_or_generate(&setup.dir.path().join("ca")).unwrap();
    let port = free_port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _r = Receiver::start(port, Some(ca.server_config("localhost").unwrap()), tx).await;
    let sink = tls_sink(&setup, port, &ca);
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(sink, setup.shared(), stop_rx));
    let mut got = Vec::new();
    until_all(&mut rx, &(1..=4).collect(), &mut got).await;
    assert_in_order(&got);
    setup.wait_cursor("soc-tls", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_receiver_gets_nothing() {
    let mut setup = Setup::new();
    setup.append(2, "login");
    let ca = crate::web::ca::WebCa::load_or_generate(&setup.dir.path().join("ca")).unwrap();
    let other = crate::web::ca::WebCa::load_or_generate(&setup.dir.path().join("other")).unwrap();
    let port = free_port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _r = Receiver::start(port, Some(ca.server_config("localhost").unwrap()), tx).await;
    let sink = tls_sink(&setup, port, &other);
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(sink, setup.shared(), stop_rx));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(rx.try_recv().is_err());
    assert_eq!(setup.cursor("soc-tls"), Some(0));
}

/// A TLS sink `soc-tls` to 127.0.0.1:`port` as `localhost`, trusting `trusted` only.
fn tls_sink(setup: &Setup, port: u16, trusted: &crate::web::ca::WebCa) -> SiemSink {
    let ca_file = setup.dir.path().join("siem-ca.pem");
    std::fs::write(&ca_file, trusted.pem()).unwrap();
    let mut sink = SiemSink::new("soc-tls", SiemTransport::Tls);
    sink.address = Some(format!("127.0.0.1:{port}"));
    sink.server_name = Some("localhost".into());
    sink.ca = Some(ca_file);
    sink.ca_as_written = sink.ca.clone();
    sink
}

fn file_sink(setup: &Setup, name: &str, format: psmgate_policy::SiemFormat) -> (SiemSink, PathBuf) {
    let path = setup.dir.path().join("out").join(format!("{name}.log"));
    let mut s = SiemSink::new(name, SiemTransport::File);
    s.format = format;
    s.path = Some(path.clone());
    s.path_as_written = Some(path.clone());
    (s, path)
}

async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} lines of {n}", lines.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_gets_the_entries_as_json_lines() {
    let mut setup = Setup::new();
    setup.append(3, "grant_issued");
    let (sink, path) = file_sink(&setup, "shipper", psmgate_policy::SiemFormat::Json);
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(sink, setup.shared(), stop_rx));
    wait_lines(&path, 3).await;
    setup.append(2, "logout");
    let lines = wait_lines(&path, 5).await;
    setup.wait_cursor("shipper", 5).await;
    let entries = setup.entries();
    assert_eq!(lines.len(), entries.len());
    for (line, entry) in lines.iter().zip(&entries) {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["host"], "gw-test");
        v.as_object_mut().unwrap().remove("host");
        assert_eq!(&serde_json::from_value::<AuditEntry>(v).unwrap(), entry);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_end_skips_what_came_before_the_first_start_only() {
    let mut setup = Setup::new();
    setup.append(3, "login");
    let (mut sink, path) = file_sink(&setup, "late", psmgate_policy::SiemFormat::Cef);
    sink.start = SiemStart::End;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(sink.clone(), setup.shared(), stop_rx));
    setup.wait_cursor("late", 3).await;
    setup.append(1, "logout");
    let lines = wait_lines(&path, 1).await;
    assert!(lines[0].starts_with("CEF:0|psmgate|psmgate|"), "{lines:?}");
    assert!(lines[0].contains("externalId=4 "), "{lines:?}");
    setup.wait_cursor("late", 4).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    // Entries written while the sink was stopped are sent when it starts again.
    setup.append(2, "login");
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(sink, setup.shared(), stop_rx));
    let lines = wait_lines(&path, 3).await;
    assert!(lines[1].contains("externalId=5 ") && lines[2].contains("externalId=6 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_the_log_does_not_hold_restarts_from_the_first_entry() {
    let mut setup = Setup::new();
    setup.append(3, "login");
    let p = cursor::path(setup.dir.path(), "soc");
    let stale = cursor::Cursor {
        seq: 2,
        head: Some(psmgate_storage::chain::Digest([9; 32])),
    };
    cursor::save(&p, &stale).unwrap();
    let (sink, path) = file_sink(&setup, "soc", psmgate_policy::SiemFormat::Json);
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(sink, setup.shared(), stop_rx));
    let lines = wait_lines(&path, 3).await;
    assert!(lines[0].contains("\"seq\":1,"), "{lines:?}");
    setup.wait_cursor("soc", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entry_stops_the_sink_there() {
    let mut setup = Setup::new();
    setup.append(2, "login");
    setup
        .backend
        .append(
            psmgate_storage::audit::AUDIT_LOG,
            b"{\"not\":\"an entry\"}\n",
        )
        .unwrap();
    let (sink, path) = file_sink(&setup, "soc", psmgate_policy::SiemFormat::Json);
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(sink, setup.shared(), stop_rx));
    wait_lines(&path, 2).await;
    setup.wait_cursor("soc", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wait_lines(&path, 2).await.len(), 2);
    assert_eq!(setup.cursor("soc"), Some(2));
}

#[test]
fn a_backlog_beyond_the_limits_is_reported_once_per_outage() {
    let mut sink = SiemSink::new("soc", SiemTransport::Tcp);
    sink.alert_backlog = 10;
    sink.alert_delay = psmgate_policy::Duration::from_secs(60);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut o = Outage::default();
    o.backlog(&sink, 100, Some("2020-01-01T00:00:00Z"));
    assert!(!o.alerted, "not while delivering");
    o.failed(&sink, &anyhow!("connection refused"));
    o.backlog(&sink, 10, Some(&now));
    assert!(!o.alerted);
    o.backlog(&sink, 10, Some("2020-01-01T00:00:00Z"));
    assert!(o.alerted, "too old");
    o.delivering(&sink);
    assert!(!o.alerted && o.since.is_none());
    o.failed(&sink, &anyhow!("connection refused"));
    o.backlog(&sink, 11, None);
    assert!(o.alerted, "too many");
}

#[test]
fn backoff_doubles_up_to_its_maximum() {
    let mut b = Backoff::new(&Timing::default());
    let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
    assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_follow_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("psmgate.toml");
    std::fs::write(&config_path, "[gateway]\ndata_dir = \"data\"\n").unwrap();
    let config = psmgate_policy::Config::load(&config_path).unwrap();
    let store = Store::open(&config, None).unwrap();
    let policy = PolicyCell::new(config, Some(config_path.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = spawn(&store, policy.clone(), stop_rx);
    crate::supervisor::audit_action(&store, "admin", "login", "", "before");
    std::fs::write(
        &config_path,
        "[gateway]\ndata_dir = \"data\"\n\n[[siem]]\nname = \"files\"\ntransport = \"file\"\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    policy.reload().unwrap();
    let out = dir.path().join("out.jsonl");
    let lines = wait_lines(&out, 1).await;
    assert!(lines[0].contains("\"detail\":\"before\""), "{lines:?}");
    // Removed by a reload: stopped.
    std::fs::write(&config_path, "[gateway]\ndata_dir = \"data\"\n").unwrap();
    policy.reload().unwrap();
    tokio::time::sleep(RECONCILE + Duration::from_millis(500)).await;
    crate::supervisor::audit_action(&store, "admin", "login", "", "after");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wait_lines(&out, 1).await.len(), 1);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

/// Writes `n` valid, unsigned entries after those of the log at once (one write, one sync).
fn write_backlog(backend: &dyn Backend, n: u64) {
    let existing = AuditLog::read_all(backend).unwrap();
    let (mut seq, mut prev) = existing.last().map_or_else(
        || (0, psmgate_storage::audit::audit_genesis()),
        |e| (e.seq, e.head),
    );
    let mut text = String::new();
    for i in 0..n {
        seq += 1;
        let mut e = AuditEntry {
            seq,
            time: "2026-11-22T10:00:00Z".into(),
            action: "login".into(),
            session_id: String::new(),
            dir: String::new(),
            actor: format!("user{}", i % 50),
            target: String::new(),
            detail: format!("from 10.0.0.{}:50000", i % 250),
            prev,
            head: psmgate_storage::chain::Digest::default(),
            key: None,
            sig: None,
        };
        e.head = e.computed_head();
        prev = e.head;
        text.push_str(&serde_json::to_string(&e).unwrap());
        text.push('\n');
    }
    backend
        .append(psmgate_storage::audit::AUDIT_LOG, text.as_bytes())
        .unwrap();
    backend.sync(psmgate_storage::audit::AUDIT_LOG).unwrap();
}

/// A large backlog (as after a long outage) goes out at the default pace, every entry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_is_caught_up() {
    const N: u64 = 20_000;
    let setup = Setup::new();
    write_backlog(setup.backend.as_ref(), N);
    assert_eq!(setup.entries().len() as u64, N);
    let port = free_port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _receiver = Receiver::start(port, None, tx).await;
    let shared = Arc::new(Shared {
        timing: Timing::default(),
        ..(*setup.shared()).clone()
    });
    let started = Instant::now();
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(run(tcp_sink("bulk", port), shared, stop_rx));
    let mut got = Vec::new();
    until_all(&mut rx, &(1..=N).collect(), &mut got).await;
    let received = started.elapsed();
    setup.wait_cursor("bulk", N).await;
    let confirmed = started.elapsed();
    assert_eq!(got.len() as u64, N, "each entry once");
    assert_in_order(&got);
    println!(
        "backlog of {N} entries: received in {received:?} ({:.0} entries/s), all confirmed after {confirmed:?}",
        N as f64 / received.as_secs_f64()
    );
}
