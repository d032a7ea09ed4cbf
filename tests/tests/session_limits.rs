//! Session limits from the policy, with real peers (TigerVNC Xvnc as the target, a raw RFB
//! viewer): a session ends when its grant expires and when it sees no input for the rule's
//! `idle_timeout`. Each end cuts the viewer, leaves a `policy` event naming the limit and a
//! sealed recording that verifies.

mod vnc_support;

use psmgate_e2e::peers::Xvnc;
use std::time::{Duration, Instant};
use vnc_support::{events_of, manifest, Gateway, Options, RawViewer};

const LIMIT_RULES: &str = "[users.carol]\n\n[users.dave]\n\n\
    [[rules]]\nid = \"carol-expiry\"\nusers = [\"carol\"]\ntargets = [\"lab-vnc\"]\n\n\
    [[rules]]\nid = \"dave-idle\"\nusers = [\"dave\"]\ntargets = [\"lab-vnc\"]\nidle_timeout = \"10s\"\n";

fn gateway(target: &Xvnc) -> Gateway {
    Gateway::start_with(
        target.port(),
        Options {
            extra_config: LIMIT_RULES,
            ..Options::default()
        },
    )
}

fn grant(gw: &Gateway, user: &str, ttl: &str) -> String {
    let o = gw.psmgate(&[
        "access", "grant", "--user", user, "--target", "lab-vnc", "--ttl", ttl,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// The one `policy` event of the sealed recording, and the recording's end reason.
fn ending(gw: &Gateway) -> (serde_json::Value, String) {
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let m = manifest(&rec);
    let mut policy = events_of(&rec, "policy");
    assert_eq!(policy.len(), 1, "{policy:?}");
    (
        policy.remove(0),
        m["end_reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_session_ends_when_its_grant_expires() {
    let target = Xvnc::start(640, 480, None).unwrap();
    let gw = gateway(&target);
    let issued = Instant::now();
    let token = grant(&gw, "carol", "8s");
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    let connected = issued.elapsed();
    assert!(
        connected < Duration::from_secs(6),
        "connecting took {connected:?}"
    );
    // The viewer keeps the session busy with input; only the expiry may end it.
    let mut closed = None;
    while issued.elapsed() < Duration::from_secs(20) {
        let _ = v.tap(0x61);
        let _ = v.request_update(true);
        if v.wait_closed(Duration::from_millis(300)).is_some() {
            closed = Some(issued.elapsed());
            break;
        }
    }
    let closed = closed.expect("the session outlived its grant by 12 s");
    println!(
        "grant of 8 s: viewer cut {:.2} s after issue",
        closed.as_secs_f64()
    );
    assert!(
        closed >= Duration::from_secs(7) && closed < Duration::from_millis(9500),
        "cut {closed:?} after an 8 s grant was issued"
    );
    let (event, reason) = ending(&gw);
    assert_eq!(event["rule"], "grant-expiry", "{event}");
    assert_eq!(event["action"], "terminated", "{event}");
    assert!(reason.contains("grant expired"), "{reason}");
}

#[test]
fn a_session_without_input_ends_after_the_idle_timeout() {
    let target = Xvnc::start(640, 480, None).unwrap();
    let gw = gateway(&target);
    let token = grant(&gw, "dave", "1h");
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    // Input for 4 s, then none.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        v.tap(0x62).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let last_input = Instant::now();
    let closed = v
        .wait_closed(Duration::from_secs(25))
        .map(|_| last_input.elapsed())
        .expect("the idle session was not ended");
    println!(
        "idle_timeout of 10 s: viewer cut {:.2} s after the last input",
        closed.as_secs_f64()
    );
    assert!(
        closed >= Duration::from_millis(9500) && closed < Duration::from_secs(13),
        "cut {closed:?} after the last input"
    );
    let (event, reason) = ending(&gw);
    assert_eq!(event["rule"], "idle-timeout", "{event}");
    assert!(reason.contains("no input for 10 s"), "{reason}");
}
