//! The web console proxy's decision for each host: record (intercept TLS), tunnel (pass the TLS
//! connection through untouched) or deny (answer with a block page naming the rule).

use crate::model::{Protocol, TargetAddress};
use crate::page_mask::{union_patterns, union_selectors};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv6Addr};

/// The rule id of a decision that no rule and no target domain made.
pub const DEFAULT_DENY_RULE: &str = "default-deny";

/// Prefix of the rule id of a decision made by a target's `domains` (`target:<name>`).
pub const TARGET_RULE_PREFIX: &str = "target:";

/// What the web console proxy does with the traffic to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebAction {
    /// Intercept TLS and record the requests.
    Record,
    /// Pass the TLS connection through untouched: none of its content is recorded.
    Tunnel,
    /// Refuse the connection with a block page naming the rule.
    Deny,
}

/// The outcome of [`Config::web_decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebDecision {
    /// What to do.
    pub action: WebAction,
    /// The deciding rule: a `[[web_rules]]` id, `target:<name>` when the target's `domains`
    /// decided, or [`DEFAULT_DENY_RULE`].
    pub rule_id: String,
    /// Keep request bodies in the transcript (only ever true with [`WebAction::Record`]).
    pub record_bodies: bool,
    /// Elements the in-page recorder never records (`mask_selectors` as configured; each parses
    /// with [`crate::SelectorList::parse`] in a validated configuration). With
    /// [`WebAction::Record`]: the deciding rule's, then the target's when the host is one of
    /// the target's `domains`, each once. Empty otherwise.
    pub mask_selectors: Vec<String>,
    /// Regular expressions whose matches in page text are never recorded (`mask_patterns` as
    /// configured), gathered like `mask_selectors`. Empty unless [`WebAction::Record`].
    pub mask_patterns: Vec<String>,
}

impl WebDecision {
    /// Denied because nothing allowed the host.
    pub fn default_deny() -> Self {
        Self {
            action: WebAction::Deny,
            rule_id: DEFAULT_DENY_RULE.to_owned(),
            record_bodies: false,
            mask_selectors: Vec::new(),
            mask_patterns: Vec::new(),
        }
    }
}

impl Config {
    /// Decides what the web console proxy does with a request of `user`, authenticated for the
    /// web target `target`, to `host` (without port; any case, a trailing dot, IPv6 in brackets
    /// or not).
    ///
    /// The `[[web_rules]]` that cover the user and the target are tried in file order; the first
    /// whose `domains` match the host decides. Otherwise a host matching the target's `domains`
    /// is recorded (rule id `target:<name>`, no bodies). A recorded host gets the deciding
    /// rule's masks, then the target's when the host matches the target's `domains` (see
    /// [`WebDecision::mask_selectors`]). Otherwise, and for unknown users,
    /// unknown targets, targets that are not `web` targets and hosts that are not host names or
    /// IP addresses, the host is denied ([`DEFAULT_DENY_RULE`]). Whether the user may use the
    /// target at all is [`Config::is_allowed`]'s decision, not this one's.
    pub fn web_decision(&self, user: &str, target: &str, host: &str) -> WebDecision {
        let (Some(u), Some(t)) = (self.users.get(user), self.targets.get(target)) else {
            return WebDecision::default_deny();
        };
        if t.protocol != Protocol::Web || parse_host(host).is_none() {
            return WebDecision::default_deny();
        }
        let on_target = t.domains.iter().flatten().any(|d| domain_matches(d, host));
        // Role entries scoped to a group count only when the group holds this target.
        let roles = self.role_names_on(u, target);
        let target_selectors = if on_target {
            &t.mask_selectors[..]
        } else {
            &[]
        };
        let target_patterns = if on_target { &t.mask_patterns[..] } else { &[] };
        if let Some(r) = self
            .web_rules
            .iter()
            .find(|r| r.applies_to(user, &roles, target) && r.matches_host(host))
        {
            let record = r.action == WebAction::Record;
            return WebDecision {
                action: r.action,
                rule_id: r.id.clone(),
                record_bodies: record && r.record_bodies,
                mask_selectors: if record {
                    union_selectors(&r.mask_selectors, target_selectors)
                } else {
                    Vec::new()
                },
                mask_patterns: if record {
                    union_patterns(&r.mask_patterns, target_patterns)
                } else {
                    Vec::new()
                },
            };
        }
        if on_target {
            return WebDecision {
                action: WebAction::Record,
                rule_id: format!("{TARGET_RULE_PREFIX}{target}"),
                record_bodies: false,
                mask_selectors: union_selectors(target_selectors, &[]),
                mask_patterns: union_patterns(target_patterns, &[]),
            };
        }
        WebDecision::default_deny()
    }
}

/// A parsed domain pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `*`: every host.
    Any,
    /// `*.suffix`: every host name ending in `.suffix` (lower-case, no trailing dot).
    Subdomains(String),
    /// One host name (lower-case, no trailing dot).
    Name(String),
    /// One IP address.
    Ip(IpAddr),
}

impl Pattern {
    /// The pattern written canonically, so that equal patterns compare equal.
    pub(crate) fn canonical(&self) -> String {
        match self {
            Pattern::Any => "*".to_owned(),
            Pattern::Subdomains(s) => format!("*.{s}"),
            Pattern::Name(n) => n.clone(),
            Pattern::Ip(ip) => ip.to_string(),
        }
    }
}

/// A host as it is matched: a lower-case host name without trailing dot, or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

const PATTERN_SYNTAX: &str =
    "write \"*\", \"*.example.com\", a host name such as \"console.example.com\" or an IP address";

/// Parses a domain pattern, or says what is wrong with it.
pub(crate) fn parse_pattern(text: &str) -> Result<Pattern, String> {
    if text.is_empty() {
        return Err(format!("is empty; {PATTERN_SYNTAX}"));
    }
    if text == "*" {
        return Ok(Pattern::Any);
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("{text:?} contains white space; {PATTERN_SYNTAX}"));
    }
    if text.contains("://") {
        return Err(format!(
            "{text:?}: write the host name only, without a scheme such as \"https://\""
        ));
    }
    if text.contains(['/', '?', '#']) {
        return Err(format!(
            "{text:?}: write the host name only, without a path"
        ));
    }
    if let Some(inner) = text.strip_prefix('[') {
        return match inner.split_once(']') {
            Some((ip, "")) => ip
                .parse::<Ipv6Addr>()
                .map(|ip| Pattern::Ip(IpAddr::V6(ip)))
                .map_err(|_| format!("{text:?} is not an IPv6 address in brackets")),
            Some((_, rest)) if is_port_suffix(rest) => {
                Err(format!("{text:?}: write the address without a port"))
            }
            _ => Err(format!("{text:?} is not an IPv6 address in brackets")),
        };
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(Pattern::Ip(ip));
    }
    if let Some((_, port)) = text.rsplit_once(':') {
        return Err(
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                format!("{text:?}: write the host without a port")
            } else {
                format!("{text:?} is not a host name or IP address; {PATTERN_SYNTAX}")
            },
        );
    }
    if text.contains('@') {
        return Err(format!(
            "{text:?}: write the host name only, without user information"
        ));
    }
    let (wildcard, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if rest.contains('*') || rest.is_empty() && wildcard || name == "*" {
        return Err(format!(
            "{text:?}: a wildcard is only allowed as the whole pattern (\"*\") or as the first label followed by a domain (\"*.example.com\")"
        ));
    }
    if !rest.is_ascii() {
        return Err(format!(
            "{text:?}: write internationalised names in their ASCII form (\"xn--…\")"
        ));
    }
    if !is_host_name(rest) {
        return Err(format!(
            "{text:?} is not a host name (dot-separated labels of 1..=63 letters, digits, '-' or '_', not starting or ending with '-', at most 253 characters)"
        ));
    }
    let rest = rest.to_ascii_lowercase();
    if !wildcard {
        return Ok(Pattern::Name(rest));
    }
    if rest.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{text:?}: a wildcard covers the subdomains of a domain name, not of an IP address"
        ));
    }
    Ok(Pattern::Subdomains(rest))
}

fn is_port_suffix(rest: &str) -> bool {
    rest.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Dot-separated labels of 1..=63 ASCII letters, digits, `-` or `_`, no label starting or
/// ending with `-`, at most 253 characters (no trailing dot).
fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host as a client names it: `[v6]`, a bare IP address, or a host name in any case with an
/// optional trailing dot. `None` for anything else (ports, paths, wildcards, empty text).
fn parse_host(text: &str) -> Option<Host> {
    if let Some(inner) = text.strip_prefix('[') {
        let ip = inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some(Host::Ip(IpAddr::V6(ip)));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    is_host_name(name).then(|| Host::Name(name.to_ascii_lowercase()))
}

/// True when the domain pattern `pattern` matches `host`.
///
/// Patterns are `*` (every host), `*.suffix` (every host name ending in `.suffix`, not `suffix`
/// itself), or one host name or IP address (IPv6 with or without brackets). Host names compare
/// without regard to case and a trailing dot on either side is ignored; IP addresses compare as
/// addresses (`::1` and `0:0::1` are the same) and match only an exact pattern. A pattern that
/// is not valid matches nothing, and so does a host that is not a host name or IP address
/// (with a port, a path, white space, …).
pub fn domain_matches(pattern: &str, host: &str) -> bool {
    let (Ok(pattern), Some(host)) = (parse_pattern(pattern), parse_host(host)) else {
        return false;
    };
    match (pattern, host) {
        (Pattern::Any, _) => true,
        (Pattern::Subdomains(suffix), Host::Name(h)) => h
            .strip_suffix(suffix.as_str())
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        (Pattern::Name(n), Host::Name(h)) => n == h,
        (Pattern::Ip(p), Host::Ip(h)) => p == h,
        _ => false,
    }
}

/// True for a valid domain pattern (see [`domain_matches`]).
pub fn is_valid_domain_pattern(pattern: &str) -> bool {
    parse_pattern(pattern).is_ok()
}

/// HTTP field names (RFC 9110 `token`): one or more of `A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~`.
pub(crate) fn is_http_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// The domains a `web` target records when its `domains` are left out: the host of its
/// address, when that is a valid exact pattern (an invalid address is reported on its own).
pub(crate) fn default_domains(address: &TargetAddress) -> Vec<String> {
    let host = match address {
        TargetAddress::HostPort { host, .. } => Some(host.clone()),
        TargetAddress::Url(u) => url_host(u),
    };
    host.and_then(|h| match parse_pattern(&h) {
        Ok(p @ (Pattern::Name(_) | Pattern::Ip(_))) => Some(vec![p.canonical()]),
        _ => None,
    })
    .unwrap_or_default()
}

/// The host of an `http(s)://` URL: no user information, port, path, query or fragment; IPv6
/// without brackets.
fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(inner) = host_port.strip_prefix('[') {
        inner.split_once(']')?.0
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matching_table() {
        for (pattern, host, want) in [
            ("*", "example.com", true),
            ("*", "10.0.0.1", true),
            ("*", "[::1]", true),
            ("*", "localhost", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "A.EXAMPLE.COM.", true),
            ("*.Example.COM.", "a.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "example.com.evil.org", false),
            ("*.com", "example.com", true),
            ("console.aws.amazon.com", "console.aws.amazon.com", true),
            ("console.aws.amazon.com", "CONSOLE.aws.amazon.com.", true),
            ("console.aws.amazon.com.", "console.aws.amazon.com", true),
            ("console.aws.amazon.com", "eu.console.aws.amazon.com", false),
            ("console.aws.amazon.com", "aws.amazon.com", false),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1.", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.1.", true),
            ("10.0.0.1", "10.0.0.2", false),
            ("*.0.0.1", "10.0.0.1", false),
            ("fd00::5", "[fd00::5]", true),
            ("[fd00::5]", "fd00::5", true),
            ("[FD00::5]", "[fd00:0:0::5]", true),
            ("fd00::5", "[fd00::6]", false),
            ("*.example.com", "[fd00::5]", false),
            // Hosts that are not host names match nothing, not even `*`.
            ("*", "", false),
            ("*", "example.com:443", false),
            ("*", "example.com/path", false),
            ("*", "a b", false),
            ("*", "*.example.com", false),
            ("*", "[fd00::5", false),
            ("*", "exämple.com", false),
            ("example.com", "example.com..", false),
            // Invalid patterns match nothing.
            ("", "example.com", false),
            ("example.com:443", "example.com", false),
            ("https://example.com", "example.com", false),
            ("a*.example.com", "ab.example.com", false),
            ("*.", "example.com", false),
            ("*.*.example.com", "a.b.example.com", false),
        ] {
            assert_eq!(
                domain_matches(pattern, host),
                want,
                "{pattern:?} vs {host:?}"
            );
        }
    }

    #[test]
    fn pattern_diagnostics() {
        for (pattern, message) in [
            ("", "is empty; write \"*\", \"*.example.com\", a host name such as \"console.example.com\" or an IP address"),
            (" a.com", "\" a.com\" contains white space; write \"*\", \"*.example.com\", a host name such as \"console.example.com\" or an IP address"),
            ("https://a.com", "\"https://a.com\": write the host name only, without a scheme such as \"https://\""),
            ("a.com/x", "\"a.com/x\": write the host name only, without a path"),
            ("a.com:443", "\"a.com:443\": write the host without a port"),
            ("[::1]:443", "\"[::1]:443\": write the address without a port"),
            ("[::1", "\"[::1\" is not an IPv6 address in brackets"),
            ("[a.com]", "\"[a.com]\" is not an IPv6 address in brackets"),
            ("a:b", "\"a:b\" is not a host name or IP address; write \"*\", \"*.example.com\", a host name such as \"console.example.com\" or an IP address"),
            ("u@a.com", "\"u@a.com\": write the host name only, without user information"),
            ("a*.com", "\"a*.com\": a wildcard is only allowed as the whole pattern (\"*\") or as the first label followed by a domain (\"*.example.com\")"),
            ("*.*.com", "\"*.*.com\": a wildcard is only allowed as the whole pattern (\"*\") or as the first label followed by a domain (\"*.example.com\")"),
            ("*.", "\"*.\": a wildcard is only allowed as the whole pattern (\"*\") or as the first label followed by a domain (\"*.example.com\")"),
            ("a.*", "\"a.*\": a wildcard is only allowed as the whole pattern (\"*\") or as the first label followed by a domain (\"*.example.com\")"),
            ("bücher.de", "\"bücher.de\": write internationalised names in their ASCII form (\"xn--…\")"),
            ("-a.com", "\"-a.com\" is not a host name (dot-separated labels of 1..=63 letters, digits, '-' or '_', not starting or ending with '-', at most 253 characters)"),
            ("a..com", "\"a..com\" is not a host name (dot-separated labels of 1..=63 letters, digits, '-' or '_', not starting or ending with '-', at most 253 characters)"),
            ("*.10.0.0.1", "\"*.10.0.0.1\": a wildcard covers the subdomains of a domain name, not of an IP address"),
        ] {
            assert_eq!(parse_pattern(pattern), Err(message.to_owned()), "{pattern:?}");
            assert!(!is_valid_domain_pattern(pattern), "{pattern:?}");
        }
        for (pattern, canonical) in [
            ("*", "*"),
            ("*.Example.com.", "*.example.com"),
            ("Console.AWS.amazon.com", "console.aws.amazon.com"),
            ("_dmarc.example.com", "_dmarc.example.com"),
            ("10.0.0.1", "10.0.0.1"),
            ("[FD00:0::5]", "fd00::5"),
            ("fd00::5", "fd00::5"),
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ] {
            assert_eq!(
                parse_pattern(pattern).map(|p| p.canonical()),
                Ok(canonical.to_owned()),
                "{pattern:?}"
            );
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(!is_valid_domain_pattern(&long));
        let too_long = vec!["a".repeat(63); 4].join(".") + ".com";
        assert!(too_long.len() > 253);
        assert!(!is_valid_domain_pattern(&too_long));
    }

    #[test]
    fn url_hosts_become_default_domains() {
        for (address, want) in [
            (
                "https://console.aws.amazon.com",
                vec!["console.aws.amazon.com"],
            ),
            (
                "https://Console.Example.com:8443/home?x=1",
                vec!["console.example.com"],
            ),
            (
                "http://admin@intranet.example.org/",
                vec!["intranet.example.org"],
            ),
            ("https://[fd00::5]:8443/", vec!["fd00::5"]),
            ("https://10.0.0.5#top", vec!["10.0.0.5"]),
            ("https://", vec![]),
            ("https://exa mple.com", vec![]),
            ("https://*.example.com", vec![]),
        ] {
            assert_eq!(
                default_domains(&TargetAddress::Url(address.to_owned())),
                want,
                "{address}"
            );
        }
        assert_eq!(
            default_domains(&TargetAddress::HostPort {
                host: "Web.Example.internal".into(),
                port: 443
            }),
            ["web.example.internal"]
        );
    }

    #[test]
    fn http_tokens() {
        for ok in ["x-api-key", "X-Auth-Token", "a", "!#$%&'*+-.^_`|~09"] {
            assert!(is_http_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a\"b", "é", "a\r\n", "(x)", "a,b"] {
            assert!(!is_http_token(bad), "{bad:?}");
        }
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,8}[a-zA-Z0-9_])?"
    }

    fn host_name() -> impl Strategy<Value = String> {
        // Dotted numbers read as IPv4 addresses, which have no subdomains: not host names.
        prop::collection::vec(label(), 1..5)
            .prop_map(|l| l.join("."))
            .prop_filter("an IPv4 address, not a host name", |h| {
                !h.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
            })
    }

    /// Text that is a host name more often than chance would make it.
    fn host_ish() -> impl Strategy<Value = String> {
        prop_oneof![
            host_name(),
            (
                host_name(),
                prop::sample::select(vec![".x", ".X.", "x", ".y.x", ":1", "."])
            )
                .prop_map(|(h, s)| format!("{h}{s}")),
            "[a-zA-Z0-9.:*\\[\\]_ /-]{0,24}",
            "\\PC{0,16}",
        ]
    }

    fn normalised(h: &str) -> String {
        h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn a_subdomain_match_is_a_proper_suffix(h in host_ish()) {
            if domain_matches("*.x", &h) {
                let n = normalised(&h);
                prop_assert!(n.ends_with(".x") && n.len() > 2, "{:?}", h);
                prop_assert!(!domain_matches("x", &h), "{:?}", h);
                prop_assert!(domain_matches("*", &h), "{:?}", h);
            }
            if domain_matches("x", &h) {
                prop_assert_eq!(normalised(&h), "x");
                prop_assert!(!domain_matches("*.x", &h));
            }
        }

        #[test]
        fn host_names_match_themselves_in_any_case(h in host_name(), sub in label()) {
            let upper = h.to_ascii_uppercase();
            let dotted = format!("{h}.");
            let lower = h.to_ascii_lowercase();
            let below = format!("{sub}.{h}");
            let wildcard = format!("*.{h}");
            prop_assert!(is_valid_domain_pattern(&h));
            prop_assert!(domain_matches(&h, &h));
            prop_assert!(domain_matches(&upper, &dotted));
            prop_assert!(domain_matches(&dotted, &lower));
            prop_assert!(domain_matches("*", &h));
            prop_assert!(domain_matches(&wildcard, &below));
            prop_assert!(!domain_matches(&wildcard, &h));
            prop_assert!(!domain_matches(&h, &below));
            prop_assert!(!domain_matches(&below, &h));
        }

        #[test]
        fn any_text_is_answered_without_panic(p in host_ish(), h in host_ish()) {
            let m = domain_matches(&p, &h);
            // A match needs a valid pattern and, below `*`, a host that reads back as one.
            if m {
                prop_assert!(is_valid_domain_pattern(&p));
                prop_assert!(domain_matches("*", &h));
            }
            if let Ok(pattern) = parse_pattern(&p) {
                let again = parse_pattern(&pattern.canonical());
                prop_assert_eq!(again.as_ref(), Ok(&pattern));
                prop_assert_eq!(domain_matches(&pattern.canonical(), &h), m);
            }
        }
    }
}
