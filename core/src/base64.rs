//! Unpadded base64 as Matrix uses it ([spec appendix § Unpadded Base64]).
//!
//! Encoding is exact: standard alphabet for signatures, keys and hashes, URL-safe for event IDs
//! from room version 4. Decoding is lenient the way Synapse's `unpaddedbase64` is: padding is
//! optional, either alphabet is accepted, and non-zero trailing bits are ignored (the spec's own
//! test seed has them). Characters outside both alphabets, or mixing the two alphabets in one
//! value, are errors — Python silently discards such characters, which hides corruption.
//!
//! [spec appendix § Unpadded Base64]: https://spec.matrix.org/latest/appendices/#unpadded-base64

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

const ENCODE: GeneralPurposeConfig = GeneralPurposeConfig::new().with_encode_padding(false);
const DECODE: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);

const STD_ENCODER: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ENCODE);
const URL_ENCODER: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ENCODE);
const STD_DECODER: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, DECODE);
const URL_DECODER: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, DECODE);

/// Why a base64 value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64Error {
    /// A character outside both base64 alphabets, misplaced padding, or a length that no
    /// encoding produces (4n+1 characters).
    #[error("invalid base64")]
    Invalid,
    /// The value mixes the standard (`+/`) and URL-safe (`-_`) alphabets.
    #[error("base64 mixes the standard and URL-safe alphabets")]
    MixedAlphabets,
    /// The value decodes, but not to the number of bytes the caller needs.
    #[error("base64 value decodes to {found} bytes, expected {expected}")]
    WrongLength {
        /// Bytes the caller needs (32 for keys and hashes, 64 for signatures).
        expected: usize,
        /// Bytes the value decoded to.
        found: usize,
    },
}

impl Base64Error {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            Base64Error::Invalid | Base64Error::MixedAlphabets => "bad_base64",
            Base64Error::WrongLength { .. } => "bad_length",
        }
    }
}

/// Unpadded standard base64 (`+/`), as used for signatures, keys and hashes.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STD_ENCODER.encode(bytes)
}

/// Unpadded URL-safe base64 (`-_`), as used for event IDs from room version 4.
pub fn encode_url_safe(bytes: impl AsRef<[u8]>) -> String {
    URL_ENCODER.encode(bytes)
}

/// Appends unpadded standard base64 to `out` without allocating a new string.
pub fn encode_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    STD_ENCODER.encode_string(bytes, out)
}

fn decoder_for(s: &str) -> Result<&'static GeneralPurpose, Base64Error> {
    let url = s.bytes().any(|b| b == b'-' || b == b'_');
    let std = s.bytes().any(|b| b == b'+' || b == b'/');
    match (std, url) {
        (true, true) => Err(Base64Error::MixedAlphabets),
        (false, true) => Ok(&URL_DECODER),
        _ => Ok(&STD_DECODER),
    }
}

/// Decodes padded or unpadded base64 in either alphabet.
///
/// # Errors
/// [`Base64Error::Invalid`] or [`Base64Error::MixedAlphabets`].
///
/// ```
/// assert_eq!(mxfed_core::base64::decode("Zm9vYg").unwrap(), b"foob");
/// assert_eq!(mxfed_core::base64::decode("Zm9vYg==").unwrap(), b"foob");
/// ```
pub fn decode(s: &str) -> Result<Vec<u8>, Base64Error> {
    decoder_for(s)?.decode(s).map_err(|_| Base64Error::Invalid)
}

/// Decodes into exactly `N` bytes, without allocating.
///
/// # Errors
/// As [`decode`], plus [`Base64Error::WrongLength`] when the value is not `N` bytes long.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], Base64Error> {
    let engine = decoder_for(s)?;
    // Room for any value up to 96 bytes plus the decoder's conservative estimate.
    let mut buf = [0u8; 100];
    let trimmed = s.trim_end_matches('=');
    let estimate = trimmed.len() / 4 * 3 + 3;
    if estimate > buf.len() {
        let all = engine.decode(s).map_err(|_| Base64Error::Invalid)?;
        return Err(Base64Error::WrongLength {
            expected: N,
            found: all.len(),
        });
    }
    let n = engine
        .decode_slice(s, &mut buf)
        .map_err(|_| Base64Error::Invalid)?;
    if n != N {
        return Err(Base64Error::WrongLength {
            expected: N,
            found: n,
        });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[..N]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn lenient_trailing_bits_and_padding() {
        // The spec's test seed ends in a character with non-zero trailing bits.
        let seed: [u8; 32] = decode_array("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
        assert_eq!(seed[0], 0x60);
        assert_eq!(decode("Zm8=").unwrap(), b"fo");
        assert_eq!(decode("-_8").unwrap(), decode("+/8").unwrap());
    }

    #[test]
    fn rejects() {
        assert_eq!(decode("Zm9v!"), Err(Base64Error::Invalid));
        assert_eq!(decode("Z"), Err(Base64Error::Invalid));
        assert_eq!(decode("+-"), Err(Base64Error::MixedAlphabets));
        assert_eq!(
            decode_array::<32>("Zm9v"),
            Err(Base64Error::WrongLength {
                expected: 32,
                found: 3
            })
        );
    }
}
