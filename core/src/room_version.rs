//! Room versions 1–12 as data: one rules table per version, each built from the one before.
//!
//! Adding room version 13 means adding one `const` here and one line to [`RoomVersion::ALL`].

use std::fmt;

/// How an event's ID is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventIdFormat {
    /// v1–2: chosen by the origin server and carried in the PDU (`$opaque:domain`).
    Explicit,
    /// v3: `$` + standard unpadded base64 of the reference hash.
    ReferenceHashStd,
    /// v4+: `$` + URL-safe unpadded base64 of the reference hash.
    ReferenceHashUrl,
}

/// The state resolution algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateResVersion {
    /// State resolution v1 (room version 1).
    V1,
    /// State resolution v2 (room versions 2–11).
    V2,
    /// State resolution v2.1 (room version 12).
    V2_1,
}

/// Which keys the redaction algorithm keeps, by the version that changed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedactionRules {
    /// v1–10 keep top-level `origin`, `membership` and `prev_state`.
    pub keep_origin_membership_prev_state: bool,
    /// v1–5 keep `aliases` in `m.room.aliases`.
    pub keep_aliases: bool,
    /// v8+ keep `allow` in `m.room.join_rules`.
    pub keep_join_rules_allow: bool,
    /// v9+ keep `join_authorised_via_users_server` in `m.room.member`.
    pub keep_join_authorised_via_users_server: bool,
    /// v11+: all of `m.room.create` content, `invite` in power levels, `redacts` in
    /// `m.room.redaction`, and `third_party_invite.signed` in `m.room.member`.
    pub v11_content: bool,
}

/// The rules of one room version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomVersion {
    /// The version string, e.g. `"10"`.
    pub id: &'static str,
    /// Where event IDs come from.
    pub event_id_format: EventIdFormat,
    /// v1–2: `prev_events`/`auth_events` are `[id, {hashes}]` pairs.
    pub event_refs_with_hashes: bool,
    /// Redaction.
    pub redaction: RedactionRules,
    /// v6+: received events must be canonical JSON (no floats, integers within ±(2^53−1)).
    pub strict_canonical_json: bool,
    /// v5+: a key's `valid_until_ts` must cover the event's `origin_server_ts`.
    pub enforce_key_validity: bool,
    /// v1–5: the special auth rule for `m.room.aliases`.
    pub special_case_aliases_auth: bool,
    /// v1–2: the v1/v2 redaction auth rule (redact power or same event-ID domain).
    pub redaction_auth_rule: bool,
    /// v6+: `notifications` in power levels is checked.
    pub limit_notifications_power_levels: bool,
    /// v7+: `knock` membership and join rule.
    pub knock: bool,
    /// v8+: `restricted` join rule.
    pub restricted_join_rule: bool,
    /// v9+: the restricted-join redaction fix.
    pub restricted_join_rule_fix: bool,
    /// v10+: `knock_restricted` join rule.
    pub knock_restricted_join_rule: bool,
    /// v10+: power levels must be integers (no strings).
    pub integer_power_levels: bool,
    /// v11+: the create event has no `creator`; its sender is the creator.
    pub implicit_room_creator: bool,
    /// v11+: a redaction's target is `content.redacts`.
    pub redacts_in_content: bool,
    /// v11+: a 255-byte limit violation makes the event unpersistable rather than rejected.
    pub strict_event_byte_limits: bool,
    /// v12: the room ID is the create event's reference hash; the create event has no
    /// `room_id` and is never listed in `auth_events`.
    pub room_id_from_create_event: bool,
    /// v12: creators (create sender and `additional_creators`) have infinite power.
    pub privileged_creators: bool,
    /// The state resolution algorithm.
    pub state_res: StateResVersion,
}

const V1: RoomVersion = RoomVersion {
    id: "1",
    event_id_format: EventIdFormat::Explicit,
    event_refs_with_hashes: true,
    redaction: RedactionRules {
        keep_origin_membership_prev_state: true,
        keep_aliases: true,
        keep_join_rules_allow: false,
        keep_join_authorised_via_users_server: false,
        v11_content: false,
    },
    strict_canonical_json: false,
    enforce_key_validity: false,
    special_case_aliases_auth: true,
    redaction_auth_rule: true,
    limit_notifications_power_levels: false,
    knock: false,
    restricted_join_rule: false,
    restricted_join_rule_fix: false,
    knock_restricted_join_rule: false,
    integer_power_levels: false,
    implicit_room_creator: false,
    redacts_in_content: false,
    strict_event_byte_limits: false,
    room_id_from_create_event: false,
    privileged_creators: false,
    state_res: StateResVersion::V1,
};
const V2: RoomVersion = RoomVersion {
    id: "2",
    state_res: StateResVersion::V2,
    ..V1
};
const V3: RoomVersion = RoomVersion {
    id: "3",
    event_id_format: EventIdFormat::ReferenceHashStd,
    event_refs_with_hashes: false,
    redaction_auth_rule: false,
    ..V2
};
const V4: RoomVersion = RoomVersion {
    id: "4",
    event_id_format: EventIdFormat::ReferenceHashUrl,
    ..V3
};
const V5: RoomVersion = RoomVersion {
    id: "5",
    enforce_key_validity: true,
    ..V4
};
const V6: RoomVersion = RoomVersion {
    id: "6",
    redaction: RedactionRules {
        keep_aliases: false,
        ..V5.redaction
    },
    strict_canonical_json: true,
    special_case_aliases_auth: false,
    limit_notifications_power_levels: true,
    ..V5
};
const V7: RoomVersion = RoomVersion {
    id: "7",
    knock: true,
    ..V6
};
const V8: RoomVersion = RoomVersion {
    id: "8",
    redaction: RedactionRules {
        keep_join_rules_allow: true,
        ..V7.redaction
    },
    restricted_join_rule: true,
    ..V7
};
const V9: RoomVersion = RoomVersion {
    id: "9",
    redaction: RedactionRules {
        keep_join_authorised_via_users_server: true,
        ..V8.redaction
    },
    restricted_join_rule_fix: true,
    ..V8
};
const V10: RoomVersion = RoomVersion {
    id: "10",
    knock_restricted_join_rule: true,
    integer_power_levels: true,
    ..V9
};
const V11: RoomVersion = RoomVersion {
    id: "11",
    redaction: RedactionRules {
        keep_origin_membership_prev_state: false,
        v11_content: true,
        ..V10.redaction
    },
    implicit_room_creator: true,
    redacts_in_content: true,
    strict_event_byte_limits: true,
    ..V10
};
const V12: RoomVersion = RoomVersion {
    id: "12",
    room_id_from_create_event: true,
    privileged_creators: true,
    state_res: StateResVersion::V2_1,
    ..V11
};

/// An unknown or unsupported room version string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported room version {0:?} (supported: 1-12)")]
pub struct UnknownRoomVersion(pub String);

impl UnknownRoomVersion {
    /// The stable error code shared by every host (Matrix's own name for it).
    pub fn code(&self) -> &'static str {
        "unsupported_room_version"
    }
}

impl RoomVersion {
    /// Every stable room version, oldest first.
    pub const ALL: [&'static RoomVersion; 12] = [
        &V1, &V2, &V3, &V4, &V5, &V6, &V7, &V8, &V9, &V10, &V11, &V12,
    ];

    /// The rules for a version string. Never guesses: an unknown version is an error.
    ///
    /// # Errors
    /// [`UnknownRoomVersion`].
    ///
    /// ```
    /// let v = mxfed_core::RoomVersion::get("10").unwrap();
    /// assert!(v.integer_power_levels && !v.redacts_in_content);
    /// assert!(mxfed_core::RoomVersion::get("13").is_err());
    /// ```
    pub fn get(id: &str) -> Result<&'static RoomVersion, UnknownRoomVersion> {
        RoomVersion::ALL
            .iter()
            .copied()
            .find(|v| v.id == id)
            .ok_or_else(|| UnknownRoomVersion(id.to_owned()))
    }
}

impl fmt::Display for RoomVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}
