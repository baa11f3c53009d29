//! A peer that holds our `/get_missing_events` cannot hold its own transaction past the gap
//! budget (`[limits] gap_fill_seconds`, 1 s here): A answers the transaction while B still holds
//! the request, with the PDU kept to try again, and takes it in with B's next transaction once B
//! answers. Two in-process servers on loopback, B's router wrapped to hold at will.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mxfed_core::canonical::{Int, Object, Value};
use mxfed_native::server::{rooms, AppState};

use common::inproc::{invited_room, message, two_servers};

/// Whether B holds `/get_missing_events` requests.
static HOLD: AtomicBool = AtomicBool::new(false);

async fn hold_gap_help(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path().contains("get_missing_events") {
        while HOLD.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    next.run(req).await
}

fn holding(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(hold_gap_help))
}

/// B sends A a transaction directly; returns A's answer for each PDU.
async fn send_txn(b: &AppState, a: &AppState, txn: &str, pdus: Vec<Value>) -> Object {
    let mut body = Object::new();
    body.insert("origin", b.server_name.as_str());
    body.insert("origin_server_ts", Int::saturating(1));
    body.insert("pdus", Value::Array(pdus));
    let path = format!("/_matrix/federation/v1/send/{txn}");
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        b.client.json(&a.server_name, "PUT", &path, Some(&body)),
    )
    .await
    .expect("A answers within a minute")
    .unwrap();
    answer.get_object("pdus").cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_our_requests_does_not_hold_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    // A: a gap budget of 1 s, and requests of its own allowed far longer than that.
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::write(
        dir.path().join("a/mxfed.toml"),
        "server_name = \"set-by-the-test\"\n\
         [federation]\nrequest_timeout_secs = 300\n\
         [limits]\ngap_fill_seconds = 1\n",
    )
    .unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), holding, None);
    assert_eq!(a.config.limits.gap_fill_seconds, 1);
    let room = invited_room(&a, &alice, &bob, "11").await;
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();

    let mut built = Vec::new();
    {
        let _g = b.lock_room(&room).await;
        for i in 0..3 {
            let e = rooms::build_local(&b, &room, &message(&room, &bob, &format!("m{i}"))).unwrap();
            rooms::accept_local_unsent(&b, &e).unwrap();
            built.push(e);
        }
    }
    let last = built.last().unwrap();
    HOLD.store(true, Ordering::SeqCst);
    let answer = send_txn(&b, &a, "t1", vec![Value::Object(last.pdu.clone())]).await;
    // Answered while B still holds A's request.
    assert!(HOLD.load(Ordering::SeqCst));
    let error = answer
        .get_object(&last.event_id)
        .and_then(|r| r.get_str("error"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.ends_with("kept to try again"),
        "{}",
        answer.to_canonical_string()
    );
    assert!(!a.rooms()[&room].contains(&last.event_id));

    // B answers again; its next transaction has A take the kept PDU in.
    HOLD.store(false, Ordering::SeqCst);
    send_txn(&b, &a, "t2", Vec::new()).await;
    let rooms = a.rooms();
    assert!(built
        .iter()
        .all(|e| rooms[&room].contains(&e.event_id) && !rooms[&room].is_outlier(&e.event_id)));
}
