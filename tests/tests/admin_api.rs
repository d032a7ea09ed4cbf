//! The admin API against a real `psmgate serve`: the authorization matrix — every role of the
//! policy × every API operation, allowed or 403 — generated from the policy's roles and the
//! gateway's operation table, not listed by hand; scoped roles, and full pages of recordings for
//! them; the OpenAPI document served.

use psmgate::admin::ops::{Access, OPERATIONS};
use psmgate_e2e::peers::free_port;
use psmgate_e2e::psmgate_bin;
use psmgate_policy::Config;
use serde_json::Value;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `psmgate serve` with plain-HTTP admin listener; killed on drop.
struct Serve {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// One HTTP/1.1 request; returns the status and the body.
    fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        psmgate_e2e::http_call(self.port, method, path, bearer, body)
    }

    fn json(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (s, b) = self.call(method, path, bearer, body);
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    fn login(&self, user: &str) -> String {
        let (s, v) = self.json(
            "POST",
            "/api/login",
            None,
            Some(&format!(r#"{{"user":"{user}","password":"pw-{user}"}}"#)),
        );
        assert_eq!(s, 200, "login {user}: {v}");
        v["token"].as_str().unwrap().to_owned()
    }
}

fn hash(password: &str) -> String {
    psmgate_e2e::hash_password(password)
}

/// Users named after the roles they hold (one role each), plus `scoped` (approver on group g1
/// only), `scoped-reviewer` (reviewer on group g1 only) and `requester` (user).
fn config_text(dir: &Path, roles: &[&str]) -> String {
    let admin = free_port().unwrap();
    let dead = free_port().unwrap();
    let mut users = String::new();
    let mut names = Vec::new();
    for role in roles {
        let name = format!("u-{role}");
        users.push_str(&format!(
            "[users.{name}]\nroles = [\"{role}\"]\npassword_hash = \"{}\"\n\n",
            hash(&format!("pw-{name}"))
        ));
        names.push(name);
    }
    for (name, role) in [
        ("scoped", "approver@g1"),
        ("scoped-reviewer", "reviewer@g1"),
        ("requester", "user"),
    ] {
        users.push_str(&format!(
            "[users.{name}]\nroles = [\"{role}\"]\npassword_hash = \"{}\"\n\n",
            hash(&format!("pw-{name}"))
        ));
        names.push(name.to_owned());
    }
    let _ = dir;
    format!(
        "[gateway]\ndata_dir = \"data\"\nadmin_listen = \"127.0.0.1:{admin}\"\nadmin_tls = false\n\
         vnc_listen = \"127.0.0.1:{}\"\n\n{users}\
         [roles.observer]\npermissions = [\"watch_live\", \"view_recordings\"]\n\n\
         [targets.synthetic-desktop]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{dead}\"\n\n\
         [targets.t2]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:{dead}\"\n\n\
         [target_groups]\ng1 = [\"synthetic-desktop\"]\ng2 = [\"t2\"]\n\n\
         [[rules]]\nid = \"everyone\"\nusers = [{}]\ntargets = \"*\"\napproval = \"required\"\n",
        free_port().unwrap(),
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn start(roles: &[&str]) -> (Serve, Config) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("psmgate.toml");
    std::fs::write(&config_path, config_text(dir.path(), roles)).unwrap();
    let config = Config::load(&config_path).unwrap();
    let port = config.gateway.admin_listen.port();
    // A recording of target `synthetic-desktop` (the demo's) to read.
    let demo = Command::new(psmgate_bin())
        .arg("--config")
        .arg(&config_path)
        .args(["demo", "--seconds", "2"])
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(psmgate_bin())
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .unwrap();
    let serve = Serve { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "serve did not listen: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (serve, config)
}

fn admin_token(serve: &Serve) -> String {
    std::fs::read_to_string(serve.dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A concrete request path for an operation's template.
fn concrete(path: &str, recording: &str, request: i64) -> String {
    path.replace(
        "/api/recordings/{id}",
        &format!("/api/recordings/{recording}"),
    )
    .replace("{path*}", "manifest.partial.json")
    .replace(
        "/api/sessions/live/{id}",
        "/api/sessions/live/no-such-session",
    )
    .replace(
        "/api/access-requests/{id}",
        &format!("/api/access-requests/{request}"),
    )
}

fn body_for(op: &str) -> Option<&'static str> {
    match op {
        "login" => None, // built per user
        "createAccessRequest" => Some(r#"{"target":"t2","reason":"matrix","duration":"30m"}"#),
        "terminateSession" => Some(r#"{"reason":"matrix"}"#),
        _ => Some("{}"),
    }
}

#[test]
fn every_role_times_every_operation_is_allowed_or_forbidden_as_the_policy_says() {
    let builtin = ["admin", "approver", "reviewer", "auditor", "user"];
    let mut roles: Vec<&str> = builtin.to_vec();
    roles.push("observer");
    let (serve, config) = start(&roles);
    // The roles under test are the policy's own: every one it defines is covered.
    let mut defined = config.roles();
    defined.sort();
    let mut tested: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    tested.sort();
    assert_eq!(defined, tested, "a role of the policy is not covered");

    let recording = {
        let (s, v) = serve.json("GET", "/api/recordings", Some(&admin_token(&serve)), None);
        assert_eq!(s, 200, "{v}");
        v[0]["id"]
            .as_str()
            .expect("the demo recording is listed")
            .to_owned()
    };
    // A pending request on t2 to decide (made by `requester`).
    let req_token = serve.login("requester");
    let (s, v) = serve.json(
        "POST",
        "/api/access-requests",
        Some(&req_token),
        Some(r#"{"target":"t2","reason":"to be decided","duration":"15m"}"#),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    assert!(v.get("credential").is_none());
    let request = v["id"].as_i64().unwrap();

    let mut checked = 0;
    let mut table = String::new();
    for role in &roles {
        let user = format!("u-{role}");
        let token = serve.login(&user);
        let perms = config.role_permissions(role).unwrap();
        // Logout last: it ends the session the other calls use.
        let mut ops: Vec<_> = OPERATIONS.iter().collect();
        ops.sort_by_key(|o| o.id == "logout");
        for op in ops {
            let path = concrete(op.path, &recording, request);
            let (status, body) = if op.id == "login" {
                serve.call(
                    "POST",
                    &path,
                    None,
                    Some(&format!(r#"{{"user":"{user}","password":"pw-{user}"}}"#)),
                )
            } else {
                serve.call(op.method, &path, Some(&token), body_for(op.id))
            };
            let expected_allowed = match op.access {
                Access::Public | Access::SignedIn => true,
                Access::Global(p) | Access::Target(p) => perms.contains(&p),
            };
            assert_ne!(status, 401, "{role} {} {path}: {body}", op.method);
            if expected_allowed {
                assert_ne!(
                    status, 403,
                    "{role} may {} ({} {path}): {body}",
                    op.id, op.method
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{role} may not {} ({} {path}): {body}",
                    op.id, op.method
                );
            }
            table.push_str(&format!("{role:>9} {:<22} {status}\n", op.id));
            checked += 1;
        }
        // After logout the token no longer works.
        let (s, _) = serve.call("GET", "/api/me", Some(&token), None);
        assert_eq!(s, 401, "{role}: a token works after logout");
    }
    println!("{table}");
    assert_eq!(checked, roles.len() * OPERATIONS.len());
    // The break-glass admin token may do everything.
    let admin = admin_token(&serve);
    for op in OPERATIONS
        .iter()
        .filter(|o| o.id != "logout" && o.id != "login")
    {
        let (status, body) = serve.call(
            op.method,
            &concrete(op.path, &recording, request),
            Some(&admin),
            body_for(op.id),
        );
        if op.id == "createAccessRequest" {
            // Access is requested by a user, whom the break-glass token is not.
            assert!(
                status == 403 && body.contains("not_a_user"),
                "{status} {body}"
            );
        } else {
            assert!(
                status != 401 && status != 403,
                "admin token {}: {status} {body}",
                op.id
            );
        }
    }
}

#[test]
fn scoped_roles_act_only_on_their_group_and_reads_need_a_token() {
    let (serve, _config) = start(&["admin"]);
    let requester = serve.login("requester");
    let scoped = serve.login("scoped");
    let ask = |target: &str| {
        let (s, v) = serve.json(
            "POST",
            "/api/access-requests",
            Some(&requester),
            Some(&format!(
                r#"{{"target":"{target}","reason":"scoped test"}}"#
            )),
        );
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    };
    let in_group = ask("synthetic-desktop");
    let outside = ask("t2");
    // The scoped approver sees only the request in its group.
    let (_, list) = serve.json("GET", "/api/access-requests", Some(&scoped), None);
    let ids: Vec<i64> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![in_group], "{list}");
    let (s, v) = serve.json(
        "POST",
        &format!("/api/access-requests/{outside}/approve"),
        Some(&scoped),
        Some("{}"),
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = serve.json(
        "POST",
        &format!("/api/access-requests/{in_group}/approve"),
        Some(&scoped),
        Some(r#"{"note":"ok"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], "scoped");
    assert!(
        v.get("credential").is_none(),
        "the approver sees no credential: {v}"
    );
    // The requester does, once.
    let (_, mine) = serve.json(
        "GET",
        &format!("/api/access-requests/{in_group}"),
        Some(&requester),
        None,
    );
    let token = mine["credential"]["token"].as_str().expect("credential");
    assert!(!token.is_empty());
    // Nothing without credentials; the OpenAPI document is public.
    let (s, _) = serve.call("GET", "/api/recordings", None, None);
    assert_eq!(s, 401);
    let (s, doc) = serve.json("GET", "/api/openapi.json", None, None);
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    // Unknown paths and methods are JSON errors.
    let (s, v) = serve.json("GET", "/api/nope", Some(&requester), None);
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    let (s, v) = serve.json("DELETE", "/api/me", Some(&requester), None);
    assert_eq!((s, v["error"].as_str()), (405, Some("method_not_allowed")));
    // The signed audit log verifies and names the approver.
    let (s, audit) = serve.json("GET", "/api/audit", Some(&admin_token(&serve)), None);
    assert_eq!(s, 200, "{audit}");
    assert_eq!(audit["integrity"]["ok"], true, "{audit}");
    assert_eq!(audit["integrity"]["unsigned"], 0, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "access_approved"
        && e["actor"] == "scoped"
        && e["target"] == "synthetic-desktop"));
    assert!(
        entries.iter().all(|e| !e.to_string().contains(token)),
        "a credential reached the audit log"
    );
    // The metrics count what happened (2 requests, 1 approved, 2 sign-ins) and the index.
    let (s, text) = serve.call("GET", "/metrics", Some(&admin_token(&serve)), None);
    assert_eq!(s, 200, "{text}");
    for line in [
        "psmgate_access_requests_total{outcome=\"requested\"} 2",
        "psmgate_access_requests_total{outcome=\"approved\"} 1",
        "psmgate_access_approval_seconds_count 1",
        "psmgate_logins_total{outcome=\"ok\"} 2",
        "psmgate_recordings{integrity=",
        "psmgate_session_coverage_ratio 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    let (s, _) = serve.call("GET", "/metrics", Some(&requester), None);
    assert_eq!(s, 403, "metrics need view_audit");
    // No password reached the log.
    assert!(!serve.log().contains("pw-requester"));
}

/// The ids `GET path` lists for `bearer`.
fn listed(serve: &Serve, path: &str, bearer: &str) -> Vec<String> {
    let (s, v) = serve.json("GET", path, Some(bearer), None);
    assert_eq!(s, 200, "{path}: {v}");
    v.as_array()
        .unwrap_or_else(|| panic!("{path}: not a list: {v}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_scoped_reviewer_gets_full_pages_of_its_targets_recordings() {
    use psmgate_storage::index::{Index, ListFilter, SqliteIndex};
    use std::time::Duration as Span;

    let (serve, _config) = start(&["admin"]);
    // Besides the demo recording (synthetic-desktop, in g1): 5 older ones on synthetic-desktop,
    // 30 on t2 (not in g1) in between and before them, and one of a target no longer configured.
    let index = SqliteIndex::open(&serve.dir.path().join("data/index.sqlite3")).unwrap();
    let all = index.list(&ListFilter::default()).unwrap();
    assert_eq!(all.len(), 1, "only the demo recording is indexed");
    let demo = all[0].clone();
    let add = |id: &str, target: &str, secs_before: u64| {
        let mut row = demo.clone();
        row.id = id.to_owned();
        row.dir = format!("{}-{id}", demo.dir);
        row.target = target.to_owned();
        row.started_at = demo.started_at - Span::from_secs(secs_before);
        row.ended_at = Some(row.started_at + Span::from_secs(30));
        index.upsert(&row).unwrap();
        // Nothing to make searchable: the gateway leaves it alone.
        index.set_text(id, "").unwrap();
    };
    let mut g1 = vec![demo.id.clone()];
    for k in 1..=5 {
        let id = format!("g1-{k}");
        add(&id, "synthetic-desktop", k * 60);
        g1.push(id);
    }
    for i in 0..30 {
        add(&format!("t2-{i}"), "t2", i * 10 + 5);
    }
    add("gone-1", "decommissioned", 1);

    // The reviewer scoped to g1 gets full pages of g1's recordings, newest first; offsets count
    // only those. Filtering after the page was read would have left [demo] of the first page.
    let reviewer = serve.login("scoped-reviewer");
    let pages: Vec<Vec<String>> = [0, 4, 8]
        .iter()
        .map(|offset| {
            listed(
                &serve,
                &format!("/api/recordings?limit=4&offset={offset}"),
                &reviewer,
            )
        })
        .collect();
    assert_eq!(pages[0], g1[..4], "a full first page");
    assert_eq!(pages[1], g1[4..], "the rest");
    assert!(pages[2].is_empty(), "{:?}", pages[2]);
    assert_eq!(
        listed(&serve, "/api/recordings?limit=1", &reviewer),
        g1[..1]
    );
    assert!(listed(&serve, "/api/recordings?target=t2", &reviewer).is_empty());
    assert_eq!(
        listed(
            &serve,
            "/api/recordings?target=synthetic-desktop",
            &reviewer
        ),
        g1
    );
    // The same holds for the overview's counts.
    let (s, overview) = serve.json("GET", "/api/dashboard?days=2", Some(&reviewer), None);
    assert_eq!(s, 200, "{overview}");
    assert_eq!(overview["sessions_total"], 6, "{overview}");

    // An unscoped signed-in user sees every configured target's recordings; the break-glass
    // token sees every recording.
    let admin_user = serve.login("u-admin");
    let token = admin_token(&serve);
    let everything = listed(&serve, "/api/recordings?limit=100", &token);
    assert_eq!(everything.len(), 37);
    assert_eq!(everything[0], demo.id);
    let configured: Vec<String> = everything
        .iter()
        .filter(|id| *id != "gone-1")
        .cloned()
        .collect();
    assert_eq!(
        listed(&serve, "/api/recordings?limit=100", &admin_user),
        configured
    );
    assert_eq!(
        listed(&serve, "/api/recordings?limit=5&offset=1", &admin_user),
        configured[1..6]
    );
}
