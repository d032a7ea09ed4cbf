//! Lock and resume of a live VNC session, with real peers (x11vnc on Xvfb with an xterm as the
//! target, a raw RFB viewer through psmgate, the admin API over HTTP): while locked, what the
//! user types never reaches the target, a key held when the lock came is still released on
//! the target, and after resume typing works again. The transcript carries the lock and the
//! resume as `policy` events, and nothing typed while locked.

mod vnc_support;

use psmgate::vnc::ServerEvent;
use psmgate_e2e::peers::{DemoApp, X11Vnc, XDisplay};
use serde_json::Value;
use std::time::Duration;
use vnc_support::{events_of, transcript, Gateway, RawViewer};

const SHIFT: u32 = 0xffe1;

fn key(v: &mut RawViewer, keysym: u32, down: bool) {
    let mut m = vec![4, u8::from(down), 0, 0];
    m.extend_from_slice(&keysym.to_be_bytes());
    v.send(&m).unwrap();
}

/// Types `text` and Enter into the target through the viewer.
fn type_line(v: &mut RawViewer, text: &str) {
    for c in text.chars() {
        v.tap(u32::from(c)).unwrap();
    }
    v.tap(0xff0d).unwrap();
}

/// Returns once the gateway has handled everything the viewer sent so far: it handles the
/// viewer's messages in order, and the answer to this first update request comes after them.
fn barrier(v: &mut RawViewer) {
    v.request_update(false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(ServerEvent::UpdateDone { .. }) = v.next_event(Duration::from_secs(1)).unwrap()
        {
            return;
        }
    }
    panic!("no screen update came back");
}

/// The live session listed by the admin API (the only one).
fn live_session(gw: &Gateway) -> Value {
    let (status, live) = gw.admin_api("GET", "/api/sessions/live", None);
    assert_eq!(status, 200, "{live}");
    let sessions = live["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{live}");
    sessions[0].clone()
}

#[test]
fn a_locked_vnc_session_holds_input_back_until_resumed() {
    let display = XDisplay::start(800, 600).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, None).unwrap();
    let gw = Gateway::start(target.port(), None);
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();

    type_line(&mut v, "before");
    app.wait_for_typed("before", Duration::from_secs(5))
        .unwrap();
    let session = live_session(&gw);
    assert!(session["locked"].is_null(), "{session}");
    let id = session["session_id"].as_str().unwrap().to_owned();
    let lock = format!("/api/sessions/live/{id}/lock");
    let resume = format!("/api/sessions/live/{id}/resume");

    // Shift is down on the target when the lock comes.
    key(&mut v, SHIFT, true);
    barrier(&mut v);
    let (status, body) = gw.admin_api("POST", &lock, Some(r#"{"reason":""}"#));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("reason_required"))
    );
    let (status, body) = gw.admin_api("POST", &lock, Some(r#"{"reason":"change window closed"}"#));
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw.admin_api("POST", &lock, Some(r#"{"reason":"again"}"#));
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("already_locked"))
    );
    let session = live_session(&gw);
    assert_eq!(
        session["locked"]["reason"], "change window closed",
        "{session}"
    );

    // Typed while locked: held back. The Shift release still reaches the target.
    type_line(&mut v, "during");
    key(&mut v, SHIFT, false);
    barrier(&mut v);
    let (status, body) = gw.admin_api("POST", &resume, Some("{}"));
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw.admin_api("POST", &resume, Some("{}"));
    assert_eq!((status, body["error"].as_str()), (409, Some("not_locked")));
    assert!(live_session(&gw)["locked"].is_null());

    // Keys reach the target in order: once "after" arrived, "during" would have come first.
    type_line(&mut v, "after");
    let typed = app.wait_for_typed("after", Duration::from_secs(5)).unwrap();
    assert!(
        !typed.contains("during") && !typed.contains("DURING"),
        "{typed:?}"
    );
    assert!(
        !typed.contains("AFTER"),
        "Shift stayed down on the target: {typed:?}"
    );
    v.close();

    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let policy = events_of(&rec, "policy");
    let changes: Vec<(&str, &str)> = policy
        .iter()
        .map(|e| (e["rule"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [("lock", "locked"), ("lock", "resumed")],
        "{policy:?}"
    );
    let detail = policy[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("locked by ") && detail.ends_with(": change window closed"),
        "{detail}"
    );
    let t = transcript(&rec);
    assert!(t.contains("before") && t.contains("after"), "{t}");
    assert!(
        !t.contains("during"),
        "input held back is not recorded: {t}"
    );
    // Both changes are audited.
    let (_, audit) = gw.admin_api("GET", "/api/audit?tail=20", None);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"session_locked") && actions.contains(&"session_resumed"),
        "{actions:?}"
    );
}
