//! The canonical JSON encoder: shortest UTF-8, keys in code-point order, integers only.

use super::value::{Object, Value};

/// Appends the canonical JSON of `v` to `out`. Reuse `out` across calls to avoid allocating.
///
/// ```
/// use mxfed_core::canonical::{encode_into, parse, ParseOptions};
/// let v = parse("{\"b\":[\"\\u0001\", \"😀\"],\"a\":null}".as_bytes(), &ParseOptions::STRICT).unwrap();
/// let mut buf = Vec::new();
/// encode_into(&v, &mut buf);
/// assert_eq!(buf, "{\"a\":null,\"b\":[\"\\u0001\",\"😀\"]}".as_bytes());
/// ```
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_int(i.get(), out),
        Value::Legacy(n) => out.extend_from_slice(n.canonical().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_into(item, out);
            }
            out.push(b']');
        }
        Value::Object(o) => encode_object_into(o, out),
    }
}

/// Appends the canonical JSON of an object to `out`.
pub fn encode_object_into(o: &Object, out: &mut Vec<u8>) {
    encode_object_filtered(o, |_| true, out)
}

/// Appends the canonical JSON of `o` keeping only the top-level keys for which `keep` is true.
///
/// This is how signing and hashing strip `signatures`, `unsigned` and `hashes` without cloning.
pub fn encode_object_filtered(o: &Object, mut keep: impl FnMut(&str) -> bool, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (k, v) in o.iter() {
        if !keep(k) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(k, out);
        out.push(b':');
        encode_into(v, out);
    }
    out.push(b'}');
}

/// The canonical JSON bytes of `v`.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_into(v, &mut out);
    out
}

fn write_int(mut n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
        n = -n;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One high bit per byte of `w` (eight bytes, little-endian) that is `"`, `\` or a C0 control:
/// the bytes canonical JSON escapes. Checks eight bytes per step (SWAR) so clean runs are
/// copied in one go. The lowest set bit marks the first such byte exactly; bits above it may be
/// spurious (a borrow carries upwards).
#[inline]
pub(crate) fn special_mask(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    // Bytes below 0x20 (only for bytes < 0x80: a high bit set means a UTF-8 byte, never escaped).
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    let quote = has_zero(w ^ (LO * u64::from(b'"')));
    let backslash = has_zero(w ^ (LO * u64::from(b'\\')));
    control | quote | backslash
}

/// Whether any byte of `w` is one canonical JSON escapes (see [`special_mask`]).
#[inline]
pub(crate) fn needs_escape(w: u64) -> bool {
    special_mask(w) != 0
}

/// Offset of the first byte at or after `from` that canonical JSON escapes, or `bytes.len()`.
#[inline]
pub(crate) fn scan_clean(bytes: &[u8], mut i: usize) -> usize {
    while i + 8 <= bytes.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        if needs_escape(u64::from_le_bytes(w)) {
            break;
        }
        i += 8;
    }
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x20 || b == b'"' || b == b'\\' {
            return i;
        }
        i += 1;
    }
    i
}

/// Writes a JSON string: escapes only `"`, `\` and C0 controls; everything else is raw UTF-8.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    loop {
        let i = scan_clean(bytes, run);
        out.extend_from_slice(&bytes[run..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        run = i + 1;
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_scan_agrees_with_bytewise() {
        let mut all: Vec<u8> = (0u8..=255).collect();
        all.extend_from_slice("plain ascii then é and 😀 and \"q\" and \\".as_bytes());
        for start in 0..all.len() {
            for end in start..all.len().min(start + 40) {
                let slice = &all[start..end];
                let want = slice
                    .iter()
                    .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
                    .unwrap_or(slice.len());
                assert_eq!(scan_clean(slice, 0), want, "{slice:?}");
            }
        }
    }
}
