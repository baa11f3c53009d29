//! Building events for the room tests: server "a" signs (the room does not check signatures),
//! on top of the room's extremities and current state.
#![allow(clippy::unwrap_used)]

use crate::canonical::{parse_object, Object, ParseOptions};
use crate::event::{build_event, BuiltEvent, EventTemplate};
use crate::keys::SigningKey;
use crate::pdu::{PduCheck, Verdict};
use crate::Timestamp;

use super::Room;

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
    build_from(room, room, &t, ts)
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
    build_from(prev_room, state_room, &t, ts)
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
    prev_room: &Room,
    state_room: &Room,
    t: &EventTemplate,
    ts: u64,
) -> (BuiltEvent, PduCheck) {
    let key =
        SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
    let (prev, _) = prev_room.build_on();
    let (_, state) = state_room.build_on();
    let b = build_event(
        prev_room.version(),
        "a",
        t,
        &prev,
        &state,
        Timestamp(ts),
        &key,
        None,
    )
    .unwrap();
    let check = accepted(b.pdu.clone(), &b.event_id);
    (b, check)
}
