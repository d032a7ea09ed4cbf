//! The web console proxy end to end: headless Chromium (Debian package, driven by Playwright) →
//! psmgate (HTTPS interception with the gateway CA) → a local HTTPS console with its own test CA
//! (tests/web/console-server.mjs: login form, single-page app with fetch, XHR and a WebSocket,
//! strict CSP, gzip and brotli). What the browser saw, what the console received, what the
//! transcript says, and that no planted secret reached any artifact or log.

mod vnc_support;
mod web_support;

use psmgate_e2e::peers::free_port;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vnc_support::walk;
use web_support::{drive, gateway_with, stop, Console, BEARER, COOKIE, FIELD, PASSWORD, TEXT};

fn http_events(rec: &Path) -> Vec<Value> {
    vnc_support::events_of(rec, "http")
}

#[test]
fn a_browser_session_through_the_proxy_is_recorded_without_its_secrets() {
    let c = Console::start();
    let gw = gateway_with(&c, "15s", "off");
    let token = gw.grant("console", &["--ttl", "10m"]);
    let o = gw.psmgate(&["ca", "export"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gw_ca = gw.dir.path().join("gateway-ca.pem");
    std::fs::write(&gw_ca, &o.stdout).unwrap();
    let shots = tempfile::tempdir().unwrap();
    let base = format!("https://127.0.0.1:{}", c.console);
    let results = drive(&serde_json::json!({
        "proxy": format!("http://127.0.0.1:{}", gw.web_port),
        "username": "alice@console",
        "password": token,
        // The gateway CA for intercepted hosts; the console's own CA for the tunnelled one,
        // which the browser reaches without interception.
        "ca": [gw_ca, c.ca],
        "shots": shots.path(),
        "steps": [
            {"goto": format!("{base}/login")},
            {"fill": "input[name=username]", "value": "alice"},
            {"fill": "input[name=password]", "value": PASSWORD},
            {"click": "#signin", "waitForNavigation": true},
            {"waitFor": "body[data-ready='1']", "timeout": 15000},
            {"eval": "document.body.innerText"},
            {"goto": format!("{base}/secret")},
            {"goto": format!("https://127.0.0.2:{}/", c.denied)},
            {"goto": format!("https://127.0.0.3:{}/", c.tunnel)},
        ]
    }));
    // 1. The pages work through the proxy: login, the app's fetch/XHR/WebSocket, CSP intact.
    assert_eq!(results[0]["title"], "Console sign-in", "{results:?}");
    assert_eq!(
        results[4]["found"], true,
        "the app did not finish: {results:?}"
    );
    let app = results[5]["value"].as_str().unwrap_or_default();
    for shown in [
        "alpha-instance, beta-instance",
        "profile: alice",
        "echo: hello-ws",
    ] {
        assert!(app.contains(shown), "app shows {app:?}");
    }
    assert_eq!(results[6]["status"], 200, "{:?}", results[6]);
    // The page's CSP is kept, with exactly the recorder admitted.
    let csp = results[6]["csp"].as_str().unwrap_or_default();
    for kept in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(kept), "CSP lost {kept:?}: {csp}");
    }
    assert!(
        csp.contains("/__psmgate/recorder.js") || csp.contains("'nonce-"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-eval") && !csp.contains("'unsafe-inline'"),
        "{csp}"
    );
    // 2. The denied host shows the block page naming the rule; nothing reached it.
    assert_eq!(results[7]["status"], 403, "{:?}", results[7]);
    assert!(results[7]["text"]
        .as_str()
        .unwrap()
        .contains("no-other-consoles"));
    // 3. The tunnelled host was reached with its own certificate (not intercepted).
    assert_eq!(results[8]["status"], 200, "{:?}", results[8]);
    assert!(results[8]["text"]
        .as_str()
        .unwrap()
        .contains("tunnel-host-content"));
    let state = c.state();
    assert_eq!(state["logins_ok"], 1, "{state}");
    assert_eq!(state["ws_messages"][0], "hello-ws", "{state}");
    let sites: Vec<&str> = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["site"].as_str())
        .collect();
    assert!(
        !sites.contains(&"denied"),
        "a denied request was forwarded: {state}"
    );
    assert!(sites.contains(&"tunnel"));

    // 4. Sealed at shutdown; the transcript lists the exchanges.
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    let events = http_events(&rec);
    let find = |method: &str, path: &str| {
        events
            .iter()
            .find(|e| e["method"] == method && e["url"].as_str().unwrap().ends_with(path))
            .unwrap_or_else(|| panic!("no {method} {path} in {events:#?}"))
    };
    let login = find("POST", "/login");
    assert_eq!(login["status"], 303);
    assert_eq!(login["rule"], "console-forms");
    let body = login["body"].as_str().unwrap();
    assert!(
        body.contains("username=alice") && body.contains("password=[redacted]"),
        "{body}"
    );
    let items = find("GET", "/api/items");
    assert_eq!(items["status"], 200);
    assert!(items["content_type"].as_str().unwrap().contains("json"));
    assert!(items["resp_bytes"].as_u64().unwrap() > 0);
    let auth = items["request_headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "authorization")
        .unwrap();
    assert_eq!(auth[1], "[redacted]");
    find("GET", "/api/profile");
    let denied = events.iter().find(|e| e["action"] == "deny").unwrap();
    assert_eq!(
        (denied["status"].as_u64(), denied["rule"].as_str()),
        (Some(403), Some("no-other-consoles"))
    );
    let tunnel = events.iter().find(|e| e["action"] == "tunnel").unwrap();
    assert_eq!(tunnel["method"], "CONNECT");
    assert!(!vnc_support::events_of(&rec, "websocket").is_empty());
    assert!(vnc_support::events_of(&rec, "url")
        .iter()
        .any(|u| u["url"].as_str().unwrap().ends_with("/app")));
    // The DOM recording holds what the admin saw: the app's rendered data and the visible text
    // of the keys page (its secrets masked).
    let dom = vnc_support::events_of(&rec, "dom");
    assert!(!dom.is_empty(), "no DOM recording");
    let mut seen = String::new();
    collect_text(&Value::Array(dom.clone()), &mut seen);
    for shown in [
        "alpha-instance",
        "profile: alice",
        "visible-plain-text",
        "Instances",
    ] {
        assert!(
            seen.contains(shown),
            "DOM recording lacks {shown:?}; batches: {:?}; log: {}",
            dom.iter()
                .map(|d| (
                    d["t"].clone(),
                    d["url"].clone(),
                    d["seq"].clone(),
                    d["events"].as_array().map(Vec::len)
                ))
                .collect::<Vec<_>>(),
            gw.log()
        );
    }
    assert!(!vnc_support::events_of(&rec, "title").is_empty());
    let m = vnc_support::manifest(&rec);
    assert_eq!(
        (
            m["protocol"].as_str(),
            m["user"].as_str(),
            m["target"].as_str()
        ),
        (Some("web"), Some("alice"), Some("console"))
    );
    gw.assert_verifies(&rec);

    // 5. No planted secret, token or cookie anywhere in the recording, the audit log or the log.
    // (The token database holds tokens by design; everything else is scanned.)
    let mut all = gw.log();
    for f in walk(&gw.data()) {
        if f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("access.sqlite3"))
        {
            continue;
        }
        all.push_str(&String::from_utf8_lossy(&std::fs::read(&f).unwrap()));
    }
    for (what, secret) in [
        ("access token", token.as_str()),
        ("session cookie", COOKIE),
        ("bearer token", BEARER),
        ("console password", PASSWORD),
        ("secret field", FIELD),
        ("secret text", TEXT),
    ] {
        assert!(!all.contains(secret), "{what} leaked");
    }
}

/// Every string in `v` (text nodes, attribute values, input texts), appended to `out`.
fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_text(x, out)),
        _ => {}
    }
}

#[test]
fn a_page_whose_recorder_is_blocked_ends_the_session() {
    let c = Console::start();
    let gw = gateway_with(&c, "2s", "off");
    let token = gw.grant("console", &["--ttl", "10m"]);
    let o = gw.psmgate(&["ca", "export"]);
    let gw_ca = gw.dir.path().join("gateway-ca.pem");
    std::fs::write(&gw_ca, &o.stdout).unwrap();
    let base = format!("https://127.0.0.1:{}", c.console);
    let results = drive(&serde_json::json!({
        "proxy": format!("http://127.0.0.1:{}", gw.web_port),
        "username": "alice@console",
        "password": token,
        "ca": [gw_ca],
        "steps": [
            // An extension (or the page) keeps the recorder from running.
            {"abort": "**/__psmgate/**"},
            {"goto": format!("{base}/login")},
            {"sleep": 3500},
            {"goto": format!("{base}/login")},
        ]
    }));
    assert_eq!(results[1]["status"], 200, "{results:?}");
    assert_eq!(results[3]["status"], 403, "{results:?}");
    assert!(
        results[3]["text"]
            .as_str()
            .unwrap()
            .contains("recorder-heartbeat"),
        "{results:?}"
    );
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    let policy = vnc_support::events_of(&rec, "policy");
    assert!(
        policy
            .iter()
            .any(|p| p["rule"] == "recorder-heartbeat" && p["action"] == "terminated"),
        "{policy:?}"
    );
    let m = vnc_support::manifest(&rec);
    assert!(
        m["end_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("ended by policy"),
        "{m}"
    );
    gw.assert_verifies(&rec);
    // The console saw the first page only.
    let state = c.state();
    let logins = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/login")
        .count();
    assert_eq!(logins, 1, "{state}");
}

#[test]
fn the_proxy_refuses_browsers_without_a_valid_token() {
    let c = Console::start();
    let gw = gateway_with(&c, "15s", "off");
    let _token = gw.grant("console", &["--ttl", "10m"]);
    let curl = |auth: Option<&str>| -> (String, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy"])
            .arg(format!("http://127.0.0.1:{}", gw.web_port))
            .arg("--cacert")
            .arg(&c.ca);
        if let Some(a) = auth {
            cmd.args(["--proxy-user", a]);
        }
        let o = cmd
            .arg(format!("https://127.0.0.1:{}/login", c.console))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // No credentials, a wrong token, a token for an unknown target: 407 at CONNECT.
    for auth in [
        None,
        Some("alice@console:wrong-token"),
        Some("alice@nosuch:x"),
    ] {
        let (code, err) = curl(auth);
        assert!(
            code == "407" || err.contains("407"),
            "{auth:?}: {code} {err}"
        );
    }
    // Nothing was recorded and the failures were audited without the token.
    assert!(psmgate_e2e::recordings(&gw.data()).is_empty());
    let audit =
        std::fs::read_to_string(gw.data().join("recordings/audit.jsonl")).unwrap_or_default();
    assert!(audit.contains("web_auth_failed"), "{audit}");
    assert!(!audit.contains("wrong-token"));
}

/// A web proxy that cannot serve stops the gateway with the reason (a gateway that silently
/// stopped recording web sessions must not look healthy): here an unreadable extra root.
#[test]
fn a_web_proxy_that_cannot_start_stops_the_gateway_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("psmgate.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{}\"\nadmin_tls = false\n\
             web_listen = \"127.0.0.1:{}\"\n\n[users.alice]\nroles = [\"admin\"]\n\n\
             [targets.console]\nprotocol = \"web\"\naddress = \"https://127.0.0.1:1/\"\n\n\
             [web]\nextra_roots = [\"missing-root.pem\"]\n\n\
             [[rules]]\nid = \"all\"\nusers = [\"alice\"]\ntargets = \"*\"\n",
            free_port().unwrap(),
            free_port().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(psmgate_e2e::psmgate_bin())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--no-tls"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("psmgate kept running without its web proxy");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("missing-root.pem"), "{err}");
}
