//! Server signing keys: `/_matrix/key/v2/server` responses, and a [`KeyRing`] of what is known
//! about other servers' keys ([spec § Retrieving server keys], DIGEST §14).
//!
//! [spec § Retrieving server keys]: https://spec.matrix.org/latest/server-server-api/#retrieving-server-keys

use std::collections::BTreeMap;

use crate::canonical::{Int, Object, Value};
use crate::identifiers::{validate_server_name, IdError};
use crate::keys::{KeyError, KeyId, SigningKey, VerifyKey};
use crate::room_version::RoomVersion;
use crate::signing::{
    check_server_signatures, signing_bytes, KeyLookup, KeyOutcome, SignatureError,
};
use crate::time::Timestamp;

/// Why a key response is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerKeysError {
    /// A required field is missing or of the wrong type.
    #[error("key response field `{field}` is missing or not {expected}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The server name is invalid.
    #[error(transparent)]
    ServerName(#[from] IdError),
    /// A key in the response is malformed.
    #[error("key {key_id:?}: {source}")]
    Key {
        /// The key ID.
        key_id: String,
        /// What was wrong.
        source: KeyError,
    },
    /// The response is not self-signed: the first signature of its server by one of its
    /// `verify_keys` is missing or does not verify.
    #[error("key response is not self-signed: {0}")]
    NotSelfSigned(SignatureError),
    /// A notary's entry lacks a valid signature by the notary.
    #[error("not signed by the notary: {0}")]
    NotarySignature(SignatureError),
    /// A direct fetch answered with another server's keys.
    #[error("asked for {expected}'s keys, got {got}'s")]
    WrongServer {
        /// The server asked.
        expected: String,
        /// The server in the response.
        got: String,
    },
}

impl ServerKeysError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            ServerKeysError::BadField { .. } => "keys_bad_field",
            ServerKeysError::ServerName(e) => e.code(),
            ServerKeysError::Key { source, .. } => source.code(),
            ServerKeysError::NotSelfSigned(_) => "keys_not_self_signed",
            ServerKeysError::NotarySignature(_) => "keys_not_notary_signed",
            ServerKeysError::WrongServer { .. } => "keys_wrong_server",
        }
    }
}

/// One known key of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEntry {
    /// The public key.
    pub key: VerifyKey,
    /// For current keys: until when the key response says it is valid (ms since the epoch).
    pub valid_until_ts: Option<i64>,
    /// For old keys: when the key stopped being used. Old keys verify events sent before this,
    /// never requests.
    pub expired_ts: Option<i64>,
}

/// A verified `/_matrix/key/v2/server` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeys {
    /// Whose keys these are.
    pub server_name: String,
    /// Until when the response may be cached (ms since the epoch).
    pub valid_until_ts: i64,
    /// Every key, current and old.
    pub keys: BTreeMap<KeyId, KeyEntry>,
}

fn field_int(o: &Object, field: &'static str) -> Result<i64, ServerKeysError> {
    o.get(field)
        .and_then(Value::as_int)
        .ok_or(ServerKeysError::BadField {
            field,
            expected: "an integer",
        })
}

fn key_map<'a>(o: &'a Object, field: &'static str) -> Result<Option<&'a Object>, ServerKeysError> {
    match o.get(field) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ServerKeysError::BadField {
            field,
            expected: "an object",
        }),
    }
}

fn parse_key(key_id: &str, entry: &Value) -> Result<(KeyId, VerifyKey), ServerKeysError> {
    let wrap = |source| ServerKeysError::Key {
        key_id: key_id.to_owned(),
        source,
    };
    let id = KeyId::parse(key_id).map_err(wrap)?;
    let key =
        entry
            .as_object()
            .and_then(|e| e.get_str("key"))
            .ok_or(ServerKeysError::BadField {
                field: "key",
                expected: "a string",
            })?;
    Ok((id, VerifyKey::from_base64(key).map_err(wrap)?))
}

/// Whether a key ID names an algorithm we verify with: `ed25519:…`. Entries of other
/// algorithms in `verify_keys` and `old_verify_keys` are skipped, as Synapse skips them.
fn supported(key_id: &str) -> bool {
    key_id.starts_with("ed25519:")
}

impl ServerKeys {
    /// Parses a key response and checks it is self-signed, as Synapse does
    /// (`process_v2_response`): keys of algorithms other than ed25519 are skipped (their
    /// entries are not even read), and among the server's signatures, in key ID order, the
    /// first by a key its `verify_keys` lists decides: it must verify. A listed key need not
    /// have signed (a server publishes a new key before signing with it), and signatures by
    /// keys not listed are ignored (a notary's copy may carry the notary's own). Malformed
    /// ed25519 entries and a missing `server_name` or `valid_until_ts` are errors.
    ///
    /// # Errors
    /// Any [`ServerKeysError`].
    pub fn from_response(o: &Object) -> Result<ServerKeys, ServerKeysError> {
        let server_name = o.get_str("server_name").ok_or(ServerKeysError::BadField {
            field: "server_name",
            expected: "a string",
        })?;
        validate_server_name(server_name)?;
        let valid_until_ts = field_int(o, "valid_until_ts")?;
        let mut keys = BTreeMap::new();
        if let Some(vk) = key_map(o, "verify_keys")? {
            for (id, entry) in vk.iter().filter(|(id, _)| supported(id)) {
                let (id, key) = parse_key(id, entry)?;
                keys.insert(
                    id,
                    KeyEntry {
                        key,
                        valid_until_ts: Some(valid_until_ts),
                        expired_ts: None,
                    },
                );
            }
        }
        if keys.is_empty() {
            return Err(ServerKeysError::BadField {
                field: "verify_keys",
                expected: "an object with at least one ed25519 key",
            });
        }
        // Structure first, so a malformed response says what is malformed.
        let mut old_keys = BTreeMap::new();
        if let Some(old) = key_map(o, "old_verify_keys")? {
            for (id, entry) in old.iter().filter(|(id, _)| supported(id)) {
                let (id, key) = parse_key(id, entry)?;
                let expired_ts = entry
                    .as_object()
                    .and_then(|e| e.get("expired_ts"))
                    .and_then(Value::as_int)
                    .ok_or(ServerKeysError::BadField {
                        field: "expired_ts",
                        expected: "an integer",
                    })?;
                old_keys.entry(id).or_insert(KeyEntry {
                    key,
                    valid_until_ts: None,
                    expired_ts: Some(expired_ts),
                });
            }
        }
        let signed = signing_bytes(o);
        let r = check_server_signatures(o, &signed, server_name, |k| match keys.get(k) {
            Some(e) => KeyLookup::Usable(e.key),
            None => KeyLookup::Unknown,
        })
        .map_err(ServerKeysError::NotSelfSigned)?;
        // Signatures by keys not in `verify_keys` come out unknown or unsupported.
        let first = r.keys.iter().find(|(_, outcome)| {
            !matches!(outcome, KeyOutcome::UnknownKey | KeyOutcome::Unsupported)
        });
        match first {
            Some((_, KeyOutcome::Valid)) => {}
            Some((key_id, KeyOutcome::BadEncoding)) => {
                return Err(ServerKeysError::NotSelfSigned(
                    SignatureError::BadEncoding {
                        server: server_name.to_owned(),
                        key_id: key_id.clone(),
                    },
                ))
            }
            Some((key_id, _)) => {
                return Err(ServerKeysError::NotSelfSigned(SignatureError::Invalid {
                    server: server_name.to_owned(),
                    key_id: key_id.clone(),
                }))
            }
            None => {
                return Err(ServerKeysError::NotSelfSigned(SignatureError::Missing {
                    server: server_name.to_owned(),
                }))
            }
        }
        for (id, e) in old_keys {
            keys.entry(id).or_insert(e);
        }
        Ok(ServerKeys {
            server_name: server_name.to_owned(),
            valid_until_ts,
            keys,
        })
    }
}

/// Builds and self-signs our own `/_matrix/key/v2/server` response.
///
/// `old_keys` are published in `old_verify_keys` with their `expired_ts`.
///
/// # Errors
/// [`SignatureError`] only if signing fails (it cannot for a fresh object).
pub fn build_server_keys(
    server_name: &str,
    signing_keys: &[SigningKey],
    old_keys: &[(KeyId, VerifyKey, Int)],
    valid_until_ts: Int,
) -> Result<Object, SignatureError> {
    let mut verify_keys = Object::new();
    for k in signing_keys {
        let mut e = Object::new();
        e.insert("key", k.verify_key().to_base64());
        verify_keys.insert(k.key_id().as_str(), e);
    }
    let mut old = Object::new();
    for (id, key, expired) in old_keys {
        let mut e = Object::new();
        e.insert("key", key.to_base64());
        e.insert("expired_ts", *expired);
        old.insert(id.as_str(), e);
    }
    let mut o = Object::new();
    o.insert("server_name", server_name);
    o.insert("valid_until_ts", valid_until_ts);
    o.insert("verify_keys", verify_keys);
    o.insert("old_verify_keys", old);
    for k in signing_keys {
        crate::signing::sign_json(&mut o, server_name, k)?;
    }
    Ok(o)
}

/// What this server knows of other servers' keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    servers: BTreeMap<String, BTreeMap<KeyId, KeyEntry>>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Adds (or replaces) one key.
    pub fn insert(&mut self, server: &str, key_id: KeyId, entry: KeyEntry) {
        self.servers
            .entry(server.to_owned())
            .or_default()
            .insert(key_id, entry);
    }

    /// Adds every key of a verified response.
    pub fn add(&mut self, keys: &ServerKeys) {
        for (id, e) in &keys.keys {
            self.insert(&keys.server_name, id.clone(), *e);
        }
    }

    /// The keys known for a server.
    pub fn server(&self, server: &str) -> Option<&BTreeMap<KeyId, KeyEntry>> {
        self.servers.get(server)
    }

    /// Whether a key may verify an event sent at `origin_server_ts` in room version `v`.
    ///
    /// From room version 5 a current key's `valid_until_ts` must be at or after the event's
    /// `origin_server_ts`, and an old key's `expired_ts` likewise. Versions 1–4 ignore validity
    /// (Synapse asks for a minimum of 0). The spec's extra `now + 7 days` cap is not applied,
    /// because Synapse does not apply it and we must agree with it.
    pub fn lookup_for_event(
        &self,
        server: &str,
        key_id: &KeyId,
        origin_server_ts: i64,
        v: &RoomVersion,
    ) -> KeyLookup {
        let Some(e) = self.servers.get(server).and_then(|s| s.get(key_id)) else {
            return KeyLookup::Unknown;
        };
        let until = e.valid_until_ts.or(e.expired_ts).unwrap_or(i64::MAX);
        if v.enforce_key_validity && until < origin_server_ts {
            KeyLookup::NotValid
        } else {
            KeyLookup::Usable(e.key)
        }
    }

    /// Whether a key may authenticate a request at `now`: current keys only, not past their
    /// `valid_until_ts`.
    pub fn lookup_for_request(&self, server: &str, key_id: &KeyId, now: i64) -> KeyLookup {
        match self.servers.get(server).and_then(|s| s.get(key_id)) {
            None => KeyLookup::Unknown,
            Some(e) if e.expired_ts.is_some() => KeyLookup::NotValid,
            Some(e) if e.valid_until_ts.is_some_and(|t| t < now) => KeyLookup::NotValid,
            Some(e) => KeyLookup::Usable(e.key),
        }
    }
}

/// A key query (`POST /_matrix/key/v2/query` body, or the GET form): per server, the key IDs
/// wanted (none = all) with an optional minimum validity each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyQuery {
    /// Server → key ID → `minimum_valid_until_ts`.
    pub servers: BTreeMap<String, BTreeMap<String, Option<i64>>>,
    /// Server → the `minimum_valid_until_ts` asked of all its keys (the GET form's query
    /// parameter; the POST body has no place for it, so [`KeyQuery::to_json`] leaves it out).
    pub all_keys_minimum: BTreeMap<String, i64>,
}

impl KeyQuery {
    /// Parses `{"server_keys": {server: {key_id: {"minimum_valid_until_ts": ms}}}}`.
    ///
    /// # Errors
    /// [`ServerKeysError::BadField`] or a bad server name.
    pub fn parse(body: &Object) -> Result<KeyQuery, ServerKeysError> {
        let bad = |field, expected| ServerKeysError::BadField { field, expected };
        let servers = body
            .get_object("server_keys")
            .ok_or(bad("server_keys", "an object"))?;
        let mut q = KeyQuery::default();
        for (server, ids) in servers.iter() {
            validate_server_name(server)?;
            let ids = ids.as_object().ok_or(bad("server_keys.*", "an object"))?;
            let mut wanted = BTreeMap::new();
            for (id, crit) in ids.iter() {
                let crit = crit
                    .as_object()
                    .ok_or(bad("server_keys.*.*", "an object"))?;
                let min = match crit.get("minimum_valid_until_ts") {
                    None => None,
                    Some(v) => Some(
                        v.as_int()
                            .ok_or(bad("minimum_valid_until_ts", "an integer"))?,
                    ),
                };
                wanted.insert(id.to_owned(), min);
            }
            q.servers.insert(server.to_owned(), wanted);
        }
        Ok(q)
    }

    /// The query as a request body.
    pub fn to_json(&self) -> Object {
        let mut servers = Object::new();
        for (server, ids) in &self.servers {
            let mut o = Object::new();
            for (id, min) in ids {
                let mut crit = Object::new();
                if let Some(m) = min.and_then(Int::new) {
                    crit.insert("minimum_valid_until_ts", m);
                }
                o.insert(id.as_str(), crit);
            }
            servers.insert(server.as_str(), o);
        }
        let mut body = Object::new();
        body.insert("server_keys", servers);
        body
    }

    /// The smallest validity asked for a server, if any.
    fn minimum(&self, server: &str) -> Option<i64> {
        let per_key = self
            .servers
            .get(server)
            .into_iter()
            .flat_map(|ids| ids.values());
        per_key
            .flatten()
            .chain(self.all_keys_minimum.get(server))
            .copied()
            .min()
    }
}

/// What a notary's `/_matrix/key/v2/query` answer yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotaryAnswer {
    /// Entries signed by both the origin and the notary, each with the response object itself.
    pub accepted: Vec<(ServerKeys, Object)>,
    /// Entries that failed (by index), as Synapse skips them and uses the rest.
    pub rejected: Vec<(usize, ServerKeysError)>,
}

/// Checks a notary's answer: each entry must be self-signed by its origin (as a direct response
/// is) and signed by the notary with one of `notary_keys`. Bad entries are skipped, not fatal.
///
/// # Errors
/// [`ServerKeysError::BadField`] when `server_keys` is not a list.
pub fn verify_notary_response(
    response: &Object,
    notary: &str,
    notary_keys: &BTreeMap<KeyId, VerifyKey>,
) -> Result<NotaryAnswer, ServerKeysError> {
    let entries = response
        .get("server_keys")
        .and_then(Value::as_array)
        .ok_or(ServerKeysError::BadField {
            field: "server_keys",
            expected: "a list",
        })?;
    let mut out = NotaryAnswer::default();
    for (i, e) in entries.iter().enumerate() {
        let checked = e
            .as_object()
            .ok_or(ServerKeysError::BadField {
                field: "server_keys[]",
                expected: "an object",
            })
            .and_then(|o| {
                let keys = ServerKeys::from_response(o)?;
                crate::signing::verify_json(o, notary, notary_keys)
                    .map_err(ServerKeysError::NotarySignature)?;
                Ok((keys, o.clone()))
            });
        match checked {
            Ok(k) => out.accepted.push(k),
            Err(err) => out.rejected.push((i, err)),
        }
    }
    Ok(out)
}

/// A fetch the host should make: the server, the keys needed and the validity to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFetch {
    /// Whose keys.
    pub server: String,
    /// The key IDs needed (none: any key of the server will do).
    pub key_ids: Vec<KeyId>,
    /// `minimum_valid_until_ts` to send.
    pub minimum_valid_until_ts: Timestamp,
}

impl KeyFetch {
    /// The query to send a notary for this fetch (`POST /_matrix/key/v2/query`), as Synapse
    /// asks: each key ID needed with this fetch's `minimum_valid_until_ts`, or, with no key IDs,
    /// all of the server's keys (a query with no key IDs carries no criteria).
    ///
    /// ```
    /// use mxfed_core::keys::KeyId;
    /// use mxfed_core::server_keys::KeyFetch;
    /// use mxfed_core::Timestamp;
    /// let f = KeyFetch {
    ///     server: "example.org".into(),
    ///     key_ids: vec![KeyId::parse("ed25519:a").unwrap()],
    ///     minimum_valid_until_ts: Timestamp(1000),
    /// };
    /// assert_eq!(
    ///     f.notary_query().to_json().to_canonical_string(),
    ///     r#"{"server_keys":{"example.org":{"ed25519:a":{"minimum_valid_until_ts":1000}}}}"#
    /// );
    /// ```
    pub fn notary_query(&self) -> KeyQuery {
        let min = Some(self.minimum_valid_until_ts.as_i64());
        let ids = self
            .key_ids
            .iter()
            .map(|id| (id.as_str().to_owned(), min))
            .collect();
        let mut q = KeyQuery::default();
        q.servers.insert(self.server.clone(), ids);
        q
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheEntry {
    response: Object,
    keys: ServerKeys,
    fetched_at: Timestamp,
}

/// The key cache: verified responses as received, and the policy of when to use them, when to
/// refetch, and how to answer notary queries. Pure: the host fetches, the cache decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCache {
    entries: BTreeMap<String, CacheEntry>,
    ring: KeyRing,
}

impl KeyCache {
    /// An empty cache.
    pub fn new() -> KeyCache {
        KeyCache::default()
    }

    /// Verifies a response (self-signed, and for `expected_server` when given) and caches it.
    /// A response is kept unless the cache already holds one valid for longer — as Synapse keeps
    /// the largest `valid_until_ts` — but keys it adds are always learnt.
    ///
    /// # Errors
    /// Any [`ServerKeysError`]; [`ServerKeysError::WrongServer`] when the response is for another
    /// server than the one asked.
    pub fn insert(
        &mut self,
        response: Object,
        expected_server: Option<&str>,
        fetched_at: Timestamp,
    ) -> Result<&ServerKeys, ServerKeysError> {
        let keys = ServerKeys::from_response(&response)?;
        if let Some(want) = expected_server {
            if keys.server_name != want {
                return Err(ServerKeysError::WrongServer {
                    expected: want.to_owned(),
                    got: keys.server_name,
                });
            }
        }
        let server = keys.server_name.clone();
        for (id, e) in &keys.keys {
            let keep_old = self
                .ring
                .server(&server)
                .and_then(|s| s.get(id))
                .is_some_and(|old| old.valid_until_ts > e.valid_until_ts && e.expired_ts.is_none());
            if !keep_old {
                self.ring.insert(&server, id.clone(), *e);
            }
        }
        let replace = self
            .entries
            .get(&server)
            .is_none_or(|old| old.keys.valid_until_ts <= keys.valid_until_ts);
        if replace {
            self.entries.insert(
                server.clone(),
                CacheEntry {
                    response,
                    keys,
                    fetched_at,
                },
            );
        }
        self.entries
            .get(&server)
            .map(|e| &e.keys)
            .ok_or(ServerKeysError::BadField {
                field: "server_name",
                expected: "a cached server",
            })
    }

    /// Every key learnt, for verification.
    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The cached response for a server, as received.
    pub fn response(&self, server: &str) -> Option<&Object> {
        self.entries.get(server).map(|e| &e.response)
    }

    /// What to fetch before authenticating a request signed with `key_ids` at `now`: nothing if
    /// one of them is a current key valid now.
    pub fn fetch_for_request(
        &self,
        server: &str,
        key_ids: &[KeyId],
        now: Timestamp,
    ) -> Option<KeyFetch> {
        let usable = key_ids.iter().any(|id| {
            matches!(
                self.ring.lookup_for_request(server, id, now.as_i64()),
                crate::signing::KeyLookup::Usable(_)
            )
        });
        (!usable).then(|| KeyFetch {
            server: server.to_owned(),
            key_ids: key_ids.to_vec(),
            minimum_valid_until_ts: now,
        })
    }

    /// What to fetch before checking an event signed with `key_ids`: nothing if one of them may
    /// verify an event sent at `origin_server_ts` in room version `v`.
    pub fn fetch_for_event(
        &self,
        server: &str,
        key_ids: &[KeyId],
        origin_server_ts: Timestamp,
        v: &RoomVersion,
    ) -> Option<KeyFetch> {
        let usable = key_ids.iter().any(|id| {
            matches!(
                self.ring
                    .lookup_for_event(server, id, origin_server_ts.as_i64(), v),
                crate::signing::KeyLookup::Usable(_)
            )
        });
        (!usable).then(|| KeyFetch {
            server: server.to_owned(),
            key_ids: key_ids.to_vec(),
            minimum_valid_until_ts: if v.enforce_key_validity {
                origin_server_ts
            } else {
                Timestamp::ZERO
            },
        })
    }

    /// What to fetch before checking `events` (each with its room version): one fetch per
    /// server whose keys some event's signature needs and the cache cannot supply, asking for
    /// every key ID those events name and the latest `minimum_valid_until_ts` among them.
    /// Events whose signers cannot be read are skipped (their format check refuses them).
    pub fn fetches_for_events<'e>(
        &self,
        events: impl IntoIterator<Item = (&'e Object, &'static RoomVersion)>,
    ) -> Vec<KeyFetch> {
        let mut by_server: BTreeMap<String, KeyFetch> = BTreeMap::new();
        for (ev, v) in events {
            let Ok(signers) = crate::pdu::required_signers(ev, v) else {
                continue;
            };
            let ts = Timestamp::from_i64(
                ev.get("origin_server_ts")
                    .and_then(Value::as_int)
                    .unwrap_or(0),
            );
            for server in signers {
                let ids: Vec<KeyId> = ev
                    .get_object("signatures")
                    .and_then(|s| s.get_object(&server))
                    .map(|s| s.keys().filter_map(|k| KeyId::parse(k).ok()).collect())
                    .unwrap_or_default();
                let Some(f) = self.fetch_for_event(&server, &ids, ts, v) else {
                    continue;
                };
                match by_server.get_mut(&f.server) {
                    Some(e) => {
                        e.minimum_valid_until_ts =
                            e.minimum_valid_until_ts.max(f.minimum_valid_until_ts);
                        for id in f.key_ids {
                            if !e.key_ids.contains(&id) {
                                e.key_ids.push(id);
                            }
                        }
                    }
                    None => {
                        by_server.insert(f.server.clone(), f);
                    }
                }
            }
        }
        by_server.into_values().collect()
    }

    /// Whether the cache holds what `fetch` asked for: each of its key IDs (with none, the
    /// server's latest response) valid until at least its `minimum_valid_until_ts` (an old
    /// key counts until its `expired_ts`). Synapse's rule for going on to the next source
    /// (direct, then each notary) when one answered without it.
    pub fn satisfies(&self, fetch: &KeyFetch) -> bool {
        let min = fetch.minimum_valid_until_ts.as_i64();
        if fetch.key_ids.is_empty() {
            return self
                .entries
                .get(&fetch.server)
                .is_some_and(|e| e.keys.valid_until_ts >= min);
        }
        let known = self.ring.server(&fetch.server);
        fetch.key_ids.iter().all(|id| {
            known
                .and_then(|k| k.get(id))
                .is_some_and(|e| e.valid_until_ts.or(e.expired_ts).unwrap_or(i64::MAX) >= min)
        })
    }

    /// When a server's cached response should be refreshed: halfway through its lifetime
    /// (Synapse's notary rule; the spec asks notaries to cache for half the lifetime).
    pub fn refresh_at(&self, server: &str) -> Option<Timestamp> {
        let e = self.entries.get(server)?;
        let until = Timestamp::from_i64(e.keys.valid_until_ts);
        let half = until.saturating_since(e.fetched_at).0 / 2;
        Some(e.fetched_at.saturating_add(crate::time::Millis(half)))
    }

    /// The servers a notary must fetch before answering `query` at `now`: those not cached,
    /// cached with a validity below the asked minimum, or — with no minimum asked — past their
    /// refresh time.
    pub fn notary_fetches(&self, query: &KeyQuery, now: Timestamp) -> Vec<KeyFetch> {
        let mut out = Vec::new();
        for (server, ids) in &query.servers {
            let min = query.minimum(server);
            let stale = match (self.entries.get(server), min) {
                (None, _) => true,
                (Some(e), Some(m)) => e.keys.valid_until_ts < m,
                (Some(_), None) => self.refresh_at(server).is_some_and(|t| t < now),
            };
            if stale {
                let key_ids = ids.keys().filter_map(|id| KeyId::parse(id).ok()).collect();
                out.push(KeyFetch {
                    server: server.clone(),
                    key_ids,
                    minimum_valid_until_ts: min.map_or(now, Timestamp::from_i64),
                });
            }
        }
        out
    }

    /// Our notary answer: `{"server_keys": [...]}` with each cached response for a queried
    /// server, countersigned by us. Servers we know nothing of are left out, as the spec allows.
    ///
    /// # Errors
    /// A malformed `signatures` in a cached response (not possible for verified responses).
    pub fn notary_answer(
        &self,
        query: &KeyQuery,
        our_name: &str,
        our_keys: &[SigningKey],
    ) -> Result<Object, SignatureError> {
        let mut list = Vec::new();
        for server in query.servers.keys() {
            if let Some(e) = self.entries.get(server) {
                let mut r = e.response.clone();
                for k in our_keys {
                    crate::signing::sign_json(&mut r, our_name, k)?;
                }
                list.push(Value::Object(r));
            }
        }
        let mut o = Object::new();
        o.insert("server_keys", Value::Array(list));
        Ok(o)
    }
}
