//! Protocol-core benchmarks: X-Matrix sign and verify for a 10 KB body, X-Matrix verification of
//! a 50-PDU transaction as the server does it (canonical body checked as received, or encoded
//! again) and its signing from the canonical body (`sign_body`), transaction parsing for 50 PDUs + 100 EDUs, and the outbound queue's throughput on a
//! simulated clock.
//!
//! `cargo bench -p mxfed-bench --bench protocol -- --measurement-time 3 --warm-up-time 1`
//! (`-- xmatrix_50_pdus` for one group)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};
use mxfed_core::canonical;
use mxfed_core::canonical::{parse_object, Int, Object, ParseOptions, Value};
use mxfed_core::edu::Edu;
use mxfed_core::keys::SigningKey;
use mxfed_core::outbound::{DestinationQueue, OutboundConfig, Outcome};
use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
use mxfed_core::transaction::{parse_transaction, TransactionResponse};
use mxfed_core::xmatrix::{
    parse_authorization, parse_body, verify_request, verify_request_body, Request, RequestBody,
    XMatrix,
};
use mxfed_core::Timestamp;

const EVENT: &str = include_str!("../data/event_1k.json");

fn key() -> SigningKey {
    SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap()
}

/// A key ring holding `k` as the current key of `domain`.
fn ring_of(k: &SigningKey) -> KeyRing {
    let resp = build_server_keys(
        "domain",
        std::slice::from_ref(k),
        &[],
        Int::new(1 << 50).unwrap(),
    )
    .unwrap();
    let mut ring = KeyRing::new();
    ring.add(&ServerKeys::from_response(&resp).unwrap());
    ring
}

/// A transaction of `n` copies of the 1 KB PDU and no EDUs (10: a ~10 KB body; 50: ~60 KB,
/// the loadgen's and Synapse's transaction size).
fn transaction_of(n: usize) -> Value {
    let ev = parse_object(EVENT.as_bytes(), &ParseOptions::LEGACY).unwrap();
    let mut txn = Object::new();
    txn.insert("origin", "domain");
    txn.insert("origin_server_ts", Int::new(1_000_000).unwrap());
    txn.insert("pdus", Value::Array(vec![Value::Object(ev); n]));
    txn.insert("edus", Value::Array(Vec::new()));
    Value::Object(txn)
}

/// `PUT /send/1` from `domain` to `remote.example` with `content`.
fn put_send(content: &Value) -> Request<'_> {
    Request {
        method: "PUT",
        uri: "/_matrix/federation/v1/send/1",
        origin: "domain",
        destination: "remote.example",
        content: Some(content),
    }
}

/// What the receiving server does with a parsed body: X-Matrix verification over its value.
fn verify_value(headers: &[XMatrix], req: &Request<'_>, body: &Value, ring: &KeyRing) {
    verify_request(
        headers,
        req.destination,
        req.method,
        req.uri,
        Some(body),
        ring,
        Timestamp(1),
    )
    .unwrap();
}

fn transaction_bytes() -> Vec<u8> {
    let ev: serde_json::Value = serde_json::from_str(EVENT).unwrap();
    let edus: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({"edu_type": "m.typing", "content": {
                "room_id": "!room:domain", "user_id": format!("@u{i}:domain"), "typing": true}})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "origin": "domain", "origin_server_ts": 1_000_000,
        "pdus": vec![ev; 50], "edus": edus,
    }))
    .unwrap()
}

fn xmatrix(c: &mut Criterion) {
    let k = key();
    let body = transaction_of(10);
    let size = body.to_canonical_string().len();
    let req = put_send(&body);
    let ring = ring_of(&k);
    let header = req.sign(std::slice::from_ref(&k))[0].to_header_value();
    let mut g = c.benchmark_group("xmatrix_10k");
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function("sign", |b| {
        b.iter(|| black_box(req.sign(std::slice::from_ref(&k))))
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            let h = parse_authorization(&[header.as_str()]).unwrap();
            verify_value(&h, &req, &body, &ring)
        })
    });
    g.finish();
}

/// A `PUT /send` of 50 1 KB PDUs (~60 KB), the loadgen's and Synapse's transaction size: the
/// server parses the body and verifies X-Matrix over it. `reencode` is the path before
/// `is_canonical` (parse, encode the value again, verify); `as_received` the path now (parse,
/// check the bytes are canonical, verify over them); `not_canonical` the same body with
/// whitespace, which still takes the encoding path.
fn xmatrix_50_pdus(c: &mut Criterion) {
    let k = key();
    let raw = canonical::to_vec(&transaction_of(50));
    let value = parse_body(&raw).unwrap();
    assert!(canonical::is_canonical(&raw));
    let j: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let pretty = serde_json::to_vec_pretty(&j).unwrap();
    let req = put_send(&value);
    let ring = ring_of(&k);
    let header = req.sign(std::slice::from_ref(&k))[0].to_header_value();
    let headers = parse_authorization(&[header.as_str()]).unwrap();
    let verify_body = |bytes: &[u8]| {
        let body = RequestBody::parse(bytes).unwrap();
        verify_request_body(
            &headers,
            req.destination,
            req.method,
            req.uri,
            Some(&body),
            &ring,
            Timestamp(1),
        )
        .unwrap()
    };
    let mut g = c.benchmark_group("xmatrix_50_pdus");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("parse_verify_reencode", |b| {
        b.iter(|| {
            let v = parse_body(black_box(&raw)).unwrap();
            verify_value(&headers, &req, &v, &ring)
        })
    });
    g.bench_function("parse_verify_as_received", |b| {
        b.iter(|| verify_body(black_box(&raw)))
    });
    g.bench_function("parse_verify_not_canonical", |b| {
        b.iter(|| verify_body(black_box(&pretty)))
    });
    g.bench_function("encode", |b| {
        b.iter(|| black_box(canonical::to_vec(black_box(&value))))
    });
    g.bench_function("is_canonical", |b| {
        b.iter(|| canonical::is_canonical(black_box(&raw)))
    });
    // Signing an outbound transaction from the core's canonical body: before `sign_body`, the
    // server parsed it, cloned the value, signed its encoding and encoded it again to send.
    let unsigned = Request {
        content: None,
        ..req
    };
    g.bench_function("sign_parse_encode_twice", |b| {
        b.iter(|| {
            let o = parse_object(black_box(&raw), &ParseOptions::LEGACY).unwrap();
            let content = Value::Object(o.clone());
            let signed = Request {
                content: Some(&content),
                ..unsigned
            }
            .sign(std::slice::from_ref(&k));
            (signed, black_box(o.to_canonical_string()))
        })
    });
    g.bench_function("sign_body", |b| {
        b.iter(|| {
            unsigned
                .sign_body(Some(black_box(&raw)), std::slice::from_ref(&k))
                .unwrap()
        })
    });
    g.finish();
}

fn transactions(c: &mut Criterion) {
    let bytes = transaction_bytes();
    let mut g = c.benchmark_group("transaction");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse_50_pdus_100_edus", |b| {
        b.iter(|| black_box(parse_transaction(&bytes).unwrap()))
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    let ev = parse_object(EVENT.as_bytes(), &ParseOptions::LEGACY).unwrap();
    let typing = Edu::from_object(
        &parse_object(
            br#"{"edu_type":"m.typing","content":{"room_id":"!room:domain","user_id":"@u:domain","typing":true}}"#,
            &ParseOptions::STRICT,
        )
        .unwrap(),
    )
    .unwrap();
    let mut g = c.benchmark_group("outbound_queue");
    // 1,000 PDUs and 1,000 EDUs queued, every transaction transmitted and acknowledged.
    g.throughput(Throughput::Elements(2_000));
    g.bench_function("queue_transmit_ack_2000", |b| {
        b.iter_batched(
            || {
                DestinationQueue::new(
                    "domain",
                    "remote.example",
                    OutboundConfig::default(),
                    Timestamp(1),
                    7,
                )
            },
            |mut q| {
                let now = Timestamp(2);
                for i in 0..1_000 {
                    q.queue_pdu(now, format!("$e{i}"), "!room:domain", ev.clone());
                    q.queue_edu(now, typing.clone());
                }
                while q.poll_transmit(now).is_some() {
                    // A 200 alone acknowledges the transaction.
                    q.handle_response(now, Outcome::Success(TransactionResponse::new()))
                        .unwrap();
                    while q.poll_event().is_some() {}
                }
                q
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    xmatrix(&mut c);
    xmatrix_50_pdus(&mut c);
    transactions(&mut c);
    queue(&mut c);
    c.final_summary();
}
