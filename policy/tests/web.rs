//! The web console proxy's policy: `[web]`, target `domains`, `[[web_rules]]` and the decision
//! for each host.

use psmgate_policy::*;
use std::path::{Path, PathBuf};

const BASE: &str = r#"
[users.alice]
roles = ["admin"]

[users.bob]
roles = ["operator"]

[users.carol]
roles = ["auditor"]

[targets.lab-vnc]
protocol = "vnc"
address = "127.0.0.1:5901"

[targets.aws-console]
protocol = "web"
address = "https://console.aws.amazon.com"

[targets.intranet]
protocol = "web"
address = "https://intranet.example.org:8443/start"
"#;

fn load(text: &str) -> Config {
    Config::from_toml_str(text, "psmgate.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn diagnostics(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "psmgate.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn validate(c: &Config) -> Vec<String> {
    match c.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn web_section_defaults() {
    let c = load("");
    let w = &c.web;
    assert!(w.extra_roots.is_empty());
    assert_eq!(w.idle_timeout, Duration::from_secs(900));
    assert_eq!(w.idle_timeout.get(), std::time::Duration::from_secs(900));
    assert_eq!(w.heartbeat_timeout, Duration::from_secs(15));
    assert_eq!(w.video, WebVideo::Live);
    assert_eq!(w.chromium, None);
    assert_eq!(w.render_workers, 1);
    assert_eq!(w.max_body, ByteSize(64 * 1024));
    assert!(w.redact_headers.is_empty());
    assert_eq!(w.redact_fields, strings(&DEFAULT_REDACT_FIELDS));
    assert_eq!(
        w.redacted_headers(),
        [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie"
        ]
    );
    assert_eq!(ALWAYS_REDACTED_HEADERS, w.redacted_headers().as_slice());
    for redacted in [
        "password",
        "new_Password",
        "user[passwd]",
        "client_secret",
        "csrfToken",
        "API_KEY",
        "otp",
        "pinCode",
        "credentials",
    ] {
        assert!(w.field_is_redacted(redacted), "{redacted}");
    }
    for kept in ["username", "email", "region", "q", ""] {
        assert!(!w.field_is_redacted(kept), "{kept}");
    }
    assert_eq!(c.web, WebConfig::default());
    assert!(c.web_rules.is_empty());
    assert!(
        c.canonical_toml().contains("[web]\n"),
        "{}",
        c.canonical_toml()
    );
}

#[test]
fn web_section_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("psmgate.toml");
    std::fs::write(
        &cfg,
        r#"
[web]
extra_roots = ["certs/corp-root.pem", "/etc/psmgate/other.pem"]
idle_timeout = "30m"
redact_headers = ["X-Api-Key", "Cookie", "x-csrf-token"]
redact_fields = ["PIN", "iban"]
max_body = "1MiB"
heartbeat_timeout = "2s"
video = "off"
chromium = "/opt/chromium/chrome"
render_workers = 16
"#,
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let w = &c.web;
    assert_eq!(
        w.extra_roots,
        [
            dir.path().join("certs/corp-root.pem"),
            PathBuf::from("/etc/psmgate/other.pem")
        ]
    );
    assert_eq!(
        w.extra_roots_as_written,
        [
            PathBuf::from("certs/corp-root.pem"),
            PathBuf::from("/etc/psmgate/other.pem")
        ]
    );
    assert_eq!(w.idle_timeout, Duration::from_secs(1800));
    assert_eq!(w.heartbeat_timeout, Duration::from_secs(2));
    assert_eq!(w.video, WebVideo::Off);
    assert_eq!(w.chromium, Some(PathBuf::from("/opt/chromium/chrome")));
    assert_eq!(w.render_workers, 16);
    assert_eq!(w.max_body.bytes(), 1 << 20);
    // Always-redacted headers first, lower-case, each once.
    assert_eq!(
        w.redacted_headers(),
        [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "x-api-key",
            "x-csrf-token"
        ]
    );
    // Writing redact_fields replaces the default list.
    assert!(w.field_is_redacted("pin"));
    assert!(w.field_is_redacted("payee_IBAN"));
    assert!(!w.field_is_redacted("password"));
    // The canonical form holds the paths as written, so it loads to the same policy.
    let canonical = c.canonical_toml();
    assert!(canonical.contains("\"certs/corp-root.pem\""), "{canonical}");
    assert!(!canonical.contains(&dir.path().to_string_lossy().to_string()));
    let again =
        Config::from_toml_str(&canonical, &cfg.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.policy_version(), c.policy_version());
    assert_eq!(again.web, c.web);
    // Every value is part of the policy version.
    let other = load("[web]\nmax_body = \"32KiB\"\n");
    assert_ne!(other.policy_version(), load("").policy_version());
    let no_video = load("[web]\nvideo = \"off\"\n");
    assert_ne!(no_video.policy_version(), load("").policy_version());
    assert!(no_video.canonical_toml().contains("video = \"off\""));
    // The default Chromium is not written out; the live default is.
    let canonical = load("").canonical_toml();
    assert!(canonical.contains("video = \"live\""), "{canonical}");
    assert!(!canonical.contains("chromium"), "{canonical}");
    assert!(canonical.contains("render_workers = 1\n"), "{canonical}");
    // Rendering after the session, with its workers, round-trips and is part of the version.
    let after = load("[web]\nvideo = \"after\"\nrender_workers = 3\n");
    assert_eq!(after.web.video, WebVideo::After);
    assert_eq!(after.web.render_workers, 3);
    let canonical = after.canonical_toml();
    assert!(canonical.contains("video = \"after\""), "{canonical}");
    assert!(canonical.contains("render_workers = 3\n"), "{canonical}");
    let again = Config::from_toml_str(&canonical, "psmgate.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.web, after.web);
    assert_ne!(
        load("[web]\nvideo = \"after\"\n").policy_version(),
        after.policy_version()
    );
    assert_ne!(
        load("[web]\nvideo = \"after\"\n").policy_version(),
        load("").policy_version()
    );
}

#[test]
fn web_video_diagnostics() {
    let e = diagnostics("[web]\nvideo = \"gif\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "psmgate.toml:2:9: web.video: unknown variant `gif`, expected one of `live`, `after`, `off`"
        ),
        "{e:?}"
    );
    let e = diagnostics("[web]\nvideo = true\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("psmgate.toml:2:9: web.video: "), "{e:?}");
    let e = diagnostics("[web]\nchromium = \"bin/chromium\"\n");
    assert_eq!(
        e,
        ["psmgate.toml:2:12: web.chromium: \"bin/chromium\" is not an absolute path (such as \"/usr/bin/chromium\")"]
    );
    let e = diagnostics("[web]\nchromium = \" \"\n");
    assert_eq!(
        e,
        ["psmgate.toml:2:12: web.chromium: must not be empty: name the Chromium executable, or leave chromium out"]
    );
    let e = diagnostics("[web]\nchromium = \"/usr/bin/chro\\nmium\"\n");
    assert_eq!(
        e,
        ["psmgate.toml:2:12: web.chromium: \"/usr/bin/chro\\nmium\" contains a control character"]
    );
    let e = diagnostics("[web]\nchromium = 1\n");
    assert!(
        e[0].starts_with("psmgate.toml:2:12: web.chromium: invalid type"),
        "{e:?}"
    );
    // Set in code, checked the same way.
    let mut c = load("");
    c.web.chromium = Some(PathBuf::from("chromium"));
    assert_eq!(
        validate(&c),
        ["psmgate.toml: web.chromium: \"chromium\" is not an absolute path (such as \"/usr/bin/chromium\")"]
    );
    c.web.chromium = Some(PathBuf::from("/usr/lib/chromium/chromium"));
    c.web.video = WebVideo::Off;
    assert_eq!(validate(&c), Vec::<String>::new());
}

#[test]
fn web_render_workers_diagnostics() {
    for (text, n) in [("0", "0"), ("17", "17")] {
        let e = diagnostics(&format!(
            "[web]\nvideo = \"after\"\nrender_workers = {text}\n"
        ));
        assert_eq!(
            e,
            [format!("psmgate.toml:3:18: web.render_workers: {n} is outside 1..=16 (how many web session videos are rendered at once)")]
        );
    }
    let e = diagnostics("[web]\nrender_workers = -1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("psmgate.toml:2:18: web.render_workers: "),
        "{e:?}"
    );
    let e = diagnostics("[web]\nrender_workers = \"two\"\n");
    assert!(
        e[0].starts_with("psmgate.toml:2:18: web.render_workers: invalid type"),
        "{e:?}"
    );
    // The bounds themselves are allowed.
    assert_eq!(load("[web]\nrender_workers = 1\n").web.render_workers, 1);
    assert_eq!(load("[web]\nrender_workers = 16\n").web.render_workers, 16);
    // Set in code, checked the same way.
    let mut c = load("");
    c.web.render_workers = 0;
    assert_eq!(
        validate(&c),
        ["psmgate.toml: web.render_workers: 0 is outside 1..=16 (how many web session videos are rendered at once)"]
    );
}

#[test]
fn web_section_diagnostics() {
    let e = diagnostics(
        r#"
[web]
extra_roots = ["ok.pem", "", " "]
idle_timeout = "5s"
redact_headers = ["X-Api-Key", "x-api-key", "Bad Header", "", "a:b"]
redact_fields = ["pin", "", "PIN", "tab\there"]
max_body = "2MiB"
heartbeat_timeout = "1500ms"
"#,
    );
    assert_eq!(
        e,
        [
            "psmgate.toml:3:26: web.extra_roots[1]: must not be empty: name a PEM file of CA certificates",
            "psmgate.toml:3:30: web.extra_roots[2]: must not be empty: name a PEM file of CA certificates",
            "psmgate.toml:4:16: web.idle_timeout: \"5s\" is shorter than 10s",
            "psmgate.toml:8:21: web.heartbeat_timeout: \"1s500ms\" is shorter than 2s",
            "psmgate.toml:7:12: web.max_body: \"2MiB\" is more than 1MiB",
            "psmgate.toml:5:32: web.redact_headers[1]: header \"x-api-key\" is already listed at redact_headers[0]",
            "psmgate.toml:5:45: web.redact_headers[2]: \"Bad Header\" is not an HTTP header name (letters, digits and ! # $ % & ' * + - . ^ _ ` | ~)",
            "psmgate.toml:5:59: web.redact_headers[3]: \"\" is not an HTTP header name (letters, digits and ! # $ % & ' * + - . ^ _ ` | ~)",
            "psmgate.toml:5:63: web.redact_headers[4]: \"a:b\" is not an HTTP header name (letters, digits and ! # $ % & ' * + - . ^ _ ` | ~)",
            "psmgate.toml:6:25: web.redact_fields[1]: must not be empty: an empty fragment would redact every field",
            "psmgate.toml:6:29: web.redact_fields[2]: field \"PIN\" is already listed at redact_fields[0]",
            "psmgate.toml:6:36: web.redact_fields[3]: \"tab\\there\" contains a control character",
        ]
    );
    // Units and types are reported like every other duration and size.
    let e = diagnostics("[web]\nidle_timeout = 600\nmax_body = \"lots\"\n");
    assert_eq!(
        e,
        [
            "psmgate.toml:2:16: web.idle_timeout: expected a duration string such as \"10s\" or \"5m\", found an integer",
            "psmgate.toml:3:12: web.max_body: size \"lots\" is not a number followed by a unit",
        ]
    );
    let e = diagnostics("[web]\nredact_headers = \"x-api-key\"\n");
    assert!(
        e[0].starts_with("psmgate.toml:2:18: web.redact_headers: invalid type"),
        "{e:?}"
    );
    let e = diagnostics("[web]\nidle_timeot = \"5m\"\n");
    assert!(
        e[0].starts_with("psmgate.toml:2:1: web.idle_timeot: unknown field `idle_timeot`"),
        "{e:?}"
    );
    // The bounds themselves are allowed.
    let c = load("[web]\nidle_timeout = \"10s\"\nheartbeat_timeout = \"2s\"\nmax_body = 1048576\nextra_roots = []\nredact_fields = []\n");
    assert!(!c.web.field_is_redacted("password"));
}

#[test]
fn web_section_changed_in_code() {
    let mut c = load("");
    c.web.extra_roots.push(PathBuf::from("/etc/psmgate/ca.pem"));
    c.web.max_body = ByteSize(2 << 20);
    c.web.redact_headers.push("not a header".into());
    assert_eq!(
        validate(&c),
        [
            "psmgate.toml: web.extra_roots: 1 resolved paths but 0 as written; change extra_roots and extra_roots_as_written together",
            "psmgate.toml: web.max_body: \"2MiB\" is more than 1MiB",
            "psmgate.toml: web.redact_headers[0]: \"not a header\" is not an HTTP header name (letters, digits and ! # $ % & ' * + - . ^ _ ` | ~)",
        ]
    );
    // A name no header can carry is left out of the list as applied.
    assert_eq!(
        c.web.redacted_headers().len(),
        ALWAYS_REDACTED_HEADERS.len()
    );
    c.web.extra_roots = vec![PathBuf::new()];
    c.web.extra_roots_as_written = vec![PathBuf::from("ca.pem")];
    c.web.max_body = ByteSize(0);
    c.web.redact_headers.clear();
    assert_eq!(
        validate(&c),
        ["psmgate.toml: web.extra_roots[0]: must not be empty: name a PEM file of CA certificates"]
    );
}

#[test]
fn web_targets_record_their_own_host_by_default() {
    let c = load(BASE);
    assert_eq!(
        c.targets["aws-console"].domains.as_deref(),
        Some(&strings(&["console.aws.amazon.com"])[..])
    );
    assert_eq!(
        c.targets["intranet"].domains.as_deref(),
        Some(&strings(&["intranet.example.org"])[..])
    );
    assert_eq!(c.targets["lab-vnc"].domains, None);
    let canonical = c.canonical_toml();
    assert_eq!(canonical.matches("domains = ").count(), 2, "{canonical}");
    assert_eq!(load(&canonical).policy_version(), c.policy_version());
    // Writing the default out changes nothing.
    let explicit = load(&format!("{BASE}domains = [\"intranet.example.org\"]\n"));
    assert_eq!(explicit.policy_version(), c.policy_version());
    // A host:port address gives its host.
    let c = load("[targets.w]\nprotocol = \"web\"\naddress = \"[fd00::5]:443\"\n");
    assert_eq!(
        c.targets["w"].domains.as_deref(),
        Some(&strings(&["fd00::5"])[..])
    );
}

#[test]
fn target_domains_as_written() {
    let c = load(&format!(
        "{BASE}domains = [\"intranet.example.org\", \"*.Example.ORG.\", \"10.1.2.3\", \"[fd00::1]\"]\n"
    ));
    assert_eq!(
        c.targets["intranet"].domains.as_ref().map(Vec::len),
        Some(4)
    );
    assert_ne!(c.policy_version(), load(BASE).policy_version());
    // An empty list records nothing unless a rule says so.
    let c = load(&format!("{BASE}domains = []\n"));
    assert_eq!(
        c.web_decision("alice", "intranet", "intranet.example.org"),
        WebDecision::default_deny()
    );
}

#[test]
fn target_domain_diagnostics() {
    let e = diagnostics(&format!(
        "{BASE}domains = [\"ok.example.org\", \"https://x.org\", \"x.org:443\", \"a.*.org\", \"OK.example.org.\", \"\"]\n"
    ));
    assert_eq!(
        e,
        [
            "psmgate.toml:22:30: targets.intranet.domains[1]: \"https://x.org\": write the host name only, without a scheme such as \"https://\"",
            "psmgate.toml:22:47: targets.intranet.domains[2]: \"x.org:443\": write the host without a port",
            "psmgate.toml:22:60: targets.intranet.domains[3]: \"a.*.org\": a wildcard is only allowed as the whole pattern (\"*\") or as the first label followed by a domain (\"*.example.com\")",
            "psmgate.toml:22:71: targets.intranet.domains[4]: \"OK.example.org.\" is already listed at domains[0]",
            "psmgate.toml:22:90: targets.intranet.domains[5]: is empty; write \"*\", \"*.example.com\", a host name such as \"console.example.com\" or an IP address",
        ]
    );
    // Only web targets take the key.
    let text = BASE.replace(
        "address = \"127.0.0.1:5901\"\n",
        "address = \"127.0.0.1:5901\"\ndomains = [\"*\"]\n",
    );
    assert_eq!(
        diagnostics(&text),
        ["psmgate.toml:14:11: targets.lab-vnc.domains: only valid for web targets (this target's protocol is \"vnc\")"]
    );
    let mut c = load(BASE);
    if let Some(t) = c.targets.get_mut("lab-vnc") {
        t.domains = Some(vec!["*".into()]);
    }
    assert_eq!(
        validate(&c),
        ["psmgate.toml:11:1: targets.lab-vnc.domains: only valid for web targets (this target's protocol is \"vnc\")"]
    );
    // The key is not honoured on a target that is not a web target.
    assert_eq!(
        c.web_decision("alice", "lab-vnc", "anything.example"),
        WebDecision::default_deny()
    );
    let e = diagnostics(&format!("{BASE}domains = \"intranet.example.org\"\n"));
    assert!(
        e[0].starts_with("psmgate.toml:22:11: targets.intranet.domains: invalid type"),
        "{e:?}"
    );
}

#[test]
fn web_rules_load_in_file_order() {
    let c = load(&format!(
        r#"{BASE}
[[web_rules]]
id = "no-billing"
users = ["bob"]
roles = ["operator"]
targets = ["aws-console"]
domains = ["billing.aws.amazon.com", "*.example.org"]
action = "deny"

[[web_rules]]
id = "cdn"
targets = "*"
domains = ["*.cdn.example.net"]
action = "tunnel"

[[web_rules]]
id = "forms"
domains = ["forms.example.org"]
action = "record"
record_bodies = true
"#
    ));
    let ids: Vec<&str> = c.web_rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["no-billing", "cdn", "forms"]);
    let r = &c.web_rules[0];
    assert_eq!(r.users, ["bob"]);
    assert_eq!(r.roles, ["operator"]);
    assert_eq!(r.targets.as_deref(), Some(&strings(&["aws-console"])[..]));
    assert_eq!(r.action, WebAction::Deny);
    assert!(!r.record_bodies);
    assert_eq!(c.web_rules[1].targets, None);
    assert_eq!(c.web_rules[1].action, WebAction::Tunnel);
    assert!(c.web_rules[2].record_bodies);
    let canonical = c.canonical_toml();
    assert_eq!(canonical.matches("[[web_rules]]").count(), 3, "{canonical}");
    assert_eq!(load(&canonical).policy_version(), c.policy_version());
    assert_eq!(load(&canonical).web_rules, c.web_rules);
}

#[test]
fn web_rule_diagnostics() {
    let text = format!(
        r#"{BASE}
[[web_rules]]
id = "r1"
users = ["alice", "mallory"]
roles = ["dba"]
targets = ["aws-console", "lab-vnc", "nowhere"]
domains = ["*.example.org", "*.EXAMPLE.org", "example.org:80"]
action = "deny"
record_bodies = false

[[web_rules]]
id = "r1"
targets = []
domains = []
action = "tunnel"

[[web_rules]]
id = "default-deny"
domains = ["*"]
action = "record"

[[web_rules]]
id = "-bad"
targets = "aws-console"
action = "record"
"#
    );
    assert_eq!(
        diagnostics(&text),
        [
            "psmgate.toml:30:17: web_rules[0].record_bodies: only allowed with action = \"record\" (this rule's action is \"deny\")",
            "psmgate.toml:45:11: web_rules[3].targets: \"aws-console\": write a list such as [\"aws-console\"], or leave targets out for every web target",
            "psmgate.toml:43:1: web_rules[3].domains: missing: list the hosts the rule covers, e.g. domains = [\"*.example.com\"]",
            "psmgate.toml:25:19: web_rules[0].users[1]: unknown user \"mallory\"",
            "psmgate.toml:26:10: web_rules[0].roles[0]: no user has role \"dba\"",
            "psmgate.toml:27:27: web_rules[0].targets[1]: \"lab-vnc\" is not a web target (its protocol is \"vnc\"); web rules apply to web targets only",
            "psmgate.toml:27:38: web_rules[0].targets[2]: unknown target \"nowhere\"",
            "psmgate.toml:28:29: web_rules[0].domains[1]: \"*.EXAMPLE.org\" is already listed at domains[0]",
            "psmgate.toml:28:46: web_rules[0].domains[2]: \"example.org:80\": write the host without a port",
            "psmgate.toml:33:6: web_rules[1].id: web rule id \"r1\" is already used by web_rules[0]",
            "psmgate.toml:34:11: web_rules[1].targets: lists no target (leave targets out for every web target)",
            "psmgate.toml:35:11: web_rules[1].domains: lists no host; list the hosts the rule covers, e.g. domains = [\"*.example.com\"]",
            "psmgate.toml:39:6: web_rules[2].id: \"default-deny\" is reserved for hosts no rule allows",
            "psmgate.toml:44:6: web_rules[3].id: web rule name \"-bad\" must be 1..=64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
        ]
    );
}

#[test]
fn web_rule_schema_errors() {
    let e = diagnostics(&format!(
        "{BASE}\n[[web_rules]]\nid = \"r\"\ndomains = [\"*\"]\naction = \"allow\"\n"
    ));
    assert!(
        e[0].starts_with("psmgate.toml:26:10: web_rules[0].action: unknown variant `allow`, expected one of `record`, `tunnel`, `deny`"),
        "{e:?}"
    );
    let e = diagnostics(&format!(
        "{BASE}\n[[web_rules]]\nid = \"r\"\ndomains = [\"*\"]\n"
    ));
    assert!(
        e[0].starts_with("psmgate.toml:23:1: web_rules") && e[0].contains("missing field `action`"),
        "{e:?}"
    );
    let e = diagnostics(&format!(
        "{BASE}\n[[web_rules]]\ndomains = [\"*\"]\naction = \"deny\"\n"
    ));
    assert!(
        e[0].starts_with("psmgate.toml:23:1: web_rules") && e[0].contains("missing field `id`"),
        "{e:?}"
    );
    let e = diagnostics(&format!(
        "{BASE}\n[[web_rules]]\nid = \"r\"\ndomains = [\"*\"]\naction = \"deny\"\nhosts = [\"x\"]\n"
    ));
    assert!(
        e[0].starts_with("psmgate.toml:27:1: web_rules[0].hosts: unknown field `hosts`"),
        "{e:?}"
    );
    let e = diagnostics(&format!(
        "{BASE}\n[[web_rules]]\nid = \"r\"\ntargets = [\"aws-console\", 7]\ndomains = [\"*\"]\naction = \"deny\"\n"
    ));
    assert_eq!(
        e,
        ["psmgate.toml:25:27: web_rules[0].targets[1]: expected a target name, found an integer"]
    );
}

#[test]
fn web_rules_changed_in_code() {
    let mut c = load(BASE);
    c.web_rules.push(WebRule {
        id: "t".into(),
        users: vec![],
        roles: vec![],
        targets: None,
        domains: vec![],
        action: WebAction::Tunnel,
        record_bodies: true,
        mask_selectors: vec![],
        mask_patterns: vec![],
    });
    assert_eq!(
        validate(&c),
        [
            "psmgate.toml: web_rules[0].domains: lists no host; list the hosts the rule covers, e.g. domains = [\"*.example.com\"]",
            "psmgate.toml: web_rules[0].record_bodies: only allowed with action = \"record\" (this rule's action is \"tunnel\")",
        ]
    );
    c.web_rules[0].domains = vec!["*".into()];
    // Bodies are never recorded for a tunnelled host, whatever the field says.
    let d = c.web_decision("alice", "aws-console", "x.example");
    assert_eq!(
        (d.action, d.rule_id.as_str(), d.record_bodies),
        (WebAction::Tunnel, "t", false)
    );
}

const RULES: &str = r#"
[[web_rules]]
id = "bob-no-iam"
users = ["bob"]
targets = ["aws-console"]
domains = ["iam.console.aws.amazon.com", "console.aws.amazon.com"]
action = "deny"

[[web_rules]]
id = "auditors-tunnel"
roles = ["auditor"]
domains = ["*.console.aws.amazon.com"]
action = "tunnel"

[[web_rules]]
id = "static"
domains = ["*.awsstatic.com", "*.static.example.org"]
action = "tunnel"

[[web_rules]]
id = "intranet-forms"
targets = ["intranet"]
domains = ["forms.example.org", "*.console.aws.amazon.com"]
action = "record"
record_bodies = true

[[web_rules]]
id = "no-billing"
domains = ["billing.console.aws.amazon.com"]
action = "deny"

[[web_rules]]
id = "shadowed"
domains = ["*.awsstatic.com"]
action = "deny"
"#;

fn decide(c: &Config, user: &str, target: &str, host: &str) -> (WebAction, String, bool) {
    let d = c.web_decision(user, target, host);
    (d.action, d.rule_id, d.record_bodies)
}

fn want(action: WebAction, rule: &str, bodies: bool) -> (WebAction, String, bool) {
    (action, rule.to_owned(), bodies)
}

#[test]
fn decisions_follow_rule_order_then_target_then_default_deny() {
    let c = load(&format!(
        "{BASE}domains = [\"intranet.example.org\", \"*.example.org\"]\n{RULES}"
    ));
    use WebAction::*;
    // The target's own host is recorded when no rule decides.
    assert_eq!(
        decide(&c, "alice", "aws-console", "console.aws.amazon.com"),
        want(Record, "target:aws-console", false)
    );
    // A per-user rule beats the target default.
    assert_eq!(
        decide(&c, "bob", "aws-console", "console.aws.amazon.com"),
        want(Deny, "bob-no-iam", false)
    );
    assert_eq!(
        decide(&c, "bob", "aws-console", "IAM.console.aws.amazon.com."),
        want(Deny, "bob-no-iam", false)
    );
    // A role-based rule covers users with the role only.
    assert_eq!(
        decide(&c, "carol", "aws-console", "billing.console.aws.amazon.com"),
        want(Tunnel, "auditors-tunnel", false)
    );
    assert_eq!(
        decide(&c, "alice", "aws-console", "billing.console.aws.amazon.com"),
        want(Deny, "no-billing", false)
    );
    // A rule for everyone, tunnelling a static domain on every web target.
    for target in ["aws-console", "intranet"] {
        assert_eq!(
            decide(&c, "alice", target, "a.b.awsstatic.com"),
            want(Tunnel, "static", false)
        );
    }
    // `targets` limits a rule to the targets listed.
    assert_eq!(
        decide(&c, "alice", "intranet", "forms.example.org"),
        want(Record, "intranet-forms", true)
    );
    assert_eq!(
        decide(&c, "alice", "aws-console", "forms.example.org"),
        want(Deny, "default-deny", false)
    );
    assert_eq!(
        decide(&c, "alice", "intranet", "eu.console.aws.amazon.com"),
        want(Record, "intranet-forms", true)
    );
    assert_eq!(
        decide(&c, "alice", "aws-console", "eu.console.aws.amazon.com"),
        want(Deny, "default-deny", false)
    );
    // Target domains as written, including the wildcard.
    assert_eq!(
        decide(&c, "bob", "intranet", "wiki.example.org"),
        want(Record, "target:intranet", false)
    );
    assert_eq!(
        decide(&c, "bob", "intranet", "example.org"),
        want(Deny, "default-deny", false)
    );
    // Default deny for every host nothing covers.
    assert_eq!(
        decide(&c, "alice", "aws-console", "evil.example.com"),
        want(Deny, "default-deny", false)
    );
    assert_eq!(
        c.web_decision("alice", "aws-console", "evil.example.com"),
        WebDecision::default_deny()
    );
    assert_eq!(WebDecision::default_deny().rule_id, DEFAULT_DENY_RULE);
}

#[test]
fn decisions_fail_closed() {
    let c = load(&format!("{BASE}{RULES}"));
    let deny = WebDecision::default_deny();
    // Unknown users and targets, and targets that are not web targets.
    assert_eq!(
        c.web_decision("mallory", "aws-console", "a.awsstatic.com"),
        deny
    );
    assert_eq!(c.web_decision("alice", "nowhere", "a.awsstatic.com"), deny);
    assert_eq!(c.web_decision("alice", "lab-vnc", "a.awsstatic.com"), deny);
    // Hosts that are not host names: with a port, a path, empty, a pattern.
    for host in [
        "console.aws.amazon.com:443",
        "console.aws.amazon.com/x",
        "",
        "*.awsstatic.com",
        "console.aws.amazon.com..",
    ] {
        assert_eq!(
            c.web_decision("alice", "aws-console", host),
            deny,
            "{host:?}"
        );
    }
    // Without rules, only the target's domains are recorded.
    let c = load(BASE);
    assert_eq!(
        c.web_decision("carol", "aws-console", "console.aws.amazon.com")
            .action,
        WebAction::Record
    );
    assert_eq!(
        c.web_decision("carol", "aws-console", "signin.aws.amazon.com"),
        deny
    );
}

#[test]
fn decisions_serialise_with_lower_case_actions() {
    let d = WebDecision {
        action: WebAction::Tunnel,
        rule_id: "cdn".into(),
        record_bodies: false,
        mask_selectors: vec![],
        mask_patterns: vec![],
    };
    let t = toml::to_string(&d).unwrap();
    assert!(t.contains("action = \"tunnel\""), "{t}");
    let c = load(&format!("{BASE}{RULES}"));
    assert!(c.canonical_toml().contains("action = \"deny\""));
    assert!(c.canonical_toml().contains("record_bodies = true"));
}

#[test]
fn the_sample_configures_the_console_proxy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/psmgate.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let domains = c.targets["aws-console"].domains.clone().unwrap_or_default();
    assert!(domains.len() > 1, "{domains:?}");
    assert!(domains.iter().any(|d| d == "console.aws.amazon.com"));
    assert_eq!(c.web_rules.len(), 2);
    let tunnel = c
        .web_rules
        .iter()
        .find(|r| r.action == WebAction::Tunnel)
        .expect("a tunnel rule");
    let deny = c
        .web_rules
        .iter()
        .find(|r| r.action == WebAction::Deny)
        .expect("a deny rule");
    let d = c.web_decision("alice", "aws-console", "console.aws.amazon.com");
    assert_eq!(d.action, WebAction::Record);
    assert_eq!(d.mask_selectors, ["input[name=mfaCode]", ".access-key"]);
    assert_eq!(d.mask_patterns, ["AKIA[0-9A-Z]{16}"]);
    for r in [tunnel, deny] {
        let host = r.domains[0].replace('*', "x");
        let d = c.web_decision("alice", "aws-console", &host);
        assert_eq!((d.action, d.rule_id.as_str()), (r.action, r.id.as_str()));
        assert!(d.mask_selectors.is_empty() && d.mask_patterns.is_empty());
    }
    assert_eq!(
        c.web_decision("alice", "aws-console", "example.com"),
        WebDecision::default_deny()
    );
}

const MASKED: &str = r##"
[targets.masked]
protocol = "web"
address = "https://console.example.com"
domains = ["console.example.com", "*.console.example.com"]
mask_selectors = ["#api-key", ".secret", "input[name=otp]"]
mask_patterns = ["AKIA[0-9A-Z]{16}", "\\b\\d{16}\\b"]

[[web_rules]]
id = "tunnel-static"
targets = ["masked"]
domains = ["static.console.example.com"]
action = "tunnel"

[[web_rules]]
id = "deny-billing"
domains = ["billing.console.example.com"]
action = "deny"

[[web_rules]]
id = "iam-forms"
targets = ["masked"]
domains = ["iam.console.example.com", "signin.example.net"]
action = "record"
record_bodies = true
mask_selectors = ["form.mfa input", "input[name=\"otp\"]", "#api-key", "[data-secret]"]
mask_patterns = ["ASIA[0-9A-Z]{16}", "AKIA[0-9A-Z]{16}"]

[[web_rules]]
id = "carol-plain"
users = ["carol"]
domains = ["*.console.example.com"]
action = "record"
"##;

fn masks(
    c: &Config,
    user: &str,
    target: &str,
    host: &str,
) -> (WebAction, String, Vec<String>, Vec<String>) {
    let d = c.web_decision(user, target, host);
    (d.action, d.rule_id, d.mask_selectors, d.mask_patterns)
}

#[test]
fn page_masks_load_and_enter_the_policy_version() {
    let c = load(&format!("{BASE}{MASKED}"));
    let t = &c.targets["masked"];
    assert_eq!(t.mask_selectors, ["#api-key", ".secret", "input[name=otp]"]);
    assert_eq!(t.mask_patterns, ["AKIA[0-9A-Z]{16}", "\\b\\d{16}\\b"]);
    let r = &c.web_rules[2];
    assert_eq!(r.mask_selectors.len(), 4);
    assert_eq!(r.mask_patterns, ["ASIA[0-9A-Z]{16}", "AKIA[0-9A-Z]{16}"]);
    assert!(c.web_rules[0].mask_selectors.is_empty());
    assert!(c.targets["aws-console"].mask_patterns.is_empty());
    let canonical = c.canonical_toml();
    assert_eq!(
        canonical.matches("mask_selectors = ").count(),
        2,
        "{canonical}"
    );
    assert_eq!(
        canonical.matches("mask_patterns = ").count(),
        2,
        "{canonical}"
    );
    let again = load(&canonical);
    assert_eq!(again.policy_version(), c.policy_version());
    assert_eq!(again.targets, c.targets);
    assert_eq!(again.web_rules, c.web_rules);
    // Empty lists are left out of the canonical form: writing them changes nothing.
    assert!(!load(BASE).canonical_toml().contains("mask_"));
    let explicit = load(&format!("{BASE}mask_selectors = []\nmask_patterns = []\n"));
    assert_eq!(explicit.policy_version(), load(BASE).policy_version());
    // Every entry is part of the policy version.
    let fewer = load(&format!("{BASE}{MASKED}").replace(", \".secret\"", ""));
    assert_ne!(fewer.policy_version(), c.policy_version());
    let other = load(&format!("{BASE}{MASKED}").replace("ASIA", "ABIA"));
    assert_ne!(other.policy_version(), c.policy_version());
}

#[test]
fn decisions_carry_the_rule_masks_then_the_target_masks() {
    let c = load(&format!("{BASE}{MASKED}"));
    use WebAction::*;
    let none: Vec<String> = Vec::new();
    // Recorded through the target's domains: the target's masks, in the order configured.
    assert_eq!(
        masks(&c, "alice", "masked", "console.example.com"),
        (
            Record,
            "target:masked".to_owned(),
            strings(&["#api-key", ".secret", "input[name=otp]"]),
            strings(&["AKIA[0-9A-Z]{16}", "\\b\\d{16}\\b"])
        )
    );
    // Recorded by a rule on one of the target's domains: the rule's masks first, then the
    // target's not already listed (`input[name="otp"]` is `input[name=otp]`).
    assert_eq!(
        masks(&c, "alice", "masked", "iam.console.example.com"),
        (
            Record,
            "iam-forms".to_owned(),
            strings(&[
                "form.mfa input",
                "input[name=\"otp\"]",
                "#api-key",
                "[data-secret]",
                ".secret"
            ]),
            strings(&["ASIA[0-9A-Z]{16}", "AKIA[0-9A-Z]{16}", "\\b\\d{16}\\b"])
        )
    );
    // Recorded by the same rule on a host that is not one of the target's domains: the rule's
    // masks only.
    assert_eq!(
        masks(&c, "alice", "masked", "signin.example.net"),
        (
            Record,
            "iam-forms".to_owned(),
            strings(&[
                "form.mfa input",
                "input[name=\"otp\"]",
                "#api-key",
                "[data-secret]"
            ]),
            strings(&["ASIA[0-9A-Z]{16}", "AKIA[0-9A-Z]{16}"])
        )
    );
    // A recording rule without masks of its own still passes the target's on.
    assert_eq!(
        masks(&c, "carol", "masked", "eu.console.example.com"),
        (
            Record,
            "carol-plain".to_owned(),
            strings(&["#api-key", ".secret", "input[name=otp]"]),
            strings(&["AKIA[0-9A-Z]{16}", "\\b\\d{16}\\b"])
        )
    );
    // Nothing is recorded on tunnelled and denied hosts, so there is nothing to mask.
    for (host, action, rule) in [
        ("static.console.example.com", Tunnel, "tunnel-static"),
        ("billing.console.example.com", Deny, "deny-billing"),
        ("elsewhere.example.com", Deny, "default-deny"),
    ] {
        assert_eq!(
            masks(&c, "alice", "masked", host),
            (action, rule.to_owned(), none.clone(), none.clone()),
            "{host}"
        );
    }
    // Another target does not get this target's masks, even through the same rule.
    assert_eq!(
        masks(&c, "carol", "intranet", "eu.console.example.com"),
        (Record, "carol-plain".to_owned(), none.clone(), none.clone())
    );
    assert_eq!(
        masks(&c, "alice", "aws-console", "console.aws.amazon.com"),
        (Record, "target:aws-console".to_owned(), none.clone(), none)
    );
}

#[test]
fn page_mask_diagnostics() {
    let text = format!(
        r##"{BASE}mask_selectors = ["#ok", "", "form > input", "a:hover", "#OK", "[maxlength=10]"]
mask_patterns = ["AKIA[0-9A-Z]{{16}}", "", "a*", "\\b", "AKIA[", "x?y?", "AKIA[0-9A-Z]{{16}}"]
"##
    );
    assert_eq!(
        diagnostics(&text),
        [
            "psmgate.toml:22:26: targets.intranet.mask_selectors[1]: is empty; write a selector such as \"#api-key\", \".secret\" or \"input[name=otp]\"",
            "psmgate.toml:22:30: targets.intranet.mask_selectors[2]: \"form > input\": the child combinator '>' at character 6 is not supported; only descendant selectors are (compounds separated by white space, e.g. \"form input\")",
            "psmgate.toml:22:46: targets.intranet.mask_selectors[3]: \"a:hover\": the pseudo-class \":hover\" at character 2 is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)",
            "psmgate.toml:22:64: targets.intranet.mask_selectors[5]: \"[maxlength=10]\": the value at character 12 is neither a name nor a quoted string; quote it, e.g. [maxlength=\"…\"]",
            "psmgate.toml:23:38: targets.intranet.mask_patterns[1]: is empty; write a regular expression such as \"AKIA[0-9A-Z]{16}\"",
            "psmgate.toml:23:42: targets.intranet.mask_patterns[2]: \"a*\" matches the empty string: it would mask nothing useful and everything between characters",
            "psmgate.toml:23:48: targets.intranet.mask_patterns[3]: \"\\\\b\" matches the empty string: it would mask nothing useful and everything between characters",
            "psmgate.toml:23:55: targets.intranet.mask_patterns[4]: \"AKIA[\" is not a valid regular expression: unclosed character class at character 5",
            "psmgate.toml:23:64: targets.intranet.mask_patterns[5]: \"x?y?\" matches the empty string: it would mask nothing useful and everything between characters",
            "psmgate.toml:23:72: targets.intranet.mask_patterns[6]: \"AKIA[0-9A-Z]{16}\" is already listed at mask_patterns[0]",
        ]
    );
    // Selectors are compared by meaning: `#OK` is not `#ok` (ids are case-sensitive), but
    // `INPUT.x` is `input.x`.
    let e = diagnostics(&format!(
        "{BASE}mask_selectors = [\"input.x\", \"INPUT.x\", \"#ok\", \"#OK\"]\n"
    ));
    assert_eq!(
        e,
        ["psmgate.toml:22:30: targets.intranet.mask_selectors[1]: \"INPUT.x\" is already listed at mask_selectors[0]"]
    );
    // Length limits, in characters.
    let selector = format!(".{}", "é".repeat(MAX_MASK_SELECTOR - 1));
    let pattern = format!("x{}", "é".repeat(MAX_MASK_PATTERN - 1));
    load(&format!(
        "{BASE}mask_selectors = [\"{selector}\"]\nmask_patterns = [\"{pattern}\"]\n"
    ));
    let e = diagnostics(&format!(
        "{BASE}mask_selectors = [\"{selector}é\"]\nmask_patterns = [\"{pattern}é\"]\n"
    ));
    assert_eq!(
        e,
        [
            "psmgate.toml:22:19: targets.intranet.mask_selectors[0]: is 257 characters long; a selector has at most 256",
            "psmgate.toml:23:18: targets.intranet.mask_patterns[0]: is 513 characters long; a pattern has at most 512",
        ]
    );
    // The engine's own limits are reported too.
    let e = diagnostics(&format!("{BASE}mask_patterns = [\"a{{1000}}{{1000}}\"]\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("psmgate.toml:22:18: targets.intranet.mask_patterns[0]: \"a{1000}{1000}\" is not a valid regular expression: ")
            && e[0].contains("size limit")
            && !e[0].contains('\n'),
        "{e:?}"
    );
}

#[test]
fn page_masks_only_where_something_is_recorded() {
    // Only web targets take the keys, even empty.
    let text = BASE.replace(
        "address = \"127.0.0.1:5901\"\n",
        "address = \"127.0.0.1:5901\"\nmask_selectors = []\nmask_patterns = [\"x+\"]\n",
    );
    assert_eq!(
        diagnostics(&text),
        [
            "psmgate.toml:14:18: targets.lab-vnc.mask_selectors: only valid for web targets (this target's protocol is \"vnc\")",
            "psmgate.toml:15:17: targets.lab-vnc.mask_patterns: only valid for web targets (this target's protocol is \"vnc\")",
        ]
    );
    // Only recording rules take them.
    let e = diagnostics(&format!(
        r#"{BASE}
[[web_rules]]
id = "t"
domains = ["*.cdn.example"]
action = "tunnel"
mask_selectors = [".secret"]

[[web_rules]]
id = "d"
domains = ["*"]
action = "deny"
mask_patterns = []
"#
    ));
    assert_eq!(
        e,
        [
            "psmgate.toml:27:18: web_rules[0].mask_selectors: only allowed with action = \"record\" (this rule's action is \"tunnel\")",
            "psmgate.toml:33:17: web_rules[1].mask_patterns: only allowed with action = \"record\" (this rule's action is \"deny\")",
        ]
    );
    // A recording rule's entries are checked like a target's.
    let e = diagnostics(&format!(
        "{BASE}\n[[web_rules]]\nid = \"r\"\ndomains = [\"*\"]\naction = \"record\"\nmask_selectors = [\"a + b\"]\nmask_patterns = [\"(\"]\n"
    ));
    assert_eq!(
        e,
        [
            "psmgate.toml:27:19: web_rules[0].mask_selectors[0]: \"a + b\": the sibling combinator '+' at character 3 is not supported; only descendant selectors are (compounds separated by white space, e.g. \"form input\")",
            "psmgate.toml:28:18: web_rules[0].mask_patterns[0]: \"(\" is not a valid regular expression: unclosed group at character 1",
        ]
    );
    let e = diagnostics(&format!("{BASE}mask_selectors = \".secret\"\n"));
    assert!(
        e[0].starts_with("psmgate.toml:22:18: targets.intranet.mask_selectors: invalid type"),
        "{e:?}"
    );
}

#[test]
fn page_masks_changed_in_code() {
    let mut c = load(&format!("{BASE}{MASKED}"));
    if let Some(t) = c.targets.get_mut("lab-vnc") {
        t.mask_patterns.push("x+".into());
    }
    if let Some(t) = c.targets.get_mut("masked") {
        t.mask_selectors.push("p::after".into());
    }
    c.web_rules[0].mask_selectors.push(".x".into());
    c.web_rules[2].mask_patterns.push(".*".into());
    assert_eq!(
        validate(&c),
        [
            "psmgate.toml:11:1: targets.lab-vnc.mask_patterns: only valid for web targets (this target's protocol is \"vnc\")",
            "psmgate.toml:27:18: targets.masked.mask_selectors[3]: \"p::after\": the pseudo-element \"::after\" at character 2 is not supported (pseudo-classes and pseudo-elements are not part of the selector subset)",
            "psmgate.toml:30:1: web_rules[0].mask_selectors: only allowed with action = \"record\" (this rule's action is \"tunnel\")",
            "psmgate.toml:48:17: web_rules[2].mask_patterns[2]: \".*\" matches the empty string: it would mask nothing useful and everything between characters",
        ]
    );
    // Masks on a rule that does not record never reach a decision.
    let d = c.web_decision("alice", "masked", "static.console.example.com");
    assert_eq!(d.action, WebAction::Tunnel);
    assert!(d.mask_selectors.is_empty() && d.mask_patterns.is_empty());
}
