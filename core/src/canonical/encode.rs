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

/// Writes a JSON string: escapes only `"`, `\` and C0 controls; everything else is raw UTF-8.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0..=0x1f => {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(esc);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}
