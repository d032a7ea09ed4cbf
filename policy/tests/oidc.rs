//! `[oidc]`: OpenID Connect sign-in to the web UI and admin API.

use psmgate_policy::oidc::{DEFAULT_OIDC_BUTTON_LABEL, DEFAULT_OIDC_USER_CLAIM};
use psmgate_policy::*;
use std::path::{Path, PathBuf};

const USERS: &str = r#"
[users.alice]
roles = ["user"]
"#;

const MINIMAL: &str = r#"
[oidc]
issuer = "https://idp.example.com/realms/main"
client_id = "psmgate"
client_secret = { file = "secrets/oidc-client" }
redirect_url = "https://psmgate.example.com:8443/api/oidc/callback"
"#;

fn load(text: &str) -> Config {
    Config::from_toml_str(text, "/etc/psmgate/psmgate.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn diagnostics(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "psmgate.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn has(diags: &[String], needle: &str) -> bool {
    diags.iter().any(|d| d.contains(needle))
}

#[test]
fn without_the_section_oidc_is_off_and_the_canonical_form_unchanged() {
    let c = load(USERS);
    assert!(c.oidc.is_none());
    assert!(
        !c.canonical_toml().contains("oidc"),
        "{}",
        c.canonical_toml()
    );
}

#[test]
fn defaults_fill_in() {
    let c = load(&format!("{USERS}{MINIMAL}"));
    let o = c.oidc.as_ref().expect("oidc section");
    assert_eq!(o.issuer, "https://idp.example.com/realms/main");
    assert_eq!(o.client_id, "psmgate");
    assert_eq!(
        o.redirect_url,
        "https://psmgate.example.com:8443/api/oidc/callback"
    );
    assert_eq!(o.scopes, ["openid", "profile", "email"]);
    assert_eq!(o.user_claim, DEFAULT_OIDC_USER_CLAIM);
    assert_eq!(o.user_claim, "preferred_username");
    assert_eq!(o.button_label, DEFAULT_OIDC_BUTTON_LABEL);
    assert!(o.extra_roots.is_empty());
    match o.client_secret.as_ref().expect("client secret") {
        SecretRef::File { path, resolved } => {
            assert_eq!(path, Path::new("secrets/oidc-client"));
            assert_eq!(resolved, Path::new("/etc/psmgate/secrets/oidc-client"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn as_written_and_in_the_policy_version() {
    let text = format!(
        "{USERS}{MINIMAL}scopes = [\"openid\", \"groups\"]\nuser_claim = \"email\"\n\
         extra_roots = [\"ca/idp.pem\", \"/abs/root.pem\"]\nbutton_label = \"Corp SSO\"\n"
    );
    let c = load(&text);
    let o = c.oidc.as_ref().unwrap();
    assert_eq!(o.scopes, ["openid", "groups"]);
    assert_eq!(o.user_claim, "email");
    assert_eq!(o.button_label, "Corp SSO");
    assert_eq!(
        o.extra_roots,
        [
            PathBuf::from("/etc/psmgate/ca/idp.pem"),
            PathBuf::from("/abs/root.pem")
        ]
    );
    assert_eq!(
        o.extra_roots_as_written,
        [PathBuf::from("ca/idp.pem"), PathBuf::from("/abs/root.pem")]
    );
    let canonical = c.canonical_toml();
    assert!(canonical.contains("[oidc]"), "{canonical}");
    assert!(canonical.contains("ca/idp.pem"), "{canonical}");
    assert!(canonical.contains("secrets/oidc-client"), "{canonical}");
    assert_ne!(c.policy_version(), load(USERS).policy_version());
    let other_label = load(&text.replace("Corp SSO", "Other"));
    assert_ne!(c.policy_version(), other_label.policy_version());
}

#[test]
fn a_public_client_has_no_secret() {
    let c = load(&format!(
        "{USERS}{}",
        MINIMAL.replace("client_secret = { file = \"secrets/oidc-client\" }\n", "")
    ));
    assert!(c.oidc.unwrap().client_secret.is_none());
}

#[test]
fn loopback_http_is_accepted_elsewhere_https_is_required() {
    let loopback = MINIMAL
        .replace(
            "https://idp.example.com/realms/main",
            "http://127.0.0.1:9000",
        )
        .replace("https://psmgate.example.com:8443", "http://localhost:8443");
    load(&format!("{USERS}{loopback}"));
    let d = diagnostics(&MINIMAL.replace("https://idp.example.com", "http://idp.example.com"));
    assert!(has(&d, "oidc.issuer"), "{d:?}");
    assert!(has(&d, "loopback"), "{d:?}");
    let d = diagnostics(&MINIMAL.replace(
        "https://psmgate.example.com:8443",
        "http://psmgate.example.com:8443",
    ));
    assert!(has(&d, "oidc.redirect_url"), "{d:?}");
}

#[test]
fn every_problem_is_reported() {
    let text = r#"
[oidc]
issuer = "https://idp.example.com/?tenant=1"
client_id = " "
redirect_url = "https://psmgate.example.com/ui/"
scopes = ["profile", "profile", "bad scope"]
user_claim = ""
button_label = "   "
extra_roots = [""]
"#;
    let d = diagnostics(text);
    for needle in [
        "oidc.issuer: \"https://idp.example.com/?tenant=1\" must not have a ?query",
        "oidc.client_id: must not be empty",
        "oidc.redirect_url: \"https://psmgate.example.com/ui/\" must be the gateway's callback",
        "oidc.scopes[1]: scope \"profile\" is already listed at scopes[0]",
        "oidc.scopes[2]: \"bad scope\" is not a scope",
        "oidc.scopes: must include \"openid\"",
        "oidc.user_claim: must not be empty",
        "oidc.button_label: must not be empty",
        "oidc.extra_roots[0]: must not be empty",
    ] {
        assert!(has(&d, needle), "{needle} not in {d:#?}");
    }
    assert_eq!(d.len(), 9, "{d:#?}");
}

#[test]
fn required_keys_are_named() {
    let d = diagnostics("[oidc]\n");
    for key in ["oidc.issuer", "oidc.client_id", "oidc.redirect_url"] {
        assert!(has(&d, &format!("{key}: missing")), "{key} in {d:#?}");
    }
}

#[test]
fn the_secret_is_never_written_in_the_file() {
    let text = MINIMAL.replace("{ file = \"secrets/oidc-client\" }", "\"s3cr3t-value\"");
    let d = diagnostics(&text);
    assert!(has(&d, "oidc.client_secret"), "{d:?}");
    assert!(!d.iter().any(|m| m.contains("s3cr3t-value")), "{d:?}");
    let d = diagnostics(&MINIMAL.replace("{ file = \"secrets/oidc-client\" }", "{ env = \"1X\" }"));
    assert!(has(&d, "oidc.client_secret.env"), "{d:?}");
}

#[test]
fn unknown_keys_are_refused() {
    let e = Config::from_toml_str(&format!("{MINIMAL}client_secrett = 1\n"), "psmgate.toml")
        .unwrap_err();
    assert!(e.to_string().contains("client_secrett"), "{e}");
}

#[test]
fn check_secrets_reads_the_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psmgate.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = Config::load(&path).unwrap();
    let e = c.check_secrets().unwrap_err();
    assert!(e.to_string().contains("oidc.client_secret"), "{e}");
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/oidc-client"), "value\n").unwrap();
    c.check_secrets().unwrap();
    let secret = c.oidc.unwrap().client_secret.unwrap().resolve().unwrap();
    assert_eq!(secret.expose(), b"value");
}

#[test]
fn changed_in_code_the_section_is_checked_again() {
    let mut c = load(MINIMAL);
    c.validate().unwrap();
    let o = c.oidc.as_mut().unwrap();
    o.issuer = "ftp://idp".into();
    o.scopes.clear();
    o.extra_roots.push(PathBuf::from("/x.pem"));
    o.button_label = "x".repeat(65);
    let d: Vec<String> = c
        .validate()
        .unwrap_err()
        .diagnostics()
        .iter()
        .map(ToString::to_string)
        .collect();
    for needle in [
        "oidc.issuer",
        "oidc.scopes: must include",
        "oidc.extra_roots: 1 resolved paths but 0 as written",
        "oidc.button_label: is longer than 64 characters",
    ] {
        assert!(has(&d, needle), "{needle} not in {d:#?}");
    }
}

#[test]
fn the_token_endpoint_auth_method_needs_a_secret() {
    let c = load(&format!(
        "{MINIMAL}token_endpoint_auth_method = \"client_secret_post\"\n"
    ));
    assert_eq!(
        c.oidc.as_ref().unwrap().token_endpoint_auth_method,
        Some(TokenEndpointAuthMethod::ClientSecretPost)
    );
    assert!(c.canonical_toml().contains("client_secret_post"));
    assert_eq!(load(MINIMAL).oidc.unwrap().token_endpoint_auth_method, None);
    let public = MINIMAL.replace("client_secret = { file = \"secrets/oidc-client\" }\n", "");
    let d = diagnostics(&format!(
        "{public}token_endpoint_auth_method = \"client_secret_basic\"\n"
    ));
    assert!(
        has(
            &d,
            "oidc.token_endpoint_auth_method: names how the client secret is sent"
        ),
        "{d:?}"
    );
    let e = Config::from_toml_str(
        &format!("{MINIMAL}token_endpoint_auth_method = \"private_key_jwt\"\n"),
        "psmgate.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("client_secret_basic"), "{e}");
}

const TARGETS: &str = r#"
[targets.db1]
protocol = "rdp"
address = "10.0.0.1:3389"

[targets.web1]
protocol = "vnc"
address = "10.0.0.2:5900"

[target_groups]
databases = ["db1"]

[roles.operator]
permissions = ["watch_live", "terminate"]
"#;

/// A policy with targets, alice (user) and `[oidc]` with `extra` lines.
fn with_groups(extra: &str) -> String {
    format!("{TARGETS}{USERS}{MINIMAL}{extra}")
}

const GROUPS: &str = r#"groups_claim = "groups"

[oidc.group_roles]
psm-admins = ["admin"]
dba = ["user@databases", "reviewer"]
"CN=Ops,OU=Groups,DC=example,DC=com" = ["operator"]
"#;

#[test]
fn group_roles_are_read_and_kept_in_the_canonical_form() {
    let c = load(&with_groups(GROUPS));
    let o = c.oidc.as_ref().unwrap();
    assert_eq!(o.groups_claim.as_deref(), Some("groups"));
    assert_eq!(o.group_roles.len(), 3);
    assert_eq!(o.group_roles["dba"], ["user@databases", "reviewer"]);
    assert_eq!(
        o.group_roles["CN=Ops,OU=Groups,DC=example,DC=com"],
        ["operator"]
    );
    let again = load(&c.canonical_toml());
    assert_eq!(again.oidc, c.oidc, "{}", c.canonical_toml());
    let without = load(&with_groups(""));
    assert_eq!(without.oidc.as_ref().unwrap().groups_claim, None);
    assert!(without.oidc.as_ref().unwrap().group_roles.is_empty());
    assert!(!without.canonical_toml().contains("groups_claim"));
    assert!(!without.canonical_toml().contains("group_roles"));
    assert_ne!(c.policy_version(), without.policy_version());
    // Only the claim: groups are read (and shown) but grant nothing.
    let claim_only = load(&with_groups("groups_claim = \"roles\"\n"));
    assert_eq!(
        claim_only.oidc.unwrap().groups_claim.as_deref(),
        Some("roles")
    );
}

#[test]
fn group_roles_need_the_claim() {
    let d = diagnostics(&with_groups(
        &GROUPS.replace("groups_claim = \"groups\"\n", ""),
    ));
    assert!(
        has(
            &d,
            "oidc.group_roles: maps provider groups to roles, but no groups_claim"
        ),
        "{d:#?}"
    );
    assert_eq!(d.len(), 1, "{d:#?}");
}

#[test]
fn every_group_roles_problem_names_its_key() {
    let text = with_groups(
        r#"groups_claim = ""

[oidc.group_roles]
dba = ["user@nowhere", "dbadmin", "reviewer", "reviewer"]
empty = []
labels = ["oncall"]
"   " = ["admin"]
"#,
    );
    let long = format!("\"{}\" = [\"admin\"]\n", "g".repeat(257));
    let d = diagnostics(&format!("{text}{long}"));
    for needle in [
        "oidc.groups_claim: must not be empty",
        "oidc.group_roles.dba[0]: \"user@nowhere\": unknown target group \"nowhere\"",
        "oidc.group_roles.dba[1]: \"dbadmin\": unknown role \"dbadmin\"",
        "oidc.group_roles.dba[3]: \"reviewer\" is already listed at [2]",
        "oidc.group_roles.empty: lists no role",
        "oidc.group_roles.labels[0]: \"oncall\": unknown role \"oncall\"",
        "oidc.group_roles.\"   \": group name \"   \" must be 1..=256 characters",
        "must be 1..=256 characters without control characters",
    ] {
        assert!(has(&d, needle), "{needle} not in {d:#?}");
    }
    assert!(
        has(
            &d,
            &format!("oidc.group_roles.{}: group name", "g".repeat(257))
        ),
        "{d:#?}"
    );
    assert_eq!(d.len(), 8, "{d:#?}");
    // A role a user holds as a label is still no role for a group: rules match users only.
    let d = diagnostics(&format!(
        "{}[users.bob]\nroles = [\"oncall\"]\n",
        with_groups("groups_claim = \"groups\"\n[oidc.group_roles]\nops = [\"oncall\"]\n")
    ));
    assert!(
        has(
            &d,
            "oidc.group_roles.ops[0]: \"oncall\": unknown role \"oncall\""
        ),
        "{d:#?}"
    );
    // Exactly 256 characters, any other characters than in role names: accepted.
    let longest = format!("{}é", "g".repeat(255));
    load(&with_groups(&format!(
        "groups_claim = \"groups\"\n[oidc.group_roles]\n\"{longest}\" = [\"admin\"]\n\"/eng/sre team\" = [\"reviewer@databases\"]\n"
    )));
}

#[test]
fn changed_in_code_group_roles_are_checked_again() {
    let mut c = load(&with_groups(GROUPS));
    let o = c.oidc.as_mut().unwrap();
    o.group_roles
        .insert("new".into(), vec!["approver@missing".into()]);
    o.groups_claim = None;
    let d: Vec<String> = c
        .validate()
        .unwrap_err()
        .diagnostics()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(has(&d, "oidc.group_roles: maps provider groups"), "{d:#?}");
    assert!(
        has(
            &d,
            "oidc.group_roles.new[0]: \"approver@missing\": unknown target group"
        ),
        "{d:#?}"
    );
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn session_roles_combine_the_user_and_the_groups() {
    let c = load(&with_groups(GROUPS));
    // A password sign-in: the user's roles, nothing for someone not configured.
    assert_eq!(c.session_roles("alice", None), Some(strings(&["user"])));
    assert_eq!(c.session_roles("carol", None), None);
    // OIDC: the user's roles, then the groups' (each once, unknown groups ignored).
    assert_eq!(
        c.session_roles(
            "alice",
            Some(&strings(&["dba", "nope", "psm-admins", "dba"]))
        ),
        Some(strings(&["user", "user@databases", "reviewer", "admin"]))
    );
    assert_eq!(
        c.session_roles("alice", Some(&[])),
        Some(strings(&["user"]))
    );
    // Not configured: only the groups' roles; none at all is no standing.
    assert_eq!(
        c.session_roles("carol", Some(&strings(&["dba"]))),
        Some(strings(&["user@databases", "reviewer"]))
    );
    assert_eq!(c.session_roles("carol", Some(&strings(&["nope"]))), None);
    assert_eq!(c.session_roles("carol", Some(&[])), None);
    // Group names match exactly.
    assert_eq!(c.session_roles("carol", Some(&strings(&["DBA"]))), None);
    // Without [oidc], groups grant nothing.
    let plain = load(&format!("{TARGETS}{USERS}"));
    assert_eq!(plain.session_roles("carol", Some(&strings(&["dba"]))), None);
    assert!(plain.group_role_entries(&strings(&["dba"])).is_empty());
}

#[test]
fn roles_from_groups_grant_what_the_same_user_roles_grant() {
    use psmgate_policy::rbac::Permission;
    let c = load(&with_groups(GROUPS));
    let carol = c.session_roles("carol", Some(&strings(&["dba"]))).unwrap();
    // user@databases and reviewer: connect on db1 only, watch_live everywhere, no audit.
    assert!(c.roles_permit(&carol, Permission::Connect, Some("db1")));
    assert!(!c.roles_permit(&carol, Permission::Connect, Some("web1")));
    assert!(c.roles_permit(&carol, Permission::WatchLive, Some("web1")));
    assert!(!c.roles_permit(&carol, Permission::ViewAudit, None));
    assert!(!c.roles_permit(&carol, Permission::Connect, Some("missing")));
    assert_eq!(
        c.roles_permitted_targets(&carol, Permission::Connect),
        ["db1"]
    );
    let ops = c
        .session_roles(
            "dave",
            Some(&strings(&["CN=Ops,OU=Groups,DC=example,DC=com"])),
        )
        .unwrap();
    assert!(c.roles_permit(&ops, Permission::Terminate, Some("web1")));
    assert!(!c.roles_permit(&ops, Permission::ViewRecordings, None));
    // For a configured user's own roles the two ways agree on everything.
    let alice = &c.users["alice"].roles;
    for p in Permission::ALL {
        for t in [None, Some("db1"), Some("web1"), Some("missing")] {
            assert_eq!(
                c.roles_permit(alice, p, t),
                c.permits("alice", p, t),
                "{p} {t:?}"
            );
        }
        assert_eq!(
            c.roles_permitted_targets(alice, p),
            c.permitted_targets("alice", p)
        );
    }
}
