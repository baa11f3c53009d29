//! The federation endpoints (DIGEST §12–§18). Each handler authenticates the request with
//! X-Matrix (the [`Signed`] extractor), translates JSON to core calls and back, and answers
//! errors as Matrix JSON ([`ApiError`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use mxfed_core::canonical::{Int, Object, Value};
use mxfed_core::edu::Edu;
use mxfed_core::event::{self, EventTemplate};
use mxfed_core::inbound::{plan_inbound, Admission};
use mxfed_core::keys::KeyId;
use mxfed_core::pdu::{self, PduCheck, Verdict};
use mxfed_core::room::RoomVerdict;
use mxfed_core::server_keys::KeyQuery;
use mxfed_core::transaction::{self, TransactionResponse};
use mxfed_core::{xmatrix, RoomVersion};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::metrics::PduOutcome;
use super::rooms::{self, checked, served_list, Entry};
use super::store::{EduKey, NewEdu, Reads as _};
use super::{keys, log, now, AppState};

type St = State<Arc<AppState>>;

/// A JSON answer (canonical encoding; `Content-Type: application/json`).
pub fn json(o: &Object) -> Response {
    json_bytes(o.to_canonical_string().into_bytes())
}

fn json_bytes(b: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        b,
    )
        .into_response()
}

/// Path parameters, with a Matrix error when they do not decode.
pub struct MPath<T>(pub T);

impl<S, T> FromRequestParts<S> for MPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(MPath(t)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// A query string, with a Matrix error (`M_INVALID_PARAM`) when it does not decode.
pub struct MQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for MQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(t)) => Ok(MQuery(t)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes a query component (`+` is a space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string's pairs, decoded, repeated keys kept (`ver`, `v`).
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Reads a request body within `[limits]`: more than `max_body_bytes` is refused with 413
/// `M_TOO_LARGE`; a body still arriving after `body_read_seconds` gets 408 (and the connection
/// is closed with it).
///
/// # Errors
/// 413 when too large, 408 when too slow.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &super::config::Limits,
) -> Result<Bytes, ApiError> {
    let wait = std::time::Duration::from_secs(limits.body_read_seconds);
    match tokio::time::timeout(wait, read_body_within(headers, body, limits.max_body_bytes)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            408,
            "M_UNKNOWN",
            format!(
                "request body not received within {} s",
                limits.body_read_seconds
            ),
        )),
    }
}

/// [`read_body`] without the deadline.
async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "M_TOO_LARGE",
            format!("request body over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// A request whose X-Matrix authentication verified.
pub struct Signed {
    /// The authenticated origin server.
    pub origin: String,
    /// The raw body.
    pub body: Bytes,
    /// The body as parsed for the signature check.
    pub content: Option<Value>,
    /// The decoded query string.
    pub query: Vec<(String, String)>,
}

impl Signed {
    /// All values of a query parameter.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.all(key).first().copied()
    }
    /// The body as a JSON object (400 otherwise).
    pub fn object(&self) -> Result<&Object, ApiError> {
        match &self.content {
            Some(Value::Object(o)) => Ok(o),
            Some(_) => Err(ApiError::bad_json("request body is not a JSON object")),
            None => Err(ApiError::new(400, "M_NOT_JSON", "request body missing")),
        }
    }
}

/// Verifies X-Matrix on a request, fetching the origin's keys when the core says so.
///
/// # Errors
/// The Matrix error for the failure.
pub async fn authenticate(
    state: &AppState,
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Option<Value>), ApiError> {
    let values: Vec<&str> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let parsed = xmatrix::parse_authorization(&values)?;
    // Kept with its bytes: a canonical body (what Synapse and mxfed send) is checked as
    // received, not encoded again. Nested as deeply as the endpoint allows (a transaction's EDUs
    // carry what clients sent).
    let content = if body.is_empty() {
        None
    } else {
        Some(xmatrix::RequestBody::parse_request(method, uri, body)?)
    };
    for attempt in 0..2 {
        let ring = keys::key_ring(state);
        match xmatrix::verify_request_body(
            &parsed,
            &state.server_name,
            method,
            uri,
            content.as_ref(),
            &ring,
            now(),
        ) {
            Ok(a) => {
                state.outbound.mark_reachable(&a.origin);
                return Ok((a.origin, content.map(xmatrix::RequestBody::into_value)));
            }
            Err(e) if e.needs_keys() && attempt == 0 => {
                let server = parsed.first().map(|h| h.origin.clone()).unwrap_or_default();
                let ids: Vec<KeyId> = parsed
                    .iter()
                    .filter_map(|h| KeyId::parse(&h.key).ok())
                    .collect();
                // The core's policy says what to fetch (a current key valid now).
                let fetch = state.key_cache().fetch_for_request(&server, &ids, now());
                if let Some(f) = fetch {
                    keys::fetch(state, &f).await;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        401,
        "M_UNAUTHORIZED",
        "cannot verify the request's signature",
    ))
}

impl FromRequest<Arc<AppState>> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let bytes = read_body(&parts.headers, body, &state.config.limits).await?;
        let started = std::time::Instant::now();
        let (origin, content) =
            authenticate(state, parts.method.as_str(), pq, &parts.headers, &bytes).await?;
        state.metrics.request_verify.observe(started.elapsed());
        // Limits count only authenticated origins, so nobody can spend another server's budget.
        // Transactions are not counted: an origin has one in flight at a time (a second gets
        // 429 from the dedup), so a busy peer's stream is paced by our answers, and refusing it
        // would only stall the room (its sender backs off). Synapse does not rate-limit its
        // /send servlet either (`RATELIMIT = False`; transactions queue per origin instead).
        let is_txn = parts.method == axum::http::Method::PUT
            && uri.path().starts_with("/_matrix/federation/v1/send/");
        let limited = if is_txn {
            Ok(())
        } else {
            state.limiter.check(&origin, std::time::Instant::now())
        };
        if let Err(ms) = limited {
            state.metrics.rate_limited();
            return Err(ApiError::limit_exceeded(ms));
        }
        super::acl::check_path(state, uri.path(), &origin)?;
        Ok(Signed {
            origin,
            body: bytes,
            content,
            query: query_pairs(uri.query()),
        })
    }
}

/// The federation router.
pub fn router(state: Arc<AppState>) -> Router {
    let f = "/_matrix/federation";
    Router::new()
        .route("/.well-known/matrix/server", get(well_known))
        .route(&format!("{f}/v1/version"), get(version))
        .route("/_matrix/key/v2/server", get(key_server))
        .route("/_matrix/key/v2/server/{key_id}", get(key_server))
        .route("/_matrix/key/v2/query", post(key_query_post))
        .route("/_matrix/key/v2/query/{server}", get(key_query_get))
        .route(&format!("{f}/v1/send/{{txn}}"), put(send))
        .route(&format!("{f}/v1/event/{{event_id}}"), get(get_event))
        .route(&format!("{f}/v1/state/{{room}}"), get(get_state))
        .route(&format!("{f}/v1/state_ids/{{room}}"), get(get_state_ids))
        .route(&format!("{f}/v1/backfill/{{room}}"), get(backfill))
        .route(
            &format!("{f}/v1/get_missing_events/{{room}}"),
            post(missing_events),
        )
        .route(
            &format!("{f}/v1/event_auth/{{room}}/{{event_id}}"),
            get(event_auth),
        )
        .route(&format!("{f}/v1/query/profile"), get(query_profile))
        .route(&format!("{f}/v1/query/directory"), get(query_directory))
        .route(&format!("{f}/v1/query/{{kind}}"), get(query_other))
        .route(
            &format!("{f}/v1/make_join/{{room}}/{{user}}"),
            get(make_join),
        )
        .route(
            &format!("{f}/v1/make_leave/{{room}}/{{user}}"),
            get(make_leave),
        )
        .route(
            &format!("{f}/v1/make_knock/{{room}}/{{user}}"),
            get(make_knock),
        )
        .route(
            &format!("{f}/v2/send_join/{{room}}/{{event_id}}"),
            put(send_join),
        )
        .route(
            &format!("{f}/v1/send_join/{{room}}/{{event_id}}"),
            put(send_join_v1),
        )
        .route(
            &format!("{f}/v2/send_leave/{{room}}/{{event_id}}"),
            put(send_leave),
        )
        .route(
            &format!("{f}/v1/send_leave/{{room}}/{{event_id}}"),
            put(send_leave_v1),
        )
        .route(
            &format!("{f}/v1/send_knock/{{room}}/{{event_id}}"),
            put(send_knock),
        )
        .route(&format!("{f}/v2/invite/{{room}}/{{event_id}}"), put(invite))
        .route(
            &format!("{f}/v1/invite/{{room}}/{{event_id}}"),
            put(invite_v1),
        )
        .route(
            &format!("{f}/v1/publicRooms"),
            get(public_rooms).post(public_rooms),
        )
        .route(&format!("{f}/v1/user/devices/{{user}}"), get(user_devices))
        .route(&format!("{f}/v1/user/keys/query"), post(user_keys_query))
        .route(&format!("{f}/v1/user/keys/claim"), post(user_keys_claim))
        .route(&format!("{f}/v1/openid/userinfo"), get(openid_userinfo))
        .route(&format!("{f}/v1/hierarchy/{{room}}"), get(not_found_signed))
        .route(
            &format!("{f}/v1/timestamp_to_event/{{room}}"),
            get(timestamp_to_event),
        )
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(super::detached))
        .with_state(state)
}

async fn unrecognized() -> ApiError {
    ApiError::unrecognized()
}

/// The answer to a method a path does not take (also on the admin listener).
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

async fn well_known(State(state): St) -> Response {
    let mut o = Object::new();
    o.insert("m.server", state.server_name.as_str());
    json(&o)
}

async fn version() -> Response {
    let mut server = Object::new();
    server.insert("name", "mxfed");
    server.insert("version", env!("CARGO_PKG_VERSION"));
    let mut o = Object::new();
    o.insert("server", server);
    json(&o)
}

async fn key_server(State(state): St) -> Result<Response, ApiError> {
    let o = keys::own_keys(&state, now()).ok_or_else(|| ApiError::internal("cannot sign keys"))?;
    Ok(json(&o))
}

async fn answer_key_query(state: &AppState, q: &KeyQuery) -> Result<Response, ApiError> {
    let fetches = state.key_cache().notary_fetches(q, now());
    for f in fetches {
        keys::fetch(state, &f).await;
    }
    let answer = state
        .key_cache()
        .notary_answer(q, &state.server_name, &state.keys)?;
    Ok(json(&answer))
}

async fn key_query_post(
    State(state): St,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, &state.config.limits).await?;
    let body = xmatrix::parse_body(&bytes)?;
    let body = body
        .as_object()
        .ok_or_else(|| ApiError::bad_json("body is not an object"))?;
    let q = KeyQuery::parse(body)?;
    answer_key_query(&state, &q).await
}

/// The GET form's query string.
#[derive(serde::Deserialize)]
struct KeyQueryParams {
    /// How long the keys must be valid (optional: the cache's own freshness rule applies
    /// without it, which also keeps them valid now, the spec's default).
    minimum_valid_until_ts: Option<i64>,
}

async fn key_query_get(
    State(state): St,
    MPath(server): MPath<String>,
    MQuery(params): MQuery<KeyQueryParams>,
) -> Result<Response, ApiError> {
    mxfed_core::identifiers::validate_server_name(&server)?;
    let mut q = KeyQuery::default();
    if let Some(min) = params.minimum_valid_until_ts {
        q.all_keys_minimum.insert(server.clone(), min);
    }
    q.servers.insert(server, BTreeMap::new());
    answer_key_query(&state, &q).await
}

// ------------------------------------------------------------------------------------------------
// Transactions
// ------------------------------------------------------------------------------------------------

async fn send(
    State(state): St,
    MPath(txn): MPath<String>,
    mut s: Signed,
) -> Result<Response, ApiError> {
    // The body was parsed once for the X-Matrix check; the transaction is read from that parse.
    let tx = match s.content.take() {
        Some(Value::Object(o)) => transaction::transaction_from_object(o)?,
        _ => transaction::parse_transaction(&s.body)?,
    };
    // The versions of this transaction's rooms only (at most 50 lookups, whatever the number of
    // rooms the server is in).
    let mut versions: BTreeMap<String, &'static RoomVersion> = {
        let rooms = state.rooms();
        tx.pdus()
            .iter()
            .filter_map(|p| p.get_str("room_id"))
            .filter_map(|r| rooms.get(r).map(|room| (r.to_owned(), room.version())))
            .collect()
    };
    // A room we are only invited to: its version is the invite's (the leave that withdraws the
    // invite comes this way, see `rescinded_invites`).
    for p in tx.pdus() {
        let Some(r) = p.get_str("room_id") else {
            continue;
        };
        if versions.contains_key(r) {
            continue;
        }
        // A room one of our users is joining and we do not know yet: its events wait for the
        // join (see `AppState::joining`).
        if let Some(v) = rooms::joining_version(&state, r) {
            versions.insert(r.to_owned(), v);
            continue;
        }
        let Some(user) = p.get_str("state_key") else {
            continue;
        };
        if p.get_str("type") != Some("m.room.member") {
            continue;
        }
        if let Some(v) =
            pending_invite(&state, r, user).and_then(|i| RoomVersion::get(&i.room_version).ok())
        {
            versions.insert(r.to_owned(), v);
        }
    }
    // A retry of the transaction being processed (its sender timed out and sent it again) waits
    // for that processing and gets its answer, as Synapse's response cache gives it: a 429 would
    // make a Synapse sender back off from us for minutes.
    let deadline = tokio::time::Instant::now() + RETRY_WAIT;
    loop {
        let done = state.txn_done.notified();
        if !state.dedup().in_progress(&s.origin, &txn) {
            break;
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            break;
        }
    }
    let plan = {
        let mut d = state.dedup();
        plan_inbound(&s.origin, &txn, tx, &mut d, |r| versions.get(r).copied())
    };
    match &plan.admission {
        Admission::New => state.metrics.txn_received(),
        Admission::Duplicate(resp) => return Ok(json_bytes(resp.to_bytes())),
        _ => {
            return Err(ApiError::new(
                429,
                "M_UNKNOWN",
                "Too many concurrent transactions",
            ))
        }
    }
    // The router runs this handler detached ([`super::detached`]): a sender that gives up on the
    // request does not cut the transaction short. Were it cut short or to panic, the origin
    // would stay marked busy for the life of the process: the mark is cleared when processing
    // ends, however it ends.
    let _in_flight = InFlight {
        state: Arc::clone(&state),
        origin: s.origin.clone(),
        txn: txn.clone(),
    };
    process_txn(state, txn, s, plan).await
}

/// Clears a transaction's in-progress mark when its processing ends: after the answer was
/// recorded this does nothing; after a failure (a 5xx), a panic or a cancellation it lets the
/// origin's retry in, to be processed again.
struct InFlight {
    state: Arc<AppState>,
    origin: String,
    txn: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.dedup().abort(&self.origin, &self.txn);
        self.state.txn_done.notify_waiters();
    }
}

/// How long a retry of a transaction still being processed waits for its answer before it is
/// told to come back later (429).
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The admitted transaction's PDUs (room by room) and EDUs, then its answer, recorded and
/// stored.
async fn process_txn(
    state: Arc<AppState>,
    txn: String,
    s: Signed,
    plan: mxfed_core::inbound::InboundPlan,
) -> Result<Response, ApiError> {
    for r in &plan.rejected {
        log(&format!(
            "txn {txn} from {}: {} left out: {} ({})",
            s.origin,
            r.item,
            r.error,
            r.code()
        ));
    }
    let started = std::time::Instant::now();
    let mut response = TransactionResponse::new();
    let (mut pdus_total, mut refused) = (0usize, 0usize);
    // The signature and hash checks (and the key fetches they need) take no lock: they run
    // before this transaction waits for its rooms' locks, so other transactions for those rooms
    // are taken in and fsynced meanwhile. A room whose ACL denies the origin is not checked.
    let mut rooms_in = Vec::with_capacity(plan.rooms.len());
    let checking = std::time::Instant::now();
    for room in plan.rooms {
        // A room none of our users is in any more (left, kicked): its PDUs are ignored, as
        // Synapse ignores them (answered `{}`); taking them in would mean filling gaps from
        // servers that no longer answer us for that room.
        if !rooms::resident_or_joining(&state, &room.room_id) {
            rescinded_invites(&state, &s.origin, &room).await;
            log(&format!(
                "txn {txn} from {}: {} PDUs for {}, which we are not in: ignored",
                s.origin,
                room.pdus.len(),
                room.room_id
            ));
            for p in room.pdus {
                response.set_ok(p.event_id);
            }
            continue;
        }
        let pdus: Vec<(String, Object)> =
            room.pdus.into_iter().map(|p| (p.event_id, p.pdu)).collect();
        let pdus = if super::acl::allows(&state, &room.room_id, &s.origin) {
            Pdus::Checked(rooms::check_pdus(&state, room.room_version, pdus).await)
        } else {
            Pdus::Unchecked(pdus)
        };
        rooms_in.push((room.room_id, room.room_version, pdus));
    }
    if !rooms_in.is_empty() {
        state.metrics.pdu_checks.observe(checking.elapsed());
    }
    {
        let until = super::deadline_in(std::time::Duration::from_secs(
            state.config.limits.gap_fill_seconds,
        ));
        rooms::retry_deferred(&state, &s.origin, until).await;
        for (room_id, version, pdus) in rooms_in {
            let _guard = state.lock_room(&room_id).await;
            // A join that was under way has ended: stored (we are in the room now), or failed.
            if !rooms::resident_in(&state, &room_id) {
                log(&format!(
                    "txn {txn} from {}: PDUs for {room_id}, which we did not join: ignored",
                    s.origin
                ));
                for id in pdus.ids() {
                    response.set_ok(id.to_owned());
                }
                continue;
            }
            // Asked again under the room's lock: an ACL event may have been taken in meanwhile.
            if !super::acl::allows(&state, &room_id, &s.origin) {
                for id in pdus.ids() {
                    state.metrics.pdu(PduOutcome::Rejected);
                    response.set_error(id.to_owned(), super::acl::DENIED);
                }
                continue;
            }
            let checked = match pdus {
                Pdus::Checked(c) => c,
                Pdus::Unchecked(p) => rooms::check_pdus(&state, version, p).await,
            };
            let results =
                rooms::ingest_checked(&state, &s.origin, &room_id, version, checked, until).await;
            for (id, taken) in results {
                pdus_total += 1;
                match taken {
                    rooms::Taken::Accepted => {
                        state.metrics.pdu(PduOutcome::Accepted);
                        response.set_ok(id);
                    }
                    rooms::Taken::SoftFailed => {
                        state.metrics.pdu(PduOutcome::SoftFailed);
                        response.set_ok(id);
                    }
                    rooms::Taken::Refused(e) | rooms::Taken::Kept(e) => {
                        state.metrics.pdu(PduOutcome::Rejected);
                        refused += 1;
                        response.set_error(id, e);
                    }
                }
            }
        }
    }
    let mut edus = Vec::new();
    for edu in &plan.edus {
        state.metrics.edu(edu.edu_type());
        edu_rows(&state, &s.origin, edu, &mut edus);
    }
    let took = started.elapsed();
    state.metrics.txn_processing.observe(took);
    tracing::info!(
        origin = %s.origin,
        txn = %txn,
        pdus = pdus_total,
        refused,
        edus = plan.edus.len(),
        ms = took.as_secs_f64() * 1000.0,
        "transaction received"
    );
    let bytes = response.to_bytes();
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    if edus.is_empty() {
        // Everything it did is in the rooms' committed events, so a retry may be answered from
        // the dedup at once. The answer rides on the next commit (a lost answer only makes a
        // retry be processed again, with the same result). Put without the writer, which a
        // commit may hold through its fsync; written at once, off the runtime's threads, when
        // too many wait.
        state.dedup().complete(&s.origin, &txn, response);
        if state.txn_answers.put(&s.origin, &txn, &answer) {
            let st = Arc::clone(&state);
            let flushed = rooms::blocking(move || Ok(st.db().flush_txns()?)).await;
            if let Err(e) = flushed {
                tracing::warn!("storing transactions' answers: {}", e.error);
            }
        }
    } else {
        // Its EDUs and its answer in one commit (one fsync, on a blocking thread): a retry
        // finds both, or neither and stores the EDUs once.
        let (st, origin, id) = (Arc::clone(&state), s.origin.clone(), txn.clone());
        let stored =
            rooms::blocking(move || Ok(st.db().put_txn_with_edus(&origin, &id, &answer, &edus)?))
                .await;
        if let Err(e) = stored {
            // Not recorded: the in-flight guard forgets the transaction, so the sender's retry
            // (a 5xx makes it retry) is processed again and stores the EDUs then. A 200 here
            // would lose them for good (reliable ones included).
            return Err(ApiError::internal(format_args!(
                "storing the EDUs of txn {txn} from {}: {}",
                s.origin, e.error
            )));
        }
        // Recorded only once the EDUs are durable: a retry answered from the dedup must not get
        // the answer before the commit that its EDUs are in.
        state.dedup().complete(&s.origin, &txn, response);
    }
    Ok(json_bytes(bytes))
}

/// A room's PDUs of a transaction before the room's lock is taken: checked, or not (the room's ACL
/// denied the origin when they arrived).
enum Pdus {
    Checked(Vec<(String, PduCheck)>),
    Unchecked(Vec<(String, Object)>),
}

impl Pdus {
    fn ids(&self) -> Vec<&str> {
        match self {
            Pdus::Checked(c) => c.iter().map(|(id, _)| id.as_str()).collect(),
            Pdus::Unchecked(p) => p.iter().map(|(id, _)| id.as_str()).collect(),
        }
    }
}

/// The rows to store for an EDU: only what concerns our users, the rooms we are in and their
/// members, as Synapse keeps only that and drops or ignores the rest (a peer that shares nothing
/// with us can make us keep nothing).
/// - typing and receipts: for rooms we are in, the origin has a member joined to, and whose
///   server ACL lets the origin in; the latest typing notice per (room, user), replacing the one
///   before (Synapse keeps only whether each user is typing), and one row per receipt, the
///   latest per (room, receipt type, user, thread), as Synapse's `receipts_linearized` keeps;
/// - to-device messages: one row with only the messages for our users, once per (origin,
///   message ID) (Synapse refuses messages for other servers' users);
/// - device-list and signing-key updates of a user who shares a room with us (Synapse ignores
///   the others: it will not hear of the user's later changes either): the latest per device,
///   and per user and key (master, self-signing: one row each, as Synapse stores each key);
/// - presence: one row per update of a user who shares a room with us, replacing that user's
///   earlier one;
/// - other types: nothing (Synapse has no handler for them and drops them).
///
/// What is kept of all these overall is bounded by `[limits]` (`store::EduLimits`).
fn edu_rows(state: &AppState, origin: &str, edu: &Edu, out: &mut Vec<NewEdu>) {
    let known = |r: &str| {
        state.rooms().get(r).is_some_and(|room| {
            mxfed_core::acl::room_allows(room, origin)
                && rooms::resident(state, room)
                && room.server_joined(origin)
        })
    };
    let kind = edu.edu_type();
    let content = edu.content();
    let row = |room: Option<&str>, content: String, key: Option<EduKey>| NewEdu {
        edu_type: kind.to_owned(),
        room_id: room.map(str::to_owned),
        content,
        key,
    };
    // What a row supersedes the earlier ones of (with the same type and origin) by: the parts,
    // as a JSON array, which no choice of parts can make ambiguous.
    let latest = |parts: &[&str]| Some(EduKey::Latest(serde_json::json!(parts).to_string()));
    match edu {
        Edu::Typing(t) => {
            if known(t.room_id()) {
                let key = latest(&[t.room_id(), t.user_id()]);
                out.push(row(Some(t.room_id()), content.to_canonical_string(), key));
            }
        }
        Edu::Receipt(r) => {
            for e in r.entries() {
                if known(e.room_id()) {
                    let key = latest(&[
                        e.room_id(),
                        e.receipt_type(),
                        e.user_id(),
                        e.thread_id().unwrap_or_default(),
                    ]);
                    let room = e.room_id().to_owned();
                    let one = mxfed_core::edu::Receipt::from_entries([e]);
                    out.push(row(Some(&room), one.content().to_canonical_string(), key));
                }
            }
        }
        Edu::DirectToDevice(d) => {
            let ours = |user: &str| state.has_local_user(user).unwrap_or(false);
            // Once per (origin, message ID), as Synapse keys them: a sender sends a message
            // again (in another transaction) when it did not see our answer.
            if let Some(mine) = d.only_for(ours) {
                let key = EduKey::Once(d.message_id().to_owned());
                out.push(row(None, mine.content().to_canonical_string(), Some(key)));
            }
        }
        Edu::DeviceListUpdate(u) => {
            if shares_a_room(state, u.user_id()) {
                let key = latest(&[u.user_id(), u.device_id()]);
                out.push(row(None, content.to_canonical_string(), key));
            }
        }
        Edu::SigningKeyUpdate(u) => {
            if shares_a_room(state, u.user_id()) {
                let user = u.user_id();
                let keys = [
                    (
                        "master_key",
                        u.master_key().map(|k| (Some(k.clone()), None)),
                    ),
                    (
                        "self_signing_key",
                        u.self_signing_key().map(|k| (None, Some(k.clone()))),
                    ),
                ];
                for (name, one) in keys {
                    let Some((master, self_signing)) = one else {
                        continue;
                    };
                    if let Ok(one) =
                        mxfed_core::edu::SigningKeyUpdate::new(user, master, self_signing)
                    {
                        let key = latest(&[user, name]);
                        out.push(row(None, one.content().to_canonical_string(), key));
                    }
                }
            }
        }
        Edu::Presence(p) => {
            for u in p.updates() {
                if shares_a_room(state, u.user_id()) {
                    let key = EduKey::Latest(u.user_id().to_owned());
                    let one = mxfed_core::edu::Presence::from_updates([u]);
                    out.push(row(None, one.content().to_canonical_string(), Some(key)));
                }
            }
        }
        _ => tracing::debug!(%origin, edu_type = kind, "EDU of a type we do not handle: dropped"),
    }
}

/// Our user's invite to `room_id`, if still pending.
fn pending_invite(state: &AppState, room_id: &str, user: &str) -> Option<super::store::Invite> {
    if !state.is_local_user(user) {
        return None;
    }
    let invites = state.reads().invites(user).ok()?;
    invites
        .into_iter()
        .find(|i| i.room_id == room_id && i.status == "pending")
}

/// PDUs of a room we are not in that withdraw a pending invite of one of our users (the core's
/// `rescinds_invite`, after the PDU's signatures and hashes are checked): the invite is marked
/// `rescinded`, as Synapse records such a leave as an out-of-band membership. Everything else
/// of such a room is ignored.
async fn rescinded_invites(
    state: &Arc<AppState>,
    origin: &str,
    room: &mxfed_core::inbound::RoomPdus,
) {
    for p in &room.pdus {
        let Some(user) = p.pdu.get_str("state_key") else {
            continue;
        };
        let Some(invite) = pending_invite(state, &room.room_id, user) else {
            continue;
        };
        let Some(invite_ev) = mxfed_core::canonical::parse_object(
            invite.event.as_bytes(),
            &mxfed_core::canonical::ParseOptions::LEGACY,
        )
        .ok() else {
            continue;
        };
        let Ok(invite_id) = event::event_id(&invite_ev, room.room_version) else {
            continue;
        };
        if !mxfed_core::room::rescinds_invite(&p.pdu, &invite_ev, &invite_id) {
            continue;
        }
        let checked = rooms::check_pdus(
            state,
            room.room_version,
            vec![(p.event_id.clone(), p.pdu.clone())],
        )
        .await;
        let genuine = checked
            .first()
            .is_some_and(|(_, c)| c.verdict == mxfed_core::pdu::Verdict::Accepted);
        if !genuine {
            log(&format!(
                "{origin}: withdrawal {} of {user}'s invite to {}: refused (signature or hash)",
                p.event_id, room.room_id
            ));
            continue;
        }
        // Only if still pending: our user may have accepted it while the keys were fetched.
        let marked = state.write(|db| db.rescind_invite(&room.room_id, user));
        match marked {
            Ok(false) => {}
            Ok(true) => {
                log(&format!(
                    "{user}'s invite to {} withdrawn by {origin} ({})",
                    room.room_id, p.event_id
                ));
                state.changed.notify_waiters();
            }
            Err(e) => super::warn(&format!("marking an invite withdrawn: {e}")),
        }
    }
}

/// Accepts an invite of `target` (a user who accepts invites by themselves) into `room_id` from
/// `origin`: joins through the inviting server, in a task of its own.
fn auto_join(state: Arc<AppState>, room_id: String, target: String, origin: String) {
    tokio::spawn(async move {
        // The inviting server records the invite only once it has our answer, which is still
        // on its way: wait a moment before each try, longer each time (0.2 s … 3.2 s).
        for attempt in 0..5u32 {
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            for via in rooms::join_candidates(std::slice::from_ref(&origin), &room_id, None) {
                match rooms::remote_membership(&state, &room_id, &target, &via, "join").await {
                    Ok(id) => {
                        log(&format!("{target} joined {room_id} ({id}) via {via}"));
                        return;
                    }
                    Err(e) => log(&format!("auto-accept: join {room_id} via {via}: {e}")),
                }
            }
        }
    });
}

/// At start: the invites our auto-accepting users got but had not yet accepted when the server
/// stopped (the acceptance runs after the invite is answered, so a stop within its tries left
/// the invite pending for good).
pub fn resume_auto_accepts(state: &Arc<AppState>) {
    let pending = state.db().pending_auto_accepts(&state.server_name);
    match pending {
        Ok(pending) => {
            for (room_id, user, origin) in pending {
                log(&format!(
                    "auto-accept of {user}'s invite to {room_id}: resumed"
                ));
                auto_join(state.clone(), room_id, user, origin);
            }
        }
        Err(e) => super::warn(&format!("pending invites to accept: {e}")),
    }
}

/// Whether `user` is joined to a room we are in: whose device, key and presence changes concern
/// us (Synapse's `get_rooms_for_user` being non-empty).
fn shares_a_room(state: &AppState, user: &str) -> bool {
    state.rooms().values().any(|room| {
        room.membership(user).as_deref() == Some("join") && rooms::resident(state, room)
    })
}

// ------------------------------------------------------------------------------------------------
// Event retrieval
// ------------------------------------------------------------------------------------------------

/// Whether `origin` has a member joined to the room now: who may read its events (as Synapse's
/// `assert_host_in_room`). A server whose users have left, were banned, or are only invited or
/// knocking is refused: history visibility `shared` lets a joined server see the whole history,
/// and serves it in full on that understanding.
fn server_in_room(state: &AppState, room_id: &str, origin: &str) -> Result<(), ApiError> {
    let rooms = state.rooms();
    let room = rooms
        .get(room_id)
        .ok_or_else(|| ApiError::not_found("unknown room"))?;
    if room.server_joined(origin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{origin} is not in {room_id}")))
    }
}

fn txn_shape(state: &AppState, pdus: Vec<Value>) -> Object {
    let mut o = Object::new();
    o.insert("origin", state.server_name.as_str());
    o.insert("origin_server_ts", Int::saturating(now().as_i64()));
    o.insert("pdus", Value::Array(pdus));
    o
}

async fn get_event(
    State(state): St,
    MPath(event_id): MPath<String>,
    s: Signed,
) -> Result<Response, ApiError> {
    let (_, stored) =
        rooms::served(&state, &event_id).ok_or_else(|| ApiError::not_found("unknown event"))?;
    if stored.rejected {
        return Err(ApiError::not_found("unknown event"));
    }
    server_in_room(&state, &stored.room_id, &s.origin)?;
    let ev = rooms::served_one_to(&state, &s.origin, &event_id)
        .ok_or_else(|| ApiError::not_found("unknown event"))?;
    Ok(json(&txn_shape(&state, vec![Value::Object(ev)])))
}

/// The state before an event and its auth chain, as event IDs.
fn state_and_chain(
    state: &AppState,
    room_id: &str,
    event_id: &str,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let rooms = state.rooms();
    let room = rooms
        .get(room_id)
        .ok_or_else(|| ApiError::not_found("unknown room"))?;
    let st = room
        .state_before_event(event_id)
        .ok_or_else(|| ApiError::not_found("unknown event or its state"))?;
    let ids: Vec<String> = st.values().cloned().collect();
    let chain = room
        .auth_chain_ids(ids.iter().map(String::as_str))
        .into_iter()
        .map(str::to_owned)
        .collect();
    Ok((ids, chain))
}

async fn get_state(
    State(state): St,
    MPath(room_id): MPath<String>,
    s: Signed,
) -> Result<Response, ApiError> {
    server_in_room(&state, &room_id, &s.origin)?;
    let event_id = s
        .param("event_id")
        .ok_or_else(|| ApiError::missing("event_id"))?;
    let (ids, chain) = state_and_chain(&state, &room_id, event_id)?;
    let mut o = Object::new();
    o.insert(
        "pdus",
        Value::Array(served_list(&state, ids.iter().map(String::as_str))),
    );
    o.insert(
        "auth_chain",
        Value::Array(served_list(&state, chain.iter().map(String::as_str))),
    );
    Ok(json(&o))
}

fn strings(ids: &[String]) -> Value {
    Value::Array(ids.iter().map(|i| Value::from(i.as_str())).collect())
}

async fn get_state_ids(
    State(state): St,
    MPath(room_id): MPath<String>,
    s: Signed,
) -> Result<Response, ApiError> {
    server_in_room(&state, &room_id, &s.origin)?;
    let event_id = s
        .param("event_id")
        .ok_or_else(|| ApiError::missing("event_id"))?;
    let (ids, chain) = state_and_chain(&state, &room_id, event_id)?;
    let mut o = Object::new();
    o.insert("pdu_ids", strings(&ids));
    o.insert("auth_chain_ids", strings(&chain));
    Ok(json(&o))
}

async fn backfill(
    State(state): St,
    MPath(room_id): MPath<String>,
    s: Signed,
) -> Result<Response, ApiError> {
    server_in_room(&state, &room_id, &s.origin)?;
    let limit: usize = s
        .param("limit")
        .ok_or_else(|| ApiError::missing("limit"))?
        .parse()
        .map_err(|_| ApiError::invalid("limit is not a number"))?;
    let from = s.all("v");
    if from.is_empty() {
        return Err(ApiError::missing("v"));
    }
    let ids: Vec<String> = {
        let rooms = state.rooms();
        let room = rooms
            .get(&room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        room.backfill_ids(&from, limit.min(100))
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let pdus = rooms::served_to(&state, &s.origin, ids.iter().map(String::as_str));
    Ok(json(&txn_shape(&state, pdus)))
}

fn id_list(o: &Object, field: &'static str) -> Result<Vec<String>, ApiError> {
    o.get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_json(format!("`{field}` must be a list")))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::bad_json(format!("`{field}` must hold strings")))
        })
        .collect()
}

async fn missing_events(
    State(state): St,
    MPath(room_id): MPath<String>,
    s: Signed,
) -> Result<Response, ApiError> {
    server_in_room(&state, &room_id, &s.origin)?;
    let body = s.object()?;
    let earliest = id_list(body, "earliest_events")?;
    let latest = id_list(body, "latest_events")?;
    let limit = body.get("limit").and_then(Value::as_int).unwrap_or(10);
    let min_depth = body.get("min_depth").and_then(Value::as_int).unwrap_or(0);
    let limit = usize::try_from(limit.clamp(0, 20)).unwrap_or(10);
    let ids: Vec<String> = {
        let rooms = state.rooms();
        let room = rooms
            .get(&room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        let e: Vec<&str> = earliest.iter().map(String::as_str).collect();
        let l: Vec<&str> = latest.iter().map(String::as_str).collect();
        room.missing_event_ids(&e, &l, limit, min_depth)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let mut o = Object::new();
    o.insert(
        "events",
        Value::Array(rooms::served_to(
            &state,
            &s.origin,
            ids.iter().map(String::as_str),
        )),
    );
    Ok(json(&o))
}

async fn event_auth(
    State(state): St,
    MPath((room_id, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    server_in_room(&state, &room_id, &s.origin)?;
    let ids: Vec<String> = {
        let rooms = state.rooms();
        let room = rooms
            .get(&room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        if !room.contains(&event_id) {
            return Err(ApiError::not_found("unknown event"));
        }
        room.auth_chain_ids([event_id.as_str()])
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let mut o = Object::new();
    o.insert(
        "auth_chain",
        Value::Array(served_list(&state, ids.iter().map(String::as_str))),
    );
    Ok(json(&o))
}

// ------------------------------------------------------------------------------------------------
// Queries
// ------------------------------------------------------------------------------------------------

async fn query_profile(State(state): St, s: Signed) -> Result<Response, ApiError> {
    let user = s
        .param("user_id")
        .ok_or_else(|| ApiError::missing("user_id"))?;
    if !state.is_local_user(user) {
        return Err(ApiError::invalid("user is not hosted on this server"));
    }
    let (display, _) = state
        .reads()
        .user(user)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let mut o = Object::new();
    match s.param("field") {
        None | Some("displayname") => {
            if let Some(d) = display {
                o.insert("displayname", d);
            }
        }
        Some(_) => {}
    }
    Ok(json(&o))
}

async fn query_directory(_s: Signed) -> ApiError {
    ApiError::not_found("Room alias not found")
}

async fn query_other(_s: Signed) -> ApiError {
    ApiError::unrecognized()
}

async fn not_found_signed(_s: Signed) -> ApiError {
    ApiError::not_found("not found")
}

async fn timestamp_to_event(
    State(state): St,
    MPath(room_id): MPath<String>,
    s: Signed,
) -> Result<Response, ApiError> {
    server_in_room(&state, &room_id, &s.origin)?;
    let ts: i64 = s
        .param("ts")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ApiError::missing("ts"))?;
    // `dir` is required (Synapse: 400 without it).
    let forward = match s.param("dir") {
        Some("f") => true,
        Some("b") => false,
        Some(_) => return Err(ApiError::invalid("dir must be f or b")),
        None => return Err(ApiError::missing("dir")),
    };
    let best = state.reads().event_near_ts(&room_id, ts, forward)?;
    let (id, t) = best.ok_or_else(|| ApiError::not_found("no event found"))?;
    let mut o = Object::new();
    o.insert("event_id", id);
    o.insert("origin_server_ts", Int::saturating(t));
    Ok(json(&o))
}

async fn public_rooms(_s: Signed) -> Response {
    let mut o = Object::new();
    o.insert("chunk", Value::Array(Vec::new()));
    o.insert("total_room_count_estimate", Int::ZERO);
    json(&o)
}

/// 400 for a user who is not ours (Synapse: "not hosted on this homeserver").
fn local_user(state: &AppState, user: &str) -> Result<(), ApiError> {
    if state.is_local_user(user) {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            "M_UNKNOWN",
            format!("{user} is not a user of this server"),
        ))
    }
}

/// Our users have no devices: an empty list, for any user ID of ours (as Synapse answers an
/// unknown one), 400 for another server's.
async fn user_devices(
    State(state): St,
    MPath(user): MPath<String>,
    _s: Signed,
) -> Result<Response, ApiError> {
    local_user(&state, &user)?;
    let mut o = Object::new();
    o.insert("user_id", user.as_str());
    o.insert("stream_id", Int::ZERO);
    o.insert("devices", Value::Array(Vec::new()));
    Ok(json(&o))
}

/// Every user asked about gets an empty map of devices (Synapse lists each one); a user of
/// another server is a 400, as in Synapse.
async fn user_keys_query(State(state): St, s: Signed) -> Result<Response, ApiError> {
    let mut keys = Object::new();
    if let Some(asked) = s.object()?.get("device_keys") {
        let asked = asked
            .as_object()
            .ok_or_else(|| ApiError::bad_json("device_keys is not an object"))?;
        for (user, _) in asked.iter() {
            local_user(&state, user)?;
            keys.insert(user, Object::new());
        }
    }
    let mut o = Object::new();
    o.insert("device_keys", keys);
    Ok(json(&o))
}

async fn user_keys_claim(_s: Signed) -> Response {
    let mut o = Object::new();
    o.insert("one_time_keys", Object::new());
    json(&o)
}

/// `GET /openid/userinfo` (no X-Matrix): we issue no OpenID tokens, so every token is unknown;
/// a request without one is told it is missing, as Synapse does.
async fn openid_userinfo(axum::extract::RawQuery(q): axum::extract::RawQuery) -> ApiError {
    if query_pairs(q.as_deref())
        .iter()
        .any(|(k, _)| k == "access_token")
    {
        ApiError::new(401, "M_UNKNOWN_TOKEN", "unknown OpenID token")
    } else {
        ApiError::new(401, "M_MISSING_TOKEN", "an access_token is required")
    }
}

// ------------------------------------------------------------------------------------------------
// Membership handshakes, as the resident server
// ------------------------------------------------------------------------------------------------

fn check_user_origin(user: &str, origin: &str) -> Result<(), ApiError> {
    let server = mxfed_core::identifiers::user_server_name(user)?;
    if server != origin {
        return Err(ApiError::forbidden(format!(
            "{user} does not belong to {origin}"
        )));
    }
    Ok(())
}

fn incompatible(v: &RoomVersion) -> ApiError {
    let mut e = ApiError::new(
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
        format!("your server does not support room version {}", v.id),
    );
    e.extra = Some(("room_version", v.id.to_owned()));
    e
}

/// Refuses (404, as Synapse) to help a server join a room none of our users is joined to any
/// more: the template would be built on the extremities and state we last saw, the join would
/// reach no one, and a 404 makes the joining server try another resident.
fn still_resident(state: &AppState, room: &mxfed_core::room::Room) -> Result<(), ApiError> {
    if rooms::resident(state, room) {
        Ok(())
    } else {
        Err(ApiError::not_found("Not an active room on this server"))
    }
}

async fn make_membership(
    state: &AppState,
    room_id: &str,
    user: &str,
    s: &Signed,
    membership: &str,
) -> Result<Response, ApiError> {
    check_user_origin(user, &s.origin)?;
    // Wait for changes in progress (an invite being countersigned, say): the joining server may
    // have been told of the invite before we stored it.
    let _guard = state.lock_room(room_id).await;
    let mut content = Object::new();
    content.insert("membership", membership);
    let mut t = EventTemplate {
        room_id: Some(room_id.to_owned()),
        event_type: "m.room.member".into(),
        sender: user.to_owned(),
        state_key: Some(user.to_owned()),
        content,
        redacts: None,
    };
    let built = {
        let rooms = state.rooms();
        let room = rooms
            .get(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        let v = room.version();
        if membership == "join" {
            still_resident(state, room)?;
        }
        if membership != "leave" {
            let mut vers = s.all("ver");
            if vers.is_empty() {
                vers.push("1");
            }
            if !vers.contains(&v.id) || (membership == "knock" && !v.knock) {
                return Err(incompatible(v));
            }
        }
        drop(rooms);
        if membership == "join" {
            if let Some(via) = rooms::restricted_join_via(state, room_id, user)? {
                t.content.insert("join_authorised_via_users_server", via);
            }
        }
        rooms::build_local(state, room_id, &t)?
    };
    let (v, verdict) = {
        let rooms = state.rooms();
        let room = rooms
            .get(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        // The room's verdict without taking the template in (a copy of the room cost O(its
        // events) per request).
        (
            room.version(),
            room.check(&checked(&built.event_id, built.pdu.clone(), false)),
        )
    };
    if verdict != RoomVerdict::Accepted {
        return Err(ApiError::forbidden(format!(
            "you are not allowed to {membership} this room ({})",
            verdict.code().unwrap_or("")
        )));
    }
    let mut ev = built.pdu;
    ev.remove("hashes");
    ev.remove("signatures");
    ev.remove("unsigned");
    let mut o = Object::new();
    o.insert("room_version", v.id);
    o.insert("event", ev);
    Ok(json(&o))
}

async fn make_join(
    State(state): St,
    MPath((room, user)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    make_membership(&state, &room, &user, &s, "join").await
}

async fn make_leave(
    State(state): St,
    MPath((room, user)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    make_membership(&state, &room, &user, &s, "leave").await
}

async fn make_knock(
    State(state): St,
    MPath((room, user)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    if s.all("ver").is_empty() {
        return Err(ApiError::missing("ver"));
    }
    make_membership(&state, &room, &user, &s, "knock").await
}

/// Validates, checks and takes in a `send_join`/`send_leave`/`send_knock` event; returns it.
async fn send_membership(
    state: &Arc<AppState>,
    room_id: &str,
    event_id: &str,
    s: &Signed,
    membership: &str,
) -> Result<Object, ApiError> {
    let v = {
        let rooms = state.rooms();
        let room = rooms
            .get(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        if membership == "join" {
            still_resident(state, room)?;
        }
        room.version()
    };
    let ev = pdu::parse_pdu(&s.body, v)?;
    let content_membership = ev
        .get_object("content")
        .and_then(|c| c.get_str("membership"));
    let sender = ev.get_str("sender").unwrap_or_default();
    if ev.get_str("type") != Some("m.room.member")
        || content_membership != Some(membership)
        || ev.get_str("state_key") != Some(sender)
        || ev.get_str("room_id") != Some(room_id)
    {
        return Err(ApiError::invalid(format!(
            "not a {membership} of its sender in this room"
        )));
    }
    check_user_origin(sender, &s.origin).map_err(|e| ApiError::invalid(e.error))?;
    let computed = event::event_id(&ev, v)?;
    if computed != event_id {
        return Err(ApiError::invalid("the event ID does not match the path"));
    }
    let ev = rooms::countersign_restricted_join(state, ev, v)?;
    let check = rooms::check_events(state, v, vec![ev])
        .await
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no check"))?;
    if check.verdict != Verdict::Accepted {
        let why = match &check.verdict {
            Verdict::Rejected { code, message } => format!("{code}: {message}"),
            _ => "content hash mismatch".into(),
        };
        return Err(ApiError::invalid(why));
    }
    let _guard = state.lock_room(room_id).await;
    let ev = check.event.clone().unwrap_or_default();
    let verdict = {
        let mut rooms = state.rooms();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| ApiError::not_found("unknown room"))?;
        if room.contains(event_id) {
            RoomVerdict::Accepted
        } else {
            // Decided without taking it in (`Room::check`, no copy of the room: any server may
            // send these), then taken in only when accepted.
            let verdict = room.check(&check);
            if verdict == RoomVerdict::Accepted {
                room.receive(&check)
            } else {
                verdict
            }
        }
    };
    if verdict != RoomVerdict::Accepted {
        return Err(ApiError::forbidden(format!(
            "the room's rules refuse this {membership} ({})",
            verdict.code().unwrap_or("")
        )));
    }
    let entry = Entry {
        event_id: event_id.to_owned(),
        event: rooms::Kept::of(&ev),
        verdict,
        outlier: false,
        state_before: None,
        origin: s.origin.clone(),
    };
    // To the other servers in the room; the sender has it.
    let dests = rooms::destinations(state, room_id, &[&s.origin]);
    let (st, room, id, pdu) = (
        Arc::clone(state),
        room_id.to_owned(),
        event_id.to_owned(),
        ev.clone(),
    );
    rooms::blocking(move || rooms::send_stored(&st, &room, &[entry], &[(&id, &pdu)], &dests))
        .await?;
    Ok(ev)
}

async fn send_join_answer(
    state: &Arc<AppState>,
    room_id: &str,
    event_id: &str,
    s: &Signed,
) -> Result<Object, ApiError> {
    let ev = send_membership(state, room_id, event_id, s, "join").await?;
    let (ids, chain) = state_and_chain(state, room_id, event_id)?;
    let mut chain_ids = chain;
    let own_chain: Vec<String> = state
        .rooms()
        .get(room_id)
        .map(|r| {
            r.auth_chain_ids([event_id])
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for id in own_chain {
        if !chain_ids.contains(&id) {
            chain_ids.push(id);
        }
    }
    let servers: Vec<Value> = state
        .rooms()
        .get(room_id)
        .map(|r| r.joined_servers().into_iter().map(Value::from).collect())
        .unwrap_or_default();
    let mut o = Object::new();
    o.insert(
        "state",
        Value::Array(served_list(state, ids.iter().map(String::as_str))),
    );
    o.insert(
        "auth_chain",
        Value::Array(served_list(state, chain_ids.iter().map(String::as_str))),
    );
    o.insert("event", ev);
    o.insert("members_omitted", false);
    o.insert("servers_in_room", Value::Array(servers));
    Ok(o)
}

async fn send_join(
    State(state): St,
    MPath((room, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    Ok(json(&send_join_answer(&state, &room, &event_id, &s).await?))
}

/// The old array form: `[200, {…}]`.
fn v1_shape(o: Object) -> Response {
    let list = Value::Array(vec![Value::from(Int::from(200u32)), Value::Object(o)]);
    json_bytes(list.to_canonical_string().into_bytes())
}

async fn send_join_v1(
    State(state): St,
    MPath((room, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    Ok(v1_shape(
        send_join_answer(&state, &room, &event_id, &s).await?,
    ))
}

async fn send_leave(
    State(state): St,
    MPath((room, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    send_membership(&state, &room, &event_id, &s, "leave").await?;
    Ok(json(&Object::new()))
}

async fn send_leave_v1(
    State(state): St,
    MPath((room, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    send_membership(&state, &room, &event_id, &s, "leave").await?;
    Ok(v1_shape(Object::new()))
}

async fn send_knock(
    State(state): St,
    MPath((room, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    let ev = send_membership(&state, &room, &event_id, &s, "knock").await?;
    let sender = ev.get_str("sender").unwrap_or_default().to_owned();
    // Full PDUs, as in `invite_room_state` (MSC4311; Synapse 1.163 answers so, and its
    // parsing of the old stripped entries is to go).
    let room_state: Vec<Value> = state
        .rooms()
        .get(&room)
        .map(|r| {
            r.prejoin_state(&sender)
                .into_iter()
                .map(|p| Value::Object(p.event.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut o = Object::new();
    o.insert("knock_room_state", Value::Array(room_state));
    Ok(json(&o))
}

async fn invite(
    State(state): St,
    MPath((room_id, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    Ok(json(
        &invite_answer(&state, room_id, event_id, &s, s.object()?).await?,
    ))
}

/// The old invite (room versions 1 and 2): the body is the event, its room state in `unsigned`;
/// the answer is `[200, {"event": …}]`.
async fn invite_v1(
    State(state): St,
    MPath((room_id, event_id)): MPath<(String, String)>,
    s: Signed,
) -> Result<Response, ApiError> {
    let ev = s.object()?.clone();
    let mut body = Object::new();
    body.insert("room_version", "1");
    if let Some(rs) = ev
        .get_object("unsigned")
        .and_then(|u| u.get("invite_room_state"))
    {
        body.insert("invite_room_state", rs.clone());
    }
    body.insert("event", ev);
    Ok(v1_shape(
        invite_answer(&state, room_id, event_id, &s, &body).await?,
    ))
}

async fn invite_answer(
    state: &Arc<AppState>,
    room_id: String,
    event_id: String,
    s: &Signed,
    body: &Object,
) -> Result<Object, ApiError> {
    let version = body.get_str("room_version").unwrap_or("1");
    let v = RoomVersion::get(version).map_err(|e| {
        let mut a = ApiError::new(
            400,
            "M_INCOMPATIBLE_ROOM_VERSION",
            format!("room version {} is not supported", e.0),
        );
        a.extra = Some(("room_version", e.0));
        a
    })?;
    let ev = body
        .get_object("event")
        .cloned()
        .ok_or_else(|| ApiError::bad_json("`event` is missing"))?;
    let sender = ev.get_str("sender").unwrap_or_default().to_owned();
    let target = ev.get_str("state_key").unwrap_or_default().to_owned();
    let content_membership = ev
        .get_object("content")
        .and_then(|c| c.get_str("membership"));
    if ev.get_str("type") != Some("m.room.member")
        || content_membership != Some("invite")
        || ev.get_str("room_id") != Some(room_id.as_str())
    {
        return Err(ApiError::invalid("not an invite into this room"));
    }
    check_user_origin(&sender, &s.origin).map_err(|e| ApiError::invalid(e.error))?;
    if !state.is_local_user(&target) {
        return Err(ApiError::invalid("the invited user is not on this server"));
    }
    let (_, auto_accept) = state
        .reads()
        .user(&target)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    if event::event_id(&ev, v)? != event_id {
        return Err(ApiError::invalid("the event ID does not match the path"));
    }
    let check = rooms::check_events(state, v, vec![ev])
        .await
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no check"))?;
    if check.verdict != Verdict::Accepted {
        return Err(ApiError::invalid(
            "the invite's signature or hash does not verify",
        ));
    }
    let mut ev = check.event.unwrap_or_default();
    let key = state
        .keys
        .first()
        .ok_or_else(|| ApiError::internal("no signing key"))?;
    event::hash_and_sign_event(&mut ev, v, &state.server_name, key)?;
    let room_state = body
        .get("invite_room_state")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let invite = super::store::Invite {
        room_id: room_id.clone(),
        user_id: target.clone(),
        room_version: v.id.to_owned(),
        origin: s.origin.clone(),
        event: ev.to_canonical_string(),
        invite_room_state: room_state.to_canonical_string(),
        status: "pending".into(),
    };
    state.write(|db| db.put_invite(&invite))?;
    state.changed.notify_waiters();
    log(&format!("{target} invited to {room_id} by {sender}"));
    if auto_accept {
        auto_join(
            state.clone(),
            room_id.clone(),
            target.clone(),
            s.origin.clone(),
        );
    }
    let mut o = Object::new();
    o.insert("event", ev);
    Ok(o)
}
