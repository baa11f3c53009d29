//! `mxfed-wasm`: mxfed-core as WebAssembly for V8 isolates — Node, Deno, Cloudflare Workers —
//! byte for byte the same as the native build.
//!
//! What it does: exports the core's operations through wasm-bindgen (`canonicalJson`,
//! `isCanonicalJson`, `signJson`, `verifyJson`, `contentHash`, `referenceHash`, `eventId`, `redact`,
//! `hashAndSignEvent`, `membershipFromTemplate`, `checkPdus`, `signRequest`, `verifyRequest`, `serverKeys`,
//! `parseTransaction`, `serverAclAllows`, `discoveryPlan`, `pickSrv`, `srvTargets`, `wellKnownLifetime`,
//! `serverMaySee`, `replay`,
//! the key classes and `Room`), and the edge worker's request checks ([`edge`]).
//! The JavaScript package around it (`host-wasm/js/`, built into `host-wasm/pkg/` by
//! `host-wasm/build.sh`) turns strings and objects into bytes and back.
//!
//! What it deliberately does not do: any protocol logic of its own, any I/O, or JSON through
//! `JSON.stringify`'s key order. JSON goes in as bytes and is canonicalised in Rust (UTF-16 key
//! order differs from code-point order beyond the BMP).
//!
//! The pure layer ([`ops`], [`edge`]) is plain Rust and runs natively too:
//!
//! ```
//! let keys = mxfed_wasm::ops::signing_keys("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
//! let signed = mxfed_wasm::ops::sign_json(br#"{"b":1,"a":2}"#, "domain", &keys).unwrap();
//! assert!(signed.starts_with(r#"{"a":2,"b":1,"signatures":{"domain":{"ed25519:1":"#));
//! ```

pub mod edge;
pub mod error;
pub mod ops;

use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys;
use mxfed_core::{canonical, Timestamp};
use wasm_bindgen::prelude::*;

use crate::error::HostError;

type JsResult<T> = Result<T, JsValue>;

fn ts(ms: f64) -> Timestamp {
    // Milliseconds since the epoch from JavaScript; negative or NaN read as 0.
    if ms.is_finite() && ms > 0.0 {
        // Truncation intended: timestamps are integral and far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Timestamp(ms as u64)
    } else {
        Timestamp(0)
    }
}

fn err(e: HostError) -> JsValue {
    e.into()
}

/// Signing keys loaded once from Synapse's `signing.key` text.
#[wasm_bindgen(js_name = SigningKeys)]
pub struct JsSigningKeys {
    keys: Vec<SigningKey>,
}

#[wasm_bindgen(js_class = SigningKeys)]
impl JsSigningKeys {
    /// Parses `signing.key` text (one `ed25519 <version> <seed>` per line).
    #[wasm_bindgen(constructor)]
    pub fn new(text: &str) -> JsResult<JsSigningKeys> {
        Ok(JsSigningKeys {
            keys: ops::signing_keys(text).map_err(err)?,
        })
    }

    /// A new key line from 36 bytes of entropy (the caller's `crypto.getRandomValues`).
    #[wasm_bindgen(js_name = generateLine)]
    pub fn generate_line(entropy: &[u8]) -> JsResult<String> {
        ops::generate_signing_key(entropy).map_err(err)
    }

    /// `{"ed25519:<v>":"<base64>"}` as JSON text.
    #[wasm_bindgen(js_name = publicKeysJson)]
    pub fn public_keys_json(&self) -> String {
        ops::public_keys(&self.keys)
    }

    /// The key IDs, in file order.
    #[wasm_bindgen(js_name = keyIds)]
    pub fn key_ids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.key_id().as_str().to_owned())
            .collect()
    }

    /// The keys in Synapse's format.
    #[wasm_bindgen(js_name = toSynapse)]
    pub fn to_synapse(&self) -> String {
        self.keys.iter().map(SigningKey::to_synapse_line).collect()
    }
}

/// Known server keys, from `/_matrix/key/v2/server` responses (each must be self-signed).
#[wasm_bindgen(js_name = KeyRing)]
#[derive(Default)]
pub struct JsKeyRing {
    ring: server_keys::KeyRing,
}

#[wasm_bindgen(js_class = KeyRing)]
impl JsKeyRing {
    /// An empty ring.
    #[wasm_bindgen(constructor)]
    pub fn new() -> JsKeyRing {
        JsKeyRing::default()
    }

    /// Adds a key response (JSON bytes).
    pub fn add(&mut self, response: &[u8]) -> JsResult<()> {
        ops::add_key_response(&mut self.ring, response).map_err(err)
    }
}

/// The core's key cache ([`server_keys::KeyCache`]): verified responses and the policy of when
/// to fetch.
#[wasm_bindgen(js_name = KeyCache)]
#[derive(Default)]
pub struct JsKeyCache {
    cache: server_keys::KeyCache,
}

fn fetch_json(f: &server_keys::KeyFetch) -> String {
    let mut o = canonical::Object::new();
    o.insert("server", f.server.as_str());
    o.insert(
        "minimum_valid_until_ts",
        canonical::Int::saturating(f.minimum_valid_until_ts.as_i64()),
    );
    o.insert(
        "key_ids",
        canonical::Value::Array(
            f.key_ids
                .iter()
                .map(|k| canonical::Value::from(k.as_str()))
                .collect(),
        ),
    );
    // The body to POST to a notary for it (the core's query: each key ID with the minimum).
    o.insert("notary_query", f.notary_query().to_json());
    o.to_canonical_string()
}

#[wasm_bindgen(js_class = KeyCache)]
impl JsKeyCache {
    /// An empty cache.
    #[wasm_bindgen(constructor)]
    pub fn new() -> JsKeyCache {
        JsKeyCache::default()
    }

    /// Verifies and caches a direct `/_matrix/key/v2/server` response fetched at `fetched_at`
    /// (ms); `expected_server` is the server asked. Returns the server name.
    pub fn insert(
        &mut self,
        response: &[u8],
        expected_server: Option<String>,
        fetched_at: f64,
    ) -> JsResult<String> {
        let o = canonical::parse_object(response, &canonical::ParseOptions::STRICT)
            .map_err(|e| err(e.into()))?;
        let keys = self
            .cache
            .insert(o, expected_server.as_deref(), ts(fetched_at))
            .map_err(|e| err(e.into()))?;
        Ok(keys.server_name.clone())
    }

    /// Verifies a notary's `/_matrix/key/v2/query` answer (each entry self-signed and signed by
    /// `notary` with one of `notary_keys`, `{"ed25519:<v>":"<base64>"}`), caches the good
    /// entries and returns `{"accepted":[servers],"rejected":[{"index","code"}]}`.
    #[wasm_bindgen(js_name = insertNotaryAnswer)]
    pub fn insert_notary_answer(
        &mut self,
        response: &[u8],
        notary: &str,
        notary_keys: &[u8],
        fetched_at: f64,
    ) -> JsResult<String> {
        let parse = |b: &[u8]| {
            canonical::parse_object(b, &canonical::ParseOptions::STRICT).map_err(|e| err(e.into()))
        };
        let mut keys = std::collections::BTreeMap::new();
        for (id, v) in parse(notary_keys)?.iter() {
            let b64 = v.as_str().unwrap_or_default();
            keys.insert(
                mxfed_core::keys::KeyId::parse(id).map_err(|e| err(e.into()))?,
                mxfed_core::keys::VerifyKey::from_base64(b64).map_err(|e| err(e.into()))?,
            );
        }
        let answer = server_keys::verify_notary_response(&parse(response)?, notary, &keys)
            .map_err(|e| err(e.into()))?;
        let mut accepted = Vec::new();
        for (k, o) in answer.accepted {
            if self
                .cache
                .insert(o, Some(&k.server_name), ts(fetched_at))
                .is_ok()
            {
                accepted.push(canonical::Value::from(k.server_name));
            }
        }
        let rejected: Vec<canonical::Value> = answer
            .rejected
            .iter()
            .map(|(i, e)| {
                let mut o = canonical::Object::new();
                o.insert(
                    "index",
                    canonical::Int::saturating(i64::try_from(*i).unwrap_or(i64::MAX)),
                );
                o.insert("code", e.code());
                o.into()
            })
            .collect();
        let mut o = canonical::Object::new();
        o.insert("accepted", accepted);
        o.insert("rejected", rejected);
        Ok(o.to_canonical_string())
    }

    /// A notary query body (`POST /_matrix/key/v2/query`) asking for every key of `server`.
    #[wasm_bindgen(js_name = notaryQuery)]
    pub fn notary_query(server: &str) -> String {
        let mut q = server_keys::KeyQuery::default();
        // No key IDs: the notary answers with all of the server's keys.
        q.servers
            .insert(server.to_owned(), std::collections::BTreeMap::new());
        q.to_json().to_canonical_string()
    }

    /// What to fetch before authenticating a request by `server` signed with `key_ids` at
    /// `now`: `{"server","minimum_valid_until_ts"}` JSON, or `undefined` when a usable key is
    /// cached.
    #[wasm_bindgen(js_name = fetchForRequest)]
    pub fn fetch_for_request(
        &self,
        server: &str,
        key_ids: Vec<String>,
        now: f64,
    ) -> Option<String> {
        let ids: Vec<_> = key_ids
            .iter()
            .filter_map(|k| mxfed_core::keys::KeyId::parse(k).ok())
            .collect();
        self.cache
            .fetch_for_request(server, &ids, ts(now))
            .as_ref()
            .map(fetch_json)
    }

    /// The cached response for a server, as received.
    pub fn response(&self, server: &str) -> Option<String> {
        self.cache
            .response(server)
            .map(canonical::Object::to_canonical_string)
    }

    /// A snapshot of every key learnt, for `checkPdus`/`verifyRequest`.
    #[wasm_bindgen(js_name = keyRing)]
    pub fn key_ring(&self) -> JsKeyRing {
        JsKeyRing {
            ring: self.cache.key_ring().clone(),
        }
    }
}

/// Canonical JSON of JSON bytes (numbers normalised as the spec's examples ask).
#[wasm_bindgen(js_name = canonicalJson)]
pub fn canonical_json(input: &[u8]) -> JsResult<String> {
    ops::canonical_json(input).map_err(err)
}

/// Signs a JSON object as `server` with every key; canonical JSON out.
#[wasm_bindgen(js_name = signJson)]
pub fn sign_json(input: &[u8], server: &str, keys: &JsSigningKeys) -> JsResult<String> {
    ops::sign_json(input, server, &keys.keys).map_err(err)
}

/// Verifies `server`'s signatures; `verify_keys` is `{"ed25519:<v>":"<base64>"}` JSON.
/// Returns `{"verified":[key IDs]}` JSON.
#[wasm_bindgen(js_name = verifyJson)]
pub fn verify_json(input: &[u8], server: &str, verify_keys: &[u8]) -> JsResult<String> {
    ops::verify_json(input, server, verify_keys).map_err(err)
}

/// Content hash of an event of room version `room_version` (unpadded base64).
#[wasm_bindgen(js_name = contentHash)]
pub fn content_hash(event: &[u8], room_version: &str) -> JsResult<String> {
    ops::content_hash(event, room_version).map_err(err)
}

/// Reference hash (unpadded base64).
#[wasm_bindgen(js_name = referenceHash)]
pub fn reference_hash(event: &[u8], room_version: &str) -> JsResult<String> {
    ops::reference_hash(event, room_version).map_err(err)
}

/// The event ID.
#[wasm_bindgen(js_name = eventId)]
pub fn event_id(event: &[u8], room_version: &str) -> JsResult<String> {
    ops::event_id(event, room_version).map_err(err)
}

/// The room ID a v12+ create event defines.
#[wasm_bindgen(js_name = roomId)]
pub fn room_id(event: &[u8], room_version: &str) -> JsResult<String> {
    ops::room_id(event, room_version).map_err(err)
}

/// The redacted event, canonical JSON.
#[wasm_bindgen]
pub fn redact(event: &[u8], room_version: &str) -> JsResult<String> {
    ops::redact(event, room_version).map_err(err)
}

/// Adds the content hash and `server`'s signatures; canonical JSON out.
#[wasm_bindgen(js_name = hashAndSignEvent)]
pub fn hash_and_sign_event(
    event: &[u8],
    room_version: &str,
    server: &str,
    keys: &JsSigningKeys,
) -> JsResult<String> {
    ops::hash_and_sign_event(event, room_version, server, &keys.keys).map_err(err)
}

/// Our signed membership event from a `make_*` answer: canonical JSON
/// `{"event_id","room_version","event"}` (the JS layer supplies the clock and the v1–2 event ID).
#[wasm_bindgen(js_name = membershipFromTemplate)]
#[allow(clippy::too_many_arguments)]
pub fn membership_from_template(
    answer: &[u8],
    room_id: &str,
    user_id: &str,
    membership: &str,
    origin: &str,
    content: Option<Vec<u8>>,
    now: f64,
    event_id_localpart: Option<String>,
    keys: &JsSigningKeys,
) -> JsResult<String> {
    ops::membership_from_template(
        answer,
        room_id,
        user_id,
        membership,
        origin,
        content.as_deref(),
        ts(now),
        event_id_localpart.as_deref(),
        &keys.keys,
    )
    .map_err(err)
}

/// Checks a batch of PDUs (`data` holds them back to back, `ends` each one's end offset);
/// one verdict per PDU as canonical JSON lines.
#[wasm_bindgen(js_name = checkPdus)]
pub fn check_pdus(
    data: &[u8],
    ends: &[u32],
    room_version: &str,
    keys: &JsKeyRing,
) -> JsResult<String> {
    let pdus = ops::split_batch(data, ends).map_err(err)?;
    ops::check_pdus(&pdus, room_version, &keys.ring).map_err(err)
}

/// The `Authorization` header values for a request, one per key, joined by `\n`.
#[wasm_bindgen(js_name = signRequest)]
pub fn sign_request(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<Vec<u8>>,
    keys: &JsSigningKeys,
) -> JsResult<String> {
    ops::sign_request(
        method,
        uri,
        origin,
        destination,
        content.as_deref(),
        &keys.keys,
    )
    .map_err(err)
}

/// Verifies X-Matrix header values at `now` (ms); `{"origin","verified"}` JSON out.
#[wasm_bindgen(js_name = verifyRequest)]
pub fn verify_request(
    method: &str,
    uri: &str,
    destination: &str,
    content: Option<Vec<u8>>,
    headers: Vec<String>,
    keys: &JsKeyRing,
    now: f64,
) -> JsResult<String> {
    ops::verify_request(
        method,
        uri,
        destination,
        content.as_deref(),
        &headers,
        &keys.ring,
        ts(now),
    )
    .map_err(err)
}

/// Our signed `/_matrix/key/v2/server` response, valid until `valid_until_ts` (ms).
#[wasm_bindgen(js_name = serverKeys)]
pub fn server_keys(server: &str, keys: &JsSigningKeys, valid_until_ts: f64) -> JsResult<String> {
    ops::server_keys(server, &keys.keys, ts(valid_until_ts)).map_err(err)
}

/// A transaction body parsed by the core; JSON out (see [`ops::parse_transaction`]).
#[wasm_bindgen(js_name = parseTransaction)]
pub fn parse_transaction(body: &[u8]) -> JsResult<String> {
    ops::parse_transaction(body).map_err(err)
}

/// Unpadded standard base64.
#[wasm_bindgen(js_name = encodeBase64)]
pub fn encode_base64(bytes: &[u8]) -> String {
    mxfed_core::base64::encode(bytes)
}

/// Bytes of (padded or unpadded) standard base64.
#[wasm_bindgen(js_name = decodeBase64)]
pub fn decode_base64(text: &str) -> JsResult<Vec<u8>> {
    mxfed_core::base64::decode(text).map_err(|e| err(e.into()))
}

/// Whether a server ACL (`m.room.server_acl` content, JSON bytes) lets `server_name` take part.
#[wasm_bindgen(js_name = serverAclAllows)]
pub fn server_acl_allows(content: &[u8], server_name: &str) -> JsResult<bool> {
    ops::server_acl_allows(content, server_name).map_err(err)
}

/// The discovery plan, JSON: the first step without `well_known`, else the step after the
/// well-known fetch (its body; empty when the fetch failed).
#[wasm_bindgen(js_name = discoveryPlan)]
pub fn discovery_plan(server_name: &str, well_known: Option<Vec<u8>>) -> JsResult<String> {
    ops::discovery_plan(server_name, well_known.as_deref()).map_err(err)
}

/// Every target of an SRV answer in the order to try them (JSON: `{"action":"connect",
/// "targets"}`, `{"action":"unavailable"}` or `{"action":"next"}`) from a JSON list of records.
#[wasm_bindgen(js_name = srvTargets)]
pub fn srv_targets(records: &[u8]) -> JsResult<String> {
    ops::srv_targets(records).map_err(err)
}

/// How long to use a valid well-known answer, in milliseconds, from its `Cache-Control` and
/// `Expires` header values (`undefined` when absent), received at `now` (ms since the epoch).
#[wasm_bindgen(js_name = wellKnownLifetime)]
pub fn well_known_lifetime(
    cache_control: Option<String>,
    expires: Option<String>,
    now: f64,
) -> f64 {
    // At most 48 hours: exact as a double.
    #[allow(clippy::cast_precision_loss)]
    let ms = ops::well_known_lifetime(cache_control.as_deref(), expires.as_deref(), ts(now)) as f64;
    ms
}

/// Whether the bytes are canonical JSON already: exactly what `canonicalJson` writes for the
/// value they parse to (`mxfed canonical --check`). Floats, integers outside ±(2^53 − 1) and bytes
/// that are not JSON are not.
#[wasm_bindgen(js_name = isCanonicalJson)]
pub fn is_canonical_json(bytes: &[u8]) -> bool {
    canonical::is_canonical(bytes)
}

/// The SRV record to connect to (`{"host","port"}` JSON, or `null`) from a JSON list of records.
#[wasm_bindgen(js_name = pickSrv)]
pub fn pick_srv(records: &[u8]) -> JsResult<String> {
    ops::pick_srv(records).map_err(err)
}

/// Whether a server may see an event: the `history_visibility` value after it (`None`: no such
/// event) and the memberships after it of the server's users.
#[wasm_bindgen(js_name = serverMaySee)]
pub fn server_may_see(history_visibility: Option<String>, memberships: Vec<String>) -> bool {
    ops::server_may_see(history_visibility.as_deref(), &memberships)
}

/// One room in memory, run through the core's receipt pipeline (`mxfed_core::room::Room`).
#[wasm_bindgen(js_name = Room)]
pub struct JsRoom {
    room: mxfed_core::room::Room,
}

#[wasm_bindgen(js_class = Room)]
impl JsRoom {
    /// An empty room of a version.
    #[wasm_bindgen(constructor)]
    pub fn new(room_version: &str) -> JsResult<JsRoom> {
        let v = mxfed_core::RoomVersion::get(room_version).map_err(|e| err(e.into()))?;
        Ok(JsRoom {
            room: mxfed_core::room::Room::new(v),
        })
    }

    /// The room version.
    #[wasm_bindgen(getter, js_name = roomVersion)]
    pub fn room_version(&self) -> String {
        self.room.version().id.to_owned()
    }

    /// Checks one PDU and receives it: its verdict as canonical JSON.
    pub fn receive(&mut self, pdu: &[u8], keys: &JsKeyRing) -> String {
        ops::room_receive(&mut self.room, pdu, &keys.ring)
    }

    /// The verdict `receive` would give, without taking the PDU in.
    pub fn check(&self, pdu: &[u8], keys: &JsKeyRing) -> String {
        ops::room_check(&self.room, pdu, &keys.ring)
    }

    /// Checks a batch (`data` back to back, `ends` each one's end offset) and receives it in
    /// causal order: verdict lines, in processing order.
    #[wasm_bindgen(js_name = receiveAll)]
    pub fn receive_all(&mut self, data: &[u8], ends: &[u32], keys: &JsKeyRing) -> JsResult<String> {
        let pdus = ops::split_batch(data, ends).map_err(err)?;
        Ok(ops::room_receive_pdus(&mut self.room, &pdus, &keys.ring))
    }

    /// The current state as a canonical JSON list of `{event_id, state_key, type}`.
    #[wasm_bindgen(js_name = currentState)]
    pub fn current_state(&self) -> String {
        ops::state_json(&self.room.current_state())
    }

    /// The forward extremities, sorted.
    #[wasm_bindgen(js_name = forwardExtremities)]
    pub fn forward_extremities(&self) -> Vec<String> {
        self.room.forward_extremities().iter().cloned().collect()
    }

    /// The state after a known event, as `currentState`; `undefined` for an unknown event.
    #[wasm_bindgen(js_name = stateAfter)]
    pub fn state_after(&self, event_id: &str) -> Option<String> {
        self.room.state_after(event_id).map(ops::state_json)
    }

    /// Whether the room has an event (accepted, soft-failed or rejected).
    pub fn has(&self, event_id: &str) -> bool {
        self.room.contains(event_id)
    }

    /// The restricted-join decision of `server_name` as the resident server: canonical
    /// `{"via": user or null}`; throws the refusal's code.
    #[wasm_bindgen(js_name = restrictedJoin)]
    pub fn restricted_join(
        &self,
        user_id: &str,
        server_name: &str,
        joined: Vec<String>,
        not_joined: Vec<String>,
    ) -> JsResult<String> {
        ops::restricted_join(&self.room, user_id, server_name, &joined, &not_joined).map_err(err)
    }
}

/// Replays a whole room (`mxfed room replay`): verdict lines, then `{"state":[…]}`.
#[wasm_bindgen]
pub fn replay(data: &[u8], ends: &[u32], room_version: &str, keys: &JsKeyRing) -> JsResult<String> {
    let pdus = ops::split_batch(data, ends).map_err(err)?;
    ops::replay(&pdus, room_version, &keys.ring).map_err(err)
}

/// The edge route of a request: `well_known`, `server_keys`, `open`, `federation`, `send` or
/// `passthrough`.
#[wasm_bindgen(js_name = edgeRoute)]
pub fn edge_route(method: &str, path: &str) -> String {
    edge::Route::of(method, path).as_str().to_owned()
}

/// A federation request under check at the edge (see [`edge::EdgeRequest`]).
#[wasm_bindgen(js_name = EdgeRequest)]
pub struct JsEdgeRequest {
    inner: edge::EdgeRequest,
}

#[wasm_bindgen(js_class = EdgeRequest)]
impl JsEdgeRequest {
    /// Parses the `Authorization` header (as the Fetch API joins it) and the JSON body.
    #[wasm_bindgen(constructor)]
    pub fn new(
        method: &str,
        uri: &str,
        destination: &str,
        authorization: Option<String>,
        body: Option<Vec<u8>>,
    ) -> JsResult<JsEdgeRequest> {
        Ok(JsEdgeRequest {
            inner: edge::EdgeRequest::new(
                method,
                uri,
                destination,
                authorization.as_deref(),
                body.as_deref(),
            )
            .map_err(err)?,
        })
    }

    /// The origin's keys to fetch before authenticating, `{"server","minimum_valid_until_ts"}`
    /// JSON, or `undefined`.
    #[wasm_bindgen(js_name = keyFetch)]
    pub fn key_fetch(&self, cache: &JsKeyCache, now: f64) -> Option<String> {
        self.inner
            .key_fetch(&cache.cache, ts(now))
            .as_ref()
            .map(fetch_json)
    }

    /// Verifies X-Matrix; returns the origin or throws (with `status` and `errcode`).
    pub fn authenticate(&self, cache: &JsKeyCache, now: f64) -> JsResult<String> {
        self.inner.authenticate(&cache.cache, ts(now)).map_err(err)
    }

    /// Reads the body as a transaction; returns the PDUs' room IDs.
    #[wasm_bindgen(js_name = beginTransaction)]
    pub fn begin_transaction(&mut self) -> JsResult<Vec<String>> {
        self.inner.begin_transaction().map_err(err)
    }

    /// Key fetches the PDUs need, as a JSON list of `{"server","minimum_valid_until_ts"}`;
    /// `versions` is `{"room_id": "version" | null}` JSON.
    #[wasm_bindgen(js_name = pduKeyFetches)]
    pub fn pdu_key_fetches(&self, cache: &JsKeyCache, versions: &[u8]) -> JsResult<String> {
        let versions = edge::parse_versions(versions).map_err(err)?;
        let list: Vec<String> = self
            .inner
            .pdu_key_fetches(&cache.cache, &versions)
            .iter()
            .map(fetch_json)
            .collect();
        Ok(format!("[{}]", list.join(",")))
    }

    /// Checks the PDUs and decides what is forwarded; returns the summary JSON
    /// ([`edge::filtered_json`]).
    pub fn filter(
        &mut self,
        cache: &JsKeyCache,
        versions: &[u8],
        forward_unknown: bool,
    ) -> JsResult<String> {
        let versions = edge::parse_versions(versions).map_err(err)?;
        let f = self
            .inner
            .filter(&cache.cache, &versions, forward_unknown)
            .map_err(err)?;
        Ok(edge::filtered_json(f).to_canonical_string())
    }

    /// `"original"`, `"rewritten"` or `"nothing"`: what [`JsEdgeRequest::forward_body`] means.
    #[wasm_bindgen(js_name = forwardKind)]
    pub fn forward_kind(&self) -> String {
        match self.inner.forward() {
            edge::Forward::Original => "original",
            edge::Forward::Rewritten(_) => "rewritten",
            edge::Forward::Nothing => "nothing",
        }
        .to_owned()
    }

    /// The body to forward when it was rewritten.
    #[wasm_bindgen(js_name = forwardBody)]
    pub fn forward_body(&self) -> Option<Vec<u8>> {
        match self.inner.forward() {
            edge::Forward::Rewritten(b) => Some(b),
            _ => None,
        }
    }

    /// The response: the origin's body with the rejected PDUs' errors merged in.
    #[wasm_bindgen(js_name = mergeResponse)]
    pub fn merge_response(&self, origin: Option<Vec<u8>>) -> Vec<u8> {
        self.inner.merge_response(origin.as_deref())
    }
}
