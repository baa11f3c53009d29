//! Writes the benchmark input, a realistic ~1 KB room version 10 `m.room.message` PDU signed with
//! the spec's test key, as canonical JSON to standard output:
//!
//! ```text
//! cargo run -q -p mxfed-bench --example gen_event > bench/data/event_1k.json
//! ```
//!
//! The output is committed (`bench/data/event_1k.json`) so the Rust and Python benchmarks read
//! the same bytes; this program documents how it was made and regenerates it byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use mxfed_core::canonical::{encode_object_into, parse_object, Object, ParseOptions};
use mxfed_core::event::hash_and_sign_event;
use mxfed_core::keys::SigningKey;
use mxfed_core::RoomVersion;

/// The spec's test seed (appendix § Signing JSON), server `domain`, key `ed25519:1`.
const SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

const TEMPLATE: &str = r#"{
  "type": "m.room.message",
  "room_id": "!jEsUZKDJdhlrceRyVU:domain",
  "sender": "@alice:domain",
  "origin": "domain",
  "origin_server_ts": 1718000123456,
  "depth": 48213,
  "prev_events": [
    "$Hk3N0q2rX4v8p_Yb9cQm7TLsZ1eWfJdGaU5oIxRyKnE",
    "$9fTq1Wm3bZ7Lc2Vn8Xr4Yp0Ka6Sd5Jh1Ge2Uo7Ri3Et"
  ],
  "auth_events": [
    "$cR7yQ2mXvT1bN8kL4pZ9sW3eD6fG0hJ5uI2oA7tYrE8",
    "$Mx4Pq9Zt2Lw7Vb1Nc6Kr3Jd8Hf5Gs0Ae2Yu9Io4Tm1Q",
    "$Ws8Kd3Nf6Ql1Zr9Xt4Vb7Mc2Jh5Gp0Ue8Ya3Io6Tn2R"
  ],
  "content": {
    "msgtype": "m.text",
    "body": "Reminder: the café meetup moved to Thursday 18:30 — same place (Straße 12). Bring your résumé drafts. 日本語のスライドもあります 🎉",
    "format": "org.matrix.custom.html",
    "formatted_body": "<p><strong>Reminder:</strong> the café meetup moved to <em>Thursday 18:30</em> — same place (Straße 12).</p><p>Bring your résumé drafts. 日本語のスライドもあります 🎉</p>"
  },
  "hashes": {},
  "signatures": {},
  "unsigned": {"age": 1234}
}"#;

fn main() {
    let key = SigningKey::from_seed_base64("1", SEED).expect("spec seed");
    let v = RoomVersion::get("10").expect("room version 10");
    let mut ev = parse_object(TEMPLATE.as_bytes(), &ParseOptions::STRICT).expect("template");
    hash_and_sign_event(&mut ev, v, "domain", &key).expect("hash and sign");
    let mut out = Vec::new();
    encode_object_into(&ev, &mut out);
    let check: Object = parse_object(&out, &ParseOptions::STRICT).expect("round trip");
    assert_eq!(check, ev);
    eprintln!("event_1k.json: {} bytes of canonical JSON", out.len());
    std::io::stdout().write_all(&out).expect("stdout");
}
