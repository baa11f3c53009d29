//! Bad input to the admin API and `mxfed admin`: a Matrix `{"errcode","error"}` with the right
//! status over HTTP (the router is called directly, no socket), exit status 2 and one line from
//! the CLI (against a `mxfed serve --dev` process), and nothing stored by a refused request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use mxfed_native::server::serve::{prepare, ServeArgs};
use mxfed_native::server::store::Reads as _;
use mxfed_native::server::AppState;

use common::free_port;
use common::process::Server;

const ME: &str = "localhost:18999";

fn setup(dir: &tempfile::TempDir) -> Arc<AppState> {
    let args = ServeArgs {
        config: None,
        data_dir: Some(dir.path().join("data")),
        server_name: Some(ME.into()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
    };
    prepare(&args).unwrap().state
}

/// An admin API request with the token: the status and the body as JSON (`Null` when the body
/// is not JSON, which no answer may be).
async fn admin(
    state: &Arc<AppState>,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let (status, bytes) = common::admin_request(state, method, uri, body.as_ref()).await;
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Asserts a Matrix error answer with `status` and `errcode`.
fn assert_matrix_error(got: &(StatusCode, serde_json::Value), status: u16, errcode: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["errcode"], errcode, "{}", got.1);
    assert!(got.1["error"].is_string(), "{}", got.1);
}

/// Runs `mxfed admin` expecting exit status 2 and one line on stderr; returns that line.
fn admin_fails(server: &Server, args: &[&str]) -> String {
    let out = server.admin_output(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "mxfed admin {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    stderr
}

/// `user create` refuses a localpart the server may not give a new user: empty, outside
/// today's grammar (a space, upper case), or a user ID over 255 bytes. Nothing is stored, and
/// a valid name still works.
#[tokio::test]
async fn user_create_refuses_invalid_localparts() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let long = "a".repeat(300);
    for name in [
        "",
        "Alice Smith",
        "Alice",
        long.as_str(),
        "@:localhost:18999",
    ] {
        let got = admin(
            &state,
            "POST",
            "/admin/v1/users",
            Some(serde_json::json!({ "name": name })),
        )
        .await;
        assert_matrix_error(&got, 400, "M_INVALID_USERNAME");
        let id = state.user_id(name);
        assert!(state.reads().user(&id).unwrap().is_none(), "{id} stored");
    }
    let got = admin(
        &state,
        "POST",
        "/admin/v1/users",
        Some(serde_json::json!({ "name": "alice.smith_1=x/y+z-" })),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["user_id"], "@alice.smith_1=x/y+z-:localhost:18999");
}

/// The same refusals from `mxfed admin user create`: exit status 2, one line naming the code.
#[test]
fn cli_user_create_refuses_invalid_localparts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("a"), free_port());
    let long = "a".repeat(300);
    for name in ["", "Alice Smith", long.as_str()] {
        let err = admin_fails(&server, &["user", "create", name]);
        assert!(err.contains("HTTP 400 M_INVALID_USERNAME"), "{err}");
    }
    assert_eq!(
        server.admin(&["user", "create", "alice"]),
        format!("@alice:{}", server.name())
    );
}

/// A `room create` that fails leaves no room behind, in memory or in storage (after a restart):
/// its creator's ID too long for any event (a user stored before `user create` checked), or
/// its display name too long for the join that follows the create event, or the database
/// refusing the events.
#[tokio::test]
async fn failed_room_create_leaves_no_room() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let long_id = format!("@{}:{ME}", "a".repeat(300));
    let big_name = format!("@big:{ME}");
    state.db().create_user(&long_id, None, false).unwrap();
    state
        .db()
        .create_user(&big_name, Some(&"x".repeat(70_000)), false)
        .unwrap();
    state
        .db()
        .create_user(&format!("@alice:{ME}"), None, false)
        .unwrap();
    let create = |user: &str, version: &str| {
        admin(
            &state,
            "POST",
            "/admin/v1/rooms",
            Some(serde_json::json!({ "as": user, "version": version })),
        )
    };
    let ok = create("alice", "12").await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    let list =
        |state: Arc<AppState>| async move { admin(&state, "GET", "/admin/v1/rooms", None).await };
    let before = list(state.clone()).await;
    assert_eq!(
        before.1["rooms"].as_array().unwrap().len(),
        1,
        "{}",
        before.1
    );
    for (user, code) in [
        (long_id.as_str(), "pdu_field_too_long"),
        (big_name.as_str(), "pdu_too_large"),
    ] {
        for version in ["12", "10"] {
            let got = create(user, version).await;
            assert_matrix_error(&got, 400, "M_INVALID_PARAM");
            assert!(got.1["error"].as_str().unwrap().contains(code), "{}", got.1);
        }
    }
    assert_eq!(list(state.clone()).await, before);
    // The events refused by the database: the room's row goes too.
    rusqlite::Connection::open(dir.path().join("data/mxfed.sqlite"))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'full'); END;",
        )
        .unwrap();
    assert_matrix_error(&create("alice", "12").await, 500, "M_UNKNOWN");
    assert_eq!(list(state.clone()).await, before);
    drop(state);
    let state = setup(&dir);
    assert_eq!(list(state).await, before, "after a restart");
}

/// A method an admin path does not take gets 405 `M_UNRECOGNIZED` as JSON, as on the
/// federation listener; an unknown path 404 `M_UNRECOGNIZED`.
#[tokio::test]
async fn wrong_methods_get_a_matrix_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    for (method, uri) in [
        ("GET", "/admin/v1/rooms/x/send"),
        ("DELETE", "/admin/v1/users"),
        ("PUT", "/admin/v1/rooms"),
        ("POST", "/admin/v1/status"),
        ("POST", "/metrics"),
    ] {
        let got = admin(&state, method, uri, None).await;
        assert_matrix_error(&got, 405, "M_UNRECOGNIZED");
    }
    let got = admin(&state, "GET", "/admin/v1/nothing", None).await;
    assert_matrix_error(&got, 404, "M_UNRECOGNIZED");
}

/// A local user of the test server and a room of `version` they created: `(user, room)`.
async fn alice_room(state: &Arc<AppState>, version: &str) -> (String, String) {
    let alice = format!("@alice:{ME}");
    state.db().create_user(&alice, None, false).unwrap();
    let got = admin(
        state,
        "POST",
        "/admin/v1/rooms",
        Some(serde_json::json!({ "as": "alice", "version": version })),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    (alice, got.1["room_id"].as_str().unwrap().to_owned())
}

fn enc(s: &str) -> String {
    mxfed_native::server::client::encode_segment(s)
}

/// The room's timeline, one PDU per line.
async fn timeline(state: &Arc<AppState>, room: &str) -> Vec<String> {
    let uri = format!("/admin/v1/rooms/{}/timeline", enc(room));
    let (status, bytes) = common::admin_request(state, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `room redact` of something that is no event ID of the room's version is 400
/// `M_INVALID_PARAM`, and no redaction is stored or sent; a real event is still redacted.
#[tokio::test]
async fn redact_refuses_malformed_event_ids() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    let (_, room) = alice_room(&state, "12").await;
    let uri = format!("/admin/v1/rooms/{}/redact", enc(&room));
    let redact = |id: &str| {
        admin(
            &state,
            "POST",
            &uri,
            Some(serde_json::json!({ "as": "alice", "event_id": id })),
        )
    };
    let before = timeline(&state, &room).await;
    let v1_style = format!("$abc:{ME}");
    for bad in [
        "not-an-id",
        "",
        "$",
        "$not base64 at all",
        v1_style.as_str(),
    ] {
        assert_matrix_error(&redact(bad).await, 400, "M_INVALID_PARAM");
    }
    assert_eq!(timeline(&state, &room).await, before);
    let sent = admin(
        &state,
        "POST",
        &format!("/admin/v1/rooms/{}/send", enc(&room)),
        Some(serde_json::json!({ "as": "alice", "text": "oops" })),
    )
    .await;
    let id = sent.1["event_id"].as_str().unwrap().to_owned();
    let got = redact(&id).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(timeline(&state, &room).await.len(), before.len() + 2);
    // A room of version 2 takes its own format, `$opaque:server`.
    let (_, old) = alice_room(&state, "2").await;
    let got = admin(
        &state,
        "POST",
        &format!("/admin/v1/rooms/{}/redact", enc(&old)),
        Some(serde_json::json!({ "as": "alice", "event_id": "not-an-id" })),
    )
    .await;
    assert_matrix_error(&got, 400, "M_INVALID_PARAM");
}

/// `room join` with an empty or invalid `--via`, or a room ID that is none, is 400
/// `M_INVALID_PARAM` before any server is asked (it was 502 "builder error: empty host").
#[tokio::test]
async fn join_refuses_bad_room_ids_and_servers() {
    let dir = tempfile::tempdir().unwrap();
    let state = setup(&dir);
    state
        .db()
        .create_user(&format!("@alice:{ME}"), None, false)
        .unwrap();
    for (room, via) in [
        ("notaroom", serde_json::json!([""])),
        ("notaroom", serde_json::json!(["example.org"])),
        ("notaroom", serde_json::json!([])),
        ("!", serde_json::json!(["example.org"])),
        ("!abc:example.org", serde_json::json!([""])),
        ("!abc:example.org", serde_json::json!("bad host")),
        (
            "!abc:example.org",
            serde_json::json!(["example.org", "a/b"]),
        ),
    ] {
        let got = admin(
            &state,
            "POST",
            &format!("/admin/v1/rooms/{}/join", enc(room)),
            Some(serde_json::json!({ "as": "alice", "via": via })),
        )
        .await;
        assert_matrix_error(&got, 400, "M_INVALID_PARAM");
    }
}

/// An empty `admin.token` (or one a bearer header cannot carry) stops the server at start with
/// one line saying what to do, instead of a server whose every admin call is 401; a token made
/// at first run is read back.
#[test]
fn empty_admin_token_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        config: None,
        data_dir: Some(dir.path().join("data")),
        server_name: Some(ME.into()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
    };
    let made = prepare(&args).unwrap().state.admin_token.clone();
    assert!(made.len() >= 32, "{made:?}");
    let path = dir.path().join("data/admin.token");
    for bad in ["", "\n", "  \n", "two words\n"] {
        std::fs::write(&path, bad).unwrap();
        let Err(e) = prepare(&args).map(|_| ()) else {
            panic!("started with the token {bad:?}");
        };
        assert!(e.contains("admin.token"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    std::fs::write(&path, format!("{made}\n")).unwrap();
    assert_eq!(prepare(&args).unwrap().state.admin_token, made);
}
