//! `[[siem]]`: where the gateway forwards its audit log (session starts and ends, policy
//! enforcement, sign-ins, access requests and decisions, grants, administrative actions) for a
//! SIEM: RFC 5424 syslog over TCP or TLS, JSON lines, or CEF.

use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the entries reach the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiemTransport {
    /// A TCP connection to `address`.
    Tcp,
    /// A TLS connection to `address` (server certificate checked against `ca`, else the system
    /// roots).
    Tls,
    /// Lines appended to the local file `path` (for a log shipper).
    File,
}

/// How each audit entry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiemFormat {
    /// An RFC 5424 syslog message with the entry in structured data, octet-counted
    /// (RFC 6587) on a connection. Not valid with the `file` transport.
    Rfc5424,
    /// The audit entry as one JSON object (plus `host`) per line.
    Json,
    /// An ArcSight Common Event Format record: the message of an RFC 5424 syslog message on a
    /// connection, one per line in a file.
    Cef,
}

/// Where a sink seen for the first time (no delivery cursor yet) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SiemStart {
    /// From the first entry of the audit log.
    #[default]
    Beginning,
    /// After the last entry written before the sink first started.
    End,
}

/// A syslog facility (RFC 5424 section 6.2.1), by its usual name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // the names are the standard ones, listed in `code`
pub enum SyslogFacility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    /// Security and authorisation messages kept private (Debian's rsyslog writes them to
    /// `/var/log/auth.log`, readable by administrators only): the default.
    #[default]
    Authpriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl SyslogFacility {
    /// The facility number (0..=23).
    pub fn code(self) -> u8 {
        use SyslogFacility::*;
        match self {
            Kern => 0,
            User => 1,
            Mail => 2,
            Daemon => 3,
            Auth => 4,
            Syslog => 5,
            Lpr => 6,
            News => 7,
            Uucp => 8,
            Cron => 9,
            Authpriv => 10,
            Ftp => 11,
            Ntp => 12,
            Audit => 13,
            Alert => 14,
            Clock => 15,
            Local0 => 16,
            Local1 => 17,
            Local2 => 18,
            Local3 => 19,
            Local4 => 20,
            Local5 => 21,
            Local6 => 22,
            Local7 => 23,
        }
    }
}

/// Default `app_name`.
pub const DEFAULT_SIEM_APP_NAME: &str = "psmgate";
/// Default `alert_backlog`: undelivered entries before an error is logged.
pub const DEFAULT_SIEM_ALERT_BACKLOG: u32 = 10_000;
/// Default `alert_delay`: age of the oldest undelivered entry before an error is logged.
pub const DEFAULT_SIEM_ALERT_DELAY: Duration = Duration::from_secs(3600);
/// Longest `app_name` (RFC 5424 APP-NAME).
pub const MAX_SIEM_APP_NAME: usize = 48;

/// `[[siem]]`: one destination of the audit log.
///
/// Paths hold both the value as written (which the canonical form holds) and the value resolved
/// against [`crate::Config::base_dir`] (absolute paths stay as they are), as
/// [`crate::WebConfig::extra_roots`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiemSink {
    /// Unique name (a configuration name: letters, digits, `.`, `_`, `-`); names the delivery
    /// cursor `<data_dir>/siem/<name>.cursor`.
    pub name: String,
    /// How entries travel.
    pub transport: SiemTransport,
    /// How entries are written: default `rfc5424` on a connection, `json` to a file.
    pub format: SiemFormat,
    /// `host:port` of the receiver (`tcp` and `tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The file written (`file`), resolved.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// `path` as written.
    #[serde(rename = "path", skip_serializing_if = "Option::is_none")]
    pub path_as_written: Option<PathBuf>,
    /// PEM file of the CA certificates the receiver's certificate is checked against (`tls`);
    /// `None`: the system's roots. Resolved.
    #[serde(skip)]
    pub ca: Option<PathBuf>,
    /// `ca` as written.
    #[serde(rename = "ca", skip_serializing_if = "Option::is_none")]
    pub ca_as_written: Option<PathBuf>,
    /// The name the receiver's certificate must carry (`tls`); `None`: the host of `address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// RFC 5424 APP-NAME (1..=48 printable ASCII characters, no space).
    pub app_name: String,
    /// Syslog facility of the messages.
    pub facility: SyslogFacility,
    /// Where a new sink starts.
    pub start: SiemStart,
    /// An error is logged when more entries than this wait for delivery.
    pub alert_backlog: u32,
    /// An error is logged when the oldest undelivered entry is older than this.
    pub alert_delay: Duration,
}

impl SiemSink {
    /// A sink called `name` with `transport` and every other key at its default (no address,
    /// no path).
    pub fn new(name: impl Into<String>, transport: SiemTransport) -> Self {
        Self {
            name: name.into(),
            transport,
            format: Self::default_format(transport),
            address: None,
            path: None,
            path_as_written: None,
            ca: None,
            ca_as_written: None,
            server_name: None,
            app_name: DEFAULT_SIEM_APP_NAME.to_owned(),
            facility: SyslogFacility::default(),
            start: SiemStart::default(),
            alert_backlog: DEFAULT_SIEM_ALERT_BACKLOG,
            alert_delay: DEFAULT_SIEM_ALERT_DELAY,
        }
    }

    /// The format used when `format` is left out.
    pub fn default_format(transport: SiemTransport) -> SiemFormat {
        match transport {
            SiemTransport::File => SiemFormat::Json,
            SiemTransport::Tcp | SiemTransport::Tls => SiemFormat::Rfc5424,
        }
    }

    /// Host and port of `address`, when it is a valid `host:port` (`[v6]:port` for IPv6).
    pub fn host_port(&self) -> Option<(String, u16)> {
        crate::lower::parse_host_port(self.address.as_deref()?.trim())
    }

    /// The name the receiver's TLS certificate is checked for: `server_name`, else the host of
    /// `address`.
    pub fn tls_name(&self) -> Option<String> {
        self.server_name
            .clone()
            .or_else(|| self.host_port().map(|(h, _)| h))
    }
}

/// True when `name` is a valid RFC 5424 APP-NAME: 1..=48 printable US-ASCII characters
/// (`!`..=`~`).
pub fn is_valid_app_name(name: &str) -> bool {
    (1..=MAX_SIEM_APP_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
}
