//! PDU validation and state resolution benchmarks of mxfed-core, with ruma-state-res measured
//! in the same run.
//!
//! - `pdu_validation`: 1,000 distinct ~1 KB room version 10 `m.room.message` PDUs by members of
//!   a 1,000-member room, signed by three servers. Format + signatures + content hash + event
//!   ID one by one (`check_pdu`) and as one batch (`check_pdus`, ed25519 batch verification);
//!   then the same followed by the auth checks against the room's prepared state
//!   (`room::check_received`: the event's own auth events, then the state before it).
//! - `state_res`: two forks of a room with 10,000 state events, 100 conflicting state events
//!   between them (50 per branch), resolved by mxfed (`state_res::resolve`) and by ruma
//!   (`ruma_state_res::resolve`), in room versions 10 (v2.0) and 12 (v2.1). ruma is given the
//!   full auth chain of each fork, computed before timing (`ruma (chains given)`), as its API
//!   asks the caller for them; `ruma + chains` also times computing them by a plain walk, as
//!   mxfed does inside `resolve`. Both are checked to give the same state before anything is
//!   timed.
//!
//! After criterion, a paired pass times the contenders of each state-resolution scenario
//! interleaved (rotating order), so load from other processes lands on both sides; it reports
//! the best and median time and the median per-round ratio; the same for the validation
//! contenders, with a breakdown of the signature cost. `MXFED_BENCH_PAIRED_ROUNDS` (default 30;
//! 0 skips it); `MXFED_BENCH_SKIP_STATE_RES=1` runs the validation part only.
//!
//! Run: `cargo bench -p mxfed-bench --bench validation -- --warm-up-time 1 --measurement-time 3`.
// A benchmark aborts loudly on a broken setup; the workspace's no-unwrap rule is for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use mxfed_core::auth::{AuthEvents, KnownEvent, Pdu};
use mxfed_core::canonical::{encode_object_into, parse_object, Int, Object, ParseOptions};
use mxfed_core::event::{build_event, EventRef, EventTemplate, StateMap as RefMap};
use mxfed_core::keys::SigningKey;
use mxfed_core::pdu::{check_pdu, check_pdus, check_pdus_in_chunks, PduCheck, Verdict};
use mxfed_core::room::{check_received, Context, RoomVerdict};
use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
use mxfed_core::state_res::{resolve, EventStore, StateMap};
use mxfed_core::{RoomVersion, Timestamp};
use ruma_common_020::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
    RoomVersionId, UserId,
};
use ruma_events::{StateEventType, TimelineEventType};
use ruma_state_res::utils::event_id_set::EventIdSet;
use serde_json::value::RawValue;

const SERVERS: [&str; 3] = ["a.example", "b.example", "c.example"];
const ADMIN: &str = "@admin:a.example";

fn obj(json: &str) -> Object {
    parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap()
}

fn user(i: usize) -> String {
    format!("@user{i:05}:{}", SERVERS[i % 3])
}

// ----------------------------------------------------------------------------- room building

struct Keys {
    signing: Vec<SigningKey>,
    ring: KeyRing,
}

fn keys() -> Keys {
    let mut ring = KeyRing::new();
    let mut signing = Vec::new();
    for (i, s) in SERVERS.iter().enumerate() {
        let k = SigningKey::from_seed("1", &[i as u8 + 1; 32]).unwrap();
        let r = build_server_keys(s, std::slice::from_ref(&k), &[], Int::new(1 << 50).unwrap())
            .unwrap();
        ring.add(&ServerKeys::from_response(&r).unwrap());
        signing.push(k);
    }
    Keys { signing, ring }
}

/// Builds signed events of one room; every event is kept (as a `Pdu`) in `events`.
struct Builder<'k> {
    v: &'static RoomVersion,
    keys: &'k Keys,
    room_id: String,
    events: HashMap<String, Pdu>,
    ts: u64,
}

/// A branch: its tip and its state.
#[derive(Clone)]
struct Branch {
    prev: Vec<EventRef>,
    state: RefMap,
}

impl Builder<'_> {
    /// Builds an event on `b`, advances `b` (state included) and returns the PDU.
    fn send(
        &mut self,
        b: &mut Branch,
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        content: &str,
    ) -> Object {
        self.ts += 1;
        let server = sender.split_once(':').unwrap().1;
        let si = SERVERS.iter().position(|s| *s == server).unwrap();
        let is_create = kind == "m.room.create";
        let t = EventTemplate {
            room_id: (!(is_create && self.v.room_id_from_create_event))
                .then(|| self.room_id.clone()),
            event_type: kind.into(),
            sender: sender.into(),
            state_key: sk.map(str::to_owned),
            content: obj(content),
            redacts: None,
        };
        let built = build_event(
            self.v,
            server,
            &t,
            &b.prev,
            &b.state,
            Timestamp(self.ts),
            &self.keys.signing[si],
            Some(&format!("e{}", self.ts)),
        )
        .unwrap();
        if is_create {
            self.room_id = built.room_id.clone();
        }
        let pdu = Pdu::new(built.pdu.clone(), self.v).unwrap();
        let r = EventRef {
            event_id: built.event_id.clone(),
            depth: pdu.depth(),
            sha256: None,
        };
        if let Some(key) = pdu.state_pair() {
            b.state.insert(key, r.clone());
        }
        b.prev = vec![r];
        self.events.insert(built.event_id, pdu);
        built.pdu
    }

    /// A room created by `ADMIN` with power levels, public join rules and `members` joined
    /// users; returns the branch at its tip.
    fn room(&mut self, members: usize, pl_users: &str) -> Branch {
        let mut b = Branch {
            prev: Vec::new(),
            state: RefMap::new(),
        };
        let creator = if self.v.implicit_room_creator {
            String::new()
        } else {
            format!(r#","creator":"{ADMIN}""#)
        };
        self.send(
            &mut b,
            ADMIN,
            "m.room.create",
            Some(""),
            &format!(r#"{{"room_version":"{}"{creator}}}"#, self.v.id),
        );
        self.send(
            &mut b,
            ADMIN,
            "m.room.member",
            Some(ADMIN),
            r#"{"membership":"join"}"#,
        );
        let admin = if self.v.privileged_creators {
            String::new()
        } else {
            format!(r#""{ADMIN}":100"#)
        };
        let sep = if admin.is_empty() || pl_users.is_empty() {
            ""
        } else {
            ","
        };
        self.send(
            &mut b,
            ADMIN,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{{{admin}{sep}{pl_users}}}}}"#),
        );
        self.send(
            &mut b,
            ADMIN,
            "m.room.join_rules",
            Some(""),
            r#"{"join_rule":"public"}"#,
        );
        for i in 0..members {
            let u = user(i);
            self.send(
                &mut b,
                &u,
                "m.room.member",
                Some(&u),
                &format!(r#"{{"membership":"join","displayname":"User {i}"}}"#),
            );
        }
        b
    }
}

fn state_ids(b: &Branch) -> StateMap {
    b.state
        .iter()
        .map(|(k, r)| (k.clone(), r.event_id.clone()))
        .collect()
}

// ------------------------------------------------------------------------------ validation

struct Validation {
    v: &'static RoomVersion,
    ring: KeyRing,
    pdus: Vec<Vec<u8>>,
    /// The room's state events by ID, and the state as the auth checks see it.
    events: HashMap<String, Pdu>,
}

/// 1,000 members and 1,000 messages of about 1 KB by them.
fn validation_fixture(keys: &Keys) -> Validation {
    let v = RoomVersion::get("10").unwrap();
    let mut b = Builder {
        v,
        keys,
        room_id: "!bench:a.example".into(),
        events: HashMap::new(),
        ts: 1_000_000,
    };
    let mut room = b.room(999, "");
    let text = "Reminder: the café meetup moved to Thursday 18:30 — same place (Straße 12). Bring \
                your résumé drafts; we go through the open items in order. 日本語のスライドもあります 🎉";
    let mut pdus = Vec::new();
    for i in 0..1000 {
        let sender = user((i * 7) % 999);
        let content = serde_json::json!({
            "msgtype": "m.text",
            "body": format!("{text} #{i}"),
            "format": "org.matrix.custom.html",
            "formatted_body": format!("<p><strong>{i}</strong> {text}</p>"),
        });
        // Messages do not move the branch's state; keep the same prev for realism of a busy room.
        let mut at = room.clone();
        let ev = b.send(
            &mut at,
            &sender,
            "m.room.message",
            None,
            &content.to_string(),
        );
        if i % 10 == 0 {
            room.prev = at.prev;
        }
        let mut bytes = Vec::new();
        encode_object_into(&ev, &mut bytes);
        pdus.push(bytes);
    }
    let events = b.events;
    Validation {
        v,
        ring: keys.ring.clone(),
        pdus,
        events,
    }
}

/// The auth part of receiving a checked PDU, against the room's prepared state.
fn auth_check(f: &Validation, state: &AuthEvents<'_>, check: &PduCheck) -> RoomVerdict {
    let Some(ev) = &check.event else {
        return RoomVerdict::Rejected {
            code: "pdu_missing",
        };
    };
    let pdu = Pdu::new(ev.clone(), f.v).unwrap();
    let auth: Vec<KnownEvent<'_>> = pdu
        .auth_event_ids()
        .into_iter()
        .filter_map(|id| f.events.get(id))
        .map(|p| KnownEvent {
            pdu: p,
            rejected: false,
        })
        .collect();
    check_received(
        &pdu,
        &check.verdict,
        &Context {
            auth_events: &auth,
            create: None,
            state_before: state,
            current_state: None,
        },
    )
}

fn bench_validation(c: &mut Criterion, f: &Validation) {
    let state: AuthEvents<'_> = f
        .events
        .values()
        .filter(|p| p.state_key().is_some())
        .collect();
    let refs: Vec<&[u8]> = f.pdus.iter().map(Vec::as_slice).collect();
    // Same verdicts both ways, all accepted, before timing.
    let one: Vec<PduCheck> = refs.iter().map(|b| check_pdu(b, f.v, &f.ring)).collect();
    let batch = check_pdus(&refs, f.v, &f.ring);
    assert_eq!(one, batch);
    for c in &one {
        assert_eq!(c.verdict, Verdict::Accepted);
        assert_eq!(auth_check(f, &state, c), RoomVerdict::Accepted);
    }
    let avg = f.pdus.iter().map(Vec::len).sum::<usize>() / f.pdus.len();
    eprintln!(
        "pdu_validation: {} PDUs, {avg} bytes on average",
        f.pdus.len()
    );

    let mut g = c.benchmark_group("pdu_validation");
    g.throughput(Throughput::Elements(f.pdus.len() as u64));
    g.sample_size(10);
    g.bench_function("check_pdu one by one", |b| {
        b.iter(|| {
            for p in &refs {
                black_box(check_pdu(p, f.v, &f.ring));
            }
        });
    });
    g.bench_function("check_pdus batch", |b| {
        b.iter(|| black_box(check_pdus(&refs, f.v, &f.ring)));
    });
    g.bench_function("check_pdu + auth, one by one", |b| {
        b.iter(|| {
            for p in &refs {
                let c = check_pdu(p, f.v, &f.ring);
                black_box(auth_check(f, &state, &c));
            }
        });
    });
    g.bench_function("check_pdus + auth, batch", |b| {
        b.iter(|| {
            for c in check_pdus(&refs, f.v, &f.ring) {
                black_box(auth_check(f, &state, &c));
            }
        });
    });
    g.finish();
}

// -------------------------------------------------------------------------- ruma's side

/// An mxfed event as ruma sees it.
#[derive(Debug)]
struct RumaPdu {
    event_id: OwnedEventId,
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
}

#[derive(serde::Deserialize)]
struct Fields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
}

impl ruma_state_res::Event for RumaPdu {
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
        false
    }
}

fn ruma_pdu(p: &Pdu) -> RumaPdu {
    let f: Fields = serde_json::from_str(&p.event.to_canonical_string()).unwrap();
    let id = |s: &str| EventId::parse(s).unwrap();
    RumaPdu {
        event_id: id(&p.event_id),
        room_id: f.room_id,
        sender: f.sender,
        origin_server_ts: f.origin_server_ts,
        kind: f.kind,
        content: f.content,
        state_key: f.state_key,
        prev_events: p.prev_event_ids().into_iter().map(id).collect(),
        auth_events: p.auth_event_ids().into_iter().map(id).collect(),
    }
}

type RumaMap = ruma_state_res::StateMap<OwnedEventId>;
type RumaEvents = HashMap<OwnedEventId, Arc<RumaPdu>>;

/// The full auth chain of a state set (the state events included), walked over ruma's events.
fn ruma_chain(state: &RumaMap, events: &RumaEvents) -> EventIdSet<OwnedEventId> {
    let mut seen = EventIdSet::new();
    let mut stack: Vec<OwnedEventId> = state.values().cloned().collect();
    while let Some(id) = stack.pop() {
        if seen.contains(&id) {
            continue;
        }
        if let Some(e) = events.get(&id) {
            stack.extend(e.auth_events.iter().filter(|a| !seen.contains(a)).cloned());
        }
        seen.insert(id);
    }
    seen
}

/// The conflicted state subgraph (v2.1), for ruma.
fn ruma_subgraph(
    conflicted: &ruma_state_res::StateMap<Vec<OwnedEventId>>,
    events: &RumaEvents,
) -> EventIdSet<OwnedEventId> {
    let c: BTreeSet<&OwnedEventId> = conflicted.values().flatten().collect();
    // Ancestors of the conflicted events, then keep those that reach a conflicted event.
    let mut anc: Vec<OwnedEventId> = Vec::new();
    let mut seen: BTreeSet<OwnedEventId> = BTreeSet::new();
    let mut stack: Vec<OwnedEventId> = c.iter().map(|i| (*i).clone()).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(e) = events.get(&id) {
            stack.extend(e.auth_events.iter().cloned());
        }
        anc.push(id);
    }
    let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
    fn go(
        id: &OwnedEventId,
        c: &BTreeSet<&OwnedEventId>,
        events: &RumaEvents,
        memo: &mut HashMap<OwnedEventId, bool>,
    ) -> bool {
        if let Some(r) = memo.get(id) {
            return *r;
        }
        let mut r = c.contains(id);
        if let Some(e) = events.get(id) {
            for a in &e.auth_events {
                r |= go(a, c, events, memo);
            }
        }
        memo.insert(id.clone(), r);
        r
    }
    anc.into_iter()
        .filter(|id| go(id, &c, events, &mut reaches))
        .collect()
}

// --------------------------------------------------------------------------- state res

struct Scenario {
    name: String,
    v: &'static RoomVersion,
    store: HashStore,
    sets: Vec<StateMap>,
    ruma_events: RumaEvents,
    ruma_sets: Vec<RumaMap>,
    ruma_chains: Vec<EventIdSet<OwnedEventId>>,
}

/// mxfed's event store over a hash map (ruma gets one too).
struct HashStore(HashMap<String, Pdu>);

impl EventStore for HashStore {
    fn event(&self, id: &str) -> Option<&Pdu> {
        self.0.get(id)
    }
    fn is_rejected(&self, _id: &str) -> bool {
        false
    }
}

fn to_ruma(s: &StateMap) -> RumaMap {
    s.iter()
        .map(|((t, k), id)| {
            (
                (StateEventType::from(t.as_str()), k.clone()),
                EventId::parse(id.as_str()).unwrap(),
            )
        })
        .collect()
}

fn from_ruma(s: &RumaMap) -> StateMap {
    s.iter()
        .map(|((t, k), id)| ((t.to_string(), k.clone()), id.to_string()))
        .collect()
}

fn ruma_resolve(s: &Scenario, chains: Vec<EventIdSet<OwnedEventId>>) -> RumaMap {
    let rules = RoomVersionId::try_from(s.v.id).unwrap().rules().unwrap();
    let sr = *rules.state_res.v2_rules().unwrap();
    ruma_state_res::resolve(
        &rules.authorization,
        &sr,
        &s.ruma_sets,
        chains,
        |id: &EventId| s.ruma_events.get(id).cloned(),
        |c| Some(ruma_subgraph(c, &s.ruma_events)),
    )
    .unwrap()
}

/// A room of `version` with 10,000 state events, forked in two; `kind` picks the 50 events of
/// each branch:
/// - `members`: on one branch 50 members change their display name, on the other the same 50
///   leave (no power events);
/// - `kicks`: the admin kicks 50 members on one branch, the same members change their display
///   name on the other (50 power events);
/// - `power`: a moderator (50) bans 50 members on one branch while, on the other, the admin
///   demotes him and 49 of those members change their display name (power-level conflict).
fn scenario(keys: &Keys, version: &str, kind: &str) -> Scenario {
    let v = RoomVersion::get(version).unwrap();
    let mut b = Builder {
        v,
        keys,
        room_id: "!bench:a.example".into(),
        events: HashMap::new(),
        ts: 1_000_000,
    };
    let moderator = user(9_990);
    // create + admin join + PL + join rules + 9,996 joins = 10,000 state events.
    let trunk = b.room(9_996, &format!(r#""{moderator}":50"#));
    assert_eq!(trunk.state.len(), 10_000);
    let mut x = trunk.clone();
    let mut y = trunk.clone();
    let users_pl = |extra: &str| {
        if v.privileged_creators {
            format!("{{{extra}}}")
        } else {
            format!(r#"{{"{ADMIN}":100,{extra}}}"#)
        }
    };
    for i in 0..50 {
        let u = user(i * 3);
        let rename = format!(r#"{{"membership":"join","displayname":"Renamed {i}"}}"#);
        match kind {
            "members" => {
                b.send(&mut x, &u, "m.room.member", Some(&u), &rename);
                b.send(
                    &mut y,
                    &u,
                    "m.room.member",
                    Some(&u),
                    r#"{"membership":"leave"}"#,
                );
            }
            "kicks" => {
                b.send(
                    &mut x,
                    ADMIN,
                    "m.room.member",
                    Some(&u),
                    r#"{"membership":"leave"}"#,
                );
                b.send(&mut y, &u, "m.room.member", Some(&u), &rename);
            }
            _ => {
                b.send(
                    &mut x,
                    &moderator,
                    "m.room.member",
                    Some(&u),
                    r#"{"membership":"ban"}"#,
                );
                if i == 0 {
                    let pl = format!(
                        r#"{{"users":{}}}"#,
                        users_pl(&format!(r#""{moderator}":0"#))
                    );
                    b.send(&mut y, ADMIN, "m.room.power_levels", Some(""), &pl);
                } else {
                    b.send(&mut y, &u, "m.room.member", Some(&u), &rename);
                }
            }
        }
    }
    let sets = vec![state_ids(&x), state_ids(&y)];
    let conflicting: BTreeSet<&String> = sets
        .iter()
        .flat_map(|s| s.iter())
        .filter(|(k, id)| sets.iter().any(|o| o.get(*k) != Some(*id)))
        .map(|(_, id)| id)
        .collect();
    // 100 from the branches; in `power`, also the trunk's power levels and the first banned
    // member's join (keys only one branch changed).
    let expected = if kind == "power" { 102 } else { 100 };
    assert_eq!(conflicting.len(), expected, "the conflicted state set");
    assert!(sets.iter().all(|s| s.len() >= 10_000));
    let ruma_events: RumaEvents = b
        .events
        .values()
        .map(|p| {
            let r = ruma_pdu(p);
            (r.event_id.clone(), Arc::new(r))
        })
        .collect();
    let ruma_sets: Vec<RumaMap> = sets.iter().map(to_ruma).collect();
    let ruma_chains = ruma_sets
        .iter()
        .map(|s| ruma_chain(s, &ruma_events))
        .collect();
    Scenario {
        name: format!("v{version} {kind}"),
        v,
        store: HashStore(b.events),
        sets,
        ruma_events,
        ruma_sets,
        ruma_chains,
    }
}

fn bench_state_res(c: &mut Criterion, scenarios: &[Scenario]) {
    let mut g = c.benchmark_group("state_res");
    g.sample_size(10);
    for s in scenarios {
        let mx = resolve(s.v, &s.sets, &s.store);
        let ru = from_ruma(&ruma_resolve(s, s.ruma_chains.clone()));
        assert_eq!(mx, ru, "{}: mxfed and ruma agree", s.name);
        assert_ne!(mx, s.sets[0], "{}: not a trivial resolution", s.name);
        g.bench_function(format!("{} / mxfed", s.name), |b| {
            b.iter(|| black_box(resolve(s.v, &s.sets, &s.store)));
        });
        g.bench_function(format!("{} / ruma (chains given)", s.name), |b| {
            b.iter_batched(
                || s.ruma_chains.clone(),
                |chains| black_box(ruma_resolve(s, chains)),
                BatchSize::LargeInput,
            );
        });
        g.bench_function(format!("{} / ruma + chains", s.name), |b| {
            b.iter(|| {
                let chains = s
                    .ruma_sets
                    .iter()
                    .map(|m| ruma_chain(m, &s.ruma_events))
                    .collect();
                black_box(ruma_resolve(s, chains))
            });
        });
    }
    g.finish();
}

/// Interleaved timing of the four validation contenders over the 1,000 PDUs (rotating order per
/// round): best and median PDUs per second, and the median per-round speed-up against
/// `check_pdu` one by one.
fn paired_validation(f: &Validation, rounds: usize) {
    if rounds == 0 {
        return;
    }
    let state: AuthEvents<'_> = f
        .events
        .values()
        .filter(|p| p.state_key().is_some())
        .collect();
    let refs: Vec<&[u8]> = f.pdus.iter().map(Vec::as_slice).collect();
    let names = [
        "check_pdu one by one",
        "check_pdus batch",
        "check_pdu + auth, one by one",
        "check_pdus + auth, batch",
    ];
    let mut times: [Vec<f64>; 4] = Default::default();
    for r in 0..rounds {
        for k in 0..4 {
            let which = (r + k) % 4;
            let t = Instant::now();
            match which {
                0 => {
                    for p in &refs {
                        black_box(check_pdu(p, f.v, &f.ring));
                    }
                }
                1 => {
                    black_box(check_pdus(&refs, f.v, &f.ring));
                }
                2 => {
                    for p in &refs {
                        let c = check_pdu(p, f.v, &f.ring);
                        black_box(auth_check(f, &state, &c));
                    }
                }
                _ => {
                    for c in check_pdus(&refs, f.v, &f.ring) {
                        black_box(auth_check(f, &state, &c));
                    }
                }
            }
            times[which].push(t.elapsed().as_secs_f64());
        }
    }
    let n = refs.len() as f64;
    println!(
        "\npaired pass, pdu_validation ({rounds} rounds of {n} PDUs): best / median PDUs/s, speed-up = median per-round ratio against check_pdu one by one"
    );
    for (k, name) in names.iter().enumerate() {
        let mut t = times[k].clone();
        t.sort_by(f64::total_cmp);
        let mut ratio: Vec<f64> = times[0].iter().zip(&times[k]).map(|(a, b)| a / b).collect();
        ratio.sort_by(f64::total_cmp);
        println!(
            "{name:<30} {:>8.0} / {:>8.0} PDUs/s  ×{:.2}",
            n / t[0],
            n / t[t.len() / 2],
            ratio[ratio.len() / 2]
        );
    }
}

/// Where the time of a batch goes: the same 1,000 signatures over the same redacted bytes,
/// verified one by one (`verify`, cofactorless, as `check_pdu` does for prime-order keys) and by
/// `ed25519_dalek::verify_batch` in chunks of 64 and of 1,000; then `check_pdu` one by one,
/// `check_pdus` (one batch) and `check_pdus_in_chunks` with chunks of 128, 256 and 512.
/// Interleaved rounds; medians, in µs per PDU.
fn signature_breakdown(f: &Validation, keys: &Keys, rounds: usize) {
    use ed25519_dalek::Verifier as _;
    if rounds == 0 {
        return;
    }
    let mut msgs = Vec::new();
    let mut sigs = Vec::new();
    let mut vks = Vec::new();
    for b in &f.pdus {
        let ev = parse_object(b, &ParseOptions::STRICT).unwrap();
        let sender = ev.get_str("sender").unwrap();
        let server = sender.split_once(':').unwrap().1;
        let si = SERVERS.iter().position(|s| *s == server).unwrap();
        let sig = ev
            .get_object("signatures")
            .and_then(|s| s.get_object(server))
            .and_then(|s| s.get_str("ed25519:1"))
            .unwrap();
        let sig = mxfed_core::base64::decode_array::<64>(sig).unwrap();
        msgs.push(mxfed_core::event::redacted_bytes(&ev, f.v));
        sigs.push(ed25519_dalek::Signature::from_bytes(&sig));
        vks.push(
            ed25519_dalek::VerifyingKey::from_bytes(keys.signing[si].verify_key().as_bytes())
                .unwrap(),
        );
    }
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let pdus: Vec<&[u8]> = f.pdus.iter().map(Vec::as_slice).collect();
    let names = [
        "verify one by one",
        "verify_batch, chunks of 64",
        "verify_batch, one batch of 1,000",
        "check_pdu one by one",
        "check_pdus batch",
        "check_pdus in chunks of 128",
        "check_pdus in chunks of 256",
        "check_pdus in chunks of 512",
    ];
    let mut times: [Vec<f64>; 8] = Default::default();
    for r in 0..rounds {
        for k in 0..8 {
            let which = (r + k) % 8;
            let t = Instant::now();
            match which {
                0 => {
                    for i in 0..refs.len() {
                        assert!(vks[i].verify(refs[i], &sigs[i]).is_ok());
                    }
                }
                1 => {
                    for c in 0..refs.len().div_ceil(64) {
                        let r = c * 64..((c + 1) * 64).min(refs.len());
                        assert!(ed25519_dalek::verify_batch(
                            &refs[r.clone()],
                            &sigs[r.clone()],
                            &vks[r]
                        )
                        .is_ok());
                    }
                }
                2 => assert!(ed25519_dalek::verify_batch(&refs, &sigs, &vks).is_ok()),
                3 => {
                    for p in &pdus {
                        black_box(check_pdu(p, f.v, &f.ring));
                    }
                }
                4 => {
                    black_box(check_pdus(&pdus, f.v, &f.ring));
                }
                _ => {
                    let chunk = [128, 256, 512][which - 5];
                    black_box(check_pdus_in_chunks(&pdus, f.v, &f.ring, chunk));
                }
            }
            times[which].push(t.elapsed().as_secs_f64() * 1e6 / refs.len() as f64);
        }
    }
    println!("\nsignature breakdown ({rounds} interleaved rounds, median µs per PDU):");
    for (k, name) in names.iter().enumerate() {
        let mut t = times[k].clone();
        t.sort_by(f64::total_cmp);
        println!("{name:<34} {:>7.1} µs (best {:.1})", t[t.len() / 2], t[0]);
    }
}

/// Interleaved timing of each scenario's three contenders: per round, each runs once, in
/// rotating order. Prints best, median and the median per-round ratio against mxfed.
fn paired(scenarios: &[Scenario], rounds: usize) {
    if rounds == 0 {
        return;
    }
    println!("\npaired pass ({rounds} rounds per scenario): best / median, ratio = median per-round (contender / mxfed)");
    for s in scenarios {
        let mut times: [Vec<Duration>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for r in 0..rounds {
            for k in 0..3 {
                let which = (r + k) % 3;
                let chains = s.ruma_chains.clone();
                let t = Instant::now();
                match which {
                    0 => {
                        black_box(resolve(s.v, &s.sets, &s.store));
                    }
                    1 => {
                        black_box(ruma_resolve(s, chains));
                    }
                    _ => {
                        let chains = s
                            .ruma_sets
                            .iter()
                            .map(|m| ruma_chain(m, &s.ruma_events))
                            .collect();
                        black_box(ruma_resolve(s, chains));
                    }
                }
                times[which].push(t.elapsed());
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let mut line = format!("{:<14}", s.name);
        for (k, name) in ["mxfed", "ruma (chains given)", "ruma + chains"]
            .iter()
            .enumerate()
        {
            let mut t: Vec<f64> = times[k].iter().map(ms).collect();
            let best = t.iter().copied().fold(f64::INFINITY, f64::min);
            let m = med(&mut t);
            let mut ratio: Vec<f64> = times[k]
                .iter()
                .zip(&times[0])
                .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
                .collect();
            line += &format!(" | {name}: {best:.2} / {m:.2} ms (×{:.2})", med(&mut ratio));
        }
        println!("{line}");
    }
}

/// `MXFED_BENCH_COUNT=<name>:<n>`: run one contender `n` times and exit, for instruction
/// counting (`bench/count_instructions.sh`, with `MXFED_COUNT_BENCH=validation`). Names:
/// `pdu/check_pdu` (the 1,000 PDUs one by one), `pdu/check_pdus` (one batch of the 1,000),
/// `state_res/<version> <scenario>/mxfed` and `.../ruma` (chains given), e.g.
/// `state_res/v10 power/mxfed`. Only the fixture it needs is built.
fn count_mode(keys: &Keys, spec: &str) {
    let (name, n) = spec.rsplit_once(':').expect("MXFED_BENCH_COUNT=<name>:<n>");
    let n: usize = n.parse().expect("a count");
    if let Some(which) = name.strip_prefix("pdu/") {
        let f = validation_fixture(keys);
        let refs: Vec<&[u8]> = f.pdus.iter().map(Vec::as_slice).collect();
        for _ in 0..n {
            match which {
                "check_pdu" => {
                    for p in &refs {
                        black_box(check_pdu(p, f.v, &f.ring));
                    }
                }
                "check_pdus" => {
                    black_box(check_pdus(&refs, f.v, &f.ring));
                }
                _ => panic!("no such contender {which}"),
            }
        }
        return;
    }
    let rest = name
        .strip_prefix("state_res/v")
        .expect("pdu/... or state_res/...");
    let (scenario_name, who) = rest.rsplit_once('/').expect("<scenario>/<contender>");
    let (version, kind) = scenario_name.split_once(' ').expect("<version> <kind>");
    let s = scenario(keys, version, kind);
    for _ in 0..n {
        match who {
            "mxfed" => {
                black_box(resolve(s.v, &s.sets, &s.store));
            }
            "ruma" => {
                black_box(ruma_resolve(&s, s.ruma_chains.clone()));
            }
            _ => panic!("no such contender {who}"),
        }
    }
}

fn main() {
    let keys = keys();
    if let Ok(spec) = std::env::var("MXFED_BENCH_COUNT") {
        count_mode(&keys, &spec);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rounds = std::env::var("MXFED_BENCH_PAIRED_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let f = validation_fixture(&keys);
    bench_validation(&mut c, &f);
    paired_validation(&f, rounds);
    signature_breakdown(&f, &keys, rounds);
    if std::env::var("MXFED_BENCH_SKIP_STATE_RES").is_ok_and(|v| v == "1") {
        c.final_summary();
        return;
    }
    let scenarios: Vec<Scenario> = ["10", "12"]
        .iter()
        .flat_map(|v| ["members", "kicks", "power"].map(|k| (*v, k)))
        .map(|(v, k)| scenario(&keys, v, k))
        .collect();
    bench_state_res(&mut c, &scenarios);
    c.final_summary();
    paired(&scenarios, rounds);
}
