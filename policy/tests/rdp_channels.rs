//! The per-target allow-list of RDP static virtual channels.

use psmgate_policy::*;

const BASE: &str = r#"
[users.alice]
roles = ["admin"]

[targets.lab-vnc]
protocol = "vnc"
address = "127.0.0.1:5901"

[targets.win]
protocol = "rdp"
address = "127.0.0.1:3390"
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
fn default_allows_clipboard_dynamic_channels_and_sound_only() {
    let c = load(BASE);
    assert_eq!(c.rdp_channels("win"), ["cliprdr", "drdynvc", "rdpsnd"]);
    assert_eq!(DEFAULT_RDP_CHANNELS, ["cliprdr", "drdynvc", "rdpsnd"]);
    assert!(!c.rdp_channels("win").iter().any(|ch| ch == "rdpdr"));
    // The default is part of the canonical form of rdp targets, and only of those.
    assert_eq!(
        c.targets["win"].rdp_channels.as_deref(),
        Some(
            &[
                "cliprdr".to_owned(),
                "drdynvc".to_owned(),
                "rdpsnd".to_owned()
            ][..]
        )
    );
    assert_eq!(c.targets["lab-vnc"].rdp_channels, None);
    let canonical = c.canonical_toml();
    assert_eq!(canonical.matches("rdp_channels").count(), 1, "{canonical}");
    let again = load(&canonical);
    assert_eq!(again.policy_version(), c.policy_version());
    // Writing the default out changes nothing.
    let explicit = load(&format!(
        "{BASE}rdp_channels = [\"cliprdr\", \"drdynvc\", \"rdpsnd\"]\n"
    ));
    assert_eq!(explicit.policy_version(), c.policy_version());
    // Unknown and non-RDP targets get no channel at all.
    assert!(c.rdp_channels("lab-vnc").is_empty());
    assert!(c.rdp_channels("nope").is_empty());
}

#[test]
fn explicit_list_is_lower_cased_and_changes_the_policy_version() {
    let c = load(&format!(
        "{BASE}rdp_channels = [\"CLIPRDR\", \"rdpdr\", \"Rail\", \"MS_T120\"]\n"
    ));
    assert_eq!(
        c.rdp_channels("win"),
        ["cliprdr", "rdpdr", "rail", "ms_t120"]
    );
    // The configured value stays as written.
    assert_eq!(
        c.targets["win"]
            .rdp_channels
            .as_ref()
            .map(|v| v[0].as_str()),
        Some("CLIPRDR")
    );
    assert_ne!(c.policy_version(), load(BASE).policy_version());
    // An empty list denies every static channel.
    let c = load(&format!("{BASE}rdp_channels = []\n"));
    assert!(c.rdp_channels("win").is_empty());
}

#[test]
fn cliprdr_is_dropped_when_the_clipboard_is_closed_both_ways() {
    let both = "clipboard = { to_target = \"deny\", to_client = \"deny\" }\n";
    let c = load(&format!("{BASE}{both}"));
    assert_eq!(c.rdp_channels("win"), ["drdynvc", "rdpsnd"]);
    let c = load(&format!(
        "{BASE}{both}rdp_channels = [\"CLIPRDR\", \"rdpdr\"]\n"
    ));
    assert_eq!(c.rdp_channels("win"), ["rdpdr"]);
    // One open direction keeps the channel; the filter enforces the other.
    let c = load(&format!("{BASE}clipboard = {{ to_client = \"deny\" }}\n"));
    assert_eq!(c.rdp_channels("win"), ["cliprdr", "drdynvc", "rdpsnd"]);
}

#[test]
fn invalid_names_are_located() {
    let e = diagnostics(&format!(
        "{BASE}rdp_channels = [\"cliprdr\", \"toolongname\", \"\", \"a b\", \"Cliprdr\"]\n"
    ));
    assert_eq!(
        e,
        [
            "psmgate.toml:12:28: targets.win.rdp_channels[1]: \"toolongname\" is not a static virtual channel name (1..=7 printable ASCII characters without spaces, e.g. \"cliprdr\")",
            "psmgate.toml:12:43: targets.win.rdp_channels[2]: \"\" is not a static virtual channel name (1..=7 printable ASCII characters without spaces, e.g. \"cliprdr\")",
            "psmgate.toml:12:47: targets.win.rdp_channels[3]: \"a b\" is not a static virtual channel name (1..=7 printable ASCII characters without spaces, e.g. \"cliprdr\")",
            "psmgate.toml:12:54: targets.win.rdp_channels[4]: channel \"Cliprdr\" is already listed at rdp_channels[0]",
        ],
    );
    let e = diagnostics(&format!("{BASE}rdp_channels = [\"cliprdé\"]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("psmgate.toml:12:17: targets.win.rdp_channels[0]: \"cliprdé\" is not"),
        "{e:?}"
    );
    let too_many: Vec<String> = (0..32).map(|i| format!("\"c{i}\"")).collect();
    let e = diagnostics(&format!("{BASE}rdp_channels = [{}]\n", too_many.join(", ")));
    assert_eq!(
        e,
        ["psmgate.toml:12:16: targets.win.rdp_channels: lists 32 channels; RDP allows at most 31"]
    );
    // Wrong types are schema errors, located as well.
    let e = diagnostics(&format!("{BASE}rdp_channels = \"cliprdr\"\n"));
    assert!(
        e[0].starts_with("psmgate.toml:12:16: targets.win.rdp_channels: invalid type"),
        "{e:?}"
    );
    assert!(is_valid_rdp_channel_name("rdpsnd"));
    assert!(!is_valid_rdp_channel_name("rdp\0snd"));
}

#[test]
fn only_rdp_targets_take_the_key() {
    let text = BASE.replace(
        "address = \"127.0.0.1:5901\"\n",
        "address = \"127.0.0.1:5901\"\nrdp_channels = [\"cliprdr\"]\n",
    );
    let e = diagnostics(&text);
    assert_eq!(
        e,
        ["psmgate.toml:8:16: targets.lab-vnc.rdp_channels: only valid for rdp targets (this target's protocol is \"vnc\")"]
    );
    // Set in code, the same mistake is reported by `validate`.
    let mut c = load(BASE);
    if let Some(t) = c.targets.get_mut("lab-vnc") {
        t.rdp_channels = Some(vec!["cliprdr".into()]);
    }
    let e = c.validate().map_err(|e| e.to_string());
    assert_eq!(
        e,
        Err("psmgate.toml:5:1: targets.lab-vnc.rdp_channels: only valid for rdp targets (this target's protocol is \"vnc\")".to_owned())
    );
    assert!(c.rdp_channels("lab-vnc").is_empty());
}

#[test]
fn the_sample_lists_the_jump_host_channels() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/psmgate.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.rdp_channels("win-jump"), ["cliprdr", "drdynvc", "rdpsnd"]);
    assert!(c.rdp_channels("lab-vnc").is_empty());
}
