//! Recordings search end to end: a demo recording (the synthetic desktop types `uname -a`, then
//! `df -h`, see `psmgate_codecs::synth`) is found by what was typed — from the command line, and
//! through `GET /api/recordings?q=` of a running `psmgate serve` — and not by what was not.

use psmgate_e2e::peers::free_port;
use psmgate_e2e::{psmgate, psmgate_bin, text};
use serde_json::Value;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A word the demo never types nor shows in a title.
const ABSENT: &str = "kubectl";

/// Records a demo session in `data`; returns its id.
fn demo(data: &Path) -> String {
    let o = psmgate(
        data,
        &[
            "demo",
            "--seconds",
            "8",
            "--width",
            "640",
            "--height",
            "480",
        ],
    );
    assert!(o.status.success(), "demo failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .expect("the demo prints its session id")
        .trim()
        .to_owned()
}

/// Every transcript line of the single recording in `data`.
fn transcript(data: &Path) -> String {
    let rec = psmgate_e2e::only_recording(data);
    let mut all = String::new();
    for e in std::fs::read_dir(rec.join("events")).unwrap() {
        all.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    all
}

/// The ids `psmgate recordings list --json` prints with `args`.
fn list(data: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["recordings", "list", "--json"];
    all.extend_from_slice(args);
    let o = psmgate(data, &all);
    assert!(o.status.success(), "list {args:?}: {}", text(&o));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A `psmgate serve` with a plain-HTTP admin listener; killed on drop.
struct Serve {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(data: &Path, log: std::path::PathBuf) -> Serve {
        let port = free_port().unwrap();
        let child = Command::new(psmgate_bin())
            .arg("--data")
            .arg(data)
            .args([
                "serve",
                "--no-tls",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("NO_COLOR", "1")
            .spawn()
            .unwrap();
        let serve = Serve { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve did not listen: {}",
                std::fs::read_to_string(&serve.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    /// `GET path` with the bearer token; the status and the JSON body.
    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (status, body) = psmgate_e2e::http_call(self.port, "GET", path, Some(token), None);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn ids(&self, path: &str, token: &str) -> Vec<String> {
        let (status, body) = self.get(path, token);
        assert_eq!(status, 200, "{path}: {body}");
        body.as_array()
            .unwrap_or_else(|| panic!("{path}: not a list: {body}"))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[test]
fn a_demo_recording_is_found_by_what_was_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let id = demo(&data);
    let lines = transcript(&data);
    assert!(
        lines.contains(r#""type":"text","text":"uname -a""#),
        "the demo types `uname -a`: {lines}"
    );
    assert!(!lines.to_lowercase().contains(ABSENT), "{lines}");
    // A copy nobody has searched yet, for the gateway below.
    let fresh = tmp.path().join("fresh");
    copy_dir(&data, &fresh);

    // The command line indexes the demo's text on first use.
    assert_eq!(list(&data, &["--text", "uname"]), [id.as_str()]);
    assert_eq!(list(&data, &["--text", "UNAM"]), [id.as_str()], "a prefix");
    assert_eq!(list(&data, &["--text", "df uname"]), [id.as_str()]);
    assert!(list(&data, &["--text", ABSENT]).is_empty());
    assert!(list(&data, &["--text", &format!("uname {ABSENT}")]).is_empty());
    assert!(list(&data, &["--text", "\" OR * NEAR("]).is_empty());
    assert_eq!(
        list(&data, &["--text", "uname", "--protocol", "demo"]),
        [id.as_str()]
    );
    assert!(list(&data, &["--text", "uname", "--protocol", "vnc"]).is_empty());
    assert!(list(&data, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(
        list(
            &data,
            &["--until", "2999-01-01T00:00:00Z", "--text", "uname"]
        ),
        [id.as_str()]
    );
    let bad = psmgate(&data, &["recordings", "list", "--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("RFC 3339"), "{}", text(&bad));

    // The gateway indexes recordings without text when it starts, in the background.
    let serve = Serve::start(&fresh, tmp.path().join("serve.log"));
    let token = std::fs::read_to_string(fresh.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = serve.ids("/api/recordings?q=uname", &token);
        if found == [id.as_str()] {
            break;
        }
        assert!(found.is_empty(), "{found:?}");
        assert!(
            Instant::now() < deadline,
            "not searchable: {}",
            std::fs::read_to_string(&serve.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        serve.ids("/api/recordings?q=Uname+-a&protocol=demo&limit=5", &token),
        [id.as_str()]
    );
    assert!(serve
        .ids(&format!("/api/recordings?q={ABSENT}"), &token)
        .is_empty());
    assert!(serve
        .ids("/api/recordings?q=%22%20OR%20*%20NEAR(", &token)
        .is_empty());
    assert!(serve
        .ids("/api/recordings?q=uname&since=2999-01-01T00:00:00Z", &token)
        .is_empty());
    assert!(serve
        .ids("/api/recordings?q=uname&offset=1", &token)
        .is_empty());
    assert_eq!(serve.ids("/api/recordings", &token), [id.as_str()]);
    let (status, body) = serve.get("/api/recordings?q=uname&since=yesterday", &token);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_parameter", "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("since:"),
        "{body}"
    );
    let (status, body) = serve.get("/api/recordings?limit=many", &token);
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("bad_parameter"))
    );
}
