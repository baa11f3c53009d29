//! Our join through another server is stored as soon as `send_join` is answered, before the
//! history before it is fetched: from `send_join` on the resident counts us in and sends us the
//! room's events, and a crash while the history is fetched must not lose the join. The
//! resident's `/backfill` is held here so that the window stays open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mxfed_native::server::rooms;
use mxfed_native::server::store::Reads as _;

use common::inproc::{message, public_room, same, two_servers_wrapped, until};

static HOLD_BACKFILL: AtomicBool = AtomicBool::new(true);

fn holding_backfill(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            if req.uri().path().contains("/backfill/") {
                while HOLD_BACKFILL.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            next.run(req).await
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_join_is_stored_before_the_history_and_events_meanwhile_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers_wrapped(dir.path(), holding_backfill, same, None);
    let room = public_room(&a, &alice, "10").await;
    {
        let _g = a.lock_room(&room).await;
        // History B has to fetch with /backfill (not part of the state it joins with).
        rooms::send_local(&a, &room, message(&room, &alice, "before")).unwrap();
    }

    let joining = {
        let (b, room, via, bob) = (b.clone(), room.clone(), a.server_name.clone(), bob.clone());
        tokio::spawn(async move { rooms::remote_membership(&b, &room, &bob, &via, "join").await })
    };
    // While A holds the history back, B has stored its join and is in the room.
    until(&b, "B stores its join before the history", |b| {
        rooms::resident_in(b, &room)
            && b.admin_reads()
                .timeline(&room, None)
                .unwrap()
                .iter()
                .any(|e| e.json.contains(r#""membership":"join""#) && e.json.contains(&bob))
    })
    .await;
    assert!(!joining.is_finished(), "the history is still being fetched");

    // A message of A's sent meanwhile reaches B once the join is done, not ignored as one of a
    // room B is not in.
    let during = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "during")).unwrap()
    };
    HOLD_BACKFILL.store(false, Ordering::SeqCst);
    joining.await.unwrap().unwrap();
    until(&b, "the message sent during the join", |b| {
        b.reads().event(&during).unwrap().is_some()
    })
    .await;
    let bodies: Vec<String> = b
        .admin_reads()
        .timeline(&room, None)
        .unwrap()
        .iter()
        .filter(|e| e.json.contains("m.room.message"))
        .map(|e| e.json.clone())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].contains("before") && bodies[1].contains("during"));
}

fn slow_send_join(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let slow = req.uri().path().contains("/send_join/");
            let resp = next.run(req).await;
            if slow {
                // The join is in A's room already; its answer takes a while to reach B.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            resp
        },
    ))
}

/// Events the resident sends between taking our join in and its `send_join` answer reaching us
/// (a large room's answer takes seconds) are kept: they wait for the join, in a room B does not
/// know yet. Before the fix they were dropped as events of an unknown room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_before_the_send_join_answer_arrives_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers_wrapped(dir.path(), slow_send_join, same, None);
    let room = public_room(&a, &alice, "10").await;
    let joining = {
        let (b, room, via, bob) = (b.clone(), room.clone(), a.server_name.clone(), bob.clone());
        tokio::spawn(async move { rooms::remote_membership(&b, &room, &bob, &via, "join").await })
    };
    until(&a, "A takes B's join in", |a| {
        a.rooms()
            .get(&room)
            .and_then(|r| r.membership(&bob))
            .as_deref()
            == Some("join")
    })
    .await;
    let during = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "before the answer")).unwrap()
    };
    joining.await.unwrap().unwrap();
    until(&b, "the message sent before the send_join answer", |b| {
        b.reads().event(&during).unwrap().is_some()
    })
    .await;
}
