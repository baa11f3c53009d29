//! Typing with a timeout through the admin API: a renewal extends the deadline, as Synapse
//! does. Two in-process servers on loopback, B's router recording when A's typing EDUs arrive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use mxfed_core::canonical::{parse_object, ParseOptions, Value};
use tower::ServiceExt as _;

use common::inproc::{joined_public_room, two_servers, until};

/// When B received each typing state from A, in order.
static TYPING: Mutex<Vec<(Instant, bool)>> = Mutex::new(Vec::new());

async fn record_typing(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !req.uri().path().starts_with("/_matrix/federation/v1/send/") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if let Ok(txn) = parse_object(&bytes, &ParseOptions::LEGACY) {
        let edus = txn
            .get("edus")
            .and_then(Value::as_array)
            .unwrap_or_default();
        for edu in edus.iter().filter_map(Value::as_object) {
            if edu.get_str("edu_type") != Some("m.typing") {
                continue;
            }
            if let Some(Value::Bool(on)) = edu.get_object("content").and_then(|c| c.get("typing")) {
                TYPING.lock().unwrap().push((Instant::now(), *on));
            }
        }
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn recording(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(record_typing))
}

fn stops() -> Vec<Instant> {
    let typing = TYPING.lock().unwrap();
    typing
        .iter()
        .filter(|(_, on)| !on)
        .map(|(t, _)| *t)
        .collect()
}

/// alice types with a 1 s timeout and types again (1 s) half a second later: the stop comes a
/// second after the renewal, not a second after the first request, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typing_renewal_extends_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), recording, None);
    let room = joined_public_room(&a, &b, &alice, &bob, "10").await;
    until(&a, "bob joined on A", |s| {
        s.rooms()[&room].membership(&bob).as_deref() == Some("join")
    })
    .await;

    let admin = mxfed_native::server::metrics::admin_app(a.clone());
    let typing = |admin: axum::Router| {
        let uri = format!("/admin/v1/rooms/{room}/typing");
        let token = a.admin_token.clone();
        async move {
            let req = Request::post(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"as":"alice","typing":true,"timeout_ms":1000}"#,
                ))
                .unwrap();
            let resp = admin.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    typing(admin.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let renewed = Instant::now();
    typing(admin.clone()).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while stops().is_empty() {
        assert!(Instant::now() < deadline, "typing never stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The stop is sent a second after the renewal was handled, which is after `renewed`.
    // Before, the first request's timer sent it half a second after the renewal.
    let first_stop = stops()[0];
    assert!(
        first_stop >= renewed + Duration::from_millis(1000),
        "stopped {:?} after the renewal",
        first_stop - renewed
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stops().len(), 1, "one stop");
}
