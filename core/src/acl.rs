//! Server ACLs: which servers a room lets take part ([`m.room.server_acl`], DIGEST §12, §18.6).
//!
//! Pure matching; the host decides where to enforce it (per PDU and per room EDU on `/send`,
//! and with 403 `M_FORBIDDEN` on the room-scoped endpoints).
//!
//! The algorithm is Synapse's (`server_matches_acl_event`), which the spec describes:
//! 1. the port is stripped from the server name (`example.org:8448` → `example.org`;
//!    `[::1]:8448` → `[::1]`);
//! 2. when `allow_ip_literals` is `false`, IPv4 literals and bracketed IPv6 literals are denied;
//! 3. a name matching any `deny` glob is denied;
//! 4. a name matching any `allow` glob is allowed; everything else is denied.
//!
//! Globs have `*` (any run of characters, also none) and `?` (exactly one character) and match
//! the whole name, ignoring ASCII case (Synapse compiles them with `IGNORECASE`). Missing lists
//! are empty (so a missing or non-list `allow` denies everybody, as the spec says), entries
//! that are not strings are ignored, and an `allow_ip_literals` that is not a boolean counts as
//! `true` (Synapse logs it and uses the default). A room without an ACL allows every server.
//!
//! ```
//! use mxfed_core::acl::ServerAcl;
//! use mxfed_core::canonical::{parse_object, ParseOptions};
//! let content = parse_object(
//!     br#"{"allow":["*"],"deny":["*.evil.example","evil.example"],"allow_ip_literals":false}"#,
//!     &ParseOptions::STRICT,
//! ).unwrap();
//! let acl = ServerAcl::from_content(&content);
//! assert!(acl.allows("matrix.org"));
//! assert!(acl.allows("good.example:8448"));
//! assert!(!acl.allows("evil.example:8448"));
//! assert!(!acl.allows("sub.EVIL.example"));
//! assert!(!acl.allows("1.2.3.4:8448"));
//! assert!(!acl.allows("[::1]"));
//! ```
//!
//! [`m.room.server_acl`]: https://spec.matrix.org/latest/client-server-api/#server-access-control-lists-acls-for-rooms

use crate::canonical::{Object, Value};
use crate::identifiers::{validate_server_name, IdError};
use crate::room::Room;

/// The event type of server ACLs.
pub const EVENT_TYPE: &str = "m.room.server_acl";

/// A room's server ACL, parsed from the content of its `m.room.server_acl` state event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAcl {
    /// Globs of server hosts allowed (empty: nobody).
    pub allow: Vec<String>,
    /// Globs of server hosts denied; deny wins over allow.
    pub deny: Vec<String>,
    /// Whether IP-literal server names may take part.
    pub allow_ip_literals: bool,
}

fn globs(content: &Object, key: &str) -> Vec<String> {
    match content.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl ServerAcl {
    /// The ACL an `m.room.server_acl` event's content describes (lenient, as Synapse).
    pub fn from_content(content: &Object) -> ServerAcl {
        ServerAcl {
            allow: globs(content, "allow"),
            deny: globs(content, "deny"),
            allow_ip_literals: !matches!(
                content.get("allow_ip_literals"),
                Some(Value::Bool(false))
            ),
        }
    }

    /// The ACL in force in `room`'s current state, if it has one.
    pub fn for_room(room: &Room) -> Option<ServerAcl> {
        let state = room.current_state_shared();
        let id = state.get(&(EVENT_TYPE.to_owned(), String::new()))?;
        let (pdu, rejected) = room.event(id)?;
        (!rejected).then(|| ServerAcl::from_content(pdu.content()))
    }

    /// Whether the server `server_name` (with or without a port) may take part in the room.
    pub fn allows(&self, server_name: &str) -> bool {
        let host = strip_port(server_name);
        if !self.allow_ip_literals && is_ip_literal(host) {
            return false;
        }
        if self.deny.iter().any(|g| glob_matches(g, host)) {
            return false;
        }
        self.allow.iter().any(|g| glob_matches(g, host))
    }
}

impl ServerAcl {
    /// [`ServerAcl::allows`] for the hosts (`mxfed acl check`, `mxfed.server_acl_allows`,
    /// `serverAclAllows`): the name must be a valid server name (with or without a port), as
    /// it is when it comes from a request's authenticated origin.
    ///
    /// ```
    /// use mxfed_core::acl::ServerAcl;
    /// let acl = ServerAcl { allow: vec!["*.example".into()], deny: vec![], allow_ip_literals: true };
    /// assert_eq!(acl.check("a.example:8448"), Ok(true));
    /// assert_eq!(acl.check("bad name").unwrap_err().code(), "bad_server_name");
    /// ```
    ///
    /// # Errors
    /// `bad_server_name` when `server_name` is not a valid server name.
    pub fn check(&self, server_name: &str) -> Result<bool, IdError> {
        validate_server_name(server_name)?;
        Ok(self.allows(server_name))
    }
}

/// Whether `room`'s ACL (if any) lets `server_name` take part.
pub fn room_allows(room: &Room, server_name: &str) -> bool {
    ServerAcl::for_room(room).is_none_or(|acl| acl.allows(server_name))
}

/// The host part of a server name: `[v6]` keeps its brackets, a trailing `:port` goes.
pub fn strip_port(server_name: &str) -> &str {
    if server_name.starts_with('[') {
        return match server_name.find(']') {
            Some(end) => server_name.get(..=end).unwrap_or(server_name),
            None => server_name,
        };
    }
    match server_name.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => server_name,
    }
}

/// An IPv4 literal or a bracketed IPv6 literal (as server names write them).
fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether `glob` (`*`, `?`) matches all of `name`, ignoring ASCII case.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let g: Vec<char> = glob.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative wildcard matching with one backtrack point: linear in practice, and never
    // exponential on hostile globs such as `*a*a*a*a*b`.
    let (mut gi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g.get(gi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{parse_object, ParseOptions};

    fn acl(json: &str) -> ServerAcl {
        ServerAcl::from_content(&parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap())
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*", "matrix.org"));
        assert!(glob_matches("*.org", "matrix.org"));
        assert!(!glob_matches("*.org", "matrix.org.evil"));
        assert!(glob_matches("matr?x.org", "matrix.org"));
        assert!(!glob_matches("matr?x.org", "matrx.org"));
        assert!(glob_matches("MATRIX.org", "matrix.ORG"));
        assert!(glob_matches("*a*b", "xaxxab"));
        assert!(!glob_matches("*a*b", "xaxxa"));
        assert!(glob_matches("**", "a"));
        assert!(!glob_matches("", "a"));
        assert!(glob_matches("", ""));
        assert!(glob_matches("a*", "a"));
        // A hostile glob does not blow up.
        let long = "a".repeat(200);
        assert!(!glob_matches(&format!("{}b", "*a".repeat(50)), &long));
    }

    /// The textbook recursive matcher (exponential, fine for short strings): the reference.
    fn naive(g: &[char], n: &[char]) -> bool {
        match (g.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => naive(&g[1..], n) || (!n.is_empty() && naive(g, &n[1..])),
            (Some('?'), Some(_)) => naive(&g[1..], &n[1..]),
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b) && naive(&g[1..], &n[1..]),
            _ => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_the_reference(g in "[aB.*?]{0,8}", n in "[Ab.]{0,10}") {
            let gc: Vec<char> = g.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            proptest::prop_assert_eq!(glob_matches(&g, &n), naive(&gc, &nc));
        }
    }

    #[test]
    fn ports() {
        assert_eq!(strip_port("example.org:8448"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:8448"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("1.2.3.4:80"), "1.2.3.4");
    }

    #[test]
    fn deny_wins_and_allow_defaults_to_nobody() {
        let a = acl(r#"{"allow":["*.example"],"deny":["bad.example"]}"#);
        assert!(a.allows("good.example"));
        assert!(a.allows("good.example:443"));
        assert!(!a.allows("bad.example"));
        assert!(!a.allows("bad.example:8448"));
        assert!(!a.allows("example.org"));
        // No allow list: nobody (the spec's default), e.g. a redacted ACL.
        assert!(!acl("{}").allows("good.example"));
        assert!(!acl(r#"{"deny":[]}"#).allows("good.example"));
    }

    #[test]
    fn ip_literals() {
        let open = acl(r#"{"allow":["*"]}"#);
        assert!(open.allows("1.2.3.4"));
        assert!(open.allows("[::1]:8448"));
        let closed = acl(r#"{"allow":["*"],"allow_ip_literals":false}"#);
        assert!(!closed.allows("1.2.3.4"));
        assert!(!closed.allows("1.2.3.4:8448"));
        assert!(!closed.allows("[::1]"));
        assert!(!closed.allows("[2001:db8::1]:443"));
        assert!(closed.allows("1.2.3.4.example"));
        // A deny glob can still name an IP literal when literals are allowed.
        let a = acl(r#"{"allow":["*"],"deny":["10.*"]}"#);
        assert!(!a.allows("10.0.0.1:8448"));
        assert!(a.allows("11.0.0.1"));
    }

    #[test]
    fn lenient_content() {
        // Non-strings are ignored, a non-list is empty, a non-boolean flag is the default.
        let a = acl(r#"{"allow":["*",1,null],"deny":"evil.example","allow_ip_literals":"no"}"#);
        assert_eq!(a.allow, vec!["*".to_owned()]);
        assert!(a.deny.is_empty());
        assert!(a.allow_ip_literals);
        assert!(a.allows("evil.example"));
        assert!(a.allows("1.2.3.4"));
    }
}
