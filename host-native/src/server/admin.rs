//! The admin API that `mxfed admin` talks to: plain HTTP on loopback with a bearer token (the
//! token is in the data directory). Every change to a room goes through the same core calls as
//! federation traffic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mxfed_core::canonical::{self, Object, ParseOptions, Value};
use mxfed_core::room::state_to_json;
use serde::Deserialize;

use super::error::ApiError;
use super::fed::{json, read_body, MPath, MQuery};
use super::rooms;
use super::store::{InviteChange, Reads as _};
use super::AppState;

type St = State<Arc<AppState>>;

/// The admin router (bearer-token protected).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/users", post(create_user))
        .route("/admin/v1/users/{user}/auto_accept", post(set_auto_accept))
        .route("/admin/v1/rooms", post(create_room).get(list_rooms))
        .route("/admin/v1/rooms/{room}/invite", post(invite))
        .route("/admin/v1/rooms/{room}/join", post(join))
        .route("/admin/v1/rooms/{room}/leave", post(leave))
        .route("/admin/v1/rooms/{room}/send", post(send))
        .route("/admin/v1/rooms/{room}/send_batch", post(send_batch))
        .route(
            "/admin/v1/rooms/{room}/state",
            post(state_set).get(room_state),
        )
        .route("/admin/v1/rooms/{room}/redact", post(redact))
        .route("/admin/v1/rooms/{room}/timeline", get(timeline))
        .route("/admin/v1/rooms/{room}/edus", get(edus))
        .route("/admin/v1/rooms/{room}/typing", post(typing))
        .route("/admin/v1/rooms/{room}/receipt", post(receipt))
        .route("/admin/v1/rooms/{room}/wait", get(wait))
        .route("/admin/v1/query/profile", get(query_profile))
        .route("/admin/v1/query/directory", get(query_directory))
        .route("/admin/v1/invites", get(invites))
        .route("/admin/v1/invites/{room}/accept", post(accept_invite))
        .fallback(|| async { ApiError::unrecognized() })
        .method_not_allowed_fallback(super::fed::method_not_allowed)
        .layer(axum::middleware::from_fn(super::detached))
        .layer(axum::middleware::from_fn_with_state(state.clone(), bearer))
        .with_state(state)
}

async fn bearer(
    State(state): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.admin_token.as_bytes()));
    if !ok {
        return ApiError::new(401, "M_UNKNOWN_TOKEN", "missing or wrong admin token")
            .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn body_json(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Value, ApiError> {
    let bytes = read_body(headers, body, &state.config.limits).await?;
    if bytes.is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(400, "M_NOT_JSON", e.to_string()))
}

/// The boolean `k` of `v`, if it is one.
fn flag(v: &serde_json::Value, k: &str) -> Option<bool> {
    v.get(k).and_then(serde_json::Value::as_bool)
}

fn field<'a>(v: &'a serde_json::Value, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ApiError::missing(k))
}

/// The local user named by `as` (a local part or a full ID), which must exist.
fn acting_user(state: &AppState, v: &serde_json::Value) -> Result<String, ApiError> {
    let user = state.user_id(field(v, "as")?);
    if !state.has_local_user(&user)? {
        return Err(ApiError::not_found(format!("no local user {user}")));
    }
    Ok(user)
}

fn ok_json(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn jsonl(lines: Vec<String>) -> Response {
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}

async fn status(State(state): St) -> Response {
    let rooms = state.rooms().len();
    ok_json(serde_json::json!({
        "server_name": state.server_name,
        "rooms": rooms,
        "dev": state.config.dev,
    }))
}

async fn create_user(
    State(state): St,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = state.user_id(field(&v, "name")?);
    mxfed_core::identifiers::user_server_name(&user)?;
    if !state.is_local_user(&user) {
        return Err(ApiError::invalid(format!(
            "{user} is not a user of this server"
        )));
    }
    // Today's grammar for the users we make (other servers' historical IDs are still read).
    mxfed_core::identifiers::validate_new_user_id(&user)
        .map_err(|e| ApiError::new(400, "M_INVALID_USERNAME", format!("{e} ({})", e.code())))?;
    let display = v.get("display_name").and_then(serde_json::Value::as_str);
    let auto = flag(&v, "auto_accept").unwrap_or(false);
    if !state.write(|db| db.create_user(&user, display, auto))? {
        return Err(ApiError::new(
            400,
            "M_USER_IN_USE",
            format!("{user} already exists"),
        ));
    }
    Ok(ok_json(serde_json::json!({ "user_id": user })))
}

async fn set_auto_accept(
    State(state): St,
    MPath(user): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let on = flag(&v, "enabled").ok_or_else(|| ApiError::missing("enabled"))?;
    let user = state.user_id(&user);
    if !state.write(|db| db.set_auto_accept(&user, on))? {
        return Err(ApiError::not_found(format!("no local user {user}")));
    }
    Ok(ok_json(
        serde_json::json!({ "user_id": user, "auto_accept": on }),
    ))
}

async fn create_room(
    State(state): St,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let version = v
        .get("version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("12")
        .to_owned();
    let st = Arc::clone(&state);
    let room_id = rooms::blocking(move || rooms::create_room(&st, &user, &version)).await?;
    Ok(ok_json(serde_json::json!({ "room_id": room_id })))
}

async fn list_rooms(State(state): St) -> Response {
    let list: Vec<serde_json::Value> = state
        .rooms()
        .iter()
        .map(|(id, r)| serde_json::json!({"room_id": id, "room_version": r.version().id}))
        .collect();
    ok_json(serde_json::json!({ "rooms": list }))
}

fn event_id_answer(id: String) -> Response {
    ok_json(serde_json::json!({ "event_id": id }))
}

fn membership_content(state: &AppState, user: &str, membership: &str) -> Result<Object, ApiError> {
    let mut c = Object::new();
    c.insert("membership", membership);
    if membership == "join" {
        if let Some((Some(d), _)) = state.reads().user(user)? {
            c.insert("displayname", d);
        }
    }
    Ok(c)
}

async fn invite(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let target = field(&v, "user_id")?.to_owned();
    mxfed_core::identifiers::user_server_name(&target)?;
    let _guard = state.lock_room(&room_id).await;
    if !state.is_local_user(&target) {
        let id = rooms::invite_remote(&state, &room_id, &user, &target).await?;
        return Ok(event_id_answer(id));
    }
    let (_, auto) = state
        .reads()
        .user(&target)?
        .ok_or_else(|| ApiError::not_found(format!("no local user {target}")))?;
    let content = membership_content(&state, &target, "invite")?;
    let version = state
        .rooms()
        .get(&room_id)
        .map(|r| r.version().id.to_owned())
        .unwrap_or_default();
    // The invite event and its row in one commit: a crash or a failed write cannot leave the
    // event stored without the row (an invite then only `room join` could take up).
    let (origin, room, invitee) = (state.server_name.clone(), room_id.clone(), target.clone());
    let id = rooms::send_local_blocking_with(
        &state,
        &room_id,
        rooms::template(
            Some(&room_id),
            "m.room.member",
            &user,
            Some(&target),
            content,
        ),
        move |built| {
            vec![InviteChange::Put(super::store::Invite {
                room_id: room,
                user_id: invitee,
                room_version: version,
                origin,
                event: built.pdu.to_canonical_string(),
                invite_room_state: "[]".into(),
                status: "pending".into(),
            })]
        },
    )
    .await?;
    if auto {
        let content = membership_content(&state, &target, "join")?;
        let accepted = InviteChange::status(&room_id, &target, "accepted");
        rooms::send_local_blocking_with(
            &state,
            &room_id,
            rooms::template(
                Some(&room_id),
                "m.room.member",
                &target,
                Some(&target),
                content,
            ),
            move |_| vec![accepted],
        )
        .await?;
    }
    Ok(event_id_answer(id))
}

async fn do_join(
    state: &Arc<AppState>,
    room_id: &str,
    user: &str,
    via: &[String],
) -> Result<String, ApiError> {
    if rooms::resident_in(state, room_id) {
        let content = membership_content(state, user, "join")?;
        let _guard = state.lock_room(room_id).await;
        let accepted = InviteChange::status(room_id, user, "accepted");
        let id = rooms::send_local_blocking_with(
            state,
            room_id,
            rooms::template(Some(room_id), "m.room.member", user, Some(user), content),
            move |_| vec![accepted],
        )
        .await?;
        return Ok(id);
    }
    let inviter = state
        .reads()
        .invites(user)?
        .into_iter()
        .find(|i| i.room_id == room_id)
        .map(|i| i.origin);
    let mut last = ApiError::invalid("no server to join through (give --via)");
    for server in rooms::join_candidates(via, room_id, inviter.as_deref()) {
        if server == state.server_name {
            continue;
        }
        match rooms::remote_membership(state, room_id, user, &server, "join").await {
            Ok(id) => return Ok(id),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn join(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let via: Vec<String> = match v.get("via") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    // Checked before any of them is asked: a request to "" or to a room ID that is none is no
    // failure of a remote server.
    mxfed_core::identifiers::validate_room_id(&room_id)?;
    for server in &via {
        mxfed_core::identifiers::validate_server_name(server)
            .map_err(|e| ApiError::invalid(format!("via: {e} ({})", e.code())))?;
    }
    Ok(event_id_answer(
        do_join(&state, &room_id, &user, &via).await?,
    ))
}

async fn accept_invite(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let status = state
        .reads()
        .invites(&user)?
        .into_iter()
        .find(|i| i.room_id == room_id)
        .map(|i| i.status);
    match status.as_deref() {
        None => {
            return Err(ApiError::not_found(format!(
                "{user} has no invite to {room_id}"
            )))
        }
        Some("rescinded") => {
            return Err(ApiError::not_found(format!(
                "{user}'s invite to {room_id} was withdrawn"
            )))
        }
        Some(_) => {}
    }
    Ok(event_id_answer(
        do_join(&state, &room_id, &user, &[]).await?,
    ))
}

async fn leave(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    if rooms::resident_in(&state, &room_id) {
        let content = membership_content(&state, &user, "leave")?;
        let _guard = state.lock_room(&room_id).await;
        let rejected = InviteChange::status(&room_id, &user, "rejected");
        let id = rooms::send_local_blocking_with(
            &state,
            &room_id,
            rooms::template(Some(&room_id), "m.room.member", &user, Some(&user), content),
            move |_| vec![rejected],
        )
        .await?;
        return Ok(event_id_answer(id));
    }
    // Not in the room: reject the invite through the inviting server.
    let invite = state
        .reads()
        .invites(&user)?
        .into_iter()
        .find(|i| i.room_id == room_id)
        .ok_or_else(|| {
            ApiError::not_found(format!("{user} is not in {room_id} and has no invite"))
        })?;
    let id = rooms::remote_membership(&state, &room_id, &user, &invite.origin, "leave").await?;
    state.write(|db| db.set_invite_status(&room_id, &user, "rejected"))?;
    Ok(event_id_answer(id))
}

async fn send(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let mut content = Object::new();
    content.insert("msgtype", "m.text");
    content.insert("body", field(&v, "text")?);
    let t = message(&room_id, user, content);
    let id = super::local::send(&state, &room_id, vec![t])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("no event"))?;
    Ok(event_id_answer(id))
}

fn message(room_id: &str, sender: String, content: Object) -> mxfed_core::event::EventTemplate {
    mxfed_core::event::EventTemplate {
        room_id: Some(room_id.to_owned()),
        event_type: "m.room.message".to_owned(),
        sender,
        state_key: None,
        content,
        redacts: None,
    }
}

/// `{"messages":[{"as","text"},…]}`: several `m.room.message` events (each on the previous
/// one), stored and queued with one fsync together with the other sends waiting at the same
/// time (`local`). If the room's rules refuse one, the ones before it are kept and sent and the
/// answer is 403.
async fn send_batch(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let list = v
        .get("messages")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| ApiError::missing("messages"))?;
    let mut templates = Vec::with_capacity(list.len());
    for m in list {
        let mut content = Object::new();
        content.insert("msgtype", "m.text");
        content.insert("body", field(m, "text")?);
        templates.push(message(&room_id, acting_user(&state, m)?, content));
    }
    let ids = super::local::send(&state, &room_id, templates).await?;
    Ok(ok_json(serde_json::json!({ "event_ids": ids })))
}

async fn state_set(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let kind = field(&v, "type")?.to_owned();
    let key = field(&v, "state_key")?.to_owned();
    let raw = v
        .get("content")
        .ok_or_else(|| ApiError::missing("content"))?
        .to_string();
    let content = canonical::parse_object(raw.as_bytes(), &ParseOptions::STRICT)
        .map_err(|e| ApiError::bad_json(format!("content: {e}")))?;
    let _guard = state.lock_room(&room_id).await;
    let id = rooms::send_local_blocking(
        &state,
        &room_id,
        rooms::template(Some(&room_id), &kind, &user, Some(&key), content),
    )
    .await?;
    Ok(event_id_answer(id))
}

async fn redact(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let target = field(&v, "event_id")?.to_owned();
    // A redaction names an event of its room: an ID of the room version's format.
    let version = state
        .rooms()
        .get(&room_id)
        .map(|r| r.version())
        .ok_or_else(|| unknown_room(&room_id))?;
    mxfed_core::identifiers::validate_event_id(&target, version)?;
    let mut content = Object::new();
    if let Some(r) = v.get("reason").and_then(serde_json::Value::as_str) {
        content.insert("reason", r);
    }
    let _guard = state.lock_room(&room_id).await;
    let id = rooms::send_local_blocking(&state, &room_id, {
        let mut t = rooms::template(Some(&room_id), "m.room.redaction", &user, None, content);
        t.redacts = Some(target.clone());
        t
    })
    .await?;
    Ok(event_id_answer(id))
}

fn unknown_room(room_id: &str) -> ApiError {
    ApiError::not_found(format!("unknown room {room_id}"))
}

fn known_room(state: &AppState, room_id: &str) -> Result<(), ApiError> {
    if state.rooms().contains_key(room_id) {
        Ok(())
    } else {
        Err(unknown_room(room_id))
    }
}

/// The room's timeline ([`Reads::timeline`](super::store::Reads::timeline)) as canonical JSON
/// lines, redacted where a redaction applies; the last `limit` events when given.
fn timeline_lines(
    state: &AppState,
    room_id: &str,
    limit: Option<usize>,
) -> Result<Vec<String>, ApiError> {
    let rows = state.admin_reads().timeline(room_id, limit)?;
    Ok(rows
        .iter()
        // The row has the JSON: no second read by ID.
        .filter_map(|e| rooms::served_row(state, e))
        .map(|ev| ev.to_canonical_string())
        .collect())
}

/// `?limit=N`: only the last N events of the timeline.
#[derive(Deserialize)]
struct TimelineQuery {
    limit: Option<usize>,
}

async fn timeline(
    State(state): St,
    MPath(room_id): MPath<String>,
    MQuery(q): MQuery<TimelineQuery>,
) -> Result<Response, ApiError> {
    known_room(&state, &room_id)?;
    // A whole timeline can be long to read: not on the runtime's threads.
    let lines = rooms::blocking(move || timeline_lines(&state, &room_id, q.limit)).await?;
    Ok(jsonl(lines))
}

async fn room_state(State(state): St, MPath(room_id): MPath<String>) -> Result<Response, ApiError> {
    let st = state
        .rooms()
        .get(&room_id)
        .map(|r| state_to_json(&r.current_state()))
        .ok_or_else(|| unknown_room(&room_id))?;
    Ok(json(&st))
}

async fn edus(State(state): St, MPath(room_id): MPath<String>) -> Result<Response, ApiError> {
    known_room(&state, &room_id)?;
    let rows = state.admin_reads().edus(&room_id)?;
    let lines = rows
        .into_iter()
        .map(|(origin, kind, content, ts)| {
            // As deeply nested as the transaction it came in may be.
            let opts = ParseOptions {
                max_depth: mxfed_core::transaction::MAX_DEPTH,
                ..ParseOptions::LEGACY
            };
            let content = canonical::parse_object(content.as_bytes(), &opts).unwrap_or_default();
            let mut o = Object::new();
            o.insert("origin", origin);
            o.insert("edu_type", kind);
            o.insert("content", content);
            o.insert("received_ts", mxfed_core::canonical::Int::saturating(ts));
            o.to_canonical_string()
        })
        .collect();
    Ok(jsonl(lines))
}

/// Hands an EDU to every other server with a member in the room, after checking that `user`
/// is joined (the receiving servers drop EDUs of non-members anyway; telling the caller is
/// kinder).
fn send_room_edu(
    state: &Arc<AppState>,
    room_id: &str,
    user: &str,
    edu: &mxfed_core::edu::Edu,
) -> Result<Vec<String>, ApiError> {
    let servers = {
        let rooms = state.rooms();
        let room = rooms.get(room_id).ok_or_else(|| unknown_room(room_id))?;
        if room.membership(user).as_deref() != Some("join") {
            return Err(ApiError::forbidden(format!(
                "{user} is not joined to {room_id}"
            )));
        }
        room.joined_servers()
    };
    let dests: Vec<String> = servers
        .into_iter()
        .filter(|s| *s != state.server_name)
        .collect();
    for dest in &dests {
        state.outbound.queue_edu(state, dest, edu.clone());
    }
    Ok(dests)
}

fn typing_edu(room_id: &str, user: &str, on: bool) -> Result<mxfed_core::edu::Edu, ApiError> {
    let t = mxfed_core::edu::Typing::new(room_id, user, on)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(mxfed_core::edu::Edu::Typing(t))
}

/// The pending `timeout_ms` stops of `typing` requests: per (room, user), the one whose deadline
/// is the latest request's. A renewal while typing replaces the deadline (Synapse extends it),
/// and any later request without a timeout (or a stop) cancels it, so a timer only stops typing
/// that no later request has spoken for.
#[derive(Debug, Default)]
pub struct TypingTimers {
    /// (room, user) → the generation of its pending stop; absent when none is pending.
    pending: std::sync::Mutex<BTreeMap<(String, String), u64>>,
    /// The last generation handed out.
    generation: std::sync::atomic::AtomicU64,
}

impl TypingTimers {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), u64>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A typing request with a timeout: its stop replaces any pending one. Returns the
    /// generation to hand to [`TypingTimers::expire`] when the timeout ends.
    pub fn arm(&self, room_id: &str, user: &str) -> u64 {
        let g = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.pending()
            .insert((room_id.to_owned(), user.to_owned()), g);
        g
    }

    /// A typing request without a timeout (or a stop): no pending stop any more.
    pub fn disarm(&self, room_id: &str, user: &str) {
        self.pending()
            .remove(&(room_id.to_owned(), user.to_owned()));
    }

    /// The timeout of request `generation` ended: whether typing must stop now, i.e. no later
    /// request came for (room, user). Forgets it when so.
    pub fn expire(&self, room_id: &str, user: &str, generation: u64) -> bool {
        let mut pending = self.pending();
        let key = (room_id.to_owned(), user.to_owned());
        if pending.get(&key) == Some(&generation) {
            pending.remove(&key);
            true
        } else {
            false
        }
    }
}

/// `m.typing` to the room's other servers. With `timeout_ms`, a `typing: false` follows after
/// that long unless another typing request for the user came meanwhile ([`TypingTimers`]; the
/// receivers also expire it on their own: Synapse after 60 s).
async fn typing(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let on = flag(&v, "typing").unwrap_or(true);
    let edu = typing_edu(&room_id, &user, on)?;
    let timeout = match (on, v.get("timeout_ms").and_then(serde_json::Value::as_u64)) {
        (true, Some(ms)) => Some((ms, typing_edu(&room_id, &user, false)?)),
        _ => None,
    };
    let (generation, sent) = send_typing(&state.typing, &room_id, &user, timeout.is_some(), || {
        send_room_edu(&state, &room_id, &user, &edu)
    });
    // The timer runs even when sending failed: this request superseded the earlier stop.
    if let (Some((ms, stop)), Some(generation)) = (timeout, generation) {
        let state = state.clone();
        let room_id = room_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            // A later request renewed (or ended) typing: its deadline, not this one, counts.
            if state.typing.expire(&room_id, &user, generation) {
                // The user may have left meanwhile; then there is nothing to stop.
                let _ = send_room_edu(&state, &room_id, &user, &stop);
            }
        });
    }
    Ok(ok_json(serde_json::json!({ "destinations": sent? })))
}

/// Sends a typing EDU (`send`) with the user's pending stop updated first: armed when the
/// request has a timeout (its generation is returned, for [`TypingTimers::expire`]), cleared
/// when it has none. Updated after sending, an earlier request's stop expiring while this one
/// is sent would still count and stop the typing just renewed.
fn send_typing<T>(
    timers: &TypingTimers,
    room_id: &str,
    user: &str,
    timed: bool,
    send: impl FnOnce() -> T,
) -> (Option<u64>, T) {
    let generation = if timed {
        Some(timers.arm(room_id, user))
    } else {
        timers.disarm(room_id, user);
        None
    };
    (generation, send())
}

/// `m.receipt` (`m.read` unless `receipt_type` says otherwise) for an event of the room, to the
/// room's other servers.
async fn receipt(
    State(state): St,
    MPath(room_id): MPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v = body_json(&state, &headers, body).await?;
    let user = acting_user(&state, &v)?;
    let event_id = field(&v, "event_id")?.to_owned();
    let rtype = v
        .get("receipt_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("m.read")
        .to_owned();
    // Private read receipts stay on the user's own server: the spec never federates them.
    if rtype == "m.read.private" {
        return Err(ApiError::invalid(
            "m.read.private receipts are never sent over federation",
        ));
    }
    let known = state
        .rooms()
        .get(&room_id)
        .is_some_and(|r| r.contains(&event_id));
    if !known {
        return Err(ApiError::not_found(format!(
            "no event {event_id} in {room_id}"
        )));
    }
    let ts = i64::try_from(super::now().as_millis()).unwrap_or(i64::MAX);
    let entry = mxfed_core::edu::ReceiptEntry::new(&room_id, &rtype, &user, &event_id, ts, None)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let edu = mxfed_core::edu::Edu::Receipt(mxfed_core::edu::Receipt::from_entries([entry]));
    let dests = send_room_edu(&state, &room_id, &user, &edu)?;
    Ok(ok_json(serde_json::json!({ "destinations": dests })))
}

#[derive(Deserialize)]
struct ProfileQuery {
    user_id: String,
    field: Option<String>,
}

/// `GET /_matrix/federation/v1/query/profile` at the user's server; the answer as received.
async fn query_profile(
    State(state): St,
    MQuery(q): MQuery<ProfileQuery>,
) -> Result<Response, ApiError> {
    let server = mxfed_core::identifiers::user_server_name(&q.user_id)?;
    let mut path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        super::client::encode_segment(&q.user_id)
    );
    if let Some(f) = &q.field {
        path.push_str(&format!("&field={}", super::client::encode_segment(f)));
    }
    let answer = state.client.json(server, "GET", &path, None).await?;
    Ok(json(&answer))
}

#[derive(Deserialize)]
struct DirectoryQuery {
    room_alias: String,
}

/// `GET /_matrix/federation/v1/query/directory` at the alias's server (`#local:server`); the
/// answer as received.
async fn query_directory(
    State(state): St,
    MQuery(q): MQuery<DirectoryQuery>,
) -> Result<Response, ApiError> {
    let server = q
        .room_alias
        .strip_prefix('#')
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, server)| server)
        .filter(|s| mxfed_core::identifiers::validate_server_name(s).is_ok())
        .ok_or_else(|| ApiError::invalid(format!("not a room alias: {}", q.room_alias)))?;
    let path = format!(
        "/_matrix/federation/v1/query/directory?room_alias={}",
        super::client::encode_segment(&q.room_alias)
    );
    let answer = state.client.json(server, "GET", &path, None).await?;
    Ok(json(&answer))
}

#[derive(Deserialize)]
struct AsQuery {
    #[serde(rename = "as")]
    user: String,
}

async fn invites(State(state): St, MQuery(q): MQuery<AsQuery>) -> Result<Response, ApiError> {
    let user = state.user_id(&q.user);
    let list = state.admin_reads().invites(&user)?;
    let lines = list
        .into_iter()
        .map(|i| {
            let ev = canonical::parse_object(i.event.as_bytes(), &ParseOptions::LEGACY)
                .unwrap_or_default();
            let mut o = Object::new();
            o.insert("room_id", i.room_id);
            o.insert("user_id", i.user_id);
            o.insert("room_version", i.room_version);
            o.insert("origin", i.origin);
            o.insert("sender", ev.get_str("sender").unwrap_or_default());
            o.insert("status", i.status);
            o.to_canonical_string()
        })
        .collect();
    Ok(jsonl(lines))
}

#[derive(Deserialize)]
struct WaitQuery {
    event_id: Option<String>,
    joined: Option<String>,
    timeout_ms: Option<u64>,
}

/// Waits (up to `timeout_ms`, default 30 s) until an event is in the room's timeline or a user
/// is joined, and stored: tests and scripts use it instead of sleeping.
async fn wait(
    State(state): St,
    MPath(room_id): MPath<String>,
    MQuery(q): MQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    let deadline = super::deadline_in(Duration::from_millis(q.timeout_ms.unwrap_or(30_000)));
    loop {
        let notified = state.changed.notified();
        // What the room says, then whether the events it rests on are stored: a room takes an
        // event in before the commit that makes it durable, and whoever waits (then perhaps
        // kills the server) must find it after a restart too.
        let durable: Option<Vec<String>> = {
            let rooms = state.rooms();
            rooms.get(&room_id).and_then(|room| {
                let mut ids = Vec::new();
                if let Some(id) = &q.event_id {
                    if !(room.contains(id) && (!room.is_outlier(id) || room.is_backfilled(id))) {
                        return None;
                    }
                    ids.push(id.clone());
                }
                if let Some(u) = &q.joined {
                    // A join of ours through another server is stored before the history
                    // before it is fetched: "joined" once that history is in too, as the
                    // `room join` command answers.
                    if room.membership(u).as_deref() != Some("join")
                        || rooms::is_joining(&state, &room_id, u)
                    {
                        return None;
                    }
                    let key = ("m.room.member".to_owned(), u.clone());
                    ids.extend(room.current_state_shared().get(&key).cloned());
                }
                Some(ids)
            })
        };
        let done = durable.is_some_and(|ids| {
            let db = state.reads();
            ids.iter().all(|id| db.has_event(id))
        });
        if done {
            return Ok(ok_json(serde_json::json!({ "ok": true })));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Err(ApiError::new(408, "M_UNKNOWN", "timed out waiting"));
        }
    }
}

/// A JSON value of the admin API as a canonical object, for printing.
pub fn value_of(v: &serde_json::Value) -> Option<Value> {
    canonical::parse(v.to_string().as_bytes(), &ParseOptions::LEGACY).ok()
}

#[cfg(test)]
mod tests {
    use super::TypingTimers;

    /// A renewal replaces the deadline: the first timer does not stop typing, the renewal's
    /// does; a request without a timeout cancels the pending stop; keys are independent.
    #[test]
    fn typing_renewal_extends_the_deadline() {
        let t = TypingTimers::default();
        let first = t.arm("!r", "@u");
        let other = t.arm("!r", "@v");
        let renewed = t.arm("!r", "@u");
        assert!(
            !t.expire("!r", "@u", first),
            "renewed: the first deadline is void"
        );
        assert!(
            t.expire("!r", "@u", renewed),
            "the renewal's deadline stops it"
        );
        assert!(!t.expire("!r", "@u", renewed), "once");
        assert!(t.expire("!r", "@v", other));

        let timed = t.arm("!r", "@u");
        t.disarm("!r", "@u");
        assert!(
            !t.expire("!r", "@u", timed),
            "a later request without a timeout"
        );
        assert!(
            t.pending().is_empty(),
            "nothing kept once no stop is pending"
        );
    }

    /// The pending stop is updated before the EDU is sent: an earlier request's stop expiring
    /// while a renewal (or a request without a timeout) is being sent finds itself superseded.
    #[test]
    fn an_earlier_stop_expiring_during_a_send_is_void() {
        let t = TypingTimers::default();
        let earlier = t.arm("!r", "@u");
        let (renewal, stopped) =
            super::send_typing(&t, "!r", "@u", true, || t.expire("!r", "@u", earlier));
        assert!(
            !stopped,
            "the earlier stop counted during the renewal's send"
        );
        assert!(
            renewal.is_some_and(|g| t.expire("!r", "@u", g)),
            "the renewal's stop counts"
        );

        let earlier = t.arm("!r", "@u");
        let (none, stopped) =
            super::send_typing(&t, "!r", "@u", false, || t.expire("!r", "@u", earlier));
        assert!(none.is_none() && !stopped);
        assert!(t.pending().is_empty());
    }
}
