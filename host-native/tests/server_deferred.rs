//! Catch-up of PDUs refused because of a gap: B sends A an event whose predecessors A lacks
//! while B answers neither `/get_missing_events` nor `/state`; A refuses it for now and keeps
//! it; B's next transaction (here an empty one) makes A try again, fill the gap and take it in.
//! Two in-process servers on loopback, B's router wrapped to refuse those endpoints at will.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use mxfed_core::canonical::{Object, Value};
use mxfed_native::server::rooms;

use common::inproc::{invited_room, kept_messages, message, same, send_txn, two_servers};

/// Whether B refuses to help with gaps.
static REFUSE: AtomicBool = AtomicBool::new(false);
/// Whether B refuses `/get_missing_events` only (and still answers `/state`).
static REFUSE_MISSING: AtomicBool = AtomicBool::new(false);

async fn refuse_gap_help(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let p = req.uri().path();
    let gap_help = ["get_missing_events", "/state/", "/state_ids/"]
        .iter()
        .any(|e| p.contains(e));
    let refused = REFUSE.load(Ordering::SeqCst)
        || (REFUSE_MISSING.load(Ordering::SeqCst) && p.contains("get_missing_events"));
    if gap_help && refused {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"errcode":"M_UNKNOWN","error":"not now"}"#,
        )
            .into_response();
    }
    next.run(req).await
}

fn refusing(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(refuse_gap_help))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdu_refused_for_a_gap_is_taken_in_later() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), refusing, None);
    let room = invited_room(&a, &alice, &bob, "11").await;
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();

    // Three messages B keeps to itself; A only gets the last, and B will not help.
    let built = kept_messages(&b, &room, &bob, 3).await;
    let last = built.last().unwrap();
    REFUSE.store(true, Ordering::SeqCst);
    let answer = send_txn(&b, &a, "t1", vec![Value::Object(last.pdu.clone())]).await;
    let result = answer.get_object(&last.event_id).unwrap();
    assert!(
        result
            .get_str("error")
            .is_some_and(|e| e.ends_with("kept to try again")),
        "{}",
        result.to_canonical_string()
    );
    assert!(!a.rooms()[&room].contains(&last.event_id));
    assert_eq!(a.db().deferred_pdus(&b.server_name).unwrap().len(), 1);

    // B's next transaction while it still refuses: A tries the kept PDU again and keeps it.
    send_txn(&b, &a, "t1b", Vec::new()).await;
    assert!(!a.rooms()[&room].contains(&last.event_id));
    assert_eq!(a.db().deferred_pdus(&b.server_name).unwrap().len(), 1);

    // B helps again; its next transaction (nothing in it) has A try the kept PDU first.
    REFUSE.store(false, Ordering::SeqCst);
    send_txn(&b, &a, "t2", Vec::new()).await;
    {
        let rooms = a.rooms();
        let r = &rooms[&room];
        for e in &built {
            assert!(
                r.contains(&e.event_id) && !r.is_outlier(&e.event_id),
                "{}",
                e.event_id
            );
        }
        assert!(r.forward_extremities().contains(&last.event_id));
    }
    assert!(a.db().deferred_pdus(&b.server_name).unwrap().is_empty());
    assert_eq!(
        a.rooms()[&room].current_state(),
        b.rooms()[&room].current_state()
    );

    // B sends another event after a gap and answers `/state` at it, but not
    // `/get_missing_events`: A does not take a pushed event in on state its sender picks (as
    // Synapse refuses it); it is kept, and taken in once B gives the missing events.
    let more = kept_messages(&b, &room, &bob, 3).await;
    let last = more.last().unwrap();
    REFUSE_MISSING.store(true, Ordering::SeqCst);
    let answer = send_txn(&b, &a, "t3", vec![Value::Object(last.pdu.clone())]).await;
    let result = answer.get_object(&last.event_id).unwrap();
    assert!(
        result
            .get_str("error")
            .is_some_and(|e| e.contains("divulging") && e.ends_with("kept to try again")),
        "{}",
        result.to_canonical_string()
    );
    assert!(!a.rooms()[&room].contains(&last.event_id));
    REFUSE_MISSING.store(false, Ordering::SeqCst);
    send_txn(&b, &a, "t4", Vec::new()).await;
    let rooms = a.rooms();
    assert!(more
        .iter()
        .all(|e| rooms[&room].contains(&e.event_id) && !rooms[&room].is_outlier(&e.event_id)));
}

/// B sends A a message whose auth events include a member event of bob's that A never got
/// (its prev events A has): A fetches the auth chain with `/event_auth` and takes it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_auth_events_are_fetched() {
    use mxfed_core::event::{build_event, EventRef, StateMap};
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);
    let room = invited_room(&a, &alice, &bob, "11").await;
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();
    common::inproc::until(&a, "bob joined on A", |s| {
        s.rooms()[&room].membership(&bob).as_deref() == Some("join")
    })
    .await;
    let _g = b.lock_room(&room).await;
    // Where A and B agree: B's extremities and state now.
    let (prev, mut cur, v) = {
        let rooms = b.rooms();
        let r = &rooms[&room];
        let eref = |id: &str| EventRef {
            event_id: id.to_owned(),
            depth: r.event(id).unwrap().0.depth(),
            sha256: None,
        };
        let prev: Vec<EventRef> = r.forward_extremities().iter().map(|id| eref(id)).collect();
        let cur: StateMap = r
            .current_state()
            .into_iter()
            .map(|(k, id)| (k, eref(&id)))
            .collect();
        (prev, cur, r.version())
    };
    // Bob's new display name, kept on B.
    let content = mxfed_core::canonical::parse_object(
        br#"{"membership":"join","displayname":"Bob"}"#,
        &mxfed_core::canonical::ParseOptions::STRICT,
    )
    .unwrap();
    let t = rooms::template(Some(&room), "m.room.member", &bob, Some(&bob), content);
    let renamed = rooms::build_local(&b, &room, &t).unwrap();
    rooms::accept_local_unsent(&b, &renamed).unwrap();
    // A message on the old extremities, authorised by the new member event.
    cur.insert(
        ("m.room.member".into(), bob.clone()),
        EventRef {
            event_id: renamed.event_id.clone(),
            depth: prev.iter().map(|p| p.depth).max().unwrap_or(0) + 1,
            sha256: None,
        },
    );
    let said = build_event(
        v,
        &b.server_name,
        &message(&room, &bob, "hello"),
        &prev,
        &cur,
        mxfed_native::server::now(),
        &b.keys[0],
        None,
    )
    .unwrap();
    rooms::accept_local_unsent(&b, &said).unwrap();
    drop(_g);

    let answer = send_txn(&b, &a, "auth1", vec![Value::Object(said.pdu.clone())]).await;
    assert_eq!(
        answer
            .get_object(&said.event_id)
            .map(Object::to_canonical_string)
            .as_deref(),
        Some("{}")
    );
    let rooms = a.rooms();
    assert!(rooms[&room].contains(&said.event_id) && !rooms[&room].is_outlier(&said.event_id));
    assert!(
        rooms[&room].contains(&renamed.event_id),
        "fetched with /event_auth"
    );
}
