//! Servers run inside the test process: TLS on real loopback sockets, driven through the library.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use mxfed_core::canonical::{parse_object, Object, ParseOptions, Value};
use mxfed_core::event::EventTemplate;
use mxfed_core::keys::SigningKey;
use mxfed_core::xmatrix;
use mxfed_native::server::serve::{prepare, tls_config, ServeArgs};
use mxfed_native::server::{app, rooms, run, AppState};

/// A `--dev` server (TLS, self-signed) on a free loopback port, kept bound from the start, whose router is passed through `wrap`.
pub fn start_with(dir: &std::path::Path, wrap: fn(axum::Router) -> axum::Router) -> Arc<AppState> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let args = ServeArgs {
        config: None,
        data_dir: Some(dir.to_owned()),
        server_name: Some(format!("localhost:{port}")),
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        dev: true,
    };
    let state = prepare(&args).unwrap().state;
    let tls = tls_config(&state, &state.config.listeners[0]).unwrap();
    tokio::spawn(run(
        listener,
        wrap(app(state.clone())),
        tls,
        std::future::pending(),
    ));
    state
}

/// A `--dev` server on a free loopback port with the router as it is.
pub fn start(dir: &std::path::Path) -> Arc<AppState> {
    start_with(dir, same)
}

/// The router unchanged.
pub fn same(r: axum::Router) -> axum::Router {
    r
}

/// Waits until `pred` holds, woken by the server's change notifications.
pub async fn until(state: &AppState, what: &str, pred: impl Fn(&AppState) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let notified = state.changed.notified();
        if pred(state) {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            panic!("timed out waiting for {what}");
        }
    }
}

/// An `m.text` message template.
pub fn message(room: &str, sender: &str, body: &str) -> EventTemplate {
    EventTemplate {
        room_id: Some(room.to_owned()),
        event_type: "m.room.message".into(),
        sender: sender.to_owned(),
        state_key: None,
        content: parse_object(
            format!(r#"{{"msgtype":"m.text","body":"{body}"}}"#).as_bytes(),
            &ParseOptions::STRICT,
        )
        .unwrap(),
        redacts: None,
    }
}

/// Two servers under `dir`, A (its router as it is) and B (its router passed through `wrap_b`),
/// with `@alice` a user of A and `@bob` (display name `bob_name`) a user of B:
/// `(a, b, alice, bob)`.
pub fn two_servers(
    dir: &std::path::Path,
    wrap_b: fn(axum::Router) -> axum::Router,
    bob_name: Option<&str>,
) -> (Arc<AppState>, Arc<AppState>, String, String) {
    two_servers_wrapped(dir, same, wrap_b, bob_name)
}

/// [`two_servers`], A's router passed through `wrap_a`.
pub fn two_servers_wrapped(
    dir: &std::path::Path,
    wrap_a: fn(axum::Router) -> axum::Router,
    wrap_b: fn(axum::Router) -> axum::Router,
    bob_name: Option<&str>,
) -> (Arc<AppState>, Arc<AppState>, String, String) {
    let a = start_with(&dir.join("a"), wrap_a);
    let b = start_with(&dir.join("b"), wrap_b);
    let alice = format!("@alice:{}", a.server_name);
    let bob = format!("@bob:{}", b.server_name);
    a.db().create_user(&alice, None, false).unwrap();
    b.db().create_user(&bob, bob_name, false).unwrap();
    (a, b, alice, bob)
}

/// A room of room version `version` that `alice` creates on `a` and invites `bob` to.
pub async fn invited_room(a: &Arc<AppState>, alice: &str, bob: &str, version: &str) -> String {
    let room = rooms::create_room(a, alice, version).unwrap();
    let _g = a.lock_room(&room).await;
    rooms::invite_remote(a, &room, alice, bob).await.unwrap();
    room
}

/// A request signed by `origin` with `key` for `destination`.
pub fn signed(
    method: &str,
    uri: &str,
    body: Option<&Object>,
    origin: &str,
    destination: &str,
    key: &SigningKey,
) -> Request<Body> {
    let content = body.map(|b| Value::Object(b.clone()));
    let headers = xmatrix::Request {
        method,
        uri,
        origin,
        destination,
        content: content.as_ref(),
    }
    .sign(std::slice::from_ref(key));
    let mut r = Request::builder().method(method).uri(uri);
    for h in headers {
        r = r.header("authorization", h.to_header_value());
    }
    r.body(match body {
        Some(b) => Body::from(b.to_canonical_string()),
        None => Body::empty(),
    })
    .unwrap()
}

/// `b` builds `n` messages of `bob` it keeps to itself, then sends only the last: the other
/// servers must fill the gap. Returns the messages' IDs.
pub async fn gap(b: &Arc<AppState>, room: &str, bob: &str, n: usize) -> Vec<String> {
    let _g = b.lock_room(room).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let built = rooms::build_local(b, room, &message(room, bob, &format!("m{i}"))).unwrap();
        // All but the last stay on B.
        if i + 1 < n {
            rooms::accept_local_unsent(b, &built).unwrap();
        } else {
            rooms::accept_local(b, &built).unwrap();
        }
        ids.push(built.event_id.clone());
    }
    ids
}

/// `b` builds `n` messages of `bob` and keeps them all to itself (taken into its room, sent to
/// no one): a gap for whoever gets a later event.
pub async fn kept_messages(
    b: &Arc<AppState>,
    room: &str,
    bob: &str,
    n: usize,
) -> Vec<mxfed_core::event::BuiltEvent> {
    let _g = b.lock_room(room).await;
    (0..n)
        .map(|i| {
            let e = rooms::build_local(b, room, &message(room, bob, &format!("kept {i}"))).unwrap();
            rooms::accept_local_unsent(b, &e).unwrap();
            e
        })
        .collect()
}

/// `from` sends `to` a transaction of `pdus` directly (its client, signed); `to`'s answer for
/// each PDU. A minute at most.
pub async fn send_txn(from: &AppState, to: &AppState, txn: &str, pdus: Vec<Value>) -> Object {
    let mut body = Object::new();
    body.insert("origin", from.server_name.as_str());
    body.insert(
        "origin_server_ts",
        mxfed_core::canonical::Int::saturating(1),
    );
    body.insert("pdus", Value::Array(pdus));
    let path = format!("/_matrix/federation/v1/send/{txn}");
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        from.client.json(&to.server_name, "PUT", &path, Some(&body)),
    )
    .await
    .expect("answered within a minute")
    .unwrap();
    answer.get_object("pdus").cloned().unwrap()
}

/// A public room `alice` creates on `a` (room version `version`).
pub async fn public_room(a: &Arc<AppState>, alice: &str, version: &str) -> String {
    let room = rooms::create_room(a, alice, version).unwrap();
    let _g = a.lock_room(&room).await;
    let rules = parse_object(br#"{"join_rule":"public"}"#, &ParseOptions::STRICT).unwrap();
    rooms::send_event(a, &room, alice, "m.room.join_rules", Some(""), rules, None).unwrap();
    room
}

/// A public room `alice` creates on `a` (room version `version`), which `bob` (of `b`) joins
/// through `a`.
pub async fn joined_public_room(
    a: &Arc<AppState>,
    b: &Arc<AppState>,
    alice: &str,
    bob: &str,
    version: &str,
) -> String {
    let room = public_room(a, alice, version).await;
    rooms::remote_membership(b, &room, bob, &a.server_name, "join")
        .await
        .unwrap();
    room
}

/// Whether a server wrapped with [`holding_missing_events`] holds the `/get_missing_events`
/// requests it gets (answers them once this is false again). One per test binary.
pub static HOLD_MISSING_EVENTS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// A router that holds `/get_missing_events` while [`HOLD_MISSING_EVENTS`] is set.
pub fn holding_missing_events(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(hold_missing_events))
}

async fn hold_missing_events(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::sync::atomic::Ordering;
    if req.uri().path().contains("get_missing_events") {
        while HOLD_MISSING_EVENTS.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    next.run(req).await
}

/// The state of `state`'s server opened again from its data directory, as a restart would
/// (not serving).
pub fn reopen(state: &AppState) -> Arc<AppState> {
    prepare(&ServeArgs {
        config: None,
        data_dir: Some(state.data_dir.clone()),
        server_name: Some(state.server_name.clone()),
        listen: Some(state.config.listeners[0].addr),
        dev: true,
    })
    .unwrap()
    .state
}

/// What a server answers for an endpoint it does not have: 404 `M_UNRECOGNIZED`, as Synapse.
pub fn unrecognized() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        axum::http::StatusCode::NOT_FOUND,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#,
    )
        .into_response()
}
