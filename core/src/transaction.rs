//! Transactions: the body of `PUT /_matrix/federation/v1/send/{txnId}` and its response
//! ([spec § Transactions], DIGEST §12 and §21 pitfall 11).
//!
//! [`parse_transaction`] reads a request body with the core's canonical parser in
//! [`NumberMode::Legacy`](crate::canonical::NumberMode::Legacy): room versions 1–5 PDUs may hold
//! floats, and the transaction does not know which room versions its PDUs belong to. Strictness
//! is applied per PDU later, once the room version is known ([`crate::inbound`],
//! [`crate::pdu::check_format`]).
//!
//! Two kinds of failure, as in Synapse:
//! - the whole request is refused ([`TransactionError`], answer 400): not JSON, not an object, a
//!   required top-level field missing or of the wrong type, more than [`MAX_PDUS`] PDUs or more
//!   than [`MAX_EDUS`] EDUs;
//! - a single item is left out and the rest goes ahead ([`RejectedItem`]): a PDU that is not an
//!   object or has no `room_id` (Synapse logs and ignores such a PDU, and it gets no entry in the
//!   response because it has no event ID to key one), or a malformed EDU.
//!
//! A body may nest [`MAX_DEPTH`] levels, far more than other documents (EDUs carry what clients
//! sent, and a body refused is refused whole); each PDU in it is still held to the default
//! limit on its own ([`ItemError::PduTooDeep`]).
//!
//! Known differences from Synapse, all stricter and all about bytes no conforming server sends:
//! the body's `origin` and `origin_server_ts` are required (the spec requires them; Synapse
//! ignores them and uses the X-Matrix origin), and the canonical parser refuses a body with a
//! duplicate key or a lone-surrogate escape anywhere, where Python's JSON parser would accept it
//! and Synapse would then refuse only the PDU concerned.
//!
//! ```
//! use mxfed_core::transaction::{parse_transaction, TransactionResponse};
//!
//! let tx = parse_transaction(br#"{"origin":"a.example","origin_server_ts":1,"pdus":[7],
//!     "edus":[{"edu_type":"m.typing","content":{"room_id":"!r:a.example","user_id":"@u:a.example","typing":true}}]}"#).unwrap();
//! assert_eq!((tx.pdus().len(), tx.edus().len()), (0, 1));
//! assert_eq!(tx.rejected()[0].code(), "txn_pdu_not_object");
//!
//! let resp = TransactionResponse::new().with_ok("$a").with_error("$b", "denied");
//! assert_eq!(resp.to_bytes(), br#"{"pdus":{"$a":{},"$b":{"error":"denied"}}}"#);
//! ```
//!
//! [spec § Transactions]: https://spec.matrix.org/latest/server-server-api/#transactions

use std::collections::BTreeMap;
use std::fmt;

use crate::canonical::{
    encode_object_into, parse, CanonicalJsonError, Int, Object, ParseOptions, Value,
    DEFAULT_MAX_DEPTH,
};
use crate::edu::{Edu, EduError};
use crate::event::EventError;
use crate::identifiers::{validate_server_name, IdError};
use crate::time::Timestamp;

/// Most PDUs in one transaction. More → the whole request is refused (Synapse answers 400).
pub const MAX_PDUS: usize = 50;
/// Most EDUs in one transaction. More → the whole request is refused (Synapse answers 400).
pub const MAX_EDUS: usize = 100;
/// Largest request body accepted: Synapse's limit, 200 PDUs' worth of 64 KiB.
pub const MAX_BODY_BYTES: usize = 200 * 65_536;
/// Deepest nesting of objects and arrays accepted in a transaction body (the body is level 1),
/// far above the [`DEFAULT_MAX_DEPTH`] of other documents.
///
/// EDUs carry what clients sent: Synapse takes a to-device message nested as deeply as Python's
/// `json` goes (994 levels on Python 3.11) and forwards it in a transaction, and a body we cannot
/// parse is refused whole (400), with every PDU and EDU in it; Synapse then sends the same
/// transaction again and again, and nothing more from that server reaches us. 1,024 is above
/// anything such a server can send. PDUs in the body are still held to [`DEFAULT_MAX_DEPTH`],
/// each on its own ([`ItemError::PduTooDeep`]), as a PDU fetched alone is.
///
/// The limit is safe: the parser keeps the containers it reads on the heap, not the stack, and
/// what a host then does with such a body (encode, clone, compare and drop it) fits a 2 MiB
/// thread stack at this depth, unoptimised (measured by a test).
pub const MAX_DEPTH: usize = 1024;
/// The path of the endpoint, without the transaction ID.
pub const SEND_PATH_PREFIX: &str = "/_matrix/federation/v1/send/";

/// The request path for a transaction ID, percent-encoding anything but RFC 3986 unreserved
/// characters (the ID is opaque and may hold anything).
///
/// ```
/// use mxfed_core::transaction::send_path;
/// assert_eq!(send_path("17-3"), "/_matrix/federation/v1/send/17-3");
/// assert_eq!(send_path("a/b c"), "/_matrix/federation/v1/send/a%2Fb%20c");
/// ```
pub fn send_path(txn_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(SEND_PATH_PREFIX.len() + txn_id.len());
    out.push_str(SEND_PATH_PREFIX);
    for &b in txn_id.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// Why a whole transaction request is refused. Every variant maps to HTTP 400
/// ([`TransactionError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The body is not JSON the canonical parser accepts (in legacy number mode).
    #[error(transparent)]
    Json(#[from] CanonicalJsonError),
    /// The body (or a response body) is JSON but not an object.
    #[error("transaction body is {found}, not an object")]
    NotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// A required top-level field is absent.
    #[error("transaction has no `{field}`")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A top-level field has the wrong type.
    #[error("transaction field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// `origin` is not a server name.
    #[error("transaction origin: {0}")]
    BadOrigin(IdError),
    /// More than [`MAX_PDUS`] PDUs.
    #[error("{count} PDUs in one transaction, over the limit of {MAX_PDUS}")]
    TooManyPdus {
        /// How many.
        count: usize,
    },
    /// More than [`MAX_EDUS`] EDUs.
    #[error("{count} EDUs in one transaction, over the limit of {MAX_EDUS}")]
    TooManyEdus {
        /// How many.
        count: usize,
    },
}

impl TransactionError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            TransactionError::Json(e) => e.code(),
            TransactionError::NotObject { .. } => "txn_not_object",
            TransactionError::MissingField { .. } => "txn_missing_field",
            TransactionError::WrongType { .. } => "txn_wrong_type",
            TransactionError::BadOrigin(_) => "txn_bad_origin",
            TransactionError::TooManyPdus { .. } => "txn_too_many_pdus",
            TransactionError::TooManyEdus { .. } => "txn_too_many_edus",
        }
    }

    /// The HTTP status to answer with: always 400, as Synapse does for a body it cannot read
    /// (`{"error": "Invalid transaction"}`) or one over the limits (`{}`).
    pub fn http_status(&self) -> u16 {
        400
    }
}

/// Why one PDU or EDU of a transaction was left out. The rest of the transaction goes ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// The PDU is not a JSON object.
    #[error("PDU is {found}, not an object")]
    PduNotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// The PDU has no `room_id` (or an empty one). Synapse ignores such a PDU silently, and so
    /// do we: no response entry, only this note for the host's log.
    #[error("PDU has no room_id")]
    PduMissingRoomId,
    /// The PDU's `room_id` is not a string.
    #[error("PDU room_id is {found}, not a string")]
    PduBadRoomId {
        /// The JSON type found.
        found: &'static str,
    },
    /// A malformed EDU.
    #[error(transparent)]
    Edu(#[from] EduError),
    /// The PDU is for a room whose version the host does not know (it is not in the room):
    /// ignored with no response entry, as Synapse does.
    #[error("PDU for unknown room {room_id}")]
    UnknownRoom {
        /// The room.
        room_id: String,
    },
    /// No event ID could be found for the PDU (room versions 1–2 carry it in the PDU).
    #[error("no event ID: {0}")]
    EventId(#[from] EventError),
    /// A float or out-of-range integer in a PDU of a room version that forbids them (v6+).
    /// Synapse ignores the PDU with no response entry.
    #[error("PDU field `{field}` holds a number not allowed in its room version")]
    NonCanonicalNumber {
        /// The top-level field holding it.
        field: String,
    },
    /// The PDU nests objects and arrays deeper than [`DEFAULT_MAX_DEPTH`] levels (the PDU is
    /// level 1): refused as it would be fetched alone, without refusing the transaction, whose
    /// body may nest deeper ([`MAX_DEPTH`]).
    #[error("PDU nested deeper than {limit} levels")]
    PduTooDeep {
        /// The limit.
        limit: usize,
    },
    /// The same event twice in one transaction; the later copy is left out.
    #[error("event {event_id} appears twice in the transaction")]
    DuplicatePdu {
        /// The event.
        event_id: String,
    },
}

impl ItemError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            ItemError::PduNotObject { .. } => "txn_pdu_not_object",
            ItemError::PduMissingRoomId => "txn_pdu_missing_room_id",
            ItemError::PduBadRoomId { .. } => "txn_pdu_bad_room_id",
            ItemError::Edu(e) => e.code(),
            ItemError::UnknownRoom { .. } => "txn_pdu_unknown_room",
            ItemError::EventId(e) => e.code(),
            ItemError::NonCanonicalNumber { .. } => "pdu_non_canonical_number",
            ItemError::PduTooDeep { .. } => "txn_pdu_too_deep",
            ItemError::DuplicatePdu { .. } => "txn_pdu_duplicate",
        }
    }
}

/// Which item of the request: its position in the body's `pdus` or `edus` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Item {
    /// `pdus[i]`.
    Pdu(usize),
    /// `edus[i]`.
    Edu(usize),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Pdu(i) => write!(f, "/pdus/{i}"),
            Item::Edu(i) => write!(f, "/edus/{i}"),
        }
    }
}

/// An item left out of a transaction, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem {
    /// Which item.
    pub item: Item,
    /// Why.
    pub error: ItemError,
}

impl RejectedItem {
    /// The error's stable code.
    pub fn code(&self) -> &'static str {
        self.error.code()
    }
}

/// A transaction body: who sent it, when, its PDUs (as objects, unchecked beyond having a
/// `room_id`) and its EDUs (typed), plus the items that were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    origin: String,
    origin_server_ts: Timestamp,
    pdus: Vec<Object>,
    /// `pdus[i]` was `pdus[pdu_index[i]]` of the request (items may have been left out).
    pdu_index: Vec<usize>,
    edus: Vec<Edu>,
    /// As `pdu_index`, for EDUs.
    edu_index: Vec<usize>,
    rejected: Vec<RejectedItem>,
}

impl Transaction {
    /// A transaction to send. Limits are not checked here: the outbound queue never builds more
    /// than [`MAX_PDUS`]/[`MAX_EDUS`].
    pub fn new(
        origin: impl Into<String>,
        origin_server_ts: Timestamp,
        pdus: Vec<Object>,
        edus: Vec<Edu>,
    ) -> Transaction {
        Transaction {
            origin: origin.into(),
            origin_server_ts,
            pdu_index: (0..pdus.len()).collect(),
            pdus,
            edu_index: (0..edus.len()).collect(),
            edus,
            rejected: Vec::new(),
        }
    }

    /// The `origin` the body claims. The authenticated origin is the X-Matrix one; Synapse
    /// trusts only that, and so does [`crate::inbound`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// When the sender built the transaction.
    pub fn origin_server_ts(&self) -> Timestamp {
        self.origin_server_ts
    }

    /// The PDUs that have a `room_id`, in request order.
    pub fn pdus(&self) -> &[Object] {
        &self.pdus
    }

    /// The well-formed EDUs, in request order.
    pub fn edus(&self) -> &[Edu] {
        &self.edus
    }

    /// Items left out, in request order (PDUs first).
    pub fn rejected(&self) -> &[RejectedItem] {
        &self.rejected
    }

    /// Position in the request's `pdus` array of `self.pdus()[i]`.
    pub fn pdu_item(&self, i: usize) -> Item {
        Item::Pdu(self.pdu_index.get(i).copied().unwrap_or(i))
    }

    /// Position in the request's `edus` array of `self.edus()[i]`.
    pub fn edu_item(&self, i: usize) -> Item {
        Item::Edu(self.edu_index.get(i).copied().unwrap_or(i))
    }

    /// Takes the transaction apart: PDUs and EDUs with their request positions, and the
    /// rejected items.
    pub fn into_parts(self) -> TransactionParts {
        TransactionParts {
            origin: self.origin,
            origin_server_ts: self.origin_server_ts,
            pdus: self.pdu_index.into_iter().zip(self.pdus).collect(),
            edus: self.edu_index.into_iter().zip(self.edus).collect(),
            rejected: self.rejected,
        }
    }

    /// The body as an object: `origin`, `origin_server_ts`, `pdus`, and `edus` when there are
    /// any (Synapse leaves out an empty `edus`).
    pub fn to_object(&self) -> Object {
        let mut o = Object::new();
        if !self.edus.is_empty() {
            let edus: Vec<Value> = self.edus.iter().map(|e| e.to_object().into()).collect();
            o.insert("edus", edus);
        }
        o.insert("origin", self.origin.as_str());
        o.insert(
            "origin_server_ts",
            Int::saturating(self.origin_server_ts.as_i64()),
        );
        let pdus: Vec<Value> = self.pdus.iter().map(|p| p.clone().into()).collect();
        o.insert("pdus", pdus);
        o
    }

    /// The body as canonical JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        encode_object_into(&self.to_object(), &mut out);
        out
    }
}

/// A [`Transaction`] taken apart (see [`Transaction::into_parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionParts {
    /// The `origin` the body claims.
    pub origin: String,
    /// `origin_server_ts`.
    pub origin_server_ts: Timestamp,
    /// (request position, PDU).
    pub pdus: Vec<(usize, Object)>,
    /// (request position, EDU).
    pub edus: Vec<(usize, Edu)>,
    /// Items left out.
    pub rejected: Vec<RejectedItem>,
}

/// Parses a transaction request body.
///
/// `pdus` and `edus` may be absent or `null` (read as empty, as Synapse does); `origin` (a
/// server name) and `origin_server_ts` (an integer) are required.
///
/// # Errors
/// [`TransactionError`] when the whole request must be refused (answer 400). Problems with
/// single items are in [`Transaction::rejected`] instead.
pub fn parse_transaction(bytes: &[u8]) -> Result<Transaction, TransactionError> {
    let opts = ParseOptions {
        max_bytes: MAX_BODY_BYTES,
        max_depth: MAX_DEPTH,
        max_values: crate::xmatrix::MAX_REQUEST_VALUES,
        ..ParseOptions::LEGACY
    };
    match parse(bytes, &opts)? {
        Value::Object(o) => transaction_from_object(o),
        other => Err(TransactionError::NotObject {
            found: other.kind(),
        }),
    }
}

fn list(body: &mut Object, field: &'static str) -> Result<Vec<Value>, TransactionError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(TransactionError::WrongType {
            field,
            expected: "an array",
            found: other.kind(),
        }),
    }
}

/// As [`parse_transaction`], from an already parsed body.
///
/// # Errors
/// As [`parse_transaction`], less the JSON errors.
pub fn transaction_from_object(mut body: Object) -> Result<Transaction, TransactionError> {
    let origin = match body.remove("origin") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(TransactionError::WrongType {
                field: "origin",
                expected: "a string",
                found: other.kind(),
            })
        }
        None => return Err(TransactionError::MissingField { field: "origin" }),
    };
    validate_server_name(&origin).map_err(TransactionError::BadOrigin)?;
    let origin_server_ts = match body.get("origin_server_ts") {
        Some(Value::Int(i)) => Timestamp::from_i64(i.get()),
        Some(other) => {
            return Err(TransactionError::WrongType {
                field: "origin_server_ts",
                expected: "an integer",
                found: other.kind(),
            })
        }
        None => {
            return Err(TransactionError::MissingField {
                field: "origin_server_ts",
            })
        }
    };
    let pdus = list(&mut body, "pdus")?;
    let edus = list(&mut body, "edus")?;
    if pdus.len() > MAX_PDUS {
        return Err(TransactionError::TooManyPdus { count: pdus.len() });
    }
    if edus.len() > MAX_EDUS {
        return Err(TransactionError::TooManyEdus { count: edus.len() });
    }

    let mut tx = Transaction {
        origin,
        origin_server_ts,
        pdus: Vec::with_capacity(pdus.len()),
        pdu_index: Vec::with_capacity(pdus.len()),
        edus: Vec::with_capacity(edus.len()),
        edu_index: Vec::with_capacity(edus.len()),
        rejected: Vec::new(),
    };
    for (i, v) in pdus.into_iter().enumerate() {
        let problem = match &v {
            Value::Object(_) if v.nests_deeper_than(DEFAULT_MAX_DEPTH) => {
                Some(ItemError::PduTooDeep {
                    limit: DEFAULT_MAX_DEPTH,
                })
            }
            Value::Object(o) => match o.get("room_id") {
                Some(Value::String(s)) if !s.is_empty() => None,
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    Some(ItemError::PduMissingRoomId)
                }
                Some(other) => Some(ItemError::PduBadRoomId {
                    found: other.kind(),
                }),
            },
            other => Some(ItemError::PduNotObject {
                found: other.kind(),
            }),
        };
        match (problem, v) {
            (Some(error), _) => tx.rejected.push(RejectedItem {
                item: Item::Pdu(i),
                error,
            }),
            (None, Value::Object(o)) => {
                tx.pdus.push(o);
                tx.pdu_index.push(i);
            }
            // `problem` is `None` only for objects.
            (None, _) => {}
        }
    }
    for (i, v) in edus.into_iter().enumerate() {
        match Edu::from_value(v) {
            Ok(e) => {
                tx.edus.push(e);
                tx.edu_index.push(i);
            }
            Err(e) => tx.rejected.push(RejectedItem {
                item: Item::Edu(i),
                error: ItemError::Edu(e),
            }),
        }
    }
    Ok(tx)
}

/// What the receiver says about one PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PduResult {
    /// Handled (`{}`): accepted, or already known.
    Ok,
    /// Not accepted (`{"error": "…"}`), e.g. failed signature or authorization checks. The PDU
    /// is still acknowledged: the sender must not retry it.
    Error(String),
}

/// The 200 response to a transaction: `{"pdus": {event_id: {} | {"error": "…"}}}`.
///
/// It must be sent even when some PDUs fail; a PDU that was ignored (no room ID, unknown room,
/// unparseable) gets no entry, as in Synapse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionResponse {
    pdus: BTreeMap<String, PduResult>,
}

impl TransactionResponse {
    /// An empty response (`{"pdus": {}}`).
    pub fn new() -> TransactionResponse {
        TransactionResponse::default()
    }

    /// Builder form of [`TransactionResponse::set_ok`].
    pub fn with_ok(mut self, event_id: impl Into<String>) -> TransactionResponse {
        self.set_ok(event_id);
        self
    }

    /// Builder form of [`TransactionResponse::set_error`].
    pub fn with_error(
        mut self,
        event_id: impl Into<String>,
        error: impl Into<String>,
    ) -> TransactionResponse {
        self.set_error(event_id, error);
        self
    }

    /// Records that the PDU was handled.
    pub fn set_ok(&mut self, event_id: impl Into<String>) {
        self.set(event_id, PduResult::Ok);
    }

    /// Records that the PDU was refused, with a human-readable reason.
    pub fn set_error(&mut self, event_id: impl Into<String>, error: impl Into<String>) {
        self.set(event_id, PduResult::Error(error.into()));
    }

    /// Records a result, replacing any earlier one for the event.
    pub fn set(&mut self, event_id: impl Into<String>, result: PduResult) {
        self.pdus.insert(event_id.into(), result);
    }

    /// The result for one event.
    pub fn get(&self, event_id: &str) -> Option<&PduResult> {
        self.pdus.get(event_id)
    }

    /// Every (event ID, result), in event ID order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &PduResult)> {
        self.pdus.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The refused PDUs: (event ID, reason).
    pub fn errors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pdus.iter().filter_map(|(k, v)| match v {
            PduResult::Error(e) => Some((k.as_str(), e.as_str())),
            PduResult::Ok => None,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.pdus.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.pdus.is_empty()
    }

    /// The response as an object.
    pub fn to_object(&self) -> Object {
        let results: Object = self
            .pdus
            .iter()
            .map(|(id, r)| {
                let mut o = Object::new();
                if let PduResult::Error(e) = r {
                    o.insert("error", e.as_str());
                }
                (id.clone(), Value::Object(o))
            })
            .collect();
        let mut o = Object::new();
        o.insert("pdus", results);
        o
    }

    /// The response as canonical JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 64 * self.pdus.len());
        encode_object_into(&self.to_object(), &mut out);
        out
    }

    /// Parses a response body (what a sender gets back with a 200).
    ///
    /// A missing `pdus` reads as empty. An entry's `error` that is not a string is kept as its
    /// JSON text.
    ///
    /// # Errors
    /// Not JSON, not an object, `pdus` not an object of objects.
    pub fn parse(bytes: &[u8]) -> Result<TransactionResponse, TransactionError> {
        match parse(bytes, &ParseOptions::LEGACY)? {
            Value::Object(o) => TransactionResponse::from_object(&o),
            other => Err(TransactionError::NotObject {
                found: other.kind(),
            }),
        }
    }

    /// As [`TransactionResponse::parse`], from an object.
    ///
    /// # Errors
    /// `pdus` not an object of objects.
    pub fn from_object(body: &Object) -> Result<TransactionResponse, TransactionError> {
        let mut out = TransactionResponse::new();
        let Some(pdus) = body.get("pdus") else {
            return Ok(out);
        };
        let wrong = |found: &Value| TransactionError::WrongType {
            field: "pdus",
            expected: "an object of objects",
            found: found.kind(),
        };
        let pdus = pdus.as_object().ok_or_else(|| wrong(pdus))?;
        for (id, r) in pdus.iter() {
            let r = r.as_object().ok_or_else(|| wrong(r))?;
            let result = match r.get("error") {
                None => PduResult::Ok,
                Some(Value::String(e)) => PduResult::Error(e.clone()),
                Some(other) => PduResult::Error(other.to_canonical_string()),
            };
            out.set(id, result);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let e = parse_transaction(b"[]").unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("txn_not_object", 400));
        let e = parse_transaction(br#"{"origin":"a","origin_server_ts":1,"pdus":{}}"#).unwrap_err();
        assert_eq!(e.code(), "txn_wrong_type");
        let e = parse_transaction(br#"{"origin":"a b","origin_server_ts":1}"#).unwrap_err();
        assert_eq!(e.code(), "txn_bad_origin");
    }

    #[test]
    fn null_and_missing_lists_are_empty() {
        let tx = parse_transaction(br#"{"origin":"a","origin_server_ts":1,"pdus":null}"#).unwrap();
        assert!(tx.pdus().is_empty() && tx.edus().is_empty() && tx.rejected().is_empty());
        assert_eq!(
            tx.to_bytes(),
            br#"{"origin":"a","origin_server_ts":1,"pdus":[]}"#
        );
    }

    #[test]
    fn item_positions_survive_rejections() {
        let tx = parse_transaction(
            br#"{"origin":"a","origin_server_ts":1,"pdus":[1,{"room_id":"!r"},{"room_id":5},{"room_id":"!s"}]}"#,
        )
        .unwrap();
        assert_eq!(tx.pdu_item(0), Item::Pdu(1));
        assert_eq!(tx.pdu_item(1), Item::Pdu(3));
        let codes: Vec<_> = tx
            .rejected()
            .iter()
            .map(|r| (r.item.to_string(), r.code()))
            .collect();
        assert_eq!(
            codes,
            [
                ("/pdus/0".to_owned(), "txn_pdu_not_object"),
                ("/pdus/2".to_owned(), "txn_pdu_bad_room_id")
            ]
        );
        let parts = tx.into_parts();
        assert_eq!(parts.pdus[1].0, 3);
    }

    /// A transaction body whose one to-device EDU carries a message nested `levels` deep (the
    /// body 7 levels more), and whose PDUs are `pdus`.
    fn with_deep_to_device(levels: usize, pdus: &str) -> Vec<u8> {
        let (pairs, odd) = (levels / 2, levels % 2);
        let message = format!(
            "{}{}1{}{}",
            r#"{"a":["#.repeat(pairs),
            "[".repeat(odd),
            "]".repeat(odd),
            "]}".repeat(pairs)
        );
        format!(
            r#"{{"origin":"a","origin_server_ts":1,"pdus":[{pdus}],"edus":[{{"edu_type":"m.direct_to_device","content":{{"sender":"@s:a","type":"m.x","message_id":"m1","messages":{{"@r:b":{{"D":{{"deep":{message}}}}}}}}}}}]}}"#
        )
        .into_bytes()
    }

    /// A to-device message nested past the default limit (as Synapse forwards one) does not
    /// make the transaction unreadable; a PDU nested past it is left out on its own.
    #[test]
    fn a_deeply_nested_edu_does_not_refuse_the_transaction() {
        let deep_pdu = format!(
            r#"{{"room_id":"!r","content":{}1{}}}"#,
            "[".repeat(DEFAULT_MAX_DEPTH),
            "]".repeat(DEFAULT_MAX_DEPTH)
        );
        let ok_pdu = format!(
            r#"{{"room_id":"!r","content":{}1{}}}"#,
            "[".repeat(DEFAULT_MAX_DEPTH - 1),
            "]".repeat(DEFAULT_MAX_DEPTH - 1)
        );
        let body = with_deep_to_device(130, &format!("{deep_pdu},{ok_pdu}"));
        let tx = parse_transaction(&body).unwrap();
        assert_eq!(tx.edus().len(), 1);
        assert_eq!(tx.edus()[0].edu_type(), "m.direct_to_device");
        assert_eq!(tx.pdus().len(), 1, "the PDU nested 128 levels is kept");
        assert_eq!(tx.pdu_item(0), Item::Pdu(1));
        let codes: Vec<_> = tx.rejected().iter().map(|r| (r.item, r.code())).collect();
        assert_eq!(codes, [(Item::Pdu(0), "txn_pdu_too_deep")]);
        // The signed form is read the same way, for transactions only.
        let uri = "/_matrix/federation/v1/send/t1";
        assert!(crate::xmatrix::RequestBody::parse_request("PUT", uri, &body).is_ok());
        assert!(crate::xmatrix::RequestBody::parse(&body).is_err());
        // Past the transaction limit, the whole body is refused.
        let e = parse_transaction(&with_deep_to_device(MAX_DEPTH - 6, "")).unwrap_err();
        assert_eq!(e.code(), "json_too_deep");
    }

    /// At the depth limit, parsing a body and what a host does with it afterwards (verify it,
    /// encode, clone, compare and drop it) fit the 2 MiB stack of a tokio worker thread, in an
    /// unoptimised build: the limit is not a remote crash.
    #[test]
    fn transaction_bodies_at_the_depth_limit_fit_a_small_stack() {
        let body = with_deep_to_device(MAX_DEPTH - 7, "");
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let uri = "/_matrix/federation/v1/send/t1";
                let signed = crate::xmatrix::RequestBody::parse_request("PUT", uri, &body).unwrap();
                assert!(signed.value().nests_deeper_than(MAX_DEPTH - 1));
                assert!(!signed.value().nests_deeper_than(MAX_DEPTH));
                let copy = signed.value().clone();
                assert!(copy == *signed.value());
                let tx = parse_transaction(&body).unwrap();
                assert!(tx.rejected().is_empty());
                let again = parse_transaction(&tx.to_bytes()).unwrap();
                assert!(again == tx);
                drop((signed, copy, tx, again));
            })
            .unwrap();
        worker.join().unwrap();
    }

    #[test]
    fn response_round_trip() {
        let r = TransactionResponse::parse(
            br#"{"pdus":{"$a":{},"$b":{"error":"no"},"$c":{"error":1}}}"#,
        )
        .unwrap();
        assert_eq!(r.get("$a"), Some(&PduResult::Ok));
        assert_eq!(r.errors().collect::<Vec<_>>(), [("$b", "no"), ("$c", "1")]);
        assert_eq!(
            TransactionResponse::parse(&r.to_bytes()).unwrap(),
            r,
            "render then parse is the identity"
        );
        assert!(TransactionResponse::parse(b"{}").unwrap().is_empty());
        assert_eq!(
            TransactionResponse::parse(br#"{"pdus":[]}"#)
                .unwrap_err()
                .code(),
            "txn_wrong_type"
        );
    }
}
