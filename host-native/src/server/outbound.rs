//! Outbound transactions: one core `DestinationQueue` per destination, driven by a tokio task
//! (`poll_transmit` → signed `PUT /send` → `handle_response`; sleep until `poll_timeout`). Every
//! queued PDU is in the `outbound` table until the destination acknowledged it (or the queue
//! dropped it: its transaction refused too many times in a row, or overflow), so a restart loses
//! nothing: the queue is filled again from the table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mxfed_core::canonical::{self, Object, ParseOptions};
use mxfed_core::edu::Edu;
use mxfed_core::outbound::{
    DestinationQueue, DropReason, Event, Failure, OutboundConfig, Outcome, RetryState,
};
use mxfed_core::{Millis, Timestamp};
use tokio::sync::mpsc;

use super::client::FetchError;
use super::store::Reads as _;
use super::{log, now, warn, AppState};

/// What the host tells a destination's task.
#[derive(Debug)]
enum Cmd {
    /// Send this PDU (one parsed copy shared by every destination's queue).
    Pdu {
        event_id: String,
        room_id: String,
        pdu: Arc<Object>,
    },
    /// Send this EDU (ephemeral ones are not persisted: a typing notification or receipt lost
    /// with a restart is superseded by the next one anyway).
    Edu(Edu),
    /// The destination contacted us: retry now.
    Reachable,
}

/// The senders of every destination's task.
#[derive(Default)]
pub struct Outbound {
    tasks: Mutex<BTreeMap<String, mpsc::UnboundedSender<Cmd>>>,
}

impl Outbound {
    fn sender(&self, state: &Arc<AppState>, dest: &str) -> Option<mpsc::UnboundedSender<Cmd>> {
        let mut tasks = self.tasks.lock().ok()?;
        if let Some(tx) = tasks.get(dest) {
            if !tx.is_closed() {
                return Some(tx.clone());
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.insert(dest.to_owned(), tx.clone());
        // Outside a runtime (unit tests of the router) there is nothing to drive the queue; the
        // PDU stays in the table for the next start.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(run_destination(state.clone(), dest.to_owned(), rx));
        }
        Some(tx)
    }

    /// Hands an EDU to a destination's task (the core queue coalesces typing and receipts).
    pub fn queue_edu(&self, state: &Arc<AppState>, dest: &str, edu: Edu) {
        if let Some(tx) = self.sender(state, dest) {
            let _ = tx.send(Cmd::Edu(edu));
        }
    }

    /// Hands PDUs already persisted for `dests` (with their events,
    /// [`super::rooms::send_stored`]) to their tasks, one copy of each shared by all.
    pub fn hand_over(
        &self,
        state: &Arc<AppState>,
        dests: &[String],
        room_id: &str,
        pdus: &[(&str, &Object)],
    ) {
        if dests.is_empty() {
            return;
        }
        let shared: Vec<(&str, Arc<Object>)> = pdus
            .iter()
            .map(|&(id, pdu)| (id, Arc::new(pdu.clone())))
            .collect();
        for dest in dests {
            if let Some(tx) = self.sender(state, dest) {
                for (id, pdu) in &shared {
                    let _ = tx.send(Cmd::Pdu {
                        event_id: (*id).to_owned(),
                        room_id: room_id.to_owned(),
                        pdu: Arc::clone(pdu),
                    });
                }
            }
        }
    }

    /// A valid request from `origin` arrived: if we have a queue for it, retry now.
    pub fn mark_reachable(&self, origin: &str) {
        if let Ok(tasks) = self.tasks.lock() {
            if let Some(tx) = tasks.get(origin) {
                let _ = tx.send(Cmd::Reachable);
            }
        }
    }

    /// Starts a task for every destination with PDUs left in the table (at start-up). Rows are
    /// written in their event's commit, so each names a stored event; a row whose event is not
    /// stored is deleted instead: earlier versions wrote a group's rows in a commit before their
    /// events', and a process that died between the two left rows for events never answered
    /// for, which must not go out.
    pub fn restore(&self, state: &Arc<AppState>) {
        let rows = state.db().outbound().unwrap_or_default();
        let mut count = 0usize;
        // An event queued for several destinations is parsed once and shared.
        let mut parsed: BTreeMap<String, Arc<Object>> = BTreeMap::new();
        for (row, dest, kind, event_id, room_id, json) in rows {
            if kind != "pdu" {
                continue;
            }
            let (Some(event_id), Some(room_id)) = (event_id, room_id) else {
                continue;
            };
            if let Some(pdu) = parsed.get(&event_id) {
                if let Some(tx) = self.sender(state, &dest) {
                    let _ = tx.send(Cmd::Pdu {
                        event_id,
                        room_id,
                        pdu: Arc::clone(pdu),
                    });
                    count += 1;
                }
                continue;
            }
            let Some(stored) = state.reads().event(&event_id).ok().flatten() else {
                log(&format!(
                    "queued PDU {event_id} for {dest} was never stored; dropped"
                ));
                let _ = state.db().outbound_delete(row);
                continue;
            };
            // A row naming the event has no JSON of its own; older rows carry a copy.
            let json = if json.is_empty() { stored.json } else { json };
            let Ok(pdu) = canonical::parse_object(json.as_bytes(), &ParseOptions::LEGACY) else {
                continue;
            };
            let pdu = Arc::new(pdu);
            parsed.insert(event_id.clone(), Arc::clone(&pdu));
            if let Some(tx) = self.sender(state, &dest) {
                let _ = tx.send(Cmd::Pdu {
                    event_id,
                    room_id,
                    pdu,
                });
                count += 1;
            }
        }
        if count > 0 {
            log(&format!("{count} queued PDU(s) restored from the database"));
        }
    }
}

fn config() -> OutboundConfig {
    OutboundConfig {
        // Loopback peers come back quickly; a real one backs off to the cap anyway.
        backoff_base: Millis(500),
        backoff_cap: Millis::from_secs(3600),
        // A burst of more than the core's default 1,000 PDUs (a batch of admin sends) would drop
        // the older ones for catch-up, and the destination, which catches up with at most
        // `max_missing_events` and then `/state`, would never see them. They are in the
        // `outbound` table anyway; 10,000 of ~1 KB is about 10 MB of memory per destination.
        max_pending_pdus: 10_000,
        // Refusals (a proxy's 404, a whitelist's 403) keep the core's defaults: retried no
        // sooner than 10 minutes (Synapse's first interval), abandoned after 3 in a row. So
        // does catch-up mode: once a retry is an hour away, only the newest PDU of each room
        // stays queued (the others' rows are deleted), whatever the bound above.
        ..OutboundConfig::default()
    }
}

async fn transmit(state: &AppState, dest: &str, path: &str, body: Vec<u8>) -> Outcome {
    let started = std::time::Instant::now();
    // The core's body is canonical JSON: sent and signed as it is.
    let result = state
        .client
        .request_text(dest, "PUT", path, Some(body), true)
        .await;
    let took = started.elapsed();
    state.metrics.txn_send.observe(took);
    tracing::debug!(
        destination = dest,
        path,
        status = result.as_ref().map_or(0, |(s, _)| *s),
        ms = took.as_secs_f64() * 1000.0,
        "transaction sent"
    );
    let outcome = match result {
        // The core decides what acknowledges a transaction (a 2xx with a JSON object).
        Ok((status, bytes)) => {
            let outcome = Outcome::from_http(status, &bytes);
            match &outcome {
                Outcome::Failure(Failure::InvalidResponse { .. }) => warn(&format!(
                    "send to {dest}: HTTP {status} with a body that is not a JSON object"
                )),
                Outcome::Failure(_) => warn(&format!("send to {dest}: HTTP {status}")),
                _ => {}
            }
            outcome
        }
        Err(FetchError::Timeout) => Outcome::Failure(Failure::Timeout),
        // Not JSON: never sendable (the core writes canonical JSON, so this does not happen).
        Err(FetchError::BadBody(e)) => {
            warn(&format!("send to {dest}: {e}"));
            Outcome::Failure(Failure::ClientError { status: 400 })
        }
        Err(e) => {
            warn(&format!("send to {dest}: {e}"));
            Outcome::Failure(Failure::Network)
        }
    };
    state
        .metrics
        .txn_sent(matches!(outcome, Outcome::Success(_)));
    outcome
}

/// Acts on the queue's events. The rows of delivered and dropped PDUs are deleted in one SQLite
/// transaction that does not wait for fsync ([`super::store::Store::in_unsynced_transaction`]),
/// on a blocking thread: the destination's task never waits for the database (a group commit
/// of ours may hold it for a while), so it takes the next answer as soon as it comes. A
/// deletion lost to a power failure
/// only means that after the restart those PDUs are sent again, which the destination answers
/// without storing anything twice (it de-duplicates by event ID, as every server must, since a
/// sender retries a transaction whose answer it did not get). Nothing can be lost this way: the
/// rows only go away, never appear.
///
/// Returns the last change of the backoff, if any, for [`save_backoff`]: unlike the deletions,
/// those writes must land in order.
fn handle_events(state: &Arc<AppState>, q: &mut DestinationQueue) -> Option<Option<RetryState>> {
    let dest = q.destination().to_owned();
    let mut done: Vec<String> = Vec::new();
    let mut backoff = None;
    while let Some(ev) = q.poll_event() {
        match ev {
            Event::BackoffChanged { retry } => backoff = Some(retry),
            Event::Delivered { pdus, .. } => {
                done.extend(pdus.into_iter().map(|p| p.event_id));
            }
            Event::PduDropped { pdu, reason, .. } => {
                // In catch-up mode every new event of a room drops the one before it, for
                // every such destination: not worth a line each.
                if reason == DropReason::CatchUp {
                    tracing::debug!(
                        destination = dest.as_str(),
                        event_id = pdu.event_id.as_str(),
                        "PDU dropped in catch-up mode (a newer one of its room is queued)"
                    );
                } else {
                    log(&format!(
                        "PDU {} for {dest} dropped: {reason:?}",
                        pdu.event_id
                    ));
                }
                done.push(pdu.event_id);
            }
            Event::RemotePduError { event_id, error } => {
                log(&format!("{dest} refused {event_id}: {error}"));
            }
            Event::TransactionRejected { txn_id, status } => {
                warn(&format!(
                    "{dest} refused transaction {txn_id} with HTTP {status} too many times; \
                     its PDUs are dropped"
                ));
            }
            Event::DestinationDown { retry_at } => {
                warn(&format!(
                    "{dest} is unreachable; retrying at {}",
                    retry_at.as_millis()
                ));
            }
            Event::DestinationUp => log(&format!("{dest} is reachable again")),
            _ => {}
        }
    }
    if done.is_empty() {
        return backoff;
    }
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let deleted = state.db().in_unsynced_transaction(|db| {
            for id in &done {
                db.outbound_done(&dest, id)?;
            }
            Ok(())
        });
        if let Err(e) = deleted {
            warn(&format!(
                "cannot forget {} delivered PDU(s) for {dest}: {e}",
                done.len()
            ));
        }
    });
    backoff
}

/// Saves (or forgets) the destination's backoff, so that the next process resumes it
/// ([`DestinationQueue::restore_backoff`]) rather than contacting every failing destination at
/// once. Awaited, so that the writes of one destination land in order; it happens only when
/// sending failed (the retry waits anyway) or first succeeded again. Unsynced: a write lost to
/// a power failure only costs an early retry or an old backoff after the restart.
async fn save_backoff(state: &Arc<AppState>, dest: &str, retry: Option<RetryState>) {
    let (state, dest) = (state.clone(), dest.to_owned());
    let saved = tokio::task::spawn_blocking(move || {
        state
            .db()
            .in_unsynced_transaction(|db| db.set_backoff(&dest, retry.as_ref()))
            .map_err(|e| format!("cannot save the backoff for {dest}: {e}"))
    })
    .await;
    if let Ok(Err(e)) = saved {
        warn(&e);
    }
}

fn sleep_until(t: Option<Timestamp>) -> std::time::Duration {
    match t {
        Some(t) => std::time::Duration::from_millis(t.saturating_since(now()).0),
        None => std::time::Duration::from_secs(24 * 3600),
    }
}

async fn run_destination(state: Arc<AppState>, dest: String, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let seed = u64::from_le_bytes(super::random::<8>().unwrap_or([7; 8]));
    let mut q = DestinationQueue::new(
        state.server_name.clone(),
        dest.clone(),
        config(),
        now(),
        seed,
    );
    // A previous process's backoff: nothing goes before its retry time.
    match state.reads().backoff(&dest) {
        Ok(Some(retry)) => q.restore_backoff(now(), retry),
        Ok(None) => {}
        Err(e) => warn(&format!("cannot read the backoff for {dest}: {e}")),
    }
    let apply = |q: &mut DestinationQueue, cmd: Cmd| match cmd {
        Cmd::Pdu {
            event_id,
            room_id,
            pdu,
        } => q.queue_pdu(now(), event_id, room_id, pdu),
        Cmd::Edu(edu) => q.queue_edu(now(), edu),
        Cmd::Reachable => q.mark_reachable(now()),
    };
    loop {
        while let Ok(cmd) = rx.try_recv() {
            apply(&mut q, cmd);
        }
        if let Some(t) = q.poll_transmit(now()) {
            // The next transaction leaves as soon as the previous one is answered; the
            // bookkeeping of that one (deleting its delivered rows) happens while this one is
            // on its way, off the round trip.
            let sending = {
                let (state, dest) = (state.clone(), dest.clone());
                tokio::spawn(async move { transmit(&state, &dest, &t.path, t.body).await })
            };
            if let Some(retry) = handle_events(&state, &mut q) {
                save_backoff(&state, &dest, retry).await;
            }
            let outcome = sending.await.unwrap_or(Outcome::Failure(Failure::Network));
            if let Err(e) = q.handle_response(now(), outcome) {
                warn(&format!("outbound queue for {dest}: {e}"));
            }
            continue;
        }
        if let Some(retry) = handle_events(&state, &mut q) {
            save_backoff(&state, &dest, retry).await;
        }
        let wait = sleep_until(q.poll_timeout());
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(c) => apply(&mut q, c),
                None => return,
            },
            () = tokio::time::sleep(wait) => q.handle_timeout(now()),
        }
    }
}
