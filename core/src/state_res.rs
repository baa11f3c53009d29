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
    auth_type_refs, auth_types_for_event, check_state_dependent, creators, level, refill,
    AuthEvents, Pdu, CREATOR_POWER,
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
        return store.event(&crate::identifiers::create_event_id(room)?);
    }
    e.auth_event_ids()
        .into_iter()
        .filter_map(|id| store.event(id))
        .find(|a| a.is("m.room.create", ""))
}

/// Builds the state an event is checked against during iterative auth checks: its own
/// non-rejected auth events, overridden by the resolved state for the keys it may cite, plus the
/// create event in v12.
fn auth_for<'a>(
    e: &Pdu,
    resolved: &impl Fn(&Key) -> Option<&'a str>,
    store: &'a impl EventStore,
) -> AuthEvents<'a> {
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
    let mut key: Key = (String::new(), String::new());
    for (kind, sk) in auth_type_refs(e) {
        if let Some(id) = resolved(refill(&mut key, kind, sk)) {
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

type Key = (String, String);

/// The state sets split by key, borrowing from them.
struct Separated<'a> {
    /// The keys every set maps to the same event, in key order.
    unconflicted: Vec<(&'a Key, &'a String)>,
    /// Per state set, its events for the conflicted keys.
    conflicted_per_set: Vec<Vec<&'a str>>,
    /// The conflicted state set: every event any set holds for a conflicted key.
    conflicted: BTreeSet<&'a str>,
}

impl<'a> Separated<'a> {
    /// The unconflicted event for `key`.
    fn unconflicted(&self, key: &Key) -> Option<&'a str> {
        self.unconflicted
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| self.unconflicted[i].1.as_str())
    }
}

/// One merge over the sorted state sets: a key is unconflicted when every set maps it to the
/// same event.
fn separate_v2(state_sets: &[StateMap]) -> Separated<'_> {
    let mut iters: Vec<_> = state_sets.iter().map(|s| s.iter().peekable()).collect();
    let mut out = Separated {
        unconflicted: Vec::with_capacity(state_sets.first().map_or(0, StateMap::len)),
        conflicted_per_set: vec![Vec::new(); state_sets.len()],
        conflicted: BTreeSet::new(),
    };
    let mut heads: Vec<Option<&String>> = vec![None; state_sets.len()];
    while let Some(key) = iters
        .iter_mut()
        .filter_map(|it| it.peek().map(|(k, _)| *k))
        .min()
    {
        for (head, it) in heads.iter_mut().zip(&mut iters) {
            *head = match it.peek() {
                Some((k, _)) if *k == key => it.next().map(|(_, id)| id),
                _ => None,
            };
        }
        match heads[0] {
            Some(first) if heads.iter().all(|h| *h == Some(first)) => {
                out.unconflicted.push((key, first));
            }
            _ => {
                for (per_set, head) in out.conflicted_per_set.iter_mut().zip(&heads) {
                    if let Some(id) = head {
                        per_set.push(id.as_str());
                        out.conflicted.insert(id.as_str());
                    }
                }
            }
        }
    }
    out
}

/// The auth DAG of the events reached so far, over interned IDs: each event's `auth_events` are
/// read from the store once.
struct AuthGraph<'a, S> {
    store: &'a S,
    /// Keyed by the ID's first eight bytes, then the ID: event IDs differ early, so lookups
    /// mostly compare integers rather than strings (ordered, not hashed: lookups stay
    /// logarithmic whatever IDs a peer chooses).
    index: BTreeMap<(u64, &'a str), u32>,
    nodes: Vec<Node<'a>>,
    /// The auth edges of every expanded node, as ranges in `Node::auth`.
    edges: Vec<u32>,
}

struct Node<'a> {
    id: &'a str,
    /// Its auth events in `AuthGraph::edges`, once read (an unknown event cites none).
    auth: Option<(u32, u32)>,
    /// Reached from the unconflicted state, so in every state set's auth chain.
    in_all: bool,
    /// The last walk that reached it, and how many walks did.
    walk: u32,
    walks: u32,
}

fn id_prefix(id: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = id.len().min(8);
    b[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

impl<'a, S: EventStore> AuthGraph<'a, S> {
    fn new(store: &'a S) -> Self {
        AuthGraph {
            store,
            index: BTreeMap::new(),
            nodes: Vec::new(),
            edges: Vec::new(),
        }
    }

    fn node(&mut self, id: &'a str) -> u32 {
        let key = (id_prefix(id), id);
        if let Some(n) = self.index.get(&key) {
            return *n;
        }
        let n = self.nodes.len() as u32;
        self.nodes.push(Node {
            id,
            auth: None,
            in_all: false,
            walk: 0,
            walks: 0,
        });
        self.index.insert(key, n);
        n
    }

    /// The range of `n`'s auth events in `edges`, read from the store on first use.
    fn auth(&mut self, n: u32) -> (u32, u32) {
        if let Some(r) = self.nodes[n as usize].auth {
            return r;
        }
        let store = self.store;
        let ids = store
            .event(self.nodes[n as usize].id)
            .map(Pdu::auth_event_ids)
            .unwrap_or_default();
        let start = self.edges.len() as u32;
        for id in ids {
            let c = self.node(id);
            self.edges.push(c);
        }
        let r = (start, self.edges.len() as u32);
        self.nodes[n as usize].auth = Some(r);
        r
    }

    /// Marks everything reachable from `start` as in every auth chain.
    fn walk_all(&mut self, start: impl IntoIterator<Item = &'a str>) {
        let mut stack: Vec<u32> = start.into_iter().map(|id| self.node(id)).collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut self.nodes[n as usize].in_all, true) {
                continue;
            }
            let (from, to) = self.auth(n);
            for e in from..to {
                let c = self.edges[e as usize];
                if !self.nodes[c as usize].in_all {
                    stack.push(c);
                }
            }
        }
    }

    /// Walk number `walk` (from 1): counts a reach for every event reachable from `start`
    /// that is not in every chain (nothing below such an event is either, so the walk stops).
    fn walk_set(&mut self, walk: u32, start: impl IntoIterator<Item = &'a str>) {
        let mut stack: Vec<u32> = start.into_iter().map(|id| self.node(id)).collect();
        while let Some(n) = stack.pop() {
            let node = &mut self.nodes[n as usize];
            if node.in_all || node.walk == walk {
                continue;
            }
            node.walk = walk;
            node.walks += 1;
            let (from, to) = self.auth(n);
            for e in from..to {
                let c = self.edges[e as usize];
                let child = &self.nodes[c as usize];
                if !child.in_all && child.walk != walk {
                    stack.push(c);
                }
            }
        }
    }
}

/// The auth difference: the events in some state set's auth chain but not in all of them.
/// Every set holds the unconflicted events, so their auth chains are common to all; each set's
/// chain is that plus its conflicted events' chains, and only those are walked per set.
fn auth_difference<'a>(sep: &Separated<'a>, store: &'a impl EventStore) -> BTreeSet<&'a str> {
    let mut g = AuthGraph::new(store);
    g.walk_all(sep.unconflicted.iter().map(|(_, id)| id.as_str()));
    for (i, ids) in sep.conflicted_per_set.iter().enumerate() {
        g.walk_set(i as u32 + 1, ids.iter().copied());
    }
    let sets = sep.conflicted_per_set.len() as u32;
    g.nodes
        .iter()
        .filter(|n| !n.in_all && n.walks > 0 && n.walks < sets)
        .map(|n| n.id)
        .collect()
}

/// Every event reachable through `auth_events` from `start`, the start events included.
fn auth_closure<'a>(
    start: impl IntoIterator<Item = &'a str>,
    store: &'a impl EventStore,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = start.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(e) = store.event(id) {
            stack.extend(
                e.auth_event_ids()
                    .into_iter()
                    .filter(|a| !seen.contains(*a)),
            );
        }
    }
    seen
}

/// (v2.1) Events on some auth path between two conflicted events, endpoints included.
fn conflicted_subgraph<'a>(
    conflicted: &BTreeSet<&'a str>,
    store: &'a impl EventStore,
) -> BTreeSet<&'a str> {
    let ancestors = auth_closure(conflicted.iter().copied(), store);
    let mut reaches: BTreeMap<&str, bool> = BTreeMap::new();
    fn reaches_conflicted<'a>(
        id: &'a str,
        conflicted: &BTreeSet<&'a str>,
        ancestors: &BTreeSet<&'a str>,
        store: &'a impl EventStore,
        memo: &mut BTreeMap<&'a str, bool>,
    ) -> bool {
        // Iterative post-order to stay safe on deep auth chains.
        let mut stack = vec![(id, false)];
        while let Some((node, expanded)) = stack.pop() {
            if memo.contains_key(node) {
                continue;
            }
            let children: Vec<&str> = store
                .event(node)
                .map(|e| {
                    e.auth_event_ids()
                        .into_iter()
                        .filter(|a| ancestors.contains(*a))
                        .collect()
                })
                .unwrap_or_default();
            if expanded || conflicted.contains(node) {
                let r = conflicted.contains(node)
                    || children
                        .iter()
                        .any(|c| memo.get(c).copied().unwrap_or(false));
                memo.insert(node, r);
            } else {
                stack.push((node, true));
                for c in children {
                    if !memo.contains_key(c) {
                        stack.push((c, false));
                    }
                }
            }
        }
        memo.get(id).copied().unwrap_or(false)
    }
    ancestors
        .iter()
        .copied()
        .filter(|id| reaches_conflicted(id, conflicted, &ancestors, store, &mut reaches))
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
            // A `null` entry is no entry, as in the auth rules (`Levels::user`) and Synapse's
            // `_get_power_level_for_sender`: `users_default` then applies.
            let val = c
                .get_object("users")
                .and_then(|u| u.get(e.sender()))
                .filter(|x| !matches!(x, crate::canonical::Value::Null))
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
fn lexicographic_topological_sort<'a, K: Ord>(
    nodes: &BTreeSet<&'a str>,
    set: &BTreeSet<&'a str>,
    store: &'a impl EventStore,
    key: impl Fn(&str) -> K,
) -> Vec<&'a str> {
    // graph: node -> its auth events within the set; reverse: auth event -> nodes citing it.
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut stack: Vec<&str> = nodes.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if graph.contains_key(id) {
            continue;
        }
        let edges: BTreeSet<&str> = store
            .event(id)
            .map(|e| {
                e.auth_event_ids()
                    .into_iter()
                    .filter_map(|a| set.get(a).copied())
                    .collect()
            })
            .unwrap_or_default();
        stack.extend(edges.iter().filter(|a| !graph.contains_key(*a)));
        graph.insert(id, edges);
    }
    let mut outdegree: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reverse: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, edges) in &graph {
        outdegree.insert(n, edges.len());
        for a in edges {
            reverse.entry(a).or_default().push(n);
        }
    }
    let mut heap: BinaryHeap<Reverse<(K, &str)>> = outdegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| Reverse((key(n), *n)))
        .collect();
    let mut out = Vec::with_capacity(graph.len());
    while let Some(Reverse((_, n))) = heap.pop() {
        out.push(n);
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

/// The iterative auth checks of `order` on top of `base`: the accepted events, by key, in
/// `resolved` (a lookup sees them first, then `base`).
fn iterative_auth_checks<'a>(
    order: &[&'a str],
    resolved: &mut BTreeMap<Key, &'a str>,
    base: &impl Fn(&Key) -> Option<&'a str>,
    store: &'a impl EventStore,
) {
    for id in order {
        let Some(e) = store.event(id) else { continue };
        if store.is_rejected(id) {
            continue;
        }
        let Some(key) = e.state_pair() else { continue };
        let lookup = |k: &Key| resolved.get(k).copied().or_else(|| base(k));
        let auth = auth_for(e, &lookup, store);
        if check_state_dependent(e, &auth).is_ok() {
            resolved.insert(key, id);
        }
    }
}

fn pl_in_auth_events<'a>(e: &Pdu, store: &'a impl EventStore) -> Option<&'a Pdu> {
    e.auth_event_ids()
        .into_iter()
        .filter_map(|id| store.event(id))
        .find(|a| a.is("m.room.power_levels", ""))
}

fn mainline_sort<'a>(
    events: Vec<&'a str>,
    resolved_pl: Option<&str>,
    store: &impl EventStore,
) -> Vec<&'a str> {
    let mut mainline: Vec<&str> = Vec::new();
    let mut pl = resolved_pl.and_then(|id| store.event(id));
    while let Some(p) = pl {
        if mainline.contains(&p.event_id.as_str()) {
            break; // a cycle in malformed data
        }
        mainline.push(&p.event_id);
        pl = pl_in_auth_events(p, store);
    }
    let position: BTreeMap<&str, usize> = mainline
        .iter()
        .rev()
        .enumerate()
        .map(|(i, id)| (*id, i + 1))
        .collect();
    let depth = |id: &str| -> usize {
        let mut cur = store.event(id);
        let mut steps = 0;
        while let Some(e) = cur {
            if let Some(d) = position.get(e.event_id.as_str()) {
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
    let mut keyed: Vec<((usize, i64, &str), &str)> = events
        .into_iter()
        .map(|id| {
            let ts = store.event(id).map_or(0, Pdu::origin_server_ts);
            ((depth(id), ts, id), id)
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
    let sep = separate_v2(state_sets);
    let unconflicted = || -> StateMap {
        sep.unconflicted
            .iter()
            .map(|(k, id)| ((*k).clone(), (*id).clone()))
            .collect()
    };
    if sep.conflicted.is_empty() {
        return unconflicted();
    }
    let mut full: BTreeSet<&str> = sep.conflicted.clone();
    full.extend(auth_difference(&sep, store));
    if v.state_res == StateResVersion::V2_1 {
        full.extend(conflicted_subgraph(&sep.conflicted, store));
    }
    full.retain(|id| store.event(id).is_some());

    let power: BTreeSet<&str> = full
        .iter()
        .copied()
        .filter(|id| store.event(id).is_some_and(is_power_event))
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
    // v2.0 starts from the unconflicted state, v2.1 from nothing.
    let from_unconflicted = v.state_res != StateResVersion::V2_1;
    let base = |k: &Key| {
        if from_unconflicted {
            sep.unconflicted(k)
        } else {
            None
        }
    };
    let mut resolved: BTreeMap<Key, &str> = BTreeMap::new();
    iterative_auth_checks(&power_order, &mut resolved, &base, store);
    let done: BTreeSet<&str> = power_order.iter().copied().collect();
    let leftover: Vec<&str> = full
        .iter()
        .copied()
        .filter(|id| !done.contains(id))
        .collect();
    let pl_key = ("m.room.power_levels".to_owned(), String::new());
    let pl = resolved.get(&pl_key).copied().or_else(|| base(&pl_key));
    let leftover = mainline_sort(leftover, pl, store);
    iterative_auth_checks(&leftover, &mut resolved, &base, store);
    // The unconflicted state wins over anything the checks put at its keys.
    let mut out = unconflicted();
    for (k, id) in resolved {
        out.entry(k).or_insert_with(|| id.to_owned());
    }
    out
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

/// The events of `auth` that `e` is checked against: those under its auth types only
/// (`check_state_dependent` reads no others), a handful, not the whole conflict-wide map, which
/// a search of `AuthEvents` would otherwise scan for every candidate.
fn v1_auth_map<'a>(e: &Pdu, auth: &BTreeMap<(String, String), &'a Pdu>) -> AuthEvents<'a> {
    let mut key = (String::new(), String::new());
    auth_type_refs(e)
        .into_iter()
        .filter_map(|(kind, sk)| auth.get(refill(&mut key, kind, sk)).copied())
        .collect()
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
        if check_state_dependent(e, &v1_auth_map(e, &local)).is_ok() {
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
        if check_state_dependent(e, &v1_auth_map(e, auth)).is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{parse_object, ParseOptions};

    fn pdu(json: &str) -> Pdu {
        let v = RoomVersion::get("10").unwrap_or_else(|_| unreachable!());
        let o =
            parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap_or_else(|e| panic!("{e}"));
        Pdu::new(o, v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A sender's power for the ordering: a `null` under `users` is no entry, so
    /// `users_default` applies (as the auth rules and Synapse read it), not 0.
    #[test]
    fn a_null_user_level_is_the_default() {
        let base = r#""room_id":"!r:a","depth":1,"origin_server_ts":1,"prev_events":[],"hashes":{"sha256":"x"},"signatures":{}"#;
        let pl = pdu(&format!(
            r#"{{"type":"m.room.power_levels","state_key":"","sender":"@a:a","auth_events":[],"content":{{"users":{{"@s:a":null,"@t:a":7}},"users_default":50}},{base}}}"#
        ));
        let mut store = BTreeMap::new();
        store.insert(pl.event_id.clone(), pl.clone());
        let by = |sender: &str| {
            pdu(&format!(
                r#"{{"type":"m.room.topic","state_key":"","sender":"{sender}","auth_events":["{}"],"content":{{}},{base}}}"#,
                pl.event_id
            ))
        };
        assert_eq!(sender_power(&by("@s:a"), &store), 50);
        assert_eq!(sender_power(&by("@t:a"), &store), 7);
        assert_eq!(sender_power(&by("@u:a"), &store), 50);
    }
}
