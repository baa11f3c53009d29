//! Rooms: rebuilding the core `Room`s from storage, storing what the core decided, building and
//! sending our own events, taking in other servers' events (filling gaps with
//! `/get_missing_events`, else `/state`), and the join/leave/invite handshakes as the joining or
//! inviting side.

use std::collections::BTreeSet;
use std::sync::Arc;

use mxfed_core::auth::Pdu;
use mxfed_core::canonical::{self, Int, Object, ParseOptions, Value};
use mxfed_core::event::{self, BuiltEvent, EventTemplate};
use mxfed_core::pdu::{PduCheck, Verdict};
use mxfed_core::room::{
    invite_fallback, InviteFallback, RestrictedJoin, RestrictedJoinError, Room, RoomVerdict,
    ServerView,
};
use mxfed_core::state_res::StateMap;
use mxfed_core::RoomVersion;

use super::client::{encode_segment, FetchError};
use super::error::ApiError;
use super::store::{InviteChange, NewEvent, Reads as _, RoomWrite};
use super::{keys, log, now, warn, AppState};

/// A `PduCheck` for an event already checked (ours, or one read back from storage).
pub fn checked(event_id: &str, ev: Object, redacted: bool) -> PduCheck {
    PduCheck {
        event_id: Some(event_id.to_owned()),
        signatures: Vec::new(),
        content_hash_ok: Some(!redacted),
        verdict: if redacted {
            Verdict::Redacted
        } else {
            Verdict::Accepted
        },
        event: Some(ev),
    }
}

fn parse_stored(json: &str) -> Option<Object> {
    canonical::parse_object(json.as_bytes(), &ParseOptions::LEGACY).ok()
}

fn state_to_rows(s: &StateMap) -> Vec<(String, String, String)> {
    s.iter()
        .map(|((t, k), id)| (t.clone(), k.clone(), id.clone()))
        .collect()
}

fn state_to_text(s: &StateMap) -> String {
    serde_json::to_string(&state_to_rows(s)).unwrap_or_else(|_| "[]".into())
}

fn state_from_text(t: &str) -> StateMap {
    serde_json::from_str::<Vec<(String, String, String)>>(t)
        .unwrap_or_default()
        .into_iter()
        .map(|(a, b, c)| ((a, b), c))
        .collect()
}

/// A new, empty core room as the server keeps it: with compact history (the core drops the
/// bodies of messages once they are history; the database holds them, and every event the
/// server serves is read from it).
pub fn new_room(v: &'static RoomVersion) -> Room {
    let mut room = Room::new(v);
    room.set_compact_history(true);
    room
}

/// Rebuilds every room from the database: its events replayed in stored order through the same
/// core calls that first took them in.
///
/// # Errors
/// Database errors or an unknown room version.
pub fn load(state: &AppState) -> Result<usize, String> {
    let rooms = state.db().rooms().map_err(|e| e.to_string())?;
    let mut count = 0;
    for (room_id, version) in rooms {
        let (room, n) = load_room(state, &room_id, &version)?;
        count += n;
        state.rooms().insert(room_id, room);
    }
    Ok(count)
}

/// One room rebuilt from the database ([`load`]), with the number of events replayed.
fn load_room(state: &AppState, room_id: &str, version: &str) -> Result<(Room, usize), String> {
    let v = RoomVersion::get(version).map_err(|e| e.to_string())?;
    let mut room = new_room(v);
    let mut count = 0;
    // One row at a time: the room keeps what it needs of each (compact history), so holding
    // every row first would double the memory a start-up needs.
    let db = state.db();
    db.each_room_event(room_id, |e| {
        let Some(obj) = parse_stored(&e.json) else {
            warn(&format!(
                "stored event {} does not parse; skipped",
                e.event_id
            ));
            return;
        };
        let own_join = is_own_join(state, &obj);
        let check = checked(&e.event_id, obj, e.verdict == "redacted");
        if e.backfilled {
            room.add_backfilled(&check);
        } else if e.outlier {
            room.add_outlier(&check);
        } else if let Some(s) = &e.state_before {
            if own_join {
                room.receive_own_join(&check, state_from_text(s));
            } else {
                room.receive_with_state(&check, state_from_text(s));
            }
        } else {
            room.receive(&check);
        }
        count += 1;
    })
    .map_err(|e| e.to_string())?;
    Ok((room, count))
}

/// After a room's commit failed: the room as the database has it. Its events were taken into
/// the room in memory before the commit (so that the commit writes the extremities and state
/// they give); left there, they would be served, built on by our next events and counted as
/// known when a peer sends them again, though they were never stored.
fn reload_room(state: &AppState, room_id: &str) {
    let version = state
        .rooms()
        .get(room_id)
        .map(|r| r.version().id.to_owned());
    let Some(version) = version else { return };
    match load_room(state, room_id, &version) {
        Ok((room, _)) => {
            state.rooms().insert(room_id.to_owned(), room);
            state
                .written_state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(room_id);
        }
        Err(e) => warn(&format!(
            "room {room_id} after a failed commit: cannot reload it from the database: {e}"
        )),
    }
}

/// Whether a stored event is a join of one of our users: the only events of ours received with
/// a given state (the `send_join` answer's), replayed with [`Room::receive_own_join`].
fn is_own_join(state: &AppState, ev: &Object) -> bool {
    let sender = ev.get_str("sender").unwrap_or_default();
    ev.get_str("type") == Some("m.room.member")
        && ev.get_str("state_key") == Some(sender)
        && ev
            .get_object("content")
            .and_then(|c| c.get_str("membership"))
            == Some("join")
        && state.is_local_user(sender)
}

/// An event as the commit stores it: its canonical JSON and the fields the commit reads, taken
/// from a borrowed event (the room takes the event itself; copying it for the commit cost an
/// allocation per JSON value).
pub struct Kept {
    json: String,
    depth: i64,
    redaction: bool,
}

impl Kept {
    /// The parts of `ev` the commit needs.
    pub fn of(ev: &Object) -> Kept {
        Kept {
            json: ev.to_canonical_string(),
            depth: ev.get("depth").and_then(Value::as_int).unwrap_or(0),
            redaction: ev.get_str("type") == Some("m.room.redaction"),
        }
    }
}

/// One event to store.
pub struct Entry {
    /// The event ID.
    pub event_id: String,
    /// The PDU as kept.
    pub event: Kept,
    /// The room's verdict.
    pub verdict: RoomVerdict,
    /// Known only through an auth chain or state answer.
    pub outlier: bool,
    /// The state given with it.
    pub state_before: Option<StateMap>,
    /// Where it came from.
    pub origin: String,
}

/// Stores events with the room's new extremities and current state (one fsync), applies
/// redactions, and wakes the admin API's waits.
pub fn commit(state: &AppState, room_id: &str, entries: &[Entry]) -> Result<(), ApiError> {
    commit_and_queue(state, room_id, entries, &[], &[])
}

/// [`commit`], with the outbound rows of every event stored for each of `destinations` and the
/// invites' bookkeeping that goes with the events in the same commit ([`send_stored`] then
/// hands the PDUs to the destinations' tasks).
fn commit_and_queue(
    state: &AppState,
    room_id: &str,
    entries: &[Entry],
    destinations: &[String],
    invites: &[InviteChange],
) -> Result<(), ApiError> {
    let job = RoomCommit {
        room_id,
        entries,
        destinations,
        invites,
    };
    commit_many(state, &[job])
        .pop()
        .unwrap_or_else(|| Err(ApiError::internal("a write went missing")))
}

/// One room's events to store ([`commit_many`]), with the servers each is queued for and the
/// invites' bookkeeping that goes with them.
struct RoomCommit<'a> {
    room_id: &'a str,
    entries: &'a [Entry],
    destinations: &'a [String],
    invites: &'a [InviteChange],
}

/// What a room's commit writes besides its events, read from the room as it is now.
struct Prepared {
    extremities: Vec<String>,
    /// The current state, and its rows when it differs from the state last written.
    cur: Arc<StateMap>,
    state_rows: Option<Vec<(String, String, String)>>,
    /// Per entry: the state given with it, as text; whether it is backfilled history.
    given: Vec<Option<String>>,
    history: Vec<bool>,
    /// `(target, redaction)` for each accepted redaction the core says applies: written in the
    /// same commit as the redaction, so a crash or a failed write cannot leave a redaction
    /// stored while its target is still served whole.
    redactions: Vec<(String, String)>,
}

impl Prepared {
    fn of(state: &AppState, room_id: &str, entries: &[Entry]) -> Result<Prepared, ApiError> {
        let (extremities, cur, history, redactions) = {
            let rooms = state.rooms();
            let room = rooms
                .get(room_id)
                .ok_or_else(|| ApiError::not_found("unknown room"))?;
            // The core decides whether a redaction applies (an outlier's does only when it was
            // backfilled: history from before we joined).
            let redactions = entries
                .iter()
                .filter(|e| {
                    e.event.redaction
                        && matches!(e.verdict, RoomVerdict::Accepted | RoomVerdict::Redacted)
                })
                .filter_map(|e| {
                    let target = room.redaction_target(&e.event_id)?;
                    Some((target.to_owned(), e.event_id.clone()))
                })
                .collect::<Vec<_>>();
            (
                room.forward_extremities()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>(),
                room.current_state_shared(),
                entries
                    .iter()
                    .map(|e| room.is_backfilled(&e.event_id))
                    .collect::<Vec<_>>(),
                redactions,
            )
        };
        let given = entries
            .iter()
            .map(|e| e.state_before.as_ref().map(state_to_text))
            .collect();
        let state_changed = state
            .written_state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(room_id)
            .is_none_or(|w| !Arc::ptr_eq(w, &cur) && **w != *cur);
        let state_rows = state_changed.then(|| state_to_rows(&cur));
        Ok(Prepared {
            extremities,
            cur,
            state_rows,
            given,
            history,
            redactions,
        })
    }

    fn rows<'a>(&'a self, room_id: &'a str, entries: &'a [Entry]) -> Vec<NewEvent<'a>> {
        entries
            .iter()
            .zip(&self.given)
            .zip(&self.history)
            .map(|((e, sb), backfilled)| NewEvent {
                event_id: &e.event_id,
                room_id,
                depth: e.event.depth,
                json: &e.event.json,
                verdict: e.verdict.as_str(),
                reason: e.verdict.code(),
                outlier: e.outlier,
                backfilled: *backfilled,
                state_before: sb.as_deref(),
                origin: &e.origin,
            })
            .collect()
    }

    /// After the commit: the state now written.
    fn committed(self, state: &AppState, room_id: &str) {
        if self.state_rows.is_some() {
            state
                .written_state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(room_id.to_owned(), self.cur);
        }
    }
}

/// Stores rooms' events, each with the room's extremities and current state and its outbound
/// rows, in one commit (one fsync); applies redactions and wakes the admin API's waits. One
/// result per job, in order: a room whose write fails gets its error, the others are stored.
fn commit_many(state: &AppState, jobs: &[RoomCommit<'_>]) -> Vec<Result<(), ApiError>> {
    let prepared: Vec<Result<Prepared, ApiError>> = jobs
        .iter()
        .map(|j| Prepared::of(state, j.room_id, j.entries))
        .collect();
    let rows: Vec<Vec<NewEvent<'_>>> = jobs
        .iter()
        .zip(&prepared)
        .map(|(j, p)| match p {
            Ok(p) => p.rows(j.room_id, j.entries),
            Err(_) => Vec::new(),
        })
        .collect();
    let writes: Vec<RoomWrite<'_>> = jobs
        .iter()
        .zip(&prepared)
        .zip(&rows)
        .filter_map(|((j, p), rows)| {
            let p = p.as_ref().ok()?;
            Some(RoomWrite {
                room_id: j.room_id,
                events: rows,
                extremities: &p.extremities,
                state: p.state_rows.as_deref(),
                destinations: j.destinations,
                redactions: &p.redactions,
                invites: j.invites,
            })
        })
        .collect();
    let mut db = state.db();
    let stored = db.store_many(&writes);
    let mut outcomes = match stored {
        Ok(o) => o.into_iter().map(|r| r.map_err(ApiError::from)).collect(),
        Err(e) => {
            let e = ApiError::from(e);
            vec![Err(e); writes.len()]
        }
    }
    .into_iter();
    drop(rows);
    let mut results = Vec::with_capacity(jobs.len());
    for (j, p) in jobs.iter().zip(prepared) {
        let result = match p {
            Err(e) => Err(e),
            Ok(p) => {
                let r = outcomes
                    .next()
                    .unwrap_or_else(|| Err(ApiError::internal("a write went missing")));
                if r.is_ok() {
                    p.committed(state, j.room_id);
                }
                r
            }
        };
        results.push(result);
    }
    drop(db);
    for (j, r) in jobs.iter().zip(&results) {
        if r.is_err() {
            reload_room(state, j.room_id);
        }
    }
    state.changed.notify_waiters();
    results
}

/// Commits that wait for the writer, to be made together: received events
/// ([`commit_blocking`]) and our users' messages ([`send_stored_together`]).
#[derive(Default)]
pub struct Commits {
    waiting: std::sync::Mutex<Vec<CommitJob>>,
    /// Writes asked for and not yet answered (waiting, or in the commit under way).
    pending: std::sync::atomic::AtomicUsize,
    /// Held by whoever makes a group's commit: those that come meanwhile form the next group.
    leader: tokio::sync::Mutex<()>,
}

struct CommitJob {
    room_id: String,
    entries: Vec<Entry>,
    /// The servers its events are queued for, in the same commit (our own events).
    destinations: Vec<String>,
    /// The invites' bookkeeping that goes with its events (our join answering an invite).
    invites: Vec<InviteChange>,
    done: tokio::sync::oneshot::Sender<Result<(), ApiError>>,
}

impl Commits {
    /// Writes asked for and not yet answered.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes waiting for the next commit (not yet taken by one).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CommitJob>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a write; the answer comes once a commit has made it durable (or failed).
    fn queue(
        &self,
        room_id: &str,
        entries: Vec<Entry>,
        destinations: Vec<String>,
        invites: Vec<InviteChange>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), ApiError>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().push(CommitJob {
            room_id: room_id.to_owned(),
            entries,
            destinations,
            invites,
            done,
        });
        answer
    }
}

/// Commits every queued write in one commit (the caller leads: it holds `Commits::leader`)
/// and answers each. On a blocking thread.
fn commit_queued(state: &AppState) {
    let jobs = std::mem::take(&mut *state.commits.lock());
    if jobs.is_empty() {
        return;
    }
    let mut work = Vec::with_capacity(jobs.len());
    let mut done = Vec::with_capacity(jobs.len());
    for j in jobs {
        work.push((j.room_id, j.entries, j.destinations, j.invites));
        done.push(j.done);
    }
    let views: Vec<RoomCommit<'_>> = work
        .iter()
        .map(|(room_id, entries, destinations, invites)| RoomCommit {
            room_id,
            entries,
            destinations,
            invites,
        })
        .collect();
    let results = commit_many(state, &views);
    state.metrics.room_commit(work.len());
    state
        .commits
        .pending
        .fetch_sub(work.len(), std::sync::atomic::Ordering::Relaxed);
    for (to, r) in done.into_iter().zip(results) {
        let _ = to.send(r);
    }
}

/// [`commit`] on a blocking thread, for async paths: the commit waits for its fsync (and for
/// the database) without stalling a runtime thread. Writes asked for while another commit runs
/// (other rooms' transactions, from other servers, and our users' messages) are made together
/// in the next one: one fsync for all of them ([`commit_many`]), each room in a savepoint of its
/// own. A caller is answered once its room's events are durable.
pub async fn commit_blocking(
    state: &Arc<AppState>,
    room_id: &str,
    entries: Vec<Entry>,
) -> Result<(), ApiError> {
    commit_blocking_with(state, room_id, entries, Vec::new()).await
}

/// [`commit_blocking`], with the invites' bookkeeping that goes with the events in the same
/// commit (our join through another server accepting an invite).
async fn commit_blocking_with(
    state: &Arc<AppState>,
    room_id: &str,
    entries: Vec<Entry>,
    invites: Vec<InviteChange>,
) -> Result<(), ApiError> {
    let answer = state.commits.queue(room_id, entries, Vec::new(), invites);
    // In a task of its own, so that a caller that goes away (a client hanging up) cannot leave
    // its events in the list with no commit to come.
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let _leader = state.commits.leader.lock().await;
        if state.commits.queued() == 0 {
            return;
        }
        let st = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || commit_queued(&st)).await;
    });
    answer
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("the commit was dropped")))
}

/// [`send_stored`] through the same queue as [`commit_blocking`], for a blocking thread: our
/// events and their outbound rows are committed together with the received events waiting at
/// the same time (one fsync), then handed to the destinations' queues.
pub fn send_stored_together(
    state: &Arc<AppState>,
    room_id: &str,
    entries: Vec<Entry>,
    pdus: &[(&str, &Object)],
    dests: &[String],
) -> Result<(), ApiError> {
    let mut answer = state
        .commits
        .queue(room_id, entries, dests.to_vec(), Vec::new());
    // Whichever comes first: our answer (another leader's commit took our write), or the lead
    // (then we commit what is queued, our write among it, unless the commit whose end we
    // waited for took it). A waiter's turn to lead can come long after its write is durable.
    let result = tokio::runtime::Handle::current().block_on(async {
        tokio::select! {
            biased;
            r = &mut answer => r.unwrap_or_else(|_| Err(ApiError::internal("the commit was dropped"))),
            _leader = state.commits.leader.lock() => {
                if let Ok(r) = answer.try_recv() {
                    return r;
                }
                commit_queued(state);
                answer
                    .await
                    .unwrap_or_else(|_| Err(ApiError::internal("the commit was dropped")))
            }
        }
    });
    result?;
    state.outbound.hand_over(state, dests, room_id, pdus);
    Ok(())
}

/// A stored event as served: redacted if a redaction applies to it.
pub fn served(state: &AppState, event_id: &str) -> Option<(Object, super::store::StoredEvent)> {
    let stored = state.reads().event(event_id).ok()??;
    Some((served_row(state, &stored)?, stored))
}

/// [`served`] for a row read already.
pub fn served_row(state: &AppState, stored: &super::store::StoredEvent) -> Option<Object> {
    let ev = parse_stored(&stored.json)?;
    if stored.redacted_by.is_none() {
        return Some(ev);
    }
    let v = state.rooms().get(&stored.room_id).map(Room::version)?;
    Some(event::redact(&ev, v))
}

/// Serves a list of known events (redacted where needed), in the given order.
pub fn served_list<'a>(state: &AppState, ids: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    ids.into_iter()
        .filter_map(|id| served(state, id))
        .map(|(e, _)| Value::Object(e))
        .collect()
}

/// Serves known events to `server` as history visibility allows (the core's
/// [`Room::server_view`]): what it may not see goes out redacted.
pub fn served_to<'a>(
    state: &AppState,
    server: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Vec<Value> {
    ids.into_iter()
        .filter_map(|id| served_one_to(state, server, id))
        .map(Value::Object)
        .collect()
}

/// One known event as `server` may see it (see [`served_to`]).
pub fn served_one_to(state: &AppState, server: &str, id: &str) -> Option<Object> {
    let (ev, stored) = served(state, id)?;
    let rooms = state.rooms();
    let room = rooms.get(&stored.room_id)?;
    Some(match room.server_view(id, server) {
        Some(ServerView::Full) => ev,
        _ => event::redact(&ev, room.version()),
    })
}

/// Whether one of our users is joined to `room` now: whether we are in it (Synapse's
/// `is_host_joined` for ourselves). A room we have left is known but no longer followed.
pub fn resident(state: &AppState, room: &Room) -> bool {
    room.server_joined(&state.server_name)
}

/// [`resident`], by room ID (`false` for a room we do not know).
pub fn resident_in(state: &AppState, room_id: &str) -> bool {
    state
        .rooms()
        .get(room_id)
        .is_some_and(|r| resident(state, r))
}

/// [`resident_in`], or one of our users is joining the room ([`AppState::joining`]).
pub fn resident_or_joining(state: &AppState, room_id: &str) -> bool {
    resident_in(state, room_id)
        || state
            .joining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(room_id)
}

/// Joins of one room by our users under way ([`AppState::joining`]).
#[derive(Debug)]
pub struct Joins {
    /// The room's version (from the `make_join` answer): a transaction's events for a room we
    /// do not know yet are planned with it.
    pub version: &'static RoomVersion,
    /// Our users joining, once per join.
    pub users: Vec<String>,
}

/// The version of a room one of our users is joining.
pub fn joining_version(state: &AppState, room_id: &str) -> Option<&'static RoomVersion> {
    state
        .joining
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(room_id)
        .map(|j| j.version)
}

/// Whether `user` is joining the room through another server now.
pub fn is_joining(state: &AppState, room_id: &str, user: &str) -> bool {
    state
        .joining
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(room_id)
        .is_some_and(|j| j.users.iter().any(|u| u == user))
}

/// A join of ours under way ([`AppState::joining`]), for as long as this lives.
struct Joining<'a> {
    state: &'a AppState,
    room_id: &'a str,
    user: &'a str,
}

impl<'a> Joining<'a> {
    fn start(
        state: &'a AppState,
        room_id: &'a str,
        user: &'a str,
        version: &'static RoomVersion,
    ) -> Joining<'a> {
        state
            .joining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(room_id.to_owned())
            .or_insert_with(|| Joins {
                version,
                users: Vec::new(),
            })
            .users
            .push(user.to_owned());
        Joining {
            state,
            room_id,
            user,
        }
    }
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        let mut joining = self
            .state
            .joining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(j) = joining.get_mut(self.room_id) {
            if let Some(i) = j.users.iter().position(|u| u == self.user) {
                j.users.remove(i);
            }
            if j.users.is_empty() {
                joining.remove(self.room_id);
            }
        }
        drop(joining);
        // Waits for the join (the admin API's) end with it.
        self.state.changed.notify_waiters();
    }
}

/// The local user to name in `join_authorised_via_users_server` when `user` asks to join a
/// restricted room through us (`None`: no authorisation needed). The core decides.
///
/// # Errors
/// 400 `M_UNABLE_TO_AUTHORISE_JOIN`, 403 `M_FORBIDDEN` or 400 `M_UNABLE_TO_GRANT_JOIN`.
pub fn restricted_join_via(
    state: &AppState,
    room_id: &str,
    user: &str,
) -> Result<Option<String>, ApiError> {
    let rooms = state.rooms();
    let room = rooms
        .get(room_id)
        .ok_or_else(|| ApiError::not_found("unknown room"))?;
    let decision = room.restricted_join(
        user,
        |u| state.is_local_user(u),
        |allowed| {
            rooms
                .get(allowed)
                .filter(|r| resident(state, r))
                .map(|r| r.membership(user).as_deref() == Some("join"))
        },
    );
    match decision {
        Ok(RestrictedJoin::Via(u)) => Ok(Some(u)),
        Ok(_) => Ok(None),
        Err(e) => {
            let code = match e {
                RestrictedJoinError::NotAllowed => return Err(ApiError::forbidden(e.to_string())),
                RestrictedJoinError::UnableToAuthorise => "M_UNABLE_TO_AUTHORISE_JOIN",
                _ => "M_UNABLE_TO_GRANT_JOIN",
            };
            Err(ApiError::new(400, code, e.to_string()))
        }
    }
}

/// A `send_join` naming one of our users in `join_authorised_via_users_server` gets our signature
/// before anything checks, stores or sends it (DIGEST §18.1), once the core has decided again that
/// the joiner may join through us (the joiner could have named our user on its own).
///
/// # Errors
/// The errors of [`restricted_join_via`]; a signing failure.
pub fn countersign_restricted_join(
    state: &AppState,
    mut ev: Object,
    v: &'static RoomVersion,
) -> Result<Object, ApiError> {
    let via = ev
        .get_object("content")
        .and_then(|c| c.get_str("join_authorised_via_users_server"))
        .map(str::to_owned);
    let Some(via) = via else {
        return Ok(ev);
    };
    if !v.restricted_join_rule || !state.is_local_user(&via) {
        return Ok(ev);
    }
    let room_id = ev.get_str("room_id").unwrap_or_default().to_owned();
    let sender = ev.get_str("sender").unwrap_or_default().to_owned();
    if restricted_join_via(state, &room_id, &sender)?.is_none() {
        // Already joined or invited: the room's rules need no signature of ours.
        return Ok(ev);
    }
    let key = state
        .keys
        .first()
        .ok_or_else(|| ApiError::internal("no signing key"))?;
    event::hash_and_sign_event(&mut ev, v, &state.server_name, key)?;
    Ok(ev)
}

/// Builds, hashes and signs a new event of ours in a known room (not yet received).
pub fn build_local(
    state: &AppState,
    room_id: &str,
    template: &EventTemplate,
) -> Result<BuiltEvent, ApiError> {
    let rooms = state.rooms();
    let room = rooms
        .get(room_id)
        .ok_or_else(|| ApiError::not_found(format!("unknown room {room_id}")))?;
    build_in(state, room, template)
}

fn build_in(
    state: &AppState,
    room: &Room,
    template: &EventTemplate,
) -> Result<BuiltEvent, ApiError> {
    let v = room.version();
    let (prev, cur) = room.build_on_for(template);
    let local = super::random_token(18)?;
    let key = state
        .keys
        .first()
        .ok_or_else(|| ApiError::internal("no signing key"))?;
    Ok(event::build_event(
        v,
        &state.server_name,
        template,
        &prev,
        &cur,
        now(),
        key,
        Some(&local),
    )?)
}

/// Receives one of our own events into its room, stores it and sends it to every other server
/// in the room. The room's rules decide: an event they reject or soft-fail is neither stored nor
/// sent (403).
pub fn accept_local(state: &Arc<AppState>, built: &BuiltEvent) -> Result<(), ApiError> {
    take_and_store_local(state, built, true, &[])
}

/// [`accept_local`] without sending the event to anyone: for tests that make a server keep
/// events to itself (a gap for the others to fill).
pub fn accept_local_unsent(state: &Arc<AppState>, built: &BuiltEvent) -> Result<(), ApiError> {
    take_and_store_local(state, built, false, &[])
}

/// Takes one of our own events into `room` (not stored): the entry to store, or 403 when the
/// room's rules refuse it.
fn take_local(state: &AppState, room: &mut Room, built: &BuiltEvent) -> Result<Entry, ApiError> {
    // What other servers would refuse (over 64 KiB, fields too long) is refused here.
    mxfed_core::pdu::check_format(&built.pdu, room.version())?;
    // Straight into the room, without a trial copy: copying the room costs O(its events)
    // per event, which made sending quadratic (most of the CPU time of a 4,000-message
    // run). Our event cites the current extremities, so it cannot be soft-failed; if the
    // rules reject it, it stays in memory as a rejected event, which is never stored, sent,
    // served or cited as a prev event, and is not replayed after a restart.
    let verdict = room.receive(&checked(&built.event_id, built.pdu.clone(), false));
    if verdict != RoomVerdict::Accepted {
        return Err(ApiError::forbidden(format!(
            "the room's rules refuse this event ({})",
            verdict.code().unwrap_or("not accepted")
        )));
    }
    Ok(Entry {
        event_id: built.event_id.clone(),
        event: Kept::of(&built.pdu),
        verdict,
        outlier: false,
        state_before: None,
        origin: state.server_name.clone(),
    })
}

/// Takes one of our events into its room, then stores it with its outbound rows (when `send`)
/// and `invites`, the bookkeeping that goes with it, in one commit.
fn take_and_store_local(
    state: &Arc<AppState>,
    built: &BuiltEvent,
    send: bool,
    invites: &[InviteChange],
) -> Result<(), ApiError> {
    let entry = {
        let mut rooms = state.rooms();
        let room = rooms
            .get_mut(&built.room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        take_local(state, room, built)?
    };
    let pdus = [(built.event_id.as_str(), &built.pdu)];
    // Every server in the room before or after the event (a kicked or banned server gets its
    // own kick or ban), and the invitee's server for a withdrawn invite: the core decides.
    let dests: Vec<String> = if send {
        state
            .rooms()
            .get(&built.room_id)
            .map(|r| r.recipients(&built.event_id))
            .unwrap_or_default()
            .into_iter()
            .filter(|s| *s != state.server_name)
            .collect()
    } else {
        Vec::new()
    };
    send_stored_with(state, &built.room_id, &[entry], &pdus, &dests, invites)
}

/// The servers an event of `room_id` goes to: every server with a member joined (after the
/// room took the event), but us and `exclude`.
pub fn destinations(state: &AppState, room_id: &str, exclude: &[&str]) -> Vec<String> {
    state
        .rooms()
        .get(room_id)
        .map(Room::joined_servers)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| *s != state.server_name && !exclude.contains(&s.as_str()))
        .collect()
}

/// Stores events the room has taken in together with their outbound rows for `dests`, in one
/// commit (one fsync: an event is queued exactly when it is stored), then hands the PDUs to
/// the destinations' queues (one copy shared by all; none is made without destinations).
/// Nothing is sent if the commit fails.
pub fn send_stored(
    state: &Arc<AppState>,
    room_id: &str,
    entries: &[Entry],
    pdus: &[(&str, &Object)],
    dests: &[String],
) -> Result<(), ApiError> {
    send_stored_with(state, room_id, entries, pdus, dests, &[])
}

/// [`send_stored`], with the invites' bookkeeping that goes with the events in their commit.
fn send_stored_with(
    state: &Arc<AppState>,
    room_id: &str,
    entries: &[Entry],
    pdus: &[(&str, &Object)],
    dests: &[String],
    invites: &[InviteChange],
) -> Result<(), ApiError> {
    commit_and_queue(state, room_id, entries, dests, invites)?;
    state.outbound.hand_over(state, dests, room_id, pdus);
    Ok(())
}

/// Builds, accepts, stores and sends one of our events. The caller holds the room's lock
/// ([`AppState::lock_room`]).
pub fn send_local(
    state: &Arc<AppState>,
    room_id: &str,
    template: EventTemplate,
) -> Result<String, ApiError> {
    send_local_with(state, room_id, template, |_| Vec::new())
}

/// [`send_local`], storing the invites' bookkeeping `invites` makes of the built event in the
/// event's commit: an invite of one of our users with its `invites` row, a join or leave with
/// its invite's new status. Both are stored, or (a failed commit) neither.
pub fn send_local_with(
    state: &Arc<AppState>,
    room_id: &str,
    template: EventTemplate,
    invites: impl FnOnce(&BuiltEvent) -> Vec<InviteChange>,
) -> Result<String, ApiError> {
    let built = build_local(state, room_id, &template)?;
    let invites = invites(&built);
    take_and_store_local(state, &built, true, &invites)?;
    Ok(built.event_id)
}

/// An event template without `redacts`.
pub fn template(
    room_id: Option<&str>,
    kind: &str,
    sender: &str,
    state_key: Option<&str>,
    content: Object,
) -> EventTemplate {
    EventTemplate {
        room_id: room_id.map(str::to_owned),
        event_type: kind.to_owned(),
        sender: sender.to_owned(),
        state_key: state_key.map(str::to_owned),
        content,
        redacts: None,
    }
}

fn obj(json: &str) -> Object {
    canonical::parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap_or_default()
}

/// Creates a room: create, the creator's join, power levels, join rules (invite) and history
/// visibility (shared). Returns the room ID. All five events are built and taken into a room
/// of their own first; only when the room's rules accept them all is the room stored (one
/// commit) and made known, so a refused event leaves nothing behind. Takes no room lock: no
/// one else knows the new room yet.
pub fn create_room(
    state: &Arc<AppState>,
    creator: &str,
    version: &str,
) -> Result<String, ApiError> {
    let v = RoomVersion::get(version)?;
    let mut content = Object::new();
    content.insert("room_version", version);
    if !v.implicit_room_creator {
        content.insert("creator", creator);
    }
    // v12 create events have no room ID (it is the hash of the event); older versions name one.
    let room_id_for_create = if v.room_id_from_create_event {
        None
    } else {
        Some(format!(
            "!{}:{}",
            super::random_token(18)?,
            state.server_name
        ))
    };
    let mut room = new_room(v);
    let create = build_in(
        state,
        &room,
        &template(
            room_id_for_create.as_deref(),
            "m.room.create",
            creator,
            Some(""),
            content,
        ),
    )?;
    let room_id = create.room_id.clone();
    let mut entries = vec![take_local(state, &mut room, &create)?];

    let display = state.reads().user(creator)?.and_then(|(d, _)| d);
    let mut join = obj(r#"{"membership":"join"}"#);
    if let Some(d) = display {
        join.insert("displayname", d);
    }
    let mut users = Object::new();
    // From v12 creators have infinite power and must not be listed.
    if !v.room_id_from_create_event {
        users.insert(creator, Int::saturating(100));
    }
    let mut pl = obj(
        r#"{"ban":50,"events":{"m.room.history_visibility":100,"m.room.power_levels":100,"m.room.name":50,"m.room.topic":50},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users_default":0}"#,
    );
    pl.insert("users", users);
    let rest = [
        ("m.room.member", creator, join),
        ("m.room.power_levels", "", pl),
        ("m.room.join_rules", "", obj(r#"{"join_rule":"invite"}"#)),
        (
            "m.room.history_visibility",
            "",
            obj(r#"{"history_visibility":"shared"}"#),
        ),
    ];
    for (kind, key, content) in rest {
        let t = template(Some(&room_id), kind, creator, Some(key), content);
        let built = build_in(state, &room, &t)?;
        entries.push(take_local(state, &mut room, &built)?);
    }

    // No other server is in the room yet: nothing to send.
    state.write(|db| db.add_room(&room_id, version))?;
    state.rooms().insert(room_id.clone(), room);
    if let Err(e) = commit(state, &room_id, &entries) {
        state.rooms().remove(&room_id);
        if let Err(forget) = state.write(|db| db.remove_room(&room_id)) {
            warn(&format!(
                "room {room_id} not stored and its row not removed: {forget}"
            ));
        }
        return Err(e);
    }
    Ok(room_id)
}

/// A state event or message of ours. The caller holds the room's lock
/// ([`AppState::lock_room`]).
pub fn send_event(
    state: &Arc<AppState>,
    room_id: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Object,
    redacts: Option<&str>,
) -> Result<String, ApiError> {
    let mut t = template(Some(room_id), kind, sender, state_key, content);
    t.redacts = redacts.map(str::to_owned);
    send_local(state, room_id, t)
}

/// [`send_local`] on a blocking thread, for the admin API: its commit waits for the fsync (and
/// for the database, which another room's commit may hold), which must not stall a runtime
/// thread serving federation meanwhile. The caller holds the room's lock.
pub async fn send_local_blocking(
    state: &Arc<AppState>,
    room_id: &str,
    t: EventTemplate,
) -> Result<String, ApiError> {
    send_local_blocking_with(state, room_id, t, |_| Vec::new()).await
}

/// [`send_local_with`] on a blocking thread (see [`send_local_blocking`]).
pub async fn send_local_blocking_with(
    state: &Arc<AppState>,
    room_id: &str,
    t: EventTemplate,
    invites: impl FnOnce(&BuiltEvent) -> Vec<InviteChange> + Send + 'static,
) -> Result<String, ApiError> {
    let (st, room) = (Arc::clone(state), room_id.to_owned());
    blocking(move || send_local_with(&st, &room, t, invites)).await
}

/// Runs `f` (which stores, so waits for fsyncs) on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("blocking task: {e}"))))
}

// ------------------------------------------------------------------------------------------------
// Taking in other servers' events
// ------------------------------------------------------------------------------------------------

/// Checks events (format, signatures, hashes), fetching the keys they need first.
pub async fn check_events(
    state: &AppState,
    v: &'static RoomVersion,
    events: Vec<Object>,
) -> Vec<PduCheck> {
    let refs: Vec<&Object> = events.iter().collect();
    keys::ensure_for_events(state, &refs, v).await;
    super::checks::check_all(events, v, keys::key_ring(state)).await
}

fn objects(list: Option<&Value>) -> Vec<Object> {
    list.and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_object)
        .cloned()
        .collect()
}

/// Adds the events of `good` to the room with `add`, in causal order, passing over those
/// `known` says the room has; returns them as entries to store (kept as outliers, from
/// `origin`).
fn add_in_causal_order(
    room: &mut Room,
    good: &[(PduCheck, Pdu)],
    origin: &str,
    known: impl Fn(&Room, &str) -> bool,
    add: impl Fn(&mut Room, &PduCheck) -> RoomVerdict,
) -> Vec<Entry> {
    let pdus: Vec<Pdu> = good.iter().map(|(_, p)| p.clone()).collect();
    let mut entries = Vec::new();
    for i in mxfed_core::room::causal_order(&pdus) {
        let (c, p) = &good[i];
        if known(room, &p.event_id) {
            continue;
        }
        let verdict = add(room, c);
        entries.push(Entry {
            event_id: p.event_id.clone(),
            event: Kept::of(&p.event),
            verdict,
            outlier: true,
            state_before: None,
            origin: origin.to_owned(),
        });
    }
    entries
}

/// Whether a fetched event belongs to `room_id` (a v12 create event carries no room ID: its
/// room's ID is the hash of the event). Events of other rooms in an answer (`/state`,
/// `send_join`, `/get_missing_events`, `/backfill`, `/event_auth`) are dropped, as Synapse drops
/// them: kept under this room they would enter its state and its auth checks, and the genuine
/// copy, in its own room, would never be stored (events are stored once, by ID).
fn of_room(p: &Pdu, v: &'static RoomVersion, room_id: &str) -> bool {
    match p.room_id() {
        Some(r) => r == room_id,
        None => event::room_id_from_create(&p.event, v).is_ok_and(|r| r == room_id),
    }
}

/// Adds events as outliers (auth chains and states), in causal order; returns the state map of
/// `state_ids` among them that were accepted.
async fn add_outliers(
    state: &Arc<AppState>,
    room_id: &str,
    origin: &str,
    checks: Vec<PduCheck>,
) -> Result<(), ApiError> {
    let entries = {
        let mut rooms = state.rooms();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        let v = room.version();
        let mut good: Vec<(PduCheck, Pdu)> = Vec::new();
        for c in checks {
            if let Some(p) = c.pdu(v) {
                if !room.contains(&p.event_id) && of_room(&p, v, room_id) {
                    good.push((c, p));
                }
            }
        }
        add_in_causal_order(
            room,
            &good,
            origin,
            |room, id| room.contains(id),
            Room::add_outlier,
        )
    };
    commit_blocking(state, room_id, entries).await
}

fn state_map_of(events: &[PduCheck], v: &'static RoomVersion, room_id: &str) -> StateMap {
    events
        .iter()
        .filter(|c| !matches!(c.verdict, Verdict::Rejected { .. }))
        .filter_map(|c| c.pdu(v))
        .filter(|p| of_room(p, v, room_id))
        .filter_map(|p| Some((p.state_pair()?, p.event_id)))
        .collect()
}

/// A request of ours to `origin` that must answer before `until`: the end of the time an
/// incoming transaction may spend filling gaps (`[limits] gap_fill_seconds`; its sender waits
/// for the answer, and Synapse gives up after 60 s, then retries and backs off from us when
/// refused). 504 `M_UNKNOWN` when it does not answer in time.
async fn fetch_until(
    state: &AppState,
    until: tokio::time::Instant,
    origin: &str,
    method: &str,
    path: &str,
    body: Option<&Object>,
) -> Result<Object, ApiError> {
    match tokio::time::timeout_at(until, state.client.json(origin, method, path, body)).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ApiError::new(
            504,
            "M_UNKNOWN",
            format!("{origin} did not answer in time for this transaction"),
        )),
    }
}

/// `/event_auth` of an event from `origin`: its auth chain becomes outliers (the events of it
/// we lack). `until` bounds the request (`None`: the client's own timeout only).
async fn fetch_auth_chain(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    event_id: &str,
    until: Option<tokio::time::Instant>,
) -> Result<(), ApiError> {
    let path = format!(
        "/_matrix/federation/v1/event_auth/{}/{}",
        encode_segment(room_id),
        encode_segment(event_id)
    );
    let answer = match until {
        Some(until) => fetch_until(state, until, origin, "GET", &path, None).await?,
        None => state.client.json(origin, "GET", &path, None).await?,
    };
    let chain = check_events(state, v, objects(answer.get("auth_chain"))).await;
    add_outliers(state, room_id, origin, chain).await
}

/// `/state` at an event from `origin`: its state and auth chain become outliers; returns the
/// state before the event.
async fn state_at(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    event_id: &str,
    until: tokio::time::Instant,
) -> Result<StateMap, ApiError> {
    let path = format!(
        "/_matrix/federation/v1/state/{}?event_id={}",
        encode_segment(room_id),
        encode_segment(event_id)
    );
    let answer = fetch_until(state, until, origin, "GET", &path, None).await?;
    let pdus = check_events(state, v, objects(answer.get("pdus"))).await;
    let auth = check_events(state, v, objects(answer.get("auth_chain"))).await;
    let map = state_map_of(&pdus, v, room_id);
    let mut all = auth;
    all.extend(pdus);
    add_outliers(state, room_id, origin, all).await?;
    Ok(map)
}

/// Receives one checked event of another server, fetching what its prev events need (before
/// `until`).
async fn receive_remote(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    check: PduCheck,
    fill_gaps: bool,
    until: tokio::time::Instant,
) -> Result<RoomVerdict, ApiError> {
    let Some(ev) = check.event.clone() else {
        return Err(ApiError::invalid("no event"));
    };
    let pdu = Pdu::new(ev, v)?;
    let missing = |state: &AppState| -> Option<Vec<String>> {
        let rooms = state.rooms();
        let room = rooms.get(room_id)?;
        if room.contains(&pdu.event_id) && !room.is_outlier(&pdu.event_id) {
            return Some(vec!["known".into()]);
        }
        Some(room.unknown_prev_events(&pdu))
    };
    let mut gap = missing(state).ok_or_else(|| ApiError::not_found("unknown room"))?;
    if gap.first().is_some_and(|g| g == "known") {
        return Ok(RoomVerdict::Accepted);
    }
    if !gap.is_empty() && fill_gaps {
        fetch_missing(state, origin, room_id, v, &pdu, until).await;
        gap = missing(state).unwrap_or_default();
        // A pushed event whose predecessors its sender did not give us is not taken in with
        // state the sender chooses (`/state` at the event itself: it could become the room's
        // only extremity, on that state). Synapse refuses it so too; it is kept and tried again
        // ([`defer_if_gap`]). The events `/get_missing_events` brought are another matter: the
        // earliest of them is placed with `/state` (below, `fill_gaps` false), as Synapse does
        // for pulled events.
        if !gap.is_empty() {
            return Err(ApiError::forbidden(
                "your server isn't divulging details about prev_events referenced in this event",
            ));
        }
    }
    let given = if gap.is_empty() {
        None
    } else {
        Some(state_at(state, origin, room_id, v, &pdu.event_id, until).await?)
    };
    // Auth events we lack are fetched (`/event_auth`, as Synapse fetches them); an event whose
    // auth events stay unknown is not taken in (it would be rejected for good, and every event
    // citing it with it) but kept to try again.
    let lacks_auth = |state: &AppState| {
        state
            .rooms()
            .get(room_id)
            .is_some_and(|r| !r.unknown_auth_events(&pdu.auth_event_ids()).is_empty())
    };
    if lacks_auth(state) {
        if let Err(e) =
            fetch_auth_chain(state, origin, room_id, v, &pdu.event_id, Some(until)).await
        {
            warn(&format!(
                "event_auth for {} from {origin}: {e}",
                pdu.event_id
            ));
        }
        if lacks_auth(state) {
            return Err(ApiError::forbidden(
                "the event's auth events are unknown here and could not be fetched",
            ));
        }
    }
    let verdict = {
        let mut rooms = state.rooms();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        match &given {
            Some(s) => room.receive_with_state(&check, s.clone()),
            None => room.receive(&check),
        }
    };
    commit_blocking(
        state,
        room_id,
        vec![Entry {
            event_id: pdu.event_id.clone(),
            event: Kept::of(check.event.as_ref().unwrap_or(&Object::new())),
            verdict: verdict.clone(),
            outlier: false,
            state_before: given,
            origin: origin.to_owned(),
        }],
    )
    .await?;
    Ok(verdict)
}

/// How many events one `/backfill` after a join asks for (Synapse's cap).
const BACKFILL_LIMIT: usize = 100;

/// `/backfill` from `origin` before the events `from` (a join's prev events): each event is
/// checked (signatures, hashes: a redacted copy is what history visibility let us see) and taken
/// in through the core as history ([`Room::add_backfilled`]), which never changes the current
/// state. Auth events we lack are fetched with `/event_auth` first.
async fn backfill(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    from: &[&str],
) -> Result<(), ApiError> {
    let points = state
        .rooms()
        .get(room_id)
        .map(|r| r.backfill_points(from))
        .unwrap_or_default();
    if points.is_empty() {
        return Ok(());
    }
    let mut path = format!(
        "/_matrix/federation/v1/backfill/{}?limit={BACKFILL_LIMIT}",
        encode_segment(room_id)
    );
    for p in &points {
        path.push_str("&v=");
        path.push_str(&encode_segment(p));
    }
    let answer = state.client.json(origin, "GET", &path, None).await?;
    let checks = check_events(state, v, objects(answer.get("pdus"))).await;
    let mut good: Vec<(PduCheck, Pdu)> = Vec::new();
    for c in checks {
        if let Verdict::Rejected { code, message } = &c.verdict {
            warn(&format!(
                "backfilled event from {origin} refused: {code}: {message}"
            ));
            continue;
        }
        if let Some(p) = c.pdu(v) {
            if of_room(&p, v, room_id) {
                good.push((c, p));
            }
        }
    }
    // Auth events neither known nor in the answer: their chains, as outliers, first.
    let in_answer: BTreeSet<String> = good.iter().map(|(_, p)| p.event_id.clone()).collect();
    let lacking: Vec<String> = {
        let rooms = state.rooms();
        let room = rooms
            .get(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        good.iter()
            .filter(|(_, p)| {
                room.unknown_auth_events(&p.auth_event_ids())
                    .iter()
                    .any(|a| !in_answer.contains(a))
            })
            .map(|(_, p)| p.event_id.clone())
            .collect()
    };
    for id in lacking {
        if let Err(e) = fetch_auth_chain(state, origin, room_id, v, &id, None).await {
            warn(&format!(
                "event_auth for backfilled {id} from {origin}: {e}"
            ));
        }
    }
    let entries = {
        let mut rooms = state.rooms();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        add_in_causal_order(
            room,
            &good,
            origin,
            |room, id| room.contains(id) && !room.is_outlier(id),
            Room::add_backfilled,
        )
    };
    log(&format!(
        "backfilled {} events of {room_id} from {origin}",
        entries.len()
    ));
    commit_blocking(state, room_id, entries).await
}

/// `/get_missing_events` for the events between our forward extremities and `pdu`; each one
/// received in depth order (gaps left in them are filled with `/state`).
async fn fetch_missing(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    pdu: &Pdu,
    until: tokio::time::Instant,
) {
    // What we have: our forward extremities and the event's prev events we know (as Synapse
    // asks), so the answer spends its limit on what we lack.
    let earliest: Vec<Value> = state
        .rooms()
        .get(room_id)
        .map(|r| {
            let known_prevs = pdu
                .prev_event_ids()
                .into_iter()
                .filter(|p| r.contains(p) && !r.is_outlier(p))
                .map(str::to_owned);
            r.forward_extremities()
                .iter()
                .cloned()
                .chain(known_prevs)
                .collect::<BTreeSet<String>>()
                .into_iter()
                .map(Value::from)
                .collect()
        })
        .unwrap_or_default();
    let mut body = Object::new();
    body.insert("earliest_events", Value::Array(earliest));
    body.insert(
        "latest_events",
        Value::Array(vec![Value::from(pdu.event_id.as_str())]),
    );
    let limit = i64::try_from(state.config.limits.max_missing_events).unwrap_or(20);
    body.insert("limit", Int::saturating(limit));
    body.insert("min_depth", Int::ZERO);
    let path = format!(
        "/_matrix/federation/v1/get_missing_events/{}",
        encode_segment(room_id)
    );
    let answer = match fetch_until(state, until, origin, "POST", &path, Some(&body)).await {
        Ok(a) => a,
        Err(e) => {
            warn(&format!("get_missing_events from {origin}: {e}"));
            return;
        }
    };
    let mut checks = check_events(state, v, objects(answer.get("events"))).await;
    checks.sort_by_key(|c| {
        c.event
            .as_ref()
            .and_then(|e| e.get("depth"))
            .and_then(Value::as_int)
            .unwrap_or(0)
    });
    for c in checks {
        if matches!(c.verdict, Verdict::Rejected { .. })
            || !c.pdu(v).is_some_and(|p| of_room(&p, v, room_id))
        {
            continue;
        }
        if let Err(e) = Box::pin(receive_remote(state, origin, room_id, v, c, false, until)).await {
            warn(&format!("missing event from {origin}: {e}"));
        }
    }
}

/// Takes in the PDUs of one room from a transaction, in the planned order; one result per
/// event ID (`None` = handled, `Some(error)` = refused) for the /send answer.
pub async fn ingest(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    pdus: Vec<(String, Object)>,
    until: tokio::time::Instant,
) -> Vec<(String, Taken)> {
    let checked = check_pdus(state, v, pdus).await;
    ingest_checked(state, origin, room_id, v, checked, until).await
}

/// The format, signature and hash checks of PDUs (keys fetched first), each with its ID. Pure
/// but for the key fetches: `/send` runs them before it waits for the room's lock, so they
/// overlap another transaction's commit.
pub async fn check_pdus(
    state: &AppState,
    v: &'static RoomVersion,
    pdus: Vec<(String, Object)>,
) -> Vec<(String, PduCheck)> {
    let (ids, objs): (Vec<String>, Vec<Object>) = pdus.into_iter().unzip();
    let checks = check_events(state, v, objs).await;
    ids.into_iter().zip(checks).collect()
}

/// [`ingest`] for PDUs checked already ([`check_pdus`]). The caller holds the room's lock
/// ([`AppState::lock_room`]).
pub async fn ingest_checked(
    state: &Arc<AppState>,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    checked: Vec<(String, PduCheck)>,
    until: tokio::time::Instant,
) -> Vec<(String, Taken)> {
    let mut out: Vec<(String, Taken)> = Vec::new();
    // Events whose prev events are all known go into the room at once and are stored together
    // (one commit, one fsync, per run of them) rather than one commit each; `pending` holds
    // them with their index in `out`. A gap flushes them first, so storage order stays the
    // order the room took them in.
    let mut pending: Vec<(usize, Entry)> = Vec::new();
    for (id, check) in checked {
        if let Verdict::Rejected { code, message } = &check.verdict {
            out.push((id, Taken::Refused(format!("{code}: {message}"))));
            continue;
        }
        let check = match receive_without_gap(state, origin, room_id, v, check) {
            Ok(Ok((verdict, entry))) => {
                if let Some(e) = entry {
                    pending.push((out.len(), e));
                }
                out.push((id, Taken::of(&verdict)));
                continue;
            }
            Ok(Err(check)) => check,
            Err(e) => {
                out.push((id, Taken::Refused(e.error)));
                continue;
            }
        };
        flush_pending(state, room_id, &mut pending, &mut out).await;
        let event = check.event.clone();
        let r = match receive_remote(state, origin, room_id, v, check, true, until).await {
            Ok(verdict) => Taken::of(&verdict),
            Err(e)
                if event
                    .as_ref()
                    .is_some_and(|ev| defer_if_gap(state, origin, room_id, v, &id, ev)) =>
            {
                Taken::Kept(format!("{}; kept to try again", e.error))
            }
            Err(e) => Taken::Refused(e.error),
        };
        out.push((id, r));
    }
    flush_pending(state, room_id, &mut pending, &mut out).await;
    out
}

/// Keeps a PDU that could not be taken in because the gap before it is still open (its prev
/// events, or its auth events, could not be fetched): the next transaction from `origin` tries
/// it again ([`retry_deferred`]). Whether the gap is open is the core's answer
/// ([`Room::lacks_predecessors`]). Returns whether it was kept.
fn defer_if_gap(
    state: &AppState,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    event_id: &str,
    ev: &Object,
) -> bool {
    let Ok(pdu) = Pdu::new(ev.clone(), v) else {
        return false;
    };
    let gap = state
        .rooms()
        .get(room_id)
        .is_some_and(|r| !r.contains(event_id) && r.lacks_predecessors(&pdu));
    gap && state
        .write(|db| db.defer_pdu(origin, room_id, event_id, &ev.to_canonical_string()))
        .is_ok()
}

/// Tries again the PDUs of `origin` refused for a gap ([`defer_if_gap`]), oldest first, before
/// a new transaction of `origin` is taken in: the gap may be fillable now. A PDU taken in (or
/// no longer behind a gap) is forgotten; one still behind a gap counts a try and is given up
/// after [`super::store::DEFERRED_TRIES`]. Takes each PDU's room's lock in turn (the caller
/// holds none).
pub async fn retry_deferred(state: &Arc<AppState>, origin: &str, until: tokio::time::Instant) {
    // Asked before every transaction: the answer, almost always none, without the writer
    // (which a commit holds through its fsync; waiting for it here blocked a runtime thread).
    if !state.readers.any_deferred() {
        return;
    }
    let list = state
        .write(|db| db.deferred_pdus(origin))
        .unwrap_or_default();
    for (room_id, event_id, json) in list {
        if tokio::time::Instant::now() >= until {
            // The transaction's time for fetching is spent: the rest waits for the next one
            // (without counting a try).
            break;
        }
        let v = state.rooms().get(&room_id).map(Room::version);
        let (Some(v), Some(obj)) = (v, parse_stored(&json)) else {
            let _ = state.write(|db| db.undefer_pdu(&event_id));
            continue;
        };
        let _guard = state.lock_room(&room_id).await;
        let done = ingest(
            state,
            origin,
            &room_id,
            v,
            vec![(event_id.clone(), obj)],
            until,
        )
        .await;
        if let Some((_, Taken::Kept(_))) = done.first() {
            log(&format!(
                "deferred {event_id} from {origin}: gap still open"
            ));
        } else {
            let what = done
                .first()
                .and_then(|(_, t)| t.error())
                .unwrap_or("taken in");
            log(&format!("deferred {event_id} from {origin}: {what}"));
            let _ = state.write(|db| db.undefer_pdu(&event_id));
        }
    }
}

/// What became of one PDU of a transaction ([`ingest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// In the room (also: already there, or kept as our redacted copy).
    Accepted,
    /// In the room's DAG, not in its current state.
    SoftFailed,
    /// Refused (or not stored): the error the transaction's answer gives for it.
    Refused(String),
    /// Refused for now: the gap before it could not be filled; kept to try again
    /// ([`retry_deferred`]). The error for the answer.
    Kept(String),
}

impl Taken {
    fn of(verdict: &RoomVerdict) -> Taken {
        match verdict {
            RoomVerdict::Rejected { code } => Taken::Refused(format!("rejected: {code}")),
            RoomVerdict::SoftFailed { .. } => Taken::SoftFailed,
            _ => Taken::Accepted,
        }
    }

    /// The error for the transaction's answer, if it was refused.
    pub fn error(&self) -> Option<&str> {
        match self {
            Taken::Refused(e) | Taken::Kept(e) => Some(e),
            Taken::Accepted | Taken::SoftFailed => None,
        }
    }
}

/// Stores the events taken in since the last flush in one commit; if that fails, each of them
/// gets the error in the answer (the sender retries the transaction). The commit waits for its
/// fsync (and for the database, which another room's commit may hold) off the runtime's
/// threads, which meanwhile serve other requests.
async fn flush_pending(
    state: &Arc<AppState>,
    room_id: &str,
    pending: &mut Vec<(usize, Entry)>,
    out: &mut [(String, Taken)],
) {
    if pending.is_empty() {
        return;
    }
    let (slots, entries): (Vec<usize>, Vec<Entry>) = pending.drain(..).unzip();
    let started = std::time::Instant::now();
    let committed = commit_blocking(state, room_id, entries).await;
    state.metrics.pdu_commit.observe(started.elapsed());
    if let Err(e) = committed {
        for i in slots {
            if let Some(slot) = out.get_mut(i) {
                slot.1 = Taken::Refused(e.error.clone());
            }
        }
    }
}

/// [`receive_remote`] for an event whose prev events are all known: nothing to fetch, so it
/// goes into the room now and the entry to store is returned (`None` for an event already in
/// the room). `Ok(Err(check))` hands the check back when there is a gap: the caller takes the
/// fetching path.
#[allow(clippy::type_complexity)]
fn receive_without_gap(
    state: &AppState,
    origin: &str,
    room_id: &str,
    v: &'static RoomVersion,
    mut check: PduCheck,
) -> Result<Result<(RoomVerdict, Option<Entry>), PduCheck>, ApiError> {
    let Some(pdu) = check.take_pdu(v) else {
        return Err(ApiError::invalid("no event"));
    };
    let mut rooms = state.rooms();
    let room = rooms
        .get_mut(room_id)
        .ok_or_else(|| ApiError::not_found("unknown room"))?;
    if room.contains(&pdu.event_id) && !room.is_outlier(&pdu.event_id) {
        return Ok(Ok((RoomVerdict::Accepted, None)));
    }
    if room.lacks_predecessors(&pdu) {
        check.event = Some(pdu.event);
        return Ok(Err(check));
    }
    let (event_id, event) = (pdu.event_id.clone(), Kept::of(&pdu.event));
    let verdict = room.receive_checked(pdu, &check.verdict);
    let entry = Entry {
        event_id,
        event,
        verdict: verdict.clone(),
        outlier: false,
        state_before: None,
        origin: origin.to_owned(),
    };
    Ok(Ok((verdict, Some(entry))))
}

// ------------------------------------------------------------------------------------------------
// Membership handshakes, as the joining or inviting side
// ------------------------------------------------------------------------------------------------

const ALL_VERSIONS: &str =
    "ver=1&ver=2&ver=3&ver=4&ver=5&ver=6&ver=7&ver=8&ver=9&ver=10&ver=11&ver=12";

/// Joins (or leaves, or knocks on) a room through a resident server: `make_*`, sign, `send_*`.
/// A join takes in the answer's state and auth chain. Returns the event ID.
pub async fn remote_membership(
    state: &Arc<AppState>,
    room_id: &str,
    user_id: &str,
    via: &str,
    membership: &str,
) -> Result<String, ApiError> {
    let query = if membership == "leave" {
        String::new()
    } else {
        format!("?{ALL_VERSIONS}")
    };
    let path = format!(
        "/_matrix/federation/v1/make_{membership}/{}/{}{query}",
        encode_segment(room_id),
        encode_segment(user_id)
    );
    let answer = state.client.json(via, "GET", &path, None).await?;
    let mut content = Object::new();
    if membership == "join" {
        if let Some(Some(d)) = state.reads().user(user_id)?.map(|(d, _)| d) {
            content.insert("displayname", d);
        }
    }
    let local = super::random_token(18)?;
    let key = state
        .keys
        .first()
        .ok_or_else(|| ApiError::internal("no signing key"))?;
    let req = event::MembershipRequest {
        room_id,
        user_id,
        membership,
        origin: &state.server_name,
        content: Some(&content),
        now: now(),
        event_id_localpart: Some(&local),
    };
    // The core checks the template is what we asked for (DIGEST §18.1) and completes it.
    let (built, v) = event::membership_from_template(&answer, &req, key).map_err(|e| match e {
        event::TemplateError::RoomVersion(e) => ApiError::from(e),
        e => ApiError::remote(format!("make_{membership} answer from {via}: {e}")),
    })?;
    let version = v.id;
    let (event_id, ev) = (built.event_id, built.pdu);
    let version_path = if membership == "knock" { "v1" } else { "v2" };
    let path = format!(
        "/_matrix/federation/{version_path}/send_{membership}/{}/{}",
        encode_segment(room_id),
        encode_segment(&event_id)
    );
    if membership != "join" {
        state.client.json(via, "PUT", &path, Some(&ev)).await?;
        // Leaves and knocks reach our copy of the room (if any) through the resident's /send.
        return Ok(event_id);
    }
    // The room's lock before `send_join`: the resident sends us the room's events as soon as it
    // has our join, and they wait for this lock (see [`AppState::joining`]), to be taken in
    // after the join or ignored if it fails.
    let _joining = Joining::start(state, room_id, user_id, v);
    let _guard = state.lock_room(room_id).await;
    let answer = state.client.json(via, "PUT", &path, Some(&ev)).await?;
    let known = state.rooms().contains_key(room_id);
    if !known {
        state.write(|db| db.add_room(room_id, version))?;
        state.rooms().insert(room_id.to_owned(), new_room(v));
    }
    let state_events = check_events(state, v, objects(answer.get("state"))).await;
    let chain = answer
        .get("auth_chain")
        .or_else(|| answer.get("auth_events"));
    let auth = check_events(state, v, objects(chain)).await;
    let map = state_map_of(&state_events, v, room_id);
    let mut all = auth;
    all.extend(state_events);
    add_outliers(state, room_id, via, all).await?;
    // The resident may have added its signature (restricted joins): keep its copy.
    let join = answer
        .get_object("event")
        .filter(|e| event::event_id(e, v).ok().as_deref() == Some(event_id.as_str()))
        .cloned()
        .unwrap_or(ev);
    let verdict = {
        let mut rooms = state.rooms();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| ApiError::internal("room vanished"))?;
        room.receive_own_join(&checked(&event_id, join.clone(), false), map.clone())
    };
    // The invite accepted in the join's commit: waiters woken by it see both, and a crash or
    // a failed write cannot leave the invite accepted without the join stored.
    let accepted = if matches!(verdict, RoomVerdict::Rejected { .. }) {
        Vec::new()
    } else {
        vec![InviteChange::status(room_id, user_id, "accepted")]
    };
    commit_blocking_with(
        state,
        room_id,
        vec![Entry {
            event_id: event_id.clone(),
            event: Kept::of(&join),
            verdict: verdict.clone(),
            outlier: false,
            state_before: Some(map),
            origin: state.server_name.clone(),
        }],
        accepted,
    )
    .await?;
    if let RoomVerdict::Rejected { code } = verdict {
        return Err(ApiError::forbidden(format!(
            "our join was rejected: {code}"
        )));
    }
    // The history before our join, after the join is stored: the resident has counted us in
    // since `send_join`, and a crash while the history is fetched (a request per lacking event,
    // each up to the client's timeout) must not lose the join. The admin caller still gets its
    // answer once the history is in; a failure only costs the history.
    if let Ok(p) = Pdu::new(join, v) {
        let prevs = p.prev_event_ids();
        if let Err(e) = backfill(state, via, room_id, v, &prevs).await {
            warn(&format!("backfill of {room_id} from {via}: {e}"));
        }
    }
    Ok(event_id)
}

/// Invites a user of another server: builds the invite, checks the room's rules allow it, has
/// the invitee's server countersign it (`/v2/invite`), then takes it in and sends it to the
/// room. The caller holds the room's lock ([`AppState::lock_room`]).
pub async fn invite_remote(
    state: &Arc<AppState>,
    room_id: &str,
    sender: &str,
    target: &str,
) -> Result<String, ApiError> {
    let content = obj(r#"{"membership":"invite"}"#);
    let t = template(
        Some(room_id),
        "m.room.member",
        sender,
        Some(target),
        content,
    );
    let built = build_local(state, room_id, &t)?;
    let (v, stripped) = {
        let rooms = state.rooms();
        let room = rooms
            .get(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        let verdict = room.check(&checked(&built.event_id, built.pdu.clone(), false));
        if verdict != RoomVerdict::Accepted {
            return Err(ApiError::forbidden(format!(
                "the room's rules refuse this invite ({})",
                verdict.code().unwrap_or("not accepted")
            )));
        }
        let list: Vec<Value> = room
            .prejoin_state(sender)
            .into_iter()
            .map(|p| Value::Object(p.event.clone()))
            .collect();
        (room.version(), list)
    };
    let dest = mxfed_core::identifiers::user_server_name(target)?.to_owned();
    let mut body = Object::new();
    body.insert("room_version", v.id);
    body.insert("event", built.pdu.clone());
    body.insert("invite_room_state", Value::Array(stripped));
    let signed = send_invite(state, &dest, room_id, &built.event_id, v, &body).await?;
    let checks = check_events(state, v, vec![signed]).await;
    let signed = match checks.into_iter().next() {
        Some(c)
            if c.verdict == Verdict::Accepted && c.event_id.as_deref() == Some(&built.event_id) =>
        {
            c.event.unwrap_or_default()
        }
        _ => {
            return Err(ApiError::remote(
                "the invitee's server returned a different or invalid event",
            ))
        }
    };
    let with_sigs = BuiltEvent {
        event_id: built.event_id.clone(),
        room_id: built.room_id.clone(),
        pdu: signed,
    };
    let st = Arc::clone(state);
    blocking(move || accept_local(&st, &with_sigs)).await?;
    Ok(built.event_id)
}

/// `PUT /v2/invite`, and `/v1/invite` when the core's [`invite_fallback`] says the invitee's
/// server does not know the former; returns the event as countersigned.
async fn send_invite(
    state: &AppState,
    dest: &str,
    room_id: &str,
    event_id: &str,
    v: &'static RoomVersion,
    body: &Object,
) -> Result<Object, ApiError> {
    let segments = format!("{}/{}", encode_segment(room_id), encode_segment(event_id));
    let path = format!("/_matrix/federation/v2/invite/{segments}");
    let refused = match state.client.json(dest, "PUT", &path, Some(body)).await {
        Ok(answer) => {
            return answer
                .get_object("event")
                .cloned()
                .ok_or_else(|| ApiError::remote("invite answer has no event"))
        }
        Err(e) => e,
    };
    let FetchError::Status(status, bytes) = &refused else {
        return Err(refused.into());
    };
    let errcode = canonical::parse_object(bytes, &ParseOptions::LEGACY)
        .ok()
        .and_then(|o| o.get_str("errcode").map(str::to_owned));
    match invite_fallback(*status, errcode.as_deref(), v) {
        InviteFallback::UseV1 => {}
        InviteFallback::Unsupported => {
            return Err(ApiError::new(
                400,
                "M_UNSUPPORTED_ROOM_VERSION",
                format!("{dest} does not support room version {}", v.id),
            ))
        }
        _ => return Err(refused.into()),
    }
    log(&format!(
        "{dest} does not know /v2/invite: trying /v1/invite"
    ));
    // The v1 body is the event itself, the room state in its `unsigned`.
    let mut ev = body.get_object("event").cloned().unwrap_or_default();
    if let Some(room_state) = body.get("invite_room_state") {
        if let Some(unsigned) = ev.object_entry("unsigned") {
            unsigned.insert("invite_room_state", room_state.clone());
        }
    }
    let path = format!("/_matrix/federation/v1/invite/{segments}");
    let (status, bytes) = state
        .client
        .request(dest, "PUT", &path, Some(&ev), true)
        .await?;
    if status != 200 {
        return Err(FetchError::Status(status, bytes).into());
    }
    // `[200, {"event": …}]`
    let answer = canonical::parse(&bytes, &ParseOptions::LEGACY)
        .map_err(|e| ApiError::remote(format!("v1 invite answer: {e}")))?;
    answer
        .as_array()
        .and_then(|a| a.get(1))
        .and_then(Value::as_object)
        .and_then(|o| o.get_object("event"))
        .cloned()
        .ok_or_else(|| ApiError::remote("v1 invite answer is not [200, {\"event\": …}]"))
}

/// The servers to try for a join: those named, then the room ID's and the inviter's.
pub fn join_candidates(via: &[String], room_id: &str, inviter_server: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let room_server = room_id.split_once(':').map(|(_, s)| s.to_owned());
    for s in via
        .iter()
        .cloned()
        .chain(inviter_server.map(str::to_owned))
        .chain(room_server)
    {
        if seen.insert(s.clone()) {
            out.push(s);
        }
    }
    out
}
