//! Server signing keys: `/_matrix/key/v2/server` responses, and a [`KeyRing`] of what is known
//! about other servers' keys ([spec § Retrieving server keys], DIGEST §14).
//!
//! [spec § Retrieving server keys]: https://spec.matrix.org/latest/server-server-api/#retrieving-server-keys

use std::collections::BTreeMap;

use crate::canonical::{Int, Object, Value};
use crate::identifiers::{validate_server_name, IdError};
use crate::keys::{KeyError, KeyId, SigningKey, VerifyKey};
use crate::room_version::RoomVersion;
use crate::signing::{check_server_signatures, signing_bytes, KeyLookup, SignatureError};

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
    #[error("key {key_id}: {source}")]
    Key {
        /// The key ID.
        key_id: String,
        /// What was wrong.
        source: KeyError,
    },
    /// The response is not signed by every key it lists in `verify_keys`.
    #[error("key response is not self-signed: {0}")]
    NotSelfSigned(SignatureError),
}

impl ServerKeysError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            ServerKeysError::BadField { .. } => "keys_bad_field",
            ServerKeysError::ServerName(e) => e.code(),
            ServerKeysError::Key { source, .. } => source.code(),
            ServerKeysError::NotSelfSigned(_) => "keys_not_self_signed",
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

impl ServerKeys {
    /// Parses a key response and checks it is signed by every key in its `verify_keys`.
    /// Keys of algorithms other than ed25519 are an error rather than silently skipped: a
    /// response we cannot fully check is not trusted.
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
            for (id, entry) in vk.iter() {
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
                expected: "an object with at least one key",
            });
        }
        let signed = signing_bytes(o);
        for (id, entry) in &keys {
            let r = check_server_signatures(o, &signed, server_name, |k| {
                if k == id {
                    KeyLookup::Usable(entry.key)
                } else {
                    KeyLookup::Unknown
                }
            })
            .map_err(ServerKeysError::NotSelfSigned)?;
            // Every listed key must have signed, and nothing it signed may fail.
            let signed_by_this = r
                .keys
                .iter()
                .any(|(k, o)| k == id.as_str() && *o == crate::signing::KeyOutcome::Valid);
            if let Err(e) = r.verdict() {
                return Err(ServerKeysError::NotSelfSigned(e));
            }
            if !signed_by_this {
                return Err(ServerKeysError::NotSelfSigned(SignatureError::Missing {
                    server: format!("{server_name} ({id})"),
                }));
            }
        }
        if let Some(old) = key_map(o, "old_verify_keys")? {
            for (id, entry) in old.iter() {
                let (id, key) = parse_key(id, entry)?;
                let expired_ts = entry
                    .as_object()
                    .and_then(|e| e.get("expired_ts"))
                    .and_then(Value::as_int)
                    .ok_or(ServerKeysError::BadField {
                        field: "expired_ts",
                        expected: "an integer",
                    })?;
                keys.entry(id).or_insert(KeyEntry {
                    key,
                    valid_until_ts: None,
                    expired_ts: Some(expired_ts),
                });
            }
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
