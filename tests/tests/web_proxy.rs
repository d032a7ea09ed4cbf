//! The web console proxy end to end: headless Chromium (Debian package, driven by Playwright) →
//! psmgate (HTTPS interception with the gateway CA) → a local HTTPS console with its own test CA
//! (tests/web/console-server.mjs: login form, single-page app with fetch, XHR and a WebSocket,
//! strict CSP in headers and in `<meta>` elements, gzip and brotli). What the browser saw, what
//! the console received, what the transcript says, and that no planted secret reached any
//! artifact or log.

mod vnc_support;
mod web_support;

use psmgate_e2e::peers::free_port;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vnc_support::{walk, Gateway};
use web_support::{
    collect_text, drive, gateway_with, stop, Console, ProxyAccess, BEARER, COOKIE, FIELD, PASSWORD,
    TEXT,
};

fn http_events(rec: &Path) -> Vec<Value> {
    vnc_support::events_of(rec, "http")
}

#[test]
fn a_browser_session_through_the_proxy_is_recorded_without_its_secrets() {
    let c = Console::start();
    let gw = gateway_with(&c, "15s", "off");
    // The gateway CA for intercepted hosts; the console's own CA for the tunnelled one, which
    // the browser reaches without interception.
    let alice = ProxyAccess::alice(&gw, "console").trusting(&c.ca);
    let shots = tempfile::tempdir().unwrap();
    let base = format!("https://127.0.0.1:{}", c.console);
    let results = drive(&alice.input(serde_json::json!({
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
    })));
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
        ("access token", alice.token.as_str()),
        ("session cookie", COOKIE),
        ("bearer token", BEARER),
        ("console password", PASSWORD),
        ("secret field", FIELD),
        ("secret text", TEXT),
    ] {
        assert!(!all.contains(secret), "{what} leaked");
    }
}

/// Asserts that the sealed recording `rec` of `gw` verifies and says its session was
/// terminated under policy rule `rule` (the policy event's detail holding `detail`, which may
/// be empty), with an end reason holding `reason`.
fn assert_terminated(gw: &Gateway, rec: &Path, rule: &str, detail: &str, reason: &str) {
    let policy = vnc_support::events_of(rec, "policy");
    assert!(
        policy.iter().any(|p| p["rule"] == rule
            && p["action"] == "terminated"
            && p["detail"].as_str().unwrap_or_default().contains(detail)),
        "{policy:?}"
    );
    let m = vnc_support::manifest(rec);
    assert!(
        m["end_reason"]
            .as_str()
            .unwrap_or_default()
            .contains(reason),
        "{m}"
    );
    gw.assert_verifies(rec);
}

#[test]
fn a_page_whose_recorder_is_blocked_ends_the_session() {
    let c = Console::start();
    let gw = gateway_with(&c, "2s", "off");
    let alice = ProxyAccess::alice(&gw, "console");
    let base = format!("https://127.0.0.1:{}", c.console);
    let results = drive(&alice.input(serde_json::json!({"steps": [
        // An extension (or the page) keeps the recorder from running.
        {"abort": "**/__psmgate/**"},
        {"goto": format!("{base}/login")},
        {"sleep": 3500},
        {"goto": format!("{base}/login")},
    ]})));
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
    assert_terminated(&gw, &rec, "recorder-heartbeat", "", "ended by policy");
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

/// An admin API call with the gateway's admin token (curl; the test gateway's admin listener
/// is plain HTTP).
fn admin_call(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> Value {
    let token = std::fs::read_to_string(gw.data().join("admin-token")).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sSk", "-X", method, "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("http://127.0.0.1:{}{path}", gw.admin_port));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let o = cmd.output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[test]
fn an_operator_terminates_a_web_session_from_the_admin_api() {
    let c = Console::start();
    let gw = gateway_with(&c, "15s", "off");
    let alice = ProxyAccess::alice(&gw, "console");
    let base = format!("https://127.0.0.1:{}", c.console);
    let input = alice.input(serde_json::json!({"steps": [
        {"goto": format!("{base}/login")},
        {"sleep": 6000},
        {"goto": format!("{base}/login")},
    ]}));
    let browser = std::thread::spawn(move || drive(&input));
    // The session is listed while it runs…
    let deadline = Instant::now() + Duration::from_secs(15);
    let session = loop {
        let live = admin_call(&gw, "GET", "/api/sessions/live", None);
        if let Some(s) = live["sessions"].as_array().and_then(|v| v.first()) {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "no live web session: {live}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(session["protocol"], "web", "{session}");
    assert_eq!(session["user"], "alice", "{session}");
    assert_eq!(session["target"], "console", "{session}");
    let id = session["session_id"].as_str().unwrap().to_owned();
    // … and terminated by the operator once the first page was served.
    while !c.state()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["path"] == "/login")
    {
        assert!(Instant::now() < deadline, "the console saw no request");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let r = admin_call(
        &gw,
        "POST",
        &format!("/api/sessions/live/{id}/terminate"),
        Some(r#"{"reason":"unexpected console change"}"#),
    );
    assert_eq!(r["terminated"], id.as_str(), "{r}");
    let results = browser.join().unwrap();
    assert_eq!(results[0]["status"], 200, "{results:?}");
    assert_eq!(results[2]["status"], 403, "{results:?}");
    assert!(
        results[2]["text"].as_str().unwrap().contains("terminate"),
        "the block page names the rule: {results:?}"
    );
    // Sealed without waiting for the gateway to stop; off the live list.
    let rec = gw.sealed(1).remove(0);
    let live = admin_call(&gw, "GET", "/api/sessions/live", None);
    assert_eq!(live["sessions"], serde_json::json!([]), "{live}");
    assert_terminated(
        &gw,
        &rec,
        "terminate",
        "terminated by admin-token: unexpected console change",
        "unexpected console change",
    );
    stop(&gw);
}

/// A page that sets its CSP in `<meta>` elements only (tests/web/console-server.mjs `/meta-csp`:
/// scripts by the page's nonce, connections to another host but not to the page's origin) keeps
/// its policies, widened for the recorder alone: the recorder runs and posts, the page's own
/// nonce script runs, nothing is reported as violating a policy, and the heartbeat keeps the
/// session going.
#[test]
fn a_page_with_its_csp_in_meta_elements_is_recorded_and_keeps_its_policy() {
    let c = Console::start();
    // Short enough that a recorder kept from posting would end the session before the last step.
    let gw = gateway_with(&c, "3s", "off");
    let alice = ProxyAccess::alice(&gw, "console");
    let base = format!("https://127.0.0.1:{}", c.console);
    let events_url = format!("{base}/__psmgate/events");
    let results = drive(&alice.input(serde_json::json!({"steps": [
            {"goto": format!("{base}/meta-csp")},
            {"waitFor": "body[data-ran='1']", "timeout": 10000},
            {"sleep": 4500},
            {"eval": "JSON.stringify({marker: document.getElementById('marker').textContent, \
                      violations: window.__violations, \
                      recorder: document.querySelector('script[src*=\"/__psmgate/\"]')?.nonce, \
                      metas: [...document.querySelectorAll('meta[http-equiv]')].map((m) => m.content)})"},
            {"goto": format!("{base}/meta-csp")},
        ]})));
    assert_eq!(results[0]["status"], 200, "{results:?}");
    assert!(
        results[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("meta-csp-visible-text"),
        "{results:?}"
    );
    assert_eq!(
        results[1]["found"], true,
        "the page's script did not run: {results:?}"
    );
    let seen: Value = serde_json::from_str(results[3]["value"].as_str().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {results:?}"));
    assert_eq!(seen["marker"], "page-script-ran", "{seen}");
    assert_eq!(
        seen["violations"],
        serde_json::json!([]),
        "a policy was violated: {seen}"
    );
    // Both policies are kept, each widened for the recorder only: the first by a nonce of its
    // own next to the page's, the second by the event URL.
    let metas: Vec<&str> = seen["metas"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(metas.len(), 2, "{seen}");
    for kept in ["'strict-dynamic'", "object-src 'none'", "base-uri 'none'"] {
        assert!(metas[0].contains(kept), "{kept} lost: {}", metas[0]);
    }
    assert_eq!(metas[0].matches("'nonce-").count(), 2, "{}", metas[0]);
    let nonce = seen["recorder"].as_str().unwrap_or_default();
    assert!(
        !nonce.is_empty() && metas[0].contains(&format!("'nonce-{nonce}'")),
        "the policy does not admit the recorder's nonce {nonce:?}: {}",
        metas[0]
    );
    assert!(!metas[0].contains("__psmgate"), "{}", metas[0]);
    assert!(
        metas[1].contains(&format!(
            "connect-src https://api.example.invalid {events_url}"
        )),
        "{}",
        metas[1]
    );
    for m in &metas {
        assert!(
            !m.contains("'unsafe-inline'") && !m.contains("'unsafe-eval'") && !m.contains(" *"),
            "{m}"
        );
    }
    // The recorder kept reporting: the page loads again instead of the block page.
    assert_eq!(results[4]["status"], 200, "{results:?}; log: {}", gw.log());

    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    let policy = vnc_support::events_of(&rec, "policy");
    assert!(
        !policy.iter().any(|p| p["action"] == "terminated"),
        "{policy:?}"
    );
    let dom: Vec<Value> = vnc_support::events_of(&rec, "dom")
        .into_iter()
        .filter(|d| d["url"].as_str().unwrap_or_default().ends_with("/meta-csp"))
        .collect();
    assert!(
        !dom.is_empty(),
        "no DOM recording of /meta-csp; log: {}",
        gw.log()
    );
    let mut text = String::new();
    collect_text(&Value::Array(dom), &mut text);
    for shown in ["meta-csp-visible-text", "page-script-ran"] {
        assert!(text.contains(shown), "DOM recording lacks {shown:?}");
    }
    gw.assert_verifies(&rec);
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
