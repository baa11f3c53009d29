//! State resolution: v1 (room version 1), v2 (room versions 2–11) and v2.1 (room version 12)
//! ([spec § State resolution], DIGEST §11). Pure: the caller supplies the state sets and every
//! event they and their auth chains need, through an [`EventStore`].
//!
//! The algorithms follow Synapse's implementation step for step (it is the reference peer):
//! the same tie-breaks, the same treatment of missing and rejected events.
//!
//! [spec § State resolution]: https://spec.matrix.org/latest/rooms/v2/#state-resolution

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use sha1::{Digest, Sha1};

use crate::auth::{
    auth_types_for_event, check_state_dependent, creators, level, AuthEvents, Pdu, CREATOR_POWER,
};
use crate::room_version::{RoomVersion, StateResVersion};

/// `(type, state_key)` → event ID.
pub type StateMap = BTreeMap<(String, String), String>;

/// Where state resolution finds events.
pub trait EventStore {
    /// The event with this ID, if known.
    fn event(&self, id: &str) -> Option<&Pdu>;
    /// Whether the event was rejected (rejected events never enter resolved state).
    fn is_rejected(&self, id: &str) -> bool;
}

impl EventStore for BTreeMap<String, Pdu> {
    fn event(&self, id: &str) -> Option<&Pdu> {
        self.get(id)
    }
    fn is_rejected(&self, _id: &str) -> bool {
        false
    }
}

/// Resolves state sets into one, by the room version's algorithm.
pub fn resolve(
    v: &'static RoomVersion,
    state_sets: &[StateMap],
    store: &impl EventStore,
) -> StateMap {
    match state_sets {
        [] => StateMap::new(),
        [one] => one.clone(),
        _ => match v.state_res {
            StateResVersion::V1 => resolve_v1(v, state_sets, store),
            _ => resolve_v2(v, state_sets, store),
        },
    }
}

fn is_power_event(e: &Pdu) -> bool {
    if e.is("m.room.power_levels", "") || e.is("m.room.join_rules", "") || e.is("m.room.create", "")
    {
        return true;
    }
    e.kind() == "m.room.member"
        && matches!(e.membership(), Some("leave" | "ban"))
        && e.state_key() != Some(e.sender())
}

/// The room's create event: the cited one (v1–11) or the one named by the room ID (v12).
fn create_of<'a>(e: &Pdu, store: &'a impl EventStore) -> Option<&'a Pdu> {
    if e.room_version.room_id_from_create_event {
        let room = e.room_id()?;
        return store.event(&format!("${}", room.get(1..)?));
    }
    e.auth_event_ids()
        .into_iter()
        .filter_map(|id| store.event(id))
        .find(|a| a.is("m.room.create", ""))
}

/// Builds the state an event is checked against during iterative auth checks: its own
/// non-rejected auth events, overridden by the resolved state for the keys it may cite, plus the
/// create event in v12.
fn auth_for<'a>(e: &Pdu, resolved: &StateMap, store: &'a impl EventStore) -> AuthEvents<'a> {
    let mut auth = AuthEvents::new();
    if e.room_version.room_id_from_create_event {
        if let Some(c) = create_of(e, store) {
            auth.insert(c);
        }
    }
    for id in e.auth_event_ids() {
        if let Some(a) = store.event(id) {
            if !store.is_rejected(id) {
                auth.insert(a);
            }
        }
    }
    for key in auth_types_for_event(e) {
        if let Some(id) = resolved.get(&key) {
            if let Some(a) = store.event(id) {
                if !store.is_rejected(id) {
                    auth.insert(a);
                }
            }
        }
    }
    auth
}

// ------------------------------------------------------------------------------------------ v2

fn separate_v2(
    state_sets: &[StateMap],
) -> (StateMap, BTreeMap<(String, String), BTreeSet<String>>) {
    let keys: BTreeSet<&(String, String)> = state_sets.iter().flat_map(|s| s.keys()).collect();
    let mut unconflicted = StateMap::new();
    let mut conflicted = BTreeMap::new();
    for key in keys {
        let ids: BTreeSet<Option<&String>> = state_sets.iter().map(|s| s.get(key)).collect();
        if ids.len() == 1 {
            if let Some(Some(id)) = ids.into_iter().next() {
                unconflicted.insert(key.clone(), id.clone());
            }
        } else {
            conflicted.insert(key.clone(), ids.into_iter().flatten().cloned().collect());
        }
    }
    (unconflicted, conflicted)
}

/// Every event reachable through `auth_events` from `start`, the start events included.
fn auth_closure(
    start: impl IntoIterator<Item = String>,
    store: &impl EventStore,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = start.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(e) = store.event(&id) {
            stack.extend(
                e.auth_event_ids()
                    .into_iter()
                    .filter(|a| !seen.contains(*a))
                    .map(str::to_owned),
            );
        }
    }
    seen
}

fn auth_difference(state_sets: &[StateMap], store: &impl EventStore) -> BTreeSet<String> {
    let chains: Vec<BTreeSet<String>> = state_sets
        .iter()
        .map(|s| auth_closure(s.values().cloned(), store))
        .collect();
    let union: BTreeSet<&String> = chains.iter().flatten().collect();
    union
        .into_iter()
        .filter(|id| !chains.iter().all(|c| c.contains(*id)))
        .cloned()
        .collect()
}

/// (v2.1) Events on some auth path between two conflicted events, endpoints included.
fn conflicted_subgraph(conflicted: &BTreeSet<String>, store: &impl EventStore) -> BTreeSet<String> {
    let ancestors = auth_closure(conflicted.iter().cloned(), store);
    let mut reaches: BTreeMap<String, bool> = BTreeMap::new();
    fn reaches_conflicted(
        id: &str,
        conflicted: &BTreeSet<String>,
        ancestors: &BTreeSet<String>,
        store: &impl EventStore,
        memo: &mut BTreeMap<String, bool>,
    ) -> bool {
        // Iterative post-order to stay safe on deep auth chains.
        let mut stack = vec![(id.to_owned(), false)];
        while let Some((node, expanded)) = stack.pop() {
            if memo.contains_key(&node) {
                continue;
            }
            let children: Vec<String> = store
                .event(&node)
                .map(|e| {
                    e.auth_event_ids()
                        .into_iter()
                        .filter(|a| ancestors.contains(*a))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if expanded || conflicted.contains(&node) {
                let r = conflicted.contains(&node)
                    || children
                        .iter()
                        .any(|c| memo.get(c).copied().unwrap_or(false));
                memo.insert(node, r);
            } else {
                stack.push((node.clone(), true));
                for c in children {
                    if !memo.contains_key(&c) {
                        stack.push((c, false));
                    }
                }
            }
        }
        memo.get(id).copied().unwrap_or(false)
    }
    ancestors
        .iter()
        .filter(|id| reaches_conflicted(id, conflicted, &ancestors, store, &mut reaches))
        .cloned()
        .collect()
}

/// The sender's power for the reverse topological power ordering, from the event's own auth
/// events (v12 creators: infinite).
fn sender_power(e: &Pdu, store: &impl EventStore) -> i64 {
    let v = e.room_version;
    if v.privileged_creators && creators(create_of(e, store), v).contains(e.sender()) {
        return CREATOR_POWER;
    }
    let auth: Vec<&Pdu> = e
        .auth_event_ids()
        .into_iter()
        .filter_map(|id| store.event(id))
        .collect();
    match auth.iter().find(|a| a.is("m.room.power_levels", "")) {
        Some(pl) => {
            let c = pl.content();
            let val = c
                .get_object("users")
                .and_then(|u| u.get(e.sender()))
                .or_else(|| c.get("users_default"));
            val.and_then(|x| level(x, v)).unwrap_or(0)
        }
        None => {
            let creator = auth
                .iter()
                .find(|a| a.is("m.room.create", ""))
                .and_then(|c| {
                    if v.implicit_room_creator {
                        Some(c.sender())
                    } else {
                        c.content().get_str("creator")
                    }
                });
            if creator == Some(e.sender()) {
                100
            } else {
                0
            }
        }
    }
}

/// Kahn's algorithm over the auth DAG restricted to `set`: auth events first, ties broken by the
/// smallest `key`.
fn lexicographic_topological_sort<K: Ord>(
    nodes: &BTreeSet<String>,
    set: &BTreeSet<String>,
    store: &impl EventStore,
    key: impl Fn(&str) -> K,
) -> Vec<String> {
    // graph: node -> its auth events within the set; reverse: auth event -> nodes citing it.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack: Vec<String> = nodes.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        if graph.contains_key(&id) {
            continue;
        }
        let edges: BTreeSet<String> = store
            .event(&id)
            .map(|e| {
                e.auth_event_ids()
                    .into_iter()
                    .filter(|a| set.contains(*a))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        stack.extend(edges.iter().filter(|a| !graph.contains_key(*a)).cloned());
        graph.insert(id, edges);
    }
    let mut outdegree: BTreeMap<&String, usize> = BTreeMap::new();
    let mut reverse: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (n, edges) in &graph {
        outdegree.insert(n, edges.len());
        for a in edges {
            reverse.entry(a).or_default().push(n);
        }
    }
    let mut heap: BinaryHeap<Reverse<(K, &String)>> = outdegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| Reverse((key(n), *n)))
        .collect();
    let mut out = Vec::with_capacity(graph.len());
    while let Some(Reverse((_, n))) = heap.pop() {
        out.push(n.clone());
        for parent in reverse.get(n).into_iter().flatten() {
            if let Some(d) = outdegree.get_mut(parent) {
                *d -= 1;
                if *d == 0 {
                    heap.push(Reverse((key(parent), *parent)));
                }
            }
        }
    }
    out
}

fn iterative_auth_checks(order: &[String], base: StateMap, store: &impl EventStore) -> StateMap {
    let mut resolved = base;
    for id in order {
        let Some(e) = store.event(id) else { continue };
        if store.is_rejected(id) {
            continue;
        }
        let Some(key) = e.state_pair() else { continue };
        let auth = auth_for(e, &resolved, store);
        if check_state_dependent(e, &auth).is_ok() {
            resolved.insert(key, id.clone());
        }
    }
    resolved
}

fn pl_in_auth_events<'a>(e: &Pdu, store: &'a impl EventStore) -> Option<&'a Pdu> {
    e.auth_event_ids()
        .into_iter()
        .filter_map(|id| store.event(id))
        .find(|a| a.is("m.room.power_levels", ""))
}

fn mainline_sort(
    events: Vec<String>,
    resolved_pl: Option<&String>,
    store: &impl EventStore,
) -> Vec<String> {
    let mut mainline: Vec<String> = Vec::new();
    let mut pl = resolved_pl.and_then(|id| store.event(id));
    while let Some(p) = pl {
        if mainline.contains(&p.event_id) {
            break; // a cycle in malformed data
        }
        mainline.push(p.event_id.clone());
        pl = pl_in_auth_events(p, store);
    }
    let position: BTreeMap<&String, usize> = mainline
        .iter()
        .rev()
        .enumerate()
        .map(|(i, id)| (id, i + 1))
        .collect();
    let depth = |id: &String| -> usize {
        let mut cur = store.event(id);
        let mut steps = 0;
        while let Some(e) = cur {
            if let Some(d) = position.get(&e.event_id) {
                return *d;
            }
            steps += 1;
            if steps > 100_000 {
                break;
            }
            cur = pl_in_auth_events(e, store);
        }
        0
    };
    let mut keyed: Vec<((usize, i64, String), String)> = events
        .into_iter()
        .map(|id| {
            let ts = store.event(&id).map_or(0, Pdu::origin_server_ts);
            ((depth(&id), ts, id.clone()), id)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, id)| id).collect()
}

fn resolve_v2(
    v: &'static RoomVersion,
    state_sets: &[StateMap],
    store: &impl EventStore,
) -> StateMap {
    let (unconflicted, conflicted) = separate_v2(state_sets);
    if conflicted.is_empty() {
        return unconflicted;
    }
    let conflicted_ids: BTreeSet<String> = conflicted.values().flatten().cloned().collect();
    let mut full: BTreeSet<String> = conflicted_ids.clone();
    full.extend(auth_difference(state_sets, store));
    if v.state_res == StateResVersion::V2_1 {
        full.extend(conflicted_subgraph(&conflicted_ids, store));
    }
    full.retain(|id| store.event(id).is_some());

    let power: BTreeSet<String> = full
        .iter()
        .filter(|id| store.event(id).is_some_and(is_power_event))
        .cloned()
        .collect();
    let power_order = lexicographic_topological_sort(&power, &full, store, |id| {
        let e = store.event(id);
        let pl = e.map_or(0, |e| sender_power(e, store));
        (
            Reverse(pl),
            e.map_or(0, Pdu::origin_server_ts),
            id.to_owned(),
        )
    });
    let base = if v.state_res == StateResVersion::V2_1 {
        StateMap::new()
    } else {
        unconflicted.clone()
    };
    let mut resolved = iterative_auth_checks(&power_order, base, store);
    let done: BTreeSet<&String> = power_order.iter().collect();
    let leftover: Vec<String> = full
        .iter()
        .filter(|id| !done.contains(id))
        .cloned()
        .collect();
    let pl = resolved
        .get(&("m.room.power_levels".to_owned(), String::new()))
        .cloned();
    let leftover = mainline_sort(leftover, pl.as_ref(), store);
    resolved = iterative_auth_checks(&leftover, resolved, store);
    resolved.extend(unconflicted);
    resolved
}

// ------------------------------------------------------------------------------------------ v1

fn separate_v1(
    state_sets: &[StateMap],
) -> (StateMap, BTreeMap<(String, String), BTreeSet<String>>) {
    let mut unconflicted = state_sets.first().cloned().unwrap_or_default();
    let mut conflicted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for set in state_sets.iter().skip(1) {
        for (key, value) in set {
            match unconflicted.get(key) {
                None => match conflicted.get_mut(key) {
                    None => {
                        unconflicted.insert(key.clone(), value.clone());
                    }
                    Some(ls) => {
                        ls.insert(value.clone());
                    }
                },
                Some(u) if u != value => {
                    let u = u.clone();
                    conflicted.insert(key.clone(), [value.clone(), u].into_iter().collect());
                    unconflicted.remove(key);
                }
                Some(_) => {}
            }
        }
    }
    (unconflicted, conflicted)
}

/// Synapse's v1 order: depth descending, then SHA-1 of the event ID ascending.
fn ordered_v1<'a>(events: &[&'a Pdu]) -> Vec<&'a Pdu> {
    let mut keyed: Vec<((Reverse<i64>, String), &Pdu)> = events
        .iter()
        .map(|e| {
            let h = Sha1::digest(e.event_id.as_bytes());
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            ((Reverse(e.depth()), hex), *e)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, e)| e).collect()
}

fn v1_auth_map<'a>(auth: &BTreeMap<(String, String), &'a Pdu>) -> AuthEvents<'a> {
    auth.values().copied().collect()
}

fn resolve_v1_auth<'a>(events: &[&'a Pdu], auth: &BTreeMap<(String, String), &'a Pdu>) -> &'a Pdu {
    let mut reverse = ordered_v1(events);
    reverse.reverse();
    let keys: BTreeSet<(String, String)> = events
        .iter()
        .flat_map(|e| auth_types_for_event(e))
        .collect();
    let mut local: BTreeMap<(String, String), &Pdu> = keys
        .iter()
        .filter_map(|k| auth.get(k).map(|e| (k.clone(), *e)))
        .collect();
    let mut prev = reverse[0];
    for e in &reverse[1..] {
        if let Some(k) = prev.state_pair() {
            local.insert(k, prev);
        }
        if check_state_dependent(e, &v1_auth_map(&local)).is_ok() {
            prev = e;
        } else {
            return prev;
        }
    }
    reverse.last().copied().unwrap_or(prev)
}

fn resolve_v1_normal<'a>(
    events: &[&'a Pdu],
    auth: &BTreeMap<(String, String), &'a Pdu>,
) -> &'a Pdu {
    let ordered = ordered_v1(events);
    for e in &ordered {
        if check_state_dependent(e, &v1_auth_map(auth)).is_ok() {
            return e;
        }
    }
    ordered[ordered.len() - 1]
}

fn resolve_v1(
    _v: &'static RoomVersion,
    state_sets: &[StateMap],
    store: &impl EventStore,
) -> StateMap {
    let (mut unconflicted, conflicted_ids) = separate_v1(state_sets);
    let mut conflicted: BTreeMap<(String, String), Vec<&Pdu>> = BTreeMap::new();
    for (key, ids) in &conflicted_ids {
        let events: Vec<&Pdu> = ids.iter().filter_map(|id| store.event(id)).collect();
        match events.len() {
            0 => {}
            1 => {
                unconflicted.insert(key.clone(), events[0].event_id.clone());
            }
            _ => {
                conflicted.insert(key.clone(), events);
            }
        }
    }
    // Auth events for the conflicted events, from the unconflicted state.
    let mut auth: BTreeMap<(String, String), &Pdu> = BTreeMap::new();
    for events in conflicted_ids.values() {
        for id in events {
            if let Some(e) = store.event(id) {
                for key in auth_types_for_event(e) {
                    if auth.contains_key(&key) {
                        continue;
                    }
                    if let Some(a) = unconflicted.get(&key).and_then(|aid| store.event(aid)) {
                        auth.insert(key, a);
                    }
                }
            }
        }
    }
    let mut resolved: BTreeMap<(String, String), &Pdu> = BTreeMap::new();
    let pl_key = ("m.room.power_levels".to_owned(), String::new());
    if let Some(events) = conflicted.get(&pl_key) {
        resolved.insert(pl_key.clone(), resolve_v1_auth(events, &auth));
    }
    auth.extend(resolved.iter().map(|(k, v)| (k.clone(), *v)));
    for kind in ["m.room.join_rules", "m.room.member"] {
        for (key, events) in &conflicted {
            if key.0 == kind {
                resolved.insert(key.clone(), resolve_v1_auth(events, &auth));
            }
        }
        auth.extend(resolved.iter().map(|(k, v)| (k.clone(), *v)));
    }
    for (key, events) in &conflicted {
        if !resolved.contains_key(key) {
            resolved.insert(key.clone(), resolve_v1_normal(events, &auth));
        }
    }
    for (k, e) in resolved {
        unconflicted.insert(k, e.event_id.clone());
    }
    unconflicted
}
