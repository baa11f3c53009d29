//! Request authentication: the `Authorization: X-Matrix` header ([spec § Request
//! Authentication], DIGEST §13).
//!
//! The signed object is `{"method","uri","origin","destination","content"?}` — `uri` exactly as
//! on the request line (path and query, percent-encoding untouched), `content` only when the
//! request has a body. Headers are parsed leniently, the way real servers send them; verification
//! fails with a distinct code per cause, and [`XMatrixError::errcode`] gives the Matrix error the
//! server answers with.
//!
//! [spec § Request Authentication]: https://spec.matrix.org/latest/server-server-api/#request-authentication

use std::borrow::Cow;

use crate::base64;
use crate::canonical::{
    is_canonical, is_canonical_parsed, parse, write_str, CanonicalJsonError,
    CanonicalJsonErrorKind, NumberMode, Object, ParseOptions, Value,
};
use crate::identifiers::validate_server_name;
use crate::keys::{KeyId, SigningKey};
use crate::server_keys::KeyRing;
use crate::signing::{check_server_signatures, KeyOutcome, ServerSignatures};
use crate::time::Timestamp;

/// Why a request's authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XMatrixError {
    /// No `Authorization: X-Matrix` header at all.
    #[error("missing Authorization: X-Matrix header")]
    Missing,
    /// A header that cannot be parsed.
    #[error("malformed X-Matrix header: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A required parameter (`origin`, `key`, `sig`) is missing.
    #[error("X-Matrix header has no `{param}` parameter")]
    MissingParam {
        /// The parameter.
        param: &'static str,
    },
    /// `origin` is not a valid server name.
    #[error("X-Matrix origin {origin:?} is not a valid server name")]
    BadOrigin {
        /// The value given.
        origin: String,
    },
    /// Several headers name different origins.
    #[error("X-Matrix headers name different origins")]
    OriginMismatch,
    /// `destination` is not our server name.
    #[error("X-Matrix destination {got:?} is not this server ({expected:?})")]
    WrongDestination {
        /// The destination in the header.
        got: String,
        /// Our server name.
        expected: String,
    },
    /// No key of the origin is known for the key IDs used: fetch them, then verify again.
    #[error("no known key {key_ids:?} for {origin}")]
    UnknownKey {
        /// The origin server.
        origin: String,
        /// The key IDs to fetch.
        key_ids: Vec<String>,
    },
    /// The keys used are known but not valid now (expired or old): refetch, then verify again.
    #[error("keys {key_ids:?} of {origin} are not valid now")]
    KeyExpired {
        /// The origin server.
        origin: String,
        /// The key IDs to refetch.
        key_ids: Vec<String>,
    },
    /// A signature does not verify (or is not 64 bytes of base64).
    #[error("X-Matrix signature by {origin} {key_id:?} does not verify")]
    BadSignature {
        /// The origin server.
        origin: String,
        /// The key ID.
        key_id: String,
    },
    /// The request body is not JSON.
    #[error("request body: {0}")]
    Body(CanonicalJsonError),
}

impl XMatrixError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            XMatrixError::Missing => "xmatrix_missing",
            XMatrixError::Malformed { .. } => "xmatrix_malformed",
            XMatrixError::MissingParam { .. } => "xmatrix_missing_param",
            XMatrixError::BadOrigin { .. } => "xmatrix_bad_origin",
            XMatrixError::OriginMismatch => "xmatrix_origin_mismatch",
            XMatrixError::WrongDestination { .. } => "xmatrix_wrong_destination",
            XMatrixError::UnknownKey { .. } => "xmatrix_unknown_key",
            XMatrixError::KeyExpired { .. } => "xmatrix_key_expired",
            XMatrixError::BadSignature { .. } => "xmatrix_bad_signature",
            XMatrixError::Body(e) => e.code(),
        }
    }

    /// The Matrix error a server answers with: `(HTTP status, errcode)`. Synapse answers a
    /// malformed header with 400 and every other authentication failure with 401
    /// `M_UNAUTHORIZED`; a body that is not JSON is 400 `M_NOT_JSON`.
    pub fn errcode(&self) -> (u16, &'static str) {
        match self {
            XMatrixError::Malformed { .. }
            | XMatrixError::MissingParam { .. }
            | XMatrixError::BadOrigin { .. }
            | XMatrixError::OriginMismatch => (400, "M_UNAUTHORIZED"),
            XMatrixError::Body(e)
                if matches!(
                    e.kind,
                    CanonicalJsonErrorKind::TooLarge { .. }
                        | CanonicalJsonErrorKind::TooManyValues { .. }
                ) =>
            {
                (413, "M_TOO_LARGE")
            }
            XMatrixError::Body(_) => (400, "M_NOT_JSON"),
            _ => (401, "M_UNAUTHORIZED"),
        }
    }

    /// Whether fetching the origin's keys (again) and retrying may succeed.
    pub fn needs_keys(&self) -> bool {
        matches!(
            self,
            XMatrixError::UnknownKey { .. } | XMatrixError::KeyExpired { .. }
        )
    }
}

/// One parsed `X-Matrix` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    /// The requesting server.
    pub origin: String,
    /// The server the request is for; optional on receipt for old senders, always sent by us.
    pub destination: Option<String>,
    /// The signing key's ID.
    pub key: String,
    /// The unpadded base64 signature.
    pub sig: String,
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl XMatrix {
    /// The header value as we send it: `X-Matrix origin="…",destination="…",key="…",sig="…"`.
    pub fn to_header_value(&self) -> String {
        let mut s = format!("X-Matrix origin={}", quote(&self.origin));
        if let Some(d) = &self.destination {
            s.push_str(",destination=");
            s.push_str(&quote(d));
        }
        s.push_str(",key=");
        s.push_str(&quote(&self.key));
        s.push_str(",sig=");
        s.push_str(&quote(&self.sig));
        s
    }

    /// Parses one header value, with or without the `X-Matrix` scheme word. Lenient as real
    /// servers are: scheme and parameter names case-insensitive, values quoted (with backslash
    /// escapes) or bare (colons allowed), spaces and tabs around commas, unknown parameters
    /// ignored. A repeated parameter is an error.
    ///
    /// # Errors
    /// [`XMatrixError::Malformed`], [`XMatrixError::MissingParam`] or [`XMatrixError::BadOrigin`].
    ///
    /// ```
    /// use mxfed_core::xmatrix::XMatrix;
    /// let h = XMatrix::parse(r#"X-Matrix origin=origin.example:8448, Key="ed25519:1",sig="c2ln""#).unwrap();
    /// assert_eq!((h.origin.as_str(), h.key.as_str(), h.destination), ("origin.example:8448", "ed25519:1", None));
    /// ```
    pub fn parse(value: &str) -> Result<XMatrix, XMatrixError> {
        let malformed = |reason: &str| XMatrixError::Malformed {
            reason: reason.to_owned(),
        };
        let v = value.trim_matches([' ', '\t']);
        let params = match v.get(..8) {
            Some(scheme) if scheme.eq_ignore_ascii_case("x-matrix") => {
                let rest = &v[8..];
                if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                    return Err(malformed("expected a space after X-Matrix"));
                }
                rest
            }
            _ => v,
        };
        let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
        let mut rest = params.trim_start_matches([' ', '\t']);
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .ok_or_else(|| malformed("expected name=value"))?;
            let name = rest[..eq].trim_matches([' ', '\t']);
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(malformed("bad parameter name"));
            }
            rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
            let (val, after) = if let Some(q) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, e)) => out.push(e),
                            None => break,
                        },
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => out.push(c),
                    }
                }
                let end = end.ok_or_else(|| malformed("unterminated quoted value"))?;
                (out, &q[end + 1..])
            } else {
                let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
                (rest[..end].to_owned(), &rest[end..])
            };
            let slot = match name.to_ascii_lowercase().as_str() {
                "origin" => Some(&mut origin),
                "destination" => Some(&mut destination),
                "key" => Some(&mut key),
                "sig" => Some(&mut sig),
                _ => None,
            };
            if let Some(slot) = slot {
                if slot.replace(val).is_some() {
                    return Err(malformed("repeated parameter"));
                }
            }
            rest = after.trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start_matches([' ', '\t']);
            } else if !rest.is_empty() {
                return Err(malformed("expected ',' between parameters"));
            }
        }
        let origin = origin.ok_or(XMatrixError::MissingParam { param: "origin" })?;
        if validate_server_name(&origin).is_err() {
            return Err(XMatrixError::BadOrigin { origin });
        }
        Ok(XMatrix {
            origin,
            destination,
            key: key.ok_or(XMatrixError::MissingParam { param: "key" })?,
            sig: sig.ok_or(XMatrixError::MissingParam { param: "sig" })?,
        })
    }
}

/// A request as the signature covers it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The HTTP method, as sent (`GET`, `PUT`, …).
    pub method: &'a str,
    /// Path and query exactly as on the request line.
    pub uri: &'a str,
    /// The requesting server.
    pub origin: &'a str,
    /// The server the request is for.
    pub destination: &'a str,
    /// The JSON body, when there is one.
    pub content: Option<&'a Value>,
}

impl Request<'_> {
    /// The canonical bytes that are signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        self.signing_bytes_with(self.content.map(Content::Value))
    }

    /// The signed bytes with `content` given either as a value to encode or as bytes already
    /// canonical. `{"content","destination","method","origin","uri"}` is the five keys' sorted
    /// order, so the object is written straight out.
    fn signing_bytes_with(&self, content: Option<Content<'_>>) -> Vec<u8> {
        let fixed = self.method.len() + self.uri.len() + self.origin.len() + self.destination.len();
        let body = content.map_or(0, |c| match c {
            Content::Canonical(raw) => raw.len(),
            Content::Value(_) => 1024,
        });
        let mut out = Vec::with_capacity(64 + fixed + body);
        out.push(b'{');
        match content {
            Some(Content::Canonical(raw)) => {
                out.extend_from_slice(b"\"content\":");
                out.extend_from_slice(raw);
                out.push(b',');
            }
            Some(Content::Value(v)) => {
                // Encoded by reference: large transaction bodies are not copied first.
                out.extend_from_slice(b"\"content\":");
                crate::canonical::encode_into(v, &mut out);
                out.push(b',');
            }
            None => {}
        }
        for (i, (key, value)) in [
            ("destination", self.destination),
            ("method", self.method),
            ("origin", self.origin),
            ("uri", self.uri),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            write_str(value, &mut out);
        }
        out.push(b'}');
        out
    }

    /// Signs the request with every key, one header value per key (Synapse sends one
    /// `Authorization` header per signing key).
    pub fn sign(&self, keys: &[SigningKey]) -> Vec<XMatrix> {
        self.sign_bytes(&self.signing_bytes(), keys)
    }

    /// [`Request::sign`] for a request whose body, if any, is the JSON text `body`, exactly as it
    /// is sent (`self.content` is not used). Text that is canonical already — as every body mxfed sends
    /// is, a transaction's [`Transmit::body`](crate::outbound::Transmit::body) among them — is
    /// signed as it is, without being parsed and encoded again; other text is parsed as a
    /// received body to the same endpoint is ([`RequestBody::parse_request`]), and its value
    /// encoded. Either way the signed bytes are those the receiver rebuilds from the text, and
    /// the headers those [`Request::sign`] gives for the parsed body.
    ///
    /// ```
    /// use mxfed_core::keys::SigningKey;
    /// use mxfed_core::xmatrix::{parse_body, Request};
    /// let key = SigningKey::from_seed("1", &[1; 32]).unwrap();
    /// let req = Request { method: "PUT", uri: "/x", origin: "a.example", destination: "b.example", content: None };
    /// let text = br#"{ "b": 1, "a": [true] }"#;
    /// let parsed = parse_body(text).unwrap();
    /// let by_value = Request { content: Some(&parsed), ..req }.sign(&[key.clone()]);
    /// assert_eq!(req.sign_body(Some(text), &[key.clone()]).unwrap(), by_value);
    /// assert_eq!(req.sign_body(None, &[key.clone()]).unwrap(), req.sign(&[key]));
    /// ```
    ///
    /// # Errors
    /// [`XMatrixError::Body`]: the text is not JSON.
    pub fn sign_body(
        &self,
        body: Option<&[u8]>,
        keys: &[SigningKey],
    ) -> Result<Vec<XMatrix>, XMatrixError> {
        let bytes = match body {
            None => self.signing_bytes_with(None),
            Some(text) if is_canonical(text) => {
                self.signing_bytes_with(Some(Content::Canonical(text)))
            }
            Some(text) => {
                let value = parse_body_nested(text, body_max_depth(self.method, self.uri))?;
                self.signing_bytes_with(Some(Content::Value(&value)))
            }
        };
        Ok(self.sign_bytes(&bytes, keys))
    }

    fn sign_bytes(&self, bytes: &[u8], keys: &[SigningKey]) -> Vec<XMatrix> {
        keys.iter()
            .map(|k| XMatrix {
                origin: self.origin.to_owned(),
                destination: Some(self.destination.to_owned()),
                key: k.key_id().as_str().to_owned(),
                sig: base64::encode(k.sign(bytes)),
            })
            .collect()
    }
}

/// Most values a request body may hold (each scalar and container; object keys not counted).
/// A body is parsed before its sender is authenticated, and a value costs tens of bytes once
/// parsed, so a body of the largest size Synapse accepts (200 × 64 KiB) made only of tiny
/// values (`[0,0,…]`, `{},{},…`) took over 400 MB, far past a Worker isolate's 128 MB; at this
/// limit it takes about 60 MB. Real bodies hold far fewer: the densest real content (presence
/// updates) has one value per 19 bytes, so even a body of the largest size is under the limit
/// (one per 13 bytes). Over it: `json_too_many_values`, answered 413 `M_TOO_LARGE`.
pub const MAX_REQUEST_VALUES: usize = 1_000_000;

/// Parses a request body the way the signature covers it: as Synapse's Python parses it, so
/// floats in room version 1–5 events inside a transaction encode as Python would.
///
/// # Errors
/// [`XMatrixError::Body`].
pub fn parse_body(body: &[u8]) -> Result<Value, XMatrixError> {
    parse_body_nested(body, crate::canonical::DEFAULT_MAX_DEPTH)
}

fn parse_body_nested(body: &[u8], max_depth: usize) -> Result<Value, XMatrixError> {
    let opts = ParseOptions {
        numbers: NumberMode::Legacy,
        max_depth,
        max_values: MAX_REQUEST_VALUES,
        ..ParseOptions::STRICT
    };
    parse(body, &opts).map_err(XMatrixError::Body)
}

/// How deeply a request's body may nest: [`transaction::MAX_DEPTH`](crate::transaction::MAX_DEPTH)
/// for a transaction (`PUT /_matrix/federation/v1/send/…`, whose EDUs carry what clients sent),
/// [`DEFAULT_MAX_DEPTH`](crate::canonical::DEFAULT_MAX_DEPTH) for every other request.
///
/// ```
/// use mxfed_core::xmatrix::body_max_depth;
/// assert_eq!(body_max_depth("PUT", "/_matrix/federation/v1/send/t1"), 1024);
/// assert_eq!(body_max_depth("PUT", "/_matrix/federation/v2/invite/!r:a/$e"), 128);
/// ```
pub fn body_max_depth(method: &str, uri: &str) -> usize {
    if method.eq_ignore_ascii_case("PUT") && uri.starts_with(crate::transaction::SEND_PATH_PREFIX) {
        crate::transaction::MAX_DEPTH
    } else {
        crate::canonical::DEFAULT_MAX_DEPTH
    }
}

/// A request body parsed for verification, kept together with the bytes it was parsed from.
///
/// When those bytes are already canonical (as Synapse, mxfed and most senders send them), the
/// signature is checked over them as received; otherwise over the parsed value encoded again.
/// The bytes signed are the same either way, so is the verdict: only the work differs (encoding
/// a 50-PDU transaction costs more than checking it).
///
/// ```
/// use mxfed_core::xmatrix::RequestBody;
/// let body = RequestBody::parse(br#"{"pdus":[],"origin":"a.example"}"#).unwrap();
/// assert!(!body.is_canonical()); // keys out of order: verified over the re-encoded value
/// assert_eq!(body.value().as_object().unwrap().get_str("origin"), Some("a.example"));
/// assert!(RequestBody::parse(br#"{"origin":"a.example","pdus":[]}"#).unwrap().is_canonical());
/// ```
#[derive(Debug, Clone)]
pub struct RequestBody<'a> {
    /// The bytes as received (owned by hosts that keep the body past the call that read it).
    raw: Cow<'a, [u8]>,
    /// What they parse to ([`parse_body`]).
    value: Value,
    /// Whether `raw` is exactly the canonical JSON of `value`.
    canonical: bool,
}

impl<'a> RequestBody<'a> {
    /// Parses `raw` as [`parse_body`] does, and checks whether it is canonical already
    /// ([`is_canonical`](crate::canonical::is_canonical)).
    ///
    /// # Errors
    /// [`XMatrixError::Body`].
    pub fn parse(raw: &'a [u8]) -> Result<RequestBody<'a>, XMatrixError> {
        RequestBody::from_cow(Cow::Borrowed(raw), crate::canonical::DEFAULT_MAX_DEPTH)
    }

    /// [`RequestBody::parse`] keeping its own copy of the bytes.
    ///
    /// # Errors
    /// [`XMatrixError::Body`].
    pub fn parse_owned(raw: Vec<u8>) -> Result<RequestBody<'static>, XMatrixError> {
        RequestBody::from_cow(Cow::Owned(raw), crate::canonical::DEFAULT_MAX_DEPTH)
    }

    /// The body of a request to `uri` with `method`, nested as deeply as that endpoint allows
    /// ([`body_max_depth`]): what a server verifying requests calls, so a transaction whose EDU
    /// nests deeper than other bodies may is still read.
    ///
    /// ```
    /// use mxfed_core::xmatrix::RequestBody;
    /// let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    /// assert!(RequestBody::parse_request("PUT", "/_matrix/federation/v1/send/t", deep.as_bytes()).is_ok());
    /// assert!(RequestBody::parse_request("POST", "/_matrix/key/v2/query", deep.as_bytes()).is_err());
    /// ```
    ///
    /// # Errors
    /// [`XMatrixError::Body`].
    pub fn parse_request(
        method: &str,
        uri: &str,
        raw: &'a [u8],
    ) -> Result<RequestBody<'a>, XMatrixError> {
        RequestBody::from_cow(Cow::Borrowed(raw), body_max_depth(method, uri))
    }

    /// [`RequestBody::parse_request`] keeping its own copy of the bytes.
    ///
    /// # Errors
    /// [`XMatrixError::Body`].
    pub fn parse_request_owned(
        method: &str,
        uri: &str,
        raw: Vec<u8>,
    ) -> Result<RequestBody<'static>, XMatrixError> {
        RequestBody::from_cow(Cow::Owned(raw), body_max_depth(method, uri))
    }

    fn from_cow(raw: Cow<'a, [u8]>, max_depth: usize) -> Result<RequestBody<'a>, XMatrixError> {
        let value = parse_body_nested(&raw, max_depth)?;
        // The parse has validated the UTF-8 already.
        let canonical = is_canonical_parsed(&raw);
        Ok(RequestBody {
            raw,
            value,
            canonical,
        })
    }

    /// The parsed body.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The parsed body, for the handler to keep.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The bytes as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Whether the bytes are canonical, so the signature is checked over them as received.
    pub fn is_canonical(&self) -> bool {
        self.canonical
    }

    fn content(&self) -> Content<'_> {
        if self.canonical {
            Content::Canonical(&self.raw)
        } else {
            Content::Value(&self.value)
        }
    }
}

/// How a body enters the signed bytes.
#[derive(Clone, Copy)]
enum Content<'a> {
    /// Encoded from the value.
    Value(&'a Value),
    /// Copied: these bytes are the value's canonical JSON.
    Canonical(&'a [u8]),
}

/// A request whose X-Matrix authentication verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The server that sent it.
    pub origin: String,
    /// The keys whose signatures verified.
    pub key_ids: Vec<KeyId>,
}

/// Parses every `Authorization` header value of a request, keeping the `X-Matrix` ones (other
/// schemes are ignored; Synapse collects every X-Matrix header, one per signing key).
///
/// # Errors
/// [`XMatrixError::Missing`] when there is none, or the first parse error.
pub fn parse_authorization(values: &[&str]) -> Result<Vec<XMatrix>, XMatrixError> {
    let headers: Vec<XMatrix> = values
        .iter()
        .filter(|h| {
            h.trim_start()
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("x-matrix"))
        })
        .map(|h| XMatrix::parse(h))
        .collect::<Result<_, _>>()?;
    if headers.is_empty() {
        return Err(XMatrixError::Missing);
    }
    Ok(headers)
}

/// Verifies a request's X-Matrix headers against our server name and the keys known at `now`:
/// one origin across headers, destination (when present) is us, every signature by a key valid
/// now verifies, and at least one does.
///
/// # Errors
/// Any [`XMatrixError`]. [`XMatrixError::needs_keys`] tells the host to fetch the origin's keys
/// and call again.
pub fn verify_request(
    headers: &[XMatrix],
    our_server_name: &str,
    method: &str,
    uri: &str,
    content: Option<&Value>,
    keys: &KeyRing,
    now: Timestamp,
) -> Result<Authenticated, XMatrixError> {
    let content = content.map(Content::Value);
    verify(headers, our_server_name, method, uri, content, keys, now)
}

/// [`verify_request`] with the body as received ([`RequestBody::parse`]): a canonical body is
/// checked as it came, without encoding it again. The verdict is the same as
/// `verify_request(…, Some(body.value()), …)`.
///
/// # Errors
/// As [`verify_request`].
///
/// ```
/// use mxfed_core::keys::SigningKey;
/// use mxfed_core::server_keys::{KeyEntry, KeyRing};
/// use mxfed_core::xmatrix::{verify_request_body, Request, RequestBody};
/// use mxfed_core::Timestamp;
/// let key = SigningKey::from_seed("1", &[7; 32]).unwrap();
/// let raw = br#"{"edus":[],"origin":"a.example","pdus":[]}"#;
/// let body = RequestBody::parse(raw).unwrap();
/// let req = Request { method: "PUT", uri: "/_matrix/federation/v1/send/1", origin: "a.example",
///                     destination: "b.example", content: Some(body.value()) };
/// let headers = req.sign(std::slice::from_ref(&key));
/// let mut ring = KeyRing::new();
/// ring.insert("a.example", key.key_id().clone(),
///             KeyEntry { key: key.verify_key(), valid_until_ts: None, expired_ts: None });
/// let ok = verify_request_body(&headers, "b.example", req.method, req.uri, Some(&body), &ring, Timestamp(0));
/// assert_eq!(ok.unwrap().origin, "a.example");
/// ```
pub fn verify_request_body(
    headers: &[XMatrix],
    our_server_name: &str,
    method: &str,
    uri: &str,
    body: Option<&RequestBody<'_>>,
    keys: &KeyRing,
    now: Timestamp,
) -> Result<Authenticated, XMatrixError> {
    let content = body.map(RequestBody::content);
    verify(headers, our_server_name, method, uri, content, keys, now)
}

fn verify(
    headers: &[XMatrix],
    our_server_name: &str,
    method: &str,
    uri: &str,
    content: Option<Content<'_>>,
    keys: &KeyRing,
    now: Timestamp,
) -> Result<Authenticated, XMatrixError> {
    let first = headers.first().ok_or(XMatrixError::Missing)?;
    let origin = first.origin.clone();
    let mut sigs = Object::new();
    for h in headers {
        if h.origin != origin {
            return Err(XMatrixError::OriginMismatch);
        }
        if let Some(d) = &h.destination {
            if d != our_server_name {
                return Err(XMatrixError::WrongDestination {
                    got: d.clone(),
                    expected: our_server_name.to_owned(),
                });
            }
        }
        sigs.insert(h.key.as_str(), h.sig.as_str());
    }
    let request = Request {
        method,
        uri,
        origin: &origin,
        destination: our_server_name,
        content: None,
    };
    let signed = request.signing_bytes_with(content);
    let mut per_server = Object::new();
    per_server.insert(origin.as_str(), sigs);
    let mut holder = Object::new();
    holder.insert("signatures", per_server);
    let now = now.as_i64();
    let result = check_server_signatures(&holder, &signed, &origin, |id| {
        keys.lookup_for_request(&origin, id, now)
    })
    .map_err(|_| XMatrixError::Malformed {
        reason: "bad signature entry".into(),
    })?;
    verdict(&result, origin)
}

fn verdict(r: &ServerSignatures, origin: String) -> Result<Authenticated, XMatrixError> {
    let with = |o: KeyOutcome| -> Vec<String> {
        r.keys
            .iter()
            .filter(|(_, x)| *x == o)
            .map(|(k, _)| k.clone())
            .collect()
    };
    if let Some((k, _)) = r
        .keys
        .iter()
        .find(|(_, o)| matches!(o, KeyOutcome::Invalid | KeyOutcome::BadEncoding))
    {
        return Err(XMatrixError::BadSignature {
            origin,
            key_id: k.clone(),
        });
    }
    let valid = with(KeyOutcome::Valid);
    if valid.is_empty() {
        let expired = with(KeyOutcome::KeyNotValid);
        if !expired.is_empty() {
            return Err(XMatrixError::KeyExpired {
                origin,
                key_ids: expired,
            });
        }
        return Err(XMatrixError::UnknownKey {
            origin,
            key_ids: r.keys.iter().map(|(k, _)| k.clone()).collect(),
        });
    }
    Ok(Authenticated {
        origin,
        key_ids: valid.iter().filter_map(|k| KeyId::parse(k).ok()).collect(),
    })
}
