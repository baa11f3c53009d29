//! Property tests for the pure core: canonical JSON, JSON signing, redaction, event IDs and
//! base64 (STYLE.md § Tests; DIGEST §1–§8).
//!
//! Every property runs [`CASES`] generated cases, which keeps the whole file to a few seconds in
//! a debug build. Each test's doc comment says what it proves.

// core/clippy.toml allows these inside #[test] functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use mxfed_core::base64;
use mxfed_core::canonical::{
    self, encode_object_filtered, parse, to_vec, Int, Object, ParseOptions, Value, MAX_SAFE_INT,
};
use mxfed_core::event::{
    content_hash, content_hash_bytes_into, event_id, hash_and_sign_event, redact, redacted_bytes,
    reference_hash,
};
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::pdu::{check_pdu_object, Verdict};
use mxfed_core::room_version::EventIdFormat;
use mxfed_core::server_keys::{KeyEntry, KeyRing};
use mxfed_core::signing::{sign_json, signing_bytes, verify_json, KeyOutcome};
use mxfed_core::xmatrix::{parse_body, RequestBody};
use mxfed_core::RoomVersion;
use proptest::prelude::*;

/// Cases per property: enough to hit every branch of the generators many times over, few
/// enough that ed25519 in a debug build stays fast.
const CASES: u32 = 256;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------------------------------------
// Generators
// ------------------------------------------------------------------------------------------------

/// Characters that stress escaping, unescaping and sorting, plus arbitrary scalar values.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => proptest::char::range('\u{0}', '\u{1f}'),
        2 => prop::sample::select(vec![
            '"', '\\', '/', '\u{7f}', '\u{80}', '\u{9f}', '\u{a0}', 'é', 'e', '\u{301}',
            '\u{200d}', '\u{2028}', '\u{2029}', '\u{d7ff}', '\u{e000}', '\u{fdd0}', '\u{feff}',
            '\u{fffd}', '\u{fffe}', '\u{ffff}', '\u{ff61}', '\u{10000}', '\u{1d11e}',
            '\u{1f600}', '\u{20000}', '\u{10fffe}', '\u{10ffff}',
        ]),
        2 => any::<char>(),
        1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
    ]
}

fn any_string() -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 0..12).prop_map(|cs| cs.into_iter().collect())
}

/// Keys: a small pool (so objects get duplicate insertions and code-point-order traps such as
/// U+FF61 vs U+1F600, which UTF-16 order gets wrong) mixed with arbitrary strings.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(vec![
            "", "a", "A", "b", "aa", "a\u{0}", "signed", "signatures", "unsigned", "membership",
            "body", "é", "e\u{301}", "\u{ff61}", "\u{1f600}", "\u{e000}", "\u{10000}", "\u{ffff}",
            "\u{7f}", "10", "9",
        ])
        .prop_map(str::to_owned),
        2 => any_string(),
    ]
}

fn any_int() -> impl Strategy<Value = Int> {
    prop_oneof![
        1 => prop::sample::select(vec![
            0,
            1,
            -1,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            1 << 32,
            -(1 << 32),
            MAX_SAFE_INT - 1,
            MAX_SAFE_INT,
            -MAX_SAFE_INT,
            -(MAX_SAFE_INT - 1),
        ]),
        1 => -1000i64..1000,
        1 => -MAX_SAFE_INT..=MAX_SAFE_INT,
    ]
    .prop_map(|i| Int::new(i).unwrap())
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => any_int().prop_map(Value::Int),
        4 => any_string().prop_map(Value::String),
    ]
}

/// Any value canonical JSON can hold: no legacy numbers, nesting up to 5 levels.
fn any_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// An object built from entries inserted in arbitrary order, with the insertion list kept so
/// the test can check the object's own order against an independent sort.
fn any_entries() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec((any_key(), any_value()), 0..8)
}

fn any_object() -> impl Strategy<Value = Object> {
    any_entries().prop_map(|e| e.into_iter().collect())
}

fn any_server_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,2}(:[0-9]{1,5})?",
        1 => "\\[[0-9a-f:]{2,12}\\](:[0-9]{1,5})?",
        1 => any_string(),
    ]
}

fn any_signing_key() -> impl Strategy<Value = SigningKey> {
    (any::<[u8; 32]>(), "[a-zA-Z0-9_]{1,8}")
        .prop_map(|(seed, version)| SigningKey::from_seed(&version, &seed).unwrap())
}

fn any_room_version() -> impl Strategy<Value = &'static RoomVersion> {
    prop::sample::select(RoomVersion::ALL.to_vec())
}

const EVENT_TYPES: [&str; 10] = [
    "m.room.member",
    "m.room.create",
    "m.room.join_rules",
    "m.room.power_levels",
    "m.room.aliases",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.message",
    "m.room.server_acl",
    "org.example.custom",
];

/// Content keys some room version keeps for some type, plus ones no version keeps.
const CONTENT_KEYS: [&str; 22] = [
    "membership",
    "join_authorised_via_users_server",
    "third_party_invite",
    "displayname",
    "creator",
    "room_version",
    "predecessor",
    "join_rule",
    "allow",
    "ban",
    "events",
    "events_default",
    "invite",
    "kick",
    "notifications",
    "redact",
    "state_default",
    "users",
    "users_default",
    "aliases",
    "history_visibility",
    "redacts",
];

/// Top-level keys redaction keeps in some version, drops in all, or that hashing strips.
const TOP_KEYS: [&str; 20] = [
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "auth_events",
    "origin_server_ts",
    "origin",
    "membership",
    "prev_state",
    "redacts",
    "unsigned",
    "age_ts",
    "outlier",
    "destinations",
];

fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::sample::select(EVENT_TYPES.to_vec()).prop_map(str::to_owned),
        1 => any_string(),
    ]
}

/// Values for content keys: arbitrary, plus `third_party_invite`-shaped objects with and
/// without `signed`.
fn content_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any_value(),
        1 => (any_value(), any_object()).prop_map(|(signed, mut o)| {
            o.insert("signed", signed);
            Value::Object(o)
        }),
    ]
}

fn content_object() -> impl Strategy<Value = Object> {
    prop::collection::vec(
        (
            prop_oneof![
                3 => prop::sample::select(CONTENT_KEYS.to_vec()).prop_map(str::to_owned),
                1 => any_key(),
            ],
            content_value(),
        ),
        0..8,
    )
    .prop_map(|e| e.into_iter().collect())
}

/// Event-shaped objects with no validity guarantee: any of the keys redaction cares about, with
/// any values (including `content` that is not an object).
fn any_event() -> impl Strategy<Value = Object> {
    (
        event_type(),
        prop_oneof![
            6 => content_object().prop_map(Value::Object),
            1 => any_value(),
        ],
        prop::collection::vec(
            (
                prop_oneof![
                    3 => prop::sample::select(TOP_KEYS.to_vec()).prop_map(str::to_owned),
                    1 => any_key(),
                ],
                any_value(),
            ),
            0..10,
        ),
        any::<bool>(),
    )
        .prop_map(|(ty, content, extra, typed)| {
            let mut ev: Object = extra.into_iter().collect();
            ev.insert("content", content);
            if typed {
                ev.insert("type", ty);
            }
            ev
        })
}

/// Top-level keys a generated valid PDU may carry besides the required ones: redaction drops
/// or keeps them depending on the version, and some are stripped from the content hash.
const PDU_EXTRA_KEYS: [&str; 8] = [
    "origin",
    "membership",
    "prev_state",
    "redacts",
    "age_ts",
    "outlier",
    "destinations",
    "org.example.extra",
];

/// A PDU that passes `check_format` for `v` once hashed and signed by `server`.
fn valid_pdu(v: &'static RoomVersion) -> impl Strategy<Value = (Object, String)> {
    (
        "[a-z]{1,8}\\.example(:[0-9]{2,4})?",
        event_type(),
        content_object(),
        prop::option::of(prop::sample::select(vec![
            "join", "invite", "leave", "ban", "knock",
        ])),
        prop::option::of("[a-z@:._ ]{0,12}"),
        prop::collection::vec(
            (prop::sample::select(PDU_EXTRA_KEYS.to_vec()), any_value()),
            0..4,
        ),
        prop::option::of(any_value()),
        (
            0..=MAX_SAFE_INT,
            -MAX_SAFE_INT..=MAX_SAFE_INT,
            prop::collection::vec("[A-Za-z0-9_-]{1,12}", 0..4),
            prop::collection::vec("[A-Za-z0-9_-]{1,12}", 0..4),
        ),
    )
        .prop_map(
            move |(server, ty, mut content, membership, state_key, extra, unsigned, nums)| {
                let (depth, ts, prev, auth) = nums;
                let mut ev: Object = extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                if let Some(m) = membership {
                    content.insert("membership", m);
                }
                // Restricted joins need the authorising server's signature too: keep it ours.
                if content.contains_key("join_authorised_via_users_server") {
                    content.insert(
                        "join_authorised_via_users_server",
                        format!("@auth:{server}"),
                    );
                }
                let is_v12_create = v.room_id_from_create_event && ty == "m.room.create";
                let refs = |ids: Vec<String>| -> Value {
                    Value::Array(
                        ids.into_iter()
                            .map(|id| {
                                if v.event_refs_with_hashes {
                                    let mut h = Object::new();
                                    h.insert("sha256", base64::encode([7u8; 32]));
                                    Value::Array(vec![
                                        Value::String(format!("${id}:{server}")),
                                        Value::Object(h),
                                    ])
                                } else {
                                    Value::String(format!("${id}"))
                                }
                            })
                            .collect(),
                    )
                };
                ev.insert("type", ty.clone());
                ev.insert("sender", format!("@user:{server}"));
                if !is_v12_create {
                    ev.insert("room_id", format!("!room:{server}"));
                }
                ev.insert("content", content);
                ev.insert("depth", Int::new(depth).unwrap());
                ev.insert("origin_server_ts", Int::new(ts).unwrap());
                ev.insert("prev_events", refs(prev));
                ev.insert("auth_events", refs(auth));
                if let Some(sk) = state_key {
                    ev.insert("state_key", sk);
                }
                if v.event_id_format == EventIdFormat::Explicit {
                    ev.insert("event_id", format!("$event:{server}"));
                }
                if let Some(u) = unsigned {
                    ev.insert("unsigned", u);
                }
                (ev, server)
            },
        )
}

/// A PDU for a random room version.
fn any_valid_pdu() -> impl Strategy<Value = (&'static RoomVersion, Object, String)> {
    any_room_version().prop_flat_map(|v| valid_pdu(v).prop_map(move |(ev, s)| (v, ev, s)))
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// A tiny deterministic PRNG (SplitMix64) for choices inside a case, seeded by proptest so
/// failures still shrink and replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// An encoder written from the spec's grammar alone, independent of the library: keys sorted by
/// comparing `char` sequences, only `"`, `\` and C0 controls escaped (short forms where the spec
/// has them, lowercase `\u00XX` otherwise), no whitespace.
fn reference_encode(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.get().to_string()),
        Value::Legacy(n) => panic!("generators never make legacy numbers: {n:?}"),
        Value::String(s) => reference_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_encode(item, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut entries: Vec<(&str, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.chars().cmp(b.0.chars()));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_str(k, out);
                out.push(':');
                reference_encode(val, out);
            }
            out.push('}');
        }
    }
}

fn reference_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `v` as valid but non-canonical JSON: random whitespace, shuffled keys, gratuitous
/// `\uXXXX` escapes (upper/lower hex, surrogate pairs for astral characters), `\/`, `-0`, and
/// integers written with a fraction or exponent (which [`canonical::NumberMode::Normalize`]
/// must turn back into the integer).
fn noisy(v: &Value, rng: &mut Rng, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let n = i.get();
            match rng.below(6) {
                0 if n == 0 => out.push_str("-0"),
                1 => out.push_str(&format!("{n}.0")),
                2 => out.push_str(&format!("{n}e0")),
                3 if n != 0 => out.push_str(&format!("{n}0E-1")),
                _ => out.push_str(&n.to_string()),
            }
        }
        Value::Legacy(n) => out.push_str(n.raw()),
        Value::String(s) => noisy_str(s, rng, out),
        Value::Array(a) => {
            out.push('[');
            ws(rng, out);
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    ws(rng, out);
                }
                noisy(item, rng, out);
                ws(rng, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut entries: Vec<(&str, &Value)> = o.iter().collect();
            for i in (1..entries.len()).rev() {
                entries.swap(i, rng.below(i + 1));
            }
            out.push('{');
            ws(rng, out);
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    ws(rng, out);
                }
                noisy_str(k, rng, out);
                ws(rng, out);
                out.push(':');
                ws(rng, out);
                noisy(val, rng, out);
                ws(rng, out);
            }
            out.push('}');
        }
    }
}

fn ws(rng: &mut Rng, out: &mut String) {
    if rng.chance(40) {
        for _ in 0..=rng.below(3) {
            out.push([' ', '\t', '\n', '\r'][rng.below(4)]);
        }
    }
}

fn noisy_str(s: &str, rng: &mut Rng, out: &mut String) {
    let upper = rng.chance(50);
    let hex = |u: u32, out: &mut String| {
        if upper {
            out.push_str(&format!("\\u{u:04X}"));
        } else {
            out.push_str(&format!("\\u{u:04x}"));
        }
    };
    out.push('"');
    for c in s.chars() {
        let cp = c as u32;
        let escape = cp < 0x20 || c == '"' || c == '\\' || rng.chance(20);
        if !escape {
            out.push(c);
        } else if c == '/' && rng.chance(50) {
            out.push_str("\\/");
        } else if cp >= 0x10000 {
            let x = cp - 0x10000;
            hex(0xD800 + (x >> 10), out);
            hex(0xDC00 + (x & 0x3FF), out);
        } else {
            match c {
                '"' if rng.chance(50) => out.push_str("\\\""),
                '\\' if rng.chance(50) => out.push_str("\\\\"),
                '\n' if rng.chance(50) => out.push_str("\\n"),
                '\t' if rng.chance(50) => out.push_str("\\t"),
                _ => hex(cp, out),
            }
        }
    }
    out.push('"');
}

/// Whether `bytes` (canonical JSON) hold whitespace or a raw control character outside strings,
/// or a raw control character inside one. Returns the offending offset.
fn insignificant_whitespace(bytes: &[u8]) -> Option<usize> {
    let mut in_str = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            } else if b < 0x20 {
                return Some(i);
            }
        } else if b == b'"' {
            in_str = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') || b < 0x20 {
            return Some(i);
        }
    }
    None
}

/// Checks every object in `v` has its keys strictly increasing by code point.
fn keys_sorted_everywhere(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().all(keys_sorted_everywhere),
        Value::Object(o) => {
            let keys: Vec<&str> = o.keys().collect();
            keys.windows(2).all(|w| w[0].chars().lt(w[1].chars()))
                && o.values().all(keys_sorted_everywhere)
        }
        _ => true,
    }
}

/// A value whose canonical JSON differs from `v`'s.
fn different(v: &Value, rng: &mut Rng) -> Value {
    match v {
        Value::Null => Value::Bool(rng.chance(50)),
        Value::Bool(b) => Value::Bool(!b),
        Value::Int(i) => {
            let n = i.get();
            Value::Int(Int::new(if n == MAX_SAFE_INT { n - 1 } else { n + 1 }).unwrap())
        }
        Value::Legacy(_) => Value::Null,
        Value::String(s) => Value::String(format!("{s}\u{0}")),
        Value::Array(a) => {
            let mut a = a.clone();
            if a.is_empty() || rng.chance(50) {
                a.push(Value::Null);
            } else {
                a.pop();
            }
            Value::Array(a)
        }
        Value::Object(o) => {
            let mut o = o.clone();
            let mut k = String::from("tamper");
            while o.contains_key(&k) {
                k.push('!');
            }
            o.insert(k, Value::Null);
            Value::Object(o)
        }
    }
}

/// Changes one leaf or container somewhere inside `v`, at a random depth.
fn tamper_inside(v: &mut Value, rng: &mut Rng) {
    match v {
        Value::Object(o) if !o.is_empty() && rng.chance(60) => {
            let keys: Vec<String> = o.keys().map(str::to_owned).collect();
            let k = &keys[rng.below(keys.len())];
            tamper_inside(o.get_mut(k).unwrap(), rng);
        }
        Value::Array(a) if !a.is_empty() && rng.chance(60) => {
            let i = rng.below(a.len());
            tamper_inside(&mut a[i], rng);
        }
        _ => *v = different(v, rng),
    }
}

/// The top-level keys a signature covers.
fn signed_keys(o: &Object) -> Vec<String> {
    o.keys()
        .filter(|k| *k != "signatures" && *k != "unsigned")
        .map(str::to_owned)
        .collect()
}

fn key_ring(server: &str, key: &SigningKey) -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert(
        server,
        key.key_id().clone(),
        KeyEntry {
            key: key.verify_key(),
            valid_until_ts: None,
            expired_ts: None,
        },
    );
    ring
}

fn key_map(key: &SigningKey) -> BTreeMap<KeyId, VerifyKey> {
    BTreeMap::from([(key.key_id().clone(), key.verify_key())])
}

// ------------------------------------------------------------------------------------------------
// Canonical JSON
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    /// Canonicalisation is idempotent: for any value, written as noisy JSON (whitespace,
    /// shuffled keys, needless escapes, `-0`, integral floats), canonicalising gives the value's
    /// canonical bytes, and canonicalising those again gives the same bytes.
    #[test]
    fn canonicalisation_is_idempotent(v in any_value(), seed in any::<u64>()) {
        let mut text = String::new();
        noisy(&v, &mut Rng(seed), &mut text);
        let once = canonical::canonicalize(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e} for input {text:?}")))?;
        let twice = canonical::canonicalize(&once).unwrap();
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(&once, &to_vec(&v));
    }

    /// parse∘encode is the identity on values: the canonical bytes of a value parse back to the
    /// same value in every number mode, and so does the value's noisy rendering in
    /// `Normalize` mode. `to_canonical_string` agrees with `to_vec`.
    #[test]
    fn parse_encode_round_trips(v in any_value(), seed in any::<u64>()) {
        let bytes = to_vec(&v);
        prop_assert_eq!(v.to_canonical_string().into_bytes(), bytes.clone());
        for opts in [ParseOptions::STRICT, ParseOptions::NORMALIZE, ParseOptions::LEGACY] {
            prop_assert_eq!(&parse(&bytes, &opts).unwrap(), &v);
        }
        let mut text = String::new();
        noisy(&v, &mut Rng(seed), &mut text);
        prop_assert_eq!(&parse(text.as_bytes(), &ParseOptions::NORMALIZE).unwrap(), &v);
    }

    /// Keys come out sorted by code point: an object built by inserting entries in any order
    /// holds exactly the distinct keys, in the order of sorting them as `char` sequences; the
    /// encoder's bytes equal an independent spec-grammar encoder's; parsing shuffled input
    /// sorts every nested object; and the output has no whitespace (or raw control character)
    /// outside strings, nor raw control characters inside them.
    #[test]
    fn keys_sorted_by_code_point_and_no_whitespace(
        entries in any_entries(),
        v in any_value(),
        seed in any::<u64>(),
    ) {
        let obj: Object = entries.iter().cloned().collect();
        let mut expected: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        expected.sort_by(|a, b| a.chars().cmp(b.chars()));
        expected.dedup();
        prop_assert_eq!(obj.keys().collect::<Vec<_>>(), expected);

        for value in [Value::Object(obj), v] {
            let bytes = to_vec(&value);
            let mut reference = String::new();
            reference_encode(&value, &mut reference);
            prop_assert_eq!(String::from_utf8(bytes.clone()).unwrap(), reference);
            prop_assert_eq!(insignificant_whitespace(&bytes), None);

            let mut text = String::new();
            noisy(&value, &mut Rng(seed), &mut text);
            let parsed = parse(text.as_bytes(), &ParseOptions::NORMALIZE).unwrap();
            prop_assert!(keys_sorted_everywhere(&parsed));
        }
    }
}

/// Writes `v` mostly canonically, with each node written by [`noisy`] (whitespace, shuffled
/// keys, needless escapes, other number forms) with probability `percent`, and integers
/// sometimes replaced by numbers only the legacy parser takes (floats, big integers), so the
/// output is canonical, almost canonical, or legacy in roughly even measure.
fn mostly_canonical(v: &Value, rng: &mut Rng, percent: u64, out: &mut String) {
    if rng.chance(percent) {
        return noisy(v, rng, out);
    }
    match v {
        Value::Int(_) if rng.chance(percent) => {
            let legacy = [
                "1.5",
                "-0.0",
                "1e10",
                "100.0",
                "9007199254740992",
                "-12345678901234567890",
            ];
            out.push_str(legacy[rng.below(legacy.len())]);
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                mostly_canonical(item, rng, percent, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, val)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if rng.chance(percent) {
                    noisy_str(k, rng, out);
                } else {
                    reference_str(k, out);
                }
                out.push(':');
                mostly_canonical(val, rng, percent, out);
            }
            out.push('}');
        }
        _ => out.push_str(&String::from_utf8(to_vec(v)).unwrap()),
    }
}

/// Breaks `bytes` a little, sometimes: inserts, replaces or removes one byte, choosing bytes
/// that matter to the grammar (quotes, escapes, digits, structure, controls, invalid UTF-8),
/// or repeats an object's first entry (a duplicate key).
fn perturb(bytes: &mut Vec<u8>, rng: &mut Rng) {
    const PICK: &[u8] = b" \t\n\"\\/,:{}[]0-+.eE1u\x01\x7f\xff\xc3\xa9\xed";
    if bytes.is_empty() || rng.chance(60) {
        return;
    }
    let at = rng.below(bytes.len());
    let byte = PICK[rng.below(PICK.len())];
    match rng.below(4) {
        0 => bytes.insert(at, byte),
        1 => bytes[at] = byte,
        2 => {
            bytes.remove(at);
        }
        _ => {
            // `{"k":v,...}` → `{"k":v,"k":v,...}` when the first entry is simple enough to find.
            if let Some(end) = bytes.iter().position(|&b| b == b',') {
                if bytes[0] == b'{'
                    && !bytes[1..end].contains(&b'{')
                    && !bytes[1..end].contains(&b'[')
                {
                    let entry = bytes[1..=end].to_vec();
                    bytes.splice(1..1, entry);
                }
            }
        }
    }
}

/// The reference for [`canonical::is_canonical`]: the bytes parse as X-Matrix bodies do, hold
/// no legacy number, and encode back to themselves.
fn reencodes_to_itself(bytes: &[u8]) -> bool {
    parse_body(bytes).is_ok_and(|v| v.is_strict() && to_vec(&v) == bytes)
}

proptest! {
    #![proptest_config(config(CASES * 4))]

    /// The encoder's output is always recognised as canonical, long strings (the eight-byte
    /// scan) included.
    #[test]
    fn encoded_values_are_canonical(
        v in any_value(),
        long in prop::collection::vec(any_char(), 0..80),
    ) {
        let bytes = to_vec(&v);
        prop_assert!(canonical::is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
        let long: String = long.into_iter().collect();
        let arr = Value::Array(vec![Value::String(long.clone()), v]);
        let mut obj = Object::new();
        obj.insert(long, arr);
        let bytes = to_vec(&Value::Object(obj));
        prop_assert!(canonical::is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
    }

    /// `is_canonical` is exact: on JSON built from fragments with random whitespace, escapes,
    /// key orders and number forms, then sometimes broken by one byte, it says true exactly when
    /// parsing as X-Matrix bodies are parsed and encoding gives the same bytes back (legacy
    /// numbers aside: for those it says false, and the caller re-encodes).
    #[test]
    fn is_canonical_is_exact(v in any_value(), seed in any::<u64>()) {
        let rng = &mut Rng(seed);
        let percent = [0, 2, 5, 15, 40][rng.below(5)];
        let mut text = String::new();
        mostly_canonical(&v, rng, percent, &mut text);
        let mut bytes = text.into_bytes();
        perturb(&mut bytes, rng);
        let canonical = canonical::is_canonical(&bytes);
        prop_assert_eq!(canonical, reencodes_to_itself(&bytes), "{}", String::from_utf8_lossy(&bytes));
        // Request bodies take the check without UTF-8 validation after their parse: same answer.
        let body = RequestBody::parse(&bytes).map(|b| b.is_canonical());
        prop_assert_eq!(body.unwrap_or(false), canonical, "{}", String::from_utf8_lossy(&bytes));
    }
}

// ------------------------------------------------------------------------------------------------
// Signing
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    /// sign→verify holds for any object and server name, and any tampering breaks it: changing
    /// a signed value at any depth, adding a key, or removing one gives `signature_invalid`;
    /// checking under another server name gives `signature_missing`. Adding, changing or
    /// removing the top-level `unsigned` leaves the signature valid (only the top-level
    /// `signatures` and `unsigned` are outside the signed bytes).
    #[test]
    fn sign_verify_and_tampering(
        mut obj in any_object(),
        server in any_server_name(),
        key in any_signing_key(),
        extra_key in any_key(),
        extra_value in any_value(),
        seed in any::<u64>(),
    ) {
        let rng = &mut Rng(seed);
        // A top-level `signatures` that is not an object of objects cannot be signed into.
        obj.remove("signatures");
        let keys = key_map(&key);
        sign_json(&mut obj, &server, &key).unwrap();
        prop_assert_eq!(verify_json(&obj, &server, &keys).unwrap(), vec![key.key_id().clone()]);

        let code = |o: &Object, s: &str| verify_json(o, s, &keys).err().map(|e| e.code());
        let signed = signed_keys(&obj);

        // Change a value (a top-level one, or something nested inside it).
        if !signed.is_empty() {
            let mut t = obj.clone();
            let k = &signed[rng.below(signed.len())];
            tamper_inside(t.get_mut(k).unwrap(), rng);
            prop_assert_eq!(code(&t, &server), Some("signature_invalid"), "changed {:?}", k);
        }
        // Add a key.
        {
            let mut t = obj.clone();
            let mut k = extra_key.clone();
            while t.contains_key(&k) || k == "signatures" || k == "unsigned" {
                k.push('+');
            }
            t.insert(k, extra_value.clone());
            prop_assert_eq!(code(&t, &server), Some("signature_invalid"));
        }
        // Remove a key.
        if !signed.is_empty() {
            let mut t = obj.clone();
            t.remove(&signed[rng.below(signed.len())]);
            prop_assert_eq!(code(&t, &server), Some("signature_invalid"));
        }
        // Another server name.
        let other = format!("{server}x");
        prop_assert_eq!(code(&obj, &other), Some("signature_missing"));
        // Top-level `unsigned` is not covered.
        {
            let mut t = obj.clone();
            t.insert("unsigned", extra_value.clone());
            prop_assert_eq!(code(&t, &server), None);
            t.remove("unsigned");
            prop_assert_eq!(code(&t, &server), None);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Redaction and event IDs
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    /// Redaction is idempotent for every room version 1–12: redact(redact(e)) == redact(e) for
    /// any event-shaped object. The redacted form never keeps `unsigned`, always has an object
    /// `content`, and `redacted_bytes` (written without building the redacted copy) equals the
    /// signing bytes of `redact(e)`.
    #[test]
    fn redaction_is_idempotent(ev in any_event()) {
        for v in RoomVersion::ALL {
            let once = redact(&ev, v);
            let twice = redact(&once, v);
            prop_assert_eq!(&twice, &once, "room version {}", v.id);
            prop_assert!(!once.contains_key("unsigned"));
            prop_assert!(matches!(once.get("content"), Some(Value::Object(_))));
            prop_assert_eq!(redacted_bytes(&ev, v), signing_bytes(&once), "room version {}", v.id);
            prop_assert_eq!(redacted_bytes(&once, v), redacted_bytes(&ev, v));
        }
    }

    /// Event IDs and reference hashes ignore `unsigned`: adding, changing or removing the
    /// top-level `unsigned` never changes them (v3+), nor the content hash (all versions).
    #[test]
    fn event_ids_ignore_unsigned(ev in any_event(), u1 in any_value(), u2 in any_value()) {
        let mut with1 = ev.clone();
        with1.insert("unsigned", u1);
        let mut with2 = ev.clone();
        with2.insert("unsigned", u2);
        let mut without = ev.clone();
        without.remove("unsigned");
        for v in RoomVersion::ALL {
            let id = event_id(&without, v).map_err(|e| e.code());
            let h = reference_hash(&without, v);
            for e in [&ev, &with1, &with2] {
                prop_assert_eq!(reference_hash(e, v), h, "room version {}", v.id);
                if v.event_id_format != EventIdFormat::Explicit {
                    prop_assert_eq!(&event_id(e, v).map_err(|e| e.code()), &id);
                }
            }
        }
        let hash = content_hash(&without);
        for e in [&ev, &with1, &with2] {
            prop_assert_eq!(content_hash(e), hash);
        }
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// A redacted signed event still verifies, in every room version: after
    /// `hash_and_sign_event`, the full event is accepted; its redacted copy has valid
    /// signatures and the same event ID, and its verdict is `redacted` (content hash mismatch)
    /// unless redaction changed nothing the content hash covers, when it is `accepted`.
    #[test]
    fn redacted_signed_event_still_verifies(
        (v, mut ev, server) in any_valid_pdu(),
        key in any_signing_key(),
    ) {
        hash_and_sign_event(&mut ev, v, &server, &key).unwrap();
        let ring = key_ring(&server, &key);

        let full = check_pdu_object(ev.clone(), v, &ring);
        prop_assert_eq!(&full.verdict, &Verdict::Accepted, "v{}: {:?}", v.id, full.to_json());
        prop_assert_eq!(full.content_hash_ok, Some(true));

        let redacted = redact(&ev, v);
        let mut before = Vec::new();
        content_hash_bytes_into(&ev, &mut before);
        let mut after = Vec::new();
        content_hash_bytes_into(&redacted, &mut after);
        let unchanged = before == after;

        let check = check_pdu_object(redacted.clone(), v, &ring);
        let expected = if unchanged { Verdict::Accepted } else { Verdict::Redacted };
        prop_assert_eq!(&check.verdict, &expected, "v{}: {:?}", v.id, check.to_json());
        prop_assert_eq!(check.content_hash_ok, Some(unchanged));
        prop_assert_eq!(&check.event_id, &full.event_id);
        for s in &check.signatures {
            for (key_id, outcome) in &s.keys {
                prop_assert_eq!(*outcome, KeyOutcome::Valid, "{} {}", s.server, key_id);
            }
        }
        // What is kept is our own redacted copy, which redacting again does not change.
        prop_assert_eq!(check.event.as_ref(), Some(&redacted));
        // The signature covers exactly the redacted form.
        let mut signed = Vec::new();
        encode_object_filtered(&redacted, |k| k != "signatures", &mut signed);
        prop_assert_eq!(signed, redacted_bytes(&ev, v));
    }
}

// ------------------------------------------------------------------------------------------------
// Base64
// ------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    /// decode(encode(b)) == b for any bytes in both alphabets, with or without padding; the
    /// encodings are unpadded, of length ⌈4n/3⌉, and each uses only its own alphabet.
    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let std = base64::encode(&bytes);
        let url = base64::encode_url_safe(&bytes);
        let len = (bytes.len() * 4).div_ceil(3);
        prop_assert_eq!(std.len(), len);
        prop_assert_eq!(url.len(), len);
        prop_assert!(std.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        prop_assert!(url.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(&base64::decode(&std).unwrap(), &bytes);
        prop_assert_eq!(&base64::decode(&url).unwrap(), &bytes);
        let padding = "=".repeat((4 - len % 4) % 4);
        prop_assert_eq!(&base64::decode(&format!("{std}{padding}")).unwrap(), &bytes);
        prop_assert_eq!(&base64::decode(&format!("{url}{padding}")).unwrap(), &bytes);
        let mut into = String::from("prefix");
        base64::encode_into(&bytes, &mut into);
        prop_assert_eq!(into, format!("prefix{std}"));
    }

    /// Fixed-size decoding round-trips 32- and 64-byte values (keys, hashes, signatures) in
    /// both alphabets.
    #[test]
    fn base64_fixed_size_round_trips(k in any::<[u8; 32]>(), a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        prop_assert_eq!(base64::decode_array::<32>(&base64::encode(k)).unwrap(), k);
        prop_assert_eq!(base64::decode_array::<32>(&base64::encode_url_safe(k)).unwrap(), k);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&a);
        sig[32..].copy_from_slice(&b);
        prop_assert_eq!(base64::decode_array::<64>(&base64::encode(sig)).unwrap(), sig);
        prop_assert_eq!(base64::decode_array::<64>(&base64::encode_url_safe(sig)).unwrap(), sig);
    }
}
