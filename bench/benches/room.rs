//! `Room::receive_checked` of a chain of room version 10 `m.room.message` PDUs (checks 4–6 and
//! the take-in: the auth rules against the event's auth events, the state before it and the
//! current state, the forward extremities, compaction of the event it extends), as the server
//! takes in a transaction's events once their signatures are checked. Four senders, history
//! compaction on (as `mxfed serve` runs it). Each timed event goes into a room that holds the
//! events before it in the chain (up to `CHAIN` messages; the room is rebuilt, untimed, when the
//! chain runs out).
//!
//! `room/check_join` and `room/clone_and_receive_join`: the verdict on a join of another
//! server's user, in a room holding the whole chain, by `Room::check` and by receiving the join
//! into a copy of the room (what answering `make_join` cost before `Room::check`).
//!
//! Run: `cargo bench -p mxfed-bench --bench room -- --warm-up-time 1 --measurement-time 3`.
// A benchmark aborts loudly on a broken setup; the workspace's no-unwrap rule is for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mxfed_core::auth::Pdu;
use mxfed_core::canonical::{parse_object, ParseOptions};
use mxfed_core::event::{build_event, EventTemplate};
use mxfed_core::keys::SigningKey;
use mxfed_core::pdu::{PduCheck, Verdict};
use mxfed_core::room::{Room, RoomVerdict};
use mxfed_core::{RoomVersion, Timestamp};

/// Messages in the chain.
const CHAIN: usize = 20_000;

/// The room's first events (create, the creator's join, power levels, join rules, three more
/// joins) and a chain of messages on top of them, each built on the room as it is then.
fn fixture() -> (Vec<Pdu>, Vec<Pdu>, Room) {
    let v = RoomVersion::get("10").unwrap();
    let key =
        SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
    let mut room = Room::new(v);
    room.set_compact_history(true);
    let mut ts = 1_000;
    let mut add = |room: &mut Room, ty: &str, sender: &str, sk: Option<&str>, content: &str| {
        let t = EventTemplate {
            room_id: Some("!bench:a.example".into()),
            event_type: ty.into(),
            sender: sender.into(),
            state_key: sk.map(str::to_owned),
            content: parse_object(content.as_bytes(), &ParseOptions::STRICT).unwrap(),
            redacts: None,
        };
        let (prev, state) = room.build_on_for(&t);
        ts += 1;
        let b = build_event(v, "a.example", &t, &prev, &state, Timestamp(ts), &key, None).unwrap();
        let pdu = Pdu {
            event_id: b.event_id,
            event: b.pdu,
            room_version: v,
        };
        assert_eq!(
            room.receive_checked(pdu.clone(), &Verdict::Accepted),
            RoomVerdict::Accepted
        );
        pdu
    };
    let creator = "@u0:a.example";
    let mut first = vec![
        add(
            &mut room,
            "m.room.create",
            creator,
            Some(""),
            r#"{"creator":"@u0:a.example","room_version":"10"}"#,
        ),
        add(
            &mut room,
            "m.room.member",
            creator,
            Some(creator),
            r#"{"membership":"join"}"#,
        ),
        add(
            &mut room,
            "m.room.power_levels",
            creator,
            Some(""),
            r#"{"users":{"@u0:a.example":100}}"#,
        ),
        add(
            &mut room,
            "m.room.join_rules",
            creator,
            Some(""),
            r#"{"join_rule":"public"}"#,
        ),
    ];
    for i in 1..4 {
        let u = format!("@u{i}:a.example");
        first.push(add(
            &mut room,
            "m.room.member",
            &u,
            Some(&u),
            r#"{"membership":"join"}"#,
        ));
    }
    let words = "ingest benchmark line with some ordinary chat text";
    let chain: Vec<Pdu> = (0..CHAIN)
        .map(|i| {
            let sender = format!("@u{}:a.example", i % 4);
            let content = format!(
                r#"{{"body":"[{i}] {words}; {words}; {words}.","format":"org.matrix.custom.html","formatted_body":"<p><b>[{i}]</b> {words}; <i>{words}</i>; <code>{words}</code>.</p>","msgtype":"m.text"}}"#
            );
            add(&mut room, "m.room.message", &sender, None, &content)
        })
        .collect();
    (first, chain, room)
}

/// A join of a user of another server to `room`, built on it and not taken in: what a resident
/// server checks before it answers `make_join` (and again at `send_join`).
fn join_check(room: &Room) -> PduCheck {
    let v = room.version();
    let key =
        SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
    let joiner = "@new:b.example";
    let t = EventTemplate {
        room_id: Some("!bench:a.example".into()),
        event_type: "m.room.member".into(),
        sender: joiner.into(),
        state_key: Some(joiner.into()),
        content: parse_object(br#"{"membership":"join"}"#, &ParseOptions::STRICT).unwrap(),
        redacts: None,
    };
    let (prev, state) = room.build_on_for(&t);
    let b = build_event(
        v,
        "b.example",
        &t,
        &prev,
        &state,
        Timestamp(9_999_999),
        &key,
        None,
    )
    .unwrap();
    PduCheck {
        event_id: Some(b.event_id),
        signatures: Vec::new(),
        content_hash_ok: Some(true),
        verdict: Verdict::Accepted,
        event: Some(b.pdu),
    }
}

/// A room holding `first`, compaction on.
fn room_with(first: &[Pdu]) -> Room {
    let mut room = Room::new(RoomVersion::get("10").unwrap());
    room.set_compact_history(true);
    for p in first {
        room.receive_checked(p.clone(), &Verdict::Accepted);
    }
    room
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let (first, chain, full) = fixture();
    let mut g = c.benchmark_group("room");
    g.throughput(Throughput::Elements(1));
    g.bench_function("receive_message", |b| {
        // Where the last measurement stopped: each batch goes on along the chain.
        let mut at = 0;
        let mut room = room_with(&first);
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                if at == chain.len() {
                    at = 0;
                    room = room_with(&first);
                }
                let pdu = chain[at].clone();
                let t = Instant::now();
                let verdict = room.receive_checked(pdu, &Verdict::Accepted);
                took += t.elapsed();
                assert_eq!(verdict, RoomVerdict::Accepted);
                at += 1;
            }
            took
        });
    });
    // `make_join` on a room of `CHAIN` messages: the verdict the join would get, by
    // `Room::check` (the server's way since the tenth session) and by taking it into a copy of
    // the room (the way before it).
    let join = join_check(&full);
    assert_eq!(full.check(&join), RoomVerdict::Accepted);
    g.bench_function("check_join", |b| b.iter(|| full.check(&join)));
    g.sample_size(10);
    g.bench_function("clone_and_receive_join", |b| {
        b.iter(|| full.clone().receive(&join));
    });
    g.finish();
    c.final_summary();
}
