//! The value type: what canonical JSON can hold, and nothing else.

use std::fmt;

/// The largest magnitude canonical JSON allows for an integer: 2^53 − 1.
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// An integer in canonical JSON's range, `[-(2^53 − 1), 2^53 − 1]`. It cannot be built outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Int(i64);

impl Int {
    /// Zero.
    pub const ZERO: Int = Int(0);

    /// The integer, if it is in canonical range.
    pub const fn new(v: i64) -> Option<Int> {
        if v >= -MAX_SAFE_INT && v <= MAX_SAFE_INT {
            Some(Int(v))
        } else {
            None
        }
    }

    /// The integer, saturated into canonical range (for depths and counters that must not overflow).
    pub const fn saturating(v: i64) -> Int {
        if v > MAX_SAFE_INT {
            Int(MAX_SAFE_INT)
        } else if v < -MAX_SAFE_INT {
            Int(-MAX_SAFE_INT)
        } else {
            Int(v)
        }
    }

    /// The value.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl From<u32> for Int {
    fn from(v: u32) -> Int {
        Int(i64::from(v))
    }
}

impl From<i32> for Int {
    fn from(v: i32) -> Int {
        Int(i64::from(v))
    }
}

/// A number from an event of room versions 1–5, which may hold floats and integers outside the
/// canonical range. Only [`NumberMode::Legacy`](crate::canonical::NumberMode) parsing makes one.
///
/// The text as received is kept, so the event can be forwarded unchanged. Its canonical form is
/// what Synapse hashes and signs: Python parses such a number into an `int` (arbitrary precision)
/// or a `float`, and `canonicaljson` writes it back with `repr` — which this type reproduces
/// without ever rounding an integer through `f64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyNumber {
    raw: Box<str>,
    canonical: Box<str>,
}

impl LegacyNumber {
    pub(crate) fn new(raw: &str, canonical: String) -> LegacyNumber {
        LegacyNumber {
            raw: raw.into(),
            canonical: canonical.into_boxed_str(),
        }
    }

    /// The number exactly as it appeared in the input.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The bytes Synapse's canonical JSON writes for it.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The value as an `f64`, for code that only needs an approximation (power-level comparisons).
    pub fn as_f64(&self) -> Option<f64> {
        self.raw.parse().ok()
    }
}

/// A JSON value that canonical JSON can encode.
///
/// Objects are always sorted by key in code-point order and have no duplicate keys; integers are
/// always in range. The only escape hatch is [`Value::Legacy`], which only the legacy parser makes,
/// for events of room versions 1–5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer in canonical range.
    Int(Int),
    /// A number outside canonical JSON (float or big integer) from a room version 1–5 event.
    Legacy(LegacyNumber),
    /// A string (always valid Unicode: lone surrogates are rejected when parsing).
    String(String),
    /// An array, in order.
    Array(Vec<Value>),
    /// An object, sorted by key.
    Object(Object),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a canonical one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i.get()),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The object, mutably, if this is one.
    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short name of the JSON type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Legacy(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Whether this value (recursively) holds only canonical-JSON content (no legacy numbers).
    pub fn is_strict(&self) -> bool {
        match self {
            Value::Legacy(_) => false,
            Value::Array(a) => a.iter().all(Value::is_strict),
            Value::Object(o) => o.values().all(Value::is_strict),
            _ => true,
        }
    }

    /// Whether objects and arrays nest more than `limit` levels deep (this value, when it is
    /// one, is level 1): whether [`parse`](crate::canonical::parse) with that `max_depth` would
    /// refuse its JSON. Looks no deeper than `limit + 1` levels, and does not recurse.
    ///
    /// ```
    /// use mxfed_core::canonical::{parse, ParseOptions};
    /// let v = parse(br#"{"a":[[1]]}"#, &ParseOptions::STRICT).unwrap();
    /// assert!(!v.nests_deeper_than(3) && v.nests_deeper_than(2));
    /// ```
    pub fn nests_deeper_than(&self, limit: usize) -> bool {
        let container = |v: &&Value| matches!(v, Value::Object(_) | Value::Array(_));
        let mut open: Vec<(&Value, usize)> = vec![(self, 1)];
        while let Some((v, level)) = open.pop() {
            match v {
                Value::Object(_) | Value::Array(_) if level > limit => return true,
                Value::Object(o) => {
                    open.extend(o.values().filter(container).map(|m| (m, level + 1)))
                }
                Value::Array(a) => open.extend(a.iter().filter(container).map(|m| (m, level + 1))),
                _ => {}
            }
        }
        false
    }

    /// The canonical JSON text of this value.
    pub fn to_canonical_string(&self) -> String {
        let mut out = Vec::with_capacity(64);
        crate::canonical::encode_into(self, &mut out);
        // The encoder writes only valid UTF-8: strings are valid by construction.
        String::from_utf8(out).unwrap_or_default()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Int> for Value {
    fn from(i: Int) -> Value {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Value {
        Value::Object(o)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

/// A JSON object kept sorted by key (code-point order, which is UTF-8 byte order).
///
/// A sorted vector rather than a map: events have a dozen keys, so binary search beats hashing,
/// encoding is a straight walk, and iteration order is deterministic by construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    entries: Vec<(String, Value)>,
}

/// Objects of at most this many keys are scanned by [`Object::find`] rather than searched.
const SCAN_MAX: usize = 16;

/// Byte order of two keys (the order `str::cmp` gives), deciding on the first byte inline: keys
/// are short and mostly differ there, and `str::cmp` calls `memcmp` for every comparison (in a
/// server's profile, lookups in events spent more time in `memcmp` calls than in the search).
#[inline]
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

impl Object {
    /// An empty object.
    pub const fn new() -> Object {
        Object {
            entries: Vec::new(),
        }
    }

    /// Builds an object from entries already sorted by key with no duplicates.
    /// Returns the first duplicated key otherwise, after sorting.
    pub(crate) fn from_unsorted(mut entries: Vec<(String, Value)>) -> Result<Object, String> {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(w[0].0.clone());
            }
        }
        Ok(Object { entries })
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| key_order(k, key))
    }

    /// Where `key` is, for a lookup. A small object (an event's top level, its `content`, a
    /// hash or signature map) is scanned for an equal key: a key's length is in the entry itself,
    /// so keys of another length are passed over without reading their bytes, where each step
    /// of the binary search read the bytes of a key (a cache miss on an event not touched for a
    /// while) to order it. Large objects (a power-levels `users` map) are searched.
    fn find(&self, key: &str) -> Option<usize> {
        if self.entries.len() <= SCAN_MAX {
            self.entries.iter().position(|(k, _)| k == key)
        } else {
            self.position(key).ok()
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).map(|i| &self.entries[i].1)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.find(key).map(|i| &mut self.entries[i].1)
    }

    /// The string under `key`, if there is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The object under `key`, if there is one.
    pub fn get_object(&self, key: &str) -> Option<&Object> {
        self.get(key).and_then(Value::as_object)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value.into())),
            Err(i) => {
                self.entries.insert(i, (key, value.into()));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.position(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The object under `key`, inserting an empty one if the key is absent. Returns `None` when
    /// the key holds something that is not an object (the caller decides whether that is an error).
    pub fn object_entry(&mut self, key: &str) -> Option<&mut Object> {
        let i = match self.position(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries
                    .insert(i, (key.to_owned(), Value::Object(Object::new())));
                i
            }
        };
        self.entries[i].1.as_object_mut()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Values in key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Keeps only the entries for which `f` is true.
    pub fn retain(&mut self, mut f: impl FnMut(&str, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| f(k, v))
    }

    /// The canonical JSON text of this object.
    pub fn to_canonical_string(&self) -> String {
        let mut out = Vec::with_capacity(256);
        crate::canonical::encode_object_into(self, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl FromIterator<(String, Value)> for Object {
    /// Later duplicates replace earlier ones, like `serde_json::Map`.
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Object {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        fn pair(e: &(String, Value)) -> (&str, &Value) {
            (e.0.as_str(), &e.1)
        }
        self.entries.iter().map(pair)
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{key_order, Object, Value, SCAN_MAX};

    #[test]
    fn key_order_is_str_order() {
        let keys = [
            "",
            "a",
            "b",
            "ab",
            "aa",
            "origin",
            "origin_server_ts",
            "sender",
            "signatures",
            "state_key",
            "é",
            "e\u{301}",
            "\u{10000}",
            "\u{ffff}",
            "Z",
            "_",
            "0",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(key_order(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    /// Lookups give the same answers in objects scanned and objects searched (sizes on both
    /// sides of [`SCAN_MAX`]), for present keys, absent keys of the same length, prefixes and
    /// extensions of present keys.
    #[test]
    fn lookups_agree_with_a_map_at_every_size() {
        let pool: Vec<String> = (0..3 * SCAN_MAX)
            .map(|i| match i % 4 {
                0 => format!("k{i}"),
                1 => format!("key_{i:03}"),
                2 => format!("origin{}", "_x".repeat(i % 5)),
                _ => format!("{}", char::from(b'a' + (i % 26) as u8)),
            })
            .collect();
        for n in 0..pool.len() {
            let mut obj = Object::new();
            let mut model = std::collections::BTreeMap::new();
            for (i, k) in pool.iter().take(n).enumerate() {
                let v = Value::from(format!("v{i}"));
                obj.insert(k.as_str(), v.clone());
                model.insert(k.clone(), v);
            }
            let probes = pool
                .iter()
                .flat_map(|k| [k.clone(), format!("{k}_"), k[..k.len() - 1].to_owned()])
                .chain(["".to_owned(), "zz".to_owned()]);
            for probe in probes {
                assert_eq!(obj.get(&probe), model.get(&probe), "{n} keys, {probe:?}");
                assert_eq!(obj.contains_key(&probe), model.contains_key(&probe));
                let mut copy = obj.clone();
                if let Some(v) = copy.get_mut(&probe) {
                    *v = Value::Bool(true);
                }
                assert_eq!(
                    copy.get(&probe).is_some_and(|v| *v == Value::Bool(true)),
                    model.contains_key(&probe)
                );
            }
        }
    }
}
