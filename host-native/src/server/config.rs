//! The server's configuration: a TOML file in the data directory, written with comments on first
//! run, and command-line flags that override it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The config file's name inside the data directory.
pub const CONFIG_FILE: &str = "mxfed.toml";

/// The largest `[limits] gap_fill_seconds`: an hour, far past any sender's patience (Synapse
/// gives up on a transaction after 60 s).
pub const MAX_GAP_FILL_SECONDS: u64 = 3600;
/// The largest `[limits] body_read_seconds`: an hour.
pub const MAX_BODY_READ_SECONDS: u64 = 3600;
/// The largest `[federation] request_timeout_secs`: a day.
pub const MAX_REQUEST_TIMEOUT_SECS: u64 = 86_400;
/// The largest `[limits] edus_kept`: a billion rows of a type is no bound at all.
pub const MAX_EDUS_KEPT: u64 = 1_000_000_000;
/// The largest `[limits] to_device_kept_days`: ten years.
pub const MAX_TO_DEVICE_KEPT_DAYS: u64 = 3650;

/// One listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address and port to bind.
    pub addr: SocketAddr,
    /// TLS on this listener (off behind a reverse proxy that terminates TLS).
    #[serde(default = "yes")]
    pub tls: bool,
    /// PEM certificate chain (relative paths are inside the data directory).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// A notary we trust to vouch for other servers' keys.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Notary {
    /// Its server name.
    pub server_name: String,
    /// Its verify keys, key ID → unpadded base64. Answers must carry a signature by one.
    pub verify_keys: std::collections::BTreeMap<String, String>,
}

/// Outbound federation settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Check other servers' TLS certificates (off only for local testing).
    #[serde(default = "yes")]
    pub verify_tls: bool,
    /// Address ranges we never connect to (CIDR). Default: loopback, private, link-local, …
    #[serde(default = "default_blocklist")]
    pub ip_blocklist: Vec<String>,
    /// Ranges allowed even when blocked (e.g. `127.0.0.0/8` for tests).
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// Notaries asked for keys when a server cannot be reached directly.
    #[serde(default)]
    pub trusted_notaries: Vec<Notary>,
    /// Seconds to wait for another server's answer.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
}

/// Limits.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most events per room fetched with /get_missing_events before falling back to /state.
    #[serde(default = "default_missing")]
    pub max_missing_events: usize,
    /// Seconds a request's body may take to arrive whole once its header has: a client that
    /// sends a header and then trickles (or stops) holds a connection and a task no longer.
    #[serde(default = "default_body_read")]
    pub body_read_seconds: u64,
    /// Seconds one incoming transaction may spend fetching what its PDUs lack (missing events,
    /// state, retries of PDUs kept for a gap) before the rest is kept to try again.
    #[serde(default = "default_gap_fill")]
    pub gap_fill_seconds: u64,
    /// Federation requests per second each origin server may make on average (0: no limit).
    #[serde(default = "default_fed_rate")]
    pub federation_per_second: u32,
    /// Federation requests an origin server may make at once before the rate applies.
    #[serde(default = "default_fed_burst")]
    pub federation_burst: u32,
    /// Largest answer read from another server, in bytes (but see the next one).
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// Largest `send_join` or `/state` answer read (a room's whole state), in bytes.
    #[serde(default = "default_max_state_response")]
    pub max_state_response_bytes: usize,
    /// Received EDUs kept per type (typing, receipts, presence, device lists, signing keys,
    /// to-device): the newest; peers may send them without end.
    #[serde(default = "default_edus_kept")]
    pub edus_kept: u64,
    /// Days a received to-device message is kept (we have no client to deliver it to).
    #[serde(default = "default_to_device_days")]
    pub to_device_kept_days: u64,
}

impl Limits {
    /// What the store keeps of received EDUs.
    #[must_use]
    pub fn edus(&self) -> super::store::EduLimits {
        let days = i64::try_from(self.to_device_kept_days).unwrap_or(i64::MAX);
        super::store::EduLimits {
            per_type: i64::try_from(self.edus_kept).unwrap_or(i64::MAX).max(1),
            to_device_ms: days.saturating_mul(86_400_000),
        }
    }
}

/// The admin API (used by `mxfed admin`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where the admin API listens: plain HTTP, so keep it on loopback. Port 0 picks a free
    /// port; the URL is written to `admin.json` in the data directory.
    #[serde(default = "default_admin_addr")]
    pub addr: SocketAddr,
}

/// How `mxfed serve` logs (to stderr).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `text` (one line per event, fields as `key=value`) or `json` (one JSON object per line,
    /// fields under `fields`).
    #[serde(default)]
    pub format: LogFormat,
    /// What to log: a level (`info`) or per-target directives (`warn,mxfed_native=debug`).
    /// The `MXFED_LOG` environment variable, when set, takes its place.
    #[serde(default = "default_log_level")]
    pub level: String,
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

fn default_log_level() -> String {
    "info".to_owned()
}
fn default_log() -> Log {
    Log {
        format: LogFormat::Text,
        level: default_log_level(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Our server name (`host` or `host:port`), as other servers address us.
    pub server_name: String,
    /// Listeners.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<Listener>,
    /// The SQLite database (relative paths are inside the data directory).
    #[serde(default = "default_db")]
    pub database: PathBuf,
    /// The Synapse-format signing key file.
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    /// Outbound federation.
    #[serde(default = "default_federation")]
    pub federation: Federation,
    /// Limits.
    #[serde(default = "default_limits")]
    pub limits: Limits,
    /// The admin API.
    #[serde(default = "default_admin")]
    pub admin: Admin,
    /// Local testing mode (loopback federation, no certificate checks); also `--dev`.
    #[serde(default)]
    pub dev: bool,
    /// Logging.
    #[serde(default = "default_log")]
    pub log: Log,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    30
}
fn default_max_body() -> usize {
    mxfed_core::transaction::MAX_BODY_BYTES
}
fn default_missing() -> usize {
    50
}
fn default_gap_fill() -> u64 {
    20
}
fn default_body_read() -> u64 {
    60
}
fn default_admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_admin() -> Admin {
    Admin {
        addr: default_admin_addr(),
    }
}
fn default_db() -> PathBuf {
    PathBuf::from("mxfed.sqlite")
}
fn default_signing_key() -> PathBuf {
    PathBuf::from("signing.key")
}
fn default_listeners() -> Vec<Listener> {
    vec![Listener {
        addr: SocketAddr::from(([127, 0, 0, 1], 8448)),
        tls: true,
        cert: Some(PathBuf::from("tls/cert.pem")),
        key: Some(PathBuf::from("tls/key.pem")),
    }]
}
fn default_federation() -> Federation {
    Federation {
        verify_tls: true,
        ip_blocklist: default_blocklist(),
        ip_allowlist: Vec::new(),
        trusted_notaries: Vec::new(),
        request_timeout_secs: default_timeout(),
    }
}
fn default_limits() -> Limits {
    Limits {
        max_body_bytes: default_max_body(),
        max_missing_events: default_missing(),
        gap_fill_seconds: default_gap_fill(),
        body_read_seconds: default_body_read(),
        federation_per_second: default_fed_rate(),
        federation_burst: default_fed_burst(),
        max_response_bytes: default_max_response(),
        max_state_response_bytes: default_max_state_response(),
        edus_kept: default_edus_kept(),
        to_device_kept_days: default_to_device_days(),
    }
}
fn default_edus_kept() -> u64 {
    super::store::EduLimits::DEFAULT_PER_TYPE.unsigned_abs()
}
fn default_to_device_days() -> u64 {
    super::store::EduLimits::DEFAULT_TO_DEVICE_DAYS.unsigned_abs()
}
fn default_max_response() -> usize {
    super::client::ResponseLimits::DEFAULT.default_bytes
}
fn default_max_state_response() -> usize {
    super::client::ResponseLimits::DEFAULT.state_bytes
}
fn default_fed_rate() -> u32 {
    50
}
fn default_fed_burst() -> u32 {
    200
}

/// The ranges Synapse's `ip_range_blacklist` example blocks: loopback, private, CGNAT,
/// link-local, multicast, documentation and other special-purpose ranges.
pub fn default_blocklist() -> Vec<String> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "169.254.0.0/16",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "0.0.0.0/8",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "2001:db8::/32",
        "ff00::/8",
        "fec0::/10",
        "::/128",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::/n` or a bare address.
    ///
    /// # Errors
    /// A message for the config error.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("bad address range {s:?}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is in the range, or is an IPv6 address carrying an IPv4 address that is
    /// (see [`embedded_ipv4`]): `::ffff:10.0.0.1`, `::10.0.0.1` and `2002:a00:1::` are all in
    /// `10.0.0.0/8`, as they all lead to 10.0.0.1.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip)
            || match ip {
                IpAddr::V6(v6) => {
                    embedded_ipv4(v6).is_some_and(|v4| self.contains_exactly(IpAddr::V4(v4)))
                }
                IpAddr::V4(_) => false,
            }
    }

    fn contains_exactly(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that reach an IPv4 host:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still
/// routable on some stacks) and 6to4 (`2002:aabb:ccdd::/48`, through a 6to4 relay). Without
/// this, a blocked IPv4 range could be reached by writing its addresses in one of these forms.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    // `to_ipv4` answers both the mapped and the compatible form (`::1` gives 0.0.0.1).
    if let Some(v4) = v6.to_ipv4() {
        return Some(v4);
    }
    let o = v6.octets();
    (o[0] == 0x20 && o[1] == 0x02).then(|| Ipv4Addr::new(o[2], o[3], o[4], o[5]))
}

/// Which addresses outbound requests may reach.
#[derive(Debug, Clone, Default)]
pub struct IpPolicy {
    block: Vec<Cidr>,
    allow: Vec<Cidr>,
}

impl IpPolicy {
    /// From the config lists.
    ///
    /// # Errors
    /// A bad range.
    pub fn new(block: &[String], allow: &[String]) -> Result<IpPolicy, String> {
        Ok(IpPolicy {
            block: block
                .iter()
                .map(|s| Cidr::parse(s))
                .collect::<Result<_, _>>()?,
            allow: allow
                .iter()
                .map(|s| Cidr::parse(s))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether we may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip)) || !self.block.iter().any(|c| c.contains(ip))
    }
}

impl Config {
    /// Reads and parses a config file.
    ///
    /// # Errors
    /// A message naming the file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        mxfed_core::identifiers::validate_server_name(&c.server_name)
            .map_err(|e| format!("{}: server_name: {e}", path.display()))?;
        IpPolicy::new(&c.federation.ip_blocklist, &c.federation.ip_allowlist)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        c.check_values()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(c)
    }

    /// What the types let through but the server cannot use: a wait the clock cannot add to
    /// now or no one would wait for, and a byte limit of 0, which refuses everything.
    fn check_values(&self) -> Result<(), String> {
        let waits = [
            (
                "[limits] gap_fill_seconds",
                self.limits.gap_fill_seconds,
                MAX_GAP_FILL_SECONDS,
            ),
            (
                "[limits] body_read_seconds",
                self.limits.body_read_seconds,
                MAX_BODY_READ_SECONDS,
            ),
            (
                "[federation] request_timeout_secs",
                self.federation.request_timeout_secs,
                MAX_REQUEST_TIMEOUT_SECS,
            ),
        ];
        for (name, secs, max) in waits {
            if !(1..=max).contains(&secs) {
                return Err(format!("{name} = {secs}: must be 1 to {max} seconds"));
            }
        }
        let sizes = [
            ("[limits] max_body_bytes", self.limits.max_body_bytes),
            (
                "[limits] max_response_bytes",
                self.limits.max_response_bytes,
            ),
            (
                "[limits] max_state_response_bytes",
                self.limits.max_state_response_bytes,
            ),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, bytes)| *bytes == 0) {
            return Err(format!("{name} = 0: must be at least 1 byte"));
        }
        let kept = [
            (
                "[limits] edus_kept",
                self.limits.edus_kept,
                MAX_EDUS_KEPT,
                "rows",
            ),
            (
                "[limits] to_device_kept_days",
                self.limits.to_device_kept_days,
                MAX_TO_DEVICE_KEPT_DAYS,
                "days",
            ),
        ];
        for (name, n, max, unit) in kept {
            if !(1..=max).contains(&n) {
                return Err(format!("{name} = {n}: must be 1 to {max} {unit}"));
            }
        }
        Ok(())
    }

    /// A path from the config, relative to the data directory unless absolute.
    pub fn resolve(data_dir: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            data_dir.join(p)
        }
    }

    /// The outbound IP policy (`--dev` allows loopback).
    pub fn ip_policy(&self) -> IpPolicy {
        let mut allow = self.federation.ip_allowlist.clone();
        if self.dev {
            allow.push("127.0.0.0/8".into());
            allow.push("::1/128".into());
        }
        IpPolicy::new(&self.federation.ip_blocklist, &allow).unwrap_or_default()
    }
}

/// The commented config file written on first run.
pub fn default_file(server_name: &str, listen: SocketAddr) -> String {
    format!(
        r#"# mxfed server configuration. Command-line flags (--server-name, --listen, --dev) override
# what is here. Relative paths are inside the data directory.

# Our server name, as other servers address us: "host" or "host:port". Users are
# @name:<server_name>. Changing it later orphans every room and user.
server_name = "{server_name}"

# The SQLite database (WAL mode; see docs/server.md for what is stored).
database = "mxfed.sqlite"

# Our signing key, in Synapse's format ("ed25519 <version> <seed>"). Keep it secret.
signing_key = "signing.key"

# Local testing mode: federation to and from loopback, no certificate checks. Never in production.
dev = false

# Where federation traffic arrives. tls = true serves HTTPS with cert/key (a self-signed pair
# for localhost was generated on first run: replace it with a real one); tls = false serves
# plain HTTP, for use behind a reverse proxy that terminates TLS. Repeat [[listeners]] for more.
[[listeners]]
addr = "{listen}"
tls = true
cert = "tls/cert.pem"
key = "tls/key.pem"

[federation]
# Check other servers' TLS certificates.
verify_tls = true
# Never connect to these ranges (private networks, loopback, ...), unless allowed below.
# ip_blocklist = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", ...]
ip_allowlist = []
# Seconds to wait for another server's answer (1 to 86400).
request_timeout_secs = 30
# Notaries asked for a server's keys when it cannot be reached directly, e.g.
# [[federation.trusted_notaries]]
# server_name = "matrix.org"
# verify_keys = {{ "ed25519:auto" = "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw" }}

[limits]
# Largest request body, in bytes (Synapse's: 200 x 64 KiB).
max_body_bytes = {max_body}
# Events fetched with /get_missing_events to fill a gap before asking for the state instead.
max_missing_events = 50
# Seconds an incoming transaction may spend fetching what its events lack from other servers;
# what is still missing then is kept and tried again with the origin's next transaction (the
# sender waits for our answer: Synapse gives up after 60 s). 1 to 3600.
gap_fill_seconds = 20
# Seconds a request's body may take to arrive once its header has (a slow or stalled client is
# answered 408 and its connection closed; Synapse's own requests give up after 60 s). 1 to 3600.
body_read_seconds = 60
# Per origin server: federation requests per second on average (0 turns the limit off), and the
# burst allowed at once. Over it: 429 M_LIMIT_EXCEEDED with retry_after_ms. Transactions
# (PUT /send) are not counted: one in flight per origin paces them.
federation_per_second = 50
federation_burst = 200
# Largest answer read from another server, in bytes (Synapse's 100 MiB), and largest send_join
# or /state answer (a room's whole state; Synapse's 500 MiB). Answers are held in memory whole
# while they are checked: lower these on a small machine. The well-known document is limited
# to 50 KiB whatever these say.
max_response_bytes = {max_response}
max_state_response_bytes = {max_state_response}
# Received EDUs kept per type (typing, receipts, presence, device-list and signing-key updates,
# to-device messages): the newest; older ones are deleted as new ones arrive. Only the latest
# typing and receipt of each user in each room, presence and signing keys of each user and
# update of each device are kept in any case. 1 to 1000000000.
edus_kept = 10000
# Days a received to-device message is kept (mxfed has no client to deliver it to; Synapse
# de-duplicates them over 7 days). 1 to 3650.
to_device_kept_days = 7

[admin]
# The admin API used by `mxfed admin` (plain HTTP with a bearer token: keep it on loopback),
# and Prometheus metrics at /metrics (no token). Port 0 picks a free port; the URL is written
# to admin.json in the data directory. Give a fixed port to scrape the metrics.
addr = "127.0.0.1:0"

[log]
# "text" (human-readable lines) or "json" (one JSON object per line, for log collectors).
format = "text"
# A level (error, warn, info, debug, trace) or per-target directives such as
# "warn,mxfed_native=debug". The MXFED_LOG environment variable overrides it.
level = "info"
"#,
        max_body = default_max_body(),
        max_response = default_max_response(),
        max_state_response = default_max_state_response(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses() {
        let c: Config = toml::from_str(&default_file(
            "localhost:8448",
            "127.0.0.1:8448".parse().unwrap(),
        ))
        .unwrap();
        assert_eq!(c.server_name, "localhost:8448");
        assert!(c.federation.verify_tls && !c.dev);
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.limits, default_limits());
    }

    /// Loads `mxfed.toml` holding `text` (after a server name).
    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, format!("server_name = \"localhost\"\n{text}")).unwrap();
        Config::load(&path)
    }

    /// A wait the clock cannot add (it made every /send panic) or no one would wait for, and a
    /// byte limit of 0, are config errors of one line naming the key; the bounds load.
    #[test]
    fn absurd_limits_are_config_errors() {
        for (text, key) in [
            (
                "[limits]\ngap_fill_seconds = 9223372036854775807",
                "[limits] gap_fill_seconds",
            ),
            (
                "[limits]\ngap_fill_seconds = 3601",
                "[limits] gap_fill_seconds",
            ),
            (
                "[limits]\ngap_fill_seconds = 0",
                "[limits] gap_fill_seconds",
            ),
            (
                "[limits]\nbody_read_seconds = 0",
                "[limits] body_read_seconds",
            ),
            (
                "[limits]\nbody_read_seconds = 3601",
                "[limits] body_read_seconds",
            ),
            (
                "[federation]\nrequest_timeout_secs = 9223372036854775807",
                "[federation] request_timeout_secs",
            ),
            (
                "[federation]\nrequest_timeout_secs = 0",
                "[federation] request_timeout_secs",
            ),
            ("[limits]\nmax_body_bytes = 0", "[limits] max_body_bytes"),
            (
                "[limits]\nmax_response_bytes = 0",
                "[limits] max_response_bytes",
            ),
            (
                "[limits]\nmax_state_response_bytes = 0",
                "[limits] max_state_response_bytes",
            ),
            ("[limits]\nedus_kept = 0", "[limits] edus_kept"),
            ("[limits]\nedus_kept = 1000000001", "[limits] edus_kept"),
            (
                "[limits]\nto_device_kept_days = 0",
                "[limits] to_device_kept_days",
            ),
            (
                "[limits]\nto_device_kept_days = 3651",
                "[limits] to_device_kept_days",
            ),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let c =
            load("[limits]\ngap_fill_seconds = 3600\n[federation]\nrequest_timeout_secs = 86400")
                .unwrap();
        assert_eq!(c.limits.gap_fill_seconds, MAX_GAP_FILL_SECONDS);
        assert_eq!(c.federation.request_timeout_secs, MAX_REQUEST_TIMEOUT_SECS);
        assert!(load("[limits]\ngap_fill_seconds = 1\nmax_body_bytes = 1").is_ok());
        let c = load("[limits]\nedus_kept = 1\nto_device_kept_days = 3650").unwrap();
        assert_eq!(
            c.limits.edus(),
            crate::server::store::EduLimits {
                per_type: 1,
                to_device_ms: 3650 * 86_400_000
            }
        );
    }

    #[test]
    fn ip_policy() {
        let p = IpPolicy::new(&default_blocklist(), &[]).unwrap();
        assert!(!p.permits("127.0.0.1".parse().unwrap()));
        assert!(!p.permits("10.1.2.3".parse().unwrap()));
        assert!(!p.permits("::ffff:192.168.1.1".parse().unwrap()));
        assert!(p.permits("1.1.1.1".parse().unwrap()));
        let p = IpPolicy::new(&default_blocklist(), &["127.0.0.0/8".into()]).unwrap();
        assert!(p.permits("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ipv4_ranges_are_blocked_in_their_ipv6_forms() {
        let p = IpPolicy::new(&default_blocklist(), &[]).unwrap();
        let permits = |s: &str| p.permits(s.parse().unwrap());
        for blocked in [
            // IPv4-mapped.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-compatible (::a.b.c.d).
            "::127.0.0.1",
            "::10.1.2.3",
            "::172.16.0.1",
            "::192.168.1.1",
            "::169.254.169.254",
            "::100.64.0.1",
            // 6to4: 2002:<IPv4>::/48.
            "2002:7f00:1::",
            "2002:7f00:1::1",
            "2002:a01:203::1",
            "2002:c0a8:101:ffff::1",
            "2002:a9fe:a9fe::",
            "2002:e000:1::1",
            // The IPv6 ranges themselves still count.
            "::1",
            "::",
            "fe80::1",
        ] {
            assert!(!permits(blocked), "{blocked} must be blocked");
        }
        // The same forms of public addresses are not.
        for allowed in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "2002:808:808::1",
            "2001:4860::8888",
        ] {
            assert!(permits(allowed), "{allowed} must be allowed");
        }
        assert_eq!(
            embedded_ipv4("2002:c0a8:101::1".parse().unwrap()),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        assert_eq!(embedded_ipv4("2001:db8::1".parse().unwrap()), None);
        // An allowlist of an IPv6 range still matches the address itself.
        let dev = IpPolicy::new(&default_blocklist(), &["::1/128".into()]).unwrap();
        assert!(dev.permits("::1".parse().unwrap()));
        assert!(!dev.permits("::127.0.0.1".parse().unwrap()));
    }
}
