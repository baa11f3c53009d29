//! Compact history: a long-lived [`Room`] need not hold the body of every message it has seen.
//!
//! The room reads full bodies of state events (auth checks, state resolution, memberships,
//! history visibility), of redactions (whether one applies), and of its forward extremities
//! (what a new event cites, with their reference hashes in room versions 1 and 2). Of any
//! other event — a message deep in the timeline — it reads only its place in the DAG: depth,
//! `prev_events` and `auth_events` (walks for `/backfill`, `/get_missing_events`,
//! `/event_auth`, the state before it), its type, room and sender (whether a redaction of it
//! applies; what the auth checks of an event that cites it as an auth event see), and its
//! verdict and state after, which [`Stored`] keeps anyway.
//!
//! With [`Room::set_compact_history`] such an event keeps only that, from the moment it stops
//! being a forward extremity (at once if it never becomes one: rejected, soft-failed, or taken in
//! after an event that cites it). Every verdict, state and walk stays what it was; what changes
//! is that [`Room::event`] has no body for it ([`Room::has_body`]), and the walks that return
//! events ([`Room::backfill`], [`Room::missing_events`], [`Room::auth_chain`]) leave it out: a
//! host that compacts keeps the bodies in its storage and uses the walks that return IDs
//! ([`Room::backfill_ids`], [`Room::missing_event_ids`], [`Room::auth_chain_ids`]). Strings
//! most events share (type, room, sender, the list of auth events) are stored once.
//!
//! Outliers are never compacted (they are state events, auth chains, backfilled history), nor
//! are non-state events named in a state the host gives ([`Room::receive_with_state`]): state
//! resolution may read those. A state given later that names a message already compacted
//! (no honest server sends one) finds it unknown to state resolution.
//!
//! ```
//! use mxfed_core::room::Room;
//! use mxfed_core::RoomVersion;
//! let mut room = Room::new(RoomVersion::get("10").unwrap());
//! room.set_compact_history(true);
//! assert!(!room.has_body("$unknown"));
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Room, Stored};
use crate::auth::{KnownEvent, Pdu};
use crate::canonical::Object;
use crate::state_res::StateMap;

/// An event as the room keeps it.
#[derive(Debug, Clone)]
pub(super) enum Body {
    /// The whole event (boxed, so a compacted entry stays small in the room's map).
    Full(Box<Pdu>),
    /// Only what the room reads of a non-state event in history.
    Compact(Box<Compact>),
}

/// What is left of an event whose body was dropped.
#[derive(Debug, Clone)]
pub(super) struct Compact {
    depth: i64,
    kind: Arc<str>,
    room_id: Option<Arc<str>>,
    sender: Arc<str>,
    prev_events: Box<[Box<str>]>,
    /// Shared: the messages of one sender cite the same auth events until the state changes.
    auth_events: Arc<[Box<str>]>,
}

/// The strings and auth event lists compacted events share.
#[derive(Debug, Clone, Default)]
pub(super) struct Interner {
    strings: BTreeSet<Arc<str>>,
    lists: BTreeSet<Arc<[Box<str>]>>,
    last_list: Option<Arc<[Box<str>]>>,
}

impl Interner {
    fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&a));
        a
    }

    fn list(&mut self, items: &[&str]) -> Arc<[Box<str>]> {
        // A run of messages cites one list: found without building a key.
        if let Some(last) = &self.last_list {
            if last.len() == items.len() && last.iter().zip(items).all(|(a, b)| **a == **b) {
                return Arc::clone(last);
            }
        }
        let items: Vec<Box<str>> = items.iter().map(|s| Box::from(*s)).collect();
        let a = match self.lists.get(items.as_slice()) {
            Some(a) => Arc::clone(a),
            None => {
                let a: Arc<[Box<str>]> = Arc::from(items);
                self.lists.insert(Arc::clone(&a));
                a
            }
        };
        self.last_list = Some(Arc::clone(&a));
        a
    }
}

impl Stored {
    /// The event's body, unless it was dropped.
    pub(super) fn pdu(&self) -> Option<&Pdu> {
        match &self.body {
            Body::Full(p) => Some(p),
            Body::Compact(_) => None,
        }
    }

    pub(super) fn depth(&self) -> i64 {
        match &self.body {
            Body::Full(p) => p.depth(),
            Body::Compact(c) => c.depth,
        }
    }

    pub(super) fn prev_event_ids(&self) -> Vec<&str> {
        match &self.body {
            Body::Full(p) => p.prev_event_ids(),
            Body::Compact(c) => c.prev_events.iter().map(|s| &**s).collect(),
        }
    }

    pub(super) fn auth_event_ids(&self) -> Vec<&str> {
        match &self.body {
            Body::Full(p) => p.auth_event_ids(),
            Body::Compact(c) => c.auth_events.iter().map(|s| &**s).collect(),
        }
    }

    pub(super) fn room_id(&self) -> Option<&str> {
        match &self.body {
            Body::Full(p) => p.room_id(),
            Body::Compact(c) => c.room_id.as_deref(),
        }
    }

    pub(super) fn sender_server(&self) -> &str {
        match &self.body {
            Body::Full(p) => p.sender_server(),
            Body::Compact(c) => crate::identifiers::user_server_name(&c.sender).unwrap_or(""),
        }
    }
}

impl Room {
    /// Whether to drop the bodies of non-state events once they are history (see the module
    /// docs of `room/compact.rs`): what a long-running server does to keep memory per message
    /// small, its storage holding the bodies. Turning it on compacts the history known so far;
    /// turning it off keeps the bodies of events from then on (dropped ones stay dropped).
    pub fn set_compact_history(&mut self, on: bool) {
        self.compact_history = on;
        if on {
            let ids: Vec<String> = self
                .events
                .keys()
                .filter(|id| !self.extremities.contains(*id))
                .cloned()
                .collect();
            for id in ids {
                self.compact(&id);
            }
        }
    }

    /// Whether the room holds the body of a known event ([`Room::event`] answers it); `false`
    /// for an unknown event or one compacted ([`Room::set_compact_history`]).
    pub fn has_body(&self, id: &str) -> bool {
        self.events.get(id).is_some_and(|s| s.pdu().is_some())
    }

    /// Drops the body of a known event if the policy allows: compaction is on, and the event
    /// is neither a state event, a redaction, an outlier, nor pinned by a given state.
    pub(super) fn compact(&mut self, id: &str) {
        if !self.compact_history || self.outliers.contains(id) || self.pinned.contains(id) {
            return;
        }
        let Some(stored) = self.events.get_mut(id) else {
            return;
        };
        let Body::Full(pdu) = &stored.body else {
            return;
        };
        if pdu.state_key().is_some() || pdu.kind() == "m.room.redaction" {
            return;
        }
        let interned = &mut self.interned;
        let compact = Compact {
            depth: pdu.depth(),
            kind: interned.string(pdu.kind()),
            room_id: pdu.room_id().map(|r| interned.string(r)),
            sender: interned.string(pdu.sender()),
            prev_events: pdu.prev_event_ids().into_iter().map(Box::from).collect(),
            auth_events: interned.list(&pdu.auth_event_ids()),
        };
        stored.body = Body::Compact(Box::new(compact));
    }

    /// Keeps the non-state events a given state names (and the auth events they cite) whole:
    /// state resolution may read them. An honest state names only state events, which are
    /// never compacted, so this set stays empty.
    pub(super) fn pin_named(&mut self, state: &StateMap) {
        let mut queue: Vec<&str> = state.values().map(String::as_str).collect();
        let mut pin: BTreeSet<String> = BTreeSet::new();
        while let Some(id) = queue.pop() {
            let stored = self.events.get(id);
            let state_event = stored
                .and_then(Stored::pdu)
                .is_some_and(|p| p.state_key().is_some());
            if state_event || self.pinned.contains(id) || !pin.insert(id.to_owned()) {
                continue;
            }
            if let Some(s) = stored {
                queue.extend(s.auth_event_ids());
            }
        }
        self.pinned.extend(pin);
    }

    /// Stand-ins for the compacted events `pdu` cites as auth events: their type, room and
    /// sender, all that the state-independent auth checks read of an auth event that is not a
    /// state event (which rejects the citing event).
    pub(super) fn stand_ins(&self, pdu: &Pdu) -> Vec<Pdu> {
        pdu.auth_event_ids()
            .into_iter()
            .filter_map(|id| {
                let Body::Compact(c) = &self.events.get(id)?.body else {
                    return None;
                };
                let mut event = Object::new();
                event.insert("type", &*c.kind);
                event.insert("sender", &*c.sender);
                if let Some(r) = &c.room_id {
                    event.insert("room_id", &**r);
                }
                Some(Pdu {
                    event_id: id.to_owned(),
                    event,
                    room_version: self.version,
                })
            })
            .collect()
    }

    /// The auth events `pdu` cites that the room knows, in the order it cites them, with
    /// `stand_ins` ([`Room::stand_ins`]) for compacted ones.
    pub(super) fn known_auth<'a>(&'a self, pdu: &Pdu, stand_ins: &'a [Pdu]) -> Vec<KnownEvent<'a>> {
        pdu.auth_event_ids()
            .into_iter()
            .filter_map(|id| {
                let s = self.events.get(id)?;
                let pdu = match s.pdu() {
                    Some(p) => p,
                    None => stand_ins.iter().find(|p| p.event_id == id)?,
                };
                Some(KnownEvent {
                    pdu,
                    rejected: s.rejected,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Value;
    use crate::room::testing::{accepted, build};
    use crate::RoomVersion;

    /// Events built on `full`, received by both rooms; returns the message IDs.
    fn two_rooms() -> (Room, Room, Vec<String>) {
        let v = RoomVersion::get("10").unwrap();
        let (mut full, mut compact) = (Room::new(v), Room::new(v));
        compact.set_compact_history(true);
        let mut messages = Vec::new();
        let events: [(&str, Option<&str>, &str); 6] = [
            (
                "m.room.create",
                Some(""),
                r#"{"creator":"@u:a","room_version":"10"}"#,
            ),
            ("m.room.member", Some("@u:a"), r#"{"membership":"join"}"#),
            ("m.room.power_levels", Some(""), r#"{"users":{"@u:a":100}}"#),
            ("m.room.message", None, r#"{"body":"one"}"#),
            ("m.room.message", None, r#"{"body":"two"}"#),
            ("m.room.message", None, r#"{"body":"three"}"#),
        ];
        for (i, (ty, sk, content)) in events.into_iter().enumerate() {
            let (b, c) = build(&full, ty, "@u:a", sk, content, None, i as u64);
            assert_eq!(full.receive(&c), compact.receive(&c));
            if sk.is_none() {
                messages.push(b.event_id);
            }
        }
        (full, compact, messages)
    }

    #[test]
    fn history_drops_bodies_of_messages_only() {
        let (full, compact, messages) = two_rooms();
        // The last message is the forward extremity: whole; the others are history.
        assert!(!compact.has_body(&messages[0]) && !compact.has_body(&messages[1]));
        assert!(compact.has_body(&messages[2]) && full.has_body(&messages[0]));
        assert!(compact.contains(&messages[0]) && compact.event(&messages[0]).is_none());
        for id in compact.current_state().values() {
            assert!(compact.has_body(id));
        }
        // Turning it on later compacts what is history by then.
        let mut later = full.clone();
        later.set_compact_history(true);
        assert!(!later.has_body(&messages[1]) && later.has_body(&messages[2]));
    }

    /// An event citing a compacted message among its auth events is rejected as by a room that
    /// kept the message: the stand-in has what the check reads.
    #[test]
    fn a_compacted_auth_event_is_judged_as_the_whole_one() {
        let (mut full, mut compact, messages) = two_rooms();
        let (_, c) = build(
            &full,
            "m.room.message",
            "@u:a",
            None,
            r#"{"body":"x"}"#,
            None,
            9,
        );
        let mut ev = c.event.unwrap();
        let Some(Value::Array(auth)) = ev.get("auth_events").cloned() else {
            panic!("no auth events");
        };
        let mut auth = auth;
        auth.push(Value::from(messages[0].as_str()));
        ev.insert("auth_events", Value::Array(auth));
        let check = accepted(ev, "$cites_a_message");
        let want = full.receive(&check);
        assert_eq!(want.code(), Some("auth_events_unexpected"), "{want:?}");
        assert_eq!(compact.receive(&check), want);
    }
}
