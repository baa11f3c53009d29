//! The threads that check other servers' PDUs (format, signatures, hashes: the core's
//! `check_pdu_object`), kept for the life of the process.
//!
//! A transaction's 50 signature checks are most of the time it takes to answer, so they are
//! spread over the machine's cores. Threads spawned per transaction (as before) cost a thread's
//! start-up, a fresh allocator heap and cold caches each time — 3% of the server's CPU under the
//! ingest benchmark. Here the calling thread checks one share itself and the pool's threads the
//! others; the caller awaits them without blocking its tokio worker.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use mxfed_core::canonical::Object;
use mxfed_core::pdu::{check_pdu_object, PduCheck};
use mxfed_core::server_keys::KeyRing;
use mxfed_core::RoomVersion;
use tokio::sync::oneshot;

/// PDUs per share below which one thread checks them all (handing a share to another thread
/// costs a few µs, a PDU's signature check about 50).
const PDUS_PER_SHARE: usize = 8;

/// One share of a batch, checked by a pool thread.
struct Job {
    events: Vec<Object>,
    v: &'static RoomVersion,
    ring: Arc<KeyRing>,
    done: oneshot::Sender<Vec<PduCheck>>,
}

/// Persistent checking threads (one fewer than the cores: the caller checks a share too).
struct Pool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = 0;
        for i in 1..cores {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("mxfed-check-{i}"))
                .spawn(move || worker(&rx));
            if spawned.is_ok() {
                threads += 1;
            }
        }
        Pool { jobs: tx, threads }
    })
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        // A panic in a check drops `done`: the caller sees the share as lost and panics itself
        // (as a panic in a check on its own thread would); this thread lives on.
        let Job {
            events,
            v,
            ring,
            done,
        } = job;
        if let Ok(checks) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(events, v, &ring)))
        {
            let _ = done.send(checks);
        }
    }
}

fn run(events: Vec<Object>, v: &'static RoomVersion, ring: &KeyRing) -> Vec<PduCheck> {
    events
        .into_iter()
        .map(|e| check_pdu_object(e, v, ring))
        .collect()
}

/// `check_pdu_object` on each event, spread over the pool and the calling thread; results are
/// in the events' order.
pub async fn check_all(
    events: Vec<Object>,
    v: &'static RoomVersion,
    ring: KeyRing,
) -> Vec<PduCheck> {
    let pool = pool();
    let shares = (pool.threads + 1).min(events.len() / PDUS_PER_SHARE).max(1);
    if shares == 1 {
        return run(events, v, &ring);
    }
    let per = events.len().div_ceil(shares);
    let ring = Arc::new(ring);
    let mut rest = events.into_iter();
    let mine: Vec<Object> = rest.by_ref().take(per).collect();
    let mut waiting = Vec::with_capacity(shares - 1);
    loop {
        let share: Vec<Object> = rest.by_ref().take(per).collect();
        if share.is_empty() {
            break;
        }
        let (done, answer) = oneshot::channel();
        let job = Job {
            events: share,
            v,
            ring: Arc::clone(&ring),
            done,
        };
        match pool.jobs.send(job).map_err(|e| e.0) {
            Ok(()) => waiting.push(Share::Pool(answer)),
            // No pool thread to take it: checked here.
            Err(job) => waiting.push(Share::Here(run(job.events, v, &ring))),
        }
    }
    let mut out = run(mine, v, &ring);
    for share in waiting {
        match share {
            Share::Here(checks) => out.extend(checks),
            Share::Pool(answer) => match answer.await {
                Ok(checks) => out.extend(checks),
                Err(_) => std::panic::resume_unwind(Box::new("a PDU check panicked")),
            },
        }
    }
    out
}

enum Share {
    Pool(oneshot::Receiver<Vec<PduCheck>>),
    Here(Vec<PduCheck>),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::check_all;
    use mxfed_core::canonical::{Int, Object};
    use mxfed_core::event::hash_and_sign_event;
    use mxfed_core::keys::SigningKey;
    use mxfed_core::pdu::{check_pdu_object, Verdict};
    use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
    use mxfed_core::RoomVersion;

    fn message(i: i64, key: &SigningKey, v: &RoomVersion) -> Object {
        let mut content = Object::new();
        content.insert("body", format!("message {i}"));
        content.insert("msgtype", "m.text");
        let mut ev = Object::new();
        ev.insert("type", "m.room.message");
        ev.insert("room_id", "!r:a.example");
        ev.insert("sender", "@u:a.example");
        ev.insert("origin_server_ts", Int::saturating(1_700_000_000_000 + i));
        ev.insert("depth", Int::saturating(i + 1));
        ev.insert("prev_events", Vec::<mxfed_core::canonical::Value>::new());
        ev.insert("auth_events", Vec::<mxfed_core::canonical::Value>::new());
        ev.insert("content", content);
        hash_and_sign_event(&mut ev, v, "a.example", key).unwrap();
        ev
    }

    /// Results come back in the events' order whichever thread checked them, equal to the
    /// core's own verdicts: forged events among good ones stay where they were.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_in_order_and_as_the_core_decides() {
        let v = RoomVersion::get("10").unwrap();
        let key = SigningKey::from_seed("a", &[7; 32]).unwrap();
        let keys = build_server_keys(
            "a.example",
            std::slice::from_ref(&key),
            &[],
            Int::saturating(1 << 50),
        )
        .unwrap();
        let mut ring = KeyRing::new();
        ring.add(&ServerKeys::from_response(&keys).unwrap());
        for n in [1, 7, 16, 50, 101] {
            let events: Vec<Object> = (0..n)
                .map(|i| {
                    let mut ev = message(i, &key, v);
                    if i % 5 == 3 {
                        // Changed after signing: the signature no longer matches.
                        ev.insert("origin_server_ts", Int::saturating(1));
                    }
                    ev
                })
                .collect();
            let expected: Vec<_> = events
                .iter()
                .map(|e| check_pdu_object(e.clone(), v, &ring))
                .collect();
            let got = check_all(events, v, ring.clone()).await;
            assert_eq!(got.len(), expected.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g.event_id, e.event_id, "event {i} of {n}");
                assert_eq!(g.verdict, e.verdict, "event {i} of {n}");
                let forged = i % 5 == 3;
                assert_eq!(matches!(g.verdict, Verdict::Rejected { .. }), forged, "{i}");
            }
        }
    }
}
