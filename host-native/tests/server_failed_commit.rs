//! A commit that fails leaves the server as the database has it. The database is made to refuse
//! a write with an SQLite trigger on a second connection (WAL lets both in), as a full disk or an
//! I/O error would: the room in memory must not keep what was never stored, and a redaction must
//! be stored together with the mark on its target, or not at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use mxfed_core::canonical::{parse_object, Object, ParseOptions, Value};
use mxfed_native::server::serve::{prepare, ServeArgs};
use mxfed_native::server::store::Reads as _;
use mxfed_native::server::{rooms, AppState};

const ALICE: &str = "@alice:localhost:18999";

fn obj(json: &str) -> Object {
    parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap()
}

fn setup(dir: &tempfile::TempDir) -> Arc<AppState> {
    let args = ServeArgs {
        config: None,
        data_dir: Some(dir.path().join("data")),
        server_name: Some("localhost:18999".into()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
    };
    prepare(&args).unwrap().state
}

fn sql(dir: &tempfile::TempDir, statement: &str) {
    let db = rusqlite::Connection::open(dir.path().join("data").join("mxfed.sqlite")).unwrap();
    db.execute_batch(statement).unwrap();
}

fn topic(state: &AppState, room: &str) -> Option<String> {
    let rooms = state.rooms();
    let id = rooms
        .get(room)?
        .current_state()
        .get(&("m.room.topic".to_owned(), String::new()))?
        .clone();
    Some(id)
}

async fn send(
    state: &Arc<AppState>,
    room: &str,
    kind: &str,
    state_key: Option<&str>,
    content: &str,
    redacts: Option<&str>,
) -> Result<String, String> {
    let _g = state.lock_room(room).await;
    rooms::send_event(state, room, ALICE, kind, state_key, obj(content), redacts)
        .map_err(|e| format!("{e:?}"))
}

/// A state event whose commit fails is not the room's state afterwards, and our next event does
/// not cite it (before the fix both held: the topic was served and built on, then gone after a
/// restart, leaving a stored event whose prev event was never stored).
#[tokio::test]
async fn a_failed_commit_leaves_the_room_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    state.db().create_user(ALICE, None, false).unwrap();
    let room = rooms::create_room(&state, ALICE, "10").unwrap();
    let before = state
        .rooms()
        .get(&room)
        .unwrap()
        .forward_extremities()
        .clone();

    sql(
        &dir,
        "CREATE TRIGGER refuse_topics BEFORE INSERT ON events WHEN NEW.json LIKE '%m.room.topic%'
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    );
    let failed = send(
        &state,
        &room,
        "m.room.topic",
        Some(""),
        r#"{"topic":"t"}"#,
        None,
    )
    .await;
    assert!(failed.is_err(), "the commit was refused: {failed:?}");
    assert_eq!(topic(&state, &room), None, "no topic in memory");
    assert_eq!(
        state.rooms().get(&room).unwrap().forward_extremities(),
        &before,
        "extremities as stored"
    );

    let msg = send(
        &state,
        &room,
        "m.room.message",
        None,
        r#"{"msgtype":"m.text","body":"hi"}"#,
        None,
    )
    .await
    .unwrap();
    let stored = state.reads().event(&msg).unwrap().unwrap();
    let ev = parse_object(stored.json.as_bytes(), &ParseOptions::LEGACY).unwrap();
    let prevs: Vec<&str> = ev
        .get("prev_events")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let before: Vec<&str> = before.iter().map(String::as_str).collect();
    assert_eq!(prevs, before, "the message cites what is stored");

    // Once the database takes writes again, so does the room.
    sql(&dir, "DROP TRIGGER refuse_topics;");
    let t = send(
        &state,
        &room,
        "m.room.topic",
        Some(""),
        r#"{"topic":"t"}"#,
        None,
    )
    .await
    .unwrap();
    assert_eq!(topic(&state, &room).as_deref(), Some(t.as_str()));
}

/// A redaction and the mark on its target are one commit: when the mark cannot be written the
/// redaction is not stored either (before the fix the redaction was stored and acknowledged, and
/// its target served whole for good); when it can, the target is redacted, also after a restart.
#[tokio::test]
async fn a_redaction_is_stored_with_its_target_marked() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    state.db().create_user(ALICE, None, false).unwrap();
    let room = rooms::create_room(&state, ALICE, "10").unwrap();
    let msg = send(
        &state,
        &room,
        "m.room.message",
        None,
        r#"{"msgtype":"m.text","body":"secret"}"#,
        None,
    )
    .await
    .unwrap();

    sql(
        &dir,
        "CREATE TRIGGER refuse_marks BEFORE UPDATE OF redacted_by ON events
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    );
    let failed = send(&state, &room, "m.room.redaction", None, "{}", Some(&msg)).await;
    assert!(
        failed.is_err(),
        "the redaction's commit was refused: {failed:?}"
    );
    let served = rooms::served(&state, &msg).unwrap().0;
    assert_eq!(
        served.get_object("content").and_then(|c| c.get_str("body")),
        Some("secret"),
        "not redacted: the redaction was not stored"
    );

    sql(&dir, "DROP TRIGGER refuse_marks;");
    let red = send(&state, &room, "m.room.redaction", None, "{}", Some(&msg))
        .await
        .unwrap();
    let stored = state.reads().event(&msg).unwrap().unwrap();
    assert_eq!(stored.redacted_by.as_deref(), Some(red.as_str()));
    drop(state);
    let state = setup(&dir);
    let served = rooms::served(&state, &msg).unwrap().0;
    assert!(
        served.get_object("content").unwrap().is_empty(),
        "redacted after a restart"
    );
}

const BOB: &str = "@bob:localhost:18999";

/// An admin API request with the token: the status and the body as JSON.
async fn admin(state: &Arc<AppState>, uri: &str, body: serde_json::Value) -> (u16, String) {
    let (status, bytes) = common::admin_request(state, "POST", uri, Some(&body)).await;
    (
        status.as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn invite_uri(room: &str) -> String {
    format!(
        "/admin/v1/rooms/{}/invite",
        mxfed_native::server::client::encode_segment(room)
    )
}

/// Bob's membership in the room, as the room has it in memory.
fn membership(state: &AppState, room: &str) -> Option<String> {
    state.rooms().get(room)?.membership(BOB)
}

/// Bob's membership as stored: the last member event about him among the room's events.
fn stored_membership(state: &AppState, room: &str) -> Option<String> {
    state
        .reads()
        .room_events(room)
        .unwrap()
        .into_iter()
        .rev()
        .find_map(|e| {
            let ev = parse_object(e.json.as_bytes(), &ParseOptions::LEGACY).ok()?;
            if ev.get_str("type") != Some("m.room.member") || ev.get_str("state_key") != Some(BOB) {
                return None;
            }
            let content = ev.get_object("content")?;
            content.get_str("membership").map(str::to_owned)
        })
}

/// Bob's invites: (room, status, event JSON).
fn bobs_invites(state: &AppState) -> Vec<(String, String, String)> {
    state
        .reads()
        .invites(BOB)
        .unwrap()
        .into_iter()
        .map(|i| (i.room_id, i.status, i.event))
        .collect()
}

/// An invite of one of our users by another is stored with its `invites` row in one commit:
/// when the row cannot be written, the invite event is not stored either (before the fix the
/// event was stored and sent, without its row, also after a restart); when it can, both are,
/// and the row holds the stored event.
#[tokio::test]
async fn a_local_invite_is_stored_with_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    state.db().create_user(ALICE, None, false).unwrap();
    state.db().create_user(BOB, None, false).unwrap();
    let room = rooms::create_room(&state, ALICE, "10").unwrap();
    let body = serde_json::json!({ "as": "alice", "user_id": BOB });

    sql(
        &dir,
        "CREATE TRIGGER refuse_invites BEFORE INSERT ON invites
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    );
    let (status, answer) = admin(&state, &invite_uri(&room), body.clone()).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(membership(&state, &room), None, "not invited in memory");
    assert_eq!(stored_membership(&state, &room), None, "no invite stored");
    assert!(bobs_invites(&state).is_empty());
    drop(state);
    let state = setup(&dir);
    assert_eq!(membership(&state, &room), None, "nor after a restart");

    sql(&dir, "DROP TRIGGER refuse_invites;");
    let (status, answer) = admin(&state, &invite_uri(&room), body).await;
    assert_eq!(status, 200, "{answer}");
    let id: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let id = id["event_id"].as_str().unwrap();
    assert_eq!(membership(&state, &room).as_deref(), Some("invite"));
    assert_eq!(stored_membership(&state, &room).as_deref(), Some("invite"));
    let stored = state.reads().event(id).unwrap().unwrap();
    assert_eq!(
        bobs_invites(&state),
        [(room.clone(), "pending".to_owned(), stored.json)]
    );
}

/// Our user's join or leave that answers an invite is stored with the invite's new status in
/// one commit: when the status cannot be written the membership is not stored either (before
/// the fix the join was stored while the invite stayed pending), and when it can, both are.
#[tokio::test]
async fn an_invite_answered_is_stored_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    state.db().create_user(ALICE, None, false).unwrap();
    state.db().create_user(BOB, None, true).unwrap();
    let room = rooms::create_room(&state, ALICE, "10").unwrap();
    let body = serde_json::json!({ "as": "alice", "user_id": BOB });

    // Bob accepts invites at once: the invite is stored, his join is refused with its status.
    sql(
        &dir,
        "CREATE TRIGGER refuse_status BEFORE UPDATE OF status ON invites
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    );
    let (status, answer) = admin(&state, &invite_uri(&room), body).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(membership(&state, &room).as_deref(), Some("invite"));
    assert_eq!(stored_membership(&state, &room).as_deref(), Some("invite"));
    assert_eq!(bobs_invites(&state)[0].1, "pending");
    // Nor does accepting it by hand, nor rejecting it, store a membership without its status.
    let accept = format!(
        "/admin/v1/invites/{}/accept",
        mxfed_native::server::client::encode_segment(&room)
    );
    let leave = format!(
        "/admin/v1/rooms/{}/leave",
        mxfed_native::server::client::encode_segment(&room)
    );
    let as_bob = serde_json::json!({ "as": "bob" });
    for uri in [&accept, &leave] {
        let (status, answer) = admin(&state, uri, as_bob.clone()).await;
        assert_eq!(status, 500, "{uri}: {answer}");
        assert_eq!(stored_membership(&state, &room).as_deref(), Some("invite"));
        assert_eq!(bobs_invites(&state)[0].1, "pending");
    }
    drop(state);
    let state = setup(&dir);
    assert_eq!(membership(&state, &room).as_deref(), Some("invite"));

    sql(&dir, "DROP TRIGGER refuse_status;");
    let (status, answer) = admin(&state, &accept, as_bob.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(membership(&state, &room).as_deref(), Some("join"));
    assert_eq!(stored_membership(&state, &room).as_deref(), Some("join"));
    assert_eq!(bobs_invites(&state)[0].1, "accepted");
    let (status, answer) = admin(&state, &leave, as_bob).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored_membership(&state, &room).as_deref(), Some("leave"));
    assert_eq!(bobs_invites(&state)[0].1, "rejected");
}
