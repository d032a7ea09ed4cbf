//! Every encoding psmgate decodes, as real servers produce it: a viewer asks x11vnc or TigerVNC's
//! Xvnc (through psmgate) for one encoding, text is typed, and the recording's last frame is
//! compared with a screenshot taken from the X server itself — an independent picture of what
//! the target showed. (A server that lacks an encoding falls back to Raw; the comparison holds
//! either way.)

mod vnc_support;

use psmgate::vnc::encoding;
use psmgate_e2e::peers::{screenshot, DemoApp, X11Vnc, XDisplay, Xvnc};
use std::path::Path;
use std::time::{Duration, Instant};
use vnc_support::{manifest, Gateway, Options, RawViewer};

const W: u32 = 800;
const H: u32 = 600;

fn last_frame(rec: &Path, tmp: &Path) -> Vec<u8> {
    let m = manifest(rec);
    let mp4 = tmp.join("all.mp4");
    std::fs::write(&mp4, psmgate_e2e::period_mp4(rec, &m, 0)).unwrap();
    let frames = psmgate_e2e::rgb24(&mp4);
    let n = (W * H * 3) as usize;
    assert!(
        frames.len() >= n && frames.len().is_multiple_of(n),
        "decoded {} bytes",
        frames.len()
    );
    frames[frames.len() - n..].to_vec()
}

/// RGB PSNR outside the masked top-right 25 % × 20 %.
fn psnr_unmasked(a: &[u8], b: &[u8]) -> f64 {
    psmgate_e2e::psnr_rgb(a, b, W, H, |x, y| x >= W * 3 / 4 && y < H / 5)
}

/// One session asking for `enc`; returns the PSNR of the recording against the X screen and
/// the number of rectangles that came in `enc`.
fn session(
    port: u16,
    password: Option<&str>,
    display: &XDisplay,
    app: &DemoApp,
    enc: i32,
    text: &str,
) -> (f64, u64) {
    let gw = Gateway::start_with(
        port,
        Options {
            password,
            lab_extra: "",
            extra_config: "",
        },
    );
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    v.set_encodings(&[enc, encoding::COPY_RECT, encoding::LAST_RECT])
        .unwrap();
    v.request_update(false).unwrap();
    for c in text.chars() {
        v.tap(u32::from(c)).unwrap();
    }
    v.tap(0xff0d).unwrap();
    app.wait_for_typed(text, Duration::from_secs(5)).unwrap();
    // Keep updates flowing until the screen has settled.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        v.request_update(true).unwrap();
        let _ = v.next_event(Duration::from_millis(100)).unwrap();
    }
    let shot = screenshot(display).unwrap();
    let used = v.rects_by_encoding().get(&enc).copied().unwrap_or(0);
    v.close();
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let tmp = tempfile::tempdir().unwrap();
    (
        psnr_unmasked(&last_frame(&rec, tmp.path()), &psmgate_e2e::rgb24(&shot)),
        used,
    )
}

/// The encodings asked for, and whether each server is known to send it (the test insists on
/// those: a server that stops using one must fail the test, not silently fall back to Raw).
/// The encodings asked for.
const ENCODINGS: [(&str, i32); 7] = [
    ("raw", encoding::RAW),
    ("rre", encoding::RRE),
    ("hextile", encoding::HEXTILE),
    ("zlib", encoding::ZLIB),
    ("tight", encoding::TIGHT),
    ("trle", encoding::TRLE),
    ("zrle", encoding::ZRLE),
];

/// Encodings x11vnc 0.9.16 answers in: the test insists on them, so a server that stops using
/// one fails the test instead of silently falling back to Raw.
/// (Neither server sends TRLE; its decoder is covered by the unit tests in `gateway/src/vnc/`.)
const X11VNC_SENDS: &[&str] = &["raw", "rre", "hextile", "zlib", "tight", "zrle"];
/// Encodings TigerVNC 1.12 Xvnc answers in.
const XVNC_SENDS: &[&str] = &["raw", "rre", "hextile", "tight", "zrle"];

fn check(server: &str, sends: &[&str], mut run: impl FnMut(i32, &str) -> (f64, u64)) {
    for (name, enc) in ENCODINGS {
        let (p, used) = run(enc, &format!("{server} {name} encoding"));
        eprintln!("{server} {name}: {used} rectangles, {p:.1} dB");
        assert!(
            p >= 35.0,
            "{server} {name}: recording differs from the screen ({p:.1} dB)"
        );
        if sends.contains(&name) {
            assert!(used > 0, "{server} sent no {name} rectangle");
        }
    }
}

#[test]
fn every_encoding_from_x11vnc_records_what_the_screen_showed() {
    let display = XDisplay::start(W, H).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, Some("pw")).unwrap();
    check("x11vnc", X11VNC_SENDS, |enc, text| {
        session(target.port(), Some("pw"), &display, &app, enc, text)
    });
}

#[test]
fn every_encoding_from_tigervnc_records_what_the_screen_showed() {
    let target = Xvnc::start(W, H, Some("pw")).unwrap();
    check("Xvnc", XVNC_SENDS, |enc, text| {
        session(
            target.port(),
            Some("pw"),
            target.display(),
            target.app(),
            enc,
            text,
        )
    });
}
