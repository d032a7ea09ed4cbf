//! The RDP gateway end to end with real peers: xfreerdp (under Xvfb, driven by xdotool) →
//! psmgate (TLS + NLA with an access token) → FreeRDP's shadow server (NLA with the vaulted
//! account) or xrdp (TLS, the vaulted password in Client Info). What reached the target, what
//! the transcript says, what the stored video shows (decoded with ffmpeg), masking, integrity,
//! secrets, and the failure cases, and an operator's lock on a live session.

mod vnc_support;

use psmgate_e2e::peers::rdp::exit_code;
use psmgate_e2e::peers::{
    screenshot, RdpClient, RdpClientOptions, RdpSecurity, ShadowOptions, ShadowServer, XDisplay,
    XrdpOptions, XrdpServer,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vnc_support::{events_of, manifest, transcript, walk, Gateway, Options};

const W: u32 = 1024;
const H: u32 = 768;
/// The policy's mask: the top-right corner, where the white xterm background is the planted
/// bright content.
const MASK: (u32, u32, u32, u32) = (768, 0, 256, 154);
/// The vaulted account at the shadow server (a SAM entry, no Linux account).
const TARGET_USER: &str = "tgtadmin";
const TARGET_PASSWORD: &str = "Vault3d-Secr3t!";
/// x11vnc's password behind xrdp (the RDP password xrdp passes on; VNC keeps 8 characters).
const XRDP_PASSWORD: &str = "xrdp-pw1";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A gateway whose `lab-rdp` target is `address` with the vaulted `password` (in a secret
/// file), plus a target that is down.
fn gateway(address: &str, user: &str, password: &str) -> Gateway {
    gateway_with(address, user, password, "")
}

/// [`gateway`] with more TOML lines for the `lab-rdp` target.
fn gateway_with(address: &str, user: &str, password: &str, lab_extra: &str) -> Gateway {
    gateway_on(address, user, password, None, lab_extra).expect("a gateway on the local disk")
}

/// [`gateway`] with its data folder on a tmpfs of `tmpfs` bytes when given; `None` where a
/// tmpfs cannot be mounted (not root), which CI does not accept.
fn gateway_on(
    address: &str,
    user: &str,
    password: &str,
    tmpfs: Option<&str>,
    lab_extra: &str,
) -> Option<Gateway> {
    let secret = tempfile::Builder::new()
        .prefix("psmgate-rdp-secret")
        .tempfile()
        .unwrap();
    std::fs::write(secret.path(), password).unwrap();
    // Kept for the gateway's lifetime (removed by the OS's temp cleanup).
    let (_, secret) = secret.keep().unwrap();
    let secret = secret.display().to_string();
    let dir_secret = format!(
        "[targets.lab-rdp]\nprotocol = \"rdp\"\naddress = \"{address}\"\nusername = \"{user}\"\n\
         password = {{ file = \"{secret}\" }}\n\
         masks = [{{ id = \"top-right\", x = \"75%\", y = 0, width = \"25%\", height = \"20%\" }}]\n{lab_extra}\n\n\
         [targets.down-rdp]\nprotocol = \"rdp\"\naddress = \"127.0.0.1:{}\"\nusername = \"x\"\n\
         password = {{ file = \"{secret}\" }}\n",
        psmgate_e2e::peers::free_port().unwrap()
    );
    let opts = Options {
        extra_config: Box::leak(dir_secret.into_boxed_str()),
        ..Options::default()
    };
    let port = psmgate_e2e::peers::free_port().unwrap();
    let gw = match tmpfs {
        Some(size) => Gateway::on_tmpfs(port, opts, size)?,
        None => Gateway::start_with(port, opts),
    };
    wait_rdp_listening(&gw);
    Some(gw)
}

fn wait_rdp_listening(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", gw.rdp_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "RDP listener missing: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn client(gw: &Gateway, user: &str, domain: Option<&str>, token: &str) -> RdpClientOptions {
    RdpClientOptions {
        address: format!("127.0.0.1:{}", gw.rdp_port),
        user: user.into(),
        password: token.into(),
        domain: domain.map(str::to_string),
        sec: Some(RdpSecurity::Nla),
        width: W,
        height: H,
        ..RdpClientOptions::default()
    }
}

/// FreeRDP's shadow server with NLA, the vaulted account in its SAM file.
fn nla_shadow() -> ShadowServer {
    ShadowServer::start(ShadowOptions {
        sec: RdpSecurity::Nla,
        user: TARGET_USER.into(),
        password: TARGET_PASSWORD.into(),
        width: W,
        height: H,
    })
    .unwrap()
}

fn in_mask(x: u32, y: u32) -> bool {
    x >= MASK.0 && y < MASK.1 + MASK.3
}

/// Every decoded frame of the recording's first period as RGB24.
fn decoded_frames(rec: &Path, tmp: &Path) -> Vec<Vec<u8>> {
    let m = manifest(rec);
    let mp4 = tmp.join("all.mp4");
    std::fs::write(&mp4, psmgate_e2e::period_mp4(rec, &m, 0)).unwrap();
    psmgate_e2e::rgb24(&mp4)
        .chunks_exact((W * H * 3) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Everything the session left behind as text: the gateway log and every recording file.
fn all_artifacts(gw: &Gateway, rec: &Path) -> String {
    let mut all = gw.log();
    for f in walk(rec) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    all.push_str(&String::from_utf8_lossy(
        &std::fs::read(gw.data().join("recordings/audit.jsonl")).unwrap_or_default(),
    ));
    all
}

/// Checks a sealed recording of a session in which `sentence` was typed and (300,200) clicked,
/// against the target's own screenshot taken at the end.
fn check_recording(gw: &Gateway, rec: &Path, sentence: &str, target_shot: &Path, token: &str) {
    let t = transcript(rec);
    assert!(t.contains(&format!("\"text\":\"{sentence}\"")), "{t}");
    assert!(
        t.contains("\"type\":\"button\",\"button\":1,\"down\":true,\"x\":300,\"y\":200"),
        "{t}"
    );
    let m = manifest(rec);
    assert_eq!(
        (
            m["user"].as_str(),
            m["target"].as_str(),
            m["protocol"].as_str()
        ),
        (Some("alice"), Some("lab-rdp"), Some("rdp"))
    );
    let tmp = tempfile::tempdir().unwrap();
    let frames = decoded_frames(rec, tmp.path());
    assert!(!frames.is_empty());
    let target = psmgate_e2e::rgb24(target_shot);
    let last = frames.last().unwrap();
    let p = psmgate_e2e::psnr_rgb(last, &target, W, H, in_mask);
    assert!(p >= 35.0, "last frame vs target screenshot: {p:.1} dB");
    let bright_on_target = psmgate_e2e::assert_region_black(&frames, &target, W, MASK);
    assert!(
        bright_on_target > 10_000,
        "the masked region must hold bright content on the target"
    );
    gw.assert_verifies(rec);
    let all = all_artifacts(gw, rec);
    assert!(!all.contains(token), "access token leaked");
    assert!(!all.contains(TARGET_PASSWORD), "target password leaked");
    assert!(!all.contains(XRDP_PASSWORD), "target password leaked");
}

/// Types, clicks, waits for the target to show it, then returns the target's screenshot.
fn drive(
    c: &RdpClient,
    display: &XDisplay,
    typed: impl Fn(&str, Duration) -> bool,
    sentence: &str,
) -> PathBuf {
    c.type_text(sentence).unwrap();
    c.key("Return").unwrap();
    assert!(
        typed(sentence, Duration::from_secs(10)),
        "the sentence did not reach the target\n{}",
        c.log_text()
    );
    c.click(300, 200, 1).unwrap();
    // Let the last screen change travel target → psmgate → recording.
    std::thread::sleep(Duration::from_millis(2500));
    screenshot(display).unwrap()
}

/// Waits until a sealed recording ends with a reason containing `needle`.
fn wait_for_end_reason(gw: &Gateway, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reasons: Vec<String> = psmgate_e2e::recordings(&gw.data())
            .iter()
            .filter(|r| r.join("manifest.json").exists())
            .map(|r| manifest(r)["end_reason"].as_str().unwrap_or("").to_string())
            .collect();
        if reasons.iter().any(|r| r.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no recording ended with {needle:?}: {reasons:?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// alice, with a fresh 10-minute grant to `lab-rdp`, connected through `gw` by FreeRDP; the
/// client and the access token.
fn connect_alice(gw: &Gateway) -> (RdpClient, String) {
    let token = gw.grant("lab-rdp", &["--ttl", "10m"]);
    let mut c = RdpClient::start(client(gw, "alice@lab-rdp", None, &token)).unwrap();
    c.wait_connected(CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    (c, token)
}

#[test]
fn shadow_nla_session_through_psmgate_is_recorded() {
    let target = nla_shadow();
    let gw = gateway(&target.address(), TARGET_USER, TARGET_PASSWORD);
    let (mut c, token) = connect_alice(&gw);
    let sentence = "Get-Service -Name W32Time";
    let shot = drive(
        &c,
        target.display(),
        |s, t| target.app().wait_for_typed(s, t).is_ok(),
        sentence,
    );
    // The admin leaves: the session ends and the recording is sealed.
    c.stop();
    let rec = gw.sealed(1).remove(0);
    let m = manifest(&rec);
    assert!(
        m["end_reason"].as_str().unwrap_or("").contains("client"),
        "{m}"
    );
    check_recording(&gw, &rec, sentence, &shot, &token);
    // The client's denied device-redirection channel is named in the transcript.
    let t = transcript(&rec);
    assert!(t.contains("\"rule\":\"rdp-channels\""), "{t}");
}

#[test]
fn xrdp_tls_session_through_psmgate_is_recorded() {
    let target = XrdpServer::start(XrdpOptions {
        password: XRDP_PASSWORD.into(),
        width: W,
        height: H,
    })
    .unwrap();
    let gw = gateway(&target.address(), "na", XRDP_PASSWORD);
    let token = gw.grant("lab-rdp", &["--ttl", "10m"]);
    // The down-level form: the target as the domain.
    let mut c = RdpClient::start(client(&gw, "alice", Some("LAB-RDP"), &token)).unwrap();
    c.wait_connected(CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    target
        .wait_for_log("VNC connection complete", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    std::thread::sleep(Duration::from_millis(500));
    let sentence = "tail -f /var/log/syslog";
    let shot = drive(
        &c,
        target.display(),
        |s, t| target.app().wait_for_typed(s, t).is_ok(),
        sentence,
    );
    c.stop();
    let rec = gw.sealed(1).remove(0);
    check_recording(&gw, &rec, sentence, &shot, &token);
}

#[test]
fn refused_sign_ins_and_dead_targets_end_cleanly() {
    let target = nla_shadow();
    // The vault holds a wrong password for this target.
    let gw = gateway(&target.address(), TARGET_USER, "not-the-password");
    let token = gw.grant("lab-rdp", &["--ttl", "10m"]);
    // 1. Wrong token: NLA fails like a wrong password (no session, nothing recorded).
    // xfreerdp reports exactly what it reports for a wrong password at a Windows server:
    // ERRCONNECT_LOGON_FAILURE (the gateway answered STATUS_LOGON_FAILURE inside CredSSP).
    let code = RdpClient::auth_only(client(&gw, "alice@lab-rdp", None, "wrongtok")).unwrap();
    assert_eq!(
        code,
        exit_code::LOGON_FAILURE,
        "a wrong token must fail NLA"
    );
    // 2. Unknown target, and a user name naming none.
    let code = RdpClient::auth_only(client(&gw, "alice@nosuch-rdp", None, &token)).unwrap();
    assert_eq!(code, exit_code::LOGON_FAILURE);
    let code = RdpClient::auth_only(client(&gw, "alice", None, &token)).unwrap();
    assert_eq!(code, exit_code::LOGON_FAILURE);
    // Refused sign-ins leave no recording: nothing was authorised.
    assert!(psmgate_e2e::recordings(&gw.data()).is_empty());
    let audit = std::fs::read_to_string(gw.data().join("recordings/audit.jsonl")).unwrap();
    assert!(audit.contains("rdp_auth_failed"), "{audit}");
    assert!(audit.contains("user alice on target nosuch-rdp"), "{audit}");
    // 3. Target NLA failure with the vaulted password: the client is cut, the recording
    //    (the session was authorised) is sealed with the reason.
    let mut c = RdpClient::start(client(&gw, "alice@lab-rdp", None, &token)).unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)).is_err());
    c.stop();
    wait_for_end_reason(&gw, "target NLA failed");
    // 4. Target down, with a grant issued while the gateway was serving sessions (the VNC
    //    and RDP gateways share the token database in one process).
    let token2 = gw.grant("down-rdp", &["--ttl", "10m"]);
    let mut c = RdpClient::start(client(&gw, "alice@down-rdp", None, &token2)).unwrap();
    assert!(c.wait_connected(Duration::from_secs(10)).is_err());
    c.stop();
    wait_for_end_reason(&gw, "unreachable");
    let recs = gw.sealed(2);
    for r in &recs {
        gw.assert_verifies(r);
        let all = all_artifacts(&gw, r);
        assert!(!all.contains("not-the-password"), "vaulted password leaked");
        assert!(!all.contains(&token), "token leaked");
    }
}

#[test]
fn target_ending_the_session_seals_the_recording() {
    let target = nla_shadow();
    // No dynamic channel is allowed here: the shadow server's audio-input channel is refused
    // on the client's behalf, and the session works without it.
    let gw = gateway_with(
        &target.address(),
        TARGET_USER,
        TARGET_PASSWORD,
        "rdp_dynamic_channels = []",
    );
    let (mut c, _) = connect_alice(&gw);
    c.type_text("before the end").unwrap();
    c.key("Return").unwrap();
    target
        .app()
        .wait_for_typed("before the end", Duration::from_secs(10))
        .unwrap();
    // The target goes away mid-session: the client is disconnected and the recording sealed.
    drop(target);
    let rec = gw.sealed(1).remove(0);
    let reason = manifest(&rec)["end_reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("target"), "{reason}");
    // …and the client is disconnected.
    let exited = c
        .wait_exit(Duration::from_secs(10))
        .ok()
        .flatten()
        .is_some();
    assert!(exited || !c.is_running(), "the client is still connected");
    let t = transcript(&rec);
    assert!(t.contains("before the end"), "{t}");
    assert!(
        t.contains(
            "\"rule\":\"rdp-dynamic-channels\",\"action\":\"blocked\",\"detail\":\"AUDIO_INPUT\""
        ),
        "{t}"
    );
    gw.assert_verifies(&rec);
}

#[test]
fn a_failing_recording_ends_the_session_and_tells_the_client_why() {
    let target = nla_shadow();
    let Some(mut gw) = gateway_on(
        &target.address(),
        TARGET_USER,
        TARGET_PASSWORD,
        Some("16m"),
        "",
    ) else {
        eprintln!("skipping: cannot mount a tmpfs here (not root)");
        return;
    };
    let (mut c, token) = connect_alice(&gw);
    c.type_text("recorded before the disk filled").unwrap();
    c.key("Return").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    psmgate_e2e::fill_disk(&gw.data().join("filler"));
    // Keep the screen changing until the gateway ends the session.
    let started = Instant::now();
    let mut n = 0;
    while c.is_running() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the client was not disconnected: {}",
            gw.log()
        );
        n += 1;
        let _ = c.type_text(&format!("line {n} ")); // fails once the window is gone
        let _ = c.key("Return");
    }
    let log = gw.log();
    assert!(log.contains("recording failed"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    // The client was told: a Set Error Info PDU before the disconnect.
    let client_log = c.log_text();
    assert!(
        client_log.contains("ERRINFO_SERVER_DENIED_CONNECTION"),
        "the client was not given the reason:\n{client_log}"
    );
    // With space again, the next start seals what was written before the failure, and it
    // verifies; the typing from before the failure is in it.
    std::fs::remove_file(gw.data().join("filler")).unwrap();
    gw.restart();
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let m = manifest(&rec);
    assert!(
        matches!(m["state"].as_str(), Some("failed" | "interrupted")),
        "{m}"
    );
    assert!(
        transcript(&rec).contains("recorded before the disk filled"),
        "{}",
        transcript(&rec)
    );
    let all = all_artifacts(&gw, &rec);
    assert!(!all.contains(&token), "access token leaked");
    assert!(!all.contains(TARGET_PASSWORD), "target password leaked");
}

/// Runs `xdotool args…` on the client's display (for what [`RdpClient`] has no method for,
/// such as holding a key down).
fn xdotool(c: &RdpClient, args: &[&str]) {
    let status = std::process::Command::new("xdotool")
        .env("DISPLAY", c.display().name())
        .env_remove("XAUTHORITY")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "xdotool {args:?}: {status}");
}

#[test]
fn a_locked_rdp_session_holds_input_back_and_releases_held_keys() {
    let target = nla_shadow();
    let gw = gateway(&target.address(), TARGET_USER, TARGET_PASSWORD);
    let (mut c, _) = connect_alice(&gw);
    c.type_text("before lock").unwrap();
    c.key("Return").unwrap();
    target
        .app()
        .wait_for_typed("before lock", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.log_text()));
    let (status, live) = gw.admin_api("GET", "/api/sessions/live", None);
    assert_eq!(status, 200, "{live}");
    let id = live["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Shift is held down on the client, and so on the target, when the lock comes.
    c.mouse_move(500, 400).unwrap(); // focuses the session window
    xdotool(&c, &["keydown", "shift"]);
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = gw.admin_api(
        "POST",
        &format!("/api/sessions/live/{id}/lock"),
        Some(r#"{"reason":"change window closed"}"#),
    );
    assert_eq!(status, 200, "{body}");
    // Typed while locked, then Shift let go: none of it reaches the target.
    c.type_text("during lock").unwrap();
    c.key("Return").unwrap();
    xdotool(&c, &["keyup", "shift"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !target.app().typed().to_lowercase().contains("during"),
        "input reached the target while locked: {:?}",
        target.app().typed()
    );
    let (status, body) = gw.admin_api(
        "POST",
        &format!("/api/sessions/live/{id}/resume"),
        Some("{}"),
    );
    assert_eq!(status, 200, "{body}");

    // After the resume typing works again, and Shift is not stuck down on the target: the
    // gateway released it when the lock came.
    c.type_text("after lock").unwrap();
    c.key("Return").unwrap();
    let typed = target
        .app()
        .wait_for_typed("after lock", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\ntyped: {:?}", target.app().typed()));
    assert!(!typed.to_lowercase().contains("during"), "{typed:?}");
    c.stop();

    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
    let changes: Vec<(String, String)> = events_of(&rec, "policy")
        .iter()
        .filter(|e| e["rule"] == "lock")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].0, "locked");
    assert!(
        changes[0].1.ends_with("change window closed"),
        "{changes:?}"
    );
    assert_eq!(changes[1].0, "resumed");
    let t = transcript(&rec);
    assert!(t.contains("before lock") && t.contains("after lock"), "{t}");
    assert!(
        !t.contains("during"),
        "input held back is not recorded: {t}"
    );
}
