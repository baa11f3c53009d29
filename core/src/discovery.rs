//! Server discovery: where to connect for a server name ([spec § Resolving server names],
//! DIGEST §17). Pure: the host does the HTTP and DNS, this module decides.
//!
//! The order: an IP literal, or a name with an explicit port, is connected to directly (port 8448
//! by default); otherwise the host fetches `https://<name>/.well-known/matrix/server` and hands
//! the answer (or its absence) to [`after_well_known`]. SRV records are the host's option: a host
//! that does not look them up connects to port 8448, as this module answers.
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

use crate::canonical::{parse_object, ParseOptions};
use crate::identifiers::validate_server_name;

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;

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
}

/// A server name's host and explicit port, if any (`None` for a malformed port).
fn split(name: &str) -> (&str, Option<Option<u16>>) {
    if let Some(rest) = name.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':').map(|p| p.parse().ok())),
            None => (name, None),
        };
    }
    match name.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse().ok())),
        _ => (name, None),
    }
}

fn is_ip_literal(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// The first step of discovery for `server_name`.
pub fn resolve(server_name: &str) -> Step {
    let (host, port) = split(server_name);
    match port {
        Some(p) => Step::Connect(Target::new(host, p.unwrap_or(DEFAULT_PORT))),
        None if is_ip_literal(host) => Step::Connect(Target::new(host, DEFAULT_PORT)),
        None => Step::WellKnown {
            url: format!("https://{host}/.well-known/matrix/server"),
        },
    }
}

/// Where to connect after the well-known fetch: its `m.server` (a valid server name; port 8448
/// when it names none), else the name itself on port 8448. `body` is `None` when the fetch
/// failed or did not answer 200.
pub fn after_well_known(server_name: &str, body: Option<&[u8]>) -> Target {
    let delegated = body
        .and_then(|b| parse_object(b, &ParseOptions::LEGACY).ok())
        .and_then(|o| o.get_str("m.server").map(str::to_owned))
        .filter(|s| validate_server_name(s).is_ok());
    let name = delegated.as_deref().unwrap_or(server_name);
    let (host, port) = split(name);
    Target::new(host, port.flatten().unwrap_or(DEFAULT_PORT))
}
