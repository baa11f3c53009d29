//! Building events for the room tests: server "a" signs (the room does not check signatures),
//! on top of the room's extremities and current state.
#![allow(clippy::unwrap_used)]

use crate::canonical::{parse_object, Object, ParseOptions};
use crate::event::{build_event, BuiltEvent, EventRef, EventTemplate};
use crate::keys::SigningKey;
use crate::pdu::{PduCheck, Verdict};
use crate::{RoomVersion, Timestamp};

use super::{Room, RoomVerdict};

/// A check that accepted `ev` (signatures and hash are not what these tests are about).
pub(crate) fn accepted(ev: Object, id: &str) -> PduCheck {
    PduCheck {
        event_id: Some(id.to_owned()),
        signatures: Vec::new(),
        content_hash_ok: Some(true),
        verdict: Verdict::Accepted,
        event: Some(ev),
    }
}

/// Builds an event of room `!r:a` (`content` as JSON) on what the room sits on, with its
/// accepted check; not yet received.
pub(crate) fn build(
    room: &Room,
    ty: &str,
    sender: &str,
    state_key: Option<&str>,
    content: &str,
    redacts: Option<&str>,
    ts: u64,
) -> (BuiltEvent, PduCheck) {
    let t = template(ty, sender, state_key, content, redacts);
    build_from(&room.build_on().0, room, &t, ts)
}

/// [`build`] with the prev events taken from `prev_room`'s extremities and the auth events from
/// `state_room`'s current state: an event whose auth events are not those of the state before
/// it.
pub(crate) fn build_split(
    prev_room: &Room,
    state_room: &Room,
    ty: &str,
    sender: &str,
    state_key: Option<&str>,
    content: &str,
    ts: u64,
) -> (BuiltEvent, PduCheck) {
    let t = template(ty, sender, state_key, content, None);
    build_from(&prev_room.build_on().0, state_room, &t, ts)
}

/// A message of `sender` citing `prevs` (events `refs_room` knows) as its prev events, with
/// its auth events from `state_room`'s current state.
pub(crate) fn build_citing(
    refs_room: &Room,
    prevs: &[&str],
    state_room: &Room,
    sender: &str,
    body: &str,
) -> (BuiltEvent, PduCheck) {
    let prev: Vec<EventRef> = prevs
        .iter()
        .map(|p| refs_room.event_ref(p).unwrap())
        .collect();
    let content = format!(r#"{{"body":"{body}"}}"#);
    let t = template("m.room.message", sender, None, &content, None);
    build_from(&prev, state_room, &t, 9)
}

fn template(
    ty: &str,
    sender: &str,
    state_key: Option<&str>,
    content: &str,
    redacts: Option<&str>,
) -> EventTemplate {
    EventTemplate {
        room_id: Some("!r:a".into()),
        event_type: ty.into(),
        sender: sender.into(),
        state_key: state_key.map(str::to_owned),
        content: parse_object(content.as_bytes(), &ParseOptions::STRICT).unwrap(),
        redacts: redacts.map(str::to_owned),
    }
}

fn build_from(
    prev: &[EventRef],
    state_room: &Room,
    t: &EventTemplate,
    ts: u64,
) -> (BuiltEvent, PduCheck) {
    let key =
        SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
    let (_, state) = state_room.build_on();
    let b = build_event(
        state_room.version(),
        "a",
        t,
        prev,
        &state,
        Timestamp(ts),
        &key,
        None,
    )
    .unwrap();
    let check = accepted(b.pdu.clone(), &b.event_id);
    (b, check)
}

pub(crate) const JOIN: &str = r#"{"membership":"join"}"#;

/// Builds an event on `room` and receives it there.
pub(crate) fn send(
    room: &mut Room,
    ty: &str,
    sender: &str,
    sk: Option<&str>,
    content: &str,
) -> (BuiltEvent, PduCheck) {
    let (b, c) = build(room, ty, sender, sk, content, None, 1);
    assert_eq!(
        room.receive(&c),
        RoomVerdict::Accepted,
        "{ty} on its own room"
    );
    (b, c)
}

/// A public room of `@u:a` (create, join, power levels, join rules), with its checks.
pub(crate) fn public_room() -> (Room, Vec<PduCheck>) {
    let mut a = Room::new(RoomVersion::get("10").unwrap());
    let checks = [
        (
            "m.room.create",
            "",
            r#"{"creator":"@u:a","room_version":"10"}"#,
        ),
        ("m.room.member", "@u:a", JOIN),
        ("m.room.power_levels", "", r#"{"users":{"@u:a":100}}"#),
        ("m.room.join_rules", "", r#"{"join_rule":"public"}"#),
    ]
    .into_iter()
    .map(|(ty, sk, c)| send(&mut a, ty, "@u:a", Some(sk), c).1)
    .collect();
    (a, checks)
}

/// A room that received `checks` in order.
pub(crate) fn received(checks: &[PduCheck]) -> Room {
    let mut b = Room::new(RoomVersion::get("10").unwrap());
    for c in checks {
        assert_eq!(b.receive(c), RoomVerdict::Accepted);
    }
    b
}
