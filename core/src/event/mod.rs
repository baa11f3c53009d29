//! Events: content hashes, redaction, reference hashes, event IDs, v12 room IDs,
//! hashing-and-signing of new events ([spec § Signing events], DIGEST §5–§8), and membership
//! events completed from a resident server's template (DIGEST §18).
//!
//! Events are handled as JSON objects ([`Object`]), never round-tripped through typed structs, so
//! unknown keys and legacy numbers survive exactly and hash as the sender hashed them.
//!
//! [spec § Signing events]: https://spec.matrix.org/latest/server-server-api/#signing-events

mod build;
mod redact;
mod template;

use sha2::{Digest, Sha256};

pub use build::{auth_types, build_event, BuiltEvent, EventRef, EventTemplate, StateMap};
pub use redact::{encode_redacted, redact};
pub use template::{membership_from_template, membership_json, MembershipRequest, TemplateError};

use crate::base64;
use crate::canonical::{encode_object_filtered, Object, Value};
use crate::keys::SigningKey;
use crate::room_version::{EventIdFormat, RoomVersion};
use crate::signing::{add_signature, SignatureError};

/// Why an event operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A field the operation needs is missing.
    #[error("event has no `{field}`")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("event field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A v12 room ID was asked of something that is not a v12 create event.
    #[error("room IDs are derived only from the `m.room.create` event of room version 12+")]
    NotV12Create,
    /// Signing failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl EventError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::MissingField { .. } => "event_missing_field",
            EventError::WrongType { .. } => "event_wrong_type",
            EventError::NotV12Create => "event_not_v12_create",
            EventError::Signature(e) => e.code(),
        }
    }
}

/// Top-level keys the content hash leaves out: the spec's three, plus the legacy internal keys
/// Synapse also pops (`age_ts`, `outlier`, `destinations`) so we agree with it byte for byte.
const CONTENT_HASH_STRIP: [&str; 6] = [
    "age_ts",
    "destinations",
    "hashes",
    "outlier",
    "signatures",
    "unsigned",
];

/// The bytes the content hash covers, into a reusable buffer.
pub fn content_hash_bytes_into(ev: &Object, out: &mut Vec<u8>) {
    encode_object_filtered(ev, |k| !CONTENT_HASH_STRIP.contains(&k), out)
}

/// The SHA-256 content hash of the full (unredacted) event.
///
/// ```
/// use mxfed_core::{canonical::{parse_object, ParseOptions}, event::content_hash, base64};
/// let ev = parse_object(br#"{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}"#, &ParseOptions::STRICT).unwrap();
/// assert_eq!(base64::encode(content_hash(&ev)), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
/// ```
pub fn content_hash(ev: &Object) -> [u8; 32] {
    let mut buf = Vec::with_capacity(1024);
    content_hash_bytes_into(ev, &mut buf);
    Sha256::digest(&buf).into()
}

/// The bytes an event's signatures and reference hash cover: the redacted event without
/// `signatures` and `unsigned`, canonical.
pub fn redacted_bytes(ev: &Object, v: &RoomVersion) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    encode_redacted(ev, v, &mut out);
    out
}

/// The SHA-256 reference hash: of the redacted event, `hashes` kept.
pub fn reference_hash(ev: &Object, v: &RoomVersion) -> [u8; 32] {
    Sha256::digest(redacted_bytes(ev, v)).into()
}

/// The event ID for an event hashing to `reference_hash` under `v`'s format (v3+ only).
fn hash_event_id(reference_hash: &[u8; 32], v: &RoomVersion) -> String {
    let b64 = match v.event_id_format {
        EventIdFormat::ReferenceHashStd => base64::encode(reference_hash),
        _ => base64::encode_url_safe(reference_hash),
    };
    format!("${b64}")
}

/// The event's ID: carried in the event for v1–2, its reference hash from v3 on.
///
/// # Errors
/// For v1–2, [`EventError::MissingField`] or [`EventError::WrongType`] when `event_id` is absent
/// or not a string.
pub fn event_id(ev: &Object, v: &RoomVersion) -> Result<String, EventError> {
    match v.event_id_format {
        EventIdFormat::Explicit => match ev.get("event_id") {
            Some(Value::String(id)) => Ok(id.clone()),
            Some(_) => Err(EventError::WrongType {
                field: "event_id",
                expected: "a string",
            }),
            None => Err(EventError::MissingField { field: "event_id" }),
        },
        _ => Ok(hash_event_id(&reference_hash(ev, v), v)),
    }
}

/// A room version 12 room ID: `!` + the create event's ID without its `$`.
///
/// # Errors
/// [`EventError::NotV12Create`] for other versions or event types.
pub fn room_id_from_create(create: &Object, v: &RoomVersion) -> Result<String, EventError> {
    if !v.room_id_from_create_event || create.get_str("type") != Some("m.room.create") {
        return Err(EventError::NotV12Create);
    }
    let id = hash_event_id(&reference_hash(create, v), v);
    Ok(format!("!{}", &id[1..]))
}

/// Adds the content hash and this server's signature to a new event, keeping other servers'
/// signatures and other hash algorithms. This is what a server does before sending its own event.
///
/// # Errors
/// [`EventError::WrongType`] when `hashes` is not an object, or a malformed `signatures`.
pub fn hash_and_sign_event(
    ev: &mut Object,
    v: &RoomVersion,
    server_name: &str,
    key: &SigningKey,
) -> Result<(), EventError> {
    let hash = base64::encode(content_hash(ev));
    ev.object_entry("hashes")
        .ok_or(EventError::WrongType {
            field: "hashes",
            expected: "an object",
        })?
        .insert("sha256", Value::String(hash));
    let sig = key.sign(&redacted_bytes(ev, v));
    add_signature(ev, server_name, key.key_id(), &sig)?;
    Ok(())
}
