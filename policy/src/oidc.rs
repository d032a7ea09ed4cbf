//! What `[oidc]` values must look like: the issuer's and the gateway's URLs (HTTPS, or plain
//! HTTP on a loopback address only) and OAuth scope tokens. The gateway checks the endpoints an
//! issuer publishes with the same rules.
//!
//! Also the roles of an OpenID Connect sign-in: those of the user configured under
//! `[users.<name>]`, if any, and those `[oidc.group_roles]` maps the provider's groups to
//! ([`Config::session_roles`]).

use crate::error::{index_path, key_path, Issues};
use crate::model::OidcConfig;
use crate::rbac::{is_builtin_role, split_role_entry};
use crate::Config;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Default `oidc.scopes`.
pub const DEFAULT_OIDC_SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// Default `oidc.user_claim`.
pub const DEFAULT_OIDC_USER_CLAIM: &str = "preferred_username";
/// Default `oidc.button_label`.
pub const DEFAULT_OIDC_BUTTON_LABEL: &str = "OpenID Connect";
/// The path `oidc.redirect_url` must end with: the gateway's callback.
pub const OIDC_CALLBACK_PATH: &str = "/api/oidc/callback";
/// Longest `oidc.button_label`, in characters.
pub const MAX_OIDC_BUTTON_LABEL: usize = 64;
/// Longest URL accepted, in bytes.
pub const MAX_URL: usize = 2048;
/// Most provider groups of one sign-in that count (the first ones of the claim).
pub const MAX_OIDC_GROUPS: usize = 256;
/// Longest provider group name that counts (and that `[oidc.group_roles]` accepts), in
/// characters.
pub const MAX_OIDC_GROUP_NAME: usize = 256;

/// True when `name` can be a provider group that counts: 1..=[`MAX_OIDC_GROUP_NAME`]
/// characters, not only spaces, without control characters.
pub fn is_usable_group_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.chars().count() <= MAX_OIDC_GROUP_NAME
        && !name.chars().any(char::is_control)
}

impl Config {
    /// The role entries `[oidc.group_roles]` grants to someone in the provider groups `groups`:
    /// each entry once, in the order of `groups` and of each group's list. Empty without
    /// `[oidc]` or when no group is mapped.
    pub fn group_role_entries(&self, groups: &[String]) -> Vec<String> {
        let Some(o) = &self.oidc else {
            return Vec::new();
        };
        let mut entries: Vec<String> = Vec::new();
        for role in groups.iter().filter_map(|g| o.group_roles.get(g)).flatten() {
            if !entries.contains(role) {
                entries.push(role.clone());
            }
        }
        entries
    }

    /// The role entries of a sign-in of `user` under this policy, or `None` when the sign-in
    /// has no standing (and is refused, or its session ends).
    ///
    /// - `groups` is `None` (a password sign-in): the roles of `user` under `[users.<name>]`;
    ///   `None` when the user is not configured.
    /// - `groups` is `Some` (an OpenID Connect sign-in, with the provider's groups): the user's
    ///   own roles when configured, then those [`Config::group_role_entries`] grants, each
    ///   once; `None` when the user is not configured and no group grants a role.
    pub fn session_roles(&self, user: &str, groups: Option<&[String]>) -> Option<Vec<String>> {
        let own = self.users.get(user).map(|u| u.roles.clone());
        let Some(groups) = groups else {
            return own;
        };
        let from_groups = self.group_role_entries(groups);
        match own {
            Some(mut roles) => {
                for r in from_groups {
                    if !roles.contains(&r) {
                        roles.push(r);
                    }
                }
                Some(roles)
            }
            None => (!from_groups.is_empty()).then_some(from_groups),
        }
    }
}

/// `[oidc]` `groups_claim` and `[oidc.group_roles]`: a mapping needs the claim; each group name
/// could come from a provider; each entry is a built-in or custom role (a label would grant a
/// group nothing: `rules[].roles` look at configured users only), scoped, if at all, to a
/// defined target group, and listed once.
pub(crate) fn check_group_roles(c: &Config, o: &OidcConfig, out: &mut Issues) {
    if !o.group_roles.is_empty() && o.groups_claim.is_none() {
        out.push(
            "oidc.group_roles",
            "maps provider groups to roles, but no groups_claim says where the groups are: write groups_claim = \"groups\"",
        );
    }
    for (group, entries) in &o.group_roles {
        let path = key_path("oidc.group_roles", group);
        if !is_usable_group_name(group) {
            out.push(
                path.clone(),
                format!(
                    "group name {group:?} must be 1..={MAX_OIDC_GROUP_NAME} characters without control characters, not only spaces"
                ),
            );
        }
        if entries.is_empty() {
            out.push(
                path.clone(),
                "lists no role; give the group a role or leave it out",
            );
        }
        let mut seen = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let p = index_path(&path, i);
            let (role, target_group) = split_role_entry(entry);
            if !is_builtin_role(role) && !c.custom_roles.contains_key(role) {
                out.push(
                    p.clone(),
                    format!(
                        "{entry:?}: unknown role {role:?} (a group gets a built-in role or one defined under [roles.<name>])"
                    ),
                );
            }
            if let Some(g) = target_group {
                if !c.target_groups.contains_key(g) {
                    out.push(
                        p.clone(),
                        format!(
                            "{entry:?}: unknown target group {g:?} (define it under [target_groups])"
                        ),
                    );
                }
            }
            if let Some(first) = seen.insert(entry.as_str(), i) {
                out.push(p, format!("{entry:?} is already listed at [{first}]"));
            }
        }
    }
}

/// An absolute `http` or `https` URL, split into the parts the gateway looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `https` or `http`.
    pub scheme: &'a str,
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: &'a str,
    /// The port, when the URL names one.
    pub port: Option<u16>,
    /// Everything after the authority (`/path?query#fragment`), possibly empty.
    pub rest: &'a str,
}

impl HttpUrl<'_> {
    /// True when the URL has a query (`?…`).
    pub fn has_query(&self) -> bool {
        self.rest.contains('?')
    }

    /// True when the URL has a fragment (`#…`).
    pub fn has_fragment(&self) -> bool {
        self.rest.contains('#')
    }

    /// The path (without query and fragment); empty when the URL has none.
    pub fn path(&self) -> &str {
        self.rest.split(['?', '#']).next().unwrap_or_default()
    }

    /// True for `https`, and for `http` to a loopback address (`localhost`, 127.0.0.0/8, `::1`),
    /// where nothing travels over a network.
    pub fn is_secure_enough(&self) -> bool {
        self.scheme == "https" || is_loopback_host(self.host)
    }
}

/// `localhost`, or an IP address in 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Parses an absolute `http://` or `https://` URL (lower-case scheme, printable ASCII without
/// spaces, no user information, at most [`MAX_URL`] bytes); the error says what is wrong.
pub fn parse_http_url(s: &str) -> Result<HttpUrl<'_>, String> {
    if s.len() > MAX_URL {
        return Err(format!("is longer than {MAX_URL} bytes"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces (percent-encode the rest)".into());
    }
    let (scheme, after) = if let Some(a) = s.strip_prefix("https://") {
        ("https", a)
    } else if let Some(a) = s.strip_prefix("http://") {
        ("http", a)
    } else {
        return Err("is not an https:// (or http://) URL".into());
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return Err("must not hold a user name or password".into());
    }
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (h, p) = r.split_once(']').ok_or("has an unclosed [ in its host")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("[{h}] is not an IPv6 address"));
        }
        match p {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or("has text after its host")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (authority.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
    if !host_ok {
        return Err("has no valid host".into());
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("port {p:?} is not 1..=65535"))?,
        ),
    };
    Ok(HttpUrl {
        scheme,
        host,
        port,
        rest,
    })
}

/// Why `s` cannot be the issuer or an endpoint of an OpenID provider: not a URL, not HTTPS (plain
/// HTTP only on a loopback address), or with a fragment. `None` when it can.
pub fn endpoint_url_problem(s: &str) -> Option<String> {
    match parse_http_url(s) {
        Err(e) => Some(format!("{s:?} {e}")),
        Ok(u) if !u.is_secure_enough() => Some(format!(
            "{s:?} is not https:// (plain http:// is accepted only on a loopback address)"
        )),
        Ok(u) if u.has_fragment() => Some(format!("{s:?} must not have a #fragment")),
        Ok(_) => None,
    }
}

/// An OAuth scope token (RFC 6749 §3.3): one or more printable ASCII characters other than
/// space, `"` and `\`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_http_url("https://idp.example.com:8443/realms/x?a=1").unwrap();
        assert_eq!(
            (u.scheme, u.host, u.port, u.path()),
            ("https", "idp.example.com", Some(8443), "/realms/x")
        );
        assert!(u.has_query() && !u.has_fragment() && u.is_secure_enough());
        let u = parse_http_url("http://[::1]:9000").unwrap();
        assert_eq!((u.host, u.port, u.rest), ("::1", Some(9000), ""));
        assert!(u.is_secure_enough());
        assert!(!parse_http_url("http://10.0.0.1/")
            .unwrap()
            .is_secure_enough());
        assert!(parse_http_url("http://127.0.0.2/")
            .unwrap()
            .is_secure_enough());
        assert!(parse_http_url("http://LOCALHOST/")
            .unwrap()
            .is_secure_enough());
        for bad in [
            "",
            "ftp://x",
            "HTTPS://x",
            "https://",
            "https:///x",
            "https://u:p@x/",
            "https://x:0/",
            "https://x:70000/",
            "https://x:+1/",
            "https://x y/",
            "https://[zz]/",
            "https://[::1/",
            "https://[::1]x/",
            "https://é.example/",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
        assert!(endpoint_url_problem("https://x/#f").is_some());
        assert!(endpoint_url_problem("http://x/").is_some());
        assert!(endpoint_url_problem("https://x").is_none());
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("openid"));
        assert!(is_scope_token("api:read"));
        for bad in ["", "a b", "a\"", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
