//! Building a new PDU to send: `prev_events` from the forward extremities, `auth_events` by the
//! selection algorithm, `depth`, then content hash and signature (DIGEST §10.1).

use std::collections::BTreeMap;

use crate::canonical::{Int, Object, Value, MAX_SAFE_INT};
use crate::keys::SigningKey;
use crate::pdu::MAX_PREV_EVENTS;
use crate::room_version::RoomVersion;
use crate::time::Timestamp;

use super::{event_id, hash_and_sign_event, room_id_from_create, EventError};

/// An event the caller knows of: its ID, depth, and (for room versions 1–2, whose references
/// carry hashes) its reference hash in unpadded base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    /// The event ID.
    pub event_id: String,
    /// The event's depth.
    pub depth: i64,
    /// Its reference hash, for v1–2 `[event_id, {"sha256": …}]` references.
    pub sha256: Option<String>,
}

/// The room's current state as the caller knows it: `(type, state_key)` → event.
pub type StateMap = BTreeMap<(String, String), EventRef>;

/// What the sender wants to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTemplate {
    /// The room; `None` only for a room version 12 `m.room.create`.
    pub room_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The sending user.
    pub sender: String,
    /// `Some` for state events.
    pub state_key: Option<String>,
    /// The content.
    pub content: Object,
    /// For `m.room.redaction`: the event redacted (top-level before v11, in content from v11).
    pub redacts: Option<String>,
}

/// The `(type, state_key)` pairs a new event must cite in `auth_events`, by the spec's selection
/// algorithm: create (v1–11 only), power levels, the sender's membership; and for membership
/// events the target's membership, join rules (join/invite/knock), the third-party invite for a
/// third-party invite, and the authorising user's membership for a restricted join (v8+).
pub fn auth_types(t: &EventTemplate, v: &RoomVersion) -> Vec<(String, String)> {
    if t.event_type == "m.room.create" {
        return Vec::new();
    }
    let pair = |ty: &str, sk: &str| (ty.to_owned(), sk.to_owned());
    let mut out = Vec::new();
    if !v.room_id_from_create_event {
        out.push(pair("m.room.create", ""));
    }
    out.push(pair("m.room.power_levels", ""));
    out.push(pair("m.room.member", &t.sender));
    if t.event_type == "m.room.member" {
        if let Some(target) = &t.state_key {
            out.push(pair("m.room.member", target));
        }
        let membership = t.content.get_str("membership");
        if matches!(membership, Some("join" | "invite" | "knock")) {
            out.push(pair("m.room.join_rules", ""));
        }
        if membership == Some("invite") {
            let token = t
                .content
                .get_object("third_party_invite")
                .and_then(|i| i.get_object("signed"))
                .and_then(|s| s.get_str("token"));
            if let Some(token) = token {
                out.push(pair("m.room.third_party_invite", token));
            }
        }
        if v.restricted_join_rule && membership == Some("join") {
            if let Some(via) = t.content.get_str("join_authorised_via_users_server") {
                out.push(pair("m.room.member", via));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn reference(r: &EventRef, v: &RoomVersion) -> Value {
    if v.event_refs_with_hashes {
        let mut hashes = Object::new();
        if let Some(h) = &r.sha256 {
            hashes.insert("sha256", h.as_str());
        }
        Value::Array(vec![
            Value::from(r.event_id.as_str()),
            Value::Object(hashes),
        ])
    } else {
        Value::from(r.event_id.as_str())
    }
}

/// A built, hashed and signed PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltEvent {
    /// Its event ID.
    pub event_id: String,
    /// Its room ID (computed, for a v12 create event).
    pub room_id: String,
    /// The PDU as sent.
    pub pdu: Object,
}

/// Builds, hashes and signs a new PDU.
///
/// `prev` are the room's forward extremities: the 20 deepest are cited. `state` is the current
/// state, from which `auth_events` are selected. `event_id_localpart` is needed only for room
/// versions 1–2, whose IDs the sender chooses (`$localpart:origin`): the caller draws it.
///
/// # Errors
/// [`EventError::MissingField`] for a missing room ID (except v12 create) or a v1–2 event
/// without `event_id_localpart`; signing errors.
#[allow(clippy::too_many_arguments)]
pub fn build_event(
    v: &RoomVersion,
    origin: &str,
    template: &EventTemplate,
    prev: &[EventRef],
    state: &StateMap,
    origin_server_ts: Timestamp,
    key: &SigningKey,
    event_id_localpart: Option<&str>,
) -> Result<BuiltEvent, EventError> {
    let is_v12_create = v.room_id_from_create_event && template.event_type == "m.room.create";
    let mut prev: Vec<&EventRef> = prev.iter().collect();
    prev.sort_by(|a, b| {
        b.depth
            .cmp(&a.depth)
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    prev.truncate(MAX_PREV_EVENTS);
    let depth = prev
        .iter()
        .map(|p| p.depth)
        .max()
        .map_or(1, |d| d.saturating_add(1).min(MAX_SAFE_INT));
    let auth: Vec<&EventRef> = auth_types(template, v)
        .iter()
        .filter_map(|k| state.get(k))
        .collect();

    let mut ev = Object::new();
    ev.insert("type", template.event_type.as_str());
    ev.insert("sender", template.sender.as_str());
    ev.insert("content", template.content.clone());
    if let Some(sk) = &template.state_key {
        ev.insert("state_key", sk.as_str());
    }
    if !is_v12_create {
        let room = template
            .room_id
            .as_deref()
            .ok_or(EventError::MissingField { field: "room_id" })?;
        ev.insert("room_id", room);
    }
    if let Some(r) = &template.redacts {
        if v.redacts_in_content {
            if let Some(Value::Object(c)) = ev.get_mut("content") {
                c.insert("redacts", r.as_str());
            }
        } else {
            ev.insert("redacts", r.as_str());
        }
    }
    ev.insert(
        "prev_events",
        Value::Array(prev.iter().map(|r| reference(r, v)).collect()),
    );
    ev.insert(
        "auth_events",
        Value::Array(auth.iter().map(|r| reference(r, v)).collect()),
    );
    ev.insert("depth", Int::saturating(depth));
    ev.insert(
        "origin_server_ts",
        Int::saturating(origin_server_ts.as_i64()),
    );
    if v.event_id_format == crate::room_version::EventIdFormat::Explicit {
        let local = event_id_localpart.ok_or(EventError::MissingField { field: "event_id" })?;
        ev.insert("event_id", format!("${local}:{origin}"));
    }
    hash_and_sign_event(&mut ev, v, origin, key)?;
    let event_id = event_id(&ev, v)?;
    let room_id = if is_v12_create {
        room_id_from_create(&ev, v)?
    } else {
        ev.get_str("room_id").unwrap_or_default().to_owned()
    };
    Ok(BuiltEvent {
        event_id,
        room_id,
        pdu: ev,
    })
}
