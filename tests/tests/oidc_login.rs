//! OpenID Connect sign-in against a real OpenID provider: the npm `oidc-provider` package (a
//! certified implementation) over HTTPS on loopback with a test CA (tests/oidc/provider.mjs),
//! `psmgate serve --no-tls` with `[oidc]`, and headless Chromium (tests/oidc/login-flow.mjs)
//! clicking "Sign in with …" in the UI, signing in at the provider and consenting. A configured
//! user is signed in with the roles of the policy; a user the policy does not know is signed in
//! with the roles `[oidc.group_roles]` gives their groups at the provider, and refused when no
//! group of theirs has any; tampered callbacks are refused; everything is audited without codes
//! or tokens; a policy reload that removes a group's mapping ends the access it gave, and one
//! that removes `[oidc]` turns OIDC off. A second provider puts the user's claims (groups too) in
//! the ID token itself and takes the client secret in the form (`client_secret_post`) rather than
//! by HTTP Basic.

use psmgate_e2e::peers::free_port;
use psmgate_e2e::psmgate_bin;
use psmgate_e2e::{http_request, HttpReply as Reply};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "psmgate-e2e";
const LABEL: &str = "Test IdP";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// A child process killed on drop (its stdin closed first, on which the node peers exit).
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line `child` prints on stdout, within `timeout`.
fn first_line(child: &mut Child, timeout: Duration, what: &str, log: &Path) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep reading, so that the child never writes into a closed pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(timeout) {
        Ok(line) if !line.trim().is_empty() => line,
        _ => panic!(
            "{what} printed no ready line: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// One HTTP/1.1 GET or POST to the admin listener.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    http_request(port, method, path, headers, Some(body))
}

fn get_json(port: u16, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut h = vec![("Accept", "application/json")];
    h.extend_from_slice(extra);
    http(port, "GET", path, &h, "")
}

/// Starts a sign-in attempt through the API; the state in the provider URL and the binding
/// cookie's `name=value`.
fn start_attempt(port: u16, issuer: &str) -> (String, String, Reply) {
    let r = http(port, "GET", "/api/oidc/login?next=//evil.example/", &[], "");
    assert_eq!(r.status, 303, "{r:?}");
    let location = r.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{issuer}/auth?")),
        "{location}"
    );
    let state = location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let cookie = r
        .set_cookie("psmgate_oidc")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (state, cookie, r)
}

/// The gateway's policy: alice (user) and bob (auditor), with `[oidc]` when `oidc` is given
/// (extra lines at the end of the section, such as the token endpoint's authentication method,
/// or [`GROUPS`]).
fn config(admin: u16, issuer: &str, ca: &str, oidc: Option<&str>) -> String {
    let oidc = if let Some(extra) = oidc {
        format!(
            "[oidc]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = {{ file = \"oidc-client-secret\" }}\n\
             redirect_url = \"http://127.0.0.1:{admin}/api/oidc/callback\"\n\
             extra_roots = [\"{ca}\"]\nbutton_label = \"{LABEL}\"\n{extra}"
        )
    } else {
        String::new()
    };
    format!(
        "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         vnc_listen = \"127.0.0.1:{}\"\n\n\
         [users.alice]\nroles = [\"user\"]\n\n[users.bob]\nroles = [\"auditor\"]\n\n{oidc}",
        free_port().unwrap()
    )
}

/// The serve log line saying the user was looked up at the userinfo endpoint.
const USERINFO_LOOKUP: &str = "asking the userinfo endpoint";

/// The end of `[oidc]` that reads the provider's groups: psm-auditors are auditors,
/// psm-admins admins.
const GROUPS: &str = "scopes = [\"openid\", \"profile\", \"email\", \"groups\"]\n\
                      groups_claim = \"groups\"\n\n[oidc.group_roles]\n\
                      psm-auditors = [\"auditor\"]\npsm-admins = [\"admin\"]\n";

/// The psm-auditors mapping, which [`GROUPS`] holds.
const AUDITORS_MAPPING: &str = "psm-auditors = [\"auditor\"]\n";

/// A provider (provider.mjs with `provider_options`) and `psmgate serve --no-tls` configured
/// for it (`oidc`: extra lines of `[oidc]`), in a temporary folder; both stopped on drop.
struct Rig {
    dir: tempfile::TempDir,
    admin: u16,
    issuer: String,
    ca: String,
    secret: String,
    provider_log: PathBuf,
    serve_log: PathBuf,
    config_path: PathBuf,
    _serve: Proc,
    _provider: Proc,
}

impl Rig {
    fn start(provider_options: Value, oidc: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let admin = free_port().unwrap();
        let secret = format!("client-Secret-{}-{}", std::process::id(), admin);
        std::fs::write(dir.path().join("oidc-client-secret"), format!("{secret}\n")).unwrap();

        let mut input = json!({
            "dir": dir.path().join("idp").display().to_string(),
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "redirect_uri": format!("http://127.0.0.1:{admin}/api/oidc/callback"),
        });
        for (k, v) in provider_options.as_object().unwrap() {
            input[k] = v.clone();
        }
        let provider_log = dir.path().join("provider.log");
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .arg(input.to_string())
            .current_dir(oidc_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&provider_log).unwrap())
            .spawn()
            .expect("node runs tests/oidc/provider.mjs (scripts/install-deps.sh installs it)");
        let ready = first_line(
            &mut child,
            Duration::from_secs(15),
            "provider.mjs",
            &provider_log,
        );
        let stdin = child.stdin.take();
        let provider = Proc { child, stdin };
        let ready: Value = serde_json::from_str(&ready).unwrap();
        let issuer = ready["issuer"].as_str().unwrap().to_owned();
        let ca = ready["ca"].as_str().unwrap().to_owned();

        let config_path = dir.path().join("psmgate.toml");
        std::fs::write(&config_path, config(admin, &issuer, &ca, Some(oidc))).unwrap();
        let serve_log = dir.path().join("serve.log");
        let child = Command::new(psmgate_bin())
            .arg("--config")
            .arg(&config_path)
            .args(["serve", "--no-tls"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).unwrap())
            .env("NO_COLOR", "1")
            .env("PSMGATE_LOG", "psmgate=debug")
            .spawn()
            .unwrap();
        let rig = Rig {
            dir,
            admin,
            issuer,
            ca,
            secret,
            provider_log,
            serve_log,
            config_path,
            _serve: Proc { child, stdin: None },
            _provider: provider,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", admin)).is_err()
            || http(admin, "GET", "/healthz", &[], "").status != 200
        {
            assert!(
                Instant::now() < deadline,
                "serve did not listen: {}",
                rig.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rig
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.serve_log).unwrap_or_default()
    }

    fn provider_log(&self) -> String {
        std::fs::read_to_string(&self.provider_log).unwrap_or_default()
    }

    /// login-flow.mjs for `logins`: one step per login, then the final step.
    fn browser(&self, logins: &[&str]) -> Vec<Value> {
        let flow = Command::new("node")
            .arg(oidc_dir().join("login-flow.mjs"))
            .arg(
                json!({
                    "base": format!("http://127.0.0.1:{}", self.admin),
                    "logins": logins,
                })
                .to_string(),
            )
            .current_dir(oidc_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&flow.stdout);
        let context = format!(
            "login-flow.mjs: {stdout}\n{}\nserve: {}\nprovider: {}",
            String::from_utf8_lossy(&flow.stderr),
            self.log(),
            self.provider_log()
        );
        assert!(flow.status.success(), "{context}");
        let steps: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(steps.len(), logins.len() + 1, "{context}");
        assert_eq!(steps[logins.len()]["page_errors"], json!([]), "{context}");
        steps
    }

    /// Checks that `step` is `user` signed in to the UI, and through the API with its session
    /// cookie (signed in with OIDC, with `roles` and the provider's `groups`); the cookie.
    fn assert_signed_in(&self, step: &Value, user: &str, roles: &[&str], groups: Value) -> String {
        assert_eq!(step["login"], user);
        assert_eq!(step["button"], format!("Sign in with {LABEL}"));
        assert_eq!(step["consented"], true, "{step}");
        assert_eq!(step["url"], format!("http://127.0.0.1:{}/ui/", self.admin));
        assert_eq!(
            step["who"],
            format!("{user} ({})", roles.join(", ")),
            "{step}"
        );
        assert_eq!(step["binding_cookie_left"], false);
        let session = step["session"].as_str().expect("a session cookie");
        assert!(session.starts_with("psl_"), "{session}");
        let cookie = format!("psmgate_session={session}");
        let me = get_json(self.admin, "/api/me", &[("Cookie", &cookie)]);
        assert_eq!(me.status, 200, "{me:?}");
        let me = me.json();
        assert_eq!(me["user"], user);
        assert_eq!(me["via"], "oidc");
        assert_eq!(me["roles"], json!(roles));
        assert_eq!(me["groups"], groups, "{me}");
        cookie
    }

    /// Replaces the configuration file with `text` and reloads it with the admin token.
    fn reload(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
        let token = std::fs::read_to_string(self.dir.path().join("data/admin-token")).unwrap();
        let auth = format!("Bearer {}", token.trim());
        let r = http(
            self.admin,
            "POST",
            "/api/config/reload",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            "{}",
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
}

#[test]
fn oidc_sign_in_against_a_real_provider() {
    let started = Instant::now();
    let rig = Rig::start(
        json!({ "groups": {
            "alice": [],
            "carol": ["unmapped", "psm-auditors"],
            "mallory": ["unmapped", "psm-auditors-old"],
        } }),
        GROUPS,
    );
    let admin = rig.admin;
    let r = get_json(admin, "/api/oidc", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({ "enabled": true, "label": LABEL }));

    // The browser: alice (configured) signs in; carol, unknown to the policy, signs in as an
    // auditor through her group; mallory, unknown and in no mapped group, is refused.
    let steps = rig.browser(&["alice", "mallory", "carol"]);
    let cookie = rig.assert_signed_in(&steps[0], "alice", &["user"], json!([]));
    let session = cookie.trim_start_matches("psmgate_session=").to_owned();
    let mallory = &steps[1];
    assert_eq!(mallory["who"], Value::Null);
    assert_eq!(mallory["session"], Value::Null);
    assert_eq!(mallory["status"], 403, "{mallory}");
    let refusal = mallory["refusal"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("\"mallory\" signed in at the OpenID provider but is not a psmgate user"),
        "{refusal}"
    );
    assert!(
        refusal.contains("none of their groups has roles under [oidc.group_roles]"),
        "{refusal}"
    );
    let carol = rig.assert_signed_in(
        &steps[2],
        "carol",
        &["auditor"],
        json!(["unmapped", "psm-auditors"]),
    );
    let carol_session = carol.trim_start_matches("psmgate_session=").to_owned();
    // What the group's role permits (the audit log), and what it does not (managing).
    let audit_log = get_json(admin, "/api/audit", &[("Cookie", &carol)]);
    assert_eq!(audit_log.status, 200, "{audit_log:?}");
    let manage = http(
        admin,
        "POST",
        "/api/config/reload",
        &[("Cookie", &carol), ("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(manage.status, 403, "{manage:?}");
    assert_eq!(manage.json()["error"], "forbidden");
    assert!(
        manage.json()["message"]
            .as_str()
            .unwrap()
            .contains("manage"),
        "{manage:?}"
    );
    // This provider keeps the profile claims out of the ID token: the user came from userinfo.
    assert!(rig.log().contains(USERINFO_LOOKUP), "{}", rig.log());
    // The provider offers both methods and none is configured: HTTP Basic.
    let idp = rig.provider_log();
    assert!(idp.contains("token request: client_secret_basic"), "{idp}");
    assert!(!idp.contains("token request: client_secret_post"), "{idp}");
    // Tampered callbacks.
    let (state, binding, started_attempt) = start_attempt(admin, &rig.issuer);
    let set = started_attempt.set_cookie("psmgate_oidc").unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/api/oidc/", "Max-Age=600"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let wrong = get_json(
        admin,
        "/api/oidc/callback?code=x&state=not-the-state",
        &[("Cookie", &binding)],
    );
    assert_eq!(wrong.status, 400, "{wrong:?}");
    assert_eq!(wrong.json()["error"], "bad_state");
    assert!(wrong.json()["message"]
        .as_str()
        .unwrap()
        .contains("unknown"));
    let other_browser = get_json(
        admin,
        &format!("/api/oidc/callback?code=x&state={state}"),
        &[],
    );
    assert_eq!(other_browser.status, 400, "{other_browser:?}");
    assert!(other_browser.json()["message"]
        .as_str()
        .unwrap()
        .contains("not started in this browser"));
    // The attempt was used up by the refused callback: the right cookie comes too late.
    let replay = get_json(
        admin,
        &format!("/api/oidc/callback?code=x&state={state}"),
        &[("Cookie", &binding)],
    );
    assert_eq!(replay.status, 400, "{replay:?}");
    // A forged code, with the right state and cookie, is refused by the provider.
    let (state, binding, _) = start_attempt(admin, &rig.issuer);
    let forged = get_json(
        admin,
        &format!("/api/oidc/callback?code=forged-code&state={state}"),
        &[("Cookie", &binding)],
    );
    assert_eq!(forged.status, 401, "{forged:?}");
    assert_eq!(forged.json()["error"], "code_refused", "{forged:?}");
    // Five failures from this address: the next callback is not even looked at.
    let limited = get_json(admin, "/api/oidc/callback?code=x&state=y", &[]);
    assert_eq!(limited.status, 429, "{limited:?}");

    // The audit log: the sign-in, the refusals with their reasons, no code, token or secret.
    let audit =
        std::fs::read_to_string(rig.dir.path().join("data/recordings/audit.jsonl")).unwrap();
    let entries: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logins: Vec<&Value> = entries.iter().filter(|e| e["action"] == "login").collect();
    assert_eq!(logins.len(), 2, "{audit}");
    assert_eq!(logins[0]["actor"], "alice");
    assert_eq!(logins[1]["actor"], "carol");
    for login in &logins {
        assert!(
            login["detail"]
                .as_str()
                .unwrap()
                .starts_with("oidc from 127.0.0.1:"),
            "{audit}"
        );
    }
    let failed: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "login_failed")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 5, "{audit}");
    assert!(entries.iter().any(|e| e["action"] == "login_failed"
        && e["actor"] == "mallory"
        && e["detail"]
            .as_str()
            .unwrap()
            .contains("is not a psmgate user")));
    assert!(failed.iter().all(|d| d.starts_with("oidc from 127.0.0.1:")));
    assert!(failed
        .iter()
        .any(|d| d.contains("unknown or was already used")));
    assert!(failed
        .iter()
        .any(|d| d.contains("not started in this browser")));
    assert!(
        failed.iter().any(|d| d.contains("invalid_grant")),
        "{audit}"
    );
    for text in [&audit, &rig.log()] {
        assert!(!text.contains(&rig.secret), "the client secret leaked");
        assert!(!text.contains(&session), "the session token leaked");
        assert!(!text.contains(&carol_session), "the session token leaked");
        assert!(!text.contains("forged-code"), "a code leaked");
        assert!(!text.contains("eyJ"), "a JWT leaked");
    }

    // A reload that removes psm-auditors' mapping: carol's next call is refused at once, her
    // session has no role left; alice's stays.
    rig.reload(&config(
        admin,
        &rig.issuer,
        &rig.ca,
        Some(&GROUPS.replace(AUDITORS_MAPPING, "")),
    ));
    for path in ["/api/audit", "/api/me"] {
        let r = get_json(admin, path, &[("Cookie", &carol)]);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    assert_eq!(
        get_json(admin, "/api/me", &[("Cookie", &cookie)]).json()["roles"],
        json!(["user"])
    );

    // A reload that removes [oidc] turns the button and the routes off.
    rig.reload(&config(admin, &rig.issuer, &rig.ca, None));
    assert_eq!(
        get_json(admin, "/api/oidc", &[]).json(),
        json!({ "enabled": false, "label": null })
    );
    let r = get_json(admin, "/api/oidc/login", &[]);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"], "oidc_disabled");
    // Alice's session stays: she is still a configured user.
    assert_eq!(
        get_json(admin, "/api/me", &[("Cookie", &cookie)]).json()["user"],
        "alice"
    );
    eprintln!("OIDC end-to-end test took {:?}", started.elapsed());
}

#[test]
fn claims_in_the_id_token_and_the_secret_in_the_form() {
    let rig = Rig::start(
        json!({
            "auth_method": "client_secret_post",
            "id_token_claims": true,
            "groups": { "bob": "psm-admins" },
        }),
        &format!("token_endpoint_auth_method = \"client_secret_post\"\n{GROUPS}"),
    );
    // Bob is configured (auditor) and in psm-admins, given as a single string: both roles.
    let steps = rig.browser(&["bob"]);
    let cookie = rig.assert_signed_in(
        &steps[0],
        "bob",
        &["auditor", "admin"],
        json!(["psm-admins"]),
    );
    // Managing is the admin role's alone: bob may reload the policy as psm-admins gives it.
    let reload = http(
        rig.admin,
        "POST",
        "/api/config/reload",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(reload.status, 200, "{reload:?}");
    assert!(!rig.log().contains(USERINFO_LOOKUP), "{}", rig.log());
    assert!(!rig.log().contains(&rig.secret));
    let idp = rig.provider_log();
    assert!(idp.contains("token request: client_secret_post"), "{idp}");
    assert!(!idp.contains("token request: client_secret_basic"), "{idp}");
}
