//! The real RDP peers talking to each other directly (no psmgate in between): proves that the
//! harness in `psmgate_e2e::peers` starts working RDP targets (FreeRDP's shadow server with NLA,
//! xrdp with TLS in front of x11vnc) and a working scripted client (xfreerdp under Xvfb), so the
//! gateway tests can put psmgate between them. Needs `scripts/install-peers.sh`; a missing
//! program fails the test with the installer's name, as in the VNC peer tests.

use psmgate_e2e::peers::rdp::{exit_code, PROTOCOL_HYBRID, PROTOCOL_SSL};
use psmgate_e2e::peers::{
    mouse_location, png_size, screenshot, wait_for_rdp, x224_probe, CertCheck, RdpClient,
    RdpClientOptions, RdpSecurity, ShadowOptions, ShadowServer, X224Confirm, XDisplay, XrdpOptions,
    XrdpServer,
};
use psmgate_e2e::{psnr_rgb, rgb24};
use std::path::Path;
use std::time::{Duration, Instant};

const W: u32 = 1024;
const H: u32 = 768;
const USER: &str = "alice";
const PASSWORD: &str = "Secr3t!";
/// x11vnc's password, which xrdp takes from the RDP client (VNC uses 8 characters at most).
const VNC_PASSWORD: &str = "vnc-pw1";
/// How long xfreerdp may take to show its session window (1–2 s seen).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long typed text may take to travel client -> server -> X -> xterm -> file.
const TYPED_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client's picture may take to catch up with the target's screen.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Smallest PSNR of the client's picture against the target's own screenshot. The shadow
/// server's codec is slightly lossy (white arrives as 253..255): about 44 dB over the screen.
const MIN_PSNR: f64 = 35.0;
/// Largest PSNR of the text lines against a blank (white) picture: they must show something,
/// else the PSNR check above would pass for an empty terminal.
const MAX_BLANK_PSNR: f64 = 30.0;
/// The height of the rows compared for the text (the first two terminal lines).
const TEXT_ROWS: u32 = 40;

fn nla_shadow() -> ShadowServer {
    ShadowServer::start(ShadowOptions {
        sec: RdpSecurity::Nla,
        user: USER.into(),
        password: PASSWORD.into(),
        width: W,
        height: H,
    })
    .expect("freerdp-shadow-cli")
}

fn client_options(address: String, password: &str, sec: RdpSecurity) -> RdpClientOptions {
    RdpClientOptions {
        address,
        user: USER.into(),
        password: password.into(),
        domain: None,
        sec: Some(sec),
        width: W,
        height: H,
        cert: CertCheck::Ignore,
        extra_args: Vec::new(),
    }
}

/// PSNR of the client's picture against the target's screenshot: over the whole screen, and
/// over the text rows.
fn psnrs(client: &Path, target: &Path) -> (f64, f64) {
    let (a, b) = (rgb24(client), rgb24(target));
    let all = psnr_rgb(&a, &b, W, H, |_, _| false);
    let text = psnr_rgb(&a, &b, W, H, |_, y| y >= TEXT_ROWS);
    (all, text)
}

#[test]
fn xfreerdp_with_nla_types_into_the_shadow_server_and_shows_its_screen() {
    let t0 = Instant::now();
    let shadow = nla_shadow();
    eprintln!("shadow server up after {:?}", t0.elapsed());
    match x224_probe(shadow.port(), PROTOCOL_SSL | PROTOCOL_HYBRID).expect("X.224 probe") {
        X224Confirm::Selected { protocol, .. } => {
            assert_eq!(protocol, PROTOCOL_HYBRID, "NLA selected")
        }
        other => panic!("unexpected answer {other:?}"),
    }

    // The pin proves that the server presents the certificate made for it.
    let pin = shadow.cert_fingerprint().expect("fingerprint");
    assert!(pin.starts_with("sha256:") && pin.len() == 7 + 95, "{pin}");
    let mut opts = client_options(shadow.address(), PASSWORD, RdpSecurity::Nla);
    opts.cert = CertCheck::Fingerprint(pin);
    let t1 = Instant::now();
    let mut client = RdpClient::start(opts).expect("xfreerdp");
    client
        .wait_connected(CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- shadow server ---\n{}", shadow.log_text()));
    eprintln!("session window after {:?}", t1.elapsed());
    assert!(client.window().is_some());

    let sentence = "The quick brown fox, 42 jumps!";
    client.type_text(sentence).expect("typing");
    client.key("Return").expect("Enter");
    let typed = shadow
        .app()
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the target");
    assert_eq!(typed, format!("{sentence}\n"));
    eprintln!("typed text arrived after {:?}", t1.elapsed());

    client.mouse_move(300, 222).expect("mouse move");
    let deadline = Instant::now() + TYPED_TIMEOUT;
    while mouse_location(shadow.display()).expect("pointer") != (300, 222) {
        assert!(
            Instant::now() < deadline,
            "the pointer did not reach the target"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The client shows the target's screen, text included (retried while it catches up).
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    let (all, text) = loop {
        let target = screenshot(shadow.display()).expect("target screenshot");
        let shot = client.screenshot().expect("client screenshot");
        assert_eq!(png_size(&shot).expect("a PNG"), (W, H));
        let (all, text) = psnrs(&shot, &target);
        if (all >= MIN_PSNR && text >= MIN_PSNR) || Instant::now() >= deadline {
            let blank = vec![255u8; (W * H * 3) as usize];
            let content = psnr_rgb(&rgb24(&target), &blank, W, H, |_, y| y >= TEXT_ROWS);
            assert!(
                content < MAX_BLANK_PSNR,
                "no text on the target ({content:.1} dB)"
            );
            break (all, text);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("client vs target: {all:.1} dB overall, {text:.1} dB text rows");
    assert!(all >= MIN_PSNR, "screen PSNR {all:.1} dB");
    assert!(text >= MIN_PSNR, "text rows PSNR {text:.1} dB");

    let t2 = Instant::now();
    client.stop();
    assert!(!client.is_running());
    let code = client.wait_exit(Duration::ZERO).expect("stopped");
    eprintln!("client stopped in {:?} (exit code {code:?})", t2.elapsed());
    eprintln!("test body took {:?}", t0.elapsed());
}

#[test]
fn a_wrong_nla_password_or_certificate_pin_is_refused() {
    let t0 = Instant::now();
    let shadow = nla_shadow();
    let right = client_options(shadow.address(), PASSWORD, RdpSecurity::Nla);
    let wrong = client_options(shadow.address(), "wrong", RdpSecurity::Nla);

    assert_eq!(RdpClient::auth_only(right.clone()).expect("xfreerdp"), 0);
    // FreeRDP 2.11: the shadow server drops the link, the client reports "transport closed".
    assert_eq!(
        RdpClient::auth_only(wrong.clone()).expect("xfreerdp"),
        exit_code::TRANSPORT_CLOSED
    );
    let mut pinned = right.clone();
    pinned.cert = CertCheck::Fingerprint(format!("sha256:{}", ["00"; 32].join(":")));
    assert_eq!(
        RdpClient::auth_only(pinned).expect("xfreerdp"),
        exit_code::TLS_FAILED
    );
    eprintln!("three auth-only runs after {:?}", t0.elapsed());

    // A full client with the wrong password never shows a session, and says why.
    let mut client = RdpClient::start(wrong).expect("xfreerdp");
    let err = client
        .wait_connected(CONNECT_TIMEOUT)
        .expect_err("a wrong password must not connect");
    assert!(err.to_string().contains("code 147"), "{err}");
    assert_eq!(
        client.wait_exit(Duration::from_secs(1)).expect("exited"),
        Some(exit_code::TRANSPORT_CLOSED)
    );
    assert!(!client.is_running());
    assert_eq!(shadow.app().typed(), "");
    eprintln!("test body took {:?}", t0.elapsed());
}

#[test]
fn xfreerdp_with_tls_types_through_xrdp_into_the_vnc_target() {
    let t0 = Instant::now();
    let xrdp = XrdpServer::start(XrdpOptions {
        password: VNC_PASSWORD.into(),
        width: W,
        height: H,
    })
    .expect("xrdp");
    eprintln!("xrdp up after {:?}", t0.elapsed());
    assert_eq!(
        wait_for_rdp(xrdp.port(), Duration::from_secs(1)).expect("X.224"),
        X224Confirm::Selected {
            protocol: PROTOCOL_SSL,
            flags: 1
        },
        "xrdp selects TLS"
    );

    // xrdp has no NLA: FreeRDP reports a failed security negotiation.
    let nla = client_options(xrdp.address(), VNC_PASSWORD, RdpSecurity::Nla);
    assert_eq!(
        RdpClient::auth_only(nla).expect("xfreerdp"),
        exit_code::NEGOTIATION_FAILED
    );

    let mut opts = client_options(xrdp.address(), VNC_PASSWORD, RdpSecurity::Tls);
    opts.cert = CertCheck::Fingerprint(xrdp.cert_fingerprint().expect("fingerprint"));
    let t1 = Instant::now();
    let mut client = RdpClient::start(opts).expect("xfreerdp");
    client
        .wait_connected(CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- xrdp ---\n{}", xrdp.log_text()));
    // With TLS the password is checked after the window appears: by x11vnc, via xrdp.
    xrdp.wait_for_log("VNC connection complete", CONNECT_TIMEOUT)
        .expect("xrdp reaches x11vnc with the RDP password");
    eprintln!("session up after {:?}", t1.elapsed());

    client.type_text("hello via xrdp").expect("typing");
    client.key("Return").expect("Enter");
    let typed = xrdp
        .app()
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the target");
    assert_eq!(typed, "hello via xrdp\n");
    eprintln!("typed text arrived after {:?}", t1.elapsed());
    assert!(client.is_running());
    drop(client);
    eprintln!("test body took {:?}", t0.elapsed());
}

#[test]
fn xfreerdp_negotiates_tls_with_a_shadow_server_without_authentication() {
    let t0 = Instant::now();
    let shadow = ShadowServer::start(ShadowOptions {
        sec: RdpSecurity::Tls,
        user: String::new(),
        password: String::new(),
        width: W,
        height: H,
    })
    .expect("freerdp-shadow-cli");
    match wait_for_rdp(shadow.port(), Duration::from_secs(1)).expect("X.224") {
        X224Confirm::Selected { protocol, .. } => {
            assert_eq!(protocol, PROTOCOL_SSL, "TLS selected")
        }
        other => panic!("unexpected answer {other:?}"),
    }
    // No /sec: the client offers NLA and TLS, the server picks TLS; `-auth` accepts anyone.
    // The keyboard grab is off here: typing works either way.
    let mut opts = client_options(shadow.address(), "anything", RdpSecurity::Tls);
    opts.sec = None;
    opts.extra_args = vec!["-grab-keyboard".into()];
    let mut client = RdpClient::start(opts).expect("xfreerdp");
    client
        .wait_connected(CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- shadow server ---\n{}", shadow.log_text()));
    client.type_text("tls shadow").expect("typing");
    client.key("Return").expect("Enter");
    let typed = shadow
        .app()
        .wait_for_typed("\n", TYPED_TIMEOUT)
        .expect("typed text reaches the target");
    assert_eq!(typed, "tls shadow\n");
    eprintln!("test body took {:?}", t0.elapsed());
}

#[test]
fn the_client_needs_its_session_window_before_input() {
    // Nothing listens on the port: xfreerdp exits, and input is refused with a clear error.
    let port = psmgate_e2e::peers::free_port().expect("port");
    let mut client = RdpClient::start(client_options(
        format!("127.0.0.1:{port}"),
        PASSWORD,
        RdpSecurity::Nla,
    ))
    .expect("xfreerdp");
    let err = client
        .wait_connected(CONNECT_TIMEOUT)
        .expect_err("nothing to connect to");
    assert!(err.to_string().contains("exited with code"), "{err}");
    let err = client.type_text("x").expect_err("no window");
    assert!(err.to_string().contains("no session window"), "{err}");
    // The client's own display is still there for screenshots.
    let display: &XDisplay = client.display();
    assert_eq!(display.size(), (W, H));
}
