//! The native side of the wasm benchmark (`host-wasm/tests/bench.mjs`): the same `ops`
//! functions the wasm module exports, on the same inputs, timed natively. Prints one JSON
//! object, operation → nanoseconds per operation (best of 5 runs).
//!
//! `cargo run --release -p mxfed-wasm --example native_bench`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use mxfed_core::server_keys::KeyRing;
use mxfed_wasm::ops;

const KEY: &str = "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

/// The benchmark event: the same text as in bench.mjs.
fn event(i: usize) -> String {
    format!(
        r#"{{"type":"m.room.message","room_id":"!bench:domain","sender":"@alice:domain","content":{{"msgtype":"m.text","body":"benchmark message {i} {}"}},"origin_server_ts":1700000000000,"depth":{},"prev_events":["$prev"],"auth_events":["$a1","$a2","$a3"]}}"#,
        "lorem ipsum ".repeat(16),
        i + 1
    )
}

fn time(mut f: impl FnMut(), n: usize) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        runs.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    runs.sort_by(f64::total_cmp);
    runs[0]
}

fn main() {
    let keys = ops::signing_keys(KEY).unwrap();
    let pk = ops::public_keys(&keys);
    let ev = event(0);
    let signed = ops::hash_and_sign_event(ev.as_bytes(), "10", "domain", &keys).unwrap();
    let signed_obj = ops::sign_json(ev.as_bytes(), "domain", &keys).unwrap();
    let mut ring = KeyRing::new();
    let resp = ops::server_keys("domain", &keys, mxfed_core::Timestamp(1 << 42)).unwrap();
    ops::add_key_response(&mut ring, resp.as_bytes()).unwrap();
    let batch: Vec<String> = (0..100)
        .map(|i| ops::hash_and_sign_event(event(i).as_bytes(), "10", "domain", &keys).unwrap())
        .collect();
    let batch_refs: Vec<&[u8]> = batch.iter().map(String::as_bytes).collect();
    let results = [
        (
            "canonicalise",
            time(|| drop(ops::canonical_json(ev.as_bytes()).unwrap()), 20_000),
        ),
        (
            "sign",
            time(
                || drop(ops::hash_and_sign_event(ev.as_bytes(), "10", "domain", &keys).unwrap()),
                2_000,
            ),
        ),
        (
            "verify",
            time(
                || drop(ops::verify_json(signed_obj.as_bytes(), "domain", pk.as_bytes()).unwrap()),
                2_000,
            ),
        ),
        (
            "pdu_check",
            time(
                || drop(ops::check_pdus(&[signed.as_bytes()], "10", &ring).unwrap()),
                2_000,
            ),
        ),
        (
            "batch_check_per_pdu",
            time(
                || drop(ops::check_pdus(&batch_refs, "10", &ring).unwrap()),
                20,
            ) / 100.0,
        ),
    ];
    let body: Vec<String> = results
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v:.0}"))
        .collect();
    println!("{{{}}}", body.join(","));
}
