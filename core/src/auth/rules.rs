//! The authorization rules for room versions 1–12 ([spec § Authorization rules], DIGEST §10),
//! split as Synapse splits them: rules that depend only on the event and its own `auth_events`,
//! and rules that are checked against a state (the claimed auth events, the state before the
//! event, or the current state).
//!
//! [spec § Authorization rules]: https://spec.matrix.org/latest/rooms/v12/#authorization-rules

use std::collections::BTreeSet;

use crate::base64;
use crate::canonical::Value;
use crate::identifiers::{event_id_server_name, split_user_id, user_server_name, MAX_ID_BYTES};
use crate::keys::{KeyId, VerifyKey};
use crate::room_version::RoomVersion;
use crate::signing::{check_server_signatures, signing_bytes, KeyLookup, KeyOutcome};

use super::pdu::Pdu;
use super::power::{creators, level, parse_int_string, BadLevel, Levels};

/// Why an event fails the authorization rules. Every variant has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A create event with `prev_events`.
    #[error("create event has prev_events")]
    CreateHasPrevEvents,
    /// (v1–11) The create event's room ID domain is not its sender's.
    #[error("create event's room_id domain does not match its sender's")]
    CreateRoomIdMismatch,
    /// (v12) A create event with a `room_id`.
    #[error("create event has a room_id")]
    CreateHasRoomId,
    /// `content.room_version` names an unknown version.
    #[error("create event names an unknown room version")]
    CreateUnknownVersion,
    /// (v1–10) No `content.creator`.
    #[error("create event has no creator")]
    CreateNoCreator,
    /// (v12) `additional_creators` is not a list of user IDs.
    #[error("additional_creators is not a list of user IDs")]
    CreateBadAdditionalCreators,
    /// (v12) The room ID is not that of an accepted create event.
    #[error("room_id is not the ID of an accepted create event")]
    RoomIdNotCreate,
    /// An auth event is unknown.
    #[error("an auth event is missing")]
    AuthEventMissing,
    /// An auth event is in another room.
    #[error("an auth event is in another room")]
    AuthEventWrongRoom,
    /// Two auth events with the same type and state key.
    #[error("duplicate auth events for one (type, state_key)")]
    AuthEventDuplicate,
    /// An auth event the selection algorithm does not allow.
    #[error("an auth event is not of a type the event may cite")]
    AuthEventUnexpected,
    /// An auth event that was itself rejected.
    #[error("an auth event was rejected")]
    AuthEventRejected,
    /// (v1–11) No create event among the auth events.
    #[error("no create event among the auth events")]
    NoCreateEvent,
    /// The room does not federate (`m.federate: false`) and the sender is from another server.
    #[error("the room is not federated and the sender is from another server")]
    NotFederated,
    /// (v1–5) An `m.room.aliases` event whose state key is not the sender's server.
    #[error("m.room.aliases state_key must be the sender's server")]
    AliasesStateKey,
    /// A membership event without `state_key` or `content.membership`.
    #[error("membership event lacks state_key or membership")]
    MemberMalformed,
    /// (v8+) `join_authorised_via_users_server` without that server's signature.
    #[error("restricted join not signed by the authorising server")]
    JoinAuthoriserUnsigned,
    /// A join for someone else.
    #[error("cannot join on behalf of another user")]
    JoinNotSelf,
    /// The joining user is banned.
    #[error("the user is banned")]
    JoinBanned,
    /// The join rule does not allow this join.
    #[error("the join rule does not allow this join")]
    JoinNotAllowed,
    /// A restricted join whose authorising user is missing, not joined, or lacks invite power.
    #[error("restricted join without a valid authorising user")]
    JoinBadAuthoriser,
    /// A third-party invite that does not verify.
    #[error("third-party invite does not verify")]
    InviteBadThirdParty,
    /// Inviting a banned user.
    #[error("the invitee is banned")]
    InviteBanned,
    /// Inviting a user already joined.
    #[error("the invitee is already joined")]
    InviteAlreadyJoined,
    /// The sender lacks the invite level.
    #[error("insufficient power to invite")]
    InviteInsufficientPower,
    /// The sender is not joined.
    #[error("the sender is not joined to the room")]
    NotJoined,
    /// Unbanning without the ban level.
    #[error("insufficient power to unban")]
    UnbanInsufficientPower,
    /// Kicking without the kick level, or a user of equal or higher power.
    #[error("insufficient power to kick")]
    KickInsufficientPower,
    /// Banning without the ban level, or a user of equal or higher power.
    #[error("insufficient power to ban")]
    BanInsufficientPower,
    /// (v7+) Knocking where the join rule is not knock (or knock_restricted).
    #[error("the join rule does not allow knocking")]
    KnockNotAllowed,
    /// Knocking for someone else.
    #[error("cannot knock on behalf of another user")]
    KnockNotSelf,
    /// Knocking while joined, invited or banned.
    #[error("cannot knock while joined, invited or banned")]
    KnockBadMembership,
    /// An unknown membership value (or knock before v7).
    #[error("unknown membership")]
    UnknownMembership,
    /// An `m.room.third_party_invite` without the invite level.
    #[error("insufficient power to send a third-party invite")]
    ThirdPartyInviteInsufficientPower,
    /// The sender's level is below the event's send level.
    #[error("insufficient power to send this event")]
    SendInsufficientPower,
    /// A state key starting with `@` that is not the sender.
    #[error("state_key names another user")]
    StateKeyNotSender,
    /// A power-levels event with invalid users or values.
    #[error("invalid power levels content")]
    PowerLevelsInvalid,
    /// (v12) Creators listed in `users`.
    #[error("power levels list a creator in users")]
    PowerLevelsCreatorInUsers,
    /// Changing the level of another user whose level equals the sender's.
    #[error("cannot change the level of a user with power equal to the sender's")]
    PowerLevelsEqualUser,
    /// Adding, changing or removing a level above the sender's.
    #[error("cannot set or change a level above the sender's")]
    PowerLevelsTooHigh,
    /// (v1–2) A redaction without the redact level or the same server.
    #[error("insufficient power to redact")]
    RedactionInsufficientPower,
    /// A power level in the state that is not a level (the event cannot be authorised).
    #[error("a power level in the room state is malformed")]
    BadPowerLevel,
    /// (v1–10) An identifier, `type` or `state_key` over 255 bytes (but within 255 code points).
    #[error("an identifier, type or state key is over 255 bytes")]
    FieldTooLong,
}

impl From<BadLevel> for AuthError {
    fn from(_: BadLevel) -> AuthError {
        AuthError::BadPowerLevel
    }
}

impl AuthError {
    /// The stable reason code shared by every host.
    pub fn code(&self) -> &'static str {
        use AuthError::*;
        match self {
            CreateHasPrevEvents => "auth_create_has_prev_events",
            CreateRoomIdMismatch => "auth_create_room_id_mismatch",
            CreateHasRoomId => "auth_create_has_room_id",
            CreateUnknownVersion => "auth_create_unknown_version",
            CreateNoCreator => "auth_create_no_creator",
            CreateBadAdditionalCreators => "auth_create_bad_additional_creators",
            RoomIdNotCreate => "auth_room_id_not_create",
            AuthEventMissing => "auth_events_missing",
            AuthEventWrongRoom => "auth_events_wrong_room",
            AuthEventDuplicate => "auth_events_duplicate",
            AuthEventUnexpected => "auth_events_unexpected",
            AuthEventRejected => "auth_events_rejected",
            NoCreateEvent => "auth_events_no_create",
            NotFederated => "auth_not_federated",
            AliasesStateKey => "auth_aliases_state_key",
            MemberMalformed => "auth_member_malformed",
            JoinAuthoriserUnsigned => "auth_join_authoriser_unsigned",
            JoinNotSelf => "auth_join_not_self",
            JoinBanned => "auth_join_banned",
            JoinNotAllowed => "auth_join_not_allowed",
            JoinBadAuthoriser => "auth_join_bad_authoriser",
            InviteBadThirdParty => "auth_invite_bad_third_party",
            InviteBanned => "auth_invite_banned",
            InviteAlreadyJoined => "auth_invite_already_joined",
            InviteInsufficientPower => "auth_invite_insufficient_power",
            NotJoined => "auth_not_joined",
            UnbanInsufficientPower => "auth_unban_insufficient_power",
            KickInsufficientPower => "auth_kick_insufficient_power",
            BanInsufficientPower => "auth_ban_insufficient_power",
            KnockNotAllowed => "auth_knock_not_allowed",
            KnockNotSelf => "auth_knock_not_self",
            KnockBadMembership => "auth_knock_bad_membership",
            UnknownMembership => "auth_unknown_membership",
            ThirdPartyInviteInsufficientPower => "auth_third_party_invite_insufficient_power",
            SendInsufficientPower => "auth_send_insufficient_power",
            StateKeyNotSender => "auth_state_key_not_sender",
            PowerLevelsInvalid => "auth_power_levels_invalid",
            PowerLevelsCreatorInUsers => "auth_power_levels_creator_in_users",
            PowerLevelsEqualUser => "auth_power_levels_equal_user",
            PowerLevelsTooHigh => "auth_power_levels_too_high",
            RedactionInsufficientPower => "auth_redaction_insufficient_power",
            BadPowerLevel => "auth_bad_power_level",
            FieldTooLong => "auth_field_too_long",
        }
    }
}

/// The state an event is authorised against: `(type, state_key)` → event. For room version 12,
/// include the room's create event (it is implied, never cited).
///
/// It mostly holds the few events that authorise one event (its auth types: at most seven), so
/// it is a list searched by equality, newest first: most keys differ in length, which decides
/// without comparing bytes, where a sorted map compared the bytes of every key on its path.
/// Adding is a push (a later event with the same key is found first), so a large set (state
/// resolution of room versions 1–2 builds one from all the auth types of a conflict) costs no
/// more to build than a map did.
#[derive(Debug, Clone, Default)]
pub struct AuthEvents<'a> {
    entries: Vec<(&'a str, &'a str, &'a Pdu)>,
}

impl<'a> AuthEvents<'a> {
    /// An empty set.
    pub fn new() -> AuthEvents<'a> {
        AuthEvents::default()
    }

    /// Adds a state event (non-state events are ignored); a later one with the same key wins.
    pub fn insert(&mut self, pdu: &'a Pdu) {
        if let Some(sk) = pdu.state_key() {
            self.entries.push((pdu.kind(), sk, pdu));
        }
    }

    /// The event for `(kind, state_key)`: the one added last.
    pub fn get(&self, kind: &str, state_key: &str) -> Option<&'a Pdu> {
        self.entries
            .iter()
            .rev()
            .find(|(k, s, _)| *s == state_key && *k == kind)
            .map(|(_, _, p)| *p)
    }

    fn levels(&self, v: &'static RoomVersion) -> Levels<'a> {
        Levels::new(
            v,
            self.get("m.room.power_levels", ""),
            self.get("m.room.create", ""),
        )
    }

    fn membership(&self, user: &str) -> Option<&'a str> {
        self.get("m.room.member", user).and_then(Pdu::membership)
    }
}

impl<'a> FromIterator<&'a Pdu> for AuthEvents<'a> {
    fn from_iter<I: IntoIterator<Item = &'a Pdu>>(iter: I) -> AuthEvents<'a> {
        let mut a = AuthEvents::new();
        for p in iter {
            a.insert(p);
        }
        a
    }
}

/// The `(type, state_key)` pairs an event may cite in `auth_events` (the selection algorithm).
pub fn auth_types_for_event(ev: &Pdu) -> BTreeSet<(String, String)> {
    auth_type_refs(ev)
        .into_iter()
        .map(|(t, k)| (t.to_owned(), k.to_owned()))
        .collect()
}

/// [`auth_types_for_event`] borrowed from the event, sorted and without repeats: the receipt
/// pipeline asks for them several times per event, and owned pairs cost two allocations each.
pub(crate) fn auth_type_refs(ev: &Pdu) -> Vec<(&str, &str)> {
    if ev.kind() == "m.room.create" {
        return Vec::new();
    }
    let v = ev.room_version;
    let mut out = Vec::with_capacity(7);
    out.push(("m.room.power_levels", ""));
    out.push(("m.room.member", ev.sender()));
    if !v.room_id_from_create_event {
        out.push(("m.room.create", ""));
    }
    if ev.kind() == "m.room.member" {
        let membership = ev.membership();
        if matches!(membership, Some("join" | "invite" | "knock")) {
            out.push(("m.room.join_rules", ""));
        }
        if let Some(sk) = ev.state_key() {
            out.push(("m.room.member", sk));
        }
        if membership == Some("invite") {
            if let Some(token) = ev
                .content()
                .get_object("third_party_invite")
                .and_then(|t| t.get_object("signed"))
                .and_then(|s| s.get_str("token"))
            {
                out.push(("m.room.third_party_invite", token));
            }
        }
        if v.restricted_join_rule && membership == Some("join") {
            if let Some(via) = ev.content().get_str("join_authorised_via_users_server") {
                out.push(("m.room.member", via));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `key` set to `(kind, state_key)`, for a lookup in a state whose keys are owned pairs: one
/// key refilled for each of an event's auth types rather than two allocations per lookup.
pub(crate) fn refill<'k>(
    key: &'k mut (String, String),
    kind: &str,
    state_key: &str,
) -> &'k (String, String) {
    key.0.clear();
    key.0.push_str(kind);
    key.1.clear();
    key.1.push_str(state_key);
    key
}

/// Rules for a create event (v12: the create event is checked against nothing else).
///
/// # Errors
/// The first failing rule.
pub fn check_create(ev: &Pdu) -> Result<(), AuthError> {
    let v = ev.room_version;
    if !ev.prev_event_ids().is_empty() {
        return Err(AuthError::CreateHasPrevEvents);
    }
    if v.room_id_from_create_event {
        if ev.event.contains_key("room_id") {
            return Err(AuthError::CreateHasRoomId);
        }
    } else {
        let room_domain = ev.room_id().and_then(|r| r.split_once(':')).map(|(_, d)| d);
        if room_domain != Some(ev.sender_server()) {
            return Err(AuthError::CreateRoomIdMismatch);
        }
    }
    match ev.content().get("room_version") {
        None => {}
        Some(Value::String(s)) if RoomVersion::get(s).is_ok() => {}
        Some(_) => return Err(AuthError::CreateUnknownVersion),
    }
    if !v.implicit_room_creator && !ev.content().contains_key("creator") {
        return Err(AuthError::CreateNoCreator);
    }
    if v.privileged_creators {
        if let Some(extra) = ev.content().get("additional_creators") {
            let ok = extra.as_array().is_some_and(|a| {
                a.iter()
                    .all(|u| u.as_str().is_some_and(valid_additional_creator))
            });
            if !ok {
                return Err(AuthError::CreateBadAdditionalCreators);
            }
        }
    }
    Ok(())
}

/// Whether `user_id` may be listed in a v12 create event's `additional_creators`, as Synapse
/// decides it (`check_valid_additional_creators`: `UserID.is_valid` and at most 255 bytes). A
/// rejected create event rejects the whole room, so we follow Synapse where it is more lenient
/// than the spec's grammar (a port of any length, or anything Python's `int()` reads: `+1`,
/// `1_0`, ` 1`, non-ASCII decimal digits `٨٠`), and where it is stricter (a DNS name with an
/// empty label, `a..b` or `a.`).
fn valid_additional_creator(user_id: &str) -> bool {
    if user_id.len() > MAX_ID_BYTES {
        return false;
    }
    let Some((_, server)) = split_user_id(user_id) else {
        return false;
    };
    // Synapse's `parse_server_name`: a name ending in `]` is all host; otherwise the port is
    // after the last `:`, if any.
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if !server.ends_with(']') => (h, Some(p)),
        _ => (server, None),
    };
    if port.is_some_and(|p| parse_int_string(p).is_none()) {
        return false;
    }
    if let Some(literal) = host.strip_prefix('[') {
        // `valid_ipv6` (inet_pton) on what is between the brackets.
        return literal
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    // Synapse's VALID_HOST_REGEX: labels of ASCII letters, digits and `-`, joined by single dots.
    host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// A known auth event and whether it was rejected.
#[derive(Debug, Clone, Copy)]
pub struct KnownEvent<'a> {
    /// The event.
    pub pdu: &'a Pdu,
    /// Whether it was rejected.
    pub rejected: bool,
}

/// The rules that depend only on the event and its own `auth_events` (spec rules 1–3): the
/// create rules, the room-ID rule of v12, and the shape of the cited auth events. `auth` holds
/// the cited events the host found (a cited event that is absent is an error); `create` is the
/// room's create event, needed in v12 where it is not cited.
///
/// # Errors
/// The first failing rule.
pub fn check_state_independent(
    ev: &Pdu,
    auth: &[KnownEvent<'_>],
    create: Option<KnownEvent<'_>>,
) -> Result<(), AuthError> {
    let v = ev.room_version;
    // Synapse's size check (`_check_size_limits`), which it runs before the auth rules: over
    // 255 bytes but within 255 code points, an event of v1–10 is kept as rejected (the format
    // check drops the others), so that events citing it still have their prev event.
    if !v.strict_event_byte_limits {
        let fields = [
            Some(ev.sender()),
            ev.room_id(),
            ev.state_key(),
            Some(ev.kind()),
            Some(ev.event_id.as_str()),
        ];
        if fields.into_iter().flatten().any(|f| f.len() > MAX_ID_BYTES) {
            return Err(AuthError::FieldTooLong);
        }
    }
    if ev.kind() == "m.room.create" {
        return check_create(ev);
    }
    if v.room_id_from_create_event {
        let expected = ev.room_id().and_then(crate::identifiers::create_event_id);
        match create {
            Some(c) if !c.rejected && Some(&c.pdu.event_id) == expected.as_ref() => {}
            _ => return Err(AuthError::RoomIdNotCreate),
        }
    }
    let expected = auth_type_refs(ev);
    let ids = ev.auth_event_ids();
    if ids.len() != auth.len() {
        return Err(AuthError::AuthEventMissing);
    }
    let mut seen: Vec<(&str, &str)> = Vec::with_capacity(ids.len());
    for id in ids {
        let a = auth
            .iter()
            .find(|a| a.pdu.event_id == id)
            .ok_or(AuthError::AuthEventMissing)?;
        if a.pdu.room_id() != ev.room_id() {
            return Err(AuthError::AuthEventWrongRoom);
        }
        let Some(state_key) = a.pdu.state_key() else {
            return Err(AuthError::AuthEventUnexpected);
        };
        let key = (a.pdu.kind(), state_key);
        if seen.contains(&key) {
            return Err(AuthError::AuthEventDuplicate);
        }
        seen.push(key);
        if !expected.contains(&key) {
            return Err(AuthError::AuthEventUnexpected);
        }
        if a.rejected {
            return Err(AuthError::AuthEventRejected);
        }
    }
    if !v.room_id_from_create_event && !seen.contains(&("m.room.create", "")) {
        return Err(AuthError::NoCreateEvent);
    }
    Ok(())
}

/// Whether the create event allows federation: `m.federate` absent or exactly `true` (Synapse
/// treats any other value as false).
fn can_federate(create: Option<&Pdu>) -> bool {
    match create.and_then(|c| c.content().get("m.federate")) {
        None => true,
        Some(Value::Bool(true)) => true,
        Some(_) => false,
    }
}

/// The rules checked against a state (spec rules 4–13). For room version 12 `auth` must hold
/// the room's create event.
///
/// # Errors
/// The first failing rule.
pub fn check_state_dependent(ev: &Pdu, auth: &AuthEvents<'_>) -> Result<(), AuthError> {
    let v = ev.room_version;
    if ev.kind() == "m.room.create" {
        return Ok(());
    }
    // Without a create event no rule can be decided (whose room, which creator): Synapse rejects
    // here, and state resolution v1 relies on it when the create event itself is conflicted
    // (the auth state then holds none, and every candidate fails).
    let Some(create) = auth.get("m.room.create", "") else {
        return Err(AuthError::NoCreateEvent);
    };
    let create = Some(create);
    let creating_domain = if v.room_id_from_create_event {
        create.map(Pdu::sender_server)
    } else {
        ev.room_id().and_then(|r| r.split_once(':')).map(|(_, d)| d)
    };
    if creating_domain != Some(ev.sender_server()) && !can_federate(create) {
        return Err(AuthError::NotFederated);
    }
    if v.special_case_aliases_auth && ev.kind() == "m.room.aliases" {
        return match ev.state_key() {
            Some(sk) if !sk.is_empty() && sk == ev.sender_server() => Ok(()),
            _ => Err(AuthError::AliasesStateKey),
        };
    }
    if ev.kind() == "m.room.member" {
        return check_membership(ev, auth);
    }
    if auth.membership(ev.sender()) != Some("join") {
        return Err(AuthError::NotJoined);
    }
    let levels = auth.levels(v);
    let user_level = levels.user(ev.sender())?;
    if ev.kind() == "m.room.third_party_invite" {
        return if user_level >= levels.named("invite", 0)? {
            Ok(())
        } else {
            Err(AuthError::ThirdPartyInviteInsufficientPower)
        };
    }
    if user_level < levels.send(ev.kind(), ev.state_key().is_some())? {
        return Err(AuthError::SendInsufficientPower);
    }
    if let Some(sk) = ev.state_key() {
        if sk.starts_with('@') && sk != ev.sender() {
            return Err(AuthError::StateKeyNotSender);
        }
    }
    // By type, whatever the state key (the spec's rule and Synapse's): a power-levels event
    // under another state key is not the room's power levels, but its content is checked.
    if ev.kind() == "m.room.power_levels" {
        check_power_levels(ev, auth, user_level)?;
    }
    // The redact level is read in every room version (Synapse's `check_redaction` reads it
    // before deciding by version), so a malformed one rejects a redaction even where the rule
    // below does not apply.
    let redact_level = if ev.kind() == "m.room.redaction" {
        Some(levels.named("redact", 50)?)
    } else {
        None
    };
    if v.redaction_auth_rule && redact_level.is_some_and(|l| user_level < l) {
        // Without a string `redacts` there is no redacted event whose domain could match, so the
        // spec's rule rejects. Synapse 1.163.2 accepts such a redaction (its `check_redaction`
        // returns "allowed" for a `redacts` that is not a string); we keep the spec's reading
        // (as ruma does): the redaction targets nothing, is not state, and being rejected only
        // keeps it from clients.
        let same_domain = match (event_id_server_name(&ev.event_id), ev.redacts()) {
            (Ok(a), Some(target)) => event_id_server_name(target).is_ok_and(|b| a == b),
            _ => false,
        };
        if !same_domain {
            return Err(AuthError::RedactionInsufficientPower);
        }
    }
    Ok(())
}

fn check_membership(ev: &Pdu, auth: &AuthEvents<'_>) -> Result<(), AuthError> {
    let v = ev.room_version;
    let (Some(target), Some(membership)) = (ev.state_key(), ev.membership()) else {
        return Err(AuthError::MemberMalformed);
    };
    let content = ev.content();
    // Only a join needs the authorising server's signature, as Synapse decides it (and as the
    // signature check on receipt, `required_signers`, asks for it): on another membership the
    // key is inert content, and rejecting it would reject invites, leaves and bans that Synapse
    // accepts.
    if v.restricted_join_rule && membership == "join" {
        if let Some(via) = content.get("join_authorised_via_users_server") {
            let server = via.as_str().and_then(|u| user_server_name(u).ok());
            let signed = server.is_some_and(|s| {
                ev.event
                    .get_object("signatures")
                    .is_some_and(|sigs| sigs.contains_key(s))
            });
            if !signed {
                return Err(AuthError::JoinAuthoriserUnsigned);
            }
        }
    }
    let create = auth.get("m.room.create", "");
    if membership == "join" {
        // The creator's own first join, right after the create event.
        if let (Some(c), [only]) = (create, ev.prev_event_ids().as_slice()) {
            let creator = if v.implicit_room_creator {
                Some(c.sender())
            } else {
                c.content().get_str("creator")
            };
            if *only == c.event_id && creator == Some(target) {
                return Ok(());
            }
        }
    }
    let creating_domain = if v.room_id_from_create_event {
        create.map(Pdu::sender_server)
    } else {
        ev.room_id().and_then(|r| r.split_once(':')).map(|(_, d)| d)
    };
    if creating_domain != user_server_name(target).ok() && !can_federate(create) {
        return Err(AuthError::NotFederated);
    }
    let sender = ev.sender();
    let caller = auth.membership(sender);
    let caller_in_room = caller == Some("join");
    let caller_invited = caller == Some("invite");
    let caller_knocked = v.knock && caller == Some("knock");
    let target_m = auth.membership(target);
    let target_in_room = target_m == Some("join");
    let target_banned = target_m == Some("ban");
    // The default applies only when there is no join rule: a `join_rule` that is present but
    // not a string (`5`, `null`) is no rule at all and lets no one join or knock (Synapse's
    // `content.get("join_rule", "invite")` compared with each rule name).
    let join_rule = match auth
        .get("m.room.join_rules", "")
        .map(|j| j.content().get("join_rule"))
    {
        None | Some(None) => Some("invite"),
        Some(Some(rule)) => rule.as_str(),
    };
    let levels = auth.levels(v);
    let user_level = levels.user(sender)?;
    let target_level = levels.user(target)?;
    let invite_level = levels.named("invite", 0)?;
    let ban_level = levels.named("ban", 50)?;

    if membership == "invite" && content.contains_key("third_party_invite") {
        if !verify_third_party_invite(ev, auth) {
            return Err(AuthError::InviteBadThirdParty);
        }
        if target_banned {
            return Err(AuthError::InviteBanned);
        }
        return Ok(());
    }
    if membership != "join" && membership != "knock" {
        if (caller_invited || caller_knocked) && membership == "leave" && target == sender {
            return Ok(());
        }
        if !caller_in_room {
            return Err(AuthError::NotJoined);
        }
    }
    match membership {
        "invite" => {
            if target_banned {
                Err(AuthError::InviteBanned)
            } else if target_in_room {
                Err(AuthError::InviteAlreadyJoined)
            } else if user_level < invite_level {
                Err(AuthError::InviteInsufficientPower)
            } else {
                Ok(())
            }
        }
        "join" => {
            if sender != target {
                return Err(AuthError::JoinNotSelf);
            }
            if target_banned {
                return Err(AuthError::JoinBanned);
            }
            let restricted = (v.restricted_join_rule && join_rule == Some("restricted"))
                || (v.knock_restricted_join_rule && join_rule == Some("knock_restricted"));
            if join_rule == Some("public") {
                Ok(())
            } else if restricted {
                if caller_in_room || caller_invited {
                    return Ok(());
                }
                let Some(via) = content.get_str("join_authorised_via_users_server") else {
                    return Err(AuthError::JoinBadAuthoriser);
                };
                if auth.membership(via) != Some("join") || levels.user(via)? < invite_level {
                    return Err(AuthError::JoinBadAuthoriser);
                }
                Ok(())
            } else if join_rule == Some("invite") || (v.knock && join_rule == Some("knock")) {
                if caller_in_room || caller_invited {
                    Ok(())
                } else {
                    Err(AuthError::JoinNotAllowed)
                }
            } else {
                Err(AuthError::JoinNotAllowed)
            }
        }
        "leave" => {
            if target_banned && user_level < ban_level {
                Err(AuthError::UnbanInsufficientPower)
            } else if target != sender
                && (user_level < levels.named("kick", 50)? || user_level <= target_level)
            {
                Err(AuthError::KickInsufficientPower)
            } else {
                Ok(())
            }
        }
        "ban" => {
            if user_level < ban_level || user_level <= target_level {
                Err(AuthError::BanInsufficientPower)
            } else {
                Ok(())
            }
        }
        "knock" if v.knock => {
            let allowed = join_rule == Some("knock")
                || (v.knock_restricted_join_rule && join_rule == Some("knock_restricted"));
            if !allowed {
                Err(AuthError::KnockNotAllowed)
            } else if target != sender {
                Err(AuthError::KnockNotSelf)
            } else if target_in_room || caller_invited || target_banned {
                Err(AuthError::KnockBadMembership)
            } else {
                Ok(())
            }
        }
        _ => Err(AuthError::UnknownMembership),
    }
}

/// Synapse's `_verify_third_party_invite`: the `signed` block names this invite's target and a
/// token whose `m.room.third_party_invite` this sender sent, and is signed by one of that event's
/// public keys.
fn verify_third_party_invite(ev: &Pdu, auth: &AuthEvents<'_>) -> bool {
    let Some(signed) = ev
        .content()
        .get_object("third_party_invite")
        .and_then(|t| t.get_object("signed"))
    else {
        return false;
    };
    let (Some(mxid), Some(token), Some(sigs)) = (
        signed.get_str("mxid"),
        signed.get_str("token"),
        signed.get_object("signatures"),
    ) else {
        return false;
    };
    let Some(invite) = auth.get("m.room.third_party_invite", token) else {
        return false;
    };
    if invite.sender() != ev.sender() || Some(mxid) != ev.state_key() {
        return false;
    }
    let mut public_keys: Vec<&str> = Vec::new();
    if let Some(k) = invite.content().get_str("public_key") {
        public_keys.push(k);
    }
    if let Some(list) = invite
        .content()
        .get("public_keys")
        .and_then(Value::as_array)
    {
        public_keys.extend(
            list.iter()
                .filter_map(|o| o.as_object().and_then(|o| o.get_str("public_key"))),
        );
    }
    let bytes = signing_bytes(signed);
    for pk in public_keys {
        let Ok(key) = base64::decode_array::<32>(pk)
            .map_err(|_| ())
            .and_then(|b| VerifyKey::from_bytes(&b).map_err(|_| ()))
        else {
            continue;
        };
        // As Synapse: the first ed25519 signature decides for this key; a failure moves on to
        // the next public key.
        'servers: for (server, block) in sigs.iter() {
            let Some(block) = block.as_object() else {
                continue;
            };
            for key_name in block.keys() {
                if !key_name.starts_with("ed25519:") {
                    continue;
                }
                let Ok(id) = KeyId::parse(key_name) else {
                    break 'servers;
                };
                let r = check_server_signatures(signed, &bytes, server, |k| {
                    if *k == id {
                        KeyLookup::Usable(key)
                    } else {
                        KeyLookup::Unknown
                    }
                });
                let ok = r.is_ok_and(|r| {
                    r.keys
                        .iter()
                        .any(|(k, o)| k == key_name && *o == KeyOutcome::Valid)
                });
                if ok {
                    return true;
                }
                break 'servers;
            }
        }
    }
    false
}

const NAMED_LEVELS: [&str; 7] = [
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
];

fn check_power_levels(ev: &Pdu, auth: &AuthEvents<'_>, user_level: i64) -> Result<(), AuthError> {
    let v = ev.room_version;
    let new = ev.content();
    let users = match new.get("users") {
        None => None,
        Some(Value::Object(u)) => Some(u),
        Some(_) => return Err(AuthError::PowerLevelsInvalid),
    };
    if let Some(users) = users {
        for (user, val) in users.iter() {
            // Synapse only parses each key as a user ID (`@…:…`), without validating its server
            // name; stricter, we would reject power levels every Synapse accepts.
            if split_user_id(user).is_none() || level(val, v).is_none() {
                return Err(AuthError::PowerLevelsInvalid);
            }
        }
    }
    // `events` (and, where the auth rules read it, v6+, `notifications`) must be objects, as the
    // spec's schema says; from v10 the integer rule below says so too. Synapse rejects these
    // only by failing on them, and only when there are previous power levels to compare with:
    // a room's first power levels with `events: 5` (v1–9) is accepted there and then fails every
    // event that needs a send level. We reject it when it is sent, in every case.
    let mut containers = vec!["events"];
    if v.limit_notifications_power_levels {
        containers.push("notifications");
    }
    if containers
        .iter()
        .any(|k| new.get(k).is_some_and(|val| val.as_object().is_none()))
    {
        return Err(AuthError::PowerLevelsInvalid);
    }
    if v.integer_power_levels {
        for (k, val) in new.iter() {
            let ok = if NAMED_LEVELS.contains(&k) {
                matches!(val, Value::Int(_))
            } else if matches!(k, "events" | "notifications" | "users") {
                val.as_object()
                    .is_some_and(|o| o.values().all(|x| matches!(x, Value::Int(_))))
            } else {
                true
            };
            if !ok {
                return Err(AuthError::PowerLevelsInvalid);
            }
        }
    }
    if v.privileged_creators {
        let cs = creators(auth.get("m.room.create", ""), v);
        if users.is_some_and(|u| u.keys().any(|k| cs.contains(k))) {
            return Err(AuthError::PowerLevelsCreatorInUsers);
        }
    }
    // Compared with the event it replaces, as Synapse does (`auth_events[(type, state_key)]`).
    // For a state key other than "" the auth events do not hold one (only the room's power
    // levels are an auth type), so such an event is only validated.
    let Some(state_key) = ev.state_key() else {
        // Not a state event: nothing it could replace. Synapse rejects it (reading the state key
        // of a non-state event raises); so do we.
        return Err(AuthError::PowerLevelsInvalid);
    };
    let Some(old_ev) = auth.get("m.room.power_levels", state_key) else {
        return Ok(());
    };
    let old = old_ev.content();
    let read = |o: &crate::canonical::Object,
                dir: Option<&str>,
                key: &str|
     -> Result<Option<i64>, AuthError> {
        let loc = match dir {
            None => Some(o),
            Some(d) => o.get_object(d),
        };
        match loc.and_then(|l| l.get(key)) {
            None => Ok(None),
            Some(val) => level(val, v).map(Some).ok_or(AuthError::BadPowerLevel),
        }
    };
    let mut checks: Vec<(Option<&str>, String)> = NAMED_LEVELS
        .iter()
        .map(|k| (None, (*k).to_owned()))
        .collect();
    let mut dirs = vec!["users", "events"];
    if v.limit_notifications_power_levels {
        dirs.push("notifications");
    }
    for dir in dirs {
        let mut keys = BTreeSet::new();
        for o in [old, new] {
            if let Some(m) = o.get_object(dir) {
                keys.extend(m.keys().map(str::to_owned));
            }
        }
        checks.extend(keys.into_iter().map(|k| (Some(dir), k)));
    }
    for (dir, key) in checks {
        let old_level = read(old, dir, &key)?;
        let new_level = read(new, dir, &key)?;
        if old_level == new_level {
            continue;
        }
        if dir == Some("users") && key != ev.sender() && old_level == Some(user_level) {
            return Err(AuthError::PowerLevelsEqualUser);
        }
        if old_level.is_some_and(|l| l > user_level) || new_level.is_some_and(|l| l > user_level) {
            return Err(AuthError::PowerLevelsTooHigh);
        }
    }
    Ok(())
}
