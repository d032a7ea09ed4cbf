//! The overview and on-call dashboards end to end: `psmgate serve --no-tls` on a data folder
//! with two demo recordings, a refused VNC credential, a VNC session (TigerVNC Xvnc as the
//! target, a raw RFB viewer) terminated through the API and one left running; `/api/dashboard`
//! and `/api/oncall` count them, and headless Debian Chromium (tests/web/dashboard-flow.mjs)
//! shows the same figures in the KPI tiles and SVG charts, the live session's card with its
//! thumbnail, and the terminated session with its reason.

mod vnc_support;

use psmgate_e2e::peers::Xvnc;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vnc_support::{Gateway, RawViewer};

const TERMINATE_REASON: &str = "dashboard check: copying the customer table";
/// The days the overview covers by default.
const DAYS: usize = 30;

/// One HTTP/1.1 request to the admin listener with the admin token; the status and body.
fn get(port: u16, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.unwrap_or("");
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, raw[split + 4..].to_vec())
}

/// A JSON API call with the admin token that must answer 200.
fn api(gw: &Gateway, token: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let (status, body) = get(gw.admin_port, token, method, path, body);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{method} {path}: {text}\n{}", gw.log());
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// The viewer's session is up: an update request is answered.
fn still_up(v: &mut RawViewer) {
    v.request_update(false).unwrap();
    assert!(
        v.next_event(Duration::from_secs(5)).unwrap().is_some(),
        "the session got no update"
    );
}

/// The one live session's id (waits until exactly one runs).
fn only_live(gw: &Gateway, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = api(gw, token, "GET", "/api/sessions/live", None);
        let sessions = live["sessions"].as_array().unwrap();
        if sessions.len() == 1 {
            return sessions[0]["session_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "live sessions: {live}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A ratio as the overview shows it ("100 %", "66.7 %", "—").
fn pct(r: &Value) -> String {
    match r.as_f64() {
        Some(r) => format!("{} %", (r * 1000.0).round() / 10.0),
        None => "—".into(),
    }
}

/// A byte count shown in binary units ("6.33 KiB"): its value in bytes, read back.
fn shown_bytes(text: &str) -> f64 {
    let (n, unit) = text.split_once(' ').unwrap_or_else(|| panic!("{text}"));
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other} in {text}"),
    };
    n.parse::<f64>().unwrap_or_else(|e| panic!("{text}: {e}")) * scale
}

#[test]
fn the_dashboards_show_in_a_browser_what_the_api_counts() {
    let started = Instant::now();
    let target = Xvnc::start(640, 480, None).unwrap();
    let gw = Gateway::start(target.port(), None);
    let admin = std::fs::read_to_string(gw.data().join("admin-token")).unwrap();
    let admin = admin.trim();
    let port = gw.admin_port;

    // Two demo recordings, written by another process into the same data folder.
    for seed in ["1", "2"] {
        let o = gw.psmgate(&[
            "demo",
            "--seconds",
            "2",
            "--width",
            "320",
            "--height",
            "240",
            "--seed",
            seed,
        ]);
        assert!(o.status.success(), "demo: {}", psmgate_e2e::text(&o));
    }
    // A refused VNC credential.
    assert!(RawViewer::connect(gw.vnc_port, "not-a-token").is_err());

    // Session A: terminated through the API.
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut a = RawViewer::connect(gw.vnc_port, &token).unwrap();
    still_up(&mut a);
    let a_id = only_live(&gw, admin);
    let body = json!({ "reason": TERMINATE_REASON }).to_string();
    let r = api(
        &gw,
        admin,
        "POST",
        &format!("/api/sessions/live/{a_id}/terminate"),
        Some(&body),
    );
    assert_eq!(r["terminated"], a_id.as_str(), "{r}");
    assert!(
        a.wait_closed(Duration::from_secs(10)).is_some(),
        "session A was not cut"
    );
    gw.sealed(3);

    // Session B: left running.
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut b = RawViewer::connect(gw.vnc_port, &token).unwrap();
    still_up(&mut b);
    let b_id = only_live(&gw, admin);
    assert_ne!(a_id, b_id);

    // One replay: a demo recording's manifest, then its first media segment.
    let rows = api(&gw, admin, "GET", "/api/recordings", None);
    let demo = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["protocol"] == "demo")
        .unwrap_or_else(|| panic!("no demo recording listed: {rows}"));
    let demo_id = demo["id"].as_str().unwrap();
    let manifest = api(
        &gw,
        admin,
        "GET",
        &format!("/api/recordings/{demo_id}/manifest"),
        None,
    );
    let segment = manifest["periods"][0]["segments"][0]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("no segment: {manifest}"));
    let (status, bytes) = get(
        port,
        admin,
        "GET",
        &format!("/api/recordings/{demo_id}/files/{segment}"),
        None,
    );
    assert_eq!(status, 200);
    assert!(!bytes.is_empty());

    // The overview counts them once A's recording is verified.
    let deadline = Instant::now() + Duration::from_secs(15);
    let d = loop {
        let d = api(&gw, admin, "GET", "/api/dashboard?days=30", None);
        if d["integrity"]["verified"] == 3 {
            break d;
        }
        assert!(Instant::now() < deadline, "recordings not verified: {d}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("dashboard: {d}");
    assert_eq!(d["period"]["days"], 30);
    assert_eq!(d["sessions_total"], 4, "{d}");
    assert_eq!(
        d["coverage"]["sessions_by_state"],
        json!({ "completed": 3, "recording": 1 })
    );
    assert_eq!(
        (&d["coverage"]["admitted"], &d["coverage"]["recorded"]),
        (&json!(2), &json!(2)),
        "the two VNC sessions (the demos ran in another process)"
    );
    assert_eq!(d["coverage"]["ratio"], 1.0);
    assert_eq!(
        (
            &d["integrity"]["failed"],
            &d["integrity"]["unverified"],
            &d["integrity"]["ratio"]
        ),
        (&json!(0), &json!(1), &json!(1.0))
    );
    assert_eq!(d["live_sessions"], 1);
    assert_eq!(
        d["enforcement_totals"],
        json!({ "terminated": 1, "policy": 0, "denied": 0, "auth_failed": 1 })
    );
    assert_eq!(d["time_to_replay"]["samples"], 1, "{d}");
    let days = d["sessions_per_day"].as_array().unwrap();
    assert_eq!(days.len(), DAYS);
    assert_eq!(days[DAYS - 1]["sessions"], 4, "all of them today");
    let bytes_total = d["bytes_total"].as_u64().unwrap();
    let rows = api(&gw, admin, "GET", "/api/recordings", None);
    let listed: u64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum();
    assert!(bytes_total > 0);
    // Every recording is from today: what is stored now is what the period recorded.
    assert_eq!(d["bytes_stored"], bytes_total, "{d}");
    assert_eq!(
        d["bytes_per_day"][DAYS - 1]["cumulative"],
        bytes_total,
        "{d}"
    );
    // The recordings list holds the same bytes (a live row is written at its start and at its
    // seal, so B's does not change meanwhile).
    assert_eq!(listed, bytes_total, "{rows}");
    let names = |k: &str| -> Vec<(String, u64)> {
        d[k].as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["sessions"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let mut users = names("top_users");
    users.sort();
    assert_eq!(users, [("alice".into(), 2), ("demo".into(), 2)]);
    let mut targets = names("top_targets");
    targets.sort();
    assert_eq!(
        targets,
        [("lab-vnc".into(), 2), ("synthetic-desktop".into(), 2)]
    );
    // Bad input and no credentials.
    assert_eq!(
        get(port, admin, "GET", "/api/dashboard?days=0", None).0,
        400
    );
    assert_eq!(get(port, "", "GET", "/api/dashboard", None).0, 401);
    assert_eq!(get(port, "", "GET", "/api/oncall", None).0, 401);

    // The on-call list: B live with its thumbnail, A terminated with the reason.
    let oncall = api(&gw, admin, "GET", "/api/oncall", None);
    assert_eq!(oncall["live"].as_array().unwrap().len(), 1, "{oncall}");
    assert_eq!(
        oncall["live"][0]["thumbnail"],
        format!("/api/sessions/live/{b_id}/thumbnail")
    );
    let recent = oncall["recent"].as_array().unwrap();
    let of_a: Vec<&Value> = recent.iter().filter(|i| i["session_id"] == a_id).collect();
    assert_eq!(of_a.len(), 1, "one item for A: {oncall}");
    assert_eq!(of_a[0]["kind"], "terminated");
    assert_eq!(of_a[0]["reason"], TERMINATE_REASON);
    assert_eq!(of_a[0]["actor"], "admin-token");
    assert_eq!(of_a[0]["target"], "lab-vnc");
    assert_eq!(of_a[0]["user"], "alice");
    assert!(
        recent.iter().any(|i| i["kind"] == "auth_failed"),
        "{oncall}"
    );

    // The same in the browser.
    let mut input = json!({
        "base": format!("http://127.0.0.1:{port}"),
        "token": admin,
        "live": b_id,
        "terminated": a_id,
        "timeout": 15000,
    });
    // PSMGATE_TEST_SCREENSHOTS=DIR keeps pictures of both views.
    if let Some(dir) = std::env::var_os("PSMGATE_TEST_SCREENSHOTS") {
        input["screenshots"] = Path::new(&dir).display().to_string().into();
    }
    let o = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dashboard-flow.mjs"))
        .arg(input.to_string())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let seen: Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        o.status.success() && seen["step"] == "done",
        "dashboard-flow.mjs: {out}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        gw.log()
    );
    println!("browser: {seen}");
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    assert_eq!(seen["default_view"], "overview");

    // KPI tiles.
    let kpi = |k: &str| seen["kpis"][k]["value"].as_str().unwrap().to_owned();
    assert_eq!(kpi("coverage"), pct(&d["coverage"]["ratio"]));
    assert_eq!(kpi("coverage"), "100 %");
    assert_eq!(kpi("integrity"), pct(&d["integrity"]["ratio"]));
    assert_eq!(kpi("live"), "1");
    let shown = shown_bytes(&kpi("storage"));
    assert!(
        (shown - bytes_total as f64).abs() <= bytes_total as f64 * 0.01,
        "storage tile {} for {bytes_total} bytes",
        kpi("storage")
    );
    let replay = d["time_to_replay"]["median_ms"].as_f64().unwrap();
    let replay_text = if replay < 1000.0 {
        format!("{} ms", replay.round())
    } else {
        format!("{replay:.2} s")
    };
    assert_eq!(kpi("replay"), replay_text);
    assert!(
        seen["kpis"]["integrity"]["note"]
            .as_str()
            .unwrap()
            .contains("3 verified"),
        "{seen}"
    );

    // Charts: SVG with a title and a label, the API's figures, a data table each.
    let chart = |id: &str| &seen["charts"][id];
    for id in [
        "chart-enforcement",
        "chart-sessions",
        "chart-storage",
        "chart-top-users",
        "chart-top-targets",
    ] {
        let c = chart(id);
        assert_eq!(c["role"], "img", "{id}: {c}");
        assert!(
            !c["title"].as_str().unwrap_or_default().is_empty(),
            "{id}: {c}"
        );
        assert!(
            !c["label"].as_str().unwrap_or_default().is_empty(),
            "{id}: {c}"
        );
    }
    let sessions = chart("chart-sessions");
    assert_eq!(sessions["bars"], DAYS, "one bar a day: {sessions}");
    assert_eq!(sessions["values"], d["sessions_total"]);
    assert_eq!(sessions["table_rows"], DAYS);
    let enforcement = chart("chart-enforcement");
    let nonzero = d["enforcement_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|day| day["counts"].as_object().unwrap().values())
        .filter(|n| n.as_u64().unwrap() > 0)
        .count();
    assert_eq!(enforcement["bars"], nonzero, "{enforcement}");
    assert_eq!(enforcement["values"], 2);
    assert_eq!(
        enforcement["series"],
        json!({ "terminated": 1, "auth_failed": 1 })
    );
    assert_eq!(enforcement["table_rows"], DAYS);
    let storage = chart("chart-storage");
    assert_eq!(
        (&storage["points"], &storage["line_points"]),
        (&json!(DAYS), &json!(DAYS))
    );
    assert_eq!(storage["last_point"], bytes_total);
    for (id, key) in [
        ("chart-top-users", "top_users"),
        ("chart-top-targets", "top_targets"),
    ] {
        let api_names: Vec<&str> = d[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let c = chart(id);
        assert_eq!(c["names"], json!(api_names), "{id}: {c}");
        assert_eq!(c["values"], 4, "{id}: {c}");
        assert_eq!(c["table_rows"], api_names.len(), "{id}: {c}");
    }

    // On call: B's card with a 320 px thumbnail that is refreshed, A listed with its reason.
    let card = &seen["card"];
    assert_eq!(card["session"], b_id.as_str());
    assert_eq!(
        (&card["natural_width"], &card["natural_height"]),
        (&json!(320), &json!(240)),
        "{card}"
    );
    assert!(card["sources"].as_u64().unwrap() >= 2, "refreshed: {card}");
    assert_eq!(card["watch"], format!("/player/?id={b_id}"));
    assert_eq!(card["terminate"], true);
    let rows: Vec<&Value> = seen["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["session"] == a_id)
        .collect();
    assert_eq!(rows.len(), 1, "{seen}");
    assert_eq!(rows[0]["kind"], "terminated");
    assert_eq!(rows[0]["reason"], TERMINATE_REASON);
    assert!(
        rows[0]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "admin-token"),
        "{}",
        rows[0]
    );
    assert_eq!(rows[0]["player"], format!("/player/?id={a_id}"));

    b.close();
    println!(
        "dashboards checked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
