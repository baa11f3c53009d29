//! The harness the server integration tests share: `process` runs `mxfed serve --dev` as child
//! processes and drives them with `mxfed admin`; `inproc` runs servers inside the test (TLS on
//! real loopback sockets) and drives them through the library.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

pub mod inproc;
pub mod mutate;
pub mod process;

use std::sync::Arc;

use mxfed_native::server::AppState;

/// A request to `state`'s admin API (its router, no socket) with the admin token, and a JSON
/// body if given: the status and the body's bytes.
pub async fn admin_request(
    state: &Arc<AppState>,
    method: &str,
    uri: &str,
    body: Option<&serde_json::Value>,
) -> (axum::http::StatusCode, Vec<u8>) {
    use tower::ServiceExt as _;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", state.admin_token))
        .header("content-type", "application/json")
        .body(body.map_or_else(axum::body::Body::empty, |b| {
            axum::body::Body::from(b.to_string())
        }))
        .unwrap();
    let resp = mxfed_native::server::metrics::admin_app(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
