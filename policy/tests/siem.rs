//! `[[siem]]`: the audit log's destinations. Defaults, the keys each transport takes, every
//! problem reported at its key, and the canonical form.

use psmgate_policy::*;
use std::path::PathBuf;

fn load(text: &str) -> Config {
    Config::from_toml_str(text, "/etc/psmgate/psmgate.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn diagnostics(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "/etc/psmgate/psmgate.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

/// True when one diagnostic is at `path` and mentions `words`.
fn reported(d: &[String], path: &str, words: &str) -> bool {
    d.iter()
        .any(|m| m.contains(&format!(": {path}: ")) && m.contains(words))
}

#[test]
fn no_sink_by_default_and_the_policy_version_is_unchanged() {
    let c = load("");
    assert!(c.siem.is_empty());
    assert!(!c.canonical_toml().contains("siem"));
}

#[test]
fn defaults_per_transport() {
    let c = load(
        "[[siem]]\nname = \"soc\"\ntransport = \"tcp\"\naddress = \" siem.example.internal:6514 \"\n\n\
         [[siem]]\nname = \"shipper\"\ntransport = \"file\"\npath = \"siem/audit.jsonl\"\n",
    );
    let [tcp, file] = &c.siem[..] else {
        panic!("{:?}", c.siem)
    };
    assert_eq!(tcp.format, SiemFormat::Rfc5424);
    assert_eq!(tcp.address.as_deref(), Some("siem.example.internal:6514"));
    assert_eq!(
        tcp.host_port(),
        Some(("siem.example.internal".to_owned(), 6514))
    );
    assert_eq!(tcp.tls_name().as_deref(), Some("siem.example.internal"));
    assert_eq!(tcp.app_name, DEFAULT_SIEM_APP_NAME);
    assert_eq!(tcp.facility, SyslogFacility::Authpriv);
    assert_eq!(tcp.facility.code(), 10);
    assert_eq!(tcp.start, SiemStart::Beginning);
    assert_eq!(tcp.alert_backlog, DEFAULT_SIEM_ALERT_BACKLOG);
    assert_eq!(tcp.alert_delay, Duration::from_secs(3600));
    assert_eq!(file.format, SiemFormat::Json);
    assert_eq!(
        file.path,
        Some(PathBuf::from("/etc/psmgate/siem/audit.jsonl"))
    );
    assert_eq!(
        file.path_as_written,
        Some(PathBuf::from("siem/audit.jsonl"))
    );
    assert_eq!(file.host_port(), None);
}

#[test]
fn every_key() {
    let c = load(
        "[[siem]]\nname = \"soc-1\"\ntransport = \"tls\"\naddress = \"[fd00::5]:6514\"\n\
         format = \"cef\"\nca = \"/etc/ssl/siem-ca.pem\"\nserver_name = \"siem.example.internal\"\n\
         app_name = \"pam-gw\"\nfacility = \"local3\"\nstart = \"end\"\nalert_backlog = 50\n\
         alert_delay = \"10m\"\n",
    );
    let s = &c.siem[0];
    assert_eq!(s.transport, SiemTransport::Tls);
    assert_eq!(s.format, SiemFormat::Cef);
    assert_eq!(s.host_port(), Some(("fd00::5".to_owned(), 6514)));
    assert_eq!(s.ca, Some(PathBuf::from("/etc/ssl/siem-ca.pem")));
    assert_eq!(s.tls_name().as_deref(), Some("siem.example.internal"));
    assert_eq!(s.app_name, "pam-gw");
    assert_eq!(s.facility.code(), 19);
    assert_eq!(s.start, SiemStart::End);
    assert_eq!(s.alert_backlog, 50);
    assert_eq!(s.alert_delay, Duration::from_secs(600));
}

#[test]
fn facility_codes_follow_rfc_5424() {
    for (name, code) in [
        ("kern", 0),
        ("user", 1),
        ("auth", 4),
        ("authpriv", 10),
        ("audit", 13),
        ("local0", 16),
        ("local7", 23),
    ] {
        let c = load(&format!(
            "[[siem]]\nname = \"s\"\ntransport = \"tcp\"\naddress = \"h:1\"\nfacility = \"{name}\"\n"
        ));
        assert_eq!(c.siem[0].facility.code(), code, "{name}");
    }
    let e = Config::from_toml_str(
        "[[siem]]\nname = \"s\"\ntransport = \"tcp\"\naddress = \"h:1\"\nfacility = \"local8\"\n",
        "psmgate.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("local8"), "{e}");
}

#[test]
fn keys_that_do_not_fit_the_transport_are_refused() {
    let d = diagnostics(
        "[[siem]]\nname = \"a\"\ntransport = \"tcp\"\n\n\
         [[siem]]\nname = \"b\"\ntransport = \"file\"\naddress = \"h:1\"\nca = \"ca.pem\"\n\n\
         [[siem]]\nname = \"c\"\ntransport = \"tcp\"\naddress = \"h:1\"\npath = \"x\"\nserver_name = \"h\"\n\n\
         [[siem]]\nname = \"d\"\ntransport = \"file\"\npath = \"x\"\nformat = \"rfc5424\"\n",
    );
    assert!(reported(&d, "siem[0].address", "missing"), "{d:#?}");
    assert!(reported(&d, "siem[1].address", "only valid"), "{d:#?}");
    assert!(reported(&d, "siem[1].path", "missing"), "{d:#?}");
    assert!(reported(&d, "siem[1].ca", "only valid"), "{d:#?}");
    assert!(reported(&d, "siem[2].path", "only valid"), "{d:#?}");
    assert!(reported(&d, "siem[2].server_name", "only valid"), "{d:#?}");
    assert!(reported(&d, "siem[3].format", "syslog receiver"), "{d:#?}");
    assert_eq!(d.len(), 7, "{d:#?}");
}

#[test]
fn bad_values_are_reported_at_their_key() {
    let d = diagnostics(
        "[[siem]]\nname = \"soc\"\ntransport = \"tls\"\naddress = \"not an address\"\n\
         app_name = \"has space\"\nalert_backlog = 0\nalert_delay = \"10ms\"\nserver_name = \"a b\"\n\
         ca = \" \"\n\n\
         [[siem]]\nname = \"soc\"\ntransport = \"tcp\"\naddress = \"h:0\"\nalert_backlog = -1\n\
         app_name = \"\"\n\n\
         [[siem]]\nname = \"../x\"\ntransport = \"file\"\npath = \"\"\nalert_delay = 5\n",
    );
    for (path, words) in [
        ("siem[0].address", "not host:port"),
        ("siem[0].app_name", "printable ASCII"),
        ("siem[0].alert_backlog", "at least 1"),
        ("siem[0].alert_delay", "shorter than"),
        ("siem[0].server_name", "not a DNS name"),
        ("siem[0].ca", "must not be empty"),
        ("siem[1].name", "already used by siem[0]"),
        ("siem[1].address", "not host:port"),
        ("siem[1].alert_backlog", "outside"),
        ("siem[1].app_name", "printable ASCII"),
        ("siem[2].name", "must be 1..="),
        ("siem[2].path", "must not be empty"),
        ("siem[2].alert_delay", "expected a duration"),
    ] {
        assert!(reported(&d, path, words), "{path}: {words}\n{d:#?}");
    }
    // Each problem is reported once, on the line that holds it.
    assert_eq!(d.len(), 13, "{d:#?}");
    assert!(d
        .iter()
        .any(|m| m.starts_with("/etc/psmgate/psmgate.toml:4:")));
}

#[test]
fn server_names_may_be_ip_addresses() {
    for name in ["10.0.0.5", "fd00::5", "siem.example.internal"] {
        let c = load(&format!(
            "[[siem]]\nname = \"s\"\ntransport = \"tls\"\naddress = \"h:1\"\nserver_name = \"{name}\"\n"
        ));
        assert_eq!(c.siem[0].tls_name().as_deref(), Some(name));
    }
}

#[test]
fn the_canonical_form_holds_the_sinks_and_loads_back() {
    let text = "[[siem]]\nname = \"soc\"\ntransport = \"tls\"\naddress = \"siem:6514\"\nca = \"ca.pem\"\n\n\
                [[siem]]\nname = \"shipper\"\ntransport = \"file\"\npath = \"out/audit.jsonl\"\nformat = \"cef\"\n";
    let c = load(text);
    let canonical = c.canonical_toml();
    assert!(canonical.contains("[[siem]]"), "{canonical}");
    assert!(canonical.contains("ca = \"ca.pem\""), "{canonical}");
    assert!(
        canonical.contains("path = \"out/audit.jsonl\""),
        "{canonical}"
    );
    let again = load(&canonical);
    assert_eq!(again.siem, c.siem);
    assert_eq!(again.policy_version(), c.policy_version());
    assert_ne!(c.policy_version(), load("").policy_version());
    // A changed sink is a changed configuration.
    let other = load(&text.replace("siem:6514", "siem:6515"));
    assert_ne!(other.policy_version(), c.policy_version());
}

#[test]
fn sinks_changed_in_code_are_validated() {
    let mut c = load("");
    let mut s = SiemSink::new("soc", SiemTransport::Tcp);
    s.address = Some("siem.example.internal:514".into());
    c.siem.push(s.clone());
    assert!(c.validate().is_ok());
    s.path = Some(PathBuf::from("/x"));
    c.siem[0] = s;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("siem[0]"), "{e}");
}
