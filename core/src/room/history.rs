//! History: what another server may see of a room's past (`m.room.history_visibility`), and the
//! events a joining server fetches with `/backfill` to show what was said before it joined.
//!
//! The visibility rule is Synapse's `filter_events_for_server` (spec § Server behaviour of
//! history visibility): an event is judged by the state *after* it. Under `world_readable` and
//! `shared` (and any value we do not know, as Synapse) every server may see it; under `invited`
//! a server may see it when one of its users is joined or invited in that state; under `joined`
//! only when one of its users is joined. What a server may not see is served redacted
//! (`/backfill`, `/event`, `/get_missing_events`) or refused (`/state`, `/state_ids`) by the host.
//! Outliers and backfilled events have no state of their own here: like Synapse, they count as
//! `shared`.
//!
//! Backfilled events are checked against their own auth events, as outliers are: they never
//! become forward extremities and never change the current state.
//!
//! ```
//! use mxfed_core::room::{server_may_see, HistoryVisibility};
//! let vis = HistoryVisibility::parse(Some("joined"));
//! assert!(!server_may_see(vis, ["invite"]));
//! assert!(server_may_see(vis, ["leave", "join"]));
//! assert!(server_may_see(HistoryVisibility::parse(None), []));
//! ```

use super::{Room, RoomVerdict};
use crate::canonical::Object;
use crate::pdu::PduCheck;
use crate::state_res::StateMap;

/// The values of `m.room.history_visibility` (spec § Room history visibility).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryVisibility {
    /// Anyone may read, members or not.
    WorldReadable,
    /// Members may read everything, also what was said before they joined (the default).
    Shared,
    /// Members may read from the point they were invited.
    Invited,
    /// Members may read from the point they joined.
    Joined,
}

impl HistoryVisibility {
    /// The visibility named by an event's `history_visibility`: `shared` when there is none or
    /// when the value is unknown (Synapse treats every value but `invited` and `joined` as open).
    pub fn parse(value: Option<&str>) -> HistoryVisibility {
        match value {
            Some("world_readable") => HistoryVisibility::WorldReadable,
            Some("invited") => HistoryVisibility::Invited,
            Some("joined") => HistoryVisibility::Joined,
            _ => HistoryVisibility::Shared,
        }
    }

    /// The spec's name of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryVisibility::WorldReadable => "world_readable",
            HistoryVisibility::Shared => "shared",
            HistoryVisibility::Invited => "invited",
            HistoryVisibility::Joined => "joined",
        }
    }
}

/// Whether a server may see an event, given the visibility in force after the event and the
/// memberships (after the event) of that server's users.
pub fn server_may_see<'a>(
    visibility: HistoryVisibility,
    memberships: impl IntoIterator<Item = &'a str>,
) -> bool {
    match visibility {
        HistoryVisibility::WorldReadable | HistoryVisibility::Shared => true,
        HistoryVisibility::Invited => memberships
            .into_iter()
            .any(|m| m == "join" || m == "invite"),
        HistoryVisibility::Joined => memberships.into_iter().any(|m| m == "join"),
    }
}

/// [`server_may_see`] for the hosts (`mxfed history may-see`, `mxfed.server_may_see`,
/// `serverMaySee`): `{"history_visibility": <the value as understood>, "may_see": bool}` for the
/// event's `history_visibility` value (`None`: no such event) and the memberships of the
/// server's users.
///
/// ```
/// use mxfed_core::room::server_may_see_json;
/// let o = server_may_see_json(Some("foo"), &[]);
/// assert_eq!(o.to_canonical_string(), r#"{"history_visibility":"shared","may_see":true}"#);
/// ```
pub fn server_may_see_json(value: Option<&str>, memberships: &[&str]) -> Object {
    let visibility = HistoryVisibility::parse(value);
    let mut o = Object::new();
    o.insert("history_visibility", visibility.as_str());
    o.insert(
        "may_see",
        server_may_see(visibility, memberships.iter().copied()),
    );
    o
}

/// How an event is to be served to a given server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerView {
    /// As it is.
    Full,
    /// Redacted (`/backfill`, `/event`, `/get_missing_events`), or withheld where a redacted
    /// copy makes no sense (`/state`, `/state_ids`).
    Redacted,
}

impl Room {
    /// How a known event is to be served to `server` (see the module docs); `None` when the
    /// event is unknown.
    pub fn server_view(&self, event_id: &str, server: &str) -> Option<ServerView> {
        let stored = self.events.get(event_id)?;
        if self.outliers.contains(event_id) {
            return Some(ServerView::Full);
        }
        let state = &stored.state_after;
        let visibility = HistoryVisibility::parse(
            state
                .get(&("m.room.history_visibility".to_owned(), String::new()))
                .and_then(|id| self.events.get(id)?.pdu())
                .and_then(|p| p.content().get_str("history_visibility")),
        );
        let memberships = state
            .iter()
            .filter(|((t, k), _)| {
                t == "m.room.member"
                    && crate::identifiers::user_server_name(k).is_ok_and(|s| s == server)
            })
            .filter_map(|(_, id)| self.events.get(id)?.pdu()?.membership());
        Some(if server_may_see(visibility, memberships) {
            ServerView::Full
        } else {
            ServerView::Redacted
        })
    }

    /// Stores an event fetched with `/backfill`: checked against its own auth events like an
    /// outlier (whose auth events must be known first), never a forward extremity, never part
    /// of the current state, but part of the room's history ([`Room::is_backfilled`]). An event
    /// already known as an outlier becomes history; any other known event is left as it is.
    pub fn add_backfilled(&mut self, check: &PduCheck) -> RoomVerdict {
        let known = check
            .event_id
            .as_deref()
            .is_some_and(|id| self.events.contains_key(id));
        if known {
            let id = check.event_id.clone().unwrap_or_default();
            if self.outliers.contains(&id) {
                let rejected = self.events.get(&id).is_some_and(|s| s.rejected);
                if !rejected {
                    self.backfilled.insert(id);
                }
            }
            return RoomVerdict::Accepted;
        }
        let verdict = self.add_outlier(check);
        if matches!(verdict, RoomVerdict::Accepted | RoomVerdict::Redacted) {
            if let Some(id) = &check.event_id {
                self.backfilled.insert(id.clone());
            }
        }
        verdict
    }

    /// Takes in our own join with the state of the `send_join` answer. The room's current state
    /// starts again from it: the forward extremities we had from an earlier membership (left
    /// since, so the join's prev events do not reach them) are dropped first, as Synapse's
    /// `clean_room_for_join` does; resolved against the join they could undo it. A first join
    /// has none. A rejected join leaves them as they were.
    pub fn receive_own_join(&mut self, check: &PduCheck, state_before: StateMap) -> RoomVerdict {
        let earlier = std::mem::take(&mut self.extremities);
        // The answer's state as it is, as Synapse's `process_remote_join` takes it: resolved
        // with states the room kept from an earlier membership, it could undo the join.
        let verdict = self.receive_given(check, state_before, false);
        if matches!(verdict, RoomVerdict::Rejected { .. }) {
            self.extremities = earlier;
        } else {
            for id in earlier {
                self.compact(&id);
            }
        }
        verdict
    }

    /// Whether an event was taken in through [`Room::add_backfilled`].
    pub fn is_backfilled(&self, id: &str) -> bool {
        self.backfilled.contains(id)
    }

    /// The auth events an event cites that the room does not know (fetch them before
    /// [`Room::add_backfilled`]).
    pub fn unknown_auth_events(&self, auth_event_ids: &[&str]) -> Vec<String> {
        auth_event_ids
            .iter()
            .filter(|id| !self.events.contains_key(**id))
            .map(|id| (*id).to_owned())
            .collect()
    }

    /// Where to start `/backfill` for a join citing `prev_event_ids`: those the room does not
    /// have as accepted history yet (unknown, or known only as outliers).
    pub fn backfill_points(&self, prev_event_ids: &[&str]) -> Vec<String> {
        prev_event_ids
            .iter()
            .filter(|p| !self.backfilled.contains(**p))
            .filter(|p| !self.events.contains_key(**p) || self.outliers.contains(**p))
            .map(|p| (*p).to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_synapse() {
        use HistoryVisibility::*;
        for (vis, members, want) in [
            (WorldReadable, &[][..], true),
            (Shared, &[][..], true),
            (Shared, &["leave"][..], true),
            (Invited, &[][..], false),
            (Invited, &["invite"][..], true),
            (Invited, &["join"][..], true),
            (Invited, &["leave", "ban"][..], false),
            (Joined, &["invite"][..], false),
            (Joined, &["knock", "join"][..], true),
            (Joined, &[][..], false),
        ] {
            assert_eq!(
                server_may_see(vis, members.iter().copied()),
                want,
                "{vis:?} {members:?}"
            );
        }
        assert_eq!(HistoryVisibility::parse(Some("nonsense")), Shared);
        assert_eq!(
            HistoryVisibility::parse(Some("invited")).as_str(),
            "invited"
        );
    }
}
