//! Our side of a membership handshake (DIGEST §18.1–§18.2): the event template a resident
//! server answers `make_join`, `make_leave` or `make_knock` with, checked and completed into the
//! signed membership event we send back with `send_join`, `send_leave` or `send_knock`.

use crate::canonical::{Int, Object, Value};
use crate::keys::SigningKey;
use crate::pdu::{check_format, required_signers, PduError};
use crate::room_version::{EventIdFormat, RoomVersion, UnknownRoomVersion};
use crate::time::Timestamp;

use super::{event_id, hash_and_sign_event, BuiltEvent, EventError};

/// What we ask a resident server for, and what we add to its template.
#[derive(Debug, Clone, Copy)]
pub struct MembershipRequest<'a> {
    /// The room.
    pub room_id: &'a str,
    /// Our user whose membership it is: the event's sender and state key.
    pub user_id: &'a str,
    /// `join`, `leave` or `knock`.
    pub membership: &'a str,
    /// Our server name: the event's `origin` and the signer.
    pub origin: &'a str,
    /// Keys the template's content does not have yet (a display name, say); `membership` and
    /// the resident's keys (`join_authorised_via_users_server`) are kept as they are.
    pub content: Option<&'a Object>,
    /// The event's `origin_server_ts`.
    pub now: Timestamp,
    /// For room versions 1–2, whose event IDs the sender chooses (`$localpart:origin`): the
    /// caller draws it.
    pub event_id_localpart: Option<&'a str>,
}

/// Why a `make_*` answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// We only ever ask for `join`, `leave` or `knock`.
    #[error("no handshake for membership {0:?} (join, leave or knock)")]
    BadMembership(String),
    /// The answer has no `event` object.
    #[error("the answer has no `event` object")]
    NoEvent,
    /// The template is not the event asked for (the spec says to discard it).
    #[error("the template's `{field}` is not the one asked for")]
    NotAsked {
        /// The field that differs.
        field: &'static str,
    },
    /// The room version has no knocking (versions 1–6).
    #[error("room version {0} has no knocking")]
    NoKnock(&'static str),
    /// The answer's `room_version` is unknown.
    #[error(transparent)]
    RoomVersion(#[from] UnknownRoomVersion),
    /// The completed event breaks the format rules other servers apply (too large, say).
    #[error(transparent)]
    Format(#[from] PduError),
    /// Hashing or signing failed.
    #[error(transparent)]
    Event(#[from] EventError),
}

impl TemplateError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            TemplateError::BadMembership(_) => "template_bad_membership",
            TemplateError::NoEvent => "template_no_event",
            TemplateError::NotAsked { .. } => "template_not_asked",
            TemplateError::NoKnock(_) => "template_no_knock",
            TemplateError::RoomVersion(e) => e.code(),
            TemplateError::Format(e) => e.code(),
            TemplateError::Event(e) => e.code(),
        }
    }
}

/// What every host prints or returns for a completed template:
/// `{"event_id", "room_version", "event"}` (the event to send with `send_*`).
pub fn membership_json(built: BuiltEvent, v: &RoomVersion) -> Object {
    let mut out = Object::new();
    out.insert("event_id", built.event_id);
    out.insert("room_version", v.id);
    out.insert("event", built.pdu);
    out
}

/// Checks a `make_join`, `make_leave` or `make_knock` answer (`{"room_version", "event"}`) and
/// completes its template into our signed membership event.
///
/// The template must be the event asked for: `room_id`, sender and state key `user_id`, type
/// `m.room.member`, `content.membership` the membership asked for; otherwise it is refused, as
/// the spec says. A missing `room_version` means version 1 (as Synapse reads it). The resident's
/// `prev_events`, `auth_events`, `depth` and content are kept (a restricted join's
/// `join_authorised_via_users_server` among them), and the request's content keys added where
/// the template has none. `origin` and `origin_server_ts` are set, and for versions 1–2
/// `event_id`; the template's hashes, signatures and `unsigned` are dropped. The event is then
/// hashed, signed, and put through the checks on receipt that come before any signature (the
/// format rules, and the user IDs whose servers must sign), so nothing is signed that other
/// servers would refuse for its shape.
///
/// # Errors
/// [`TemplateError`].
pub fn membership_from_template(
    answer: &Object,
    req: &MembershipRequest<'_>,
    key: &SigningKey,
) -> Result<(BuiltEvent, &'static RoomVersion), TemplateError> {
    if !matches!(req.membership, "join" | "leave" | "knock") {
        return Err(TemplateError::BadMembership(req.membership.to_owned()));
    }
    let v = RoomVersion::get(answer.get_str("room_version").unwrap_or("1"))?;
    if req.membership == "knock" && !v.knock {
        return Err(TemplateError::NoKnock(v.id));
    }
    let mut ev = answer
        .get_object("event")
        .cloned()
        .ok_or(TemplateError::NoEvent)?;
    let asked = [
        ("room_id", ev.get_str("room_id") == Some(req.room_id)),
        ("sender", ev.get_str("sender") == Some(req.user_id)),
        ("state_key", ev.get_str("state_key") == Some(req.user_id)),
        ("type", ev.get_str("type") == Some("m.room.member")),
        (
            "content.membership",
            ev.get_object("content")
                .and_then(|c| c.get_str("membership"))
                == Some(req.membership),
        ),
    ];
    if let Some((field, _)) = asked.iter().find(|(_, ok)| !ok) {
        return Err(TemplateError::NotAsked { field });
    }
    if let (Some(extra), Some(Value::Object(content))) = (req.content, ev.get_mut("content")) {
        for (k, val) in extra.iter() {
            if !content.contains_key(k) {
                content.insert(k, val.clone());
            }
        }
    }
    for k in ["signatures", "hashes", "unsigned"] {
        ev.remove(k);
    }
    ev.insert("origin", req.origin);
    ev.insert("origin_server_ts", Int::saturating(req.now.as_i64()));
    if v.event_id_format == EventIdFormat::Explicit {
        let local = req
            .event_id_localpart
            .ok_or(EventError::MissingField { field: "event_id" })?;
        ev.insert("event_id", format!("${local}:{}", req.origin));
    }
    hash_and_sign_event(&mut ev, v, req.origin, key)?;
    // What the checks on receipt read before any signature (a restricted join's authoriser
    // among them), so that no server refuses it for its shape.
    check_format(&ev, v)?;
    required_signers(&ev, v)?;
    let id = event_id(&ev, v)?;
    Ok((
        BuiltEvent {
            event_id: id,
            room_id: req.room_id.to_owned(),
            pdu: ev,
        },
        v,
    ))
}
