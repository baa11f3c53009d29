//! SQLite storage (WAL, `synchronous = FULL`: every committed write is fsynced before we answer).
//! What is stored and when is documented in docs/server.md.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use mxfed_core::outbound::RetryState;
use mxfed_core::{Millis, Timestamp};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// What the writer and the readers share in memory. The writer changes it only after the
/// statement or commit that it mirrors succeeded, so whatever a reader finds here is in the
/// database.
#[derive(Debug, Default)]
pub struct Shared {
    /// Every stored event's `stream` by event ID (see [`Store`]).
    ids: RwLock<HashMap<Box<str>, i64>>,
    /// Our users: display name and auto-accept, by user ID. Every admin request acting as a
    /// user asks; reading the table each time was 8% of the CPU of a server taking its users'
    /// messages one per request.
    users: RwLock<BTreeMap<String, UserRow>>,
    /// Rows in `deferred_pdus` (recounted by the writer whenever they change, which is rare):
    /// every transaction asks whether its origin has any, and the answer is almost always no,
    /// which must not wait for the writer.
    deferred: AtomicI64,
}

/// Transaction answers waiting for the next commit ([`Store::put_txn_later`]), shared by the
/// writer and the server's `/send` handlers: putting one must not wait for the writer, which a
/// commit holds through its fsync (a runtime thread blocked there stalls every other request).
#[derive(Clone, Debug, Default)]
pub struct PendingTxns(Arc<Mutex<Vec<(String, String, String)>>>);

impl PendingTxns {
    /// Adds an answer; returns whether enough wait ([`PENDING_TXNS_MAX`]) that they should be
    /// written now ([`Store::flush_txns`]) rather than by the next commit.
    pub fn put(&self, origin: &str, txn_id: &str, response: &str) -> bool {
        let mut l = self.lock();
        l.push((origin.to_owned(), txn_id.to_owned(), response.to_owned()));
        l.len() >= PENDING_TXNS_MAX
    }

    /// How many wait.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none wait.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn take(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back answers taken for a commit that failed, before those put since.
    fn put_back(&self, mut txns: Vec<(String, String, String)>) {
        let mut l = self.lock();
        txns.append(&mut l);
        *l = txns;
    }

    fn forget(&self, origin: &str, txn_id: &str) {
        self.lock()
            .retain(|(o, t, _)| !(o == origin && t == txn_id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, String, String)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A user's display name and auto-accept setting.
pub type UserRow = (Option<String>, bool);

/// A stored EDU as [`Reads::edus_of_type`] reads it: origin, room (typing and receipts), content
/// JSON, received ms.
pub type EduRow = (String, Option<String>, String, i64);

/// The events table, created on first open (before [`SCHEMA`], whose index is on it). `stream`
/// orders events as they were stored: replaying a room in that order rebuilds its in-memory
/// state exactly. No index on `event_id`: see [`Store`]'s `ids`.
///
/// `taken_in` is set on an event stored as an outlier that the room took into its DAG later
/// (de-outliered): a number from the same sequence as `stream`, saying when. The row keeps its
/// place (events stored after it may cite it among their auth events), and the replay visits
/// it twice: as the outlier at `stream`, taken in at `taken_in` (as Synapse keeps a
/// de-outliered event's stream ordering and records the change in `ex_outlier_stream`).
const EVENTS_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    stream INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    depth INTEGER NOT NULL,
    json TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT,
    rejected INTEGER NOT NULL,
    soft_failed INTEGER NOT NULL,
    outlier INTEGER NOT NULL,
    state_before TEXT,
    redacted_by TEXT,
    origin TEXT,
    received_ts INTEGER NOT NULL,
    backfilled INTEGER NOT NULL DEFAULT 0,
    taken_in INTEGER
);
"#;

/// The rest of the schema, created on first open.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    display_name TEXT,
    auto_accept INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_room ON events(room_id, stream);
CREATE TABLE IF NOT EXISTS forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE TABLE IF NOT EXISTS current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE TABLE IF NOT EXISTS invites (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    origin TEXT NOT NULL,
    event TEXT NOT NULL,
    invite_room_state TEXT NOT NULL,
    status TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE TABLE IF NOT EXISTS edus (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    edu_type TEXT NOT NULL,
    room_id TEXT,
    content TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    edu_key TEXT
);
CREATE INDEX IF NOT EXISTS edus_by_room ON edus(room_id, id);
-- The oldest rows of a type, deleted past [limits] edus_kept (and read by edus_of_type).
CREATE INDEX IF NOT EXISTS edus_by_type ON edus(edu_type, id);
-- To-device messages past their age (the type is a literal here and in the DELETE: SQLite uses
-- a partial index only for a query that names its condition).
CREATE INDEX IF NOT EXISTS edus_to_device_age ON edus(received_ts) WHERE edu_type = 'm.direct_to_device';
CREATE TABLE IF NOT EXISTS server_keys (
    server_name TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    fetched_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_id TEXT,
    room_id TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbound_by_dest ON outbound(destination, id);
-- Delivered PDUs are deleted by (destination, event ID): without this, each delete scanned every
-- row queued for the destination (thousands of ~1 KB rows in a burst, per PDU).
CREATE INDEX IF NOT EXISTS outbound_by_event ON outbound(destination, event_id);
-- The backoff of each destination sending to fails (the core's RetryState), so that a restart
-- neither contacts every failing destination at once nor starts their backoff again.
CREATE TABLE IF NOT EXISTS destinations (
    destination TEXT PRIMARY KEY,
    retry_at INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    delay_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
"#;

/// Databases created before the event-ID index was dropped (see [`Store`]'s `ids`) have
/// `event_id TEXT NOT NULL UNIQUE`, whose index SQLite cannot drop: the table is copied into one
/// without it, in one transaction (all or nothing), keeping every row and its `stream`.
fn migrate_event_id_index(conn: &Connection) -> rusqlite::Result<()> {
    let unique: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_index_list('events') WHERE \"unique\" = 1 AND origin = 'u'",
        [],
        |r| r.get(0),
    )?;
    if !unique {
        return Ok(());
    }
    let create = EVENTS_TABLE.replace(
        "CREATE TABLE IF NOT EXISTS events (",
        "CREATE TABLE events_new (",
    );
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {create}
         INSERT INTO events_new ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM events ORDER BY stream;
         DROP TABLE events;
         ALTER TABLE events_new RENAME TO events;
         CREATE INDEX IF NOT EXISTS events_by_room ON events(room_id, stream);
         COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// How many transaction answers may wait for the next commit ([`Store::put_txn_later`]).
pub const PENDING_TXNS_MAX: usize = 64;

/// How many answered transactions are kept for de-duplication across restarts.
pub const TXNS_KEPT: i64 = 1024;

/// PDUs refused because a gap before them could not be filled, kept to try again (see
/// `rooms::retry_deferred`).
const DEFERRED_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deferred_pdus (
    event_id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    room_id TEXT NOT NULL,
    json TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    received_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deferred_by_origin ON deferred_pdus(origin, received_ts);
"#;

/// How many times a deferred PDU is tried again before it is given up.
pub const DEFERRED_TRIES: i64 = 10;

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Order of storage.
    pub stream: i64,
    /// The event ID.
    pub event_id: String,
    /// The room.
    pub room_id: String,
    /// The PDU as kept (our redacted copy after a content-hash mismatch).
    pub json: String,
    /// `accepted`, `redacted`, `rejected` or `soft_failed`.
    pub verdict: String,
    /// Why, when not accepted.
    pub reason: Option<String>,
    /// Rejected by the room's rules.
    pub rejected: bool,
    /// Soft-failed.
    pub soft_failed: bool,
    /// Known only through an auth chain or state answer.
    pub outlier: bool,
    /// Fetched with `/backfill`: part of the room's history before we joined (not an outlier
    /// here, though the core checks it as one: it is timeline, as in Synapse).
    pub backfilled: bool,
    /// For events received with a given state: that state, as JSON `[[type, key, id], …]`.
    pub state_before: Option<String>,
    /// The redaction that applies to it, if any.
    pub redacted_by: Option<String>,
}

/// The EDU type of to-device messages, kept for a time ([`EduLimits::to_device_ms`]).
pub const TO_DEVICE: &str = "m.direct_to_device";

/// How much of the received EDUs is kept (`[limits] edus_kept`, `to_device_kept_days`; the
/// policy is in docs/server.md). Applied in the commit that stores new EDUs
/// ([`Store::put_txn_with_edus`]) and when set ([`Store::set_edu_limits`]), so the `edus` table
/// never holds more than `per_type` rows of a type after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EduLimits {
    /// Rows kept per EDU type, the newest: the oldest beyond it are deleted. At least 1.
    pub per_type: i64,
    /// How long a to-device message is kept, in ms (we have no client to deliver it to).
    pub to_device_ms: i64,
}

impl EduLimits {
    /// Rows kept per EDU type by default.
    pub const DEFAULT_PER_TYPE: i64 = 10_000;
    /// Days a to-device message is kept by default: Synapse's window for the (origin, message
    /// ID) pairs it de-duplicates received to-device messages with.
    pub const DEFAULT_TO_DEVICE_DAYS: i64 = 7;
}

impl Default for EduLimits {
    fn default() -> EduLimits {
        EduLimits {
            per_type: EduLimits::DEFAULT_PER_TYPE,
            to_device_ms: EduLimits::DEFAULT_TO_DEVICE_DAYS * 86_400_000,
        }
    }
}

/// A received EDU to store ([`Store::put_txn_with_edus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEdu {
    /// `edu_type`.
    pub edu_type: String,
    /// The room it concerns (typing, receipts), if any.
    pub room_id: Option<String>,
    /// Its content as canonical JSON.
    pub content: String,
    /// What makes it one of a kind among the EDUs of its type from its origin, if anything.
    pub key: Option<EduKey>,
}

/// What makes a stored EDU one of a kind among those of its type from the same origin (the
/// `edu_key` column, unique per type and origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EduKey {
    /// Stored once: a later EDU with the same key is dropped. A to-device message's
    /// `message_id`, which its sender keeps when it sends the message again (as Synapse keys
    /// them on origin and message ID).
    Once(String),
    /// One row per key: a later EDU replaces the earlier one (and is stored after the others).
    /// A user's presence, of which only the latest matters.
    Latest(String),
}

/// A new event row.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// The event ID.
    pub event_id: &'a str,
    /// The room.
    pub room_id: &'a str,
    /// Depth.
    pub depth: i64,
    /// The PDU as kept.
    pub json: &'a str,
    /// The room verdict.
    pub verdict: &'a str,
    /// Why, when not accepted.
    pub reason: Option<&'a str>,
    /// Known only through an auth chain or state answer.
    pub outlier: bool,
    /// Fetched with `/backfill` (also marks an outlier stored before as history).
    pub backfilled: bool,
    /// The given state before it, as JSON.
    pub state_before: Option<&'a str>,
    /// The server it came from (ourselves for local events).
    pub origin: &'a str,
}

/// One room's share of a commit ([`Store::store_many`]).
#[derive(Debug, Clone, Copy)]
pub struct RoomWrite<'a> {
    /// The room.
    pub room_id: &'a str,
    /// Its new events (those stored already are skipped).
    pub events: &'a [NewEvent<'a>],
    /// Its forward extremities after them.
    pub extremities: &'a [String],
    /// Its current state after them, `(type, state_key, event_id)`; `None`: unchanged.
    pub state: Option<&'a [(String, String, String)]>,
    /// Servers each new event is queued for.
    pub destinations: &'a [String],
    /// `(target, redaction)`: targets of the new redactions that apply, marked redacted in the
    /// same commit.
    pub redactions: &'a [(String, String)],
    /// The bookkeeping of our users' invites that goes with the new events (an invite sent to
    /// one of our users, the status of one answered by a join or leave), in the same commit: a
    /// crash or a failed write cannot leave one stored without the other.
    pub invites: &'a [InviteChange],
}

/// A change to the `invites` table made in a room's commit ([`RoomWrite::invites`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteChange {
    /// Records (or replaces) an invite ([`Store::put_invite`]).
    Put(Invite),
    /// Sets an invite's status, if there is one ([`Store::set_invite_status`]).
    Status {
        /// The room.
        room_id: String,
        /// Our user.
        user_id: String,
        /// `accepted` or `rejected`.
        status: &'static str,
    },
}

impl InviteChange {
    /// The status of `user_id`'s invite to `room_id` set to `status`.
    #[must_use]
    pub fn status(room_id: &str, user_id: &str, status: &'static str) -> InviteChange {
        InviteChange::Status {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            status,
        }
    }
}

/// A pending invite for one of our users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The room.
    pub room_id: String,
    /// Our invited user.
    pub user_id: String,
    /// The room version.
    pub room_version: String,
    /// The inviting server.
    pub origin: String,
    /// The invite event (signed by both servers).
    pub event: String,
    /// The stripped or full state given with it.
    pub invite_room_state: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
}

/// Columns of `events`, in the schema's order (the migration copies them).
const EVENT_COLUMNS: &str = "stream, event_id, room_id, depth, json, verdict, reason, rejected, soft_failed, outlier, state_before, redacted_by, origin, received_ts, backfilled, taken_in";

/// Columns of an event as read ([`row`]).
const EVENT_COLS: &str = "stream, event_id, room_id, json, verdict, reason, rejected, soft_failed, outlier, state_before, redacted_by, backfilled";

/// One event row as read with [`EVENT_COLS`].
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        stream: r.get(0)?,
        event_id: r.get(1)?,
        room_id: r.get(2)?,
        json: r.get(3)?,
        verdict: r.get(4)?,
        reason: r.get(5)?,
        rejected: r.get(6)?,
        soft_failed: r.get(7)?,
        outlier: r.get(8)?,
        state_before: r.get(9)?,
        redacted_by: r.get(10)?,
        backfilled: r.get(11)?,
    })
}

/// What is read from the database, on the writer's connection ([`Store`]) or on a read-only one
/// beside it ([`Reader`]).
pub trait Reads {
    /// The connection read from.
    fn conn(&self) -> &Connection;

    /// What the writer and the readers share in memory.
    fn shared(&self) -> &Shared;

    /// A stored event's row number, from the map shared by the writer and the readers.
    fn stream_of(&self, event_id: &str) -> Option<i64> {
        self.shared()
            .ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_id)
            .copied()
    }

    /// A user's display name and auto-accept setting, if the user exists (from memory).
    ///
    /// # Errors
    /// None (the signature is a read's).
    fn user(&self, user_id: &str) -> rusqlite::Result<Option<UserRow>> {
        Ok(self
            .shared()
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user_id)
            .cloned())
    }

    /// The saved backoff of a destination sending to fails ([`Store::set_backoff`]).
    ///
    /// # Errors
    /// SQLite errors.
    fn backoff(&self, destination: &str) -> rusqlite::Result<Option<RetryState>> {
        let as_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        self.conn()
            .prepare_cached(
                "SELECT retry_at, failures, interval_ms, delay_ms FROM destinations \
                 WHERE destination = ?1",
            )?
            .query_row(params![destination], |r| {
                Ok(RetryState {
                    retry_at: Timestamp(as_u64(r.get(0)?)),
                    failures: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    interval: Millis(as_u64(r.get(2)?)),
                    delay: Millis(as_u64(r.get(3)?)),
                })
            })
            .optional()
    }

    /// Every user ID, sorted (from memory).
    ///
    /// # Errors
    /// None (the signature is a read's).
    fn users(&self) -> rusqlite::Result<Vec<String>> {
        Ok(self
            .shared()
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect())
    }

    /// A room's events in stored order.
    ///
    /// # Errors
    /// SQLite errors.
    fn room_events(&self, room_id: &str) -> rusqlite::Result<Vec<StoredEvent>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE room_id = ?1 ORDER BY stream"
        ))?;
        let rows = st.query_map(params![room_id], row)?;
        rows.collect()
    }

    /// The room's timeline, as the admin API serves it: the accepted events (not outliers,
    /// rejected or soft-failed) in the order they were stored, with the history fetched with
    /// `/backfill` merged in by depth (before the first live event deeper than it; storage order
    /// among equal depths). Only the last `limit` when given: the order is worked out from three
    /// integer columns, and only the rows served are read whole.
    ///
    /// # Errors
    /// SQLite errors.
    fn timeline(&self, room_id: &str, limit: Option<usize>) -> rusqlite::Result<Vec<StoredEvent>> {
        let mut st = self.conn().prepare_cached(
            "SELECT stream, depth, backfilled FROM events
             WHERE room_id = ?1 AND rejected = 0 AND (backfilled = 1 OR (outlier = 0 AND soft_failed = 0))
             ORDER BY stream",
        )?;
        let rows = st.query_map(params![room_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        let mut history = Vec::new();
        let mut live = Vec::new();
        for row in rows {
            let (stream, depth, backfilled) = row?;
            if backfilled {
                history.push((depth, stream));
            } else {
                live.push((depth, stream));
            }
        }
        history.sort_by_key(|&(depth, _)| depth);
        let mut history = history.into_iter().peekable();
        let mut order = Vec::with_capacity(live.len() + history.len());
        for (depth, stream) in live {
            while let Some((_, h)) = history.next_if(|&(d, _)| d < depth) {
                order.push(h);
            }
            order.push(stream);
        }
        order.extend(history.map(|(_, h)| h));
        let skip = limit.map_or(0, |n| order.len().saturating_sub(n));
        let mut one = self.conn().prepare_cached(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE stream = ?1"
        ))?;
        order[skip..]
            .iter()
            .map(|s| one.query_row(params![s], row))
            .collect()
    }

    /// A room's events in the order that rebuilds it, one at a time, without holding them all
    /// (rebuilding a room at start-up needs each event once): stored order, except that an event
    /// stored as an outlier and taken into the DAG later (`taken_in`, see [`EVENTS_TABLE`]) is
    /// given twice, first at its row as the outlier it was (`outlier`, no `state_before`), then
    /// where it was taken in, as it is now.
    ///
    /// # Errors
    /// SQLite errors.
    fn each_room_event(
        &self,
        room_id: &str,
        mut f: impl FnMut(StoredEvent),
    ) -> rusqlite::Result<()> {
        // Few rows (an index holds only them), kept while the room's rows stream past.
        let mut later: VecDeque<(i64, StoredEvent)> = {
            let mut st = self.conn().prepare(&format!(
                "SELECT {EVENT_COLS}, taken_in FROM events
                 WHERE room_id = ?1 AND taken_in IS NOT NULL ORDER BY taken_in"
            ))?;
            let rows = st.query_map(params![room_id], |r| Ok((r.get(12)?, row(r)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let was_outlier: BTreeSet<i64> = later.iter().map(|(_, e)| e.stream).collect();
        let mut st = self.conn().prepare(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE room_id = ?1 ORDER BY stream"
        ))?;
        let mut rows = st.query(params![room_id])?;
        while let Some(r) = rows.next()? {
            let mut e = row(r)?;
            while later.front().is_some_and(|(at, _)| *at < e.stream) {
                if let Some((_, taken)) = later.pop_front() {
                    f(taken);
                }
            }
            if was_outlier.contains(&e.stream) {
                e.outlier = true;
                e.state_before = None;
            }
            f(e);
        }
        later.into_iter().for_each(|(_, taken)| f(taken));
        Ok(())
    }

    /// The room's event (not an outlier, not rejected) closest to `ts` in `origin_server_ts`:
    /// the first at or after it (`forward`), else the last at or before it; the earliest stored
    /// among equals. SQLite reads the timestamp out of each row's JSON itself, so the room's
    /// events are neither copied out nor held.
    ///
    /// # Errors
    /// SQLite errors.
    fn event_near_ts(
        &self,
        room_id: &str,
        ts: i64,
        forward: bool,
    ) -> rusqlite::Result<Option<(String, i64)>> {
        let (cmp, order) = if forward {
            (">=", "ASC")
        } else {
            ("<=", "DESC")
        };
        let sql = format!(
            "SELECT event_id, ts FROM (
                 SELECT event_id, stream,
                        CASE WHEN json_valid(json)
                             THEN COALESCE(json_extract(json, '$.origin_server_ts'), 0) END AS ts
                 FROM events WHERE room_id = ?1 AND outlier = 0 AND rejected = 0)
             WHERE typeof(ts) = 'integer' AND ts {cmp} ?2
             ORDER BY ts {order}, stream ASC LIMIT 1"
        );
        self.conn()
            .prepare_cached(&sql)?
            .query_row(params![room_id, ts], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// One event.
    ///
    /// # Errors
    /// SQLite errors.
    fn event(&self, event_id: &str) -> rusqlite::Result<Option<StoredEvent>> {
        let Some(stream) = self.stream_of(event_id) else {
            return Ok(None);
        };
        let mut st = self.conn().prepare_cached(&format!(
            "SELECT {} FROM events WHERE stream = ?1",
            EVENT_COLS
        ))?;
        st.query_row(params![stream], row).optional()
    }

    /// Whether an event is stored (in any form).
    fn has_event(&self, event_id: &str) -> bool {
        self.stream_of(event_id).is_some()
    }

    /// A user's invites (all statuses), oldest first.
    ///
    /// # Errors
    /// SQLite errors.
    fn invites(&self, user_id: &str) -> rusqlite::Result<Vec<Invite>> {
        let mut st = self.conn().prepare_cached(
            "SELECT room_id, user_id, room_version, origin, event, invite_room_state, status FROM invites
             WHERE user_id = ?1 ORDER BY received_ts, room_id",
        )?;
        let rows = st.query_map(params![user_id], |r| {
            Ok(Invite {
                room_id: r.get(0)?,
                user_id: r.get(1)?,
                room_version: r.get(2)?,
                origin: r.get(3)?,
                event: r.get(4)?,
                invite_room_state: r.get(5)?,
                status: r.get(6)?,
            })
        })?;
        rows.collect()
    }

    /// EDUs received for a room: (origin, type, content JSON, received ms).
    ///
    /// # Errors
    /// SQLite errors.
    fn edus(&self, room_id: &str) -> rusqlite::Result<Vec<(String, String, String, i64)>> {
        let mut st = self.conn().prepare_cached(
            "SELECT origin, edu_type, content, received_ts FROM edus WHERE room_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![room_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect()
    }

    /// EDUs of one type received, in any room or none, in the order stored.
    ///
    /// # Errors
    /// SQLite errors.
    fn edus_of_type(&self, edu_type: &str) -> rusqlite::Result<Vec<EduRow>> {
        let mut st = self.conn().prepare_cached(
            "SELECT origin, room_id, content, received_ts FROM edus WHERE edu_type = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![edu_type], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect()
    }
}

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// The database file (the readers open it too).
    path: PathBuf,
    /// Every stored event's `stream` by event ID. SQLite keeps no index on event IDs: they are
    /// random, so each event inserted into such an index dirtied a different B-tree page, and
    /// once the index outgrew the page cache, read it back first. With 100,000 events stored that
    /// index was most of the WAL written per transaction and a third of the server's CPU in the
    /// ingest benchmark. Loaded at open (the rooms are rebuilt from every event anyway), updated
    /// only after a commit succeeds.
    shared: Arc<Shared>,
    /// Transaction answers waiting for the next commit (see [`Store::put_txn_later`]).
    pending_txns: PendingTxns,
    /// How long the last fsynced `COMMIT` took (its WAL write and fsync).
    last_sync: std::time::Duration,
    /// How much of the received EDUs is kept.
    edu_limits: EduLimits,
    /// Rows of `edus` per type, as committed (counted at open, then kept up to date by each
    /// commit that changes them): counting them in SQLite for each commit walked every row of
    /// the type (0.4 ms for 10,000).
    edu_counts: BTreeMap<String, i64>,
}

impl Reads for Store {
    fn conn(&self) -> &Connection {
        &self.conn
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// A read-only connection to the database beside the writer's ([`Store::readers`]). In WAL mode
/// it reads the last commit while the writer writes and fsyncs the next one, so reads (a peer's
/// `/event`, the admin API) never wait for a commit, and a long read holds no writer up.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    shared: Arc<Shared>,
}

impl Reads for Reader {
    fn conn(&self) -> &Connection {
        &self.conn
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// A few [`Reader`]s: [`Readers::get`] hands out a free one.
#[derive(Debug)]
pub struct Readers {
    pool: Vec<Mutex<Reader>>,
    next: AtomicUsize,
    shared: Arc<Shared>,
}

impl Readers {
    /// A reader: the first free one, else the next in turn (waiting for it).
    pub fn get(&self) -> MutexGuard<'_, Reader> {
        for m in &self.pool {
            match m.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any PDU is deferred ([`Store::defer_pdu`]), from memory: no connection needed.
    #[must_use]
    pub fn any_deferred(&self) -> bool {
        self.shared.deferred.load(Ordering::Relaxed) > 0
    }
}

fn count_deferred(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM deferred_pdus", [], |r| r.get(0))
}

fn now_ms() -> i64 {
    crate::server::now().as_i64()
}

impl Store {
    /// Runs one statement through the connection's cache of prepared statements: the hot paths
    /// run the same few statements for every transaction, and preparing them anew (`BEGIN`,
    /// `COMMIT`, the `synchronous` pragma included) was 2% of the server's CPU under load.
    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(p)
    }

    /// Opens (creating if needed) the database, in WAL mode with full fsync on commit.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open(path: &Path) -> rusqlite::Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(EVENTS_TABLE)?;
        conn.execute_batch(SCHEMA)?;
        // Added after the first release: databases created before get the column here.
        let has_backfilled: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'backfilled'",
            [],
            |r| r.get(0),
        )?;
        if !has_backfilled {
            conn.execute_batch(
                "ALTER TABLE events ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        let has_taken_in: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'taken_in'",
            [],
            |r| r.get(0),
        )?;
        if !has_taken_in {
            conn.execute_batch("ALTER TABLE events ADD COLUMN taken_in INTEGER")?;
        }
        conn.execute_batch(DEFERRED_SCHEMA)?;
        // Added after the first release, for EDUs kept once per key (to-device message IDs,
        // a user's presence): databases created before get the column here, their rows none.
        let has_edu_key: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('edus') WHERE name = 'edu_key'",
            [],
            |r| r.get(0),
        )?;
        if !has_edu_key {
            conn.execute_batch("ALTER TABLE edus ADD COLUMN edu_key TEXT")?;
        }
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS edus_by_key ON edus(edu_type, origin, edu_key)
             WHERE edu_key IS NOT NULL",
        )?;
        migrate_event_id_index(&conn)?;
        // After the migration, which copies the table without its indexes: the replay reads
        // the few de-outliered rows of a room without a pass over all of them.
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS events_taken_in ON events(room_id, taken_in)
             WHERE taken_in IS NOT NULL",
        )?;
        // A larger page cache than SQLite's 2 MB default: the rooms' index and state pages stay
        // in memory while events stream in.
        conn.pragma_update(None, "cache_size", -16384)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut by_id = HashMap::new();
        {
            let mut st = conn.prepare("SELECT event_id, stream FROM events ORDER BY stream")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                by_id.entry(id.into_boxed_str()).or_insert(r.get(1)?);
            }
        }
        let users = {
            let mut st = conn.prepare("SELECT user_id, display_name, auto_accept FROM users")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
            rows.collect::<rusqlite::Result<BTreeMap<String, UserRow>>>()?
        };
        let deferred = count_deferred(&conn)?;
        let edu_counts = {
            let mut st = conn.prepare("SELECT edu_type, COUNT(*) FROM edus GROUP BY edu_type")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<BTreeMap<String, i64>>>()?
        };
        Ok(Store {
            conn,
            path: path.to_owned(),
            shared: Arc::new(Shared {
                ids: RwLock::new(by_id),
                users: RwLock::new(users),
                deferred: AtomicI64::new(deferred),
            }),
            pending_txns: PendingTxns::default(),
            last_sync: std::time::Duration::ZERO,
            edu_limits: EduLimits::default(),
            edu_counts,
        })
    }

    /// `n` (at least one) read-only connections to the same database, sharing the map of event
    /// IDs ([`Reader`]).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn readers(&self, n: usize) -> rusqlite::Result<Readers> {
        let mut pool = Vec::new();
        for _ in 0..n.max(1) {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.set_prepared_statement_cache_capacity(32);
            pool.push(Mutex::new(Reader {
                conn,
                shared: self.shared.clone(),
            }));
        }
        Ok(Readers {
            pool,
            next: AtomicUsize::new(0),
            shared: self.shared.clone(),
        })
    }

    // -- users -----------------------------------------------------------------------------------

    /// Creates a user; `false` if it already exists.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn create_user(
        &mut self,
        user_id: &str,
        display_name: Option<&str>,
        auto_accept: bool,
    ) -> rusqlite::Result<bool> {
        let n = self.exec(
            "INSERT OR IGNORE INTO users (user_id, display_name, auto_accept, created_ts) VALUES (?1, ?2, ?3, ?4)",
            params![user_id, display_name, auto_accept, now_ms()],
        )?;
        if n == 1 {
            self.users_mut().insert(
                user_id.to_owned(),
                (display_name.map(str::to_owned), auto_accept),
            );
        }
        Ok(n == 1)
    }

    /// The shared map of users, to change after the statement that it mirrors succeeded (`&mut
    /// self`: not from inside [`Store::in_transaction`], whose writes may still roll back).
    fn users_mut(&mut self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, UserRow>> {
        self.shared
            .users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a user's auto-accept; `false` if there is no such user.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_auto_accept(&mut self, user_id: &str, on: bool) -> rusqlite::Result<bool> {
        let n = self.exec(
            "UPDATE users SET auto_accept = ?2 WHERE user_id = ?1",
            params![user_id, on],
        )?;
        if let Some(u) = self.users_mut().get_mut(user_id) {
            u.1 = on;
        }
        Ok(n == 1)
    }

    // -- rooms and events ------------------------------------------------------------------------

    /// Records a room and its version (idempotent).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn add_room(&self, room_id: &str, version: &str) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO rooms (room_id, room_version, created_ts) VALUES (?1, ?2, ?3)",
            params![room_id, version, now_ms()],
        )?;
        Ok(())
    }

    /// Forgets a room none of whose events were stored (its creation failed).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn remove_room(&self, room_id: &str) -> rusqlite::Result<()> {
        self.exec("DELETE FROM rooms WHERE room_id = ?1", params![room_id])?;
        Ok(())
    }

    /// Every room with its version.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn rooms(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT room_id, room_version FROM rooms ORDER BY created_ts, room_id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// One room's [`Store::store_many`]; the server stores through that (`rooms::commit_many`),
    /// the store's tests through this.
    ///
    /// # Errors
    /// SQLite errors (none of the events is written).
    #[cfg(test)]
    pub fn store_events(
        &mut self,
        room_id: &str,
        events: &[NewEvent<'_>],
        extremities: &[String],
        state: Option<&[(String, String, String)]>,
        destinations: &[String],
    ) -> rusqlite::Result<()> {
        let write = RoomWrite {
            room_id,
            events,
            extremities,
            state,
            destinations,
            redactions: &[],
            invites: &[],
        };
        self.store_many(&[write])?.pop().unwrap_or(Ok(()))
    }

    /// Stores rooms' writes in one transaction (one fsync), each in a savepoint of its own: a
    /// write that fails is rolled back alone and gets its error, the others are committed. One
    /// result per write, in order.
    ///
    /// A write is a room's new events (those stored already are skipped) with its extremities
    /// and current state (`None`: unchanged, not rewritten). Every event it adds is queued for
    /// each of its `destinations` in the same transaction: an outbound row that names the event
    /// ([`Store::queue_outbound_ref`]), so the event and its rows are durable together and its
    /// JSON is stored once.
    ///
    /// # Errors
    /// The transaction failing as a whole (its commit or a savepoint): nothing is written.
    pub fn store_many(
        &mut self,
        writes: &[RoomWrite<'_>],
    ) -> rusqlite::Result<Vec<rusqlite::Result<()>>> {
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut added: Vec<(&str, i64)> = Vec::new();
        self.in_transaction(|db| {
            for w in writes {
                db.exec("SAVEPOINT room_write", [])?;
                match db.write_room(w, &added) {
                    Ok(more) => {
                        db.exec("RELEASE room_write", [])?;
                        added.extend(more);
                        outcomes.push(Ok(()));
                    }
                    Err(e) => {
                        db.exec("ROLLBACK TO room_write", [])?;
                        db.exec("RELEASE room_write", [])?;
                        outcomes.push(Err(e));
                    }
                }
            }
            Ok(())
        })?;
        self.remember(added);
        Ok(outcomes)
    }

    /// One room's rows ([`Store::store_many`]) inside a transaction; returns the events it
    /// added with their `stream`. `earlier`: events added by the same transaction before.
    fn write_room<'a>(
        &self,
        w: &RoomWrite<'a>,
        earlier: &[(&str, i64)],
    ) -> rusqlite::Result<Vec<(&'a str, i64)>> {
        let mut added: Vec<(&'a str, i64)> = Vec::with_capacity(w.events.len());
        let mut ins = self.conn.prepare_cached(
            "INSERT INTO events (event_id, room_id, depth, json, verdict, reason, rejected, soft_failed, outlier, state_before, origin, received_ts, backfilled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for e in w.events {
            let seen = |(id, _): &&(&str, i64)| *id == e.event_id;
            let stored = self.stream_of(e.event_id).or_else(|| {
                let mut by_now = added.iter().chain(earlier);
                by_now.find(seen).map(|(_, stream)| *stream)
            });
            if let Some(stream) = stored {
                if e.backfilled {
                    // An outlier stored before (from a state answer) keeps its place in the
                    // stream: its auth events come before it there.
                    self.exec(
                        "UPDATE events SET backfilled = 1, outlier = 0 WHERE stream = ?1 AND outlier = 1",
                        params![stream],
                    )?;
                } else if !e.outlier {
                    self.take_in_outlier(stream, e)?;
                }
                continue;
            }
            ins.execute(params![
                e.event_id,
                e.room_id,
                e.depth,
                e.json,
                e.verdict,
                e.reason,
                e.verdict == "rejected",
                e.verdict == "soft_failed",
                e.outlier && !e.backfilled,
                e.state_before,
                e.origin,
                now_ms(),
                e.backfilled
            ])?;
            added.push((e.event_id, self.conn.last_insert_rowid()));
        }
        self.exec(
            "DELETE FROM forward_extremities WHERE room_id = ?1",
            params![w.room_id],
        )?;
        for id in w.extremities {
            self.exec(
                "INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)",
                params![w.room_id, id],
            )?;
        }
        for dest in w.destinations {
            for (event_id, _) in &added {
                self.queue_outbound_ref(dest, event_id, w.room_id)?;
            }
        }
        if let Some(state) = w.state {
            self.exec(
                "DELETE FROM current_state WHERE room_id = ?1",
                params![w.room_id],
            )?;
            for (t, k, id) in state {
                self.exec(
                    "INSERT INTO current_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
                    params![w.room_id, t, k, id],
                )?;
            }
        }
        for (target, by) in w.redactions {
            let is_target = |(id, _): &&(&str, i64)| *id == target.as_str();
            let stream = self.stream_of(target).or_else(|| {
                let mut by_now = added.iter().chain(earlier);
                by_now.find(is_target).map(|(_, stream)| *stream)
            });
            if let Some(stream) = stream {
                self.exec(
                    "UPDATE events SET redacted_by = ?2 WHERE stream = ?1 AND redacted_by IS NULL",
                    params![stream, by],
                )?;
            }
        }
        for change in w.invites {
            match change {
                InviteChange::Put(i) => self.put_invite(i)?,
                InviteChange::Status {
                    room_id,
                    user_id,
                    status,
                } => self.set_invite_status(room_id, user_id, status)?,
            }
        }
        Ok(added)
    }

    /// Marks the outlier stored at `stream` as taken into the room's DAG, with the verdict and
    /// given state the room took it in with and the copy it took (it was received again): see
    /// [`EVENTS_TABLE`] for `taken_in`. A row that is no outlier is left as it is (its first
    /// verdict stands, as in the room).
    fn take_in_outlier(&self, stream: i64, e: &NewEvent<'_>) -> rusqlite::Result<()> {
        let changed = self.exec(
            "UPDATE events SET outlier = 0, json = ?2, verdict = ?3, reason = ?4, rejected = ?5,
                 soft_failed = ?6, state_before = ?7,
                 taken_in = (SELECT seq + 1 FROM sqlite_sequence WHERE name = 'events')
             WHERE stream = ?1 AND outlier = 1",
            params![
                stream,
                e.json,
                e.verdict,
                e.reason,
                e.verdict == "rejected",
                e.verdict == "soft_failed",
                e.state_before
            ],
        )?;
        if changed > 0 {
            // The number is used: rows inserted from now on come after it (SQLite lets the
            // sequence of an AUTOINCREMENT table be updated).
            self.exec(
                "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'events'",
                [],
            )?;
        }
        Ok(())
    }

    /// Puts committed events in the map of IDs. Only what is committed goes there: a reader
    /// that finds an ID there finds its row.
    fn remember(&self, added: Vec<(&str, i64)>) {
        let mut ids = self
            .shared
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (id, stream) in added {
            ids.insert(id.into(), stream);
        }
    }

    /// Marks an event as redacted by another (the server does it in the redaction's own commit,
    /// [`RoomWrite::redactions`]).
    ///
    /// # Errors
    /// SQLite errors.
    #[cfg(test)]
    pub fn set_redacted(&self, event_id: &str, by: &str) -> rusqlite::Result<()> {
        let Some(stream) = self.stream_of(event_id) else {
            return Ok(());
        };
        self.exec(
            "UPDATE events SET redacted_by = ?2 WHERE stream = ?1 AND redacted_by IS NULL",
            params![stream, by],
        )?;
        Ok(())
    }

    // -- invites ---------------------------------------------------------------------------------

    /// Pending invites from servers other than `us` for our users who accept invites by
    /// themselves: `(room, user, inviting server)`, oldest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn pending_auto_accepts(
        &self,
        us: &str,
    ) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut st = self.conn.prepare(
            "SELECT i.room_id, i.user_id, i.origin FROM invites i JOIN users u ON u.user_id = i.user_id
             WHERE i.status = 'pending' AND u.auto_accept != 0 AND i.origin != ?1
             ORDER BY i.received_ts, i.room_id",
        )?;
        let rows = st.query_map(params![us], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Records (or replaces) an invite.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_invite(&self, i: &Invite) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO invites (room_id, user_id, room_version, origin, event, invite_room_state, status, received_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![i.room_id, i.user_id, i.room_version, i.origin, i.event, i.invite_room_state, i.status, now_ms()],
        )?;
        Ok(())
    }

    /// Sets an invite's status.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_invite_status(
        &self,
        room_id: &str,
        user_id: &str,
        status: &str,
    ) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE invites SET status = ?3 WHERE room_id = ?1 AND user_id = ?2",
            params![room_id, user_id, status],
        )?;
        Ok(())
    }

    /// Marks a pending invite withdrawn; `false` when it is no longer pending (accepted or
    /// rejected meanwhile: that answer stands).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn rescind_invite(&self, room_id: &str, user_id: &str) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE invites SET status = 'rescinded' WHERE room_id = ?1 AND user_id = ?2 AND status = 'pending'",
            params![room_id, user_id],
        )?;
        Ok(n > 0)
    }

    // -- EDUs ------------------------------------------------------------------------------------

    /// Stores a received EDU; returns how many rows that added.
    fn add_edu(
        &self,
        origin: &str,
        edu_type: &str,
        room_id: Option<&str>,
        content: &str,
    ) -> rusqlite::Result<i64> {
        self.exec(
            "INSERT INTO edus (origin, edu_type, room_id, content, received_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![origin, edu_type, room_id, content, now_ms()],
        )?;
        Ok(1)
    }

    /// Stores a received EDU as its key says: once, or in place of the earlier one. Returns how
    /// many rows that added (0 or 1; -1 never: a replaced row is deleted, its successor added).
    fn put_edu(&self, origin: &str, e: &NewEdu) -> rusqlite::Result<i64> {
        let rows = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let (sql, key, replaced) = match &e.key {
            None => return self.add_edu(origin, &e.edu_type, e.room_id.as_deref(), &e.content),
            // The unique index on (type, origin, key) makes a second copy a no-op.
            Some(EduKey::Once(k)) => (
                "INSERT OR IGNORE INTO edus (origin, edu_type, room_id, content, received_ts, edu_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                k,
                0,
            ),
            Some(EduKey::Latest(k)) => {
                let replaced = self.exec(
                    "DELETE FROM edus WHERE edu_type = ?1 AND origin = ?2 AND edu_key = ?3",
                    params![e.edu_type, origin, k],
                )?;
                (
                    "INSERT INTO edus (origin, edu_type, room_id, content, received_ts, edu_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    k,
                    replaced,
                )
            }
        };
        let added = self.exec(
            sql,
            params![origin, e.edu_type, e.room_id, e.content, now_ms(), key],
        )?;
        Ok(rows(added) - rows(replaced))
    }

    /// Deletes what [`EduLimits`] does not keep: to-device messages older than their time, then
    /// the oldest rows of each type past the number kept. `counts` are the rows per type in the
    /// transaction so far, updated here.
    fn prune_edus(
        &self,
        limits: EduLimits,
        counts: &mut BTreeMap<String, i64>,
    ) -> rusqlite::Result<()> {
        let rows = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        if counts.get(TO_DEVICE).is_some_and(|n| *n > 0) {
            // Named: left to itself, SQLite walks every to-device row through `edus_by_type`.
            let expired = self.exec(
                "DELETE FROM edus INDEXED BY edus_to_device_age
                 WHERE edu_type = 'm.direct_to_device' AND received_ts < ?1",
                params![now_ms().saturating_sub(limits.to_device_ms)],
            )?;
            if let Some(n) = counts.get_mut(TO_DEVICE) {
                *n -= rows(expired);
            }
        }
        for (kind, n) in counts.iter_mut() {
            let excess = *n - limits.per_type.max(1);
            if excess > 0 {
                let deleted = self.exec(
                    "DELETE FROM edus WHERE id IN
                         (SELECT id FROM edus WHERE edu_type = ?1 ORDER BY id LIMIT ?2)",
                    params![kind, excess],
                )?;
                *n -= rows(deleted);
            }
        }
        Ok(())
    }

    /// Sets how much of the received EDUs is kept, and deletes at once (one commit) what the
    /// new limits do not keep.
    ///
    /// # Errors
    /// SQLite errors (the limits are set all the same, and applied by the next commit of EDUs).
    pub fn set_edu_limits(&mut self, limits: EduLimits) -> rusqlite::Result<()> {
        self.edu_limits = limits;
        let mut counts = self.edu_counts.clone();
        self.in_transaction(|db| db.prune_edus(limits, &mut counts))?;
        self.edu_counts = counts;
        Ok(())
    }

    /// Rows of `edus` per type, as committed.
    #[must_use]
    pub fn edu_counts(&self) -> &BTreeMap<String, i64> {
        &self.edu_counts
    }

    /// Stores the EDUs of a transaction from `origin` and the transaction's answer in one
    /// fsynced commit, so that a retry of the transaction finds both (and gets the answer) or
    /// neither (and its EDUs are stored once). The same commit deletes what the [`EduLimits`] do
    /// not keep, so the table stays bounded however many EDUs peers send.
    ///
    /// # Errors
    /// SQLite errors (nothing is stored then).
    pub fn put_txn_with_edus(
        &mut self,
        origin: &str,
        txn_id: &str,
        response: &str,
        edus: &[NewEdu],
    ) -> rusqlite::Result<()> {
        self.pending_txns.put(origin, txn_id, response);
        let limits = self.edu_limits;
        let mut counts = self.edu_counts.clone();
        let stored = self.in_transaction(|db| {
            for e in edus {
                let added = db.put_edu(origin, e)?;
                *counts.entry(e.edu_type.clone()).or_default() += added;
            }
            db.prune_edus(limits, &mut counts)
        });
        match stored {
            Ok(()) => self.edu_counts = counts,
            // Not written: a retry is processed again.
            Err(_) => self.pending_txns.forget(origin, txn_id),
        }
        stored
    }

    // -- server keys -----------------------------------------------------------------------------

    /// Caches a verified key response.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_server_keys(
        &self,
        server: &str,
        response: &str,
        fetched_ts: i64,
    ) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO server_keys (server_name, response, fetched_ts) VALUES (?1, ?2, ?3)",
            params![server, response, fetched_ts],
        )?;
        Ok(())
    }

    /// Every cached key response: (server, response JSON, fetched ms).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn server_keys(&self) -> rusqlite::Result<Vec<(String, String, i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT server_name, response, fetched_ts FROM server_keys")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    // -- outbound queue --------------------------------------------------------------------------

    /// Persists a stored event queued for a destination, naming it only: its JSON is read from
    /// `events` when the queue is restored ([`Store::outbound`] gives an empty JSON for such a
    /// row). Returns the row ID.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn queue_outbound_ref(
        &self,
        destination: &str,
        event_id: &str,
        room_id: &str,
    ) -> rusqlite::Result<i64> {
        self.exec(
            "INSERT INTO outbound (destination, kind, event_id, room_id, json) VALUES (?1, 'pdu', ?2, ?3, '')",
            params![destination, event_id, room_id],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Runs several writes in one SQLite transaction, so they cost one fsync rather than one
    /// each (a delivered transaction's 50 PDUs, a batch of queued PDUs).
    ///
    /// # Errors
    /// SQLite errors (the transaction is rolled back).
    pub fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&Store) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.exec("BEGIN IMMEDIATE", [])?;
        // Taken now: answers put meanwhile wait for the next commit.
        let txns = self.pending_txns.take();
        let result = f(self).and_then(|v| self.write_txns(&txns).map(|()| v));
        let committed = result.and_then(|v| {
            let syncing = std::time::Instant::now();
            self.exec("COMMIT", [])?;
            self.last_sync = syncing.elapsed();
            Ok(v)
        });
        if committed.is_err() {
            let _ = self.exec("ROLLBACK", []);
            self.pending_txns.put_back(txns);
        }
        committed
    }

    /// How long the last fsynced commit ([`Store::in_transaction`]) took to write and sync
    /// (unsynced ones, [`Store::in_unsynced_transaction`], are left out).
    #[must_use]
    pub fn last_sync(&self) -> std::time::Duration {
        self.last_sync
    }

    /// [`Store::in_transaction`] without waiting for the disk: the commit goes into the WAL but is
    /// not fsynced (`synchronous = NORMAL` for this one transaction). It becomes durable with the
    /// next fsynced commit of this connection (the WAL is one append-only file: syncing it syncs
    /// every frame written before) or the next checkpoint. Other connections see it at once.
    ///
    /// Only for writes whose loss on a power failure is harmless or covered: the deletion of
    /// delivered outbound rows (lost, it re-sends PDUs the destination already has and drops by
    /// event ID) and outbound rows written just before the fsynced commit of their events.
    ///
    /// # Errors
    /// SQLite errors (the transaction is rolled back).
    pub fn in_unsynced_transaction<T>(
        &mut self,
        f: impl FnOnce(&Store) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.exec("PRAGMA synchronous = NORMAL", [])?;
        // `last_sync` is about fsynced commits: this one does not count.
        let last_sync = self.last_sync;
        let result = self.in_transaction(f);
        self.last_sync = last_sync;
        // Back to FULL before anything else commits on this connection; if that failed, every
        // later commit would silently stop waiting for the disk, so it is an error too.
        let restored = self.exec("PRAGMA synchronous = FULL", []);
        let value = result?;
        restored?;
        Ok(value)
    }

    /// Forgets a delivered (or dropped) PDU for a destination.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn outbound_done(&self, destination: &str, event_id: &str) -> rusqlite::Result<()> {
        self.exec(
            "DELETE FROM outbound WHERE destination = ?1 AND kind = 'pdu' AND event_id = ?2",
            params![destination, event_id],
        )?;
        Ok(())
    }

    /// Saves a destination's backoff (`Some`), or forgets it once sending succeeds (`None`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_backoff(
        &self,
        destination: &str,
        retry: Option<&RetryState>,
    ) -> rusqlite::Result<()> {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        match retry {
            Some(r) => self.exec(
                "INSERT OR REPLACE INTO destinations \
                 (destination, retry_at, failures, interval_ms, delay_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    destination,
                    as_i64(r.retry_at.as_millis()),
                    i64::from(r.failures),
                    as_i64(r.interval.0),
                    as_i64(r.delay.0)
                ],
            )?,
            None => self.exec(
                "DELETE FROM destinations WHERE destination = ?1",
                params![destination],
            )?,
        };
        Ok(())
    }

    /// Forgets one row by its ID.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn outbound_delete(&self, id: i64) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM outbound WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Everything still queued: (id, destination, kind, event_id, room_id, json), in order. The
    /// JSON is empty for a row that names a stored event ([`Store::queue_outbound_ref`]).
    ///
    /// # Errors
    /// SQLite errors.
    #[allow(clippy::type_complexity)]
    pub fn outbound(
        &self,
    ) -> rusqlite::Result<Vec<(i64, String, String, Option<String>, Option<String>, String)>> {
        let mut st = self.conn.prepare(
            "SELECT id, destination, kind, event_id, room_id, json FROM outbound ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        rows.collect()
    }

    /// PDUs still queued per destination, by destination (for `/metrics`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn outbound_depths(&self) -> rusqlite::Result<Vec<(String, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT destination, COUNT(*) FROM outbound WHERE kind = 'pdu' GROUP BY destination ORDER BY destination",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    // -- transactions ----------------------------------------------------------------------------

    /// Records the answer to a transaction, keeping at least the last [`TXNS_KEPT`], in a commit
    /// of its own. The server writes answers with [`Store::put_txn_later`] or
    /// [`Store::put_txn_with_edus`]; this is for tests.
    ///
    /// # Errors
    /// SQLite errors.
    #[cfg(test)]
    pub fn put_txn(&mut self, origin: &str, txn_id: &str, response: &str) -> rusqlite::Result<()> {
        // Without an fsync of its own (`in_unsynced_transaction`): what the transaction accepted
        // is durable already (its events' commit). Lost on a power cut before the next fsynced
        // commit, the answer is recomputed when the sender retries: the room already has the
        // events, so they are accepted again.
        self.pending_txns.put(origin, txn_id, response);
        self.flush_txns()
    }

    /// Records the answer to a transaction with the next commit of this connection, whichever
    /// it is, rather than in a commit of its own (written at once when [`PENDING_TXNS_MAX`]
    /// wait, at the latest by [`Store::flush_txns`] at shutdown): for a transaction whose every
    /// effect is in the room's events, which are committed already. Until then the in-memory
    /// de-duplication answers retries; if the process dies first, a retry is processed again and
    /// answered the same (its PDUs are in the room).
    ///
    /// The server puts answers through [`Store::pending_txns`]'s handle instead, which needs
    /// no access to the writer (taken by a commit through its fsync).
    ///
    /// # Errors
    /// SQLite errors of the write when it is due.
    pub fn put_txn_later(
        &mut self,
        origin: &str,
        txn_id: &str,
        response: &str,
    ) -> rusqlite::Result<()> {
        if self.pending_txns.put(origin, txn_id, response) {
            return self.flush_txns();
        }
        Ok(())
    }

    /// The answers waiting for the next commit ([`Store::put_txn_later`]), to put answers without
    /// the writer.
    #[must_use]
    pub fn pending_txns(&self) -> PendingTxns {
        self.pending_txns.clone()
    }

    /// How many transaction answers wait for the next commit.
    #[cfg(test)]
    fn pending_txn_count(&self) -> usize {
        self.pending_txns.len()
    }

    /// Writes the transaction answers still waiting (unsynced, see [`Store::put_txn_later`]).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn flush_txns(&mut self) -> rusqlite::Result<()> {
        if self.pending_txns.is_empty() {
            return Ok(());
        }
        self.in_unsynced_transaction(|_| Ok(()))
    }

    /// Inserts answers, inside the caller's transaction.
    fn write_txns(&self, txns: &[(String, String, String)]) -> rusqlite::Result<()> {
        for (origin, txn_id, response) in txns {
            self.exec(
                "INSERT OR REPLACE INTO txns (origin, txn_id, response, received_ts) VALUES (?1, ?2, ?3, ?4)",
                params![origin, txn_id, response, now_ms()],
            )?;
            // Pruned every 64 transactions, so the table holds between TXNS_KEPT and
            // TXNS_KEPT + 63 rows.
            if self.conn.last_insert_rowid() % 64 == 0 {
                self.exec(
                    "DELETE FROM txns WHERE rowid NOT IN (SELECT rowid FROM txns ORDER BY received_ts DESC, rowid DESC LIMIT ?1)",
                    params![TXNS_KEPT],
                )?;
            }
        }
        Ok(())
    }

    /// The answered transactions kept, oldest first: (origin, txn ID, response JSON).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn txns(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT origin, txn_id, response FROM txns ORDER BY received_ts, rowid")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    // -- PDUs refused for a gap --------------------------------------------------------------------

    /// Keeps a PDU refused because the gap before it could not be filled (again: counts a try).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn defer_pdu(
        &mut self,
        origin: &str,
        room_id: &str,
        event_id: &str,
        json: &str,
    ) -> rusqlite::Result<()> {
        self.exec(
            "INSERT INTO deferred_pdus (event_id, origin, room_id, json, received_ts) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(event_id) DO UPDATE SET tries = tries + 1",
            params![event_id, origin, room_id, json, now_ms()],
        )?;
        self.exec(
            "DELETE FROM deferred_pdus WHERE tries >= ?1",
            params![DEFERRED_TRIES],
        )?;
        self.recount_deferred()?;
        Ok(())
    }

    /// Counts the deferred PDUs again, for the readers' [`Readers::any_deferred`] and
    /// [`Store::deferred_pdus`]'s shortcut.
    fn recount_deferred(&self) -> rusqlite::Result<()> {
        let n = count_deferred(&self.conn)?;
        self.shared.deferred.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// The deferred PDUs from `origin`, oldest first: (room ID, event ID, JSON).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn deferred_pdus(&self, origin: &str) -> rusqlite::Result<Vec<(String, String, String)>> {
        if self.shared.deferred.load(Ordering::Relaxed) == 0 {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare_cached(
            "SELECT room_id, event_id, json FROM deferred_pdus WHERE origin = ?1 ORDER BY received_ts, event_id",
        )?;
        let rows = st.query_map(params![origin], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Forgets a deferred PDU (taken in at last).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn undefer_pdu(&mut self, event_id: &str) -> rusqlite::Result<()> {
        self.exec(
            "DELETE FROM deferred_pdus WHERE event_id = ?1",
            params![event_id],
        )?;
        self.recount_deferred()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{EduKey, EduLimits, NewEdu, NewEvent, Reads as _, Store, TO_DEVICE};
    use rusqlite::{params, Connection};
    use std::collections::BTreeMap;

    /// The IDs of the transactions whose answers are stored.
    fn answered(db: &Store) -> Vec<String> {
        db.txns().unwrap().into_iter().map(|(_, t, _)| t).collect()
    }

    fn event<'a>(id: &'a str, json: &'a str) -> NewEvent<'a> {
        NewEvent {
            event_id: id,
            room_id: "!r:a.test",
            depth: 1,
            json,
            verdict: "accepted",
            reason: None,
            outlier: false,
            backfilled: false,
            state_before: None,
            origin: "a.test",
        }
    }

    fn rows(path: &std::path::Path) -> Vec<(i64, String)> {
        let c = Connection::open(path).unwrap();
        let mut st = c
            .prepare("SELECT stream, event_id FROM events ORDER BY stream")
            .unwrap();
        let r = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        r
    }

    fn in_room<'a>(room_id: &'a str, id: &'a str) -> NewEvent<'a> {
        NewEvent {
            room_id,
            ..event(id, "{}")
        }
    }

    fn extremities(path: &std::path::Path, room_id: &str) -> Vec<String> {
        let c = Connection::open(path).unwrap();
        let mut st = c
            .prepare(
                "SELECT event_id FROM forward_extremities WHERE room_id = ?1 ORDER BY event_id",
            )
            .unwrap();
        let r = st
            .query_map([room_id], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        r
    }

    /// Several rooms' writes in one commit: a write that fails is rolled back alone (its events
    /// and its extremities' rewrite), the others are stored and found by ID; an event in two
    /// writes is stored once.
    #[test]
    fn store_many_rolls_back_a_failing_write_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let before = ["$bad0".to_owned()];
        db.store_events(
            "!bad:a.test",
            &[in_room("!bad:a.test", "$bad0")],
            &before,
            None,
            &[],
        )
        .unwrap();
        db.conn
            .execute_batch(
                "CREATE TRIGGER no_bad BEFORE INSERT ON events WHEN NEW.event_id = '$bad1'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let one = [in_room("!one:a.test", "$1a"), in_room("!one:a.test", "$1b")];
        let bad = [
            in_room("!bad:a.test", "$bad9"),
            in_room("!bad:a.test", "$bad1"),
        ];
        let two = [in_room("!two:a.test", "$2a"), in_room("!one:a.test", "$1b")];
        let (x1, xb, x2) = (["$1b".to_owned()], ["$bad1".to_owned()], ["$2a".to_owned()]);
        let w = |room_id, events, extremities| super::RoomWrite {
            room_id,
            events,
            extremities,
            state: None,
            destinations: &[],
            redactions: &[],
            invites: &[],
        };
        let out = db
            .store_many(&[
                w("!one:a.test", &one, &x1),
                w("!bad:a.test", &bad, &xb),
                w("!two:a.test", &two, &x2),
            ])
            .unwrap();
        let oks: Vec<bool> = out.iter().map(Result::is_ok).collect();
        assert_eq!(oks, [true, false, true]);
        let ids: Vec<String> = rows(&path).into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, ["$bad0", "$1a", "$1b", "$2a"]);
        for id in ["$1a", "$1b", "$2a"] {
            assert!(db.has_event(id), "{id}");
        }
        assert!(!db.has_event("$bad9") && !db.has_event("$bad1"));
        assert_eq!(extremities(&path, "!bad:a.test"), ["$bad0"]);
        assert_eq!(extremities(&path, "!one:a.test"), ["$1b"]);
        assert_eq!(extremities(&path, "!two:a.test"), ["$2a"]);
    }

    /// The last fsynced commit's duration (the local group commit's longest wait) is not
    /// replaced by an unsynced commit's.
    #[test]
    fn last_sync_counts_fsynced_commits_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Store::open(&dir.path().join("db.sqlite")).unwrap();
        db.in_transaction(|_| Ok(())).unwrap();
        let synced = db.last_sync();
        assert!(synced > std::time::Duration::ZERO);
        db.in_unsynced_transaction(|_| Ok(())).unwrap();
        assert_eq!(db.last_sync(), synced);
        db.in_transaction(|_| Ok(())).unwrap();
        assert_ne!(db.last_sync(), synced);
    }

    /// An answer put while a commit runs is left for the next one, not dropped with the
    /// answers that commit wrote; a commit that fails puts its answers back, first.
    #[test]
    fn transaction_answers_put_during_a_commit_wait_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let pending = db.pending_txns();
        pending.put("a.test", "t1", "{}");
        db.in_transaction(|_| {
            pending.put("a.test", "t2", "{}");
            Ok(())
        })
        .unwrap();
        assert_eq!(answered(&db), ["t1"]);
        assert_eq!(pending.len(), 1);
        let failed: rusqlite::Result<()> = db.in_transaction(|_| {
            pending.put("a.test", "t3", "{}");
            Err(rusqlite::Error::InvalidQuery)
        });
        assert!(failed.is_err());
        assert_eq!(answered(&db), ["t1"]);
        db.flush_txns().unwrap();
        assert!(pending.is_empty());
        assert_eq!(answered(&db), ["t1", "t2", "t3"]);
    }

    #[test]
    fn events_stored_once_and_found_by_id_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        db.store_events(
            "!r:a.test",
            &[event("$a", "{}"), event("$b", "{}"), event("$a", "{}")],
            &[],
            None,
            &[],
        )
        .unwrap();
        db.store_events(
            "!r:a.test",
            &[event("$b", "{}"), event("$c", "{}")],
            &[],
            None,
            &[],
        )
        .unwrap();
        assert_eq!(
            rows(&path),
            vec![(1, "$a".into()), (2, "$b".into()), (3, "$c".into())]
        );
        db.set_redacted("$b", "$red").unwrap();
        drop(db);
        let db = Store::open(&path).unwrap();
        assert!(db.has_event("$c") && !db.has_event("$d"));
        let b = db.event("$b").unwrap().unwrap();
        assert_eq!((b.stream, b.redacted_by.as_deref()), (2, Some("$red")));
        assert!(db.event("$d").unwrap().is_none());
    }

    /// A withdrawal marks only a pending invite: one accepted (or rejected) meanwhile keeps its
    /// status.
    #[test]
    fn only_a_pending_invite_is_rescinded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let invite = |room: &str| super::Invite {
            room_id: room.into(),
            user_id: "@b:a.test".into(),
            room_version: "10".into(),
            origin: "x.test".into(),
            event: "{}".into(),
            invite_room_state: "[]".into(),
            status: "pending".into(),
        };
        db.put_invite(&invite("!p:x.test")).unwrap();
        db.put_invite(&invite("!a:x.test")).unwrap();
        db.set_invite_status("!a:x.test", "@b:a.test", "accepted")
            .unwrap();
        assert!(db.rescind_invite("!p:x.test", "@b:a.test").unwrap());
        assert!(!db.rescind_invite("!a:x.test", "@b:a.test").unwrap());
        let status: Vec<(String, String)> = db
            .invites("@b:a.test")
            .unwrap()
            .into_iter()
            .map(|i| (i.room_id, i.status))
            .collect();
        assert!(status.contains(&("!p:x.test".into(), "rescinded".into())));
        assert!(status.contains(&("!a:x.test".into(), "accepted".into())));
    }

    /// Users are kept in memory, shared with the readers: a reader sees a user as soon as it is
    /// created and an auto-accept change as soon as it is written; a second creation changes
    /// nothing; reopening reads them back from the table.
    #[test]
    fn users_are_seen_by_the_readers_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let readers = db.readers(1).unwrap();
        assert!(db.create_user("@b:a.test", None, false).unwrap());
        assert!(db.create_user("@a:a.test", Some("Alice"), true).unwrap());
        assert!(!db.create_user("@a:a.test", Some("Other"), false).unwrap());
        assert_eq!(
            readers.get().user("@a:a.test").unwrap(),
            Some((Some("Alice".into()), true))
        );
        assert!(db.set_auto_accept("@b:a.test", true).unwrap());
        assert!(!db.set_auto_accept("@nobody:a.test", true).unwrap());
        assert_eq!(readers.get().user("@b:a.test").unwrap(), Some((None, true)));
        assert_eq!(readers.get().user("@nobody:a.test").unwrap(), None);
        assert_eq!(readers.get().users().unwrap(), ["@a:a.test", "@b:a.test"]);
        drop((readers, db));
        let db = Store::open(&path).unwrap();
        assert_eq!(
            db.user("@a:a.test").unwrap(),
            Some((Some("Alice".into()), true))
        );
        assert_eq!(db.user("@b:a.test").unwrap(), Some((None, true)));
        assert_eq!(db.users().unwrap(), ["@a:a.test", "@b:a.test"]);
    }

    #[test]
    fn backfilled_copy_of_an_outlier_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let mut outlier = event("$o", "{}");
        outlier.outlier = true;
        db.store_events("!r:a.test", &[outlier, event("$x", "{}")], &[], None, &[])
            .unwrap();
        let mut history = event("$o", "{}");
        history.backfilled = true;
        db.store_events("!r:a.test", &[history], &[], None, &[])
            .unwrap();
        let o = db.event("$o").unwrap().unwrap();
        assert_eq!((o.stream, o.outlier, o.backfilled), (1, false, true));
        assert_eq!(rows(&path).len(), 2);
    }

    /// An outlier taken into the DAG later keeps its row, now with the verdict and given state
    /// it was taken in with; the replay gives it as the outlier at its row and, taken in, after
    /// the rows stored before that. A later copy of an event in the DAG changes nothing.
    #[test]
    fn outlier_taken_in_later_is_replayed_where_it_was_taken_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let mut outlier = event("$o", "{}");
        outlier.outlier = true;
        db.store_events("!r:a.test", &[outlier, event("$x", "{}")], &[], None, &[])
            .unwrap();
        let taken = NewEvent {
            verdict: "soft_failed",
            reason: Some("auth_not_joined"),
            state_before: Some("[]"),
            ..event("$o", r#"{"k":1}"#)
        };
        db.store_events("!r:a.test", &[taken], &[], None, &[])
            .unwrap();
        let again = NewEvent {
            verdict: "rejected",
            ..event("$o", "{}")
        };
        db.store_events("!r:a.test", &[again, event("$y", "{}")], &[], None, &[])
            .unwrap();

        let o = db.event("$o").unwrap().unwrap();
        assert_eq!(
            (o.stream, o.outlier, o.soft_failed, o.json.as_str()),
            (1, false, true, r#"{"k":1}"#)
        );
        assert_eq!(rows(&path).len(), 3);
        let listed: Vec<String> = db
            .room_events("!r:a.test")
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(listed, ["$o", "$x", "$y"]);
        let mut replay = Vec::new();
        db.each_room_event("!r:a.test", |e| {
            replay.push((e.event_id, e.outlier, e.state_before, e.verdict));
        })
        .unwrap();
        let visit = |id: &str, outlier, state: Option<&str>, verdict: &str| {
            (
                id.to_owned(),
                outlier,
                state.map(str::to_owned),
                verdict.to_owned(),
            )
        };
        assert_eq!(
            replay,
            [
                visit("$o", true, None, "soft_failed"),
                visit("$x", false, None, "accepted"),
                visit("$o", false, Some("[]"), "soft_failed"),
                visit("$y", false, None, "accepted"),
            ]
        );
        // The same after reopening (the sequence the taking in used is kept).
        drop(db);
        let db = Store::open(&path).unwrap();
        let mut order = Vec::new();
        db.each_room_event("!r:a.test", |e| order.push(e.event_id))
            .unwrap();
        assert_eq!(order, ["$o", "$x", "$o", "$y"]);
    }

    #[test]
    fn transaction_answers_ride_on_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        db.put_txn("a.test", "t1", "{}").unwrap();
        db.put_txn_later("a.test", "t2", "{\"pdus\":{}}").unwrap();
        assert_eq!(answered(&db), ["t1"]);
        assert_eq!(db.pending_txn_count(), 1);
        db.store_events("!r:a.test", &[event("$a", "{}")], &[], None, &[])
            .unwrap();
        assert_eq!(answered(&db), ["t1", "t2"]);
        assert_eq!(db.pending_txn_count(), 0);
        db.put_txn_later("a.test", "t3", "{}").unwrap();
        db.flush_txns().unwrap();
        drop(db);
        let mut db = Store::open(&path).unwrap();
        assert_eq!(answered(&db), ["t1", "t2", "t3"]);
        // With no other commit, the answers are written once PENDING_TXNS_MAX wait.
        for i in 1..super::PENDING_TXNS_MAX {
            db.put_txn_later("b.test", &format!("u{i}"), "{}").unwrap();
        }
        assert_eq!(answered(&db).len(), 3);
        db.put_txn_later("b.test", "last", "{}").unwrap();
        assert_eq!(answered(&db).len(), 3 + super::PENDING_TXNS_MAX);
        assert_eq!(db.pending_txn_count(), 0);
    }

    /// Events stored with destinations get an outbound row each per destination in the same
    /// commit, naming the event without a copy of its JSON; an event stored already gets none.
    #[test]
    fn events_are_queued_in_their_own_commit_by_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        db.store_events("!r:a.test", &[event("$old", "{}")], &[], None, &[])
            .unwrap();
        let dests = ["b.test".to_owned(), "c.test".to_owned()];
        db.store_events(
            "!r:a.test",
            &[event("$old", "{}"), event("$new", "{\"n\":1}")],
            &[],
            None,
            &dests,
        )
        .unwrap();
        drop(db);
        let db = Store::open(&path).unwrap();
        let rows: Vec<_> = db
            .outbound()
            .unwrap()
            .into_iter()
            .map(|(_, dest, kind, id, room, json)| (dest, kind, id, room, json))
            .collect();
        let row = |dest: &str| {
            (
                dest.to_owned(),
                "pdu".to_owned(),
                Some("$new".to_owned()),
                Some("!r:a.test".to_owned()),
                String::new(),
            )
        };
        assert_eq!(rows, [row("b.test"), row("c.test")]);
    }

    /// A transaction's EDUs and its answer are written together: both survive a reopen, and when
    /// the write fails neither is stored (a retry then stores the EDUs once).
    #[test]
    fn edus_and_their_transaction_answer_are_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let edu = |room: &str, content: &str| NewEdu {
            edu_type: "m.typing".into(),
            room_id: Some(room.into()),
            content: content.into(),
            key: None,
        };
        // An answer waiting for the next commit goes out with this one.
        db.put_txn_later("a.test", "t0", "{}").unwrap();
        db.put_txn_with_edus(
            "a.test",
            "t1",
            "{\"pdus\":{}}",
            &[edu("!r:a.test", "{\"n\":1}"), edu("!s:a.test", "{\"n\":2}")],
        )
        .unwrap();
        drop(db);
        let mut db = Store::open(&path).unwrap();
        assert_eq!(answered(&db), ["t0", "t1"]);
        let contents = |db: &Store, room: &str| {
            db.edus(room)
                .unwrap()
                .into_iter()
                .map(|(o, k, c, _)| (o, k, c))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            contents(&db, "!r:a.test"),
            [("a.test".into(), "m.typing".into(), "{\"n\":1}".into())]
        );
        assert_eq!(contents(&db, "!s:a.test").len(), 1);
        // The second EDU cannot be written (a trigger refuses it): the first is rolled back and
        // the answer is not kept for a later commit either.
        db.conn
            .execute_batch(
                "CREATE TRIGGER no_n3 BEFORE INSERT ON edus WHEN NEW.content = '{\"n\":3}'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        assert!(db
            .put_txn_with_edus(
                "a.test",
                "t2",
                "{}",
                &[edu("!r:a.test", "{\"n\":4}"), edu("!r:a.test", "{\"n\":3}")],
            )
            .is_err());
        assert_eq!(db.pending_txn_count(), 0);
        db.store_events("!r:a.test", &[event("$a", "{}")], &[], None, &[])
            .unwrap();
        assert_eq!(answered(&db), ["t0", "t1"]);
        assert_eq!(contents(&db, "!r:a.test").len(), 1);
    }

    /// EDUs with a key are kept once (a to-device message ID of an origin) or once per key, the
    /// latest (a user's presence), per type and origin; EDUs without one are all kept. A
    /// database made before the key column gets it, and keeps its rows.
    #[test]
    fn keyed_edus_are_kept_once_also_in_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE edus (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    origin TEXT NOT NULL,
                    edu_type TEXT NOT NULL,
                    room_id TEXT,
                    content TEXT NOT NULL,
                    received_ts INTEGER NOT NULL
                );
                INSERT INTO edus (origin, edu_type, content, received_ts)
                    VALUES ('a.test', 'm.direct_to_device', '{\"old\":1}', strftime('%s', 'now') * 1000);",
            )
            .unwrap();
        }
        let mut db = Store::open(&path).unwrap();
        let edu = |kind: &str, content: &str, key: Option<EduKey>| NewEdu {
            edu_type: kind.into(),
            room_id: None,
            content: content.into(),
            key,
        };
        let once = |id: &str| Some(EduKey::Once(id.into()));
        let latest = |user: &str| Some(EduKey::Latest(user.into()));
        let to_device = "m.direct_to_device";
        db.put_txn_with_edus(
            "a.test",
            "t1",
            "{}",
            &[
                edu(to_device, "{\"n\":1}", once("m1")),
                edu(to_device, "{\"n\":2}", once("m1")),
                edu("m.presence", "{\"u\":1}", latest("@u:a.test")),
                edu("m.presence", "{\"v\":1}", latest("@v:a.test")),
            ],
        )
        .unwrap();
        db.put_txn_with_edus(
            "a.test",
            "t2",
            "{}",
            &[
                edu(to_device, "{\"n\":3}", once("m1")),
                edu("m.presence", "{\"u\":2}", latest("@u:a.test")),
            ],
        )
        .unwrap();
        // Another origin's message with the same ID is another message.
        db.put_txn_with_edus("b.test", "t1", "{}", &[edu(to_device, "{}", once("m1"))])
            .unwrap();
        let contents = |kind: &str| -> Vec<(String, String)> {
            db.edus_of_type(kind)
                .unwrap()
                .into_iter()
                .map(|(o, _, c, _)| (o, c))
                .collect()
        };
        let row = |o: &str, c: &str| (o.to_owned(), c.to_owned());
        assert_eq!(
            contents(to_device),
            [
                row("a.test", "{\"old\":1}"),
                row("a.test", "{\"n\":1}"),
                row("b.test", "{}")
            ]
        );
        assert_eq!(
            contents("m.presence"),
            [row("a.test", "{\"v\":1}"), row("a.test", "{\"u\":2}")]
        );
    }

    /// Rows of each type as SQLite counts them.
    fn counted(db: &Store) -> BTreeMap<String, i64> {
        let mut st = db
            .conn
            .prepare("SELECT edu_type, COUNT(*) FROM edus GROUP BY edu_type")
            .unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// A stream of EDUs of every kind, keyed and not, never makes the table hold more than the
    /// limit of rows of a type after a commit, and the rows kept are the newest; the count kept
    /// in memory is SQLite's, also after a reopen, and lower limits apply at once when set.
    #[test]
    fn edus_stay_bounded_and_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Store::open(&path).unwrap();
        let limits = EduLimits {
            per_type: 50,
            ..EduLimits::default()
        };
        db.set_edu_limits(limits).unwrap();
        let edu = |kind: &str, n: usize, key: Option<EduKey>| NewEdu {
            edu_type: kind.into(),
            room_id: Some("!r:a.test".into()),
            content: format!("{{\"n\":{n}}}"),
            key,
        };
        for n in 0..1000 {
            let edus = [
                edu("m.typing", n, None),
                edu("m.receipt", n, Some(EduKey::Latest(format!("user{n}")))),
                edu(TO_DEVICE, n, Some(EduKey::Once(format!("m{n}")))),
                // Two of a key in the same commit: the later one is kept.
                edu(
                    "m.presence",
                    n,
                    Some(EduKey::Latest(format!("user{}", n / 2))),
                ),
            ];
            db.put_txn_with_edus("a.test", &format!("t{n}"), "{}", &edus)
                .unwrap();
            let counted = counted(&db);
            assert!(counted.values().all(|c| *c <= 50), "{n}: {counted:?}");
            assert_eq!(db.edu_counts(), &counted, "{n}");
        }
        let kept = |db: &Store, kind: &str| -> Vec<String> {
            db.edus_of_type(kind)
                .unwrap()
                .into_iter()
                .map(|(_, _, c, _)| c)
                .collect()
        };
        let newest = |from: usize, step: usize| -> Vec<String> {
            (from..1000)
                .step_by(step)
                .map(|n| format!("{{\"n\":{n}}}"))
                .collect()
        };
        for kind in ["m.typing", "m.receipt", TO_DEVICE] {
            assert_eq!(kept(&db, kind), newest(950, 1), "{kind}");
        }
        assert_eq!(kept(&db, "m.presence"), newest(901, 2));
        drop(db);
        let mut db = Store::open(&path).unwrap();
        assert_eq!(db.edu_counts(), &counted(&db));
        db.set_edu_limits(EduLimits {
            per_type: 10,
            ..limits
        })
        .unwrap();
        assert_eq!(kept(&db, "m.typing"), newest(990, 1));
        assert_eq!(db.edu_counts(), &counted(&db));
    }

    /// To-device messages are kept for their time (we have no client to deliver them to):
    /// the next commit of EDUs deletes those older, of every origin, and keeps the others.
    #[test]
    fn to_device_messages_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let message = |id: &str| NewEdu {
            edu_type: TO_DEVICE.into(),
            room_id: None,
            content: format!("{{\"message_id\":\"{id}\"}}"),
            key: Some(EduKey::Once(id.into())),
        };
        let typing = NewEdu {
            edu_type: "m.typing".into(),
            room_id: Some("!r:a.test".into()),
            content: "{}".into(),
            key: None,
        };
        db.put_txn_with_edus("a.test", "t1", "{}", &[message("old"), typing.clone()])
            .unwrap();
        db.put_txn_with_edus("b.test", "t1", "{}", &[message("recent")])
            .unwrap();
        // The first is 8 days old, the second 6, the typing notice 30.
        let day = 86_400_000;
        let ago = |content: &str, days: i64| {
            db.conn
                .execute(
                    "UPDATE edus SET received_ts = received_ts - ?2 WHERE content LIKE ?1",
                    params![format!("%{content}%"), days * day],
                )
                .unwrap();
        };
        ago("old", 8);
        ago("recent", 6);
        ago("{}", 30);
        db.put_txn_with_edus("c.test", "t1", "{}", &[message("new")])
            .unwrap();
        let ids: Vec<String> = db
            .edus_of_type(TO_DEVICE)
            .unwrap()
            .into_iter()
            .map(|(o, _, _, _)| o)
            .collect();
        assert_eq!(ids, ["b.test", "c.test"]);
        assert_eq!(db.edus_of_type("m.typing").unwrap().len(), 1, "not by age");
        assert_eq!(db.edu_counts(), &counted(&db));
    }

    /// A database made with the first schema (`event_id TEXT NOT NULL UNIQUE`, no `backfilled`
    /// column) opens with every row and `stream` kept and no unique index left.
    #[test]
    fn old_unique_event_id_schema_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE events (
                    stream INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL UNIQUE,
                    room_id TEXT NOT NULL,
                    depth INTEGER NOT NULL,
                    json TEXT NOT NULL,
                    verdict TEXT NOT NULL,
                    reason TEXT,
                    rejected INTEGER NOT NULL,
                    soft_failed INTEGER NOT NULL,
                    outlier INTEGER NOT NULL,
                    state_before TEXT,
                    redacted_by TEXT,
                    origin TEXT,
                    received_ts INTEGER NOT NULL
                );
                CREATE INDEX events_by_room ON events(room_id, stream);",
            )
            .unwrap();
            for (stream, id) in [(3, "$x"), (7, "$y")] {
                c.execute(
                    "INSERT INTO events (stream, event_id, room_id, depth, json, verdict, rejected, soft_failed, outlier, redacted_by, received_ts)
                     VALUES (?1, ?2, '!r:a.test', 1, '{\"k\":1}', 'accepted', 0, 0, 0, ?3, 5)",
                    params![stream, id, (id == "$y").then_some("$red")],
                )
                .unwrap();
            }
        }
        let mut db = Store::open(&path).unwrap();
        let y = db.event("$y").unwrap().unwrap();
        assert_eq!(
            (y.stream, y.json.as_str(), y.redacted_by.as_deref()),
            (7, "{\"k\":1}", Some("$red"))
        );
        db.store_events(
            "!r:a.test",
            &[event("$x", "{}"), event("$z", "{}")],
            &[],
            None,
            &[],
        )
        .unwrap();
        assert_eq!(
            rows(&path),
            vec![(3, "$x".into()), (7, "$y".into()), (8, "$z".into())]
        );
        let c = Connection::open(&path).unwrap();
        let unique: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM pragma_index_list('events') WHERE \"unique\" = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let by_room: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM pragma_index_list('events') WHERE name = 'events_by_room'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((unique, by_room), (0, 1));
    }

    fn ids(db: &Store, origin: &str) -> Vec<String> {
        db.deferred_pdus(origin)
            .unwrap()
            .into_iter()
            .map(|r| r.1)
            .collect()
    }

    /// Deferred PDUs are found by origin, also after reopening (the in-memory count is loaded
    /// at open), forgotten when undeferred, and given up after `DEFERRED_TRIES` tries.
    #[test]
    fn deferred_pdus_counted_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut db = Store::open(&path).unwrap();
            assert!(db.deferred_pdus("a.test").unwrap().is_empty());
            db.defer_pdu("a.test", "!r:a.test", "$1", "{}").unwrap();
            db.defer_pdu("a.test", "!r:a.test", "$2", "{}").unwrap();
            db.defer_pdu("b.test", "!r:a.test", "$3", "{}").unwrap();
            assert_eq!(ids(&db, "a.test"), ["$1", "$2"]);
            db.undefer_pdu("$1").unwrap();
            assert_eq!(ids(&db, "a.test"), ["$2"]);
        }
        let mut db = Store::open(&path).unwrap();
        // Whether any is deferred is known without a connection, and follows the writer.
        let readers = db.readers(1).unwrap();
        assert!(readers.any_deferred());
        assert_eq!(ids(&db, "a.test"), ["$2"]);
        assert_eq!(ids(&db, "b.test"), ["$3"]);
        db.undefer_pdu("$2").unwrap();
        assert!(ids(&db, "a.test").is_empty());
        assert!(readers.any_deferred());
        for _ in 0..super::DEFERRED_TRIES {
            db.defer_pdu("b.test", "!r:a.test", "$3", "{}").unwrap();
        }
        assert!(ids(&db, "b.test").is_empty());
        assert!(!readers.any_deferred());
        db.defer_pdu("c.test", "!r:a.test", "$4", "{}").unwrap();
        assert!(readers.any_deferred());
    }
}
