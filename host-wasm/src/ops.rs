//! The pure layer: each binding as a Rust function over bytes and strings, returning
//! [`HostError`] with the core's code. No JavaScript types here, so it is unit-tested natively;
//! `lib.rs` only moves values across the wasm boundary.
//!
//! Every function is a translation (bytes → core call → canonical bytes), the same calls
//! `host-native/src/cli.rs` makes. No protocol logic lives here.

use std::collections::BTreeMap;

use mxfed_core::canonical::{self, Int, Object, ParseOptions, Value};
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::room::{self, Room};
use mxfed_core::server_keys::{self, KeyRing, ServerKeys};
use mxfed_core::state_res::StateMap;
use mxfed_core::{base64, event, pdu, signing, transaction, xmatrix, RoomVersion, Timestamp};

use crate::error::HostError;

/// Bytes that are canonical JSON (always UTF-8) as a `String`.
pub(crate) fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Splits a batch given as one buffer plus the end offset of each item.
///
/// # Errors
/// `bad_batch` when an offset is out of order or past the buffer.
pub fn split_batch<'a>(data: &'a [u8], ends: &[u32]) -> Result<Vec<&'a [u8]>, HostError> {
    let mut out = Vec::with_capacity(ends.len());
    let mut start = 0usize;
    for &end in ends {
        let end = usize::try_from(end).unwrap_or(usize::MAX);
        let item = data
            .get(start..end)
            .ok_or_else(|| HostError::new("bad_batch", "batch offsets out of range"))?;
        out.push(item);
        start = end;
    }
    Ok(out)
}

/// Canonical JSON of arbitrary JSON, numbers normalised as the spec's examples ask
/// (`mxfed canonical`).
///
/// # Errors
/// Any canonical-JSON error.
pub fn canonical_json(input: &[u8]) -> Result<String, HostError> {
    Ok(utf8(canonical::canonicalize(input)?))
}

/// Keys from Synapse's `signing.key` text (one `ed25519 <version> <seed>` per line).
///
/// # Errors
/// A malformed key file.
pub fn signing_keys(text: &str) -> Result<Vec<SigningKey>, HostError> {
    Ok(SigningKey::parse_synapse(text)?)
}

/// A new key in Synapse's format from 36 bytes of the caller's entropy.
pub fn generate_signing_key(entropy: &[u8]) -> Result<String, HostError> {
    let e: &[u8; 36] = entropy
        .try_into()
        .map_err(|_| HostError::new("entropy", "need exactly 36 bytes of entropy"))?;
    Ok(SigningKey::generate(e).to_synapse_line())
}

/// `{"ed25519:<v>": "<base64>"}` for the keys.
pub fn public_keys(keys: &[SigningKey]) -> String {
    let mut o = Object::new();
    for k in keys {
        o.insert(k.key_id().as_str(), k.verify_key().to_base64());
    }
    o.to_canonical_string()
}

/// Signs a JSON object as `server` with every key (`mxfed sign`).
///
/// # Errors
/// Bad JSON, a bad server name, or a malformed `signatures`.
pub fn sign_json(input: &[u8], server: &str, keys: &[SigningKey]) -> Result<String, HostError> {
    mxfed_core::identifiers::validate_server_name(server)?;
    let mut obj = canonical::parse_object(input, &ParseOptions::NORMALIZE)?;
    for k in keys {
        signing::sign_json(&mut obj, server, k)?;
    }
    Ok(obj.to_canonical_string())
}

/// Verifies `server`'s signatures with `verify_keys` (`{"ed25519:<v>": "<base64>"}`);
/// returns `{"verified":[key IDs]}` (`mxfed verify`).
///
/// # Errors
/// Bad JSON or keys, or the signature check's error (`signature_invalid`, …).
pub fn verify_json(input: &[u8], server: &str, verify_keys: &[u8]) -> Result<String, HostError> {
    let ko = canonical::parse_object(verify_keys, &ParseOptions::STRICT)?;
    let mut keys = BTreeMap::new();
    for (id, v) in ko.iter() {
        let b64 = v.as_str().ok_or_else(|| {
            HostError::new(
                "bad_public_key_arg",
                "verify keys map key IDs to base64 strings",
            )
        })?;
        keys.insert(KeyId::parse(id)?, VerifyKey::from_base64(b64)?);
    }
    let obj = canonical::parse_object(input, &ParseOptions::NORMALIZE)?;
    let ids = signing::verify_json(&obj, server, &keys)?;
    let mut o = Object::new();
    let ids: Vec<Value> = ids.iter().map(|i| Value::from(i.as_str())).collect();
    o.insert("verified", Value::Array(ids));
    Ok(o.to_canonical_string())
}

fn event_of(bytes: &[u8], rv: &str) -> Result<(Object, &'static RoomVersion), HostError> {
    let v = RoomVersion::get(rv)?;
    Ok((pdu::parse_pdu(bytes, v)?, v))
}

/// Content hash, unpadded base64 (`mxfed event hash`).
///
/// # Errors
/// Unknown room version or bad JSON for it.
pub fn content_hash(ev: &[u8], rv: &str) -> Result<String, HostError> {
    let (ev, _) = event_of(ev, rv)?;
    Ok(base64::encode(event::content_hash(&ev)))
}

/// Reference hash, unpadded base64.
///
/// # Errors
/// As [`content_hash`].
pub fn reference_hash(ev: &[u8], rv: &str) -> Result<String, HostError> {
    let (ev, v) = event_of(ev, rv)?;
    Ok(base64::encode(event::reference_hash(&ev, v)))
}

/// The event ID (`mxfed event id`).
///
/// # Errors
/// As [`content_hash`], or no `event_id` in room versions 1–2.
pub fn event_id(ev: &[u8], rv: &str) -> Result<String, HostError> {
    let (ev, v) = event_of(ev, rv)?;
    Ok(event::event_id(&ev, v)?)
}

/// The room ID a v12+ create event defines (`mxfed event room-id`).
///
/// # Errors
/// As [`content_hash`], or not a create event of such a version.
pub fn room_id(ev: &[u8], rv: &str) -> Result<String, HostError> {
    let (ev, v) = event_of(ev, rv)?;
    Ok(event::room_id_from_create(&ev, v)?)
}

/// The redacted event, canonical (`mxfed event redact`).
///
/// # Errors
/// As [`content_hash`].
pub fn redact(ev: &[u8], rv: &str) -> Result<String, HostError> {
    let (ev, v) = event_of(ev, rv)?;
    Ok(event::redact(&ev, v).to_canonical_string())
}

/// Adds the content hash and `server`'s signatures (`mxfed event sign`).
///
/// # Errors
/// As [`content_hash`], a bad server name, or a malformed `hashes`/`signatures`.
pub fn hash_and_sign_event(
    ev: &[u8],
    rv: &str,
    server: &str,
    keys: &[SigningKey],
) -> Result<String, HostError> {
    mxfed_core::identifiers::validate_server_name(server)?;
    let (mut ev, v) = event_of(ev, rv)?;
    for k in keys {
        event::hash_and_sign_event(&mut ev, v, server, k)?;
    }
    Ok(ev.to_canonical_string())
}

/// Our signed membership event completed from a resident's `make_join`, `make_leave` or
/// `make_knock` answer (`mxfed event from-template`): canonical JSON
/// `{"event_id","room_version","event"}`. Signed with the first key.
///
/// # Errors
/// Bad JSON, no key, or any [`event::TemplateError`].
#[allow(clippy::too_many_arguments)]
pub fn membership_from_template(
    answer: &[u8],
    room_id: &str,
    user_id: &str,
    membership: &str,
    origin: &str,
    content: Option<&[u8]>,
    now: Timestamp,
    event_id_localpart: Option<&str>,
    keys: &[SigningKey],
) -> Result<String, HostError> {
    mxfed_core::identifiers::validate_server_name(origin)?;
    let key = keys
        .first()
        .ok_or_else(|| HostError::new("bad_argument", "no signing key"))?;
    let answer = canonical::parse_object(answer, &ParseOptions::LEGACY)?;
    let content = content
        .map(|c| canonical::parse_object(c, &ParseOptions::LEGACY))
        .transpose()?;
    let req = event::MembershipRequest {
        room_id,
        user_id,
        membership,
        origin,
        content: content.as_ref(),
        now,
        event_id_localpart,
    };
    let (built, v) = event::membership_from_template(&answer, &req, key)?;
    let out = event::membership_json(built, v);
    Ok(out.to_canonical_string())
}

/// Adds one `/_matrix/key/v2/server` response to a key ring (it must be self-signed), as
/// `mxfed event check --keys` does.
///
/// # Errors
/// Bad JSON or any key-response error.
pub fn add_key_response(ring: &mut KeyRing, response: &[u8]) -> Result<(), HostError> {
    let o = canonical::parse_object(response, &ParseOptions::STRICT)?;
    ring.add(&ServerKeys::from_response(&o)?);
    Ok(())
}

/// Checks PDUs of room version `rv`: one verdict per PDU, each
/// `mxfed_core::pdu::PduCheck::to_json()` as canonical JSON followed by `\n`
/// (`mxfed event check`).
///
/// # Errors
/// Only an unknown room version: a bad PDU gets a `rejected` verdict.
pub fn check_pdus(pdus: &[&[u8]], rv: &str, ring: &KeyRing) -> Result<String, HostError> {
    let v = RoomVersion::get(rv)?;
    let mut out = Vec::with_capacity(pdus.len() * 160);
    for p in pdus {
        canonical::encode_object_into(&pdu::check_pdu(p, v, ring).to_json(), &mut out);
        out.push(b'\n');
    }
    Ok(utf8(out))
}

/// The `Authorization` header values for a request, one per key, joined by `\n`
/// (`mxfed request sign`).
///
/// # Errors
/// Bad server names, or a body that is not JSON.
pub fn sign_request(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&[u8]>,
    keys: &[SigningKey],
) -> Result<String, HostError> {
    mxfed_core::identifiers::validate_server_name(origin)?;
    mxfed_core::identifiers::validate_server_name(destination)?;
    let req = xmatrix::Request {
        method,
        uri,
        origin,
        destination,
        content: None,
    };
    let headers = req.sign_body(content, keys)?;
    let lines: Vec<String> = headers
        .iter()
        .map(xmatrix::XMatrix::to_header_value)
        .collect();
    Ok(lines.join("\n"))
}

/// Verifies a request's X-Matrix header values at `now`; returns
/// `{"origin":…,"verified":[key IDs]}` (`mxfed request verify`).
///
/// # Errors
/// An [`xmatrix::XMatrixError`], with its HTTP status and `errcode`.
#[allow(clippy::too_many_arguments)]
pub fn verify_request(
    method: &str,
    uri: &str,
    destination: &str,
    content: Option<&[u8]>,
    headers: &[String],
    ring: &KeyRing,
    now: Timestamp,
) -> Result<String, HostError> {
    let content = content
        .map(|b| xmatrix::RequestBody::parse_request(method, uri, b))
        .transpose()?;
    let parsed = headers
        .iter()
        .map(|h| xmatrix::XMatrix::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err(xmatrix::XMatrixError::Missing.into());
    }
    let auth = xmatrix::verify_request_body(
        &parsed,
        destination,
        method,
        uri,
        content.as_ref(),
        ring,
        now,
    )?;
    let mut o = Object::new();
    o.insert("origin", auth.origin.as_str());
    let ids: Vec<Value> = auth
        .key_ids
        .iter()
        .map(|k| Value::from(k.as_str()))
        .collect();
    o.insert("verified", Value::Array(ids));
    Ok(o.to_canonical_string())
}

/// Our signed `/_matrix/key/v2/server` response (`mxfed keys server`).
///
/// # Errors
/// A bad server name, or a validity beyond 2^53 ms.
pub fn server_keys(
    server: &str,
    keys: &[SigningKey],
    valid_until_ts: Timestamp,
) -> Result<String, HostError> {
    mxfed_core::identifiers::validate_server_name(server)?;
    let until = Int::new(valid_until_ts.as_i64())
        .ok_or_else(|| HostError::new("bad_duration", "validity beyond 2^53 ms"))?;
    Ok(server_keys::build_server_keys(server, keys, &[], until)?.to_canonical_string())
}

/// A transaction body, parsed by the core (`mxfed_core::transaction::parse_transaction`):
/// `{"origin","origin_server_ts","pdus":[…],"edus":[…],"rejected":[{"item","code","error"}]}`.
///
/// # Errors
/// A [`transaction::TransactionError`] (HTTP 400) when the whole request must be refused.
pub fn parse_transaction(body: &[u8]) -> Result<String, HostError> {
    let tx = transaction::parse_transaction(body)?;
    let mut o = tx.to_object();
    if !o.contains_key("edus") {
        o.insert("edus", Value::Array(Vec::new()));
    }
    let rejected: Vec<Value> = tx
        .rejected()
        .iter()
        .map(|r| {
            let mut e = Object::new();
            e.insert("item", r.item.to_string());
            e.insert("code", r.code());
            e.insert("error", r.error.to_string());
            Value::Object(e)
        })
        .collect();
    o.insert("rejected", Value::Array(rejected));
    Ok(o.to_canonical_string())
}

/// Whether a server ACL (`m.room.server_acl` content, JSON) lets `server_name` (with or without
/// a port) take part (`mxfed acl check`). Content is read with room version 1-5 number rules.
///
/// # Errors
/// Content that is not a JSON object; a malformed server name (`bad_server_name`).
pub fn server_acl_allows(content: &[u8], server_name: &str) -> Result<bool, HostError> {
    let content = canonical::parse_object(content, &ParseOptions::LEGACY)?;
    Ok(mxfed_core::acl::ServerAcl::from_content(&content).check(server_name)?)
}

/// The discovery plan as canonical JSON (`mxfed discover plan`): the first step without
/// `well_known`, the step after the well-known fetch with its body (empty: the fetch failed).
///
/// # Errors
/// A malformed server name (`bad_server_name`).
pub fn discovery_plan(server_name: &str, well_known: Option<&[u8]>) -> Result<String, HostError> {
    Ok(mxfed_core::discovery::plan_json(server_name, well_known)?.to_canonical_string())
}

/// The SRV record to connect to, `{"host","port"}` or `null` (`mxfed discover pick-srv`).
///
/// # Errors
/// Records that are not JSON, not a list (`bad_srv_records`) or malformed (`bad_srv_record`).
pub fn pick_srv(records: &[u8]) -> Result<String, HostError> {
    Ok(utf8(canonical::to_vec(
        &mxfed_core::discovery::pick_srv_json(records)?,
    )))
}

/// Every target of an SRV answer in the order to try them, or what else it says, as canonical
/// JSON (`mxfed discover srv-targets`).
///
/// # Errors
/// Records that are not JSON, not a list (`bad_srv_records`) or malformed (`bad_srv_record`).
pub fn srv_targets(records: &[u8]) -> Result<String, HostError> {
    Ok(mxfed_core::discovery::srv_targets_json(records)?.to_canonical_string())
}

/// How long to use a valid well-known answer, in milliseconds, from its `Cache-Control` and
/// `Expires` header values, received at `now` (`mxfed discover well-known-lifetime`).
pub fn well_known_lifetime(
    cache_control: Option<&str>,
    expires: Option<&str>,
    now: Timestamp,
) -> u64 {
    mxfed_core::discovery::well_known_lifetime(cache_control, expires, now).0
}

/// Whether a server may see an event (`mxfed history may-see`): the `history_visibility` value
/// in force after it (`None`: no such event; unknown values are `shared`) and the memberships
/// after it of the server's users.
pub fn server_may_see(history_visibility: Option<&str>, memberships: &[String]) -> bool {
    mxfed_core::room::server_may_see(
        mxfed_core::room::HistoryVisibility::parse(history_visibility),
        memberships.iter().map(String::as_str),
    )
}

/// Receives PDUs in causal order into a room (`Room::receive_pdus`): one canonical verdict
/// object per PDU, in processing order, as JSON lines.
pub fn room_receive_pdus(room: &mut Room, pdus: &[&[u8]], ring: &KeyRing) -> String {
    let mut out = Vec::with_capacity(pdus.len() * 160);
    for v in room.receive_pdus(pdus, ring) {
        canonical::encode_object_into(&v, &mut out);
        out.push(b'\n');
    }
    utf8(out)
}

/// Checks one PDU and receives it into a room: its canonical verdict object.
pub fn room_receive(room: &mut Room, pdu_bytes: &[u8], ring: &KeyRing) -> String {
    let check = pdu::check_pdu(pdu_bytes, room.version(), ring);
    let verdict = room.receive(&check);
    room::verdict_json(&check, &verdict).to_canonical_string()
}

/// The verdict [`room_receive`] would give, without taking the PDU in (`Room::check`).
pub fn room_check(room: &Room, pdu_bytes: &[u8], ring: &KeyRing) -> String {
    let check = pdu::check_pdu(pdu_bytes, room.version(), ring);
    let verdict = room.check(&check);
    room::verdict_json(&check, &verdict).to_canonical_string()
}

/// A state map as the canonical JSON list of `{"event_id","state_key","type"}`.
pub fn state_json(state: &StateMap) -> String {
    Value::Array(room::state_rows(state)).to_canonical_string()
}

/// The restricted-join decision of `server_name`, resident in `room`, on a join of `user_id`
/// (`Room::restricted_join_for`), given the allowed rooms it knows the user is joined to and
/// those it knows the user is not: canonical `{"via": user or null}`.
///
/// # Errors
/// A malformed user ID or server name, or the refusal (`restricted_*`).
pub fn restricted_join(
    room: &Room,
    user_id: &str,
    server_name: &str,
    joined: &[String],
    not_joined: &[String],
) -> Result<String, HostError> {
    mxfed_core::identifiers::user_server_name(user_id)?;
    mxfed_core::identifiers::validate_server_name(server_name)?;
    let known: BTreeMap<String, bool> = not_joined
        .iter()
        .map(|r| (r.clone(), false))
        .chain(joined.iter().map(|r| (r.clone(), true)))
        .collect();
    let d = room.restricted_join_for(user_id, server_name, &known)?;
    Ok(room::restricted_join_json(&d).to_canonical_string())
}

/// Replays a whole room (`mxfed room replay`): the verdict lines, then `{"state":[…]}`.
///
/// # Errors
/// An unknown room version.
pub fn replay(pdus: &[&[u8]], rv: &str, ring: &KeyRing) -> Result<String, HostError> {
    let mut room = Room::new(RoomVersion::get(rv)?);
    let mut out = room_receive_pdus(&mut room, pdus, ring);
    out.push_str(&room::state_to_json(&room.current_state()).to_canonical_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ops_translate() {
        let ring = KeyRing::new();
        let mut room = Room::new(RoomVersion::get("10").unwrap());
        let lines = room_receive_pdus(&mut room, &[b"{".as_slice()], &ring);
        assert!(lines.contains(r#""reason":"json_syntax""#), "{lines}");
        assert_eq!(state_json(&room.current_state()), "[]");
        assert_eq!(
            restricted_join(&room, "@u:b", "a", &[], &[]).unwrap(),
            r#"{"via":null}"#
        );
        let e = restricted_join(&room, "u", "a", &[], &[]).unwrap_err();
        assert_eq!(e.code, "bad_user_id");
        let e = restricted_join(&room, "@u:b", "bad name", &[], &[]).unwrap_err();
        assert_eq!(e.code, "bad_server_name");
        assert_eq!(replay(&[], "10", &ring).unwrap(), r#"{"state":[]}"#);
        assert_eq!(
            replay(&[], "99", &ring).unwrap_err().code,
            "unsupported_room_version"
        );
    }

    const KEY: &str = "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

    #[test]
    fn canonical_orders_astral_keys_by_code_point() {
        // UTF-16 order would put U+1F600 (D83D DE00) before U+FF61; code points do not.
        let out = canonical_json("{\"\u{1F600}\":1,\"\u{FF61}\":2}".as_bytes()).unwrap();
        assert_eq!(out, "{\"\u{FF61}\":2,\"\u{1F600}\":1}");
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let keys = signing_keys(KEY).unwrap();
        let signed = sign_json(br#"{"a":1}"#, "domain", &keys).unwrap();
        let pk = public_keys(&keys);
        assert_eq!(
            verify_json(signed.as_bytes(), "domain", pk.as_bytes()).unwrap(),
            r#"{"verified":["ed25519:1"]}"#
        );
        let tampered = signed.replace("\"a\":1", "\"a\":2");
        let e = verify_json(tampered.as_bytes(), "domain", pk.as_bytes()).unwrap_err();
        assert_eq!(e.code, "signature_invalid");
    }

    #[test]
    fn errors_carry_core_codes() {
        assert_eq!(
            canonical_json(b"{\"a\":1.5}").unwrap_err().code,
            "json_not_integer"
        );
        assert_eq!(
            event_id(b"{}", "99").unwrap_err().code,
            "unsupported_room_version"
        );
        let e =
            verify_request("GET", "/", "d", None, &[], &KeyRing::new(), Timestamp(0)).unwrap_err();
        assert_eq!(
            (e.code, e.http),
            ("xmatrix_missing", Some((401, "M_UNAUTHORIZED")))
        );
    }

    #[test]
    fn batches_split_on_offsets() {
        assert_eq!(
            split_batch(b"abcde", &[2, 5]).unwrap(),
            vec![&b"ab"[..], b"cde"]
        );
        assert_eq!(split_batch(b"ab", &[3]).unwrap_err().code, "bad_batch");
    }
}
