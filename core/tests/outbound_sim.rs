//! The outbound queue on a simulated clock (STYLE.md § Tests: step until idle, no sleeps).
//!
//! [`random_interleavings_keep_every_invariant`] runs thousands of seeded scenarios of random
//! queue / transmit / response / timeout events against a model, checking after every step:
//! - never two transactions in flight;
//! - a retry re-sends the same txn ID and the same body; new txn IDs never repeat;
//! - every transaction takes the oldest queued PDUs in queue order, ≤ 50 PDUs, ≤ 100 EDUs;
//! - no PDU is acknowledged twice, and at the end every PDU was acknowledged exactly once or
//!   reported dropped exactly once (overflow: never the newest of its room; rejection: only
//!   when its transaction was refused `max_refusals` times in a row, with `catch_up` exactly
//!   when no newer PDU of the room is queued; catch-up: never the newest of its room, and only
//!   in catch-up mode);
//! - every failure, refusals included, is retried with the same transaction until it is
//!   abandoned, and nothing is sent before the retry time, not even a new transaction after an
//!   abandoned one;
//! - backoff delays are monotone non-decreasing across consecutive failures, at most the cap,
//!   at least a 429's `retry_after`, at least the refusal floor after a refusal, and start again
//!   from the base (or the floor) after a success;
//! - coalescing never loses the latest state: for every typing/presence/receipt key, the last
//!   state queued is the last one delivered, unless it was reported dropped; states for one key
//!   are delivered in the order queued;
//! - reliable EDUs are delivered exactly once, in order, or handed back, never lost;
//! - the queue bounds hold, and in catch-up mode (entered when a retry delay reaches
//!   `catch_up_after`, left on a success) at most one PDU per room is queued.
//!
//! The other tests pin down each documented policy on small hand-made cases.

// core/clippy.toml allows these inside #[test] functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use mxfed_core::canonical::{Int, Object, Value};
use mxfed_core::edu::{
    DeviceListUpdate, DirectToDevice, Edu, Presence, PresenceUpdate, Receipt, ReceiptEntry, Typing,
};
use mxfed_core::outbound::{
    Backoff, DestinationQueue, DropReason, Event, Failure, OutboundConfig, OutboundError, Outcome,
    PduRef, RetryState, SplitMix64, Transmit,
};
use mxfed_core::transaction::{parse_transaction, TransactionResponse, MAX_EDUS, MAX_PDUS};
use mxfed_core::{Millis, Timestamp};

/// Scenarios in the random test.
const SCENARIOS: u64 = 2_500;

// ------------------------------------------------------------------------------------------------
// Scenario generation: xorshift64*, independent of the core's PRNG
// ------------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

// ------------------------------------------------------------------------------------------------
// Building and reading EDUs with version stamps
// ------------------------------------------------------------------------------------------------

const ORIGIN: &str = "a.example";

fn user(i: u64) -> String {
    format!("@u{i}:{ORIGIN}")
}

fn room(i: u64) -> String {
    format!("!r{i}:{ORIGIN}")
}

/// A typing EDU carrying its version in an extra content field (kept by the lossless EDUs).
fn typing(room_id: &str, user_id: &str, on: bool, version: u64) -> Edu {
    let mut c = Object::new();
    c.insert("room_id", room_id);
    c.insert("typing", on);
    c.insert("user_id", user_id);
    c.insert("v", Int::saturating(version as i64));
    Typing::from_content(c).unwrap().into()
}

fn presence(entries: &[(String, u64)]) -> Edu {
    Presence::from_updates(
        entries
            .iter()
            .map(|(u, v)| PresenceUpdate::new(u, "online", Some(*v)).unwrap()),
    )
    .into()
}

fn receipt(entries: &[(String, String, Option<String>, u64)]) -> Edu {
    Receipt::from_entries(entries.iter().map(|(r, u, thread, v)| {
        ReceiptEntry::new(
            r,
            "m.read",
            u,
            &format!("$v{v}"),
            *v as i64,
            thread.as_deref(),
        )
        .unwrap()
    }))
    .into()
}

fn to_device(id: u64) -> Edu {
    let mut msgs = Object::new();
    let mut devs = Object::new();
    devs.insert("*", Object::new());
    msgs.insert("@x:b.example", devs);
    DirectToDevice::new(&user(0), "m.test", &format!("m{id}"), msgs)
        .unwrap()
        .into()
}

fn device_list(id: u64) -> Edu {
    DeviceListUpdate::new(&user(1), "DEV", id as i64, &[])
        .unwrap()
        .into()
}

fn unknown(id: u64) -> Edu {
    let mut c = Object::new();
    c.insert("n", Int::saturating(id as i64));
    Edu::Unknown {
        edu_type: "org.example.ping".into(),
        content: c,
    }
}

/// The (key, version) states an ephemeral EDU carries.
fn states(edu: &Edu) -> Vec<(String, u64)> {
    let v = |o: &Object, k: &str| o.get(k).and_then(Value::as_int).unwrap() as u64;
    match edu {
        Edu::Typing(t) => vec![(
            format!("typing {} {}", t.room_id(), t.user_id()),
            v(t.content(), "v"),
        )],
        Edu::Presence(p) => p
            .updates()
            .iter()
            .map(|u| {
                (
                    format!("presence {}", u.user_id()),
                    u.last_active_ago().unwrap() as u64,
                )
            })
            .collect(),
        Edu::Receipt(r) => r
            .entries()
            .iter()
            .map(|e| {
                (
                    format!(
                        "receipt {} {} {} {:?}",
                        e.room_id(),
                        e.receipt_type(),
                        e.user_id(),
                        e.thread_id()
                    ),
                    e.ts().unwrap() as u64,
                )
            })
            .collect(),
        Edu::Unknown { content, .. } => {
            vec![(format!("other {}", v(content, "n")), v(content, "n"))]
        }
        _ => Vec::new(),
    }
}

/// The ID of a reliable EDU.
fn reliable_id(edu: &Edu) -> Option<String> {
    match edu {
        Edu::DirectToDevice(d) => Some(format!("td {}", d.message_id())),
        Edu::DeviceListUpdate(d) => Some(format!("dl {}", d.stream_id())),
        _ => None,
    }
}

fn pdu(room_id: &str, event_id: &str) -> Object {
    let mut o = Object::new();
    o.insert("event_id", event_id);
    o.insert("room_id", room_id);
    o.insert("type", "m.room.message");
    o
}

/// The (room, event) of every PDU in a transmitted body, in order, and its EDUs.
fn contents(t: &Transmit) -> (Vec<PduRef>, Vec<Edu>) {
    let tx = parse_transaction(&t.body).unwrap();
    assert!(tx.rejected().is_empty());
    let pdus = tx
        .pdus()
        .iter()
        .map(|p| PduRef {
            room_id: p.get_str("room_id").unwrap().to_owned(),
            event_id: p.get_str("event_id").unwrap().to_owned(),
        })
        .collect();
    (pdus, tx.edus().to_vec())
}

/// A short, cheap description of an event for the trace.
fn summary(ev: &Event) -> String {
    match ev {
        Event::Delivered { txn_id, pdus, edus } => {
            format!("delivered {txn_id} {} {}", pdus.len(), edus.len())
        }
        Event::PduDropped {
            pdu,
            reason,
            catch_up,
        } => format!("pdu dropped {} {reason:?} {catch_up}", pdu.event_id),
        Event::EduDropped { edu, reason } => format!("edu dropped {:?} {reason:?}", states(edu)),
        Event::ReliableEduReturned { edu, reason } => {
            format!("returned {:?} {reason:?}", reliable_id(edu))
        }
        other => format!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    InTxn,
    Done,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    steps: u64,
    queued_pdus: u64,
    queued_edus: u64,
    transmits: u64,
    retries: u64,
    delivered_txns: u64,
    rejected_txns: u64,
    pdus_dropped_overflow: u64,
    pdus_dropped_catch_up: u64,
    edus_dropped_overflow: u64,
    reliable_returned: u64,
    capped_delays: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.queued_pdus += o.queued_pdus;
        self.queued_edus += o.queued_edus;
        self.transmits += o.transmits;
        self.retries += o.retries;
        self.delivered_txns += o.delivered_txns;
        self.rejected_txns += o.rejected_txns;
        self.pdus_dropped_overflow += o.pdus_dropped_overflow;
        self.pdus_dropped_catch_up += o.pdus_dropped_catch_up;
        self.edus_dropped_overflow += o.edus_dropped_overflow;
        self.reliable_returned += o.reliable_returned;
        self.capped_delays += o.capped_delays;
    }
}

struct Sim {
    cfg: OutboundConfig,
    q: DestinationQueue,
    now: Timestamp,
    /// Every PDU in queue order, and where it is.
    pdu_order: Vec<PduRef>,
    pdu_state: BTreeMap<String, State>,
    acked: BTreeSet<String>,
    latest_in_room: BTreeMap<String, String>,
    /// The request the queue is waiting on an answer for.
    outstanding: Option<Transmit>,
    /// After a failure: the request the next transmit must repeat.
    must_repeat: Option<Transmit>,
    /// Refusals in a row of the transaction in flight.
    refusals: u32,
    /// `TransactionRejected` events seen.
    rejections_seen: u64,
    txn_ids: BTreeSet<String>,
    /// Backoff delays of the current failure streak.
    streak: Vec<u64>,
    down: bool,
    /// Ephemeral key → latest version queued / last delivered; (key, version) dropped.
    latest: BTreeMap<String, u64>,
    delivered: BTreeMap<String, u64>,
    dropped: BTreeSet<(String, u64)>,
    /// Ephemeral key → version of the state the queue should hold for it (not yet sent or
    /// dropped). Versions grow in queue order, so the smallest is the oldest entry.
    eph_pending: BTreeMap<String, u64>,
    /// Reliable EDUs in queue order, and where each is.
    reliable_order: Vec<String>,
    reliable_state: BTreeMap<String, State>,
    last_reliable_delivered: Option<usize>,
    version: u64,
    stats: Stats,
    /// A record of everything the queue emitted, for the determinism test.
    trace: Vec<String>,
}

impl Sim {
    fn new(cfg: OutboundConfig, queue_seed: u64) -> Sim {
        let now = Timestamp(1_700_000_000_000);
        Sim {
            cfg,
            q: DestinationQueue::new(ORIGIN, "b.example", cfg, now, queue_seed),
            now,
            pdu_order: Vec::new(),
            pdu_state: BTreeMap::new(),
            acked: BTreeSet::new(),
            latest_in_room: BTreeMap::new(),
            outstanding: None,
            must_repeat: None,
            refusals: 0,
            rejections_seen: 0,
            txn_ids: BTreeSet::new(),
            streak: Vec::new(),
            down: false,
            latest: BTreeMap::new(),
            delivered: BTreeMap::new(),
            dropped: BTreeSet::new(),
            eph_pending: BTreeMap::new(),
            reliable_order: Vec::new(),
            reliable_state: BTreeMap::new(),
            last_reliable_delivered: None,
            version: 0,
            stats: Stats::default(),
            trace: Vec::new(),
        }
    }

    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    // -- inputs ----------------------------------------------------------------------------------

    fn queue_pdu(&mut self, room_id: String) {
        let event_id = format!("$e{}", self.next_version());
        self.q.queue_pdu(
            self.now,
            event_id.clone(),
            room_id.clone(),
            pdu(&room_id, &event_id),
        );
        self.pdu_state.insert(event_id.clone(), State::Queued);
        self.latest_in_room
            .insert(room_id.clone(), event_id.clone());
        self.pdu_order.push(PduRef { room_id, event_id });
        self.stats.queued_pdus += 1;
        self.drain_events(None);
        self.check_bounds();
    }

    fn queue_edu(&mut self, edu: Edu) {
        for (key, v) in states(&edu) {
            self.latest.insert(key.clone(), v);
            self.eph_pending.insert(key, v);
        }
        if let Some(id) = reliable_id(&edu) {
            self.reliable_order.push(id.clone());
            self.reliable_state.insert(id, State::Queued);
        }
        self.q.queue_edu(self.now, edu);
        self.stats.queued_edus += 1;
        self.drain_events(None);
        self.check_bounds();
    }

    fn check_bounds(&self) {
        let rooms_queued: BTreeSet<&str> = self
            .pdu_order
            .iter()
            .filter(|p| self.pdu_state[&p.event_id] == State::Queued)
            .map(|p| p.room_id.as_str())
            .collect();
        assert!(self.q.pending_pdus() <= self.cfg.max_pending_pdus.max(rooms_queued.len()));
        if self.q.is_catching_up() {
            assert_eq!(
                self.q.pending_pdus(),
                rooms_queued.len(),
                "one PDU per room"
            );
        }
        assert!(self.q.pending_edus() <= self.cfg.max_pending_edus);
        assert!(self.q.pending_reliable_edus() <= self.cfg.max_pending_reliable_edus);
        assert_eq!(self.q.awaiting_response(), self.outstanding.is_some());
    }

    // -- transmit --------------------------------------------------------------------------------

    fn poll_transmit(&mut self) -> bool {
        let Some(t) = self.q.poll_transmit(self.now) else {
            return false;
        };
        assert!(
            self.outstanding.is_none(),
            "two transactions in flight: {} while {} is outstanding",
            t.txn_id,
            self.outstanding.as_ref().unwrap().txn_id
        );
        self.trace
            .push(format!("tx {} #{} @{}", t.txn_id, t.attempt, self.now.0));
        self.stats.transmits += 1;
        assert!(t.pdu_count <= MAX_PDUS && t.edu_count <= MAX_EDUS);
        assert_eq!(t.path, format!("/_matrix/federation/v1/send/{}", t.txn_id));
        if let Some(prev) = self.must_repeat.take() {
            assert_eq!(t.txn_id, prev.txn_id, "a retry keeps its txn ID");
            assert_eq!(t.body, prev.body, "a retry keeps its exact body");
            assert_eq!(t.attempt, prev.attempt + 1);
            self.stats.retries += 1;
        } else {
            assert!(self.txn_ids.insert(t.txn_id.clone()), "txn ID reused");
            assert_eq!(t.attempt, 1);
            self.refusals = 0;
            self.check_new_transaction(&t);
        }
        self.outstanding = Some(t);
        true
    }

    /// A new transaction holds the oldest queued PDUs, in order, as many as allowed.
    fn check_new_transaction(&mut self, t: &Transmit) {
        let (pdus, edus) = contents(t);
        let queued: Vec<&PduRef> = self
            .pdu_order
            .iter()
            .filter(|p| self.pdu_state[&p.event_id] == State::Queued)
            .collect();
        let n = queued.len().min(MAX_PDUS);
        assert_eq!(pdus.len(), n, "takes the first min(50, queued) PDUs");
        for (got, want) in pdus.iter().zip(queued) {
            assert_eq!(got, want, "PDUs in queue order");
        }
        for p in &pdus {
            self.pdu_state.insert(p.event_id.clone(), State::InTxn);
        }
        let presence = edus
            .iter()
            .filter(|e| matches!(e, Edu::Presence(_)))
            .count();
        let receipts = edus.iter().filter(|e| matches!(e, Edu::Receipt(_))).count();
        assert!(presence <= 1 && receipts <= 5);
        for e in &edus {
            for (key, v) in states(e) {
                assert_eq!(
                    self.eph_pending.remove(&key),
                    Some(v),
                    "{key}: the state sent is the latest queued"
                );
            }
            if let Edu::Presence(p) = e {
                assert!(p.updates().len() <= 50);
            }
            if let Some(id) = reliable_id(e) {
                assert_eq!(self.reliable_state[&id], State::Queued);
                self.reliable_state.insert(id, State::InTxn);
            }
        }
    }

    // -- responses -------------------------------------------------------------------------------

    fn respond(&mut self, outcome: Outcome) {
        let Some(t) = self.outstanding.take() else {
            assert_eq!(
                self.q.handle_response(self.now, outcome),
                Err(OutboundError::NothingInFlight)
            );
            return;
        };
        self.trace.push(format!("rx {outcome:?}"));
        self.q.handle_response(self.now, outcome.clone()).unwrap();
        match outcome {
            Outcome::Success(_) => {
                self.stats.delivered_txns += 1;
                self.streak.clear();
                self.drain_events(Some(&t));
            }
            Outcome::Failure(f) => {
                self.check_backoff(f);
                self.refusals = if f.is_refusal() { self.refusals + 1 } else { 0 };
                let rejections = self.rejections_seen;
                if self.refusals >= self.cfg.max_refusals.max(1) {
                    // Abandoned; the backoff goes on for the next transaction.
                    self.stats.rejected_txns += 1;
                    self.drain_events(Some(&t));
                    assert_eq!(self.rejections_seen, rejections + 1, "abandoned");
                } else {
                    self.must_repeat = Some(t.clone());
                    self.drain_events(Some(&t));
                    assert_eq!(self.rejections_seen, rejections, "not abandoned yet");
                }
                // Nothing before the retry time, neither the retry nor a new transaction.
                assert!(self.q.poll_timeout().unwrap() > self.now);
                assert!(self.q.poll_transmit(self.now).is_none());
            }
            _ => unreachable!(),
        }
        self.check_bounds();
    }

    fn check_backoff(&mut self, f: Failure) {
        let retry_at = self
            .q
            .poll_timeout()
            .expect("a failed transaction has a retry time");
        let delay = (retry_at - self.now).0;
        let (base, cap) = (self.cfg.backoff_base.0, self.cfg.backoff_cap.0);
        assert!(delay <= cap, "delay {delay} over the cap {cap}");
        let floor = if f.is_refusal() {
            self.cfg.refusal_backoff_floor.0.min(cap)
        } else {
            0
        };
        assert!(delay >= floor, "a refusal waits at least the floor");
        if let Failure::RateLimited {
            retry_after: Some(d),
        } = f
        {
            assert!(delay >= d.0.min(cap), "429 retry_after honoured");
        }
        match self.streak.last() {
            Some(&prev) => assert!(
                delay >= prev,
                "delays monotone: {:?} then {delay}",
                self.streak
            ),
            None => assert!(delay >= base.min(cap), "first delay at least the base"),
        }
        if self.streak.is_empty()
            && !matches!(
                f,
                Failure::RateLimited {
                    retry_after: Some(_)
                }
            )
        {
            let first = base.max(floor).min(cap);
            assert!(
                delay <= first + first / 2,
                "first delay restarts from the base (or the floor)"
            );
        }
        if delay == cap {
            self.stats.capped_delays += 1;
        }
        self.trace.push(format!("retry +{delay}"));
        self.streak.push(delay);
    }

    // -- events ----------------------------------------------------------------------------------

    /// Processes every event; `answered` is the request just answered, if any.
    fn drain_events(&mut self, answered: Option<&Transmit>) {
        let sent = answered.map(contents);
        while let Some(ev) = self.q.poll_event() {
            self.trace.push(summary(&ev));
            match ev {
                Event::Delivered { txn_id, pdus, edus } => {
                    let t = answered.expect("delivered only on an answer");
                    let (sent_pdus, sent_edus) = sent.clone().unwrap();
                    assert_eq!(txn_id, t.txn_id);
                    assert_eq!(pdus, sent_pdus, "Delivered names the PDUs sent");
                    assert_eq!(edus, sent_edus, "Delivered names the EDUs sent");
                    for p in pdus {
                        assert!(self.acked.insert(p.event_id.clone()), "PDU acked twice");
                        assert_eq!(self.pdu_state[&p.event_id], State::InTxn);
                        self.pdu_state.insert(p.event_id, State::Done);
                    }
                    for e in &edus {
                        for (key, v) in states(e) {
                            if let Some(&prev) = self.delivered.get(&key) {
                                assert!(v > prev, "{key}: state {v} delivered after {prev}");
                            }
                            self.delivered.insert(key, v);
                        }
                        if let Some(id) = reliable_id(e) {
                            assert_eq!(self.reliable_state[&id], State::InTxn);
                            self.reliable_state.insert(id.clone(), State::Done);
                            let pos = self.reliable_order.iter().position(|x| *x == id).unwrap();
                            assert!(
                                self.last_reliable_delivered.is_none_or(|l| pos > l),
                                "reliable EDUs delivered in order"
                            );
                            self.last_reliable_delivered = Some(pos);
                        }
                    }
                }
                Event::PduDropped {
                    pdu,
                    reason,
                    catch_up,
                } => {
                    let state = self.pdu_state[&pdu.event_id];
                    match reason {
                        DropReason::Overflow => {
                            assert_eq!(state, State::Queued);
                            assert_ne!(
                                self.latest_in_room[&pdu.room_id], pdu.event_id,
                                "the newest PDU of a room is never dropped by overflow"
                            );
                            assert!(!catch_up);
                            self.stats.pdus_dropped_overflow += 1;
                        }
                        DropReason::CatchUp => {
                            assert!(self.q.is_catching_up());
                            assert_eq!(state, State::Queued);
                            assert_ne!(
                                self.latest_in_room[&pdu.room_id], pdu.event_id,
                                "catch-up keeps the newest PDU of a room"
                            );
                            assert!(!catch_up);
                            self.stats.pdus_dropped_catch_up += 1;
                        }
                        DropReason::Rejected { .. } => {
                            assert_eq!(state, State::InTxn);
                            assert!(sent.as_ref().unwrap().0.contains(&pdu));
                            let newer_queued = self.pdu_order.iter().any(|p| {
                                p.room_id == pdu.room_id
                                    && self.pdu_state[&p.event_id] == State::Queued
                            });
                            assert_eq!(catch_up, !newer_queued, "catch_up flag");
                        }
                        _ => unreachable!(),
                    }
                    self.pdu_state.insert(pdu.event_id, State::Done);
                }
                Event::EduDropped { edu, reason } => {
                    assert!(!edu.is_reliable(), "reliable EDUs are never dropped");
                    if let DropReason::Rejected { .. } = reason {
                        assert!(sent.as_ref().unwrap().1.contains(&edu));
                    } else {
                        self.stats.edus_dropped_overflow += 1;
                        for (key, v) in states(&edu) {
                            let oldest = self.eph_pending.values().min().copied();
                            assert_eq!(Some(v), oldest, "{key}: overflow drops the oldest entry");
                            assert_eq!(self.eph_pending.remove(&key), Some(v));
                        }
                    }
                    for s in states(&edu) {
                        self.dropped.insert(s);
                    }
                }
                Event::ReliableEduReturned { edu, reason } => {
                    let id = reliable_id(&edu).unwrap();
                    let state = self.reliable_state[&id];
                    match reason {
                        DropReason::Overflow => {
                            assert_eq!(state, State::Queued);
                            assert_eq!(
                                self.q.pending_reliable_edus(),
                                self.cfg.max_pending_reliable_edus
                            );
                        }
                        _ => assert_eq!(state, State::InTxn),
                    }
                    self.reliable_state.insert(id, State::Done);
                    self.stats.reliable_returned += 1;
                }
                Event::TransactionRejected { txn_id, .. } => {
                    assert_eq!(txn_id, answered.unwrap().txn_id);
                    self.rejections_seen += 1;
                }
                Event::RemotePduError { event_id, .. } => {
                    assert!(self.acked.contains(&event_id));
                }
                Event::DestinationDown { retry_at } => {
                    assert!(!self.down);
                    assert_eq!(Some(retry_at), self.q.poll_timeout());
                    self.down = true;
                }
                Event::DestinationUp => {
                    assert!(self.down);
                    self.down = false;
                }
                Event::BackoffChanged { retry: Some(r) } => {
                    assert_eq!(Some(r.retry_at), self.q.poll_timeout());
                    assert_eq!(r.failures, self.q.failures());
                    assert_eq!(self.streak.last(), Some(&r.delay.0));
                }
                Event::BackoffChanged { retry: None } => {
                    assert_eq!(self.q.failures(), 0);
                    assert!(self.streak.is_empty());
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    // -- time ------------------------------------------------------------------------------------

    fn advance_to(&mut self, t: Timestamp) {
        self.now = self.now.max(t);
        self.q.handle_timeout(self.now);
        self.drain_events(None);
    }

    /// Answers everything with success until the queue is idle.
    fn drain(&mut self) {
        for _ in 0..1_000_000 {
            self.drain_events(None);
            if self.outstanding.is_some() {
                let resp = TransactionResponse::new();
                self.respond(Outcome::Success(resp));
            } else if self.poll_transmit() {
            } else if let Some(t) = self.q.poll_timeout() {
                self.advance_to(t);
            } else {
                break;
            }
        }
        assert!(self.q.is_idle(), "idle after draining");
        assert!(self.q.poll_event().is_none());
    }

    /// The end-of-run invariants.
    fn check_final(&self) {
        for (id, state) in &self.pdu_state {
            assert_eq!(
                *state,
                State::Done,
                "{id} neither delivered nor reported dropped"
            );
        }
        for (id, state) in &self.reliable_state {
            assert_eq!(*state, State::Done, "reliable {id} lost");
        }
        assert!(self.eph_pending.is_empty(), "{:?}", self.eph_pending);
        for (key, v) in &self.latest {
            let delivered = self.delivered.get(key) == Some(v);
            let dropped = self.dropped.contains(&(key.clone(), *v));
            assert!(
                delivered || dropped,
                "{key}: latest state {v} neither delivered nor reported dropped (delivered: {:?})",
                self.delivered.get(key)
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The random scenarios
// ------------------------------------------------------------------------------------------------

fn random_config(rng: &mut Rng) -> OutboundConfig {
    let base = rng.range(1, 5_000);
    OutboundConfig {
        backoff_base: Millis(base),
        backoff_cap: Millis(base << rng.range(0, 10)),
        max_pending_pdus: if rng.percent(20) {
            1000
        } else {
            rng.range(1, 30) as usize
        },
        max_pending_edus: rng.range(1, 12) as usize,
        max_pending_reliable_edus: rng.range(1, 10) as usize,
        refusal_backoff_floor: Millis(if rng.percent(30) {
            0
        } else {
            rng.range(1, base * 20)
        }),
        max_refusals: rng.range(0, 3) as u32,
        catch_up_after: Millis(base << rng.range(0, 10)),
    }
}

fn random_failure(rng: &mut Rng) -> Failure {
    match rng.below(8) {
        0 => Failure::Network,
        1 => Failure::Timeout,
        2 => Failure::ServerError {
            status: 500 + rng.below(4) as u16,
        },
        3 => Failure::RateLimited {
            retry_after: rng.percent(60).then(|| Millis(rng.below(200_000))),
        },
        4 => Failure::from_status(401, None),
        5 => Failure::from_status(408, None),
        _ => Failure::from_status([400, 403, 404, 413][rng.below(4) as usize], None),
    }
}

/// One scenario: random steps, then drain with successes, then the final checks.
fn run_scenario(seed: u64, queue_seed: u64) -> Sim {
    let mut rng = Rng::new(seed);
    let cfg = random_config(&mut rng);
    let mut sim = Sim::new(cfg, queue_seed);
    let rooms = rng.range(1, 6);
    let users = rng.range(1, 3);
    let steps = rng.range(20, 300);
    let success_bias = rng.range(20, 90);
    for _ in 0..steps {
        sim.stats.steps += 1;
        match rng.below(100) {
            0..=24 => sim.queue_pdu(room(rng.below(rooms))),
            25..=34 => {
                let v = sim.next_version();
                let on = rng.percent(50);
                sim.queue_edu(typing(&room(rng.below(2)), &user(rng.below(users)), on, v));
            }
            35..=41 => {
                let n = rng.range(1, 3);
                let entries: Vec<_> = (0..n)
                    .map(|_| (user(rng.below(users + 1)), sim.next_version()))
                    .collect();
                // One EDU can list a user twice; the later entry is the latest state.
                sim.queue_edu(presence(&entries));
            }
            42..=48 => {
                // Versions are handed out in the order the queue sees the entries (room, user),
                // so they stay in queue order. One content holds one receipt per (room, user):
                // a second thread for the same pair is a separate EDU.
                let n = rng.range(1, 3);
                let mut keys = BTreeMap::new();
                for _ in 0..n {
                    let thread = rng.percent(30).then(|| format!("$t{}", rng.below(2)));
                    keys.insert((room(rng.below(2)), user(rng.below(users))), thread);
                }
                let list: Vec<_> = keys
                    .into_iter()
                    .map(|((r, u), t)| (r, u, t, sim.next_version()))
                    .collect();
                sim.queue_edu(receipt(&list));
            }
            49..=54 => {
                let v = sim.next_version();
                sim.queue_edu(if rng.percent(50) {
                    to_device(v)
                } else {
                    device_list(v)
                });
            }
            55..=57 => {
                let v = sim.next_version();
                sim.queue_edu(unknown(v));
            }
            58..=74 => {
                sim.poll_transmit();
            }
            75..=89 => {
                let outcome = if rng.percent(success_bias) {
                    let mut resp = TransactionResponse::new();
                    if let Some(t) = &sim.outstanding {
                        for p in contents(t).0 {
                            if rng.percent(10) {
                                resp.set_error(p.event_id, "refused");
                            }
                        }
                    }
                    Outcome::Success(resp)
                } else {
                    Outcome::Failure(random_failure(&mut rng))
                };
                sim.respond(outcome);
            }
            90..=94 => {
                if let Some(t) = sim.q.poll_timeout() {
                    let late = if rng.percent(50) {
                        0
                    } else {
                        rng.below(10_000)
                    };
                    sim.advance_to(t + Millis(late));
                } else {
                    let t = sim.now + Millis(rng.below(5_000));
                    sim.advance_to(t);
                }
            }
            _ => {
                let t = sim.now + Millis(rng.below(3_000));
                sim.advance_to(t);
            }
        }
    }
    sim.drain();
    sim.check_final();
    sim
}

/// Thousands of random interleavings of queue, transmit, response and timeout events, each
/// checked step by step against the model (see the file docs for the invariants).
#[test]
fn random_interleavings_keep_every_invariant() {
    let mut total = Stats::default();
    for seed in 0..SCENARIOS {
        let sim = run_scenario(seed, seed ^ 0x5EED);
        total.add(&sim.stats);
    }
    println!("{SCENARIOS} scenarios: {total:?}");
    // The generator really exercises every path.
    assert!(total.retries > 1_000 && total.rejected_txns > 100);
    assert!(total.pdus_dropped_overflow > 100 && total.edus_dropped_overflow > 100);
    assert!(total.reliable_returned > 100 && total.capped_delays > 100);
    assert!(total.pdus_dropped_catch_up > 100);
}

/// Same scenario seed and queue seed → the same run, event for event; a different queue seed
/// changes only the jitter.
#[test]
fn runs_are_deterministic() {
    for seed in [1, 17, 999] {
        let a = run_scenario(seed, 42);
        let b = run_scenario(seed, 42);
        assert_eq!(a.trace, b.trace);
    }
    let differs = (0..50).any(|seed| run_scenario(seed, 1).trace != run_scenario(seed, 2).trace);
    assert!(differs, "the seed drives the jitter");
}

// ------------------------------------------------------------------------------------------------
// PRNG and backoff determinism
// ------------------------------------------------------------------------------------------------

/// Same seed → same schedule; different seeds → different jitter; monotone, capped, reset.
#[test]
fn backoff_schedule_is_a_function_of_the_seed() {
    let schedule = |seed| {
        let mut b = Backoff::new(Millis(5_000), Millis(86_400_000), seed);
        (0..20).map(|_| b.failure(Millis(0)).0).collect::<Vec<_>>()
    };
    assert_eq!(schedule(7), schedule(7));
    assert_ne!(schedule(7), schedule(8));
    let s = schedule(7);
    assert!(s.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
    assert!((5_000..=7_500).contains(&s[0]));
    assert_eq!(*s.last().unwrap(), 86_400_000);
    // Each delay is within [interval, 1.5 interval] until the cap.
    for (k, d) in s.iter().enumerate() {
        let interval = (5_000u64 << k).min(86_400_000);
        assert!(*d >= interval && *d <= (interval + interval / 2).min(86_400_000));
    }

    let mut b = Backoff::new(Millis(100), Millis(1_000), 3);
    assert_eq!(
        b.failure(Millis(700)).0,
        700,
        "retry_after raises the delay"
    );
    assert!(
        b.failure(Millis(0)).0 >= 700,
        "and the next one stays at least as long"
    );
    assert_eq!(
        b.failure(Millis(50_000)).0,
        1_000,
        "retry_after is capped too"
    );
    b.reset();
    assert_eq!(b.failures(), 0);
    assert!(b.failure(Millis(0)).0 <= 150);

    let mut r1 = SplitMix64::new(99);
    let mut r2 = SplitMix64::new(99);
    assert!((0..100).all(|_| r1.next_u64() == r2.next_u64()));
}

/// The queue's retry times come from its seed alone.
#[test]
fn queue_retry_schedule_is_deterministic() {
    let schedule = |seed| {
        let now = Timestamp(0);
        let mut q = DestinationQueue::new(ORIGIN, "b", OutboundConfig::default(), now, seed);
        q.queue_pdu(now, "$e", "!r", Object::new());
        let mut out = Vec::new();
        let mut now = now;
        for _ in 0..10 {
            q.poll_transmit(now).unwrap();
            q.handle_response(now, Outcome::Failure(Failure::Network))
                .unwrap();
            let t = q.poll_timeout().unwrap();
            out.push((t - now).0);
            now = t;
            q.handle_timeout(now);
        }
        out
    };
    assert_eq!(schedule(5), schedule(5));
    assert_ne!(schedule(5), schedule(6));
}

// ------------------------------------------------------------------------------------------------
// Policies, case by case
// ------------------------------------------------------------------------------------------------

fn queue(cfg: OutboundConfig) -> DestinationQueue {
    DestinationQueue::new(ORIGIN, "b.example", cfg, Timestamp(1_000), 0)
}

fn events(q: &mut DestinationQueue) -> Vec<Event> {
    std::iter::from_fn(|| q.poll_event()).collect()
}

fn dropped_pdus(evs: &[Event]) -> Vec<(String, bool)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::PduDropped { pdu, catch_up, .. } => Some((pdu.event_id.clone(), *catch_up)),
            _ => None,
        })
        .collect()
}

fn sent_pdus(t: &Transmit) -> Vec<String> {
    contents(t).0.into_iter().map(|p| p.event_id).collect()
}

/// PDU overflow drops the oldest superseded PDU and keeps the newest of every room; when every
/// queued PDU is the newest of its room, nothing is dropped.
#[test]
fn pdu_overflow_keeps_the_newest_of_each_room() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig {
        max_pending_pdus: 3,
        ..OutboundConfig::default()
    });
    for (e, r) in [("$a1", "!a"), ("$b1", "!b"), ("$a2", "!a"), ("$a3", "!a")] {
        q.queue_pdu(now, e, r, pdu(r, e));
    }
    assert_eq!(dropped_pdus(&events(&mut q)), [("$a1".to_owned(), false)]);
    q.queue_pdu(now, "$c1", "!c", pdu("!c", "$c1"));
    assert_eq!(dropped_pdus(&events(&mut q)), [("$a2".to_owned(), false)]);
    // Now $b1, $a3, $c1: each the newest of its room. A fourth room overfills the bound.
    q.queue_pdu(now, "$d1", "!d", pdu("!d", "$d1"));
    assert!(events(&mut q).is_empty());
    assert_eq!(q.pending_pdus(), 4);
    let t = q.poll_transmit(now).unwrap();
    assert_eq!(sent_pdus(&t), ["$b1", "$a3", "$c1", "$d1"]);
}

/// Ephemeral overflow drops the oldest entry by its latest update; coalescing never overflows.
#[test]
fn ephemeral_overflow_is_oldest_first_and_coalescing_is_free() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig {
        max_pending_edus: 2,
        ..OutboundConfig::default()
    });
    q.queue_edu(now, typing("!r", &user(1), true, 1));
    q.queue_edu(now, typing("!r", &user(2), true, 2));
    q.queue_edu(now, typing("!r", &user(1), false, 3)); // coalesces, now the newest
    assert!(events(&mut q).is_empty());
    assert_eq!(q.pending_edus(), 2);
    q.queue_edu(now, typing("!r", &user(3), true, 4));
    let evs = events(&mut q);
    assert_eq!(evs.len(), 1);
    let Event::EduDropped { edu, reason } = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(*reason, DropReason::Overflow);
    assert_eq!(states(edu), [(format!("typing !r {}", user(2)), 2)]);
    let t = q.poll_transmit(now).unwrap();
    let sent: Vec<_> = contents(&t).1.iter().flat_map(states).collect();
    assert_eq!(
        sent,
        [
            (format!("typing !r {}", user(1)), 3),
            (format!("typing !r {}", user(3)), 4)
        ]
    );
}

/// A full reliable queue hands the new EDU back instead of dropping anything.
#[test]
fn reliable_overflow_hands_the_edu_back() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig {
        max_pending_reliable_edus: 2,
        ..OutboundConfig::default()
    });
    q.queue_edu(now, to_device(1));
    q.queue_edu(now, device_list(2));
    assert_eq!(q.reliable_capacity(), 0);
    q.queue_edu(now, to_device(3));
    assert_eq!(
        events(&mut q),
        [Event::ReliableEduReturned {
            edu: to_device(3),
            reason: DropReason::Overflow
        }]
    );
    assert_eq!(q.pending_reliable_edus(), 2);
}

/// Coalescing: the latest typing, presence and receipt state per key is what is sent, and
/// receipts for different threads of one user are separate states in separate EDUs.
#[test]
fn coalescing_keeps_the_latest_state_per_key() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig::default());
    let (u1, u2) = (user(1), user(2));
    q.queue_edu(now, typing("!r", &u1, true, 1));
    q.queue_edu(now, typing("!r", &u1, false, 2));
    q.queue_edu(now, presence(&[(u1.clone(), 3), (u2.clone(), 4)]));
    q.queue_edu(now, presence(&[(u1.clone(), 5)]));
    q.queue_edu(
        now,
        receipt(&[
            ("!r".into(), u1.clone(), None, 6),
            ("!r".into(), u1.clone(), Some("$t".into()), 7),
        ]),
    );
    q.queue_edu(now, receipt(&[("!r".into(), u1.clone(), None, 8)]));
    assert_eq!(q.pending_edus(), 5);
    let t = q.poll_transmit(now).unwrap();
    let (_, edus) = contents(&t);
    let kinds: Vec<_> = edus.iter().map(Edu::edu_type).collect();
    assert_eq!(kinds, ["m.presence", "m.receipt", "m.receipt", "m.typing"]);
    let mut sent: Vec<_> = edus.iter().flat_map(states).collect();
    sent.sort();
    let mut want = vec![
        (format!("presence {u1}"), 5),
        (format!("presence {u2}"), 4),
        (format!("receipt !r m.read {u1} None"), 8),
        (format!("receipt !r m.read {u1} Some(\"$t\")"), 7),
        (format!("typing !r {u1}"), 2),
    ];
    want.sort();
    assert_eq!(sent, want);
}

/// A newer state queued while an older one is in flight goes out after it, never instead of it
/// and never before it.
#[test]
fn states_in_flight_are_not_touched() {
    let mut now = Timestamp(1_000);
    let mut q = queue(OutboundConfig::default());
    q.queue_edu(now, typing("!r", &user(1), true, 1));
    let first = q.poll_transmit(now).unwrap();
    q.queue_edu(now, typing("!r", &user(1), false, 2));
    q.handle_response(now, Outcome::Failure(Failure::Network))
        .unwrap();
    now = q.poll_timeout().unwrap();
    let retry = q.poll_transmit(now).unwrap();
    assert_eq!(retry.body, first.body);
    q.handle_response(now, Outcome::Success(TransactionResponse::new()))
        .unwrap();
    let next = q.poll_transmit(now).unwrap();
    assert_ne!(next.txn_id, first.txn_id);
    assert_eq!(
        contents(&next)
            .1
            .iter()
            .flat_map(states)
            .collect::<Vec<_>>(),
        [(format!("typing !r {}", user(1)), 2)]
    );
}

/// Batching priorities and limits: 50 PDUs, one presence EDU of ≤ 50 users, reliable EDUs leave
/// 10 slots to typing on their first pass, the rest fill up to 100.
#[test]
fn batching_follows_synapse_priorities() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig {
        max_pending_pdus: 500,
        max_pending_edus: 500,
        max_pending_reliable_edus: 500,
        ..OutboundConfig::default()
    });
    for i in 0..120 {
        q.queue_pdu(now, format!("$e{i}"), "!r", pdu("!r", &format!("$e{i}")));
    }
    for i in 0..60 {
        q.queue_edu(now, presence(&[(format!("@p{i}:{ORIGIN}"), i)]));
    }
    for i in 0..150 {
        q.queue_edu(now, to_device(i));
    }
    for i in 0..20 {
        q.queue_edu(now, typing("!r", &format!("@t{i}:{ORIGIN}"), true, i));
    }
    let t = q.poll_transmit(now).unwrap();
    let (pdus, edus) = contents(&t);
    assert_eq!(pdus.len(), 50);
    assert_eq!(pdus[0].event_id, "$e0");
    assert_eq!(edus.len(), 100);
    let Edu::Presence(p) = &edus[0] else {
        panic!("presence first")
    };
    assert_eq!(p.updates().len(), 50);
    let to_dev = edus.iter().filter(|e| e.is_reliable()).count();
    let typings = edus.iter().filter(|e| matches!(e, Edu::Typing(_))).count();
    assert_eq!((to_dev, typings), (89, 10));
    assert_eq!((t.pdu_count, t.edu_count), (50, 100));
}

/// A refusal (a proxy's 404, a whitelist's 403) is a failure like any other: nothing more goes
/// at once, the transaction keeps its PDUs and is retried with the same bytes no sooner than
/// the floor, and the backoff grows from the floor.
#[test]
fn refusals_back_off_from_the_floor_and_keep_the_transaction() {
    let now = Timestamp(1_000);
    let cfg = OutboundConfig::default();
    let floor = cfg.refusal_backoff_floor;
    assert_eq!(floor, Millis::from_secs(600), "Synapse's first interval");
    let mut q = queue(cfg);
    for i in 0..120 {
        let e = format!("$e{i}");
        q.queue_pdu(now, &e, "!r", pdu("!r", &e));
    }
    let t = q.poll_transmit(now).unwrap();
    q.handle_response(now, Outcome::Failure(Failure::ClientError { status: 404 }))
        .unwrap();
    assert!(
        q.poll_transmit(now).is_none(),
        "the backlog is not sent at once"
    );
    let retry_at = q.poll_timeout().unwrap();
    assert!(retry_at >= now + floor, "not before the floor");
    let evs = events(&mut q);
    assert_eq!(evs[0], Event::DestinationDown { retry_at });
    assert!(dropped_pdus(&evs).is_empty(), "nothing dropped");
    assert!(q.poll_transmit(Timestamp(retry_at.0 - 1)).is_none());
    let r = q.poll_transmit(retry_at).unwrap();
    assert_eq!(
        (&r.txn_id, &r.body),
        (&t.txn_id, &t.body),
        "the same transaction"
    );

    q.handle_response(
        retry_at,
        Outcome::Failure(Failure::ClientError { status: 403 }),
    )
    .unwrap();
    let second = q.poll_timeout().unwrap() - retry_at;
    assert!(second.0 >= 2 * floor.0, "grows from the floor: {second:?}");
    assert!(dropped_pdus(&events(&mut q)).is_empty(), "nothing dropped");
    assert_eq!(q.pending_pdus(), 70);

    let at = q.poll_timeout().unwrap();
    assert_eq!(q.poll_transmit(at).unwrap().txn_id, t.txn_id);
    q.handle_response(at, Outcome::Success(TransactionResponse::new()))
        .unwrap();
    let evs = events(&mut q);
    assert!(matches!(&evs[0], Event::Delivered { pdus, .. } if pdus.len() == 50));
    assert_eq!(evs[1], Event::DestinationUp);
    assert_eq!(q.failures(), 0);
}

/// A transaction refused `max_refusals` times in a row is abandoned: events for everything in
/// it, catch-up flagged only for rooms with nothing newer queued, reliable EDUs handed back.
/// Another kind of failure in between starts the count again. The backoff is kept: the next
/// transaction waits for the retry time.
#[test]
fn repeated_refusals_abandon_the_transaction() {
    let mut now = Timestamp(1_000);
    let cfg = OutboundConfig::default();
    assert_eq!(cfg.max_refusals, 3);
    let mut q = queue(cfg);
    q.queue_pdu(now, "$a1", "!a", pdu("!a", "$a1"));
    q.queue_pdu(now, "$b1", "!b", pdu("!b", "$b1"));
    q.queue_edu(now, to_device(1));
    q.queue_edu(now, typing("!a", &user(1), true, 1));
    let t1 = q.poll_transmit(now).unwrap();
    q.queue_pdu(now, "$a2", "!a", pdu("!a", "$a2"));
    for status in [403, 502, 403, 403] {
        q.handle_response(now, Outcome::Failure(Failure::from_status(status, None)))
            .unwrap();
        assert!(
            dropped_pdus(&events(&mut q)).is_empty(),
            "kept after {status}"
        );
        now = q.poll_timeout().unwrap();
        assert_eq!(q.poll_transmit(now).unwrap().txn_id, t1.txn_id);
    }
    q.handle_response(now, Outcome::Failure(Failure::from_status(403, None)))
        .unwrap();
    let evs = events(&mut q);
    assert!(matches!(evs[0], Event::BackoffChanged { retry: Some(_) }));
    assert_eq!(
        evs[1],
        Event::TransactionRejected {
            txn_id: t1.txn_id.clone(),
            status: 403
        }
    );
    assert_eq!(
        dropped_pdus(&evs),
        [("$a1".to_owned(), false), ("$b1".to_owned(), true)]
    );
    assert!(evs.contains(&Event::ReliableEduReturned {
        edu: to_device(1),
        reason: DropReason::Rejected { status: 403 }
    }));
    assert!(evs.iter().any(|e| matches!(
        e,
        Event::EduDropped {
            edu: Edu::Typing(_),
            ..
        }
    )));
    assert!(!evs.contains(&Event::DestinationUp));
    assert_eq!(q.failures(), 5);
    assert!(q.poll_transmit(now).is_none(), "the backoff holds");
    let at = q.poll_timeout().unwrap();
    assert!(at >= now + Millis(4 * 600_000));
    let t2 = q.poll_transmit(at).unwrap();
    assert_ne!(t2.txn_id, t1.txn_id);
    assert_eq!(sent_pdus(&t2), ["$a2"]);
}

/// Catch-up mode: once a retry delay reaches `catch_up_after` (1 h), only the newest queued PDU
/// of each room is kept (the others dropped, `catch_up` false: the newest stands for them), also
/// for PDUs queued while in the mode; the transaction in flight is not touched; a success ends
/// the mode.
#[test]
fn catch_up_mode_keeps_the_newest_pdu_of_each_room() {
    let mut now = Timestamp(1_000);
    let cfg = OutboundConfig {
        max_pending_pdus: 10_000,
        ..OutboundConfig::default()
    };
    assert_eq!(cfg.catch_up_after, Millis::from_secs(3600));
    let mut q = queue(cfg);
    q.queue_pdu(now, "$first", "!a", pdu("!a", "$first"));
    let t = q.poll_transmit(now).unwrap();
    for (i, r) in [(0, "!a"), (1, "!b"), (2, "!a")] {
        let e = format!("$early{i}");
        q.queue_pdu(now, &e, r, pdu(r, &e));
    }
    // Fail until the retry delay reaches an hour; nothing is dropped before.
    loop {
        q.handle_response(now, Outcome::Failure(Failure::Network))
            .unwrap();
        let retry_at = q.poll_timeout().unwrap();
        if retry_at - now >= Millis::from_secs(3600) {
            break;
        }
        assert!(!q.is_catching_up());
        assert!(dropped_pdus(&events(&mut q)).is_empty());
        now = retry_at;
        q.poll_transmit(now).unwrap();
    }
    assert!(q.is_catching_up());
    let evs = events(&mut q);
    assert_eq!(dropped_pdus(&evs), [("$early0".to_owned(), false)]);
    assert!(evs.iter().all(|e| !matches!(
        e,
        Event::PduDropped { reason, .. } if *reason != DropReason::CatchUp
    )));

    for i in 0..1_000 {
        let (e, r) = (format!("$e{i}"), ["!a", "!b"][i % 2]);
        q.queue_pdu(now, &e, r, pdu(r, &e));
    }
    assert_eq!(q.pending_pdus(), 2, "one PDU for each of the two rooms");
    let dropped = dropped_pdus(&events(&mut q));
    assert_eq!(
        dropped.len(),
        2 + 998,
        "$early1, $early2 and all but the last two"
    );
    assert!(dropped.iter().all(|(_, catch_up)| !catch_up));

    // The transaction in flight is the one retried; its success ends the mode.
    now = q.poll_timeout().unwrap();
    assert_eq!(q.poll_transmit(now).unwrap().body, t.body);
    q.handle_response(now, Outcome::Success(TransactionResponse::new()))
        .unwrap();
    assert!(!q.is_catching_up());
    let next = q.poll_transmit(now).unwrap();
    assert_eq!(sent_pdus(&next), ["$e998", "$e999"]);
    for i in 0..3 {
        let e = format!("$after{i}");
        q.queue_pdu(now, &e, "!a", pdu("!a", &e));
    }
    assert_eq!(q.pending_pdus(), 3, "every PDU kept again");
}

/// One PDU queued for several destinations is one shared copy (`Arc`), released by each queue
/// once it is sent; the transaction carries it whole.
#[test]
fn queued_pdus_are_shared_between_queues() {
    let now = Timestamp(1_000);
    let shared = std::sync::Arc::new(pdu("!r", "$e"));
    let mut queues: Vec<_> = (0..3).map(|_| queue(OutboundConfig::default())).collect();
    for q in &mut queues {
        q.queue_pdu(now, "$e", "!r", std::sync::Arc::clone(&shared));
    }
    assert_eq!(std::sync::Arc::strong_count(&shared), 4, "no copies");
    let t = queues[0].poll_transmit(now).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&shared), 3);
    assert_eq!(sent_pdus(&t), ["$e"]);
    assert_eq!(
        t.body_object().unwrap().get("pdus"),
        Some(&Value::Array(vec![Value::Object((*shared).clone())]))
    );
}

/// The last backoff change reported, if any.
fn saved_backoff(evs: &[Event]) -> Option<Option<RetryState>> {
    evs.iter().rev().find_map(|e| match e {
        Event::BackoffChanged { retry } => Some(*retry),
        _ => None,
    })
}

/// The backoff survives a restart: every failure reports it, and a new queue given it sends
/// nothing before the saved retry time, grows it on from where it was, resumes catch-up mode
/// when it had reached it, and reports its reset on success.
#[test]
fn a_restored_backoff_holds_the_queue_and_grows_on() {
    let mut now = Timestamp(1_000);
    let cfg = OutboundConfig::default();
    let mut q = queue(cfg);
    q.queue_pdu(now, "$e", "!r", pdu("!r", "$e"));
    q.poll_transmit(now).unwrap();
    for k in 1..=5 {
        q.handle_response(now, Outcome::Failure(Failure::Network))
            .unwrap();
        let saved = saved_backoff(&events(&mut q)).unwrap().unwrap();
        assert_eq!(saved.failures, k, "reported after every failure");
        now = q.poll_timeout().unwrap();
        q.poll_transmit(now).unwrap();
    }
    q.handle_response(now, Outcome::Failure(Failure::Network))
        .unwrap();
    let saved = saved_backoff(&events(&mut q)).unwrap().unwrap();
    assert!(saved_backoff(&[]).is_none() && saved.failures == 6);
    assert_eq!(Some(saved.retry_at), q.poll_timeout());

    // A restart just after: a new queue, the same PDU, the saved backoff.
    let start = now + Millis(10);
    let mut q = DestinationQueue::new(ORIGIN, "b.example", cfg, start, 9);
    q.restore_backoff(start, saved);
    q.queue_pdu(start, "$e", "!r", pdu("!r", "$e"));
    assert!(
        q.poll_transmit(start).is_none(),
        "nothing before the retry time"
    );
    assert_eq!(q.poll_timeout(), Some(saved.retry_at));
    assert!(q.poll_transmit(Timestamp(saved.retry_at.0 - 1)).is_none());
    let at = saved.retry_at;
    q.poll_transmit(at).unwrap();
    q.handle_response(at, Outcome::Failure(Failure::Network))
        .unwrap();
    let next = q.poll_timeout().unwrap() - at;
    assert!(
        next >= saved.delay && next.0 >= 2 * saved.interval.0,
        "grows on"
    );
    assert_eq!(q.failures(), 7);
    assert!(!q.is_catching_up());
    let at = q.poll_timeout().unwrap();
    q.poll_transmit(at).unwrap();
    q.handle_response(at, Outcome::Success(TransactionResponse::new()))
        .unwrap();
    let evs = events(&mut q);
    assert_eq!(saved_backoff(&evs), Some(None), "forget it");
    assert!(evs.contains(&Event::DestinationUp));

    // A saved delay past `catch_up_after` resumes catch-up mode; a retry time absurdly far
    // away (a clock gone back) is held to the cap.
    let mut q = DestinationQueue::new(ORIGIN, "b.example", cfg, start, 9);
    q.restore_backoff(
        start,
        RetryState {
            retry_at: Timestamp(u64::MAX),
            failures: 12,
            interval: Millis::from_secs(7200),
            delay: Millis::from_secs(7200),
        },
    );
    assert!(q.is_catching_up());
    assert_eq!(q.poll_timeout(), Some(start + cfg.backoff_cap));
    for i in 0..3 {
        let e = format!("$c{i}");
        q.queue_pdu(start, &e, "!r", pdu("!r", &e));
    }
    assert_eq!(q.pending_pdus(), 1);

    // A saved interval of 0 (a damaged row) restarts from the base, not a tight loop.
    let mut q = DestinationQueue::new(ORIGIN, "b.example", cfg, start, 9);
    q.restore_backoff(
        start,
        RetryState {
            retry_at: start,
            failures: 5,
            interval: Millis(0),
            delay: Millis(0),
        },
    );
    q.queue_pdu(start, "$z", "!r", pdu("!r", "$z"));
    let mut at = start;
    for _ in 0..3 {
        q.poll_transmit(at).unwrap();
        q.handle_response(at, Outcome::Failure(Failure::Network))
            .unwrap();
        let next = q.poll_timeout().unwrap();
        assert!(next - at >= cfg.backoff_base, "waits at least the base");
        at = next;
    }
}

/// 429 honours `retry_after_ms` (capped); 401 and 408 are retried like 5xx.
#[test]
fn rate_limits_and_retryable_client_errors() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig::default());
    q.queue_pdu(now, "$e", "!r", pdu("!r", "$e"));
    let t = q.poll_transmit(now).unwrap();
    q.handle_response(
        now,
        Outcome::Failure(Failure::from_status(429, Some(Millis(600_000)))),
    )
    .unwrap();
    assert_eq!(q.poll_timeout(), Some(now + Millis(600_000)));
    assert!(q.poll_transmit(now + Millis(599_999)).is_none());
    let mut at = now + Millis(600_000);
    for status in [401, 408, 502] {
        let r = q.poll_transmit(at).unwrap();
        assert_eq!((r.txn_id.as_str(), &r.body), (t.txn_id.as_str(), &t.body));
        q.handle_response(at, Outcome::Failure(Failure::from_status(status, None)))
            .unwrap();
        at = q.poll_timeout().unwrap();
    }
    assert_eq!(q.failures(), 4);
}

/// A response with per-PDU errors still acknowledges every PDU; the errors are reported.
#[test]
fn per_pdu_errors_acknowledge_the_pdu() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig::default());
    q.queue_pdu(now, "$e", "!r", pdu("!r", "$e"));
    q.poll_transmit(now).unwrap();
    let resp = TransactionResponse::new().with_error("$e", "auth");
    q.handle_response(now, Outcome::Success(resp)).unwrap();
    let evs = events(&mut q);
    assert!(matches!(&evs[0], Event::Delivered { pdus, .. } if pdus.len() == 1));
    assert_eq!(
        evs[1],
        Event::RemotePduError {
            event_id: "$e".into(),
            error: "auth".into()
        }
    );
    assert!(q.is_idle());
}

/// Misuse is reported, not acted on: an answer with nothing awaiting one, or arriving while the
/// transaction waits for its retry time.
#[test]
fn answers_without_a_request_are_refused() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig::default());
    let err = q
        .handle_response(now, Outcome::Success(TransactionResponse::new()))
        .unwrap_err();
    assert_eq!(err.code(), "outbound_nothing_in_flight");
    q.queue_pdu(now, "$e", "!r", pdu("!r", "$e"));
    q.poll_transmit(now).unwrap();
    q.handle_response(now, Outcome::Failure(Failure::Network))
        .unwrap();
    assert!(q
        .handle_response(now, Outcome::Success(TransactionResponse::new()))
        .is_err());
    assert_eq!(q.in_flight().map(str::len), Some("1000-0".len()));
}

/// `mark_reachable` retries a backed-off transaction at once and resets the backoff.
#[test]
fn mark_reachable_skips_the_wait() {
    let now = Timestamp(1_000);
    let mut q = queue(OutboundConfig::default());
    q.queue_pdu(now, "$e", "!r", pdu("!r", "$e"));
    let t = q.poll_transmit(now).unwrap();
    for _ in 0..5 {
        q.handle_response(now, Outcome::Failure(Failure::Network))
            .unwrap();
        q.mark_reachable(now);
        let r = q.poll_transmit(now).unwrap();
        assert_eq!(r.body, t.body);
    }
    q.handle_response(now, Outcome::Failure(Failure::Network))
        .unwrap();
    assert!(
        q.poll_timeout().unwrap() <= now + Millis(7_500),
        "backoff was reset"
    );
}

/// Transaction IDs: start-counter, unique across a restart whose clock moved on, even when the
/// first process sent more transactions than milliseconds passed.
#[test]
fn txn_ids_are_unique_across_restarts() {
    let mut seen = BTreeSet::new();
    for start in [1_000u64, 1_001, 1_002] {
        let now = Timestamp(start);
        let mut q = queue(OutboundConfig::default());
        q = DestinationQueue::new(ORIGIN, "b.example", *q.config(), now, start);
        for i in 0..20 {
            q.queue_pdu(now, format!("$e{i}"), "!r", Object::new());
            let t = q.poll_transmit(now).unwrap();
            assert!(seen.insert(t.txn_id.clone()), "{} repeated", t.txn_id);
            q.handle_response(now, Outcome::Success(TransactionResponse::new()))
                .unwrap();
        }
    }
    assert!(seen.contains("1000-19") && seen.contains("1001-0"));
}

// ------------------------------------------------------------------------------------------------
// Throughput (run with `cargo test --release -p mxfed-core --test outbound_sim -- --ignored
// --nocapture`; nothing is asserted about the numbers)
// ------------------------------------------------------------------------------------------------

#[test]
#[ignore = "timing only: run in release with --ignored --nocapture"]
#[allow(clippy::disallowed_methods)] // the clock is read in the test, never in the core
fn measure_queue_throughput() {
    let mut now = Timestamp(1_000);
    let mut q = DestinationQueue::new(
        ORIGIN,
        "b.example",
        OutboundConfig {
            max_pending_pdus: 100_000,
            max_pending_edus: 100_000,
            max_pending_reliable_edus: 100_000,
            ..OutboundConfig::default()
        },
        now,
        1,
    );
    let template = pdu("!r0:a.example", "$x");
    let rounds = 2_000u64;
    let (mut queued, mut txns) = (0u64, 0u64);
    let start = std::time::Instant::now();
    for round in 0..rounds {
        // A burst: 40 PDUs over 4 rooms, typing, presence, receipts and to-device.
        for i in 0..40 {
            let r = room(i % 4);
            q.queue_pdu(now, format!("$e{round}-{i}"), r, template.clone());
        }
        for i in 0..20 {
            q.queue_edu(now, typing(&room(0), &user(i), i % 2 == 0, round));
            q.queue_edu(now, presence(&[(user(i), round)]));
        }
        q.queue_edu(now, receipt(&[(room(0), user(1), None, round)]));
        for i in 0..9 {
            q.queue_edu(now, to_device(round * 10 + i));
        }
        queued += 40 + 40 + 1 + 9;
        // Drain: every other transaction fails once first.
        while let Some(_t) = q.poll_transmit(now) {
            txns += 1;
            if txns % 2 == 0 {
                q.handle_response(now, Outcome::Failure(Failure::Network))
                    .unwrap();
                now = q.poll_timeout().unwrap();
                q.handle_timeout(now);
                q.poll_transmit(now).unwrap();
            }
            q.handle_response(now, Outcome::Success(TransactionResponse::new()))
                .unwrap();
            while q.poll_event().is_some() {}
        }
        now = now + Millis(100);
    }
    let elapsed = start.elapsed();
    assert!(q.is_idle());
    println!(
        "{queued} items queued and {txns} transactions built/transmitted/acknowledged in {elapsed:?}: \
         {:.0} items/s, {:.0} transactions/s",
        queued as f64 / elapsed.as_secs_f64(),
        txns as f64 / elapsed.as_secs_f64()
    );
}
