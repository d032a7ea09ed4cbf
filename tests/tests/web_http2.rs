//! The web console proxy in front of an HTTP/2-only upstream: headless Chromium → psmgate
//! (HTTPS interception with the gateway CA) → tests/web/h2-server.mjs, a local console that
//! offers only `h2` by ALPN and refuses HTTP/1 connections. The page (sent gzip), its stylesheet
//! (gzip), its script and the JSON its script fetches all come over HTTP/2; the browser shows
//! them, the server saw HTTP/2.0 for each, the transcript lists each exchange, the in-page
//! recorder was injected into the gzip'd page and its DOM recording arrived.

mod vnc_support;
mod web_support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command};
use web_support::{collect_text, drive, gateway_for_upstream, spawn_peer, stop, ProxyAccess};

/// tests/web/h2-server.mjs; killed on drop.
struct H2Server {
    child: Child,
    /// The server's own test CA.
    ca: PathBuf,
    /// Its port on 127.0.0.1.
    port: u16,
    dir: tempfile::TempDir,
}

impl H2Server {
    fn start() -> H2Server {
        let dir = tempfile::tempdir().unwrap();
        let (child, v) = spawn_peer("h2-server.mjs", dir.path(), &[], "h2-server.log");
        H2Server {
            ca: PathBuf::from(v["ca"].as_str().unwrap()),
            port: u16::try_from(v["port"].as_u64().unwrap()).unwrap(),
            child,
            dir,
        }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// What the server saw (`GET /__state`, fetched directly over HTTP/2).
    fn state(&self) -> Value {
        let o = Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(&self.ca)
            .arg(format!("{}/__state", self.base()))
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "no state from the h2 server ({e}): {}",
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("h2-server.log")).unwrap_or_default()
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of response header `name` in an `http` event.
fn response_header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event["response_headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

#[test]
fn a_browser_session_to_an_http2_only_console_is_served_and_recorded() {
    let h2 = H2Server::start();
    let base = h2.base();
    let gw = gateway_for_upstream("h2console", &format!("{base}/"), &h2.ca, "off");
    let alice = ProxyAccess::alice(&gw, "h2console");
    let results = drive(&alice.input(serde_json::json!({"steps": [
        {"goto": format!("{base}/")},
        {"waitFor": "body[data-ready='1']", "timeout": 10000},
        {"eval": "document.getElementById('api').textContent"},
        {"eval": "getComputedStyle(document.getElementById('styled')).width"},
        {"eval": "fetch('/api/version').then((r) => r.json())"},
        // The recorder sends its batches every second.
        {"sleep": 1500},
    ]})));
    let context = || format!("{results:#?}\nh2 server log:\n{}", h2.log());

    // 1. The browser got the page, its script's fetch, its gzip'd stylesheet, all over HTTP/2.
    assert_eq!(results[0]["status"], 200, "{}", context());
    assert_eq!(results[0]["title"], "H2 console", "{}", context());
    let text = results[0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("h2-page-content"), "{}", context());
    assert!(text.contains("page served over HTTP/2.0"), "{}", context());
    assert_eq!(results[1]["found"], true, "the fetch failed: {}", context());
    assert_eq!(
        results[2]["value"],
        "api answered over HTTP/2.0",
        "{}",
        context()
    );
    assert_eq!(results[3]["value"], "123px", "{}", context());
    let api = &results[4]["value"];
    assert_eq!(
        (api["httpVersion"].as_str(), api["alpn"].as_str()),
        (Some("2.0"), Some("h2")),
        "{}",
        context()
    );
    // The page's CSP was kept, with the recorder admitted.
    let csp = results[0]["csp"].as_str().unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("/__psmgate/recorder.js") || csp.contains("'nonce-"),
        "{csp}"
    );

    // 2. The server saw every one of those requests over HTTP/2 (it refuses anything else).
    let state = h2.state();
    for path in ["/", "/app.css", "/app.js", "/api/version"] {
        assert_eq!(
            state["versions"][path],
            serde_json::json!(["2.0"]),
            "{path}: {state}"
        );
    }
    let requests = state["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .all(|r| r["version"] == "2.0" && r["alpn"] == "h2"),
        "{state}"
    );
    let api_requests = requests
        .iter()
        .filter(|r| r["path"] == "/api/version")
        .count();
    assert_eq!(api_requests, 2, "{state}");

    // 3. Sealed at shutdown; the transcript lists each exchange with the upstream's answer.
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    let events = vnc_support::events_of(&rec, "http");
    let find = |path: &str| {
        let url = format!("{base}{path}");
        let found: Vec<&Value> = events.iter().filter(|e| e["url"] == url).collect();
        assert!(!found.is_empty(), "no GET {url} in {events:#?}");
        found
    };
    for path in ["/", "/app.css", "/app.js", "/api/version"] {
        for e in find(path) {
            assert_eq!(e["method"], "GET", "{e}");
            assert_eq!(e["status"], 200, "{e}");
            assert_eq!(e["action"], "record", "{e}");
            assert_eq!(e["rule"], "record-local", "{e}");
            assert!(e.get("error").is_none(), "{e}");
            assert!(e["resp_bytes"].as_u64().unwrap_or(0) > 0, "{e}");
            assert_eq!(response_header(e, "x-http-version"), Some("2.0"), "{e}");
        }
    }
    // The page and the stylesheet came gzip'd; the page got the recorder all the same.
    for path in ["/", "/app.css"] {
        let e = find(path)[0];
        assert_eq!(response_header(e, "content-encoding"), Some("gzip"), "{e}");
    }
    let page = find("/")[0];
    assert!(
        page["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("text/html"),
        "{page}"
    );
    assert!(
        find("/api/version")[0]["content_type"]
            .as_str()
            .unwrap_or_default()
            .contains("json"),
        "{events:#?}"
    );
    assert!(vnc_support::events_of(&rec, "url")
        .iter()
        .any(|u| u["url"] == format!("{base}/")));

    // 4. The in-page recorder ran in the page: its DOM recording holds what the browser showed,
    // including the text the fetched JSON put there.
    let dom = vnc_support::events_of(&rec, "dom");
    assert!(!dom.is_empty(), "no DOM recording: {}", gw.log());
    let mut seen = String::new();
    collect_text(&Value::Array(dom), &mut seen);
    for shown in [
        "h2-page-content",
        "page served over HTTP/2.0",
        "api answered over HTTP/2.0",
    ] {
        assert!(
            seen.contains(shown),
            "DOM recording lacks {shown:?}: {}",
            gw.log()
        );
    }
    let m = vnc_support::manifest(&rec);
    assert_eq!(
        (
            m["protocol"].as_str(),
            m["user"].as_str(),
            m["target"].as_str()
        ),
        (Some("web"), Some("alice"), Some("h2console"))
    );
    gw.assert_verifies(&rec);
}
