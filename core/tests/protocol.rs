//! X-Matrix request authentication, server keys and the key cache, and building events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::collections::BTreeMap;

use mxfed_core::base64;
use mxfed_core::canonical::{self, parse_object, Int, Object, ParseOptions, Value};
use mxfed_core::event::{
    auth_types, build_event, membership_from_template, EventRef, EventTemplate, MembershipRequest,
    StateMap, TemplateError,
};
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::pdu::{check_pdu_object, Verdict};
use mxfed_core::server_keys::{
    build_server_keys, verify_notary_response, KeyCache, KeyFetch, KeyQuery, KeyRing, ServerKeys,
};
use mxfed_core::signing::{sign_json, KeyOutcome};
use mxfed_core::xmatrix::{
    parse_authorization, verify_request, verify_request_body, Request, RequestBody, XMatrix,
    XMatrixError,
};
use mxfed_core::{RoomVersion, Timestamp};
use proptest::prelude::*;

const SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

fn key(version: &str) -> SigningKey {
    SigningKey::from_seed_base64(version, SEED).unwrap()
}

fn other_key(version: &str, byte: u8) -> SigningKey {
    SigningKey::from_seed(version, &[byte; 32]).unwrap()
}

fn obj(json: &str) -> Object {
    parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap()
}

fn ring_for(server: &str, keys: &[SigningKey], valid_until: i64) -> KeyRing {
    let resp = build_server_keys(server, keys, &[], Int::new(valid_until).unwrap()).unwrap();
    let mut ring = KeyRing::new();
    ring.add(&ServerKeys::from_response(&resp).unwrap());
    ring
}

// ---------------------------------------------------------------- X-Matrix header parsing

#[test]
fn header_parsing_is_lenient_like_real_servers() {
    let cases = [
        r#"X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="c2ln""#,
        r#"x-matrix ORIGIN="a.example", Destination="b.example",  KEY="ed25519:1" ,sig="c2ln""#,
        "X-Matrix origin=a.example,destination=b.example,key=ed25519:1,sig=c2ln",
        "X-Matrix\torigin=a.example,\tdestination=b.example,key=ed25519:1,sig=c2ln",
        r#"origin="a.example",destination="b.example",key="ed25519:1",sig="c2ln""#,
        r#"X-Matrix sig="c2ln",key="ed25519:1",destination="b.example",origin="a.example""#,
        r#"X-Matrix origin="a\.example",destination="b.example",key="ed25519:1",sig="c2ln",extra="ignored""#,
    ];
    for c in cases {
        let h = XMatrix::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(h.origin, "a.example", "{c}");
        assert_eq!(h.destination.as_deref(), Some("b.example"), "{c}");
        assert_eq!(h.key, "ed25519:1", "{c}");
        assert_eq!(h.sig, "c2ln", "{c}");
    }
    // Colons in unquoted values (server names with ports), and a missing destination.
    let h = XMatrix::parse("X-Matrix origin=a.example:8448,key=ed25519:a_b,sig=c2ln").unwrap();
    assert_eq!(
        (h.origin.as_str(), h.destination.as_deref()),
        ("a.example:8448", None)
    );
    // Rendering is what Synapse accepts: quoted, no spaces.
    let out = h.to_header_value();
    assert_eq!(
        out,
        r#"X-Matrix origin="a.example:8448",key="ed25519:a_b",sig="c2ln""#
    );
    assert_eq!(XMatrix::parse(&out).unwrap(), h);
}

#[test]
fn header_bad_input_table() {
    let cases: &[(&str, &str)] = &[
        ("X-Matrix", "xmatrix_missing_param"),
        ("X-Matrix key=ed25519:1,sig=c2ln", "xmatrix_missing_param"),
        ("X-Matrix origin=a,sig=c2ln", "xmatrix_missing_param"),
        ("X-Matrix origin=a,key=ed25519:1", "xmatrix_missing_param"),
        (
            "X-Matrix origin=bad@name,key=ed25519:1,sig=c2ln",
            "xmatrix_bad_origin",
        ),
        (
            r#"X-Matrix origin="",key=ed25519:1,sig=c2ln"#,
            "xmatrix_bad_origin",
        ),
        (
            r#"X-Matrix origin="a,key=ed25519:1,sig=c2ln"#,
            "xmatrix_malformed",
        ),
        ("X-Matrix origin=a key=ed25519:1", "xmatrix_malformed"),
        ("X-Matrix origin", "xmatrix_malformed"),
        ("X-Matrix =a", "xmatrix_malformed"),
        (
            "X-Matrix origin=a,origin=b,key=ed25519:1,sig=c2ln",
            "xmatrix_malformed",
        ),
        (
            "X-Matrixorigin=a,key=ed25519:1,sig=c2ln",
            "xmatrix_malformed",
        ),
        (
            "X-Matrix or:gin=a,key=ed25519:1,sig=c2ln",
            "xmatrix_malformed",
        ),
    ];
    for (h, code) in cases {
        let e = XMatrix::parse(h).expect_err(h);
        assert_eq!(e.code(), *code, "{h}: {e}");
        assert!(!e.to_string().contains('\n'));
    }
    assert_eq!(
        parse_authorization(&[]).unwrap_err().code(),
        "xmatrix_missing"
    );
    assert_eq!(
        parse_authorization(&["Bearer abc"]).unwrap_err().code(),
        "xmatrix_missing"
    );
    assert_eq!(
        parse_authorization(&["Bearer abc", "X-Matrix origin=a,key=ed25519:1,sig=c2ln"])
            .unwrap()
            .len(),
        1
    );
}

// ---------------------------------------------------------------- X-Matrix verification

fn sign(req: &Request, keys: &[SigningKey]) -> Vec<XMatrix> {
    req.sign(keys)
}

#[test]
fn several_headers_one_per_key_and_every_failure_has_its_code() {
    let (k1, k2) = (key("1"), other_key("2", 7));
    let body = Value::Object(obj(r#"{"pdus":[],"edus":[]}"#));
    let req = Request {
        method: "PUT",
        uri: "/_matrix/federation/v1/send/1",
        origin: "a.example",
        destination: "b.example",
        content: Some(&body),
    };
    let headers = sign(&req, &[k1.clone(), k2.clone()]);
    assert_eq!(headers.len(), 2);
    let ring = ring_for("a.example", &[k1.clone(), k2.clone()], 10_000);
    let now = Timestamp(5_000);
    let ok = verify_request(
        &headers,
        "b.example",
        "PUT",
        req.uri,
        Some(&body),
        &ring,
        now,
    )
    .unwrap();
    assert_eq!(ok.origin, "a.example");
    assert_eq!(ok.key_ids.len(), 2);

    // Only one of the two keys known: still authenticated by the known one.
    let ring1 = ring_for("a.example", &[k1.clone()], 10_000);
    let ok = verify_request(
        &headers,
        "b.example",
        "PUT",
        req.uri,
        Some(&body),
        &ring1,
        now,
    )
    .unwrap();
    assert_eq!(ok.key_ids, vec![KeyId::parse("ed25519:1").unwrap()]);

    // One signature bad among good ones: rejected.
    let mut bad = headers.clone();
    bad[1].sig = headers[0].sig.clone();
    let e = verify_request(&bad, "b.example", "PUT", req.uri, Some(&body), &ring, now).unwrap_err();
    assert_eq!(e.code(), "xmatrix_bad_signature");
    assert_eq!(e.errcode(), (401, "M_UNAUTHORIZED"));

    // Mixed origins.
    let mut mixed = headers.clone();
    mixed[1].origin = "c.example".into();
    let e =
        verify_request(&mixed, "b.example", "PUT", req.uri, Some(&body), &ring, now).unwrap_err();
    assert_eq!(e.code(), "xmatrix_origin_mismatch");

    // Key known, but expired now; and a key that is only an old key.
    let e = verify_request(
        &headers,
        "b.example",
        "PUT",
        req.uri,
        Some(&body),
        &ring,
        Timestamp(20_000),
    )
    .unwrap_err();
    assert_eq!(e.code(), "xmatrix_key_expired");
    assert!(e.needs_keys());
    let old = build_server_keys(
        "a.example",
        &[other_key("3", 9)],
        &[
            (
                k1.key_id().clone(),
                k1.verify_key(),
                Int::new(9_000).unwrap(),
            ),
            (
                k2.key_id().clone(),
                k2.verify_key(),
                Int::new(9_000).unwrap(),
            ),
        ],
        Int::new(10_000).unwrap(),
    )
    .unwrap();
    let mut old_ring = KeyRing::new();
    old_ring.add(&ServerKeys::from_response(&old).unwrap());
    let e = verify_request(
        &headers,
        "b.example",
        "PUT",
        req.uri,
        Some(&body),
        &old_ring,
        now,
    )
    .unwrap_err();
    assert_eq!(
        e.code(),
        "xmatrix_key_expired",
        "old keys never authenticate requests"
    );

    // Unknown origin.
    let e = verify_request(
        &headers,
        "b.example",
        "PUT",
        req.uri,
        Some(&body),
        &KeyRing::new(),
        now,
    )
    .unwrap_err();
    assert_eq!(e.code(), "xmatrix_unknown_key");
    assert!(e.needs_keys());
}

fn server_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
        "[a-z]{1,8}\\.[a-z]{2,4}:[0-9]{1,5}",
        "\\[::[0-9a-f]{1,4}\\](:[0-9]{2,5})?",
    ]
}

fn uri() -> impl Strategy<Value = String> {
    "/_matrix/federation/v1/[a-z_/%0-9A-F!$@:.]{0,40}(\\?[a-z_]{1,8}=[a-zA-Z0-9%._~-]{0,20}(&[a-z]{1,5}=[0-9]{1,4}){0,2})?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// sign → render → parse → verify holds for arbitrary URIs, bodies and server names, and
    /// any change of method, URI, body, origin or destination breaks it.
    #[test]
    fn xmatrix_round_trip_and_tamper(
        origin in server_name(),
        destination in server_name(),
        uri in uri(),
        body in proptest::option::of("[ -~]{0,60}"),
        flip in 0usize..5,
    ) {
        prop_assume!(origin != destination);
        let k = key("1");
        let content = body.as_ref().map(|b| {
            let mut o = Object::new();
            o.insert("text", b.as_str());
            Value::Object(o)
        });
        let method = if content.is_some() { "PUT" } else { "GET" };
        let req = Request { method, uri: &uri, origin: &origin, destination: &destination, content: content.as_ref() };
        let rendered: Vec<String> = req.sign(&[k.clone()]).iter().map(XMatrix::to_header_value).collect();
        let values: Vec<&str> = rendered.iter().map(String::as_str).collect();
        let headers = parse_authorization(&values).unwrap();
        let ring = ring_for(&origin, &[k], 10_000);
        let now = Timestamp(1);
        let ok = verify_request(&headers, &destination, method, &uri, content.as_ref(), &ring, now).unwrap();
        prop_assert_eq!(&ok.origin, &origin);

        let other_body = Value::Object(obj(r#"{"text":"changed!"}"#));
        let result = match flip {
            0 => verify_request(&headers, &destination, if method == "GET" { "PUT" } else { "GET" }, &uri, content.as_ref(), &ring, now),
            1 => verify_request(&headers, &destination, method, &format!("{uri}x"), content.as_ref(), &ring, now),
            2 => verify_request(&headers, &destination, method, &uri, if content.is_some() { None } else { Some(&other_body) }, &ring, now),
            3 => {
                let mut h = headers.clone();
                h[0].origin = if origin == "other.example" { "another.example".into() } else { "other.example".into() };
                let ring = ring_for(&h[0].origin, &[key("1")], 10_000);
                verify_request(&h, &destination, method, &uri, content.as_ref(), &ring, now)
            }
            _ => {
                let mut h = headers.clone();
                h[0].destination = None;
                let us = if destination == "other.example" { "another.example" } else { "other.example" };
                verify_request(&h, us, method, &uri, content.as_ref(), &ring, now)
            }
        };
        prop_assert_eq!(result.unwrap_err().code(), "xmatrix_bad_signature");
    }
}

/// Headers signing `raw` itself as the request's content, canonical or not (what a sender that
/// signs its own text rather than the canonical form would send).
fn sign_raw_content(req: &Request, raw: &[u8], key: &SigningKey) -> Vec<XMatrix> {
    let mut signed = b"{\"content\":".to_vec();
    signed.extend_from_slice(raw);
    let rest = Request {
        content: None,
        ..*req
    }
    .signing_bytes();
    signed.push(b',');
    signed.extend_from_slice(&rest[1..]);
    vec![XMatrix {
        origin: req.origin.to_owned(),
        destination: Some(req.destination.to_owned()),
        key: key.key_id().as_str().to_owned(),
        sig: mxfed_core::base64::encode(key.sign(&signed)),
    }]
}

/// A body verified as received (`verify_request_body`) gets the verdict of the parsed value
/// (`verify_request`), canonical or not: signed over the canonical form it verifies whatever
/// the bytes look like; signed over non-canonical bytes it never does.
#[test]
fn raw_body_verdicts_equal_value_verdicts() {
    let k = key("1");
    let ring = ring_for("a.example", &[k.clone()], 10_000);
    let now = Timestamp(5_000);
    let bodies: &[(&str, bool)] = &[
        (
            r#"{"edus":[],"origin":"a.example","pdus":[{"a":1,"b":"\n"}]}"#,
            true,
        ),
        ("\"just a string\"", true),
        (r#"{"pdus": [], "edus": []}"#, false),
        (r#"{"pdus":[],"edus":[]}"#, false),
        (r#"{"a":"\u00e9"}"#, false),
        (r#"{"a":"\/"}"#, false),
        (r#"{"a":-0}"#, false),
        // A legacy float: Python's repr writes it back the same, but the check leaves floats
        // to the encoder.
        (r#"{"a":1.5}"#, false),
        (r#"{"a":1.50}"#, false),
        (r#"{"a":9007199254740993}"#, false),
    ];
    for &(raw, canonical_already) in bodies {
        let body = RequestBody::parse(raw.as_bytes()).unwrap();
        assert_eq!(body.is_canonical(), canonical_already, "{raw}");
        assert_eq!(
            canonical::is_canonical(raw.as_bytes()),
            canonical_already,
            "{raw}"
        );
        let req = Request {
            method: "PUT",
            uri: "/_matrix/federation/v1/send/1",
            origin: "a.example",
            destination: "b.example",
            content: Some(body.value()),
        };
        let reencodes = canonical::to_vec(body.value()) == raw.as_bytes();
        // Signing the text as sent gives the headers of signing its parsed value, canonical
        // text or not (the first taken as it is, the other parsed and encoded).
        let text_only = Request {
            content: None,
            ..req
        };
        assert_eq!(
            text_only
                .sign_body(Some(raw.as_bytes()), &[k.clone()])
                .unwrap(),
            req.sign(&[k.clone()]),
            "{raw}"
        );
        for (headers, should_verify) in [
            (req.sign(&[k.clone()]), true),
            (sign_raw_content(&req, raw.as_bytes(), &k), reencodes),
        ] {
            let by_value = verify_request(
                &headers,
                "b.example",
                req.method,
                req.uri,
                req.content,
                &ring,
                now,
            );
            let by_raw = verify_request_body(
                &headers,
                "b.example",
                req.method,
                req.uri,
                Some(&body),
                &ring,
                now,
            );
            assert_eq!(by_value, by_raw, "{raw}");
            assert_eq!(by_raw.is_ok(), should_verify, "{raw}: {by_raw:?}");
        }
    }
    // No body, and the wrong body.
    let get = Request {
        method: "GET",
        uri: "/_matrix/federation/v1/version",
        origin: "a.example",
        destination: "b.example",
        content: None,
    };
    let headers = get.sign(&[k.clone()]);
    assert!(verify_request_body(&headers, "b.example", "GET", get.uri, None, &ring, now).is_ok());
    let body = RequestBody::parse(b"{}").unwrap();
    let e = verify_request_body(
        &headers,
        "b.example",
        "GET",
        get.uri,
        Some(&body),
        &ring,
        now,
    );
    assert_eq!(e.unwrap_err().code(), "xmatrix_bad_signature");
}

/// Signing a body that is not JSON is refused, whatever part of it is canonical.
#[test]
fn signing_a_body_that_is_not_json_is_refused() {
    let req = Request {
        method: "PUT",
        uri: "/_matrix/federation/v1/send/1",
        origin: "a.example",
        destination: "b.example",
        content: None,
    };
    for raw in [
        &b""[..],
        b"{",
        b"{\"a\":1}x",
        b"{\"a\":1,\"a\":2}",
        b"{\"a\":NaN}",
        b"\xff",
    ] {
        let e = req.sign_body(Some(raw), &[key("1")]).unwrap_err();
        assert!(matches!(e, XMatrixError::Body(_)), "{raw:?}: {e:?}");
        assert_eq!(e.errcode(), (400, "M_NOT_JSON"), "{raw:?}");
    }
}

// ---------------------------------------------------------------- server keys and the cache

#[test]
fn key_responses_bad_input_table() {
    let k = key("1");
    let good = build_server_keys("a.example", &[k.clone()], &[], Int::new(10).unwrap()).unwrap();
    assert!(ServerKeys::from_response(&good).is_ok());
    let mutate = |f: &dyn Fn(&mut Object)| {
        let mut o = good.clone();
        f(&mut o);
        ServerKeys::from_response(&o).unwrap_err().code()
    };
    assert_eq!(
        mutate(&|o| {
            o.remove("server_name");
        }),
        "keys_bad_field"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("server_name", "bad name");
        }),
        "bad_server_name"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("server_name", "b.example");
        }),
        "keys_not_self_signed"
    );
    assert_eq!(
        mutate(&|o| {
            o.remove("valid_until_ts");
        }),
        "keys_bad_field"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("valid_until_ts", "soon");
        }),
        "keys_bad_field"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("valid_until_ts", Int::new(11).unwrap());
        }),
        "keys_not_self_signed"
    );
    assert_eq!(
        mutate(&|o| {
            o.remove("verify_keys");
        }),
        "keys_bad_field"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("verify_keys", Object::new());
        }),
        "keys_bad_field"
    );
    assert_eq!(
        mutate(&|o| {
            o.remove("signatures");
        }),
        "keys_not_self_signed"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("verify_keys", obj(r#"{"ed25519:1":{"key":"not base64!"}}"#));
        }),
        "bad_base64"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert("verify_keys", obj(r#"{"ed25519:1":{"key":"AAAA"}}"#));
        }),
        "bad_key_length"
    );
    // Only keys of another algorithm: nothing to verify with.
    assert_eq!(
        mutate(&|o| {
            o.insert("verify_keys", obj(r#"{"curve25519:1":{"key":"AAAA"}}"#));
        }),
        "keys_bad_field"
    );
    // Signed by no key it lists: by another key of ours only, by a key it does not list.
    assert_eq!(
        mutate(&|o| {
            o.remove("signatures");
            sign_json(o, "a.example", &other_key("1", 9)).unwrap();
        }),
        "keys_not_self_signed"
    );
    assert_eq!(
        mutate(&|o| {
            o.remove("signatures");
            sign_json(o, "a.example", &other_key("unlisted", 9)).unwrap();
        }),
        "keys_not_self_signed"
    );
    // Signed by another server with the listed key.
    assert_eq!(
        mutate(&|o| {
            o.remove("signatures");
            sign_json(o, "b.example", &k).unwrap();
        }),
        "keys_not_self_signed"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert(
                "signatures",
                obj(r#"{"a.example":{"ed25519:1":"not base64!"}}"#),
            );
        }),
        "keys_not_self_signed"
    );
    assert_eq!(
        mutate(&|o| {
            o.insert(
                "old_verify_keys",
                obj(r#"{"ed25519:0":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}}"#),
            );
        }),
        "keys_bad_field"
    );
}

/// What Synapse's `process_v2_response` accepts beyond the strict reading: keys of other
/// algorithms are skipped, a listed key need not have signed, and the first signature (in key
/// ID order) by a listed key decides.
#[test]
fn key_responses_are_read_as_synapse_reads_them() {
    let (k1, k2) = (key("1"), other_key("2", 3));
    let unsigned = |extra: &[(&str, Value)], signers: &[&SigningKey]| {
        let mut o =
            build_server_keys("a.example", &[k1.clone()], &[], Int::new(10).unwrap()).unwrap();
        o.remove("signatures");
        let mut vk = o.get_object("verify_keys").unwrap().clone();
        for (id, v) in extra {
            vk.insert(*id, v.clone());
        }
        o.insert("verify_keys", vk);
        for s in signers {
            sign_json(&mut o, "a.example", s).unwrap();
        }
        o
    };
    let entry = |k: &SigningKey| {
        Value::Object(obj(&format!(
            r#"{{"key":"{}"}}"#,
            k.verify_key().to_base64()
        )))
    };

    // A second ed25519 key that did not sign is accepted, and learnt.
    let o = unsigned(&[("ed25519:2", entry(&k2))], &[&k1]);
    let keys = ServerKeys::from_response(&o).unwrap();
    assert_eq!(
        keys.keys.keys().map(KeyId::as_str).collect::<Vec<_>>(),
        ["ed25519:1", "ed25519:2"]
    );
    // Entries of other algorithms are skipped unread, in verify_keys and old_verify_keys.
    let mut o = unsigned(
        &[
            ("curve25519:x", Value::Object(obj(r#"{"key":"not a key"}"#))),
            ("org.example.alg:y", Value::from("not even an object")),
        ],
        &[&k1],
    );
    o.remove("signatures");
    o.insert("old_verify_keys", obj(r#"{"curve25519:z":{"no":"key"}}"#));
    sign_json(&mut o, "a.example", &k1).unwrap();
    let keys = ServerKeys::from_response(&o).unwrap();
    assert_eq!(
        keys.keys.keys().map(KeyId::as_str).collect::<Vec<_>>(),
        ["ed25519:1"]
    );
    // Signed only by the second listed key: accepted.
    let o = unsigned(&[("ed25519:2", entry(&k2))], &[&k2]);
    assert!(ServerKeys::from_response(&o).is_ok());
    // A signature by a key not listed (a notary's, say) is ignored, valid or not.
    let mut o = unsigned(&[], &[&k1]);
    let mut sigs = o.get_object("signatures").unwrap().clone();
    let mut ours = sigs.get_object("a.example").unwrap().clone();
    ours.insert("ed25519:0", "AAAA");
    sigs.insert("a.example", ours);
    o.insert("signatures", sigs);
    assert!(ServerKeys::from_response(&o).is_ok());
    // The first signature by a listed key decides: ed25519:1 (valid) before ed25519:2
    // (broken) is accepted; broken before valid is not.
    let broken = |o: &mut Object, id: &str| {
        let mut sigs = o.get_object("signatures").unwrap().clone();
        let mut ours = sigs.get_object("a.example").unwrap().clone();
        ours.insert(id, base64::encode([0u8; 64]));
        sigs.insert("a.example", ours);
        o.insert("signatures", sigs);
    };
    let mut o = unsigned(&[("ed25519:2", entry(&k2))], &[&k1]);
    broken(&mut o, "ed25519:2");
    assert!(ServerKeys::from_response(&o).is_ok());
    let mut o = unsigned(&[("ed25519:2", entry(&k2))], &[&k2]);
    broken(&mut o, "ed25519:1");
    assert_eq!(
        ServerKeys::from_response(&o).unwrap_err().code(),
        "keys_not_self_signed"
    );
}

fn sample(name: &str) -> serde_json::Value {
    let p = format!(
        "{}/../tests/vectors/samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn synapse_keys(port: u16) -> Object {
    let p = format!(
        "{}/../tests/vectors/synapse/keys/localhost_{port}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_object(&std::fs::read(p).unwrap(), &ParseOptions::STRICT).unwrap()
}

#[test]
fn synapse_notary_answer_verifies() {
    let s = sample("key_v2_query_notary.json");
    let body = serde_json::to_vec(&s["response"]["body"]).unwrap();
    let body = parse_object(&body, &ParseOptions::STRICT).unwrap();
    let notary = ServerKeys::from_response(&synapse_keys(8448)).unwrap();
    let notary_keys: BTreeMap<KeyId, VerifyKey> = notary
        .keys
        .iter()
        .map(|(id, e)| (id.clone(), e.key))
        .collect();
    let answer = verify_notary_response(&body, "localhost:8448", &notary_keys).unwrap();
    assert_eq!(answer.accepted.len(), 1);
    assert_eq!(answer.accepted[0].0.server_name, "localhost:8449");
    assert!(answer.rejected.is_empty());
    // The same answer claimed by another notary is rejected entry by entry.
    let answer = verify_notary_response(&body, "localhost:8450", &notary_keys).unwrap();
    assert_eq!(answer.accepted.len(), 0);
    assert_eq!(answer.rejected[0].1.code(), "keys_not_notary_signed");
    // The request body parses as a key query.
    let q = serde_json::to_vec(&s["request"]["content"]).unwrap();
    let q = KeyQuery::parse(&parse_object(&q, &ParseOptions::STRICT).unwrap()).unwrap();
    assert_eq!(
        q.servers["localhost:8449"]["ed25519:a_QIPj"],
        Some(1_795_664_295_746)
    );
    assert_eq!(KeyQuery::parse(&q.to_json()).unwrap(), q);
}

#[test]
fn key_cache_policy_and_notary_round_trip() {
    let (origin_key, notary_key) = (other_key("o", 1), other_key("n", 2));
    let day: u64 = 86_400_000;
    let response = build_server_keys(
        "origin.example",
        &[origin_key.clone()],
        &[],
        Int::new(2 * day as i64).unwrap(),
    )
    .unwrap();
    let mut cache = KeyCache::new();
    let t0 = Timestamp(0);
    // A response for another server than asked is refused.
    assert_eq!(
        cache
            .insert(response.clone(), Some("elsewhere.example"), t0)
            .unwrap_err()
            .code(),
        "keys_wrong_server"
    );
    cache
        .insert(response.clone(), Some("origin.example"), t0)
        .unwrap();
    let id = origin_key.key_id().clone();
    // Requests: usable until valid_until_ts, then refetch with minimum = now.
    assert_eq!(
        cache.fetch_for_request("origin.example", &[id.clone()], Timestamp(day)),
        None
    );
    let f = cache
        .fetch_for_request("origin.example", &[id.clone()], Timestamp(3 * day))
        .unwrap();
    assert_eq!(f.minimum_valid_until_ts, Timestamp(3 * day));
    // Events: v5+ need validity at origin_server_ts; v1-4 do not care.
    let v4 = RoomVersion::get("4").unwrap();
    let v5 = RoomVersion::get("5").unwrap();
    assert_eq!(
        cache.fetch_for_event("origin.example", &[id.clone()], Timestamp(3 * day), v4),
        None
    );
    assert!(cache
        .fetch_for_event("origin.example", &[id.clone()], Timestamp(3 * day), v5)
        .is_some());
    assert!(cache
        .fetch_for_event("unknown.example", &[id.clone()], Timestamp(1), v4)
        .is_some());
    // Refresh halfway through the lifetime.
    assert_eq!(cache.refresh_at("origin.example"), Some(Timestamp(day)));

    // A shorter-lived response does not replace a longer one.
    let shorter = build_server_keys(
        "origin.example",
        &[origin_key.clone()],
        &[],
        Int::new(day as i64).unwrap(),
    )
    .unwrap();
    cache.insert(shorter, None, Timestamp(10)).unwrap();
    assert_eq!(cache.response("origin.example"), Some(&response));

    // Notary: what to fetch, then the countersigned answer, which verifies as a notary answer.
    let mut q = KeyQuery::default();
    q.servers.insert("origin.example".into(), BTreeMap::new());
    q.servers.insert("nobody.example".into(), BTreeMap::new());
    let fetches: Vec<String> = cache
        .notary_fetches(&q, Timestamp(1))
        .into_iter()
        .map(|f| f.server)
        .collect();
    assert_eq!(fetches, ["nobody.example"]);
    let fetches = cache.notary_fetches(&q, Timestamp(day + 1));
    assert_eq!(
        fetches.len(),
        2,
        "past the refresh time the origin is refetched"
    );
    let answer = cache
        .notary_answer(&q, "notary.example", &[notary_key.clone()])
        .unwrap();
    assert_eq!(
        answer.get("server_keys").unwrap().as_array().unwrap().len(),
        1
    );
    let nk = BTreeMap::from([(notary_key.key_id().clone(), notary_key.verify_key())]);
    let checked = verify_notary_response(&answer, "notary.example", &nk).unwrap();
    assert_eq!(checked.accepted.len(), 1);
    // The origin's own signature is still there next to ours.
    let entry = &checked.accepted[0].1;
    assert!(entry
        .get_object("signatures")
        .unwrap()
        .contains_key("origin.example"));
    // Minimum validity beyond what is cached forces a fetch.
    let mut q2 = KeyQuery::default();
    q2.servers.insert(
        "origin.example".into(),
        BTreeMap::from([(id.as_str().to_owned(), Some(3 * day as i64))]),
    );
    assert_eq!(cache.notary_fetches(&q2, Timestamp(1)).len(), 1);
    // The GET form's minimum, for all of a server's keys, forces one too.
    let mut q3 = KeyQuery::default();
    q3.servers.insert("origin.example".into(), BTreeMap::new());
    assert!(cache.notary_fetches(&q3, Timestamp(1)).is_empty());
    q3.all_keys_minimum
        .insert("origin.example".into(), 3 * day as i64);
    let f = cache.notary_fetches(&q3, Timestamp(1));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].minimum_valid_until_ts, Timestamp(3 * day));
}

#[test]
fn a_key_fetch_asks_notaries_for_its_keys_and_knows_when_it_is_done() {
    let (k, other) = (other_key("k", 1), other_key("other", 4));
    let day: u64 = 86_400_000;
    let v10 = RoomVersion::get("10").unwrap();
    let mut cache = KeyCache::new();
    let f = cache
        .fetch_for_event("origin.example", &[k.key_id().clone()], Timestamp(day), v10)
        .unwrap();
    assert_eq!(f.key_ids, [k.key_id().clone()]);
    // The notary query names the key with the validity needed (Synapse's query).
    assert_eq!(
        f.notary_query().to_json().to_canonical_string(),
        format!(
            r#"{{"server_keys":{{"origin.example":{{"ed25519:k":{{"minimum_valid_until_ts":{day}}}}}}}}}"#
        )
    );
    // An answer without the key does not satisfy the fetch; nor one not valid long enough.
    let with = |keys: &[SigningKey], until: u64| {
        build_server_keys("origin.example", keys, &[], Int::new(until as i64).unwrap()).unwrap()
    };
    cache
        .insert(with(&[other.clone()], 2 * day), None, Timestamp(0))
        .unwrap();
    assert!(!cache.satisfies(&f));
    cache
        .insert(with(&[k.clone()], day - 1), None, Timestamp(0))
        .unwrap();
    assert!(!cache.satisfies(&f));
    cache
        .insert(with(&[k.clone()], day), None, Timestamp(0))
        .unwrap();
    assert!(cache.satisfies(&f));
    // A fetch naming no key: the server's latest response, valid long enough.
    let any = KeyFetch {
        server: "origin.example".into(),
        key_ids: Vec::new(),
        minimum_valid_until_ts: Timestamp(2 * day),
    };
    assert!(cache.satisfies(&any));
    assert!(!cache.satisfies(&KeyFetch {
        minimum_valid_until_ts: Timestamp(2 * day + 1),
        ..any.clone()
    }));
    assert_eq!(
        any.notary_query().to_json().to_canonical_string(),
        r#"{"server_keys":{"origin.example":{}}}"#
    );
    // Every key named must be there.
    let both = KeyFetch {
        key_ids: vec![k.key_id().clone(), KeyId::parse("ed25519:gone").unwrap()],
        ..f
    };
    assert!(!cache.satisfies(&both));
}

// ---------------------------------------------------------------- building events

fn member_template(v12: bool, sender: &str, target: &str, content: &str) -> EventTemplate {
    EventTemplate {
        room_id: Some(if v12 {
            "!abc".into()
        } else {
            "!r:a.example".into()
        }),
        event_type: "m.room.member".into(),
        sender: sender.into(),
        state_key: Some(target.into()),
        content: obj(content),
        redacts: None,
    }
}

#[test]
fn auth_event_selection_follows_the_spec() {
    let v10 = RoomVersion::get("10").unwrap();
    let v12 = RoomVersion::get("12").unwrap();
    let names = |t: &EventTemplate, v| -> Vec<String> {
        auth_types(t, v)
            .into_iter()
            .map(|(a, b)| format!("{a}|{b}"))
            .collect()
    };
    let join = member_template(
        false,
        "@a:a.example",
        "@a:a.example",
        r#"{"membership":"join","join_authorised_via_users_server":"@x:b.example"}"#,
    );
    assert_eq!(
        names(&join, v10),
        [
            "m.room.create|",
            "m.room.join_rules|",
            "m.room.member|@a:a.example",
            "m.room.member|@x:b.example",
            "m.room.power_levels|"
        ]
    );
    let invite = member_template(
        true,
        "@a:a.example",
        "@b:b.example",
        r#"{"membership":"invite","third_party_invite":{"signed":{"token":"tok"}}}"#,
    );
    assert_eq!(
        names(&invite, v12),
        [
            "m.room.join_rules|",
            "m.room.member|@a:a.example",
            "m.room.member|@b:b.example",
            "m.room.power_levels|",
            "m.room.third_party_invite|tok"
        ]
    );
    let leave = member_template(
        false,
        "@a:a.example",
        "@b:b.example",
        r#"{"membership":"leave"}"#,
    );
    assert_eq!(
        names(&leave, v10),
        [
            "m.room.create|",
            "m.room.member|@a:a.example",
            "m.room.member|@b:b.example",
            "m.room.power_levels|"
        ]
    );
    let create = EventTemplate {
        event_type: "m.room.create".into(),
        ..leave.clone()
    };
    assert!(names(&create, v10).is_empty());
}

#[test]
fn built_events_pass_the_receipt_checks_in_every_room_version() {
    let k = key("1");
    for v in RoomVersion::ALL {
        let ring = ring_for("a.example", &[k.clone()], i64::MAX >> 12);
        let v12 = v.room_id_from_create_event;
        let create = EventTemplate {
            room_id: if v12 {
                None
            } else {
                Some("!r:a.example".into())
            },
            event_type: "m.room.create".into(),
            sender: "@a:a.example".into(),
            state_key: Some(String::new()),
            content: obj(&format!(
                r#"{{"room_version":"{}","creator":"@a:a.example"}}"#,
                v.id
            )),
            redacts: None,
        };
        let built = build_event(
            v,
            "a.example",
            &create,
            &[],
            &StateMap::new(),
            Timestamp(1000),
            &k,
            Some("c1"),
        )
        .unwrap();
        assert_eq!(built.pdu.get("depth").and_then(Value::as_int), Some(1));
        if v12 {
            assert_eq!(built.room_id, format!("!{}", &built.event_id[1..]));
            assert!(!built.pdu.contains_key("room_id"));
        }
        let check = check_pdu_object(built.pdu.clone(), v, &ring);
        assert_eq!(
            check.verdict,
            Verdict::Accepted,
            "v{} create: {:?}",
            v.id,
            check.verdict
        );
        assert_eq!(check.event_id.as_deref(), Some(built.event_id.as_str()));

        let create_ref = EventRef {
            event_id: built.event_id.clone(),
            depth: 1,
            sha256: Some("aGFzaA".into()),
        };
        let mut state = StateMap::new();
        state.insert(("m.room.create".into(), String::new()), create_ref.clone());
        let join = EventTemplate {
            room_id: Some(built.room_id.clone()),
            ..member_template(
                false,
                "@a:a.example",
                "@a:a.example",
                r#"{"membership":"join"}"#,
            )
        };
        let j = build_event(
            v,
            "a.example",
            &join,
            &[create_ref.clone()],
            &state,
            Timestamp(2000),
            &k,
            Some("j1"),
        )
        .unwrap();
        assert_eq!(j.pdu.get("depth").and_then(Value::as_int), Some(2));
        let auth = j.pdu.get("auth_events").unwrap().as_array().unwrap();
        assert_eq!(
            auth.len(),
            usize::from(!v12),
            "v{}: create cited only before v12",
            v.id
        );
        if v.event_refs_with_hashes {
            assert_eq!(
                j.pdu.get("prev_events").unwrap().to_canonical_string(),
                format!(r#"[["{}",{{"sha256":"aGFzaA"}}]]"#, built.event_id)
            );
            assert_eq!(j.event_id, "$j1:a.example");
        }
        let check = check_pdu_object(j.pdu, v, &ring);
        assert_eq!(check.verdict, Verdict::Accepted, "v{} join", v.id);

        // Redactions put their target where the version says.
        let redaction = EventTemplate {
            room_id: Some(built.room_id.clone()),
            event_type: "m.room.redaction".into(),
            sender: "@a:a.example".into(),
            state_key: None,
            content: Object::new(),
            redacts: Some("$target".into()),
        };
        let r = build_event(
            v,
            "a.example",
            &redaction,
            &[create_ref],
            &state,
            Timestamp(3000),
            &k,
            Some("r1"),
        )
        .unwrap();
        let in_content = r.pdu.get_object("content").unwrap().contains_key("redacts");
        assert_eq!(in_content, v.redacts_in_content);
        assert_eq!(r.pdu.contains_key("redacts"), !v.redacts_in_content);
    }
}

#[test]
fn prev_events_keep_the_twenty_deepest_and_depth_saturates() {
    let v = RoomVersion::get("10").unwrap();
    let prev: Vec<EventRef> = (0..30)
        .map(|i| EventRef {
            event_id: format!("$e{i:02}"),
            depth: i,
            sha256: None,
        })
        .collect();
    let t = member_template(
        false,
        "@a:a.example",
        "@a:a.example",
        r#"{"membership":"join"}"#,
    );
    let b = build_event(
        v,
        "a.example",
        &t,
        &prev,
        &StateMap::new(),
        Timestamp(1),
        &key("1"),
        None,
    )
    .unwrap();
    let cited = b.pdu.get("prev_events").unwrap().as_array().unwrap();
    assert_eq!(cited.len(), 20);
    assert_eq!(cited[0].as_str(), Some("$e29"));
    assert_eq!(b.pdu.get("depth").and_then(Value::as_int), Some(30));
    let huge = [EventRef {
        event_id: "$x".into(),
        depth: (1 << 53) - 1,
        sha256: None,
    }];
    let b = build_event(
        v,
        "a.example",
        &t,
        &huge,
        &StateMap::new(),
        Timestamp(1),
        &key("1"),
        None,
    )
    .unwrap();
    assert_eq!(
        b.pdu.get("depth").and_then(Value::as_int),
        Some((1 << 53) - 1)
    );
    // v1 without an event ID localpart is an error, not a guess.
    let v1 = RoomVersion::get("1").unwrap();
    let e = build_event(
        v1,
        "a.example",
        &t,
        &[],
        &StateMap::new(),
        Timestamp(1),
        &key("1"),
        None,
    )
    .unwrap_err();
    assert_eq!(e.code(), "event_missing_field");
}

// ---------------------------------------------------------------- membership templates

fn template_answer(version: Option<&str>, membership: &str) -> Object {
    let mut event = obj(&format!(
        r#"{{"type":"m.room.member","room_id":"!r:res.example","sender":"@u:us.example",
            "state_key":"@u:us.example",
            "content":{{"membership":"{membership}","join_authorised_via_users_server":"@a:res.example"}},
            "prev_events":["$prev"],"auth_events":["$create","$power"],"depth":5,
            "origin":"res.example","origin_server_ts":1,"hashes":{{"sha256":"AAAA"}},
            "signatures":{{"res.example":{{"ed25519:1":"AAAA"}}}},"unsigned":{{"age":7}},
            "an_unknown_key":[1,2]}}"#
    ));
    if version.is_none() {
        // Version 1 cites events as [event_id, hashes] pairs: none here.
        event.insert("prev_events", Value::Array(Vec::new()));
        event.insert("auth_events", Value::Array(Vec::new()));
    }
    let mut answer = Object::new();
    if let Some(v) = version {
        answer.insert("room_version", v);
    }
    answer.insert("event", event);
    answer
}

fn membership_request<'a>(
    membership: &'a str,
    content: Option<&'a Object>,
) -> MembershipRequest<'a> {
    MembershipRequest {
        room_id: "!r:res.example",
        user_id: "@u:us.example",
        membership,
        origin: "us.example",
        content,
        now: Timestamp(1_700_000_000_000),
        event_id_localpart: None,
    }
}

/// A `make_join` template completed into our join: the resident's fields kept, ours set, the
/// old hashes, signatures and `unsigned` gone, our content added without replacing theirs, and
/// the result a PDU that passes the checks on receipt under our key.
#[test]
fn a_membership_template_is_completed_and_signed() {
    let k = key("1");
    let ring = ring_for("us.example", &[k.clone()], 2_000_000_000_000);
    let extra = obj(r#"{"displayname":"U","membership":"leave"}"#);
    let answer = template_answer(Some("10"), "join");
    let (built, v) =
        membership_from_template(&answer, &membership_request("join", Some(&extra)), &k).unwrap();
    assert_eq!(v.id, "10");
    let ev = &built.pdu;
    let content = ev.get_object("content").unwrap();
    assert_eq!(content.get_str("membership"), Some("join"));
    assert_eq!(content.get_str("displayname"), Some("U"));
    assert_eq!(
        content.get_str("join_authorised_via_users_server"),
        Some("@a:res.example")
    );
    assert_eq!(ev.get_str("origin"), Some("us.example"));
    assert_eq!(
        ev.get("origin_server_ts").and_then(Value::as_int),
        Some(1_700_000_000_000)
    );
    assert_eq!(ev.get("depth").and_then(Value::as_int), Some(5));
    let template = answer.get_object("event").unwrap();
    for kept in [
        "prev_events",
        "auth_events",
        "an_unknown_key",
        "room_id",
        "sender",
    ] {
        assert_eq!(ev.get(kept), template.get(kept), "{kept}");
    }
    assert!(ev.get("unsigned").is_none());
    let signers: Vec<&str> = ev
        .get_object("signatures")
        .unwrap()
        .iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(signers, ["us.example"]);
    assert_eq!(built.event_id, mxfed_core::event::event_id(ev, v).unwrap());
    assert_eq!(built.room_id, "!r:res.example");
    // A restricted join waits for the resident's signature (it adds it on `send_join`); ours
    // verifies already.
    let check = check_pdu_object(ev.clone(), v, &ring);
    assert!(
        matches!(
            check.verdict,
            Verdict::Rejected {
                code: "signature_missing",
                ..
            }
        ),
        "{check:?}"
    );
    assert!(check.signatures.iter().any(
        |s| s.server == "us.example" && s.keys == [("ed25519:1".to_owned(), KeyOutcome::Valid)]
    ));
    // Without it the join is complete.
    let mut plain = answer.clone();
    if let Some(Value::Object(e)) = plain.get_mut("event") {
        if let Some(Value::Object(c)) = e.get_mut("content") {
            c.remove("join_authorised_via_users_server");
        }
    }
    let (built, v) =
        membership_from_template(&plain, &membership_request("join", Some(&extra)), &k).unwrap();
    let check = check_pdu_object(built.pdu, v, &ring);
    assert_eq!(check.verdict, Verdict::Accepted, "{check:?}");
}

#[test]
fn a_template_not_asked_for_is_refused() {
    let k = key("1");
    let req = membership_request("join", None);
    let refused = |answer: &Object| {
        membership_from_template(answer, &req, &k)
            .map(|_| ())
            .unwrap_err()
    };
    let changed = |path: &[&str], value: Value| {
        let mut answer = template_answer(Some("10"), "join");
        let Some(Value::Object(ev)) = answer.get_mut("event") else {
            unreachable!()
        };
        match path {
            [field] => {
                ev.insert(*field, value);
            }
            [_, field] => {
                let Some(Value::Object(c)) = ev.get_mut("content") else {
                    unreachable!()
                };
                c.insert(*field, value);
            }
            _ => unreachable!(),
        }
        answer
    };
    for (path, value, field) in [
        (&["room_id"][..], "!other:res.example", "room_id"),
        (&["sender"][..], "@other:us.example", "sender"),
        (&["state_key"][..], "@other:us.example", "state_key"),
        (&["type"][..], "m.room.message", "type"),
        (
            &["content", "membership"][..],
            "invite",
            "content.membership",
        ),
    ] {
        let e = refused(&changed(path, Value::from(value)));
        assert_eq!(e, TemplateError::NotAsked { field }, "{path:?}");
        assert_eq!(e.code(), "template_not_asked");
    }
    // Not a string where one is needed.
    let e = refused(&changed(&["sender"], Value::Bool(true)));
    assert_eq!(e.code(), "template_not_asked");
    // A leave template for a join.
    assert_eq!(
        refused(&template_answer(Some("10"), "leave")).code(),
        "template_not_asked"
    );
    let mut no_event = template_answer(Some("10"), "join");
    no_event.insert("event", "nope");
    assert_eq!(refused(&no_event), TemplateError::NoEvent);
    assert_eq!(
        refused(&template_answer(Some("99"), "join")).code(),
        "unsupported_room_version"
    );
    // Knocking needs room version 7.
    let knock = membership_request("knock", None);
    let e = membership_from_template(&template_answer(Some("6"), "knock"), &knock, &k).unwrap_err();
    assert_eq!(e.code(), "template_no_knock");
    assert!(membership_from_template(&template_answer(Some("7"), "knock"), &knock, &k).is_ok());
    let ban = membership_request("ban", None);
    let e = membership_from_template(&template_answer(Some("10"), "ban"), &ban, &k).unwrap_err();
    assert_eq!(e.code(), "template_bad_membership");
    // A restricted join's authoriser that is not a user ID: every server's checks refuse the
    // event before reading a signature, so it is not signed (found by fuzzing).
    let bad_via = changed(
        &["content", "join_authorised_via_users_server"],
        Value::from("@bob:resident.exam&le"),
    );
    assert_eq!(refused(&bad_via).code(), "bad_user_id");
    // Too large to be accepted anywhere: not signed.
    let big = changed(&["content", "reason"], Value::from("x".repeat(70_000)));
    assert_eq!(refused(&big).code(), "pdu_too_large");
}

/// No `room_version` in the answer means version 1, whose event IDs the sender draws.
#[test]
fn a_template_without_a_room_version_is_version_1() {
    let k = key("1");
    let answer = template_answer(None, "leave");
    let req = membership_request("leave", None);
    let e = membership_from_template(&answer, &req, &k).unwrap_err();
    assert_eq!(e.code(), "event_missing_field");
    let req = MembershipRequest {
        event_id_localpart: Some("abc"),
        ..req
    };
    let (built, v) = membership_from_template(&answer, &req, &k).unwrap();
    assert_eq!(v.id, "1");
    assert_eq!(built.event_id, "$abc:us.example");
    assert_eq!(built.pdu.get_str("event_id"), Some("$abc:us.example"));
}

/// Key fetches for a batch of events: one per server, every key ID its events name, the latest
/// `minimum_valid_until_ts` among them (room version 5+); servers whose keys are cached are not
/// fetched.
#[test]
fn key_fetches_for_events_merge_per_server() {
    let v10 = RoomVersion::get("10").unwrap();
    let ev = |sender: &str, ts: i64, key: &str| {
        let server = sender.split_once(':').unwrap().1;
        parse_object(
            format!(
                r#"{{"type":"m.room.message","room_id":"!r:a.example","sender":"{sender}","origin_server_ts":{ts},"signatures":{{"{server}":{{"{key}":"x"}}}}}}"#
            )
            .as_bytes(),
            &ParseOptions::STRICT,
        )
        .unwrap()
    };
    let events = [
        ev("@u:b.example", 1000, "ed25519:1"),
        ev("@w:b.example", 5000, "ed25519:2"),
        ev("@u:b.example", 3000, "ed25519:1"),
        ev("@v:c.example", 10, "ed25519:9"),
    ];
    let mut cache = KeyCache::new();
    let fetches = cache.fetches_for_events(events.iter().map(|e| (e, v10)));
    let got: Vec<(String, Vec<String>, Timestamp)> = fetches
        .iter()
        .map(|f| {
            let ids = f.key_ids.iter().map(ToString::to_string).collect();
            (f.server.clone(), ids, f.minimum_valid_until_ts)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "b.example".to_owned(),
                vec!["ed25519:1".to_owned(), "ed25519:2".to_owned()],
                Timestamp(5000)
            ),
            (
                "c.example".to_owned(),
                vec!["ed25519:9".to_owned()],
                Timestamp(10)
            ),
        ]
    );
    // c.example's key cached, valid long enough: only b.example is left to fetch.
    let c_key = other_key("9", 3);
    let c = build_server_keys("c.example", &[c_key], &[], Int::new(1_000_000).unwrap()).unwrap();
    cache.insert(c, Some("c.example"), Timestamp(0)).unwrap();
    let servers: Vec<String> = cache
        .fetches_for_events(events.iter().map(|e| (e, v10)))
        .into_iter()
        .map(|f| f.server)
        .collect();
    assert_eq!(servers, ["b.example"]);
}
