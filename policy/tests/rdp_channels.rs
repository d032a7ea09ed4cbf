//! The per-target allow-lists of RDP static and dynamic virtual channels.

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
    assert_eq!(
        c.rdp_dynamic_channels("win-jump"),
        DEFAULT_RDP_DYNAMIC_CHANNELS
    );
    assert!(c.rdp_dynamic_channels("lab-vnc").is_empty());
}

const GRAPHICS: &str = "Microsoft::Windows::RDS::Graphics";

#[test]
fn default_dynamic_channels_are_display_audio_and_geometry() {
    let c = load(BASE);
    assert_eq!(
        DEFAULT_RDP_DYNAMIC_CHANNELS,
        [
            "Microsoft::Windows::RDS::DisplayControl",
            "AUDIO_PLAYBACK_DVC",
            "AUDIO_PLAYBACK_LOSSY_DVC",
            "AUDIO_INPUT",
            "Microsoft::Windows::RDS::Geometry::v08.01",
        ]
    );
    assert_eq!(c.rdp_dynamic_channels("win"), DEFAULT_RDP_DYNAMIC_CHANNELS);
    for denied in [
        GRAPHICS,
        "FileRedirectorChannel",
        "PNPDR",
        "URBDRC",
        "Microsoft::Windows::RDS::Telemetry",
    ] {
        assert!(
            !c.rdp_dynamic_channels("win").iter().any(|d| d == denied),
            "{denied}"
        );
    }
    assert_eq!(RDP_GRAPHICS_DYNAMIC_CHANNEL, GRAPHICS);
    // Filled in for rdp targets only, so that the canonical form states it.
    assert_eq!(
        c.targets["win"]
            .rdp_dynamic_channels
            .as_deref()
            .map(<[String]>::len),
        Some(5)
    );
    assert_eq!(c.targets["lab-vnc"].rdp_dynamic_channels, None);
    let canonical = c.canonical_toml();
    assert_eq!(
        canonical.matches("rdp_dynamic_channels").count(),
        1,
        "{canonical}"
    );
    assert!(canonical.contains("Microsoft::Windows::RDS::Geometry::v08.01"));
    assert_eq!(load(&canonical).policy_version(), c.policy_version());
    // Writing the default out changes nothing.
    let quoted: Vec<String> = DEFAULT_RDP_DYNAMIC_CHANNELS
        .iter()
        .map(|d| format!("{d:?}"))
        .collect();
    let explicit = load(&format!(
        "{BASE}rdp_dynamic_channels = [{}]\n",
        quoted.join(", ")
    ));
    assert_eq!(explicit.policy_version(), c.policy_version());
    // Unknown and non-RDP targets get no dynamic channel at all.
    assert!(c.rdp_dynamic_channels("lab-vnc").is_empty());
    assert!(c.rdp_dynamic_channels("nope").is_empty());
}

#[test]
fn dynamic_channel_names_are_exact_and_change_the_policy_version() {
    let c = load(&format!(
        "{BASE}rdp_dynamic_channels = [\"AUDIO_INPUT\", \"audio_input\", \"Vendor Channel::v1\"]\n"
    ));
    // Case matters: two different channels, kept as written, in order.
    assert_eq!(
        c.rdp_dynamic_channels("win"),
        ["AUDIO_INPUT", "audio_input", "Vendor Channel::v1"]
    );
    assert_ne!(c.policy_version(), load(BASE).policy_version());
    // An empty list denies every dynamic channel.
    let c = load(&format!("{BASE}rdp_dynamic_channels = []\n"));
    assert!(c.rdp_dynamic_channels("win").is_empty());
    assert_eq!(c.rdp_channels("win"), ["cliprdr", "drdynvc", "rdpsnd"]);
    // Without drdynvc no dynamic channel can open, whatever is listed.
    let c = load(&format!(
        "{BASE}rdp_channels = [\"cliprdr\", \"rdpsnd\"]\nrdp_dynamic_channels = [\"AUDIO_INPUT\"]\n"
    ));
    assert!(c.rdp_dynamic_channels("win").is_empty());
    // drdynvc is matched without regard to case, like every static channel.
    let c = load(&format!("{BASE}rdp_channels = [\"DRDYNVC\"]\n"));
    assert_eq!(c.rdp_dynamic_channels("win"), DEFAULT_RDP_DYNAMIC_CHANNELS);
}

#[test]
fn the_graphics_pipeline_is_never_allowed() {
    let e = diagnostics(&format!(
        "{BASE}rdp_dynamic_channels = [\"AUDIO_INPUT\", \"{GRAPHICS}\", \"microsoft::windows::rds::graphics\"]\n"
    ));
    assert_eq!(
        e,
        [
            "psmgate.toml:12:40: targets.win.rdp_dynamic_channels[1]: \"Microsoft::Windows::RDS::Graphics\" (the graphics pipeline) is never allowed: psmgate withdraws graphics pipeline support and could not record what it carries",
            "psmgate.toml:12:77: targets.win.rdp_dynamic_channels[2]: \"microsoft::windows::rds::graphics\" (the graphics pipeline) is never allowed: psmgate withdraws graphics pipeline support and could not record what it carries",
        ]
    );
    // Set in code, `validate` refuses it and the list as applied leaves it out.
    let mut c = load(BASE);
    if let Some(t) = c.targets.get_mut("win") {
        t.rdp_dynamic_channels = Some(vec![
            GRAPHICS.into(),
            "AUDIO_INPUT".into(),
            "AUDIO_INPUT".into(),
            "bad\nname".into(),
        ]);
    }
    let e = c.validate().map_err(|e| e.to_string());
    assert!(
        e.as_ref().is_err_and(|e| e.contains(
            "targets.win.rdp_dynamic_channels[0]: \"Microsoft::Windows::RDS::Graphics\" (the graphics pipeline) is never allowed"
        )),
        "{e:?}"
    );
    assert_eq!(c.rdp_dynamic_channels("win"), ["AUDIO_INPUT"]);
}

#[test]
fn invalid_dynamic_channel_names_are_located() {
    let long = "x".repeat(257);
    let e = diagnostics(&format!(
        "{BASE}rdp_dynamic_channels = [\"PNPDR\", \"\", \" lead\", \"{long}\", \"PNPDR\", \"tab\\there\"]\n"
    ));
    let msg = "is not a dynamic virtual channel name (1..=256 printable ASCII characters, no leading or trailing space, e.g. \"Microsoft::Windows::RDS::DisplayControl\")";
    assert_eq!(
        e,
        [
            format!("psmgate.toml:12:34: targets.win.rdp_dynamic_channels[1]: \"\" {msg}"),
            format!("psmgate.toml:12:38: targets.win.rdp_dynamic_channels[2]: \" lead\" {msg}"),
            format!("psmgate.toml:12:47: targets.win.rdp_dynamic_channels[3]: \"{long}\" {msg}"),
            "psmgate.toml:12:308: targets.win.rdp_dynamic_channels[4]: channel \"PNPDR\" is already listed at rdp_dynamic_channels[0]".to_owned(),
            format!("psmgate.toml:12:317: targets.win.rdp_dynamic_channels[5]: \"tab\\there\" {msg}"),
        ]
    );
    let e = diagnostics(&format!(
        "{BASE}rdp_dynamic_channels = [\"AUDIO_INPUTé\"]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "psmgate.toml:12:25: targets.win.rdp_dynamic_channels[0]: \"AUDIO_INPUTé\" is not"
        ),
        "{e:?}"
    );
    // Wrong types are schema errors, located as well.
    let e = diagnostics(&format!("{BASE}rdp_dynamic_channels = \"AUDIO_INPUT\"\n"));
    assert!(
        e[0].starts_with("psmgate.toml:12:24: targets.win.rdp_dynamic_channels: invalid type"),
        "{e:?}"
    );
    assert!(is_valid_rdp_dynamic_channel_name(&"x".repeat(256)));
    assert!(is_valid_rdp_dynamic_channel_name("Vendor Channel"));
    for bad in ["", "x ", " x", "a\0b", "a\u{7f}b", "é"] {
        assert!(!is_valid_rdp_dynamic_channel_name(bad), "{bad:?}");
    }
}

#[test]
fn only_rdp_targets_take_the_dynamic_key() {
    let text = BASE.replace(
        "address = \"127.0.0.1:5901\"\n",
        "address = \"127.0.0.1:5901\"\nrdp_dynamic_channels = [\"AUDIO_INPUT\"]\n",
    );
    let e = diagnostics(&text);
    assert_eq!(
        e,
        ["psmgate.toml:8:24: targets.lab-vnc.rdp_dynamic_channels: only valid for rdp targets (this target's protocol is \"vnc\")"]
    );
    let mut c = load(BASE);
    if let Some(t) = c.targets.get_mut("lab-vnc") {
        t.rdp_dynamic_channels = Some(vec!["AUDIO_INPUT".into()]);
    }
    let e = c.validate().map_err(|e| e.to_string());
    assert_eq!(
        e,
        Err("psmgate.toml:5:1: targets.lab-vnc.rdp_dynamic_channels: only valid for rdp targets (this target's protocol is \"vnc\")".to_owned())
    );
    assert!(c.rdp_dynamic_channels("lab-vnc").is_empty());
}
