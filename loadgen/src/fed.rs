//! Our side of federation: X-Matrix-signed requests to the target, and the small server the
//! target talks back to (our keys, `/version`, and minimal answers to whatever else it asks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use mxfed_core::canonical::{self, Object, ParseOptions, Value};
use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys::build_server_keys;
use mxfed_core::xmatrix;

/// Milliseconds since the epoch (the host owns the clock; the core takes it as an argument).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Percent-encodes one path segment (room and event IDs contain `!`, `$`, `:`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request ready to go: signed header and body bytes, built before the timed part.
pub struct Prepared {
    /// `PUT`, `GET`, …
    pub method: reqwest::Method,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header value.
    pub auth: String,
    /// The canonical JSON body, if any.
    pub body: Option<Vec<u8>>,
}

/// Our identity as a homeserver and an HTTP client towards the target.
pub struct Fed {
    /// Our server name, `localhost:PORT`.
    pub origin: String,
    /// Our signing key.
    pub key: SigningKey,
    /// The target's server name.
    pub target: String,
    /// The target's base URL.
    pub base: String,
    /// Shared connection pool.
    pub http: reqwest::Client,
}

impl Fed {
    /// A client towards `target` (`host:port`), certificates not checked (loopback test servers
    /// use self-signed ones), no proxies.
    ///
    /// # Errors
    /// When reqwest cannot build its client.
    pub fn new(origin: String, key: SigningKey, target: String) -> Result<Fed, String> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .pool_max_idle_per_host(64)
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let base = format!("https://{target}");
        Ok(Fed {
            origin,
            key,
            target,
            base,
            http,
        })
    }

    /// Signs a request (X-Matrix) without sending it.
    pub fn prepare(&self, method: &str, path: &str, body: Option<&Value>) -> Prepared {
        let req = xmatrix::Request {
            method,
            uri: path,
            origin: &self.origin,
            destination: &self.target,
            content: body,
        };
        let auth = req
            .sign(std::slice::from_ref(&self.key))
            .first()
            .map(xmatrix::XMatrix::to_header_value)
            .unwrap_or_default();
        Prepared {
            method: reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET),
            path: path.to_owned(),
            auth,
            body: body.map(canonical::to_vec),
        }
    }

    /// Sends a prepared request; returns the status and the body.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn send(&self, p: &Prepared) -> Result<(u16, Vec<u8>), String> {
        let mut rb = self
            .http
            .request(p.method.clone(), format!("{}{}", self.base, p.path))
            .header(header::AUTHORIZATION, &p.auth);
        if let Some(b) = &p.body {
            rb = rb
                .header(header::CONTENT_TYPE, "application/json")
                .body(b.clone());
        }
        let r = rb
            .send()
            .await
            .map_err(|e| format!("{} {}: {e:?}", p.method, p.path))?;
        let status = r.status().as_u16();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| format!("{} {}: reading the answer: {e}", p.method, p.path))?;
        Ok((status, bytes.to_vec()))
    }

    /// A signed JSON request that must answer 200 with a JSON object.
    ///
    /// # Errors
    /// Connection errors, other statuses, non-JSON answers.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Object, String> {
        let p = self.prepare(method, path, body);
        let (status, bytes) = self.send(&p).await?;
        if status != 200 {
            return Err(format!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            ));
        }
        canonical::parse_object(&bytes, &ParseOptions::LEGACY)
            .map_err(|e| format!("{method} {path}: answer is not a JSON object: {e}"))
    }
}

/// What the little server answers from.
pub struct Served {
    /// Our signed `/_matrix/key/v2/server` answer.
    keys_json: String,
    /// Our server name (for `/event` answers).
    origin: String,
    /// The PDUs we sent, by event ID, so `/event/{id}` can serve them if the target asks.
    events: Mutex<BTreeMap<String, String>>,
}

impl Served {
    /// Remembers a PDU we sent.
    pub fn remember(&self, event_id: &str, pdu: &Object) {
        if let Ok(mut m) = self.events.lock() {
            m.insert(event_id.to_owned(), pdu.to_canonical_string());
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ok(body: String) -> Response {
    json_response(StatusCode::OK, body)
}

/// Binds `127.0.0.1:0` (or `listen`) and serves our keys over TLS with a fresh self-signed
/// certificate. Returns our server name (`localhost:PORT`) and the shared state.
///
/// # Errors
/// Bind, certificate or key-signing failures.
pub async fn serve(listen: &str, key: &SigningKey) -> Result<(String, Arc<Served>), String> {
    let listener =
        std::net::TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("listener: {e}"))?
        .port();
    let origin = format!("localhost:{port}");
    let valid_until = now_ms().saturating_add(24 * 3600 * 1000);
    let keys = build_server_keys(
        &origin,
        std::slice::from_ref(key),
        &[],
        canonical::Int::saturating(valid_until),
    )
    .map_err(|e| format!("signing our key answer: {e}"))?;
    let served = Arc::new(Served {
        keys_json: keys.to_canonical_string(),
        origin: origin.clone(),
        events: Mutex::new(BTreeMap::new()),
    });
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        pair.cert.pem().into_bytes(),
        pair.key_pair.serialize_pem().into_bytes(),
    )
    .await
    .map_err(|e| format!("TLS config: {e}"))?;
    let app = router(served.clone());
    tokio::spawn(async move {
        if let Err(e) = axum_server::from_tcp_rustls(listener, tls)
            .serve(app.into_make_service())
            .await
        {
            eprintln!("mxfed-loadgen: our server stopped: {e}");
        }
    });
    Ok((origin, served))
}

type St = State<Arc<Served>>;

fn router(s: Arc<Served>) -> Router {
    let f = "/_matrix/federation";
    Router::new()
        .route("/_matrix/key/v2/server", get(keys))
        .route("/_matrix/key/v2/server/{id}", get(keys))
        .route(
            &format!("{f}/v1/version"),
            get(|| async {
                ok(r#"{"server":{"name":"mxfed-loadgen","version":"0.1.0"}}"#.to_owned())
            }),
        )
        // Other servers' events in the room are acknowledged and dropped: we only load the target.
        .route(
            &format!("{f}/v1/send/{{txn}}"),
            put(|| async { ok(r#"{"pdus":{}}"#.to_owned()) }),
        )
        .route(&format!("{f}/v1/event/{{id}}"), get(event))
        .route(
            &format!("{f}/v1/get_missing_events/{{room}}"),
            post(|| async { ok(r#"{"events":[]}"#.to_owned()) }),
        )
        .route(
            &format!("{f}/v1/query/profile"),
            get(|| async { ok("{}".to_owned()) }),
        )
        .route(
            &format!("{f}/v1/user/keys/query"),
            post(|| async { ok(r#"{"device_keys":{}}"#.to_owned()) }),
        )
        .route(
            &format!("{f}/v1/user/devices/{{user}}"),
            get(|Path(user): Path<String>| async move {
                ok(serde_json::json!({"user_id": user, "stream_id": 0, "devices": []}).to_string())
            }),
        )
        .fallback(|| async {
            json_response(
                StatusCode::NOT_FOUND,
                r#"{"errcode":"M_UNRECOGNIZED","error":"not served by mxfed-loadgen"}"#.to_owned(),
            )
        })
        .with_state(s)
}

async fn keys(State(s): St) -> Response {
    ok(s.keys_json.clone())
}

async fn event(State(s): St, Path(id): Path<String>) -> Response {
    let pdu = s.events.lock().ok().and_then(|m| m.get(&id).cloned());
    match pdu {
        Some(p) => ok(format!(
            r#"{{"origin":{},"origin_server_ts":{},"pdus":[{p}]}}"#,
            serde_json::Value::String(s.origin.clone()),
            now_ms()
        )),
        None => json_response(
            StatusCode::NOT_FOUND,
            r#"{"errcode":"M_NOT_FOUND","error":"unknown event"}"#.to_owned(),
        ),
    }
}
