//! Our users' messages, group-committed: the admin API's `send` and `send_batch` requests that
//! wait for a commit at the same time are built, stored and queued together, so that one
//! fsync covers all of them instead of two per request.
//!
//! Each request puts its messages in [`Sends`] and starts a committer task. The committer that
//! gets `state.local_commit` waits a moment for the requests the last commit suggests will come
//! ([`Sends::gather`]: at most as long as that commit's fsync took), then takes every request
//! waiting by then (its own, unless an earlier committer took it already) and, per room, in
//! arrival order:
//! 1. builds each message on the previous one and takes it into the room (the core's rules
//!    decide; a refused message stops its request, the ones before it are kept, as a
//!    `send_batch` always did);
//! 2. stores the events with the room's extremities and state and, in the same fsynced commit,
//!    an outbound row naming each of them for every other server in the room
//!    ([`rooms::send_stored_together`]; the row holds no copy of the event's JSON): one
//!    fsync for the group, shared with the received events waiting for a commit at the same
//!    time;
//! 3. hands the PDUs to the destinations' queues and answers every request.
//!
//! So a request is answered only once its events and their outbound rows are durable, and a
//! PDU is sent only once its event is.
//!
//! Only messages come this way: they change no membership, so the servers to send to are the
//! same for the whole group. Membership and other state events keep the one-by-one path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mxfed_core::canonical::Object;
use mxfed_core::event::{BuiltEvent, EventTemplate};
use mxfed_core::room::RoomVerdict;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::rooms::{self, Entry};
use super::{warn, AppState};

/// What a request gets: the IDs of its events, or why it stopped (events before a refused one
/// are kept and sent all the same, as their IDs are not in the error answer).
pub type Answer = Result<Vec<String>, ApiError>;

/// One admin request's messages, waiting for a committer.
struct Request {
    room_id: String,
    templates: Vec<EventTemplate>,
    answer: oneshot::Sender<Answer>,
}

/// The requests waiting for a commit.
#[derive(Default)]
pub struct Sends {
    waiting: Mutex<Vec<Request>>,
    /// Woken by each request put in `waiting`.
    arrived: tokio::sync::Notify,
    /// Requests the next commit waits for ([`Sends::gather`]): those of the last commit (their
    /// senders are answered and likely to send again) and those that arrived while it ran.
    expected: AtomicUsize,
    /// How long the last commit's fsynced `COMMIT` took, in µs: the longest the next commit
    /// waits for the requests it expects.
    last_sync_us: AtomicU64,
}

/// The longest a commit waits for the requests it expects, whatever the last sync took.
const GATHER_MAX: Duration = Duration::from_millis(2);

impl Sends {
    fn push(&self, r: Request) {
        self.lock().push(r);
        self.arrived.notify_waiters();
    }

    /// Waits, before a commit takes its group, until as many requests wait as the last commit
    /// suggests will come, or for at most as long as that commit's `COMMIT` took (its WAL write
    /// and fsync; at most [`GATHER_MAX`]): waiting longer costs more than a sync of its own.
    ///
    /// Without it, a few senders that each send again as soon as they are answered split into
    /// two groups that take turns: one waits through the other's fsync, and each commit carries
    /// half of them. A commit that waits a moment for the senders it just answered carries all
    /// of them: half the fsyncs for the same messages, which on a disk whose fsync takes
    /// milliseconds is half the time. A sender alone (or a group that shrank) is not waited
    /// for: the estimate is what the last commit saw, so after one wait that ends with fewer
    /// requests than expected the next commit expects only those.
    async fn gather(&self) {
        let expected = self.expected.load(Ordering::Relaxed);
        if expected <= 1 {
            return;
        }
        let wait = Duration::from_micros(self.last_sync_us.load(Ordering::Relaxed)).min(GATHER_MAX);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the count is read, so an arrival in between still wakes it.
            arrived.as_mut().enable();
            if self.lock().len() >= expected {
                return;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return;
            }
        }
    }

    /// Notes a commit of `requests` whose sync took `sync`, before its requests are answered:
    /// the next commit expects them again, with those waiting now.
    fn committed(&self, requests: usize, sync: Duration) {
        let waiting = self.lock().len();
        self.expected.store(requests + waiting, Ordering::Relaxed);
        let us = u64::try_from(sync.as_micros()).unwrap_or(u64::MAX);
        self.last_sync_us.store(us, Ordering::Relaxed);
    }

    fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sends messages of our users (one request's worth: one for `send`, several for `send_batch`)
/// together with whatever other requests wait at the same time; answers once they are durable.
///
/// # Errors
/// The room's rules refusing a message (403; the messages before it were sent), an unknown
/// room (404), storage failures (500).
pub async fn send(state: &Arc<AppState>, room_id: &str, templates: Vec<EventTemplate>) -> Answer {
    let (answer, answered) = oneshot::channel();
    state.sends.push(Request {
        room_id: room_id.to_owned(),
        templates,
        answer,
    });
    // In a task of its own, so that a client hanging up cannot leave its request in the list
    // with no committer to come.
    let state = state.clone();
    tokio::spawn(async move {
        let _commit = state.local_commit.lock().await;
        state.sends.gather().await;
        let group = state.sends.take();
        if group.is_empty() {
            return;
        }
        // The group's rooms, each locked, in sorted order (the one place that holds several).
        let rooms: std::collections::BTreeSet<String> =
            group.iter().map(|r| r.room_id.clone()).collect();
        let mut guards = Vec::with_capacity(rooms.len());
        for room_id in &rooms {
            guards.push(state.lock_room(room_id).await);
        }
        // Building is CPU and the commit waits for the disk: off the runtime's threads, which
        // meanwhile take in the next requests.
        let st = state.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || commit_group(&st, group)).await {
            warn(&format!("group commit of our messages failed: {e}"));
        }
    });
    answered
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("the send was dropped")))
}

fn commit_group(state: &Arc<AppState>, group: Vec<Request>) {
    let count = group.len();
    let mut by_room: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    for r in group {
        by_room.entry(r.room_id.clone()).or_default().push(r);
    }
    for (i, (room_id, requests)) in by_room.into_iter().enumerate() {
        let answers = commit_room(state, &room_id, requests);
        if i == 0 {
            state.sends.committed(count, state.db().last_sync());
        }
        for (to, answer) in answers {
            // The client may have hung up; its events are stored and sent all the same.
            let _ = to.send(answer);
        }
    }
}

/// Steps 1–3 of the module docs for the requests of one room; returns the answers to send.
fn commit_room(
    state: &Arc<AppState>,
    room_id: &str,
    requests: Vec<Request>,
) -> Vec<(oneshot::Sender<Answer>, Answer)> {
    let mut built: Vec<BuiltEvent> = Vec::new();
    // Per request: how many of `built` are its events, and why it stopped early.
    let mut outcomes: Vec<(usize, Option<ApiError>)> = Vec::with_capacity(requests.len());
    for r in &requests {
        let before = built.len();
        let mut stop = None;
        for (i, t) in r.templates.iter().enumerate() {
            match build_and_take(state, room_id, t) {
                Ok(b) => built.push(b),
                Err(e) => {
                    stop = Some(refusal(e, i, r.templates.len()));
                    break;
                }
            }
        }
        outcomes.push((built.len() - before, stop));
    }
    let stored = if built.is_empty() {
        Ok(())
    } else {
        store_and_queue(state, room_id, &built)
    };
    let mut ids = built.into_iter().map(|b| b.event_id);
    let mut answers = Vec::with_capacity(requests.len());
    for (r, (count, stop)) in requests.into_iter().zip(outcomes) {
        let mine: Vec<String> = ids.by_ref().take(count).collect();
        let answer = match (&stored, stop) {
            (Err(e), _) if count > 0 => Err(e.clone()),
            (_, Some(e)) => Err(e),
            _ => Ok(mine),
        };
        answers.push((r.answer, answer));
    }
    answers
}

/// Why a message stopped its request.
enum Refused {
    /// The room's rules (the event stays in memory as rejected: never stored, sent or cited).
    Rules(RoomVerdict),
    /// Anything else (unknown room, an event too large).
    Error(ApiError),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Refused {
        Refused::Error(e)
    }
}

fn refusal(r: Refused, index: usize, of: usize) -> ApiError {
    match r {
        Refused::Error(e) => e,
        Refused::Rules(verdict) => {
            let code = verdict.code().unwrap_or("not accepted");
            if of == 1 {
                ApiError::forbidden(format!("the room's rules refuse this event ({code})"))
            } else {
                ApiError::forbidden(format!(
                    "the room's rules refuse message {index} of the batch ({code}); the {index} before it were sent"
                ))
            }
        }
    }
}

/// Builds one message on the room's current extremities and takes it into the room, as
/// [`rooms::accept_local`] does, without storing it yet.
fn build_and_take(
    state: &AppState,
    room_id: &str,
    template: &EventTemplate,
) -> Result<BuiltEvent, Refused> {
    let b = rooms::build_local(state, room_id, template)?;
    let verdict = {
        let mut all = state.rooms();
        let room = all
            .get_mut(room_id)
            .ok_or_else(|| ApiError::not_found(format!("unknown room {room_id}")))?;
        mxfed_core::pdu::check_format(&b.pdu, room.version()).map_err(ApiError::from)?;
        room.receive(&rooms::checked(&b.event_id, b.pdu.clone(), false))
    };
    if verdict != RoomVerdict::Accepted {
        return Err(Refused::Rules(verdict));
    }
    Ok(b)
}

/// Step 2 and 3: the events and their outbound rows (one fsynced commit), then the queues.
fn store_and_queue(
    state: &Arc<AppState>,
    room_id: &str,
    built: &[BuiltEvent],
) -> Result<(), ApiError> {
    let servers = rooms::destinations(state, room_id, &[]);
    let pdus: Vec<(&str, &Object)> = built
        .iter()
        .map(|b| (b.event_id.as_str(), &b.pdu))
        .collect();
    let entries: Vec<Entry> = built
        .iter()
        .map(|b| Entry {
            event_id: b.event_id.clone(),
            event: rooms::Kept::of(&b.pdu),
            verdict: RoomVerdict::Accepted,
            outlier: false,
            state_before: None,
            origin: state.server_name.clone(),
        })
        .collect();
    let count = entries.len();
    rooms::send_stored_together(state, room_id, entries, &pdus, &servers)?;
    state.metrics.local_commit(count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn request() -> (Request, oneshot::Receiver<Answer>) {
        let (answer, answered) = oneshot::channel();
        let r = Request {
            room_id: "!room:example.org".to_owned(),
            templates: Vec::new(),
            answer,
        };
        (r, answered)
    }

    /// The clock is tokio's paused one: it moves only when every task waits on a timer, so a
    /// wait that ends on an arrival takes no time and one that ends on its deadline takes
    /// exactly that long.
    #[tokio::test(start_paused = true)]
    async fn a_commit_waits_for_the_senders_it_answered_and_those_that_came_meanwhile() {
        let sends = Arc::new(Sends::default());
        let (r, _a) = request();
        sends.push(r);
        // A commit of two requests ends while one more waits: three are expected next.
        sends.committed(2, Duration::from_millis(1));
        let start = Instant::now();
        let gathering = tokio::spawn({
            let sends = Arc::clone(&sends);
            async move { sends.gather().await }
        });
        let mut answered = Vec::new();
        for _ in 0..2 {
            tokio::task::yield_now().await;
            assert!(!gathering.is_finished(), "took its group before all came");
            let (r, a) = request();
            sends.push(r);
            answered.push(a);
        }
        assert!(gathering.await.is_ok(), "the gathering task panicked");
        assert_eq!(start.elapsed(), Duration::ZERO, "waited for its deadline");
        assert_eq!(sends.take().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_waits_no_longer_than_a_sync_then_expects_only_who_came() {
        let sends = Sends::default();
        sends.committed(3, Duration::from_millis(1));
        let (r, _a) = request();
        sends.push(r);
        let start = Instant::now();
        sends.gather().await;
        let waited = start.elapsed();
        // tokio's timers tick in milliseconds.
        assert!(waited >= Duration::from_millis(1), "{waited:?}");
        assert!(waited <= Duration::from_millis(2), "{waited:?}");
        assert_eq!(sends.take().len(), 1);

        // One came: the next commit expects one, and does not wait for it.
        sends.committed(1, Duration::from_millis(1));
        let (r, _b) = request();
        sends.push(r);
        let start = Instant::now();
        sends.gather().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_sync_is_waited_for_at_most_gather_max() {
        let sends = Sends::default();
        sends.committed(8, Duration::from_secs(1));
        let start = Instant::now();
        sends.gather().await;
        let waited = start.elapsed();
        assert!(waited >= GATHER_MAX, "{waited:?}");
        assert!(
            waited <= GATHER_MAX + Duration::from_millis(1),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_sender_is_not_waited_for() {
        let sends = Sends::default();
        let start = Instant::now();
        // Nothing committed yet.
        sends.gather().await;
        sends.committed(1, Duration::from_millis(1));
        sends.gather().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
