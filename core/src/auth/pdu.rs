//! [`Pdu`]: a received event with its ID, and typed read access to the fields authorization
//! and state resolution look at. The JSON object stays the source of truth.

use crate::canonical::{Object, Value};
use crate::event::{event_id, EventError};
use crate::identifiers::user_server_name;
use crate::room_version::RoomVersion;

static EMPTY: Object = Object::new();

/// An event with its computed ID, under its room version's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The event ID (computed for v3+, carried for v1–2).
    pub event_id: String,
    /// The event as received (or our redacted copy after a hash mismatch).
    pub event: Object,
    /// The room version whose rules apply.
    pub room_version: &'static RoomVersion,
}

fn refs<'a>(ev: &'a Object, field: &str, v: &RoomVersion) -> Vec<&'a str> {
    ev.get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    if v.event_refs_with_hashes {
                        i.as_array().and_then(|p| p.first()).and_then(Value::as_str)
                    } else {
                        i.as_str()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Pdu {
    /// Wraps an event, computing its ID.
    ///
    /// # Errors
    /// For v1–2, an event without a string `event_id`.
    pub fn new(event: Object, room_version: &'static RoomVersion) -> Result<Pdu, EventError> {
        Ok(Pdu {
            event_id: event_id(&event, room_version)?,
            event,
            room_version,
        })
    }

    /// `type` (empty when missing: format checks reject such events earlier).
    pub fn kind(&self) -> &str {
        self.event.get_str("type").unwrap_or("")
    }

    /// `state_key`, for state events.
    pub fn state_key(&self) -> Option<&str> {
        self.event.get_str("state_key")
    }

    /// Whether this is the state event `(kind, state_key)`.
    pub fn is(&self, kind: &str, state_key: &str) -> bool {
        self.kind() == kind && self.state_key() == Some(state_key)
    }

    /// `sender`.
    pub fn sender(&self) -> &str {
        self.event.get_str("sender").unwrap_or("")
    }

    /// The sender's server name (empty for a malformed sender).
    pub fn sender_server(&self) -> &str {
        user_server_name(self.sender()).unwrap_or("")
    }

    /// `room_id` (absent on a v12 create event).
    pub fn room_id(&self) -> Option<&str> {
        self.event.get_str("room_id")
    }

    /// `content` (empty when missing or not an object).
    pub fn content(&self) -> &Object {
        self.event.get_object("content").unwrap_or(&EMPTY)
    }

    /// `content.membership`.
    pub fn membership(&self) -> Option<&str> {
        self.content().get_str("membership")
    }

    /// The IDs in `auth_events`.
    pub fn auth_event_ids(&self) -> Vec<&str> {
        refs(&self.event, "auth_events", self.room_version)
    }

    /// The IDs in `prev_events`.
    pub fn prev_event_ids(&self) -> Vec<&str> {
        refs(&self.event, "prev_events", self.room_version)
    }

    /// `origin_server_ts` (0 when malformed).
    pub fn origin_server_ts(&self) -> i64 {
        self.event
            .get("origin_server_ts")
            .and_then(Value::as_int)
            .unwrap_or(0)
    }

    /// `depth` (0 when malformed).
    pub fn depth(&self) -> i64 {
        self.event.get("depth").and_then(Value::as_int).unwrap_or(0)
    }

    /// The event a redaction redacts: `content.redacts` from v11, top-level before.
    pub fn redacts(&self) -> Option<&str> {
        if self.room_version.redacts_in_content {
            self.content().get_str("redacts")
        } else {
            self.event.get_str("redacts")
        }
    }

    /// The `(type, state_key)` pair, for state events.
    pub fn state_pair(&self) -> Option<(String, String)> {
        self.state_key()
            .map(|sk| (self.kind().to_owned(), sk.to_owned()))
    }
}
