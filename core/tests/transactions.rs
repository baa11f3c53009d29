//! Transactions and EDUs (DIGEST §12, §15, §21 pitfall 11): Synapse's real `/send` requests
//! parse, their EDUs come out typed and render back byte for byte, their PDUs get the event IDs
//! Synapse's receiver answered with; a bad-input table pins every rejection code; and the
//! inbound planner groups, orders and de-duplicates as documented.

// core/clippy.toml allows these inside #[test] functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mxfed_core::base64;
use mxfed_core::canonical::{self, parse_object, Int, Object, ParseOptions, Value};
use mxfed_core::edu::{
    DeviceListUpdate, DirectToDevice, Edu, Presence, PresenceUpdate, Receipt, ReceiptEntry,
    SigningKeyUpdate, Typing,
};
use mxfed_core::event::{self, EventError};
use mxfed_core::inbound::{plan_inbound, plan_inbound_with, Admission, InboundPlan, TxnDedup};
use mxfed_core::transaction::{
    parse_transaction, send_path, Item, PduResult, Transaction, TransactionResponse, MAX_EDUS,
    MAX_PDUS,
};
use mxfed_core::{RoomVersion, Timestamp};
use serde_json::Value as J;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

fn samples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/samples")
}

/// Every `send_txn_*.json` capture: (file name, the whole capture).
fn samples() -> Vec<(String, J)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(samples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("send_txn_") && name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((name, serde_json::from_str(&text).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 4, "expected the four send_txn samples");
    out
}

fn canon(v: &J) -> Vec<u8> {
    canonical::canonicalize(serde_json::to_string(v).unwrap().as_bytes()).unwrap()
}

fn obj(s: &str) -> Object {
    parse_object(s.as_bytes(), &ParseOptions::LEGACY).unwrap()
}

fn v(id: &str) -> &'static RoomVersion {
    RoomVersion::get(id).unwrap()
}

/// Rooms the test host knows: `!v1`, `!v3`, `!v10` and `!v12` on a.example, and Synapse's
/// sample room (version 12).
fn lookup(room: &str) -> Option<&'static RoomVersion> {
    match room {
        "!v1:a.example" => Some(v("1")),
        "!v3:a.example" => Some(v("3")),
        "!v10:a.example" | "!other:a.example" => Some(v("10")),
        "!o42KZdOR8E57jBO5t13IQRtqkFn43L52p4nea-HXe7I" => Some(v("12")),
        _ => None,
    }
}

fn plan(origin: &str, bytes: &[u8]) -> InboundPlan {
    let tx = parse_transaction(bytes).unwrap();
    plan_inbound(origin, "txn", tx, &mut TxnDedup::new(8), lookup)
}

/// A v3+ style PDU (no event_id); its ID is its reference hash. The content hash is real, so
/// PDUs differing only in their (redacted-away) body still get different IDs.
fn pdu(room: &str, depth: i64, prevs: &[&str], body: &str) -> Object {
    let mut content = Object::new();
    content.insert("body", body);
    let mut o = Object::new();
    o.insert("auth_events", Vec::<Value>::new());
    o.insert("content", content);
    o.insert("depth", Int::saturating(depth));
    o.insert("origin_server_ts", Int::saturating(1_000 + depth));
    o.insert(
        "prev_events",
        prevs.iter().map(|p| Value::from(*p)).collect::<Vec<_>>(),
    );
    o.insert("room_id", room);
    o.insert("sender", "@u:a.example");
    o.insert("signatures", Object::new());
    o.insert("type", "m.room.message");
    let mut hashes = Object::new();
    hashes.insert("sha256", base64::encode(event::content_hash(&o)));
    o.insert("hashes", hashes);
    o
}

fn id_of(p: &Object) -> String {
    let room = p.get_str("room_id").unwrap();
    event::event_id(p, lookup(room).unwrap()).unwrap()
}

fn body(pdus: Vec<Object>, edus: Vec<Edu>) -> Vec<u8> {
    Transaction::new("a.example", Timestamp(5), pdus, edus).to_bytes()
}

fn ids(plan: &InboundPlan, room: usize) -> Vec<String> {
    plan.rooms[room]
        .pdus
        .iter()
        .map(|p| p.event_id.clone())
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Synapse's samples
// ------------------------------------------------------------------------------------------------

/// Each captured request body parses; nothing is rejected; the body renders back to its own
/// canonical bytes; each EDU renders back to the canonical bytes of the EDU as captured.
#[test]
fn synapse_samples_parse_and_render_back_identically() {
    for (name, capture) in samples() {
        let req = &capture["request"];
        let content = &req["content"];
        let bytes = serde_json::to_vec_pretty(content).unwrap();
        let tx = parse_transaction(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(tx.rejected().is_empty(), "{name}: {:?}", tx.rejected());
        assert_eq!(tx.origin(), req["origin"].as_str().unwrap(), "{name}");
        assert_eq!(
            tx.origin_server_ts().as_millis(),
            content["origin_server_ts"].as_u64().unwrap()
        );
        assert_eq!(tx.to_bytes(), canon(content), "{name}: body round trip");
        let raw_edus = content["edus"].as_array().cloned().unwrap_or_default();
        assert_eq!(tx.edus().len(), raw_edus.len(), "{name}");
        for (edu, raw) in tx.edus().iter().zip(&raw_edus) {
            assert!(!matches!(edu, Edu::Unknown { .. }), "{name}: typed");
            let mut out = Vec::new();
            canonical::encode_object_into(&edu.to_object(), &mut out);
            assert_eq!(out, canon(raw), "{name}: EDU round trip");
            assert_eq!(edu.clone().into_object(), edu.to_object());
            assert!(edu.check_origin(tx.origin()).is_ok(), "{name}");
            assert!(!edu.is_reliable());
        }
        // The request path is the one send_path builds.
        let uri = req["uri"].as_str().unwrap();
        let txn_id = uri.rsplit('/').next().unwrap();
        assert_eq!(send_path(txn_id), uri);
    }
}

/// The EDUs in the samples come out as the right variants with the right fields.
#[test]
fn synapse_sample_edus_are_typed() {
    let all = samples();
    let get = |n: &str| {
        let (_, c) = all.iter().find(|(name, _)| name == n).unwrap();
        parse_transaction(&serde_json::to_vec(&c["request"]["content"]).unwrap()).unwrap()
    };

    let typing = get("send_txn_edu_typing.json");
    let Edu::Typing(t) = &typing.edus()[0] else {
        panic!("not typing")
    };
    assert_eq!(
        (t.room_id(), t.user_id(), t.typing()),
        (
            "!o42KZdOR8E57jBO5t13IQRtqkFn43L52p4nea-HXe7I",
            "@alice:localhost:8448",
            true
        )
    );

    let receipt = get("send_txn_edu_receipt.json");
    let Edu::Receipt(r) = &receipt.edus()[0] else {
        panic!("not a receipt")
    };
    let entries = r.entries();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (e.receipt_type(), e.user_id(), e.ts(), e.thread_id()),
        (
            "m.read",
            "@bob:localhost:8449",
            Some(1_795_664_292_173),
            None
        )
    );
    assert_eq!(
        e.event_ids().collect::<Vec<_>>(),
        ["$WsW2UHfUjrlAJraqaI19PN9LWe_N04KrHlbL0QE63AE"]
    );

    let message = get("send_txn_pdu_message.json");
    let Edu::Presence(p) = &message.edus()[0] else {
        panic!("not presence")
    };
    let u = &p.updates()[0];
    assert_eq!(
        (
            u.user_id(),
            u.presence(),
            u.last_active_ago(),
            u.status_msg()
        ),
        ("@alice:localhost:8448", "offline", Some(16), None)
    );
    assert_eq!(message.pdus().len(), 1);
    assert!(get("send_txn_pdu_member.json").edus().is_empty());
}

/// Planning the samples (room version 12) computes exactly the event IDs Synapse's receiver
/// keyed its response with, and an all-OK response renders to Synapse's response bytes.
#[test]
fn synapse_samples_plan_to_the_event_ids_synapse_answered() {
    for (name, capture) in samples() {
        let req = &capture["request"];
        let origin = req["origin"].as_str().unwrap();
        let plan = plan(origin, &serde_json::to_vec(&req["content"]).unwrap());
        assert_eq!(plan.admission, Admission::New);
        assert!(plan.rejected.is_empty(), "{name}: {:?}", plan.rejected);
        let mut resp = TransactionResponse::new();
        for id in plan.event_ids() {
            resp.set_ok(id);
        }
        let expected = &capture["response"]["body"];
        assert_eq!(resp.to_bytes(), canon(expected), "{name}");
        let parsed = TransactionResponse::parse(&canon(expected)).unwrap();
        assert_eq!(parsed, resp, "{name}");
    }
}

// ------------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------------

/// The code a body gets: the whole-transaction error's, else the first rejected item's (after
/// planning with `origin` a.example and [`lookup`]), else `ok`.
fn outcome(bytes: &[u8]) -> String {
    match parse_transaction(bytes) {
        Err(e) => e.code().to_owned(),
        Ok(tx) => {
            let p = plan_inbound("a.example", "t", tx, &mut TxnDedup::new(4), lookup);
            p.rejected
                .first()
                .map_or("ok".to_owned(), |r| r.code().to_owned())
        }
    }
}

fn with_pdus(pdus: &str) -> String {
    format!(r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[{pdus}]}}"#)
}

fn with_edu(edu_type: &str, content: &str) -> String {
    format!(
        r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[],"edus":[{{"edu_type":"{edu_type}","content":{content}}}]}}"#
    )
}

fn with_edus(edus: &str) -> String {
    format!(r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[],"edus":[{edus}]}}"#)
}

fn repeat(item: &str, n: usize) -> String {
    vec![item; n].join(",")
}

/// Every malformed input gets its stable code: whole-request codes (answer 400) and per-item
/// codes (the rest goes ahead).
#[test]
fn bad_input_table() {
    let ok_pdu = r#"{"room_id":"!v10:a.example","type":"m.room.message","depth":1}"#;
    let ok_edu = r#"{"edu_type":"m.typing","content":{"room_id":"!v10:a.example","user_id":"@u:a.example","typing":true}}"#;
    let huge = format!(
        r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[],"pad":"{}"}}"#,
        "x".repeat(mxfed_core::transaction::MAX_BODY_BYTES)
    );
    let fifty_v1_pdus = (0..MAX_PDUS)
        .map(|i| format!(r#"{{"room_id":"!v1:a.example","event_id":"$e{i}:a.example"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<(&str, String, &str)> = vec![
        // Whole request refused.
        ("not JSON", "{".into(), "json_syntax"),
        ("empty body", "".into(), "json_syntax"),
        ("trailing data", "{}{}".into(), "json_trailing_data"),
        ("array body", "[]".into(), "txn_not_object"),
        ("string body", r#""txn""#.into(), "txn_not_object"),
        (
            "duplicate key",
            r#"{"origin":"a","origin":"b","origin_server_ts":1}"#.into(),
            "json_duplicate_key",
        ),
        (
            "lone surrogate",
            r#"{"origin":"\ud800","origin_server_ts":1}"#.into(),
            "json_lone_surrogate",
        ),
        ("over the size limit", huge, "json_too_large"),
        (
            "missing origin",
            r#"{"origin_server_ts":1,"pdus":[]}"#.into(),
            "txn_missing_field",
        ),
        (
            "origin not a string",
            r#"{"origin":5,"origin_server_ts":1,"pdus":[]}"#.into(),
            "txn_wrong_type",
        ),
        (
            "origin not a server name",
            r#"{"origin":"bad host","origin_server_ts":1,"pdus":[]}"#.into(),
            "txn_bad_origin",
        ),
        (
            "missing origin_server_ts",
            r#"{"origin":"a.example","pdus":[]}"#.into(),
            "txn_missing_field",
        ),
        (
            "origin_server_ts a string",
            r#"{"origin":"a.example","origin_server_ts":"1","pdus":[]}"#.into(),
            "txn_wrong_type",
        ),
        (
            "origin_server_ts a float",
            r#"{"origin":"a.example","origin_server_ts":1.5,"pdus":[]}"#.into(),
            "txn_wrong_type",
        ),
        (
            "pdus an object",
            r#"{"origin":"a.example","origin_server_ts":1,"pdus":{}}"#.into(),
            "txn_wrong_type",
        ),
        (
            "edus a string",
            r#"{"origin":"a.example","origin_server_ts":1,"pdus":[],"edus":"x"}"#.into(),
            "txn_wrong_type",
        ),
        (
            "51 PDUs",
            with_pdus(&repeat(ok_pdu, MAX_PDUS + 1)),
            "txn_too_many_pdus",
        ),
        (
            "101 EDUs",
            with_edus(&repeat(ok_edu, MAX_EDUS + 1)),
            "txn_too_many_edus",
        ),
        (
            "51 bad PDUs still count",
            with_pdus(&repeat("1", MAX_PDUS + 1)),
            "txn_too_many_pdus",
        ),
        // One PDU left out.
        (
            "PDU not an object",
            with_pdus(r#"[1,2]"#),
            "txn_pdu_not_object",
        ),
        (
            "PDU without room_id",
            with_pdus(r#"{"type":"m.room.message"}"#),
            "txn_pdu_missing_room_id",
        ),
        (
            "PDU with empty room_id",
            with_pdus(r#"{"room_id":""}"#),
            "txn_pdu_missing_room_id",
        ),
        (
            "PDU room_id a number",
            with_pdus(r#"{"room_id":7}"#),
            "txn_pdu_bad_room_id",
        ),
        (
            "PDU for an unknown room",
            with_pdus(r#"{"room_id":"!nope:a.example"}"#),
            "txn_pdu_unknown_room",
        ),
        (
            "float in a v10 PDU",
            with_pdus(r#"{"room_id":"!v10:a.example","depth":1.5}"#),
            "pdu_non_canonical_number",
        ),
        // `unsigned` is reduced to what Synapse keeps before the number rule applies.
        (
            "float in a v10 PDU's unsigned",
            with_pdus(r#"{"room_id":"!v10:a.example","depth":1,"unsigned":{"foo":1.5,"age":1.5}}"#),
            "ok",
        ),
        (
            "float in a v10 member's invite_room_state",
            with_pdus(
                r#"{"room_id":"!v10:a.example","type":"m.room.member","depth":1,"unsigned":{"invite_room_state":[1.5]}}"#,
            ),
            "pdu_non_canonical_number",
        ),
        (
            "v1 PDU without event_id",
            with_pdus(r#"{"room_id":"!v1:a.example"}"#),
            "event_missing_field",
        ),
        (
            "v1 PDU event_id a number",
            with_pdus(r#"{"room_id":"!v1:a.example","event_id":3}"#),
            "event_wrong_type",
        ),
        (
            "same PDU twice",
            with_pdus(&repeat(ok_pdu, 2)),
            "txn_pdu_duplicate",
        ),
        // One EDU left out.
        ("EDU not an object", with_edus("[]"), "edu_not_object"),
        (
            "EDU without edu_type",
            with_edus(r#"{"content":{}}"#),
            "edu_missing_field",
        ),
        (
            "EDU edu_type not a string",
            with_edus(r#"{"edu_type":1,"content":{}}"#),
            "edu_wrong_type",
        ),
        (
            "EDU without content",
            with_edus(r#"{"edu_type":"m.typing"}"#),
            "edu_missing_field",
        ),
        (
            "EDU content a list",
            with_edu("org.example.x", "[]"),
            "edu_wrong_type",
        ),
        (
            "typing without user_id",
            with_edu("m.typing", r#"{"room_id":"!r","typing":true}"#),
            "edu_missing_field",
        ),
        (
            "typing without room_id",
            with_edu("m.typing", r#"{"user_id":"@u:a.example","typing":true}"#),
            "edu_missing_field",
        ),
        (
            "typing missing",
            with_edu("m.typing", r#"{"room_id":"!r","user_id":"@u:a.example"}"#),
            "edu_missing_field",
        ),
        (
            "typing bad user ID",
            with_edu(
                "m.typing",
                r#"{"room_id":"!r","user_id":"u:a.example","typing":true}"#,
            ),
            "edu_bad_user_id",
        ),
        (
            "typing for another server",
            with_edu(
                "m.typing",
                r#"{"room_id":"!r","user_id":"@u:b.example","typing":true}"#,
            ),
            "edu_foreign_user",
        ),
        (
            "receipt bad user ID",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"bob":{"event_ids":["$e"]}}}}"#,
            ),
            "edu_bad_user_id",
        ),
        (
            "receipt user of another server",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"@bob:b.example":{"event_ids":["$e"]}}}}"#,
            ),
            "edu_foreign_user",
        ),
        (
            "receipt event_ids empty",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"@u:a.example":{"event_ids":[]}}}}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "receipt event_ids a string",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"@u:a.example":{"event_ids":"$e"}}}}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "receipt without event_ids",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"@u:a.example":{"data":{}}}}}"#,
            ),
            "edu_missing_field",
        ),
        (
            "receipt room not an object",
            with_edu("m.receipt", r#"{"!r":[]}"#),
            "edu_wrong_type",
        ),
        (
            "receipt data a list",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"@u:a.example":{"event_ids":["$e"],"data":[]}}}}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "presence push not a list",
            with_edu("m.presence", r#"{"push":{}}"#),
            "edu_wrong_type",
        ),
        (
            "presence without push",
            with_edu("m.presence", "{}"),
            "edu_missing_field",
        ),
        (
            "presence entry not an object",
            with_edu("m.presence", r#"{"push":["x"]}"#),
            "edu_wrong_type",
        ),
        (
            "presence state a number",
            with_edu(
                "m.presence",
                r#"{"push":[{"user_id":"@u:a.example","presence":5}]}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "presence bad user ID",
            with_edu(
                "m.presence",
                r#"{"push":[{"user_id":"@u","presence":"online"}]}"#,
            ),
            "edu_bad_user_id",
        ),
        (
            "presence last_active_ago a string",
            with_edu(
                "m.presence",
                r#"{"push":[{"user_id":"@u:a.example","presence":"online","last_active_ago":"5"}]}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "presence currently_active a string",
            with_edu(
                "m.presence",
                r#"{"push":[{"user_id":"@u:a.example","presence":"online","currently_active":"yes"}]}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "device list without device_id",
            with_edu(
                "m.device_list_update",
                r#"{"user_id":"@u:a.example","stream_id":1}"#,
            ),
            "edu_missing_field",
        ),
        (
            "device list stream_id a bool",
            with_edu(
                "m.device_list_update",
                r#"{"user_id":"@u:a.example","device_id":"D","stream_id":true}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "device list prev_id not a list",
            with_edu(
                "m.device_list_update",
                r#"{"user_id":"@u:a.example","device_id":"D","stream_id":1,"prev_id":5}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "device list deleted a string",
            with_edu(
                "m.device_list_update",
                r#"{"user_id":"@u:a.example","device_id":"D","stream_id":1,"deleted":"no"}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "signing key master_key a string",
            with_edu(
                "m.signing_key_update",
                r#"{"user_id":"@u:a.example","master_key":"k"}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "signing key without user_id",
            with_edu("m.signing_key_update", "{}"),
            "edu_missing_field",
        ),
        (
            "to-device without message_id",
            with_edu(
                "m.direct_to_device",
                r#"{"sender":"@u:a.example","type":"t","messages":{}}"#,
            ),
            "edu_missing_field",
        ),
        (
            "to-device bad recipient",
            with_edu(
                "m.direct_to_device",
                r#"{"sender":"@u:a.example","type":"t","message_id":"m","messages":{"bob":{}}}"#,
            ),
            "edu_bad_user_id",
        ),
        (
            "to-device message not an object",
            with_edu(
                "m.direct_to_device",
                r#"{"sender":"@u:a.example","type":"t","message_id":"m","messages":{"@b:b.example":{"D":1}}}"#,
            ),
            "edu_wrong_type",
        ),
        (
            "to-device sender of another server",
            with_edu(
                "m.direct_to_device",
                r#"{"sender":"@u:b.example","type":"t","message_id":"m","messages":{}}"#,
            ),
            "edu_foreign_user",
        ),
        // Accepted.
        (
            "float in a v3 PDU",
            with_pdus(r#"{"room_id":"!v3:a.example","depth":1.5}"#),
            "ok",
        ),
        (
            "pdus and edus absent",
            r#"{"origin":"a.example","origin_server_ts":1}"#.into(),
            "ok",
        ),
        (
            "edus null",
            r#"{"origin":"a.example","origin_server_ts":1,"pdus":[],"edus":null}"#.into(),
            "ok",
        ),
        (
            "50 PDUs and 100 EDUs",
            format!(
                r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[{}],"edus":[{}]}}"#,
                fifty_v1_pdus,
                repeat(ok_edu, MAX_EDUS)
            ),
            "ok",
        ),
        (
            "unknown EDU with floats",
            with_edu("org.example.x", r#"{"a":1.5}"#),
            "ok",
        ),
        // As Synapse: `typing` read as Python reads a condition, a thread ID that is not a
        // string as no thread, a presence entry without a state skipped.
        (
            "typing not a bool",
            with_edu(
                "m.typing",
                r#"{"room_id":"!r","user_id":"@u:a.example","typing":"yes"}"#,
            ),
            "ok",
        ),
        (
            "receipt thread_id a number",
            with_edu(
                "m.receipt",
                r#"{"!r":{"m.read":{"@u:a.example":{"event_ids":["$e"],"data":{"thread_id":1}}}}}"#,
            ),
            "ok",
        ),
        (
            "presence without presence",
            with_edu(
                "m.presence",
                r#"{"push":[{"user_id":"@u:a.example"},{"user_id":"@v:a.example","presence":null}]}"#,
            ),
            "ok",
        ),
        (
            "presence with nulls",
            with_edu(
                "m.presence",
                r#"{"push":[{"user_id":"@u:a.example","presence":"busy","status_msg":null,"last_active_ago":null}]}"#,
            ),
            "ok",
        ),
    ];
    assert!(rows.len() >= 20);
    let mut failures = Vec::new();
    for (name, input, want) in &rows {
        let got = outcome(input.as_bytes());
        if got != *want {
            failures.push(format!("{name}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{} bad-input rows", rows.len());
}

/// A bad PDU or EDU never fails its neighbours: they are planned, and the rejected items name
/// their positions in the request.
#[test]
fn one_bad_item_does_not_fail_the_rest() {
    let good = pdu("!v10:a.example", 1, &[], "hi");
    let good_id = id_of(&good);
    let bytes = format!(
        r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[1,{},{{"room_id":"!nope:x"}}],
            "edus":[{{"edu_type":"m.typing","content":{{}}}},{{"edu_type":"m.typing","content":{{"room_id":"!r","user_id":"@u:a.example","typing":false}}}}]}}"#,
        good.to_canonical_string()
    );
    let p = plan("a.example", bytes.as_bytes());
    assert_eq!(ids(&p, 0), [good_id]);
    assert_eq!(p.edus.len(), 1);
    let where_what: Vec<_> = p.rejected.iter().map(|r| (r.item, r.code())).collect();
    assert_eq!(
        where_what,
        [
            (Item::Pdu(0), "txn_pdu_not_object"),
            (Item::Pdu(2), "txn_pdu_unknown_room"),
            (Item::Edu(0), "edu_missing_field"),
        ]
    );
    assert_eq!(p.rooms[0].pdus[0].item, Item::Pdu(1));
}

/// The planned PDU carries `unsigned` reduced to what Synapse keeps (`age` when an integer;
/// invite and knock room state on member events), with the event ID it had.
#[test]
fn planned_pdus_carry_the_reduced_unsigned() {
    let message = pdu("!v10:a.example", 1, &[], "hi");
    let id = id_of(&message);
    let text = message.to_canonical_string();
    let bytes = format!(
        r#"{{"origin":"a.example","origin_server_ts":1,"pdus":[{{"unsigned":{{"age":3,"foo":1.5,"invite_room_state":[]}},{}]}}"#,
        &text[1..]
    );
    let p = plan("a.example", bytes.as_bytes());
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    assert_eq!(ids(&p, 0), [id]);
    assert_eq!(
        p.rooms[0].pdus[0]
            .pdu
            .get("unsigned")
            .unwrap()
            .to_canonical_string(),
        r#"{"age":3}"#
    );
}

/// Typed EDUs built by hand validate like parsed ones and survive a trip through a transaction.
#[test]
fn built_edus_round_trip_through_a_transaction() {
    let edus: Vec<Edu> = vec![
        Typing::new("!r:a.example", "@u:a.example", true)
            .unwrap()
            .into(),
        Receipt::from_entries([ReceiptEntry::new(
            "!r:a.example",
            "m.read",
            "@u:a.example",
            "$e",
            9,
            Some("$thread"),
        )
        .unwrap()])
        .into(),
        Presence::from_updates([PresenceUpdate::new("@u:a.example", "online", Some(1))
            .unwrap()
            .with_status_msg("here")])
        .into(),
        DeviceListUpdate::new("@u:a.example", "DEV", 7, &[6])
            .unwrap()
            .into(),
        SigningKeyUpdate::new("@u:a.example", Some(obj(r#"{"usage":["master"]}"#)), None)
            .unwrap()
            .into(),
        DirectToDevice::new(
            "@u:a.example",
            "m.x",
            "mid",
            obj(r#"{"@v:b.example":{"*":{}}}"#),
        )
        .unwrap()
        .into(),
        Edu::Unknown {
            edu_type: "org.example.custom".into(),
            content: obj(r#"{"anything":[1,2.5]}"#),
        },
    ];
    let reliable: Vec<bool> = edus.iter().map(Edu::is_reliable).collect();
    assert_eq!(reliable, [false, false, false, true, true, true, false]);
    let bytes = body(vec![], edus.clone());
    let tx = parse_transaction(&bytes).unwrap();
    assert_eq!(tx.edus(), &edus[..]);
    assert_eq!(tx.to_bytes(), bytes);
    assert!(Typing::new("!r", "nope", true).is_err());
}

/// Envelope keys other than `edu_type` and `content` (old Synapse's `origin`/`destination`) are
/// not kept; the content always is.
#[test]
fn edu_envelope_extras_are_dropped_content_is_kept() {
    let raw = obj(
        r#"{"edu_type":"m.typing","origin":"a","destination":"b","content":{"room_id":"!r","user_id":"@u:a","typing":false,"extra":{"k":[1]}}}"#,
    );
    let edu = Edu::from_object(&raw).unwrap();
    assert_eq!(edu.content(), raw.get_object("content").unwrap());
    assert!(!edu.to_object().contains_key("origin"));
}

// ------------------------------------------------------------------------------------------------
// Inbound planning
// ------------------------------------------------------------------------------------------------

/// A chain of 10 events delivered newest first comes out oldest first.
#[test]
fn reversed_chain_is_ordered() {
    let mut chain = Vec::new();
    let mut prev: Vec<String> = Vec::new();
    for d in 1..=10 {
        let prevs: Vec<&str> = prev.iter().map(String::as_str).collect();
        let p = pdu("!v10:a.example", d, &prevs, &format!("m{d}"));
        prev = vec![id_of(&p)];
        chain.push(p);
    }
    let want: Vec<String> = chain.iter().map(id_of).collect();
    chain.reverse();
    let p = plan("a.example", &body(chain, vec![]));
    assert_eq!(p.rooms.len(), 1);
    assert_eq!(ids(&p, 0), want);
    assert_eq!(p.rooms[0].room_version.id, "10");
}

/// `prev_events` beat `depth`: a child that lies about its depth still comes after its parent.
#[test]
fn prev_events_beat_depth() {
    let parent = pdu("!v10:a.example", 50, &[], "parent");
    let pid = id_of(&parent);
    let child = pdu("!v10:a.example", 1, &[&pid], "child");
    let cid = id_of(&child);
    let p = plan("a.example", &body(vec![child, parent], vec![]));
    assert_eq!(ids(&p, 0), [pid, cid]);
}

/// Siblings (ready at the same time) go by depth, then by event ID.
#[test]
fn ties_break_by_depth_then_event_id() {
    let root = pdu("!v10:a.example", 1, &[], "root");
    let rid = id_of(&root);
    let mut kids: Vec<Object> = (0..6)
        .map(|i| pdu("!v10:a.example", 2 + i % 2, &[&rid], &format!("kid{i}")))
        .collect();
    let mut want: Vec<(i64, String)> = kids
        .iter()
        .map(|k| (k.get("depth").unwrap().as_int().unwrap(), id_of(k)))
        .collect();
    want.sort();
    kids.reverse();
    kids.push(root);
    let p = plan("a.example", &body(kids, vec![]));
    let got = ids(&p, 0);
    assert_eq!(got[0], rid);
    assert_eq!(
        &got[1..],
        want.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    );
}

/// Two rooms interleaved are grouped, rooms in order of first appearance, each ordered.
#[test]
fn interleaved_rooms_are_grouped() {
    let a1 = pdu("!v10:a.example", 1, &[], "a1");
    let a2 = pdu("!v10:a.example", 2, &[&id_of(&a1)], "a2");
    let b1 = pdu("!other:a.example", 1, &[], "b1");
    let b2 = pdu("!other:a.example", 2, &[&id_of(&b1)], "b2");
    let (a1i, a2i, b1i, b2i) = (id_of(&a1), id_of(&a2), id_of(&b1), id_of(&b2));
    let p = plan("a.example", &body(vec![b2, a2, b1, a1], vec![]));
    let rooms: Vec<_> = p.rooms.iter().map(|r| r.room_id.as_str()).collect();
    assert_eq!(rooms, ["!other:a.example", "!v10:a.example"]);
    assert_eq!(ids(&p, 0), [b1i, b2i]);
    assert_eq!(ids(&p, 1), [a1i, a2i]);
    assert_eq!(p.pdu_count(), 4);
}

/// v1 PDUs (event IDs carried, `prev_events` as `[id, hashes]` pairs) order the same way.
#[test]
fn v1_reference_pairs_are_followed() {
    let bytes = with_pdus(
        r#"{"room_id":"!v1:a.example","event_id":"$c:a.example","depth":1,"prev_events":[["$b:a.example",{}]]},
           {"room_id":"!v1:a.example","event_id":"$b:a.example","depth":1,"prev_events":[["$a:a.example",{"sha256":"x"}]]},
           {"room_id":"!v1:a.example","event_id":"$a:a.example","depth":1,"prev_events":[]}"#,
    );
    let p = plan("a.example", bytes.as_bytes());
    assert_eq!(ids(&p, 0), ["$a:a.example", "$b:a.example", "$c:a.example"]);
}

/// PDUs of rooms the host does not know are left out with a note and no response entry.
#[test]
fn unknown_rooms_are_ignored() {
    let known = pdu("!v10:a.example", 1, &[], "k");
    let unknown = pdu("!elsewhere:b.example", 1, &[], "u");
    let p = plan("a.example", &body(vec![unknown, known.clone()], vec![]));
    assert_eq!(p.rooms.len(), 1);
    assert_eq!(ids(&p, 0), [id_of(&known)]);
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].item, Item::Pdu(0));
    assert_eq!(p.rejected[0].code(), "txn_pdu_unknown_room");
}

/// Duplicates by (origin, txn ID): a retry after completion gets the stored response, a retry
/// during processing is told so, another transaction from the same origin is busy, and the
/// same txn ID from another origin is a different transaction.
#[test]
fn duplicates_are_detected() {
    let mut dedup = TxnDedup::new(16);
    let bytes = body(vec![pdu("!v10:a.example", 1, &[], "x")], vec![]);
    let tx = || parse_transaction(&bytes).unwrap();

    let first = plan_inbound("a.example", "7", tx(), &mut dedup, lookup);
    assert_eq!(first.admission, Admission::New);
    assert!(!first.is_duplicate());

    let during = plan_inbound("a.example", "7", tx(), &mut dedup, lookup);
    assert_eq!(during.admission, Admission::InProgress);
    assert!(during.rooms.is_empty() && during.edus.is_empty());
    let other = plan_inbound("a.example", "8", tx(), &mut dedup, lookup);
    assert_eq!(other.admission.http_status(), Some(429));

    let mut resp = TransactionResponse::new();
    for id in first.event_ids() {
        resp.set_error(id, "not allowed");
    }
    dedup.complete("a.example", "7", resp.clone());
    let again = plan_inbound("a.example", "7", tx(), &mut dedup, lookup);
    assert!(again.is_duplicate());
    assert_eq!(again.admission, Admission::Duplicate(resp));
    assert!(again.rooms.is_empty());

    let elsewhere = plan_inbound("b.example", "7", tx(), &mut dedup, lookup);
    assert_eq!(elsewhere.admission, Admission::New);
    dedup.abort("b.example", "7");
    assert_eq!(
        plan_inbound("b.example", "7", tx(), &mut dedup, lookup).admission,
        Admission::New,
        "an aborted (5xx) transaction is processed again"
    );
}

/// The host can bring its own event ID function; its errors become item errors.
#[test]
fn custom_event_id_function() {
    let bytes = body(
        vec![
            pdu("!v10:a.example", 2, &["$first"], "b"),
            pdu("!v10:a.example", 1, &[], "a"),
        ],
        vec![],
    );
    let ids_by_body = |p: &Object, _: &RoomVersion| -> Result<String, EventError> {
        let b = p.get_object("content").unwrap().get_str("body").unwrap();
        match b {
            "a" => Ok("$first".into()),
            _ => Ok("$second".into()),
        }
    };
    let p = plan_inbound_with(
        "a.example",
        "t",
        parse_transaction(&bytes).unwrap(),
        &mut TxnDedup::new(1),
        lookup,
        ids_by_body,
    );
    assert_eq!(ids(&p, 0), ["$first", "$second"]);
    let failing = |_: &Object, _: &RoomVersion| -> Result<String, EventError> {
        Err(EventError::MissingField { field: "event_id" })
    };
    let p = plan_inbound_with(
        "a.example",
        "t",
        parse_transaction(&bytes).unwrap(),
        &mut TxnDedup::new(1),
        lookup,
        failing,
    );
    assert!(p.rooms.is_empty());
    assert_eq!(p.rejected.len(), 2);
}

/// Reliable EDUs are flagged so the host knows a handler failure must become a 5xx.
#[test]
fn plan_flags_reliable_edus() {
    let dl = DeviceListUpdate::new("@u:a.example", "D", 1, &[]).unwrap();
    let p = plan("a.example", &body(vec![], vec![dl.into()]));
    assert!(p.has_reliable_edus());
    let t = Typing::new("!r", "@u:a.example", true).unwrap();
    assert!(!plan("a.example", &body(vec![], vec![t.into()])).has_reliable_edus());
}

/// The response builder renders Synapse's shape and parses back.
#[test]
fn response_builder() {
    let r = TransactionResponse::new()
        .with_ok("$b")
        .with_error("$a", "Event failed auth checks");
    assert_eq!(
        r.to_bytes(),
        br#"{"pdus":{"$a":{"error":"Event failed auth checks"},"$b":{}}}"#
    );
    assert_eq!(r.get("$b"), Some(&PduResult::Ok));
    assert_eq!(TransactionResponse::parse(&r.to_bytes()).unwrap(), r);
    assert_eq!(TransactionResponse::new().to_bytes(), br#"{"pdus":{}}"#);
}

// ------------------------------------------------------------------------------------------------
// Timing (run with `cargo test --release -p mxfed-core --test transactions -- --ignored
// --nocapture`; nothing is asserted about the numbers)
// ------------------------------------------------------------------------------------------------

/// A full transaction: 50 realistic PDUs (Synapse's message PDU, varied) and 100 EDUs of every
/// kind.
fn full_transaction() -> Vec<u8> {
    let all = samples();
    let (_, msg) = all
        .iter()
        .find(|(n, _)| n == "send_txn_pdu_message.json")
        .unwrap();
    let template = parse_object(
        &canon(&msg["request"]["content"]["pdus"][0]),
        &ParseOptions::LEGACY,
    )
    .unwrap();
    let pdus: Vec<Object> = (0..MAX_PDUS)
        .map(|i| {
            let mut p = template.clone();
            let mut content = Object::new();
            content.insert(
                "body",
                format!("hello bob {i}: {}", "lorem ipsum ".repeat(8)),
            );
            content.insert("msgtype", "m.text");
            p.insert("content", content);
            p.insert("depth", Int::saturating(11 + i as i64));
            p
        })
        .collect();
    let edus: Vec<Edu> = (0..MAX_EDUS)
        .map(|i| -> Edu {
            let u = format!("@user{i}:localhost:8448");
            match i % 5 {
                0 => Typing::new("!o42KZdOR8E57jBO5t13IQRtqkFn43L52p4nea-HXe7I", &u, true)
                    .unwrap()
                    .into(),
                1 => Receipt::from_entries([ReceiptEntry::new(
                    "!o42KZdOR8E57jBO5t13IQRtqkFn43L52p4nea-HXe7I",
                    "m.read",
                    &u,
                    "$WsW2UHfUjrlAJraqaI19PN9LWe_N04KrHlbL0QE63AE",
                    1_795_664_292_173,
                    None,
                )
                .unwrap()])
                .into(),
                2 => Presence::from_updates([PresenceUpdate::new(&u, "online", Some(16)).unwrap()])
                    .into(),
                3 => DeviceListUpdate::new(&u, "ABCDEFGH", i as i64, &[i as i64 - 1])
                    .unwrap()
                    .into(),
                _ => DirectToDevice::new(
                    &u,
                    "m.room_key_request",
                    &format!("msg{i}"),
                    obj(r#"{"@bob:localhost:8449":{"*":{"action":"request","body":{"algorithm":"m.megolm.v1.aes-sha2"}}}}"#),
                )
                .unwrap()
                .into(),
            }
        })
        .collect();
    Transaction::new("localhost:8448", Timestamp(1_795_664_291_541), pdus, edus).to_bytes()
}

#[test]
#[ignore = "timing only: run in release with --ignored --nocapture"]
#[allow(clippy::disallowed_methods)] // the clock is read in the test, never in the core
fn measure_parse_and_plan_time() {
    let bytes = full_transaction();
    let iters = 2_000u32;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        let tx = parse_transaction(&bytes).unwrap();
        assert_eq!((tx.pdus().len(), tx.edus().len()), (MAX_PDUS, MAX_EDUS));
    }
    let parse = start.elapsed() / iters;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        let tx = parse_transaction(&bytes).unwrap();
        let p = plan_inbound("localhost:8448", "t", tx, &mut TxnDedup::new(1), lookup);
        assert_eq!(p.pdu_count(), MAX_PDUS);
    }
    let plan = start.elapsed() / iters;
    println!(
        "transaction of {} bytes (50 PDUs + 100 EDUs): parse {:?}, parse + plan (50 event IDs) {:?}",
        bytes.len(),
        parse,
        plan
    );
}
