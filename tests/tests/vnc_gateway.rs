//! The VNC gateway end to end with real peers: vncdotool → psmgate → x11vnc / TigerVNC Xvnc.
//! What reached the target, what the transcript says, what the stored video shows (decoded with
//! ffmpeg), masking, integrity, and the failure cases.

use psmgate_e2e::peers::{free_port, vncdo, DemoApp, X11Vnc, XDisplay, Xvnc};
use psmgate_e2e::{psmgate_bin, recordings};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const W: u32 = 1024;
const H: u32 = 768;
/// The policy's mask for the target: the top-right corner, where the white xterm background is
/// the planted bright content.
const MASK: (u32, u32, u32, u32) = (768, 0, 256, 154);

/// A running `psmgate serve` with its own data folder, config and ports; killed on drop.
struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    vnc_port: u16,
}

impl Gateway {
    fn start(target_port: u16, target_password: Option<&str>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (admin_port, vnc_port) = (free_port().unwrap(), free_port().unwrap());
        let password = match target_password {
            Some(pw) => {
                std::fs::write(dir.path().join("target.pass"), pw).unwrap();
                "password = { file = \"target.pass\" }\n".to_string()
            }
            None => String::new(),
        };
        let config = dir.path().join("psmgate.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
                 vnc_listen = \"127.0.0.1:{vnc_port}\"\n\n[users.alice]\nroles = [\"admin\"]\n\n\
                 [targets.lab-vnc]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{target_port}\"\n{password}\
                 masks = [{{ id = \"top-right\", x = \"75%\", y = 0, width = \"25%\", height = \"20%\" }}]\n\n\
                 [targets.down-vnc]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{}\"\n\n\
                 [[rules]]\nid = \"alice-lab\"\nusers = [\"alice\"]\ntargets = \"*\"\n",
                free_port().unwrap()
            ),
        )
        .unwrap();
        let child = Command::new(psmgate_bin())
            .arg("--config")
            .arg(&config)
            .args(["serve", "--no-tls"])
            .env("PSMGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("serve.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", vnc_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "gateway did not listen: {}",
                log(dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Gateway {
            child,
            dir,
            config,
            vnc_port,
        }
    }

    fn psmgate(&self, args: &[&str]) -> std::process::Output {
        Command::new(psmgate_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn grant(&self, target: &str, extra: &[&str]) -> String {
        let mut args = vec!["access", "grant", "--user", "alice", "--target", target];
        args.extend_from_slice(extra);
        let o = self.psmgate(&args);
        assert!(
            o.status.success(),
            "grant failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn server(&self) -> String {
        format!("127.0.0.1::{}", self.vnc_port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Waits until `n` recordings are sealed.
    fn sealed(&self, n: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let recs = recordings(&self.data());
            if recs
                .iter()
                .filter(|r| r.join("manifest.json").exists())
                .count()
                >= n
            {
                return recs;
            }
            assert!(
                Instant::now() < deadline,
                "recordings not sealed: {}",
                log(self.dir.path())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
}

fn manifest(rec: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(rec.join("manifest.json")).unwrap()).unwrap()
}

fn transcript(rec: &Path) -> String {
    let m = manifest(rec);
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(rec.join(f.as_str().unwrap())).unwrap())
        .collect()
}

/// Every decoded frame of the recording as RGB24.
fn decoded_frames(rec: &Path, tmp: &Path) -> Vec<Vec<u8>> {
    let m = manifest(rec);
    let mp4 = tmp.join("all.mp4");
    std::fs::write(&mp4, psmgate_e2e::period_mp4(rec, &m, 0)).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&mp4)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact((W * H * 3) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

fn png_rgb(png: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(png)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn in_mask(x: u32, y: u32) -> bool {
    x >= MASK.0 && y < MASK.1 + MASK.3
}

/// RGB PSNR outside the masked region.
fn psnr_unmasked(a: &[u8], b: &[u8]) -> f64 {
    let (mut se, mut n) = (0f64, 0f64);
    for y in 0..H {
        for x in 0..W {
            if in_mask(x, y) {
                continue;
            }
            for c in 0..3 {
                let i = ((y * W + x) * 3 + c) as usize;
                let d = f64::from(a[i]) - f64::from(b[i]);
                se += d * d;
                n += 1.0;
            }
        }
    }
    if se == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / (se / n)).log10()
    }
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
        log(gw.dir.path())
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
    let viewer = png_rgb(&shot);
    let last = frames.last().unwrap();
    let p = psnr_unmasked(last, &viewer);
    assert!(p >= 35.0, "last frame vs viewer screenshot: {p:.1} dB");
    let mut bright_in_viewer = 0;
    for y in MASK.1 + 4..MASK.1 + MASK.3 - 4 {
        for x in MASK.0 + 4..W - 4 {
            let i = ((y * W + x) * 3) as usize;
            if viewer[i] > 200 {
                bright_in_viewer += 1;
            }
            for f in &frames {
                assert!(
                    f[i] < 40 && f[i + 1] < 40 && f[i + 2] < 40,
                    "masked pixel ({x},{y}) not black: {:?}",
                    &f[i..i + 3]
                );
            }
        }
    }
    assert!(
        bright_in_viewer > 10_000,
        "the masked region must hold bright content on the target"
    );
    // 4. It verifies.
    let id = rec.file_name().unwrap().to_str().unwrap();
    let o = gw.psmgate(&["verify", id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // 5. Neither the token nor the target password appear in any artifact or log.
    let mut all = log(gw.dir.path());
    for f in walk(&rec) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    assert!(!all.contains(&token), "token leaked");
    if let Some(pw) = password {
        assert!(!all.contains(pw), "target password leaked");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
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

#[test]
fn bad_tokens_and_dead_targets_fail_cleanly() {
    let display = XDisplay::start(W, H).unwrap();
    let _app = DemoApp::start(&display).unwrap();
    let target = X11Vnc::start(&display, Some("pw")).unwrap();
    let gw = Gateway::start(target.port(), Some("pw"));
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
