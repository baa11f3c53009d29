//! History visibility on the retrieval endpoints, seen from the requesting server: two
//! in-process servers on loopback (TLS, real sockets), B asking A with signed requests. In a
//! `joined` room, what was said before B's user joined comes back redacted from `/event`,
//! `/backfill` and `/get_missing_events` (`/state_ids` at it is answered); what came after is
//! served whole. Once B's user has left, B may read nothing of the room. Restricted joins A
//! cannot check get `M_UNABLE_TO_AUTHORISE_JOIN`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mxfed_core::canonical::{parse_object, ParseOptions, Value};
use mxfed_native::server::rooms;
use mxfed_native::server::store::Reads as _;

use common::inproc::{joined_public_room, message, same, two_servers};

fn enc(s: &str) -> String {
    mxfed_native::server::client::encode_segment(s)
}

fn first_pdu(answer: &mxfed_core::canonical::Object) -> mxfed_core::canonical::Object {
    answer
        .get("pdus")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(Value::as_object)
        .cloned()
        .unwrap()
}

fn has_body(ev: &mxfed_core::canonical::Object) -> bool {
    ev.get_object("content")
        .is_some_and(|c| c.get_str("body").is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieval_follows_history_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);

    let (room, secret) = {
        let room = rooms::create_room(&a, &alice, "11").unwrap();
        let _g = a.lock_room(&room).await;
        let joined =
            parse_object(br#"{"history_visibility":"joined"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(
            &a,
            &room,
            &alice,
            "m.room.history_visibility",
            Some(""),
            joined,
            None,
        )
        .unwrap();
        let secret = rooms::send_local(&a, &room, message(&room, &alice, "secret")).unwrap();
        rooms::invite_remote(&a, &room, &alice, &bob).await.unwrap();
        (room, secret)
    };
    let join = rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();
    let after = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "after")).unwrap()
    };
    let get = |path: String| {
        let b = b.clone();
        let dest = a.server_name.clone();
        async move { b.client.json(&dest, "GET", &path, None).await }
    };

    // /event: before the join redacted (same event), after it whole.
    let ev = first_pdu(
        &get(format!("/_matrix/federation/v1/event/{}", enc(&secret)))
            .await
            .unwrap(),
    );
    let v = mxfed_core::RoomVersion::get("11").unwrap();
    assert_eq!(mxfed_core::event::event_id(&ev, v).unwrap(), secret);
    assert!(!has_body(&ev), "redacted: {}", ev.to_canonical_string());
    let ev = first_pdu(
        &get(format!("/_matrix/federation/v1/event/{}", enc(&after)))
            .await
            .unwrap(),
    );
    assert!(has_body(&ev));

    // /state_ids: answered at the hidden event as at B's join. State is not filtered by history
    // visibility (Synapse does not either): a joined server filling a gap across its own join
    // asks for the state at an event from before it, and a refusal would leave the gap open.
    for at in [&secret, &join] {
        let answer = get(format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&room),
            enc(at)
        ))
        .await
        .unwrap();
        assert!(answer.get("pdu_ids").and_then(Value::as_array).is_some());
    }

    // /backfill from the message after the join: it whole, the secret redacted.
    let answer = get(format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=20",
        enc(&room),
        enc(&after)
    ))
    .await
    .unwrap();
    let pdus = answer.get("pdus").and_then(Value::as_array).unwrap();
    let find = |id: &str| {
        pdus.iter()
            .filter_map(Value::as_object)
            .find(|p| mxfed_core::event::event_id(p, v).unwrap() == id)
            .cloned()
            .unwrap()
    };
    assert!(has_body(&find(&after)));
    assert!(!has_body(&find(&secret)));

    // Without `v` there is nothing to start from (Synapse: 400).
    let err = get(format!(
        "/_matrix/federation/v1/backfill/{}?limit=20",
        enc(&room)
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("400") && err.contains("M_MISSING_PARAM"),
        "{err}"
    );

    // /get_missing_events: the same rule.
    let mut body = mxfed_core::canonical::Object::new();
    body.insert("earliest_events", Value::Array(Vec::new()));
    body.insert(
        "latest_events",
        Value::Array(vec![Value::from(after.as_str())]),
    );
    body.insert("limit", mxfed_core::canonical::Int::saturating(20));
    let answer = b
        .client
        .json(
            &a.server_name,
            "POST",
            &format!("/_matrix/federation/v1/get_missing_events/{}", enc(&room)),
            Some(&body),
        )
        .await
        .unwrap();
    let events = answer.get("events").and_then(Value::as_array).unwrap();
    let secret_copy = events
        .iter()
        .filter_map(Value::as_object)
        .find(|p| mxfed_core::event::event_id(p, v).unwrap() == secret)
        .unwrap();
    assert!(!has_body(secret_copy));

    // B's own copy of the room (backfilled at the join) holds the secret redacted.
    let stored = b.reads().event(&secret).unwrap().unwrap();
    assert!(!stored.json.contains("secret"), "{}", stored.json);
    assert!(stored.backfilled);

    // Bob leaves: B has no joined member any more, and A answers none of its reads of the room
    // (Synapse's `assert_host_in_room`), though B's user is still in the state (as "leave").
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "leave")
        .await
        .unwrap();
    assert_eq!(a.rooms()[&room].membership(&bob).as_deref(), Some("leave"));
    for path in [
        format!("/_matrix/federation/v1/event/{}", enc(&after)),
        format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&room),
            enc(&after)
        ),
        format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=20",
            enc(&room),
            enc(&after)
        ),
    ] {
        let err = get(path.clone()).await.unwrap_err().to_string();
        assert!(
            err.contains("403") && err.contains("M_FORBIDDEN"),
            "{path}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_join_the_resident_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);
    let room = {
        let room = rooms::create_room(&a, &alice, "10").unwrap();
        let _g = a.lock_room(&room).await;
        let rules = parse_object(
            br#"{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!elsewhere:example.org"}]}"#,
            &ParseOptions::STRICT,
        )
        .unwrap();
        rooms::send_event(
            &a,
            &room,
            &alice,
            "m.room.join_rules",
            Some(""),
            rules,
            None,
        )
        .unwrap();
        room
    };
    let err = rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("M_UNABLE_TO_AUTHORISE_JOIN"),
        "{err}"
    );
    assert_eq!(a.rooms()[&room].membership(&bob), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_join_through_a_server_that_left_the_room() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);
    let room = rooms::create_room(&a, &alice, "11").unwrap();
    {
        let _g = a.lock_room(&room).await;
        for (kind, key, content) in [
            ("m.room.join_rules", "", r#"{"join_rule":"public"}"#),
            ("m.room.member", alice.as_str(), r#"{"membership":"leave"}"#),
        ] {
            let content = parse_object(content.as_bytes(), &ParseOptions::STRICT).unwrap();
            rooms::send_event(&a, &room, &alice, kind, Some(key), content, None).unwrap();
        }
    }
    // A public room, but A has no one in it any more: 404, so the joiner tries elsewhere.
    let err = rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("M_NOT_FOUND"), "{err}");
    assert_eq!(a.rooms()[&room].membership(&bob), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_join_through_an_allowed_room_the_resident_left() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);
    // A knows the allowed room but has left it: it can no longer tell who is joined there.
    let space = rooms::create_room(&a, &alice, "10").unwrap();
    {
        let _g = a.lock_room(&space).await;
        let leave = parse_object(br#"{"membership":"leave"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(
            &a,
            &space,
            &alice,
            "m.room.member",
            Some(&alice),
            leave,
            None,
        )
        .unwrap();
    }
    let room = rooms::create_room(&a, &alice, "10").unwrap();
    {
        let _g = a.lock_room(&room).await;
        let rules = format!(
            r#"{{"join_rule":"restricted","allow":[{{"type":"m.room_membership","room_id":"{space}"}}]}}"#
        );
        let rules = parse_object(rules.as_bytes(), &ParseOptions::STRICT).unwrap();
        rooms::send_event(
            &a,
            &room,
            &alice,
            "m.room.join_rules",
            Some(""),
            rules,
            None,
        )
        .unwrap();
    }
    // 400, not 403: a server still in the allowed room could authorise the join (Synapse).
    let err = rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("M_UNABLE_TO_AUTHORISE_JOIN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdus_for_a_room_we_left_are_ignored() {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);
    let room = joined_public_room(&a, &b, &alice, &bob, "11").await;
    {
        let _g = a.lock_room(&room).await;
        let leave = parse_object(br#"{"membership":"leave"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(
            &a,
            &room,
            &alice,
            "m.room.member",
            Some(&alice),
            leave,
            None,
        )
        .unwrap();
    }
    common::inproc::until(&b, "alice's leave on B", |s| {
        s.rooms()[&room].membership(&alice).as_deref() == Some("leave")
    })
    .await;
    // B's message after A left, sent to A anyway (a stale peer): answered, not taken in.
    let said = {
        let _g = b.lock_room(&room).await;
        let e = rooms::build_local(&b, &room, &message(&room, &bob, "anyone?")).unwrap();
        rooms::accept_local_unsent(&b, &e).unwrap();
        e
    };
    let mut body = mxfed_core::canonical::Object::new();
    body.insert("origin", b.server_name.as_str());
    body.insert(
        "origin_server_ts",
        mxfed_core::canonical::Int::saturating(1),
    );
    body.insert("pdus", Value::Array(vec![Value::Object(said.pdu.clone())]));
    let req = common::inproc::signed(
        "PUT",
        "/_matrix/federation/v1/send/stale1",
        Some(&body),
        &b.server_name,
        &a.server_name,
        &b.keys[0],
    );
    let resp = mxfed_native::server::app(a.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let answer = parse_object(&bytes, &ParseOptions::LEGACY).unwrap();
    assert_eq!(
        answer
            .get_object("pdus")
            .and_then(|p| p.get_object(&said.event_id))
            .map(mxfed_core::canonical::Object::to_canonical_string)
            .as_deref(),
        Some("{}")
    );
    assert!(!a.rooms()[&room].contains(&said.event_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_server_gets_its_own_kick() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, None);
    let room = joined_public_room(&a, &b, &alice, &bob, "11").await;
    // Bob is B's only member: once kicked, B is no longer in the room, and must still hear it.
    let kick = {
        let _g = a.lock_room(&room).await;
        let leave = parse_object(br#"{"membership":"leave"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(&a, &room, &alice, "m.room.member", Some(&bob), leave, None).unwrap()
    };
    common::inproc::until(&b, "the kick on B", |s| s.rooms()[&room].contains(&kick)).await;
    assert_eq!(b.rooms()[&room].membership(&bob).as_deref(), Some("leave"));
}
