//! The bodies of mxfed's fuzz targets. `fuzz/` (cargo-fuzz, libFuzzer) runs each on generated
//! inputs; this crate's test runs each on the committed corpus (`fuzz/corpus/<target>/`), so an
//! input that once crashed a target stays a test.
//!
//! Every target feeds untrusted bytes to the core the way a host does and asserts what must hold
//! for any input: no panic, and the round trips and determinism the hosts rely on.

// A harness: its assertions panic by design (a panic is the finding), and a checkout without
// its vectors cannot seed anything.
#![allow(clippy::panic)]

use mxfed_core::canonical::{
    canonicalize, parse, parse_object, Int, Object, ParseOptions, Value, MAX_SAFE_INT,
};
use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
use mxfed_core::RoomVersion;

mod room;
pub mod seeds;

pub use room::{room, run as room_verdicts};

/// A target: its name (the corpus directory) and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("canonical", canonical),
    ("xmatrix", xmatrix),
    ("pdu", pdu),
    ("transaction", transaction),
    ("edus_and_keys", edus_and_keys),
    ("room", room),
];

/// Reads fuzz bytes as choices; past the end every choice is 0 (the first option).
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices { data }
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::from(self.byte()) % n
    }

    /// One of `items` (the first past the end).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// The fixed signing key of fuzz server `name` (`a`, `b`, …).
pub fn server_key(name: &str) -> SigningKey {
    let mut seed = [0u8; 32];
    for (s, b) in seed.iter_mut().zip(name.bytes().cycle()) {
        *s = b;
    }
    match SigningKey::from_seed("fuzz", &seed) {
        Ok(k) => k,
        Err(e) => unreachable!("a 32-byte seed is a key: {e}"),
    }
}

/// A key ring with the keys of `servers`, each from its own signed key answer (as a host
/// fetches them), valid for as long as canonical JSON counts.
pub fn ring(servers: &[&str]) -> KeyRing {
    let mut ring = KeyRing::new();
    for s in servers {
        let answer = build_server_keys(s, &[server_key(s)], &[], Int::saturating(MAX_SAFE_INT))
            .unwrap_or_else(|e| unreachable!("signing our own key answer for {s}: {e}"));
        let keys = ServerKeys::from_response(&answer)
            .unwrap_or_else(|e| unreachable!("our own key answer for {s}: {e}"));
        ring.add(&keys);
    }
    ring
}

const OPTIONS: [ParseOptions; 3] = [
    ParseOptions::STRICT,
    ParseOptions::NORMALIZE,
    ParseOptions::LEGACY,
];

fn encoded(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mxfed_core::canonical::encode_into(v, &mut out);
    out
}

/// Canonical JSON: every parse mode either refuses the input or gives a value whose encoding
/// parses back to a value with the same encoding (the same value, except that a room version
/// 1–5 number keeps its text as received, which the encoding replaces by Synapse's form);
/// `canonicalize` is idempotent.
pub fn canonical(data: &[u8]) {
    for opts in &OPTIONS {
        let Ok(v) = parse(data, opts) else { continue };
        let bytes = encoded(&v);
        let again = match parse(&bytes, opts) {
            Ok(again) => again,
            Err(e) => panic!("the encoding of a parsed value does not parse: {e}"),
        };
        assert_eq!(encoded(&again), bytes, "the encoding parses back");
        if opts.numbers != mxfed_core::canonical::NumberMode::Legacy {
            assert_eq!(again, v, "the encoding parses back to the value");
        }
    }
    if let Ok(c) = canonicalize(data) {
        assert_eq!(canonicalize(&c).as_deref(), Ok(&c[..]), "idempotent");
    }
}

/// X-Matrix: the first line is an `Authorization` header, the rest a request body. Parsing
/// never panics, a parsed header prints back to itself, a body that says it is canonical is its
/// value's encoding, and checking the request against a key ring refuses it (nobody here holds
/// the keys) without panicking.
pub fn xmatrix(data: &[u8]) {
    use mxfed_core::xmatrix::{parse_authorization, verify_request_body, RequestBody, XMatrix};
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let header = String::from_utf8_lossy(header);
    if let Ok(x) = XMatrix::parse(&header) {
        let printed = x.to_header_value();
        assert_eq!(XMatrix::parse(&printed).as_ref(), Ok(&x), "{printed}");
    }
    let headers = parse_authorization(&[&header]).unwrap_or_default();
    let body = RequestBody::parse(body).ok();
    if let Some(b) = &body {
        if b.is_canonical() {
            assert_eq!(
                encoded(b.value()),
                b.raw(),
                "a canonical body is its encoding"
            );
        }
    }
    let verdict = verify_request_body(
        &headers,
        "b",
        "PUT",
        "/_matrix/federation/v1/send/1",
        body.as_ref(),
        &ring(&["a"]),
        mxfed_core::Timestamp(0),
    );
    assert!(verdict.is_err(), "nobody here signed it");
}

/// A PDU, as a room of the version named by the first byte receives it: the check gives a
/// verdict, its JSON form, and for an accepted event the PDU the room pipeline takes.
pub fn pdu(data: &[u8]) {
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let v = RoomVersion::ALL[usize::from(*first) % RoomVersion::ALL.len()];
    let ring = ring(&["a", "b"]);
    let check = mxfed_core::pdu::check_pdu(rest, v, &ring);
    let _ = check.to_json();
    let batch = mxfed_core::pdu::check_pdus(&[rest], v, &ring);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].verdict, check.verdict, "batch and single agree");
    if let Some(p) = check.pdu(v) {
        let _ = (p.prev_event_ids(), p.auth_event_ids(), p.state_pair());
    }
    let mut room = mxfed_core::room::Room::new(v);
    let _ = room.receive(&check);
    let _ = room.current_state();
}

/// A `/send` body: parsed as a transaction, planned (de-duplication, rooms, causal order), and
/// its response form parsed; none panics.
pub fn transaction(data: &[u8]) {
    use mxfed_core::inbound::{plan_inbound, TxnDedup};
    use mxfed_core::transaction::{parse_transaction, TransactionResponse};
    let _ = TransactionResponse::parse(data);
    let Ok(tx) = parse_transaction(data) else {
        return;
    };
    let _ = tx.to_bytes();
    let origin = tx.origin().to_owned();
    let mut dedup = TxnDedup::new(4);
    let plan = plan_inbound(&origin, "t", tx, &mut dedup, |room| {
        RoomVersion::ALL
            .get(room.len() % RoomVersion::ALL.len())
            .copied()
    });
    let _ = (plan.pdu_count(), plan.event_ids().count());
}

/// EDU contents, server key answers, key queries, ACLs, `.well-known` bodies and `make_join`
/// answers from one JSON object each: every reader refuses or accepts without panicking, and a
/// template completed into our join carries our valid signature.
pub fn edus_and_keys(data: &[u8]) {
    use mxfed_core::acl::{glob_matches, ServerAcl};
    use mxfed_core::edu::{
        DeviceListUpdate, Presence, PresenceUpdate, Receipt, SigningKeyUpdate, Typing,
    };
    use mxfed_core::server_keys::{KeyQuery, ServerKeys};
    let _ = mxfed_core::discovery::plan_json("example.org", Some(data));
    let text = String::from_utf8_lossy(data);
    if let Some((glob, name)) = text.split_once('\n') {
        let _ = glob_matches(glob, name);
        // The same two lines as a well-known answer's Cache-Control and Expires headers.
        let now = mxfed_core::Timestamp(u64::try_from(data.len()).unwrap_or(0) * 86_400_000);
        let life = mxfed_core::discovery::well_known_lifetime(Some(glob), Some(name), now);
        assert!(life <= mxfed_core::discovery::WELL_KNOWN_MAX_LIFETIME);
    }
    let _ = mxfed_core::discovery::srv_targets_json(data);
    let Ok(o) = parse_object(data, &ParseOptions::STRICT) else {
        return;
    };
    let _ = Typing::from_content(o.clone());
    if let Ok(r) = Receipt::from_content(o.clone()) {
        let again = Receipt::from_entries(r.entries());
        let _ = again.content();
    }
    if let Ok(p) = Presence::from_content(o.clone()) {
        let _ = Presence::from_updates(p.updates());
    }
    let _ = PresenceUpdate::from_object(o.clone());
    if let Ok(d) = DeviceListUpdate::from_content(o.clone()) {
        let _ = (d.stream_id(), d.prev_ids(), d.deleted());
    }
    let _ = SigningKeyUpdate::from_content(o.clone());
    let _ = ServerKeys::from_response(&o);
    if let Ok(q) = KeyQuery::parse(&o) {
        let _ = q.to_json();
    }
    let acl = ServerAcl::from_content(&o);
    for name in [
        "a",
        "b.example",
        "1.2.3.4",
        "[::1]",
        "evil.example:8448",
        "",
    ] {
        let _ = acl.allows(name);
        let _ = acl.check(name);
    }
    // A `make_*` answer, asked about what its template names (so that the seeds get through):
    // refused, or completed into an event our key signs.
    let ev = o.get_object("event");
    let field = |k: &str| ev.and_then(|e| e.get_str(k));
    let user = field("sender").unwrap_or("@u:b");
    let origin = user.split_once(':').map_or("b", |(_, server)| server);
    let membership = ev
        .and_then(|e| e.get_object("content"))
        .and_then(|c| c.get_str("membership"))
        .unwrap_or("join");
    let req = mxfed_core::event::MembershipRequest {
        room_id: field("room_id").unwrap_or("!r:a"),
        user_id: user,
        membership,
        origin,
        content: None,
        now: mxfed_core::Timestamp(1),
        event_id_localpart: Some("x"),
    };
    if let Ok((built, v)) =
        mxfed_core::event::membership_from_template(&o, &req, &server_key(origin))
    {
        let check = mxfed_core::pdu::check_pdu_object(built.pdu, v, &ring(&[origin]));
        let ours = check.signatures.iter().find(|s| s.server == origin);
        assert!(
            ours.is_some_and(|s| s
                .keys
                .iter()
                .all(|(_, k)| *k == mxfed_core::signing::KeyOutcome::Valid)),
            "our signature on a completed template verifies: {check:?}"
        );
    }
    let _ = object_keys(&o);
}

fn object_keys(o: &Object) -> usize {
    o.keys().count()
}
