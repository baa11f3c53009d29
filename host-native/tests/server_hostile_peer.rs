//! A peer that answers with garbage: B's every JSON answer (make_join templates, send_join
//! states and auth chains, server keys, missing events, state) has one to three changes of the
//! kinds `common::mutate` makes, while A joins B's room and fills a gap from B. A never panics,
//! never blames itself (no 500: a bad answer is the remote's fault), and once B answers
//! honestly again A joins, fills the gap and keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Body;
use axum::response::Response;
use mxfed_core::canonical::{parse_object, ParseOptions};
use mxfed_native::server::rooms;

use common::inproc::{gap, message, two_servers, until};
use common::mutate::{mutated, Rng};

/// Whether B garbles its answers now, and the seed of the next garbling.
static HOSTILE: AtomicBool = AtomicBool::new(false);
static SEED: AtomicU64 = AtomicU64::new(0x00de_ad5e_ed01);

fn hostile(r: axum::Router) -> axum::Router {
    r.layer(axum::middleware::map_response(garble))
}

async fn garble(resp: Response) -> Response {
    if !HOSTILE.load(Ordering::SeqCst) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let Ok(answer) = parse_object(&bytes, &ParseOptions::LEGACY) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut rng = Rng(SEED.fetch_add(0x9e37_79b9, Ordering::SeqCst) | 1);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let garbled = mutated(&answer, &mut rng).to_canonical_string();
    Response::from_parts(parts, Body::from(garbled))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_answers_of_a_peer_are_refused_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, alice, bob) = two_servers(dir.path(), hostile, None);
    let room = rooms::create_room(&b, &bob, "10").unwrap();
    {
        let _g = b.lock_room(&room).await;
        let rules = parse_object(br#"{"join_rule":"public"}"#, &ParseOptions::STRICT).unwrap();
        rooms::send_event(&b, &room, &bob, "m.room.join_rules", Some(""), rules, None).unwrap();
    }

    // Joins through a hostile B: refused (or, when the change hit nothing that matters,
    // joined), never a panic, never our own fault.
    HOSTILE.store(true, Ordering::SeqCst);
    let mut refused = std::collections::BTreeMap::new();
    let mut joined = false;
    for _ in 0..30 {
        match rooms::remote_membership(&a, &room, &alice, &b.server_name, "join").await {
            Ok(_) => {
                joined = true;
                break;
            }
            Err(e) => {
                assert_ne!(e.status, 500, "a garbled answer is not our fault: {e:?}");
                *refused.entry((e.status, e.errcode)).or_insert(0) += 1;
            }
        }
    }
    eprintln!("joins refused: {refused:?}, then joined: {joined}");
    assert!(!refused.is_empty(), "the garbling never mattered");

    // B honest again: the join goes through.
    HOSTILE.store(false, Ordering::SeqCst);
    if !joined {
        rooms::remote_membership(&a, &room, &alice, &b.server_name, "join")
            .await
            .unwrap();
    }
    until(&b, "alice joined on B", |s| {
        s.rooms()[&room].membership(&alice).as_deref() == Some("join")
    })
    .await;

    // A gap filled from a hostile B, then from an honest one.
    HOSTILE.store(true, Ordering::SeqCst);
    gap(&b, &room, &bob, 4).await;
    // A's attempts at the gap meet garbled answers meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    HOSTILE.store(false, Ordering::SeqCst);
    let last = gap(&b, &room, &bob, 3).await.pop().unwrap();
    until(&a, "the gap filled once B is honest", |s| {
        let rooms = s.rooms();
        rooms[&room].contains(&last) && !rooms[&room].is_outlier(&last)
    })
    .await;

    // A still works: alice's message reaches B.
    let sent = {
        let _g = a.lock_room(&room).await;
        rooms::send_local(&a, &room, message(&room, &alice, "after")).unwrap()
    };
    until(&b, "alice's message on B", |s| {
        s.rooms()[&room].contains(&sent)
    })
    .await;
}
