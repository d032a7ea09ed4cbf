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
    spawn_peer("console-server.mjs", dir, args, "console.log")
}

/// Starts the peer `script` of tests/web with `--dir dir` and `args`, its stderr in `dir/log`;
/// returns the process and the JSON line it printed when ready (panics with its log if it
/// printed none).
pub fn spawn_peer(script: &str, dir: &Path, args: &[&str], log: &str) -> (Child, Value) {
    let mut child = Command::new("node")
        .arg(tests_web().join(script))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join(log)).unwrap()))
        .spawn()
        .expect("node is needed for the web tests (scripts/install-deps.sh)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "{script} did not start ({e}): {}",
            std::fs::read_to_string(dir.join(log)).unwrap_or_default()
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

/// What a browser needs to go through a gateway's web proxy: the proxy, the login and access
/// token to sign in to it with, and the CAs to trust.
pub struct ProxyAccess {
    proxy: String,
    login: String,
    /// The access token (the proxy password).
    pub token: String,
    ca: Vec<PathBuf>,
}

impl ProxyAccess {
    /// Grants alice access to `target` on `gw` for 10 minutes (`psmgate grant`); the browser
    /// trusts the gateway's CA ([`gateway_ca`]).
    pub fn alice(gw: &Gateway, target: &str) -> ProxyAccess {
        ProxyAccess {
            proxy: format!("http://127.0.0.1:{}", gw.web_port),
            login: format!("alice@{target}"),
            token: gw.grant(target, &["--ttl", "10m"]),
            ca: vec![gateway_ca(gw)],
        }
    }

    /// Also trusts `ca` (a host the proxy tunnels, which the browser reaches with the host's own
    /// certificate).
    pub fn trusting(mut self, ca: &Path) -> ProxyAccess {
        self.ca.push(ca.to_path_buf());
        self
    }

    /// A drive.mjs input that browses through the proxy this way; `rest` (a JSON object:
    /// `steps`, `shots`, `timeout`, …) is added to it.
    pub fn input(&self, rest: Value) -> Value {
        let mut input = serde_json::json!({
            "proxy": self.proxy,
            "username": self.login,
            "password": self.token,
            "ca": self.ca,
        });
        let Value::Object(rest) = rest else {
            panic!("drive.mjs input is a JSON object, not {rest}");
        };
        input.as_object_mut().unwrap().extend(rest);
        input
    }
}

/// Every string in `v` (text nodes, attribute values, input texts), appended to `out`, one per
/// line.
pub fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_text(x, out)),
        _ => {}
    }
}

/// The gateway with a web target for the console and rules for the other two hosts, rendering
/// web sessions to video.
pub fn gateway(c: &Console) -> Gateway {
    gateway_with(c, "15s", "live")
}

/// [`gateway`] with the recorder heartbeat timeout and `web.video` given (tests of the proxy
/// itself turn the video off: one Chromium per session fewer on a 2-core machine).
pub fn gateway_with(c: &Console, heartbeat: &str, video: &str) -> Gateway {
    let web = format!(
        r#"idle_timeout = "10m"
heartbeat_timeout = "{heartbeat}"
video = "{video}"
"#
    );
    let other_hosts = r#"
[[web_rules]]
id = "no-other-consoles"
domains = ["127.0.0.2"]
action = "deny"

[[web_rules]]
id = "static-cdn"
domains = ["127.0.0.3"]
action = "tunnel"
"#;
    start_web_gateway(&console_config(c, &web, other_hosts))
}

/// Configuration for a gateway in front of console `c`: the web target `console` (its secrets
/// masked), `[web]` trusting the console's CA with the settings `web` (TOML lines), and the rule
/// `console-forms` recording the console's exchanges with their bodies; then `more`.
pub fn console_config(c: &Console, web: &str, more: &str) -> String {
    format!(
        r##"
[targets.console]
protocol = "web"
address = "https://127.0.0.1:{port}/login"
domains = ["127.0.0.1"]
mask_selectors = ["#api-key", ".secret-text"]

[web]
extra_roots = ["{ca}"]
{web}
[[web_rules]]
id = "console-forms"
domains = ["127.0.0.1"]
action = "record"
record_bodies = true
{more}"##,
        port = c.console,
        ca = c.ca.display()
    )
}

/// A gateway with `extra_config` (its web targets, `[web]` and web rules) appended to the
/// default configuration; returns once its web proxy listens.
pub fn start_web_gateway(extra_config: &str) -> Gateway {
    let gw = Gateway::start_with(
        free_port().unwrap(),
        Options {
            password: None,
            lab_extra: "",
            extra_config,
        },
    );
    wait_for_proxy(gw)
}

/// [`start_web_gateway`] whose users and rules are `users_and_rules` (TOML `[users.…]` and
/// `[[rules]]`, see [`Gateway::start_with_users`]) instead of the default.
pub fn start_web_gateway_with_users(extra_config: &str, users_and_rules: &str) -> Gateway {
    let gw = Gateway::start_with_users(
        free_port().unwrap(),
        Options {
            password: None,
            lab_extra: "",
            extra_config,
        },
        users_and_rules,
    );
    wait_for_proxy(gw)
}

/// Returns `gw` once its web proxy listens.
fn wait_for_proxy(gw: Gateway) -> Gateway {
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

// ---------------------------------------------------------------------------------------------
// A gateway in front of any one HTTPS upstream on 127.0.0.1

/// A gateway whose only web target, `target`, opens `address` (an `https://127.0.0.1:PORT/…`
/// URL) and trusts `ca` for upstream TLS; every exchange with 127.0.0.1 is recorded (rule
/// `record-local`) and `web.video` is `video`. Returns once the web proxy listens.
pub fn gateway_for_upstream(target: &str, address: &str, ca: &Path, video: &str) -> Gateway {
    let extra = format!(
        r##"
[targets.{target}]
protocol = "web"
address = "{address}"
domains = ["127.0.0.1"]

[web]
extra_roots = ["{ca}"]
idle_timeout = "10m"
heartbeat_timeout = "15s"
video = "{video}"

[[web_rules]]
id = "record-local"
domains = ["127.0.0.1"]
action = "record"
"##,
        ca = ca.display()
    );
    start_web_gateway(&extra)
}
