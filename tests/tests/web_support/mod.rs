//! Shared by the web console proxy end-to-end tests: the console server
//! (tests/web/console-server.mjs), the Chromium driver (tests/web/drive.mjs) and a gateway
//! configured for them.

#![allow(dead_code)] // each test file uses a different part

use crate::vnc_support::{Gateway, Options};
use psmgate_e2e::peers::free_port;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Secrets planted in the console: none may appear in any recording file or log.
pub const COOKIE: &str = "cookie-PLANTED-7f3a91c2";
pub const BEARER: &str = "bearer-PLANTED-c04e6b1d";
pub const PASSWORD: &str = "pw-PLANTED-b81e22aa";
pub const FIELD: &str = "field-PLANTED-5d0c7e3f";
pub const TEXT: &str = "text-PLANTED-9a4f1b6e";

pub fn tests_web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// The console server (tests/web/console-server.mjs); killed on drop.
pub struct Console {
    child: Child,
    /// The console's own test CA.
    pub ca: PathBuf,
    /// Port of the console (127.0.0.1).
    pub console: u16,
    /// Port of the host the proxy denies (127.0.0.2).
    pub denied: u16,
    /// Port of the host the proxy tunnels (127.0.0.3).
    pub tunnel: u16,
    _dir: tempfile::TempDir,
}

/// Starts tests/web/console-server.mjs with its files in `dir` and `args`; returns the process
/// and the line it printed when ready (CA path and ports).
pub fn spawn_console(dir: &Path, args: &[&str]) -> (Child, Value) {
    let mut child = Command::new("node")
        .arg(tests_web().join("console-server.mjs"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("console.log")).unwrap(),
        ))
        .spawn()
        .expect("node is needed for the web tests (scripts/install-deps.sh)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "console server did not start ({e}): {}",
            std::fs::read_to_string(dir.join("console.log")).unwrap_or_default()
        )
    });
    (child, v)
}

impl Console {
    /// Starts the console server.
    pub fn start() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let (child, v) = spawn_console(
            dir.path(),
            &[
                "--secret-cookie",
                COOKIE,
                "--bearer",
                BEARER,
                "--password",
                PASSWORD,
                "--secret-field",
                FIELD,
                "--secret-text",
                TEXT,
            ],
        );
        let port = |k: &str| u16::try_from(v[k].as_u64().unwrap()).unwrap();
        Console {
            ca: PathBuf::from(v["ca"].as_str().unwrap()),
            console: port("console"),
            denied: port("denied"),
            tunnel: port("tunnel"),
            child,
            _dir: dir,
        }
    }

    /// What the console saw (`GET /__state`, fetched directly).
    pub fn state(&self) -> Value {
        let o = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&self.ca)
            .arg(format!("https://127.0.0.1:{}/__state", self.console))
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/web/drive.mjs with `input`; returns its results.
pub fn drive(input: &Value) -> Vec<Value> {
    let o = Command::new("node")
        .arg(tests_web().join("drive.mjs"))
        .arg(input.to_string())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "drive.mjs failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["results"].as_array().unwrap().clone()
}

/// The gateway with a web target for the console and rules for the other two hosts, rendering
/// web sessions to video.
pub fn gateway(c: &Console) -> Gateway {
    gateway_with(c, "15s", "live")
}

/// [`gateway`] with the recorder heartbeat timeout and `web.video` given (tests of the proxy
/// itself turn the video off: one Chromium per session fewer on a 2-core machine).
pub fn gateway_with(c: &Console, heartbeat: &str, video: &str) -> Gateway {
    let extra = format!(
        r##"
[targets.console]
protocol = "web"
address = "https://127.0.0.1:{port}/login"
domains = ["127.0.0.1"]
mask_selectors = ["#api-key", ".secret-text"]

[web]
extra_roots = ["{ca}"]
idle_timeout = "10m"
heartbeat_timeout = "{heartbeat}"
video = "{video}"

[[web_rules]]
id = "console-forms"
domains = ["127.0.0.1"]
action = "record"
record_bodies = true

[[web_rules]]
id = "no-other-consoles"
domains = ["127.0.0.2"]
action = "deny"

[[web_rules]]
id = "static-cdn"
domains = ["127.0.0.3"]
action = "tunnel"
"##,
        port = c.console,
        ca = c.ca.display()
    );
    let gw = Gateway::start_with(
        free_port().unwrap(),
        Options {
            password: None,
            lab_extra: "",
            extra_config: &extra,
        },
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", gw.web_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "web proxy did not listen: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

/// Stops the gateway the way an operator does (SIGTERM): live web sessions are sealed.
pub fn stop(gw: &Gateway) {
    let pid = gw.pid().to_string();
    let o = Command::new("kill").args(["-TERM", &pid]).output().unwrap();
    assert!(o.status.success());
}

/// The gateway's CA (`psmgate ca export`), written next to its configuration, for the browser
/// to trust.
pub fn gateway_ca(gw: &Gateway) -> PathBuf {
    let o = gw.psmgate(&["ca", "export"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = gw.dir.path().join("gateway-ca.pem");
    std::fs::write(&path, &o.stdout).unwrap();
    path
}
