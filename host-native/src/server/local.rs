//! Our users' messages, group-committed: the admin API's `send` and `send_batch` requests that
//! wait for a commit at the same time are built, stored and queued together, so that one
//! fsync covers all of them instead of two per request.
//!
//! Each request puts its messages in [`Sends`] and starts a committer task. The committer that
//! gets `state.local_commit` takes every request waiting by then (its own, unless an earlier
//! committer took it already) and, per room, in arrival order:
//! 1. builds each message on the previous one and takes it into the room (the core's rules
//!    decide; a refused message stops its request, the ones before it are kept, as a
//!    `send_batch` always did);
//! 2. stores the events with the room's extremities and state and, in the same fsynced commit,
//!    an outbound row naming each of them for every other server in the room
//!    ([`rooms::send_stored`]; the row holds no copy of the event's JSON): one fsync for
//!    the group;
//! 3. hands the PDUs to the destinations' queues and answers every request.
//!
//! So a request is answered only once its events and their outbound rows are durable, and a
//! PDU is sent only once its event is.
//!
//! Only messages come this way: they change no membership, so the servers to send to are the
//! same for the whole group. Membership and other state events keep the one-by-one path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
}

impl Sends {
    fn push(&self, r: Request) {
        self.lock().push(r);
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
    let mut by_room: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    for r in group {
        by_room.entry(r.room_id.clone()).or_default().push(r);
    }
    for (room_id, requests) in by_room {
        commit_room(state, &room_id, requests);
    }
}

/// Steps 1–3 of the module docs for the requests of one room.
fn commit_room(state: &Arc<AppState>, room_id: &str, requests: Vec<Request>) {
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
    for (r, (count, stop)) in requests.into_iter().zip(outcomes) {
        let mine: Vec<String> = ids.by_ref().take(count).collect();
        let answer = match (&stored, stop) {
            (Err(e), _) if count > 0 => Err(e.clone()),
            (_, Some(e)) => Err(e),
            _ => Ok(mine),
        };
        // The client may have hung up; its events are stored and sent all the same.
        let _ = r.answer.send(answer);
    }
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
    rooms::send_stored(state, room_id, &entries, &pdus, &servers)?;
    state.metrics.local_commit(entries.len());
    Ok(())
}
