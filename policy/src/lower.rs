//! From the deserialised document to the typed [`Config`](crate::Config).
//!
//! Serde handles the document's shape (unknown keys, wrong types, unknown enum values). Values that
//! need their own parsing (addresses, durations, sizes, mask coordinates, secret references) arrive
//! here as raw TOML values so that every problem with them is collected, not just the first.

use crate::error::{index_path, key_path, Issues};
use crate::hours::{parse_utc_offset, TimeWindow};
use crate::mask::{Dim, MaskRegion};
use crate::model::*;
use crate::rbac::{Permission, RoleDef};
use crate::secret::SecretRef;
use crate::siem::{SiemFormat, SiemSink, SiemStart, SiemTransport, SyslogFacility};
use crate::units::{ByteSize, Duration};
use crate::web::{default_domains, WebAction};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Value;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    retention: RetentionConfig,
    #[serde(default)]
    roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    users: BTreeMap<String, User>,
    #[serde(default)]
    targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    target_groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    web_rules: Vec<RawWebRule>,
    oidc: Option<RawOidc>,
    #[serde(default)]
    siem: Vec<RawSiem>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    data_dir: Option<String>,
    admin_listen: Option<Value>,
    admin_tls: Option<bool>,
    vnc_listen: Option<Value>,
    vnc_tls: Option<VncTls>,
    rdp_listen: Option<Value>,
    web_listen: Option<Value>,
    timezone_offset: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    permissions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: Option<StorageBackend>,
    index: Option<IndexBackend>,
    index_url: Option<Value>,
    s3: Option<RawS3>,
    fsync: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    prefix: Option<String>,
    access_key_id: Option<Value>,
    secret_access_key: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    required: Option<bool>,
    encoder: Option<Encoder>,
    max_fps: Option<i64>,
    quantizer: Option<i64>,
    speed: Option<i64>,
    keyframe_max_interval: Option<Value>,
    keyframe_byte_budget: Option<Value>,
    fragment_max_duration: Option<Value>,
    checkpoint_interval: Option<Value>,
    keystrokes: Option<KeystrokeMode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    extra_roots: Option<Vec<String>>,
    idle_timeout: Option<Value>,
    redact_headers: Option<Vec<String>>,
    redact_fields: Option<Vec<String>>,
    max_body: Option<Value>,
    heartbeat_timeout: Option<Value>,
    video: Option<WebVideo>,
    chromium: Option<String>,
    render_workers: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Value>,
    token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    redirect_url: Option<String>,
    scopes: Option<Vec<String>>,
    user_claim: Option<String>,
    extra_roots: Option<Vec<String>>,
    button_label: Option<String>,
    groups_claim: Option<String>,
    group_roles: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    protocol: Protocol,
    address: String,
    username: Option<String>,
    password: Option<Value>,
    keystrokes: Option<KeystrokeMode>,
    retention_days: Option<i64>,
    record: Option<bool>,
    #[serde(default)]
    masks: Vec<RawMask>,
    clipboard: Option<ClipboardPolicy>,
    rdp_channels: Option<Vec<String>>,
    rdp_dynamic_channels: Option<Vec<String>>,
    domains: Option<Vec<String>>,
    mask_selectors: Option<Vec<String>>,
    mask_patterns: Option<Vec<String>>,
    /// Recognised only to be refused with an explanation (see [`ANONYMOUS_REFUSED`]).
    allow_none: Option<Value>,
    /// Recognised only to be refused with an explanation (see [`ANONYMOUS_REFUSED`]).
    anonymous_user: Option<Value>,
}

/// Why `allow_none` / `anonymous_user` are refused. An unauthenticated viewer (RFB security
/// type None) presents no token, so the gateway learns neither who is connecting nor which
/// target is wanted; every such session would be attributed to one shared name, which defeats
/// the purpose of recording privileged sessions. A kiosk gets a named user and a long-lived
/// token instead.
pub(crate) const ANONYMOUS_REFUSED: &str = "anonymous access is not supported: every session must be attributable to a named user; \
     add a user for the kiosk and give it a token (psmgate access grant --user <name> --target <target>)";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMask {
    id: String,
    x: Value,
    y: Value,
    width: Value,
    height: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    users: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    targets: Option<Value>,
    approval: Option<Approval>,
    max_duration: Option<Value>,
    max_session: Option<Value>,
    idle_timeout: Option<Value>,
    end_at_grant_expiry: Option<bool>,
    hours: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebRule {
    id: String,
    users: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    targets: Option<Value>,
    domains: Option<Vec<String>>,
    action: WebAction,
    record_bodies: Option<bool>,
    mask_selectors: Option<Vec<String>>,
    mask_patterns: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiem {
    name: String,
    transport: SiemTransport,
    format: Option<SiemFormat>,
    address: Option<String>,
    path: Option<String>,
    ca: Option<String>,
    server_name: Option<String>,
    app_name: Option<String>,
    facility: Option<SyslogFacility>,
    start: Option<SiemStart>,
    alert_backlog: Option<i64>,
    alert_delay: Option<Value>,
}

/// Why `record_bodies`, `mask_selectors` and `mask_patterns` are refused on a rule that does
/// not record.
pub(crate) fn record_only_refused(action: WebAction) -> String {
    let action = match action {
        WebAction::Record => "record",
        WebAction::Tunnel => "tunnel",
        WebAction::Deny => "deny",
    };
    format!("only allowed with action = \"record\" (this rule's action is {action:?})")
}

/// Why a key that only `web` targets take is refused on a target of `protocol`.
pub(crate) fn web_only_refused(protocol: Protocol) -> String {
    format!(
        "only valid for web targets (this target's protocol is {:?})",
        crate::check::protocol_name(protocol)
    )
}

/// The typed sections produced from a document.
pub(crate) struct Lowered {
    pub gateway: GatewayConfig,
    pub storage: StorageConfig,
    pub recording: RecordingConfig,
    pub retention: RetentionConfig,
    pub custom_roles: BTreeMap<String, RoleDef>,
    pub users: BTreeMap<String, User>,
    pub targets: BTreeMap<String, Target>,
    pub target_groups: BTreeMap<String, Vec<String>>,
    pub rules: Vec<Rule>,
    pub web: WebConfig,
    pub web_rules: Vec<WebRule>,
    pub oidc: Option<OidcConfig>,
    pub siem: Vec<SiemSink>,
}

struct Ctx<'a> {
    issues: &'a mut Issues,
    base_dir: &'a Path,
}

/// Converts the raw document, recording every value that does not parse. Fields that fail keep
/// their default so that later checks still run on the rest.
pub(crate) fn lower(raw: RawFile, base_dir: &Path, issues: &mut Issues) -> Lowered {
    let mut cx = Ctx { issues, base_dir };
    Lowered {
        gateway: cx.gateway(raw.gateway),
        storage: cx.storage(raw.storage),
        recording: cx.recording(raw.recording),
        retention: raw.retention,
        custom_roles: raw
            .roles
            .into_iter()
            .map(|(name, r)| {
                let path = key_path("roles", &name);
                let r = cx.role(&path, r);
                (name, r)
            })
            .collect(),
        users: raw.users,
        target_groups: raw.target_groups,
        targets: raw
            .targets
            .into_iter()
            .map(|(name, t)| {
                let path = key_path("targets", &name);
                let t = cx.target(&path, t);
                (name, t)
            })
            .collect(),
        rules: raw
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| cx.rule(&index_path("rules", i), r))
            .collect(),
        web: cx.web(raw.web),
        web_rules: raw
            .web_rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| cx.web_rule(&index_path("web_rules", i), r))
            .collect(),
        oidc: raw.oidc.map(|o| cx.oidc(o)),
        siem: raw
            .siem
            .into_iter()
            .enumerate()
            .map(|(i, s)| cx.siem(&index_path("siem", i), s))
            .collect(),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl Ctx<'_> {
    fn gateway(&mut self, g: RawGateway) -> GatewayConfig {
        let d = GatewayConfig::default();
        GatewayConfig {
            data_dir: g.data_dir.map_or(d.data_dir, PathBuf::from),
            admin_listen: self.listen("gateway.admin_listen", g.admin_listen, d.admin_listen),
            admin_tls: g.admin_tls.unwrap_or(d.admin_tls),
            vnc_listen: self.listen("gateway.vnc_listen", g.vnc_listen, d.vnc_listen),
            vnc_tls: g.vnc_tls.unwrap_or(d.vnc_tls),
            rdp_listen: self.listen("gateway.rdp_listen", g.rdp_listen, d.rdp_listen),
            web_listen: self.listen("gateway.web_listen", g.web_listen, d.web_listen),
            timezone_offset: match g.timezone_offset {
                None => d.timezone_offset,
                Some(Value::String(s)) => parse_utc_offset(&s).unwrap_or_else(|e| {
                    self.issues.push("gateway.timezone_offset", e.to_string());
                    d.timezone_offset
                }),
                Some(other) => {
                    self.issues.push(
                        "gateway.timezone_offset",
                        format!(
                            "expected a UTC offset string such as \"+02:00\", found {}",
                            describe(&other)
                        ),
                    );
                    d.timezone_offset
                }
            },
        }
    }

    /// `[roles.<name>]`: every unknown or repeated permission is reported.
    fn role(&mut self, path: &str, r: RawRole) -> RoleDef {
        let list = key_path(path, "permissions");
        let mut permissions = Vec::new();
        for (i, name) in r.permissions.iter().enumerate() {
            let p = index_path(&list, i);
            match Permission::from_name(name) {
                None => {
                    let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                    self.issues.push(
                        p,
                        format!(
                            "unknown permission {name:?} (expected one of {})",
                            known.join(", ")
                        ),
                    );
                }
                Some(perm) if permissions.contains(&perm) => {
                    self.issues
                        .push(p, format!("permission {name:?} is listed twice"));
                }
                Some(perm) => permissions.push(perm),
            }
        }
        RoleDef { permissions }
    }

    fn listen(&mut self, path: &str, v: Option<Value>, default: SocketAddr) -> SocketAddr {
        match v {
            None => default,
            Some(Value::String(s)) => s.trim().parse().unwrap_or_else(|_| {
                self.issues.push(path, format!("{s:?} is not an IP address and port such as \"127.0.0.1:8443\" or \"[::1]:8443\""));
                default
            }),
            Some(other) => {
                self.issues.push(path, format!("expected an address string such as \"127.0.0.1:8443\", found {}", describe(&other)));
                default
            }
        }
    }

    fn storage(&mut self, s: RawStorage) -> StorageConfig {
        let d = StorageConfig::default();
        StorageConfig {
            backend: s.backend.unwrap_or(d.backend),
            index: s.index.unwrap_or(d.index),
            index_url: s
                .index_url
                .and_then(|v| self.secret("storage.index_url", v)),
            s3: s.s3.map(|s3| S3Config {
                bucket: s3.bucket.unwrap_or_default(),
                region: s3.region.unwrap_or_else(|| "us-east-1".to_owned()),
                endpoint: s3.endpoint,
                prefix: s3.prefix.unwrap_or_default(),
                access_key_id: s3
                    .access_key_id
                    .and_then(|v| self.secret("storage.s3.access_key_id", v)),
                secret_access_key: s3
                    .secret_access_key
                    .and_then(|v| self.secret("storage.s3.secret_access_key", v)),
            }),
            fsync: s.fsync.unwrap_or(d.fsync),
        }
    }

    fn recording(&mut self, r: RawRecording) -> RecordingConfig {
        let d = RecordingConfig::default();
        RecordingConfig {
            required: r.required.unwrap_or(d.required),
            encoder: r.encoder.unwrap_or(d.encoder),
            max_fps: self.uint("recording.max_fps", r.max_fps, d.max_fps),
            quantizer: self.uint("recording.quantizer", r.quantizer, d.quantizer),
            speed: self.uint("recording.speed", r.speed, d.speed),
            keyframe_max_interval: self.duration(
                "recording.keyframe_max_interval",
                r.keyframe_max_interval,
                d.keyframe_max_interval,
            ),
            keyframe_byte_budget: self.size(
                "recording.keyframe_byte_budget",
                r.keyframe_byte_budget,
                d.keyframe_byte_budget,
            ),
            fragment_max_duration: self.duration(
                "recording.fragment_max_duration",
                r.fragment_max_duration,
                d.fragment_max_duration,
            ),
            checkpoint_interval: self.duration(
                "recording.checkpoint_interval",
                r.checkpoint_interval,
                d.checkpoint_interval,
            ),
            keystrokes: r.keystrokes.unwrap_or(d.keystrokes),
        }
    }

    fn uint(&mut self, path: &str, v: Option<i64>, default: u32) -> u32 {
        match v.map(u32::try_from) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                let n = v.unwrap_or_default();
                self.issues
                    .push(path, format!("{n} is outside 0..={}", u32::MAX));
                default
            }
        }
    }

    fn duration(&mut self, path: &str, v: Option<Value>, default: Duration) -> Duration {
        self.optional_duration(path, v).unwrap_or(default)
    }

    /// A duration that may be left out; `None` also when it does not parse (reported).
    fn optional_duration(&mut self, path: &str, v: Option<Value>) -> Option<Duration> {
        match v {
            None => None,
            Some(Value::String(s)) => Duration::parse(&s)
                .map_err(|e| self.issues.push(path, format!("duration {e}")))
                .ok(),
            Some(other) => {
                self.issues.push(
                    path,
                    format!(
                        "expected a duration string such as \"10s\" or \"5m\", found {}",
                        describe(&other)
                    ),
                );
                None
            }
        }
    }

    /// `rules[].hours`: a non-empty list of time windows.
    fn hours(&mut self, path: &str, v: Option<Value>) -> Vec<TimeWindow> {
        let items = match v {
            None => return Vec::new(),
            Some(Value::Array(a)) => a,
            Some(Value::String(s)) => {
                self.issues
                    .push(path, format!("{s:?}: write a list such as [{s:?}]"));
                vec![Value::String(s)]
            }
            Some(other) => {
                self.issues.push(
                    path,
                    format!(
                        "expected a list of time windows such as [\"mon-fri 08:00-18:00\"], found {}",
                        describe(&other)
                    ),
                );
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.issues.push(
                path,
                "lists no time window; leave hours out for a rule that always applies",
            );
        }
        let mut windows = Vec::with_capacity(items.len());
        for (i, v) in items.into_iter().enumerate() {
            let p = index_path(path, i);
            match v {
                Value::String(s) => match TimeWindow::parse(&s) {
                    Ok(w) => windows.push(w),
                    Err(e) => self.issues.push(p, e.to_string()),
                },
                other => self.issues.push(
                    p,
                    format!(
                        "expected a time window such as \"mon-fri 08:00-18:00\", found {}",
                        describe(&other)
                    ),
                ),
            }
        }
        windows
    }

    fn size(&mut self, path: &str, v: Option<Value>, default: ByteSize) -> ByteSize {
        match v {
            None => default,
            Some(Value::Integer(n)) => u64::try_from(n).map(ByteSize).unwrap_or_else(|_| {
                self.issues.push(path, format!("size {n} is negative"));
                default
            }),
            Some(Value::String(s)) => ByteSize::parse(&s).unwrap_or_else(|e| {
                self.issues.push(path, format!("size {e}"));
                default
            }),
            Some(other) => {
                self.issues.push(
                    path,
                    format!(
                        "expected a size such as \"2MiB\" or a number of bytes, found {}",
                        describe(&other)
                    ),
                );
                default
            }
        }
    }

    /// A `{ file = "…" }` or `{ env = "…" }` table. Literal strings are refused without echoing them.
    fn secret(&mut self, path: &str, v: Value) -> Option<SecretRef> {
        let table = match v {
            Value::Table(t) => t,
            Value::String(_) => {
                self.issues.push(
                    path,
                    "secret values must not be written in the configuration; use { file = \"/path/to/secret\" } or { env = \"VARIABLE\" }",
                );
                return None;
            }
            other => {
                self.issues.push(
                    path,
                    format!(
                        "expected {{ file = \"…\" }} or {{ env = \"…\" }}, found {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        let mut found = None;
        let mut ok = true;
        for (k, v) in &table {
            let kp = key_path(path, k);
            match (k.as_str(), v) {
                ("file", Value::String(p)) => found = Some(SecretRef::file(p, self.base_dir)),
                ("env", Value::String(var)) => found = Some(SecretRef::env(var.clone())),
                ("file" | "env", other) => {
                    self.issues
                        .push(kp, format!("expected a string, found {}", describe(other)));
                    ok = false;
                }
                _ => {
                    self.issues.push(
                        kp,
                        "unknown key in secret reference (expected `file` or `env`)",
                    );
                    ok = false;
                }
            }
        }
        if table.len() != 1 && ok {
            self.issues.push(
                path,
                "a secret reference names exactly one of `file` or `env`",
            );
            return None;
        }
        if ok {
            found
        } else {
            None
        }
    }

    fn target(&mut self, path: &str, t: RawTarget) -> Target {
        let address = self.address(&key_path(path, "address"), t.protocol, &t.address);
        let masks_path = key_path(path, "masks");
        let mask_selectors_written = t.mask_selectors.is_some();
        let mask_patterns_written = t.mask_patterns.is_some();
        let target = Target {
            protocol: t.protocol,
            username: t.username,
            password: t
                .password
                .and_then(|v| self.secret(&key_path(path, "password"), v)),
            keystrokes: t.keystrokes,
            retention_days: t.retention_days.map(|d| {
                u32::try_from(d).unwrap_or_else(|_| {
                    self.issues.push(
                        key_path(path, "retention_days"),
                        format!("{d} is outside 0..={}", u32::MAX),
                    );
                    0
                })
            }),
            record: t.record.unwrap_or(true),
            masks: t
                .masks
                .into_iter()
                .enumerate()
                .filter_map(|(i, m)| self.mask(&index_path(&masks_path, i), m))
                .collect(),
            clipboard: t.clipboard.unwrap_or_default(),
            // Filled in for `rdp` targets so that the canonical form (and the policy version)
            // states the channels allowed; kept as written otherwise, so that the check can
            // refuse the key on other protocols.
            rdp_channels: match (t.protocol, t.rdp_channels) {
                (Protocol::Rdp, None) => Some(
                    DEFAULT_RDP_CHANNELS
                        .iter()
                        .map(|c| (*c).to_owned())
                        .collect(),
                ),
                (_, written) => written,
            },
            // Same as `rdp_channels`.
            rdp_dynamic_channels: match (t.protocol, t.rdp_dynamic_channels) {
                (Protocol::Rdp, None) => Some(
                    DEFAULT_RDP_DYNAMIC_CHANNELS
                        .iter()
                        .map(|c| (*c).to_owned())
                        .collect(),
                ),
                (_, written) => written,
            },
            // Same as `rdp_channels`, for `web` targets.
            domains: match (t.protocol, t.domains) {
                (Protocol::Web, None) => Some(default_domains(&address)),
                (_, written) => written,
            },
            mask_selectors: t.mask_selectors.unwrap_or_default(),
            mask_patterns: t.mask_patterns.unwrap_or_default(),
            address,
        };
        for (key, present) in [
            ("allow_none", t.allow_none.is_some()),
            ("anonymous_user", t.anonymous_user.is_some()),
        ] {
            if present {
                self.issues.push(key_path(path, key), ANONYMOUS_REFUSED);
            }
        }
        if t.protocol != Protocol::Web {
            for (key, present) in [
                ("mask_selectors", mask_selectors_written),
                ("mask_patterns", mask_patterns_written),
            ] {
                if present {
                    self.issues
                        .push(key_path(path, key), web_only_refused(t.protocol));
                }
            }
        }
        target
    }

    fn address(&mut self, path: &str, protocol: Protocol, text: &str) -> TargetAddress {
        let t = text.trim();
        if let Some(rest) = t
            .strip_prefix("https://")
            .or_else(|| t.strip_prefix("http://"))
        {
            if protocol != Protocol::Web {
                self.issues.push(path, format!("a URL is only valid for web targets; write host:port for {protocol:?} targets"));
            } else if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace)
            {
                self.issues
                    .push(path, format!("{text:?} is not a valid URL"));
            }
            return TargetAddress::Url(t.to_owned());
        }
        match parse_host_port(t) {
            Some((host, port)) => TargetAddress::HostPort { host, port },
            None => {
                self.issues.push(path, format!("{text:?} is not host:port (e.g. \"10.0.0.5:5901\", \"[fd00::5]:3389\", \"rdp.example.internal:3389\")"));
                TargetAddress::HostPort {
                    host: String::new(),
                    port: 0,
                }
            }
        }
    }

    fn mask(&mut self, path: &str, m: RawMask) -> Option<MaskRegion> {
        let x = self.dim(&key_path(path, "x"), m.x);
        let y = self.dim(&key_path(path, "y"), m.y);
        let width = self.dim(&key_path(path, "width"), m.width);
        let height = self.dim(&key_path(path, "height"), m.height);
        Some(MaskRegion {
            id: m.id,
            x: x?,
            y: y?,
            width: width?,
            height: height?,
        })
    }

    fn dim(&mut self, path: &str, v: Value) -> Option<Dim> {
        match v {
            Value::Integer(n) => match u32::try_from(n) {
                Ok(n) => Some(Dim::Px(n)),
                Err(_) => {
                    self.issues
                        .push(path, format!("{n} is not a pixel count (0..={})", u32::MAX));
                    None
                }
            },
            Value::String(s) => Dim::parse(&s)
                .map_err(|e| self.issues.push(path, e.to_string()))
                .ok(),
            other => {
                self.issues.push(path, format!("expected pixels (e.g. 120) or a percentage string (e.g. \"25%\"), found {}", describe(&other)));
                None
            }
        }
    }

    fn rule(&mut self, path: &str, r: RawRule) -> Rule {
        let targets = match r.targets {
            None => {
                self.issues.push(
                    key_path(path, "targets"),
                    "missing: list target names or write targets = \"*\"",
                );
                TargetSelector::Named(Vec::new())
            }
            Some(Value::String(s)) if s == "*" => TargetSelector::All,
            Some(Value::String(s)) => {
                self.issues.push(
                    key_path(path, "targets"),
                    format!("{s:?}: write a list such as [{s:?}], or \"*\" for every target"),
                );
                TargetSelector::Named(vec![s])
            }
            Some(Value::Array(a)) => {
                let mut names = Vec::new();
                for (i, v) in a.into_iter().enumerate() {
                    match v {
                        Value::String(s) => names.push(s),
                        other => self.issues.push(
                            index_path(&key_path(path, "targets"), i),
                            format!("expected a target name, found {}", describe(&other)),
                        ),
                    }
                }
                TargetSelector::Named(names)
            }
            Some(other) => {
                self.issues.push(
                    key_path(path, "targets"),
                    format!(
                        "expected a list of target names or \"*\", found {}",
                        describe(&other)
                    ),
                );
                TargetSelector::Named(Vec::new())
            }
        };
        Rule {
            approval: r.approval.unwrap_or_default(),
            max_duration: self.duration(
                &key_path(path, "max_duration"),
                r.max_duration,
                DEFAULT_MAX_DURATION,
            ),
            max_session: self.optional_duration(&key_path(path, "max_session"), r.max_session),
            idle_timeout: self.optional_duration(&key_path(path, "idle_timeout"), r.idle_timeout),
            end_at_grant_expiry: r.end_at_grant_expiry.unwrap_or(true),
            hours: self.hours(&key_path(path, "hours"), r.hours),
            ..Rule::new(
                r.id,
                r.users.unwrap_or_default(),
                r.roles.unwrap_or_default(),
                targets,
            )
        }
    }
}

impl Ctx<'_> {
    fn web(&mut self, w: RawWeb) -> WebConfig {
        let d = WebConfig::default();
        let written: Vec<PathBuf> = w
            .extra_roots
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        WebConfig {
            // `join` keeps absolute paths as they are.
            extra_roots: written.iter().map(|p| self.base_dir.join(p)).collect(),
            extra_roots_as_written: written,
            idle_timeout: self.duration("web.idle_timeout", w.idle_timeout, d.idle_timeout),
            redact_headers: w.redact_headers.unwrap_or(d.redact_headers),
            redact_fields: w.redact_fields.unwrap_or(d.redact_fields),
            max_body: self.size("web.max_body", w.max_body, d.max_body),
            heartbeat_timeout: self.duration(
                "web.heartbeat_timeout",
                w.heartbeat_timeout,
                d.heartbeat_timeout,
            ),
            video: w.video.unwrap_or(d.video),
            chromium: w.chromium.map(PathBuf::from),
            render_workers: self.uint("web.render_workers", w.render_workers, d.render_workers),
        }
    }

    fn web_rule(&mut self, path: &str, r: RawWebRule) -> WebRule {
        let targets_path = key_path(path, "targets");
        let targets = match r.targets {
            None => None,
            Some(Value::String(s)) if s == "*" => None,
            Some(Value::String(s)) => {
                self.issues.push(
                    targets_path,
                    format!("{s:?}: write a list such as [{s:?}], or leave targets out for every web target"),
                );
                Some(vec![s])
            }
            Some(Value::Array(a)) => {
                let mut names = Vec::new();
                for (i, v) in a.into_iter().enumerate() {
                    match v {
                        Value::String(s) => names.push(s),
                        other => self.issues.push(
                            index_path(&targets_path, i),
                            format!("expected a target name, found {}", describe(&other)),
                        ),
                    }
                }
                Some(names)
            }
            Some(other) => {
                self.issues.push(
                    targets_path,
                    format!(
                        "expected a list of web target names, or no targets key for every web target, found {}",
                        describe(&other)
                    ),
                );
                None
            }
        };
        let domains = r.domains.unwrap_or_else(|| {
            self.issues.push(
                key_path(path, "domains"),
                "missing: list the hosts the rule covers, e.g. domains = [\"*.example.com\"]",
            );
            Vec::new()
        });
        if r.action != WebAction::Record {
            for (key, present) in [
                ("record_bodies", r.record_bodies.is_some()),
                ("mask_selectors", r.mask_selectors.is_some()),
                ("mask_patterns", r.mask_patterns.is_some()),
            ] {
                if present {
                    self.issues
                        .push(key_path(path, key), record_only_refused(r.action));
                }
            }
        }
        WebRule {
            id: r.id,
            users: r.users.unwrap_or_default(),
            roles: r.roles.unwrap_or_default(),
            targets,
            domains,
            action: r.action,
            record_bodies: r.record_bodies.unwrap_or(false),
            mask_selectors: r.mask_selectors.unwrap_or_default(),
            mask_patterns: r.mask_patterns.unwrap_or_default(),
        }
    }
}

impl Ctx<'_> {
    /// `[oidc]`: defaults filled in, paths resolved, the secret reference parsed; the values
    /// themselves are checked on the typed section.
    fn oidc(&mut self, o: RawOidc) -> OidcConfig {
        let mut required = |key: &str, v: Option<String>, example: &str| {
            v.unwrap_or_else(|| {
                self.issues.push(
                    key_path("oidc", key),
                    format!("missing: write {key} = {example:?}"),
                );
                String::new()
            })
        };
        let issuer = required("issuer", o.issuer, "https://idp.example.com/realms/main");
        let client_id = required("client_id", o.client_id, "psmgate");
        let redirect_url = required(
            "redirect_url",
            o.redirect_url,
            "https://psmgate.example.com:8443/api/oidc/callback",
        );
        let written: Vec<PathBuf> = o
            .extra_roots
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        OidcConfig {
            issuer,
            client_id,
            client_secret: o
                .client_secret
                .and_then(|v| self.secret("oidc.client_secret", v)),
            token_endpoint_auth_method: o.token_endpoint_auth_method,
            redirect_url,
            scopes: o.scopes.unwrap_or_else(|| {
                crate::oidc::DEFAULT_OIDC_SCOPES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }),
            user_claim: o
                .user_claim
                .unwrap_or_else(|| crate::oidc::DEFAULT_OIDC_USER_CLAIM.to_owned()),
            extra_roots: written.iter().map(|p| self.base_dir.join(p)).collect(),
            extra_roots_as_written: written,
            button_label: o
                .button_label
                .unwrap_or_else(|| crate::oidc::DEFAULT_OIDC_BUTTON_LABEL.to_owned()),
            groups_claim: o.groups_claim,
            group_roles: o.group_roles.unwrap_or_default(),
        }
    }

    /// `[[siem]]`: defaults filled in, paths resolved; whether keys fit the transport is checked
    /// on the typed value.
    fn siem(&mut self, path: &str, s: RawSiem) -> SiemSink {
        let d = SiemSink::new(s.name, s.transport);
        let written = |p: Option<String>| p.map(PathBuf::from);
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| self.base_dir.join(p));
        let (path_written, ca_written) = (written(s.path), written(s.ca));
        let (file, ca) = (resolve(&path_written), resolve(&ca_written));
        let alert_backlog = match s.alert_backlog.map(u32::try_from) {
            None => d.alert_backlog,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                self.issues.push(
                    key_path(path, "alert_backlog"),
                    format!(
                        "{} is outside 1..={}",
                        s.alert_backlog.unwrap_or_default(),
                        u32::MAX
                    ),
                );
                d.alert_backlog
            }
        };
        SiemSink {
            format: s.format.unwrap_or(d.format),
            address: s.address.map(|a| a.trim().to_owned()),
            path: file,
            path_as_written: path_written,
            ca,
            ca_as_written: ca_written,
            server_name: s.server_name,
            app_name: s.app_name.unwrap_or_else(|| d.app_name.clone()),
            facility: s.facility.unwrap_or(d.facility),
            start: s.start.unwrap_or(d.start),
            alert_backlog,
            alert_delay: self.duration(
                &key_path(path, "alert_delay"),
                s.alert_delay,
                d.alert_delay,
            ),
            ..d
        }
    }
}

/// `host:port`, `[v6]:port`; the port must be 1..=65535.
pub(crate) fn parse_host_port(t: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        (h, p)
    } else {
        let (h, p) = t.rsplit_once(':')?;
        let host_ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !host_ok {
            return None;
        }
        (h, p)
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        assert_eq!(
            parse_host_port("127.0.0.1:5901"),
            Some(("127.0.0.1".into(), 5901))
        );
        assert_eq!(
            parse_host_port("rdp.example.internal:3389"),
            Some(("rdp.example.internal".into(), 3389))
        );
        assert_eq!(
            parse_host_port("[fd00::5]:3389"),
            Some(("fd00::5".into(), 3389))
        );
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:70000",
            ":80",
            "fd00::5:80",
            "[zz]:80",
            "a b:1",
            "-a:1",
            "a..b:1",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad}");
        }
    }
}
