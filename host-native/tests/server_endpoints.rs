//! The federation server without a socket: first run, the key endpoint, X-Matrix failures, /send
//! with valid, tampered and forged PDUs, transaction de-duplication, EDUs, and bad input. The
//! router is called directly (`app(state)`), and the remote server is simulated by signing with
//! a key the test puts in the server's key cache, so nothing touches the network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mxfed_core::canonical::{parse_object, Int, Object, ParseOptions, Value};
use mxfed_core::event::{build_event, EventRef, EventTemplate, StateMap};
use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys::build_server_keys;
use mxfed_core::xmatrix;
use mxfed_native::server::serve::{prepare, ServeArgs};
use mxfed_native::server::store::Reads as _;
use mxfed_native::server::{app, rooms, AppState};
use tower::ServiceExt as _;

use common::inproc::signed;
use common::mutate::{mutated, Rng};

const ME: &str = "localhost:18999";
const REMOTE: &str = "remote.test";

fn remote_key() -> SigningKey {
    SigningKey::from_seed_base64("r1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap()
}

/// Another key claiming the same key ID: what a forger has.
fn forger_key() -> SigningKey {
    SigningKey::from_seed("r1", &[7u8; 32]).unwrap()
}

fn setup(dir: &tempfile::TempDir) -> Arc<AppState> {
    let args = ServeArgs {
        config: None,
        data_dir: Some(dir.path().join("data")),
        server_name: Some(ME.into()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
    };
    let state = prepare(&args).unwrap().state;
    // The remote server's keys, as if fetched.
    add_server(&state, REMOTE, &remote_key());
    state
}

struct Resp {
    status: StatusCode,
    body: Object,
}

async fn call(state: &Arc<AppState>, req: Request<Body>) -> Resp {
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "every answer is JSON"
    );
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = parse_object(&bytes, &ParseOptions::LEGACY).unwrap_or_else(|e| {
        panic!(
            "not a JSON object ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Resp { status, body }
}

fn obj(s: &str) -> Object {
    parse_object(s.as_bytes(), &ParseOptions::STRICT).unwrap()
}

#[tokio::test]
async fn first_run_creates_everything_and_keys_verify() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let data = dir.path().join("data");
    for f in [
        "mxfed.toml",
        "signing.key",
        "tls/cert.pem",
        "tls/key.pem",
        "mxfed.sqlite",
        "admin.token",
    ] {
        assert!(data.join(f).exists(), "{f} created on first run");
    }
    let config = std::fs::read_to_string(data.join("mxfed.toml")).unwrap();
    assert!(
        config.contains("# mxfed server configuration"),
        "config has comments"
    );
    assert!(config.contains(&format!("server_name = \"{ME}\"")));
    let key = std::fs::read_to_string(data.join("signing.key")).unwrap();
    assert!(key.starts_with("ed25519 a_"), "Synapse format: {key}");

    let r = call(
        &state,
        Request::get("/_matrix/key/v2/server")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.get_str("server_name"), Some(ME));
    let file = dir.path().join("keys.json");
    std::fs::write(&file, r.body.to_canonical_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxfed"))
        .args(["keys", "verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mxfed keys verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let r = call(
        &state,
        Request::get("/.well-known/matrix/server")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.body.get_str("m.server"), Some(ME));
    let r = call(
        &state,
        Request::get("/_matrix/federation/v1/version")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.body.get_object("server").and_then(|s| s.get_str("name")),
        Some("mxfed")
    );

    // The notary answers for a server it has cached, countersigned.
    let q = obj(&format!(r#"{{"server_keys":{{"{REMOTE}":{{}}}}}}"#));
    let r = call(
        &state,
        Request::post("/_matrix/key/v2/query")
            .body(Body::from(q.to_canonical_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let entry = r.body.get("server_keys").and_then(Value::as_array).unwrap()[0]
        .as_object()
        .unwrap();
    let sigs = entry.get_object("signatures").unwrap();
    assert!(
        sigs.contains_key(REMOTE) && sigs.contains_key(ME),
        "origin and notary signatures"
    );
}

#[tokio::test]
async fn x_matrix_failures_get_the_right_errcode() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let uri = "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Alocalhost%3A18999";

    let r = call(&state, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (401, Some("M_UNAUTHORIZED")),
        "missing"
    );

    let r = call(&state, signed("GET", uri, None, REMOTE, ME, &forger_key())).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (401, Some("M_UNAUTHORIZED")),
        "bad sig"
    );
    assert!(r.body.get_str("error").unwrap().contains("does not verify"));

    let r = call(
        &state,
        signed("GET", uri, None, REMOTE, "elsewhere.test", &remote_key()),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (401, Some("M_UNAUTHORIZED")),
        "destination"
    );
    assert!(r.body.get_str("error").unwrap().contains("destination"));

    let bad = Request::get(uri)
        .header(
            "authorization",
            "X-Matrix origin=\"remote.test\",key=\"ed25519:r1\"",
        )
        .body(Body::empty())
        .unwrap();
    let r = call(&state, bad).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (400, Some("M_UNAUTHORIZED")),
        "malformed"
    );

    // Signed for another URI: the signature covers the request line.
    let mut req = signed(
        "GET",
        "/_matrix/federation/v1/query/profile?user_id=x",
        None,
        REMOTE,
        ME,
        &remote_key(),
    );
    *req.uri_mut() = uri.parse().unwrap();
    let r = call(&state, req).await;
    assert_eq!(r.status.as_u16(), 401);

    // A good signature reaches the handler: the user is unknown.
    let r = call(&state, signed("GET", uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (404, Some("M_NOT_FOUND"))
    );
}

/// A room on our server with public join rules, and a PDU builder for the remote server.
async fn room_with_remote(state: &Arc<AppState>) -> String {
    state
        .db()
        .create_user("@alice:localhost:18999", Some("Alice"), false)
        .unwrap();
    let room = rooms::create_room(state, "@alice:localhost:18999", "10").unwrap();
    let _g = state.lock_room(&room).await;
    rooms::send_event(
        state,
        &room,
        "@alice:localhost:18999",
        "m.room.join_rules",
        Some(""),
        obj(r#"{"join_rule":"public"}"#),
        None,
    )
    .unwrap();
    room
}

fn remote_pdu(
    state: &AppState,
    room: &str,
    kind: &str,
    sender: &str,
    sk: Option<&str>,
    content: &str,
    key: &SigningKey,
) -> (String, Object) {
    let t = rooms::template(Some(room), kind, sender, sk, obj(content));
    pdu_of(state, room, REMOTE, key, &t, None)
}

/// An event of `origin` built on the room's current state, on its forward extremities or on
/// `prev` when given.
fn pdu_of(
    state: &AppState,
    room: &str,
    origin: &str,
    key: &SigningKey,
    t: &EventTemplate,
    prev: Option<Vec<EventRef>>,
) -> (String, Object) {
    let rooms = state.rooms();
    let r = rooms.get(room).unwrap();
    let v = r.version();
    let eref = |id: &str| EventRef {
        event_id: id.to_owned(),
        depth: r.event(id).unwrap().0.depth(),
        sha256: None,
    };
    let prev: Vec<EventRef> =
        prev.unwrap_or_else(|| r.forward_extremities().iter().map(|id| eref(id)).collect());
    let cur: StateMap = r
        .current_state()
        .into_iter()
        .map(|(k, id)| (k, eref(&id)))
        .collect();
    let b = build_event(
        v,
        origin,
        t,
        &prev,
        &cur,
        mxfed_native::server::now(),
        key,
        None,
    )
    .unwrap();
    (b.event_id, b.pdu)
}

/// [`room_with_remote`] with `@eve:remote.test` joined (through `/send`): the room and her
/// join's ID.
async fn room_with_eve(state: &Arc<AppState>) -> (String, String) {
    let room = room_with_remote(state).await;
    let (join_id, join) = eve_join(state, &room);
    let r = send_txn(state, "eve-joins", &txn(vec![join], vec![])).await;
    assert!(result(&r, &join_id).is_empty(), "{}", r.body);
    (room, join_id)
}

/// `@eve:remote.test` joining the room, signed with the remote's key.
fn eve_join(state: &AppState, room: &str) -> (String, Object) {
    remote_pdu(
        state,
        room,
        "m.room.member",
        "@eve:remote.test",
        Some("@eve:remote.test"),
        r#"{"membership":"join"}"#,
        &remote_key(),
    )
}

/// An `m.text` message of a remote user, signed with `key`.
fn remote_message(
    state: &AppState,
    room: &str,
    sender: &str,
    body: &str,
    key: &SigningKey,
) -> (String, Object) {
    let content = format!(r#"{{"body":"{body}","msgtype":"m.text"}}"#);
    remote_pdu(state, room, "m.room.message", sender, None, &content, key)
}

fn txn(pdus: Vec<Object>, edus: Vec<Object>) -> Object {
    txn_from(REMOTE, pdus, edus)
}

/// A transaction body from `origin`.
fn txn_from(origin: &str, pdus: Vec<Object>, edus: Vec<Object>) -> Object {
    let mut o = Object::new();
    o.insert("origin", origin);
    o.insert("origin_server_ts", Int::new(1).unwrap());
    o.insert(
        "pdus",
        Value::Array(pdus.into_iter().map(Value::Object).collect()),
    );
    if !edus.is_empty() {
        o.insert(
            "edus",
            Value::Array(edus.into_iter().map(Value::Object).collect()),
        );
    }
    o
}

async fn send_txn(state: &Arc<AppState>, id: &str, body: &Object) -> Resp {
    let uri = format!("/_matrix/federation/v1/send/{id}");
    call(
        state,
        signed("PUT", &uri, Some(body), REMOTE, ME, &remote_key()),
    )
    .await
}

fn result<'a>(r: &'a Resp, event_id: &str) -> &'a Object {
    r.body
        .get_object("pdus")
        .and_then(|p| p.get_object(event_id))
        .unwrap_or_else(|| panic!("no result for {event_id}: {}", r.body))
}

#[tokio::test]
async fn send_gives_per_pdu_results_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let room = room_with_remote(&state).await;

    // A valid join by a remote user.
    let (join_id, join) = eve_join(&state, &room);
    let r = send_txn(&state, "t1", &txn(vec![join], vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(result(&r, &join_id).is_empty(), "accepted: {}", r.body);
    assert_eq!(
        state.rooms()[&room]
            .membership("@eve:remote.test")
            .as_deref(),
        Some("join")
    );

    // Valid, tampered (a signed field changed) and forged (someone else's key) messages.
    let (ok_id, ok) = remote_message(&state, &room, "@eve:remote.test", "hi", &remote_key());
    let (_, mut tampered) = remote_message(&state, &room, "@eve:remote.test", "t", &remote_key());
    tampered.insert("origin_server_ts", Int::new(5).unwrap());
    let tampered_id =
        mxfed_core::event::event_id(&tampered, mxfed_core::RoomVersion::get("10").unwrap())
            .unwrap();
    let (forged_id, forged) = remote_message(&state, &room, "@eve:remote.test", "f", &forger_key());
    // Not allowed by the room's rules: a user who never joined.
    let (nojoin_id, nojoin) =
        remote_message(&state, &room, "@mallory:remote.test", "m", &remote_key());
    let body = txn(vec![ok, tampered, forged, nojoin], vec![]);
    let r = send_txn(&state, "t2", &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(result(&r, &ok_id).is_empty(), "{}", r.body);
    assert!(
        result(&r, &tampered_id)
            .get_str("error")
            .unwrap()
            .contains("signature"),
        "{}",
        r.body
    );
    assert!(
        result(&r, &forged_id)
            .get_str("error")
            .unwrap()
            .contains("signature"),
        "{}",
        r.body
    );
    assert!(
        result(&r, &nojoin_id)
            .get_str("error")
            .unwrap()
            .contains("rejected"),
        "{}",
        r.body
    );

    // The same transaction again: the same answer, nothing processed twice.
    let events_before = state.reads().room_events(&room).unwrap().len();
    let again = send_txn(&state, "t2", &body).await;
    assert_eq!(again.body, r.body);
    // Even with another body: the transaction ID decides.
    let other = send_txn(&state, "t2", &txn(vec![], vec![])).await;
    assert_eq!(other.body, r.body);
    assert_eq!(
        state.reads().room_events(&room).unwrap().len(),
        events_before
    );

    // EDUs are stored for the admin API.
    let typing = obj(&format!(
        r#"{{"edu_type":"m.typing","content":{{"room_id":"{room}","user_id":"@eve:remote.test","typing":true}}}}"#
    ));
    let receipt = obj(&format!(
        r#"{{"edu_type":"m.receipt","content":{{"{room}":{{"m.read":{{"@eve:remote.test":{{"event_ids":["{ok_id}"],"data":{{"ts":1}}}}}}}}}}}}"#
    ));
    // The same for a room the remote has no one joined to: dropped (as Synapse), as they would
    // be for a room we are not in.
    let elsewhere = rooms::create_room(&state, "@alice:localhost:18999", "10").unwrap();
    let typing_elsewhere = obj(&format!(
        r#"{{"edu_type":"m.typing","content":{{"room_id":"{elsewhere}","user_id":"@eve:remote.test","typing":true}}}}"#
    ));
    let receipt_elsewhere = obj(&format!(
        r#"{{"edu_type":"m.receipt","content":{{"{elsewhere}":{{"m.read":{{"@eve:remote.test":{{"event_ids":["{ok_id}"],"data":{{"ts":1}}}}}}}}}}}}"#
    ));
    let r = send_txn(
        &state,
        "t3",
        &txn(
            vec![],
            vec![typing, receipt, typing_elsewhere, receipt_elsewhere],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let edus = state.reads().edus(&room).unwrap();
    let kinds: Vec<&str> = edus.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["m.typing", "m.receipt"]);
    assert_eq!(state.reads().edus(&elsewhere).unwrap().len(), 0);

    // What the remote can read back: the event, state before it, backfill, missing events.
    let uri = format!("/_matrix/federation/v1/event/{}", urlenc(&ok_id));
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let uri = format!(
        "/_matrix/federation/v1/state_ids/{}?event_id={}",
        urlenc(&room),
        urlenc(&ok_id)
    );
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .get("pdu_ids")
            .and_then(Value::as_array)
            .unwrap()
            .len()
            >= 5
    );
    let uri = format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=3",
        urlenc(&room),
        urlenc(&ok_id)
    );
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(
        r.body.get("pdus").and_then(Value::as_array).unwrap().len(),
        3
    );
    let uri = format!(
        "/_matrix/federation/v1/backfill/{}?v={}",
        urlenc(&room),
        urlenc(&ok_id)
    );
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (400, Some("M_MISSING_PARAM"))
    );

    // Restart: the room is rebuilt from storage, with the same state.
    let before = state.rooms()[&room].current_state();
    drop(state);
    let state = setup(&dir);
    assert_eq!(state.rooms()[&room].current_state(), before);
    let again = send_txn(&state, "t2", &txn(vec![], vec![])).await;
    assert_eq!(
        again.body.get_object("pdus").unwrap().len(),
        4,
        "dedup survives a restart"
    );
}

/// A read-write connection to the server's database beside its own, for a test to change the
/// schema under it.
fn side_connection(state: &AppState) -> rusqlite::Connection {
    let path = mxfed_native::server::Config::resolve(&state.data_dir, &state.config.database);
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

/// A transaction's answer is given (and remembered for retries) only once its EDUs are stored:
/// while they cannot be (a trigger refuses every EDU row), it is answered 500 and not
/// remembered, so the sender's retry of the same transaction ID stores them.
#[tokio::test]
async fn a_transaction_whose_edus_cannot_be_stored_is_answered_500_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, _) = room_with_eve(&state).await;
    let typing = obj(&format!(
        r#"{{"edu_type":"m.typing","content":{{"room_id":"{room}","user_id":"@eve:remote.test","typing":true}}}}"#
    ));
    let body = txn(vec![], vec![typing]);
    let side = side_connection(&state);
    side.execute_batch(
        "CREATE TRIGGER no_edus BEFORE INSERT ON edus BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    for _ in 0..2 {
        let r = send_txn(&state, "edu-1", &body).await;
        assert_eq!(
            (r.status.as_u16(), r.body.get_str("errcode")),
            (500, Some("M_UNKNOWN")),
            "{}",
            r.body
        );
    }
    assert!(state.reads().edus(&room).unwrap().is_empty());
    side.execute_batch("DROP TRIGGER no_edus").unwrap();
    let r = send_txn(&state, "edu-1", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kinds: Vec<String> = state
        .reads()
        .edus(&room)
        .unwrap()
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(kinds, ["m.typing"]);
    // Answered from the dedup now: not stored twice.
    let r = send_txn(&state, "edu-1", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(state.reads().edus(&room).unwrap().len(), 1);
}

/// An `m.direct_to_device` EDU from `@eve:remote.test` to `to`'s device `D`, with message ID
/// `id` and the message `message` (JSON text).
fn to_device(to: &str, id: &str, message: &str) -> Object {
    let text = format!(
        r#"{{"edu_type":"m.direct_to_device","content":{{"sender":"@eve:remote.test","type":"m.room_key_request","message_id":"{id}","messages":{{"{to}":{{"D":{message}}}}}}}}}"#
    );
    let opts = ParseOptions {
        max_depth: mxfed_core::transaction::MAX_DEPTH,
        ..ParseOptions::STRICT
    };
    parse_object(text.as_bytes(), &opts).unwrap()
}

/// A to-device message nested deeper than other request bodies may be (as Synapse forwards one
/// from a client) does not make the transaction unreadable: it is answered 200 and the message
/// kept, where the whole transaction used to be refused (and sent again forever).
#[tokio::test]
async fn a_deeply_nested_to_device_message_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let alice = "@alice:localhost:18999";
    state.db().create_user(alice, None, false).unwrap();
    let deep = format!("{}1{}", r#"{"a":["#.repeat(65), "]}".repeat(65));
    let r = send_txn(
        &state,
        "deep-1",
        &txn(vec![], vec![to_device(alice, "m-deep", &deep)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stored = state.reads().edus_of_type("m.direct_to_device").unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].2.contains(&deep), "kept whole");
}

/// A to-device message its sender sends again in another transaction (it did not see our
/// answer) is stored once: messages are told apart by origin and message ID, as in Synapse.
#[tokio::test]
async fn a_to_device_message_sent_again_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let alice = "@alice:localhost:18999";
    state.db().create_user(alice, None, false).unwrap();
    for (txn_id, id) in [("td-1", "m1"), ("td-2", "m1"), ("td-3", "m2")] {
        let body = txn(vec![], vec![to_device(alice, id, r#"{"k":1}"#)]);
        let r = send_txn(&state, txn_id, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let ids: Vec<String> = state
        .reads()
        .edus_of_type("m.direct_to_device")
        .unwrap()
        .into_iter()
        .map(|(_, _, content, _)| obj(&content).get_str("message_id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
}

/// Every stored EDU, in order: (type, content).
fn all_edus(state: &AppState) -> Vec<(String, String)> {
    let c = side_connection(state);
    let mut st = c
        .prepare("SELECT edu_type, content FROM edus ORDER BY id")
        .unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// EDUs of `user` (of remote.test) of the three kinds kept only for users who share a room with
/// us: presence (`state`), a device-list update and a signing-key update.
fn user_edus(user: &str, state: &str) -> Vec<Object> {
    vec![
        obj(&format!(
            r#"{{"edu_type":"m.presence","content":{{"push":[{{"user_id":"{user}","presence":"{state}","last_active_ago":1}}]}}}}"#
        )),
        obj(&format!(
            r#"{{"edu_type":"m.device_list_update","content":{{"user_id":"{user}","device_id":"D","stream_id":1,"prev_id":[]}}}}"#
        )),
        obj(&format!(
            r#"{{"edu_type":"m.signing_key_update","content":{{"user_id":"{user}","master_key":{{"user_id":"{user}","usage":["master"],"keys":{{}}}}}}}}"#
        )),
    ]
}

/// What a server in no room with us sends is not kept: EDUs of types we do not handle,
/// to-device messages for users who are not ours (another server's, or an ID of ours no user
/// has), and presence, device-list and signing-key updates of users who share no room with us.
/// Each used to be stored whole, with no bound.
#[tokio::test]
async fn edus_that_do_not_concern_us_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let mut edus = vec![
        obj(r#"{"edu_type":"org.example.unknown","content":{"big":"xxxxxxxx"}}"#),
        to_device("@x:third.example", "m1", r#"{"k":1}"#),
        to_device("@nobody:localhost:18999", "m2", r#"{"k":1}"#),
    ];
    edus.extend(user_edus("@eve:remote.test", "online"));
    let r = send_txn(&state, "stranger-1", &txn(vec![], edus)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(all_edus(&state), []);
}

/// Of what a server in a room with us sends, what concerns us is kept: the messages of a
/// to-device batch for our users (not the others), the updates of its users who share a room
/// with us (not of those who do not), and one presence per user, the latest.
#[tokio::test]
async fn edus_of_users_we_share_a_room_with_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    room_with_eve(&state).await;
    let alice = "@alice:localhost:18999";
    let mut edus = user_edus("@eve:remote.test", "online");
    edus.extend(user_edus("@zed:remote.test", "online"));
    edus.push(obj(&format!(
        r#"{{"edu_type":"m.direct_to_device","content":{{"sender":"@eve:remote.test","type":"m.x","message_id":"m1","messages":{{"{alice}":{{"D":{{"a":1}}}},"@x:third.example":{{"E":{{"b":2}}}}}}}}}}"#
    )));
    let r = send_txn(&state, "friend-1", &txn(vec![], edus)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = send_txn(
        &state,
        "friend-2",
        &txn(
            vec![],
            user_edus("@eve:remote.test", "unavailable")[..1].to_vec(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kinds: Vec<(String, Option<String>)> = all_edus(&state)
        .into_iter()
        .map(|(kind, content)| {
            let c = obj(&content);
            let who = match kind.as_str() {
                "m.presence" => c.get("push").and_then(Value::as_array).map(|p| {
                    let p = p[0].as_object().unwrap();
                    format!(
                        "{} {}",
                        p.get_str("user_id").unwrap(),
                        p.get_str("presence").unwrap()
                    )
                }),
                "m.direct_to_device" => Some(
                    c.get_object("messages")
                        .unwrap()
                        .keys()
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                _ => c.get_str("user_id").map(str::to_owned),
            };
            (kind, who)
        })
        .collect();
    let row = |k: &str, who: &str| (k.to_owned(), Some(who.to_owned()));
    assert_eq!(
        kinds,
        [
            row("m.device_list_update", "@eve:remote.test"),
            row("m.signing_key_update", "@eve:remote.test"),
            row("m.direct_to_device", alice),
            row("m.presence", "@eve:remote.test unavailable"),
        ]
    );
}

/// Typing and receipts keep the latest per key, as Synapse does: one typing notice per (room,
/// user), one receipt per (room, receipt type, user, thread); device-list updates one per
/// device, signing keys one per user and key. A later one replaces the one before (and is
/// listed after the others), whatever else came in the same EDU.
#[tokio::test]
async fn typing_receipts_and_updates_keep_the_latest_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, join_id) = room_with_eve(&state).await;
    let eve = "@eve:remote.test";
    let typing = |on: bool| {
        obj(&format!(
            r#"{{"edu_type":"m.typing","content":{{"room_id":"{room}","user_id":"{eve}","typing":{on}}}}}"#
        ))
    };
    let receipt = |kinds: &[&str], ts: i64, thread: Option<&str>| {
        let data = thread.map_or(format!(r#"{{"ts":{ts}}}"#), |t| {
            format!(r#"{{"thread_id":"{t}","ts":{ts}}}"#)
        });
        let per_kind: Vec<String> = kinds
            .iter()
            .map(|k| format!(r#""{k}":{{"{eve}":{{"data":{data},"event_ids":["{join_id}"]}}}}"#))
            .collect();
        obj(&format!(
            r#"{{"edu_type":"m.receipt","content":{{"{room}":{{{}}}}}}}"#,
            per_kind.join(",")
        ))
    };
    let device = |id: &str, stream: i64| {
        obj(&format!(
            r#"{{"edu_type":"m.device_list_update","content":{{"user_id":"{eve}","device_id":"{id}","stream_id":{stream},"prev_id":[]}}}}"#
        ))
    };
    let key = |kind: &str, n: i64| {
        format!(r#""{kind}":{{"user_id":"{eve}","usage":["{n}"],"keys":{{}}}}"#)
    };
    let signing = |keys: &[String]| {
        obj(&format!(
            r#"{{"edu_type":"m.signing_key_update","content":{{"user_id":"{eve}",{}}}}}"#,
            keys.join(",")
        ))
    };
    let first = vec![
        typing(true),
        receipt(&["m.read", "m.read.private"], 1, None),
        receipt(&["m.read"], 1, Some("$thread")),
        device("D1", 1),
        device("D2", 1),
        signing(&[key("master_key", 1), key("self_signing_key", 1)]),
    ];
    let r = send_txn(&state, "latest-1", &txn(vec![], first)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = vec![
        typing(false),
        receipt(&["m.read"], 2, None),
        device("D1", 2),
        signing(&[key("self_signing_key", 2)]),
    ];
    let r = send_txn(&state, "latest-2", &txn(vec![], second)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let in_room: Vec<String> = state
        .reads()
        .edus(&room)
        .unwrap()
        .into_iter()
        .map(|(_, kind, content, _)| {
            let c = obj(&content);
            if kind == "m.typing" {
                return format!("typing {}", c.get("typing").unwrap());
            }
            let (rtype, users) = c.get_object(&room).unwrap().iter().next().unwrap();
            let data = users
                .as_object()
                .unwrap()
                .get_object(eve)
                .unwrap()
                .get_object("data")
                .unwrap();
            format!(
                "{rtype} {} {}",
                data.get_str("thread_id").unwrap_or("-"),
                data.get("ts").unwrap()
            )
        })
        .collect();
    assert_eq!(
        in_room,
        [
            "m.read.private - 1",
            "m.read $thread 1",
            "typing false",
            "m.read - 2"
        ]
    );
    let others: Vec<String> = all_edus(&state)
        .into_iter()
        .filter(|(kind, _)| kind != "m.typing" && kind != "m.receipt")
        .map(|(kind, content)| {
            let c = obj(&content);
            match kind.as_str() {
                "m.device_list_update" => format!(
                    "{} {}",
                    c.get_str("device_id").unwrap(),
                    c.get("stream_id").unwrap()
                ),
                _ => {
                    let keys: Vec<String> = ["master_key", "self_signing_key"]
                        .iter()
                        .filter_map(|k| {
                            let usage = c.get_object(k)?.get("usage")?.as_array()?[0].clone();
                            Some(format!("{k} {}", usage.as_str().unwrap()))
                        })
                        .collect();
                    keys.join(" ")
                }
            }
        })
        .collect();
    assert_eq!(
        others,
        ["D2 1", "master_key 1", "D1 2", "self_signing_key 2"]
    );
}

/// Eve sends `n` messages (`m0`, `m1`, …), one transaction each, all accepted; their IDs.
async fn eve_says(state: &Arc<AppState>, room: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (id, pdu) = remote_message(
            state,
            room,
            "@eve:remote.test",
            &format!("m{i}"),
            &remote_key(),
        );
        let r = send_txn(state, &format!("m{i}"), &txn(vec![pdu], vec![])).await;
        assert!(result(&r, &id).is_empty(), "{}", r.body);
        ids.push(id);
    }
    ids
}

/// The server's rooms keep only the place in the DAG of messages deep in history (compact
/// history); every answer about them still comes whole from the database: `/event`,
/// `/backfill`, `/get_missing_events`, `/event_auth`, and redactions of them, by the sender's
/// server and by a local moderator, before and after a restart.
#[tokio::test]
async fn old_messages_are_served_and_redacted_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, join_id) = room_with_eve(&state).await;
    let ids = eve_says(&state, &room, 6).await;
    {
        let rooms = state.rooms();
        let r = &rooms[&room];
        assert!(ids[..5].iter().all(|id| r.contains(id) && !r.has_body(id)));
        assert!(r.has_body(&ids[5]), "the forward extremity keeps its body");
    }
    let get = |uri: String| {
        let state = state.clone();
        async move {
            let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
            r.body
        }
    };
    let bodies = |list: Option<&Value>| -> Vec<String> {
        list.and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(|e| e.as_object()?.get_object("content")?.get_str("body"))
            .map(str::to_owned)
            .collect()
    };
    let event = |id: &str| format!("/_matrix/federation/v1/event/{}", urlenc(id));
    assert_eq!(bodies(get(event(&ids[0])).await.get("pdus")), ["m0"]);
    let backfill = get(format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=4",
        urlenc(&room),
        urlenc(&ids[4])
    ))
    .await;
    assert_eq!(bodies(backfill.get("pdus")), ["m4", "m3", "m2", "m1"]);
    let gme = obj(&format!(
        r#"{{"earliest_events":["{join_id}"],"latest_events":["{}"],"limit":10}}"#,
        ids[5]
    ));
    let uri = format!(
        "/_matrix/federation/v1/get_missing_events/{}",
        urlenc(&room)
    );
    let r = call(
        &state,
        signed("POST", &uri, Some(&gme), REMOTE, ME, &remote_key()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(bodies(r.body.get("events")), ["m0", "m1", "m2", "m3", "m4"]);
    let auth = get(format!(
        "/_matrix/federation/v1/event_auth/{}/{}",
        urlenc(&room),
        urlenc(&ids[1])
    ))
    .await;
    assert!(
        auth.get("auth_chain")
            .and_then(Value::as_array)
            .unwrap()
            .len()
            >= 3
    );

    // Eve redacts her old m0 (same server: applies); Alice (power 100) redacts m1.
    let mut t = rooms::template(
        Some(&room),
        "m.room.redaction",
        "@eve:remote.test",
        None,
        obj("{}"),
    );
    t.redacts = Some(ids[0].clone());
    let (red_id, red) = pdu_of(&state, &room, REMOTE, &remote_key(), &t, None);
    let r = send_txn(&state, "r", &txn(vec![red], vec![])).await;
    assert!(result(&r, &red_id).is_empty(), "{}", r.body);
    {
        let _g = state.lock_room(&room).await;
        rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.redaction",
            None,
            obj("{}"),
            Some(&ids[1]),
        )
        .unwrap();
    }
    let content = |body: Object| -> Object {
        body.get("pdus").and_then(Value::as_array).unwrap()[0]
            .as_object()
            .unwrap()
            .get_object("content")
            .unwrap()
            .clone()
    };
    assert!(
        content(get(event(&ids[0])).await).is_empty(),
        "m0 is redacted"
    );
    assert!(
        content(get(event(&ids[1])).await).is_empty(),
        "m1 is redacted"
    );
    assert_eq!(
        content(get(event(&ids[2])).await).get_str("body"),
        Some("m2")
    );

    // Restart: rebuilt from storage, compact again, the same answers.
    drop(state);
    let state = setup(&dir);
    assert!(!state.rooms()[&room].has_body(&ids[2]));
    let r = call(
        &state,
        signed("GET", &event(&ids[2]), None, REMOTE, ME, &remote_key()),
    )
    .await;
    assert_eq!(content(r.body).get_str("body"), Some("m2"));
    let r = call(
        &state,
        signed("GET", &event(&ids[0]), None, REMOTE, ME, &remote_key()),
    )
    .await;
    assert!(content(r.body).is_empty());
}

fn urlenc(s: &str) -> String {
    mxfed_native::server::client::encode_segment(s)
}

/// A body that is valid JSON but not canonical (whitespace, keys out of order) is verified over
/// its canonical form, as the spec says and Synapse does; a signature over the bytes as sent is
/// refused. (Canonical bodies, the common case, are checked as received.)
#[tokio::test]
async fn non_canonical_body_is_verified_over_its_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let room = room_with_remote(&state).await;
    let (join_id, join) = eve_join(&state, &room);
    let raw = format!(
        "{{ \"pdus\": [{}],\n  \"origin\": \"{REMOTE}\", \"origin_server_ts\": 1 }}",
        join.to_canonical_string()
    );
    let parsed = parse_object(raw.as_bytes(), &ParseOptions::LEGACY).unwrap();
    assert_ne!(parsed.to_canonical_string(), raw);

    let uri = "/_matrix/federation/v1/send/nc1";
    let mut req = signed("PUT", uri, Some(&parsed), REMOTE, ME, &remote_key());
    *req.body_mut() = Body::from(raw.clone());
    let r = call(&state, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(result(&r, &join_id).is_empty(), "accepted: {}", r.body);

    // The same bytes signed as they are, not in canonical form.
    let uri = "/_matrix/federation/v1/send/nc2";
    let rest = xmatrix::Request {
        method: "PUT",
        uri,
        origin: REMOTE,
        destination: ME,
        content: None,
    }
    .signing_bytes();
    let mut over_raw = format!("{{\"content\":{raw},").into_bytes();
    over_raw.extend_from_slice(&rest[1..]);
    let header = xmatrix::XMatrix {
        origin: REMOTE.into(),
        destination: Some(ME.into()),
        key: remote_key().key_id().as_str().to_owned(),
        sig: mxfed_core::base64::encode(remote_key().sign(&over_raw)),
    };
    let req = Request::put(uri)
        .header("authorization", header.to_header_value())
        .body(Body::from(raw))
        .unwrap();
    let r = call(&state, req).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (401, Some("M_UNAUTHORIZED")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn bad_input_gets_matrix_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let code = |r: &Resp| {
        (
            r.status.as_u16(),
            r.body.get_str("errcode").map(str::to_owned),
        )
    };

    let r = call(
        &state,
        Request::get("/_matrix/federation/v1/nonsense")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(code(&r), (404, Some("M_UNRECOGNIZED".into())));
    let r = call(
        &state,
        Request::get("/_matrix/federation/v1/send/1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(code(&r), (405, Some("M_UNRECOGNIZED".into())));
    // OpenID userinfo (no X-Matrix): we issue no tokens; a missing one is said to be missing.
    for (uri, errcode) in [
        ("/_matrix/federation/v1/openid/userinfo", "M_MISSING_TOKEN"),
        (
            "/_matrix/federation/v1/openid/userinfo?x=1",
            "M_MISSING_TOKEN",
        ),
        (
            "/_matrix/federation/v1/openid/userinfo?access_token=abc",
            "M_UNKNOWN_TOKEN",
        ),
    ] {
        let r = call(&state, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(code(&r), (401, Some(errcode.into())), "{uri}");
    }

    // Malformed JSON, signed over nothing valid: refused before anything else.
    let mut req = signed(
        "PUT",
        "/_matrix/federation/v1/send/x",
        Some(&Object::new()),
        REMOTE,
        ME,
        &remote_key(),
    );
    *req.body_mut() = Body::from("{\"pdus\": [");
    let r = call(&state, req).await;
    assert_eq!(code(&r), (400, Some("M_NOT_JSON".into())));

    // A body over the limit.
    let big = vec![b' '; state.config.limits.max_body_bytes + 1];
    let mut req = signed(
        "PUT",
        "/_matrix/federation/v1/send/x",
        Some(&Object::new()),
        REMOTE,
        ME,
        &remote_key(),
    );
    *req.body_mut() = Body::from(big);
    let r = call(&state, req).await;
    assert_eq!(code(&r), (413, Some("M_TOO_LARGE".into())));

    // Signed, JSON, but not a transaction.
    let r = send_txn(&state, "y", &obj(r#"{"pdus":7}"#)).await;
    assert_eq!(r.status.as_u16(), 400);
    // Too many PDUs.
    let many: Vec<Object> = (0..51).map(|_| obj(r#"{"room_id":"!r:x"}"#)).collect();
    let r = send_txn(&state, "z", &txn(many, vec![])).await;
    assert_eq!(code(&r), (400, Some("M_TOO_LARGE".into())));

    // Endpoints with missing or bad parameters.
    for uri in [
        "/_matrix/federation/v1/state_ids/%21nope%3Ax",
        "/_matrix/federation/v1/make_join/%21nope%3Ax/%40eve%3Aremote.test?ver=10",
        "/_matrix/federation/v1/event/%24nope",
        "/_matrix/federation/v1/query/directory?room_alias=%23a%3Ax",
    ] {
        let r = call(&state, signed("GET", uri, None, REMOTE, ME, &remote_key())).await;
        assert_eq!(r.status.as_u16(), 404, "{uri}: {}", r.body);
    }
    let r = call(
        &state,
        signed(
            "GET",
            "/_matrix/federation/v1/make_join/%21r%3Ax/%40eve%3Aelsewhere",
            None,
            REMOTE,
            ME,
            &remote_key(),
        ),
    )
    .await;
    assert_eq!(code(&r).0, 403, "a user of another server");
    let r = call(
        &state,
        signed(
            "PUT",
            "/_matrix/federation/v2/invite/%21r%3Ax/%24e",
            Some(&obj(r#"{"event":5}"#)),
            REMOTE,
            ME,
            &remote_key(),
        ),
    )
    .await;
    assert_eq!(code(&r).0, 400);
}

/// [`setup`], with no per-origin rate limit (the mutation tests send hundreds of requests).
fn setup_unlimited(dir: &tempfile::TempDir) -> Arc<AppState> {
    drop(setup(dir));
    let cfg = dir.path().join("data/mxfed.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("federation_per_second = 50", "federation_per_second = 0");
    std::fs::write(&cfg, text).unwrap();
    setup(dir)
}

/// An answer to a bad request: never a server error, a refusal always a Matrix error; counted
/// by status.
fn answered(statuses: &mut std::collections::BTreeMap<u16, usize>, resp: &Resp, what: &str) {
    assert!(
        !resp.status.is_server_error(),
        "{what}: {} {}",
        resp.status,
        resp.body
    );
    if resp.status.is_client_error() {
        assert!(
            resp.body.get_str("errcode").is_some(),
            "{what}: {}",
            resp.body
        );
    }
    *statuses.entry(resp.status.as_u16()).or_insert(0) += 1;
}

/// The mutations reached both accepting and refusing code.
fn both_kinds(statuses: &std::collections::BTreeMap<u16, usize>) {
    eprintln!("answers by status: {statuses:?}");
    assert!(
        statuses.contains_key(&200) && statuses.keys().any(|s| *s >= 400),
        "{statuses:?}"
    );
}

/// Requests with mutated bodies, each correctly signed (so they get past X-Matrix to the
/// handlers): transactions whose PDU is re-hashed and re-signed after the change (so it reaches
/// the room's checks), EDUs, `send_join`/`send_leave`/`send_knock`, invites,
/// `get_missing_events`, key and device queries. None gets a server error, every refusal is a
/// Matrix error (`call` checks the JSON), and the server still takes a message afterwards.
#[tokio::test]
async fn mutated_requests_get_answers_not_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup_unlimited(&dir);
    state
        .db()
        .create_user("@bob:localhost:18999", None, false)
        .unwrap();
    let (room, join_id) = room_with_eve(&state).await;
    let r = urlenc(&room);
    let key = remote_key();
    let v = mxfed_core::RoomVersion::get("10").unwrap();

    let (_, message) = remote_message(&state, &room, "@eve:remote.test", "hi", &key);
    let edu = |t: &str, content: &str| {
        let mut e = Object::new();
        e.insert("edu_type", t);
        e.insert("content", obj(content));
        e
    };
    let edus = vec![
        edu(
            "m.typing",
            &format!(r#"{{"room_id":"{room}","user_id":"@eve:remote.test","typing":true}}"#),
        ),
        edu(
            "m.receipt",
            &format!(
                r#"{{"{room}":{{"m.read":{{"@eve:remote.test":{{"data":{{"ts":1}},"event_ids":["{join_id}"]}}}}}}}}"#
            ),
        ),
        edu(
            "m.presence",
            r#"{"push":[{"user_id":"@eve:remote.test","presence":"online","last_active_ago":1}]}"#,
        ),
        edu(
            "m.direct_to_device",
            r#"{"sender":"@eve:remote.test","type":"m.x","message_id":"1","messages":{"@bob:localhost:18999":{"*":{"a":1}}}}"#,
        ),
    ];
    let member = |user: &str, membership: &str| {
        remote_pdu(
            &state,
            &room,
            "m.room.member",
            user,
            Some(user),
            &format!(r#"{{"membership":"{membership}"}}"#),
            &key,
        )
    };
    let (frank_id, frank_join) = member("@frank:remote.test", "join");
    let (_, eve_leave) = member("@eve:remote.test", "leave");
    let (knock_id, knock) = member("@gina:remote.test", "knock");
    let (invite_id, invite) = remote_pdu(
        &state,
        &room,
        "m.room.member",
        "@eve:remote.test",
        Some("@bob:localhost:18999"),
        r#"{"membership":"invite"}"#,
        &key,
    );
    let mut invite_body = Object::new();
    invite_body.insert("event", invite);
    invite_body.insert("room_version", "10");
    invite_body.insert("invite_room_state", Value::Array(Vec::new()));
    let missing = obj(&format!(
        r#"{{"earliest_events":[],"latest_events":["{join_id}"],"limit":10,"min_depth":0}}"#
    ));
    let f = "/_matrix/federation";
    let requests: Vec<(&str, String, Object)> = vec![
        ("PUT", format!("{f}/v1/send/"), txn(vec![message], edus)),
        (
            "PUT",
            format!("{f}/v2/send_join/{r}/{}", urlenc(&frank_id)),
            frank_join,
        ),
        ("PUT", format!("{f}/v2/send_leave/{r}/x"), eve_leave),
        (
            "PUT",
            format!("{f}/v1/send_knock/{r}/{}", urlenc(&knock_id)),
            knock,
        ),
        (
            "PUT",
            format!("{f}/v2/invite/{r}/{}", urlenc(&invite_id)),
            invite_body,
        ),
        ("POST", format!("{f}/v1/get_missing_events/{r}"), missing),
        (
            "POST",
            format!("{f}/v1/user/keys/query"),
            obj(r#"{"device_keys":{"@bob:localhost:18999":[]}}"#),
        ),
        (
            "POST",
            format!("{f}/v1/user/keys/claim"),
            obj(r#"{"one_time_keys":{"@bob:localhost:18999":{"D":"signed_curve25519"}}}"#),
        ),
        (
            "POST",
            "/_matrix/key/v2/query".to_owned(),
            obj(r#"{"server_keys":{"remote.test":{}}}"#),
        ),
    ];
    let mut rng = Rng(0x005e_ed0f_5e4d);
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..60 {
        for (method, uri, body) in &requests {
            let mut body = mutated(body, &mut rng);
            let mut uri = uri.clone();
            if uri.ends_with("/send/") {
                uri.push_str(&format!("m{round}"));
                // The PDU, when still an object, re-hashed and re-signed after the change.
                if let Some(Value::Array(pdus)) = body.get_mut("pdus") {
                    if let Some(Value::Object(pdu)) = pdus.first_mut() {
                        let _ = mxfed_core::event::hash_and_sign_event(pdu, v, REMOTE, &key);
                    }
                }
            }
            let resp = call(&state, signed(method, &uri, Some(&body), REMOTE, ME, &key)).await;
            let what = format!("{method} {uri} {}", body.to_canonical_string());
            answered(&mut statuses, &resp, &what);
        }
    }
    both_kinds(&statuses);
    // The server still works: a message from eve is taken in.
    let (id, pdu) = remote_message(&state, &room, "@eve:remote.test", "still here", &key);
    let r = send_txn(&state, "after", &txn(vec![pdu], vec![])).await;
    assert!(result(&r, &id).is_empty(), "{}", r.body);
}

/// Signed GET requests to every federation endpoint that takes path parameters or a query,
/// with one parameter swapped for something odd (empty, bad percent-encoding, a NUL, a long
/// string, an ID of the wrong kind, numbers out of range): none gets a server error, and every
/// refusal is a Matrix error.
#[tokio::test]
async fn mutated_paths_get_answers_not_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup_unlimited(&dir);
    let (room, join_id) = room_with_eve(&state).await;
    let (r, e) = (urlenc(&room), urlenc(&join_id));
    let u = urlenc("@eve:remote.test");
    let f = "/_matrix/federation";
    let templates = [
        format!("{f}/v1/event/{e}"),
        format!("{f}/v1/state/{r}?event_id={e}"),
        format!("{f}/v1/state_ids/{r}?event_id={e}"),
        format!("{f}/v1/backfill/{r}?v={e}&limit=10"),
        format!("{f}/v1/event_auth/{r}/{e}"),
        format!(
            "{f}/v1/query/profile?user_id={}&field=displayname",
            urlenc("@alice:localhost:18999")
        ),
        format!(
            "{f}/v1/query/directory?room_alias={}",
            urlenc("#a:localhost:18999")
        ),
        format!("{f}/v1/query/x?a=b"),
        format!("{f}/v1/make_join/{r}/{u}?ver=10&ver=11"),
        format!("{f}/v1/make_leave/{r}/{u}"),
        format!("{f}/v1/make_knock/{r}/{u}?ver=10"),
        format!("{f}/v1/publicRooms?limit=5&since=x"),
        format!("{f}/v1/user/devices/{}", urlenc("@alice:localhost:18999")),
        format!("{f}/v1/openid/userinfo?access_token=abc"),
        format!("{f}/v1/hierarchy/{r}?suggested_only=true"),
        format!("{f}/v1/timestamp_to_event/{r}?ts=1&dir=f"),
        "/_matrix/key/v2/query/remote.test".to_owned(),
        "/_matrix/key/v2/server/ed25519:x".to_owned(),
    ];
    let long = "a".repeat(3000);
    let odd: [&str; 16] = [
        "",
        "%00",
        "%ZZ",
        "%",
        "%2E%2E",
        &long,
        "%F0%9F%92%A9",
        "%C3%28",
        "%21nope%3Ax",
        "%24nope",
        "%40x",
        "%2F",
        "-1",
        "99999999999999999999999",
        "1e3",
        "%20",
    ];
    let mut rng = Rng(0x00c0_ffee_1234);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..20 {
        for t in &templates {
            // The pieces between separators; one of the parameters is replaced.
            let pieces: Vec<&str> = t.split_inclusive(['/', '?', '&', '=']).collect();
            let fixed = f.matches('/').count() + 2;
            let at = fixed + rng.below(pieces.len().saturating_sub(fixed));
            let mut uri = String::new();
            for (i, p) in pieces.iter().enumerate() {
                if i == at {
                    let sep = p.chars().last().filter(|c| "/?&=".contains(*c));
                    uri.push_str(odd[rng.below(odd.len())]);
                    uri.extend(sep);
                } else {
                    uri.push_str(p);
                }
            }
            let resp = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
            answered(&mut statuses, &resp, &format!("GET {uri}"));
        }
    }
    both_kinds(&statuses);
}

/// Puts a remote server's keys in the cache, as if fetched.
fn add_server(state: &AppState, name: &str, key: &SigningKey) {
    let resp = build_server_keys(
        name,
        std::slice::from_ref(key),
        &[],
        Int::new(mxfed_native::server::now().as_i64() + 86_400_000).unwrap(),
    )
    .unwrap();
    state
        .key_cache()
        .insert(resp, Some(name), mxfed_native::server::now())
        .unwrap();
}

fn other_key() -> SigningKey {
    SigningKey::from_seed("o1", &[9u8; 32]).unwrap()
}

#[tokio::test]
async fn server_acl_is_enforced_per_room() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    add_server(&state, "other.test", &other_key());
    let room = room_with_remote(&state).await;
    // A second room without an ACL: the denial is per room.
    let open_room = room_with_remote(&state).await;
    {
        let _g = state.lock_room(&room).await;
        rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.server_acl",
            Some(""),
            obj(r#"{"allow":["*"],"deny":["remote.*"],"allow_ip_literals":false}"#),
            None,
        )
        .unwrap();
    }
    let events_before = state.reads().room_events(&room).unwrap().len();

    // Every room-scoped endpoint answers 403 M_FORBIDDEN to the denied origin.
    let r_enc = urlenc(&room);
    let ev = urlenc("$e");
    let gme = obj(r#"{"earliest_events":[],"latest_events":["$e"],"limit":5}"#);
    let pdu = obj(r#"{"type":"m.room.member"}"#);
    let endpoints: Vec<(&str, String, Option<&Object>)> = vec![
        ("GET", format!("v1/state/{r_enc}?event_id={ev}"), None),
        ("GET", format!("v1/state_ids/{r_enc}?event_id={ev}"), None),
        ("GET", format!("v1/backfill/{r_enc}?v={ev}&limit=3"), None),
        ("POST", format!("v1/get_missing_events/{r_enc}"), Some(&gme)),
        ("GET", format!("v1/event_auth/{r_enc}/{ev}"), None),
        (
            "GET",
            format!("v1/timestamp_to_event/{r_enc}?ts=1&dir=f"),
            None,
        ),
        (
            "GET",
            format!("v1/make_join/{r_enc}/{}?ver=10", urlenc("@eve:remote.test")),
            None,
        ),
        (
            "GET",
            format!("v1/make_leave/{r_enc}/{}", urlenc("@eve:remote.test")),
            None,
        ),
        (
            "GET",
            format!(
                "v1/make_knock/{r_enc}/{}?ver=10",
                urlenc("@eve:remote.test")
            ),
            None,
        ),
        ("PUT", format!("v2/send_join/{r_enc}/{ev}"), Some(&pdu)),
        ("PUT", format!("v1/send_join/{r_enc}/{ev}"), Some(&pdu)),
        ("PUT", format!("v2/send_leave/{r_enc}/{ev}"), Some(&pdu)),
        ("PUT", format!("v1/send_knock/{r_enc}/{ev}"), Some(&pdu)),
        ("PUT", format!("v2/invite/{r_enc}/{ev}"), Some(&pdu)),
    ];
    for (method, path, body) in &endpoints {
        let uri = format!("/_matrix/federation/{path}");
        let r = call(
            &state,
            signed(method, &uri, *body, REMOTE, ME, &remote_key()),
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.body.get_str("errcode")),
            (403, Some("M_FORBIDDEN")),
            "{method} {path}: {}",
            r.body
        );
        // Refused for the ACL, not for anything else about the request.
        assert!(
            r.body
                .get_str("error")
                .is_some_and(|e| e.starts_with("Server is banned from room")),
            "{method} {path}: {}",
            r.body
        );
    }
    // An origin the ACL allows gets a join template; the denied one can still join a room
    // without an ACL.
    let uri = format!(
        "/_matrix/federation/v1/make_join/{r_enc}/{}?ver=10",
        urlenc("@olga:other.test")
    );
    let r = call(
        &state,
        signed("GET", &uri, None, "other.test", ME, &other_key()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let uri = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=10",
        urlenc(&open_room),
        urlenc("@eve:remote.test")
    );
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // On /send the denied origin's PDUs for the room get an error and are not processed, and
    // its typing EDU for the room is dropped; the room without an ACL takes both.
    let (denied_id, denied) = eve_join(&state, &room);
    let (open_id, open) = eve_join(&state, &open_room);
    let typing = |room: &str| {
        obj(&format!(
            r#"{{"edu_type":"m.typing","content":{{"room_id":"{room}","user_id":"@eve:remote.test","typing":true}}}}"#
        ))
    };
    let body = txn(vec![denied, open], vec![typing(&room), typing(&open_room)]);
    let r = send_txn(&state, "acl1", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        result(&r, &denied_id).get_str("error"),
        Some("Server is banned from room"),
        "{}",
        r.body
    );
    assert!(result(&r, &open_id).is_empty(), "{}", r.body);
    assert_eq!(
        state.reads().room_events(&room).unwrap().len(),
        events_before
    );
    assert_eq!(state.rooms()[&room].membership("@eve:remote.test"), None);
    assert!(state.reads().edus(&room).unwrap().is_empty());
    assert_eq!(state.reads().edus(&open_room).unwrap().len(), 1);

    // Lifting the ACL (allow the remote by name, without its port) lets it in again.
    {
        let _g = state.lock_room(&room).await;
        rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.server_acl",
            Some(""),
            obj(r#"{"allow":["localhost","remote.test","other.*"]}"#),
            None,
        )
        .unwrap();
    }
    let (join_id, join) = eve_join(&state, &room);
    let r = send_txn(&state, "acl2", &txn(vec![join], vec![])).await;
    assert!(result(&r, &join_id).is_empty(), "{}", r.body);
    let uri = format!(
        "/_matrix/federation/v1/state_ids/{r_enc}?event_id={}",
        urlenc(&join_id)
    );
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The remote's signed `GET /event/{id}`, answered 200 within a minute (else `waited` is the
/// failure). On a task of its own: were the read to block its runtime thread, the timeout here
/// would still fire.
async fn peer_reads_event(state: &Arc<AppState>, event_id: &str, waited: &str) -> Resp {
    let uri = format!("/_matrix/federation/v1/event/{}", urlenc(event_id));
    let req = signed("GET", &uri, None, REMOTE, ME, &remote_key());
    let task_state = state.clone();
    let read = tokio::spawn(async move { call(&task_state, req).await });
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect(waited)
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r
}

/// Takes the writer on a thread of its own, inside a transaction that runs `write` and stays
/// open until the returned function is called (which then waits for the commit).
fn hold_writer(
    state: &Arc<AppState>,
    write: impl FnOnce(&mxfed_native::server::store::Store) -> rusqlite::Result<()> + Send + 'static,
) -> impl FnOnce() {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let st = state.clone();
    let writer = std::thread::spawn(move || {
        st.db()
            .in_transaction(|db| {
                write(db)?;
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
            .unwrap();
    });
    held_rx.recv().unwrap();
    move || {
        release_tx.send(()).unwrap();
        writer.join().unwrap();
    }
}

/// Reads use read-only connections beside the writer's: a peer's `/event` is answered while the
/// writer holds the database in the middle of a write transaction (as it does through each
/// commit's fsync), and reads see the last commit, not the write in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, join_id) = room_with_eve(&state).await;

    // A thread takes the writer and writes an EDU row in a transaction it keeps open until told.
    let writer_room = room.clone();
    let release = hold_writer(&state, move |db| {
        db.conn()
            .execute(
                "INSERT INTO edus (origin, edu_type, room_id, content, received_ts)
                 VALUES (?1, 'm.typing', ?2, '{}', 0)",
                rusqlite::params![REMOTE, writer_room],
            )
            .map(drop)
    });

    let r = peer_reads_event(&state, &join_id, "the read waited for the writer").await;
    let pdu = r.body.get("pdus").and_then(Value::as_array).unwrap();
    assert_eq!(pdu.len(), 1);
    assert_eq!(
        pdu[0].as_object().unwrap().get_str("type"),
        Some("m.room.member")
    );
    assert!(
        state.reads().edus(&room).unwrap().is_empty(),
        "a reader saw an uncommitted write"
    );

    release();
    let edus = state.reads().edus(&room).unwrap();
    assert_eq!(
        edus.len(),
        1,
        "the commit is visible to the readers at once"
    );
}

/// The admin API's long reads have connections of their own: with both taken (as by two whole
/// timelines being read), a peer's read is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_leave_the_federation_readers_free() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (_room, join_id) = room_with_eve(&state).await;
    let held = (state.admin_reads(), state.admin_reads());
    peer_reads_event(
        &state,
        &join_id,
        "the peer's read waited for the admin API's readers",
    )
    .await;
    drop(held);
}

/// A transaction that needs no commit (no PDUs, no EDUs) is answered while a commit holds the
/// writer: neither the check for deferred PDUs before it nor putting its answer for the next
/// commit waits for the writer (each blocked a runtime thread through the commit's fsync); the
/// answer is written by the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_needing_no_commit_does_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let release = hold_writer(&state, |_| Ok(()));

    let task_state = state.clone();
    let send =
        tokio::spawn(
            async move { send_txn(&task_state, "empty1", &txn(Vec::new(), Vec::new())).await },
        );
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), send)
        .await
        .expect("the transaction waited for the writer")
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    release();
    assert_eq!(state.txn_answers.len(), 1, "the answer is not waiting");
    state.db().in_transaction(|_| Ok(())).unwrap();
    assert!(state.txn_answers.is_empty());
    let stored = state.db().txns().unwrap();
    assert!(
        stored.iter().any(|(o, t, _)| o == REMOTE && t == "empty1"),
        "{stored:?}"
    );
}

/// A counter's value in `/metrics`.
async fn counter(state: &Arc<AppState>, name: &str) -> u64 {
    let text = get_metrics(state).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Transactions of three servers into three rooms that wait for the writer at the same time are
/// stored by fewer commits than writes (one fsync for those that waited together), and each is
/// answered as accepted once stored.
/// Another server (key from `seed`) whose user `@u:<name>` joins a room of its own on our
/// server: its key, the room, the user.
async fn server_in_own_room(
    state: &Arc<AppState>,
    name: &str,
    seed: u8,
) -> (SigningKey, String, String) {
    let key = SigningKey::from_seed("k1", &[seed; 32]).unwrap();
    add_server(state, name, &key);
    let room = room_with_remote(state).await;
    let user = format!("@u:{name}");
    let t = rooms::template(
        Some(&room),
        "m.room.member",
        &user,
        Some(&user),
        obj(r#"{"membership":"join"}"#),
    );
    let (join_id, join) = pdu_of(state, &room, name, &key, &t, None);
    let body = txn_from(name, vec![join], vec![]);
    let uri = "/_matrix/federation/v1/send/join";
    let r = call(state, signed("PUT", uri, Some(&body), name, ME, &key)).await;
    assert!(result(&r, &join_id).is_empty(), "{}", r.body);
    (key, room, user)
}

/// A transaction of one message of `user` (of `origin`), sent in a task: its event ID and the
/// task answering the response.
fn spawn_message(
    state: &Arc<AppState>,
    origin: &str,
    key: &SigningKey,
    room: &str,
    user: &str,
) -> (String, tokio::task::JoinHandle<Resp>) {
    let t = rooms::template(
        Some(room),
        "m.room.message",
        user,
        None,
        obj(r#"{"msgtype":"m.text","body":"hi"}"#),
    );
    let (id, pdu) = pdu_of(state, room, origin, key, &t, None);
    let req = signed(
        "PUT",
        "/_matrix/federation/v1/send/m1",
        Some(&txn_from(origin, vec![pdu], vec![])),
        origin,
        ME,
        key,
    );
    let st = state.clone();
    (id, tokio::spawn(async move { call(&st, req).await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_waiting_for_the_writer_are_committed_together() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (eve_room, _) = room_with_eve(&state).await;
    // Two more servers, each with a user joined to a room of its own.
    let mut senders = vec![(
        REMOTE.to_owned(),
        remote_key(),
        eve_room,
        "@eve:remote.test".to_owned(),
    )];
    for (i, name) in ["o1.test", "o2.test"].into_iter().enumerate() {
        let (key, room, user) = server_in_own_room(&state, name, 20 + i as u8).await;
        senders.push((name.to_owned(), key, room, user));
    }
    let (writes, commits) = (
        counter(&state, "mxfed_room_writes_total").await,
        counter(&state, "mxfed_room_commits_total").await,
    );

    let release = hold_writer(&state, |_| Ok(()));
    let mut sends = Vec::new();
    for (origin, key, room, user) in &senders {
        sends.push(spawn_message(&state, origin, key, room, user));
    }
    // All three wait for the writer before it is released.
    while state.commits.pending() < senders.len() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    release();
    for (id, send) in sends {
        let r = send.await.unwrap();
        assert!(result(&r, &id).is_empty(), "{}", r.body);
        assert!(state.reads().has_event(&id), "{id} not stored");
    }
    let writes = counter(&state, "mxfed_room_writes_total").await - writes;
    let commits = counter(&state, "mxfed_room_commits_total").await - commits;
    assert_eq!(writes, 3);
    assert!(commits < 3, "{commits} commits for 3 writes");
}

/// A GET on the metrics listener's app (which also serves the admin API).
/// Waits (20 s at most) until `what` holds of the commit queue.
async fn until_commits(state: &AppState, what: &str, pred: impl Fn(&AppState) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !pred(state) {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Our users' messages join the queue of received events' commits: a message sent while a
/// received transaction waits for the next commit is made durable by the same commit (one fsync
/// for both), whichever of the two leads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_messages_are_committed_with_received_events_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (eve_room, _) = room_with_eve(&state).await;
    let (key, o1_room, o1_user) = server_in_own_room(&state, "o1.test", 31).await;
    // A room of our own with nobody else in it.
    let alice = "@alice:localhost:18999";
    let own_room = rooms::create_room(&state, alice, "10").unwrap();
    let (writes, commits) = (
        counter(&state, "mxfed_room_writes_total").await,
        counter(&state, "mxfed_room_commits_total").await,
    );

    let release = hold_writer(&state, |_| Ok(()));
    // The first transaction's commit has begun and waits for the writer...
    let first = spawn_message(&state, REMOTE, &remote_key(), &eve_room, "@eve:remote.test");
    until_commits(&state, "the first commit waits", |s| {
        s.commits.pending() == 1 && s.commits.queued() == 0
    })
    .await;
    // ...so the second transaction waits for the next commit, and so does our message.
    let second = spawn_message(&state, "o1.test", &key, &o1_room, &o1_user);
    until_commits(&state, "the second write queued", |s| {
        s.commits.queued() == 1
    })
    .await;
    let st = state.clone();
    let room = own_room.clone();
    let ours = tokio::spawn(async move {
        let t = rooms::template(
            Some(&room),
            "m.room.message",
            alice,
            None,
            obj(r#"{"msgtype":"m.text","body":"ours"}"#),
        );
        mxfed_native::server::local::send(&st, &room, vec![t]).await
    });
    until_commits(&state, "our message queued", |s| s.commits.queued() == 2).await;
    release();

    for (id, send) in [first, second] {
        let r = send.await.unwrap();
        assert!(result(&r, &id).is_empty(), "{}", r.body);
        assert!(state.reads().has_event(&id), "{id} not stored");
    }
    let ours = ours.await.unwrap().unwrap();
    assert!(state.reads().has_event(&ours[0]), "our message not stored");
    let writes = counter(&state, "mxfed_room_writes_total").await - writes;
    let commits = counter(&state, "mxfed_room_commits_total").await - commits;
    assert_eq!(
        (writes, commits),
        (3, 2),
        "three writes, the last two in one commit"
    );
}

async fn admin_get(state: &Arc<AppState>, uri: &str) -> axum::response::Response {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    mxfed_native::server::metrics::admin_app(state.clone())
        .oneshot(req)
        .await
        .unwrap()
}

async fn get_metrics(state: &Arc<AppState>) -> String {
    let resp = admin_get(state, "/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The received-PDU counters (accepted, rejected, soft-failed) in an exposition text.
fn pdu_outcomes(text: &str) -> (f64, f64, f64) {
    let pdus = |o: &str| {
        sample(
            text,
            &format!("mxfed_federation_pdus_received_total{{outcome=\"{o}\"}}"),
        )
    };
    (pdus("accepted"), pdus("rejected"), pdus("soft_failed"))
}

/// The value of one sample (`name{labels}`) in an exposition text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_what_happens() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let room = room_with_remote(&state).await;
    let before = get_metrics(&state).await;
    assert_eq!(
        sample(&before, "mxfed_federation_transactions_received_total"),
        0.0
    );

    let (join_id, join) = eve_join(&state, &room);
    let (_, nojoin) = remote_message(&state, &room, "@mallory:remote.test", "m", &remote_key());
    let typing = obj(&format!(
        r#"{{"edu_type":"m.typing","content":{{"room_id":"{room}","user_id":"@eve:remote.test","typing":true}}}}"#
    ));
    let presence = obj(
        r#"{"edu_type":"m.presence","content":{"push":[{"user_id":"@eve:remote.test","presence":"online","last_active_ago":1}]}}"#,
    );
    let body = txn(vec![join, nojoin], vec![typing, presence]);
    let r = send_txn(&state, "m1", &body).await;
    assert!(result(&r, &join_id).is_empty(), "{}", r.body);
    // A retried transaction is answered from the window and not counted again.
    send_txn(&state, "m1", &body).await;
    state
        .db()
        .queue_outbound_ref("dest.test", "$q", &room)
        .unwrap();

    let m = get_metrics(&state).await;
    assert_eq!(
        sample(&m, "mxfed_federation_transactions_received_total"),
        1.0
    );
    assert_eq!(pdu_outcomes(&m), (1.0, 1.0, 0.0));
    let edus = |t: &str| {
        sample(
            &m,
            &format!("mxfed_federation_edus_received_total{{type=\"{t}\"}}"),
        )
    };
    assert_eq!(
        (edus("m.typing"), edus("m.presence"), edus("m.receipt")),
        (1.0, 1.0, 0.0)
    );
    // Every signed request is verified: the two /send calls.
    assert_eq!(
        sample(&m, "mxfed_federation_request_verify_seconds_count"),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            "mxfed_federation_request_verify_seconds_bucket{le=\"+Inf\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(&m, "mxfed_federation_transaction_processing_seconds_count"),
        1.0
    );
    // Its two PDUs were checked together; the accepted join was stored in one commit.
    assert_eq!(sample(&m, "mxfed_federation_pdu_checks_seconds_count"), 1.0);
    assert_eq!(sample(&m, "mxfed_federation_pdu_commit_seconds_count"), 1.0);
    assert_eq!(
        sample(
            &m,
            "mxfed_federation_pdu_commit_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "mxfed_outbound_queue_pdus{destination=\"dest.test\"}"),
        1.0
    );

    // Eve's message built on her join, arriving after a ban of her that it does not cite:
    // allowed by the state before it, not by the current state: soft-failed (answered
    // without an error, counted as such).
    let (late_id, late) = remote_message(&state, &room, "@eve:remote.test", "late", &remote_key());
    {
        let _g = state.lock_room(&room).await;
        rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.member",
            Some("@eve:remote.test"),
            obj(r#"{"membership":"ban"}"#),
            None,
        )
        .unwrap();
    }
    let r = send_txn(&state, "m2", &txn(vec![late], vec![])).await;
    assert!(result(&r, &late_id).is_empty(), "{}", r.body);
    assert!(state.rooms()[&room].is_soft_failed(&late_id));
    let m = get_metrics(&state).await;
    assert_eq!(pdu_outcomes(&m), (1.0, 1.0, 1.0));

    // The admin API beside it still wants its token.
    let resp = admin_get(&state, "/admin/v1/status").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn federation_requests_are_rate_limited_per_origin() {
    let dir = tempfile::tempdir().unwrap();
    drop(setup(&dir));
    // A tight limit in the config: a burst of 2, then one request a second.
    let cfg = dir.path().join("data/mxfed.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("federation_per_second = 50", "federation_per_second = 1")
        .replace("federation_burst = 200", "federation_burst = 2");
    std::fs::write(&cfg, text).unwrap();
    let state = setup(&dir);
    add_server(&state, "other.test", &other_key());
    let uri = "/_matrix/federation/v1/publicRooms";
    for _ in 0..2 {
        let r = call(&state, signed("GET", uri, None, REMOTE, ME, &remote_key())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // The burst is spent: the next request is refused (a slow machine may have earned a token
    // back in between, so allow a few more tries rather than depend on timing).
    let mut refused = None;
    for _ in 0..20 {
        let resp = app(state.clone())
            .oneshot(signed("GET", uri, None, REMOTE, ME, &remote_key()))
            .await
            .unwrap();
        if resp.status() != StatusCode::OK {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.expect("the limit never applied");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = parse_object(&bytes, &ParseOptions::STRICT).unwrap();
    assert_eq!(body.get_str("errcode"), Some("M_LIMIT_EXCEEDED"));
    let wait = body.get("retry_after_ms").and_then(Value::as_int).unwrap();
    assert!((1..=1000).contains(&wait), "{body}");
    // Another origin has its own budget; unsigned endpoints are not limited.
    let r = call(
        &state,
        signed("GET", uri, None, "other.test", ME, &other_key()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(
        &state,
        Request::builder()
            .uri("/_matrix/federation/v1/version")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Transactions are not limited (one in flight per origin paces them): more than the burst
    // of empty transactions, one after another, are all taken.
    for i in 0..5 {
        let r = send_txn(&state, &format!("rl{i}"), &txn(Vec::new(), Vec::new())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let m = get_metrics(&state).await;
    assert_eq!(
        sample(&m, "mxfed_federation_requests_rate_limited_total"),
        1.0
    );
}

/// `/timestamp_to_event`: the first event at or after `ts` (`dir=f`), the last at or before it
/// (`dir=b`); rejected events never count; nothing there is 404 `M_NOT_FOUND`, no `ts` is 400.
#[tokio::test]
async fn timestamp_to_event_finds_the_nearest_event() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, _) = room_with_eve(&state).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        // Distinct milliseconds for each message.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let _g = state.lock_room(&room).await;
        let id = rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.message",
            None,
            obj(&format!(r#"{{"body":"{i}","msgtype":"m.text"}}"#)),
            None,
        )
        .unwrap();
        sent.push(id);
    }
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    // Mallory never joined: rejected, and later than every message.
    let (bad_id, bad) = remote_message(&state, &room, "@mallory:remote.test", "x", &remote_key());
    let r = send_txn(&state, "t2", &txn(vec![bad], vec![])).await;
    assert!(result(&r, &bad_id).get_str("error").is_some(), "{}", r.body);

    let ts_of = |id: &str| -> i64 {
        let e = state
            .reads()
            .room_events(&room)
            .unwrap()
            .into_iter()
            .find(|e| e.event_id == id)
            .unwrap();
        obj(&e.json)
            .get("origin_server_ts")
            .and_then(Value::as_int)
            .unwrap()
    };
    let ts: Vec<i64> = sent.iter().map(|id| ts_of(id)).collect();
    let bad_ts = ts_of(&bad_id);
    assert!(
        ts[0] < ts[1] && ts[1] < ts[2] && ts[2] < bad_ts,
        "{ts:?} {bad_ts}"
    );

    let r_enc = urlenc(&room);
    let ask = |query: String| {
        let uri = format!("/_matrix/federation/v1/timestamp_to_event/{r_enc}?{query}");
        let state = state.clone();
        async move { call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await }
    };
    let found = |r: &Resp| -> (Option<String>, Option<i64>) {
        (
            r.body.get_str("event_id").map(str::to_owned),
            r.body.get("origin_server_ts").and_then(Value::as_int),
        )
    };
    for (ts, dir, want) in [
        (ts[1], "f", 1),
        (ts[1], "b", 1),
        (ts[1] + 1, "f", 2),
        (ts[1] + 1, "b", 1),
        (ts[0] - 1, "f", 0),
        (bad_ts, "b", 2),
    ] {
        let r = ask(format!("ts={ts}&dir={dir}")).await;
        assert_eq!(r.status, StatusCode::OK, "{ts} {dir}: {}", r.body);
        assert_eq!(
            found(&r),
            (Some(sent[want].clone()), Some(ts_of(&sent[want]))),
            "ts {ts} dir {dir}"
        );
    }
    // Only the rejected event is that late; nothing is before the room existed.
    for query in [format!("ts={bad_ts}&dir=f"), "ts=0&dir=b".to_owned()] {
        let r = ask(query.clone()).await;
        assert_eq!(
            (r.status, r.body.get_str("errcode")),
            (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
            "{query}: {}",
            r.body
        );
    }
    let r = ask("dir=f".to_owned()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body.get_str("errcode"), Some("M_MISSING_PARAM"));
}

/// `/send` checks PDUs before it waits for the room's lock, skipping rooms whose ACL denies
/// the origin; the ACL is asked again once it holds the lock. A PDU that arrives while the ACL
/// denies its origin, and finds it lifted by then, is checked and taken in (either way the
/// race goes, the answer is the same: the ACL in force when the room takes it decides).
#[tokio::test]
async fn acl_lifted_while_a_transaction_waits_for_the_room() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let room = room_with_remote(&state).await;
    let acl = |content: &str| {
        rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.server_acl",
            Some(""),
            obj(content),
            None,
        )
        .unwrap()
    };
    {
        let _g = state.lock_room(&room).await;
        acl(r#"{"allow":["*"],"deny":["remote.*"]}"#);
    }
    let (join_id, join) = eve_join(&state, &room);
    let lock = state.lock_room(&room).await;
    let task = {
        let state = state.clone();
        tokio::spawn(async move { send_txn(&state, "w1", &txn(vec![join], vec![])).await })
    };
    // Let the transaction reach the room's lock (it cannot pass it), then lift the ACL.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    acl(r#"{"allow":["*"]}"#);
    drop(lock);
    let r = task.await.unwrap();
    assert!(result(&r, &join_id).is_empty(), "{}", r.body);
    assert_eq!(
        state.rooms()[&room].membership("@eve:remote.test"),
        Some("join".into())
    );
}

/// A peer that never answers while the server fills a gap in its room holds up only that room:
/// another origin's transaction for another room is taken in meanwhile (the rooms' locks are
/// separate; one server-wide lock held every origin up for the fetch's whole timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_slow_to_fill_a_gap_holds_up_only_its_room() {
    // A server that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let (connected, fetching) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
            let _ = connected.send(());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let slow_key = SigningKey::from_seed("s1", &[9u8; 32]).unwrap();
    add_server(&state, &slow, &slow_key);
    let quiet_room = room_with_remote(&state).await;
    let slow_room = room_with_remote(&state).await;

    // The slow server's user joins its room (nothing to fetch: taken in at once).
    let user = format!("@s:{slow}");
    let template = |kind: &str, sk: Option<&str>, content: &str| {
        rooms::template(Some(&slow_room), kind, &user, sk, obj(content))
    };
    let send_from_slow = |txn_id: &str, pdu: Object| {
        let body = txn_from(&slow, vec![pdu], vec![]);
        let uri = format!("/_matrix/federation/v1/send/{txn_id}");
        signed("PUT", &uri, Some(&body), &slow, ME, &slow_key)
    };
    let (join_id, join) = pdu_of(
        &state,
        &slow_room,
        &slow,
        &slow_key,
        &template("m.room.member", Some(&user), r#"{"membership":"join"}"#),
        None,
    );
    let r = call(&state, send_from_slow("s1", join)).await;
    assert!(result(&r, &join_id).is_empty(), "{}", r.body);

    // Then a message after an event the server lacks: it asks the slow server for it.
    let missing = EventRef {
        event_id: "$never-seen".into(),
        depth: 20,
        sha256: None,
    };
    let (_, gap) = pdu_of(
        &state,
        &slow_room,
        &slow,
        &slow_key,
        &template(
            "m.room.message",
            None,
            r#"{"body":"after a gap","msgtype":"m.text"}"#,
        ),
        Some(vec![missing]),
    );
    let stuck = {
        let state = state.clone();
        let req = send_from_slow("s2", gap);
        tokio::spawn(async move { call(&state, req).await })
    };
    // The fetch has connected (and will wait for its timeout).
    tokio::task::spawn_blocking(move || fetching.recv().unwrap())
        .await
        .unwrap();

    // Meanwhile another origin's join to another room goes through.
    let (eve_id, eve) = eve_join(&state, &quiet_room);
    let r = send_txn(&state, "q1", &txn(vec![eve], vec![])).await;
    assert!(result(&r, &eve_id).is_empty(), "{}", r.body);
    assert_eq!(
        state.rooms()[&quiet_room].membership("@eve:remote.test"),
        Some("join".into())
    );
    assert!(
        !stuck.is_finished(),
        "the slow peer's transaction was not held up"
    );
    stuck.abort();
}

/// A GET on the admin API with its token: the status and the body.
async fn admin_get_authed(state: &Arc<AppState>, uri: &str) -> (StatusCode, String) {
    let (status, bytes) = common::admin_request(state, "GET", uri, None).await;
    (status, String::from_utf8(bytes).unwrap())
}

/// `room timeline --limit N` (`?limit=N`): the last N lines of the whole timeline; a limit that
/// is not a number is a Matrix error.
#[tokio::test]
async fn admin_timeline_limit_serves_the_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, _) = room_with_eve(&state).await;
    eve_says(&state, &room, 4).await;
    let uri = format!("/admin/v1/rooms/{}/timeline", urlenc(&room));
    let (status, all) = admin_get_authed(&state, &uri).await;
    assert_eq!(status, StatusCode::OK);
    let all: Vec<&str> = all.lines().collect();
    assert!(all.len() > 4, "{all:?}");
    assert!(all[all.len() - 1].contains("\"body\":\"m3\""), "{all:?}");
    for n in [0, 1, 3, all.len(), all.len() + 5] {
        let (status, some) = admin_get_authed(&state, &format!("{uri}?limit={n}")).await;
        assert_eq!(status, StatusCode::OK);
        let some: Vec<&str> = some.lines().collect();
        assert_eq!(some, all[all.len().saturating_sub(n)..], "limit {n}");
    }
    let (status, body) = admin_get_authed(&state, &format!("{uri}?limit=many")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("\"errcode\":\"M_INVALID_PARAM\""), "{body}");
}

/// `room wait --event` answers once the event is stored, not merely in the room: a room takes
/// events in before the commit that makes them durable, and a script may kill the server as soon
/// as its wait returns.
#[tokio::test]
async fn room_wait_answers_once_the_event_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, _) = room_with_eve(&state).await;
    let wait = |id: String, ms: u64| {
        let state = state.clone();
        let uri = format!(
            "/admin/v1/rooms/{}/wait?event_id={}&timeout_ms={ms}",
            urlenc(&room),
            urlenc(&id)
        );
        async move { admin_get_authed(&state, &uri).await.0 }
    };
    // Eve's message in the room, not yet committed.
    let (id, pdu) = remote_message(&state, &room, "@eve:remote.test", "hi", &remote_key());
    let _g = state.lock_room(&room).await;
    let entry = rooms::Entry {
        event_id: id.clone(),
        event: rooms::Kept::of(&pdu),
        verdict: {
            let mut rooms = state.rooms();
            rooms
                .get_mut(&room)
                .unwrap()
                .receive(&rooms::checked(&id, pdu, false))
        },
        outlier: false,
        state_before: None,
        origin: REMOTE.into(),
    };
    assert!(state.rooms()[&room].contains(&id));
    assert_eq!(wait(id.clone(), 200).await, StatusCode::REQUEST_TIMEOUT);
    rooms::commit(&state, &room, &[entry]).unwrap();
    assert_eq!(wait(id, 5_000).await, StatusCode::OK);
}

/// A room's lock is forgotten once no one holds or waits for it, also for rooms we do not know
/// (another server's `make_join` names any room ID); while someone waits, it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_locks_are_forgotten_when_released() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let uri = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=10",
        urlenc("!nowhere:remote.test"),
        urlenc("@eve:remote.test")
    );
    let r = call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(state.locked_rooms().is_empty());

    let first = state.lock_room("!r:a.test").await;
    assert_eq!(state.locked_rooms(), ["!r:a.test"]);
    let (took, taken) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let waiter = {
        let state = state.clone();
        tokio::spawn(async move {
            let _g = state.lock_room("!r:a.test").await;
            took.send(()).unwrap();
            released.await.unwrap();
        })
    };
    // Released while the other waits: its lock is kept, and the other gets it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(first);
    taken.await.unwrap();
    assert_eq!(state.locked_rooms(), ["!r:a.test"]);
    release.send(()).unwrap();
    waiter.await.unwrap();
    assert!(state.locked_rooms().is_empty());
}

/// `send_knock` answers the room's stripped state as full PDUs, each one of the room's events as
/// stored (MSC4311, as Synapse 1.163 answers: the knocking server can check them, and its
/// parsing of stripped entries is going away), including `m.room.create`.
#[tokio::test]
async fn send_knock_answers_the_room_state_as_full_pdus() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let room = room_with_remote(&state).await;
    {
        let _g = state.lock_room(&room).await;
        rooms::send_event(
            &state,
            &room,
            "@alice:localhost:18999",
            "m.room.join_rules",
            Some(""),
            obj(r#"{"join_rule":"knock"}"#),
            None,
        )
        .unwrap();
    }
    let (knock_id, knock) = remote_pdu(
        &state,
        &room,
        "m.room.member",
        "@gina:remote.test",
        Some("@gina:remote.test"),
        r#"{"membership":"knock"}"#,
        &remote_key(),
    );
    let uri = format!(
        "/_matrix/federation/v1/send_knock/{}/{}",
        urlenc(&room),
        urlenc(&knock_id)
    );
    let r = call(
        &state,
        signed("PUT", &uri, Some(&knock), REMOTE, ME, &remote_key()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r
        .body
        .get("knock_room_state")
        .and_then(Value::as_array)
        .unwrap();
    let v = mxfed_core::RoomVersion::get("10").unwrap();
    let mut types = Vec::new();
    for entry in list {
        let pdu = entry.as_object().unwrap();
        let id = mxfed_core::event::event_id(pdu, v).unwrap();
        let stored = state.reads().event(&id).unwrap().unwrap();
        assert_eq!(
            parse_object(stored.json.as_bytes(), &ParseOptions::STRICT).unwrap(),
            *pdu
        );
        types.push(pdu.get_str("type").unwrap().to_owned());
    }
    assert!(types.iter().any(|t| t == "m.room.create"), "{types:?}");
    assert!(types.iter().any(|t| t == "m.room.join_rules"), "{types:?}");
}

/// Device and key queries about our users (who have no devices) are answered as Synapse answers
/// them: any user ID of ours gets an empty answer (known or not), another server's user is a
/// 400. `/timestamp_to_event` needs `dir` (`f` or `b`).
#[tokio::test]
async fn device_key_and_timestamp_queries_answer_as_synapse() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, _) = room_with_eve(&state).await;
    let f = "/_matrix/federation/v1";
    let get = |uri: String| call(&state, signed("GET", &uri, None, REMOTE, ME, &remote_key()));
    for user in ["@alice:localhost:18999", "@nobody:localhost:18999"] {
        let r = get(format!("{f}/user/devices/{}", urlenc(user))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body.get_str("user_id"), Some(user));
        assert_eq!(r.body.get("devices"), Some(&Value::Array(Vec::new())));
    }
    let r = get(format!("{f}/user/devices/{}", urlenc("@eve:remote.test"))).await;
    assert_eq!(r.status, 400, "{}", r.body);

    let query = |body: &str| {
        let uri = format!("{f}/user/keys/query");
        call(
            &state,
            signed("POST", &uri, Some(&obj(body)), REMOTE, ME, &remote_key()),
        )
    };
    let r =
        query(r#"{"device_keys":{"@alice:localhost:18999":[],"@nobody:localhost:18999":["D"]}}"#)
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body.get("device_keys"),
        Some(&Value::Object(obj(
            r#"{"@alice:localhost:18999":{},"@nobody:localhost:18999":{}}"#
        )))
    );
    let r = query(r#"{"device_keys":{"@eve:remote.test":[]}}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);

    let r_enc = urlenc(&room);
    let r = get(format!("{f}/timestamp_to_event/{r_enc}?ts=1")).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (400, Some("M_MISSING_PARAM")),
        "{}",
        r.body
    );
    let r = get(format!("{f}/timestamp_to_event/{r_enc}?ts=1&dir=x")).await;
    assert_eq!(
        (r.status.as_u16(), r.body.get_str("errcode")),
        (400, Some("M_INVALID_PARAM")),
        "{}",
        r.body
    );
}

/// A PDU citing an auth event we do not have (eve's newer member event, never sent to us) is
/// not rejected for good: A asks the origin for it (`/event_auth`; remote.test does not
/// answer here), and keeps the PDU to try again rather than store it as rejected (after which
/// every event citing it would be rejected too), as Synapse does not persist it.
#[tokio::test]
async fn a_pdu_whose_auth_events_are_unknown_is_kept_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, _) = room_with_eve(&state).await;
    let key = remote_key();
    // Eve's display name change, kept by the remote.
    let (renamed_id, _renamed) = remote_pdu(
        &state,
        &room,
        "m.room.member",
        "@eve:remote.test",
        Some("@eve:remote.test"),
        r#"{"membership":"join","displayname":"Eve"}"#,
        &key,
    );
    // Eve's message on our extremities, authorised by that member event.
    let (msg_id, msg) = {
        let rooms = state.rooms();
        let r = rooms.get(&room).unwrap();
        let eref = |id: &str, depth: i64| EventRef {
            event_id: id.to_owned(),
            depth,
            sha256: None,
        };
        let depth = |id: &str| r.event(id).unwrap().0.depth();
        let prev: Vec<EventRef> = r
            .forward_extremities()
            .iter()
            .map(|id| eref(id, depth(id)))
            .collect();
        let mut cur: StateMap = r
            .current_state()
            .into_iter()
            .map(|(k, id)| {
                let d = depth(&id);
                (k, eref(&id, d))
            })
            .collect();
        let top = prev.iter().map(|p| p.depth).max().unwrap_or(0);
        cur.insert(
            ("m.room.member".into(), "@eve:remote.test".into()),
            eref(&renamed_id, top + 1),
        );
        let t = rooms::template(
            Some(&room),
            "m.room.message",
            "@eve:remote.test",
            None,
            obj(r#"{"msgtype":"m.text","body":"hi"}"#),
        );
        let b = build_event(
            r.version(),
            REMOTE,
            &t,
            &prev,
            &cur,
            mxfed_native::server::now(),
            &key,
            None,
        )
        .unwrap();
        (b.event_id, b.pdu)
    };
    let r = send_txn(&state, "auth-gap", &txn(vec![msg], vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let error = result(&r, &msg_id).get_str("error").unwrap_or_default();
    assert!(error.ends_with("kept to try again"), "{}", r.body);
    assert!(!state.rooms()[&room].contains(&msg_id));
    assert!(state.reads().event(&msg_id).unwrap().is_none(), "stored");
}

/// The admin API does not send private read receipts: the spec never federates them.
#[tokio::test]
async fn admin_refuses_to_send_a_private_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (room, join_id) = room_with_eve(&state).await;
    let post = |rtype: &str| {
        let body = serde_json::json!({
            "as": "@alice:localhost:18999",
            "event_id": join_id,
            "receipt_type": rtype,
        });
        Request::builder()
            .method("POST")
            .uri(format!("/admin/v1/rooms/{}/receipt", urlenc(&room)))
            .header("authorization", format!("Bearer {}", state.admin_token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let admin = || mxfed_native::server::metrics::admin_app(state.clone());
    let resp = admin().oneshot(post("m.read.private")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = admin().oneshot(post("m.read")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A body whose first byte arrives and then nothing more, for ever.
struct Stalled(bool);

impl futures_core::Stream for Stalled {
    type Item = Result<axum::body::Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.0 {
            std::task::Poll::Pending
        } else {
            self.0 = true;
            std::task::Poll::Ready(Some(Ok(axum::body::Bytes::from_static(b"{"))))
        }
    }
}

/// A body that stops arriving is answered 408 once `[limits] body_read_seconds` is up (here 1),
/// before its sender is authenticated: it holds a connection and a task no longer.
#[tokio::test]
async fn a_stalled_body_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    drop(setup(&dir));
    let cfg = dir.path().join("data/mxfed.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("body_read_seconds = 60", "body_read_seconds = 1");
    std::fs::write(&cfg, text).unwrap();
    let state = setup(&dir);
    assert_eq!(state.config.limits.body_read_seconds, 1);
    for (method, uri) in [
        ("PUT", "/_matrix/federation/v1/send/stalled"),
        ("POST", "/_matrix/key/v2/query"),
    ] {
        let mut req = signed(method, uri, Some(&Object::new()), REMOTE, ME, &remote_key());
        *req.body_mut() = Body::from_stream(Stalled(false));
        let r = tokio::time::timeout(std::time::Duration::from_secs(30), call(&state, req))
            .await
            .expect("no answer within 30 s");
        assert_eq!(r.status.as_u16(), 408, "{uri}: {}", r.body);
        assert_eq!(r.body.get_str("errcode"), Some("M_UNKNOWN"), "{uri}");
    }
}
