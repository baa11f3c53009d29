//! Bad input to the admin API and `mxfed admin`: a Matrix `{"errcode","error"}` with the right
//! status over HTTP (the router is called directly, no socket), exit status 2 and one line from
//! the CLI (against a `mxfed serve --dev` process), and nothing stored by a refused request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mxfed_native::server::serve::{prepare, ServeArgs};
use mxfed_native::server::store::Reads as _;
use mxfed_native::server::AppState;
use tower::ServiceExt as _;

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
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", state.admin_token))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = mxfed_native::server::metrics::admin_app(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
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
