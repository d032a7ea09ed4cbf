//! The typed configuration sections and their embedded defaults.

use crate::hours::TimeWindow;
use crate::mask::MaskRegion;
use crate::secret::SecretRef;
use crate::units::{ByteSize, Duration};
use crate::web::WebAction;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use time::UtcOffset;

fn addr(s: &str) -> SocketAddr {
    // Only called with the literal defaults below, which are valid socket addresses.
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// `[gateway]`: where the gateway keeps data and listens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayConfig {
    /// Recordings, keys and index, as written; see [`crate::Config::data_dir`] for the resolved path.
    pub data_dir: PathBuf,
    /// Player and admin API listener.
    pub admin_listen: SocketAddr,
    /// Serve the admin listener over TLS (a certificate is generated when none is configured).
    pub admin_tls: bool,
    /// VNC proxy listener.
    pub vnc_listen: SocketAddr,
    /// Whether VNC viewers are offered, or required to use, TLS (VeNCrypt X509Vnc).
    pub vnc_tls: VncTls,
    /// RDP proxy listener.
    pub rdp_listen: SocketAddr,
    /// Web console proxy listener.
    pub web_listen: SocketAddr,
    /// The fixed UTC offset `rules[].hours` are read in (`"+02:00"`; default UTC). Daylight
    /// saving time is not followed: change the offset when the clocks change.
    #[serde(serialize_with = "crate::hours::serialize_utc_offset")]
    pub timezone_offset: UtcOffset,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./psmgate-data"),
            admin_listen: addr("127.0.0.1:8443"),
            admin_tls: true,
            vnc_listen: addr("127.0.0.1:5900"),
            vnc_tls: VncTls::Offer,
            rdp_listen: addr("127.0.0.1:3389"),
            web_listen: addr("127.0.0.1:8080"),
            timezone_offset: UtcOffset::UTC,
        }
    }
}

/// `gateway.vnc_tls`: TLS towards VNC viewers (RFB security type VeNCrypt, subtype X509Vnc: the
/// gateway's certificate, then VNC Authentication with the access token inside TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VncTls {
    /// Offer VeNCrypt first and plain VNC Authentication second; the viewer chooses.
    #[default]
    Offer,
    /// Offer only VeNCrypt: viewers without TLS support are refused.
    Require,
    /// Offer only plain VNC Authentication.
    Off,
}

/// Where recordings are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A local directory below `gateway.data_dir`.
    #[default]
    Local,
    /// An S3-compatible object store (`[storage.s3]`).
    S3,
}

/// Where the recordings index lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexBackend {
    /// An SQLite file below `gateway.data_dir`.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`storage.index_url`).
    Postgres,
}

/// `[storage.s3]`: object store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Endpoint URL for non-AWS stores (MinIO, Ceph, Garage).
    pub endpoint: Option<String>,
    /// Key prefix for all recordings.
    pub prefix: String,
    /// Access key id; with `secret_access_key`, or both absent for the default credential chain.
    pub access_key_id: Option<SecretRef>,
    /// Secret access key.
    pub secret_access_key: Option<SecretRef>,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageConfig {
    /// Recording store.
    pub backend: StorageBackend,
    /// Index database.
    pub index: IndexBackend,
    /// PostgreSQL connection URL (a secret: it usually holds a password); required for `postgres`.
    pub index_url: Option<SecretRef>,
    /// Object store settings; required for `s3`.
    pub s3: Option<S3Config>,
    /// `fsync` every append before it counts as stored.
    pub fsync: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            index: IndexBackend::Sqlite,
            index_url: None,
            s3: None,
            fsync: true,
        }
    }
}

/// Which AV1 encoder records video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Encoder {
    /// SVT-AV1 (system library).
    #[serde(rename = "svt-av1")]
    SvtAv1,
    /// rav1e (built in).
    #[serde(rename = "rav1e")]
    Rav1e,
    /// SVT-AV1 when this build has it, else rav1e.
    #[default]
    #[serde(rename = "auto")]
    Auto,
}

/// What happens to keystrokes in the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeystrokeMode {
    /// Keys are recorded with their identity.
    #[default]
    Record,
    /// Timing and kind are recorded; which key was pressed is not.
    Mask,
    /// No key events are recorded.
    Off,
}

/// Whether clipboard text may cross the gateway in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClipboardAccess {
    /// The transfer is forwarded.
    #[default]
    Allow,
    /// The transfer is dropped at the gateway and a `policy` event records the block.
    Deny,
}

/// What the transcript keeps of each clipboard transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClipboardLog {
    /// The length only.
    Length,
    /// The length and the SHA-256 of the text.
    #[default]
    Digest,
    /// The length, the SHA-256 and the text itself (see [`ClipboardPolicy::effective_log`]).
    Content,
}

/// `clipboard = { to_target, to_client, log }` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClipboardPolicy {
    /// Text from the admin's machine to the target.
    pub to_target: ClipboardAccess,
    /// Text from the target to the admin's machine.
    pub to_client: ClipboardAccess,
    /// What the transcript keeps of each transfer, allowed or denied.
    pub log: ClipboardLog,
}

impl ClipboardPolicy {
    /// The log level actually applied for a session whose keystroke mode is `keystrokes`.
    ///
    /// `content` falls back to `digest` unless keystrokes are `record`: a target whose keys are
    /// masked or not recorded is one where typed text is considered secret, and clipboard text
    /// is how such secrets (passwords from a password manager, keys) are usually entered, so
    /// recording it would undo the keystroke policy.
    pub fn effective_log(&self, keystrokes: KeystrokeMode) -> ClipboardLog {
        match (self.log, keystrokes) {
            (ClipboardLog::Content, KeystrokeMode::Mask | KeystrokeMode::Off) => {
                ClipboardLog::Digest
            }
            (log, _) => log,
        }
    }
}

/// `[recording]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingConfig {
    /// Fail closed: end the session when recording fails.
    pub required: bool,
    /// Encoder choice.
    pub encoder: Encoder,
    /// Frames are coalesced to at most this rate (1..=60).
    pub max_fps: u32,
    /// Quantizer (0..=63; lower is better quality).
    pub quantizer: u32,
    /// Encoder speed/preset (SVT-AV1 0..=13, rav1e 0..=10).
    pub speed: u32,
    /// A keyframe at least this often (1s..=24h).
    pub keyframe_max_interval: Duration,
    /// A keyframe once this many inter-frame bytes followed the last one (64KiB..=1GiB).
    pub keyframe_byte_budget: ByteSize,
    /// Flush a fragment at least this often while the screen changes (100ms..=10s).
    pub fragment_max_duration: Duration,
    /// Sign the chain head at least this often (100ms..=10s, the format's upper bound).
    pub checkpoint_interval: Duration,
    /// Default keystroke mode for targets.
    pub keystrokes: KeystrokeMode,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            required: true,
            encoder: Encoder::Auto,
            max_fps: 10,
            quantizer: 44,
            speed: 11,
            keyframe_max_interval: Duration::from_secs(300),
            keyframe_byte_budget: ByteSize(2 * 1024 * 1024),
            fragment_max_duration: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(10),
            keystrokes: KeystrokeMode::Record,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days recordings are kept; 0 keeps them forever. Legal hold is set per recording.
    pub days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { days: 365 }
    }
}

/// `[users.<name>]`: a gateway user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Role entries: a role name (built-in, `[roles.<name>]`, or a label that grants no
    /// permission), optionally scoped to a target group as `role@group`. Matched by name (without
    /// the `@group` part, and only on the group's targets when scoped) by `rules[].roles` and
    /// `web_rules[].roles`; see [`crate::rbac`] for the permissions they grant.
    #[serde(default)]
    pub roles: Vec<String>,
    /// PHC-format password hash (`$argon2id$…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("display_name", &self.display_name)
            .field("roles", &self.roles)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Session protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RFB.
    Vnc,
    /// Remote Desktop Protocol.
    Rdp,
    /// A web console through the HTTPS proxy.
    Web,
}

impl Protocol {
    /// The name the configuration and the recordings use (`vnc`, `rdp`, `web`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Vnc => "vnc",
            Protocol::Rdp => "rdp",
            Protocol::Web => "web",
        }
    }
}

/// Where a target is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAddress {
    /// `host:port` or `[ipv6]:port`.
    HostPort {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port (non-zero).
        port: u16,
    },
    /// `https://…` or `http://…` (web targets only).
    Url(String),
}

impl fmt::Display for TargetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddress::HostPort { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            TargetAddress::HostPort { host, port } => write!(f, "{host}:{port}"),
            TargetAddress::Url(u) => f.write_str(u),
        }
    }
}

impl Serialize for TargetAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[targets.<name>]`: a system admins connect to through the gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Protocol.
    pub protocol: Protocol,
    /// Address.
    pub address: TargetAddress,
    /// Account injected at the target (RDP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Credential injected at the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Overrides `recording.keystrokes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keystrokes: Option<KeystrokeMode>,
    /// Overrides `retention.days`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Record sessions to this target.
    pub record: bool,
    /// `rdp_channels`: the static virtual channels (MS-RDPBCGR channel names, compared without
    /// regard to case) the client may negotiate with an RDP target; every other channel is
    /// removed from the connection. Loading fills in [`DEFAULT_RDP_CHANNELS`] for `rdp` targets
    /// that leave it out; `None` for other protocols (the key is only valid for `rdp` targets).
    /// See [`crate::Config::rdp_channels`] for the list as applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdp_channels: Option<Vec<String>>,
    /// `rdp_dynamic_channels`: the dynamic virtual channels (MS-RDPEDYC channel names, matched
    /// exactly, case included) the target may open inside `drdynvc`; psmgate refuses every other
    /// channel the target tries to open. Loading fills in [`DEFAULT_RDP_DYNAMIC_CHANNELS`] for
    /// `rdp` targets that leave it out; `None` for other protocols (the key is only valid for
    /// `rdp` targets). [`RDP_GRAPHICS_DYNAMIC_CHANNEL`] may not be listed. See
    /// [`crate::Config::rdp_dynamic_channels`] for the list as applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdp_dynamic_channels: Option<Vec<String>>,
    /// `domains`: the hosts whose traffic is recorded for a `web` target when no
    /// [`WebRule`] decides otherwise (domain patterns, see [`crate::domain_matches`]). Loading
    /// fills in the host of the target's address for `web` targets that leave it out; `None`
    /// for other protocols (the key is only valid for `web` targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// `mask_selectors`: elements whose content the in-page recorder of a `web` target never
    /// records on the target's `domains` (selectors in the subset [`crate::SelectorList`]
    /// parses). Only valid for `web` targets; see [`crate::Config::web_decision`] for the list
    /// as applied to a host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask_selectors: Vec<String>,
    /// `mask_patterns`: regular expressions (`regex` crate syntax) whose matches in page text
    /// are never recorded on the target's `domains`. Only valid for `web` targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask_patterns: Vec<String>,
    /// Screen regions blacked out in recordings.
    pub masks: Vec<MaskRegion>,
    /// Clipboard transfers: which directions are allowed and what the transcript keeps.
    pub clipboard: ClipboardPolicy,
}

/// The static virtual channels an `rdp` target allows when `rdp_channels` is left out: the
/// clipboard (`cliprdr`, itself governed by the target's clipboard policy), dynamic virtual
/// channels (`drdynvc`, which carries display control and graphics pipelines) and audio output
/// (`rdpsnd`). Device redirection (`rdpdr`: drives, printers, smart cards, serial ports), remote
/// applications (`rail`) and every other channel are denied.
pub const DEFAULT_RDP_CHANNELS: [&str; 3] = ["cliprdr", "drdynvc", "rdpsnd"];

/// Most static virtual channels a client may request (MS-RDPBCGR 2.2.1.3.4, `channelCount`).
pub const MAX_RDP_CHANNELS: usize = 31;

/// Longest static virtual channel name: the 8-byte `CHANNEL_DEF.name` field holds up to seven
/// ANSI characters and a terminating NUL (MS-RDPBCGR 2.2.1.3.4.1).
pub const MAX_RDP_CHANNEL_NAME: usize = 7;

/// The dynamic virtual channels an `rdp` target allows when `rdp_dynamic_channels` is left
/// out: display resizing (`Microsoft::Windows::RDS::DisplayControl`), audio output
/// (`AUDIO_PLAYBACK_DVC`, `AUDIO_PLAYBACK_LOSSY_DVC`), audio input (`AUDIO_INPUT`) and video
/// geometry tracking (`Microsoft::Windows::RDS::Geometry::v08.01`). Device and file redirection
/// (`FileRedirectorChannel`, `PNPDR`, `URBDRC`, …), telemetry and every other dynamic channel
/// are denied.
pub const DEFAULT_RDP_DYNAMIC_CHANNELS: [&str; 5] = [
    "Microsoft::Windows::RDS::DisplayControl",
    "AUDIO_PLAYBACK_DVC",
    "AUDIO_PLAYBACK_LOSSY_DVC",
    "AUDIO_INPUT",
    "Microsoft::Windows::RDS::Geometry::v08.01",
];

/// The graphics pipeline dynamic channel (MS-RDPEGFX). Never allowed: psmgate withdraws the
/// client's graphics pipeline support and records the bitmap updates the target sends instead;
/// frames sent over this channel could not be recorded.
pub const RDP_GRAPHICS_DYNAMIC_CHANNEL: &str = "Microsoft::Windows::RDS::Graphics";

/// Longest dynamic virtual channel name psmgate accepts in `rdp_dynamic_channels`.
pub const MAX_RDP_DYNAMIC_CHANNEL_NAME: usize = 256;

/// Which targets a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSelector {
    /// `"*"`: every target.
    All,
    /// The listed targets: target names, and target groups written `@group`.
    Named(Vec<String>),
}

/// The prefix of a target group reference in a list of targets (`"@prod"`).
pub const GROUP_PREFIX: char = '@';

impl TargetSelector {
    /// True when `target` is covered by name (or by `"*"`). Group references are not resolved
    /// here; see [`TargetSelector::matches_in`].
    pub fn matches(&self, target: &str) -> bool {
        match self {
            TargetSelector::All => true,
            TargetSelector::Named(v) => v.iter().any(|t| t == target),
        }
    }

    /// True when `target` is covered by name, by `"*"`, or as a member of a listed group
    /// (`@group`, looked up in `groups`; unknown groups cover nothing).
    pub fn matches_in(&self, target: &str, groups: &BTreeMap<String, Vec<String>>) -> bool {
        match self {
            TargetSelector::All => true,
            TargetSelector::Named(v) => v.iter().any(|t| match t.strip_prefix(GROUP_PREFIX) {
                Some(group) => groups
                    .get(group)
                    .is_some_and(|members| members.iter().any(|m| m == target)),
                None => t == target,
            }),
        }
    }
}

impl Serialize for TargetSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetSelector::All => s.serialize_str("*"),
            TargetSelector::Named(v) => v.serialize(s),
        }
    }
}

/// `rules[].approval`: whether access under a rule needs someone's approval first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Access is granted as soon as it is asked for.
    #[default]
    Auto,
    /// A user with the `approve` permission on the target, other than the requester, approves
    /// each request first (see [`crate::Config::can_approve`]).
    Required,
}

/// The longest grant a request may ask for when a rule does not say (`rules[].max_duration`).
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(8 * 3600);

/// `[[rules]]`: who may open sessions to which targets, when, and on which terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Unique id, reported with each decision.
    pub id: String,
    /// Users covered by name.
    pub users: Vec<String>,
    /// Users covered by role.
    pub roles: Vec<String>,
    /// Targets covered.
    pub targets: TargetSelector,
    /// Whether access needs approval.
    pub approval: Approval,
    /// The longest grant a request may ask for (at least 1m; default 8h).
    pub max_duration: Duration,
    /// The longest a single session may last (at least 1m); `None`: no limit of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_session: Option<Duration>,
    /// A session ends after this long without input (at least 10s); `None`: never for being
    /// idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Whether a session opened with a grant ends when the grant expires (default true);
    /// `false`: the grant only limits when sessions may start.
    pub end_at_grant_expiry: bool,
    /// When the rule applies, read in `gateway.timezone_offset`; empty: always.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<TimeWindow>,
}

impl Rule {
    /// A rule with the defaults for everything but who and what it covers: approval `auto`,
    /// grants up to [`DEFAULT_MAX_DURATION`], no session or idle limit, every hour.
    pub fn new(
        id: impl Into<String>,
        users: Vec<String>,
        roles: Vec<String>,
        targets: TargetSelector,
    ) -> Self {
        Self {
            id: id.into(),
            users,
            roles,
            targets,
            approval: Approval::Auto,
            max_duration: DEFAULT_MAX_DURATION,
            max_session: None,
            idle_timeout: None,
            end_at_grant_expiry: true,
            hours: Vec::new(),
        }
    }

    /// True when the rule covers `user` (by name or by one of `user_roles`).
    pub fn matches_user(&self, user: &str, user_roles: &[String]) -> bool {
        self.users.iter().any(|u| u == user) || self.roles.iter().any(|r| user_roles.contains(r))
    }

    /// True when the rule applies at `at`: it has no `hours`, or one of its windows contains
    /// `at` read in `at`'s own UTC offset. [`crate::Config`]'s decisions first convert the
    /// instant to `gateway.timezone_offset`.
    pub fn hours_contain(&self, at: time::OffsetDateTime) -> bool {
        self.hours.is_empty() || self.hours.iter().any(|w| w.contains(at))
    }
}

/// Headers whose values the web console proxy never records, whatever `web.redact_headers` says.
pub const ALWAYS_REDACTED_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Field name fragments whose values are redacted from recorded request bodies when
/// `web.redact_fields` is left out.
pub const DEFAULT_REDACT_FIELDS: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "otp",
    "pin",
    "credential",
];

/// `web.video`: whether web sessions also get a video of what the admin saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebVideo {
    /// Rendered while the session runs, from its (masked) DOM recording, by a headless Chromium
    /// the gateway starts for the session. Without Chromium the session is recorded without
    /// video (the DOM recording is the evidence; the video is derived from it).
    #[default]
    Live,
    /// Rendered once the session ended, from the DOM recording it kept (up to a bound), at most
    /// `web.render_workers` sessions at a time; the recording is sealed when its video is done.
    /// Nothing is rendered while the session runs.
    After,
    /// DOM recording only.
    Off,
}

/// `[web]`: the web console proxy (an HTTPS forward proxy that intercepts TLS to record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebConfig {
    /// PEM files of CA certificates trusted for upstream TLS in addition to the system roots,
    /// resolved against [`crate::Config::base_dir`] (absolute paths stay as they are). Loading
    /// checks only that no entry is empty; the gateway reports files it cannot read.
    #[serde(skip)]
    pub extra_roots: Vec<PathBuf>,
    /// `extra_roots` as written, which is what the canonical form (and so the policy version)
    /// holds. Loading fills both; code that changes one changes the other (validation reports
    /// lists of different lengths).
    #[serde(rename = "extra_roots")]
    pub extra_roots_as_written: Vec<PathBuf>,
    /// A web session ends after this long without a request (at least 10s).
    pub idle_timeout: Duration,
    /// Header names (HTTP tokens, compared without regard to case) whose values are never
    /// recorded, in addition to [`ALWAYS_REDACTED_HEADERS`]; see [`WebConfig::redacted_headers`].
    pub redact_headers: Vec<String>,
    /// Form and JSON field name fragments (matched as substrings without regard to case) whose
    /// values are redacted from recorded request bodies; see [`WebConfig::field_is_redacted`].
    pub redact_fields: Vec<String>,
    /// The most of a request body kept in the transcript when a rule records bodies (at most
    /// 1MiB).
    pub max_body: ByteSize,
    /// How long the in-page recorder may stay silent (at least 2s).
    pub heartbeat_timeout: Duration,
    /// Whether sessions get a video rendered from their DOM recording.
    pub video: WebVideo,
    /// The Chromium executable that renders it (an absolute path); `None`: `/usr/bin/chromium`,
    /// else `chromium` on `PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chromium: Option<PathBuf>,
    /// With [`WebVideo::After`]: how many ended sessions have their video rendered at once
    /// (1..=16, one Chromium each); the others wait their turn.
    pub render_workers: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            extra_roots: Vec::new(),
            extra_roots_as_written: Vec::new(),
            idle_timeout: Duration::from_secs(15 * 60),
            redact_headers: Vec::new(),
            redact_fields: DEFAULT_REDACT_FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            max_body: ByteSize(64 * 1024),
            heartbeat_timeout: Duration::from_secs(15),
            video: WebVideo::Live,
            chromium: None,
            render_workers: 1,
        }
    }
}

impl WebConfig {
    /// Every header name whose value is never recorded, lower-case and without duplicates:
    /// [`ALWAYS_REDACTED_HEADERS`] first, then `redact_headers` in the order configured.
    /// Names that are not HTTP tokens (possible only when fields were changed in code) are left
    /// out: no header can carry them.
    pub fn redacted_headers(&self) -> Vec<String> {
        let mut out: Vec<String> = ALWAYS_REDACTED_HEADERS
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        for h in &self.redact_headers {
            let h = h.to_ascii_lowercase();
            if crate::web::is_http_token(&h) && !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// True when the value of the form or JSON field `name` is redacted from recorded request
    /// bodies: some `redact_fields` fragment occurs in `name`, compared without regard to case.
    pub fn field_is_redacted(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.redact_fields
            .iter()
            .any(|f| name.contains(f.to_lowercase().as_str()))
    }
}

/// `[[web_rules]]`: what the web console proxy does with the traffic to some hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebRule {
    /// Unique id, named on the block page and recorded with each decision.
    pub id: String,
    /// Users covered by name.
    pub users: Vec<String>,
    /// Users covered by role. With `users` also empty the rule covers every user.
    pub roles: Vec<String>,
    /// The web targets covered; `None` covers every web target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// Domain patterns of the hosts covered (see [`crate::domain_matches`]).
    pub domains: Vec<String>,
    /// What happens to the traffic.
    pub action: WebAction,
    /// Keep request bodies (up to `web.max_body`, with redacted fields) in the transcript; only
    /// with [`WebAction::Record`]. Left out of the canonical form when false, as the key is
    /// refused on other actions.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record_bodies: bool,
    /// Elements never recorded on the hosts the rule records (see [`Target::mask_selectors`]);
    /// only with [`WebAction::Record`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask_selectors: Vec<String>,
    /// Text never recorded on the hosts the rule records (see [`Target::mask_patterns`]); only
    /// with [`WebAction::Record`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask_patterns: Vec<String>,
}

impl WebRule {
    /// True when the rule covers `user` (by name, by one of `user_roles`, or because it names
    /// neither users nor roles) on `target`.
    pub fn applies_to(&self, user: &str, user_roles: &[String], target: &str) -> bool {
        let user_ok = (self.users.is_empty() && self.roles.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.roles.iter().any(|r| user_roles.contains(r));
        let target_ok = self
            .targets
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t == target));
        user_ok && target_ok
    }

    /// True when one of the rule's domain patterns matches `host`.
    pub fn matches_host(&self, host: &str) -> bool {
        self.domains
            .iter()
            .any(|d| crate::web::domain_matches(d, host))
    }
}

/// `[oidc]`: sign-in to the web UI and admin API with an OpenID provider (authorization code
/// flow with PKCE). The provider's [`OidcConfig::user_claim`] names the user; a user configured
/// under `[users.<name>]` has that user's roles, and the provider's groups
/// ([`OidcConfig::groups_claim`]) add the roles [`OidcConfig::group_roles`] maps them to. Someone
/// neither configured nor in a mapped group may not sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OidcConfig {
    /// The provider's issuer identifier (an `https://` URL; `http://` only on a loopback
    /// address). Its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client identifier registered at the provider.
    pub client_id: String,
    /// The client secret (a file or environment variable, never a value in the file); `None`
    /// for a public client, which then relies on PKCE alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// How the gateway authenticates to the token endpoint with the secret; `None`: HTTP Basic
    /// unless the provider lists only `client_secret_post`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// The gateway's callback as the browser reaches it (`https://<gateway>/api/oidc/callback`),
    /// registered at the provider as a redirect URI.
    pub redirect_url: String,
    /// Scopes asked for; `openid` among them.
    pub scopes: Vec<String>,
    /// The claim (of the ID token, else of the userinfo answer) whose value is the psmgate
    /// user name.
    pub user_claim: String,
    /// PEM files of CA certificates trusted for the provider's TLS besides the system roots,
    /// resolved against [`crate::Config::base_dir`] (absolute paths stay as they are).
    #[serde(skip)]
    pub extra_roots: Vec<PathBuf>,
    /// `extra_roots` as written (what the canonical form holds).
    #[serde(rename = "extra_roots", skip_serializing_if = "Vec::is_empty")]
    pub extra_roots_as_written: Vec<PathBuf>,
    /// The sign-in button reads "Sign in with <button_label>".
    pub button_label: String,
    /// The claim (of the ID token, else of the userinfo answer) listing the user's groups at the
    /// provider; `None`: groups are not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// `[oidc.group_roles]`: provider group name → the role entries it grants (the syntax of
    /// [`User::roles`]: `"reviewer"`, `"approver@prod"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_roles: BTreeMap<String, Vec<String>>,
}

/// `oidc.token_endpoint_auth_method`: how the client secret is sent to the token endpoint (the
/// method the client is registered with at the provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// HTTP Basic authentication with the client id and secret.
    ClientSecretBasic,
    /// The client id and secret in the request's form.
    ClientSecretPost,
}
