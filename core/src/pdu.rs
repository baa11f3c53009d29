//! Checks on a received PDU: format, signatures and content hash ([spec § Checks performed on
//! receipt of a PDU], steps 1–3; DIGEST §4, §8, §9). Authorization rules come on top of this.
//!
//! [spec § Checks performed on receipt of a PDU]: https://spec.matrix.org/latest/server-server-api/#checks-performed-on-receipt-of-a-pdu

use sha2::{Digest, Sha256};

use crate::base64;
use crate::canonical::{
    encode_object_into, parse_object, CanonicalJsonError, NumberMode, Object, ParseOptions, Value,
    MAX_SAFE_INT,
};
use crate::event::{content_hash, encode_redacted, redact};
use crate::identifiers::{event_id_server_name, user_server_name, IdError, MAX_ID_BYTES};
use crate::room_version::{EventIdFormat, RoomVersion};
use crate::server_keys::KeyRing;
use crate::signing::{
    collect_server_signatures, KeyOutcome, PendingSignature, ServerSignatures, SignatureError,
};

/// Largest PDU, as canonical JSON with signatures, in bytes.
pub const MAX_PDU_BYTES: usize = 65_536;
/// Most `prev_events` a PDU may cite.
pub const MAX_PREV_EVENTS: usize = 20;
/// Most `auth_events` a PDU may cite.
pub const MAX_AUTH_EVENTS: usize = 10;

/// Why a PDU is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// Not acceptable JSON for the room version (syntax, duplicate keys, floats in v6+, …).
    #[error(transparent)]
    Json(#[from] CanonicalJsonError),
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong type or shape.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A number outside canonical JSON in a room version that requires it (v6+).
    #[error(
        "field {field:?} holds a float or out-of-range integer, not allowed in this room version"
    )]
    NonCanonicalNumber {
        /// The top-level field holding it.
        field: String,
    },
    /// `event_id` present in a room version (3+) whose IDs are hashes.
    #[error("`event_id` must not be present in room version 3+")]
    UnexpectedEventId,
    /// A v12 create event with a `room_id`.
    #[error("an m.room.create event must not have a `room_id` in room version 12+")]
    CreateHasRoomId,
    /// The create event listed in `auth_events` (v12, where it is implied).
    #[error("the create event must not be listed in `auth_events` in room version 12+")]
    CreateInAuthEvents,
    /// A malformed identifier.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A room ID that is not `!…`.
    #[error("invalid room ID")]
    BadRoomId,
    /// Over 65,536 bytes of canonical JSON.
    #[error("PDU is {size} bytes, over the {MAX_PDU_BYTES}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// An identifier, `type` or `state_key` over 255 code points, or (v11+) over 255 bytes.
    #[error("field `{field}` is {bytes} bytes, over the {MAX_ID_BYTES}-byte limit")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        bytes: usize,
    },
    /// More than 20 `prev_events`.
    #[error("{count} prev_events, over the limit of {MAX_PREV_EVENTS}")]
    TooManyPrevEvents {
        /// How many.
        count: usize,
    },
    /// More than 10 `auth_events`.
    #[error("{count} auth_events, over the limit of {MAX_AUTH_EVENTS}")]
    TooManyAuthEvents {
        /// How many.
        count: usize,
    },
    /// `depth` outside `0..=2^53-1`.
    #[error("depth outside 0..=2^53-1")]
    BadDepth,
    /// `hashes.sha256` missing, not a string, or not base64 (one of another length is a hash
    /// mismatch: the PDU is redacted).
    #[error("`hashes.sha256` is missing or malformed")]
    BadHashes,
    /// A required signature is missing, invalid or uncheckable.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl PduError {
    /// The stable reason code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            PduError::Json(e) => e.code(),
            PduError::MissingField { .. } => "pdu_missing_field",
            PduError::WrongType { .. } => "pdu_wrong_type",
            PduError::NonCanonicalNumber { .. } => "pdu_non_canonical_number",
            PduError::UnexpectedEventId => "pdu_unexpected_event_id",
            PduError::CreateHasRoomId => "pdu_create_has_room_id",
            PduError::CreateInAuthEvents => "pdu_create_in_auth_events",
            PduError::Id(e) => e.code(),
            PduError::BadRoomId => "bad_room_id",
            PduError::TooLarge { .. } => "pdu_too_large",
            PduError::FieldTooLong { .. } => "pdu_field_too_long",
            PduError::TooManyPrevEvents { .. } => "pdu_too_many_prev_events",
            PduError::TooManyAuthEvents { .. } => "pdu_too_many_auth_events",
            PduError::BadDepth => "pdu_bad_depth",
            PduError::BadHashes => "pdu_bad_hashes",
            PduError::Signature(e) => e.code(),
        }
    }
}

/// Parse options for a PDU of room version `v`: strict numbers from v6, legacy before.
pub fn parse_options(v: &RoomVersion) -> ParseOptions {
    ParseOptions {
        numbers: if v.strict_canonical_json {
            NumberMode::Strict
        } else {
            NumberMode::Legacy
        },
        ..ParseOptions::STRICT
    }
}

/// Parses a PDU from bytes under the number rules of its room version.
///
/// The rules apply to the PDU as it is kept: a float or out-of-range integer (v6+) in a part
/// of `unsigned` that [`reduce_unsigned`] drops does not make it invalid; the PDU then comes
/// back with `unsigned` reduced.
///
/// # Errors
/// [`PduError::Json`]; [`PduError::NonCanonicalNumber`] for such a number that `unsigned` keeps
/// or that follows one in `unsigned`.
pub fn parse_pdu(bytes: &[u8], v: &RoomVersion) -> Result<Object, PduError> {
    use crate::canonical::{CanonicalJsonErrorKind as Kind, PathSegment};
    match parse_object(bytes, &parse_options(v)) {
        Ok(ev) => Ok(ev),
        Err(e)
            if matches!(e.kind, Kind::Float { .. } | Kind::IntegerOutOfRange { .. })
                && matches!(e.path.0.first(), Some(PathSegment::Key(k)) if k == "unsigned") =>
        {
            // Rare: parse again keeping every number, reduce, then apply the rule.
            let legacy = ParseOptions {
                numbers: NumberMode::Legacy,
                ..parse_options(v)
            };
            let mut ev = parse_object(bytes, &legacy)?;
            reduce_unsigned(&mut ev);
            let bad = ev
                .iter()
                .find(|(_, val)| !val.is_strict())
                .map(|(field, _)| field.to_owned());
            match bad {
                Some(field) => Err(PduError::NonCanonicalNumber { field }),
                None => Ok(ev),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Reduces a received PDU's `unsigned` to what Synapse keeps of it (`_strip_unsigned_values`
/// and the `age` handling of `event_from_pdu_json`): `age` when it is an integer, and for
/// `m.room.member` events `invite_room_state` and `knock_room_state`. `unsigned` is covered by
/// neither hashes nor signatures, so anyone on the path may have written the rest; the size
/// limit and the number rules then apply to what is kept. Neither the event ID nor the content
/// hash changes.
///
/// An `unsigned` that is not an object becomes `{}`, which is what Synapse's code means to do
/// (in 1.163.2 it then fails on the original value and drops the PDU; we keep the event).
/// `age` is kept as received: a host that forwards the event rewrites it.
pub fn reduce_unsigned(ev: &mut Object) {
    let is_member = ev.get_str("type") == Some("m.room.member");
    let Some(unsigned) = ev.get_mut("unsigned") else {
        return;
    };
    match unsigned.as_object_mut() {
        Some(u) => u.retain(|k, val| match k {
            "age" => matches!(val, Value::Int(_)),
            "invite_room_state" | "knock_room_state" => is_member,
            _ => false,
        }),
        None => *unsigned = Value::Object(Object::new()),
    }
}

fn req<'a>(ev: &'a Object, field: &'static str) -> Result<&'a Value, PduError> {
    ev.get(field).ok_or(PduError::MissingField { field })
}

fn req_str<'a>(ev: &'a Object, field: &'static str) -> Result<&'a str, PduError> {
    req(ev, field)?.as_str().ok_or(PduError::WrongType {
        field,
        expected: "a string",
    })
}

/// Over 255 code points drops the PDU in every room version; over 255 bytes (but not code
/// points) only from v11. Before, Synapse stores such an event as rejected, since older Synapses
/// counted code points and accepted it (the auth check, `check_state_independent`, rejects it).
fn limit(field: &'static str, s: &str, v: &RoomVersion) -> Result<(), PduError> {
    if s.len() > MAX_ID_BYTES && (v.strict_event_byte_limits || s.chars().count() > MAX_ID_BYTES) {
        return Err(PduError::FieldTooLong {
            field,
            bytes: s.len(),
        });
    }
    Ok(())
}

fn event_refs<'a>(
    ev: &'a Object,
    field: &'static str,
    v: &RoomVersion,
    max: usize,
) -> Result<Vec<&'a str>, PduError> {
    let wrong = |expected| PduError::WrongType { field, expected };
    let items = req(ev, field)?.as_array().ok_or(wrong("an array"))?;
    if items.len() > max {
        return Err(if field == "prev_events" {
            PduError::TooManyPrevEvents { count: items.len() }
        } else {
            PduError::TooManyAuthEvents { count: items.len() }
        });
    }
    items
        .iter()
        .map(|item| {
            if v.event_refs_with_hashes {
                match item.as_array() {
                    Some([Value::String(id), Value::Object(_)]) => Ok(id.as_str()),
                    _ => Err(wrong("a list of [event_id, {hashes}] pairs")),
                }
            } else {
                item.as_str().ok_or(wrong("a list of event ID strings"))
            }
        })
        .collect()
}

/// Checks a PDU's format for its room version: required fields and their types, identifier
/// and size limits, `event_id` presence, reference-list shapes and counts, `depth` range, and
/// the v12 create-event and room-ID rules. `unsigned` counts as it is: the receipt checks
/// ([`check_pdu`] and the others) [reduce](reduce_unsigned) it first.
///
/// # Errors
/// The first [`PduError`] found.
pub fn check_format(ev: &Object, v: &RoomVersion) -> Result<(), PduError> {
    let ty = req_str(ev, "type")?;
    limit("type", ty, v)?;
    let sender = req_str(ev, "sender")?;
    limit("sender", sender, v)?;
    user_server_name(sender)?;
    let is_v12_create = v.room_id_from_create_event && ty == "m.room.create";
    if is_v12_create {
        if ev.contains_key("room_id") {
            return Err(PduError::CreateHasRoomId);
        }
    } else {
        let room_id = req_str(ev, "room_id")?;
        limit("room_id", room_id, v)?;
        if !room_id.starts_with('!') || room_id.len() < 2 {
            return Err(PduError::BadRoomId);
        }
    }
    if !matches!(req(ev, "content")?, Value::Object(_)) {
        return Err(PduError::WrongType {
            field: "content",
            expected: "an object",
        });
    }
    if req(ev, "origin_server_ts")?.as_int().is_none() {
        return Err(PduError::WrongType {
            field: "origin_server_ts",
            expected: "an integer",
        });
    }
    match req(ev, "depth")?.as_int() {
        Some(d) if (0..=MAX_SAFE_INT).contains(&d) => {}
        _ => return Err(PduError::BadDepth),
    }
    // A hash of the wrong length is only a hash that does not match: the PDU is kept, redacted
    // (Synapse compares the decoded bytes with the content hash). What is not base64 at all
    // fails to decode and drops the PDU, there too.
    match ev.get_object("hashes").and_then(|h| h.get_str("sha256")) {
        Some(h) => match base64::decode_array::<32>(h) {
            Ok(_) | Err(base64::Base64Error::WrongLength { .. }) => {}
            Err(_) => return Err(PduError::BadHashes),
        },
        None => return Err(PduError::BadHashes),
    }
    if !matches!(req(ev, "signatures")?, Value::Object(_)) {
        return Err(PduError::WrongType {
            field: "signatures",
            expected: "an object",
        });
    }
    if let Some(sk) = ev.get("state_key") {
        let sk = sk.as_str().ok_or(PduError::WrongType {
            field: "state_key",
            expected: "a string",
        })?;
        limit("state_key", sk, v)?;
    }
    event_refs(ev, "prev_events", v, MAX_PREV_EVENTS)?;
    let auth = event_refs(ev, "auth_events", v, MAX_AUTH_EVENTS)?;
    match v.event_id_format {
        EventIdFormat::Explicit => {
            let id = req_str(ev, "event_id")?;
            limit("event_id", id, v)?;
            event_id_server_name(id)?;
        }
        _ if ev.contains_key("event_id") => return Err(PduError::UnexpectedEventId),
        _ => {}
    }
    if v.room_id_from_create_event && !is_v12_create {
        let room_id = req_str(ev, "room_id")?;
        let create_id = crate::identifiers::create_event_id(room_id);
        if create_id.is_some_and(|c| auth.contains(&c.as_str())) {
            return Err(PduError::CreateInAuthEvents);
        }
    }
    if v.strict_canonical_json {
        if let Some((k, _)) = ev.iter().find(|(_, val)| !val.is_strict()) {
            return Err(PduError::NonCanonicalNumber { field: k.into() });
        }
    }
    let mut buf = Vec::with_capacity(2048);
    encode_object_into(ev, &mut buf);
    if buf.len() > MAX_PDU_BYTES {
        return Err(PduError::TooLarge { size: buf.len() });
    }
    Ok(())
}

/// The servers whose signatures a PDU needs: the sender's (unless it is a third-party-invite
/// invite), the event ID's server in v1–2, and the authorising server of a restricted join (v8+).
///
/// # Errors
/// A malformed sender, event ID or `join_authorised_via_users_server`.
pub fn required_signers(ev: &Object, v: &RoomVersion) -> Result<Vec<String>, PduError> {
    let mut out: Vec<String> = Vec::new();
    let content = ev.get_object("content");
    let is_member = ev.get_str("type") == Some("m.room.member");
    let membership = content.and_then(|c| c.get_str("membership"));
    let third_party_invite = is_member
        && membership == Some("invite")
        && content.is_some_and(|c| c.contains_key("third_party_invite"));
    if !third_party_invite {
        out.push(user_server_name(req_str(ev, "sender")?)?.to_owned());
    }
    if v.event_id_format == EventIdFormat::Explicit {
        out.push(event_id_server_name(req_str(ev, "event_id")?)?.to_owned());
    }
    if v.restricted_join_rule && is_member && membership == Some("join") {
        if let Some(via) = content.and_then(|c| c.get("join_authorised_via_users_server")) {
            let via = via.as_str().ok_or(PduError::WrongType {
                field: "join_authorised_via_users_server",
                expected: "a user ID",
            })?;
            out.push(user_server_name(via)?.to_owned());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The outcome of checking one PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Format, signatures and hash all good.
    Accepted,
    /// Signatures good but the content hash does not match: keep only our own redacted copy.
    Redacted,
    /// Dropped: bad format or signatures.
    Rejected {
        /// The stable reason code.
        code: &'static str,
        /// A human-readable explanation.
        message: String,
    },
}

impl Verdict {
    /// `accepted`, `redacted` or `rejected`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Redacted => "redacted",
            Verdict::Rejected { .. } => "rejected",
        }
    }
}

/// Everything learnt from checking one PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PduCheck {
    /// The event ID, when it could be determined.
    pub event_id: Option<String>,
    /// The signatures of every required server, when they were checked.
    pub signatures: Vec<ServerSignatures>,
    /// Whether the content hash matched, when it was checked.
    pub content_hash_ok: Option<bool>,
    /// The verdict.
    pub verdict: Verdict,
    /// The event to keep: as received when accepted, our own redacted copy when redacted.
    pub event: Option<Object>,
}

impl PduCheck {
    /// Takes the kept event out as a [`Pdu`], with the ID this check computed rather than
    /// hashed again. `None` (and nothing taken) when the check kept no event or found no ID.
    /// Putting `pdu.event` back in `event` restores the check.
    pub fn take_pdu(&mut self, v: &'static RoomVersion) -> Option<crate::auth::Pdu> {
        let event_id = self.event_id.clone()?;
        let event = self.event.take()?;
        Some(crate::auth::Pdu {
            event_id,
            event,
            room_version: v,
        })
    }

    /// A copy of the kept event as a [`Pdu`], with the ID this check computed (not hashed
    /// again); `None` when the check kept no event or found no ID.
    pub fn pdu(&self, v: &'static RoomVersion) -> Option<crate::auth::Pdu> {
        Some(crate::auth::Pdu {
            event_id: self.event_id.clone()?,
            event: self.event.clone()?,
            room_version: v,
        })
    }

    fn rejected(event_id: Option<String>, e: PduError) -> PduCheck {
        PduCheck {
            event_id,
            signatures: Vec::new(),
            content_hash_ok: None,
            verdict: Verdict::Rejected {
                code: e.code(),
                message: e.to_string(),
            },
            event: None,
        }
    }

    /// The verdict as the JSON object every host prints (`mxfed event check`, `checkPdus`,
    /// `check_pdus`): `event_id`, `signatures` (server → key ID → outcome), `content_hash`
    /// (`ok`/`mismatch`/null), `verdict`, and `reason` and `error` when rejected.
    pub fn to_json(&self) -> Object {
        let mut o = Object::new();
        o.insert(
            "event_id",
            self.event_id.clone().map_or(Value::Null, Value::String),
        );
        let mut sigs = Object::new();
        for s in &self.signatures {
            let mut per_key = Object::new();
            for (k, outcome) in &s.keys {
                per_key.insert(k.as_str(), outcome.as_str());
            }
            sigs.insert(s.server.as_str(), per_key);
        }
        o.insert("signatures", sigs);
        o.insert(
            "content_hash",
            match self.content_hash_ok {
                Some(true) => Value::from("ok"),
                Some(false) => Value::from("mismatch"),
                None => Value::Null,
            },
        );
        o.insert("verdict", self.verdict.as_str());
        if let Verdict::Rejected { code, message } = &self.verdict {
            o.insert("reason", *code);
            o.insert("error", message.as_str());
        }
        o
    }
}

/// Checks a PDU given as bytes: parse (with the room version's number rules), format,
/// signatures of every required server against `keys`, then the content hash.
pub fn check_pdu(bytes: &[u8], v: &RoomVersion, keys: &KeyRing) -> PduCheck {
    match parse_pdu(bytes, v) {
        Ok(ev) => check_pdu_object(ev, v, keys),
        Err(e) => PduCheck::rejected(None, e),
    }
}

/// [`check_pdu`] on an already-parsed event.
pub fn check_pdu_object(ev: Object, v: &RoomVersion, keys: &KeyRing) -> PduCheck {
    let mut p = match prepare(ev, v, keys) {
        Ok(p) => p,
        Err(c) => return c,
    };
    for job in std::mem::take(&mut p.pending) {
        if !job.sig.key.verify(&p.redacted_bytes, &job.sig.sig) {
            p.signatures[job.server].keys[job.sig.index].1 = KeyOutcome::Invalid;
        }
    }
    finish(p, v)
}

/// Checks many PDUs at once, with ed25519 batch verification of all their signatures. A batch
/// that fails is split and the halves retried, down to single checks that pinpoint the bad
/// signatures, so the verdicts are those of [`check_pdu`] one by one.
///
/// Only signatures that single verification could accept are batched: a key of prime order, a
/// canonical `S`, and an `R` that is a canonical encoding of a point not of small order. The
/// others are checked one by one.
///
/// One difference remains, as with every cofactorless batch equation (dalek's `verify_batch`
/// included): an `R` with a small-order component (`rB + T`, `T` of order 2, 4 or 8) fails
/// single verification but passes the batch when the coefficient drawn for it is a multiple of
/// the order of `T`. Only the holder of the private key can make such a signature, for its own
/// events; telling those `R` apart costs a scalar multiplication each, which is most of what
/// batching saves.
pub fn check_pdus(pdus: &[&[u8]], v: &RoomVersion, keys: &KeyRing) -> Vec<PduCheck> {
    check_pdus_in_chunks(pdus, v, keys, BATCH_SIZE)
}

/// [`check_pdus`], taking the PDUs `chunk` at a time (each chunk parsed, batch-verified and
/// finished before the next is parsed). For benchmarks of the chunk size.
#[doc(hidden)]
pub fn check_pdus_in_chunks(
    pdus: &[&[u8]],
    v: &RoomVersion,
    keys: &KeyRing,
    chunk: usize,
) -> Vec<PduCheck> {
    let mut out = Vec::with_capacity(pdus.len());
    for part in pdus.chunks(chunk.max(1)) {
        check_chunk(part, v, keys, &mut out);
    }
    out
}

fn check_chunk(pdus: &[&[u8]], v: &RoomVersion, keys: &KeyRing, out: &mut Vec<PduCheck>) {
    let mut prepared: Vec<Result<Prepared, PduCheck>> = pdus
        .iter()
        .map(|b| match parse_pdu(b, v) {
            Ok(ev) => prepare(ev, v, keys),
            Err(e) => Err(PduCheck::rejected(None, e)),
        })
        .collect();
    let mut batch: Vec<BatchItem> = Vec::with_capacity(prepared.len());
    for (i, p) in prepared.iter_mut().enumerate() {
        let Ok(p) = p else { continue };
        for (j, job) in p.pending.iter().enumerate() {
            match BatchItem::new(&job.sig, &p.redacted_bytes, (i, j)) {
                Some(item) => batch.push(item),
                None => {
                    if !job.sig.key.verify(&p.redacted_bytes, &job.sig.sig) {
                        p.signatures[job.server].keys[job.sig.index].1 = KeyOutcome::Invalid;
                    }
                }
            }
        }
    }
    let mut failed = Vec::new();
    for items in batch.chunks(BATCH_SIZE) {
        let z = batch_coefficients(items);
        bisect(&prepared, items, &z, &mut failed);
    }
    for (i, j) in failed {
        if let Ok(p) = &mut prepared[i] {
            let job = p.pending[j];
            p.signatures[job.server].keys[job.sig.index].1 = KeyOutcome::Invalid;
        }
    }
    out.extend(prepared.into_iter().map(|p| match p {
        Ok(p) => finish(p, v),
        Err(c) => c,
    }));
}

/// Signatures per multiscalar multiplication. The cost per signature keeps falling with the
/// size (Pippenger's method, which dalek uses above about 190 points), while a batch holding a
/// bad signature costs about two full batches of bisection per bad signature.
const BATCH_SIZE: usize = 1024;

/// Encodings of the points of small order, the sign bit left out: the identity, the point of
/// order 2, those of order 4 (y = 0) and of order 8, and the non-canonical encodings `p` and
/// `p + 1` of y = 0 and y = 1 (libsodium's list).
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 7] = {
    const fn top(low: u8) -> [u8; 32] {
        let mut b = [0xff; 32];
        b[0] = low;
        b[31] = 0x7f;
        b
    }
    let mut one = [0u8; 32];
    one[0] = 1;
    [
        [0u8; 32],
        one,
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        top(0xec),
        top(0xed),
        top(0xee),
    ]
};

/// Whether `r`, read as a y coordinate with its sign bit cleared, is `p = 2^255 - 19` or more.
fn non_canonical_y(r: &[u8; 32]) -> bool {
    r[31] & 0x7f == 0x7f && r[1..31].iter().all(|b| *b == 0xff) && r[0] >= 0xed
}

/// Whether `r` encodes a point of small order, canonically or not.
fn small_order_encoding(r: &[u8; 32]) -> bool {
    let mut masked = *r;
    masked[31] &= 0x7f;
    SMALL_ORDER_ENCODINGS.contains(&masked)
}

/// One signature in a batch: `[s]B = R + [k]A` is what single verification checks.
struct BatchItem {
    r: curve25519_dalek::EdwardsPoint,
    /// `R` as signed (compressing `r` again would cost a field inversion).
    r_bytes: [u8; 32],
    s: curve25519_dalek::Scalar,
    k: curve25519_dalek::Scalar,
    key: [u8; 32],
    /// (PDU index, pending job index).
    job: (usize, usize),
}

impl BatchItem {
    /// The batch form of a signature, or `None` when it must be checked on its own: a key that
    /// is not of prime order, an `S` that is not canonical, an `R` whose encoding is not
    /// canonical or is of a point of small order (single verification rejects all but the first,
    /// and a batch could not tell them apart), or an `R` that is not a point.
    fn new(sig: &PendingSignature, msg: &[u8], job: (usize, usize)) -> Option<BatchItem> {
        use sha2::Sha512;
        if !sig.key.prime_order() {
            return None;
        }
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&sig.sig[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&sig.sig[32..]);
        if non_canonical_y(&r_bytes) || small_order_encoding(&r_bytes) {
            return None;
        }
        let s = Option::from(curve25519_dalek::Scalar::from_canonical_bytes(s_bytes))?;
        let r = curve25519_dalek::edwards::CompressedEdwardsY(r_bytes).decompress()?;
        let key = *sig.key.as_bytes();
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(key);
        h.update(msg);
        let k = curve25519_dalek::Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        Some(BatchItem {
            r,
            r_bytes,
            s,
            k,
            key,
            job,
        })
    }
}

/// The batch's random-looking 128-bit coefficients, derived from every signature, key and
/// message hash in it (as dalek's `verify_batch` does), so that a signer cannot choose them.
fn batch_coefficients(items: &[BatchItem]) -> Vec<curve25519_dalek::Scalar> {
    use sha2::Sha512;
    let mut t = Sha512::new();
    t.update(b"mxfed ed25519 batch");
    t.update((items.len() as u64).to_le_bytes());
    for it in items {
        t.update(it.r_bytes);
        t.update(it.key);
        t.update(it.s.as_bytes());
        t.update(it.k.as_bytes());
    }
    let seed = t.finalize();
    let mut z = Vec::with_capacity(items.len());
    let mut counter = 0u64;
    while z.len() < items.len() {
        let block = Sha512::new()
            .chain_update(seed)
            .chain_update(counter.to_le_bytes())
            .finalize();
        counter += 1;
        for part in block.chunks_exact(16) {
            let mut b = [0u8; 16];
            b.copy_from_slice(part);
            z.push(curve25519_dalek::Scalar::from(u128::from_le_bytes(b)));
        }
    }
    z.truncate(items.len());
    z
}

/// Whether `[-sum(z s)]B + sum(z R) + sum(z k A)` is the identity, the terms of signatures made
/// by one key folded into a single multiple of that key.
fn batch_holds(items: &[BatchItem], z: &[curve25519_dalek::Scalar]) -> bool {
    use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
    use curve25519_dalek::{EdwardsPoint, Scalar};
    let mut b_coefficient = Scalar::ZERO;
    // Keys in first-seen order, with the sum of z·k over their signatures.
    let mut key_index: std::collections::BTreeMap<[u8; 32], usize> = Default::default();
    let mut key_terms: Vec<(Scalar, EdwardsPoint)> = Vec::new();
    for (it, zi) in items.iter().zip(z) {
        b_coefficient += zi * it.s;
        let idx = *key_index.entry(it.key).or_insert(key_terms.len());
        if idx == key_terms.len() {
            let Some(a) = curve25519_dalek::edwards::CompressedEdwardsY(it.key).decompress() else {
                return false;
            };
            key_terms.push((Scalar::ZERO, a));
        }
        key_terms[idx].0 += zi * it.k;
    }
    let scalars = std::iter::once(-b_coefficient)
        .chain(z.iter().copied())
        .chain(key_terms.iter().map(|(c, _)| *c));
    let points = std::iter::once(curve25519_dalek::constants::ED25519_BASEPOINT_POINT)
        .chain(items.iter().map(|it| it.r))
        .chain(key_terms.iter().map(|(_, a)| *a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// Checks `items` as one batch; when the batch fails, checks its halves, down to single
/// verification (exactly [`check_pdu`]'s) of each signature; pushes the jobs that fail to
/// `failed`.
fn bisect(
    prepared: &[Result<Prepared, PduCheck>],
    items: &[BatchItem],
    z: &[curve25519_dalek::Scalar],
    failed: &mut Vec<(usize, usize)>,
) {
    match items {
        [] => {}
        [one] => {
            let (i, j) = one.job;
            if let Ok(p) = &prepared[i] {
                let job = &p.pending[j];
                if !job.sig.key.verify(&p.redacted_bytes, &job.sig.sig) {
                    failed.push(one.job);
                }
            }
        }
        _ => {
            if batch_holds(items, z) {
                return;
            }
            let mid = items.len() / 2;
            bisect(prepared, &items[..mid], &z[..mid], failed);
            bisect(prepared, &items[mid..], &z[mid..], failed);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Job {
    /// Index into `Prepared::signatures`.
    server: usize,
    sig: PendingSignature,
}

/// A PDU that passed its format checks, with its signatures collected but not yet verified.
struct Prepared {
    ev: Object,
    event_id: Option<String>,
    /// The redacted form: what the signatures cover and, from v3, what the ID hashes.
    redacted_bytes: Vec<u8>,
    signatures: Vec<ServerSignatures>,
    pending: Vec<Job>,
    /// A malformed `signatures` entry: rejects the PDU whatever the checks say.
    malformed: Option<SignatureError>,
}

fn prepare(mut ev: Object, v: &RoomVersion, keys: &KeyRing) -> Result<Prepared, PduCheck> {
    reduce_unsigned(&mut ev);
    let explicit_id = ev.get_str("event_id").map(str::to_owned);
    if let Err(e) = check_format(&ev, v) {
        let id = if v.event_id_format == EventIdFormat::Explicit {
            explicit_id
        } else {
            None
        };
        return Err(PduCheck::rejected(id, e));
    }
    let mut redacted_bytes = Vec::with_capacity(1024);
    encode_redacted(&ev, v, &mut redacted_bytes);
    let event_id = match v.event_id_format {
        EventIdFormat::Explicit => explicit_id,
        EventIdFormat::ReferenceHashStd => Some(format!(
            "${}",
            base64::encode(Sha256::digest(&redacted_bytes))
        )),
        EventIdFormat::ReferenceHashUrl => Some(format!(
            "${}",
            base64::encode_url_safe(Sha256::digest(&redacted_bytes))
        )),
    };
    let signers = match required_signers(&ev, v) {
        Ok(s) => s,
        Err(e) => return Err(PduCheck::rejected(event_id, e)),
    };
    let ts = ev
        .get("origin_server_ts")
        .and_then(Value::as_int)
        .unwrap_or(0);
    let mut signatures = Vec::with_capacity(signers.len());
    let mut pending = Vec::new();
    let mut malformed = None;
    for server in &signers {
        match collect_server_signatures(&ev, server, |id| keys.lookup_for_event(server, id, ts, v))
        {
            Ok((s, jobs)) => {
                let idx = signatures.len();
                pending.extend(jobs.into_iter().map(|sig| Job { server: idx, sig }));
                signatures.push(s);
            }
            Err(e) => {
                malformed.get_or_insert(e);
            }
        }
    }
    Ok(Prepared {
        ev,
        event_id,
        redacted_bytes,
        signatures,
        pending,
        malformed,
    })
}

fn finish(p: Prepared, v: &RoomVersion) -> PduCheck {
    let failure = p
        .malformed
        .or_else(|| p.signatures.iter().find_map(|s| s.verdict().err()));
    if let Some(e) = failure {
        let mut c = PduCheck::rejected(p.event_id, e.into());
        c.signatures = p.signatures;
        return c;
    }
    let ev = p.ev;
    let claimed = ev
        .get_object("hashes")
        .and_then(|h| h.get_str("sha256"))
        .and_then(|h| base64::decode_array::<32>(h).ok());
    let hash_ok = claimed == Some(content_hash(&ev));
    let (verdict, event) = if hash_ok {
        (Verdict::Accepted, ev)
    } else {
        (Verdict::Redacted, redact(&ev, v))
    };
    PduCheck {
        event_id: p.event_id,
        signatures: p.signatures,
        content_hash_ok: Some(hash_ok),
        verdict,
        event: Some(event),
    }
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::traits::IsIdentity as _;
    use curve25519_dalek::Scalar;
    use sha2::Sha512;

    use super::*;
    use crate::event::redacted_bytes;
    use crate::keys::{KeyId, VerifyKey};
    use crate::server_keys::KeyEntry;

    /// A room version 10 message from `@u:<server>`, with its content hash and `sig` as the
    /// server's `ed25519:1` signature, computed from the signed bytes by `sign`.
    fn pdu(i: usize, server: &str, sign: impl Fn(&[u8]) -> [u8; 64]) -> Vec<u8> {
        let v = RoomVersion::get("10").unwrap();
        let json = format!(
            r#"{{"type":"m.room.message","room_id":"!r:a.example","sender":"@u:{server}","content":{{"body":"message {i}"}},"origin_server_ts":1,"depth":{i},"prev_events":[],"auth_events":[]}}"#
        );
        let mut ev = parse_pdu(json.as_bytes(), v).unwrap();
        let mut hashes = Object::new();
        hashes.insert("sha256", base64::encode(content_hash(&ev)));
        ev.insert("hashes", hashes);
        let sig = sign(&redacted_bytes(&ev, v));
        let mut by_key = Object::new();
        by_key.insert("ed25519:1", base64::encode(sig));
        let mut sigs = Object::new();
        sigs.insert(server, by_key);
        ev.insert("signatures", sigs);
        let mut out = Vec::new();
        encode_object_into(&ev, &mut out);
        out
    }

    fn hram(r: &[u8; 32], key: &[u8; 32], msg: &[u8]) -> Scalar {
        let h = Sha512::new()
            .chain_update(r)
            .chain_update(key)
            .chain_update(msg)
            .finalize();
        Scalar::from_bytes_mod_order_wide(&h.into())
    }

    fn sig(r: [u8; 32], s: [u8; 32]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&s);
        out
    }

    /// The order of the base point, which added to a canonical `S` gives a non-canonical one.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn add_l(s: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let t = u16::from(s[i]) + u16::from(L[i]) + carry;
            out[i] = t as u8;
            carry = t >> 8;
        }
        out
    }

    /// Signatures that a batch equation would accept but single verification rejects (small
    /// order or identity `R`, `S` plus the group order, a small-order key) are never batched:
    /// `check_pdus` gives every PDU the verdict of `check_pdu`, wherever they sit among valid
    /// signatures.
    #[test]
    fn batch_never_accepts_what_single_verification_rejects() {
        let v = RoomVersion::get("10").unwrap();
        let a = Scalar::from(0x1234_5678_9abc_def0_u64) * Scalar::from(0x0fed_cba9_8765_4321_u64);
        let key = (a * B).compress().to_bytes();
        // The identity as a public key: small order, so `verify_strict` refuses it.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let mut ring = KeyRing::new();
        for (server, k) in [("a.example", key), ("w.example", weak)] {
            let entry = KeyEntry {
                key: VerifyKey::from_bytes(&k).unwrap(),
                valid_until_ts: Some(i64::MAX),
                expired_ts: None,
            };
            ring.insert(server, KeyId::parse("ed25519:1").unwrap(), entry);
        }
        let honest = |msg: &[u8]| {
            let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(msg).into());
            let rb = (r * B).compress().to_bytes();
            sig(rb, (r + hram(&rb, &key, msg) * a).to_bytes())
        };
        // [s]B - [k]A equals `R` plus a point of small order: accepted by a batch whose
        // coefficient for it is a multiple of that order.
        let with_r = |r: [u8; 32]| move |msg: &[u8]| sig(r, (hram(&r, &key, msg) * a).to_bytes());
        let identity = weak;
        let order_two = CompressedEdwardsY({
            let mut b = [0xff; 32];
            b[0] = 0xec;
            b[31] = 0x7f;
            b
        })
        .decompress()
        .unwrap();
        assert!(order_two.is_small_order());
        let order_two = order_two.compress().to_bytes();
        let mut pdus = Vec::new();
        let mut expected = Vec::new();
        for i in 0..64 {
            let (bytes, ok) = match i % 6 {
                0 | 1 => (pdu(i, "a.example", honest), true),
                2 => (pdu(i, "a.example", with_r(identity)), false),
                3 => (pdu(i, "a.example", with_r(order_two)), false),
                4 => (
                    pdu(i, "a.example", |m: &[u8]| {
                        let s = honest(m);
                        let mut low = [0u8; 32];
                        low.copy_from_slice(&s[32..]);
                        let mut r = [0u8; 32];
                        r.copy_from_slice(&s[..32]);
                        sig(r, add_l(&low))
                    }),
                    false,
                ),
                _ => (
                    pdu(i, "w.example", |_: &[u8]| sig(identity, [0; 32])),
                    false,
                ),
            };
            pdus.push(bytes);
            expected.push(ok);
        }
        let refs: Vec<&[u8]> = pdus.iter().map(Vec::as_slice).collect();
        let batch = check_pdus(&refs, v, &ring);
        assert_eq!(check_pdus_in_chunks(&refs, v, &ring, 7), batch);
        for ((bytes, ok), got) in refs.iter().zip(&expected).zip(&batch) {
            let single = check_pdu(bytes, v, &ring);
            assert_eq!(&single, got);
            assert_eq!(single.verdict == Verdict::Accepted, *ok, "{single:?}");
        }
    }

    /// `b.example`'s key, and a ring holding it.
    fn server_b() -> (crate::keys::SigningKey, KeyRing) {
        let key = crate::keys::SigningKey::from_seed("1", &[9; 32]).unwrap();
        let mut ring = KeyRing::new();
        let entry = KeyEntry {
            key: key.verify_key(),
            valid_until_ts: Some(i64::MAX),
            expired_ts: None,
        };
        ring.insert("b.example", KeyId::parse("ed25519:1").unwrap(), entry);
        (key, ring)
    }

    /// Signs `ev` (hashes as they are) as `b.example`.
    fn sign_as_b(ev: &mut Object, v: &RoomVersion, key: &crate::keys::SigningKey) {
        let mut by_key = Object::new();
        by_key.insert(
            "ed25519:1",
            base64::encode(key.sign(&redacted_bytes(ev, v))),
        );
        let mut sigs = Object::new();
        sigs.insert("b.example", by_key);
        ev.insert("signatures", sigs);
    }

    /// A valid PDU from `@u:b.example` of `kind` with `content` (JSON), hashed and signed.
    fn signed(v: &RoomVersion, kind: &str, state_key: Option<&str>, content: &str) -> Object {
        let (key, _) = server_b();
        let sk = state_key.map_or(String::new(), |k| format!(r#""state_key":"{k}","#));
        let json = format!(
            r#"{{"type":"{kind}",{sk}"room_id":"!r:a.example","sender":"@u:b.example","content":{content},"origin_server_ts":1,"depth":3,"prev_events":[],"auth_events":[]}}"#
        );
        let mut ev = parse_pdu(json.as_bytes(), v).unwrap();
        let mut hashes = Object::new();
        hashes.insert("sha256", base64::encode(content_hash(&ev)));
        ev.insert("hashes", hashes);
        sign_as_b(&mut ev, v, &key);
        ev
    }

    /// A `hashes.sha256` that is base64 of the wrong length (31 or 33 bytes, or empty) is a
    /// hash that does not match: the PDU is kept as our redacted copy, as Synapse keeps it. One
    /// that is not base64 drops the PDU (Synapse: "Invalid base64").
    #[test]
    fn a_hash_of_the_wrong_length_is_a_mismatch() {
        let v = RoomVersion::get("10").unwrap();
        let (key, ring) = server_b();
        let with_hash = |hash: &str| {
            let mut ev = signed(v, "m.room.message", None, r#"{"body":"hi"}"#);
            let mut hashes = Object::new();
            hashes.insert("sha256", hash);
            ev.insert("hashes", hashes);
            sign_as_b(&mut ev, v, &key);
            check_pdu_object(ev, v, &ring)
        };
        for hash in [
            base64::encode([7u8; 31]),
            base64::encode([7u8; 33]),
            String::new(),
        ] {
            let check = with_hash(&hash);
            assert_eq!(
                check.verdict,
                Verdict::Redacted,
                "{hash:?}: {:?}",
                check.to_json()
            );
            assert_eq!(check.content_hash_ok, Some(false));
            let kept = check.event.unwrap();
            assert!(kept.get_object("content").unwrap().is_empty());
            assert_eq!(
                kept.get_object("hashes").unwrap().get_str("sha256"),
                Some(hash.as_str())
            );
        }
        let check = with_hash(&format!("!{}", base64::encode([7u8; 32])));
        assert_eq!(check.verdict.as_str(), "rejected");
        assert_eq!(check.to_json().get_str("reason"), Some("pdu_bad_hashes"));
    }

    /// `unsigned` is reduced to what Synapse keeps of it (`age` when an integer; for member
    /// events `invite_room_state` and `knock_room_state`) before the size limit and the number
    /// rules apply, so what a relay adds there (70 KB of text, a float) does not drop the PDU;
    /// the kept event carries the reduced `unsigned` and the same event ID. Synapse 1.163.2
    /// accepts each of these and rejects the last two.
    #[test]
    fn unsigned_is_reduced_before_the_size_and_number_rules() {
        let (_, ring) = server_b();
        let big = "A".repeat(70_000);
        for id in ["6", "10", "12"] {
            let v = RoomVersion::get(id).unwrap();
            let message = signed(v, "m.room.message", None, r#"{"body":"hi"}"#);
            let plain = check_pdu_object(message.clone(), v, &ring);
            assert_eq!(plain.verdict, Verdict::Accepted);
            let mut text = Vec::new();
            encode_object_into(&message, &mut text);
            let with_unsigned = |unsigned: &str| {
                let mut bytes = format!(r#"{{"unsigned":{unsigned},"#).into_bytes();
                bytes.extend_from_slice(&text[1..]);
                check_pdu(&bytes, v, &ring)
            };
            for (unsigned, kept) in [
                (format!(r#"{{"foo":"{big}"}}"#), "{}"),
                (
                    format!(r#"{{"age":5,"prev_content":{{"x":"{big}"}}}}"#),
                    r#"{"age":5}"#,
                ),
                (r#"{"foo":1.5,"age":7}"#.to_owned(), r#"{"age":7}"#),
                (r#"{"age":1.5}"#.to_owned(), "{}"),
                (r#"{"foo":9007199254740992}"#.to_owned(), "{}"),
                (r#"{"invite_room_state":[1.5]}"#.to_owned(), "{}"),
                ("[1.5]".to_owned(), "{}"),
            ] {
                let check = with_unsigned(&unsigned);
                assert_eq!(
                    check.verdict,
                    Verdict::Accepted,
                    "v{id} {:?}",
                    check.to_json()
                );
                assert_eq!(check.event_id, plain.event_id);
                let ev = check.event.unwrap();
                assert_eq!(
                    ev.get("unsigned").unwrap().to_canonical_string(),
                    kept,
                    "v{id}"
                );
            }
            // A member event keeps its invite room state, and the rules apply to it.
            let member = signed(
                v,
                "m.room.member",
                Some("@u:b.example"),
                r#"{"membership":"join"}"#,
            );
            let mut text = Vec::new();
            encode_object_into(&member, &mut text);
            let member_with = |unsigned: &str| {
                let mut bytes = format!(r#"{{"unsigned":{unsigned},"#).into_bytes();
                bytes.extend_from_slice(&text[1..]);
                check_pdu(&bytes, v, &ring)
            };
            let check = member_with(r#"{"invite_room_state":[{"type":"m.room.name"}],"foo":1.5}"#);
            assert_eq!(check.verdict, Verdict::Accepted, "v{id}");
            assert_eq!(
                check
                    .event
                    .unwrap()
                    .get("unsigned")
                    .unwrap()
                    .to_canonical_string(),
                r#"{"invite_room_state":[{"type":"m.room.name"}]}"#
            );
            let check = member_with(r#"{"knock_room_state":[1.5]}"#);
            assert_eq!(
                check.to_json().get_str("reason"),
                Some("pdu_non_canonical_number"),
                "v{id}"
            );
            let check = member_with(&format!(r#"{{"invite_room_state":["{big}"]}}"#));
            assert_eq!(
                check.to_json().get_str("reason"),
                Some("pdu_too_large"),
                "v{id}"
            );
        }
    }

    /// The hand-written list of small-order encodings is exactly the set of encodings, canonical
    /// or not and with either sign bit, that decompress to a point of small order.
    #[test]
    fn small_order_encodings_are_complete() {
        let mut p8 = SMALL_ORDER_ENCODINGS[2];
        let g = CompressedEdwardsY(p8).decompress().unwrap();
        // Of order exactly 8, so its multiples are the eight points of small order.
        let four = g + g + g + g;
        assert!((four + four).is_identity() && !four.is_identity());
        let mut point = g;
        for _ in 0..8 {
            for sign in [0, 0x80] {
                let mut b = point.compress().to_bytes();
                b[31] |= sign;
                assert!(small_order_encoding(&b), "{b:?}");
            }
            point += g;
        }
        // Every non-canonical y (p .. 2^255 - 1) with either sign.
        for low in 0xed..=0xff_u8 {
            for sign in [0, 0x80] {
                let mut b = [0xff; 32];
                b[0] = low;
                b[31] = 0x7f | sign;
                assert!(non_canonical_y(&b));
                let small = CompressedEdwardsY(b)
                    .decompress()
                    .is_some_and(|q| q.is_small_order());
                assert_eq!(small, small_order_encoding(&b), "{b:?}");
            }
        }
        p8[0] ^= 1;
        assert!(!small_order_encoding(&p8));
    }
}
