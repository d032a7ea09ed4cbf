//! Clipboard policy per target, and the refusal of anonymous access.

use psmgate_policy::*;

const BASE: &str = r#"
[users.alice]
roles = ["admin"]

[targets.lab-vnc]
protocol = "vnc"
address = "127.0.0.1:5901"
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

#[test]
fn defaults_allow_both_directions_and_log_a_digest() {
    let c = load(BASE);
    let p = c.effective_clipboard("lab-vnc").unwrap();
    assert_eq!(p, ClipboardPolicy::default());
    assert_eq!(p.to_target, ClipboardAccess::Allow);
    assert_eq!(p.to_client, ClipboardAccess::Allow);
    assert_eq!(p.log, ClipboardLog::Digest);
    assert_eq!(c.effective_clipboard("nope"), None);
    // The effective policy is part of the canonical form, defaults included.
    assert!(
        c.canonical_toml().contains("to_client = \"allow\""),
        "{}",
        c.canonical_toml()
    );
}

#[test]
fn every_field_parses_and_changes_the_policy_version() {
    let text = format!(
        "{BASE}clipboard = {{ to_target = \"deny\", to_client = \"allow\", log = \"length\" }}\n"
    );
    let c = load(&text);
    let p = c.effective_clipboard("lab-vnc").unwrap();
    assert_eq!(
        (p.to_target, p.to_client, p.log),
        (
            ClipboardAccess::Deny,
            ClipboardAccess::Allow,
            ClipboardLog::Length
        )
    );
    assert_ne!(c.policy_version(), load(BASE).policy_version());
    // Partial tables keep the defaults of the keys they leave out.
    let c = load(&format!("{BASE}clipboard = {{ to_client = \"deny\" }}\n"));
    let p = c.effective_clipboard("lab-vnc").unwrap();
    assert_eq!(
        (p.to_target, p.to_client, p.log),
        (
            ClipboardAccess::Allow,
            ClipboardAccess::Deny,
            ClipboardLog::Digest
        )
    );
    // The canonical form round-trips.
    let again = load(&c.canonical_toml());
    assert_eq!(again.policy_version(), c.policy_version());
}

#[test]
fn content_logging_falls_back_to_digest_unless_keys_are_recorded() {
    let content = "clipboard = { log = \"content\" }\n";
    let c = load(&format!("{BASE}{content}"));
    assert_eq!(
        c.effective_clipboard("lab-vnc").unwrap().log,
        ClipboardLog::Content
    );
    for mode in ["mask", "off"] {
        let c = load(&format!("{BASE}keystrokes = \"{mode}\"\n{content}"));
        assert_eq!(
            c.effective_clipboard("lab-vnc").unwrap().log,
            ClipboardLog::Digest,
            "{mode}"
        );
        // The configured value stays as written; only the applied level changes.
        assert_eq!(c.targets["lab-vnc"].clipboard.log, ClipboardLog::Content);
    }
    // The global default keystroke mode counts as well.
    let c = load(&format!(
        "[recording]\nkeystrokes = \"off\"\n{BASE}{content}"
    ));
    assert_eq!(
        c.effective_clipboard("lab-vnc").unwrap().log,
        ClipboardLog::Digest
    );
    let p = ClipboardPolicy {
        log: ClipboardLog::Length,
        ..ClipboardPolicy::default()
    };
    assert_eq!(p.effective_log(KeystrokeMode::Off), ClipboardLog::Length);
}

#[test]
fn bad_clipboard_values_are_located() {
    let e = diagnostics(&format!("{BASE}clipboard = {{ to_target = \"maybe\" }}\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "psmgate.toml:8:27: targets.lab-vnc.clipboard.to_target: unknown variant `maybe`"
        ),
        "{e:?}"
    );
    let e = diagnostics(&format!("{BASE}clipboard = {{ log = \"everything\" }}\n"));
    assert!(
        e[0].starts_with("psmgate.toml:8:21: targets.lab-vnc.clipboard.log: unknown variant"),
        "{e:?}"
    );
    let e = diagnostics(&format!("{BASE}clipboard = {{ to_viewer = \"deny\" }}\n"));
    assert!(
        e[0].starts_with(
            "psmgate.toml:8:15: targets.lab-vnc.clipboard.to_viewer: unknown field `to_viewer`"
        ),
        "{e:?}"
    );
    let e = diagnostics(&format!("{BASE}clipboard = \"deny\"\n"));
    assert!(
        e[0].starts_with("psmgate.toml:8:13: targets.lab-vnc.clipboard: invalid type"),
        "{e:?}"
    );
}

#[test]
fn anonymous_access_is_refused_with_the_reason() {
    let e = diagnostics(&format!(
        "{BASE}allow_none = true\nanonymous_user = \"kiosk\"\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(
            "psmgate.toml:8:14: targets.lab-vnc.allow_none: anonymous access is not supported"
        ),
        "{e:?}"
    );
    assert!(
        e[1].starts_with(
            "psmgate.toml:9:18: targets.lab-vnc.anonymous_user: anonymous access is not supported"
        ),
        "{e:?}"
    );
    assert!(e[0].contains("psmgate access grant"), "{e:?}");
    // `allow_none = false` is refused too: the key has no meaning to keep.
    let e = diagnostics(&format!("{BASE}allow_none = false\n"));
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn the_sample_keeps_the_target_clipboard_in() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/psmgate.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = c.effective_clipboard("lab-vnc").unwrap();
    assert_eq!(
        (p.to_target, p.to_client, p.log),
        (
            ClipboardAccess::Allow,
            ClipboardAccess::Deny,
            ClipboardLog::Digest
        )
    );
    assert_eq!(
        c.effective_clipboard("win-jump"),
        Some(ClipboardPolicy::default())
    );
}
