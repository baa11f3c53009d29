//! The redaction algorithm, per room version ([spec § Redactions], DIGEST §6).
//!
//! One set of decisions ([`keep_top_level`], [`content_rule`]) drives both [`redact`], which
//! builds the redacted object, and [`encode_redacted`], which writes the redacted form's canonical
//! JSON straight from the original without copying it — the hot path of event IDs and signatures.
//!
//! [spec § Redactions]: https://spec.matrix.org/latest/client-server-api/#redactions

use crate::canonical::{encode_into, write_str, Object, Value};
use crate::room_version::RoomVersion;

/// What happens to one key of `content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentKey {
    Drop,
    Keep,
    /// v11+ `third_party_invite`: only its `signed` sub-key survives.
    SignedOnly,
}

/// How `content` is redacted for one event type.
#[derive(Debug, Clone, Copy)]
enum ContentRule {
    /// Keep every key (v11+ `m.room.create`).
    All,
    /// Decide per key.
    Keys(fn(&RoomVersion, &str) -> ContentKey),
    /// Keep nothing.
    Nothing,
}

fn keep_if(b: bool) -> ContentKey {
    if b {
        ContentKey::Keep
    } else {
        ContentKey::Drop
    }
}

fn content_rule(v: &RoomVersion, ty: Option<&str>) -> ContentRule {
    let r = &v.redaction;
    match ty {
        Some("m.room.member") => ContentRule::Keys(|v, k| match k {
            "membership" => ContentKey::Keep,
            "join_authorised_via_users_server" => {
                keep_if(v.redaction.keep_join_authorised_via_users_server)
            }
            "third_party_invite" if v.redaction.v11_content => ContentKey::SignedOnly,
            _ => ContentKey::Drop,
        }),
        Some("m.room.create") if r.v11_content => ContentRule::All,
        Some("m.room.create") => ContentRule::Keys(|_, k| keep_if(k == "creator")),
        Some("m.room.join_rules") => ContentRule::Keys(|v, k| match k {
            "join_rule" => ContentKey::Keep,
            "allow" => keep_if(v.redaction.keep_join_rules_allow),
            _ => ContentKey::Drop,
        }),
        Some("m.room.power_levels") => ContentRule::Keys(|v, k| match k {
            "ban" | "events" | "events_default" | "kick" | "redact" | "state_default" | "users"
            | "users_default" => ContentKey::Keep,
            "invite" => keep_if(v.redaction.v11_content),
            _ => ContentKey::Drop,
        }),
        Some("m.room.aliases") if r.keep_aliases => {
            ContentRule::Keys(|_, k| keep_if(k == "aliases"))
        }
        Some("m.room.history_visibility") => {
            ContentRule::Keys(|_, k| keep_if(k == "history_visibility"))
        }
        Some("m.room.redaction") if r.v11_content => {
            ContentRule::Keys(|_, k| keep_if(k == "redacts"))
        }
        _ => ContentRule::Nothing,
    }
}

/// Whether redaction keeps a top-level key.
fn keep_top_level(v: &RoomVersion, is_v12_create: bool, key: &str) -> bool {
    match key {
        "event_id" | "type" | "sender" | "state_key" | "content" | "hashes" | "signatures"
        | "depth" | "prev_events" | "auth_events" | "origin_server_ts" => true,
        // A v12 create event has no room ID: its ID is derived from the event itself.
        "room_id" => !is_v12_create,
        "origin" | "membership" | "prev_state" => v.redaction.keep_origin_membership_prev_state,
        _ => false,
    }
}

fn is_v12_create(v: &RoomVersion, ev: &Object) -> bool {
    v.room_id_from_create_event && ev.get_str("type") == Some("m.room.create")
}

/// `{"signed": …}` from a `third_party_invite` object, or `None` when it is not an object
/// (Synapse drops it then; the spec is silent).
fn signed_only(v: &Value) -> Option<Object> {
    let o = v.as_object()?;
    let mut out = Object::new();
    if let Some(signed) = o.get("signed") {
        out.insert("signed", signed.clone());
    }
    Some(out)
}

fn redact_content(v: &RoomVersion, ty: Option<&str>, content: Option<&Value>) -> Object {
    let Some(Value::Object(c)) = content else {
        return Object::new();
    };
    match content_rule(v, ty) {
        ContentRule::All => c.clone(),
        ContentRule::Nothing => Object::new(),
        ContentRule::Keys(decide) => {
            let mut out = Object::new();
            for (k, val) in c.iter() {
                match decide(v, k) {
                    ContentKey::Keep => {
                        out.insert(k, val.clone());
                    }
                    ContentKey::SignedOnly => {
                        if let Some(s) = signed_only(val) {
                            out.insert(k, s);
                        }
                    }
                    ContentKey::Drop => {}
                }
            }
            out
        }
    }
}

/// The redacted form of an event under a room version's rules. `unsigned` is always removed;
/// `content` is always present.
///
/// ```
/// use mxfed_core::{canonical::{parse_object, ParseOptions}, event::redact, RoomVersion};
/// let ev = parse_object(br#"{"type":"m.room.member","origin":"x","content":{"membership":"join","displayname":"A"},"unsigned":{"age":1}}"#, &ParseOptions::STRICT).unwrap();
/// let v10 = redact(&ev, RoomVersion::get("10").unwrap());
/// assert_eq!(v10.to_canonical_string(), r#"{"content":{"membership":"join"},"origin":"x","type":"m.room.member"}"#);
/// let v11 = redact(&ev, RoomVersion::get("11").unwrap());
/// assert_eq!(v11.to_canonical_string(), r#"{"content":{"membership":"join"},"type":"m.room.member"}"#);
/// ```
pub fn redact(ev: &Object, v: &RoomVersion) -> Object {
    let v12_create = is_v12_create(v, ev);
    let ty = ev.get_str("type");
    let mut out = Object::new();
    for (k, val) in ev.iter() {
        if k != "content" && keep_top_level(v, v12_create, k) {
            out.insert(k, val.clone());
        }
    }
    out.insert("content", redact_content(v, ty, ev.get("content")));
    out
}

/// Writes the canonical JSON of `redact(ev, v)` to `out`, without `signatures` (and `unsigned`,
/// which redaction drops anyway) — the bytes an event's signatures and reference hash cover.
pub fn encode_redacted(ev: &Object, v: &RoomVersion, out: &mut Vec<u8>) {
    let v12_create = is_v12_create(v, ev);
    let ty = ev.get_str("type");
    let mut first = true;
    let mut content_done = false;
    out.push(b'{');
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    for (k, val) in ev.iter() {
        if !content_done && k >= "content" {
            // Keys are sorted, so this is where `content` goes, present in the input or not.
            sep(out);
            write_content(v, ty, if k == "content" { Some(val) } else { None }, out);
            content_done = true;
            if k == "content" {
                continue;
            }
        }
        if k == "signatures" || !keep_top_level(v, v12_create, k) {
            continue;
        }
        sep(out);
        write_str(k, out);
        out.push(b':');
        encode_into(val, out);
    }
    if !content_done {
        sep(out);
        write_content(v, ty, None, out);
    }
    out.push(b'}');
}

fn write_content(v: &RoomVersion, ty: Option<&str>, content: Option<&Value>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"content\":");
    let Some(Value::Object(c)) = content else {
        out.extend_from_slice(b"{}");
        return;
    };
    match content_rule(v, ty) {
        ContentRule::All => crate::canonical::encode_object_into(c, out),
        ContentRule::Nothing => out.extend_from_slice(b"{}"),
        ContentRule::Keys(decide) => {
            out.push(b'{');
            let mut first = true;
            for (k, val) in c.iter() {
                let kept;
                let val = match decide(v, k) {
                    ContentKey::Drop => continue,
                    ContentKey::Keep => val,
                    ContentKey::SignedOnly => match signed_only(val) {
                        Some(s) => {
                            kept = Value::Object(s);
                            &kept
                        }
                        None => continue,
                    },
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(k, out);
                out.push(b':');
                encode_into(val, out);
            }
            out.push(b'}');
        }
    }
}
