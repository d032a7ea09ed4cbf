//! The real VNC peers talking to each other directly (no psmgate in between): proves that the
//! harness in `psmgate_e2e::peers` starts working targets and a working scripted viewer, so the
//! gateway tests can put psmgate between them. Needs `scripts/install-peers.sh`.

use psmgate_e2e::peers::{
    image_difference, mouse_location, png_size, rfb_hello, screenshot, vncdo, DemoApp, X11Vnc,
    XDisplay, Xvnc,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// How long typed text may take to travel viewer -> server -> X -> xterm -> file.
const TYPED_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest share of pixels in which the viewer's capture may differ from the X server's own
/// screenshot (the pointer, drawn only into the capture, covers about 0.03 %).
const MAX_CAPTURE_DIFFERENCE: f64 = 0.002;

fn show(o: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Types a line, moves the pointer and captures the screen through `server` into `out`;
/// checks vncdo's success and the capture's size, and returns the capture.
fn type_move_capture(
    server: &str,
    password: Option<&str>,
    size: (u32, u32),
    out: &Path,
) -> PathBuf {
    let png = out.join("capture.png");
    let png_arg = png.to_str().expect("temp paths are UTF-8");
    let started = Instant::now();
    let o = vncdo(
        server,
        password,
        &[
            "type",
            "hello psmgate",
            "key",
            "enter",
            "move",
            "100",
            "120",
            "pause",
            "0.2",
            "capture",
            png_arg,
        ],
    )
    .expect("vncdo runs");
    eprintln!("vncdo took {:?}", started.elapsed());
    assert!(o.status.success(), "vncdo failed: {}", show(&o));
    assert_eq!(png_size(&png).expect("capture is a PNG"), size);
    png
}

/// The viewer's capture shows what the X server shows.
fn assert_capture_matches(capture: &Path, display: &XDisplay) {
    let shot = screenshot(display).expect("screenshot");
    assert_eq!(
        png_size(&shot).expect("screenshot is a PNG"),
        display.size()
    );
    let diff = image_difference(capture, &shot).expect("comparable images");
    assert!(
        diff <= MAX_CAPTURE_DIFFERENCE,
        "capture differs from the screen in {:.2} % of the pixels",
        diff * 100.0
    );
}

#[test]
fn x11vnc_without_password() {
    let t0 = Instant::now();
    let display = XDisplay::start(1024, 768).expect("Xvfb");
    let app = DemoApp::start(&display).expect("demo app");
    let vnc = X11Vnc::start(&display, None).expect("x11vnc");
    eprintln!("peers up after {:?}", t0.elapsed());
    assert_eq!(
        rfb_hello(vnc.port()).expect("handshake").security_types,
        [1]
    );

    let out = tempfile::tempdir().expect("temp dir");
    let capture = type_move_capture(&vnc.server(), None, (1024, 768), out.path());
    let typed = app
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the app");
    assert_eq!(typed, "hello psmgate\n");
    assert_eq!(mouse_location(&display).expect("pointer"), (100, 120));
    assert_capture_matches(&capture, &display);
    eprintln!("test body took {:?}", t0.elapsed());
    let t1 = Instant::now();
    drop(vnc);
    drop(app);
    drop(display);
    eprintln!("stopping took {:?}", t1.elapsed());
}

#[test]
fn x11vnc_with_password() {
    let display = XDisplay::start(800, 600).expect("Xvfb");
    let app = DemoApp::start(&display).expect("demo app");
    let vnc = X11Vnc::start(&display, Some("s3cret")).expect("x11vnc");
    let hello = rfb_hello(vnc.port()).expect("handshake");
    assert_eq!(hello.version, "RFB 003.008");
    assert_eq!(hello.security_types, [2]);

    let out = tempfile::tempdir().expect("temp dir");
    type_move_capture(&vnc.server(), Some("s3cret"), (800, 600), out.path());
    let typed = app
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the app");
    assert_eq!(typed, "hello psmgate\n");
}

#[test]
fn x11vnc_rejects_a_wrong_or_missing_password() {
    let display = XDisplay::start(640, 480).expect("Xvfb");
    let app = DemoApp::start(&display).expect("demo app");
    let vnc = X11Vnc::start(&display, Some("s3cret")).expect("x11vnc");

    let wrong = vncdo(
        &vnc.server(),
        Some("wrong"),
        &["type", "leak", "key", "enter"],
    )
    .expect("vncdo runs");
    assert_eq!(wrong.status.code(), Some(3), "{}", show(&wrong));
    let missing =
        vncdo(&vnc.server(), None, &["type", "leak", "key", "enter"]).expect("vncdo runs");
    assert_eq!(missing.status.code(), Some(11), "{}", show(&missing));

    // The same server still works with the right password, and nothing else arrived before.
    let ok = vncdo(
        &vnc.server(),
        Some("s3cret"),
        &["type", "right", "key", "enter"],
    )
    .expect("vncdo runs");
    assert!(ok.status.success(), "{}", show(&ok));
    let typed = app
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the app");
    assert_eq!(typed, "right\n");
}

#[test]
fn xvnc_with_vnc_authentication() {
    let t0 = Instant::now();
    let xvnc = Xvnc::start(1024, 768, Some("s3cret")).expect("Xvnc");
    eprintln!("Xvnc up after {:?}", t0.elapsed());
    assert_eq!(
        rfb_hello(xvnc.port()).expect("handshake").security_types,
        [2]
    );

    let out = tempfile::tempdir().expect("temp dir");
    // Xvnc paints the screen in several rectangles: the capture must still be complete.
    let capture = type_move_capture(&xvnc.server(), Some("s3cret"), (1024, 768), out.path());
    let typed = xvnc
        .app()
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the app");
    assert_eq!(typed, "hello psmgate\n");
    assert_eq!(mouse_location(xvnc.display()).expect("pointer"), (100, 120));
    assert_capture_matches(&capture, xvnc.display());

    let wrong = vncdo(&xvnc.server(), Some("wrong"), &["key", "enter"]).expect("vncdo runs");
    assert_eq!(wrong.status.code(), Some(3), "{}", show(&wrong));
    eprintln!("test body took {:?}", t0.elapsed());
    let t1 = Instant::now();
    drop(xvnc);
    eprintln!("stopping took {:?}", t1.elapsed());
}

#[test]
fn xvnc_without_authentication() {
    let xvnc = Xvnc::start(640, 480, None).expect("Xvnc");
    assert_eq!(
        rfb_hello(xvnc.port()).expect("handshake").security_types,
        [1]
    );
    let out = tempfile::tempdir().expect("temp dir");
    let capture = type_move_capture(&xvnc.server(), None, (640, 480), out.path());
    let typed = xvnc
        .app()
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the app");
    assert_eq!(typed, "hello psmgate\n");
    assert_capture_matches(&capture, xvnc.display());
}

#[test]
fn peers_on_separate_displays_do_not_mix() {
    let a = XDisplay::start(320, 240).expect("Xvfb a");
    let b = XDisplay::start(320, 240).expect("Xvfb b");
    assert_ne!(a.number(), b.number());
    let app_a = DemoApp::start(&a).expect("demo app a");
    let app_b = DemoApp::start(&b).expect("demo app b");
    let vnc_a = X11Vnc::start(&a, None).expect("x11vnc a");
    let vnc_b = X11Vnc::start(&b, None).expect("x11vnc b");
    assert_ne!(vnc_a.port(), vnc_b.port());

    let o = vncdo(&vnc_b.server(), None, &["type", "only b", "key", "enter"]).expect("vncdo");
    assert!(o.status.success(), "{}", show(&o));
    app_b
        .wait_for_typed("only b\n", TYPED_TIMEOUT)
        .expect("b receives its text");
    assert_eq!(app_a.typed(), "");

    // Dropping a display frees its number: its lock file is gone.
    let lock = format!("/tmp/.X{}-lock", a.number());
    drop(vnc_a);
    drop(app_a);
    drop(a);
    assert!(!Path::new(&lock).exists(), "{lock} left behind");
}
