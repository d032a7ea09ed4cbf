//! The VNC gateway end to end with real peers: vncdotool → psmgate → x11vnc / TigerVNC Xvnc.
//! What reached the target, what the transcript says, what the stored video shows (decoded with
//! ffmpeg), masking, integrity, and the failure cases.

mod vnc_support;

use psmgate::vnc::ServerEvent;
use psmgate_e2e::peers::{screenshot, vncdo, DemoApp, X11Vnc, XDisplay, Xvnc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vnc_support::{events_of, manifest, transcript, walk, xdotool, Gateway, Options, RawViewer};

const W: u32 = 1024;
const H: u32 = 768;
/// The policy's mask for the target: the top-right corner, where the white xterm background is
/// the planted bright content.
const MASK: (u32, u32, u32, u32) = (768, 0, 256, 154);

/// Every decoded frame of the recording as RGB24.
fn decoded_frames(rec: &Path, tmp: &Path) -> Vec<Vec<u8>> {
    let m = manifest(rec);
    let mp4 = tmp.join("all.mp4");
    std::fs::write(&mp4, psmgate_e2e::period_mp4(rec, &m, 0)).unwrap();
    psmgate_e2e::rgb24(&mp4)
        .chunks_exact((W * H * 3) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

fn in_mask(x: u32, y: u32) -> bool {
    x >= MASK.0 && y < MASK.1 + MASK.3
}

/// RGB PSNR outside the masked region.
fn psnr_unmasked(a: &[u8], b: &[u8]) -> f64 {
    psmgate_e2e::psnr_rgb(a, b, W, H, in_mask)
}

/// The full recorded-session check against one target implementation.
fn record_a_session(target_port: u16, password: Option<&str>, app: &DemoApp) {
    let gw = Gateway::start(target_port, password);
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let tmp = tempfile::tempdir().unwrap();
    let shot = tmp.path().join("viewer.png");
    let sentence = "sudo systemctl restart nginx";
    let o = vncdo(
        &gw.server(),
        Some(&token),
        &[
            "type",
            sentence,
            "key",
            "enter",
            "move",
            "300",
            "200",
            "click",
            "1",
            "pause",
            "1",
            "capture",
            shot.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(
        o.status.success(),
        "vncdo failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        gw.log()
    );
    // 1. The target received the text.
    app.wait_for_typed(sentence, Duration::from_secs(5))
        .unwrap();
    // 2. The transcript holds the sentence and the click where it happened.
    let rec = gw.sealed(1).remove(0);
    let t = transcript(&rec);
    assert!(t.contains(&format!("\"text\":\"{sentence}\"")), "{t}");
    assert!(
        t.contains("\"type\":\"button\",\"button\":1,\"down\":true,\"x\":300,\"y\":200"),
        "{t}"
    );
    let m = manifest(&rec);
    assert_eq!(
        (
            m["user"].as_str(),
            m["target"].as_str(),
            m["protocol"].as_str()
        ),
        (Some("alice"), Some("lab-vnc"), Some("vnc"))
    );
    // 3. The video's last frame is what the viewer saw (masked region excluded), and the masked
    //    region is black in every frame although the target shows white there.
    let frames = decoded_frames(&rec, tmp.path());
    assert!(!frames.is_empty());
    let viewer = psmgate_e2e::rgb24(&shot);
    let last = frames.last().unwrap();
    let p = psnr_unmasked(last, &viewer);
    assert!(p >= 35.0, "last frame vs viewer screenshot: {p:.1} dB");
    let bright_in_viewer = psmgate_e2e::assert_region_black(&frames, &viewer, W, MASK);
    assert!(
        bright_in_viewer > 10_000,
        "the masked region must hold bright content on the target"
    );
    // 4. It verifies.
    let id = rec.file_name().unwrap().to_str().unwrap();
    let o = gw.psmgate(&["verify", id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // 5. Neither the token nor the target password appear in any artifact or log.
    let mut all = gw.log();
    for f in walk(&rec) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    assert!(!all.contains(&token), "token leaked");
    if let Some(pw) = password {
        assert!(!all.contains(pw), "target password leaked");
    }
}

#[test]
fn x11vnc_session_through_psmgate_is_recorded() {
    let display = XDisplay::start(W, H).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, Some("t4rget-pw")).unwrap();
    record_a_session(target.port(), Some("t4rget-pw"), &app);
}

#[test]
fn x11vnc_without_password_through_psmgate_is_recorded() {
    let display = XDisplay::start(W, H).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, None).unwrap();
    record_a_session(target.port(), None, &app);
}

#[test]
fn tigervnc_session_through_psmgate_is_recorded() {
    let target = Xvnc::start(W, H, Some("xvnc-pw")).unwrap();
    record_a_session(target.port(), Some("xvnc-pw"), target.app());
}

/// A viewer that leaves the moment its update has arrived: the gateway forwarded the update
/// before decoding it, and the recording must still hold it. The viewer asks for nothing before
/// its one full-screen Raw update (3 MiB), so without that update the recording is black.
#[test]
fn an_update_forwarded_just_before_the_viewer_leaves_is_recorded() {
    let target = Xvnc::start(W, H, None).unwrap();
    for attempt in 0..3 {
        let gw = Gateway::start(target.port(), None);
        let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
        let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
        v.request_update(false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(
            v.next_event(Duration::from_millis(200)).unwrap(),
            Some(ServerEvent::UpdateDone { .. })
        ) {
            assert!(Instant::now() < deadline, "no update reached the viewer");
        }
        v.close();
        let shot = screenshot(target.display()).unwrap();
        let rec = gw.sealed(1).remove(0);
        gw.assert_verifies(&rec);
        let tmp = tempfile::tempdir().unwrap();
        let frames = decoded_frames(&rec, tmp.path());
        let p = psnr_unmasked(frames.last().unwrap(), &psmgate_e2e::rgb24(&shot));
        assert!(
            p >= 35.0,
            "attempt {attempt}: last frame vs the target's screen: {p:.1} dB"
        );
    }
}

#[test]
fn bad_tokens_and_dead_targets_fail_cleanly() {
    let display = XDisplay::start(W, H).unwrap();
    let _app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, Some("pw")).unwrap();
    let gw = Gateway::start(target.port(), Some("pw"));
    // Unknown target or user: no token is issued, and the operator is told why.
    let o = gw.psmgate(&[
        "access",
        "grant",
        "--user",
        "alice",
        "--target",
        "nosuch-vnc",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown target \"nosuch-vnc\""));
    let o = gw.psmgate(&[
        "access", "grant", "--user", "mallory", "--target", "lab-vnc",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown user \"mallory\""));
    // Wrong token: RFB authentication failure (vncdo exit 3), audited, no recording.
    let o = vncdo(&gw.server(), Some("wrong123"), &["pause", "0.1"]).unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Expired token.
    let short = gw.grant("lab-vnc", &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let o = vncdo(&gw.server(), Some(&short), &["pause", "0.1"]).unwrap();
    assert_eq!(o.status.code(), Some(3));
    // One-time token: works once.
    let once = gw.grant("lab-vnc", &["--once", "--ttl", "10m"]);
    let o = vncdo(&gw.server(), Some(&once), &["type", "a"]).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = vncdo(&gw.server(), Some(&once), &["type", "a"]).unwrap();
    assert_eq!(o.status.code(), Some(3));
    let audit = std::fs::read_to_string(gw.data().join("recordings/audit.jsonl")).unwrap();
    for reason in ["unknown token", "token expired", "token already used"] {
        assert!(audit.contains(reason), "audit lacks {reason:?}: {audit}");
    }
    assert_eq!(
        gw.sealed(1).len(),
        1,
        "only the successful session has a recording"
    );
    // Target down: the viewer is cut, and the opened recording is sealed with the reason.
    let down = gw.grant("down-vnc", &["--ttl", "10m"]);
    let o = vncdo(&gw.server(), Some(&down), &["pause", "0.1"]).unwrap();
    assert!(!o.status.success());
    let recs = gw.sealed(2);
    let reasons: Vec<String> = recs
        .iter()
        .map(|r| manifest(r)["end_reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("unreachable")),
        "{reasons:?}"
    );
}

/// Clipboard events the gateway has written so far for the recording in `rec` (while it is
/// still running: transcript batches are flushed about every second).
fn written_clipboard_events(rec: &Path) -> Vec<serde_json::Value> {
    let Ok(dir) = std::fs::read_dir(rec.join("events")) else {
        return Vec::new();
    };
    let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .filter(|e| e["type"] == "clipboard")
        .collect()
}

/// Hex SHA-256 of `text`, computed by coreutils' `sha256sum` (independent of psmgate).
fn sha256_hex(text: &str) -> String {
    let out = psmgate_e2e::output_with_stdin(&mut Command::new("sha256sum"), text.as_bytes());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Types `text` and Enter into the target through the raw viewer (through the gateway).
fn type_through(v: &mut RawViewer, text: &str) {
    for c in text.chars() {
        v.tap(u32::from(c)).unwrap();
    }
    v.tap(0xff0d).unwrap();
}

/// Sends a ClientCutText through a gateway with `policy`, then proves on the target whether it
/// arrived: keys typed after it on the same connection are processed by x11vnc after it, so
/// once they reached the app, a middle-click paste shows what the target's selection holds.
fn paste_through(
    target_port: u16,
    display: &XDisplay,
    app: &DemoApp,
    policy: &str,
    clip: &str,
) -> (Gateway, PathBuf) {
    let gw = Gateway::start_with(
        target_port,
        Options {
            lab_extra: policy,
            ..Options::default()
        },
    );
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    v.cut_text(clip.as_bytes()).unwrap();
    let marker = format!("after{}", &sha256_hex(clip)[..8]);
    type_through(&mut v, &marker);
    app.wait_for_typed(&marker, Duration::from_secs(5)).unwrap();
    // Paste the target's selection, then a second marker typed on the target itself.
    let name = display.name();
    xdotool(&name, &["mousemove", "400", "400", "click", "2"]);
    xdotool(
        &name,
        &["type", "--delay", "20", &format!("pasted{marker}\n")],
    );
    app.wait_for_typed(&format!("pasted{marker}"), Duration::from_secs(5))
        .unwrap();
    v.close();
    let rec = gw.sealed(1).remove(0);
    (gw, rec)
}

#[test]
fn clipboard_to_the_target_is_allowed_or_denied_by_policy() {
    let display = XDisplay::start(W, H).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, None).unwrap();

    // Allowed, with content logging (keystrokes are recorded on this target).
    let clip = "allowedclip4711";
    let (_gw, rec) = paste_through(
        target.port(),
        &display,
        &app,
        "clipboard = { to_target = \"allow\", log = \"content\" }",
        clip,
    );
    assert!(app.typed().contains(clip), "{}", app.typed());
    let ev = events_of(&rec, "clipboard");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["direction"], "to_target");
    assert_eq!(ev[0]["allowed"], true);
    assert_eq!(ev[0]["len"], clip.len());
    assert_eq!(ev[0]["sha256"], sha256_hex(clip));
    assert_eq!(ev[0]["text"], clip);
    assert!(events_of(&rec, "policy").is_empty());

    // Denied; content logging falls back to the digest because keystrokes are masked.
    let clip = "deniedclip0815";
    let (_gw, rec) = paste_through(
        target.port(),
        &display,
        &app,
        "keystrokes = \"mask\"\nclipboard = { to_target = \"deny\", log = \"content\" }",
        clip,
    );
    assert!(!app.typed().contains(clip), "{}", app.typed());
    let ev = events_of(&rec, "clipboard");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["allowed"], false);
    assert_eq!(ev[0]["sha256"], sha256_hex(clip));
    assert!(ev[0].get("text").is_none(), "{ev:?}");
    let policy = events_of(&rec, "policy");
    assert_eq!(policy.len(), 1, "{policy:?}");
    assert_eq!(policy[0]["rule"], "clipboard.to_target");
    assert_eq!(policy[0]["action"], "blocked");
    let mut all = String::new();
    for f in walk(&rec) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    assert!(
        !all.contains(clip),
        "denied, masked clipboard text was stored"
    );
}

/// Types `word` and Enter on the target, then selects the word by dragging over it (no
/// double-click timing involved), so that x11vnc announces the new PRIMARY selection as a
/// ServerCutText.
fn select_on_target(display: &XDisplay, app: &DemoApp, word: &str, line: u32) {
    let name = display.name();
    xdotool(&name, &["type", "--delay", "20", &format!("{word}\n")]);
    app.wait_for_typed(word, Duration::from_secs(5)).unwrap();
    // Let xterm draw the echoed line before selecting it.
    std::thread::sleep(Duration::from_millis(300));
    reselect(display, word, line);
}

/// Drags over `word` at the start of `line` of the target's xterm (6×13 font, 2-pixel border).
fn reselect(display: &XDisplay, word: &str, line: u32) {
    let y = (2 + 13 * line + 6).to_string();
    let end = (2 + 6 * word.len() as u32 + 2).to_string();
    xdotool(
        &display.name(),
        &[
            "mousemove",
            "1",
            &y,
            "mousedown",
            "1",
            "mousemove",
            "40",
            &y,
            "mousemove",
            &end,
            &y,
            "mouseup",
            "1",
        ],
    );
}

/// Asks for the whole screen and waits for it: x11vnc announces selection changes to clients
/// it serves, and a selection made while the client is still being set up is not announced.
fn first_update(v: &mut RawViewer) {
    v.request_update(false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        assert!(
            Instant::now() < deadline,
            "no screen update reached the viewer"
        );
        if let Some(ServerEvent::UpdateDone { .. }) =
            v.next_event(Duration::from_millis(200)).unwrap()
        {
            v.request_update(true).unwrap();
            return;
        }
    }
}

/// A fresh target for one clipboard-from-target case: x11vnc announces the PRIMARY selection
/// when its owner changes, so each case needs an xterm that has not owned it yet.
fn selection_target() -> (XDisplay, DemoApp, X11Vnc) {
    let display = XDisplay::start(W, H).unwrap();
    let app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, None).unwrap();
    (display, app, target)
}

#[test]
fn clipboard_from_the_target_is_allowed_by_policy() {
    let (display, app, target) = selection_target();
    let gw = Gateway::start(target.port(), None);
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    let rec = gw.recording_started();
    first_update(&mut v);
    let word = "clipword9931";
    select_on_target(&display, &app, word, 0);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut retry = Instant::now() + Duration::from_secs(2);
    let got = loop {
        if Instant::now() > retry {
            // A drag the X server saw as a click selects nothing; drag again.
            reselect(&display, word, 0);
            retry = Instant::now() + Duration::from_secs(2);
        }
        assert!(
            Instant::now() < deadline,
            "no ServerCutText reached the viewer; the gateway saw {:?}",
            written_clipboard_events(&rec)
        );
        match v.next_event(Duration::from_millis(200)).unwrap() {
            Some(ServerEvent::CutText(t)) if t.text == word.as_bytes() => break t,
            Some(ServerEvent::UpdateDone { .. }) => v.request_update(true).unwrap(),
            _ => {}
        }
    };
    assert!(!got.extended);
    v.close();
    let rec = gw.sealed(1).remove(0);
    let ev = events_of(&rec, "clipboard");
    assert!(
        ev.iter().any(|e| e["direction"] == "to_client"
            && e["allowed"] == true
            && e["sha256"] == sha256_hex(word)),
        "{ev:?}"
    );
}

#[test]
fn clipboard_from_the_target_is_denied_by_policy() {
    let (display, app, target) = selection_target();
    // The gateway sees and records it, the viewer never gets it, updates still flow.
    let gw = Gateway::start_with(
        target.port(),
        Options {
            lab_extra: "clipboard = { to_client = \"deny\", log = \"length\" }",
            ..Options::default()
        },
    );
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    let rec = gw.recording_started();
    first_update(&mut v);
    let word = "denyword5521";
    select_on_target(&display, &app, word, 0);
    let (mut updates, mut texts) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seen_at = None;
    let mut retry = Instant::now() + Duration::from_secs(2);
    loop {
        if seen_at.is_none() && Instant::now() > retry {
            reselect(&display, word, 0);
            retry = Instant::now() + Duration::from_secs(2);
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not record the target's clipboard: {}",
            gw.log()
        );
        match v.next_event(Duration::from_millis(100)).unwrap() {
            Some(ServerEvent::CutText(t)) => texts.push(t),
            Some(ServerEvent::UpdateDone { .. }) => {
                updates += 1;
                v.request_update(true).unwrap();
            }
            _ => {}
        }
        if seen_at.is_none()
            && written_clipboard_events(&rec)
                .iter()
                .any(|e| e["direction"] == "to_client" && e["len"] == word.len())
        {
            seen_at = Some(Instant::now());
        }
        // Keep reading a while after the gateway logged it: a forwarded message would be here.
        if seen_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
    }
    assert!(
        texts.is_empty(),
        "denied clipboard reached the viewer: {texts:?}"
    );
    assert!(updates >= 1, "screen updates must still reach the viewer");
    v.close();
    let rec = gw.sealed(1).remove(0);
    let ev: Vec<_> = events_of(&rec, "clipboard")
        .into_iter()
        .filter(|e| e["len"] == word.len())
        .collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["allowed"], false);
    assert!(ev[0].get("sha256").is_none() && ev[0].get("text").is_none());
    let policy = events_of(&rec, "policy");
    assert!(
        policy
            .iter()
            .any(|p| p["rule"] == "clipboard.to_client" && p["action"] == "blocked"),
        "{policy:?}"
    );
    gw.assert_verifies(&rec);
}
