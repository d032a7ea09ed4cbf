//! Policy reload on a running gateway, with real peers (TigerVNC Xvnc as the target, a raw RFB
//! viewer): SIGHUP puts a changed file in force without dropping the live session; an invalid
//! file is rejected with its reason (SIGHUP and `POST /api/config/reload`) and the policy in
//! force stays; both are audited. The live session's thumbnail is masked.

mod vnc_support;

use psmgate_e2e::peers::Xvnc;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use vnc_support::{Gateway, RawViewer};

/// `curl` against the admin listener; returns the status and the JSON body.
fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    if let Some(t) = bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let o = cmd
        .arg(format!("http://127.0.0.1:{}{path}", gw.admin_port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn login(gw: &Gateway, user: &str, password: &str) -> u16 {
    call(
        gw,
        "POST",
        "/api/login",
        None,
        Some(&format!(r#"{{"user":"{user}","password":"{password}"}}"#)),
    )
    .0
}

fn hup(gw: &Gateway) {
    let o = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
}

/// The viewer's session is still up: an update request is answered.
fn still_up(v: &mut RawViewer) {
    v.request_update(false).unwrap();
    let ev = v.next_event(Duration::from_secs(5)).unwrap();
    assert!(ev.is_some(), "the live session got no update");
}

/// The live thumbnail is the screen scaled to 320 px with `lab-vnc`'s top-right mask (25 % ×
/// 20 %) black.
fn thumbnail_is_masked(gw: &Gateway, admin: &str) {
    let (_, live) = call(gw, "GET", "/api/sessions/live", Some(admin), None);
    let id = live["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let jpeg = gw.dir.path().join("thumb.jpg");
    let o = Command::new("curl")
        .args(["-sS", "-f", "-o"])
        .arg(&jpeg)
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .arg(format!(
            "http://127.0.0.1:{}/api/sessions/live/{id}/thumbnail",
            gw.admin_port
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let raw = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&jpeg)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let (w, h) = (320usize, 240usize);
    assert_eq!(
        raw.stdout.len(),
        w * h * 3,
        "a 320×240 thumbnail of the 640×480 screen"
    );
    for y in 2..(h * 20 / 100 - 2) {
        for x in (w * 75 / 100 + 2)..w {
            let i = (y * w + x) * 3;
            let px = &raw.stdout[i..i + 3];
            assert!(px.iter().all(|&c| c < 24), "masked pixel {x},{y} is {px:?}");
        }
    }
}

#[test]
fn sighup_reloads_the_policy_without_dropping_sessions_and_refuses_a_bad_file() {
    let target = Xvnc::start(640, 480, None).unwrap();
    let gw = Gateway::start(target.port(), None);
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut v = RawViewer::connect(gw.vnc_port, &token).unwrap();
    still_up(&mut v);
    let admin = std::fs::read_to_string(gw.data().join("admin-token")).unwrap();
    let admin = admin.trim();
    thumbnail_is_masked(&gw, admin);
    let original = std::fs::read_to_string(&gw.config).unwrap();

    // A new user appears in the file: after SIGHUP she can sign in.
    assert_eq!(login(&gw, "zoe", "zoe-pass-1"), 401);
    let with_zoe = format!(
        "{original}\n[users.zoe]\nroles = [\"auditor\"]\npassword_hash = \"{}\"\n",
        psmgate_e2e::hash_password("zoe-pass-1")
    );
    std::fs::write(&gw.config, &with_zoe).unwrap();
    hup(&gw);
    let deadline = Instant::now() + Duration::from_secs(10);
    while login(&gw, "zoe", "zoe-pass-1") != 200 {
        assert!(
            Instant::now() < deadline,
            "zoe cannot sign in after SIGHUP: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    still_up(&mut v);

    // A broken file is refused, by SIGHUP and by the API, and changes nothing.
    let broken = format!(
        "{with_zoe}\n[[rules]]\nid = \"ghost\"\nusers = [\"ghost\"]\ntargets = [\"lab-vnc\"]\n"
    );
    std::fs::write(&gw.config, &broken).unwrap();
    hup(&gw);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("new policy rejected") {
        assert!(
            Instant::now() < deadline,
            "no rejection logged: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        gw.log().contains("ghost"),
        "the log names the problem: {}",
        gw.log()
    );
    let (status, body) = call(&gw, "POST", "/api/config/reload", Some(admin), Some("{}"));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid_config", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("ghost"),
        "{body}"
    );
    assert_eq!(
        login(&gw, "zoe", "zoe-pass-1"),
        200,
        "the policy in force stays"
    );
    // zoe (auditor) may not reload; the admin token may, once the file is good again.
    std::fs::write(&gw.config, &with_zoe).unwrap();
    let (status, _) = call(
        &gw,
        "POST",
        "/api/login",
        None,
        Some(r#"{"user":"zoe","password":"zoe-pass-1"}"#),
    );
    assert_eq!(status, 200);
    let (_, zoe) = call(
        &gw,
        "POST",
        "/api/login",
        None,
        Some(r#"{"user":"zoe","password":"zoe-pass-1"}"#),
    );
    let zoe_token = zoe["token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &gw,
        "POST",
        "/api/config/reload",
        Some(&zoe_token),
        Some("{}"),
    );
    assert_eq!(status, 403);
    let (status, body) = call(&gw, "POST", "/api/config/reload", Some(admin), Some("{}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["old_version"], body["new_version"], "{body}");
    still_up(&mut v);

    // Audited: the reload, both rejections and the API reload, with who did them.
    let (_, audit) = call(&gw, "GET", "/api/audit", Some(admin), None);
    let entries = audit["entries"].as_array().unwrap();
    let of = |action: &str, actor: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == actor)
            .count()
    };
    assert_eq!(of("config_reloaded", "sighup"), 1, "{audit}");
    assert_eq!(of("config_rejected", "sighup"), 1, "{audit}");
    assert_eq!(of("config_rejected", "admin-token"), 1, "{audit}");
    assert_eq!(of("config_reloaded", "admin-token"), 1, "{audit}");
    assert_eq!(audit["integrity"]["ok"], true, "{audit}");

    v.close();
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
}
