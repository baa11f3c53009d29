//! What the hosts call on a [`Room`] when they hold data rather than callbacks: a batch of PDUs
//! received in causal order ([`Room::receive_pdus`], which `mxfed room replay`,
//! `mxfed.replay`/`Room.receive_all` and `replay`/`Room.receiveAll` in JS share), the state as
//! `{type, state_key, event_id}` rows, and the restricted-join decision with "our users" given by
//! a server name and the allowed rooms by a map ([`Room::restricted_join_for`]).
//!
//! ```
//! use std::collections::BTreeMap;
//! use mxfed_core::room::{restricted_join_json, Room};
//! use mxfed_core::server_keys::KeyRing;
//! use mxfed_core::RoomVersion;
//! let mut room = Room::new(RoomVersion::get("10").unwrap());
//! // A line that is not JSON is rejected; nothing is stored.
//! let verdicts = room.receive_pdus(&[b"{".as_slice()], &KeyRing::new());
//! assert_eq!(verdicts[0].get_str("verdict"), Some("rejected"));
//! assert!(room.forward_extremities().is_empty());
//! let d = room.restricted_join_for("@u:b", "a", &BTreeMap::new()).unwrap();
//! assert_eq!(restricted_join_json(&d).to_canonical_string(), r#"{"via":null}"#);
//! ```

use std::collections::BTreeMap;

use super::{causal_order, verdict_json, RestrictedJoin, RestrictedJoinError, Room, RoomVerdict};
use crate::auth::Pdu;
use crate::canonical::{Object, Value};
use crate::pdu::{PduCheck, Verdict};
use crate::server_keys::KeyRing;
use crate::state_res::StateMap;

impl Room {
    /// Checks PDUs (format, signatures, content hash) against `keys`, orders them causally (every
    /// event after the events of the batch it cites; ties by depth, then event ID) and receives
    /// each: one verdict object ([`verdict_json`]) per input PDU, in processing order. PDUs that
    /// cannot be read come first. Copies of an event already seen (for example the redacted form
    /// served over federation) get their own verdict but are not stored twice; an intact copy is
    /// preferred over a redacted one.
    pub fn receive_pdus(&mut self, pdus: &[&[u8]], keys: &KeyRing) -> Vec<Object> {
        let v = self.version();
        let mut out = Vec::with_capacity(pdus.len());
        let mut checked: Vec<(PduCheck, Pdu)> = Vec::new();
        for check in crate::pdu::check_pdus(pdus, v, keys) {
            match check.pdu(v) {
                Some(p) => checked.push((check, p)),
                _ => {
                    let verdict = match &check.verdict {
                        Verdict::Rejected { code, .. } => RoomVerdict::Rejected { code },
                        _ => RoomVerdict::Rejected {
                            code: "pdu_missing",
                        },
                    };
                    out.push(verdict_json(&check, &verdict));
                }
            }
        }
        // Intact copies first, so a redacted duplicate never displaces the original.
        checked.sort_by_key(|(c, _)| c.verdict == Verdict::Redacted);
        let pdus_only: Vec<Pdu> = checked.iter().map(|(_, p)| p.clone()).collect();
        for i in causal_order(&pdus_only) {
            let (check, _) = &checked[i];
            let verdict = self.receive(check);
            out.push(verdict_json(check, &verdict));
        }
        out
    }

    /// [`Room::restricted_join`] with our users named by `server_name` (a user is ours when the
    /// server name of their ID is `server_name`) and the allowed rooms we are in, in `joined_to`:
    /// room ID → whether `user_id` is joined to it (a room not in the map is one we are not in).
    /// This is what `mxfed serve` decides with its own rooms.
    ///
    /// # Errors
    /// [`RestrictedJoinError`] when the join cannot be authorised by us.
    pub fn restricted_join_for(
        &self,
        user_id: &str,
        server_name: &str,
        joined_to: &BTreeMap<String, bool>,
    ) -> Result<RestrictedJoin, RestrictedJoinError> {
        self.restricted_join(
            user_id,
            |u| crate::identifiers::user_server_name(u).is_ok_and(|s| s == server_name),
            |room| joined_to.get(room).copied(),
        )
    }
}

/// A state map as a list of `{"event_id","state_key","type"}` objects, sorted by type and state
/// key: the `state` of [`state_to_json`](super::state_to_json).
pub fn state_rows(state: &StateMap) -> Vec<Value> {
    match super::state_to_json(state).remove("state") {
        Some(Value::Array(rows)) => rows,
        _ => Vec::new(),
    }
}

/// A restricted-join decision as the hosts print it: `{"via": <the local user to name in
/// join_authorised_via_users_server>}`, or `{"via": null}` when no authorisation is needed.
pub fn restricted_join_json(decision: &RestrictedJoin) -> Object {
    let mut o = Object::new();
    match decision {
        RestrictedJoin::Via(user) => o.insert("via", user.as_str()),
        _ => o.insert("via", Value::Null),
    };
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoomVersion;

    #[test]
    fn an_empty_batch_changes_nothing() {
        let mut room = Room::new(RoomVersion::get("1").unwrap());
        assert!(room.receive_pdus(&[], &KeyRing::new()).is_empty());
        assert!(room.current_state().is_empty());
        assert!(state_rows(&room.current_state()).is_empty());
    }
}
