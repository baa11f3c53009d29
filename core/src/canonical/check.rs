//! Whether bytes already are canonical JSON, checked in one pass without building a value.
//!
//! Hosts receive most JSON from senders that canonicalise before sending (Synapse signs and
//! sends request bodies with `encode_canonical_json`), so a check that says "these exact bytes
//! are what the encoder would write" lets them use the bytes as received instead of encoding
//! the parsed value again.

use std::cmp::Ordering;

use super::encode::special_mask;
use super::parse::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH};
use super::value::MAX_SAFE_INT;

/// Whether `bytes` are exactly the canonical JSON of the value they parse to, under the rules
/// of [`xmatrix::parse_body`](crate::xmatrix::parse_body) (legacy numbers, default limits).
///
/// `true` means `encode(parse(bytes)) == bytes`. `false` means they differ, the bytes do not
/// parse, or they hold a number canonical JSON cannot (a float or an integer outside
/// ±(2^53 − 1), which only room versions 1–5 allow): such bytes may happen to round-trip, but
/// the check does not try to reproduce Python's float formatting, so callers fall back to
/// encoding. It never allocates.
///
/// ```
/// use mxfed_core::canonical::is_canonical;
/// assert!(is_canonical(br#"{"a":[1,"\n",null],"b":{}}"#));
/// assert!(!is_canonical(br#"{"b":1,"a":2}"#)); // keys out of order
/// assert!(!is_canonical(br#"{"a": 1}"#)); // whitespace
/// assert!(!is_canonical(br#"{"a":"\u00E9"}"#)); // é is written raw
/// assert!(!is_canonical(br#"{"a":1.5}"#)); // not an integer
/// ```
pub fn is_canonical(bytes: &[u8]) -> bool {
    check::<true>(bytes)
}

/// [`is_canonical`] for bytes that [`parse`](super::parse) has accepted already, so they are known
/// to be valid UTF-8 and their strings are not validated again (a third of the work on bodies
/// with non-ASCII text). On bytes that do not parse its answer means nothing.
pub(crate) fn is_canonical_parsed(bytes: &[u8]) -> bool {
    check::<false>(bytes)
}

fn check<const VALIDATE_UTF8: bool>(bytes: &[u8]) -> bool {
    if bytes.len() > DEFAULT_MAX_BYTES {
        return false;
    }
    let mut c = Checker::<VALIDATE_UTF8> { b: bytes, pos: 0 };
    c.value(0) && c.pos == bytes.len()
}

/// A string's contents (between the quotes), as offsets into the input.
#[derive(Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    /// Whether it holds an escape: only then does its order differ from its bytes' order.
    escaped: bool,
}

/// The checker; `VALIDATE_UTF8` is false when the input is known to be valid UTF-8.
struct Checker<'a, const VALIDATE_UTF8: bool> {
    b: &'a [u8],
    pos: usize,
}

impl<const VALIDATE_UTF8: bool> Checker<'_, VALIDATE_UTF8> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Checks the value at `pos` (nested inside `depth` containers) and moves past it.
    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let ok = self.b[self.pos..].starts_with(word);
        self.pos += word.len();
        ok
    }

    fn object(&mut self, depth: usize) -> bool {
        // The parser's limit: deeper input does not parse at all.
        if depth > DEFAULT_MAX_DEPTH {
            return false;
        }
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return true;
        }
        let mut prev: Option<Str> = None;
        loop {
            if self.peek() != Some(b'"') {
                return false;
            }
            let Some(key) = self.string() else {
                return false;
            };
            // Strictly increasing: sorted, and no duplicates.
            if prev.is_some_and(|p| cmp_decoded(self.b, p, key) != Ordering::Less) {
                return false;
            }
            prev = Some(key);
            if self.peek() != Some(b':') {
                return false;
            }
            self.pos += 1;
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        if depth > DEFAULT_MAX_DEPTH {
            return false;
        }
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// A string written exactly as the encoder writes it: raw valid UTF-8 except `"`, `\` and
    /// C0 controls, which take the encoder's escape.
    fn string(&mut self) -> Option<Str> {
        let b = self.b;
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        // The OR of the raw bytes: UTF-8 is validated only when a byte has its high bit set,
        // so ASCII strings (almost all of them) cost nothing more than the scan.
        let mut high = 0u64;
        loop {
            // Skip the run of raw bytes, eight at a time.
            while let Some(chunk) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
                let m = special_mask(w);
                if m == 0 {
                    high |= w;
                    i += 8;
                    continue;
                }
                // The lowest flagged byte is exact (borrows only run upwards from it).
                let k = (m.trailing_zeros() / 8) as usize;
                high |= w & ((1u64 << (8 * k)) - 1);
                i += k;
                break;
            }
            while let Some(&c) = b.get(i) {
                if c < 0x20 || c == b'"' || c == b'\\' {
                    break;
                }
                high |= u64::from(c);
                i += 1;
            }
            match *b.get(i)? {
                b'"' => break,
                b'\\' => {
                    i += escape_len(&b[i + 1..])?;
                    escaped = true;
                }
                // A raw control character: the encoder escapes it (and the parser refuses it).
                _ => return None,
            }
        }
        if VALIDATE_UTF8
            && high & 0x8080_8080_8080_8080 != 0
            && std::str::from_utf8(&b[start..i]).is_err()
        {
            return None;
        }
        self.pos = i + 1;
        Some(Str {
            start,
            end: i,
            escaped,
        })
    }

    /// An integer as the encoder writes it: no sign but `-`, no leading zero, no `-0`, in
    /// range, no fraction or exponent.
    fn number(&mut self) -> bool {
        let b = self.b;
        let mut i = self.pos;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let start = i;
        let mut v: i64 = 0;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            // 2^53 − 1 has 16 digits; a 17th means out of range (a legacy number).
            if i - start == 16 {
                return false;
            }
            v = v * 10 + i64::from(d - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (b[start] == b'0' && (digits > 1 || negative)) || v > MAX_SAFE_INT {
            return false;
        }
        // A fraction or exponent is a float: legacy, or not canonical.
        if let Some(b'.' | b'e' | b'E') = b.get(i) {
            return false;
        }
        self.pos = i;
        true
    }
}

/// The length of a canonical escape whose backslash precedes `rest`: the short forms the
/// encoder uses, and `\u00xx` (lowercase) only for the other C0 controls.
fn escape_len(rest: &[u8]) -> Option<usize> {
    match *rest.first()? {
        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => Some(2),
        b'u' => match rest.get(1..5)? {
            [b'0', b'0', hi @ (b'0' | b'1'), lo] => {
                let v = (hi - b'0') << 4 | lower_hex(*lo)?;
                // These five have short forms.
                (!matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)).then_some(6)
            }
            _ => None,
        },
        _ => None,
    }
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Compares two checked strings by their decoded UTF-8 bytes (code-point order, the encoder's
/// key order).
fn cmp_decoded(b: &[u8], x: Str, y: Str) -> Ordering {
    let (xs, ys) = (&b[x.start..x.end], &b[y.start..y.end]);
    if !x.escaped && !y.escaped {
        return xs.cmp(ys);
    }
    Decoded(xs).cmp(Decoded(ys))
}

/// The bytes a checked string stands for (its escapes are canonical, so each decodes to one byte).
struct Decoded<'a>(&'a [u8]);

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&c, rest) = self.0.split_first()?;
        if c != b'\\' {
            self.0 = rest;
            return Some(c);
        }
        let (byte, len) = match rest.first()? {
            b'b' => (0x08, 2),
            b't' => (0x09, 2),
            b'n' => (0x0a, 2),
            b'f' => (0x0c, 2),
            b'r' => (0x0d, 2),
            b'u' => {
                let hi = rest.get(3).and_then(|&h| lower_hex(h))?;
                let lo = rest.get(4).and_then(|&h| lower_hex(h))?;
                (hi << 4 | lo, 6)
            }
            &other => (other, 2),
        };
        self.0 = self.0.get(len..)?;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{encode_into, parse, ParseOptions};

    /// The reference: parse as X-Matrix bodies are parsed, encode, compare.
    fn round_trips(b: &[u8]) -> bool {
        parse(b, &ParseOptions::LEGACY).is_ok_and(|v| {
            let mut out = Vec::new();
            encode_into(&v, &mut out);
            out == b
        })
    }

    #[test]
    fn rules() {
        let yes: &[&str] = &[
            "{}",
            "[]",
            "0",
            "-1",
            "9007199254740991",
            "-9007199254740991",
            "true",
            "false",
            "null",
            r#""""#,
            r#"{"a":{"b":[1,2,{"c":null}]},"b":true}"#,
            r#"{"":1,"B":2,"a":3,"｡":4,"😀":5}"#,
            r#"["\"\\\b\f\n\r\t\u0000\u0001\u000b\u001f"]"#,
            "[\"\u{7f}\u{2028}/é日本語😀\"]",
            r#"{"\n":1,"A":2}"#,
            r#"{"a":1,"a\u0000":2,"a\n":3,"a\"":4}"#,
            r#"["0123456789abcdefghijklmnopqrstuvwxyz with \"quotes\" inside a long run"]"#,
        ];
        for s in yes {
            assert!(is_canonical(s.as_bytes()), "{s}");
            assert!(round_trips(s.as_bytes()), "{s}");
        }
        let no: &[&[u8]] = &[
            b"",
            b" {}",
            b"{} ",
            b"{ }",
            b"[1, 2]",
            b"{\"a\" :1}",
            b"{\"a\":\n1}",
            br#"{"b":1,"a":2}"#,
            br#"{"a":1,"a":2}"#,
            br#"{"A":2,"\n":1}"#,
            br#"{"a\"":1,"a\n":2}"#,
            br#"["\/"]"#,
            br#"["\u000A"]"#,
            br#"["\u000a"]"#,
            br#"["\u0001\u001F"]"#,
            br#"["\u0020"]"#,
            br#"["\u00e9"]"#,
            br#"["\ud83d\ude00"]"#,
            br#"["\ud800"]"#,
            br#"["\x"]"#,
            b"[\"\x01\"]",
            b"[\"\n\"]",
            b"[\"\xff\"]",
            b"[\"\xed\xa0\x80\"]",
            b"[\"\xc3\"]",
            b"[\"abc",
            b"01",
            b"-0",
            b"+1",
            b"1.0",
            b"1.5",
            b"1e10",
            b"1E2",
            b"-",
            b"9007199254740992",
            b"-9007199254740992",
            b"12345678901234567890",
            b"True",
            b"nul",
            b"NaN",
            b"[1,]",
            b"{\"a\":1,}",
            b"[1}",
            b"{}{}",
            b"{\"a\"}",
            b"\xef\xbb\xbf{}",
        ];
        for s in no {
            assert!(!is_canonical(s), "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn depth_limit_is_the_parsers() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let ok = nest(DEFAULT_MAX_DEPTH);
        assert!(is_canonical(ok.as_bytes()) && round_trips(ok.as_bytes()));
        let deep = nest(DEFAULT_MAX_DEPTH + 1);
        assert!(!is_canonical(deep.as_bytes()) && !round_trips(deep.as_bytes()));
    }

    #[test]
    fn every_short_string_agrees_with_the_encoder() {
        // Every one- and two-character escape or byte pair a string can hold.
        let pieces: Vec<Vec<u8>> = (0u8..0x80)
            .map(|c| vec![c])
            .chain(
                [
                    "\\\"", "\\\\", "\\/", "\\b", "\\t", "\\n", "\\f", "\\r", "\\u0008", "\\u001f",
                    "\\u001F", "\\u007f", "é", "\u{2028}",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec()),
            )
            .collect();
        for a in &pieces {
            for b in &pieces {
                let mut s = b"[\"".to_vec();
                s.extend_from_slice(a);
                s.extend_from_slice(b);
                s.extend_from_slice(b"\"]");
                assert_eq!(
                    is_canonical(&s),
                    round_trips(&s),
                    "{}",
                    String::from_utf8_lossy(&s)
                );
            }
        }
    }
}
