//! What a federating server needs from a [`Room`] beyond [`Room::receive`]: events known only
//! through an auth chain or a state answer (outliers), events whose state comes from elsewhere
//! (a join's `send_join` answer, `/state` at an event whose prev events could not be fetched),
//! and the walks that answer `/state`, `/state_ids`, `/event_auth`, `/backfill` and
//! `/get_missing_events` (DIGEST §17, §18).
//!
//! Pure like the rest of the room: the host fetches, the room decides.
//!
//! ```
//! use mxfed_core::room::Room;
//! use mxfed_core::RoomVersion;
//! let room = Room::new(RoomVersion::get("10").unwrap());
//! assert!(room.joined_servers().is_empty());
//! assert!(room.backfill(&["$nope"], 10).is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::{Body, Room, RoomVerdict, Store, Stored};
use crate::auth::{
    check_state_dependent, check_state_independent, AuthEvents, KnownEvent, Levels, Pdu,
};
use crate::pdu::{PduCheck, Verdict};
use crate::state_res::{resolve, StateMap};

/// State event types given to an invitee or knocker with the invite or knock
/// (`invite_room_state` / `knock_room_state`), as Synapse's default `room_prejoin_state`.
pub const PREJOIN_STATE_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.name",
    "m.room.topic",
];

impl Room {
    /// Stores an event known only through an auth chain or a state answer: checked against its
    /// own `auth_events` (spec checks 1–4), never part of the DAG the room walks (not a forward
    /// extremity, no state after it). Its cited auth events must be known first (add an auth
    /// chain in causal order). An event already known is left as it is.
    pub fn add_outlier(&mut self, check: &PduCheck) -> RoomVerdict {
        let Some(event) = check.event.clone() else {
            return match &check.verdict {
                Verdict::Rejected { code, .. } => RoomVerdict::Rejected { code },
                _ => RoomVerdict::Rejected {
                    code: "pdu_missing",
                },
            };
        };
        if let Verdict::Rejected { code, .. } = check.verdict {
            return RoomVerdict::Rejected { code };
        }
        let pdu = match Pdu::new(event, self.version) {
            Ok(p) => p,
            Err(e) => return RoomVerdict::Rejected { code: e.code() },
        };
        if self.events.contains_key(&pdu.event_id) {
            return RoomVerdict::Accepted;
        }
        let stand_ins = self.stand_ins(&pdu);
        let auth: Vec<KnownEvent<'_>> = self.known_auth(&pdu, &stand_ins);
        let create = self.create_event(&pdu);
        let verdict = match check_state_independent(&pdu, &auth, create) {
            Err(e) => RoomVerdict::Rejected { code: e.code() },
            Ok(()) => {
                let mut claimed: AuthEvents<'_> = auth.iter().map(|a| a.pdu).collect();
                if self.version.room_id_from_create_event {
                    if let Some(c) = create {
                        claimed.insert(c.pdu);
                    }
                }
                match check_state_dependent(&pdu, &claimed) {
                    Err(e) => RoomVerdict::Rejected { code: e.code() },
                    Ok(()) if check.verdict == Verdict::Redacted => RoomVerdict::Redacted,
                    Ok(()) => RoomVerdict::Accepted,
                }
            }
        };
        let id = pdu.event_id.clone();
        self.events.insert(
            id.clone(),
            Stored {
                body: Body::Full(Box::new(pdu)),
                rejected: matches!(verdict, RoomVerdict::Rejected { .. }),
                soft_failed: false,
                state_after: Arc::new(StateMap::new()),
            },
        );
        self.outliers.insert(id);
        verdict
    }

    /// Runs a checked PDU through the pipeline with the state before it given by the host,
    /// rather than computed from its prev events: for a join, the `state` of the `send_join`
    /// answer; for an event whose prev events could not be fetched, `/state` at the event. Every
    /// event the state names should be known (as an outlier at least). An event known only as
    /// an outlier is taken in with that state (see [`Room::receive`]).
    ///
    /// When the room has some of the event's prev events in its DAG, the state before the event
    /// is the given state resolved with the room's own states after those (state resolution of
    /// the room version), as Synapse's `_compute_event_context_with_maybe_missing_prevs`
    /// resolves the states it fetched for the missing prev events with its own after the others:
    /// the remote's word does not override what the room knows. With none of them (a join, a gap
    /// reaching past every prev event), the given state alone.
    pub fn receive_with_state(&mut self, check: &PduCheck, state_before: StateMap) -> RoomVerdict {
        self.receive_given(check, state_before, true)
    }

    /// [`Room::receive_with_state`]; `with_ours` false takes the given state as it is (our own
    /// join: the `send_join` answer's state is the room's state from then on, as in Synapse).
    pub(super) fn receive_given(
        &mut self,
        check: &PduCheck,
        given: StateMap,
        with_ours: bool,
    ) -> RoomVerdict {
        let pdu = match self.pdu_of(check) {
            Ok(p) => p,
            Err(v) => return v,
        };
        let id = pdu.event_id.clone();
        let placed = |room: &Room| room.events.contains_key(&id) && !room.outliers.contains(&id);
        let placed_before = placed(self);
        self.pin_named(&given);
        let before = if with_ours && self.takes_in(&pdu, true) {
            self.with_our_states(&pdu, given)
        } else {
            Arc::new(given)
        };
        let verdict = self.receive_pdu(pdu, &check.verdict, Some(Arc::clone(&before)));
        if !placed_before && placed(self) {
            self.given_state.insert(id, before);
        }
        verdict
    }

    /// The state before `pdu` from a state given for it: resolved with the room's states after
    /// the prev events of `pdu` in its DAG (the given state first, then ours, in the order
    /// Synapse passes them), or the given state alone when there are none.
    fn with_our_states(&self, pdu: &Pdu, given: StateMap) -> Arc<StateMap> {
        let mut ours: Vec<&Arc<StateMap>> = pdu
            .prev_event_ids()
            .into_iter()
            .filter(|p| !self.outliers.contains(*p))
            .filter_map(|p| self.events.get(p))
            .map(|s| &s.state_after)
            .collect();
        ours.dedup_by(|a, b| Arc::ptr_eq(a, b));
        if ours.is_empty() {
            return Arc::new(given);
        }
        let mut sets = vec![given];
        sets.extend(ours.into_iter().map(|s| (**s).clone()));
        Arc::new(resolve(self.version, &sets, &Store(&self.events)))
    }

    /// Whether a known event is an outlier.
    pub fn is_outlier(&self, id: &str) -> bool {
        self.outliers.contains(id)
    }

    /// The prev events of `pdu` that the room cannot compute state from: unknown, or known only
    /// as outliers. When this is not empty the host fetches them (`/get_missing_events`) and,
    /// failing that, the state before the event (`/state`), for [`Room::receive_with_state`].
    pub fn unknown_prev_events(&self, pdu: &Pdu) -> Vec<String> {
        pdu.prev_event_ids()
            .into_iter()
            .filter(|p| !self.events.contains_key(*p) || self.outliers.contains(*p))
            .map(str::to_owned)
            .collect()
    }

    /// Whether the room must fetch something before it can take `pdu` in: a prev event it
    /// cannot compute state from ([`Room::unknown_prev_events`]) or an auth event it does not
    /// know ([`Room::unknown_auth_events`]).
    pub fn lacks_predecessors(&self, pdu: &Pdu) -> bool {
        pdu.prev_event_ids()
            .into_iter()
            .any(|p| !self.events.contains_key(p) || self.outliers.contains(p))
            || pdu
                .auth_event_ids()
                .into_iter()
                .any(|a| !self.events.contains_key(a))
    }

    /// The state before a known, non-outlier event: what `/state` and `/state_ids` serve.
    pub fn state_before_event(&self, id: &str) -> Option<StateMap> {
        if self.outliers.contains(id) {
            return None;
        }
        if let Some(s) = self.given_state.get(id) {
            return Some((**s).clone());
        }
        let stored = self.events.get(id)?;
        Some((*self.state_before(stored)).clone())
    }

    /// The full auth chain of some events (not including them), sorted by depth then event ID.
    /// Events whose body was dropped are left out (see [`Room::auth_chain_ids`]).
    pub fn auth_chain<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<&Pdu> {
        self.bodies(self.auth_chain_ids(ids))
    }

    /// [`Room::auth_chain`] as event IDs, compacted events included: what a host that keeps
    /// bodies in its storage serves.
    pub fn auth_chain_ids<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<&str> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<&str> = VecDeque::new();
        for id in ids {
            if let Some(s) = self.events.get(id) {
                queue.extend(s.auth_event_ids());
                // Room version 12: the create event authorises every other event without being
                // listed in its `auth_events`; it belongs to the chain all the same (Synapse's
                // `auth_event_ids()` adds it), so an `/event_auth` answer carries it.
                if self.version.room_id_from_create_event {
                    let create = s.room_id().and_then(|r| {
                        let id = crate::identifiers::create_event_id(r)?;
                        self.events.get_key_value(&id).map(|(k, _)| k.as_str())
                    });
                    queue.extend(create.filter(|c| *c != id));
                }
            }
        }
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            let Some((key, s)) = self.events.get_key_value(id) else {
                continue;
            };
            if !seen.insert(key.as_str()) {
                continue;
            }
            queue.extend(s.auth_event_ids());
            out.push((s.depth(), key.as_str()));
        }
        out.sort();
        out.into_iter().map(|(_, id)| id).collect()
    }

    /// The known events of `ids` that have bodies, in order.
    fn bodies<'a>(&'a self, ids: Vec<&str>) -> Vec<&'a Pdu> {
        ids.into_iter()
            .filter_map(|id| self.events.get(id)?.pdu())
            .collect()
    }

    /// The events of a state map that the room knows, sorted by type and state key.
    pub fn state_events(&self, state: &StateMap) -> Vec<&Pdu> {
        state
            .values()
            .filter_map(|id| self.events.get(id)?.pdu())
            .collect()
    }

    /// `/backfill`: the events `from` and their predecessors (breadth-first over
    /// `prev_events`), at most `limit`, rejected and outlier events left out (backfilled
    /// history is served on). Events whose body was dropped are left out (see
    /// [`Room::backfill_ids`]).
    pub fn backfill(&self, from: &[&str], limit: usize) -> Vec<&Pdu> {
        self.bodies(self.backfill_ids(from, limit))
    }

    /// [`Room::backfill`] as event IDs, compacted events included.
    pub fn backfill_ids(&self, from: &[&str], limit: usize) -> Vec<&str> {
        self.walk_prev(
            from.iter().copied(),
            &BTreeSet::new(),
            limit,
            i64::MIN,
            true,
        )
        .into_iter()
        .map(|(_, id)| id)
        .collect()
    }

    /// `/get_missing_events`: breadth-first over the `prev_events` of `latest` (not including
    /// them), skipping `earliest` and anything before it, at most `limit` events of depth at
    /// least `min_depth`; sorted by depth so the receiver can apply them in order. Events whose
    /// body was dropped are left out (see [`Room::missing_event_ids`]).
    pub fn missing_events(
        &self,
        earliest: &[&str],
        latest: &[&str],
        limit: usize,
        min_depth: i64,
    ) -> Vec<&Pdu> {
        self.bodies(self.missing_event_ids(earliest, latest, limit, min_depth))
    }

    /// [`Room::missing_events`] as event IDs, compacted events included.
    pub fn missing_event_ids(
        &self,
        earliest: &[&str],
        latest: &[&str],
        limit: usize,
        min_depth: i64,
    ) -> Vec<&str> {
        let stop: BTreeSet<&str> = earliest.iter().copied().collect();
        let mut out = self.walk_prev(latest.iter().copied(), &stop, limit, min_depth, false);
        out.sort();
        out.into_iter().map(|(_, id)| id).collect()
    }

    fn walk_prev<'a>(
        &self,
        from: impl Iterator<Item = &'a str>,
        stop: &BTreeSet<&str>,
        limit: usize,
        min_depth: i64,
        include_start: bool,
    ) -> Vec<(i64, &str)> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<String> = VecDeque::new();
        for id in from {
            if include_start {
                queue.push_back(id.to_owned());
            } else if let Some(s) = self.events.get(id) {
                seen.insert(id.to_owned());
                queue.extend(s.prev_event_ids().into_iter().map(str::to_owned));
            }
        }
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            if out.len() >= limit {
                break;
            }
            if stop.contains(id.as_str()) || !seen.insert(id.clone()) {
                continue;
            }
            let Some((key, s)) = self.events.get_key_value(&id) else {
                continue;
            };
            let outlier = self.outliers.contains(&id) && !self.backfilled.contains(&id);
            if s.rejected || outlier || s.depth() < min_depth {
                continue;
            }
            queue.extend(s.prev_event_ids().into_iter().map(str::to_owned));
            out.push((s.depth(), key.as_str()));
        }
        out
    }

    /// The event an accepted redaction takes effect on, if it may: the redacted event is known
    /// and in the same room, and the redaction's sender has the `redact` level in the state
    /// before the redaction, or is on the same server as the redacted event's sender (spec
    /// § Redactions: from room version 3 this check is the receiver's, at display time).
    ///
    /// A backfilled redaction (history from before we joined: no state is known before it) is
    /// judged on the power levels among its auth events, the state it was authorised against.
    /// Other outliers never take effect.
    pub fn redaction_target(&self, redaction_id: &str) -> Option<&str> {
        let stored = self.events.get(redaction_id)?;
        // Redactions are never compacted: no body, not a redaction.
        let r = stored.pdu()?;
        let backfilled = self.backfilled.contains(redaction_id);
        if stored.rejected
            || r.kind() != "m.room.redaction"
            || (self.outliers.contains(redaction_id) && !backfilled)
        {
            return None;
        }
        let target_id = r.redacts()?;
        let (key, target) = self.events.get_key_value(target_id)?;
        if target.room_id() != r.room_id() {
            return None;
        }
        if target.sender_server() == r.sender_server() {
            return Some(key.as_str());
        }
        let before = match self.state_before_event(redaction_id) {
            Some(state) => state,
            None if backfilled => r
                .auth_event_ids()
                .into_iter()
                .filter_map(|id| self.events.get_key_value(id))
                .filter_map(|(id, s)| Some((s.pdu()?.state_pair()?, id.clone())))
                .collect(),
            None => return None,
        };
        let get = |t: &str| {
            before
                .get(&(t.to_owned(), String::new()))
                .and_then(|id| self.events.get(id)?.pdu())
        };
        let levels = Levels::new(
            self.version,
            get("m.room.power_levels"),
            get("m.room.create"),
        );
        let sender = levels.user(r.sender()).ok()?;
        let needed = levels.named("redact", 50).ok()?;
        (sender >= needed).then_some(key.as_str())
    }

    /// The membership of a user in the current state (`join`, `invite`, `leave`, …).
    pub fn membership(&self, user_id: &str) -> Option<String> {
        let state = self.current_state_shared();
        let id = state.get(&("m.room.member".to_owned(), user_id.to_owned()))?;
        let s = self.events.get(id)?;
        s.pdu()?.membership().map(str::to_owned)
    }

    /// The servers an event of ours goes to once the room has taken it in: those with a member
    /// joined in the state before it or after it, so that a server whose last member the
    /// event kicks, bans or lets leave gets it too (Synapse sends to the servers in the room at
    /// the event's prev events, for this reason); and, for a `leave` of a user who was only
    /// invited (an invite withdrawn), that user's server, which is not in the room (as Synapse
    /// does). The caller leaves itself out. Empty for an event the room does not have in its
    /// DAG.
    pub fn recipients(&self, event_id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let server = |user: &str| {
            crate::identifiers::user_server_name(user)
                .ok()
                .map(str::to_owned)
        };
        let membership = |state: &StateMap, user: &str| {
            state
                .get(&("m.room.member".to_owned(), user.to_owned()))
                .and_then(|id| self.events.get(id)?.pdu()?.membership())
                .map(str::to_owned)
        };
        let joined = |state: &StateMap, out: &mut BTreeSet<String>| {
            for ((t, user), id) in state {
                let joined = t == "m.room.member"
                    && self.events.get(id).and_then(|s| s.pdu()?.membership()) == Some("join");
                if joined {
                    out.extend(server(user));
                }
            }
        };
        let Some(after) = self.state_after(event_id) else {
            return out;
        };
        joined(after, &mut out);
        if let Some(before) = self.state_before_event(event_id) {
            joined(&before, &mut out);
            let withdrawn = self
                .events
                .get(event_id)
                .and_then(|s| s.pdu())
                .and_then(|p| {
                    let target = p.state_key()?;
                    let leave = p.kind() == "m.room.member" && p.membership() == Some("leave");
                    (leave && membership(&before, target).as_deref() == Some("invite"))
                        .then(|| server(target))
                        .flatten()
                });
            out.extend(withdrawn);
        }
        out
    }

    /// The servers with at least one joined member in the current state: where new events of
    /// the room are sent.
    pub fn joined_servers(&self) -> BTreeSet<String> {
        self.members_by(|m| m == "join")
            .into_iter()
            .filter_map(|u| {
                crate::identifiers::user_server_name(&u)
                    .ok()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Whether `server` has a member joined in the current state (Synapse's `is_host_joined`):
    /// whether it is in the room. Reads the member entries only, allocating nothing.
    pub fn server_joined(&self, server: &str) -> bool {
        let state = self.current_state_shared();
        let first = ("m.room.member".to_owned(), String::new());
        state
            .range(first..)
            .take_while(|((t, _), _)| t == "m.room.member")
            .any(|((_, user), id)| {
                crate::identifiers::user_server_name(user).is_ok_and(|s| s == server)
                    && self.events.get(id).and_then(|s| s.pdu()?.membership()) == Some("join")
            })
    }

    /// The users whose current membership passes `want`.
    pub fn members_by(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let state = self.current_state_shared();
        state
            .iter()
            .filter(|((t, _), _)| t == "m.room.member")
            .filter_map(|((_, user), id)| {
                let m = self.events.get(id)?.pdu()?.membership()?;
                want(m).then(|| user.clone())
            })
            .collect()
    }

    /// The state given to an invitee or knocker (`invite_room_state`, `knock_room_state`): the
    /// [`PREJOIN_STATE_TYPES`] events of the current state and the membership of `sender`.
    pub fn prejoin_state(&self, sender: &str) -> Vec<&Pdu> {
        let state = self.current_state_shared();
        let mut keys: BTreeMap<(String, String), ()> = PREJOIN_STATE_TYPES
            .iter()
            .map(|t| (((*t).to_owned(), String::new()), ()))
            .collect();
        keys.insert(("m.room.member".to_owned(), sender.to_owned()), ());
        keys.keys()
            .filter_map(|k| state.get(k))
            .filter_map(|id| self.events.get(id)?.pdu())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::testing::{
        accepted as check, build, build_split, public_room, received, send, JOIN,
    };
    use crate::RoomVersion;

    /// An event lacks predecessors when a prev event or an auth event is unknown to the room.
    #[test]
    fn lacks_predecessors_covers_prev_and_auth_events() {
        let (mut a, checks) = public_room();
        let b = received(&checks);
        send(&mut a, "m.room.member", "@bob:b", Some("@bob:b"), JOIN);
        // On b's extremities, by a member b knows: nothing to fetch.
        let (_, own) = build(
            &b,
            "m.room.message",
            "@u:a",
            None,
            r#"{"body":"x"}"#,
            None,
            1,
        );
        assert!(!b.lacks_predecessors(own.pdu(b.version()).as_ref().unwrap()));
        // Citing a's newer extremity (bob's join), which b lacks.
        let (_, ahead) = build_split(&a, &b, "m.room.message", "@u:a", None, r#"{}"#, 2);
        assert!(b.lacks_predecessors(ahead.pdu(b.version()).as_ref().unwrap()));
        // On b's extremities, but by bob: his join, an auth event, is unknown to b.
        let (_, by_bob) = build_split(&b, &a, "m.room.message", "@bob:b", None, r#"{}"#, 3);
        assert!(b.lacks_predecessors(by_bob.pdu(b.version()).as_ref().unwrap()));
    }

    /// Who gets our event: the servers in the room before or after it, so a kicked or banned
    /// server gets its own kick or ban, and a withdrawn invite reaches the invitee's server.
    #[test]
    fn recipients_include_the_servers_the_event_puts_out() {
        let (mut room, _) = public_room();
        for user in ["@bob:b", "@carl:c"] {
            send(&mut room, "m.room.member", user, Some(user), JOIN);
        }
        let set = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<BTreeSet<_>>();
        let (said, _) = send(&mut room, "m.room.message", "@u:a", None, r#"{"body":"x"}"#);
        assert_eq!(room.recipients(&said.event_id), set(&["a", "b", "c"]));
        assert!(room.server_joined("b") && !room.server_joined("d"));
        // b's only member kicked, c's banned: each still gets the event that puts it out.
        let leave = r#"{"membership":"leave"}"#;
        let (kick, _) = send(&mut room, "m.room.member", "@u:a", Some("@bob:b"), leave);
        assert_eq!(room.recipients(&kick.event_id), set(&["a", "b", "c"]));
        let ban = r#"{"membership":"ban"}"#;
        let (banned, _) = send(&mut room, "m.room.member", "@u:a", Some("@carl:c"), ban);
        assert_eq!(room.recipients(&banned.event_id), set(&["a", "c"]));
        let (alone, _) = send(&mut room, "m.room.message", "@u:a", None, r#"{"body":"y"}"#);
        assert_eq!(room.recipients(&alone.event_id), set(&["a"]));
        // An invite withdrawn: the invitee's server, which is not in the room, gets it.
        let invite = r#"{"membership":"invite"}"#;
        let (invited, _) = send(&mut room, "m.room.member", "@u:a", Some("@dan:d"), invite);
        assert_eq!(room.recipients(&invited.event_id), set(&["a"]));
        let (withdrawn, _) = send(&mut room, "m.room.member", "@u:a", Some("@dan:d"), leave);
        assert_eq!(room.recipients(&withdrawn.event_id), set(&["a", "d"]));
        // In the room now: a only (b kicked, c banned, d never joined).
        for (server, joined) in [("a", true), ("b", false), ("c", false), ("d", false)] {
            assert_eq!(room.server_joined(server), joined, "{server}");
        }
        assert!(room.recipients("$unknown").is_empty());
    }

    /// An event first known as an outlier (from a state answer) that arrives again with its
    /// prev events in the DAG is taken in: it gets a state, becomes a forward extremity and is
    /// no gap for its children. The same with a given state.
    #[test]
    fn an_outlier_received_in_its_place_joins_the_dag() {
        let (mut a, seed) = public_room();
        let mut b = received(&seed);
        let (join, join_c) = send(&mut a, "m.room.member", "@bob:b", Some("@bob:b"), JOIN);
        let after_join = a.clone();
        let (msg, msg_c) = send(&mut a, "m.room.message", "@bob:b", None, r#"{"body":"hi"}"#);
        let msg_pdu = Pdu::new(msg.pdu.clone(), b.version()).unwrap();

        assert_eq!(b.add_outlier(&join_c), RoomVerdict::Accepted);
        assert_eq!(
            b.unknown_prev_events(&msg_pdu),
            std::slice::from_ref(&join.event_id)
        );
        assert_eq!(b.receive(&join_c), RoomVerdict::Accepted);
        assert!(!b.is_outlier(&join.event_id));
        assert_eq!(b.forward_extremities(), after_join.forward_extremities());
        assert_eq!(b.state_after(&join.event_id), a.state_after(&join.event_id));
        assert!(b.state_before_event(&join.event_id).is_some());
        assert_eq!(b.membership("@bob:b").as_deref(), Some("join"));
        assert!(b.unknown_prev_events(&msg_pdu).is_empty(), "no gap");
        assert_eq!(b.receive(&msg_c), RoomVerdict::Accepted);
        assert_eq!(b.forward_extremities(), a.forward_extremities());
        assert_eq!(b.current_state(), a.current_state());

        // Known only as outliers, the join taken in with the state before it.
        let mut c = Room::new(b.version());
        for o in seed.iter().chain([&join_c]) {
            assert_eq!(c.add_outlier(o), RoomVerdict::Accepted);
        }
        let before = a.state_before_event(&join.event_id).unwrap();
        assert_eq!(
            c.receive_with_state(&join_c, before.clone()),
            RoomVerdict::Accepted
        );
        assert!(!c.is_outlier(&join.event_id));
        assert_eq!(c.state_before_event(&join.event_id), Some(before));
        assert_eq!(c.forward_extremities(), after_join.forward_extremities());
        assert_eq!(c.current_state(), after_join.current_state());
    }

    /// An event citing a topic change we have and a name change we lack (on the other side of
    /// a fork), taken in with the other side's state: the state before it is that state
    /// resolved with ours after the topic change, so it keeps the topic (which the given state
    /// lacks) and gains the name; the same as the state the sender computed from both, and as
    /// the core's state resolution of the two states.
    #[test]
    fn a_given_state_is_resolved_with_ours_after_the_known_prev_events() {
        let (mut a, seed) = public_room();
        let base = a.clone();
        let topic = r#"{"topic":"t"}"#;
        let (topic, topic_c) = build(&base, "m.room.topic", "@u:a", Some(""), topic, None, 2);
        let name = r#"{"name":"n"}"#;
        let (name, name_c) = build(&base, "m.room.name", "@u:a", Some(""), name, None, 3);
        assert_eq!(a.receive(&topic_c), RoomVerdict::Accepted);
        assert_eq!(a.receive(&name_c), RoomVerdict::Accepted);
        let (e, e_c) = send(&mut a, "m.room.message", "@u:a", None, "{}");

        let mut b = received(&[seed, vec![topic_c]].concat());
        assert_eq!(b.add_outlier(&name_c), RoomVerdict::Accepted);
        let theirs = a.state_after(&name.event_id).unwrap().clone();
        assert_eq!(
            b.receive_with_state(&e_c, theirs.clone()),
            RoomVerdict::Accepted
        );
        let key = |t: &str| (t.to_owned(), String::new());
        let mut want = base.current_state();
        want.insert(key("m.room.topic"), topic.event_id.clone());
        want.insert(key("m.room.name"), name.event_id.clone());
        let before = b.state_before_event(&e.event_id).unwrap();
        assert_eq!(before, want);
        assert_eq!(a.state_before_event(&e.event_id), Some(want));
        let ours = b.state_after(&topic.event_id).unwrap().clone();
        assert_eq!(before, resolve(b.version(), &[theirs, ours], &b));
        assert_eq!(b.current_state(), a.current_state());
    }

    /// A de-outliered event is checked against the state before it: a message of bob's that
    /// cites his join among its auth events but comes after his ban passed as an outlier and
    /// is rejected once its place is known.
    #[test]
    fn a_de_outliered_event_is_checked_against_the_state_before_it() {
        let (mut a, seed) = public_room();
        let (_, join_c) = send(&mut a, "m.room.member", "@bob:b", Some("@bob:b"), JOIN);
        let joined = a.clone();
        let ban = r#"{"membership":"ban"}"#;
        let (ban, ban_c) = send(&mut a, "m.room.member", "@u:a", Some("@bob:b"), ban);
        let (late, late_c) = build_split(
            &a,
            &joined,
            "m.room.message",
            "@bob:b",
            None,
            r#"{"body":"late"}"#,
            2,
        );
        let mut b = received(&[seed, vec![join_c, ban_c]].concat());
        assert_eq!(b.add_outlier(&late_c), RoomVerdict::Accepted);
        let rejected = RoomVerdict::Rejected {
            code: "auth_not_joined",
        };
        assert_eq!(b.check(&late_c), rejected, "the dry run says the same");
        assert_eq!(b.receive(&late_c), rejected);
        assert!(!b.is_outlier(&late.event_id));
        assert_eq!(
            b.forward_extremities().iter().collect::<Vec<_>>(),
            [&ban.event_id]
        );
    }

    /// Builds a room on "a" with create, join, power levels and public join rules, then a
    /// second copy of it that only knows the state as outliers and receives a join with state.
    #[test]
    fn seeded_room_accepts_join_and_follows_on() {
        let v = RoomVersion::get("10").unwrap();
        let mut a = Room::new(v);
        let send = |room: &mut Room, ty: &str, sender: &str, sk: Option<&str>, c: &str| {
            let (b, c) = build(room, ty, sender, sk, c, None, 1);
            let verdict = room.receive(&c);
            (b, c, verdict)
        };
        let (create, create_c, _) = send(
            &mut a,
            "m.room.create",
            "@u:a",
            Some(""),
            r#"{"creator":"@u:a","room_version":"10"}"#,
        );
        let (_, join_c, _) = send(
            &mut a,
            "m.room.member",
            "@u:a",
            Some("@u:a"),
            r#"{"membership":"join"}"#,
        );
        let (_, pl_c, _) = send(
            &mut a,
            "m.room.power_levels",
            "@u:a",
            Some(""),
            r#"{"users":{"@u:a":100}}"#,
        );
        let (_, jr_c, _) = send(
            &mut a,
            "m.room.join_rules",
            "@u:a",
            Some(""),
            r#"{"join_rule":"public"}"#,
        );
        let (bob_join, bob_c, verdict) = send(
            &mut a,
            "m.room.member",
            "@bob:b",
            Some("@bob:b"),
            r#"{"membership":"join"}"#,
        );
        assert_eq!(verdict, RoomVerdict::Accepted);
        assert_eq!(
            a.joined_servers().into_iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        let before = a.state_before_event(&bob_join.event_id).unwrap();
        assert_eq!(before.len(), 4);
        assert_eq!(a.auth_chain([bob_join.event_id.as_str()]).len(), 4);
        assert!(a
            .backfill(&[bob_join.event_id.as_str()], 2)
            .iter()
            .any(|p| p.event_id == bob_join.event_id));
        let missing = a.missing_events(
            &[create.event_id.as_str()],
            &[bob_join.event_id.as_str()],
            10,
            0,
        );
        assert_eq!(missing.len(), 3);

        // The joining side: state as outliers, then the join with that state.
        let mut b = Room::new(v);
        for c in [&create_c, &join_c, &pl_c, &jr_c] {
            assert_eq!(b.add_outlier(c), RoomVerdict::Accepted);
        }
        let pdu = Pdu::new(bob_join.pdu.clone(), v).unwrap();
        assert_eq!(b.unknown_prev_events(&pdu).len(), 1, "prev is an outlier");
        assert_eq!(b.receive_with_state(&bob_c, before), RoomVerdict::Accepted);
        assert_eq!(b.current_state(), a.current_state());
        assert_eq!(b.membership("@bob:b").as_deref(), Some("join"));
        assert!(b.state_before_event(&create.event_id).is_none());
        assert_eq!(b.prejoin_state("@u:a").len(), 3);
        // Follow-on events from either side are received normally.
        let (_, _, verdict) = send(
            &mut b,
            "m.room.message",
            "@bob:b",
            None,
            r#"{"body":"hi","msgtype":"m.text"}"#,
        );
        assert_eq!(verdict, RoomVerdict::Accepted);

        // Redactions: the sender's own server may redact; another server needs the level.
        let (msg, _, _) = send(&mut a, "m.room.message", "@bob:b", None, r#"{"body":"x"}"#);
        let redact_as = |room: &mut Room, sender: &str| {
            let (b, c) = build(
                room,
                "m.room.redaction",
                sender,
                None,
                "{}",
                Some(&msg.event_id),
                2,
            );
            assert_eq!(room.receive(&c), RoomVerdict::Accepted);
            b.event_id
        };
        let by_admin = redact_as(&mut a, "@u:a");
        assert_eq!(a.redaction_target(&by_admin), Some(msg.event_id.as_str()));
        let (_, _, _) = send(
            &mut a,
            "m.room.member",
            "@carol:c",
            Some("@carol:c"),
            r#"{"membership":"join"}"#,
        );
        let by_other = redact_as(&mut a, "@carol:c");
        assert_eq!(
            a.redaction_target(&by_other),
            None,
            "no level, other server"
        );
        assert_eq!(a.redaction_target(&msg.event_id), None, "not a redaction");

        // The same history backfilled by a server that joined later: the redactions take
        // effect there too, judged on the power levels among the redaction's auth events (no
        // state is known before a backfilled event); a plain outlier's never does.
        let all: Vec<Pdu> = a.events.values().filter_map(|s| s.pdu().cloned()).collect();
        let mut h = Room::new(v);
        let mut o = Room::new(v);
        for i in crate::room::causal_order(&all) {
            let c = check(all[i].event.clone(), &all[i].event_id);
            assert_eq!(h.add_backfilled(&c), RoomVerdict::Accepted);
            assert_eq!(o.add_outlier(&c), RoomVerdict::Accepted);
        }
        assert_eq!(h.redaction_target(&by_admin), Some(msg.event_id.as_str()));
        assert_eq!(
            h.redaction_target(&by_other),
            None,
            "no level, other server"
        );
        assert_eq!(o.redaction_target(&by_admin), None, "outlier");
    }
}
