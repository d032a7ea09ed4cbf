//! SIEM export end to end: `psmgate serve` forwards its audit log to a real rsyslogd (Debian's
//! `rsyslog`, with `rsyslog-gnutls` for TLS) over TCP (RFC 5424, octet-counted) and TLS (CEF in
//! RFC 5424), and to a file as JSON lines. Sign-ins, a CLI grant, a VNC session ended by its
//! grant's expiry (TigerVNC Xvnc as the target), a just-in-time request and its approval arrive,
//! parsed by rsyslog, with seqs 1..=N and no gap; then rsyslog is stopped, more happens, and once
//! rsyslog is back on the same ports every missed entry arrives: the seqs received equal the
//! audit log's (`GET /api/audit`).

mod vnc_support;

use psmgate_e2e::peers::{free_port, require_tool, Xvnc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnc_support::{Gateway, Options, RawViewer};

/// The rsyslogd executable: on `PATH`, or in `/usr/sbin` (not on a non-root `PATH`).
fn rsyslogd() -> PathBuf {
    require_tool("rsyslogd")
        .ok()
        .or_else(|| {
            let p = PathBuf::from("/usr/sbin/rsyslogd");
            p.exists().then_some(p)
        })
        .expect("rsyslogd is not installed: scripts/install-deps.sh installs Debian's rsyslog and rsyslog-gnutls")
}

/// A test CA and a certificate for `localhost` signed by it, as PEM files in `dir`:
/// `(ca, cert, key)`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "psmgate test SIEM CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("receiver.pem"),
        dir.join("receiver.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// rsyslogd in the foreground with its own configuration: RFC 5424 over TCP on one port and
/// over TLS (gtls) on another, each written to its own file, one message per line as
/// `MSGID<TAB>PRI<TAB>HOSTNAME<TAB>APP-NAME<TAB>STRUCTURED-DATA<TAB>MSG`.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
    tcp_port: u16,
    tls_port: u16,
}

impl Rsyslog {
    fn start(dir: &Path, tcp_port: u16, tls_port: u16, run: u32) -> Rsyslog {
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("receiver.pem"),
            dir.join("receiver.key"),
        );
        let d = dir.display();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{d}\" maxMessageSize=\"64k\")\n\
                 module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" port=\"{tcp_port}\" address=\"127.0.0.1\" ruleset=\"tcp\")\n\
                 input(type=\"imtcp\" port=\"{tls_port}\" address=\"127.0.0.1\" ruleset=\"tls\" \
                   streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\" \
                   streamDriver.CAFile=\"{}\" streamDriver.CertFile=\"{}\" streamDriver.KeyFile=\"{}\")\n\
                 template(name=\"siem\" type=\"string\" \
                   string=\"%msgid%\\t%pri%\\t%hostname%\\t%app-name%\\t%structured-data%\\t%msg%\\n\")\n\
                 ruleset(name=\"tcp\") {{ action(type=\"omfile\" file=\"{d}/tcp.log\" template=\"siem\") }}\n\
                 ruleset(name=\"tls\") {{ action(type=\"omfile\" file=\"{d}/tls.log\" template=\"siem\") }}\n",
                ca.display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("rsyslogd-{run}.log"))).unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join(format!("rsyslogd-{run}.pid")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting rsyslogd");
        let mut r = Rsyslog {
            child,
            dir: dir.to_owned(),
            tcp_port,
            tls_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", r.tcp_port)).is_err()
            || TcpStream::connect(("127.0.0.1", r.tls_port)).is_err()
        {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", r.log(run));
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen: {}",
                r.log(run)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn log(&self, run: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("rsyslogd-{run}.log"))).unwrap_or_default()
    }

    /// SIGTERM, and waits for it to exit.
    fn stop(mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !term.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "rsyslogd did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as rsyslog wrote it.
#[derive(Debug, Clone)]
struct Received {
    msgid: String,
    pri: u32,
    hostname: String,
    app_name: String,
    params: BTreeMap<String, String>,
    msg: String,
}

impl Received {
    fn seq(&self) -> u64 {
        self.params["seq"].parse().unwrap()
    }
}

/// The parameters of the `psmgate@32473` element, unescaped.
fn sd_params(sd: &str) -> BTreeMap<String, String> {
    let rest = sd
        .strip_prefix("[psmgate@32473")
        .unwrap_or_else(|| panic!("structured data {sd:?}"));
    let mut out = BTreeMap::new();
    let mut chars = rest.chars();
    loop {
        match chars.next() {
            Some(' ') => {
                let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{sd}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => value.push(chars.next().unwrap()),
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("unterminated value in {sd:?}"),
                    }
                }
                out.insert(name, value);
            }
            Some(']') => return out,
            other => panic!("{other:?} in {sd:?}"),
        }
    }
}

fn received(path: &Path) -> Vec<Received> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.splitn(6, '\t').collect();
            assert_eq!(f.len(), 6, "{line:?}");
            Received {
                msgid: f[0].to_owned(),
                pri: f[1].parse().unwrap(),
                hostname: f[2].to_owned(),
                app_name: f[3].to_owned(),
                params: sd_params(f[4]),
                msg: f[5].to_owned(),
            }
        })
        .collect()
}

/// One HTTP/1.1 request to the admin listener; the status and the JSON body.
fn call(port: u16, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let (status, body) = psmgate_e2e::http_call(port, method, path, bearer, Some(body));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn login(gw: &Gateway, user: &str, password: &str) -> (u16, Value) {
    call(
        gw.admin_port,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"user":"{user}","password":"{password}"}}"#),
    )
}

/// Every audit entry, by `GET /api/audit` with the admin token.
fn audit(gw: &Gateway) -> Vec<Value> {
    let token = std::fs::read_to_string(gw.data().join("admin-token")).unwrap();
    let (s, v) = call(
        gw.admin_port,
        "GET",
        "/api/audit?limit=1000",
        Some(token.trim()),
        "",
    );
    assert_eq!(s, 200, "{v}");
    let entries = v["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len() as u64, v["total"].as_u64().unwrap());
    entries
}

/// Waits until `n` entries are in the audit log and returns them.
fn audit_until(gw: &Gateway, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = audit(gw);
        if done(&entries) {
            return entries;
        }
        assert!(Instant::now() < deadline, "{what}: {entries:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until both rsyslog files hold every seq of `want`; returns how long that took.
fn until_received(dir: &Path, want: &BTreeSet<u64>) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    loop {
        let all = ["tcp.log", "tls.log"].iter().all(|f| {
            let got: BTreeSet<u64> = received(&dir.join(f)).iter().map(Received::seq).collect();
            want.is_subset(&got)
        });
        if all {
            return start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog did not receive {want:?}: tcp {:?}, tls {:?}",
            received(&dir.join("tcp.log"))
                .iter()
                .map(Received::seq)
                .collect::<Vec<_>>(),
            received(&dir.join("tls.log"))
                .iter()
                .map(Received::seq)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seqs(entries: &[Value]) -> BTreeSet<u64> {
    entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn audit_entries_reach_rsyslog_and_survive_its_outage() {
    let siem = tempfile::tempdir().unwrap();
    let (ca, _, _) = certificates(siem.path());
    let (tcp_port, tls_port) = (free_port().unwrap(), free_port().unwrap());
    let rsyslog = Rsyslog::start(siem.path(), tcp_port, tls_port, 1);

    let target = Xvnc::start(640, 480, None).unwrap();
    let sinks = format!(
        "[[siem]]\nname = \"rsyslog-tcp\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{tcp_port}\"\n\
         facility = \"local4\"\n\n\
         [[siem]]\nname = \"rsyslog-tls\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{tls_port}\"\n\
         server_name = \"localhost\"\nca = \"{}\"\nformat = \"cef\"\napp_name = \"psmgate-tls\"\n\n\
         [[siem]]\nname = \"shipper\"\ntransport = \"file\"\npath = \"siem-out/audit.jsonl\"\n",
        ca.display()
    );
    let users = format!(
        "[users.alice]\nroles = [\"admin\"]\npassword_hash = \"{}\"\n\n\
         [users.bob]\nroles = [\"user\"]\npassword_hash = \"{}\"\n\n\
         [[rules]]\nid = \"alice-lab\"\nusers = [\"alice\"]\ntargets = \"*\"\n\n\
         [[rules]]\nid = \"bob-jit\"\nusers = [\"bob\"]\ntargets = [\"lab-vnc\"]\napproval = \"required\"\n",
        psmgate_e2e::hash_password("pw-alice"),
        psmgate_e2e::hash_password("pw-bob"),
    );
    let gw = Gateway::start_with_users(
        target.port(),
        Options {
            extra_config: &sinks,
            ..Options::default()
        },
        &users,
    );

    // Sign-ins (one failed), a grant from the command line, a VNC session that the grant's
    // expiry ends, and a just-in-time request with its approval.
    let token_of = |user: &str| {
        let (s, v) = login(&gw, user, &format!("pw-{user}"));
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    };
    let (alice, bob) = (token_of("alice"), token_of("bob"));
    assert_eq!(login(&gw, "mallory", "guess").0, 401);
    let token = gw.grant("lab-vnc", &["--ttl", "3s"]);
    let mut viewer = RawViewer::connect(gw.vnc_port, &token).unwrap();
    let connected = Instant::now();
    while viewer.wait_closed(Duration::from_millis(200)).is_none() {
        assert!(
            connected.elapsed() < Duration::from_secs(15),
            "the session outlived its grant"
        );
        let _ = viewer.tap(0x61);
    }
    let (s, request) = call(
        gw.admin_port,
        "POST",
        "/api/access-requests",
        Some(&bob),
        r#"{"target":"lab-vnc","reason":"patching \"db\" [change 42]"}"#,
    );
    assert_eq!(s, 201, "{request}");
    let id = request["id"].as_i64().unwrap();
    let (s, v) = call(
        gw.admin_port,
        "POST",
        &format!("/api/access-requests/{id}/approve"),
        Some(&alice),
        "{}",
    );
    assert_eq!(s, 200, "{v}");
    let entries = audit_until(&gw, "session end and approval audited", |e| {
        ["session_end", "grant_issued"]
            .iter()
            .all(|a| e.iter().any(|x| x["action"] == *a))
    });
    let actions: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "login",
        "login_failed",
        "access_grant",
        "session_start",
        "policy_enforced",
        "session_end",
        "access_requested",
        "access_approved",
        "grant_issued",
    ] {
        assert!(actions.contains(a), "{a} not audited: {actions:?}");
    }
    let n = entries.len() as u64;
    assert_eq!(seqs(&entries), (1..=n).collect());
    let first_wait = until_received(siem.path(), &(1..=n).collect());
    println!("{n} audit entries reached rsyslog over TCP and TLS within {first_wait:?}");

    // As rsyslog parsed them: in order, no gap, the header and structured data of each entry.
    let host = hostname();
    for (file, facility, app) in [("tcp.log", 20, "psmgate"), ("tls.log", 10, "psmgate-tls")] {
        let got = received(&siem.path().join(file));
        assert_eq!(
            got.iter().map(Received::seq).collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>(),
            "{file}: each entry once, in order"
        );
        for (r, e) in got.iter().zip(&entries) {
            assert_eq!(r.msgid, e["action"].as_str().unwrap(), "{file}");
            assert_eq!(r.params["head"], e["head"].as_str().unwrap(), "{file}");
            assert_eq!(r.params["actor"], e["actor"].as_str().unwrap(), "{file}");
            assert_eq!(
                r.params["target"],
                e["target"].as_str().unwrap_or(""),
                "{file}"
            );
            assert_eq!(
                r.params["session"],
                e["session_id"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(
                (r.hostname.as_str(), r.app_name.as_str()),
                (host.as_str(), app)
            );
            let severity = match r.msgid.as_str() {
                "login_failed" | "policy_enforced" => 4,
                "access_approved" | "access_grant" | "grant_issued" => 5,
                _ => 6,
            };
            assert_eq!(r.pri, facility * 8 + severity, "{file}: {r:?}");
            if file == "tcp.log" {
                assert_eq!(r.msg, e["detail"].as_str().unwrap(), "{r:?}");
            } else {
                assert!(r.msg.starts_with("CEF:0|psmgate|psmgate|"), "{r:?}");
                assert!(
                    r.msg.contains(&format!(" externalId={} ", r.seq())),
                    "{r:?}"
                );
            }
        }
        let session = got.iter().find(|r| r.msgid == "session_start").unwrap();
        assert_eq!(session.params["target"], "lab-vnc");
        assert_eq!(session.params["actor"], "alice");
        let ended = got.iter().find(|r| r.msgid == "policy_enforced").unwrap();
        assert_eq!(ended.params["session"], session.params["session"]);
    }
    let request_line = received(&siem.path().join("tcp.log"))
        .into_iter()
        .find(|r| r.msgid == "access_requested")
        .unwrap();
    assert!(
        request_line.msg.contains("patching \"db\" [change 42]"),
        "{request_line:?}"
    );

    // rsyslog goes away; the gateway goes on.
    rsyslog.stop();
    let stopped = Instant::now();
    assert_eq!(login(&gw, "mallory", "guess-again").0, 401);
    gw.grant("down-vnc", &["--ttl", "1h"]);
    let (s, request) = call(
        gw.admin_port,
        "POST",
        "/api/access-requests",
        Some(&bob),
        r#"{"target":"lab-vnc","reason":"second try"}"#,
    );
    assert_eq!(s, 201, "{request}");
    let id = request["id"].as_i64().unwrap();
    let (s, v) = call(
        gw.admin_port,
        "POST",
        &format!("/api/access-requests/{id}/deny"),
        Some(&alice),
        r#"{"note":"not now"}"#,
    );
    assert_eq!(s, 200, "{v}");
    let entries = audit_until(&gw, "denial audited", |e| {
        e.iter().any(|x| x["action"] == "access_denied")
    });
    let total = entries.len() as u64;
    assert!(total > n + 3, "{total} entries after {n}");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed()));
    for file in ["tcp.log", "tls.log"] {
        assert!(
            received(&siem.path().join(file))
                .iter()
                .all(|r| r.seq() <= n),
            "{file} grew while rsyslog was down"
        );
    }
    let log = gw.log();
    for sink in ["rsyslog-tcp", "rsyslog-tls"] {
        let warnings = log
            .lines()
            .filter(|l| l.contains("SIEM sink unreachable") && l.contains(sink))
            .count();
        assert_eq!(warnings, 1, "one warning for the outage of {sink}:\n{log}");
    }

    // Back on the same ports: every entry missed arrives.
    let down_for = stopped.elapsed();
    let _rsyslog = Rsyslog::start(siem.path(), tcp_port, tls_port, 2);
    let backlog_wait = until_received(siem.path(), &(1..=total).collect());
    println!(
        "rsyslog down for {down_for:?}: the {} entries written meanwhile arrived {backlog_wait:?} after it was back",
        total - n
    );
    for file in ["tcp.log", "tls.log"] {
        let got: Vec<u64> = received(&siem.path().join(file))
            .iter()
            .map(Received::seq)
            .collect();
        let set: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(
            set,
            seqs(&audit(&gw)),
            "{file}: the audit log's entries, none lost"
        );
        // Resending starts after the last entry confirmed before the outage: what repeats is
        // the last few entries sent before it, and each entry of the outage arrives once.
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for s in &got {
            *count.entry(*s).or_default() += 1;
        }
        let repeated: Vec<u64> = count
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(s, _)| *s)
            .collect();
        assert!(count.values().all(|c| *c <= 2), "{file}: {got:?}");
        if let Some(first) = repeated.first() {
            assert_eq!(
                repeated,
                (*first..=n).collect::<Vec<_>>(),
                "{file}: {got:?}"
            );
        }
        println!(
            "{file}: {} messages for {total} entries; repeated after the reconnection: {repeated:?}",
            got.len()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("SIEM sink reachable again") {
        assert!(Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // The file sink: the audit entries as JSON lines, each once, in order, with the host.
    let lines = std::fs::read_to_string(gw.dir.path().join("siem-out/audit.jsonl")).unwrap();
    let entries = audit(&gw);
    let lines: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), entries.len());
    for (mut line, entry) in lines.into_iter().zip(entries) {
        assert_eq!(line["host"], host.as_str());
        line.as_object_mut().unwrap().remove("host");
        assert_eq!(line, entry);
    }
}
