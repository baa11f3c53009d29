//! Errors from parsing JSON into canonical values.

use std::fmt;

/// One step in a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Where in a document an error is, as a JSON Pointer (RFC 6901), e.g. `/content/body`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(pub Vec<PathSegment>);

impl JsonPath {
    /// The document root.
    pub const fn root() -> JsonPath {
        JsonPath(Vec::new())
    }

    /// Prepends a segment (paths are built while unwinding out of the parser).
    pub(crate) fn prepend(&mut self, seg: PathSegment) {
        self.0.insert(0, seg);
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for seg in &self.0 {
            match seg {
                PathSegment::Key(k) => {
                    f.write_str("/")?;
                    // Untrusted keys must not break a one-line message: escape controls.
                    for c in k.chars() {
                        match c {
                            '~' => f.write_str("~0")?,
                            '/' => f.write_str("~1")?,
                            c if c.is_control() => write!(f, "{}", c.escape_unicode())?,
                            c => write!(f, "{c}")?,
                        }
                    }
                }
                PathSegment::Index(i) => write!(f, "/{i}")?,
            }
        }
        Ok(())
    }
}

/// What was wrong with a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonicalJsonErrorKind {
    /// Not JSON at all at this point; `expected` says what the grammar wanted.
    Syntax {
        /// What the parser expected to find.
        expected: &'static str,
    },
    /// Bytes after the end of the top-level value.
    TrailingData,
    /// A string holds bytes that are not UTF-8.
    InvalidUtf8,
    /// A `\uD800`–`\uDFFF` escape without its partner: not a Unicode scalar value.
    LoneSurrogate,
    /// The same key twice in one object. Parsers disagree on which wins, so the bytes cannot be
    /// trusted to hash the same on every server.
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A number with a fraction or exponent where only integers are allowed (room versions 6+).
    Float {
        /// The number as written.
        text: String,
    },
    /// A number that is not an integer (`1.5`, `1e-3`).
    NotInteger {
        /// The number as written.
        text: String,
    },
    /// An integer outside ±(2^53 − 1).
    IntegerOutOfRange {
        /// The number as written.
        text: String,
    },
    /// `NaN`, `Infinity`, or a number too large for any float.
    NonFinite {
        /// The token as written.
        text: String,
    },
    /// Nested deeper than the limit.
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// Longer than the size limit.
    TooLarge {
        /// The input length in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// More values than the limit.
    TooManyValues {
        /// The limit.
        limit: usize,
    },
}

/// A JSON document that cannot be held as canonical JSON, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} at {path} (byte {offset})", self.describe())]
pub struct CanonicalJsonError {
    /// What was wrong.
    pub kind: CanonicalJsonErrorKind,
    /// Where in the document.
    pub path: JsonPath,
    /// Byte offset into the input.
    pub offset: usize,
}

impl CanonicalJsonError {
    pub(crate) fn new(kind: CanonicalJsonErrorKind, offset: usize) -> CanonicalJsonError {
        CanonicalJsonError {
            kind,
            path: JsonPath::root(),
            offset,
        }
    }

    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        use CanonicalJsonErrorKind::*;
        match self.kind {
            Syntax { .. } => "json_syntax",
            TrailingData => "json_trailing_data",
            InvalidUtf8 => "json_invalid_utf8",
            LoneSurrogate => "json_lone_surrogate",
            DuplicateKey { .. } => "json_duplicate_key",
            Float { .. } => "json_float",
            NotInteger { .. } => "json_not_integer",
            IntegerOutOfRange { .. } => "json_integer_out_of_range",
            NonFinite { .. } => "json_non_finite",
            TooDeep { .. } => "json_too_deep",
            TooLarge { .. } => "json_too_large",
            TooManyValues { .. } => "json_too_many_values",
        }
    }

    fn describe(&self) -> String {
        use CanonicalJsonErrorKind::*;
        // Numbers can be megabytes long; messages quote the start only.
        let short = |t: &str| -> String {
            if t.len() > 40 {
                format!("{}…", &t[..40])
            } else {
                t.to_owned()
            }
        };
        match &self.kind {
            Syntax { expected } => format!("invalid JSON: expected {expected}"),
            TrailingData => "invalid JSON: data after the value".into(),
            InvalidUtf8 => "string is not valid UTF-8".into(),
            LoneSurrogate => "string holds a lone surrogate escape".into(),
            DuplicateKey { key } => format!("duplicate key {key:?}"),
            Float { text } => format!("float {} not allowed in canonical JSON", short(text)),
            NotInteger { text } => format!("number {} is not an integer", short(text)),
            IntegerOutOfRange { text } => {
                format!("integer {} outside canonical range ±(2^53-1)", short(text))
            }
            NonFinite { text } => format!("non-finite number {}", short(text)),
            TooDeep { limit } => format!("nested deeper than {limit} levels"),
            TooLarge { size, limit } => format!("{size} bytes is over the {limit}-byte limit"),
            TooManyValues { limit } => format!("more than {limit} values"),
        }
    }
}
