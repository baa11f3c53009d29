//! Other servers' keys through a trusted notary (`[[federation.trusted_notaries]]`): a server
//! that cannot reach a peer's own key endpoint asks the notary (`POST /_matrix/key/v2/query`),
//! takes the answer only when the notary's signature verifies with the key configured for it,
//! caches it and keeps it across a restart; notary queries name the keys and validity needed,
//! and are made when a peer's own answer lacks the key needed. The notary and the peers are real
//! `mxfed` servers on loopback sockets; the server asking is driven through its router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mxfed_core::canonical::Int;
use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys::build_server_keys;
use mxfed_native::server::serve::{prepare, ServeArgs};
use mxfed_native::server::{app, now, AppState};
use tower::ServiceExt as _;

use common::free_port;
use common::inproc::{signed, start, start_with};

const ME: &str = "a.test";

fn peer_key() -> SigningKey {
    SigningKey::from_seed("p1", &[5u8; 32]).unwrap()
}

/// A `--dev` server named [`ME`] under `dir` trusting one notary with the given key.
fn server_trusting(dir: &Path, notary: &str, key_id: &str, key: &str) -> Arc<AppState> {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("mxfed.toml");
    std::fs::write(
        &config,
        format!(
            "server_name = \"{ME}\"\n\n[[federation.trusted_notaries]]\nserver_name = \"{notary}\"\n\
             verify_keys = {{ \"{key_id}\" = \"{key}\" }}\n"
        ),
    )
    .unwrap();
    let args = ServeArgs {
        config: Some(config),
        data_dir: Some(dir.join("data")),
        server_name: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
    };
    prepare(&args).unwrap().state
}

/// A request of `peer`'s that needs its key: a profile query (answered 404 for an unknown user
/// once the signature verifies, 401 when it cannot be checked).
async fn profile_query(state: &Arc<AppState>, peer: &str) -> (StatusCode, String) {
    let uri = "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Aa.test";
    let req: Request<Body> = signed("GET", uri, None, peer, ME, &peer_key());
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_through_a_trusted_notary() {
    let dir = tempfile::tempdir().unwrap();
    // The peer's name points at a closed loopback port: its own key endpoint cannot be reached.
    let peer = format!("localhost:{}", free_port());
    // The notary has the peer's keys (as if it had fetched them while the peer was up).
    let notary = start(&dir.path().join("notary"));
    let peer_keys = build_server_keys(
        &peer,
        std::slice::from_ref(&peer_key()),
        &[],
        Int::new(now().as_i64() + 86_400_000).unwrap(),
    )
    .unwrap();
    notary
        .key_cache()
        .insert(peer_keys, Some(&peer), now())
        .unwrap();
    let nk = &notary.keys[0];
    let (nk_id, nk_b64) = (nk.key_id().as_str(), nk.verify_key().to_base64());

    // A server that trusts the notary with its real key gets the peer's key through it.
    let a_dir = dir.path().join("a");
    let a = server_trusting(&a_dir, &notary.server_name, nk_id, &nk_b64);
    assert!(a.key_cache().response(&peer).is_none());
    let (status, body) = profile_query(&a, &peer).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("M_NOT_FOUND"), "{body}");
    let cached = a.key_cache().response(&peer).cloned().unwrap();
    assert_eq!(
        cached
            .get_object("verify_keys")
            .and_then(|k| k.get_object("ed25519:p1"))
            .and_then(|k| k.get_str("key")),
        Some(peer_key().verify_key().to_base64().as_str())
    );
    // Cached in the database: after a restart the peer's requests verify with the notary gone.
    drop(a);
    let a = server_trusting(&a_dir, "localhost:1", nk_id, &nk_b64);
    assert!(a.key_cache().response(&peer).is_some());
    assert_eq!(profile_query(&a, &peer).await.0, StatusCode::NOT_FOUND);

    // A server that trusts the notary under another key refuses its answer: nothing cached, and
    // the request cannot be authenticated.
    let wrong = SigningKey::from_seed(nk_id.trim_start_matches("ed25519:"), &[6u8; 32]).unwrap();
    let b = server_trusting(
        &dir.path().join("b"),
        &notary.server_name,
        nk_id,
        &wrong.verify_key().to_base64(),
    );
    let (status, body) = profile_query(&b, &peer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("M_UNAUTHORIZED"), "{body}");
    assert!(b.key_cache().response(&peer).is_none());
}

/// The bodies of the `POST /_matrix/key/v2/query` requests a notary wrapped by
/// [`record_key_queries`] received.
static QUERIES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_key_queries(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(record))
}

async fn record(req: Request<Body>, next: axum::middleware::Next) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if parts.method == "POST" && parts.uri.path() == "/_matrix/key/v2/query" {
        QUERIES
            .lock()
            .unwrap()
            .push(String::from_utf8(bytes.to_vec()).unwrap());
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A key response of `server` with [`peer_key`], valid for a day less a second from now.
fn peer_keys_of(server: &str) -> mxfed_core::canonical::Object {
    build_server_keys(
        server,
        std::slice::from_ref(&peer_key()),
        &[],
        Int::new(now().as_i64() + 86_400_000 - 1000).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notaries_are_asked_for_the_key_needed_when_the_direct_answer_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    // The peer is up, but its own answer lists its own key, not the one its request is signed
    // with (ed25519:p1); the notary has that one.
    let peer = start(&dir.path().join("peer"));
    let notary = start_with(&dir.path().join("notary"), record_key_queries);
    notary
        .key_cache()
        .insert(
            peer_keys_of(&peer.server_name),
            Some(&peer.server_name),
            now(),
        )
        .unwrap();
    let nk = &notary.keys[0];
    let a = server_trusting(
        &dir.path().join("a"),
        &notary.server_name,
        nk.key_id().as_str(),
        &nk.verify_key().to_base64(),
    );
    let before = now().as_i64();
    let (status, body) = profile_query(&a, &peer.server_name).await;
    let after = now().as_i64();
    // Authenticated: the direct answer verified, lacked ed25519:p1, and the notary was asked.
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let ring = a.key_cache().key_ring().clone();
    let known = ring.server(&peer.server_name).unwrap();
    assert!(
        known.contains_key(peer.keys[0].key_id()),
        "the direct answer was kept"
    );
    assert!(known.contains_key(peer_key().key_id()));
    // The query named the key needed and the validity needed (now, for a request).
    let queries = QUERIES.lock().unwrap().clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    let q = mxfed_core::canonical::parse_object(
        queries[0].as_bytes(),
        &mxfed_core::canonical::ParseOptions::STRICT,
    )
    .unwrap();
    let criteria = q
        .get_object("server_keys")
        .and_then(|s| s.get_object(&peer.server_name))
        .unwrap();
    assert_eq!(criteria.keys().collect::<Vec<_>>(), ["ed25519:p1"]);
    let min = criteria
        .get_object("ed25519:p1")
        .and_then(|c| c.get("minimum_valid_until_ts"))
        .and_then(mxfed_core::canonical::Value::as_int)
        .unwrap();
    assert!(
        (before..=after).contains(&min),
        "{before} <= {min} <= {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_notary_query_honours_minimum_valid_until_ts() {
    let dir = tempfile::tempdir().unwrap();
    let peer = start(&dir.path().join("peer"));
    let notary = start(&dir.path().join("notary"));
    // The notary holds a response for the peer (with ed25519:p1) valid for a day.
    notary
        .key_cache()
        .insert(
            peer_keys_of(&peer.server_name),
            Some(&peer.server_name),
            now(),
        )
        .unwrap();
    let query = |q: String| {
        let notary = notary.clone();
        async move {
            let req = Request::builder().uri(q).body(Body::empty()).unwrap();
            let resp = app(notary).oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let path = format!("/_matrix/key/v2/query/{}", peer.server_name);
    let own_key = peer.keys[0].key_id().as_str().to_owned();
    // Valid long enough for now: served from the cache.
    let (status, body) = query(path.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("ed25519:p1") && !body.contains(&own_key),
        "{body}"
    );
    let (_, body) = query(format!("{path}?minimum_valid_until_ts={}", now().as_i64())).await;
    assert!(
        body.contains("ed25519:p1") && !body.contains(&own_key),
        "{body}"
    );
    // Asked to be valid for two days: refetched from the peer, whose own answer (valid a
    // little longer) replaces it.
    let two_days = now().as_i64() + 2 * 86_400_000;
    let (status, body) = query(format!("{path}?minimum_valid_until_ts={two_days}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(&own_key) && !body.contains("ed25519:p1"),
        "{body}"
    );
    // Not an integer: a Matrix error.
    let (status, body) = query(format!("{path}?minimum_valid_until_ts=soon")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("M_INVALID_PARAM"), "{body}");
}
