//! Generated forked rooms for differential testing of state resolution.
//!
//! [`generate`] builds one room from a seed: real events built, hashed and signed by mxfed
//! ([`build_event`]) with the keys of three servers, checked ([`check_pdu_object`]) and run
//! through the receipt decision ([`check_received`]) against the state before each of them, so
//! every event carries the verdict a server would give it. The room starts linear, then forks
//! into 2–4 branches from random earlier events; each branch applies random joins, leaves,
//! invites, knocks, kicks, bans, unbans, power-level changes (users raised and lowered; `ban`,
//! `kick`, `invite`, `redact`, `state_default`, `events_default` and per-event levels changed),
//! join-rule changes and topic/name changes, by random senders — many of them not allowed, on
//! purpose. Now and then a branch merges another branch's tip (an event with two
//! `prev_events`, whose state before is the resolution of both).
//!
//! Every resolution the room needed (each merge) and the final resolution of all the branch
//! tips are recorded in [`Dag::resolutions`], so a test can redo them with another
//! implementation and compare. This crate depends on mxfed only; the comparison with ruma is in
//! its tests.
//!
//! Nothing here panics: building errors come back as [`GenError`].

use std::collections::{BTreeMap, BTreeSet};

use mxfed_core::auth::{KnownEvent, Pdu};
use mxfed_core::canonical::{parse_object, Int, ParseOptions};
use mxfed_core::event::{build_event, EventRef, EventTemplate};
use mxfed_core::keys::SigningKey;
use mxfed_core::pdu::check_pdu_object;
use mxfed_core::room::{check_received, Context, RoomVerdict};
use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
use mxfed_core::state_res::{resolve, EventStore, StateMap};
use mxfed_core::{RoomVersion, Timestamp};
use serde_json::{json, Map, Value as Json};

/// The servers of the generated rooms.
pub const SERVERS: [&str; 3] = ["a.example", "b.example", "c.example"];

/// The users of the generated rooms; the first creates every room.
pub const USERS: [&str; 6] = [
    "@alice:a.example",
    "@bob:b.example",
    "@carol:a.example",
    "@dave:b.example",
    "@erin:c.example",
    "@frank:c.example",
];

const CREATOR: &str = USERS[0];

/// Why a room could not be generated (a bug in the generator or in mxfed's builders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenError(pub String);

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenError {}

fn err(what: &str, e: impl std::fmt::Display) -> GenError {
    GenError(format!("{what}: {e}"))
}

/// A small deterministic generator (SplitMix64): the same seed gives the same room everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice (`None` when empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// The signing key of a test server (deterministic).
pub fn server_key(server: &str) -> Result<SigningKey, GenError> {
    let b = server
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    SigningKey::from_seed("k", &[b; 32]).map_err(|e| err("signing key", e))
}

/// The keys of every test server, as a receiving server knows them.
#[derive(Debug, Clone)]
pub struct Keys {
    signing: BTreeMap<&'static str, SigningKey>,
    /// Every server's verify keys.
    pub ring: KeyRing,
}

impl Keys {
    /// The keys of [`SERVERS`].
    ///
    /// # Errors
    /// Only if mxfed fails to build its own key responses.
    pub fn new() -> Result<Keys, GenError> {
        let mut ring = KeyRing::new();
        let mut signing = BTreeMap::new();
        for s in SERVERS {
            let k = server_key(s)?;
            let until = Int::new(1 << 50).ok_or_else(|| GenError("valid_until".into()))?;
            let r = build_server_keys(s, std::slice::from_ref(&k), &[], until)
                .map_err(|e| err("server keys", e))?;
            ring.add(&ServerKeys::from_response(&r).map_err(|e| err("server keys", e))?);
            signing.insert(s, k);
        }
        Ok(Keys { signing, ring })
    }

    fn signing(&self, server: &str) -> Result<&SigningKey, GenError> {
        self.signing
            .get(server)
            .ok_or_else(|| GenError(format!("no key for {server}")))
    }
}

/// One stored event: the event, whether it was rejected, and the state after it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The event.
    pub pdu: Pdu,
    /// Rejected by the receipt checks (never part of any state).
    pub rejected: bool,
    /// The state after the event (the state before it, plus itself unless rejected).
    pub state_after: StateMap,
}

/// Every event of a room, by ID.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// The events.
    pub events: BTreeMap<String, Stored>,
}

impl EventStore for Store {
    fn event(&self, id: &str) -> Option<&Pdu> {
        self.events.get(id).map(|s| &s.pdu)
    }
    fn is_rejected(&self, id: &str) -> bool {
        self.events.get(id).is_some_and(|s| s.rejected)
    }
}

impl Store {
    /// The state after an event (empty when unknown).
    pub fn state_after(&self, id: &str) -> StateMap {
        self.events
            .get(id)
            .map(|s| s.state_after.clone())
            .unwrap_or_default()
    }

    /// Every event reachable from `start` through `auth_events`, the start events included.
    pub fn auth_closure<'a>(
        &self,
        start: impl IntoIterator<Item = &'a String>,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = start.into_iter().cloned().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(e) = self.events.get(&id) {
                stack.extend(
                    e.pdu
                        .auth_event_ids()
                        .into_iter()
                        .filter(|a| !seen.contains(*a))
                        .map(str::to_owned),
                );
            }
        }
        seen
    }
}

/// One resolution the room needed: the events whose states were resolved, and mxfed's result.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The events whose states after were the inputs (merge parents, or the branch tips).
    pub tips: Vec<String>,
    /// The input states.
    pub state_sets: Vec<StateMap>,
    /// mxfed's resolved state.
    pub resolved: StateMap,
}

/// A generated room.
#[derive(Debug, Clone)]
pub struct Dag {
    /// The seed it was generated from.
    pub seed: u64,
    /// Its room version.
    pub version: &'static RoomVersion,
    /// Its room ID.
    pub room_id: String,
    /// Every event.
    pub store: Store,
    /// The events in the order they were generated.
    pub order: Vec<String>,
    /// The resolutions: one per merge event, then the final one over every branch tip.
    pub resolutions: Vec<Resolution>,
    /// How many events were rejected.
    pub rejected: usize,
}

/// Generation sizes.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Random actions on the trunk, before any fork (after the create, creator join, power
    /// levels and join rules).
    pub trunk: (usize, usize),
    /// Branches.
    pub branches: (usize, usize),
    /// Random actions per branch.
    pub per_branch: (usize, usize),
    /// Chance (percent) that an action on a branch merges another branch's tip.
    pub merge_percent: usize,
}

impl Size {
    /// The default: modest rooms (about 15–45 events).
    pub const MODEST: Size = Size {
        trunk: (3, 12),
        branches: (2, 4),
        per_branch: (1, 8),
        merge_percent: 10,
    };
}

/// Builds a room event by event: [`generate`] drives it randomly; tests can drive it by hand.
#[derive(Debug)]
pub struct Builder<'k> {
    v: &'static RoomVersion,
    keys: &'k Keys,
    rng: Rng,
    dag: Dag,
    ts: i64,
    n: u32,
    tie_percent: usize,
}

/// A position to build on: the prev events (one, or two for a merge).
pub type At = Vec<String>;

impl<'k> Builder<'k> {
    /// An empty room of version `v`; `seed` drives the timestamps (and [`generate`]'s choices).
    pub fn new(v: &'static RoomVersion, keys: &'k Keys, seed: u64) -> Builder<'k> {
        Builder {
            v,
            keys,
            rng: Rng::new(seed ^ 0x5EED_0000_0000_0000),
            dag: Dag {
                seed,
                version: v,
                room_id: "!room:a.example".into(),
                store: Store::default(),
                order: Vec::new(),
                resolutions: Vec::new(),
                rejected: 0,
            },
            ts: 1_000,
            n: 0,
            tie_percent: 15,
        }
    }

    /// Every event gets a later timestamp than the one before (by default 15% of the events
    /// share the previous one, to exercise the event-ID tie-breaks).
    pub fn distinct_timestamps(mut self) -> Self {
        self.tie_percent = 0;
        self
    }

    /// The room so far.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The room.
    pub fn finish(self) -> Dag {
        self.dag
    }

    /// Resolves the states after `tips` with mxfed, records the resolution and returns it.
    pub fn resolve_tips(&mut self, tips: &[String]) -> StateMap {
        let sets: Vec<StateMap> = tips.iter().map(|t| self.dag.store.state_after(t)).collect();
        let resolved = resolve(self.v, &sets, &self.dag.store);
        self.dag.resolutions.push(Resolution {
            tips: tips.to_vec(),
            state_sets: sets,
            resolved: resolved.clone(),
        });
        resolved
    }

    fn next_ts(&mut self) -> i64 {
        // Equal timestamps now and then, so the event-ID tie-breaks are exercised.
        if !self.rng.chance(self.tie_percent) {
            self.ts += 1 + self.rng.below(3) as i64;
        }
        self.ts
    }

    fn event(&self, id: &str) -> Option<&Stored> {
        self.dag.store.events.get(id)
    }

    fn state_before(&mut self, at: &At) -> StateMap {
        match at.as_slice() {
            [] => StateMap::new(),
            [one] => self.dag.store.state_after(one),
            _ => self.resolve_tips(at),
        }
    }

    fn refs(&self, state: &StateMap) -> mxfed_core::event::StateMap {
        state
            .iter()
            .map(|(k, id)| {
                let depth = self.event(id).map_or(0, |s| s.pdu.depth());
                (
                    k.clone(),
                    EventRef {
                        event_id: id.clone(),
                        depth,
                        sha256: Some("AAAA".into()),
                    },
                )
            })
            .collect()
    }

    /// Builds a state event at `at` (its prev events; the state before it is theirs,
    /// resolved when there are several), checks it as a receiving server would (format,
    /// signatures, hash, auth against its auth events and against the state before it) and
    /// stores it with its verdict. Returns its ID and whether it was accepted.
    ///
    /// # Errors
    /// When mxfed fails to build or check its own event.
    pub fn send(
        &mut self,
        at: &At,
        sender: &str,
        kind: &str,
        state_key: &str,
        content: &Json,
    ) -> Result<(String, bool), GenError> {
        let server = sender
            .split_once(':')
            .map(|(_, s)| s)
            .ok_or_else(|| GenError(format!("bad sender {sender}")))?;
        let is_create = kind == "m.room.create";
        let content_obj = parse_object(content.to_string().as_bytes(), &ParseOptions::STRICT)
            .map_err(|e| err("content", e))?;
        let template = EventTemplate {
            room_id: if is_create && self.v.room_id_from_create_event {
                None
            } else {
                Some(self.dag.room_id.clone())
            },
            event_type: kind.into(),
            sender: sender.into(),
            state_key: Some(state_key.into()),
            content: content_obj,
            redacts: None,
        };
        let before = self.state_before(at);
        let prev: Vec<EventRef> = at
            .iter()
            .map(|id| EventRef {
                event_id: id.clone(),
                depth: self.event(id).map_or(0, |s| s.pdu.depth()),
                sha256: Some("AAAA".into()),
            })
            .collect();
        self.n += 1;
        let ts = self.next_ts();
        let built = build_event(
            self.v,
            server,
            &template,
            &prev,
            &self.refs(&before),
            Timestamp(ts.max(0) as u64),
            self.keys.signing(server)?,
            Some(&format!("g{}", self.n)),
        )
        .map_err(|e| err("build_event", e))?;
        if is_create {
            self.dag.room_id = built.room_id.clone();
        }
        let check = check_pdu_object(built.pdu, self.v, &self.keys.ring);
        let event = check
            .event
            .clone()
            .ok_or_else(|| GenError(format!("mxfed dropped its own event: {:?}", check.verdict)))?;
        let pdu = Pdu::new(event, self.v).map_err(|e| err("pdu", e))?;
        let store = &self.dag.store.events;
        let auth: Vec<KnownEvent<'_>> = pdu
            .auth_event_ids()
            .into_iter()
            .filter_map(|id| store.get(id))
            .map(|s| KnownEvent {
                pdu: &s.pdu,
                rejected: s.rejected,
            })
            .collect();
        let create = if self.v.room_id_from_create_event {
            pdu.room_id()
                .and_then(|r| r.get(1..))
                .and_then(|r| store.get(&format!("${r}")))
                .map(|s| KnownEvent {
                    pdu: &s.pdu,
                    rejected: s.rejected,
                })
        } else {
            None
        };
        let before_view = before
            .values()
            .filter_map(|id| store.get(id))
            .filter(|s| !s.rejected)
            .map(|s| &s.pdu)
            .collect();
        let verdict = check_received(
            &pdu,
            &check.verdict,
            &Context {
                auth_events: &auth,
                create,
                state_before: &before_view,
                current_state: None,
            },
        );
        let accepted = matches!(verdict, RoomVerdict::Accepted);
        let mut after = before;
        if accepted {
            if let Some(k) = pdu.state_pair() {
                after.insert(k, pdu.event_id.clone());
            }
        } else {
            self.dag.rejected += 1;
        }
        let id = pdu.event_id.clone();
        self.dag.store.events.insert(
            id.clone(),
            Stored {
                pdu,
                rejected: !accepted,
                state_after: after,
            },
        );
        self.dag.order.push(id.clone());
        Ok((id, accepted))
    }

    fn membership(&self, state: &StateMap, user: &str) -> Option<String> {
        let id = state.get(&("m.room.member".to_owned(), user.to_owned()))?;
        self.event(id)?.pdu.membership().map(str::to_owned)
    }

    fn power_levels(&self, state: &StateMap) -> Map<String, Json> {
        state
            .get(&("m.room.power_levels".to_owned(), String::new()))
            .and_then(|id| self.event(id))
            .and_then(|s| serde_json::from_str(&s.pdu.content().to_canonical_string()).ok())
            .unwrap_or_default()
    }

    fn level(&mut self) -> i64 {
        *self
            .rng
            .pick(&[0, 0, 10, 25, 50, 50, 75, 99, 100, 100])
            .unwrap_or(&0)
    }

    fn user(&mut self) -> &'static str {
        USERS[self.rng.below(USERS.len())]
    }

    /// One random action at `at`; returns the new event and whether it was accepted.
    fn action(&mut self, at: &At) -> Result<(String, bool), GenError> {
        let state = if let [one] = at.as_slice() {
            self.dag.store.state_after(one)
        } else {
            // A merge: the action is chosen from the first parent's state.
            at.first()
                .map(|p| self.dag.store.state_after(p))
                .unwrap_or_default()
        };
        let joined: Vec<&'static str> = USERS
            .into_iter()
            .filter(|u| self.membership(&state, u).as_deref() == Some("join"))
            .collect();
        let mut sender = if !joined.is_empty() && self.rng.chance(75) {
            *self.rng.pick(&joined).unwrap_or(&CREATOR)
        } else {
            self.user()
        };
        // Joined users with power (≥ 50): most kicks, bans and power changes come from them, so
        // branches make changes that can contradict each other rather than mostly failing.
        let pl = self.power_levels(&state);
        let powerful: Vec<&'static str> = joined
            .iter()
            .copied()
            .filter(|u| {
                (self.v.privileged_creators && *u == CREATOR)
                    || pl
                        .get("users")
                        .and_then(|m| m.get(*u))
                        .and_then(Json::as_i64)
                        .is_some_and(|l| l >= 50)
            })
            .collect();
        let target = self.user();
        let member = |m: &str| json!({ "membership": m });
        let mut weights: Vec<(usize, &str)> = vec![
            (16, "join"),
            (6, "leave"),
            (7, "invite"),
            (8, "kick"),
            (7, "ban"),
            (3, "unban"),
            (16, "power"),
            (6, "demote"),
            (6, "join_rules"),
            (7, "topic"),
            (4, "name"),
        ];
        if self.v.knock {
            weights.push((3, "knock"));
        }
        let total: usize = weights.iter().map(|w| w.0).sum();
        let mut roll = self.rng.below(total);
        let mut what = "topic";
        for (w, name) in &weights {
            if roll < *w {
                what = name;
                break;
            }
            roll -= w;
        }
        if matches!(
            what,
            "kick" | "ban" | "unban" | "power" | "demote" | "join_rules"
        ) && self.rng.chance(60)
        {
            if let Some(p) = self.rng.pick(&powerful) {
                sender = p;
            }
        }
        match what {
            "join" => {
                // Joins by users not yet in the room, mostly.
                let outside: Vec<&str> =
                    USERS.into_iter().filter(|u| !joined.contains(u)).collect();
                let who = if outside.is_empty() || self.rng.chance(10) {
                    sender
                } else {
                    *self.rng.pick(&outside).unwrap_or(&sender)
                };
                self.send(at, who, "m.room.member", who, &member("join"))
            }
            "leave" => self.send(at, sender, "m.room.member", sender, &member("leave")),
            "knock" => {
                let who = self.user();
                self.send(at, who, "m.room.member", who, &member("knock"))
            }
            "invite" => self.send(at, sender, "m.room.member", target, &member("invite")),
            "kick" => self.send(at, sender, "m.room.member", target, &member("leave")),
            "ban" => self.send(at, sender, "m.room.member", target, &member("ban")),
            "unban" => {
                let banned: Vec<&str> = USERS
                    .into_iter()
                    .filter(|u| self.membership(&state, u).as_deref() == Some("ban"))
                    .collect();
                let t = *self.rng.pick(&banned).unwrap_or(&target);
                self.send(at, sender, "m.room.member", t, &member("leave"))
            }
            "power" => {
                let content = self.power_change(&state, sender);
                self.send(at, sender, "m.room.power_levels", "", &content)
            }
            "demote" => {
                // Someone with power demotes another user with power (or the sender itself).
                let mut content = self.power_levels(&state);
                let victim = *self.rng.pick(&powerful).unwrap_or(&target);
                if !(self.v.privileged_creators && victim == CREATOR) {
                    let lvl = *self.rng.pick(&[0, 0, 10, 49]).unwrap_or(&0);
                    if let Json::Object(u) = content
                        .entry("users")
                        .or_insert_with(|| Json::Object(Map::new()))
                    {
                        u.insert(victim.to_owned(), json!(lvl));
                    }
                }
                self.send(
                    at,
                    sender,
                    "m.room.power_levels",
                    "",
                    &Json::Object(content),
                )
            }
            "join_rules" => {
                let mut rules = vec!["public", "public", "invite"];
                if self.v.knock {
                    rules.push("knock");
                }
                let r = *self.rng.pick(&rules).unwrap_or(&"public");
                self.send(
                    at,
                    sender,
                    "m.room.join_rules",
                    "",
                    &json!({ "join_rule": r }),
                )
            }
            "name" => {
                let n = self.n;
                self.send(
                    at,
                    sender,
                    "m.room.name",
                    "",
                    &json!({ "name": format!("n{n}") }),
                )
            }
            _ => {
                let n = self.n;
                self.send(
                    at,
                    sender,
                    "m.room.topic",
                    "",
                    &json!({ "topic": format!("t{n}") }),
                )
            }
        }
    }

    /// A power-levels content: the current one with one to three changes.
    fn power_change(&mut self, state: &StateMap, sender: &str) -> Json {
        let mut pl = self.power_levels(state);
        let changes = self.rng.range(1, 3);
        for _ in 0..changes {
            match self.rng.below(10) {
                0..=4 => {
                    let mut who = self.user();
                    if self.rng.chance(20) {
                        who = sender;
                    }
                    // v12 creators may not be listed (the event would be rejected): rarely try.
                    if self.v.privileged_creators && who == CREATOR && !self.rng.chance(5) {
                        continue;
                    }
                    let lvl = self.level();
                    let users = pl
                        .entry("users")
                        .or_insert_with(|| Json::Object(Map::new()));
                    if let Json::Object(u) = users {
                        if self.rng.chance(15) {
                            u.remove(who);
                        } else {
                            u.insert(who.to_owned(), json!(lvl));
                        }
                    }
                }
                5..=7 => {
                    let names = [
                        "ban",
                        "kick",
                        "invite",
                        "redact",
                        "state_default",
                        "events_default",
                        "users_default",
                    ];
                    let name = *self.rng.pick(&names).unwrap_or(&"ban");
                    let lvl = self.level();
                    if self.rng.chance(10) {
                        pl.remove(name);
                    } else {
                        pl.insert(
                            name.to_owned(),
                            json!(lvl.min(if name == "users_default" { 50 } else { 100 })),
                        );
                    }
                }
                _ => {
                    let kinds = [
                        "m.room.topic",
                        "m.room.name",
                        "m.room.power_levels",
                        "m.room.join_rules",
                    ];
                    let kind = *self.rng.pick(&kinds).unwrap_or(&"m.room.topic");
                    let lvl = self.level();
                    let events = pl
                        .entry("events")
                        .or_insert_with(|| Json::Object(Map::new()));
                    if let Json::Object(e) = events {
                        e.insert(kind.to_owned(), json!(lvl));
                    }
                }
            }
        }
        Json::Object(pl)
    }
}

/// Generates one room of version `v` from `seed`.
///
/// # Errors
/// Only when mxfed fails to build or check its own events (a bug worth reporting).
pub fn generate(
    v: &'static RoomVersion,
    seed: u64,
    size: Size,
    keys: &Keys,
) -> Result<Dag, GenError> {
    let mut g = Builder::new(v, keys, seed);
    // Set-up: create, the creator's join, power levels, join rules.
    let mut create = json!({ "room_version": v.id });
    if !v.implicit_room_creator {
        create["creator"] = json!(CREATOR);
    }
    if v.privileged_creators && g.rng.chance(25) {
        create["additional_creators"] = json!([USERS[4]]);
    }
    let (c, _) = g.send(&Vec::new(), CREATOR, "m.room.create", "", &create)?;
    let (j, _) = g.send(
        &vec![c],
        CREATOR,
        "m.room.member",
        CREATOR,
        &json!({"membership": "join"}),
    )?;
    let mut users = Map::new();
    if !v.privileged_creators {
        users.insert(CREATOR.into(), json!(100));
    }
    // One or two moderators or admins, and random levels for some others.
    for _ in 0..g.rng.range(1, 2) {
        let u = USERS[g.rng.range(1, USERS.len() - 1)];
        let lvl = *g.rng.pick(&[50, 75, 100]).unwrap_or(&50);
        users.insert(u.into(), json!(lvl));
    }
    for u in &USERS[1..] {
        if !users.contains_key(*u) && g.rng.chance(25) {
            let lvl = g.level();
            users.insert((*u).into(), json!(lvl));
        }
    }
    // Some rooms start without power levels (the creator has 100, everyone else 0, until a
    // power-levels event is sent).
    let before_rules = if g.rng.chance(12) {
        j
    } else {
        g.send(
            &vec![j],
            CREATOR,
            "m.room.power_levels",
            "",
            &json!({ "users": users }),
        )?
        .0
    };
    let rule = if g.rng.chance(80) { "public" } else { "invite" };
    let (r, _) = g.send(
        &vec![before_rules],
        CREATOR,
        "m.room.join_rules",
        "",
        &json!({ "join_rule": rule }),
    )?;

    // The trunk: a few users join (invited first when the room is invite-only), then random
    // actions.
    let mut positions: Vec<String> = vec![r.clone()];
    let mut tip = r;
    for _ in 0..g.rng.range(2, 4) {
        let u = USERS[g.rng.range(1, USERS.len() - 1)];
        if rule == "invite" {
            let (id, ok) = g.send(
                &vec![tip.clone()],
                CREATOR,
                "m.room.member",
                u,
                &json!({"membership": "invite"}),
            )?;
            if ok {
                tip = id;
                positions.push(tip.clone());
            }
        }
        let (id, ok) = g.send(
            &vec![tip.clone()],
            u,
            "m.room.member",
            u,
            &json!({"membership": "join"}),
        )?;
        if ok {
            tip = id;
            positions.push(tip.clone());
        }
    }
    for _ in 0..g.rng.range(size.trunk.0, size.trunk.1) {
        let (id, ok) = g.action(&vec![tip.clone()])?;
        if ok {
            tip = id;
            positions.push(tip.clone());
        }
    }

    // The branches, each from a random accepted event so far (trunk or earlier branch).
    let branches = g.rng.range(size.branches.0, size.branches.1);
    let mut tips: Vec<String> = Vec::new();
    for _ in 0..branches {
        let start = g
            .rng
            .pick(&positions)
            .cloned()
            .ok_or_else(|| GenError("no position".into()))?;
        tips.push(start);
    }
    let steps = g.rng.range(size.per_branch.0, size.per_branch.1);
    // Interleave the branches' actions so timestamps mix across branches.
    for _ in 0..steps * branches {
        let b = g.rng.below(branches);
        let Some(mine) = tips.get(b).cloned() else {
            continue;
        };
        let mut at = vec![mine.clone()];
        if g.rng.chance(size.merge_percent) {
            let other = tips.get(g.rng.below(branches)).cloned();
            if let Some(o) = other.filter(|o| *o != mine) {
                at.push(o);
            }
        }
        let (id, ok) = g.action(&at)?;
        if ok {
            positions.push(id.clone());
            if let Some(t) = tips.get_mut(b) {
                *t = id;
            }
        }
    }
    let mut seen = BTreeSet::new();
    tips.retain(|t| seen.insert(t.clone()));
    if tips.len() > 1 {
        g.resolve_tips(&tips);
    }
    Ok(g.dag)
}

/// A one-line description of an event, for reports.
pub fn describe(store: &Store, id: &str) -> String {
    match store.events.get(id) {
        None => format!("{id} (unknown)"),
        Some(s) => {
            let p = &s.pdu;
            format!(
                "{id} {} sk={:?} sender={} ts={} depth={} content={}{}",
                p.kind(),
                p.state_key().unwrap_or(""),
                p.sender(),
                p.origin_server_ts(),
                p.depth(),
                p.content().to_canonical_string(),
                if s.rejected { " REJECTED" } else { "" }
            )
        }
    }
}
