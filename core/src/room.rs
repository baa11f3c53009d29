//! The receipt pipeline and an in-memory room: what a server does with a PDU after its format,
//! signatures and hash have been checked (spec checks 4–6: auth against the event's auth events,
//! against the state before it, and soft-fail against the current state).
//!
//! [`check_received`] is the single decision function every host calls. [`Room`] keeps the events
//! of one room with their state, in memory, and drives it — `mxfed room replay` and the server
//! both use it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::auth::{
    auth_type_refs, check_state_dependent, check_state_independent, refill, AuthError, AuthEvents,
    KnownEvent, Pdu,
};
use crate::canonical::{Object, Value};
use crate::event::{EventRef, EventTemplate, StateMap as BuildState};
use crate::pdu::{PduCheck, Verdict};
use crate::room_version::RoomVersion;
use crate::state_res::{resolve, EventStore, StateMap};

use compact::{Body, Interner};

mod batch;
mod compact;
mod federation;
mod history;
mod invite;
mod restricted;
#[cfg(test)]
mod testing;

pub use batch::{restricted_join_json, state_rows};
pub use history::{server_may_see, server_may_see_json, HistoryVisibility, ServerView};
pub use invite::{invite_fallback, rescinds_invite, InviteFallback};
pub use restricted::{RestrictedJoin, RestrictedJoinError};

/// What became of a received event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomVerdict {
    /// Accepted into the room.
    Accepted,
    /// Accepted, but its content hash did not match: only our redacted copy is kept.
    Redacted,
    /// Rejected: it never affects state, is never served to clients or used as a prev event.
    Rejected {
        /// The stable reason code.
        code: &'static str,
    },
    /// Soft-failed: valid, but not allowed by the current state; stored, not a forward extremity.
    SoftFailed {
        /// The stable reason code.
        code: &'static str,
    },
}

impl RoomVerdict {
    /// `accepted`, `redacted`, `rejected` or `soft_failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RoomVerdict::Accepted => "accepted",
            RoomVerdict::Redacted => "redacted",
            RoomVerdict::Rejected { .. } => "rejected",
            RoomVerdict::SoftFailed { .. } => "soft_failed",
        }
    }

    /// The reason code, when not accepted.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            RoomVerdict::Rejected { code } | RoomVerdict::SoftFailed { code } => Some(code),
            _ => None,
        }
    }
}

/// The state the host knows around an event, for [`check_received`].
#[derive(Debug, Clone, Copy)]
pub struct Context<'a, 'b> {
    /// The events the PDU cites in `auth_events` that the host has (with their rejection status).
    pub auth_events: &'b [KnownEvent<'a>],
    /// The room's create event (needed in room version 12, where it is implied).
    pub create: Option<KnownEvent<'a>>,
    /// The state before the event (resolved across its `prev_events`).
    pub state_before: &'b AuthEvents<'a>,
    /// The current state of the room, when it differs from the state before the event (the
    /// event's prev events are not exactly the forward extremities); `None` skips the soft-fail
    /// check, as Synapse does when they are the same.
    pub current_state: Option<&'b AuthEvents<'a>>,
}

/// The verdict on an event the room has already: its first verdict stands.
fn known_verdict(verdict: &Verdict) -> RoomVerdict {
    match verdict {
        Verdict::Redacted => RoomVerdict::Redacted,
        _ => RoomVerdict::Accepted,
    }
}

/// Spec checks 4–6 on an event whose format, signatures and hash were checked by
/// [`check_pdu`](crate::pdu::check_pdu) (whose verdict is `signature_verdict`).
pub fn check_received<'a>(
    pdu: &Pdu,
    signature_verdict: &Verdict,
    ctx: &Context<'a, '_>,
) -> RoomVerdict {
    if let Verdict::Rejected { code, .. } = signature_verdict {
        return RoomVerdict::Rejected { code };
    }
    let v = pdu.room_version;
    let reject = |e: AuthError| RoomVerdict::Rejected { code: e.code() };
    if let Err(e) = check_state_independent(pdu, ctx.auth_events, ctx.create) {
        return reject(e);
    }
    let with_create = |mut a: AuthEvents<'a>| -> AuthEvents<'a> {
        if v.room_id_from_create_event {
            if let Some(c) = ctx.create {
                a.insert(c.pdu);
            }
        }
        a
    };
    let claimed: AuthEvents<'a> = with_create(ctx.auth_events.iter().map(|a| a.pdu).collect());
    if let Err(e) = check_state_dependent(pdu, &claimed) {
        return reject(e);
    }
    let types = auth_type_refs(pdu);
    let select = |state: &AuthEvents<'a>| -> AuthEvents<'a> {
        let mut a = AuthEvents::new();
        for (kind, sk) in &types {
            if let Some(e) = state.get(kind, sk) {
                a.insert(e);
            }
        }
        with_create(a)
    };
    if let Err(e) = check_state_dependent(pdu, &select(ctx.state_before)) {
        return reject(e);
    }
    if let Some(current) = ctx.current_state {
        if let Err(e) = check_state_dependent(pdu, &select(current)) {
            return RoomVerdict::SoftFailed { code: e.code() };
        }
    }
    if *signature_verdict == Verdict::Redacted {
        RoomVerdict::Redacted
    } else {
        RoomVerdict::Accepted
    }
}

#[derive(Debug, Clone)]
struct Stored {
    /// The event, or what is left of it once its body was dropped (see `room/compact.rs`).
    body: Body,
    rejected: bool,
    soft_failed: bool,
    /// State after the event (the state before it, plus the event if it is accepted state).
    state_after: Arc<StateMap>,
}

/// One room's events in memory, with the state after each, its forward extremities, and its
/// current state. A long-lived host may keep only the place in the DAG of messages that are
/// history, their bodies in its storage ([`Room::set_compact_history`]).
#[derive(Debug, Clone)]
pub struct Room {
    version: &'static RoomVersion,
    events: BTreeMap<String, Stored>,
    extremities: BTreeSet<String>,
    /// Events known only through auth chains or state answers (see `room/federation.rs`).
    outliers: BTreeSet<String>,
    /// State before events received with a state given by the host (see `room/federation.rs`).
    given_state: BTreeMap<String, Arc<StateMap>>,
    /// Outliers fetched with `/backfill`: the room's history before we joined (see
    /// `room/history.rs`).
    backfilled: BTreeSet<String>,
    /// Whether message bodies are dropped once they are history (see `room/compact.rs`).
    compact_history: bool,
    /// Non-state events named in a state given by the host: never compacted, state resolution
    /// may look at them.
    pinned: BTreeSet<String>,
    /// The strings and auth event lists compacted events share.
    interned: Interner,
    /// Prev events an accepted event cited before they were in the DAG (unknown, or outliers):
    /// taken in later, they are no forward extremity (see `Room::take_in`). Only gaps add to
    /// it, and taking the event in removes it.
    cited_early: BTreeSet<String>,
}

struct Store<'a>(&'a BTreeMap<String, Stored>);

impl EventStore for Store<'_> {
    fn event(&self, id: &str) -> Option<&Pdu> {
        self.0.get(id).and_then(Stored::pdu)
    }
    fn is_rejected(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(|s| s.rejected)
    }
}

impl EventStore for Room {
    fn event(&self, id: &str) -> Option<&Pdu> {
        self.events.get(id).and_then(Stored::pdu)
    }
    fn is_rejected(&self, id: &str) -> bool {
        self.events.get(id).is_some_and(|s| s.rejected)
    }
}

impl Room {
    /// An empty room of a version.
    pub fn new(version: &'static RoomVersion) -> Room {
        Room {
            version,
            events: BTreeMap::new(),
            extremities: BTreeSet::new(),
            outliers: BTreeSet::new(),
            given_state: BTreeMap::new(),
            backfilled: BTreeSet::new(),
            compact_history: false,
            pinned: BTreeSet::new(),
            interned: Interner::default(),
            cited_early: BTreeSet::new(),
        }
    }

    /// The room version.
    pub fn version(&self) -> &'static RoomVersion {
        self.version
    }

    /// Whether an event is known.
    pub fn contains(&self, id: &str) -> bool {
        self.events.contains_key(id)
    }

    /// A known event and whether it was rejected; `None` also for an event whose body was
    /// dropped ([`Room::set_compact_history`]; [`Room::contains`] still knows it).
    pub fn event(&self, id: &str) -> Option<(&Pdu, bool)> {
        let s = self.events.get(id)?;
        Some((s.pdu()?, s.rejected))
    }

    /// The forward extremities: accepted events that no accepted event cites yet, directly or
    /// through soft-failed or rejected events (as Synapse's `_calculate_new_extremities`).
    pub fn forward_extremities(&self) -> &BTreeSet<String> {
        &self.extremities
    }

    /// A known event as [`build_event`](crate::event::build_event) cites it: its ID, depth and,
    /// in room versions whose references carry hashes (1 and 2), its reference hash (`None` in
    /// those versions for an event whose body was dropped; forward extremities keep theirs).
    pub fn event_ref(&self, id: &str) -> Option<EventRef> {
        let stored = self.events.get(id)?;
        let sha256 = if self.version.event_refs_with_hashes {
            let pdu = stored.pdu()?;
            Some(crate::base64::encode(crate::event::reference_hash(
                &pdu.event,
                self.version,
            )))
        } else {
            None
        };
        Some(EventRef {
            event_id: id.to_owned(),
            depth: stored.depth(),
            sha256,
        })
    }

    /// What a new event built now sits on: the forward extremities as its `prev_events`, and
    /// the current state to choose its auth events from (the arguments of
    /// [`build_event`](crate::event::build_event)).
    pub fn build_on(&self) -> (Vec<EventRef>, BuildState) {
        let state = self
            .current_state_shared()
            .iter()
            .filter_map(|(k, id)| Some((k.clone(), self.event_ref(id)?)))
            .collect();
        (self.prev_refs(), state)
    }

    /// [`Room::build_on`] for one event: only the current state entries `template` may cite
    /// (its [`auth_types`](crate::event::auth_types)), so building an event costs the same in a
    /// room of any size. [`build_event`](crate::event::build_event) picks the same auth events
    /// from either.
    pub fn build_on_for(&self, template: &EventTemplate) -> (Vec<EventRef>, BuildState) {
        let current = self.current_state_shared();
        let state = crate::event::auth_types(template, self.version)
            .into_iter()
            .filter_map(|k| {
                let r = self.event_ref(current.get(&k)?)?;
                Some((k, r))
            })
            .collect();
        (self.prev_refs(), state)
    }

    fn prev_refs(&self) -> Vec<EventRef> {
        self.extremities
            .iter()
            .filter_map(|id| self.event_ref(id))
            .collect()
    }

    /// The resolution of the states after some events. One state is shared, not copied: a
    /// chain of messages keeps one state map between them.
    fn resolve_after<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Arc<StateMap> {
        let mut after: Vec<&Arc<StateMap>> = ids
            .into_iter()
            .filter_map(|id| self.events.get(id))
            .map(|s| &s.state_after)
            .collect();
        after.dedup_by(|a, b| Arc::ptr_eq(a, b));
        match after.as_slice() {
            [] => Arc::new(StateMap::new()),
            [one] => Arc::clone(one),
            many => {
                let sets: Vec<StateMap> = many.iter().map(|s| (***s).clone()).collect();
                Arc::new(resolve(self.version, &sets, &Store(&self.events)))
            }
        }
    }

    fn state_before(&self, stored: &Stored) -> Arc<StateMap> {
        self.resolve_after(stored.prev_event_ids())
    }

    /// The events of `state` that authorise `pdu` (its auth types, as Synapse selects them),
    /// leaving out rejected ones. Only those few are looked up, whatever the size of the state.
    fn auth_view(&self, state: &StateMap, pdu: &Pdu) -> AuthEvents<'_> {
        let mut key = (String::new(), String::new());
        auth_type_refs(pdu)
            .into_iter()
            .filter_map(|(kind, sk)| state.get(refill(&mut key, kind, sk)))
            .filter_map(|id| self.events.get(id))
            .filter(|s| !s.rejected)
            .filter_map(Stored::pdu)
            .collect()
    }

    /// The current state: the resolution of the state after every forward extremity.
    pub fn current_state(&self) -> StateMap {
        (*self.current_state_shared()).clone()
    }

    /// [`Room::current_state`] without a copy when one state is current (one forward extremity,
    /// or several sharing one state).
    pub fn current_state_shared(&self) -> Arc<StateMap> {
        self.resolve_after(self.extremities.iter().map(String::as_str))
    }

    fn create_event(&self, pdu: &Pdu) -> Option<KnownEvent<'_>> {
        let id = if self.version.room_id_from_create_event {
            pdu.room_id().and_then(crate::identifiers::create_event_id)
        } else {
            None
        }?;
        let s = self.events.get(&id)?;
        Some(KnownEvent {
            pdu: s.pdu()?,
            rejected: s.rejected,
        })
    }

    /// Runs a checked PDU through the pipeline and stores it. An event already known is not
    /// stored again (its first verdict stands); the verdict of the new copy is still returned.
    /// The exception is an event known only as an outlier whose prev events are all in the DAG
    /// now: it is checked and taken in as a new event would be, and is no longer an outlier.
    pub fn receive(&mut self, check: &PduCheck) -> RoomVerdict {
        self.receive_inner(check, None)
    }

    /// [`Room::receive`], with the state before the event computed from its prev events or,
    /// when `given_before` is set, taken from the host (see `room/federation.rs`).
    fn receive_inner(
        &mut self,
        check: &PduCheck,
        given_before: Option<Arc<StateMap>>,
    ) -> RoomVerdict {
        match self.pdu_of(check) {
            Ok(pdu) => self.receive_pdu(pdu, &check.verdict, given_before),
            Err(v) => v,
        }
    }

    /// The event of a check, taken apart; the verdict when there is none to take in.
    fn pdu_of(&self, check: &PduCheck) -> Result<Pdu, RoomVerdict> {
        let Some(event) = &check.event else {
            return Err(match &check.verdict {
                Verdict::Rejected { code, .. } => RoomVerdict::Rejected { code },
                _ => RoomVerdict::Rejected {
                    code: "pdu_missing",
                },
            });
        };
        // The check computed the ID already (the reference hash, from v3); only a check made
        // without one (a hand-made PduCheck) hashes here.
        match check.pdu(self.version) {
            Some(p) => Ok(p),
            None => Pdu::new(event.clone(), self.version)
                .map_err(|e| RoomVerdict::Rejected { code: e.code() }),
        }
    }

    /// [`Room::receive`] for an event already taken apart: the PDU and the verdict of its
    /// format, signature and hash checks. Hosts that hold the [`Pdu`] use this rather than a copy.
    pub fn receive_checked(&mut self, pdu: Pdu, verdict: &Verdict) -> RoomVerdict {
        self.receive_pdu(pdu, verdict, None)
    }

    /// The verdict [`Room::receive`] would give the event, without taking it in: for a server
    /// that offers an event before anyone signs it (a `make_join` template) or asks whether one
    /// would pass, at the cost of one event's checks rather than a copy of the room.
    pub fn check(&self, check: &PduCheck) -> RoomVerdict {
        let pdu = match self.pdu_of(check) {
            Ok(p) => p,
            Err(v) => return v,
        };
        if !self.takes_in(&pdu, false) {
            return known_verdict(&check.verdict);
        }
        self.verdict_before(&pdu, &check.verdict, None).0
    }

    /// Whether receiving `pdu` takes it into the DAG: it is new, or it is known only as an
    /// outlier and now comes with its place in the DAG (`given_state`, or every prev event
    /// placed). Such an outlier is de-outliered, as Synapse does when an event it had only as an
    /// outlier arrives through `/send` or `/get_missing_events` (`on_receive_pdu`,
    /// `_process_pulled_events`): checked against the state before it like a new event, and a
    /// forward extremity, a state and a prev event like any other from then on. An outlier
    /// whose prev events are still missing stays one (the host fetches them first), and so does
    /// a backfilled event: Synapse keeps those in its timeline and never processes them again.
    fn takes_in(&self, pdu: &Pdu, given_state: bool) -> bool {
        let id = pdu.event_id.as_str();
        if !self.events.contains_key(id) {
            return true;
        }
        self.outliers.contains(id)
            && !self.backfilled.contains(id)
            && (given_state || self.unknown_prev_events(pdu).is_empty())
    }

    fn receive_pdu(
        &mut self,
        pdu: Pdu,
        verdict: &Verdict,
        given_before: Option<Arc<StateMap>>,
    ) -> RoomVerdict {
        if !self.takes_in(&pdu, given_before.is_some()) {
            return known_verdict(verdict);
        }
        // A de-outliered event keeps its stored entry (what it cites, or what names it in a
        // state, may be read while it is checked) until `take_in` replaces it.
        self.outliers.remove(&pdu.event_id);
        let (verdict, before) = self.verdict_before(&pdu, verdict, given_before);
        self.take_in(pdu, verdict, before)
    }

    /// Checks 4–6 on an event not yet in the room, and the state before it.
    fn verdict_before(
        &self,
        pdu: &Pdu,
        verdict: &Verdict,
        given_before: Option<Arc<StateMap>>,
    ) -> (RoomVerdict, Arc<StateMap>) {
        let stand_ins = self.stand_ins(pdu);
        let auth = self.known_auth(pdu, &stand_ins);
        let before = match given_before {
            Some(s) => s,
            None => self.resolve_after(pdu.prev_event_ids()),
        };
        let before_view = self.auth_view(&before, pdu);
        let prevs: BTreeSet<&str> = pdu.prev_event_ids().into_iter().collect();
        let extends_extremities = prevs.len() == self.extremities.len()
            && self.extremities.iter().all(|e| prevs.contains(e.as_str()));
        // Soft-fail state, as Synapse computes it: nothing to check when the event extends the
        // current extremities exactly; the current state when every prev event is known; with
        // missing prev events (a gap), the resolution of the extremities' states and the state
        // given for the event, so a ban inside the gap still counts.
        let current = if extends_extremities || self.extremities.is_empty() {
            None
        } else {
            let mut sets: Vec<StateMap> = self
                .extremities
                .iter()
                .filter_map(|id| self.events.get(id))
                .map(|s| (*s.state_after).clone())
                .collect();
            if prevs.iter().any(|p| !self.events.contains_key(*p)) {
                sets.push((*before).clone());
            }
            Some(resolve(self.version, &sets, &Store(&self.events)))
        };
        let current_view = current.as_ref().map(|c| self.auth_view(c, pdu));
        let verdict = check_received(
            pdu,
            verdict,
            &Context {
                auth_events: &auth,
                create: self.create_event(pdu),
                state_before: &before_view,
                current_state: current_view.as_ref(),
            },
        );
        (verdict, before)
    }

    /// Takes in an event with its verdict and the state before it: its state after, the
    /// forward extremities, compaction.
    ///
    /// The forward extremities change as Synapse's `_calculate_new_extremities` changes them.
    /// An accepted event (neither rejected nor soft-failed) replaces its prev events; it is no
    /// extremity itself when an accepted event already in the DAG cites it (it arrived after its
    /// child: the child was taken in with a given state across the gap); and when it cites a
    /// soft-failed or rejected event, the prev events of that event are no extremities either,
    /// nor those of the soft-failed or rejected events before it (Synapse's
    /// `_get_prevs_before_rejected`): the new event reaches them through events that never
    /// became extremities, and left alone they would stay extremities for good.
    fn take_in(&mut self, pdu: Pdu, verdict: RoomVerdict, before: Arc<StateMap>) -> RoomVerdict {
        let prevs: BTreeSet<&str> = pdu.prev_event_ids().into_iter().collect();
        let rejected = matches!(verdict, RoomVerdict::Rejected { .. });
        let soft_failed = matches!(verdict, RoomVerdict::SoftFailed { .. });
        let after = match pdu.state_pair() {
            Some(key) if !rejected => {
                let mut after = (*before).clone();
                after.insert(key, pdu.event_id.clone());
                Arc::new(after)
            }
            _ => before,
        };
        let id = pdu.event_id.clone();
        let mut no_longer_extremities = Vec::new();
        let cited_by_a_child = self.cited_early.remove(&id);
        if !rejected && !soft_failed {
            for p in &prevs {
                if self.extremities.remove(*p) {
                    no_longer_extremities.push((*p).to_owned());
                }
                if !self.events.contains_key(*p) || self.outliers.contains(*p) {
                    self.cited_early.insert((*p).to_owned());
                }
            }
            for p in self.prevs_past_failed(&prevs) {
                if self.extremities.remove(&p) {
                    no_longer_extremities.push(p);
                }
            }
            if !cited_by_a_child {
                self.extremities.insert(id.clone());
            }
        }
        self.events.insert(
            id.clone(),
            Stored {
                body: Body::Full(Box::new(pdu)),
                rejected,
                soft_failed,
                state_after: after,
            },
        );
        // History now: an event compacts when it stops being a forward extremity, or at once
        // when it never becomes one.
        for p in no_longer_extremities {
            self.compact(&p);
        }
        if rejected || soft_failed || cited_by_a_child {
            self.compact(&id);
        }
        verdict
    }

    /// The events before `prevs` across soft-failed or rejected events of the DAG: the prev
    /// events of each such event among `prevs`, and on through those that are soft-failed or
    /// rejected too (Synapse's `_get_prevs_before_rejected`). Empty unless the new event cites
    /// one, so the walk costs nothing in a room without them.
    fn prevs_past_failed(&self, prevs: &BTreeSet<&str>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut queue: Vec<&str> = prevs.iter().copied().collect();
        while let Some(id) = queue.pop() {
            let Some(s) = self.events.get(id) else {
                continue;
            };
            if self.outliers.contains(id) || !(s.soft_failed || s.rejected) {
                continue;
            }
            for p in s.prev_event_ids() {
                if out.insert(p.to_owned()) {
                    queue.push(p);
                }
            }
        }
        out
    }

    /// The state after a known event (before it, plus the event itself unless rejected).
    pub fn state_after(&self, id: &str) -> Option<&StateMap> {
        self.events.get(id).map(|s| &*s.state_after)
    }

    /// Whether a known event was soft-failed.
    pub fn is_soft_failed(&self, id: &str) -> bool {
        self.events.get(id).is_some_and(|s| s.soft_failed)
    }
}

/// Orders events causally: every event after the events it cites in `prev_events` and
/// `auth_events` (among those given), ties broken by depth and then event ID.
pub fn causal_order(events: &[Pdu]) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id.as_str(), i))
        .collect();
    let mut indegree = vec![0usize; events.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); events.len()];
    for (i, e) in events.iter().enumerate() {
        let parents: BTreeSet<usize> = e
            .prev_event_ids()
            .into_iter()
            .chain(e.auth_event_ids())
            .filter_map(|p| index.get(p).copied())
            .filter(|p| *p != i)
            .collect();
        indegree[i] = parents.len();
        for p in parents {
            children[p].push(i);
        }
    }
    let key = |i: usize| (events[i].depth(), events[i].event_id.clone(), i);
    let mut ready: BTreeSet<(i64, String, usize)> = (0..events.len())
        .filter(|i| indegree[*i] == 0)
        .map(key)
        .collect();
    let mut out = Vec::with_capacity(events.len());
    while let Some(first) = ready.pop_first() {
        let i = first.2;
        out.push(i);
        for &c in &children[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.insert(key(c));
            }
        }
    }
    // Events in a cycle (malformed input) come last, by depth.
    if out.len() < events.len() {
        let placed: BTreeSet<usize> = out.iter().copied().collect();
        let mut rest: Vec<usize> = (0..events.len()).filter(|i| !placed.contains(i)).collect();
        rest.sort_by_key(|i| key(*i));
        out.extend(rest);
    }
    out
}

/// A state map as `{"state": [{"type","state_key","event_id"}, …]}`, sorted by type and state key.
pub fn state_to_json(state: &StateMap) -> Object {
    let list = state
        .iter()
        .map(|((t, sk), id)| {
            let mut o = Object::new();
            o.insert("type", t.as_str());
            o.insert("state_key", sk.as_str());
            o.insert("event_id", id.as_str());
            Value::Object(o)
        })
        .collect();
    let mut o = Object::new();
    o.insert("state", Value::Array(list));
    o
}

/// The verdict line for a received event: [`PduCheck::to_json`] with `verdict` (and `reason`)
/// from the room pipeline.
pub fn verdict_json(check: &PduCheck, verdict: &RoomVerdict) -> Object {
    let mut o = check.to_json();
    o.insert("verdict", verdict.as_str());
    match verdict.code() {
        Some(code) => {
            o.insert("reason", code);
            if !matches!(check.verdict, Verdict::Rejected { .. }) {
                o.remove("error");
            }
        }
        None => {
            o.remove("reason");
            o.remove("error");
        }
    }
    o
}

/// Replays a whole room: checks every PDU (format, signatures, hash), orders them causally,
/// runs each through the pipeline against the state before it, and returns one verdict per input
/// PDU (in processing order) and the final current state. Copies of an event already seen (for
/// example the redacted form served over federation) get their own verdict but are not stored
/// twice; an intact copy is preferred over a redacted one.
pub fn replay(
    pdus: &[&[u8]],
    v: &'static RoomVersion,
    keys: &crate::server_keys::KeyRing,
) -> (Vec<Object>, StateMap) {
    let mut room = Room::new(v);
    let out = room.receive_pdus(pdus, keys);
    let state = room.current_state();
    (out, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::testing::{build, build_citing, public_room, received, send, JOIN};

    fn ids<'a>(list: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        list.into_iter().map(str::to_owned).collect()
    }

    /// A public room that bob joined, then two forks on it: a message `x` and bob's ban `y`.
    /// Returns the room (extremities `x` and `y`), the room before the forks, and their IDs.
    fn forked() -> (Room, Room, String, String) {
        let (mut room, _) = public_room();
        send(&mut room, "m.room.member", "@bob:b", Some("@bob:b"), JOIN);
        let base = room.clone();
        let (x, xc) = build(&base, "m.room.message", "@u:a", None, "{}", None, 2);
        let ban = r#"{"membership":"ban"}"#;
        let (y, yc) = build(&base, "m.room.member", "@u:a", Some("@bob:b"), ban, None, 3);
        assert_eq!(room.receive(&xc), RoomVerdict::Accepted);
        assert_eq!(room.receive(&yc), RoomVerdict::Accepted);
        let want = ids([x.event_id.as_str(), y.event_id.as_str()]);
        assert_eq!(*room.forward_extremities(), want);
        (room, base, x.event_id, y.event_id)
    }

    /// Bob's messages on the side of the fork without his ban soft-fail; an accepted event
    /// citing the last of them replaces the extremity they stand on (as Synapse's
    /// `_get_prevs_before_rejected`, through each soft-failed event).
    #[test]
    fn an_event_past_soft_failed_ones_replaces_the_extremity_before_them() {
        let (mut room, base, x, y) = forked();
        // Bob's messages cite his join, as on the side without the ban.
        let soft = |room: &mut Room, c: &PduCheck| {
            let v = room.receive(c);
            assert!(matches!(v, RoomVerdict::SoftFailed { .. }), "{v:?}");
        };
        let (_, s1) = build_citing(&room, &[&x], &base, "@bob:b", "s1");
        soft(&mut room, &s1);
        let s1_id = s1.event_id.as_deref().unwrap();
        let (_, s2) = build_citing(&room, &[s1_id], &base, "@bob:b", "s2");
        soft(&mut room, &s2);
        let s2_id = s2.event_id.as_deref().unwrap();
        let (e, ec) = build_citing(&room, &[s2_id], &room, "@u:a", "e");
        assert_eq!(room.receive(&ec), RoomVerdict::Accepted);
        assert_eq!(
            *room.forward_extremities(),
            ids([y.as_str(), e.event_id.as_str()])
        );
    }

    /// The same past a rejected event: a message of bob's after his ban, citing the ban.
    #[test]
    fn an_event_past_a_rejected_one_replaces_the_extremity_before_it() {
        let (mut room, base, x, y) = forked();
        let (_, r) = build_citing(&room, &[&y], &base, "@bob:b", "r");
        let v = room.receive(&r);
        assert!(matches!(v, RoomVerdict::Rejected { .. }), "{v:?}");
        let r_id = r.event_id.as_deref().unwrap();
        let (e, ec) = build_citing(&room, &[r_id], &room, "@u:a", "e");
        assert_eq!(room.receive(&ec), RoomVerdict::Accepted);
        assert_eq!(
            *room.forward_extremities(),
            ids([x.as_str(), e.event_id.as_str()])
        );
    }

    /// An event taken in after its child (the child placed with a given state across the gap,
    /// the event unknown or an outlier then) is no forward extremity: the child cites it.
    #[test]
    fn an_event_taken_in_after_its_child_is_no_extremity() {
        let (mut a, seed) = public_room();
        let (_, parent) = send(&mut a, "m.room.message", "@u:a", None, "{}");
        let (child, child_c) = send(&mut a, "m.room.message", "@u:a", None, r#"{"n":1}"#);
        let before_child = a.state_before_event(&child.event_id).unwrap();
        let parent_id = parent.event_id.as_deref().unwrap();
        for outlier_first in [false, true] {
            let mut b = received(&seed);
            b.set_compact_history(true);
            if outlier_first {
                assert_eq!(b.add_outlier(&parent), RoomVerdict::Accepted);
            }
            let verdict = b.receive_with_state(&child_c, before_child.clone());
            assert_eq!(verdict, RoomVerdict::Accepted);
            assert_eq!(b.receive(&parent), RoomVerdict::Accepted);
            assert_eq!(b.forward_extremities(), a.forward_extremities());
            assert_eq!(b.current_state(), a.current_state());
            // History at once: a message that is no extremity keeps no body.
            assert!(!b.has_body(parent_id) && b.contains(parent_id));
        }
    }
}
