//! ruma-state-res as the peer: a ruma `Event` over mxfed's stored events, the inputs ruma's
//! `resolve` needs (state maps, full auth chains, event fetch, conflicted state subgraph), each
//! computed here independently of mxfed's resolver, and the comparison of both results.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use mxfed_core::state_res::StateMap;
use mxfed_state_res_diff::{describe, Dag, Resolution, Store};
use ruma_common::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
    RoomVersionId, UserId,
};
use ruma_events::{StateEventType, TimelineEventType};
use ruma_state_res::utils::event_id_set::EventIdSet;
use ruma_state_res::Event;
use serde::Deserialize;
use serde_json::value::RawValue;

/// An mxfed event as ruma sees it.
#[derive(Debug)]
pub struct RumaPdu {
    event_id: OwnedEventId,
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    rejected: bool,
}

#[derive(Deserialize)]
struct Fields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
}

impl Event for RumaPdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        None
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// Every event of a store as ruma events. `Err` names an event ruma cannot represent (a
/// precondition violation: the room is then not compared).
pub fn ruma_events(store: &Store) -> Result<HashMap<OwnedEventId, Arc<RumaPdu>>, String> {
    let mut out = HashMap::new();
    for (id, s) in &store.events {
        let json = s.pdu.event.to_canonical_string();
        let f: Fields = serde_json::from_str(&json).map_err(|e| format!("{id}: {e}"))?;
        let parse = |i: &str| EventId::parse(i).map_err(|e| format!("{i}: {e}"));
        let pdu = RumaPdu {
            event_id: parse(id)?,
            room_id: f.room_id,
            sender: f.sender,
            origin_server_ts: f.origin_server_ts,
            kind: f.kind,
            content: f.content,
            state_key: f.state_key,
            prev_events: s
                .pdu
                .prev_event_ids()
                .into_iter()
                .map(parse)
                .collect::<Result<_, _>>()?,
            auth_events: s
                .pdu
                .auth_event_ids()
                .into_iter()
                .map(parse)
                .collect::<Result<_, _>>()?,
            rejected: s.rejected,
        };
        out.insert(pdu.event_id.clone(), Arc::new(pdu));
    }
    Ok(out)
}

type RumaStateMap = ruma_state_res::StateMap<OwnedEventId>;

fn to_ruma(state: &StateMap) -> RumaStateMap {
    state
        .iter()
        .map(|((t, sk), id)| {
            (
                (StateEventType::from(t.as_str()), sk.clone()),
                EventId::parse(id.as_str()).expect("event ID"),
            )
        })
        .collect()
}

fn from_ruma(state: &RumaStateMap) -> StateMap {
    state
        .iter()
        .map(|((t, sk), id)| ((t.to_string(), sk.clone()), id.to_string()))
        .collect()
}

/// The conflicted state subgraph (v2.1): every event on an `auth_events` path from one
/// conflicted event to another, endpoints included — computed naively, per event, so it does
/// not share code with mxfed's.
pub fn conflicted_subgraph(store: &Store, conflicted: &BTreeSet<String>) -> BTreeSet<String> {
    store
        .auth_closure(conflicted)
        .into_iter()
        .filter(|e| {
            store
                .auth_closure(std::iter::once(e))
                .iter()
                .any(|a| conflicted.contains(a))
        })
        .collect()
}

/// Why a resolution was not compared with ruma.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// ruma does not implement this room version's algorithm (v1).
    Unsupported(&'static str),
    /// An input state holds a rejected event: not a state any server computes.
    RejectedInState,
    /// An event of the auth chains is missing from the store.
    MissingEvent,
    /// ruma cannot represent an event.
    Unrepresentable,
    /// ruma returned an error.
    RumaError(String),
}

/// ruma's resolution of the same inputs, or why it must not be asked.
pub fn ruma_resolve(
    dag: &Dag,
    events: &HashMap<OwnedEventId, Arc<RumaPdu>>,
    r: &Resolution,
) -> Result<StateMap, Skip> {
    // Preconditions: every input state holds accepted events only, and every event of the
    // full auth chains is known.
    for s in &r.state_sets {
        for id in s.values() {
            match dag.store.events.get(id) {
                None => return Err(Skip::MissingEvent),
                Some(e) if e.rejected => return Err(Skip::RejectedInState),
                Some(_) => {}
            }
        }
    }
    let chains = auth_chains(dag, r);
    if chains
        .iter()
        .flatten()
        .any(|id| !dag.store.events.contains_key(id))
    {
        return Err(Skip::MissingEvent);
    }
    ruma_resolve_unchecked(dag, events, r)
}

/// The full auth chain of each input state: every event reachable through `auth_events` from
/// its events, the events themselves included (as Synapse's chain cover index counts them).
pub fn auth_chains(dag: &Dag, r: &Resolution) -> Vec<BTreeSet<String>> {
    r.state_sets
        .iter()
        .map(|s| dag.store.auth_closure(s.values()))
        .collect()
}

/// [`ruma_resolve`] without checking ruma's preconditions.
pub fn ruma_resolve_unchecked(
    dag: &Dag,
    events: &HashMap<OwnedEventId, Arc<RumaPdu>>,
    r: &Resolution,
) -> Result<StateMap, Skip> {
    let rules = RoomVersionId::try_from(dag.version.id)
        .ok()
        .and_then(|id| id.rules())
        .ok_or(Skip::Unsupported("unknown room version"))?;
    let sr = *rules
        .state_res
        .v2_rules()
        .ok_or(Skip::Unsupported("state resolution v1"))?;
    let chains = auth_chains(dag, r);
    let parse = |ids: &BTreeSet<String>| -> EventIdSet<OwnedEventId> {
        ids.iter()
            .map(|i| EventId::parse(i.as_str()).expect("event ID"))
            .collect()
    };
    let ruma_chains: Vec<EventIdSet<OwnedEventId>> = chains.iter().map(parse).collect();
    let maps: Vec<RumaStateMap> = r.state_sets.iter().map(to_ruma).collect();
    let fetch = |id: &EventId| events.get(id).cloned();
    let subgraph = |conflicted: &ruma_state_res::StateMap<Vec<OwnedEventId>>| {
        let c: BTreeSet<String> = conflicted
            .values()
            .flatten()
            .map(|i| i.to_string())
            .collect();
        Some(parse(&conflicted_subgraph(&dag.store, &c)))
    };
    ruma_state_res::resolve(
        &rules.authorization,
        &sr,
        &maps,
        ruma_chains,
        fetch,
        subgraph,
    )
    .map(|s| from_ruma(&s))
    .map_err(|e| Skip::RumaError(e.to_string()))
}

/// The keys on which two resolved states differ, with both values.
pub fn diff(
    a: &StateMap,
    b: &StateMap,
) -> BTreeMap<(String, String), (Option<String>, Option<String>)> {
    let keys: BTreeSet<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| ((*k).clone(), (a.get(k).cloned(), b.get(k).cloned())))
        .collect()
}

/// A full report of one disagreement: the room, the inputs and both results.
pub fn report(dag: &Dag, r: &Resolution, ruma: &StateMap) -> String {
    let mut out = format!(
        "room v{} seed {} ({} events, {} rejected)\nresolving the states after {:?}\n",
        dag.version.id,
        dag.seed,
        dag.order.len(),
        dag.rejected,
        r.tips
    );
    for (k, (m, x)) in diff(&r.resolved, ruma) {
        out += &format!("  key {k:?}:\n    mxfed: {m:?}\n    ruma:  {x:?}\n");
    }
    out += "events (generation order):\n";
    for id in &dag.order {
        out += &format!("  {}\n", describe(&dag.store, id));
        if let Some(s) = dag.store.events.get(id) {
            out += &format!(
                "      prev={:?} auth={:?}\n",
                s.pdu.prev_event_ids(),
                s.pdu.auth_event_ids()
            );
        }
    }
    for (i, s) in r.state_sets.iter().enumerate() {
        out += &format!("state set {i}:\n");
        for (k, id) in s {
            out += &format!("  {k:?} = {id}\n");
        }
    }
    out
}

/// The top-level levels a power-levels change is checked on, with their defaults.
const NAMED_LEVELS: [(&str, i64); 7] = [
    ("users_default", 0),
    ("events_default", 0),
    ("state_default", 50),
    ("ban", 50),
    ("kick", 50),
    ("redact", 50),
    ("invite", 0),
];

/// The power-levels events that ruma's auth rules reject and Synapse's (and mxfed's) allow,
/// against some power-levels event of the room: those that add or remove one of the seven
/// top-level levels where only the default of the absent side is above the sender's level.
///
/// When a level is added or removed, ruma (`check_room_power_levels` in `event_auth.rs`) reads
/// the absent side as the level's default (`unwrap_or_else(|| field.default_value())`) and
/// rejects if that default is above the sender's level; Synapse (`_check_power_levels` in
/// `synapse/event_auth.py`) only compares the values that are present (`old_level is not None
/// and old_level > user_level`). So a user at 25 may remove `"state_default": 0` (or add
/// `"ban": 0`) in Synapse and mxfed, not in ruma. The spec's wording ("if the new value is higher
/// than the sender's current power level") does not say what the new value of a removed key is;
/// mxfed follows Synapse, the reference.
pub fn ruma_default_level_divergence(store: &Store) -> BTreeSet<String> {
    let pls: Vec<&mxfed_core::auth::Pdu> = store
        .events
        .values()
        .map(|s| &s.pdu)
        .filter(|p| p.is("m.room.power_levels", ""))
        .collect();
    let int = |o: &mxfed_core::canonical::Object, k: &str| o.get(k).and_then(|v| v.as_int());
    let mut out = BTreeSet::new();
    for e in &pls {
        for p in &pls {
            if p.event_id == e.event_id {
                continue;
            }
            let (old, new) = (p.content(), e.content());
            let level = old
                .get_object("users")
                .and_then(|u| u.get(e.sender()))
                .and_then(|v| v.as_int())
                .or_else(|| int(old, "users_default"))
                .unwrap_or(0);
            let diverges = NAMED_LEVELS.iter().any(|(k, default)| {
                let (o, n) = (int(old, k), int(new, k));
                o.is_some() != n.is_some()
                    && (o.unwrap_or(*default) > level || n.unwrap_or(*default) > level)
                    && !(o.is_some_and(|x| x > level) || n.is_some_and(|x| x > level))
            });
            if diverges {
                out.insert(e.event_id.clone());
            }
        }
    }
    out
}
