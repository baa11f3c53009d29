//! Ed25519 signing and verify keys, key IDs, and Synapse's `signing.key` file format.

use std::fmt;

use crate::base64;

/// Why a key or key ID could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key ID that is not `algorithm:version` with a valid version (`[a-zA-Z0-9_]+`).
    #[error("invalid key ID {0:?}: expected `ed25519:<version>` with version of [a-zA-Z0-9_]")]
    BadKeyId(String),
    /// An algorithm other than ed25519, the only one Matrix defines.
    #[error("unsupported key algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// Key material that is not base64.
    #[error("key is not valid base64")]
    BadBase64,
    /// Key material of the wrong length (seeds and public keys are 32 bytes).
    #[error("key is {found} bytes, expected {expected}")]
    BadLength {
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        found: usize,
    },
    /// 32 bytes that are not a point on the curve.
    #[error("not a valid ed25519 public key")]
    BadPublicKey,
    /// A `signing.key` line that is not `ed25519 <version> <base64 seed>`.
    #[error("line {line} of the signing key file is not `ed25519 <version> <seed>`")]
    BadKeyFile {
        /// 1-based line number.
        line: usize,
    },
    /// A signing key file with no keys in it.
    #[error("the signing key file holds no keys")]
    EmptyKeyFile,
}

impl KeyError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::BadKeyId(_) => "bad_key_id",
            KeyError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            KeyError::BadBase64 => "bad_base64",
            KeyError::BadLength { .. } => "bad_key_length",
            KeyError::BadPublicKey => "bad_public_key",
            KeyError::BadKeyFile { .. } => "bad_key_file",
            KeyError::EmptyKeyFile => "empty_key_file",
        }
    }
}

fn b64_key(s: &str) -> Result<[u8; 32], KeyError> {
    base64::decode_array::<32>(s).map_err(|e| match e {
        base64::Base64Error::WrongLength { expected, found } => {
            KeyError::BadLength { expected, found }
        }
        _ => KeyError::BadBase64,
    })
}

/// An ed25519 key ID, `ed25519:<version>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId {
    full: String,
}

impl KeyId {
    /// An `ed25519:<version>` key ID.
    ///
    /// # Errors
    /// [`KeyError::BadKeyId`] when the version is empty or has characters outside `[a-zA-Z0-9_]`.
    pub fn ed25519(version: &str) -> Result<KeyId, KeyError> {
        if version.is_empty()
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(KeyError::BadKeyId(format!("ed25519:{version}")));
        }
        Ok(KeyId {
            full: format!("ed25519:{version}"),
        })
    }

    /// Parses `algorithm:version`.
    ///
    /// # Errors
    /// [`KeyError::BadKeyId`] for malformed IDs, [`KeyError::UnsupportedAlgorithm`] for any
    /// algorithm but ed25519.
    ///
    /// ```
    /// use mxfed_core::keys::KeyId;
    /// assert_eq!(KeyId::parse("ed25519:a_Abc1").unwrap().version(), "a_Abc1");
    /// assert_eq!(KeyId::parse("ed25519:").unwrap_err().code(), "bad_key_id");
    /// ```
    pub fn parse(s: &str) -> Result<KeyId, KeyError> {
        match s.split_once(':') {
            Some(("ed25519", v)) => KeyId::ed25519(v),
            Some((alg, _)) if !alg.is_empty() => Err(KeyError::UnsupportedAlgorithm(alg.into())),
            _ => Err(KeyError::BadKeyId(s.into())),
        }
    }

    /// The part after `ed25519:`.
    pub fn version(&self) -> &str {
        &self.full["ed25519:".len()..]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyKey(ed25519_dalek::VerifyingKey, KeyShape);

/// Whether a key lies in the prime-order subgroup (every honestly generated key does), decided
/// once when the key is loaded: for such keys the cheaper cofactorless check plus a test that
/// `R` is not the identity gives exactly libsodium's verdict.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KeyShape {
    PrimeOrder,
    /// Small order or with a torsion component: only strict verification is used.
    Other,
}

fn shape(key: &ed25519_dalek::VerifyingKey) -> KeyShape {
    let point = curve25519_dalek::edwards::CompressedEdwardsY(key.to_bytes()).decompress();
    match point {
        Some(p) if !p.is_small_order() && p.is_torsion_free() => KeyShape::PrimeOrder,
        _ => KeyShape::Other,
    }
}

/// The canonical encoding of the identity point: the one small-order `R` a cofactorless check
/// can accept for a prime-order key (libsodium rejects it).
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyKey({})", self.to_base64())
    }
}

impl VerifyKey {
    /// From the 32 raw bytes.
    ///
    /// # Errors
    /// [`KeyError::BadPublicKey`] when the bytes are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<VerifyKey, KeyError> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::BadPublicKey)?;
        Ok(VerifyKey(key, shape(&key)))
    }

    /// From unpadded base64, as published in key responses.
    ///
    /// # Errors
    /// [`KeyError::BadBase64`], [`KeyError::BadLength`] or [`KeyError::BadPublicKey`].
    pub fn from_base64(s: &str) -> Result<VerifyKey, KeyError> {
        VerifyKey::from_bytes(&b64_key(s)?)
    }

    /// Unpadded base64 of the key.
    pub fn to_base64(&self) -> String {
        base64::encode(self.0.as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Whether the key lies in the prime-order subgroup (decided when it was loaded): only such
    /// keys are batch-verified.
    pub(crate) fn prime_order(&self) -> bool {
        self.1 == KeyShape::PrimeOrder
    }

    /// Checks an ed25519 signature over `msg`, rejecting small-order keys and `R` points and
    /// non-canonical `S` the way libsodium (and so Synapse's PyNaCl) does.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(sig);
        match self.1 {
            // Cofactorless `verify` rejects non-canonical R and S and any small-order R but the
            // identity, for a prime-order key; the identity is excluded here.
            KeyShape::PrimeOrder => {
                use ed25519_dalek::Verifier as _;
                sig[..32] != IDENTITY && self.0.verify(msg, &signature).is_ok()
            }
            KeyShape::Other => self.0.verify_strict(msg, &signature).is_ok(),
        }
    }
}

/// An ed25519 signing key with its key ID. Signing is deterministic and needs no randomness.
#[derive(Clone)]
pub struct SigningKey {
    id: KeyId,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        write!(
            f,
            "SigningKey({}, {})",
            self.id,
            self.verify_key().to_base64()
        )
    }
}

const VERSION_ALPHABET: &[u8; 62] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

impl SigningKey {
    /// From a 32-byte seed and a key version.
    ///
    /// # Errors
    /// [`KeyError::BadKeyId`] when the version is not `[a-zA-Z0-9_]+`.
    pub fn from_seed(version: &str, seed: &[u8; 32]) -> Result<SigningKey, KeyError> {
        Ok(SigningKey {
            id: KeyId::ed25519(version)?,
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        })
    }

    /// From an unpadded base64 seed (decoded leniently, as Synapse does).
    ///
    /// # Errors
    /// As [`SigningKey::from_seed`], plus base64 and length errors.
    pub fn from_seed_base64(version: &str, seed: &str) -> Result<SigningKey, KeyError> {
        SigningKey::from_seed(version, &b64_key(seed)?)
    }

    /// A new key from caller-supplied entropy: 32 bytes of seed and 4 bytes that pick the
    /// version `a_` + four letters or digits, the shape Synapse generates.
    pub fn generate(entropy: &[u8; 36]) -> SigningKey {
        let mut version = String::from("a_");
        for b in &entropy[32..] {
            version.push(char::from(VERSION_ALPHABET[usize::from(*b) % 62]));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&entropy[..32]);
        SigningKey {
            id: KeyId {
                full: format!("ed25519:{version}"),
            },
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Reads Synapse's `signing.key` format: one `ed25519 <version> <base64 seed>` per line.
    /// Blank lines are skipped.
    ///
    /// # Errors
    /// [`KeyError::BadKeyFile`] naming the bad line, key errors for bad seeds, and
    /// [`KeyError::EmptyKeyFile`] when there is no key at all.
    ///
    /// ```
    /// use mxfed_core::keys::SigningKey;
    /// let keys = SigningKey::parse_synapse("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n").unwrap();
    /// assert_eq!(keys[0].verify_key().to_base64(), "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI");
    /// ```
    pub fn parse_synapse(text: &str) -> Result<Vec<SigningKey>, KeyError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let mut parts = line.split_whitespace();
            let (alg, version, seed) = match (parts.next(), parts.next(), parts.next()) {
                (None, _, _) => continue,
                (Some(a), Some(v), Some(s)) if parts.next().is_none() => (a, v, s),
                _ => return Err(KeyError::BadKeyFile { line: n + 1 }),
            };
            if alg != "ed25519" {
                return Err(KeyError::UnsupportedAlgorithm(alg.into()));
            }
            keys.push(SigningKey::from_seed_base64(version, seed)?);
        }
        if keys.is_empty() {
            return Err(KeyError::EmptyKeyFile);
        }
        Ok(keys)
    }

    /// The key as one `signing.key` line (with a trailing newline).
    pub fn to_synapse_line(&self) -> String {
        format!(
            "ed25519 {} {}\n",
            self.id.version(),
            base64::encode(self.key.to_bytes())
        )
    }

    /// The key ID, `ed25519:<version>`.
    pub fn key_id(&self) -> &KeyId {
        &self.id
    }

    /// The public half.
    pub fn verify_key(&self) -> VerifyKey {
        let key = self.key.verifying_key();
        VerifyKey(key, shape(&key))
    }

    /// The 64-byte ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(msg).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};

    /// The fast path gives strict verification's verdicts on the signatures where cofactorless
    /// and strict checks differ: an identity `R` forged by the key's owner, and a weak key.
    #[test]
    fn fast_verify_rejects_what_strict_rejects() {
        let sk = SigningKey::from_seed("1", &[9; 32]).unwrap();
        let vk = sk.verify_key();
        let msg = b"{\"a\":1}";
        // s = H(R || A || M) * a with R = identity satisfies the cofactorless equation.
        let a = sk.key.to_scalar();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(IDENTITY)
                .chain_update(vk.as_bytes())
                .chain_update(msg),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&IDENTITY);
        sig[32..].copy_from_slice((k * a).as_bytes());
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
        use ed25519_dalek::Verifier as _;
        assert!(
            vk.0.verify(msg, &dalek_sig).is_ok(),
            "cofactorless accepts it"
        );
        assert!(
            vk.0.verify_strict(msg, &dalek_sig).is_err(),
            "strict rejects it"
        );
        assert!(!vk.verify(msg, &sig));
        // An honest signature passes.
        assert!(vk.verify(msg, &sk.sign(msg)));
        // The identity as a public key, with the all-identity signature.
        let weak = VerifyKey::from_bytes(&IDENTITY).unwrap();
        let mut zero_sig = [0u8; 64];
        zero_sig[..32].copy_from_slice(&IDENTITY);
        assert!(weak
            .0
            .verify(msg, &ed25519_dalek::Signature::from_bytes(&zero_sig))
            .is_ok());
        assert!(!weak.verify(msg, &zero_sig));
    }
}
