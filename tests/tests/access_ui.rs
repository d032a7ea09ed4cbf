//! The web UI and admin API end to end with real parts: just-in-time access requested by one user
//! and approved by another in headless Debian Chromium (tests/web/ui-flow.mjs), a vncdotool
//! session through the VNC gateway with the issued one-time credential to TigerVNC's Xvnc, the
//! session watched live in the player and terminated from the UI; then the recording, the audit
//! log and the secrets. A second test checks what the API refuses.

mod vnc_support;

use psmgate_e2e::peers::{free_port, venv_dir, Xvnc};
use psmgate_e2e::{http_request as http, HttpReply as Reply};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vnc_support::{events_of, manifest, walk, Gateway, Options};

const W: u32 = 1024;
const H: u32 = 768;
const TARGET: &str = "lab-vnc";
const TARGET_PASSWORD: &str = "xvnc-Target-pw";
/// The longest an operator's terminate may take to cut the viewer, from the API's answer.
const MAX_CUT: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch.
fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// A password nobody else uses: a run's planted secret.
fn planted(who: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{who}-Pw-{nanos:09}-{}", std::process::id())
}

/// `psmgate hash-password` of `password`: an Argon2id hash that does not hold the password.
fn hash_password(password: &str) -> String {
    let hash = psmgate_e2e::hash_password(password);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
    hash
}

/// A JSON API call with a bearer token.
fn api(port: u16, token: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| b.to_string());
    http(
        port,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    )
}

/// Signs `user` in through the API; returns the sign-in token.
fn login(port: u16, user: &str, password: &str) -> String {
    let r = http(
        port,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        Some(&json!({ "user": user, "password": password }).to_string()),
    );
    assert_eq!(r.status, 200, "sign-in of {user}: {}", r.body);
    r.json()["token"].as_str().unwrap().to_owned()
}

/// Waits until the admin listener answers `/healthz`.
fn wait_admin(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = TcpStream::connect(("127.0.0.1", gw.admin_port)).is_ok()
            && http(gw.admin_port, "GET", "/healthz", &[], None).status == 200;
        if up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the admin listener did not answer: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The break-glass admin token of the gateway's data folder.
fn admin_token(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.data().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The grants `psmgate access list` shows (one line each, header left out).
fn grants(gw: &Gateway) -> Vec<String> {
    let o = gw.psmgate(&["access", "list"]);
    assert!(
        o.status.success(),
        "access list: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Users and rules: alice may reach the lab target only through an approved request; bob
/// approves, watches and terminates.
fn users_and_rules(alice_hash: &str, bob_hash: &str, more: &str) -> String {
    format!(
        "[users.alice]\nroles = [\"user\"]\npassword_hash = \"{alice_hash}\"\n\n\
         [users.bob]\nroles = [\"approver\"]\npassword_hash = \"{bob_hash}\"\n\n{more}\n\
         [[rules]]\nid = \"lab-jit\"\nusers = [\"alice\"]\ntargets = [\"{TARGET}\"]\n\
         approval = \"required\"\nmax_duration = \"1h\"\n"
    )
}

/// A child process stopped on drop whose exit is watched: the moment it ended is taken within
/// a few milliseconds.
struct Watched {
    child: Arc<Mutex<Child>>,
    exit: Arc<Mutex<Option<(f64, ExitStatus)>>>,
}

impl Watched {
    fn spawn(cmd: &mut Command) -> Watched {
        let child = Arc::new(Mutex::new(cmd.spawn().unwrap()));
        let exit = Arc::new(Mutex::new(None));
        let (c, e) = (child.clone(), exit.clone());
        std::thread::spawn(move || loop {
            if let Ok(Some(status)) = c.lock().unwrap().try_wait() {
                *e.lock().unwrap() = Some((epoch_ms(), status));
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        });
        Watched { child, exit }
    }

    /// When (epoch ms) and how the process ended, if it did.
    fn exited(&self) -> Option<(f64, ExitStatus)> {
        *self.exit.lock().unwrap()
    }

    /// Waits up to `timeout` for the process to end.
    fn wait_exit(&self, timeout: Duration) -> Option<(f64, ExitStatus)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.exited() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// vncdotool connected through the gateway with `token` for about a minute, typing a key and
/// capturing the screen (a full framebuffer update: vncdo asks for pixels only to capture)
/// about three times a second. The RFB connection stays open until the gateway cuts it; then
/// the process exits (vncdo: "connection lost").
fn spawn_vncdo(gw: &Gateway, token: &str, logs: &Path) -> Watched {
    let shot = logs.join("viewer.png").display().to_string();
    let mut args: Vec<String> = vec![
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("peers/vncdo.py")
            .display()
            .to_string(),
        "-s".into(),
        gw.server(),
        "-p".into(),
        token.into(),
    ];
    for _ in 0..200 {
        args.extend(["type", "x", "capture", &shot, "pause", "0.2"].map(String::from));
    }
    Watched::spawn(
        Command::new(venv_dir().join("bin/python"))
            .args(&args)
            .env("PYTHONWARNINGS", "ignore")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(logs.join("vncdo.out")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(logs.join("vncdo.err")).unwrap(),
            )),
    )
}

/// tests/web/ui-flow.mjs: its steps (JSON lines) arrive on a channel, commands go to its stdin.
/// Dropped, it closes the script's stdin (the script then closes its browser and exits) and
/// stops it if it does not.
struct UiFlow {
    proc: Watched,
    stdin: Option<ChildStdin>,
    steps: mpsc::Receiver<Value>,
    stderr: PathBuf,
}

impl UiFlow {
    fn start(input: &Value, logs: &Path) -> UiFlow {
        let stderr = logs.join("ui-flow.err");
        let mut cmd = Command::new("node");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/ui-flow.mjs"))
            .arg(input.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        let proc = Watched::spawn(&mut cmd);
        let (stdin, stdout) = {
            let mut c = proc.child.lock().unwrap();
            (c.stdin.take().unwrap(), c.stdout.take().unwrap())
        };
        let (tx, steps) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({ "step": "error", "message": line }));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        UiFlow {
            proc,
            stdin: Some(stdin),
            steps,
            stderr,
        }
    }

    /// The next step, which must be `name`.
    fn step(&self, name: &str, timeout: Duration, gw: &Gateway) -> Value {
        let v = self.steps.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "ui-flow.mjs: no \"{name}\" step ({e}); stderr: {}\ngateway log:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default(),
                gw.log()
            )
        });
        assert_eq!(
            v["step"],
            name,
            "ui-flow.mjs: {}\nstderr: {}\ngateway log:\n{}",
            v["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            gw.log()
        );
        v
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the script to exit after its last step; it must succeed.
    fn finish(&mut self) {
        let (_, status) = self
            .proc
            .wait_exit(Duration::from_secs(15))
            .expect("ui-flow.mjs did not exit after its last step");
        assert!(
            status.success(),
            "ui-flow.mjs: {status:?}; stderr: {}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }
}

impl Drop for UiFlow {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.proc.wait_exit(Duration::from_secs(5));
    }
}

/// Waits until the recording's chain covers (part of) `file`.
fn wait_chained(rec: &Path, file: &str, gw: &Gateway) {
    let needle = format!("\"file\":\"{file}\"");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(rec.join("chain.jsonl"))
        .unwrap_or_default()
        .contains(&needle)
    {
        assert!(
            Instant::now() < deadline,
            "{file} was not chained: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The audit entries of `action`.
fn audited<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["action"] == action).collect()
}

/// Every file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str, skip: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|f| !skip(f))
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

#[test]
fn jit_access_is_approved_watched_live_and_terminated_in_the_ui() {
    let started = Instant::now();
    let alice_pw = planted("alice");
    let bob_pw = planted("bob");
    let people = users_and_rules(&hash_password(&alice_pw), &hash_password(&bob_pw), "");
    let target = Xvnc::start(W, H, Some(TARGET_PASSWORD)).unwrap();
    let gw = Gateway::start_with_users(
        target.port(),
        Options {
            password: Some(TARGET_PASSWORD),
            ..Options::default()
        },
        &people,
    );
    wait_admin(&gw);
    let logs = tempfile::tempdir().unwrap();
    // Nothing lets alice in before her request is approved.
    assert_eq!(
        grants(&gw),
        Vec::<String>::new(),
        "no grant before the request"
    );

    let reason = "INC-4711: rotate the lab certificate";
    let terminate_reason = "unexpected change outside the ticket";
    let mut ui = UiFlow::start(
        &json!({
            "base": format!("http://127.0.0.1:{}", gw.admin_port),
            "requester": { "user": "alice", "password": alice_pw },
            "approver": { "user": "bob", "password": bob_pw },
            "target": TARGET,
            "duration": "15m",
            "reason": reason,
            "terminate_reason": terminate_reason,
            "timeout": 15000,
        }),
        logs.path(),
    );
    let step_timeout = Duration::from_secs(40);

    // 1. alice's request waits for approval; she has no credential.
    let s = ui.step("requested", step_timeout, &gw);
    let request_id = s["request"].as_i64().unwrap();
    assert_eq!(s["status"], "pending", "{s}");
    assert_eq!(s["row"], "pending", "{s}");
    assert_eq!(s["credential_shown"], false, "{s}");
    assert_eq!(s["credential_sent"], false, "{s}");
    assert_eq!(grants(&gw), Vec::<String>::new(), "no grant while pending");

    // 2. bob approves in his own browser context and is never shown the credential.
    let s = ui.step("approved", step_timeout, &gw);
    assert_eq!(s["request"], request_id);
    assert_eq!(s["approve_status"], 200, "{s}");
    assert_eq!(s["row"], "approved by bob", "{s}");
    assert_eq!(s["approve_buttons"], 0, "{s}");
    assert_eq!(s["credential_shown"], false, "{s}");
    assert_eq!(s["show_credential_buttons"], 0, "{s}");
    assert_eq!(s["credential_sent"], false, "{s}");
    let issued = grants(&gw);
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert!(
        issued[0].contains("alice") && issued[0].contains(TARGET) && issued[0].contains("true"),
        "one one-time grant for alice: {issued:?}"
    );

    // 3. alice reads the credential and connects through the VNC gateway with it.
    let s = ui.step("credential", step_timeout, &gw);
    let token = s["token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    assert!(
        s["how"].as_str().unwrap().contains("VNC password"),
        "{}",
        s["how"]
    );
    let vncdo = spawn_vncdo(&gw, &token, logs.path());
    let rec = gw.recording_started();
    let rec_id = rec.file_name().unwrap().to_str().unwrap().to_owned();
    // The session has video to watch once its first fragment is chained.
    wait_chained(&rec, "video/000001.m4s", &gw);
    assert!(
        vncdo.exited().is_none(),
        "vncdo ended at once: {:?} {}",
        vncdo.exited(),
        std::fs::read_to_string(logs.path().join("vncdo.err")).unwrap_or_default()
    );
    ui.send("connected");

    // 4. bob sees the session live and watches it in the player.
    let s = ui.step("listed", step_timeout, &gw);
    let sid = s["session"].as_str().unwrap().to_owned();
    assert_eq!(sid, rec_id, "the live row is the recorded session");
    assert_eq!(
        (&s["user"], &s["target"], &s["protocol"]),
        (&json!("alice"), &json!(TARGET), &json!("vnc")),
        "{s}"
    );
    let listed_ms = s["after_ms"].as_f64().unwrap();
    assert!(listed_ms <= 5000.0, "listed after {listed_ms} ms");
    let s = ui.step("watching", step_timeout, &gw);
    let (first, last) = (&s["first"], &s["last"]);
    println!("player while live: first sample {first}, last {last}");
    assert!(
        s["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/player/?id={sid}")),
        "{s}"
    );
    assert_eq!(first["live"], "following", "{s}");
    assert_eq!(last["live"], "following", "{s}");
    assert_eq!(last["integrity"], "partial", "{s}");
    assert_eq!(
        (last["width"].as_u64(), last["height"].as_u64()),
        (Some(W.into()), Some(H.into()))
    );
    let (t0, t1) = (first["t"].as_f64().unwrap(), last["t"].as_f64().unwrap());
    assert!(
        t1 - t0 >= 1.5,
        "video time advanced {t0:.2} -> {t1:.2} s in 3 s"
    );
    let (f0, f1) = (
        first["frames"].as_u64().unwrap(),
        last["frames"].as_u64().unwrap(),
    );
    assert!(f1 > f0, "frames decoded {f0} -> {f1}");
    assert!(
        last["luma"].as_f64().unwrap() > 5.0,
        "the frame shown is not black: {last}"
    );
    assert!(vncdo.exited().is_none(), "vncdo still connected");

    // 5. bob locks the session from the UI, sees it marked, and resumes it.
    ui.send("lock");
    let s = ui.step("locked", step_timeout, &gw);
    assert_eq!(
        (&s["lock_status"], &s["resume_status"]),
        (&json!(200), &json!(200)),
        "{s}"
    );
    let marked = s["locked_text"].as_str().unwrap_or_default();
    assert!(
        marked.contains("locked by bob") && marked.contains("checking the change"),
        "{s}"
    );
    assert!(
        s["prompt"].as_str().unwrap_or_default().contains("alice"),
        "the prompt names whose session: {s}"
    );
    assert_eq!(s["still_marked"], false, "{s}");

    // 6. bob terminates the session from the UI: vncdo is cut within MAX_CUT.
    ui.send("terminate");
    let s = ui.step("terminated", step_timeout, &gw);
    assert_eq!(s["status"], 200, "{s}");
    assert_eq!(s["body"]["terminated"], sid.as_str(), "{s}");
    assert_eq!(s["body"]["reason"], terminate_reason, "{s}");
    assert!(
        s["prompt"].as_str().unwrap_or_default().contains("alice"),
        "the prompt names whose session: {s}"
    );
    let click_ms = s["click_ms"].as_f64().unwrap();
    let response_ms = s["response_ms"].as_f64().unwrap();
    let (exit_ms, status) = vncdo.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "vncdo was not cut within 10 s of the terminate; gateway log:\n{}",
            gw.log()
        )
    });
    assert!(
        exit_ms >= click_ms,
        "vncdo ended before the terminate click ({exit_ms} < {click_ms}): {status:?}"
    );
    let cut_ms = exit_ms - response_ms;
    println!(
        "terminate: API answered {:.1} ms after the click; vncdo exited {cut_ms:.1} ms after the answer ({status:?})",
        response_ms - click_ms
    );
    assert!(
        cut_ms <= MAX_CUT.as_secs_f64() * 1000.0,
        "the viewer was cut {cut_ms:.1} ms after the terminate answered (at most {} ms)",
        MAX_CUT.as_millis()
    );
    // vncdo's exit status 11: the connection was lost (not a script that ran out).
    assert_eq!(
        status.code(),
        Some(11),
        "vncdo reports the lost connection: {}",
        std::fs::read_to_string(logs.path().join("vncdo.err")).unwrap_or_default()
    );

    // The live view drops the session; the player sees the recording sealed and verified.
    let s = ui.step("after", step_timeout, &gw);
    println!("after the terminate: {s}");
    assert_eq!(s["player_live"], "sealed", "{s}");
    assert_eq!(s["player_integrity"], "ok", "{s}");
    assert_eq!(s["approver_saw_token"], false, "{s}");
    assert_eq!(s["approver_saw_credential"], false, "{s}");
    let s = ui.step("done", step_timeout, &gw);
    assert_eq!(s["page_errors"], json!([]), "{s}");
    assert_eq!(s["player_errors"], json!([]), "{s}");
    ui.finish();

    // 7. The recording: sealed, the lock and the termination recorded, verified.
    let recs = gw.sealed(1);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0], rec);
    let m = manifest(&rec);
    assert_eq!(m["state"], "completed", "{m}");
    assert_eq!(
        (&m["user"], &m["target"]),
        (&json!("alice"), &json!(TARGET))
    );
    assert_eq!(
        m["end_reason"],
        format!("terminated by bob: {terminate_reason}"),
        "{m}"
    );
    let policy = events_of(&rec, "policy");
    let stop: Vec<_> = policy
        .iter()
        .filter(|e| e["action"] == "terminated")
        .collect();
    assert_eq!(stop.len(), 1, "{policy:?}");
    let detail = stop[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("bob") && detail.contains(terminate_reason),
        "{detail}"
    );
    assert_eq!(stop[0]["rule"], "terminate", "{:?}", stop[0]);
    let lock: Vec<&Value> = policy.iter().filter(|e| e["rule"] == "lock").collect();
    assert_eq!(
        lock.iter()
            .map(|e| e["action"].as_str())
            .collect::<Vec<_>>(),
        [Some("locked"), Some("resumed")],
        "{policy:?}"
    );
    assert!(
        lock[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("locked by bob: "),
        "{lock:?}"
    );
    assert!(
        !events_of(&rec, "key").is_empty() || !events_of(&rec, "text").is_empty(),
        "alice's typing is in the transcript"
    );
    gw.assert_verifies(&rec);

    // The audit log (read with the admin token: bob may not read it).
    let bob_token = login(gw.admin_port, "bob", &bob_pw);
    assert_eq!(
        api(gw.admin_port, &bob_token, "GET", "/api/audit", None).status,
        403
    );
    let audit = api(
        gw.admin_port,
        &admin_token(&gw),
        "GET",
        "/api/audit?limit=1000",
        None,
    );
    assert_eq!(audit.status, 200, "{}", audit.body);
    let audit = audit.json();
    assert_eq!(audit["integrity"]["ok"], true, "{}", audit["integrity"]);
    let entries = audit["entries"].as_array().unwrap();
    let one = |action: &str, actor: &str| -> Value {
        let found: Vec<_> = audited(entries, action)
            .into_iter()
            .filter(|e| e["actor"] == actor && e["target"] == TARGET)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{action} by {actor} on {TARGET}: {entries:?}"
        );
        found[0].clone()
    };
    let requested = one("access_requested", "alice");
    assert!(
        requested["detail"].as_str().unwrap().contains(reason),
        "{requested}"
    );
    let approved = one("access_approved", "bob");
    assert!(
        approved["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("request {request_id} of alice")),
        "{approved}"
    );
    one("grant_issued", "bob");
    let terminated = one("session_terminated", "bob");
    let detail = terminated["detail"].as_str().unwrap();
    assert!(
        detail.contains(&sid) && detail.contains(terminate_reason),
        "{terminated}"
    );
    for user in ["alice", "bob"] {
        assert!(
            audited(entries, "login").iter().any(|e| e["actor"] == user),
            "{user}'s sign-in is audited"
        );
    }

    // Secrets: the token is in no log and no file but the access database (VNC authentication
    // needs the secret itself); the passwords are nowhere in the data folder or the log.
    let log = gw.log();
    assert!(!log.contains(&token), "the token is in the gateway log");
    let access_db = |f: &Path| {
        f.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("access.sqlite3"))
    };
    let leaked = files_containing(&gw.data(), &token, access_db);
    assert!(leaked.is_empty(), "the token is in {leaked:?}");
    assert!(
        !walk(&rec).is_empty() && files_containing(&rec, &token, |_| false).is_empty(),
        "the recording does not hold the token"
    );
    for pw in [alice_pw.as_str(), bob_pw.as_str(), TARGET_PASSWORD] {
        assert!(!log.contains(pw), "a password is in the gateway log");
        let leaked = files_containing(&gw.data(), pw, |_| false);
        assert!(leaked.is_empty(), "a password is in {leaked:?}");
    }
    // The one-time credential was used once and works no more.
    let after = grants(&gw);
    assert_eq!(after.len(), 1, "{after:?}");
    let o = psmgate_e2e::peers::vncdo(&gw.server(), Some(&token), &["pause", "0.1"]).unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "the used one-time token is refused"
    );
    println!(
        "access UI flow: listed after {listed_ms:.0} ms, viewer cut {cut_ms:.1} ms after the terminate answered; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_access_api_refuses_what_the_policy_does_not_allow() {
    let alice_pw = planted("alice");
    let bob_pw = planted("bob");
    let dave_pw = planted("dave");
    let dave = format!(
        "[users.dave]\nroles = [\"user\", \"approver\"]\npassword_hash = \"{}\"\n\n\
         [[rules]]\nid = \"dave-lab\"\nusers = [\"dave\"]\ntargets = [\"{TARGET}\"]\napproval = \"required\"\n",
        hash_password(&dave_pw)
    );
    let people = users_and_rules(&hash_password(&alice_pw), &hash_password(&bob_pw), &dave);
    // No VNC session is opened: the target need not run.
    let gw = Gateway::start_with_users(free_port().unwrap(), Options::default(), &people);
    wait_admin(&gw);
    let port = gw.admin_port;
    let alice = login(port, "alice", &alice_pw);
    let bob = login(port, "bob", &bob_pw);
    let dave = login(port, "dave", &dave_pw);
    let ask = json!({ "target": TARGET, "reason": "maintenance", "duration": "15m" });
    // What this test sends: `ask` with a bearer token, a JSON POST of `body` to `path`, `ask`
    // with the headers `headers` only, and alice's sign-in with `password`.
    let post = |token: &str, path: &str, body: Value| api(port, token, "POST", path, Some(body));
    let request = |token: &str| post(token, "/api/access-requests", ask.clone());
    let send_ask = |headers: &[(&str, &str)]| {
        http(
            port,
            "POST",
            "/api/access-requests",
            headers,
            Some(&ask.to_string()),
        )
    };
    let sign_in = |password: &str| {
        http(
            port,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            Some(&json!({ "user": "alice", "password": password }).to_string()),
        )
    };

    let r = request(&alice);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["status"], "pending");
    let id = r.json()["id"].as_i64().unwrap();
    let approve = format!("/api/access-requests/{id}/approve");

    // alice cannot approve her own request (nor anyone's: she lacks `approve`).
    let r = post(&alice, &approve, json!({}));
    assert_eq!(r.status, 403, "{}", r.body);
    // dave holds `approve`, but never on his own request.
    let r = request(&dave);
    assert_eq!(r.status, 201, "{}", r.body);
    let own = r.json()["id"].as_i64().unwrap();
    let r = post(
        &dave,
        &format!("/api/access-requests/{own}/approve"),
        json!({}),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "own_request"),
        "{}",
        r.body
    );

    // bob cannot request access: no rule lets him connect (and his role cannot request).
    let r = request(&bob);
    assert_eq!(r.status, 403, "{}", r.body);

    // bob approves alice's request once; a second decision conflicts.
    let r = post(&bob, &approve, json!({ "note": "ok" }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "approved");
    assert!(
        r.json().get("credential").is_none(),
        "the approver is not shown the credential"
    );
    let r = post(&bob, &approve, json!({}));
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "not_pending"),
        "{}",
        r.body
    );
    let r = post(&bob, &format!("/api/access-requests/{id}/deny"), json!({}));
    assert_eq!(r.status, 409, "{}", r.body);
    // Only alice sees the credential.
    let r = api(
        port,
        &alice,
        "GET",
        &format!("/api/access-requests/{id}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["credential"]["token"].is_string(), "{}", r.body);

    // Terminating a session that does not run.
    let r = post(
        &bob,
        "/api/sessions/live/no-such-session/terminate",
        json!({ "reason": "test" }),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // A cookie-authenticated POST must be JSON (a cross-site form cannot make one).
    let cookie = format!("psmgate_session={alice}");
    let form = send_ask(&[
        ("Cookie", &cookie),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    assert_eq!(
        (form.status, form.code().as_str()),
        (403, "csrf"),
        "{}",
        form.body
    );
    let bare = send_ask(&[("Cookie", &cookie)]);
    assert_eq!(bare.status, 403, "{}", bare.body);
    let json_cookie = send_ask(&[("Cookie", &cookie), ("Content-Type", "application/json")]);
    assert_eq!(
        json_cookie.status, 201,
        "the same request as JSON is accepted: {}",
        json_cookie.body
    );

    // Sign-in failures are limited per address: the sixth wrong password in a row gets 429.
    let statuses: Vec<u16> = (0..6).map(|_| sign_in("not-her-password").status).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let limited = sign_in(&alice_pw);
    assert_eq!(
        limited.status, 429,
        "even the right password waits: {}",
        limited.body
    );
    assert!(
        limited
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "{:?}",
        limited.headers
    );
    let log = gw.log();
    assert!(!log.contains("not-her-password") && !log.contains(&alice_pw));
    let audit = std::fs::read_to_string(gw.data().join("recordings/audit.jsonl")).unwrap();
    assert!(!audit.contains("not-her-password") && !audit.contains(&alice_pw));
    assert!(audit.contains("login_failed"));
}
