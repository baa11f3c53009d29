//! Benchmarks of mxfed-core against ruma (ruma-signatures / ruma-common) in the same run, on the
//! same ~1 KB room version 10 `m.room.message` PDU (`bench/data/event_1k.json`, made by
//! `examples/gen_event.rs`).
//!
//! Each criterion group is one row of BENCHMARKS.md; inside it `mxfed` and `ruma` (and, for the
//! signature row, raw ed25519-dalek) sit side by side. Before anything is timed, `check_parity`
//! asserts that both libraries give byte-identical results for every row, so the comparison is of
//! the same work.
//!
//! After criterion, a *paired* pass runs the same closures interleaved: each round times a short
//! batch of every contender of a group back to back, in rotating order, and the report gives the
//! median per-operation time and the median of the per-round ratios. Criterion measures one
//! function for seconds, then the next, so a burst of other load (a build on a 2-core machine)
//! lands on one side of a comparison only; interleaving puts it on both. Set
//! `MXFED_BENCH_PAIRED=0` to skip it, `MXFED_BENCH_PAIRED_ROUNDS` (default 1000) to change it.
//!
//! Run: `cargo bench -p mxfed-bench` (or `scripts/bench.sh`). Criterion options go after `--`,
//! e.g. `cargo bench -p mxfed-bench -- --measurement-time 3 --warm-up-time 1 08_event_id`.
// A benchmark aborts loudly on a broken setup; the workspace's no-unwrap rule is for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use mxfed_core::canonical::{encode_object_into, parse_object, Object, ParseOptions};
use mxfed_core::event::{
    content_hash, encode_redacted, event_id, hash_and_sign_event, redact, reference_hash,
};
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::pdu::{check_pdu, Verdict};
use mxfed_core::server_keys::{KeyEntry, KeyRing};
use mxfed_core::signing::{check_server_signatures, sign_json, verify_json};
use mxfed_core::RoomVersion;
use ruma_common::canonical_json::redact as ruma_redact;
use ruma_common::room_version_rules::RoomVersionRules;
use ruma_common::serde::Base64;
use ruma_common::CanonicalJsonObject;
use ruma_signatures::{Ed25519KeyPair, PublicKeyMap, Verified};

/// The benchmark event: canonical JSON, 1,076 bytes.
const EVENT: &str = include_str!("../data/event_1k.json");
/// The spec's test seed (appendix § Signing JSON): server `domain`, key `ed25519:1`.
const SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
const SERVER: &str = "domain";

/// Everything the benchmarks share, built once.
struct Fixture {
    bytes: &'static [u8],
    v10: &'static RoomVersion,
    rules: RoomVersionRules,
    /// The PDU parsed by each library.
    mx: Object,
    ru: CanonicalJsonObject,
    /// The same object signed as plain JSON (`sign_json`, not the event algorithm), for
    /// `verify_json`.
    mx_signed_json: Object,
    ru_signed_json: CanonicalJsonObject,
    /// Keys.
    mx_key: SigningKey,
    mx_keys: BTreeMap<KeyId, VerifyKey>,
    ring: KeyRing,
    ru_key: Ed25519KeyPair,
    ru_keys: PublicKeyMap,
    dalek_key: ed25519_dalek::VerifyingKey,
    /// What the event's signature covers (the redacted event without `signatures`), and the
    /// signature.
    signed_bytes: Vec<u8>,
    signature: ed25519_dalek::Signature,
}

fn fixture() -> Fixture {
    let bytes = EVENT.trim_end().as_bytes();
    let v10 = RoomVersion::get("10").unwrap();
    let rules = ruma_common::RoomVersionId::V10.rules().unwrap();

    let mx_key = SigningKey::from_seed_base64("1", SEED).unwrap();
    let vk = mx_key.verify_key();
    let mx_keys = BTreeMap::from([(mx_key.key_id().clone(), vk)]);
    let mut ring = KeyRing::new();
    ring.insert(
        SERVER,
        mx_key.key_id().clone(),
        KeyEntry {
            key: vk,
            valid_until_ts: Some(i64::MAX),
            expired_ts: None,
        },
    );

    // ruma reads keys as PKCS#8 DER: wrap the same 32-byte seed.
    let seed = mxfed_core::base64::decode(SEED).unwrap();
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let ru_key = Ed25519KeyPair::from_der(&der, "1".into()).unwrap();
    let ru_keys: PublicKeyMap = BTreeMap::from([(
        SERVER.to_owned(),
        BTreeMap::from([("ed25519:1".to_owned(), Base64::new(vk.as_bytes().to_vec()))]),
    )]);
    let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(vk.as_bytes()).unwrap();

    let mx = parse_object(bytes, &ParseOptions::STRICT).unwrap();
    let ru: CanonicalJsonObject = serde_json::from_slice(bytes).unwrap();

    let mut mx_signed_json = mx.clone();
    sign_json(&mut mx_signed_json, SERVER, &mx_key).unwrap();
    let mut ru_signed_json = ru.clone();
    ruma_signatures::sign_json(SERVER, &ru_key, &mut ru_signed_json).unwrap();

    let mut signed_bytes = Vec::new();
    encode_redacted(&mx, v10, &mut signed_bytes);
    let sig_b64 = mx
        .get_object("signatures")
        .and_then(|s| s.get_object(SERVER))
        .and_then(|s| s.get_str("ed25519:1"))
        .unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(
        &mxfed_core::base64::decode_array::<64>(sig_b64).unwrap(),
    );

    Fixture {
        bytes,
        v10,
        rules,
        mx,
        ru,
        mx_signed_json,
        ru_signed_json,
        mx_key,
        mx_keys,
        ring,
        ru_key,
        ru_keys,
        dalek_key,
        signed_bytes,
        signature,
    }
}

fn ru_string(o: &CanonicalJsonObject) -> String {
    serde_json::to_string(o).unwrap()
}

/// mxfed's per-event signature check, as `check_pdu` does it: the redacted canonical bytes, then
/// every signature of the sender's server against the key ring.
fn mx_verify_event_signature(f: &Fixture, ev: &Object) -> bool {
    let mut buf = Vec::with_capacity(1024);
    encode_redacted(ev, f.v10, &mut buf);
    let ts = ev
        .get("origin_server_ts")
        .and_then(|t| t.as_int())
        .unwrap_or(0);
    check_server_signatures(ev, &buf, SERVER, |id| {
        f.ring.lookup_for_event(SERVER, id, ts, f.v10)
    })
    .ok()
    .and_then(|s| s.verdict().ok())
    .is_some()
}

/// ruma's per-event signature check through its public API: redact a copy, then `verify_json`
/// (the signature part of `verify_event`, without its content hash).
fn ru_verify_event_signature(f: &Fixture, ev: &CanonicalJsonObject) -> bool {
    let redacted = ruma_redact(ev.clone(), &f.rules.redaction, None).unwrap();
    ruma_signatures::verify_json(&f.ru_keys, &redacted).is_ok()
}

/// ruma's nearest equivalent of `check_pdu`: parse, `verify_event` (signatures of the required
/// servers + content hash), and the event ID (which `check_pdu` also returns).
/// The event is returned, as `check_pdu` returns it.
fn ru_check_pdu(f: &Fixture, bytes: &[u8]) -> (Verified, String, CanonicalJsonObject) {
    let ev: CanonicalJsonObject = serde_json::from_slice(bytes).unwrap();
    let verified = ruma_signatures::verify_event(&f.ru_keys, &ev, &f.rules).unwrap();
    let id = format!(
        "${}",
        ruma_signatures::reference_hash(&ev, &f.rules).unwrap()
    );
    (verified, id, ev)
}

/// Asserts that mxfed and ruma produce identical outputs for every row, so each comparison is of
/// the same work. Runs before any timing.
fn check_parity(f: &Fixture) {
    let canonical = std::str::from_utf8(f.bytes).unwrap();
    // The input is canonical: both parse it and encode it back to the same bytes.
    assert_eq!(f.mx.to_canonical_string(), canonical);
    assert_eq!(ru_string(&f.ru), canonical);

    // Provenance: the file is mxfed's hash_and_sign_event of itself, and ruma's agrees.
    let mut mx_resigned = f.mx.clone();
    hash_and_sign_event(&mut mx_resigned, f.v10, SERVER, &f.mx_key).unwrap();
    assert_eq!(mx_resigned, f.mx);
    let mut ru_resigned = f.ru.clone();
    ruma_signatures::hash_and_sign_event(SERVER, &f.ru_key, &mut ru_resigned, &f.rules.redaction)
        .unwrap();
    assert_eq!(ru_string(&ru_resigned), canonical);

    // sign_json gives the same signature; verify_json accepts in both.
    assert_eq!(
        f.mx_signed_json.to_canonical_string(),
        ru_string(&f.ru_signed_json)
    );
    assert!(verify_json(&f.mx_signed_json, SERVER, &f.mx_keys).is_ok());
    assert!(ruma_signatures::verify_json(&f.ru_keys, &f.ru_signed_json).is_ok());

    // Hashes, redaction, event ID.
    assert_eq!(
        content_hash(&f.mx),
        *ruma_signatures::content_hash(&f.ru).unwrap().as_bytes()
    );
    let mx_ref = mxfed_core::base64::encode_url_safe(reference_hash(&f.mx, f.v10));
    assert_eq!(
        mx_ref,
        ruma_signatures::reference_hash(&f.ru, &f.rules).unwrap()
    );
    assert_eq!(
        redact(&f.mx, f.v10).to_canonical_string(),
        ru_string(&ruma_redact(f.ru.clone(), &f.rules.redaction, None).unwrap())
    );
    let id = event_id(&f.mx, f.v10).unwrap();
    assert_eq!(id, format!("${mx_ref}"));

    // Per-event signature: dalek (strict and not), mxfed and ruma all accept.
    assert!(f
        .dalek_key
        .verify_strict(&f.signed_bytes, &f.signature)
        .is_ok());
    assert!(ed25519_dalek::Verifier::verify(&f.dalek_key, &f.signed_bytes, &f.signature).is_ok());
    assert!(mx_verify_event_signature(f, &f.mx));
    assert!(ru_verify_event_signature(f, &f.ru));

    // Full PDU check: accepted with the same event ID.
    let check = check_pdu(f.bytes, f.v10, &f.ring);
    assert_eq!(check.verdict, Verdict::Accepted);
    assert_eq!(check.event_id.as_deref(), Some(id.as_str()));
    let (verified, ru_id, _) = ru_check_pdu(f, f.bytes);
    assert_eq!((verified, ru_id), (Verified::All, id));

    eprintln!(
        "parity: mxfed and ruma agree on every row ({} byte event, {} signed bytes)",
        f.bytes.len(),
        f.signed_bytes.len()
    );
}

/// One contender: a name and a closure doing one operation (its output dropped inside).
type Op<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// One row: a criterion group name, its throughput unit, and its contenders.
struct Row<'a> {
    group: &'static str,
    throughput: Option<Throughput>,
    ops: Vec<Op<'a>>,
}

fn op<'a, T>(name: &'static str, mut f: impl FnMut() -> T + 'a) -> Op<'a> {
    (
        name,
        Box::new(move || {
            black_box(f());
        }),
    )
}

/// Every row, as closures shared by criterion and the paired pass. Outputs are dropped inside
/// the timing everywhere: deferring the drop of thousands of parsed events (criterion's
/// `iter_with_large_drop`) makes glibc's allocator consolidate and fault in pages, which is
/// bench artefact, not the cost of the operation.
fn rows(f: &Fixture) -> Vec<Row<'_>> {
    let bytes = f.bytes;
    let n = bytes.len() as u64;
    let mut mx_signed = f.mx_signed_json.clone();
    let mut ru_signed = f.ru_signed_json.clone();
    let mut content_hash_input = Vec::new();
    mxfed_core::event::content_hash_bytes_into(&f.mx, &mut content_hash_input);
    vec![
        // 1. bytes → value.
        Row {
            group: "01_parse",
            throughput: Some(Throughput::Bytes(n)),
            ops: vec![
                op("mxfed", move || {
                    parse_object(black_box(bytes), &ParseOptions::STRICT).unwrap()
                }),
                op("ruma", move || {
                    serde_json::from_slice::<CanonicalJsonObject>(black_box(bytes)).unwrap()
                }),
            ],
        },
        // 2. value → bytes, into a fresh buffer in both.
        Row {
            group: "02_encode",
            throughput: Some(Throughput::Bytes(n)),
            ops: vec![
                op("mxfed", || {
                    let mut out = Vec::new();
                    encode_object_into(black_box(&f.mx), &mut out);
                    out
                }),
                op("ruma", || serde_json::to_vec(black_box(&f.ru)).unwrap()),
            ],
        },
        // 3. sign_json of the whole event. Re-signing replaces the same signature, so the
        // object is the same on every iteration.
        Row {
            group: "03_sign_json",
            throughput: None,
            ops: vec![
                op("mxfed", move || {
                    sign_json(black_box(&mut mx_signed), SERVER, &f.mx_key).unwrap()
                }),
                op("ruma", move || {
                    ruma_signatures::sign_json(SERVER, &f.ru_key, black_box(&mut ru_signed))
                        .unwrap()
                }),
            ],
        },
        // 4. verify_json.
        Row {
            group: "04_verify_json",
            throughput: None,
            ops: vec![
                op("mxfed", || {
                    verify_json(black_box(&f.mx_signed_json), SERVER, &f.mx_keys).unwrap()
                }),
                op("ruma", || {
                    ruma_signatures::verify_json(&f.ru_keys, black_box(&f.ru_signed_json)).unwrap()
                }),
            ],
        },
        // 5. Content hash of the parsed event.
        Row {
            group: "05_content_hash",
            throughput: None,
            ops: vec![
                op("mxfed", || content_hash(black_box(&f.mx))),
                op("ruma", || {
                    ruma_signatures::content_hash(black_box(&f.ru)).unwrap()
                }),
            ],
        },
        // 6. Reference hash, as unpadded URL-safe base64 (ruma's output form).
        Row {
            group: "06_reference_hash",
            throughput: None,
            ops: vec![
                op("mxfed", || {
                    mxfed_core::base64::encode_url_safe(reference_hash(black_box(&f.mx), f.v10))
                }),
                op("ruma", || {
                    ruma_signatures::reference_hash(black_box(&f.ru), &f.rules).unwrap()
                }),
            ],
        },
        // 7. Redaction of a borrowed event. ruma's `redact` consumes its input, so it needs a
        // copy: `ruma_with_clone` pays it, `ruma_clone_only` is that copy alone. (Criterion also
        // times `ruma`: redact with the copy made outside the timing.)
        Row {
            group: "07_redact",
            throughput: None,
            ops: vec![
                op("mxfed", || redact(black_box(&f.mx), f.v10)),
                op("ruma_with_clone", || {
                    ruma_redact(black_box(&f.ru).clone(), &f.rules.redaction, None).unwrap()
                }),
                op("ruma_clone_only", || black_box(&f.ru).clone()),
            ],
        },
        // 8. Event ID.
        Row {
            group: "08_event_id",
            throughput: None,
            ops: vec![
                op("mxfed", || event_id(black_box(&f.mx), f.v10).unwrap()),
                op("ruma", || {
                    format!(
                        "${}",
                        ruma_signatures::reference_hash(black_box(&f.ru), &f.rules).unwrap()
                    )
                }),
            ],
        },
        // 9. From bytes: parse, then both hashes (each over its canonical form). Goal ≤ 3 µs.
        Row {
            group: "09_parse_and_hashes",
            throughput: Some(Throughput::Bytes(n)),
            ops: vec![
                op("mxfed", move || {
                    let ev = parse_object(black_box(bytes), &ParseOptions::STRICT).unwrap();
                    (content_hash(&ev), reference_hash(&ev, f.v10))
                }),
                op("ruma", move || {
                    let ev: CanonicalJsonObject = serde_json::from_slice(black_box(bytes)).unwrap();
                    (
                        ruma_signatures::content_hash(&ev).unwrap(),
                        ruma_signatures::reference_hash(&ev, &f.rules).unwrap(),
                    )
                }),
            ],
        },
        // The parts of row 9, to see where its time goes.
        Row {
            group: "09b_parts",
            throughput: None,
            ops: vec![
                op("mxfed_parse", move || {
                    parse_object(black_box(bytes), &ParseOptions::STRICT).unwrap()
                }),
                op("mxfed_encode_content_hash_bytes", || {
                    let mut out = Vec::with_capacity(1024);
                    mxfed_core::event::content_hash_bytes_into(black_box(&f.mx), &mut out);
                    out
                }),
                op("mxfed_encode_redacted_bytes", || {
                    let mut out = Vec::with_capacity(1024);
                    encode_redacted(black_box(&f.mx), f.v10, &mut out);
                    out
                }),
                op("sha256_content_hash_bytes", move || {
                    use sha2::Digest;
                    sha2::Sha256::digest(black_box(&content_hash_input))
                }),
                op("sha256_redacted_bytes", || {
                    use sha2::Digest;
                    sha2::Sha256::digest(black_box(&f.signed_bytes))
                }),
            ],
        },
        // 10. Per-event signature check vs raw ed25519-dalek on the same signed bytes.
        // Goal: mxfed within 10% of raw dalek.
        Row {
            group: "10_event_signature",
            throughput: None,
            ops: vec![
                op("dalek_verify_strict", || {
                    f.dalek_key
                        .verify_strict(black_box(&f.signed_bytes), black_box(&f.signature))
                        .unwrap()
                }),
                op("dalek_verify", || {
                    ed25519_dalek::Verifier::verify(
                        &f.dalek_key,
                        black_box(&f.signed_bytes),
                        black_box(&f.signature),
                    )
                    .unwrap()
                }),
                op("mxfed", || {
                    assert!(mx_verify_event_signature(f, black_box(&f.mx)))
                }),
                op("ruma", || {
                    assert!(ru_verify_event_signature(f, black_box(&f.ru)))
                }),
            ],
        },
        // 11. Full PDU check from bytes: format + signatures + content hash (+ event ID).
        Row {
            group: "11_check_pdu",
            throughput: None,
            ops: vec![
                op("mxfed", move || {
                    let c = check_pdu(black_box(bytes), f.v10, &f.ring);
                    assert_eq!(c.verdict, Verdict::Accepted);
                    c
                }),
                op("ruma", move || {
                    let r = ru_check_pdu(f, black_box(bytes));
                    assert_eq!(r.0, Verified::All);
                    r
                }),
            ],
        },
    ]
}

fn run_criterion(c: &mut Criterion, f: &Fixture, rows: &mut [Row<'_>]) {
    for row in rows.iter_mut() {
        let mut g = c.benchmark_group(row.group);
        if let Some(t) = &row.throughput {
            g.throughput(t.clone());
        }
        for (name, run) in row.ops.iter_mut() {
            g.bench_function(*name, |b| b.iter(&mut *run));
        }
        if row.group == "07_redact" {
            g.bench_function("ruma", |b| {
                b.iter_batched(
                    || f.ru.clone(),
                    |ev| ruma_redact(black_box(ev), &f.rules.redaction, None).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

/// The criterion filter given on the command line, if any (its first positional argument).
fn filter_arg() -> Option<String> {
    const TAKES_VALUE: [&str; 17] = [
        "--color",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
        "-c",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if TAKES_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The interleaved pass: see the crate docs.
fn paired(rows: &mut [Row<'_>], rounds: usize, filter: Option<&str>) {
    const BATCH: Duration = Duration::from_micros(500);
    println!(
        "\npaired (interleaved) measurement: {rounds} rounds of ~{BATCH:?} batches per contender"
    );
    println!(
        "{:<48} {:>11} {:>11} {:>11}",
        "benchmark", "median", "p10", "fastest"
    );
    for row in rows.iter_mut() {
        if let Some(filter) = filter {
            let key = filter.trim_start_matches('^');
            let key = key.split('/').next().unwrap_or(key).trim_end_matches('$');
            if !row.group.contains(key) {
                continue;
            }
        }
        // Calibrate: how many operations make one batch, after a warm-up.
        let mut iters = Vec::new();
        for (_, run) in row.ops.iter_mut() {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < Duration::from_millis(50) {
                run();
                n += 1;
            }
            let per_op = start.elapsed().as_secs_f64() / f64::from(n);
            iters.push(((BATCH.as_secs_f64() / per_op).ceil() as u32).max(1));
        }
        let k = row.ops.len();
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); k];
        for r in 0..rounds {
            for j in 0..k {
                let i = (r + j) % k;
                let (_, run) = &mut row.ops[i];
                let start = Instant::now();
                for _ in 0..iters[i] {
                    run();
                }
                times[i].push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iters[i]));
            }
        }
        let names: Vec<&str> = row.ops.iter().map(|(n, _)| *n).collect();
        for (name, t) in names.iter().zip(&times) {
            let mut sorted = t.clone();
            let med = median(&mut sorted);
            println!(
                "{:<48} {:>11} {:>11} {:>11}",
                format!("{}/{}", row.group, name),
                fmt_ns(med),
                fmt_ns(sorted[sorted.len() / 10]),
                fmt_ns(sorted[0])
            );
        }
        let idx = |n: &str| names.iter().position(|x| *x == n);
        let ratio = |a: usize, b: usize| {
            let mut r: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect();
            median(&mut r)
        };
        if let Some(mx) = idx("mxfed") {
            for peer in ["ruma", "ruma_with_clone"] {
                if let Some(p) = idx(peer) {
                    println!(
                        "    {}: mxfed speed-up vs {peer} (median of per-round ratios): {:.2}x",
                        row.group,
                        ratio(p, mx)
                    );
                }
            }
            for base in ["dalek_verify_strict", "dalek_verify"] {
                if let Some(d) = idx(base) {
                    println!(
                        "    {}: mxfed vs raw {base} (median of per-round ratios): {:+.1}%",
                        row.group,
                        (ratio(mx, d) - 1.0) * 100.0
                    );
                }
            }
        }
    }
}

/// `MXFED_BENCH_COUNT=<group>/<name>:<n>`: run that one operation `n` times and exit, for
/// instruction counting, which no other load on the machine disturbs:
/// `valgrind --tool=cachegrind --cache-sim=no <bench binary>` at two values of `n`; the
/// difference of the `I refs` totals divided by the difference of `n` is the per-operation cost.
fn count_mode(rows: &mut [Row<'_>], spec: &str) {
    let (id, n) = spec
        .rsplit_once(':')
        .expect("MXFED_BENCH_COUNT=<group>/<name>:<n>");
    let n: u64 = n.parse().expect("a count");
    let (group, name) = id.split_once('/').expect("<group>/<name>");
    let row = rows
        .iter_mut()
        .find(|r| r.group == group)
        .expect("no such group");
    let (_, run) = row
        .ops
        .iter_mut()
        .find(|(op, _)| *op == name)
        .expect("no such benchmark in the group");
    for _ in 0..n {
        run();
    }
}

fn main() {
    let f = fixture();
    check_parity(&f);
    let mut rows = rows(&f);
    if let Ok(spec) = std::env::var("MXFED_BENCH_COUNT") {
        count_mode(&mut rows, &spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    run_criterion(&mut c, &f, &mut rows);
    c.final_summary();

    let skip = ["--list", "--test", "--profile-time", "--help", "-h"];
    if std::env::args().any(|a| skip.contains(&a.as_str()))
        || std::env::var("MXFED_BENCH_PAIRED").is_ok_and(|v| v == "0")
    {
        return;
    }
    let rounds = std::env::var("MXFED_BENCH_PAIRED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    paired(&mut rows, rounds, filter_arg().as_deref());
}
