//! How much memory a long-lived [`Room`] keeps per message event: with compact history, a few
//! hundred bytes (its place in the DAG), not the parsed body. Counted by this test binary's
//! allocator, so this file holds one test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use mxfed_core::canonical::{parse_object, ParseOptions};
use mxfed_core::event::{build_event, EventTemplate};
use mxfed_core::keys::SigningKey;
use mxfed_core::pdu::{PduCheck, Verdict};
use mxfed_core::room::Room;
use mxfed_core::{RoomVersion, Timestamp};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn send(room: &mut Room, key: &SigningKey, ty: &str, sk: Option<&str>, content: &str, ts: u64) {
    let t = EventTemplate {
        room_id: Some("!room:a.example".into()),
        event_type: ty.into(),
        sender: "@alice:a.example".into(),
        state_key: sk.map(str::to_owned),
        content: parse_object(content.as_bytes(), &ParseOptions::STRICT).unwrap(),
        redacts: None,
    };
    let (prev, state) = room.build_on_for(&t);
    let b = build_event(
        room.version(),
        "a.example",
        &t,
        &prev,
        &state,
        Timestamp(ts),
        key,
        None,
    )
    .unwrap();
    let check = PduCheck {
        event_id: Some(b.event_id.clone()),
        signatures: Vec::new(),
        content_hash_ok: Some(true),
        verdict: Verdict::Accepted,
        event: Some(b.pdu),
    };
    room.receive(&check);
}

/// Bytes still allocated per message after `n` messages of about 1.2 KB (as the ingest
/// benchmark sends) into a room with a create event, a join, power levels and join rules.
fn bytes_per_message(compact: bool, n: u64) -> isize {
    let v = RoomVersion::get("10").unwrap();
    let key =
        SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
    let mut room = Room::new(v);
    room.set_compact_history(compact);
    let u = "@alice:a.example";
    send(
        &mut room,
        &key,
        "m.room.create",
        Some(""),
        &format!(r#"{{"creator":"{u}","room_version":"10"}}"#),
        1,
    );
    send(
        &mut room,
        &key,
        "m.room.member",
        Some(u),
        r#"{"membership":"join"}"#,
        2,
    );
    send(
        &mut room,
        &key,
        "m.room.power_levels",
        Some(""),
        &format!(r#"{{"users":{{"{u}":100}}}}"#),
        3,
    );
    send(
        &mut room,
        &key,
        "m.room.join_rules",
        Some(""),
        r#"{"join_rule":"public"}"#,
        4,
    );
    let content = format!(r#"{{"msgtype":"m.text","body":"{}"}}"#, "x".repeat(800));
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        send(&mut room, &key, "m.room.message", None, &content, 10 + i);
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(room.forward_extremities().len(), 1);
    (after - before) / n as isize
}

#[test]
fn compact_history_keeps_little_per_message() {
    let full = bytes_per_message(false, 2000);
    let compact = bytes_per_message(true, 2000);
    eprintln!("bytes per message event: {full} with bodies, {compact} compacted");
    assert!(full > 1500, "{full}");
    assert!(compact < 400, "{compact}");
}
