//! Random input never panics the loader, and whatever loads also validates.

use proptest::prelude::*;
use psmgate_policy::{is_valid_rdp_channel_name, Config, WebAction, TARGET_RULE_PREFIX};

fn check(text: &str) {
    match Config::from_toml_str(text, "fuzz/psmgate.toml") {
        Ok(c) => {
            assert!(c.validate().is_ok());
            let _ = c.policy_version();
            for t in c.targets.keys() {
                for m in c.masks(t).unwrap_or_default() {
                    let (x, y, w, h) = m.resolve(1920, 1080);
                    assert!(x + w <= 1920 && y + h <= 1080, "{m:?}");
                }
                assert!(c.effective_keystrokes(t).is_some());
                for ch in c.rdp_channels(t) {
                    assert!(is_valid_rdp_channel_name(&ch), "{ch:?}");
                    assert_eq!(ch, ch.to_ascii_lowercase());
                }
                for user in ["alice", "b c", "nobody"] {
                    for host in ["console.example.com", "A.Example.com.", "[::1]", "x:1", ""] {
                        let d = c.web_decision(user, t, host);
                        assert!(!d.rule_id.is_empty());
                        assert!(d.action == WebAction::Record || !d.record_bodies, "{d:?}");
                        if d.rule_id.starts_with(TARGET_RULE_PREFIX) {
                            assert_eq!(d.action, WebAction::Record);
                        }
                    }
                }
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
}

fn section() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "[gateway]",
        "[storage]",
        "[storage.s3]",
        "[recording]",
        "[retention]",
        "[users.alice]",
        "[users.\"b c\"]",
        "[targets.lab-vnc]",
        "[targets.t2]",
        "[[rules]]",
        "[[targets.lab-vnc.masks]]",
        "[web]",
        "[[web_rules]]",
        "",
    ])
    .prop_map(str::to_owned)
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "data_dir",
        "admin_listen",
        "vnc_listen",
        "admin_tls",
        "backend",
        "index",
        "index_url",
        "fsync",
        "bucket",
        "endpoint",
        "access_key_id",
        "required",
        "encoder",
        "max_fps",
        "quantizer",
        "speed",
        "keyframe_max_interval",
        "keyframe_byte_budget",
        "fragment_max_duration",
        "checkpoint_interval",
        "keystrokes",
        "days",
        "display_name",
        "roles",
        "password_hash",
        "protocol",
        "address",
        "password",
        "username",
        "retention_days",
        "record",
        "masks",
        "rdp_channels",
        "rdp_dynamic_channels",
        "id",
        "users",
        "targets",
        "x",
        "y",
        "width",
        "height",
        "extra_roots",
        "idle_timeout",
        "redact_headers",
        "redact_fields",
        "max_body",
        "heartbeat_timeout",
        "video",
        "chromium",
        "render_workers",
        "domains",
        "action",
        "record_bodies",
    ])
    .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[-0-9a-zA-Z%.:/*$=_ ]{0,12}".prop_map(|s| format!("{s:?}")),
        prop::sample::select(vec![
            "\"vnc\"",
            "\"rdp\"",
            "\"web\"",
            "\"127.0.0.1:5901\"",
            "\"[::1]:0\"",
            "\"5m\"",
            "\"2MiB\"",
            "\"130%\"",
            "\"*\"",
            "[\"alice\"]",
            "[\"admin\"]",
            "[\"lab-vnc\", \"*\"]",
            "[\"cliprdr\", \"RDPDR\", \"toolongname\", \"cliprdr\"]",
            "{ env = \"X\" }",
            "{ file = \"/p\" }",
            "{ file = 1 }",
            "[{ id = \"m\", x = \"75%\", y = 0, width = \"25%\", height = \"20%\" }]",
            "[{ id = \"m\", x = 1e9, y = -1, width = \"nan%\", height = {} }]",
            "1.5",
            "nan",
            "inf",
            "1979-05-27T07:32:00Z",
            "\"postgres\"",
            "\"s3\"",
            "\"mask\"",
            "\"record\"",
            "\"tunnel\"",
            "\"deny\"",
            "\"https://console.example.com\"",
            "[\"*.example.com\", \"console.example.com\", \"a.b:1\", \"*\"]",
            "[\"X-Api-Key\", \"bad header\"]",
            "[\"\"]",
            "{}",
            "[]",
        ])
        .prop_map(str::to_owned),
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (section(), prop::collection::vec((key(), value()), 0..6)),
        0..8,
    )
    .prop_map(|sections| {
        let mut s = String::new();
        for (header, kvs) in sections {
            s.push_str(&header);
            s.push('\n');
            for (k, v) in kvs {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn structured_documents_never_panic(doc in document()) {
        check(&doc);
    }

    #[test]
    fn toml_ish_noise_never_panics(doc in "[\\[\\]{}=,.\"'#\n a-z0-9%:*$_-]{0,200}") {
        check(&doc);
    }

    #[test]
    fn arbitrary_unicode_never_panics(doc in "\\PC{0,100}") {
        check(&doc);
    }
}
