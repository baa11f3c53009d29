//! The v1 `/invite` fallback (DIGEST §18; Synapse's `FederationClient.send_invite`): a server
//! that does not know `PUT /_matrix/federation/v2/invite` answers 404 (or 400) with
//! `M_UNRECOGNIZED` or no Matrix error at all. For rooms whose events carry their own event IDs
//! (versions 1 and 2, the only ones the v1 endpoint can express) the inviting server then sends
//! the event alone to `PUT /_matrix/federation/v1/invite` and reads the answer from
//! `[200, {"event": …}]`; for later versions the invitee's server cannot join the room anyway.
//!
//! ```
//! use mxfed_core::room::{invite_fallback, InviteFallback};
//! use mxfed_core::RoomVersion;
//! let v1 = RoomVersion::get("1").unwrap();
//! assert_eq!(invite_fallback(404, Some("M_UNRECOGNIZED"), v1), InviteFallback::UseV1);
//! assert_eq!(invite_fallback(403, Some("M_FORBIDDEN"), v1), InviteFallback::No);
//! ```

use crate::room_version::{EventIdFormat, RoomVersion};

/// What to do after `/v2/invite` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InviteFallback {
    /// A real refusal (or a failure we do not fall back on): report it.
    No,
    /// The server does not know `/v2/invite` and the room fits `/v1/invite`: send it there.
    UseV1,
    /// The server does not know `/v2/invite`, and so no room version after 2: 400
    /// `M_UNSUPPORTED_ROOM_VERSION`.
    Unsupported,
}

/// Decides the fallback from the HTTP status of the `/v2/invite` answer and its `errcode`.
pub fn invite_fallback(status: u16, errcode: Option<&str>, v: &RoomVersion) -> InviteFallback {
    let unknown_endpoint =
        matches!(status, 400 | 404) && matches!(errcode, None | Some("M_UNRECOGNIZED"));
    if !unknown_endpoint {
        InviteFallback::No
    } else if v.event_id_format == EventIdFormat::Explicit {
        InviteFallback::UseV1
    } else {
        InviteFallback::Unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_only_for_an_unknown_endpoint_and_old_rooms() {
        let v1 = RoomVersion::get("1").unwrap();
        let v2 = RoomVersion::get("2").unwrap();
        let v10 = RoomVersion::get("10").unwrap();
        assert_eq!(invite_fallback(404, None, v2), InviteFallback::UseV1);
        assert_eq!(
            invite_fallback(400, Some("M_UNRECOGNIZED"), v1),
            InviteFallback::UseV1
        );
        assert_eq!(
            invite_fallback(404, Some("M_UNRECOGNIZED"), v10),
            InviteFallback::Unsupported
        );
        assert_eq!(
            invite_fallback(400, Some("M_INCOMPATIBLE_ROOM_VERSION"), v1),
            InviteFallback::No
        );
        assert_eq!(invite_fallback(500, None, v1), InviteFallback::No);
    }
}
