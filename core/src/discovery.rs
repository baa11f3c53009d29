//! Server discovery: where to connect for a server name ([spec § Resolving server names],
//! DIGEST §17). Pure: the host does the HTTP and DNS, this module decides.
//!
//! The order: an IP literal, or a name with an explicit port, is connected to directly (port 8448
//! by default); otherwise the host fetches `https://<name>/.well-known/matrix/server` and hands
//! the answer (or its absence) to [`after_well_known`] (no SRV) or [`plan_after_well_known`]
//! (with SRV). The latter answers either where to connect, or which SRV names to look up in
//! order (`_matrix-fed._tcp.<host>`, then the deprecated `_matrix._tcp.<host>`); the host hands
//! each answer to [`srv_targets`] (or [`pick_srv`] for the best target alone): the first name
//! with records gives the targets to try in order, or says the service is not available (a
//! lone `.`), and `<host>:8448` is connected to when neither name has records. With
//! SRV, the `Host` header and the TLS server name stay `<host>`: only the connection goes to the
//! record's target and port.
//!
//! ```
//! use mxfed_core::discovery::{pick_srv, plan_after_well_known, AfterWellKnown, SrvRecord, Target};
//! let plan = plan_after_well_known("example.org", None);
//! assert_eq!(plan, AfterWellKnown::Srv {
//!     host: "example.org".into(),
//!     names: vec!["_matrix-fed._tcp.example.org".into(), "_matrix._tcp.example.org".into()],
//! });
//! let records = [SrvRecord::new(10, 0, 8443, "a.example.org."), SrvRecord::new(5, 0, 443, "b.example.org.")];
//! assert_eq!(pick_srv(&records), Some(Target::new("b.example.org", 443)));
//! ```
//!
//! ```
//! use mxfed_core::discovery::{after_well_known, resolve, Step, Target};
//! assert_eq!(resolve("example.org:8449"), Step::Connect(Target::new("example.org", 8449)));
//! assert_eq!(resolve("[::1]"), Step::Connect(Target::new("::1", 8448)));
//! assert_eq!(resolve("example.org"), Step::WellKnown { url: "https://example.org/.well-known/matrix/server".into() });
//! let t = after_well_known("example.org", Some(br#"{"m.server":"matrix.example.org:443"}"#));
//! assert_eq!(t, Target::new("matrix.example.org", 443));
//! assert_eq!(after_well_known("example.org", Some(b"nonsense")), Target::new("example.org", 8448));
//! ```
//!
//! [spec § Resolving server names]: https://spec.matrix.org/latest/server-server-api/#resolving-server-names

use crate::canonical::{parse, parse_object, CanonicalJsonError, Int, Object, ParseOptions, Value};
use crate::identifiers::{validate_server_name, IdError};
use crate::time::{Millis, Timestamp};

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;

/// The largest well-known answer read, in bytes (Synapse's 50 KiB): a host stops reading past
/// it and counts the fetch as failed.
pub const WELL_KNOWN_MAX_BYTES: usize = 50 * 1024;

/// The most redirects followed when fetching the well-known document (the spec: follow 30x
/// redirects, avoiding loops). Each hop must be `https`, and its address passes the same checks
/// as any outbound connection.
pub const WELL_KNOWN_MAX_REDIRECTS: usize = 5;

/// Where to connect: a host (name or IP address, without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name or IP address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Target {
    /// A target.
    pub fn new(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
        }
    }

    /// `host:port` for a URL authority (IPv6 addresses in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The first step for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Connect here (the name was an IP literal or had a port).
    Connect(Target),
    /// Fetch this URL and call [`after_well_known`] with the answer.
    WellKnown {
        /// `https://<name>/.well-known/matrix/server`.
        url: String,
    },
    /// The name cannot be connected to: its explicit port is not from 1 to 65535 (the
    /// grammar allows any 1–5 digits). Synapse fails such a connection too.
    Unusable {
        /// Why, as a stable code: `port_out_of_range`.
        reason: &'static str,
    },
}

/// A server name's host and explicit port, if any (`Some(None)` for a port that is not a
/// number from 1 to 65535).
fn split(name: &str) -> (&str, Option<Option<u16>>) {
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
    if let Some(rest) = name.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':').map(port)),
            None => (name, None),
        };
    }
    match name.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(port(p))),
        _ => (name, None),
    }
}

/// [`Step::Unusable`]'s reason for a port outside 1–65535.
pub const PORT_OUT_OF_RANGE: &str = "port_out_of_range";

/// The well-known answer's `m.server`, when it is a valid server name with a usable port (an
/// invalid answer counts as none: the spec's step 3 falls through to step 4).
fn delegated_name(body: Option<&[u8]>) -> Option<String> {
    body.and_then(|b| parse_object(b, &ParseOptions::LEGACY).ok())
        .and_then(|o| o.get_str("m.server").map(str::to_owned))
        .filter(|s| validate_server_name(s).is_ok() && split(s).1 != Some(None))
}

/// The delegation a well-known body makes: its `m.server` when the body is a valid answer (a
/// JSON object whose `m.server` is a server name with a usable port), else `None` (spec step 3:
/// an invalid answer is no delegation). This is what the plans apply; hosts use it to tell a
/// valid answer, which they cache for its [`well_known_lifetime`], from an invalid one.
///
/// ```
/// use mxfed_core::discovery::well_known_delegation;
/// assert_eq!(well_known_delegation(br#"{"m.server":"m.example.org:443"}"#).as_deref(), Some("m.example.org:443"));
/// assert_eq!(well_known_delegation(br#"{"m.server":"bad name"}"#), None);
/// assert_eq!(well_known_delegation(b""), None);
/// ```
pub fn well_known_delegation(body: &[u8]) -> Option<String> {
    delegated_name(Some(body))
}

fn is_ip_literal(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// The first step of discovery for `server_name`.
pub fn resolve(server_name: &str) -> Step {
    let (host, port) = split(server_name);
    match port {
        Some(Some(p)) => Step::Connect(Target::new(host, p)),
        Some(None) => Step::Unusable {
            reason: PORT_OUT_OF_RANGE,
        },
        None if is_ip_literal(host) => Step::Connect(Target::new(host, DEFAULT_PORT)),
        None => Step::WellKnown {
            url: format!("https://{host}/.well-known/matrix/server"),
        },
    }
}

/// Where to connect after the well-known fetch: its `m.server` (a valid server name with a
/// usable port; port 8448 when it names none), else the name itself on port 8448. `body` is
/// `None` when the fetch failed or did not answer 200.
pub fn after_well_known(server_name: &str, body: Option<&[u8]>) -> Target {
    let delegated = delegated_name(body);
    let name = delegated.as_deref().unwrap_or(server_name);
    let (host, port) = split(name);
    Target::new(host, port.flatten().unwrap_or(DEFAULT_PORT))
}

/// What to do after the well-known step, when the host looks up SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterWellKnown {
    /// Connect here; the `Host` header is this target's authority (the delegated name had a
    /// port, or is an IP literal).
    Connect(Target),
    /// Look up these SRV names in order; the first that [`pick_srv`] answers gives where to
    /// connect, else connect to `host` on port 8448. Either way, `Host` and the TLS server name
    /// are `host`.
    Srv {
        /// The (delegated) host name: `Host` header and TLS server name.
        host: String,
        /// `_matrix-fed._tcp.<host>`, then `_matrix._tcp.<host>` (deprecated).
        names: Vec<String>,
    },
    /// Not delegated, and the server name's own port is not from 1 to 65535 ([`Step::Unusable`]).
    Unusable {
        /// Why, as a stable code: `port_out_of_range`.
        reason: &'static str,
    },
}

/// The SRV names to look up for a host name, in order (spec v1.8: `_matrix-fed._tcp` first,
/// the deprecated `_matrix._tcp` after).
pub fn srv_names(host: &str) -> Vec<String> {
    vec![
        format!("_matrix-fed._tcp.{host}"),
        format!("_matrix._tcp.{host}"),
    ]
}

/// The step after the well-known fetch (`body` is `None` when it failed or did not answer
/// 200), for a host that does SRV lookups: a delegated name with a port or an IP literal is
/// connected to; otherwise the delegated name (or, without delegation, the server name) has
/// its SRV records looked up.
pub fn plan_after_well_known(server_name: &str, body: Option<&[u8]>) -> AfterWellKnown {
    // Steps 1 and 2 come first: an IP literal or an explicit port is never delegated.
    match resolve(server_name) {
        Step::Connect(t) => return AfterWellKnown::Connect(t),
        Step::Unusable { reason } => return AfterWellKnown::Unusable { reason },
        Step::WellKnown { .. } => {}
    }
    let delegated = delegated_name(body);
    let name = delegated.as_deref().unwrap_or(server_name);
    let (host, port) = split(name);
    match port {
        Some(Some(p)) => AfterWellKnown::Connect(Target::new(host, p)),
        Some(None) => AfterWellKnown::Unusable {
            reason: PORT_OUT_OF_RANGE,
        },
        None if is_ip_literal(host) => AfterWellKnown::Connect(Target::new(host, DEFAULT_PORT)),
        None => AfterWellKnown::Srv {
            host: host.to_owned(),
            names: srv_names(host),
        },
    }
}

/// One SRV record, as the host's resolver answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, higher is preferred.
    pub weight: u16,
    /// The port to connect to.
    pub port: u16,
    /// The host to connect to (a trailing dot is allowed; `.` means "no service here").
    pub target: String,
}

impl SrvRecord {
    /// A record.
    pub fn new(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.to_owned(),
        }
    }
}

/// Where to connect from an SRV answer: the record with the lowest priority, then the highest
/// weight, then the smallest target and port (deterministic: RFC 2782's weighted random choice
/// needs randomness the core does not draw, and a server has one target in practice). `None`
/// when there is no usable record: none at all, or only `.` ("decidedly not available"; see
/// [`srv_targets`], which tells the two apart and lists the other targets too).
pub fn pick_srv(records: &[SrvRecord]) -> Option<Target> {
    match srv_targets(records) {
        SrvAnswer::Targets(t) => t.into_iter().next(),
        _ => None,
    }
}

/// What an SRV answer says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SrvAnswer {
    /// Connect to the first of these targets that accepts a connection, in this order.
    Targets(Vec<Target>),
    /// The service is decidedly not available at this name (RFC 2782: the records' only
    /// target is `.`): the connection fails, without trying the next SRV name or port 8448, as
    /// Synapse does.
    Unavailable,
    /// No record: look up the next SRV name, else connect to the host on port 8448.
    NoRecords,
}

/// The targets of an SRV answer in the order to try them: lowest priority first, then, among
/// equal priorities, the highest weight, then the smallest target and port (deterministic, as
/// [`pick_srv`]); `.` targets left out. Records whose targets are all `.` say the service is
/// [`SrvAnswer::Unavailable`].
///
/// ```
/// use mxfed_core::discovery::{srv_targets, SrvAnswer, SrvRecord, Target};
/// let records = [SrvRecord::new(20, 0, 8448, "b.example."), SrvRecord::new(10, 0, 443, "a.example.")];
/// assert_eq!(
///     srv_targets(&records),
///     SrvAnswer::Targets(vec![Target::new("a.example", 443), Target::new("b.example", 8448)])
/// );
/// assert_eq!(srv_targets(&[SrvRecord::new(0, 0, 0, ".")]), SrvAnswer::Unavailable);
/// assert_eq!(srv_targets(&[]), SrvAnswer::NoRecords);
/// ```
pub fn srv_targets(records: &[SrvRecord]) -> SrvAnswer {
    let mut usable: Vec<(&SrvRecord, &str)> = records
        .iter()
        .map(|r| (r, r.target.trim_end_matches('.')))
        .filter(|(_, host)| !host.is_empty())
        .collect();
    if usable.is_empty() {
        return if records.is_empty() {
            SrvAnswer::NoRecords
        } else {
            SrvAnswer::Unavailable
        };
    }
    usable.sort_by(|(a, ah), (b, bh)| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then(ah.cmp(bh))
            .then(a.port.cmp(&b.port))
    });
    SrvAnswer::Targets(
        usable
            .into_iter()
            .map(|(r, host)| Target::new(host, r.port))
            .collect(),
    )
}

// ------------------------------------------------------------------ how long answers last

/// How long a valid well-known answer is used when its headers say nothing: 24 hours (the
/// spec's default; Synapse adds ±10% of jitter, which needs randomness the core does not draw).
pub const WELL_KNOWN_DEFAULT_LIFETIME: Millis = Millis::from_secs(24 * 3600);
/// The shortest lifetime of a valid well-known answer, whatever its headers say (Synapse's
/// 5 minutes): `no-store`, `max-age=0` or a past `Expires` still spare the server a fetch per
/// request.
pub const WELL_KNOWN_MIN_LIFETIME: Millis = Millis::from_secs(5 * 60);
/// The longest lifetime of a well-known answer: 48 hours (the spec's maximum).
pub const WELL_KNOWN_MAX_LIFETIME: Millis = Millis::from_secs(48 * 3600);
/// How long the absence of a valid answer (an error, a non-200 answer, an invalid body) is
/// trusted before fetching again: an hour (the spec: errors are cached for up to an hour).
pub const WELL_KNOWN_INVALID_LIFETIME: Millis = Millis::from_secs(3600);
/// How soon to fetch again after a failure when the server had a valid answer recently
/// (Synapse's 2 minutes): a delegation that was there is likely to come back.
pub const WELL_KNOWN_RETRY: Millis = Millis::from_secs(2 * 60);
/// How long after a valid answer's lifetime the server still counts as having had one
/// recently (Synapse's 2 hours), for [`WELL_KNOWN_RETRY`].
pub const WELL_KNOWN_REMEMBER_VALID: Millis = Millis::from_secs(2 * 3600);

/// How long to use a valid well-known answer (a 200 with a usable `m.server`), from its
/// `Cache-Control` (several headers joined with commas) and last `Expires` header, `now` being
/// when it arrived. Synapse's rules: `no-store` is the shortest lifetime; else a `max-age`
/// with an integer value (a negative one is 0); else `Expires` minus `now` (an invalid date is
/// in the past, as RFC 9111 says); else [`WELL_KNOWN_DEFAULT_LIFETIME`]. The result is kept
/// between [`WELL_KNOWN_MIN_LIFETIME`] and [`WELL_KNOWN_MAX_LIFETIME`].
///
/// ```
/// use mxfed_core::discovery::{well_known_lifetime, WELL_KNOWN_DEFAULT_LIFETIME};
/// use mxfed_core::{Millis, Timestamp};
/// let now = Timestamp(784_111_777_000); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(well_known_lifetime(None, None, now), WELL_KNOWN_DEFAULT_LIFETIME);
/// assert_eq!(well_known_lifetime(Some("public, max-age=3600"), None, now), Millis::from_secs(3600));
/// assert_eq!(well_known_lifetime(Some("no-store"), None, now), Millis::from_secs(300));
/// let expires = Some("Sun, 06 Nov 1994 10:49:37 GMT");
/// assert_eq!(well_known_lifetime(None, expires, now), Millis::from_secs(7200));
/// assert_eq!(well_known_lifetime(Some("max-age=999999"), None, now), Millis::from_secs(48 * 3600));
/// ```
pub fn well_known_lifetime(
    cache_control: Option<&str>,
    expires: Option<&str>,
    now: Timestamp,
) -> Millis {
    let ms = |secs: i64| secs.saturating_mul(1000);
    let lifetime_ms: i64 = match cache_directives(cache_control.unwrap_or("")) {
        d if d.no_store => 0,
        CacheDirectives {
            max_age: Some(secs),
            ..
        } => ms(secs),
        _ => match expires {
            // An invalid date is already expired.
            Some(e) => http_date(e).map_or(0, |at| ms(at).saturating_sub(now.as_i64())),
            None => return WELL_KNOWN_DEFAULT_LIFETIME,
        },
    };
    let lifetime = Millis(u64::try_from(lifetime_ms).unwrap_or(0));
    lifetime.clamp(WELL_KNOWN_MIN_LIFETIME, WELL_KNOWN_MAX_LIFETIME)
}

/// The `Cache-Control` directives [`well_known_lifetime`] reads.
struct CacheDirectives {
    no_store: bool,
    /// The last `max-age` directive's value, when it is an integer (directives are
    /// case-insensitive, a later one replaces an earlier one, as in Synapse).
    max_age: Option<i64>,
}

fn cache_directives(header: &str) -> CacheDirectives {
    let mut d = CacheDirectives {
        no_store: false,
        max_age: None,
    };
    let mut max_age: Option<&str> = None;
    for directive in header.split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") {
            d.no_store = true;
        } else if name.eq_ignore_ascii_case("max-age") {
            max_age = value;
        }
    }
    d.max_age = max_age.and_then(parse_seconds);
    d
}

/// An optionally signed decimal integer of seconds, saturating (a negative one is 0).
fn parse_seconds(v: &str) -> Option<i64> {
    let (negative, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if negative {
        return Some(0);
    }
    Some(digits.bytes().fold(0i64, |n, b| {
        n.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    }))
}

/// An HTTP date (RFC 9110 § 5.6.7: IMF-fixdate, the obsolete RFC 850 and asctime forms) in
/// seconds since the epoch. The weekday is not checked against the date.
fn http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [wd, day, month, year, time, "GMT"] if wd.ends_with(',') => {
            (*day, *month, four_digits(year)?, *time)
        }
        // Sunday, 06-Nov-94 08:49:37 GMT (two-digit years from 69 are 19xx, as in Twisted)
        [wd, date, time, "GMT"] if wd.ends_with(',') => {
            let mut d = date.split('-');
            let (day, month, yy) = (d.next()?, d.next()?, d.next()?);
            if d.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy: i64 = yy.parse().ok()?;
            (
                day,
                month,
                if yy < 69 { 2000 + yy } else { 1900 + yy },
                *time,
            )
        }
        // Sun Nov  6 08:49:37 1994
        [_, month, day, time, year] => (*day, *month, four_digits(year)?, *time),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? + 1;
    let day: u32 = (1..=2)
        .contains(&day.len())
        .then(|| day.parse().ok())
        .flatten()?;
    let mut hms = time.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let f = hms.next()?;
        let v: i64 = (f.len() == 2).then(|| f.parse().ok()).flatten()?;
        (0..=max).contains(&v).then_some(v)
    };
    let (h, m, sec) = (field(23)?, field(59)?, field(60)?);
    if hms.next().is_some() || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

fn four_digits(s: &str) -> Option<i64> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: usize) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: usize, day: u32) -> i64 {
    let month = i64::try_from(month).unwrap_or(1);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ------------------------------------------------------------------ the hosts' JSON forms

/// Errors of the discovery inputs hosts hand over as JSON (SRV answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The records are not JSON.
    #[error(transparent)]
    Json(#[from] CanonicalJsonError),
    /// The records are not a JSON array.
    #[error("SRV records: expected a JSON array of records")]
    NotAList,
    /// A record lacks a field, or has one of the wrong type or out of range.
    #[error("SRV record {index}: {field} must be {expected}")]
    BadRecord {
        /// The record's position in the list.
        index: usize,
        /// The field at fault.
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
    },
}

impl DiscoveryError {
    /// The stable code: the JSON error's own code, else `bad_srv_records`/`bad_srv_record`.
    pub fn code(&self) -> &'static str {
        match self {
            DiscoveryError::Json(e) => e.code(),
            DiscoveryError::NotAList => "bad_srv_records",
            DiscoveryError::BadRecord { .. } => "bad_srv_record",
        }
    }
}

impl Target {
    /// `{"host": …, "port": …}`.
    pub fn to_json(&self) -> Object {
        let mut o = Object::new();
        o.insert("host", self.host.as_str());
        o.insert("port", Int::from(u32::from(self.port)));
        o
    }
}

impl Step {
    /// `{"action":"connect","host","port"}`, `{"action":"well_known","url"}` or
    /// `{"action":"unusable","reason"}`.
    pub fn to_json(&self) -> Object {
        match self {
            Step::Connect(t) => connect_json(t),
            Step::WellKnown { url } => {
                let mut o = Object::new();
                o.insert("action", "well_known");
                o.insert("url", url.as_str());
                o
            }
            Step::Unusable { reason } => unusable_json(reason),
        }
    }
}

impl AfterWellKnown {
    /// `{"action":"connect","host","port"}`, `{"action":"srv","host","srv_names":[…]}` or
    /// `{"action":"unusable","reason"}`.
    pub fn to_json(&self) -> Object {
        match self {
            AfterWellKnown::Connect(t) => connect_json(t),
            AfterWellKnown::Srv { host, names } => {
                let mut o = Object::new();
                o.insert("action", "srv");
                o.insert("host", host.as_str());
                let names: Vec<Value> = names.iter().map(|n| Value::from(n.as_str())).collect();
                o.insert("srv_names", names);
                o
            }
            AfterWellKnown::Unusable { reason } => unusable_json(reason),
        }
    }
}

fn unusable_json(reason: &str) -> Object {
    let mut o = Object::new();
    o.insert("action", "unusable");
    o.insert("reason", reason);
    o
}

fn connect_json(t: &Target) -> Object {
    let mut o = t.to_json();
    o.insert("action", "connect");
    o
}

/// The discovery plan as the hosts expose it (`mxfed discover plan`, `mxfed.discovery_plan`,
/// `discoveryPlan`): without `well_known`, the first step ([`resolve`]); with it, the step after
/// the well-known fetch with SRV lookups ([`plan_after_well_known`]). A failed fetch or an
/// answer other than 200 is passed as an empty body, which the core treats as no delegation,
/// exactly as a missing one.
///
/// ```
/// use mxfed_core::discovery::plan_json;
/// let first = plan_json("example.org", None).unwrap().to_canonical_string();
/// assert_eq!(first, r#"{"action":"well_known","url":"https://example.org/.well-known/matrix/server"}"#);
/// let after = plan_json("example.org", Some(b"")).unwrap().to_canonical_string();
/// assert_eq!(after, r#"{"action":"srv","host":"example.org","srv_names":["_matrix-fed._tcp.example.org","_matrix._tcp.example.org"]}"#);
/// assert_eq!(plan_json("bad name", None).unwrap_err().code(), "bad_server_name");
/// ```
///
/// # Errors
/// `bad_server_name` when `server_name` is not a valid server name.
pub fn plan_json(server_name: &str, well_known: Option<&[u8]>) -> Result<Object, IdError> {
    validate_server_name(server_name)?;
    Ok(match well_known {
        None => resolve(server_name).to_json(),
        Some(body) => plan_after_well_known(server_name, Some(body)).to_json(),
    })
}

fn port_field(o: &Object, index: usize, field: &'static str) -> Result<u16, DiscoveryError> {
    o.get(field)
        .and_then(Value::as_int)
        .and_then(|i| u16::try_from(i).ok())
        .ok_or(DiscoveryError::BadRecord {
            index,
            field,
            expected: "an integer from 0 to 65535",
        })
}

impl SrvRecord {
    /// A record from `{"priority","weight","port","target"}` (the `index`th of its list).
    ///
    /// # Errors
    /// `bad_srv_record` for a missing, mistyped or out-of-range field.
    pub fn from_json(v: &Value, index: usize) -> Result<SrvRecord, DiscoveryError> {
        let o = v.as_object().ok_or(DiscoveryError::BadRecord {
            index,
            field: "the record",
            expected: "an object",
        })?;
        let target = o
            .get("target")
            .and_then(Value::as_str)
            .ok_or(DiscoveryError::BadRecord {
                index,
                field: "target",
                expected: "a string",
            })?;
        Ok(SrvRecord {
            priority: port_field(o, index, "priority")?,
            weight: port_field(o, index, "weight")?,
            port: port_field(o, index, "port")?,
            target: target.to_owned(),
        })
    }
}

impl SrvAnswer {
    /// `{"action":"connect","targets":[{"host","port"},…]}`, `{"action":"unavailable"}` or
    /// `{"action":"next"}` (no record: the next SRV name, else port 8448).
    pub fn to_json(&self) -> Object {
        let mut o = Object::new();
        match self {
            SrvAnswer::Targets(t) => {
                o.insert("action", "connect");
                let t: Vec<Value> = t.iter().map(|t| Value::Object(t.to_json())).collect();
                o.insert("targets", t);
            }
            SrvAnswer::Unavailable => {
                o.insert("action", "unavailable");
            }
            SrvAnswer::NoRecords => {
                o.insert("action", "next");
            }
        }
        o
    }
}

/// SRV records from a JSON array of `{"priority","weight","port","target"}` values.
///
/// # Errors
/// The JSON error, `bad_srv_records` for a non-array, `bad_srv_record` for a bad record.
pub fn srv_records_from_json(v: &Value) -> Result<Vec<SrvRecord>, DiscoveryError> {
    v.as_array()
        .ok_or(DiscoveryError::NotAList)?
        .iter()
        .enumerate()
        .map(|(i, r)| SrvRecord::from_json(r, i))
        .collect()
}

/// [`pick_srv`] over records given as JSON text: the target's JSON, or `null` when no record
/// is usable (what the hosts print and return).
///
/// ```
/// use mxfed_core::{canonical, discovery::pick_srv_json};
/// let v = pick_srv_json(br#"[{"priority":0,"weight":0,"port":443,"target":"m.example.org."}]"#).unwrap();
/// assert_eq!(canonical::to_vec(&v), br#"{"host":"m.example.org","port":443}"#);
/// assert_eq!(pick_srv_json(b"[]").unwrap(), canonical::Value::Null);
/// assert_eq!(pick_srv_json(b"{}").unwrap_err().code(), "bad_srv_records");
/// ```
///
/// # Errors
/// As [`srv_records_from_json`].
pub fn pick_srv_json(records: &[u8]) -> Result<Value, DiscoveryError> {
    let v = parse(records, &ParseOptions::STRICT)?;
    let records = srv_records_from_json(&v)?;
    Ok(pick_srv(&records).map_or(Value::Null, |t| Value::Object(t.to_json())))
}

/// [`srv_targets`] over records given as JSON text (what the hosts print and return).
///
/// ```
/// use mxfed_core::discovery::srv_targets_json;
/// let a = srv_targets_json(br#"[{"priority":0,"weight":0,"port":0,"target":"."}]"#).unwrap();
/// assert_eq!(a.to_canonical_string(), r#"{"action":"unavailable"}"#);
/// assert_eq!(srv_targets_json(b"[]").unwrap().to_canonical_string(), r#"{"action":"next"}"#);
/// assert_eq!(srv_targets_json(b"{}").unwrap_err().code(), "bad_srv_records");
/// ```
///
/// # Errors
/// As [`srv_records_from_json`].
pub fn srv_targets_json(records: &[u8]) -> Result<Object, DiscoveryError> {
    let v = parse(records, &ParseOptions::STRICT)?;
    Ok(srv_targets(&srv_records_from_json(&v)?).to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_with_srv() {
        let srv = |h: &str| AfterWellKnown::Srv {
            host: h.into(),
            names: srv_names(h),
        };
        assert_eq!(
            plan_after_well_known("example.org", None),
            srv("example.org")
        );
        assert_eq!(
            plan_after_well_known("example.org", Some(br#"{"m.server":"m.example.org"}"#)),
            srv("m.example.org")
        );
        assert_eq!(
            plan_after_well_known("example.org", Some(br#"{"m.server":"m.example.org:443"}"#)),
            AfterWellKnown::Connect(Target::new("m.example.org", 443))
        );
        assert_eq!(
            plan_after_well_known("example.org", Some(br#"{"m.server":"[::1]"}"#)),
            AfterWellKnown::Connect(Target::new("::1", 8448))
        );
        assert_eq!(
            plan_after_well_known("example.org", Some(br#"{"m.server":"bad name!"}"#)),
            srv("example.org")
        );
        assert_eq!(
            srv_names("example.org"),
            ["_matrix-fed._tcp.example.org", "_matrix._tcp.example.org"]
        );
    }

    #[test]
    fn ports_outside_1_to_65535_are_unusable() {
        for name in [
            "example.org:99999",
            "example.org:0",
            "[::1]:65536",
            "1.2.3.4:00000",
        ] {
            assert!(
                matches!(resolve(name), Step::Unusable { .. }),
                "{name}: {:?}",
                resolve(name)
            );
            assert!(matches!(
                plan_after_well_known(name, None),
                AfterWellKnown::Unusable { .. }
            ));
        }
        assert_eq!(
            resolve("example.org:65535"),
            Step::Connect(Target::new("example.org", 65535))
        );
        // A delegation to an unusable port is an invalid answer: back to the name itself.
        let body = br#"{"m.server":"m.example.org:99999"}"#;
        assert_eq!(
            plan_after_well_known("example.org", Some(body)),
            AfterWellKnown::Srv {
                host: "example.org".into(),
                names: srv_names("example.org"),
            }
        );
        assert_eq!(
            after_well_known("example.org", Some(body)),
            Target::new("example.org", 8448)
        );
        let j = plan_json("example.org:99999", None).unwrap();
        assert_eq!(j.get_str("action"), Some("unusable"));
    }

    #[test]
    fn http_dates() {
        // The three forms of RFC 9110's example, and the epoch.
        for d in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 NOV 1994 08:49:37 GMT",
        ] {
            assert_eq!(http_date(d), Some(784_111_777), "{d}");
        }
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2000 23:59:60 GMT"),
            Some(951_868_800)
        );
        assert_eq!(
            http_date("Thursday, 01-Jan-43 00:00:00 GMT"),
            http_date("Thu, 01 Jan 2043 00:00:00 GMT")
        );
        for bad in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
        ] {
            assert_eq!(http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn well_known_lifetimes() {
        let now = Timestamp(784_111_777_000);
        let life = |cc: Option<&str>, exp: Option<&str>| well_known_lifetime(cc, exp, now).0 / 1000;
        assert_eq!(life(None, None), 86_400);
        assert_eq!(life(Some(""), None), 86_400);
        assert_eq!(life(Some("max-age=3600"), None), 3600);
        assert_eq!(life(Some("Max-Age = 3600 , public"), None), 3600);
        assert_eq!(life(Some("max-age=60"), None), 300);
        assert_eq!(life(Some("max-age=-5"), None), 300);
        assert_eq!(life(Some("max-age=9999999999999999999999"), None), 172_800);
        assert_eq!(life(Some("no-store, max-age=3600"), None), 300);
        assert_eq!(life(Some("max-age=100, max-age=7200"), None), 7200);
        // A max-age that is not an integer is ignored: Expires, else the default.
        let exp = Some("Sun, 06 Nov 1994 11:49:37 GMT");
        assert_eq!(life(Some("max-age=abc"), exp), 3 * 3600);
        assert_eq!(life(Some("max-age"), None), 86_400);
        assert_eq!(life(Some("max-age=3600"), exp), 3600);
        assert_eq!(life(None, Some("Sun, 06 Nov 1994 08:49:36 GMT")), 300);
        assert_eq!(life(None, Some("0")), 300);
        assert_eq!(life(None, Some("Fri, 06 Nov 2099 08:49:37 GMT")), 172_800);
        // Sub-second: `now` is in ms, Expires in seconds.
        let l = well_known_lifetime(None, exp, Timestamp(784_111_777_250));
        assert_eq!(l, Millis(3 * 3_600_000 - 250));
    }

    #[test]
    fn srv_choice() {
        assert_eq!(pick_srv(&[]), None);
        assert_eq!(pick_srv(&[SrvRecord::new(0, 0, 0, ".")]), None);
        let rs = [
            SrvRecord::new(20, 100, 1, "late.example."),
            SrvRecord::new(10, 5, 2, "light.example."),
            SrvRecord::new(10, 50, 3, "heavy.example."),
            SrvRecord::new(1, 0, 4, "."),
        ];
        assert_eq!(pick_srv(&rs), Some(Target::new("heavy.example", 3)));
        let tie = [
            SrvRecord::new(10, 5, 9, "b.example"),
            SrvRecord::new(10, 5, 8, "a.example"),
        ];
        assert_eq!(pick_srv(&tie), Some(Target::new("a.example", 8)));
        // Every usable target, best first; `.` left out.
        assert_eq!(
            srv_targets(&rs),
            SrvAnswer::Targets(vec![
                Target::new("heavy.example", 3),
                Target::new("light.example", 2),
                Target::new("late.example", 1),
            ])
        );
        let dots = [SrvRecord::new(0, 0, 0, "."), SrvRecord::new(5, 0, 0, ".")];
        assert_eq!(srv_targets(&dots), SrvAnswer::Unavailable);
        assert_eq!(srv_targets(&[]), SrvAnswer::NoRecords);
    }
}
