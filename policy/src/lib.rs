#![doc = include_str!("../../docs/config.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod check;
mod config;
pub mod error;
pub mod hours;
mod lower;
pub mod mask;
mod model;
pub mod oidc;
mod page_mask;
pub mod password;
pub mod rbac;
pub mod secret;
pub mod selector;
mod siem;
mod source;
pub mod units;
mod web;

pub use access::{AccessPolicy, Decision};
pub use check::{
    is_phc_string, is_valid_group_name, is_valid_name, is_valid_rdp_channel_name,
    is_valid_rdp_dynamic_channel_name, MAX_NAME,
};
pub use config::Config;
pub use error::{ConfigError, Diagnostic};
pub use hours::TimeWindow;
pub use mask::{Dim, MaskRegion};
pub use model::{
    Approval, ClipboardAccess, ClipboardLog, ClipboardPolicy, Encoder, GatewayConfig, IndexBackend,
    KeystrokeMode, OidcConfig, Protocol, RecordingConfig, RetentionConfig, Rule, S3Config,
    StorageBackend, StorageConfig, Target, TargetAddress, TargetSelector, TokenEndpointAuthMethod,
    User, VncTls, WebConfig, WebRule, WebVideo, ALWAYS_REDACTED_HEADERS, DEFAULT_MAX_DURATION,
    DEFAULT_RDP_CHANNELS, DEFAULT_RDP_DYNAMIC_CHANNELS, DEFAULT_REDACT_FIELDS, GROUP_PREFIX,
    MAX_RDP_CHANNELS, MAX_RDP_CHANNEL_NAME, MAX_RDP_DYNAMIC_CHANNEL_NAME,
    RDP_GRAPHICS_DYNAMIC_CHANNEL,
};
pub use page_mask::{MAX_MASK_PATTERN, MAX_MASK_SELECTOR};
pub use rbac::{Permission, RoleDef};
pub use secret::{Secret, SecretError, SecretRef};
pub use selector::{ElementView, SelectorList};
pub use siem::{
    is_valid_app_name, SiemFormat, SiemSink, SiemStart, SiemTransport, SyslogFacility,
    DEFAULT_SIEM_ALERT_BACKLOG, DEFAULT_SIEM_ALERT_DELAY, DEFAULT_SIEM_APP_NAME, MAX_SIEM_APP_NAME,
};
pub use units::{ByteSize, Duration};
pub use web::{
    domain_matches, is_valid_domain_pattern, WebAction, WebDecision, DEFAULT_DENY_RULE,
    TARGET_RULE_PREFIX,
};
