//! Where the server enforces rooms' server ACLs (DIGEST §18.6); the matching itself is
//! [`mxfed_core::acl`]. Like Synapse:
//! - the room-scoped endpoints answer 403 `M_FORBIDDEN` to a denied origin ([`check_path`],
//!   called by the X-Matrix extractor once the origin is known);
//! - on `/send`, a denied origin's PDUs for the room get an error entry and are not processed,
//!   and its typing and receipt EDUs for the room are dropped ([`allows`]).
//!
//! A room we do not know has no ACL here (an invite to a new room, a join we are not resident
//! for): the handlers answer those as before.

use mxfed_core::acl;

use super::error::ApiError;
use super::fed::decode;
use super::AppState;

/// The federation endpoints that are about one room, by their path after
/// `/_matrix/federation/`: the room ID is the segment after the name.
const ROOM_ENDPOINTS: &[&str] = &[
    "v1/state",
    "v1/state_ids",
    "v1/backfill",
    "v1/get_missing_events",
    "v1/event_auth",
    "v1/timestamp_to_event",
    "v1/make_join",
    "v1/make_leave",
    "v1/make_knock",
    "v1/send_join",
    "v2/send_join",
    "v1/send_leave",
    "v2/send_leave",
    "v1/send_knock",
    "v1/invite",
    "v2/invite",
];

/// The error entry a denied origin's PDUs get in the `/send` answer (Synapse's words).
pub const DENIED: &str = "Server is banned from room";

/// The room ID of a room-scoped federation endpoint's path (percent-decoded), if it is one.
pub fn room_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/_matrix/federation/")?;
    let mut segs = rest.splitn(4, '/');
    let (version, name, room) = (segs.next()?, segs.next()?, segs.next()?);
    let endpoint = format!("{version}/{name}");
    ROOM_ENDPOINTS
        .contains(&endpoint.as_str())
        .then(|| decode(room))
        .filter(|r| !r.is_empty())
}

/// Whether `room_id`'s ACL (if we know the room) lets `origin` take part.
pub fn allows(state: &AppState, room_id: &str, origin: &str) -> bool {
    state
        .rooms()
        .get(room_id)
        .is_none_or(|room| acl::room_allows(room, origin))
}

/// 403 `M_FORBIDDEN` when `path` is a room-scoped endpoint of a room whose ACL denies `origin`.
///
/// # Errors
/// The 403 for a denied origin.
pub fn check_path(state: &AppState, path: &str, origin: &str) -> Result<(), ApiError> {
    match room_of_path(path) {
        Some(room) if !allows(state, &room, origin) => {
            state.metrics.acl_denied();
            Err(ApiError::forbidden(format!("{DENIED}: {room}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::room_of_path;

    #[test]
    fn room_scoped_paths() {
        let r = |p: &str| room_of_path(p);
        assert_eq!(
            r("/_matrix/federation/v1/state/!a:b.c").as_deref(),
            Some("!a:b.c")
        );
        assert_eq!(
            r("/_matrix/federation/v2/send_join/%21a%3Ab.c/$e").as_deref(),
            Some("!a:b.c")
        );
        assert_eq!(
            r("/_matrix/federation/v1/make_join/!a:b.c/@u:d").as_deref(),
            Some("!a:b.c")
        );
        assert_eq!(r("/_matrix/federation/v1/event/$e"), None);
        assert_eq!(r("/_matrix/federation/v1/send/txn1"), None);
        assert_eq!(r("/_matrix/federation/v1/state/"), None);
        assert_eq!(r("/_matrix/key/v2/server"), None);
    }
}
