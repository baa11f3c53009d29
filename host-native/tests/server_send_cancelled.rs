//! A transaction whose sender gives up on the request (the request's future is dropped while A
//! waits for B's `/get_missing_events`) is still processed to the end, a retry of it meanwhile
//! waits for its answer, and its origin can send again afterwards. Two in-process servers on loopback, B's router wrapped to hold gap
//! requests at will.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mxfed_core::canonical::{Int, Object, Value};
use mxfed_native::server::{app, rooms, AppState};
use tower::ServiceExt as _;

use common::inproc::{
    holding_missing_events, invited_room, kept_messages, signed, two_servers, until,
    HOLD_MISSING_EVENTS as HOLD,
};

/// B's `/send` request to A with these PDUs, signed by B.
fn send_request(
    b: &AppState,
    a: &AppState,
    txn: &str,
    pdus: Vec<Value>,
) -> axum::http::Request<axum::body::Body> {
    let mut body = Object::new();
    body.insert("origin", b.server_name.as_str());
    body.insert("origin_server_ts", Int::saturating(1));
    body.insert("pdus", Value::Array(pdus));
    signed(
        "PUT",
        &format!("/_matrix/federation/v1/send/{txn}"),
        Some(&body),
        &b.server_name,
        &a.server_name,
        &b.keys[0],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_its_sender_gave_up_on_is_finished_and_the_origin_let_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), holding_missing_events, None);
    let room = invited_room(&a, &alice, &bob, "11").await;
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();

    // Three messages B keeps to itself; A gets only the last and must ask B for the others.
    let built = kept_messages(&b, &room, &bob, 3).await;
    let last = built.last().unwrap();
    HOLD.store(true, Ordering::SeqCst);
    let t1 = send_request(&b, &a, "t1", vec![Value::Object(last.pdu.clone())]);
    let first = tokio::time::timeout(Duration::from_millis(500), app(a.clone()).oneshot(t1)).await;
    assert!(
        first.is_err(),
        "A answered before B's /get_missing_events did"
    );

    // One transaction per origin at a time: the next is told to come back later.
    let t2 = app(a.clone())
        .oneshot(send_request(&b, &a, "t2", Vec::new()))
        .await
        .unwrap();
    assert_eq!(t2.status(), 429);

    // A retry of the first transaction waits for it (as Synapse's response cache makes it):
    // neither a 429 nor a second processing.
    let waiting = tokio::spawn(app(a.clone()).oneshot(send_request(
        &b,
        &a,
        "t1",
        vec![Value::Object(last.pdu.clone())],
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the retry was answered while t1 was processed"
    );

    // B answers; the transaction nobody waits for any more is taken in all the same, and the
    // waiting retry gets its answer.
    HOLD.store(false, Ordering::SeqCst);
    let retried = waiting.await.unwrap().unwrap();
    assert_eq!(retried.status(), 200);
    let body = axum::body::to_bytes(retried.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains(&format!("\"{}\":{{}}", last.event_id)),
        "{}",
        String::from_utf8_lossy(&body)
    );
    until(&a, "the abandoned transaction's events", |s| {
        built.iter().all(|e| s.rooms()[&room].contains(&e.event_id))
    })
    .await;

    // Then B is let in again (at once, or after the first transaction's answer is recorded),
    // and a retry of the first gets its recorded answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let t2 = app(a.clone())
            .oneshot(send_request(&b, &a, "t2", Vec::new()))
            .await
            .unwrap();
        if t2.status() == 200 {
            break;
        }
        assert_eq!(t2.status(), 429);
        assert!(tokio::time::Instant::now() < deadline, "B is still refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retry = app(a.clone())
        .oneshot(send_request(
            &b,
            &a,
            "t1",
            vec![Value::Object(last.pdu.clone())],
        ))
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    let body = axum::body::to_bytes(retry.into_body(), 1 << 20)
        .await
        .unwrap();
    let answer =
        mxfed_core::canonical::parse_object(&body, &mxfed_core::canonical::ParseOptions::LEGACY)
            .unwrap();
    assert_eq!(
        answer
            .get_object("pdus")
            .and_then(|p| p.get_object(&last.event_id))
            .map(Object::to_canonical_string)
            .as_deref(),
        Some("{}"),
        "{}",
        answer.to_canonical_string()
    );
}
