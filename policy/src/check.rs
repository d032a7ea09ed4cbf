//! Semantic checks on a typed configuration. Every problem is collected.

use crate::error::{index_path, key_path, Issues};
use crate::mask::{Dim, MaskRegion};
use crate::model::*;
use crate::page_mask::{check_pattern, check_selector};
use crate::rbac::{is_builtin_role, split_role_entry};
use crate::secret::{is_valid_env_name, SecretRef};
use crate::siem::{SiemFormat, SiemSink, SiemTransport};
use crate::units::{ByteSize, Duration};
use crate::web::{is_http_token, parse_pattern, WebAction, DEFAULT_DENY_RULE};
use crate::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Longest user, role, target, rule and mask name.
pub const MAX_NAME: usize = 64;

/// Runs every check.
pub(crate) fn check(c: &Config, out: &mut Issues) {
    gateway(&c.gateway, out);
    storage(&c.storage, out);
    recording(&c.recording, out);
    web(&c.web, out);
    custom_roles(c, out);
    for (name, u) in &c.users {
        user(c, &key_path("users", name), name, u, out);
    }
    for (name, t) in &c.targets {
        target(&key_path("targets", name), name, t, out);
    }
    target_groups(c, out);
    rules(c, out);
    web_rules(c, out);
    if let Some(o) = &c.oidc {
        oidc(o, out);
        crate::oidc::check_group_roles(c, o, out);
    }
    siem(&c.siem, out);
    for (path, secret) in secret_refs(c) {
        secret_ref(&path, secret, out);
    }
}

/// Every secret reference with its field path.
pub(crate) fn secret_refs(c: &Config) -> Vec<(String, &SecretRef)> {
    let mut v = Vec::new();
    if let Some(s) = &c.storage.index_url {
        v.push(("storage.index_url".to_owned(), s));
    }
    if let Some(s3) = &c.storage.s3 {
        if let Some(s) = &s3.access_key_id {
            v.push(("storage.s3.access_key_id".to_owned(), s));
        }
        if let Some(s) = &s3.secret_access_key {
            v.push(("storage.s3.secret_access_key".to_owned(), s));
        }
    }
    for (name, t) in &c.targets {
        if let Some(s) = &t.password {
            v.push((key_path(&key_path("targets", name), "password"), s));
        }
    }
    if let Some(s) = c.oidc.as_ref().and_then(|o| o.client_secret.as_ref()) {
        v.push(("oidc.client_secret".to_owned(), s));
    }
    v
}

/// Names of users, roles, targets, rules and masks: `[A-Za-z0-9._-]`, 1..=64 characters,
/// starting with a letter or digit (so they fit `user@target` and `TARGET\user` logins).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Static virtual channel names (MS-RDPBCGR `CHANNEL_DEF.name`): 1..=7 printable ASCII
/// characters without spaces, compared without regard to case (`cliprdr`, `rdpdr`, `MS_T120`).
pub fn is_valid_rdp_channel_name(name: &str) -> bool {
    (1..=MAX_RDP_CHANNEL_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Dynamic virtual channel names (MS-RDPEDYC `ChannelName`): 1..=256 printable ASCII
/// characters (spaces only between other characters), matched exactly, case included
/// (`Microsoft::Windows::RDS::DisplayControl`, `AUDIO_INPUT`).
pub fn is_valid_rdp_dynamic_channel_name(name: &str) -> bool {
    (1..=MAX_RDP_DYNAMIC_CHANNEL_NAME).contains(&name.len())
        && name.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && !name.starts_with(' ')
        && !name.ends_with(' ')
}

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Vnc => "vnc",
        Protocol::Rdp => "rdp",
        Protocol::Web => "web",
    }
}

fn rdp_channels(path: &str, t: &Target, out: &mut Issues) {
    let Some(channels) = &t.rdp_channels else {
        return;
    };
    let path = key_path(path, "rdp_channels");
    if t.protocol != Protocol::Rdp {
        out.push(
            path,
            format!(
                "only valid for rdp targets (this target's protocol is {:?})",
                protocol_name(t.protocol)
            ),
        );
        return;
    }
    if channels.len() > MAX_RDP_CHANNELS {
        out.push(
            path.clone(),
            format!(
                "lists {} channels; RDP allows at most {MAX_RDP_CHANNELS}",
                channels.len()
            ),
        );
    }
    let mut seen = BTreeMap::new();
    for (i, c) in channels.iter().enumerate() {
        let cp = index_path(&path, i);
        if !is_valid_rdp_channel_name(c) {
            out.push(cp, format!("{c:?} is not a static virtual channel name (1..={MAX_RDP_CHANNEL_NAME} printable ASCII characters without spaces, e.g. \"cliprdr\")"));
        } else if let Some(first) = seen.insert(c.to_ascii_lowercase(), i) {
            out.push(
                cp,
                format!("channel {c:?} is already listed at rdp_channels[{first}]"),
            );
        }
    }
}

fn rdp_dynamic_channels(path: &str, t: &Target, out: &mut Issues) {
    let Some(channels) = &t.rdp_dynamic_channels else {
        return;
    };
    let path = key_path(path, "rdp_dynamic_channels");
    if t.protocol != Protocol::Rdp {
        out.push(
            path,
            format!(
                "only valid for rdp targets (this target's protocol is {:?})",
                protocol_name(t.protocol)
            ),
        );
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, c) in channels.iter().enumerate() {
        let cp = index_path(&path, i);
        if !is_valid_rdp_dynamic_channel_name(c) {
            out.push(cp, format!("{c:?} is not a dynamic virtual channel name (1..={MAX_RDP_DYNAMIC_CHANNEL_NAME} printable ASCII characters, no leading or trailing space, e.g. \"Microsoft::Windows::RDS::DisplayControl\")"));
        } else if c.eq_ignore_ascii_case(RDP_GRAPHICS_DYNAMIC_CHANNEL) {
            out.push(cp, format!("{c:?} (the graphics pipeline) is never allowed: psmgate withdraws graphics pipeline support and could not record what it carries"));
        } else if let Some(first) = seen.insert(c.as_str(), i) {
            out.push(
                cp,
                format!("channel {c:?} is already listed at rdp_dynamic_channels[{first}]"),
            );
        }
    }
}

fn name(path: &str, kind: &str, n: &str, out: &mut Issues) {
    if !is_valid_name(n) {
        out.push(path, format!("{kind} name {n:?} must be 1..={MAX_NAME} characters of A-Z a-z 0-9 . _ - starting with a letter or digit"));
    }
}

fn gateway(g: &GatewayConfig, out: &mut Issues) {
    if g.data_dir.as_os_str().is_empty() {
        out.push("gateway.data_dir", "must not be empty");
    }
    let listeners = [
        ("gateway.admin_listen", g.admin_listen),
        ("gateway.vnc_listen", g.vnc_listen),
        ("gateway.rdp_listen", g.rdp_listen),
        ("gateway.web_listen", g.web_listen),
    ];
    for (i, (path, a)) in listeners.iter().enumerate() {
        if a.port() == 0 {
            continue;
        }
        if let Some((other, _)) = listeners[..i].iter().find(|(_, b)| b == a) {
            out.push(*path, format!("{a} is already used by {other}"));
        }
    }
}

fn storage(s: &StorageConfig, out: &mut Issues) {
    match (s.index, &s.index_url) {
        (IndexBackend::Postgres, None) => out.push(
            "storage.index",
            "index = \"postgres\" needs storage.index_url = { file = \"…\" } or { env = \"…\" }",
        ),
        (IndexBackend::Sqlite, Some(_)) => {
            out.push("storage.index_url", "only used with index = \"postgres\"")
        }
        _ => {}
    }
    match (s.backend, &s.s3) {
        (StorageBackend::S3, None) => out.push(
            "storage.backend",
            "backend = \"s3\" needs a [storage.s3] section with a bucket",
        ),
        (StorageBackend::Local, Some(_)) => {
            out.push("storage.s3", "only used with backend = \"s3\"")
        }
        (StorageBackend::S3, Some(s3)) => {
            let bucket_ok = (3..=63).contains(&s3.bucket.len())
                && s3
                    .bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !bucket_ok {
                out.push(
                    "storage.s3.bucket",
                    format!(
                        "{:?} is not an S3 bucket name (3..=63 of a-z 0-9 . -)",
                        s3.bucket
                    ),
                );
            }
            if s3.region.trim().is_empty() {
                out.push("storage.s3.region", "must not be empty");
            }
            if let Some(e) = &s3.endpoint {
                if !(e.starts_with("https://") || e.starts_with("http://"))
                    || e.len() <= "https://".len()
                {
                    out.push(
                        "storage.s3.endpoint",
                        format!("{e:?} is not an http(s) URL"),
                    );
                }
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                out.push("storage.s3", "set both access_key_id and secret_access_key, or neither (default credential chain)");
            }
        }
        (StorageBackend::Local, None) => {}
    }
}

fn range_u32(path: &str, v: u32, lo: u32, hi: u32, out: &mut Issues) {
    if v < lo {
        out.push(path, format!("{v} is less than {lo}"));
    } else if v > hi {
        out.push(path, format!("{v} is more than {hi}"));
    }
}

fn range_duration(path: &str, v: Duration, lo: Duration, hi: Duration, out: &mut Issues) {
    if v < lo {
        out.push(path, format!("\"{v}\" is shorter than {lo}"));
    } else if v > hi {
        out.push(path, format!("\"{v}\" is longer than {hi}"));
    }
}

fn recording(r: &RecordingConfig, out: &mut Issues) {
    range_u32("recording.max_fps", r.max_fps, 1, 60, out);
    range_u32("recording.quantizer", r.quantizer, 0, 63, out);
    let max_speed = if r.encoder == Encoder::Rav1e { 10 } else { 13 };
    range_u32("recording.speed", r.speed, 0, max_speed, out);
    range_duration(
        "recording.keyframe_max_interval",
        r.keyframe_max_interval,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        out,
    );
    let (lo, hi) = (ByteSize(64 * 1024), ByteSize(1 << 30));
    let b = r.keyframe_byte_budget;
    if b < lo || b > hi {
        out.push(
            "recording.keyframe_byte_budget",
            format!("\"{b}\" is outside {lo}..={hi}"),
        );
    }
    range_duration(
        "recording.fragment_max_duration",
        r.fragment_max_duration,
        Duration::from_millis(100),
        Duration::from_secs(10),
        out,
    );
    range_duration(
        "recording.checkpoint_interval",
        r.checkpoint_interval,
        Duration::from_millis(100),
        Duration::from_secs(10),
        out,
    );
}

/// True for a PHC string: `$id[$v=N][$k=v,…][$salt[$hash]]` with B64 salt and hash.
pub fn is_phc_string(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('$') else {
        return false;
    };
    let mut parts = rest.split('$');
    let id_ok = parts.next().is_some_and(|id| {
        (1..=32).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    let rest: Vec<&str> = parts.collect();
    let b64 = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '.' | '-'))
    };
    let param = |p: &str| {
        !p.is_empty()
            && p.split(',').all(|kv| {
                kv.split_once('=').is_some_and(|(k, v)| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && b64(v)
                })
            })
    };
    // Parameters (including `v=`) come first, then salt and hash; a usable hash has both.
    let first_plain = rest
        .iter()
        .position(|p| !p.contains('='))
        .unwrap_or(rest.len());
    id_ok
        && rest[..first_plain].iter().all(|p| param(p))
        && rest.len() - first_plain == 2
        && rest[first_plain..].iter().all(|p| b64(p))
}

/// Target group names: 1..=64 of `A-Z a-z 0-9 _ -`, starting with a letter.
pub fn is_valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn user(c: &Config, path: &str, n: &str, u: &User, out: &mut Issues) {
    name(path, "user", n, out);
    for (i, entry) in u.roles.iter().enumerate() {
        let p = index_path(&key_path(path, "roles"), i);
        let (role, group) = split_role_entry(entry);
        name(&p, "role", role, out);
        if let Some(g) = group {
            if !c.target_groups.contains_key(g) {
                out.push(
                    p,
                    format!(
                        "{entry:?}: unknown target group {g:?} (define it under [target_groups])"
                    ),
                );
            }
        }
    }
    if let Some(h) = &u.password_hash {
        // The value is a credential; messages never repeat it.
        if let Err(e) = crate::password::check_password_hash(h) {
            out.push(key_path(path, "password_hash"), e.to_string());
        }
    }
}

fn custom_roles(c: &Config, out: &mut Issues) {
    for n in c.custom_roles.keys() {
        let path = key_path("roles", n);
        if is_builtin_role(n) {
            out.push(
                path,
                format!("{n:?} is a built-in role and cannot be redefined; give the custom role another name"),
            );
        } else {
            name(&path, "role", n, out);
        }
    }
}

fn target_groups(c: &Config, out: &mut Issues) {
    for (g, members) in &c.target_groups {
        let path = key_path("target_groups", g);
        if !is_valid_group_name(g) {
            out.push(path.clone(), format!("target group name {g:?} must be 1..={MAX_NAME} characters of A-Z a-z 0-9 _ - starting with a letter"));
        }
        if members.is_empty() {
            out.push(path.clone(), "lists no target; a group needs at least one");
        }
        let mut seen = BTreeMap::new();
        for (i, t) in members.iter().enumerate() {
            let p = index_path(&path, i);
            if t.starts_with(GROUP_PREFIX) {
                out.push(
                    p,
                    format!("{t:?}: a group lists target names, not other groups"),
                );
            } else if !c.targets.contains_key(t) {
                out.push(p, format!("unknown target {t:?}"));
            } else if let Some(first) = seen.insert(t.as_str(), i) {
                out.push(p, format!("target {t:?} is already listed at [{first}]"));
            }
        }
    }
}

fn target(path: &str, n: &str, t: &Target, out: &mut Issues) {
    name(path, "target", n, out);
    if let TargetAddress::HostPort { host, port } = &t.address {
        if host.is_empty() || *port == 0 {
            // Already reported when parsed; only flag values built in code.
            if !out.0.iter().any(|i| i.path == key_path(path, "address")) {
                out.push(
                    key_path(path, "address"),
                    "host and a non-zero port are required",
                );
            }
        }
    }
    if let Some(u) = &t.username {
        if u.trim().is_empty() {
            out.push(key_path(path, "username"), "must not be empty when present");
        }
    }
    rdp_channels(path, t, out);
    rdp_dynamic_channels(path, t, out);
    target_domains(path, t, out);
    page_masks(
        path,
        &t.mask_selectors,
        &t.mask_patterns,
        (t.protocol != Protocol::Web).then(|| crate::lower::web_only_refused(t.protocol)),
        out,
    );
    let mut ids = BTreeSet::new();
    let masks = key_path(path, "masks");
    for (i, m) in t.masks.iter().enumerate() {
        let mp = index_path(&masks, i);
        name(&key_path(&mp, "id"), "mask", &m.id, out);
        if !ids.insert(m.id.as_str()) {
            out.push(
                key_path(&mp, "id"),
                format!("mask id {:?} is used twice in this target", m.id),
            );
        }
        mask(&mp, m, out);
    }
}

fn mask(path: &str, m: &MaskRegion, out: &mut Issues) {
    let limit = f32::from(u16::MAX);
    for (field, d, is_size) in [
        ("x", m.x, false),
        ("y", m.y, false),
        ("width", m.width, true),
        ("height", m.height, true),
    ] {
        let p = key_path(path, field);
        match d {
            Dim::Percent(v) if !v.is_finite() || v < 0.0 => {
                out.push(p, format!("\"{d}\" is not a percentage"))
            }
            Dim::Percent(v) if v > 100.0 => out.push(p, format!("\"{d}\" is more than 100%")),
            Dim::Px(v) if v as f32 > limit => {
                out.push(p, format!("{v} is more than {limit} pixels"))
            }
            _ if is_size && d.is_zero() => out.push(p, "a mask needs a non-zero size"),
            _ => {}
        }
    }
    for (a, b, axis) in [(m.x, m.width, "width"), (m.y, m.height, "height")] {
        if let (Dim::Percent(s), Dim::Percent(l)) = (a, b) {
            if s <= 100.0 && l <= 100.0 && s + l > 100.0 + 1e-3 {
                out.push(
                    key_path(path, axis),
                    format!("\"{a}\" + \"{b}\" reaches past 100% of the screen"),
                );
            }
        }
    }
}

/// Every role some user has (by name, scoped or not).
fn known_roles(c: &Config) -> BTreeSet<&str> {
    c.users
        .values()
        .flat_map(|u| u.roles.iter().map(|r| split_role_entry(r).0))
        .collect()
}

/// Why a rule's role matches no user; a scoped entry gets a hint, as rules match role names.
fn unknown_rule_role(role: &str) -> String {
    match split_role_entry(role) {
        (name, Some(group)) => format!(
            "no user has role {role:?}: rules match role names, so write {name:?} (a user's \"{name}@{group}\" matches it on the targets of {group:?})"
        ),
        (_, None) => format!("no user has role {role:?}"),
    }
}

/// Smallest `rules[].max_duration` and `rules[].max_session`.
const MIN_GRANT: Duration = Duration::from_secs(60);
/// Smallest `rules[].idle_timeout`.
const MIN_RULE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

fn rules(c: &Config, out: &mut Issues) {
    let known_roles = known_roles(c);
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in c.rules.iter().enumerate() {
        let path = index_path("rules", i);
        name(&key_path(&path, "id"), "rule", &r.id, out);
        if let Some(first) = ids.insert(&r.id, i) {
            out.push(
                key_path(&path, "id"),
                format!("rule id {:?} is already used by rules[{first}]", r.id),
            );
        }
        if r.users.is_empty() && r.roles.is_empty() {
            out.push(path.clone(), "a rule needs users = [...] or roles = [...]");
        }
        for (j, u) in r.users.iter().enumerate() {
            if !c.users.contains_key(u) {
                out.push(
                    index_path(&key_path(&path, "users"), j),
                    format!("unknown user {u:?}"),
                );
            }
        }
        for (j, role) in r.roles.iter().enumerate() {
            if !known_roles.contains(role.as_str()) {
                out.push(
                    index_path(&key_path(&path, "roles"), j),
                    unknown_rule_role(role),
                );
            }
        }
        if let TargetSelector::Named(names) = &r.targets {
            if names.is_empty() {
                out.push(
                    key_path(&path, "targets"),
                    "lists no target (write \"*\" for every target)",
                );
            }
            for (j, t) in names.iter().enumerate() {
                if let Some(g) = t.strip_prefix(GROUP_PREFIX) {
                    if !c.target_groups.contains_key(g) {
                        out.push(
                            index_path(&key_path(&path, "targets"), j),
                            format!("unknown target group {g:?} (define it under [target_groups])"),
                        );
                    }
                } else if !c.targets.contains_key(t) {
                    let hint = if t == "*" {
                        " (write targets = \"*\" without brackets for every target)"
                    } else {
                        ""
                    };
                    out.push(
                        index_path(&key_path(&path, "targets"), j),
                        format!("unknown target {t:?}{hint}"),
                    );
                }
            }
        }
        for (key, value, min) in [
            ("max_duration", Some(r.max_duration), MIN_GRANT),
            ("max_session", r.max_session, MIN_GRANT),
            ("idle_timeout", r.idle_timeout, MIN_RULE_IDLE_TIMEOUT),
        ] {
            if let Some(v) = value {
                min_duration(&key_path(&path, key), v, min, out);
            }
        }
    }
}

/// Reports `message` at `path` unless something is already reported there (a problem found
/// while lowering that a check on the typed value would find again).
fn push_once(out: &mut Issues, path: String, message: impl Into<String>) {
    if !out.0.iter().any(|i| i.path == path) {
        out.push(path, message);
    }
}

/// Smallest `web.idle_timeout`.
const MIN_WEB_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest `web.heartbeat_timeout`.
const MIN_WEB_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `web.max_body`.
const MAX_WEB_BODY: ByteSize = ByteSize(1 << 20);
/// Most `web.render_workers`.
const MAX_WEB_RENDER_WORKERS: u32 = 16;

fn min_duration(path: &str, v: Duration, lo: Duration, out: &mut Issues) {
    if v < lo {
        out.push(path, format!("\"{v}\" is shorter than {lo}"));
    }
}

fn web(w: &WebConfig, out: &mut Issues) {
    if w.extra_roots.len() != w.extra_roots_as_written.len() {
        out.push(
            "web.extra_roots",
            format!(
                "{} resolved paths but {} as written; change extra_roots and extra_roots_as_written together",
                w.extra_roots.len(),
                w.extra_roots_as_written.len()
            ),
        );
    }
    let blank =
        |p: Option<&PathBuf>| p.is_some_and(|p| p.to_str().is_some_and(|s| s.trim().is_empty()));
    for i in 0..w.extra_roots.len().max(w.extra_roots_as_written.len()) {
        if blank(w.extra_roots_as_written.get(i)) || blank(w.extra_roots.get(i)) {
            out.push(
                index_path("web.extra_roots", i),
                "must not be empty: name a PEM file of CA certificates",
            );
        }
    }
    min_duration(
        "web.idle_timeout",
        w.idle_timeout,
        MIN_WEB_IDLE_TIMEOUT,
        out,
    );
    min_duration(
        "web.heartbeat_timeout",
        w.heartbeat_timeout,
        MIN_WEB_HEARTBEAT_TIMEOUT,
        out,
    );
    if let Some(c) = &w.chromium {
        let text = c.to_string_lossy();
        if text.trim().is_empty() {
            out.push(
                "web.chromium",
                "must not be empty: name the Chromium executable, or leave chromium out",
            );
        } else if !c.is_absolute() {
            out.push(
                "web.chromium",
                format!("{text:?} is not an absolute path (such as \"/usr/bin/chromium\")"),
            );
        } else if text.chars().any(char::is_control) {
            out.push(
                "web.chromium",
                format!("{text:?} contains a control character"),
            );
        }
    }
    if !(1..=MAX_WEB_RENDER_WORKERS).contains(&w.render_workers) {
        out.push(
            "web.render_workers",
            format!(
                "{} is outside 1..={MAX_WEB_RENDER_WORKERS} (how many web session videos are rendered at once)",
                w.render_workers
            ),
        );
    }
    if w.max_body > MAX_WEB_BODY {
        out.push(
            "web.max_body",
            format!("\"{}\" is more than {MAX_WEB_BODY}", w.max_body),
        );
    }
    let mut seen = BTreeMap::new();
    for (i, h) in w.redact_headers.iter().enumerate() {
        let p = index_path("web.redact_headers", i);
        if !is_http_token(h) {
            out.push(p, format!("{h:?} is not an HTTP header name (letters, digits and ! # $ % & ' * + - . ^ _ ` | ~)"));
        } else if let Some(first) = seen.insert(h.to_ascii_lowercase(), i) {
            out.push(
                p,
                format!("header {h:?} is already listed at redact_headers[{first}]"),
            );
        }
    }
    let mut seen = BTreeMap::new();
    for (i, f) in w.redact_fields.iter().enumerate() {
        let p = index_path("web.redact_fields", i);
        if f.trim().is_empty() {
            out.push(
                p,
                "must not be empty: an empty fragment would redact every field",
            );
        } else if f.chars().any(char::is_control) {
            out.push(p, format!("{f:?} contains a control character"));
        } else if let Some(first) = seen.insert(f.to_lowercase(), i) {
            out.push(
                p,
                format!("field {f:?} is already listed at redact_fields[{first}]"),
            );
        }
    }
}

/// Longest `oidc.client_id`, `oidc.user_claim` and `oidc.groups_claim`, in bytes.
const MAX_OIDC_NAME: usize = 255;

/// `[oidc]`: URLs the browser and the gateway can use safely, the callback path, `openid` among
/// well-formed scopes, names without control characters, a short label.
fn oidc(o: &OidcConfig, out: &mut Issues) {
    use crate::oidc::{
        endpoint_url_problem, is_scope_token, parse_http_url, MAX_OIDC_BUTTON_LABEL,
        OIDC_CALLBACK_PATH,
    };
    // A missing key was reported when loading; an empty value changed in code is reported here.
    if !o.issuer.is_empty() {
        if let Some(p) = endpoint_url_problem(&o.issuer) {
            out.push("oidc.issuer", p);
        } else if parse_http_url(&o.issuer).is_ok_and(|u| u.has_query()) {
            out.push(
                "oidc.issuer",
                format!(
                    "{:?} must not have a ?query (an issuer is a URL without one)",
                    o.issuer
                ),
            );
        }
    }
    if !o.redirect_url.is_empty() {
        if let Some(p) = endpoint_url_problem(&o.redirect_url) {
            out.push("oidc.redirect_url", p);
        } else if parse_http_url(&o.redirect_url)
            .is_ok_and(|u| u.has_query() || !u.path().ends_with(OIDC_CALLBACK_PATH))
        {
            out.push(
                "oidc.redirect_url",
                format!(
                    "{:?} must be the gateway's callback as the browser reaches it, ending in {OIDC_CALLBACK_PATH} (without a ?query)",
                    o.redirect_url
                ),
            );
        }
    }
    if o.token_endpoint_auth_method.is_some() && o.client_secret.is_none() {
        out.push(
            "oidc.token_endpoint_auth_method",
            "names how the client secret is sent, but there is no client_secret",
        );
    }
    let groups_claim = o.groups_claim.as_ref().map(|g| ("groups_claim", g));
    for (key, value) in [("client_id", &o.client_id), ("user_claim", &o.user_claim)]
        .into_iter()
        .chain(groups_claim)
    {
        let path = key_path("oidc", key);
        if value.trim().is_empty() {
            out.push(path, "must not be empty");
        } else if value.len() > MAX_OIDC_NAME {
            out.push(path, format!("is longer than {MAX_OIDC_NAME} bytes"));
        } else if value.chars().any(char::is_control) {
            out.push(path, format!("{value:?} contains a control character"));
        }
    }
    let mut seen = BTreeMap::new();
    for (i, s) in o.scopes.iter().enumerate() {
        let p = index_path("oidc.scopes", i);
        if !is_scope_token(s) {
            out.push(
                p,
                format!(
                    "{s:?} is not a scope (printable ASCII without spaces, quotes or backslashes)"
                ),
            );
        } else if let Some(first) = seen.insert(s.as_str(), i) {
            out.push(
                p,
                format!("scope {s:?} is already listed at scopes[{first}]"),
            );
        }
    }
    if !o.scopes.iter().any(|s| s == "openid") {
        out.push(
            "oidc.scopes",
            "must include \"openid\" (without it the provider issues no ID token)",
        );
    }
    let label = o.button_label.trim();
    if label.is_empty() {
        out.push("oidc.button_label", "must not be empty");
    } else if o.button_label.chars().count() > MAX_OIDC_BUTTON_LABEL {
        out.push(
            "oidc.button_label",
            format!("is longer than {MAX_OIDC_BUTTON_LABEL} characters"),
        );
    } else if o.button_label.chars().any(char::is_control) {
        out.push("oidc.button_label", "contains a control character");
    }
    if o.extra_roots.len() != o.extra_roots_as_written.len() {
        out.push(
            "oidc.extra_roots",
            format!(
                "{} resolved paths but {} as written; change extra_roots and extra_roots_as_written together",
                o.extra_roots.len(),
                o.extra_roots_as_written.len()
            ),
        );
    }
    let blank =
        |p: Option<&PathBuf>| p.is_some_and(|p| p.to_str().is_some_and(|s| s.trim().is_empty()));
    for i in 0..o.extra_roots.len().max(o.extra_roots_as_written.len()) {
        if blank(o.extra_roots_as_written.get(i)) || blank(o.extra_roots.get(i)) {
            out.push(
                index_path("oidc.extra_roots", i),
                "must not be empty: name a PEM file of CA certificates",
            );
        }
    }
}

/// Smallest `siem[].alert_delay`.
const MIN_SIEM_ALERT_DELAY: Duration = Duration::from_secs(1);

/// `[[siem]]`: unique names, the keys each transport needs and only those, valid names.
fn siem(sinks: &[SiemSink], out: &mut Issues) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in sinks.iter().enumerate() {
        let path = index_path("siem", i);
        let p = |key: &str| key_path(&path, key);
        name(&p("name"), "SIEM sink", &s.name, out);
        if let Some(first) = names.insert(&s.name, i) {
            out.push(
                p("name"),
                format!(
                    "SIEM sink name {:?} is already used by siem[{first}]",
                    s.name
                ),
            );
        }
        let connected = s.transport != SiemTransport::File;
        let transport = match s.transport {
            SiemTransport::Tcp => "tcp",
            SiemTransport::Tls => "tls",
            SiemTransport::File => "file",
        };
        match (&s.address, connected) {
            (None, true) => out.push(
                p("address"),
                format!("missing: the receiver's host:port (e.g. \"siem.example.internal:6514\") for transport = {transport:?}"),
            ),
            (Some(a), true) if s.host_port().is_none() => out.push(
                p("address"),
                format!("{a:?} is not host:port (e.g. \"siem.example.internal:6514\", \"[fd00::5]:6514\")"),
            ),
            (Some(_), false) => out.push(
                p("address"),
                "only valid with transport = \"tcp\" or \"tls\" (a file sink writes to path)",
            ),
            _ => {}
        }
        match (&s.path_as_written, connected) {
            (None, false) => out.push(
                p("path"),
                "missing: the file the entries are appended to (transport = \"file\")",
            ),
            (Some(f), false)
                if f.as_os_str().is_empty() || f.to_string_lossy().trim().is_empty() =>
            {
                out.push(
                    p("path"),
                    "must not be empty: name the file the entries are appended to",
                )
            }
            (Some(_), true) => out.push(
                p("path"),
                format!(
                    "only valid with transport = \"file\" (this sink's transport is {transport:?})"
                ),
            ),
            _ => {}
        }
        if s.path.is_some() != s.path_as_written.is_some()
            || s.ca.is_some() != s.ca_as_written.is_some()
        {
            out.push(
                path.clone(),
                "resolved and written paths differ; change path and path_as_written (ca and ca_as_written) together",
            );
        }
        for (key, present) in [
            ("ca", s.ca_as_written.is_some()),
            ("server_name", s.server_name.is_some()),
        ] {
            if present && s.transport != SiemTransport::Tls {
                out.push(
                    p(key),
                    format!("only valid with transport = \"tls\" (this sink's transport is {transport:?})"),
                );
            }
        }
        if let Some(ca) = &s.ca_as_written {
            if ca.to_string_lossy().trim().is_empty() {
                out.push(
                    p("ca"),
                    "must not be empty: name a PEM file of CA certificates, or leave ca out for the system's roots",
                );
            }
        }
        if let Some(n) = &s.server_name {
            if server_name_is_invalid(n) {
                out.push(
                    p("server_name"),
                    format!("{n:?} is not a DNS name or IP address"),
                );
            }
        }
        if s.format == SiemFormat::Rfc5424 && !connected {
            out.push(
                p("format"),
                "\"rfc5424\" needs a syslog receiver (transport = \"tcp\" or \"tls\"); a file gets \"json\" or \"cef\" lines",
            );
        }
        if !crate::siem::is_valid_app_name(&s.app_name) {
            out.push(
                p("app_name"),
                format!(
                    "{:?} is not 1..={} printable ASCII characters without spaces",
                    s.app_name,
                    crate::siem::MAX_SIEM_APP_NAME
                ),
            );
        }
        if s.alert_backlog == 0 {
            push_once(out, p("alert_backlog"), "must be at least 1");
        }
        min_duration(&p("alert_delay"), s.alert_delay, MIN_SIEM_ALERT_DELAY, out);
    }
}

/// True when `name` cannot be a TLS server name: empty, with spaces or control characters, or
/// neither an IP address nor a host name of DNS labels.
fn server_name_is_invalid(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    crate::lower::parse_host_port(&format!("{name}:1")).is_none_or(|(h, _)| h != name)
}

/// A list of domain patterns: each valid, none repeated.
fn domain_list(path: &str, key: &str, domains: &[String], out: &mut Issues) {
    let mut seen = BTreeMap::new();
    for (i, d) in domains.iter().enumerate() {
        let p = index_path(path, i);
        match parse_pattern(d) {
            Err(message) => out.push(p, message),
            Ok(pattern) => {
                if let Some(first) = seen.insert(pattern.canonical(), i) {
                    out.push(p, format!("{d:?} is already listed at {key}[{first}]"));
                }
            }
        }
    }
}

fn target_domains(path: &str, t: &Target, out: &mut Issues) {
    let Some(domains) = &t.domains else {
        return;
    };
    let path = key_path(path, "domains");
    if t.protocol != Protocol::Web {
        out.push(path, crate::lower::web_only_refused(t.protocol));
        return;
    }
    domain_list(&path, "domains", domains, out);
}

/// `mask_selectors` and `mask_patterns` of a target (web targets only) or of a web rule
/// (`refused` says why when the key is not allowed there).
fn page_masks(
    path: &str,
    selectors: &[String],
    patterns: &[String],
    refused: Option<String>,
    out: &mut Issues,
) {
    for (key, empty) in [
        ("mask_selectors", selectors.is_empty()),
        ("mask_patterns", patterns.is_empty()),
    ] {
        if let (false, Some(why)) = (empty, &refused) {
            // Lowering already refused a key that was written, empty or not.
            push_once(out, key_path(path, key), why.clone());
        }
    }
    if refused.is_some() {
        return;
    }
    let sp = key_path(path, "mask_selectors");
    let mut seen = BTreeMap::new();
    for (i, s) in selectors.iter().enumerate() {
        let p = index_path(&sp, i);
        match check_selector(s) {
            Err(message) => out.push(p, message),
            Ok(canonical) => {
                if let Some(first) = seen.insert(canonical, i) {
                    out.push(
                        p,
                        format!("{s:?} is already listed at mask_selectors[{first}]"),
                    );
                }
            }
        }
    }
    let pp = key_path(path, "mask_patterns");
    let mut seen = BTreeMap::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let p = index_path(&pp, i);
        if let Err(message) = check_pattern(pattern) {
            out.push(p, message);
        } else if let Some(first) = seen.insert(pattern.as_str(), i) {
            out.push(
                p,
                format!("{pattern:?} is already listed at mask_patterns[{first}]"),
            );
        }
    }
}

fn web_rules(c: &Config, out: &mut Issues) {
    let known_roles = known_roles(c);
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in c.web_rules.iter().enumerate() {
        let path = index_path("web_rules", i);
        let id_path = key_path(&path, "id");
        name(&id_path, "web rule", &r.id, out);
        if r.id == DEFAULT_DENY_RULE {
            out.push(
                id_path.clone(),
                format!("{DEFAULT_DENY_RULE:?} is reserved for hosts no rule allows"),
            );
        }
        if let Some(first) = ids.insert(&r.id, i) {
            out.push(
                id_path,
                format!(
                    "web rule id {:?} is already used by web_rules[{first}]",
                    r.id
                ),
            );
        }
        for (j, u) in r.users.iter().enumerate() {
            if !c.users.contains_key(u) {
                out.push(
                    index_path(&key_path(&path, "users"), j),
                    format!("unknown user {u:?}"),
                );
            }
        }
        for (j, role) in r.roles.iter().enumerate() {
            if !known_roles.contains(role.as_str()) {
                out.push(
                    index_path(&key_path(&path, "roles"), j),
                    unknown_rule_role(role),
                );
            }
        }
        if let Some(names) = &r.targets {
            let targets_path = key_path(&path, "targets");
            if names.is_empty() {
                out.push(
                    targets_path.clone(),
                    "lists no target (leave targets out for every web target)",
                );
            }
            for (j, t) in names.iter().enumerate() {
                let tp = index_path(&targets_path, j);
                match c.targets.get(t) {
                    None if t.starts_with(GROUP_PREFIX) => out.push(
                        tp,
                        format!("{t:?}: web rules list web target names; target groups are for [[rules]]"),
                    ),
                    None => out.push(tp, format!("unknown target {t:?}")),
                    Some(target) if target.protocol != Protocol::Web => out.push(
                        tp,
                        format!(
                            "{t:?} is not a web target (its protocol is {:?}); web rules apply to web targets only",
                            protocol_name(target.protocol)
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        let domains_path = key_path(&path, "domains");
        if r.domains.is_empty() {
            push_once(
                out,
                domains_path.clone(),
                "lists no host; list the hosts the rule covers, e.g. domains = [\"*.example.com\"]",
            );
        }
        domain_list(&domains_path, "domains", &r.domains, out);
        if r.record_bodies && r.action != WebAction::Record {
            push_once(
                out,
                key_path(&path, "record_bodies"),
                crate::lower::record_only_refused(r.action),
            );
        }
        page_masks(
            &path,
            &r.mask_selectors,
            &r.mask_patterns,
            (r.action != WebAction::Record).then(|| crate::lower::record_only_refused(r.action)),
            out,
        );
    }
}

fn secret_ref(path: &str, s: &SecretRef, out: &mut Issues) {
    match s {
        SecretRef::File { path: p, .. } if p.as_os_str().is_empty() => {
            out.push(key_path(path, "file"), "must not be empty")
        }
        SecretRef::Env { var } if !is_valid_env_name(var) => out.push(
            key_path(path, "env"),
            format!("{var:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phc_strings() {
        for ok in [
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$argon2id$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "$scrypt$ln=17,r=8,p=1$c2FsdA$aGFzaA",
            "$pbkdf2-sha256$c2FsdA$aGFzaA",
        ] {
            assert!(is_phc_string(ok), "{ok}");
        }
        for bad in [
            "",
            "argon2id$x$y",
            "$argon2id$",
            "$argon2id$v=19$m=1",
            "$Argon$s$h",
            "$argon2id$v=19$salt$hash$extra",
            "$a$s a$h",
        ] {
            assert!(!is_phc_string(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_valid_name("lab-vnc"));
        assert!(is_valid_name("db01.prod_2"));
        for bad in ["", "-x", ".x", "a b", "a@b", "a\\b", &"x".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
