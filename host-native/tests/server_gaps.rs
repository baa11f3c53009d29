//! Two in-process servers on loopback (TLS, real sockets): a gap in the DAG is filled with
//! `/get_missing_events`, and a gap too long for it (the resident caps it at 20) is bridged with
//! `/state` at the first event it could not place. Leaving and the invite handshake are driven
//! through the same functions the admin API uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mxfed_core::canonical::{parse_object, ParseOptions};
use mxfed_core::event::EventTemplate;
use mxfed_native::server::rooms;
use mxfed_native::server::store::Reads as _;

use common::inproc::{gap, invited_room, message, same, two_servers, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_filled_with_missing_events_then_state() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, Some("Bob"));

    let room = invited_room(&a, &alice, &bob, "11").await;
    let invites = b.reads().invites(&bob).unwrap();
    assert_eq!(invites.len(), 1, "the invite was stored for bob");
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();
    assert_eq!(a.rooms()[&room].membership(&bob).as_deref(), Some("join"));

    // A short gap: /get_missing_events.
    let ids = gap(&b, &room, &bob, 3).await;
    let last = ids.last().unwrap().clone();
    until(&a, "the short gap", |s| s.rooms()[&room].contains(&last)).await;
    for id in &ids {
        let rooms = a.rooms();
        assert!(
            rooms[&room].contains(id) && !rooms[&room].is_outlier(id),
            "{id} fetched"
        );
    }

    // A long gap: 20 events through /get_missing_events, the first of them placed with /state.
    let ids = gap(&b, &room, &bob, 25).await;
    let last = ids.last().unwrap().clone();
    until(&a, "the long gap", |s| s.rooms()[&room].contains(&last)).await;
    {
        let rooms = a.rooms();
        let r = &rooms[&room];
        assert!(!r.is_outlier(&last));
        // The last event is a forward extremity; the event before the unbridged part stays one
        // too (A cannot know it is an ancestor) until A's next event cites both.
        assert!(r.forward_extremities().contains(&last));
        let placed = ids.iter().filter(|id| r.contains(id)).count();
        assert!(placed >= 21, "{placed} of 25 placed");
        assert!(!r.contains(&ids[0]), "beyond the 20 fetched: not needed");
    }
    assert_eq!(
        a.rooms()[&room].current_state(),
        b.rooms()[&room].current_state()
    );

    // A message from A after the gap reaches B (A's extremity is B's last event).
    let m = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "after")).unwrap()
    };
    until(&b, "A's message", |s| s.rooms()[&room].contains(&m)).await;
    assert_eq!(
        a.rooms()[&room]
            .forward_extremities()
            .iter()
            .collect::<Vec<_>>(),
        [&m]
    );

    // Bob leaves (a local leave sent to the room); A sees it.
    let leave = {
        let _g = b.lock_room(&room).await;
        let content = parse_object(br#"{"membership":"leave"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(&b, &room, &bob, "m.room.member", Some(&bob), content, None).unwrap()
    };
    until(&a, "bob's leave", |s| s.rooms()[&room].contains(&leave)).await;
    assert_eq!(a.rooms()[&room].membership(&bob).as_deref(), Some("leave"));
    assert!(!a.rooms()[&room].joined_servers().contains(&b.server_name));

    // Carol (on B) is invited and rejects the invite through A: make_leave/send_leave.
    let carol = format!("@carol:{}", b.server_name);
    b.db().create_user(&carol, None, false).unwrap();
    {
        let _g = a.lock_room(&room).await;
        rooms::invite_remote(&a, &room, &alice, &carol)
            .await
            .unwrap();
    }
    assert_eq!(
        a.rooms()[&room].membership(&carol).as_deref(),
        Some("invite")
    );
    rooms::remote_membership(&b, &room, &carol, &a.server_name, "leave")
        .await
        .unwrap();
    assert_eq!(
        a.rooms()[&room].membership(&carol).as_deref(),
        Some("leave")
    );

    // Bob knocks on a room with knock join rules: make_knock/send_knock.
    {
        let _g = a.lock_room(&room).await;
        let content = parse_object(br#"{"join_rule":"knock"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(
            &a,
            &room,
            &alice,
            "m.room.join_rules",
            Some(""),
            content,
            None,
        )
        .unwrap();
    }
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "knock")
        .await
        .unwrap();
    assert_eq!(a.rooms()[&room].membership(&bob).as_deref(), Some("knock"));
}

/// An event A first knows as an outlier (in `/state` at the start of a gap it bridged) that
/// arrives later through `/send` is taken into A's DAG once its prev events are fetched: no
/// longer an outlier, stored so (its row updated), and the room rebuilt from storage after a
/// restart is the same room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlier_sent_later_is_taken_in_and_kept_so() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), same, Some("Bob"));
    let room = invited_room(&a, &alice, &bob, "11").await;
    rooms::remote_membership(&b, &room, &bob, &a.server_name, "join")
        .await
        .unwrap();

    // On B: a message, a change of bob's display name (state), then 23 messages; only the last
    // is sent. A fetches the 20 before it and bridges the rest with /state at the first of
    // those, which names the name change: an outlier on A.
    let rename = EventTemplate {
        state_key: Some(bob.clone()),
        event_type: "m.room.member".into(),
        content: parse_object(
            br#"{"membership":"join","displayname":"Robert"}"#,
            &ParseOptions::STRICT,
        )
        .unwrap(),
        ..message(&room, &bob, "")
    };
    let mut built = Vec::new();
    {
        let _g = b.lock_room(&room).await;
        for i in 0..25 {
            let t = if i == 1 {
                rename.clone()
            } else {
                message(&room, &bob, &format!("m{i}"))
            };
            let e = rooms::build_local(&b, &room, &t).unwrap();
            if i + 1 < 25 {
                rooms::accept_local_unsent(&b, &e).unwrap();
            } else {
                rooms::accept_local(&b, &e).unwrap();
            }
            built.push(e);
        }
    }
    let (first, renamed, last) = (&built[0], &built[1], &built[24].event_id);
    until(&a, "the gap", |s| s.rooms()[&room].contains(last)).await;
    assert!(a.rooms()[&room].is_outlier(&renamed.event_id));
    assert!(a.reads().event(&renamed.event_id).unwrap().unwrap().outlier);

    // B sends the name change after all (as a retried transaction would): A fetches the
    // message before it and takes it in.
    let v = a.rooms()[&room].version();
    let taken = {
        let _g = a.lock_room(&room).await;
        let pdu = (renamed.event_id.clone(), renamed.pdu.clone());
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        rooms::ingest(&a, &b.server_name, &room, v, vec![pdu], until).await
    };
    assert_eq!(taken[0].1, rooms::Taken::Accepted);
    {
        let rooms = a.rooms();
        let r = &rooms[&room];
        assert!(r.contains(&first.event_id) && !r.is_outlier(&first.event_id));
        assert!(!r.is_outlier(&renamed.event_id));
        assert!(r.state_before_event(&renamed.event_id).is_some());
        let extremities: Vec<&String> = r.forward_extremities().iter().collect();
        assert!(extremities.contains(&&renamed.event_id), "{extremities:?}");
    }
    let row = a.reads().event(&renamed.event_id).unwrap().unwrap();
    assert_eq!((row.outlier, row.verdict.as_str()), (false, "accepted"));

    // A restart rebuilds the same room.
    let again = common::inproc::reopen(&a);
    let (live, rebuilt) = (&a.rooms()[&room], &again.rooms()[&room]);
    assert!(!rebuilt.is_outlier(&renamed.event_id));
    assert_eq!(rebuilt.forward_extremities(), live.forward_extremities());
    assert_eq!(rebuilt.current_state(), live.current_state());
    for e in &built {
        let id = e.event_id.as_str();
        assert_eq!(rebuilt.contains(id), live.contains(id), "{id}");
        assert_eq!(rebuilt.is_outlier(id), live.is_outlier(id), "{id}");
        assert_eq!(rebuilt.state_after(id), live.state_after(id), "{id}");
    }
}
