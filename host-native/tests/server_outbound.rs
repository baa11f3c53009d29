//! The outbound queue against peers whose `/send` answers are not acknowledgements: two
//! in-process servers on loopback, B's router wrapped to answer A's transactions at will.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use mxfed_native::server::store::Reads as _;
use mxfed_native::server::{now, rooms, AppState};

use common::inproc::{joined_public_room, message, send_txn, two_servers, until};

/// Whether B answers `/send` with 404, as a proxy in front of a removed server does.
static REFUSE: AtomicBool = AtomicBool::new(false);
/// `/send` requests B refused.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn is_send(req: &axum::extract::Request) -> bool {
    req.uri().path().starts_with("/_matrix/federation/v1/send/")
}

async fn refuse_send(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if is_send(&req) && REFUSE.load(Ordering::SeqCst) {
        REFUSED.fetch_add(1, Ordering::SeqCst);
        return common::inproc::unrecognized();
    }
    next.run(req).await
}

fn refusing(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(refuse_send))
}

/// Whether B answers `/send` with a 200 HTML page, as a catch-all in front of it may.
static HTML: AtomicBool = AtomicBool::new(false);
/// `/send` requests B answered with HTML.
static HTML_SENT: AtomicUsize = AtomicUsize::new(0);

async fn html_send(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if is_send(&req) && HTML.load(Ordering::SeqCst) {
        HTML_SENT.fetch_add(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/html")],
            "<html><body>Welcome</body></html>",
        )
            .into_response();
    }
    next.run(req).await
}

fn html_pages(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(html_send))
}

/// As [`REFUSE`] and [`REFUSED`], for the restart test (tests run in parallel).
static REFUSE_AGAIN: AtomicBool = AtomicBool::new(false);
static REFUSED_AGAIN: AtomicUsize = AtomicUsize::new(0);

async fn refuse_send_again(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if is_send(&req) && REFUSE_AGAIN.load(Ordering::SeqCst) {
        REFUSED_AGAIN.fetch_add(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::FORBIDDEN,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"errcode":"M_FORBIDDEN","error":"not on the list"}"#,
        )
            .into_response();
    }
    next.run(req).await
}

fn refusing_again(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(refuse_send_again))
}

/// A's queued PDUs for `dest` (rows of the `outbound` table).
fn queued_for(a: &AppState, dest: &str) -> usize {
    a.db()
        .outbound()
        .unwrap()
        .into_iter()
        .filter(|(_, d, kind, ..)| d == dest && kind == "pdu")
        .count()
}

/// Polls `pred` every 20 ms, for 60 s at most.
async fn wait_for(what: &str, pred: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A room on A that B's user joined, with A's queue for B empty.
async fn shared_room(a: &Arc<AppState>, b: &Arc<AppState>, alice: &str, bob: &str) -> String {
    let room = joined_public_room(a, b, alice, bob, "10").await;
    until(a, "bob joined on A", |s| {
        s.rooms()[&room].membership(bob).as_deref() == Some("join")
    })
    .await;
    wait_for("A's queue for B empty", || {
        queued_for(a, &b.server_name) == 0
    })
    .await;
    room
}

/// A peer refusing `/send` with 404 is not sent the backlog back to back, and nothing is lost:
/// after the first refusal A waits (10 minutes at least, as Synapse), every PDU stays queued,
/// and when B contacts A the transaction is retried and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transactions_are_kept_and_not_hammered() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), refusing, None);
    let room = shared_room(&a, &b, &alice, &bob).await;

    REFUSE.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for i in 0..60 {
        let _g = a.lock_room(&room).await;
        sent.push(rooms::send_local(&a, &room, message(&room, &alice, &format!("m{i}"))).unwrap());
    }
    wait_for("B's first refusal", || REFUSED.load(Ordering::SeqCst) >= 1).await;
    // Before, each refusal dropped its transaction and the next went at once: 60 messages
    // were two or more refused requests within milliseconds, and no rows left.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        REFUSED.load(Ordering::SeqCst),
        1,
        "one request, then backoff"
    );
    assert_eq!(queued_for(&a, &b.server_name), 60, "nothing dropped");

    // B answers again and contacts A: A retries at once and delivers everything.
    REFUSE.store(false, Ordering::SeqCst);
    send_txn(&b, &a, "poke", Vec::new()).await;
    wait_for("A's queue for B empty", || {
        queued_for(&a, &b.server_name) == 0
    })
    .await;
    until(&b, "every message on B", |s| {
        let rooms = s.rooms();
        sent.iter().all(|e| rooms[&room].contains(e))
    })
    .await;
    assert_eq!(REFUSED.load(Ordering::SeqCst), 1);
}

/// A `/send` answered 200 with an HTML page is no acknowledgement (Synapse requires a JSON
/// body): the PDU's row stays and the transaction is retried, and it is delivered once the
/// peer answers properly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_json_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), html_pages, None);
    let room = shared_room(&a, &b, &alice, &bob).await;

    HTML.store(true, Ordering::SeqCst);
    let sent = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "through a catch-all")).unwrap()
    };
    wait_for("a retry after the HTML answer", || {
        HTML_SENT.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(queued_for(&a, &b.server_name), 1, "the row stays");
    assert!(!b.rooms()[&room].contains(&sent));

    HTML.store(false, Ordering::SeqCst);
    wait_for("A's queue for B empty", || {
        queued_for(&a, &b.server_name) == 0
    })
    .await;
    until(&b, "the message on B", |s| s.rooms()[&room].contains(&sent)).await;
}

/// The backoff survives a restart: after B refused A's transaction (403), A's retry time is in
/// its database, and a restarted A (a second process state on the same data directory, its
/// queues restored) sends B nothing before it; before, every restart contacted every
/// backlogged destination at once. Once B takes a transaction, the saved backoff is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), refusing_again, None);
    let room = shared_room(&a, &b, &alice, &bob).await;

    REFUSE_AGAIN.store(true, Ordering::SeqCst);
    let sent = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "while refused")).unwrap()
    };
    wait_for("B's refusal", || REFUSED_AGAIN.load(Ordering::SeqCst) >= 1).await;
    let refused_at = now();
    wait_for("A's backoff for B saved", || {
        a.reads().backoff(&b.server_name).unwrap().is_some()
    })
    .await;
    let saved = a.reads().backoff(&b.server_name).unwrap().unwrap();
    assert_eq!(saved.failures, 1);
    assert!(saved.retry_at.as_millis() >= refused_at.as_millis() + 500_000);

    let again = common::inproc::reopen(&a);
    again.outbound.restore(&again);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        REFUSED_AGAIN.load(Ordering::SeqCst),
        1,
        "the restarted queue waits for the saved retry time"
    );
    assert_eq!(queued_for(&a, &b.server_name), 1);

    REFUSE_AGAIN.store(false, Ordering::SeqCst);
    send_txn(&b, &a, "poke", Vec::new()).await;
    until(&b, "the message on B", |s| s.rooms()[&room].contains(&sent)).await;
    wait_for("the saved backoff forgotten", || {
        a.reads().backoff(&b.server_name).unwrap().is_none()
    })
    .await;
}
