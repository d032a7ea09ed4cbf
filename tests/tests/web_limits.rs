//! Web proxy sessions under the grant-expiry limit of the policy, with real peers: curl as the
//! browser, psmgate's web proxy intercepting TLS with its CA, and the test console
//! (tests/web/console-server.mjs) as the web server.
//!
//! Under a rule with `end_at_grant_expiry = true` (the default) a web session ends when its
//! grant expires: its requests get the proxy's block page naming `grant-expiry`, the transcript
//! gets one `policy` event and the sealed recording verifies. Under a rule with
//! `end_at_grant_expiry = false` the session outlives its grant.
//!
//! Every request is a new curl process, hence a new CONNECT carrying the proxy credentials
//! (`alice@console` and the access token): each one is signed in anew, which is what a browser
//! opening new connections does.

mod vnc_support;
mod web_support;

use psmgate_e2e::recordings;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vnc_support::{events_of, manifest, Gateway};
use web_support::{
    console_config, gateway_ca, start_web_gateway, start_web_gateway_with_users, stop, Console,
};

/// A resource the console serves as CSS (`/console.css`): never HTML, so it gets no in-page
/// recorder, and the session needs no recorder heartbeat.
const RESOURCE: &str = "/console.css";
/// What the console's stylesheet starts with.
const RESOURCE_TEXT: &str = "body{font-family:sans-serif";
/// The grant's lifetime.
const TTL: Duration = Duration::from_secs(6);
/// Time between the starts of two requests.
const EVERY: Duration = Duration::from_millis(300);
/// The rule id of the grant-expiry limit.
const RULE: &str = "grant-expiry";

/// `[web]` settings: no video (one Chromium fewer), idle and heartbeat limits far away.
const WEB: &str = "idle_timeout = \"10m\"\nheartbeat_timeout = \"1m\"\nvideo = \"off\"\n";

/// Alice's rules when her console sessions outlive their grants: the first rule covering her
/// and the console (file order) says so; the catch-all after it would not.
const OUTLIVING_RULES: &str = r#"[users.alice]
roles = ["admin"]

[[rules]]
id = "alice-console-outlives-grant"
users = ["alice"]
targets = ["console"]
end_at_grant_expiry = false

[[rules]]
id = "alice-everything"
users = ["alice"]
targets = "*"
"#;

/// One request through the proxy, as curl saw it.
#[derive(Debug)]
struct Reply {
    /// When it was started, after the grant was asked for.
    start: Duration,
    /// When curl had finished, after the grant was asked for.
    end: Duration,
    /// curl's exit code.
    exit: Option<i32>,
    /// The status of the CONNECT (`%{http_connect}`).
    connect: String,
    /// The status of the request inside the tunnel (`%{http_code}`).
    status: String,
    /// The `x-psmgate-rule` header, if any.
    rule: Option<String>,
    body: String,
}

impl Reply {
    /// The console's stylesheet, passed through.
    fn is_upstream(&self) -> bool {
        self.exit == Some(0) && self.status == "200" && self.body.starts_with(RESOURCE_TEXT)
    }

    /// The proxy's block page naming `rule`.
    fn is_blocked_by(&self, rule: &str) -> bool {
        self.exit == Some(0)
            && self.status == "403"
            && self.rule.as_deref() == Some(rule)
            && self
                .body
                .contains(&format!("<code id=\"psmgate-rule\">{rule}</code>"))
    }

    /// A one-line description for failure messages.
    fn line(&self) -> String {
        let body: String = self.body.chars().take(120).collect();
        format!(
            "{:6.2}-{:6.2} s exit {:?} connect {} status {} rule {:?}: {body:?}",
            self.start.as_secs_f64(),
            self.end.as_secs_f64(),
            self.exit,
            self.connect,
            self.status,
            self.rule
        )
    }
}

/// Every reply, one per line.
fn listing(replies: &[Reply]) -> String {
    replies.iter().map(|r| r.line() + "\n").collect()
}

/// What alice's curl needs to go through the gateway's web proxy.
struct Browser {
    proxy: String,
    credentials: String,
    gateway_ca: std::path::PathBuf,
    url: String,
    dir: tempfile::TempDir,
}

impl Browser {
    fn new(gw: &Gateway, c: &Console, token: &str) -> Browser {
        Browser {
            proxy: format!("http://127.0.0.1:{}", gw.web_port),
            credentials: format!("alice@console:{token}"),
            gateway_ca: gateway_ca(gw),
            url: format!("https://127.0.0.1:{}{RESOURCE}", c.console),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Gets the resource through the proxy; times are taken from `t0`.
    fn get(&self, t0: Instant) -> Reply {
        let (headers, body) = (
            self.dir.path().join("headers"),
            self.dir.path().join("body"),
        );
        let _ = std::fs::remove_file(&headers);
        let _ = std::fs::remove_file(&body);
        let start = t0.elapsed();
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-x"])
            .arg(&self.proxy)
            .arg("--proxy-user")
            .arg(&self.credentials)
            .arg("--cacert")
            .arg(&self.gateway_ca)
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_connect} %{http_code}"])
            .arg(&self.url)
            .output()
            .expect("curl is needed for the web tests (scripts/install-deps.sh)");
        let end = t0.elapsed();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (connect, status) = out.split_once(' ').unwrap_or((out.as_str(), ""));
        let headers = std::fs::read_to_string(&headers).unwrap_or_default();
        let rule = headers.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-psmgate-rule")
                .then(|| value.trim().to_owned())
        });
        let mut body = std::fs::read_to_string(&body).unwrap_or_default();
        if !o.status.success() {
            body.push_str(&String::from_utf8_lossy(&o.stderr));
        }
        Reply {
            start,
            end,
            exit: o.status.code(),
            connect: connect.to_owned(),
            status: status.to_owned(),
            rule,
            body,
        }
    }

    /// Gets the resource every [`EVERY`] until `until` after `t0`.
    fn keep_getting(&self, t0: Instant, until: Duration) -> Vec<Reply> {
        let mut replies = Vec::new();
        while t0.elapsed() < until {
            let next = t0.elapsed() + EVERY;
            replies.push(self.get(t0));
            if let Some(wait) = next.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        replies
    }
}

/// How many requests for the resource reached the console.
fn upstream_requests(c: &Console) -> usize {
    let state = c.state();
    state["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("the console's state: {state}"))
        .iter()
        .filter(|r| r["path"] == RESOURCE)
        .count()
}

/// The one recording of `gw`, unsealed.
fn live_recording(gw: &Gateway) -> std::path::PathBuf {
    let recs = recordings(&gw.data());
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(
        !recs[0].join("manifest.json").exists(),
        "the session's recording was sealed: {}",
        gw.log()
    );
    recs[0].clone()
}

/// How many requests for the resource the sealed recording has passed on to the console (`http`
/// events with status 200).
fn passed_on(rec: &Path) -> usize {
    events_of(rec, "http")
        .iter()
        .filter(|e| e["status"] == 200 && e["url"].as_str().is_some_and(|u| u.ends_with(RESOURCE)))
        .count()
}

/// The sealed recording's end reason.
fn end_reason(rec: &Path) -> String {
    manifest(rec)["end_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Grants alice the console for [`TTL`]: when it was asked for, how long granting took (the
/// grant expires between `issued + TTL` and `issued + granted + TTL`), and the token.
fn grant_for_ttl(gw: &Gateway) -> (Instant, Duration, String) {
    let issued = Instant::now();
    let token = gw.grant("console", &["--ttl", &format!("{}s", TTL.as_secs())]);
    let granted = issued.elapsed();
    assert!(
        granted < Duration::from_secs(3),
        "granting took {granted:?}"
    );
    (issued, granted, token)
}

#[test]
fn a_web_session_ends_when_its_grant_expires() {
    let c = Console::start();
    let gw = start_web_gateway(&console_config(&c, WEB, ""));
    let (issued, granted, token) = grant_for_ttl(&gw);
    let browser = Browser::new(&gw, &c, &token);
    let replies = browser.keep_getting(issued, granted + TTL + Duration::from_secs(3));
    let all = listing(&replies);
    println!("grant of {} s issued at 0 s:\n{all}", TTL.as_secs());

    // Before the expiry every request reaches the console.
    let before: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.end + Duration::from_millis(500) < TTL)
        .collect();
    assert!(before.len() >= 5, "too few requests before expiry:\n{all}");
    assert!(
        before.iter().all(|r| r.is_upstream()),
        "a request failed before the grant expired:\n{all}"
    );
    // Then the block page naming the rule, and only that from the first one on.
    let first_blocked = replies
        .iter()
        .position(|r| !r.is_upstream())
        .unwrap_or_else(|| panic!("the session outlived its grant:\n{all}"));
    assert!(
        replies[first_blocked..]
            .iter()
            .all(|r| r.is_blocked_by(RULE)),
        "after the expiry, requests get the block page naming {RULE}:\n{all}"
    );
    let blocked = &replies[first_blocked];
    assert!(
        blocked.end + Duration::from_millis(500) >= TTL,
        "blocked before the grant expired:\n{all}"
    );
    // The last request passed on started at most 1.5 s after the grant's expiry (requests
    // start every 300 ms).
    assert!(
        first_blocked > 0
            && replies[first_blocked - 1].start <= granted + TTL + Duration::from_millis(1500),
        "the session went on for more than 1.5 s past its grant:\n{all}"
    );
    assert!(
        replies.len() - first_blocked >= 3,
        "too few requests after the expiry:\n{all}"
    );
    // Blocked requests never reached the console.
    assert_eq!(
        upstream_requests(&c),
        first_blocked,
        "requests the console saw; replies:\n{all}"
    );

    // The recording is sealed with the policy's reason, one `policy` event, and verifies.
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let policy = events_of(&rec, "policy");
    assert_eq!(policy.len(), 1, "{policy:?}");
    assert_eq!(policy[0]["rule"], RULE, "{policy:?}");
    assert_eq!(policy[0]["action"], "terminated", "{policy:?}");
    let reason = end_reason(&rec);
    assert!(
        reason.contains("ended by policy") && reason.contains("grant expired"),
        "{reason}"
    );
    assert_eq!(
        passed_on(&rec),
        first_blocked,
        "exchanges recorded; replies:\n{all}"
    );
}

#[test]
fn a_web_session_outlives_its_grant_when_the_rule_says_so() {
    let c = Console::start();
    let gw = start_web_gateway_with_users(&console_config(&c, WEB, ""), OUTLIVING_RULES);
    let (issued, granted, token) = grant_for_ttl(&gw);
    let browser = Browser::new(&gw, &c, &token);
    let past_expiry = granted + TTL + Duration::from_secs(4);
    let replies = browser.keep_getting(issued, past_expiry + Duration::from_millis(500));
    let all = listing(&replies);
    println!("grant of {} s issued at 0 s:\n{all}", TTL.as_secs());

    // Every request reached the console, well past the grant's expiry.
    assert!(
        replies.iter().all(Reply::is_upstream),
        "a request failed although the rule lets the session outlive its grant:\n{all}"
    );
    assert!(
        replies.iter().any(|r| r.start >= past_expiry),
        "no request 4 s past the grant's expiry:\n{all}"
    );
    assert!(replies.len() >= 15, "too few requests:\n{all}");
    assert_eq!(
        upstream_requests(&c),
        replies.len(),
        "requests the console saw; replies:\n{all}"
    );
    // The session is still live: its recording is open and nothing stopped it.
    live_recording(&gw);
    let log = gw.log();
    assert!(
        !log.contains("web session stopped") && !log.contains(RULE),
        "{log}"
    );

    // Stopped with the gateway: sealed without a `policy` event, and it verifies.
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let policy = events_of(&rec, "policy");
    assert!(policy.is_empty(), "{policy:?}");
    let reason = end_reason(&rec);
    assert!(reason.contains("shutting down"), "{reason}");
    assert_eq!(
        passed_on(&rec),
        replies.len(),
        "exchanges recorded; replies:\n{all}"
    );
}

#[test]
fn a_locked_web_session_gets_the_lock_page_until_resumed() {
    let c = Console::start();
    let gw = start_web_gateway(&console_config(&c, WEB, ""));
    let t0 = Instant::now();
    let token = gw.grant("console", &["--ttl", "10m"]);
    let browser = Browser::new(&gw, &c, &token);
    let first = browser.get(t0);
    assert!(first.is_upstream(), "{}", first.line());
    let (_, live) = gw.admin_api("GET", "/api/sessions/live", None);
    let id = live["sessions"][0]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no live web session: {live}"))
        .to_owned();

    let (status, body) = gw.admin_api(
        "POST",
        &format!("/api/sessions/live/{id}/lock"),
        Some(r#"{"reason":"review the change first"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let before = upstream_requests(&c);
    let locked = browser.get(t0);
    assert!(locked.is_blocked_by("lock"), "{}", locked.line());
    assert!(
        locked.body.contains("review the change first"),
        "{}",
        locked.line()
    );
    assert_eq!(
        upstream_requests(&c),
        before,
        "a request went through while locked"
    );

    let (status, body) = gw.admin_api("POST", &format!("/api/sessions/live/{id}/resume"), None);
    assert_eq!(status, 200, "{body}");
    let after = browser.get(t0);
    assert!(after.is_upstream(), "{}", after.line());
    let rec = live_recording(&gw);
    stop(&gw);
    let rec = gw
        .sealed(1)
        .into_iter()
        .find(|r| r == &rec)
        .expect("the session's recording is sealed");
    gw.assert_verifies(&rec);
    let changes: Vec<(String, String)> = events_of(&rec, "policy")
        .iter()
        .map(|e| (e["rule"].to_string(), e["action"].to_string()))
        .collect();
    assert_eq!(
        changes,
        [
            ("\"lock\"".to_owned(), "\"locked\"".to_owned()),
            ("\"lock\"".to_owned(), "\"resumed\"".to_owned())
        ]
    );
    assert_eq!(passed_on(&rec), 2, "the requests before and after the lock");
}

/// Alice's console rule with an idle limit of [`IDLE`].
const IDLE_RULES: &str = r#"[users.alice]
roles = ["admin"]

[[rules]]
id = "alice-console-idle"
users = ["alice"]
targets = ["console"]
idle_timeout = "10s"
"#;

/// The rule's idle limit.
const IDLE: Duration = Duration::from_secs(10);

#[test]
fn a_web_session_without_user_input_ends_at_the_rules_idle_timeout() {
    // Requests alone are not the user's input (a console polls by itself): curl fetching the
    // stylesheet every 300 ms makes requests but no page reports a click, key or scroll.
    let c = Console::start();
    let gw = start_web_gateway_with_users(&console_config(&c, WEB, ""), IDLE_RULES);
    let t0 = Instant::now();
    let token = gw.grant("console", &["--ttl", "10m"]);
    let browser = Browser::new(&gw, &c, &token);
    let replies = browser.keep_getting(t0, IDLE + Duration::from_secs(5));
    let all = listing(&replies);
    let first_blocked = replies
        .iter()
        .position(|r| !r.is_upstream())
        .unwrap_or_else(|| panic!("the session outlived its idle limit:\n{all}"));
    assert!(first_blocked > 0, "the first request was refused:\n{all}");
    let blocked = &replies[first_blocked];
    // The session starts with the first request (after the grant); the limit is checked
    // every second.
    assert!(
        blocked.end >= IDLE && blocked.start <= IDLE + Duration::from_secs(4),
        "blocked at {:?}:\n{all}",
        blocked.start
    );
    assert!(
        replies[first_blocked..]
            .iter()
            .all(|r| r.is_blocked_by("idle-timeout")),
        "after the idle limit every request gets the block page:\n{all}"
    );
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let policy = events_of(&rec, "policy");
    assert_eq!(policy.len(), 1, "{policy:?}");
    assert_eq!(policy[0]["rule"], "idle-timeout", "{policy:?}");
}

#[test]
fn typing_on_the_page_keeps_a_web_session_within_its_idle_timeout() {
    // The same rule, a real browser: what the admin types on the page (reported by the in-page
    // recorder) is input, so 16 s of typing every 2 s outlive the 10 s idle limit.
    let c = Console::start();
    let gw = start_web_gateway_with_users(&console_config(&c, WEB, ""), IDLE_RULES);
    let alice = web_support::ProxyAccess::alice(&gw, "console").trusting(&c.ca);
    let login = format!("https://127.0.0.1:{}/login", c.console);
    let mut steps = vec![serde_json::json!({"goto": login})];
    for i in 0..8 {
        steps.push(
            serde_json::json!({"fill": "input[name=username]", "value": format!("alice{i}")}),
        );
        steps.push(serde_json::json!({"sleep": 2000}));
    }
    steps.push(serde_json::json!({"goto": login}));
    let results = web_support::drive(&alice.input(serde_json::json!({ "steps": steps })));
    let last = results.last().unwrap();
    assert_eq!(
        last["status"], 200,
        "the session ended while the admin typed: {results:?}"
    );
    stop(&gw);
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let policy = events_of(&rec, "policy");
    assert!(policy.is_empty(), "{policy:?}");
}
