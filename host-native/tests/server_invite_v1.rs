//! The v1 `/invite` fallback: an invitee's server that answers 404 `M_UNRECOGNIZED` to
//! `/v2/invite` gets the invite on `/v1/invite` for room versions 1 and 2 (and the invite is
//! countersigned, stored and joined as usual); for later versions the inviter answers
//! `M_UNSUPPORTED_ROOM_VERSION`. Two in-process servers on loopback, the invitee's router wrapped
//! so that it does not know `/v2/invite`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mxfed_native::server::rooms;
use mxfed_native::server::store::Reads as _;

use common::inproc::{invited_room, two_servers};

async fn no_v2_invite(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req
        .uri()
        .path()
        .starts_with("/_matrix/federation/v2/invite/")
    {
        return common::inproc::unrecognized();
    }
    next.run(req).await
}

fn without_v2_invite(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::from_fn(no_v2_invite))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_falls_back_to_v1_for_old_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), without_v2_invite, None);

    let old = invited_room(&a, &alice, &bob, "2").await;
    let invites = b.reads().invites(&bob).unwrap();
    assert_eq!(invites.len(), 1, "stored through /v1/invite");
    assert!(
        invites[0].event.contains(&format!("\"{}\"", b.server_name)),
        "countersigned"
    );
    assert_eq!(a.rooms()[&old].membership(&bob).as_deref(), Some("invite"));
    rooms::remote_membership(&b, &old, &bob, &a.server_name, "join")
        .await
        .unwrap();
    assert_eq!(a.rooms()[&old].membership(&bob).as_deref(), Some("join"));

    // A version the v1 endpoint cannot carry: refused, and the room is unchanged.
    let new = rooms::create_room(&a, &alice, "10").unwrap();
    let err = {
        let _g = a.lock_room(&new).await;
        rooms::invite_remote(&a, &new, &alice, &bob)
            .await
            .unwrap_err()
    };
    assert!(
        err.to_string().contains("M_UNSUPPORTED_ROOM_VERSION"),
        "{err}"
    );
    assert_eq!(a.rooms()[&new].membership(&bob), None);
}
