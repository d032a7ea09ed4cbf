//! The VNC gateway when something breaks, with real peers: a viewer that leaves in the middle
//! of a screen update, a target that dies while updates flow, and a recording that fails while
//! the admin is typing (fail-closed). Each end must leave a sealed recording that verifies and
//! names the side that ended the session.

mod vnc_support;

use psmgate_e2e::peers::{vncdo, vncdo_with_timeout, DemoApp, X11Vnc, XDisplay};
use std::time::{Duration, Instant};
use vnc_support::{events_of, log_line_time, manifest, now_secs, Gateway, Options, RawViewer};

const W: u32 = 1024;
const H: u32 = 768;

fn target() -> (XDisplay, DemoApp, X11Vnc) {
    let display = XDisplay::start(W, H).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let vnc = X11Vnc::start(&display, None).unwrap();
    (display, app, vnc)
}

#[test]
fn a_viewer_leaving_mid_frame_seals_the_recording_and_the_gateway_keeps_serving() {
    let (_display, app, vnc) = target();
    let gw = Gateway::start(vnc.port(), None);
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    // A full Raw update is W×H×4 bytes; take half of it and hang up.
    v.request_update(false).unwrap();
    let full = usize::from(v.width) * usize::from(v.height) * v.bytes_per_pixel;
    assert!(full >= 1 << 20, "the update must be large: {full} bytes");
    v.read_raw(full / 2).unwrap();
    v.close();

    let rec = gw.sealed(1).remove(0);
    let m = manifest(&rec);
    let reason = m["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("viewer"), "end reason {reason:?}");
    assert_eq!(m["state"], "completed", "{m}");
    gw.assert_verifies(&rec);

    // The gateway still serves: a second session works end to end.
    let o = vncdo(
        &gw.server(),
        Some(&token),
        &["type", "second session", "key", "enter"],
    )
    .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        gw.log()
    );
    app.wait_for_typed("second session", Duration::from_secs(5))
        .unwrap();
    let recs = gw.sealed(2);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        gw.assert_verifies(r);
    }
}

#[test]
fn a_target_dying_while_updates_flow_cuts_the_viewer_and_seals_the_recording() {
    let (_display, _app, vnc) = target();
    let gw = Gateway::start(vnc.port(), None);
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let shots = tempfile::tempdir().unwrap();
    // Full-screen captures back to back: about 20 s of updates if nothing breaks.
    let mut args: Vec<String> = Vec::new();
    for i in 0..40 {
        args.push("capture".into());
        args.push(shots.path().join(format!("{i}.png")).display().to_string());
        args.extend(["pause".into(), "0.5".into()]);
    }
    let server = gw.server();
    let viewer = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let out = vncdo_with_timeout(&server, Some(&token), &args, Duration::from_secs(40));
        (out, started.elapsed())
    });
    // Wait until the viewer has received a few screens, then stop the target.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(shots.path()).unwrap().count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the viewer got no screens: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Instant::now();
    drop(vnc);
    let stopped = killed.elapsed();

    let (out, ran) = viewer.join().unwrap();
    let out = out.unwrap();
    assert!(
        !out.status.success(),
        "the viewer must be cut when the target dies"
    );
    assert!(
        ran < Duration::from_secs(15),
        "the viewer was not cut promptly: it ran {ran:?} (target stopped in {stopped:?})"
    );
    let rec = gw.sealed(1).remove(0);
    let m = manifest(&rec);
    let reason = m["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("target"), "end reason {reason:?}");
    gw.assert_verifies(&rec);
}

#[test]
fn a_failing_recording_disconnects_the_typing_viewer_within_two_seconds() {
    let (_display, app, vnc) = target();
    let Some(mut gw) = Gateway::on_tmpfs(vnc.port(), Options::default(), "16m") else {
        eprintln!("skipping: cannot mount a tmpfs here (not root)");
        return;
    };
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    let rec = gw.recording_started();
    v.request_update(false).unwrap();

    // Type for a while, then fill the disk, and keep typing until the gateway hangs up.
    let started = Instant::now();
    let mut filled = false;
    let mut n = 0u32;
    let closed_at = loop {
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "the viewer was not disconnected: {}",
            gw.log()
        );
        if !filled && started.elapsed() > Duration::from_millis(2000) {
            psmgate_e2e::fill_disk(&gw.data().join("filler"));
            filled = true;
        }
        n += 1;
        let key = if n.is_multiple_of(30) {
            0xff0d // Enter
        } else {
            u32::from(b'a' + (n % 26) as u8)
        };
        if v.tap(key).is_err() || v.request_update(true).is_err() {
            break now_secs();
        }
        match v.next_event(Duration::from_millis(30)) {
            Ok(_) => {}
            Err(_) => break now_secs(),
        }
    };
    assert!(filled, "the session ended before the disk was full");
    assert!(app.typed().len() > 10, "typing reached the target");

    // The failure is logged with its reason, and the viewer was cut within 2 s of it.
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("recording failed; ending session"))
        .unwrap_or_else(|| panic!("no failure line in the log:\n{log}"));
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        log.contains("recording failed; disconnecting the client (fail-closed)"),
        "the relay logs the disconnect:\n{log}"
    );
    let failed_at = log_line_time(line).unwrap_or_else(|| panic!("no time in {line:?}"));
    let delay = closed_at - failed_at;
    assert!(
        (-0.05..2.0).contains(&delay),
        "viewer closed {delay:.3} s after the failure"
    );

    // With space again, the next start recovers a recording that verifies.
    gw.tmpfs().unwrap().resize("64m");
    gw.restart();
    let recs = gw.sealed(1);
    assert_eq!(recs, std::slice::from_ref(&rec));
    let m = manifest(&rec);
    assert!(m["state"] == "failed" || m["state"] == "interrupted", "{m}");
    gw.assert_verifies(&rec);
    // What was typed before the disk filled up is in the recovered transcript.
    let keys = events_of(&rec, "key").len() + events_of(&rec, "text").len();
    assert!(keys > 0, "no typing survived: {m}");
}
