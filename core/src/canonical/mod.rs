//! Canonical JSON ([spec appendix § Canonical JSON]): a value type that can only hold what
//! canonical JSON allows, a strict parser from bytes, and a byte-exact encoder.
//!
//! The encoder's output equals Python's `canonicaljson.encode_canonical_json` for every input
//! both accept. Where the two differ the spec decides: `1e10` is written `10000000000` (Python
//! writes `10000000000.0`) when parsing in [`NumberMode::Normalize`].
//!
//! [spec appendix § Canonical JSON]: https://spec.matrix.org/latest/appendices/#canonical-json

mod check;
mod encode;
mod error;
mod parse;
mod value;

pub use check::is_canonical;
pub(crate) use check::is_canonical_parsed;
pub(crate) use encode::write_str;
pub use encode::{encode_into, encode_object_filtered, encode_object_into, to_vec};
pub use error::{CanonicalJsonError, CanonicalJsonErrorKind, JsonPath, PathSegment};
pub use parse::{
    parse, parse_object, NumberMode, ParseOptions, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH,
};
pub use value::{Int, LegacyNumber, Object, Value, MAX_SAFE_INT};

/// Parses JSON with [`NumberMode::Normalize`] and returns its canonical bytes: what
/// `mxfed canonical` prints.
///
/// # Errors
/// Any [`CanonicalJsonError`].
///
/// ```
/// assert_eq!(
///     mxfed_core::canonical::canonicalize(br#"{"a": -0, "b": 1e10}"#).unwrap(),
///     br#"{"a":0,"b":10000000000}"#
/// );
/// ```
pub fn canonicalize(input: &[u8]) -> Result<Vec<u8>, CanonicalJsonError> {
    let v = parse(input, &ParseOptions::NORMALIZE)?;
    let mut out = Vec::with_capacity(input.len());
    encode_into(&v, &mut out);
    Ok(out)
}
