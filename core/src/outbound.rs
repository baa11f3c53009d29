//! The sending side of transactions: one queue per destination, in quinn-proto's sans-io shape
//! (DIGEST §12, §21 pitfall 11; STYLE.md § The shape).
//!
//! The host feeds PDUs and EDUs in ([`DestinationQueue::queue_pdu`],
//! [`DestinationQueue::queue_edu`]), takes requests out ([`DestinationQueue::poll_transmit`]),
//! reports how each went ([`DestinationQueue::handle_response`]), sleeps until
//! [`DestinationQueue::poll_timeout`] and then calls [`DestinationQueue::handle_timeout`], and
//! acts on [`DestinationQueue::poll_event`]. The queue reads no clock and draws no randomness:
//! every call that needs time takes `now`, and backoff jitter comes from the seed given at
//! construction, so a run is a pure function of its inputs.
//!
//! # Guarantees
//! - **One transaction in flight** per destination. Until it is acknowledged (a 2xx with a
//!   JSON object body, [`Outcome::from_http`]) or abandoned after repeated refusals (below), it
//!   is retried with the **same transaction ID and the same body bytes** (the receiver
//!   de-duplicates on them; the spec requires it).
//! - **Batching** follows Synapse's priorities: one presence EDU (≤ 50 users), up to 5 receipt
//!   EDUs, reliable EDUs (leaving 10 slots spare), typing and other EDUs, more reliable EDUs to
//!   fill up to [`MAX_EDUS`]; then the oldest [`MAX_PDUS`] PDUs, in queue order.
//! - **Coalescing**: a newer state replaces a queued older one for the same key, so the latest
//!   state is what is sent and is never dropped by coalescing: typing per (room, user); presence
//!   per user; receipts per (room, receipt type, user, thread), the thread included because
//!   threaded receipts are independent states (spec v1.4). States already in flight are not
//!   touched: a newer state goes in the next transaction, after them. PDUs and reliable EDUs are
//!   never coalesced.
//!
//! # Backoff
//! After the k-th consecutive failure (k = 0, 1, …) the same transaction is retried after
//! `min(cap, I_k + U[0, I_k / 2])`, where `I_0 = base` and `I_k = 2·I_{k-1}` (so
//! `I_k = base·2^k`), except that a refusal raises `I_k` to at least
//! [`OutboundConfig::refusal_backoff_floor`] (below); the delay is never less than the previous
//! one and never less than a 429's `retry_after_ms` (itself capped). The jitter multiplier is in
//! [1, 1.5], less than the doubling, so delays are monotone non-decreasing until a success; at
//! the cap they stay at the cap. Defaults: 5 s base, 24 h cap. A success resets it, and so does
//! [`DestinationQueue::mark_reachable`] (call it when the destination contacts us, as Synapse
//! does). The jitter comes from [`SplitMix64`] seeded by the caller. The backoff can outlive
//! the queue: [`Event::BackoffChanged`] reports it after every failure as a [`RetryState`], and
//! [`DestinationQueue::restore_backoff`] resumes it in a new queue (after a restart), which then
//! sends nothing before the saved retry time, as Synapse keeps its retry timings in its
//! database rather than contacting every failing destination at once when it starts.
//!
//! # Which failures are retried (the 4xx policy)
//! Every failure is retried with backoff, as Synapse does for `/send` (its transport asks the
//! retry limiter to back off on every error code, `backoff_on_all_error_codes`, and the
//! transaction's PDUs stay pending until a success):
//! - network errors, timeouts, every 5xx, 429 (honouring `retry_after_ms`), 401 (the destination
//!   may not have fetched our new key yet), 408 (a proxy gave up) and a 2xx whose body is not a
//!   JSON object ([`Failure::InvalidResponse`]: a catch-all HTML page is no acknowledgement)
//!   are plain failures;
//! - **every other status** (400, 403, 404, 413, …, and anything that is neither a 2xx nor a
//!   5xx) is a **refusal** ([`Failure::is_refusal`]): a proxy answering 404, a whitelist
//!   answering 403, a deprovisioned server. It grows the backoff like any failure, from at least
//!   [`OutboundConfig::refusal_backoff_floor`] (default 10 minutes, Synapse's first interval),
//!   so such a destination is asked again rarely instead of being sent the whole backlog
//!   back to back, and the transaction keeps its PDUs for the retry.
//!
//! The identical bytes may be refused for ever, though (one poisoned PDU), and retrying them
//! "until a success" would wedge the destination behind one transaction. So a transaction
//! refused [`OutboundConfig::max_refusals`] times in a row (default 3; another kind of failure in
//! between starts the count again) is **abandoned**: [`Event::TransactionRejected`], then each
//! PDU as [`Event::PduDropped`] (with `catch_up` set when no newer PDU of its room is still
//! queued, i.e. the host must run catch-up for that room later, as Synapse does after a failed
//! transaction), each ephemeral EDU as [`Event::EduDropped`], and each reliable EDU handed back
//! as [`Event::ReliableEduReturned`] so the host, which holds them durably, decides when to
//! queue them again (re-queueing one that caused the refusal would just loop). The backoff is
//! kept: the next transaction waits for the retry time the last refusal set
//! ([`DestinationQueue::poll_timeout`]).
//!
//! # Catch-up mode
//! Once a failure's retry delay reaches [`OutboundConfig::catch_up_after`] (default 1 h, as
//! Synapse's `CATCHUP_RETRY_INTERVAL`), the destination has been failing for long and may stay
//! down for days: keeping every PDU for it would grow the queue (and the host's rows) by every
//! event of every shared room. The queue then keeps only the **newest queued PDU of each room**:
//! the others are dropped as [`Event::PduDropped`] (reason [`DropReason::CatchUp`], `catch_up:
//! false`, since the newest stays), and so is a room's queued PDU whenever a newer one is queued
//! while in the mode. When it comes back, the destination receives the latest event of each
//! room and fetches what it lacks with `/get_missing_events`, which is Synapse's catch-up (it
//! sends the latest event per room from its database). The transaction in flight is not
//! touched. The mode ends with the next success ([`DestinationQueue::is_catching_up`]).
//!
//! # Overflow
//! - **PDUs** (bound: [`OutboundConfig::max_pending_pdus`], counting queued PDUs not in flight):
//!   when over, the oldest queued PDU that is **not the newest queued PDU of its room** is dropped
//!   ([`Event::PduDropped`], reason [`DropReason::Overflow`], `catch_up: false`). The newest PDU
//!   of every room is always kept: when it arrives, the destination fetches what it lacks with
//!   `/get_missing_events`, which is exactly Synapse's catch-up (send only the latest event per
//!   room). If every queued PDU is the newest of its room, nothing is dropped, so the queue holds
//!   at most `max(max_pending_pdus, rooms with queued PDUs)` PDUs.
//! - **Ephemeral EDUs** (typing, presence, receipts, unknown types; bound:
//!   [`OutboundConfig::max_pending_edus`] coalesced entries, a presence or receipt EDU counting
//!   one per user or receipt): when over, the oldest entries (by when their latest state was
//!   queued) are dropped ([`Event::EduDropped`]). The bound is applied once all entries of the
//!   queued EDU are in, so an entry never pushes out a state the same EDU supersedes; coalescing
//!   into an existing key never overflows.
//! - **Reliable EDUs** (to-device, device list and signing key updates; bound:
//!   [`OutboundConfig::max_pending_reliable_edus`]): never dropped. When the queue is full the
//!   new one is refused and handed straight back ([`Event::ReliableEduReturned`], reason
//!   [`DropReason::Overflow`]); the host keeps it in its durable store and queues it again once
//!   [`DestinationQueue::reliable_capacity`] allows (back-pressure rather than loss).
//!
//! # Transaction IDs
//! `"{start}-{n}"`: `start` is `now` in milliseconds when the queue was created and `n` counts
//! the transactions it built. IDs are unique per destination across restarts as long as the
//! clock moved forward between two starts, which is stronger than Synapse's `start + n` (that
//! collides when a process sent more transactions than milliseconds passed before the restart).
//!
//! ```
//! use mxfed_core::canonical::Object;
//! use mxfed_core::outbound::{DestinationQueue, Event, Failure, OutboundConfig, Outcome};
//! use mxfed_core::transaction::TransactionResponse;
//! use mxfed_core::Timestamp;
//!
//! let mut now = Timestamp(1_000_000);
//! let mut q = DestinationQueue::new("a.example", "b.example", OutboundConfig::default(), now, 42);
//! q.queue_pdu(now, "$e1", "!r:a.example", Object::new());
//! let t = q.poll_transmit(now).unwrap();
//! assert_eq!(t.path, "/_matrix/federation/v1/send/1000000-0");
//! assert!(q.poll_transmit(now).is_none(), "one transaction in flight");
//!
//! q.handle_response(now, Outcome::Failure(Failure::Timeout)).unwrap();
//! assert!(matches!(q.poll_event(), Some(Event::DestinationDown { .. })));
//! assert!(matches!(q.poll_event(), Some(Event::BackoffChanged { retry: Some(_) })));
//! now = q.poll_timeout().unwrap();
//! q.handle_timeout(now);
//! let retry = q.poll_transmit(now).unwrap();
//! assert_eq!((retry.txn_id.as_str(), &retry.body), (t.txn_id.as_str(), &t.body));
//!
//! q.handle_response(now, Outcome::Success(TransactionResponse::new())).unwrap();
//! assert!(matches!(q.poll_event(), Some(Event::Delivered { .. })));
//! assert!(matches!(q.poll_event(), Some(Event::DestinationUp)));
//! assert!(matches!(q.poll_event(), Some(Event::BackoffChanged { retry: None })));
//! assert!(q.is_idle());
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::canonical::{encode_object_into, parse_object, Int, Object, ParseOptions, Value};
use crate::edu::{Edu, Presence, PresenceUpdate, Receipt, ReceiptEntry};
use crate::time::{Millis, Timestamp};
use crate::transaction::{send_path, PduResult, TransactionResponse, MAX_EDUS, MAX_PDUS};

/// Most users in the one presence EDU of a transaction (Synapse's batch).
pub const PRESENCE_PER_TXN: usize = 50;
/// Most receipt EDUs in a transaction (Synapse's batch).
pub const RECEIPT_EDUS_PER_TXN: usize = 5;
/// EDU slots reliable EDUs leave to typing and other EDUs on their first pass (Synapse's).
pub const EDU_SLOTS_KEPT_SPARE: usize = 10;

// ------------------------------------------------------------------------------------------------
// Configuration, PRNG, backoff
// ------------------------------------------------------------------------------------------------

/// Tunables of a [`DestinationQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundConfig {
    /// First retry delay (before jitter). At least 1 ms is used.
    pub backoff_base: Millis,
    /// Longest retry delay. At least `backoff_base` is used.
    pub backoff_cap: Millis,
    /// Queued PDUs (not in flight) beyond which superseded ones are dropped (see Overflow).
    pub max_pending_pdus: usize,
    /// Coalesced ephemeral EDU entries beyond which the oldest are dropped.
    pub max_pending_edus: usize,
    /// Reliable EDUs queued at most; more are handed back to the host.
    pub max_pending_reliable_edus: usize,
    /// Shortest retry interval (before jitter) after a refusal (a 4xx other than 401, 408 and
    /// 429): a destination that refuses is not asked again sooner, however short the backoff
    /// was. Synapse's first interval for every failure.
    pub refusal_backoff_floor: Millis,
    /// A transaction refused this many times in a row is abandoned (at least 1 is used).
    pub max_refusals: u32,
    /// Once a failure's retry delay is this long, the queue keeps only the newest PDU of each
    /// room until the next success (catch-up mode, see the module docs). Synapse's is 1 h.
    pub catch_up_after: Millis,
}

impl Default for OutboundConfig {
    fn default() -> OutboundConfig {
        OutboundConfig {
            backoff_base: Millis::from_secs(5),
            backoff_cap: Millis::from_secs(24 * 3600),
            max_pending_pdus: 1000,
            max_pending_edus: 1000,
            max_pending_reliable_edus: 1000,
            refusal_backoff_floor: Millis::from_secs(600),
            max_refusals: 3,
            catch_up_after: Millis::from_secs(3600),
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, deterministic PRNG. Not for secrets;
/// it only spreads retries so that destinations do not retry in lockstep.
///
/// ```
/// use mxfed_core::outbound::SplitMix64;
/// let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert_eq!(SplitMix64::new(0).next_u64(), 0xE220A8397B1DCDAF);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from a seed; equal seeds give equal sequences.
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), by multiply-high: bias below 2^-64·n, fine here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Exponential backoff with jitter, monotone until reset (see the module docs for the formula).
///
/// ```
/// use mxfed_core::outbound::Backoff;
/// use mxfed_core::Millis;
/// let mut b = Backoff::new(Millis(1000), Millis(10_000), 1);
/// let d: Vec<u64> = (0..6).map(|_| b.failure(Millis(0)).0).collect();
/// assert!(d.windows(2).all(|w| w[0] <= w[1]) && d[0] >= 1000 && d[0] <= 1500);
/// assert_eq!(d[5], 10_000, "capped");
/// b.reset();
/// assert!(b.failure(Millis(0)).0 <= 1500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Millis,
    cap: Millis,
    rng: SplitMix64,
    failures: u32,
    /// The last interval before jitter: the next one doubles it.
    interval: Millis,
    last: Millis,
}

impl Backoff {
    /// A backoff starting at `base` (≥ 1 ms), capped at `cap` (≥ base), jittered from `seed`.
    pub fn new(base: Millis, cap: Millis, seed: u64) -> Backoff {
        let base = Millis(base.0.max(1));
        Backoff {
            base,
            cap: Millis(cap.0.max(base.0)),
            rng: SplitMix64::new(seed),
            failures: 0,
            interval: Millis(0),
            last: Millis(0),
        }
    }

    /// Records a failure and returns how long to wait before the retry: at least `at_least`
    /// (a 429's `retry_after_ms`) and the previous delay, at most the cap.
    pub fn failure(&mut self, at_least: Millis) -> Millis {
        self.failure_with_floor(Millis(0), at_least)
    }

    /// As [`Backoff::failure`], with the interval before jitter raised to at least `floor`
    /// (capped): the following failures double from there, so a floor starts the backoff
    /// higher rather than holding it at the floor.
    ///
    /// ```
    /// use mxfed_core::outbound::Backoff;
    /// use mxfed_core::Millis;
    /// let mut b = Backoff::new(Millis(1000), Millis(1_000_000), 1);
    /// let first = b.failure_with_floor(Millis(60_000), Millis(0)).0;
    /// assert!((60_000..=90_000).contains(&first));
    /// assert!(b.failure(Millis(0)).0 >= 120_000, "doubles from the floor");
    /// ```
    pub fn failure_with_floor(&mut self, floor: Millis, at_least: Millis) -> Millis {
        let doubled = if self.failures == 0 {
            self.base.0
        } else {
            self.interval.0.saturating_mul(2)
        };
        let interval = doubled.max(floor.0).min(self.cap.0);
        let jitter = self.rng.below(interval / 2 + 1);
        let delay = interval
            .saturating_add(jitter)
            .max(at_least.0)
            .max(self.last.0)
            .min(self.cap.0);
        self.failures = self.failures.saturating_add(1);
        self.interval = Millis(interval);
        self.last = Millis(delay);
        self.last
    }

    /// Forgets the failures: the next delay starts from `base` again. The PRNG carries on.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.interval = Millis(0);
        self.last = Millis(0);
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The last delay returned since the reset, if any.
    pub fn last_delay(&self) -> Option<Millis> {
        (self.failures > 0).then_some(self.last)
    }
}

// ------------------------------------------------------------------------------------------------
// Inputs and outputs
// ------------------------------------------------------------------------------------------------

/// A request for the host to send: `PUT {path}` to `destination` with `body`, signed with
/// X-Matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit {
    /// The destination server.
    pub destination: String,
    /// The transaction ID.
    pub txn_id: String,
    /// `/_matrix/federation/v1/send/{txnId}`.
    pub path: String,
    /// The canonical JSON body; identical on every retry.
    pub body: Vec<u8>,
    /// PDUs in the body.
    pub pdu_count: usize,
    /// EDUs in the body.
    pub edu_count: usize,
    /// 1 for the first send, 2 for the first retry, ….
    pub attempt: u32,
}

impl Transmit {
    /// The body as an object (for hosts that want it rather than bytes).
    pub fn body_object(&self) -> Option<Object> {
        parse_object(&self.body, &ParseOptions::LEGACY).ok()
    }
}

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No HTTP answer: DNS, connect, TLS or reset.
    Network,
    /// No answer in time.
    Timeout,
    /// A 5xx. Retried.
    ServerError {
        /// The status.
        status: u16,
    },
    /// A 429. Retried, not before `retry_after` (the body's `retry_after_ms`) when given.
    RateLimited {
        /// How long the destination asked us to wait.
        retry_after: Option<Millis>,
    },
    /// A 2xx whose body is not a JSON object (a proxy's HTML catch-all page, an empty 204): not
    /// an acknowledgement, as Synapse requires a JSON body. Retried.
    InvalidResponse {
        /// The status.
        status: u16,
    },
    /// Any other status. Retried; every one but 401 and 408 is a refusal (see the module
    /// docs): the backoff starts at least at [`OutboundConfig::refusal_backoff_floor`] and the
    /// transaction is abandoned after [`OutboundConfig::max_refusals`] in a row.
    ClientError {
        /// The status.
        status: u16,
    },
}

impl Failure {
    /// Classifies the status of an answer that is not an acknowledgement (`retry_after` is only
    /// used with 429); a 2xx here is one without a JSON object body. See [`Outcome::from_http`]
    /// for a whole answer.
    pub fn from_status(status: u16, retry_after: Option<Millis>) -> Failure {
        match status {
            200..=299 => Failure::InvalidResponse { status },
            429 => Failure::RateLimited { retry_after },
            500..=599 => Failure::ServerError { status },
            _ => Failure::ClientError { status },
        }
    }

    /// Whether this is a refusal: the destination understood the request and said no (any
    /// status that is not a 2xx, 5xx, 401, 408 or 429). Refusals are retried too, but no
    /// sooner than the floor, and a transaction refused too often is abandoned.
    pub fn is_refusal(&self) -> bool {
        match self {
            Failure::ClientError { status } => !matches!(status, 401 | 408 | 429),
            _ => false,
        }
    }
}

/// How a transmitted transaction went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A 2xx with a JSON object body, with the parsed response (an empty one if its `pdus`
    /// could not be read: the answer alone acknowledges the transaction).
    Success(TransactionResponse),
    /// Anything else.
    Failure(Failure),
}

impl Outcome {
    /// Classifies an HTTP answer to `PUT /send`: a 2xx whose body is a JSON object acknowledges
    /// the transaction (Synapse takes every 2xx, and requires a JSON body); a 2xx with any
    /// other body is [`Failure::InvalidResponse`], retried; any other status goes through
    /// [`Failure::from_status`], with a 429's `retry_after_ms` read from its body.
    ///
    /// ```
    /// use mxfed_core::outbound::{Failure, Outcome};
    /// use mxfed_core::Millis;
    /// assert!(matches!(Outcome::from_http(200, br#"{"pdus":{}}"#), Outcome::Success(_)));
    /// assert!(matches!(Outcome::from_http(202, b"{}"), Outcome::Success(_)));
    /// assert_eq!(
    ///     Outcome::from_http(200, b"<html>hello</html>"),
    ///     Outcome::Failure(Failure::InvalidResponse { status: 200 })
    /// );
    /// assert_eq!(
    ///     Outcome::from_http(429, br#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":2000}"#),
    ///     Outcome::Failure(Failure::RateLimited { retry_after: Some(Millis(2000)) })
    /// );
    /// assert_eq!(
    ///     Outcome::from_http(404, b"not found"),
    ///     Outcome::Failure(Failure::ClientError { status: 404 })
    /// );
    /// ```
    pub fn from_http(status: u16, body: &[u8]) -> Outcome {
        let object = parse_object(body, &ParseOptions::LEGACY).ok();
        match (status, object) {
            (200..=299, Some(o)) => {
                Outcome::Success(TransactionResponse::from_object(&o).unwrap_or_default())
            }
            (_, object) => {
                let retry_after = object
                    .as_ref()
                    .and_then(|o| o.get("retry_after_ms"))
                    .and_then(Value::as_int)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Millis);
                Outcome::Failure(Failure::from_status(status, retry_after))
            }
        }
    }
}

/// A failing destination's backoff, for the host to keep across restarts as Synapse keeps its
/// retry timings: [`Event::BackoffChanged`] gives it after every failure, and
/// [`DestinationQueue::restore_backoff`] hands it to the next process's queue, which then
/// sends nothing before `retry_at` and goes on growing the backoff from where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryState {
    /// When the destination may be tried again.
    pub retry_at: Timestamp,
    /// Consecutive failures so far.
    pub failures: u32,
    /// The last retry interval before jitter (the next failure doubles it).
    pub interval: Millis,
    /// The last retry delay (the next one is at least as long).
    pub delay: Millis,
}

/// A PDU named by its room and event ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PduRef {
    /// The room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
}

/// Why the queue let go of something without delivering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The queue was over its bound.
    Overflow,
    /// The transaction holding it was refused with this status too many times in a row.
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// The destination has been failing for long (catch-up mode): a newer PDU of the same room
    /// is queued and stands for it.
    CatchUp,
}

/// Something the host must know or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A transaction was acknowledged (a 2xx with a JSON object): its PDUs and EDUs are
    /// delivered. Reliable EDUs can now be deleted from the host's durable store.
    Delivered {
        /// The transaction.
        txn_id: String,
        /// Its PDUs.
        pdus: Vec<PduRef>,
        /// Its EDUs.
        edus: Vec<Edu>,
    },
    /// The destination acknowledged a PDU but refused it (`{"error": …}` in the response). It is
    /// not retried: the destination has seen it.
    RemotePduError {
        /// The event.
        event_id: String,
        /// The destination's reason.
        error: String,
    },
    /// A PDU will not be sent by this queue.
    PduDropped {
        /// Which.
        pdu: PduRef,
        /// Why.
        reason: DropReason,
        /// `true` when no newer PDU of the room is queued, so nothing will lead the destination
        /// to this event: the host must catch the room up later (queue its latest event again).
        catch_up: bool,
    },
    /// An ephemeral EDU (typing, presence, receipt or unknown type) will not be sent.
    EduDropped {
        /// The EDU (a presence or receipt EDU holds just the dropped entries).
        edu: Edu,
        /// Why.
        reason: DropReason,
    },
    /// A reliable EDU handed back to the host, never lost: the queue was full, or the
    /// transaction holding it was refused. Queue it again when appropriate.
    ReliableEduReturned {
        /// The EDU.
        edu: Edu,
        /// Why.
        reason: DropReason,
    },
    /// The in-flight transaction was refused too many times in a row and is abandoned (see the
    /// 4xx policy); the events about its contents follow.
    TransactionRejected {
        /// The transaction.
        txn_id: String,
        /// The HTTP status.
        status: u16,
    },
    /// Sending to the destination started failing (the first failure, or refusal, after a
    /// success or at the start).
    DestinationDown {
        /// When the transaction is retried.
        retry_at: Timestamp,
    },
    /// The destination accepted a transaction again (or contacted us).
    DestinationUp,
    /// The backoff changed: after every failure (`Some`: persist it, see [`RetryState`]), and
    /// when a success or [`DestinationQueue::mark_reachable`] reset it after failures (`None`:
    /// forget it).
    BackoffChanged {
        /// The backoff now, if the destination is failing.
        retry: Option<RetryState>,
    },
}

/// Misuse of the queue by the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// [`DestinationQueue::handle_response`] with no transaction awaiting a response.
    #[error("no transaction is awaiting a response")]
    NothingInFlight,
}

impl OutboundError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            OutboundError::NothingInFlight => "outbound_nothing_in_flight",
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The queue
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct QueuedPdu {
    /// Queue order, to tell the newest PDU of a room.
    seq: u64,
    room_id: String,
    event_id: String,
    /// Shared: a host queueing one event for many destinations keeps one copy.
    pdu: Arc<Object>,
}

/// What an ephemeral EDU entry supersedes: a newer entry with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum EphKey {
    /// (room, user).
    Typing(String, String),
    /// user.
    Presence(String),
    /// (room, receipt type, user, thread).
    Receipt(String, String, String, Option<String>),
    /// Unknown EDU types supersede nothing: keyed by their own sequence number.
    Other(u64),
}

#[derive(Debug, Clone)]
enum EphValue {
    /// A whole typing or unknown EDU.
    Edu(Edu),
    Presence(PresenceUpdate),
    Receipt(ReceiptEntry),
}

impl EphValue {
    fn into_edu(self) -> Edu {
        match self {
            EphValue::Edu(e) => e,
            EphValue::Presence(u) => Presence::from_updates([u]).into(),
            EphValue::Receipt(r) => Receipt::from_entries([r]).into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlightState {
    /// Transmitted; waiting for `handle_response`.
    Awaiting,
    /// Failed; retry at this time.
    RetryAt(Timestamp),
    /// Retry due: the next `poll_transmit` sends it.
    Ready,
}

#[derive(Debug, Clone)]
struct InFlight {
    txn_id: String,
    body: Vec<u8>,
    pdus: Vec<PduRef>,
    edus: Vec<Edu>,
    attempts: u32,
    /// Refusals of this transaction in a row (another kind of failure resets it).
    refusals: u32,
    state: FlightState,
}

/// The outbound transaction queue for one destination. See the module docs for the policies.
#[derive(Debug, Clone)]
pub struct DestinationQueue {
    origin: String,
    destination: String,
    config: OutboundConfig,
    /// First half of every transaction ID: `now` at construction.
    txn_start: u64,
    /// Transactions built so far: second half of the next ID.
    txn_count: u64,
    /// Stamp for queue order, shared by PDUs and ephemeral EDUs.
    seq: u64,
    pdus: VecDeque<QueuedPdu>,
    /// room → seq of its newest queued PDU (absent when none is queued).
    newest_pdu: BTreeMap<String, u64>,
    /// Coalesced ephemeral EDUs: key → (seq of the latest state, the state).
    ephemeral: BTreeMap<EphKey, (u64, EphValue)>,
    /// seq → key, the order ephemeral entries are batched and dropped in.
    eph_order: BTreeMap<u64, EphKey>,
    /// Reliable EDUs, FIFO, never coalesced.
    reliable: VecDeque<Edu>,
    in_flight: Option<InFlight>,
    /// After a transaction was abandoned: no new one before this (the backoff still holds).
    not_before: Option<Timestamp>,
    /// Catch-up mode: the destination has been failing for long; only the newest queued PDU of
    /// each room is kept, until the next success.
    catching_up: bool,
    backoff: Backoff,
    /// Whether the last attempt failed (for the down/up events).
    down: bool,
    events: VecDeque<Event>,
}

impl DestinationQueue {
    /// A queue from `origin` (our server name) to `destination`. `now` starts the transaction
    /// IDs; `seed` drives the backoff jitter.
    pub fn new(
        origin: impl Into<String>,
        destination: impl Into<String>,
        config: OutboundConfig,
        now: Timestamp,
        seed: u64,
    ) -> DestinationQueue {
        DestinationQueue {
            origin: origin.into(),
            destination: destination.into(),
            config,
            txn_start: now.as_millis(),
            txn_count: 0,
            seq: 0,
            pdus: VecDeque::new(),
            newest_pdu: BTreeMap::new(),
            ephemeral: BTreeMap::new(),
            eph_order: BTreeMap::new(),
            reliable: VecDeque::new(),
            in_flight: None,
            not_before: None,
            catching_up: false,
            backoff: Backoff::new(config.backoff_base, config.backoff_cap, seed),
            down: false,
            events: VecDeque::new(),
        }
    }

    // -- inputs ----------------------------------------------------------------------------------

    /// Queues a PDU. Queue order is send order. May drop an older, superseded PDU (Overflow,
    /// catch-up mode). An `Arc<Object>` shares one copy among the queues of every destination.
    pub fn queue_pdu(
        &mut self,
        now: Timestamp,
        event_id: impl Into<String>,
        room_id: impl Into<String>,
        pdu: impl Into<Arc<Object>>,
    ) {
        self.advance(now);
        let seq = self.next_seq();
        let room_id = room_id.into();
        if let Some(older) = self.newest_pdu.insert(room_id.clone(), seq) {
            if self.catching_up {
                // The room's one queued PDU gives way to this newer one.
                self.drop_queued(older, DropReason::CatchUp);
            }
        }
        self.pdus.push_back(QueuedPdu {
            seq,
            room_id,
            event_id: event_id.into(),
            pdu: pdu.into(),
        });
        while self.pdus.len() > self.config.max_pending_pdus {
            let superseded = self
                .pdus
                .iter()
                .position(|q| self.newest_pdu.get(&q.room_id) != Some(&q.seq));
            let Some(q) = superseded.and_then(|i| self.pdus.remove(i)) else {
                break;
            };
            self.events.push_back(Event::PduDropped {
                pdu: PduRef {
                    room_id: q.room_id,
                    event_id: q.event_id,
                },
                reason: DropReason::Overflow,
                catch_up: false,
            });
        }
    }

    /// Drops the queued PDU with this sequence number, superseded by a newer one of its room.
    fn drop_queued(&mut self, seq: u64, reason: DropReason) {
        // Queue order is sequence order.
        let Ok(i) = self.pdus.binary_search_by_key(&seq, |q| q.seq) else {
            return;
        };
        if let Some(q) = self.pdus.remove(i) {
            self.events.push_back(Event::PduDropped {
                pdu: PduRef {
                    room_id: q.room_id,
                    event_id: q.event_id,
                },
                reason,
                catch_up: false,
            });
        }
    }

    /// Enters catch-up mode: every queued PDU but the newest of its room is dropped.
    fn start_catching_up(&mut self) {
        self.catching_up = true;
        let superseded: Vec<u64> = self
            .pdus
            .iter()
            .filter(|q| self.newest_pdu.get(&q.room_id) != Some(&q.seq))
            .map(|q| q.seq)
            .collect();
        for seq in superseded {
            self.drop_queued(seq, DropReason::CatchUp);
        }
    }

    /// Queues an EDU: ephemeral ones are coalesced by key, reliable ones kept in order. May drop
    /// the oldest ephemeral entry, or hand a reliable EDU back when full (Overflow).
    pub fn queue_edu(&mut self, now: Timestamp, edu: Edu) {
        self.advance(now);
        match edu {
            Edu::Typing(ref t) => {
                let key = EphKey::Typing(t.room_id().to_owned(), t.user_id().to_owned());
                self.insert_ephemeral(key, EphValue::Edu(edu));
            }
            Edu::Presence(p) => {
                for u in p.updates() {
                    let key = EphKey::Presence(u.user_id().to_owned());
                    self.insert_ephemeral(key, EphValue::Presence(u));
                }
            }
            Edu::Receipt(r) => {
                for e in r.entries() {
                    let key = EphKey::Receipt(
                        e.room_id().to_owned(),
                        e.receipt_type().to_owned(),
                        e.user_id().to_owned(),
                        e.thread_id().map(str::to_owned),
                    );
                    self.insert_ephemeral(key, EphValue::Receipt(e));
                }
            }
            edu if edu.is_reliable() => {
                if self.reliable.len() >= self.config.max_pending_reliable_edus {
                    self.events.push_back(Event::ReliableEduReturned {
                        edu,
                        reason: DropReason::Overflow,
                    });
                } else {
                    self.reliable.push_back(edu);
                }
            }
            edu => {
                // Unique: the sequence number `insert_ephemeral` is about to hand out.
                let key = EphKey::Other(self.seq + 1);
                self.insert_ephemeral(key, EphValue::Edu(edu));
            }
        }
        // Trim only once every entry of the EDU is in: an entry must not push out an older
        // state that a later entry of the same EDU supersedes anyway.
        self.trim_ephemeral();
    }

    fn insert_ephemeral(&mut self, key: EphKey, value: EphValue) {
        let seq = self.next_seq();
        if let Some((old, _)) = self.ephemeral.insert(key.clone(), (seq, value)) {
            self.eph_order.remove(&old);
        }
        self.eph_order.insert(seq, key);
    }

    /// Drops the oldest ephemeral entries while over the bound.
    fn trim_ephemeral(&mut self) {
        while self.ephemeral.len() > self.config.max_pending_edus {
            let Some((_, key)) = self.eph_order.pop_first() else {
                break;
            };
            if let Some((_, v)) = self.ephemeral.remove(&key) {
                self.events.push_back(Event::EduDropped {
                    edu: v.into_edu(),
                    reason: DropReason::Overflow,
                });
            }
        }
    }

    /// Reports how the transmitted transaction went.
    ///
    /// # Errors
    /// [`OutboundError::NothingInFlight`] when no transaction is awaiting a response (nothing
    /// changes).
    pub fn handle_response(
        &mut self,
        now: Timestamp,
        outcome: Outcome,
    ) -> Result<(), OutboundError> {
        let mut flight = match self.in_flight.take() {
            Some(f) if f.state == FlightState::Awaiting => f,
            other => {
                self.in_flight = other;
                return Err(OutboundError::NothingInFlight);
            }
        };
        match outcome {
            Outcome::Success(resp) => {
                self.events.push_back(Event::Delivered {
                    txn_id: flight.txn_id,
                    pdus: flight.pdus,
                    edus: flight.edus,
                });
                for (event_id, result) in resp.iter() {
                    if let PduResult::Error(error) = result {
                        self.events.push_back(Event::RemotePduError {
                            event_id: event_id.to_owned(),
                            error: error.clone(),
                        });
                    }
                }
                self.catching_up = false;
                self.reachable();
            }
            Outcome::Failure(failure) => {
                let at_least = match failure {
                    Failure::RateLimited {
                        retry_after: Some(d),
                    } => d,
                    _ => Millis(0),
                };
                let refused = failure.is_refusal();
                let floor = if refused {
                    self.config.refusal_backoff_floor
                } else {
                    Millis(0)
                };
                let delay = self.backoff.failure_with_floor(floor, at_least);
                let retry_at = now + delay;
                if !self.down {
                    self.down = true;
                    self.events.push_back(Event::DestinationDown { retry_at });
                }
                self.events.push_back(Event::BackoffChanged {
                    retry: Some(RetryState {
                        retry_at,
                        failures: self.backoff.failures,
                        interval: self.backoff.interval,
                        delay,
                    }),
                });
                flight.refusals = if refused {
                    flight.refusals.saturating_add(1)
                } else {
                    0
                };
                if refused && flight.refusals >= self.config.max_refusals.max(1) {
                    let status = match failure {
                        Failure::ClientError { status } => status,
                        _ => 0,
                    };
                    self.abandon(flight, status);
                    self.not_before = Some(retry_at);
                } else {
                    flight.state = FlightState::RetryAt(retry_at);
                    self.in_flight = Some(flight);
                }
                if delay >= self.config.catch_up_after && !self.catching_up {
                    self.start_catching_up();
                }
            }
        }
        Ok(())
    }

    /// Lets go of a transaction refused too often: events for everything in it.
    fn abandon(&mut self, flight: InFlight, status: u16) {
        let reason = DropReason::Rejected { status };
        self.events.push_back(Event::TransactionRejected {
            txn_id: flight.txn_id,
            status,
        });
        for pdu in flight.pdus {
            let catch_up = !self.newest_pdu.contains_key(&pdu.room_id);
            self.events.push_back(Event::PduDropped {
                pdu,
                reason,
                catch_up,
            });
        }
        for edu in flight.edus {
            self.events.push_back(if edu.is_reliable() {
                Event::ReliableEduReturned { edu, reason }
            } else {
                Event::EduDropped { edu, reason }
            });
        }
    }

    /// Resumes the backoff a previous queue for this destination had ([`RetryState`], saved
    /// from [`Event::BackoffChanged`]): nothing is sent before `retry_at` (at most the cap from
    /// `now`, should the clock have gone back), the next failure grows the backoff from where
    /// it was, and a delay that reached [`OutboundConfig::catch_up_after`] resumes catch-up
    /// mode. Call it on a new queue, before transmitting. No event is emitted.
    pub fn restore_backoff(&mut self, now: Timestamp, retry: RetryState) {
        if retry.failures == 0 {
            return;
        }
        let (base, cap) = (self.backoff.base, self.backoff.cap);
        self.backoff.failures = retry.failures;
        // Held to [base, cap]: a stored 0 (a damaged row, or a base raised since) would
        // otherwise double to 0 for good, retrying a dead destination in a tight loop.
        self.backoff.interval = Millis(retry.interval.0.clamp(base.0, cap.0));
        self.backoff.last = Millis(retry.delay.0.clamp(self.backoff.interval.0, cap.0));
        self.down = true;
        let retry_at = retry.retry_at.min(now + cap);
        if retry_at > now {
            match &mut self.in_flight {
                Some(f) if f.state != FlightState::Awaiting => {
                    f.state = FlightState::RetryAt(retry_at);
                }
                Some(_) => {}
                None => self.not_before = Some(retry_at),
            }
        }
        if self.backoff.last >= self.config.catch_up_after && !self.catching_up {
            self.start_catching_up();
        }
    }

    /// Processes timers: a retry that is due becomes ready to transmit.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The destination contacted us (a validly signed request): forget the backoff and retry a
    /// waiting transaction now, as Synapse does.
    pub fn mark_reachable(&mut self, now: Timestamp) {
        self.advance(now);
        if let Some(f) = &mut self.in_flight {
            if matches!(f.state, FlightState::RetryAt(_)) {
                f.state = FlightState::Ready;
            }
        }
        self.reachable();
    }

    fn reachable(&mut self) {
        if self.down {
            self.down = false;
            self.events.push_back(Event::DestinationUp);
        }
        if self.backoff.failures > 0 {
            self.events.push_back(Event::BackoffChanged { retry: None });
        }
        self.backoff.reset();
        self.not_before = None;
    }

    // -- outputs ---------------------------------------------------------------------------------

    /// The next request to send, if any: the waiting transaction's retry when it is due, else a
    /// new transaction when nothing is in flight and something is queued.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        self.advance(now);
        if self.in_flight.is_none() && self.not_before.is_none() {
            self.in_flight = self.build(now);
        }
        let f = self.in_flight.as_mut()?;
        if f.state != FlightState::Ready {
            return None;
        }
        f.state = FlightState::Awaiting;
        f.attempts = f.attempts.saturating_add(1);
        Some(Transmit {
            destination: self.destination.clone(),
            txn_id: f.txn_id.clone(),
            path: send_path(&f.txn_id),
            body: f.body.clone(),
            pdu_count: f.pdus.len(),
            edu_count: f.edus.len(),
            attempt: f.attempts,
        })
    }

    /// When [`DestinationQueue::handle_timeout`] must next be called: the retry time of a
    /// failed transaction, if one is waiting, or after an abandoned one, the time the next
    /// transaction may go.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.in_flight {
            Some(f) => match f.state {
                FlightState::RetryAt(t) => Some(t),
                _ => None,
            },
            None => self.not_before,
        }
    }

    /// The next event for the host, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // -- inspection ------------------------------------------------------------------------------

    /// Our server name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The destination.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The configuration.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Queued PDUs, not counting those in flight.
    pub fn pending_pdus(&self) -> usize {
        self.pdus.len()
    }

    /// Coalesced ephemeral EDU entries queued (a presence EDU for 3 users counts 3).
    pub fn pending_edus(&self) -> usize {
        self.ephemeral.len()
    }

    /// Reliable EDUs queued.
    pub fn pending_reliable_edus(&self) -> usize {
        self.reliable.len()
    }

    /// How many more reliable EDUs fit before they are handed back.
    pub fn reliable_capacity(&self) -> usize {
        self.config
            .max_pending_reliable_edus
            .saturating_sub(self.reliable.len())
    }

    /// The transaction in flight (sent, or waiting for its retry), if any.
    pub fn in_flight(&self) -> Option<&str> {
        self.in_flight.as_ref().map(|f| f.txn_id.as_str())
    }

    /// Whether a transmitted transaction awaits [`DestinationQueue::handle_response`].
    pub fn awaiting_response(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.state == FlightState::Awaiting)
    }

    /// Whether the queue is in catch-up mode (only the newest PDU of each room is kept).
    pub fn is_catching_up(&self) -> bool {
        self.catching_up
    }

    /// Consecutive failures (refusals included) since the last success or
    /// [`DestinationQueue::mark_reachable`].
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// Whether nothing is queued or in flight (events may still be waiting).
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none()
            && self.pdus.is_empty()
            && self.ephemeral.is_empty()
            && self.reliable.is_empty()
    }

    // -- internals -------------------------------------------------------------------------------

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Turns a due retry into a ready one, and ends the wait after an abandoned transaction.
    fn advance(&mut self, now: Timestamp) {
        if self.not_before.is_some_and(|t| t <= now) {
            self.not_before = None;
        }
        if let Some(f) = &mut self.in_flight {
            if matches!(f.state, FlightState::RetryAt(t) if t <= now) {
                f.state = FlightState::Ready;
            }
        }
    }

    /// Takes the oldest entries (in queue order) whose keys pass `want`, up to `max`.
    fn take_ephemeral(
        &mut self,
        max: usize,
        mut want: impl FnMut(&EphKey) -> bool,
    ) -> Vec<EphValue> {
        let keys: Vec<(u64, EphKey)> = self
            .eph_order
            .iter()
            .filter(|(_, k)| want(k))
            .take(max)
            .map(|(s, k)| (*s, k.clone()))
            .collect();
        keys.into_iter()
            .filter_map(|(seq, key)| {
                self.eph_order.remove(&seq);
                self.ephemeral.remove(&key).map(|(_, v)| v)
            })
            .collect()
    }

    /// Builds the next transaction from the queues, in Synapse's priority order, or `None` when
    /// there is nothing to send.
    fn build(&mut self, now: Timestamp) -> Option<InFlight> {
        let mut edus: Vec<Edu> = Vec::new();

        // 1. One presence EDU.
        let presence = self.take_ephemeral(PRESENCE_PER_TXN, |k| matches!(k, EphKey::Presence(_)));
        if !presence.is_empty() {
            let updates = presence.into_iter().filter_map(|v| match v {
                EphValue::Presence(u) => Some(u),
                _ => None,
            });
            edus.push(Presence::from_updates(updates).into());
        }

        // 2. Receipt EDUs: one content holds one receipt per (room, type, user), so receipts of
        //    several threads for one user go in separate EDUs.
        let mut buckets: Vec<Vec<ReceiptEntry>> = Vec::new();
        let mut taken: Vec<(u64, EphKey)> = Vec::new();
        for (seq, key) in &self.eph_order {
            let EphKey::Receipt(room, rtype, user, _) = key else {
                continue;
            };
            let fits = |b: &Vec<ReceiptEntry>| {
                !b.iter().any(|e| {
                    e.room_id() == room && e.receipt_type() == rtype && e.user_id() == user
                })
            };
            let slot = match buckets.iter().position(fits) {
                Some(i) => i,
                None if buckets.len() < RECEIPT_EDUS_PER_TXN => {
                    buckets.push(Vec::new());
                    buckets.len() - 1
                }
                None => continue,
            };
            if let (Some(b), Some((_, EphValue::Receipt(e)))) =
                (buckets.get_mut(slot), self.ephemeral.get(key))
            {
                b.push(e.clone());
                taken.push((*seq, key.clone()));
            }
        }
        for (seq, key) in taken {
            self.eph_order.remove(&seq);
            self.ephemeral.remove(&key);
        }
        edus.extend(buckets.into_iter().map(|b| Receipt::from_entries(b).into()));

        // 3. Reliable EDUs, leaving some room for typing and others.
        let first = MAX_EDUS.saturating_sub(edus.len() + EDU_SLOTS_KEPT_SPARE);
        let n = first.min(self.reliable.len());
        edus.extend(self.reliable.drain(..n));

        // 4. Typing and unknown EDUs, oldest first.
        let room = MAX_EDUS.saturating_sub(edus.len());
        let rest =
            self.take_ephemeral(room, |k| matches!(k, EphKey::Typing(..) | EphKey::Other(_)));
        edus.extend(rest.into_iter().map(EphValue::into_edu));

        // 5. More reliable EDUs to fill up.
        let n = MAX_EDUS.saturating_sub(edus.len()).min(self.reliable.len());
        edus.extend(self.reliable.drain(..n));

        // 6. PDUs, oldest first.
        let n = MAX_PDUS.min(self.pdus.len());
        if n == 0 && edus.is_empty() {
            return None;
        }
        let mut refs = Vec::with_capacity(n);
        let mut pdus = Vec::with_capacity(n);
        for q in self.pdus.drain(..n) {
            if self.newest_pdu.get(&q.room_id) == Some(&q.seq) {
                self.newest_pdu.remove(&q.room_id);
            }
            refs.push(PduRef {
                room_id: q.room_id,
                event_id: q.event_id,
            });
            pdus.push(Value::Object(Arc::unwrap_or_clone(q.pdu)));
        }

        let mut body = Object::new();
        if !edus.is_empty() {
            let list: Vec<Value> = edus.iter().map(|e| e.to_object().into()).collect();
            body.insert("edus", list);
        }
        body.insert("origin", self.origin.as_str());
        body.insert("origin_server_ts", Int::saturating(now.as_i64()));
        body.insert("pdus", pdus);
        let mut bytes = Vec::with_capacity(1024);
        encode_object_into(&body, &mut bytes);

        let txn_id = format!("{}-{}", self.txn_start, self.txn_count);
        self.txn_count += 1;
        Some(InFlight {
            txn_id,
            body: bytes,
            pdus: refs,
            edus,
            attempts: 0,
            refusals: 0,
            state: FlightState::Ready,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(9);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn failure_classes() {
        assert!(!Failure::from_status(503, None).is_refusal());
        assert!(!Failure::from_status(429, Some(Millis(5))).is_refusal());
        assert!(!Failure::from_status(401, None).is_refusal());
        assert!(!Failure::from_status(408, None).is_refusal());
        assert!(!Failure::Network.is_refusal());
        assert!(Failure::from_status(400, None).is_refusal());
        assert!(Failure::from_status(403, None).is_refusal());
        assert!(Failure::from_status(404, None).is_refusal());
        assert!(Failure::from_status(302, None).is_refusal());
        assert_eq!(
            Failure::from_status(204, None),
            Failure::InvalidResponse { status: 204 }
        );
        assert!(!Failure::InvalidResponse { status: 200 }.is_refusal());
    }

    #[test]
    fn answers_to_send() {
        let ok = |s, b: &[u8]| matches!(Outcome::from_http(s, b), Outcome::Success(_));
        assert!(ok(200, br#"{"pdus":{"$e":{}}}"#));
        assert!(
            ok(200, br#"{"pdus":"garbled"}"#),
            "a JSON object acknowledges"
        );
        assert!(ok(201, b"{}") && ok(204, b"{}"));
        for body in [&b""[..], b"<html></html>", b"[]", b"\"ok\""] {
            assert_eq!(
                Outcome::from_http(200, body),
                Outcome::Failure(Failure::InvalidResponse { status: 200 })
            );
        }
        assert_eq!(
            Outcome::from_http(429, b"<html>slow down</html>"),
            Outcome::Failure(Failure::RateLimited { retry_after: None })
        );
        assert_eq!(
            Outcome::from_http(503, br#"{"retry_after_ms":5}"#),
            Outcome::Failure(Failure::ServerError { status: 503 })
        );
    }
}
