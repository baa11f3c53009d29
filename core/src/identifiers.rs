//! Matrix identifiers ([spec appendix § Identifier grammar]): just enough validation to trust a
//! server name taken from a user ID, an event ID or a key response, and the stricter grammar a
//! server applies to identifiers it makes itself (new users) or is asked to name (an event to
//! redact, a room to join).
//!
//! [spec appendix § Identifier grammar]: https://spec.matrix.org/latest/appendices/#identifier-grammar

use crate::room_version::{EventIdFormat, RoomVersion};

/// Longest user, room or event ID, `type` or `state_key`, in bytes.
pub const MAX_ID_BYTES: usize = 255;

/// Why an identifier is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not `hostname[:port]` with a DNS name, IPv4 literal or `[IPv6]` literal.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// Not `@localpart:server_name`.
    #[error("invalid user ID {0:?}")]
    UserId(String),
    /// Not an event ID of the room version's format: `$opaque:server_name` (room versions
    /// 1–2), `$` and 43 characters of unpadded base64 (v3), of URL-safe unpadded base64 (v4+).
    #[error("invalid event ID {0:?}")]
    EventId(String),
    /// Not `!opaque` (with `:server_name` before room version 12) of at most 255 bytes.
    #[error("invalid room ID {0:?}")]
    RoomId(String),
    /// A user ID this server may not give a new user: it would be valid as a historical ID
    /// from another server, but not under today's grammar.
    #[error("user ID {user_id:?} cannot be given to a new user: {problem}")]
    NewUserId {
        /// The user ID asked for.
        user_id: String,
        /// What is wrong with it.
        problem: NewUserIdProblem,
    },
}

/// Why a user ID cannot be given to a new user ([`validate_new_user_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NewUserIdProblem {
    /// `@:server_name`.
    #[error("the localpart is empty")]
    EmptyLocalpart,
    /// A character outside `a-z 0-9 . _ = - / +` (upper case included).
    #[error("the localpart may only contain a-z, 0-9 and . _ = - / +")]
    LocalpartCharacters,
    /// Over [`MAX_ID_BYTES`].
    #[error("the user ID is {bytes} bytes long, over the 255 allowed")]
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
}

impl IdError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            IdError::ServerName(_) => "bad_server_name",
            IdError::UserId(_) => "bad_user_id",
            IdError::EventId(_) => "bad_event_id",
            IdError::RoomId(_) => "bad_room_id",
            IdError::NewUserId { .. } => "bad_new_user_id",
        }
    }
}

/// Checks a server name: `hostname [":" port]`, hostname a DNS name of `[A-Za-z0-9-.]`
/// (1–255 chars), an IPv4 literal, or a bracketed IPv6 literal; port 1–5 digits.
///
/// # Errors
/// [`IdError::ServerName`].
///
/// ```
/// use mxfed_core::identifiers::validate_server_name;
/// assert!(validate_server_name("localhost:8448").is_ok());
/// assert!(validate_server_name("[::1]:8448").is_ok());
/// assert!(validate_server_name("bad host").is_err());
/// ```
pub fn validate_server_name(s: &str) -> Result<(), IdError> {
    let bad = || IdError::ServerName(s.to_owned());
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(bad)?;
        let (v6, after) = (&rest[..end], &rest[end + 1..]);
        if v6.is_empty()
            || v6.len() > 45
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad());
        }
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if !s.starts_with('[')
        && (host.is_empty()
            || host.len() > 255
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return Err(bad());
    }
    Ok(())
}

/// The ID of the create event of a room version 12+ room: `$` and the room ID without its
/// sigil (the room ID is the create event's reference hash). `None` for an empty room ID.
pub(crate) fn create_event_id(room_id: &str) -> Option<String> {
    room_id.get(1..).map(|hash| format!("${hash}"))
}

/// The server name of a user ID `@localpart:server_name`. Historical localparts (any characters
/// but `:`) are accepted, as the spec requires inside events.
///
/// # Errors
/// [`IdError::UserId`] when the ID does not start with `@`, has no `:`, or its server name is
/// invalid.
pub fn user_server_name(user_id: &str) -> Result<&str, IdError> {
    let bad = || IdError::UserId(user_id.to_owned());
    let rest = user_id.strip_prefix('@').ok_or_else(bad)?;
    let (_, server) = rest.split_once(':').ok_or_else(bad)?;
    validate_server_name(server).map_err(|_| bad())?;
    Ok(server)
}

/// Checks a user ID for a new user of this server: a valid user ID whose localpart is not
/// empty and uses only today's grammar (`a-z 0-9 . _ = - / +`: no upper case), at most 255
/// bytes in all. Only for IDs a server makes: historical IDs from other servers (any character
/// but `:`, even an empty localpart) must still be accepted where IDs are read
/// ([`user_server_name`]).
///
/// # Errors
/// [`IdError::UserId`] for what is no user ID at all, else [`IdError::NewUserId`].
///
/// ```
/// use mxfed_core::identifiers::validate_new_user_id;
/// assert!(validate_new_user_id("@alice.smith_2=x/y+z-:example.org").is_ok());
/// assert!(validate_new_user_id("@:example.org").is_err());
/// assert!(validate_new_user_id("@Alice Smith:example.org").is_err());
/// assert!(validate_new_user_id(&format!("@{}:example.org", "a".repeat(300))).is_err());
/// ```
pub fn validate_new_user_id(user_id: &str) -> Result<(), IdError> {
    user_server_name(user_id)?;
    let problem = |problem| IdError::NewUserId {
        user_id: user_id.to_owned(),
        problem,
    };
    let localpart = split_user_id(user_id).map_or("", |(l, _)| l);
    if localpart.is_empty() {
        return Err(problem(NewUserIdProblem::EmptyLocalpart));
    }
    if !localpart
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".=_-/+".contains(&b))
    {
        return Err(problem(NewUserIdProblem::LocalpartCharacters));
    }
    if user_id.len() > MAX_ID_BYTES {
        return Err(problem(NewUserIdProblem::TooLong {
            bytes: user_id.len(),
        }));
    }
    Ok(())
}

/// Splits `@localpart:domain` at the first `:` and checks nothing else, as Synapse's
/// `UserID.from_string`: what the power-levels rule requires of the keys of `users` (Synapse
/// validates no more there, so `@x:bad host` and `@x:` pass).
///
/// ```
/// use mxfed_core::identifiers::split_user_id;
/// assert_eq!(split_user_id("@x:a:123456"), Some(("x", "a:123456")));
/// assert_eq!(split_user_id("@x:"), Some(("x", "")));
/// assert_eq!(split_user_id("x:a"), None);
/// assert_eq!(split_user_id("@x"), None);
/// ```
pub fn split_user_id(user_id: &str) -> Option<(&str, &str)> {
    user_id.strip_prefix('@')?.split_once(':')
}

/// The server name of a room version 1–2 event ID `$opaque:server_name`.
///
/// # Errors
/// [`IdError::EventId`].
pub fn event_id_server_name(event_id: &str) -> Result<&str, IdError> {
    let bad = || IdError::EventId(event_id.to_owned());
    let rest = event_id.strip_prefix('$').ok_or_else(bad)?;
    let (_, server) = rest.split_once(':').ok_or_else(bad)?;
    validate_server_name(server).map_err(|_| bad())?;
    Ok(server)
}

/// Checks an event ID against the format of its room's version: `$opaque:server_name` (v1–2,
/// [`event_id_server_name`]), else `$` and the 43 characters of the unpadded base64 of a
/// SHA-256 reference hash, standard (v3) or URL-safe (v4+); at most 255 bytes.
///
/// # Errors
/// [`IdError::EventId`].
///
/// ```
/// use mxfed_core::identifiers::validate_event_id;
/// use mxfed_core::RoomVersion;
/// let v12 = RoomVersion::get("12").unwrap();
/// assert!(validate_event_id("$Ws5wI8VQ4U-2yZRDPy6GRBMmovN_-Uq2uwJRWu-qJs4", v12).is_ok());
/// assert!(validate_event_id("not-an-id", v12).is_err());
/// assert!(validate_event_id("$x:example.org", RoomVersion::get("1").unwrap()).is_ok());
/// ```
pub fn validate_event_id(event_id: &str, v: &RoomVersion) -> Result<(), IdError> {
    let bad = || IdError::EventId(event_id.to_owned());
    if event_id.len() > MAX_ID_BYTES {
        return Err(bad());
    }
    let extra: &[u8] = match v.event_id_format {
        EventIdFormat::Explicit => return event_id_server_name(event_id).map(|_| ()),
        EventIdFormat::ReferenceHashStd => b"+/",
        _ => b"-_",
    };
    let hash = event_id.strip_prefix('$').ok_or_else(bad)?;
    // 32 bytes of SHA-256 are 43 characters of unpadded base64.
    if hash.len() != 43
        || !hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        return Err(bad());
    }
    Ok(())
}

/// Checks a room ID whose room version is not known yet (a room to join): `!` and a non-empty
/// opaque part, at most 255 bytes; when it names a server (`!opaque:server_name`, before room
/// version 12), a valid server name.
///
/// # Errors
/// [`IdError::RoomId`].
///
/// ```
/// use mxfed_core::identifiers::validate_room_id;
/// assert!(validate_room_id("!abc:example.org").is_ok());
/// assert!(validate_room_id("!Ws5wI8VQ4U-2yZRDPy6GRBMmovN_-Uq2uwJRWu-qJs4").is_ok());
/// assert!(validate_room_id("notaroom").is_err());
/// assert!(validate_room_id("!").is_err());
/// assert!(validate_room_id("!abc:bad host").is_err());
/// ```
pub fn validate_room_id(room_id: &str) -> Result<(), IdError> {
    let bad = || IdError::RoomId(room_id.to_owned());
    let rest = room_id.strip_prefix('!').ok_or_else(bad)?;
    let opaque = match rest.split_once(':') {
        Some((opaque, server)) => {
            validate_server_name(server).map_err(|_| bad())?;
            opaque
        }
        None => rest,
    };
    if opaque.is_empty() || room_id.len() > MAX_ID_BYTES {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_user_ids_follow_todays_grammar_and_length() {
        let at_limit = format!("@{}:example.org", "a".repeat(MAX_ID_BYTES - 13));
        assert_eq!(at_limit.len(), MAX_ID_BYTES);
        assert_eq!(validate_new_user_id(&at_limit), Ok(()));
        let over = format!("@{}:example.org", "a".repeat(MAX_ID_BYTES - 12));
        assert!(matches!(
            validate_new_user_id(&over),
            Err(IdError::NewUserId {
                problem: NewUserIdProblem::TooLong { bytes: 256 },
                ..
            })
        ));
        for bad in ["@Alice:example.org", "@a b:example.org", "@é:example.org"] {
            assert!(matches!(
                validate_new_user_id(bad),
                Err(IdError::NewUserId {
                    problem: NewUserIdProblem::LocalpartCharacters,
                    ..
                })
            ));
        }
        assert!(matches!(
            validate_new_user_id("@:example.org"),
            Err(IdError::NewUserId {
                problem: NewUserIdProblem::EmptyLocalpart,
                ..
            })
        ));
        assert!(matches!(
            validate_new_user_id("alice"),
            Err(IdError::UserId(_))
        ));
        // What is refused to a new user is still read from other servers.
        assert_eq!(
            user_server_name("@Alice Smith:example.org"),
            Ok("example.org")
        );
    }

    #[test]
    fn room_ids_have_a_sigil_an_opaque_part_and_at_most_255_bytes() {
        let at_limit = format!("!{}:example.org", "a".repeat(MAX_ID_BYTES - 13));
        assert_eq!(validate_room_id(&at_limit), Ok(()));
        assert!(validate_room_id(&format!("{at_limit}a")).is_err());
        assert_eq!(validate_room_id(&format!("!{}", "a".repeat(254))), Ok(()));
        assert!(validate_room_id(&format!("!{}", "a".repeat(255))).is_err());
        for bad in [
            "",
            "!",
            "!:example.org",
            "!abc:",
            "notaroom",
            "$abc:example.org",
        ] {
            assert_eq!(validate_room_id(bad), Err(IdError::RoomId(bad.into())));
        }
    }

    #[test]
    fn event_ids_follow_the_room_versions_format() {
        let v = |id| RoomVersion::get(id).unwrap();
        let std = format!("${}", "A+/".repeat(14) + "a");
        let url = format!("${}", "A-_".repeat(14) + "a");
        assert_eq!(validate_event_id(&std, v("3")), Ok(()));
        assert!(validate_event_id(&url, v("3")).is_err());
        assert_eq!(validate_event_id(&url, v("4")), Ok(()));
        assert!(validate_event_id(&std, v("11")).is_err());
        assert!(validate_event_id(&url[..url.len() - 1], v("12")).is_err());
        assert!(validate_event_id("$x:example.org", v("12")).is_err());
        assert_eq!(validate_event_id("$x:example.org", v("2")), Ok(()));
        assert!(validate_event_id("$x", v("1")).is_err());
        assert!(validate_event_id("", v("12")).is_err());
    }
}
