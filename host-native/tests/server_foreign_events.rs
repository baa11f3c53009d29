//! A peer that slips an event of another room into its answers: B's `send_join` answer for room
//! R also carries, in its state, one of B's state events of room X (and its
//! `/get_missing_events` answers one of X's messages). A joins R and fills a gap in it, and keeps
//! nothing of X: not in R's state, not in R, not in its database (the genuine copies belong to
//! X).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::OnceLock;

use axum::body::Body;
use axum::response::Response;
use mxfed_core::canonical::{parse_object, ParseOptions, Value};
use mxfed_native::server::rooms;
use mxfed_native::server::store::Reads as _;

use common::inproc::{gap, message, two_servers, until};

/// The events of room X that B adds to its `send_join` answers' state and to its
/// `/get_missing_events` answers.
static FOREIGN_STATE: OnceLock<String> = OnceLock::new();
static FOREIGN_MESSAGE: OnceLock<String> = OnceLock::new();

fn injecting(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(inject))
}

async fn inject(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let (foreign, list) = if path.contains("get_missing_events") {
        (FOREIGN_MESSAGE.get(), "events")
    } else if path.contains("send_join") {
        (FOREIGN_STATE.get(), "state")
    } else {
        (None, "")
    };
    let Some(foreign) = foreign else {
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut answer = parse_object(&bytes, &ParseOptions::LEGACY).unwrap();
    let foreign = parse_object(foreign.as_bytes(), &ParseOptions::LEGACY).unwrap();
    if let Some(Value::Array(events)) = answer.get_mut(list) {
        events.push(Value::Object(foreign));
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(answer.to_canonical_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_another_room_in_an_answer_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), injecting, None);
    let public = |room: &str| {
        let rules = parse_object(br#"{"join_rule":"public"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(&b, room, &bob, "m.room.join_rules", Some(""), rules, None).unwrap();
    };
    // Room X, which A is not in: its topic and one of its messages.
    let x = rooms::create_room(&b, &bob, "10").unwrap();
    let (topic, said) = {
        let _g = b.lock_room(&x).await;
        let content = parse_object(br#"{"topic":"elsewhere"}"#, &ParseOptions::STRICT).unwrap();
        let topic =
            rooms::send_event(&b, &x, &bob, "m.room.topic", Some(""), content, None).unwrap();
        let said = rooms::send_local(&b, &x, message(&x, &bob, "elsewhere")).unwrap();
        (topic, said)
    };
    let json = |id: &str| b.reads().event(id).unwrap().unwrap().json;
    FOREIGN_STATE.set(json(&topic)).unwrap();
    FOREIGN_MESSAGE.set(json(&said)).unwrap();

    let r = rooms::create_room(&b, &bob, "10").unwrap();
    {
        let _g = b.lock_room(&r).await;
        public(&r);
    }
    rooms::remote_membership(&a, &r, &alice, &b.server_name, "join")
        .await
        .unwrap();
    // A gap in R: A asks B for the missing events and gets X's message among them.
    let last = gap(&b, &r, &bob, 3).await.pop().unwrap();
    until(&a, "the gap filled", |s| {
        let rooms = s.rooms();
        rooms[&r].contains(&last) && !rooms[&r].is_outlier(&last)
    })
    .await;
    let state = a.rooms()[&r].current_state();
    assert!(
        !state.values().any(|id| *id == topic),
        "X's topic in R's state"
    );
    for id in [&topic, &said] {
        assert!(!a.rooms()[&r].contains(id), "X's event {id} taken into R");
        assert!(
            a.reads().event(id).unwrap().is_none(),
            "X's event {id} stored"
        );
    }
}
