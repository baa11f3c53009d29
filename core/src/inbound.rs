//! The receiving side of transactions, pure: de-duplication, grouping by room and causal
//! ordering, handed back to the host as a plan it executes (DIGEST §12, §21 pitfall 11).
//!
//! The host's job, per request:
//! 1. authenticate it (X-Matrix) and [`parse_transaction`](crate::transaction::parse_transaction)
//!    the body (a [`TransactionError`](crate::transaction::TransactionError) → 400);
//! 2. [`plan_inbound`] it with its [`TxnDedup`] and a room-version lookup;
//! 3. act on [`InboundPlan::admission`]: [`Admission::Duplicate`] → send the stored response
//!    again; [`Admission::Busy`] or [`Admission::InProgress`] → 429, as Synapse answers a second
//!    transaction while one from the same origin is being handled; [`Admission::New`] → go on;
//! 4. run the per-PDU checks ([`crate::pdu::check_pdu_object`], authorization) room by room in
//!    the planned order and the EDU handlers, filling a
//!    [`TransactionResponse`](crate::transaction::TransactionResponse);
//! 5. on success, [`TxnDedup::complete`] with the response and answer 200 with it; if a handler
//!    of a **reliable** EDU ([`Edu::is_reliable`]) failed, [`TxnDedup::abort`] and answer 500 so
//!    the sender retries the same transaction (Synapse does the same; a 500 is not cached).
//!
//! What the plan leaves out, each with a [`RejectedItem`] for the log and no response entry, as
//! Synapse does: PDUs without a room ID, PDUs of rooms the host does not know (the lookup
//! returns `None`), PDUs with floats or out-of-range integers in a room version that forbids
//! them (v6+; what [`reduce_unsigned`](crate::pdu::reduce_unsigned) drops of `unsigned` does not
//! count), PDUs whose event ID cannot be found, the second copy of an event, and EDUs that
//! speak for users of another server than the authenticated origin.
//!
//! ```
//! use mxfed_core::inbound::{plan_inbound, Admission, TxnDedup};
//! use mxfed_core::transaction::{parse_transaction, TransactionResponse};
//! use mxfed_core::RoomVersion;
//!
//! let body = br#"{"origin":"a.example","origin_server_ts":1,"pdus":[
//!   {"room_id":"!r:a.example","event_id":"$2:a.example","depth":2,"prev_events":[["$1:a.example",{}]]},
//!   {"room_id":"!r:a.example","event_id":"$1:a.example","depth":1,"prev_events":[]},
//!   {"room_id":"!elsewhere:b.example","event_id":"$3:b.example"}]}"#;
//! let mut dedup = TxnDedup::new(TxnDedup::DEFAULT_CAPACITY);
//! let lookup = |room: &str| (room == "!r:a.example").then(|| RoomVersion::get("1").ok()).flatten();
//! let plan = plan_inbound("a.example", "t1", parse_transaction(body).unwrap(), &mut dedup, lookup);
//! assert_eq!(plan.admission, Admission::New);
//! let ids: Vec<_> = plan.rooms[0].pdus.iter().map(|p| p.event_id.as_str()).collect();
//! assert_eq!(ids, ["$1:a.example", "$2:a.example"]);
//! assert_eq!(plan.rejected[0].code(), "txn_pdu_unknown_room");
//!
//! let response = TransactionResponse::new().with_ok("$1:a.example").with_ok("$2:a.example");
//! dedup.complete("a.example", "t1", response.clone());
//! let again = plan_inbound("a.example", "t1", parse_transaction(body).unwrap(), &mut dedup, lookup);
//! assert_eq!(again.admission, Admission::Duplicate(response));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::canonical::{Object, Value};
use crate::edu::Edu;
use crate::event::{self, EventError};
use crate::room_version::RoomVersion;
use crate::transaction::{Item, ItemError, RejectedItem, Transaction, TransactionResponse};

// ------------------------------------------------------------------------------------------------
// De-duplication
// ------------------------------------------------------------------------------------------------

/// What to do with an incoming transaction, given the ones already seen from its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Not seen before: process it, then call [`TxnDedup::complete`] or [`TxnDedup::abort`].
    New,
    /// Already answered: send this response again (200) without processing anything.
    Duplicate(TransactionResponse),
    /// The same transaction is being processed right now (the sender retried before we
    /// answered). Synapse makes the retry wait for the first one's answer; a host that cannot
    /// wait answers 429, and the sender retries later.
    InProgress,
    /// Another transaction from this origin is being processed: answer 429 (Synapse: "Too many
    /// concurrent transactions"). Not recorded, so the sender's retry is processed normally.
    Busy {
        /// The transaction in progress.
        in_flight: String,
    },
}

impl Admission {
    /// The status to answer with without processing, or `None` for [`Admission::New`].
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Admission::New => None,
            Admission::Duplicate(_) => Some(200),
            Admission::InProgress | Admission::Busy { .. } => Some(429),
        }
    }
}

/// The transactions already seen, per origin, that the host keeps between requests.
///
/// Bounded by count, not time (the core has no clock): it remembers the last `capacity`
/// completed (origin, txn ID) pairs with their responses, forgetting the oldest first, plus at
/// most one transaction in progress per origin. A sender retries a transaction only until it
/// gets an answer, so a window of the last few hundred is plenty; a retry of a forgotten one is
/// processed again, which is safe because PDUs and to-device messages are de-duplicated by event
/// ID and message ID downstream.
#[derive(Debug, Clone, Default)]
pub struct TxnDedup {
    capacity: usize,
    /// origin → txn ID → the response sent.
    completed: BTreeMap<String, BTreeMap<String, TransactionResponse>>,
    /// Completed pairs, oldest first: the eviction order.
    order: VecDeque<(String, String)>,
    /// origin → the txn ID being processed.
    in_progress: BTreeMap<String, String>,
}

impl TxnDedup {
    /// A reasonable default window.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A window remembering the last `capacity` completed transactions (at least one).
    pub fn new(capacity: usize) -> TxnDedup {
        TxnDedup {
            capacity: capacity.max(1),
            ..TxnDedup::default()
        }
    }

    /// Checks an incoming transaction and, when it is new, marks it in progress.
    pub fn admit(&mut self, origin: &str, txn_id: &str) -> Admission {
        if let Some(resp) = self.completed.get(origin).and_then(|m| m.get(txn_id)) {
            return Admission::Duplicate(resp.clone());
        }
        match self.in_progress.get(origin) {
            Some(t) if t == txn_id => Admission::InProgress,
            Some(t) => Admission::Busy {
                in_flight: t.clone(),
            },
            None => {
                self.in_progress
                    .insert(origin.to_owned(), txn_id.to_owned());
                Admission::New
            }
        }
    }

    /// Records the response sent for a transaction, so a retry gets it again. Forgets the
    /// oldest completed transaction when over capacity.
    pub fn complete(&mut self, origin: &str, txn_id: &str, response: TransactionResponse) {
        if self.in_progress.get(origin).is_some_and(|t| t == txn_id) {
            self.in_progress.remove(origin);
        }
        let per_origin = self.completed.entry(origin.to_owned()).or_default();
        if per_origin.insert(txn_id.to_owned(), response).is_none() {
            self.order.push_back((origin.to_owned(), txn_id.to_owned()));
        }
        while self.order.len() > self.capacity {
            let Some((o, t)) = self.order.pop_front() else {
                break;
            };
            if let Some(m) = self.completed.get_mut(&o) {
                m.remove(&t);
                if m.is_empty() {
                    self.completed.remove(&o);
                }
            }
        }
    }

    /// Forgets a transaction in progress without recording a response (the host answered 5xx),
    /// so the sender's retry is processed again.
    pub fn abort(&mut self, origin: &str, txn_id: &str) {
        if self.in_progress.get(origin).is_some_and(|t| t == txn_id) {
            self.in_progress.remove(origin);
        }
    }

    /// Whether this transaction of `origin` is being processed now.
    pub fn in_progress(&self, origin: &str, txn_id: &str) -> bool {
        self.in_progress.get(origin).is_some_and(|t| t == txn_id)
    }

    /// Whether the transaction is remembered, completed or in progress.
    pub fn contains(&self, origin: &str, txn_id: &str) -> bool {
        self.completed
            .get(origin)
            .is_some_and(|m| m.contains_key(txn_id))
            || self.in_progress.get(origin).is_some_and(|t| t == txn_id)
    }

    /// Completed transactions remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered (completed or in progress).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty() && self.in_progress.is_empty()
    }

    /// The window size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

// ------------------------------------------------------------------------------------------------
// Ordering
// ------------------------------------------------------------------------------------------------

/// The event IDs in `prev_events`, in either shape: `["$id", …]` (v3+) or
/// `[["$id", {hashes}], …]` (v1–2). Anything else is skipped (format checks come later).
fn prev_event_ids(pdu: &Object) -> impl Iterator<Item = &str> {
    pdu.get("prev_events")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| match p {
            Value::String(s) => Some(s.as_str()),
            Value::Array(a) => a.first().and_then(Value::as_str),
            _ => None,
        })
}

/// `depth`, or 0 when absent or not a canonical integer (format checks come later).
fn depth(pdu: &Object) -> i64 {
    pdu.get("depth").and_then(Value::as_int).unwrap_or(0)
}

/// A causal order for PDUs of one room: every PDU comes after those of its `prev_events` that
/// are in the same batch. Among PDUs whose predecessors are all placed, the lowest `depth` goes
/// first, then the lowest event ID (byte order), then the earlier input position. Returns
/// indices into `pdus`, each once.
///
/// `prev_events` outside the batch are ignored (the host fetches missing ones). Cycles are
/// impossible with hash-based event IDs but can be forged with v1–2 IDs: the PDUs caught in one
/// are placed last, by (depth, event ID).
///
/// ```
/// use mxfed_core::canonical::{parse_object, ParseOptions};
/// use mxfed_core::inbound::causal_order;
/// let b = parse_object(br#"{"depth":9,"prev_events":["$a"]}"#, &ParseOptions::STRICT).unwrap();
/// let a = parse_object(br#"{"depth":10,"prev_events":[]}"#, &ParseOptions::STRICT).unwrap();
/// // `$b` is deeper in the DAG though its depth claims otherwise: prev_events win.
/// assert_eq!(causal_order(&[("$b", &b), ("$a", &a)]), [1, 0]);
/// ```
pub fn causal_order(pdus: &[(&str, &Object)]) -> Vec<usize> {
    let n = pdus.len();
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (id, _)) in pdus.iter().enumerate() {
        by_id.entry(id).or_insert(i);
    }
    let mut waiting_on = vec![0usize; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, (_, pdu)) in pdus.iter().enumerate() {
        let mut parents = BTreeSet::new();
        for p in prev_event_ids(pdu) {
            if let Some(&j) = by_id.get(p) {
                if j != i && parents.insert(j) {
                    waiting_on[i] += 1;
                    children[j].push(i);
                }
            }
        }
    }
    let key = |i: usize| (depth(pdus[i].1), pdus[i].0, i);
    let mut ready: BTreeSet<(i64, &str, usize)> =
        (0..n).filter(|&i| waiting_on[i] == 0).map(key).collect();
    let mut placed = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while let Some((_, _, i)) = ready.pop_first() {
        placed[i] = true;
        out.push(i);
        for &c in &children[i] {
            waiting_on[c] -= 1;
            if waiting_on[c] == 0 {
                ready.insert(key(c));
            }
        }
    }
    if out.len() < n {
        let mut rest: Vec<_> = (0..n).filter(|&i| !placed[i]).map(key).collect();
        rest.sort_unstable();
        out.extend(rest.into_iter().map(|(_, _, i)| i));
    }
    out
}

// ------------------------------------------------------------------------------------------------
// The plan
// ------------------------------------------------------------------------------------------------

/// A PDU ready for the host's checks, with the event ID it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlannedPdu {
    /// Where it was in the request.
    pub item: Item,
    /// Its event ID: the key of its entry in the response.
    pub event_id: String,
    /// The PDU as received.
    pub pdu: Object,
}

/// The PDUs of one room, in causal order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomPdus {
    /// The room.
    pub room_id: String,
    /// Its version, from the host's lookup.
    pub room_version: &'static RoomVersion,
    /// Its PDUs, each after the ones it references.
    pub pdus: Vec<PlannedPdu>,
}

/// What the host should do with a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundPlan {
    /// The authenticated origin the plan was made for.
    pub origin: String,
    /// The transaction ID.
    pub txn_id: String,
    /// Whether to process it at all. When not [`Admission::New`], the rest is empty.
    pub admission: Admission,
    /// PDUs grouped by room, rooms in order of first appearance, PDUs causally ordered.
    pub rooms: Vec<RoomPdus>,
    /// The EDUs to handle, in request order.
    pub edus: Vec<Edu>,
    /// Items left out (from parsing and from planning), in request order.
    pub rejected: Vec<RejectedItem>,
}

impl InboundPlan {
    /// Whether this is a transaction already answered.
    pub fn is_duplicate(&self) -> bool {
        matches!(self.admission, Admission::Duplicate(_))
    }

    /// Number of PDUs to process.
    pub fn pdu_count(&self) -> usize {
        self.rooms.iter().map(|r| r.pdus.len()).sum()
    }

    /// Whether any EDU is reliable, i.e. a failure handling it must turn into a 5xx.
    pub fn has_reliable_edus(&self) -> bool {
        self.edus.iter().any(Edu::is_reliable)
    }

    /// Every planned event ID, room by room in order.
    pub fn event_ids(&self) -> impl Iterator<Item = &str> {
        self.rooms
            .iter()
            .flat_map(|r| r.pdus.iter().map(|p| p.event_id.as_str()))
    }
}

/// Plans a parsed transaction, computing event IDs with [`event::event_id`].
///
/// `origin` is the authenticated (X-Matrix) origin, not the body's claim; `room_version` says
/// which version a room the host knows has, `None` for rooms it does not know.
pub fn plan_inbound<R>(
    origin: &str,
    txn_id: &str,
    tx: Transaction,
    dedup: &mut TxnDedup,
    room_version: R,
) -> InboundPlan
where
    R: Fn(&str) -> Option<&'static RoomVersion>,
{
    plan_inbound_with(origin, txn_id, tx, dedup, room_version, event::event_id)
}

/// As [`plan_inbound`], with the host's own event ID function (e.g. one that caches).
pub fn plan_inbound_with<R, E>(
    origin: &str,
    txn_id: &str,
    tx: Transaction,
    dedup: &mut TxnDedup,
    room_version: R,
    event_id: E,
) -> InboundPlan
where
    R: Fn(&str) -> Option<&'static RoomVersion>,
    E: Fn(&Object, &'static RoomVersion) -> Result<String, EventError>,
{
    let mut plan = InboundPlan {
        origin: origin.to_owned(),
        txn_id: txn_id.to_owned(),
        admission: dedup.admit(origin, txn_id),
        rooms: Vec::new(),
        edus: Vec::new(),
        rejected: Vec::new(),
    };
    if plan.admission != Admission::New {
        return plan;
    }
    let parts = tx.into_parts();
    plan.rejected = parts.rejected;

    // Group, keeping rooms in order of first appearance.
    let mut room_pos: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_ids: BTreeSet<String> = BTreeSet::new();
    for (index, mut pdu) in parts.pdus {
        let item = Item::Pdu(index);
        // What Synapse keeps of `unsigned`, before the number rule is applied to the PDU.
        crate::pdu::reduce_unsigned(&mut pdu);
        let mut reject = |error| plan.rejected.push(RejectedItem { item, error });
        // The parser keeps only PDUs with a non-empty string room_id.
        let room_id = pdu.get_str("room_id").unwrap_or_default().to_owned();
        let Some(version) = room_version(&room_id) else {
            reject(ItemError::UnknownRoom { room_id });
            continue;
        };
        if version.strict_canonical_json {
            if let Some((field, _)) = pdu.iter().find(|(_, v)| !v.is_strict()) {
                reject(ItemError::NonCanonicalNumber {
                    field: field.to_owned(),
                });
                continue;
            }
        }
        let id = match event_id(&pdu, version) {
            Ok(id) => id,
            Err(e) => {
                reject(ItemError::EventId(e));
                continue;
            }
        };
        if !seen_ids.insert(id.clone()) {
            reject(ItemError::DuplicatePdu { event_id: id });
            continue;
        }
        let pos = *room_pos.entry(room_id.clone()).or_insert_with(|| {
            plan.rooms.push(RoomPdus {
                room_id,
                room_version: version,
                pdus: Vec::new(),
            });
            plan.rooms.len() - 1
        });
        if let Some(room) = plan.rooms.get_mut(pos) {
            room.pdus.push(PlannedPdu {
                item,
                event_id: id,
                pdu,
            });
        }
    }

    for room in &mut plan.rooms {
        let order = {
            let refs: Vec<(&str, &Object)> = room
                .pdus
                .iter()
                .map(|p| (p.event_id.as_str(), &p.pdu))
                .collect();
            causal_order(&refs)
        };
        let mut slots: Vec<Option<PlannedPdu>> = room.pdus.drain(..).map(Some).collect();
        room.pdus = order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect();
    }

    for (index, edu) in parts.edus {
        match edu.check_origin(origin) {
            Ok(()) => plan.edus.push(edu),
            Err(e) => plan.rejected.push(RejectedItem {
                item: Item::Edu(index),
                error: ItemError::Edu(e),
            }),
        }
    }
    plan.rejected.sort_by_key(|r| r.item);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_window_is_bounded_and_fifo() {
        let mut d = TxnDedup::new(2);
        for t in ["1", "2", "3"] {
            assert_eq!(d.admit("o", t), Admission::New);
            d.complete("o", t, TransactionResponse::new());
        }
        assert_eq!(d.len(), 2);
        assert!(!d.contains("o", "1") && d.contains("o", "2") && d.contains("o", "3"));
        assert_eq!(
            d.admit("o", "1"),
            Admission::New,
            "forgotten: processed again"
        );
    }

    #[test]
    fn dedup_in_progress_and_abort() {
        let mut d = TxnDedup::new(8);
        assert_eq!(d.admit("o", "1"), Admission::New);
        assert!(d.in_progress("o", "1") && !d.in_progress("o", "2") && !d.in_progress("p", "1"));
        assert_eq!(d.admit("o", "1"), Admission::InProgress);
        assert_eq!(
            d.admit("o", "2"),
            Admission::Busy {
                in_flight: "1".into()
            }
        );
        assert_eq!(d.admit("p", "1"), Admission::New, "origins are independent");
        d.abort("o", "1");
        assert!(!d.contains("o", "1"));
        assert_eq!(d.admit("o", "1"), Admission::New, "a 5xx is not cached");
        assert_eq!(Admission::InProgress.http_status(), Some(429));
    }

    #[test]
    fn cycles_are_placed_last() {
        let a = crate::canonical::parse_object(
            br#"{"depth":1,"prev_events":["$b"]}"#,
            &crate::canonical::ParseOptions::STRICT,
        )
        .unwrap();
        let b = crate::canonical::parse_object(
            br#"{"depth":1,"prev_events":["$a"]}"#,
            &crate::canonical::ParseOptions::STRICT,
        )
        .unwrap();
        let c = Object::new();
        assert_eq!(
            causal_order(&[("$b", &b), ("$a", &a), ("$c", &c)]),
            [2, 1, 0]
        );
    }
}
