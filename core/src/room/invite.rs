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

use crate::canonical::{Object, Value};
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

/// Whether `pdu` withdraws `invite` (whose event ID is `invite_id`), for the invitee's server
/// when it is not in the room: a leave of the invitee sent by the invite's sender, citing the
/// invite among its auth events. Such a server cannot check the leave against the room's rules
/// (it has none of the room's state), only that whoever invited withdraws it — Synapse's rule
/// (`FederationEventHandler.on_receive_pdu`); the PDU's signatures and hashes are checked
/// before. Auth events of room versions 1 and 2 (`[id, hashes]` pairs) and later (IDs) are read.
pub fn rescinds_invite(pdu: &Object, invite: &Object, invite_id: &str) -> bool {
    let membership = |e: &Object| {
        e.get_object("content")
            .and_then(|c| c.get_str("membership"))
            .map(str::to_owned)
    };
    let cites_invite = pdu
        .get("auth_events")
        .and_then(Value::as_array)
        .is_some_and(|auth| {
            auth.iter().any(|a| {
                let id = match a {
                    Value::Array(pair) => pair.first().and_then(Value::as_str),
                    other => other.as_str(),
                };
                id == Some(invite_id)
            })
        });
    let invitee = invite.get_str("state_key");
    pdu.get_str("type") == Some("m.room.member")
        && invite.get_str("type") == Some("m.room.member")
        && membership(invite).as_deref() == Some("invite")
        && membership(pdu).as_deref() == Some("leave")
        && invitee.is_some()
        && pdu.get_str("state_key") == invitee
        && pdu.get_str("sender") != invitee
        && pdu.get_str("sender").is_some()
        && pdu.get_str("sender") == invite.get_str("sender")
        && pdu.get_str("room_id").is_some()
        && pdu.get_str("room_id") == invite.get_str("room_id")
        && cites_invite
}

#[cfg(test)]
mod rescission_tests {
    use super::*;
    use crate::canonical::{parse_object, ParseOptions};

    fn obj(s: &str) -> Object {
        parse_object(s.as_bytes(), &ParseOptions::LEGACY).unwrap_or_default()
    }

    const INVITE: &str = r#"{"type":"m.room.member","room_id":"!r:a","sender":"@a:a","state_key":"@b:b","content":{"membership":"invite"}}"#;

    fn leave(sender: &str, auth: &str) -> Object {
        obj(&format!(
            r#"{{"type":"m.room.member","room_id":"!r:a","sender":"{sender}","state_key":"@b:b","content":{{"membership":"leave"}},"auth_events":{auth}}}"#
        ))
    }

    #[test]
    fn the_inviter_withdraws_an_invite_it_cites() {
        let invite = obj(INVITE);
        assert!(rescinds_invite(
            &leave("@a:a", r#"["$c","$inv"]"#),
            &invite,
            "$inv"
        ));
        // Room versions 1 and 2 cite auth events as [id, hashes] pairs.
        let v1 = leave("@a:a", r#"[["$c",{}],["$inv",{"sha256":"x"}]]"#);
        assert!(rescinds_invite(&v1, &invite, "$inv"));
    }

    #[test]
    fn anything_else_withdraws_nothing() {
        let invite = obj(INVITE);
        // Not citing the invite; someone else; the invitee's own leave (a rejection).
        assert!(!rescinds_invite(
            &leave("@a:a", r#"["$c"]"#),
            &invite,
            "$inv"
        ));
        assert!(!rescinds_invite(
            &leave("@x:a", r#"["$inv"]"#),
            &invite,
            "$inv"
        ));
        assert!(!rescinds_invite(
            &leave("@b:b", r#"["$inv"]"#),
            &invite,
            "$inv"
        ));
        // Another room; a ban; an invite that is none.
        let mut other_room = leave("@a:a", r#"["$inv"]"#);
        other_room.insert("room_id", "!s:a");
        assert!(!rescinds_invite(&other_room, &invite, "$inv"));
        let mut ban = leave("@a:a", r#"["$inv"]"#);
        ban.insert("content", obj(r#"{"membership":"ban"}"#));
        assert!(!rescinds_invite(&ban, &invite, "$inv"));
        let join = obj(&INVITE.replace("\"invite\"", "\"join\""));
        assert!(!rescinds_invite(
            &leave("@a:a", r#"["$inv"]"#),
            &join,
            "$inv"
        ));
    }
}
