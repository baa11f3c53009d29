//! The checks the federation edge worker makes on a request, in Rust so that the worker's
//! JavaScript only does I/O (fetching keys, room versions, forwarding): it asks this module what
//! to fetch, feeds the answers to the core's [`KeyCache`], and sends what this module says.
//!
//! Everything here is a composition of core calls — [`xmatrix::verify_request`],
//! [`KeyCache::fetch_for_request`]/[`KeyCache::fetch_for_event`],
//! [`transaction::transaction_from_object`], [`pdu::check_pdu_object`],
//! [`TransactionResponse`] — plus the HTTP details of a worker: routing, and splitting the
//! `Authorization` header that the Fetch API joins with `", "`.
//!
//! Policy for PDUs (documented in host-wasm/README.md):
//! - a PDU whose room version is known is checked (format, signatures, content hash). Rejected
//!   → not forwarded, and the response gets `{"error": "<code>: <message>"}` for its event ID.
//!   Accepted or `redacted` (signatures good, content hash wrong) → forwarded as received; the
//!   origin redacts a `redacted` one itself, as it would without the edge;
//! - a PDU whose room version is unknown is forwarded unchecked (`forward_unknown`, the default:
//!   the room is the origin's business) or dropped without a response entry, as Synapse drops
//!   PDUs of rooms it is not in;
//! - items the transaction parser leaves out (not an object, no `room_id`) are dropped;
//! - when nothing is dropped the request body is forwarded byte for byte, so an origin that
//!   verifies X-Matrix itself still can; otherwise the body is re-encoded with only the kept PDUs.

use std::collections::BTreeMap;

use mxfed_core::canonical::{self, Object, Value};
use mxfed_core::keys::KeyId;
use mxfed_core::pdu::{self, Verdict};
use mxfed_core::server_keys::{KeyCache, KeyFetch};
use mxfed_core::transaction::{self, Transaction, TransactionResponse};
use mxfed_core::{event, xmatrix, RoomVersion, Timestamp};

use crate::error::HostError;

/// What the worker does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /.well-known/matrix/server`: answered by the worker.
    WellKnown,
    /// `GET /_matrix/key/v2/server[/{keyId}]`: answered by the worker with its key.
    ServerKeys,
    /// A federation endpoint that takes no X-Matrix (`/version`, `/openid/userinfo`): forwarded.
    Open,
    /// Any other `/_matrix/federation/*`: X-Matrix verified, then forwarded.
    Federation,
    /// `PUT /_matrix/federation/v1/send/{txnId}`: X-Matrix verified, PDUs checked and filtered.
    Send,
    /// Anything else (client API, media, notary queries): forwarded untouched.
    Passthrough,
}

impl Route {
    /// The route for a request line (`path` without the query).
    pub fn of(method: &str, path: &str) -> Route {
        const FED: &str = "/_matrix/federation/";
        if path == "/.well-known/matrix/server" && method == "GET" {
            Route::WellKnown
        } else if (path == "/_matrix/key/v2/server" || path.starts_with("/_matrix/key/v2/server/"))
            && method == "GET"
        {
            Route::ServerKeys
        } else if path == "/_matrix/federation/v1/version"
            || path == "/_matrix/federation/v1/openid/userinfo"
        {
            Route::Open
        } else if path.starts_with(transaction::SEND_PATH_PREFIX) && method == "PUT" {
            Route::Send
        } else if path.starts_with(FED) {
            Route::Federation
        } else {
            Route::Passthrough
        }
    }

    /// The name the worker switches on.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::WellKnown => "well_known",
            Route::ServerKeys => "server_keys",
            Route::Open => "open",
            Route::Federation => "federation",
            Route::Send => "send",
            Route::Passthrough => "passthrough",
        }
    }
}

/// Splits an `Authorization` value that the Fetch API joined from several headers
/// (`"X-Matrix a=…, X-Matrix b=…"`) back into one value per header: at each comma outside
/// quotes that is followed by the `X-Matrix` scheme word.
pub fn split_authorization(joined: &str) -> Vec<&str> {
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                let rest = joined[i + 1..].trim_start_matches([' ', '\t']);
                // Compared as bytes: the header's text is untrusted, and a character of several
                // bytes across byte 8 made slicing the `str` there panic.
                let next_is_scheme = rest
                    .as_bytes()
                    .get(..9)
                    .is_some_and(|s| s[..8].eq_ignore_ascii_case(b"x-matrix") && s[8] == b' ');
                if next_is_scheme {
                    out.push(joined[start..i].trim());
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    out.push(joined[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// One rejected PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPdu {
    /// Its event ID, when one can be computed (the response entry's key).
    pub event_id: Option<String>,
    /// The core's reason code.
    pub code: &'static str,
    /// The core's message.
    pub message: String,
}

/// What [`EdgeRequest::filter`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Indices into the transaction's PDUs that are forwarded.
    kept: Vec<usize>,
    /// PDUs dropped for failing a check.
    pub rejected: Vec<RejectedPdu>,
    /// Checked and accepted.
    pub accepted: usize,
    /// Signatures good, content hash wrong: forwarded for the origin to redact.
    pub redacted: usize,
    /// Unknown room version, forwarded unchecked.
    pub unchecked: usize,
    /// Unknown room version, dropped (no response entry).
    pub unknown_dropped: usize,
    /// Items the transaction parser left out: (JSON pointer, code).
    pub dropped_items: Vec<(String, &'static str)>,
}

impl Filtered {
    fn changed(&self) -> bool {
        !self.rejected.is_empty() || self.unknown_dropped > 0 || !self.dropped_items.is_empty()
    }
}

/// A federation request under check.
#[derive(Debug)]
pub struct EdgeRequest {
    method: String,
    uri: String,
    destination: String,
    /// The X-Matrix headers, or why they could not be parsed (answered at authentication).
    headers: Result<Vec<xmatrix::XMatrix>, xmatrix::XMatrixError>,
    /// The body with its bytes: a canonical one is verified as received, not encoded again.
    content: Option<xmatrix::RequestBody<'static>>,
    tx: Option<Transaction>,
    filtered: Option<Filtered>,
}

impl EdgeRequest {
    /// Parses the headers and the JSON body (`body` empty or absent = no content).
    ///
    /// # Errors
    /// A body that is not JSON: `M_NOT_JSON`, 400.
    pub fn new(
        method: &str,
        uri: &str,
        destination: &str,
        authorization: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<EdgeRequest, HostError> {
        let values = authorization.map(split_authorization).unwrap_or_default();
        let content = match body {
            Some(b) if !b.is_empty() => Some(xmatrix::RequestBody::parse_request_owned(
                method,
                uri,
                b.to_vec(),
            )?),
            _ => None,
        };
        Ok(EdgeRequest {
            method: method.to_owned(),
            uri: uri.to_owned(),
            destination: destination.to_owned(),
            headers: xmatrix::parse_authorization(&values),
            content,
            tx: None,
            filtered: None,
        })
    }

    /// The origin's keys to fetch before [`EdgeRequest::authenticate`] can succeed, if any
    /// (the core's [`KeyCache::fetch_for_request`] policy).
    pub fn key_fetch(&self, cache: &KeyCache, now: Timestamp) -> Option<KeyFetch> {
        let headers = self.headers.as_ref().ok()?;
        let origin = &headers.first()?.origin;
        let ids: Vec<KeyId> = headers
            .iter()
            .filter(|h| &h.origin == origin)
            .filter_map(|h| KeyId::parse(&h.key).ok())
            .collect();
        cache.fetch_for_request(origin, &ids, now)
    }

    /// Verifies X-Matrix with the keys in `cache`; returns the authenticated origin.
    ///
    /// # Errors
    /// The [`xmatrix::XMatrixError`], with its status and `errcode`.
    pub fn authenticate(&self, cache: &KeyCache, now: Timestamp) -> Result<String, HostError> {
        let headers = self
            .headers
            .as_ref()
            .map_err(|e| HostError::from(e.clone()))?;
        let auth = xmatrix::verify_request_body(
            headers,
            &self.destination,
            &self.method,
            &self.uri,
            self.content.as_ref(),
            cache.key_ring(),
            now,
        )?;
        Ok(auth.origin)
    }

    /// Reads the body as a transaction; returns the room IDs of its PDUs (each once, sorted),
    /// whose room versions the worker then looks up.
    ///
    /// # Errors
    /// The [`transaction::TransactionError`] (400) when the whole body must be refused.
    pub fn begin_transaction(&mut self) -> Result<Vec<String>, HostError> {
        let body = match self.content.as_ref().map(xmatrix::RequestBody::value) {
            Some(Value::Object(o)) => o.clone(),
            Some(other) => {
                return Err(transaction::TransactionError::NotObject {
                    found: other.kind(),
                }
                .into())
            }
            None => {
                return Err(transaction::TransactionError::NotObject { found: "nothing" }.into())
            }
        };
        let tx = transaction::transaction_from_object(body)?;
        let mut rooms: Vec<String> = tx
            .pdus()
            .iter()
            .filter_map(|p| p.get_str("room_id").map(str::to_owned))
            .collect();
        rooms.sort();
        rooms.dedup();
        self.tx = Some(tx);
        Ok(rooms)
    }

    fn pdus_with_versions<'a>(
        &'a self,
        versions: &'a BTreeMap<String, &'static RoomVersion>,
    ) -> impl Iterator<Item = (usize, &'a Object, Option<&'static RoomVersion>)> + 'a {
        self.tx.iter().flat_map(move |tx| {
            tx.pdus().iter().enumerate().map(move |(i, p)| {
                let v = p.get_str("room_id").and_then(|r| versions.get(r).copied());
                (i, p, v)
            })
        })
    }

    /// The servers whose keys must be fetched before the PDUs can be checked: per PDU of known
    /// room version, every required signer without a usable key in `cache` (the core's
    /// [`KeyCache::fetch_for_event`] policy). One fetch per server, asking for the latest
    /// validity any of its PDUs needs.
    pub fn pdu_key_fetches(
        &self,
        cache: &KeyCache,
        versions: &BTreeMap<String, &'static RoomVersion>,
    ) -> Vec<KeyFetch> {
        cache.fetches_for_events(
            self.pdus_with_versions(versions)
                .filter_map(|(_, ev, v)| Some((ev, v?))),
        )
    }

    /// Checks every PDU and decides what is forwarded (see the module docs for the policy).
    ///
    /// # Errors
    /// `edge_no_transaction` if [`EdgeRequest::begin_transaction`] was not called.
    pub fn filter(
        &mut self,
        cache: &KeyCache,
        versions: &BTreeMap<String, &'static RoomVersion>,
        forward_unknown: bool,
    ) -> Result<&Filtered, HostError> {
        let Some(tx) = &self.tx else {
            return Err(HostError::new(
                "edge_no_transaction",
                "filter called before begin_transaction",
            ));
        };
        let mut f = Filtered {
            dropped_items: tx
                .rejected()
                .iter()
                .filter(|r| matches!(r.item, transaction::Item::Pdu(_)))
                .map(|r| (r.item.to_string(), r.code()))
                .collect(),
            ..Filtered::default()
        };
        for (i, ev, v) in self.pdus_with_versions(versions) {
            let Some(v) = v else {
                if forward_unknown {
                    f.unchecked += 1;
                    f.kept.push(i);
                } else {
                    f.unknown_dropped += 1;
                }
                continue;
            };
            let check = pdu::check_pdu_object(ev.clone(), v, cache.key_ring());
            match check.verdict {
                Verdict::Accepted => {
                    f.accepted += 1;
                    f.kept.push(i);
                }
                Verdict::Redacted => {
                    f.redacted += 1;
                    f.kept.push(i);
                }
                Verdict::Rejected { code, message } => {
                    // Format failures in v3+ have no checked ID; the reference hash still names
                    // the event for the sender.
                    let event_id = check.event_id.or_else(|| event::event_id(ev, v).ok());
                    f.rejected.push(RejectedPdu {
                        event_id,
                        code,
                        message,
                    });
                }
                // Verdict is non_exhaustive: a future verdict is not forwarded unexamined.
                _ => f.rejected.push(RejectedPdu {
                    event_id: check.event_id,
                    code: "edge_unknown_verdict",
                    message: "unknown verdict".into(),
                }),
            }
        }
        self.filtered = Some(f);
        self.filtered
            .as_ref()
            .ok_or_else(|| HostError::new("edge_no_transaction", "no filter result"))
    }

    /// The result of [`EdgeRequest::filter`].
    pub fn filtered(&self) -> Option<&Filtered> {
        self.filtered.as_ref()
    }

    /// What to forward: `Forward::Original` (the received bytes), `Forward::Rewritten` (the
    /// body with only the kept PDUs), or `Forward::Nothing` (no PDU kept and no EDU).
    pub fn forward(&self) -> Forward {
        let (Some(f), Some(tx), Some(Value::Object(body))) = (
            &self.filtered,
            &self.tx,
            self.content.as_ref().map(xmatrix::RequestBody::value),
        ) else {
            return Forward::Original;
        };
        if !f.changed() {
            return Forward::Original;
        }
        let has_edus = body
            .get("edus")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        if f.kept.is_empty() && !has_edus {
            return Forward::Nothing;
        }
        let pdus: Vec<Value> = f
            .kept
            .iter()
            .filter_map(|&i| tx.pdus().get(i))
            .map(|p| Value::Object(p.clone()))
            .collect();
        let mut body = body.clone();
        body.insert("pdus", Value::Array(pdus));
        let mut out = Vec::with_capacity(4096);
        canonical::encode_object_into(&body, &mut out);
        Forward::Rewritten(out)
    }

    /// The response to send: the origin's 200 body (`None` when nothing was forwarded) with an
    /// error entry added for each rejected PDU. A body that is not a transaction response is
    /// returned unchanged.
    pub fn merge_response(&self, origin: Option<&[u8]>) -> Vec<u8> {
        let mut resp = match origin {
            None => TransactionResponse::new(),
            Some(b) => match TransactionResponse::parse(b) {
                Ok(r) => r,
                Err(_) => return b.to_vec(),
            },
        };
        if let Some(f) = &self.filtered {
            for r in &f.rejected {
                if let Some(id) = &r.event_id {
                    resp.set_error(id.as_str(), format!("{}: {}", r.code, r.message));
                }
            }
        }
        resp.to_bytes()
    }
}

/// What to send the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// The request body as received.
    Original,
    /// A new body.
    Rewritten(Vec<u8>),
    /// Nothing: answer without the origin.
    Nothing,
}

/// The summary the worker logs and the tests read:
/// `{"accepted","redacted","unchecked","unknown_dropped","rejected":[{"event_id","reason","error"}],"dropped":[{"item","code"}]}`.
pub fn filtered_json(f: &Filtered) -> Object {
    let mut o = Object::new();
    o.insert("accepted", canonical::Int::saturating(count(f.accepted)));
    o.insert("redacted", canonical::Int::saturating(count(f.redacted)));
    o.insert("unchecked", canonical::Int::saturating(count(f.unchecked)));
    o.insert(
        "unknown_dropped",
        canonical::Int::saturating(count(f.unknown_dropped)),
    );
    let rejected: Vec<Value> = f
        .rejected
        .iter()
        .map(|r| {
            let mut e = Object::new();
            e.insert(
                "event_id",
                r.event_id.clone().map_or(Value::Null, Value::String),
            );
            e.insert("reason", r.code);
            e.insert("error", r.message.as_str());
            Value::Object(e)
        })
        .collect();
    o.insert("rejected", Value::Array(rejected));
    let dropped: Vec<Value> = f
        .dropped_items
        .iter()
        .map(|(item, code)| {
            let mut e = Object::new();
            e.insert("item", item.as_str());
            e.insert("code", *code);
            Value::Object(e)
        })
        .collect();
    o.insert("dropped", Value::Array(dropped));
    o
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Parses the worker's room-version map (`{"!room:server": "10" | null}`); versions the core
/// does not know count as unknown.
///
/// # Errors
/// Not a JSON object.
pub fn parse_versions(json: &[u8]) -> Result<BTreeMap<String, &'static RoomVersion>, HostError> {
    let o = canonical::parse_object(json, &canonical::ParseOptions::STRICT)?;
    Ok(o.iter()
        .filter_map(|(room, v)| {
            let v = RoomVersion::get(v.as_str()?).ok()?;
            Some((room.to_owned(), v))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joined headers are split at each `, X-Matrix ` whatever the text around it, multi-byte
    /// characters included (one across byte 8 after a comma made the split panic).
    #[test]
    fn authorization_split_survives_any_text() {
        assert_eq!(
            split_authorization("X-Matrix origin=a, X-Matrix origin=b"),
            ["X-Matrix origin=a", "X-Matrix origin=b"]
        );
        assert_eq!(
            split_authorization("X-Matrix origin=a, 1234567\u{e9}"),
            ["X-Matrix origin=a, 1234567\u{e9}"]
        );
        for text in [
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            ", \u{1f600}\u{1f600}x",
            ",\u{e9}",
            ",",
        ] {
            for cut in 0..=text.len() {
                if let Some(head) = text.get(..cut) {
                    let _ = split_authorization(&format!("{head}, 1234567{text}"));
                }
            }
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::of("GET", "/.well-known/matrix/server"),
            Route::WellKnown
        );
        assert_eq!(
            Route::of("GET", "/_matrix/key/v2/server"),
            Route::ServerKeys
        );
        assert_eq!(
            Route::of("GET", "/_matrix/key/v2/server/ed25519:a"),
            Route::ServerKeys
        );
        assert_eq!(
            Route::of("PUT", "/_matrix/federation/v1/send/1"),
            Route::Send
        );
        assert_eq!(
            Route::of("GET", "/_matrix/federation/v1/send/1"),
            Route::Federation
        );
        assert_eq!(
            Route::of("GET", "/_matrix/federation/v1/version"),
            Route::Open
        );
        assert_eq!(
            Route::of("GET", "/_matrix/client/versions"),
            Route::Passthrough
        );
        assert_eq!(
            Route::of("POST", "/_matrix/key/v2/query"),
            Route::Passthrough
        );
    }

    #[test]
    fn joined_authorization_splits_outside_quotes() {
        let a = r#"X-Matrix origin="a,b",key="ed25519:1",sig="x""#;
        let b = r#"X-Matrix origin=o,key="ed25519:2",sig="y, X-Matrix z""#;
        let joined = format!("{a}, {b}");
        assert_eq!(split_authorization(&joined), vec![a, b]);
        assert_eq!(
            split_authorization("Bearer t, X-Matrix origin=o"),
            vec!["Bearer t", "X-Matrix origin=o"]
        );
        assert!(split_authorization("").is_empty());
    }
}
