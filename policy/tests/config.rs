//! Loading, defaults, error reporting and decisions of `psmgate-policy`.

use psmgate_policy::*;
use std::path::Path;

/// Every diagnostic of an invalid configuration, as displayed.
fn errors(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "psmgate.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => {
            let d: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
            assert_eq!(e.to_string(), d.join("\n"));
            d
        }
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap_or_default()
}

const BASE: &str = r#"
[users.alice]
roles = ["admin"]

[targets.lab-vnc]
protocol = "vnc"
address = "127.0.0.1:5901"
"#;

#[test]
fn empty_file_means_defaults() {
    let c = Config::from_toml_str("", "psmgate.toml").unwrap();
    let d = Config::default();
    assert_eq!(c.canonical_toml(), d.canonical_toml());
    assert_eq!(c.policy_version(), d.policy_version());
    assert_eq!(c.gateway.admin_listen.to_string(), "127.0.0.1:8443");
    assert!(c.gateway.admin_tls);
    assert_eq!(c.gateway.vnc_listen.port(), 5900);
    assert_eq!(c.gateway.rdp_listen.port(), 3389);
    assert_eq!(c.gateway.web_listen.port(), 8080);
    assert_eq!(c.storage.backend, StorageBackend::Local);
    assert_eq!(c.storage.index, IndexBackend::Sqlite);
    assert!(c.storage.fsync);
    let r = &c.recording;
    assert!(r.required);
    assert_eq!(r.encoder, Encoder::Auto);
    assert_eq!((r.max_fps, r.quantizer, r.speed), (10, 44, 11));
    assert_eq!(r.keyframe_max_interval, Duration::from_secs(300));
    assert_eq!(r.keyframe_byte_budget, ByteSize(2 << 20));
    assert_eq!(r.fragment_max_duration, Duration::from_secs(1));
    assert_eq!(r.checkpoint_interval, Duration::from_secs(10));
    assert_eq!(r.keystrokes, KeystrokeMode::Record);
    assert_eq!(c.retention.days, 365);
    assert!(d.validate().is_ok());
    assert_eq!(c.data_dir(), Path::new("./psmgate-data"));
    assert_eq!(c.policy_version().len(), "sha256:".len() + 64);
    assert!(c.policy_version().starts_with("sha256:"));
}

#[test]
fn sample_file_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/psmgate.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.effective_keystrokes("lab-vnc"), Some(KeystrokeMode::Mask));
    assert_eq!(
        c.effective_keystrokes("win-jump"),
        Some(KeystrokeMode::Record)
    );
    assert_eq!(c.retention_days("lab-vnc"), Some(90));
    assert_eq!(c.retention_days("win-jump"), Some(365));
    assert_eq!(c.masks("lab-vnc").map(<[MaskRegion]>::len), Some(2));
    assert_eq!(
        c.is_allowed("alice", "aws-console").rule_id.as_deref(),
        Some("admins-everywhere")
    );
    assert_eq!(
        c.is_allowed("bob", "lab-vnc").rule_id.as_deref(),
        Some("operators-lab")
    );
    assert!(!c.is_allowed("bob", "aws-console").allowed);
    assert!(!c.is_allowed("carol", "lab-vnc").allowed);
    // Every file secret of the sample exists and resolves.
    let pw = c
        .target("lab-vnc")
        .and_then(|t| t.password.as_ref())
        .unwrap()
        .resolve()
        .unwrap();
    assert!(!pw.expose().is_empty());
    assert_eq!(format!("{pw:?}"), "***");
    let win = c
        .target("win-jump")
        .and_then(|t| t.password.as_ref())
        .unwrap();
    assert!(win.resolve().is_ok());
    // The canonical form round-trips to the same policy.
    let again = Config::from_toml_str(&c.canonical_toml(), &path.to_string_lossy()).unwrap();
    assert_eq!(again.policy_version(), c.policy_version());
}

#[test]
fn policy_version_ignores_layout_but_not_values() {
    let a = Config::from_toml_str(BASE, "a.toml").unwrap();
    let b = Config::from_toml_str(
        &format!("# comment\n{}\n\n", BASE.replace(" = ", "=")),
        "b.toml",
    )
    .unwrap();
    assert_eq!(a.policy_version(), b.policy_version());
    let c = Config::from_toml_str(&format!("{BASE}retention_days = 7\n"), "c.toml").unwrap();
    assert_ne!(a.policy_version(), c.policy_version());
}

#[test]
fn toml_syntax_errors_are_located() {
    assert_eq!(
        one_error("[gateway]\nadmin_tls = tru\n"),
        "psmgate.toml:2:13: invalid string"
    );
    let e = one_error("[gateway\n");
    assert!(e.starts_with("psmgate.toml:1:9: "), "{e}");
}

#[test]
fn unknown_keys_are_located() {
    let e = one_error(&format!("{BASE}pasword = {{ env = \"X\" }}\n"));
    assert!(
        e.starts_with("psmgate.toml:8:1: targets.lab-vnc.pasword: unknown field `pasword`"),
        "{e}"
    );
    let e = one_error("[recordng]\nmax_fps = 5\n");
    assert!(
        e.starts_with("psmgate.toml:1:2: recordng: unknown field `recordng`"),
        "{e}"
    );
}

#[test]
fn wrong_types_and_enum_values_are_located() {
    let e = one_error("[recording]\nencoder = \"x264\"\n");
    assert!(
        e.starts_with("psmgate.toml:2:11: recording.encoder: unknown variant `x264`"),
        "{e}"
    );
    let e = one_error("[gateway]\nadmin_tls = \"yes\"\n");
    assert!(
        e.starts_with("psmgate.toml:2:13: gateway.admin_tls: invalid type"),
        "{e}"
    );
}

#[test]
fn missing_required_keys_are_reported() {
    let e = one_error("[targets.t]\nprotocol = \"vnc\"\n");
    assert!(
        e.starts_with("psmgate.toml:1:1: targets.t: missing field `address`"),
        "{e}"
    );
}

#[test]
fn mask_errors_name_line_column_and_path() {
    let text = format!(
        "{BASE}masks = [\n  {{ id = \"a\", x = 0, y = 0, width = 10, height = 10 }},\n  {{ id = \"b\", x = 0, y = 0, width = \"130%\", height = 0 }},\n  {{ id = \"a\", x = \"80%\", y = \"nope\", width = \"30%\", height = 5 }},\n]\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            "psmgate.toml:11:30: targets.lab-vnc.masks[2].y: \"nope\" is neither a pixel count (e.g. 120 or \"120px\") nor a percentage (e.g. \"25%\")",
            "psmgate.toml:10:37: targets.lab-vnc.masks[1].width: \"130%\" is more than 100%",
            "psmgate.toml:10:54: targets.lab-vnc.masks[1].height: a mask needs a non-zero size",
        ]
    );
    // Once `y` parses, the duplicate id and the overflow along x are found too.
    let text = text.replace("\"nope\"", "1");
    assert_eq!(
        errors(&text)[2..],
        [
            "psmgate.toml:11:10: targets.lab-vnc.masks[2].id: mask id \"a\" is used twice in this target",
            "psmgate.toml:11:41: targets.lab-vnc.masks[2].width: \"80%\" + \"30%\" reaches past 100% of the screen",
        ]
    );
}

#[test]
fn literal_passwords_are_refused_without_echo() {
    let e = one_error(&format!("{BASE}password = \"hunter2\"\n"));
    assert_eq!(
        e,
        "psmgate.toml:8:12: targets.lab-vnc.password: secret values must not be written in the configuration; use { file = \"/path/to/secret\" } or { env = \"VARIABLE\" }"
    );
    assert!(!e.contains("hunter2"));
}

#[test]
fn malformed_secret_refs() {
    let e = errors(&format!("{BASE}password = {{ env = \"1BAD-NAME\" }}\n[storage]\nindex = \"postgres\"\nindex_url = {{ file = \"a\", env = \"B\" }}\n"));
    assert_eq!(
        e,
        vec![
            "psmgate.toml:11:13: storage.index_url: a secret reference names exactly one of `file` or `env`",
            "psmgate.toml:10:9: storage.index: index = \"postgres\" needs storage.index_url = { file = \"…\" } or { env = \"…\" }",
            "psmgate.toml:8:20: targets.lab-vnc.password.env: \"1BAD-NAME\" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
        ]
    );
    let e = one_error(&format!("{BASE}password = {{ vault = \"x\" }}\n"));
    assert_eq!(e, "psmgate.toml:8:22: targets.lab-vnc.password.vault: unknown key in secret reference (expected `file` or `env`)");
    let e = one_error(&format!("{BASE}password = {{ file = \"\" }}\n"));
    assert_eq!(
        e,
        "psmgate.toml:8:21: targets.lab-vnc.password.file: must not be empty"
    );
}

#[test]
fn relative_file_refs_follow_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/p"), "s3cret\n").unwrap();
    let cfg = dir.path().join("psmgate.toml");
    std::fs::write(
        &cfg,
        format!("{BASE}password = {{ file = \"secrets/p\" }}\n"),
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap();
    assert!(c.check_secrets().is_ok());
    let s = c
        .target("lab-vnc")
        .and_then(|t| t.password.as_ref())
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(s.expose(), b"s3cret");

    std::fs::remove_file(dir.path().join("secrets/p")).unwrap();
    let e = c.check_secrets().unwrap_err().to_string();
    assert!(
        e.contains(":8:12: targets.lab-vnc.password: secret file "),
        "{e}"
    );
    assert!(e.contains("secrets/p"), "{e}");
}

#[test]
fn addresses_durations_sizes_and_ranges_are_all_collected() {
    let text = r#"
[gateway]
admin_listen = "localhost:8443"
vnc_listen = "127.0.0.1:3389"
rdp_listen = "127.0.0.1:3389"

[recording]
encoder = "rav1e"
max_fps = 0
quantizer = 64
speed = 11
keyframe_max_interval = "5 minutes"
keyframe_byte_budget = "2 furlongs"
fragment_max_duration = "20s"
checkpoint_interval = 10

[targets.t]
protocol = "rdp"
address = "https://example.com"
retention_days = -1
"#;
    assert_eq!(
        errors(text),
        vec![
            "psmgate.toml:3:16: gateway.admin_listen: \"localhost:8443\" is not an IP address and port such as \"127.0.0.1:8443\" or \"[::1]:8443\"",
            "psmgate.toml:12:25: recording.keyframe_max_interval: duration \"5 minutes\" has no known unit (expected ms, s, m, h or d, e.g. \"500ms\", \"10s\", \"5m\", \"1h30m\")",
            "psmgate.toml:13:24: recording.keyframe_byte_budget: size \"2 furlongs\" has no known unit (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, e.g. \"512KiB\", \"2MiB\")",
            "psmgate.toml:15:23: recording.checkpoint_interval: expected a duration string such as \"10s\" or \"5m\", found an integer",
            "psmgate.toml:19:11: targets.t.address: a URL is only valid for web targets; write host:port for Rdp targets",
            "psmgate.toml:20:18: targets.t.retention_days: -1 is outside 0..=4294967295",
            "psmgate.toml:5:14: gateway.rdp_listen: 127.0.0.1:3389 is already used by gateway.vnc_listen",
            "psmgate.toml:9:11: recording.max_fps: 0 is less than 1",
            "psmgate.toml:10:13: recording.quantizer: 64 is more than 63",
            "psmgate.toml:11:9: recording.speed: 11 is more than 10",
            "psmgate.toml:14:25: recording.fragment_max_duration: \"20s\" is longer than 10s",
        ]
    );
}

#[test]
fn bad_target_addresses() {
    let e = one_error("[targets.t]\nprotocol = \"vnc\"\naddress = \"10.0.0.5\"\n");
    assert!(
        e.starts_with("psmgate.toml:3:11: targets.t.address: \"10.0.0.5\" is not host:port"),
        "{e}"
    );
}

#[test]
fn rule_cross_references() {
    let text = format!(
        "{BASE}\n[[rules]]\nid = \"r1\"\nusers = [\"alice\", \"mallory\"]\ntargets = [\"lab-vnc\", \"prod-db\"]\n\n[[rules]]\nid = \"r1\"\nroles = [\"dba\"]\ntargets = \"*\"\n\n[[rules]]\nid = \"r3\"\ntargets = [\"*\"]\n\n[[rules]]\nid = \"r4\"\nusers = [\"alice\"]\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            "psmgate.toml:23:1: rules[3].targets: missing: list target names or write targets = \"*\"",
            "psmgate.toml:11:19: rules[0].users[1]: unknown user \"mallory\"",
            "psmgate.toml:12:23: rules[0].targets[1]: unknown target \"prod-db\"",
            "psmgate.toml:15:6: rules[1].id: rule id \"r1\" is already used by rules[0]",
            "psmgate.toml:16:10: rules[1].roles[0]: no user has role \"dba\"",
            "psmgate.toml:19:1: rules[2]: a rule needs users = [...] or roles = [...]",
            "psmgate.toml:21:12: rules[2].targets[0]: unknown target \"*\" (write targets = \"*\" without brackets for every target)",
            "psmgate.toml:23:1: rules[3].targets: lists no target (write \"*\" for every target)",
        ]
    );
}

#[test]
fn names_and_password_hashes() {
    let text = "[users.\"bad name\"]\n\n[users.bob]\npassword_hash = \"plaintext-oops\"\n";
    let e = errors(text);
    assert_eq!(
        e,
        vec![
            "psmgate.toml:1:1: users.\"bad name\": user name \"bad name\" must be 1..=64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
            "psmgate.toml:4:17: users.bob.password_hash: is not a PHC string such as \"$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>\"",
        ]
    );
    assert!(!e.join("").contains("plaintext-oops"));
}

#[test]
fn storage_backends() {
    assert_eq!(
        one_error("[storage]\nbackend = \"s3\"\n"),
        "psmgate.toml:2:11: storage.backend: backend = \"s3\" needs a [storage.s3] section with a bucket"
    );
    let e = errors("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"B\"\nendpoint = \"minio:9000\"\naccess_key_id = { env = \"AK\" }\n");
    assert_eq!(
        e,
        vec![
            "psmgate.toml:4:10: storage.s3.bucket: \"B\" is not an S3 bucket name (3..=63 of a-z 0-9 . -)",
            "psmgate.toml:5:12: storage.s3.endpoint: \"minio:9000\" is not an http(s) URL",
            "psmgate.toml:3:1: storage.s3: set both access_key_id and secret_access_key, or neither (default credential chain)",
        ]
    );
    let ok = Config::from_toml_str(
        "[storage]\nbackend = \"s3\"\nindex = \"postgres\"\nindex_url = { env = \"PG_URL\" }\n[storage.s3]\nbucket = \"recordings\"\nendpoint = \"http://127.0.0.1:9000\"\n",
        "psmgate.toml",
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn validate_reports_changes_made_in_code() {
    let mut c = Config::from_toml_str(BASE, "psmgate.toml").unwrap();
    assert!(c.validate().is_ok());
    c.recording.max_fps = 61;
    c.rules.push(Rule::new(
        "x",
        vec!["zed".into()],
        vec![],
        TargetSelector::All,
    ));
    let e = c.validate().unwrap_err();
    let d: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        d,
        vec![
            "psmgate.toml: recording.max_fps: 61 is more than 60",
            "psmgate.toml: rules[0].users[0]: unknown user \"zed\""
        ]
    );
}

#[test]
fn decisions_and_overrides() {
    let text = format!(
        "{BASE}keystrokes = \"off\"\n\n[targets.other]\nprotocol = \"rdp\"\naddress = \"[fd00::1]:3389\"\n\n[users.bob]\n\n[[rules]]\nid = \"admins\"\nroles = [\"admin\"]\ntargets = [\"lab-vnc\"]\n\n[[rules]]\nid = \"all\"\nusers = [\"alice\", \"bob\"]\ntargets = \"*\"\n\n[recording]\nkeystrokes = \"mask\"\n"
    );
    let c = Config::from_toml_str(&text, "psmgate.toml").unwrap();
    assert_eq!(
        c.is_allowed("alice", "lab-vnc"),
        Decision {
            allowed: true,
            rule_id: Some("admins".into())
        }
    );
    assert_eq!(
        c.is_allowed("alice", "other").rule_id.as_deref(),
        Some("all")
    );
    assert_eq!(
        c.is_allowed("bob", "lab-vnc").rule_id.as_deref(),
        Some("all")
    );
    assert_eq!(c.is_allowed("mallory", "lab-vnc"), Decision::deny());
    assert_eq!(c.is_allowed("alice", "nowhere"), Decision::deny());
    assert_eq!(c.effective_keystrokes("lab-vnc"), Some(KeystrokeMode::Off));
    assert_eq!(c.effective_keystrokes("other"), Some(KeystrokeMode::Mask));
    assert_eq!(c.effective_keystrokes("nowhere"), None);
    assert_eq!(c.masks("other"), Some(&[][..]));
    assert_eq!(c.retention_days("nowhere"), None);
    assert_eq!(
        c.target("other").map(|t| t.address.to_string()).as_deref(),
        Some("[fd00::1]:3389")
    );
}

#[test]
fn read_errors_name_the_file() {
    let e = Config::load("/nonexistent/psmgate.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/psmgate.toml: cannot read configuration"));
}

#[test]
fn masks_resolve_from_config() {
    let c = Config::from_toml_str(
        &format!("{BASE}masks = [{{ id = \"p\", x = \"75%\", y = 0, width = \"25%\", height = \"20%\" }}]\n"),
        "psmgate.toml",
    )
    .unwrap();
    let m = &c.masks("lab-vnc").unwrap()[0];
    assert_eq!(m.resolve(1920, 1080), (1440, 0, 480, 216));
}

#[test]
fn vnc_tls_setting() {
    let c = Config::from_toml_str("", "psmgate.toml").unwrap();
    assert_eq!(c.gateway.vnc_tls, VncTls::Offer);
    for (text, want) in [
        ("offer", VncTls::Offer),
        ("require", VncTls::Require),
        ("off", VncTls::Off),
    ] {
        let c = Config::from_toml_str(
            &format!("[gateway]\nvnc_tls = \"{text}\"\n"),
            "psmgate.toml",
        )
        .unwrap();
        assert_eq!(c.gateway.vnc_tls, want);
        assert!(c
            .canonical_toml()
            .contains(&format!("vnc_tls = \"{text}\"")));
    }
    let e = one_error("[gateway]\nvnc_tls = \"maybe\"\n");
    assert!(
        e.starts_with("psmgate.toml:2:11: gateway.vnc_tls: unknown variant `maybe`"),
        "{e}"
    );
    let e = one_error("[gateway]\nvnc_tls = true\n");
    assert!(e.contains("gateway.vnc_tls"), "{e}");
}

#[test]
fn protocol_names_are_the_configuration_names() {
    use psmgate_policy::Protocol;
    for p in [Protocol::Vnc, Protocol::Rdp, Protocol::Web] {
        assert_eq!(
            toml::Value::try_from(p).unwrap(),
            toml::Value::from(p.as_str())
        );
    }
}
