//! Other servers' keys through a trusted notary (`[[federation.trusted_notaries]]`): a server
//! that cannot reach a peer's own key endpoint asks the notary (`POST /_matrix/key/v2/query`),
//! takes the answer only when the notary's signature verifies with the key configured for it,
//! caches it and keeps it across a restart. The notary is a real `mxfed` on a loopback socket;
//! the server asking is driven through its router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mxfed_core::canonical::Int;
use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys::build_server_keys;
use mxfed_native::server::serve::{prepare, ServeArgs};
use mxfed_native::server::{app, now, AppState};
use tower::ServiceExt as _;

use common::free_port;
use common::inproc::{signed, start};

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
