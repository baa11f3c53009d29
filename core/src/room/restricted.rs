//! Restricted joins as the resident server (room versions 8+, `knock_restricted` from 10; spec
//! § Restricted rooms, DIGEST §18.1): when a user of another server asks `make_join` for a room
//! whose join rule is `restricted` or `knock_restricted` and is neither joined nor invited, the
//! resident checks that the user is joined to one of the rooms the `allow` list names, and names
//! one of its own users with the power to invite in `join_authorised_via_users_server`. It then
//! countersigns the join in `send_join`, before storing or sending it.
//!
//! The room decides; the host says which users are its own and what it knows of the allowed
//! rooms.
//!
//! ```
//! use mxfed_core::room::{RestrictedJoin, Room};
//! use mxfed_core::RoomVersion;
//! let room = Room::new(RoomVersion::get("10").unwrap());
//! // No join rule at all: nothing to authorise.
//! let d = room.restricted_join("@u:b", |_| true, |_| None);
//! assert_eq!(d, Ok(RestrictedJoin::NotNeeded));
//! ```

use super::Room;
use crate::auth::Levels;

/// What the resident server does about a join (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestrictedJoin {
    /// No authorisation: the room is not restricted, or the user is already joined or invited.
    NotNeeded,
    /// Put this local user in `join_authorised_via_users_server` and countersign.
    Via(String),
}

/// Why the resident server cannot authorise a restricted join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestrictedJoinError {
    /// The user is joined to none of the allowed rooms we are in, and another server could
    /// know better: we are not in every allowed room, or an allow entry is of a type we do not
    /// understand (400 `M_UNABLE_TO_AUTHORISE_JOIN`: the joining server may ask another).
    #[error("this server cannot check every rule that allows joining")]
    UnableToAuthorise,
    /// The user is joined to none of the allowed rooms, all of which we are in (403
    /// `M_FORBIDDEN`).
    #[error("the user is not joined to any of the rooms that allow joining")]
    NotAllowed,
    /// None of our joined users has the power to invite (400 `M_UNABLE_TO_GRANT_JOIN`).
    #[error("no user of this server may authorise the join")]
    UnableToGrant,
}

impl RestrictedJoinError {
    /// The stable reason code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            RestrictedJoinError::UnableToAuthorise => "restricted_unable_to_authorise",
            RestrictedJoinError::NotAllowed => "restricted_not_allowed",
            RestrictedJoinError::UnableToGrant => "restricted_unable_to_grant",
        }
    }
}

impl Room {
    /// Decides a `make_join` of `user_id` as the resident server. `is_local` says whether a user
    /// is ours; `joined_to(room_id)` is `None` when this server cannot tell (none of its users is
    /// joined to that room), else whether `user_id` is joined to it in its current state.
    ///
    /// # Errors
    /// [`RestrictedJoinError`] when the join cannot be authorised by us.
    pub fn restricted_join(
        &self,
        user_id: &str,
        is_local: impl Fn(&str) -> bool,
        joined_to: impl Fn(&str) -> Option<bool>,
    ) -> Result<RestrictedJoin, RestrictedJoinError> {
        let v = self.version;
        let state = self.current_state_shared();
        let get = |t: &str| {
            state
                .get(&(t.to_owned(), String::new()))
                .and_then(|id| self.events.get(id)?.pdu())
        };
        let Some(rules) = get("m.room.join_rules") else {
            return Ok(RestrictedJoin::NotNeeded);
        };
        let rule = rules.content().get_str("join_rule").unwrap_or("");
        let restricted = (v.restricted_join_rule && rule == "restricted")
            || (v.knock_restricted_join_rule && rule == "knock_restricted");
        if !restricted || matches!(self.membership(user_id).as_deref(), Some("join" | "invite")) {
            return Ok(RestrictedJoin::NotNeeded);
        }
        let allow: Vec<&crate::canonical::Object> = rules
            .content()
            .get("allow")
            .and_then(crate::canonical::Value::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(crate::canonical::Value::as_object)
            .collect();
        let is_membership =
            |a: &crate::canonical::Object| a.get_str("type") == Some("m.room_membership");
        let answers: Vec<Option<bool>> = allow
            .iter()
            .filter(|a| is_membership(a))
            .filter_map(|a| a.get_str("room_id"))
            .map(&joined_to)
            .collect();
        if !answers.contains(&Some(true)) {
            // As Synapse: a refusal is final (403) only when nobody else could authorise the
            // join: every allow entry is one we understand and we are in every allowed room.
            // Otherwise 400 `M_UNABLE_TO_AUTHORISE_JOIN`, on which the joining server asks
            // another resident.
            let unknown_rules = allow.iter().any(|a| !is_membership(a));
            return Err(if unknown_rules || answers.contains(&None) {
                RestrictedJoinError::UnableToAuthorise
            } else {
                RestrictedJoinError::NotAllowed
            });
        }
        let levels = Levels::new(v, get("m.room.power_levels"), get("m.room.create"));
        let Ok(needed) = levels.named("invite", 0) else {
            return Err(RestrictedJoinError::UnableToGrant);
        };
        // The most powerful of our joined users, ties broken by user ID (deterministic).
        self.members_by(|m| m == "join")
            .into_iter()
            .filter(|u| is_local(u))
            .filter_map(|u| Some((levels.user(&u).ok()?, u)))
            .filter(|(l, _)| *l >= needed)
            .max_by(|(la, ua), (lb, ub)| la.cmp(lb).then(ub.cmp(ua)))
            .map(|(_, u)| RestrictedJoin::Via(u))
            .ok_or(RestrictedJoinError::UnableToGrant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::testing::build;
    use crate::room::{RoomVerdict, ServerView};
    use crate::RoomVersion;

    /// Builds and receives an event of server "a" (any sender: the room does not check
    /// signatures) on top of the room's extremities and current state.
    fn send(room: &mut Room, ty: &str, sender: &str, sk: Option<&str>, c: &str) -> String {
        let (b, check) = build(room, ty, sender, sk, c, None, 1);
        assert_eq!(room.receive(&check), RoomVerdict::Accepted, "{ty} {c}");
        b.event_id
    }

    fn room(join_rules: &str, visibility: &str) -> Room {
        let mut room = Room::new(RoomVersion::get("10").unwrap());
        send(
            &mut room,
            "m.room.create",
            "@u:a",
            Some(""),
            r#"{"creator":"@u:a","room_version":"10"}"#,
        );
        send(
            &mut room,
            "m.room.member",
            "@u:a",
            Some("@u:a"),
            r#"{"membership":"join"}"#,
        );
        send(
            &mut room,
            "m.room.power_levels",
            "@u:a",
            Some(""),
            r#"{"users":{"@u:a":100,"@mod:a":50},"invite":50}"#,
        );
        let public = r#"{"join_rule":"public"}"#;
        send(&mut room, "m.room.join_rules", "@u:a", Some(""), public);
        send(
            &mut room,
            "m.room.member",
            "@mod:a",
            Some("@mod:a"),
            r#"{"membership":"join"}"#,
        );
        send(
            &mut room,
            "m.room.member",
            "@low:a",
            Some("@low:a"),
            r#"{"membership":"join"}"#,
        );
        send(&mut room, "m.room.join_rules", "@u:a", Some(""), join_rules);
        let hv = format!(r#"{{"history_visibility":"{visibility}"}}"#);
        send(
            &mut room,
            "m.room.history_visibility",
            "@u:a",
            Some(""),
            &hv,
        );
        room
    }

    const RESTRICTED: &str =
        r#"{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!space:a"}]}"#;

    #[test]
    fn resident_picks_its_most_powerful_inviter() {
        let room = room(RESTRICTED, "shared");
        let local = |u: &str| u.ends_with(":a");
        let in_space = |r: &str| (r == "!space:a").then_some(true);
        assert_eq!(
            room.restricted_join("@bob:b", local, in_space),
            Ok(RestrictedJoin::Via("@u:a".into()))
        );
        // Only users of ours count, and only those who may invite.
        assert_eq!(
            room.restricted_join("@bob:b", |u| u == "@mod:a" || u == "@low:a", in_space),
            Ok(RestrictedJoin::Via("@mod:a".into()))
        );
        assert_eq!(
            room.restricted_join("@bob:b", |u| u == "@low:a", in_space),
            Err(RestrictedJoinError::UnableToGrant)
        );
        assert_eq!(
            room.restricted_join("@bob:b", local, |_| Some(false)),
            Err(RestrictedJoinError::NotAllowed)
        );
        assert_eq!(
            room.restricted_join("@bob:b", local, |_| None),
            Err(RestrictedJoinError::UnableToAuthorise)
        );
        // Two allowed rooms: not joined to the one we are in, and we are not in the other, so
        // another server may know better (400, as Synapse); in both and joined to neither: 403.
        let two = self::room(
            r#"{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!space:a"},{"type":"m.room_membership","room_id":"!other:c"}]}"#,
            "shared",
        );
        let only_space = |r: &str| (r == "!space:a").then_some(false);
        assert_eq!(
            two.restricted_join("@bob:b", local, only_space),
            Err(RestrictedJoinError::UnableToAuthorise)
        );
        assert_eq!(
            two.restricted_join("@bob:b", local, |_| Some(false)),
            Err(RestrictedJoinError::NotAllowed)
        );
        assert_eq!(
            two.restricted_join("@bob:b", local, |r| Some(r == "!other:c")),
            Ok(RestrictedJoin::Via("@u:a".into()))
        );
        // An allow entry of a type we do not understand: someone else may (400).
        let unknown = self::room(
            r#"{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!space:a"},{"type":"org.example.rule"}]}"#,
            "shared",
        );
        assert_eq!(
            unknown.restricted_join("@bob:b", local, |_| Some(false)),
            Err(RestrictedJoinError::UnableToAuthorise)
        );
        // No allowed room at all, nothing unknown: nobody can authorise it (403, as Synapse).
        let none = self::room(r#"{"join_rule":"restricted","allow":[]}"#, "shared");
        assert_eq!(
            none.restricted_join("@bob:b", local, |_| None),
            Err(RestrictedJoinError::NotAllowed)
        );
        // Already joined: nothing to authorise.
        assert_eq!(
            room.restricted_join("@low:a", local, |_| None),
            Ok(RestrictedJoin::NotNeeded)
        );
        let public = self::room(r#"{"join_rule":"public"}"#, "shared");
        assert_eq!(
            public.restricted_join("@bob:b", local, |_| None),
            Ok(RestrictedJoin::NotNeeded)
        );
        assert_eq!(
            RestrictedJoinError::NotAllowed.code(),
            "restricted_not_allowed"
        );
    }

    #[test]
    fn server_view_follows_the_state_after_each_event() {
        let mut room = room(r#"{"join_rule":"public"}"#, "joined");
        let before = send(&mut room, "m.room.message", "@u:a", None, r#"{"body":"x"}"#);
        let invite = send(
            &mut room,
            "m.room.member",
            "@u:a",
            Some("@bob:b"),
            r#"{"membership":"invite"}"#,
        );
        let join = send(
            &mut room,
            "m.room.member",
            "@bob:b",
            Some("@bob:b"),
            r#"{"membership":"join"}"#,
        );
        let after = send(&mut room, "m.room.message", "@u:a", None, r#"{"body":"y"}"#);
        let view = |id: &str| room.server_view(id, "b");
        assert_eq!(view(&before), Some(ServerView::Redacted));
        assert_eq!(
            view(&invite),
            Some(ServerView::Redacted),
            "invited is not joined"
        );
        assert_eq!(view(&join), Some(ServerView::Full));
        assert_eq!(view(&after), Some(ServerView::Full));
        assert_eq!(room.server_view(&before, "a"), Some(ServerView::Full));
        assert_eq!(room.server_view("$unknown", "b"), None);

        let mut invited = self::room(r#"{"join_rule":"public"}"#, "invited");
        let before = send(
            &mut invited,
            "m.room.message",
            "@u:a",
            None,
            r#"{"body":"x"}"#,
        );
        let invite = send(
            &mut invited,
            "m.room.member",
            "@u:a",
            Some("@bob:b"),
            r#"{"membership":"invite"}"#,
        );
        assert_eq!(
            invited.server_view(&before, "b"),
            Some(ServerView::Redacted)
        );
        assert_eq!(invited.server_view(&invite, "b"), Some(ServerView::Full));
    }
}
