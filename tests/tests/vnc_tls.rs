//! TLS towards VNC viewers (VeNCrypt, subtype X509Vnc) end to end: TigerVNC's GUI viewer under
//! its own Xvfb, checking the gateway's certificate, typing and clicking through psmgate into a
//! TigerVNC Xvnc target; `gateway.vnc_tls = "require"` refusing a viewer without TLS; and the
//! plain path still serving vncdotool with the default `"offer"`.

mod vnc_support;

use psmgate_e2e::peers::{vncdo, ViewerOptions, VncViewer, Xvnc};
use std::path::PathBuf;
use std::time::Duration;
use vnc_support::{transcript, Gateway};

const W: u32 = 1024;
const H: u32 = 768;
const TARGET_PASSWORD: &str = "tgt-pw1";

/// The gateway certificate the viewer must check (generated at the gateway's first start).
fn gateway_cert(gw: &Gateway) -> PathBuf {
    let cert = gw.data().join("tls").join("admin-cert.pem");
    assert!(cert.exists(), "no gateway certificate: {}", gw.log());
    cert
}

/// Rewrites the gateway's configuration with `gateway.vnc_tls = mode` and restarts it.
fn set_vnc_tls(gw: &mut Gateway, mode: &str) {
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let text = text.replacen(
        "[gateway]\n",
        &format!("[gateway]\nvnc_tls = \"{mode}\"\n"),
        1,
    );
    std::fs::write(&gw.config, text).unwrap();
    gw.restart();
}

fn tls_viewer(gw: &Gateway, token: &str) -> VncViewer {
    VncViewer::start(
        &gw.server(),
        token,
        W,
        H,
        &ViewerOptions {
            security_types: Some("X509Vnc".into()),
            x509_ca: Some(gateway_cert(gw)),
        },
    )
    .expect("vncviewer")
}

#[test]
fn tigervnc_viewer_over_tls_is_recorded() {
    let xvnc = Xvnc::start(W, H, Some(TARGET_PASSWORD)).expect("Xvnc");
    let gw = Gateway::start(xvnc.port(), Some(TARGET_PASSWORD));
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let mut viewer = tls_viewer(&gw, &token);
    viewer
        .wait_connected(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n--- gateway ---\n{}", gw.log()));
    // The viewer negotiated VeNCrypt X509Vnc and checked the certificate against the CA file.
    let log = viewer.log_text();
    assert!(
        log.contains("Choosing security type X509Vnc (261)"),
        "{log}"
    );
    assert!(log.contains("TLS handshake completed"), "{log}");

    let sentence = "echo typed through tls";
    viewer.type_text(sentence).unwrap();
    viewer.key("Return").unwrap();
    xvnc.app()
        .wait_for_typed(&format!("{sentence}\n"), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n--- viewer ---\n{}", viewer.log_text()));
    viewer.click(300, 200, 1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The viewer leaves; the session is sealed.
    drop(viewer);

    let rec = gw.sealed(1).remove(0);
    let t = transcript(&rec);
    assert!(t.contains(&format!("\"text\":\"{sentence}\"")), "{t}");
    assert!(
        t.contains("\"type\":\"button\",\"button\":1,\"down\":true,\"x\":300,\"y\":200"),
        "{t}"
    );
    gw.assert_verifies(&rec);
}

#[test]
fn require_refuses_viewers_without_tls() {
    let xvnc = Xvnc::start(W, H, Some(TARGET_PASSWORD)).expect("Xvnc");
    let mut gw = Gateway::start(xvnc.port(), Some(TARGET_PASSWORD));
    set_vnc_tls(&mut gw, "require");
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    // vncdotool speaks VNC Authentication only: VeNCrypt is all that is offered.
    let o = vncdo(
        &gw.server(),
        Some(&token),
        &["type", "never", "key", "enter"],
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "vncdo got through: {stderr}");
    assert!(
        stderr.contains("unknown security types: (19,)"),
        "vncdo should see VeNCrypt only: {stderr}"
    );
    assert!(
        psmgate_e2e::recordings(&gw.data()).is_empty(),
        "a refused viewer must not start a recording"
    );
    assert!(!xvnc.app().typed().contains("never"));
    // The same token still works over TLS (the refusal happened before authentication).
    let mut viewer = tls_viewer(&gw, &token);
    viewer
        .wait_connected(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n--- gateway ---\n{}", gw.log()));
    viewer.type_text("tls ok").unwrap();
    viewer.key("Return").unwrap();
    xvnc.app()
        .wait_for_typed("tls ok\n", Duration::from_secs(10))
        .unwrap();
    drop(viewer);
    let rec = gw.sealed(1).remove(0);
    gw.assert_verifies(&rec);
}

#[test]
fn offer_keeps_plain_vnc_auth_for_vncdotool() {
    let xvnc = Xvnc::start(W, H, Some(TARGET_PASSWORD)).expect("Xvnc");
    let gw = Gateway::start(xvnc.port(), Some(TARGET_PASSWORD));
    let token = gw.grant("lab-vnc", &["--ttl", "10m"]);
    let o = vncdo(
        &gw.server(),
        Some(&token),
        &["type", "plain still works", "key", "enter"],
    )
    .unwrap();
    assert!(
        o.status.success(),
        "vncdo failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        gw.log()
    );
    xvnc.app()
        .wait_for_typed("plain still works\n", Duration::from_secs(5))
        .unwrap();
    let rec = gw.sealed(1).remove(0);
    assert!(transcript(&rec).contains("\"text\":\"plain still works\""));
    gw.assert_verifies(&rec);
}
