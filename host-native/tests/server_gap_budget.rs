//! A peer that holds our `/get_missing_events` cannot hold its own transaction past the gap
//! budget (`[limits] gap_fill_seconds`, 1 s here): A answers the transaction while B still holds
//! the request, with the PDU kept to try again, and takes it in with B's next transaction once B
//! answers. Two in-process servers on loopback, B's router wrapped to hold at will.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use mxfed_core::canonical::Value;
use mxfed_native::server::rooms;

use common::inproc::{
    holding_missing_events, invited_room, kept_messages, send_txn, two_servers,
    HOLD_MISSING_EVENTS as HOLD,
};

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
    let (a, b, alice, bob) = two_servers(dir.path(), holding_missing_events, None);
    assert_eq!(a.config.limits.gap_fill_seconds, 1);
    let room = invited_room(&a, &alice, &bob, "11").await;
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();

    let built = kept_messages(&b, &room, &bob, 3).await;
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
