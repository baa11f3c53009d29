//! Signing JSON ([spec appendix § Signing JSON]).
//!
//! Only the top-level `signatures` and `unsigned` keys are left out of what is signed; nested
//! objects of those names are data. Other servers' signatures are kept, and a server may sign
//! with several keys.
//!
//! [spec appendix § Signing JSON]: https://spec.matrix.org/latest/appendices/#signing-json

use std::collections::BTreeMap;

use crate::base64;
use crate::canonical::{encode_object_filtered, Object, Value};
use crate::keys::{KeyError, KeyId, SigningKey, VerifyKey};

/// Why signing or verifying failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// `signatures`, or the entry for a server, is not an object (or a signature not a string).
    #[error("`signatures` is malformed: {what}")]
    Malformed {
        /// Which part.
        what: String,
    },
    /// The server has not signed at all.
    #[error("no signature from {server}")]
    Missing {
        /// The server whose signature is required.
        server: String,
    },
    /// The server signed, but with no key we have (or no key valid at the time that matters).
    #[error("no signature from {server} could be checked: no usable key")]
    NoUsableKey {
        /// The server whose signature is required.
        server: String,
    },
    /// A signature by a known key does not verify.
    #[error("signature by {server} {key_id:?} does not verify")]
    Invalid {
        /// The signing server.
        server: String,
        /// The key ID.
        key_id: String,
    },
    /// A signature is not base64 or not 64 bytes.
    #[error("signature by {server} {key_id:?} is not 64 bytes of base64")]
    BadEncoding {
        /// The signing server.
        server: String,
        /// The key ID.
        key_id: String,
    },
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl SignatureError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Malformed { .. } => "signatures_malformed",
            SignatureError::Missing { .. } => "signature_missing",
            SignatureError::NoUsableKey { .. } => "signature_no_usable_key",
            SignatureError::Invalid { .. } => "signature_invalid",
            SignatureError::BadEncoding { .. } => "signature_bad_encoding",
            SignatureError::Key(e) => e.code(),
        }
    }
}

/// The bytes that are signed: the canonical JSON of `obj` without top-level `signatures` and
/// `unsigned`.
pub fn signing_bytes(obj: &Object) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    signing_bytes_into(obj, &mut out);
    out
}

/// [`signing_bytes`] into a reusable buffer.
pub fn signing_bytes_into(obj: &Object, out: &mut Vec<u8>) {
    encode_object_filtered(obj, |k| k != "signatures" && k != "unsigned", out)
}

/// Signs `obj` in place as `server_name` with `key`, keeping every other signature.
///
/// # Errors
/// [`SignatureError::Malformed`] when an existing `signatures` (or its entry for `server_name`)
/// is not an object.
///
/// ```
/// use mxfed_core::{canonical::Object, keys::SigningKey, signing::sign_json};
/// let key = SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
/// let mut obj = Object::new();
/// sign_json(&mut obj, "domain", &key).unwrap();
/// assert_eq!(
///     obj.to_canonical_string(),
///     r#"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#
/// );
/// ```
pub fn sign_json(
    obj: &mut Object,
    server_name: &str,
    key: &SigningKey,
) -> Result<(), SignatureError> {
    let sig = key.sign(&signing_bytes(obj));
    add_signature(obj, server_name, key.key_id(), &sig)
}

/// Puts a signature into `obj.signatures[server][key_id]`.
pub(crate) fn add_signature(
    obj: &mut Object,
    server_name: &str,
    key_id: &KeyId,
    sig: &[u8; 64],
) -> Result<(), SignatureError> {
    let malformed = |what: &str| SignatureError::Malformed { what: what.into() };
    let sigs = obj
        .object_entry("signatures")
        .ok_or_else(|| malformed("not an object"))?;
    let server = sigs
        .object_entry(server_name)
        .ok_or_else(|| malformed("a server's entry is not an object"))?;
    server.insert(key_id.as_str(), Value::String(base64::encode(sig)));
    Ok(())
}

/// What became of one signature when checking a server's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyOutcome {
    /// Verified.
    Valid,
    /// Checked against a known key and failed.
    Invalid,
    /// Not base64, or not 64 bytes.
    BadEncoding,
    /// No key with this ID is known: skipped.
    UnknownKey,
    /// The key is known but not valid at the time that matters (expired): skipped.
    KeyNotValid,
    /// An algorithm other than ed25519, or an unparseable key ID: skipped.
    Unsupported,
}

impl KeyOutcome {
    /// A short stable name, as printed by `mxfed event check`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOutcome::Valid => "ok",
            KeyOutcome::Invalid => "invalid",
            KeyOutcome::BadEncoding => "bad_encoding",
            KeyOutcome::UnknownKey => "unknown_key",
            KeyOutcome::KeyNotValid => "key_not_valid",
            KeyOutcome::Unsupported => "unsupported",
        }
    }

    fn was_checked(self) -> bool {
        matches!(
            self,
            KeyOutcome::Valid | KeyOutcome::Invalid | KeyOutcome::BadEncoding
        )
    }
}

/// What a key lookup found for one key ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// A key that may be used.
    Usable(VerifyKey),
    /// Known, but not valid for this use (expired, or an old key for a request).
    NotValid,
    /// Not known.
    Unknown,
}

/// Every signature one server put on an object, and what became of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSignatures {
    /// The server.
    pub server: String,
    /// Each key ID it signed with (in key-ID order) and its outcome.
    pub keys: Vec<(String, KeyOutcome)>,
}

impl ServerSignatures {
    /// The verdict the spec (and Synapse and ruma) give: every signature checked must verify,
    /// and at least one must have been checked.
    ///
    /// # Errors
    /// [`SignatureError::Missing`], [`SignatureError::Invalid`], [`SignatureError::BadEncoding`]
    /// or [`SignatureError::NoUsableKey`].
    pub fn verdict(&self) -> Result<Vec<KeyId>, SignatureError> {
        if self.keys.is_empty() {
            return Err(SignatureError::Missing {
                server: self.server.clone(),
            });
        }
        let mut ok = Vec::new();
        for (key_id, outcome) in &self.keys {
            match outcome {
                KeyOutcome::Invalid => {
                    return Err(SignatureError::Invalid {
                        server: self.server.clone(),
                        key_id: key_id.clone(),
                    })
                }
                KeyOutcome::BadEncoding => {
                    return Err(SignatureError::BadEncoding {
                        server: self.server.clone(),
                        key_id: key_id.clone(),
                    })
                }
                KeyOutcome::Valid => {
                    if let Ok(id) = KeyId::parse(key_id) {
                        ok.push(id);
                    }
                }
                _ => {}
            }
        }
        if !self.keys.iter().any(|(_, o)| o.was_checked()) {
            return Err(SignatureError::NoUsableKey {
                server: self.server.clone(),
            });
        }
        Ok(ok)
    }
}

/// A signature still to verify: which entry of [`ServerSignatures::keys`] it decides, the key,
/// and the signature bytes. Produced by [`collect_server_signatures`] so a caller can verify many
/// at once (batch verification) and then record the outcomes.
#[derive(Debug, Clone, Copy)]
pub struct PendingSignature {
    /// Index into [`ServerSignatures::keys`].
    pub index: usize,
    /// The key that must have made it.
    pub key: VerifyKey,
    /// The signature.
    pub sig: [u8; 64],
}

/// The first half of [`check_server_signatures`]: looks up every key `server` signed `obj` with
/// and decodes each signature, leaving the cryptographic checks to the caller. Entries whose
/// check is pending are provisionally [`KeyOutcome::Valid`]; a failed check must set
/// [`KeyOutcome::Invalid`].
///
/// # Errors
/// [`SignatureError::Malformed`] when `signatures` is not an object of objects.
pub fn collect_server_signatures(
    obj: &Object,
    server: &str,
    mut lookup: impl FnMut(&KeyId) -> KeyLookup,
) -> Result<(ServerSignatures, Vec<PendingSignature>), SignatureError> {
    let malformed = |what: &str| SignatureError::Malformed { what: what.into() };
    let mut result = ServerSignatures {
        server: server.to_owned(),
        keys: Vec::new(),
    };
    let mut pending = Vec::new();
    let entry = match obj.get("signatures") {
        None => return Ok((result, pending)),
        Some(Value::Object(sigs)) => match sigs.get(server) {
            None => return Ok((result, pending)),
            Some(Value::Object(entry)) => entry,
            Some(_) => return Err(malformed("a server's entry is not an object")),
        },
        Some(_) => return Err(malformed("not an object")),
    };
    for (key_id, sig) in entry.iter() {
        let outcome = match KeyId::parse(key_id) {
            Err(_) => KeyOutcome::Unsupported,
            Ok(id) => match lookup(&id) {
                KeyLookup::Unknown => KeyOutcome::UnknownKey,
                KeyLookup::NotValid => KeyOutcome::KeyNotValid,
                KeyLookup::Usable(key) => match sig.as_str().map(base64::decode_array::<64>) {
                    Some(Ok(sig)) => {
                        pending.push(PendingSignature {
                            index: result.keys.len(),
                            key,
                            sig,
                        });
                        KeyOutcome::Valid
                    }
                    _ => KeyOutcome::BadEncoding,
                },
            },
        };
        result.keys.push((key_id.to_owned(), outcome));
    }
    Ok((result, pending))
}

/// Checks every signature `server` put on `obj` over `signed` (the bytes that were signed),
/// asking `lookup` for each key.
///
/// # Errors
/// [`SignatureError::Malformed`] when `signatures` is not an object of objects of strings.
pub fn check_server_signatures(
    obj: &Object,
    signed: &[u8],
    server: &str,
    lookup: impl FnMut(&KeyId) -> KeyLookup,
) -> Result<ServerSignatures, SignatureError> {
    let (mut result, pending) = collect_server_signatures(obj, server, lookup)?;
    for p in pending {
        if !p.key.verify(signed, &p.sig) {
            result.keys[p.index].1 = KeyOutcome::Invalid;
        }
    }
    Ok(result)
}

/// Verifies `server_name`'s signature on `obj` with the given keys of that server.
///
/// # Errors
/// Any [`SignatureError`]: missing, invalid, badly encoded, or no key to check with.
///
/// ```
/// use std::collections::BTreeMap;
/// use mxfed_core::{canonical::Object, keys::SigningKey, signing::{sign_json, verify_json}};
/// let key = SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
/// let mut obj = Object::new();
/// obj.insert("one", mxfed_core::canonical::Int::new(1).unwrap());
/// sign_json(&mut obj, "domain", &key).unwrap();
/// let keys = BTreeMap::from([(key.key_id().clone(), key.verify_key())]);
/// assert_eq!(verify_json(&obj, "domain", &keys).unwrap(), vec![key.key_id().clone()]);
/// obj.insert("one", mxfed_core::canonical::Int::new(2).unwrap());
/// assert_eq!(verify_json(&obj, "domain", &keys).unwrap_err().code(), "signature_invalid");
/// ```
pub fn verify_json(
    obj: &Object,
    server_name: &str,
    keys: &BTreeMap<KeyId, VerifyKey>,
) -> Result<Vec<KeyId>, SignatureError> {
    let signed = signing_bytes(obj);
    check_server_signatures(obj, &signed, server_name, |id| match keys.get(id) {
        Some(k) => KeyLookup::Usable(*k),
        None => KeyLookup::Unknown,
    })?
    .verdict()
}
