//! Outbound federation requests: server discovery (explicit port or IP literal, else
//! `/.well-known/matrix/server`, else port 8448), the outbound IP policy, and X-Matrix signing
//! with our keys through `mxfed_core::xmatrix::Request::sign`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mxfed_core::canonical::{self, Object, Value};
use mxfed_core::discovery::{self, Step};
use mxfed_core::keys::SigningKey;
use mxfed_core::xmatrix::Request;

use super::config::IpPolicy;
use super::error::ApiError;

/// How long a well-known answer (or its absence) is trusted.
const WELL_KNOWN_TTL: Duration = Duration::from_secs(3600);

/// Why an outbound request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No HTTP answer (DNS, connect, TLS, refused by the IP policy).
    Network(String),
    /// No answer in time.
    Timeout,
    /// An HTTP answer other than 200, with its body.
    Status(u16, Vec<u8>),
    /// A 200 whose body is not a JSON object.
    BadBody(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Network(e) => write!(f, "network error: {e}"),
            FetchError::Timeout => write!(f, "timed out"),
            FetchError::Status(s, b) => {
                write!(
                    f,
                    "HTTP {s}: {}",
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )
            }
            FetchError::BadBody(e) => write!(f, "bad answer: {e}"),
        }
    }
}

impl From<FetchError> for ApiError {
    fn from(e: FetchError) -> ApiError {
        match e {
            // Pass a remote Matrix refusal on as it was (403 stays 403, 404 stays 404…).
            FetchError::Status(s @ 400..=499, body) => {
                let o = canonical::parse_object(&body, &canonical::ParseOptions::LEGACY).ok();
                let errcode = o
                    .as_ref()
                    .and_then(|o| o.get_str("errcode"))
                    .and_then(known_errcode)
                    .unwrap_or("M_UNKNOWN");
                let msg = o
                    .as_ref()
                    .and_then(|o| o.get_str("error"))
                    .unwrap_or("refused")
                    .to_owned();
                ApiError::new(s, errcode, format!("remote server: {msg}"))
            }
            other => ApiError::remote(other),
        }
    }
}

/// Our static copy of a remote errcode (ApiError holds `&'static str`).
fn known_errcode(s: &str) -> Option<&'static str> {
    [
        "M_FORBIDDEN",
        "M_NOT_FOUND",
        "M_INVALID_PARAM",
        "M_BAD_JSON",
        "M_NOT_JSON",
        "M_UNAUTHORIZED",
        "M_INCOMPATIBLE_ROOM_VERSION",
        "M_UNSUPPORTED_ROOM_VERSION",
        "M_UNRECOGNIZED",
        "M_LIMIT_EXCEEDED",
        "M_TOO_LARGE",
        "M_UNABLE_TO_GRANT_JOIN",
        "M_UNABLE_TO_AUTHORISE_JOIN",
        "M_MISSING_PARAM",
    ]
    .into_iter()
    .find(|c| *c == s)
}

/// Filters resolved addresses through the IP policy: reqwest connects only to what is left.
struct PolicyResolver {
    policy: IpPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host}: no address allowed by the outbound IP policy").into());
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// The outbound HTTP client of the server.
pub struct FedClient {
    http: reqwest::Client,
    policy: IpPolicy,
    server_name: String,
    keys: Vec<SigningKey>,
    well_known: Mutex<BTreeMap<String, (String, Instant)>>,
}

impl FedClient {
    /// A client signing as `server_name` with `keys`.
    ///
    /// # Errors
    /// When the TLS stack cannot be set up.
    pub fn new(
        server_name: &str,
        keys: Vec<SigningKey>,
        policy: IpPolicy,
        verify_tls: bool,
        timeout: Duration,
    ) -> Result<FedClient, String> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(!verify_tls)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mxfed/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(FedClient {
            http,
            policy,
            server_name: server_name.to_owned(),
            keys,
            well_known: Mutex::new(BTreeMap::new()),
        })
    }

    /// Where to connect for a server name (`host:port`, without scheme): the core's discovery
    /// steps, with the well-known answer fetched here and cached for an hour.
    async fn resolve(&self, server: &str) -> Result<String, FetchError> {
        let url = match discovery::resolve(server) {
            Step::Connect(t) => return Ok(t.authority()),
            Step::WellKnown { url } => url,
            _ => return Err(FetchError::Network(format!("cannot resolve {server}"))),
        };
        let cached = self
            .well_known
            .lock()
            .ok()
            .and_then(|m| m.get(server).cloned());
        if let Some((target, at)) = cached {
            if at.elapsed() < WELL_KNOWN_TTL {
                return Ok(target);
            }
        }
        let body = match self.raw(reqwest::Method::GET, &url, None, None).await {
            Ok((200, body)) => Some(body),
            _ => None,
        };
        let target = discovery::after_well_known(server, body.as_deref()).authority();
        if let Ok(mut m) = self.well_known.lock() {
            m.insert(server.to_owned(), (target.clone(), Instant::now()));
        }
        Ok(target)
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        url: &str,
        auth: Option<Vec<String>>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        if let Some(ip) = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            if !self.policy.permits(ip) {
                return Err(FetchError::Network(format!(
                    "{ip} is blocked by the outbound IP policy"
                )));
            }
        }
        let mut req = self.http.request(method, url);
        for a in auth.unwrap_or_default() {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Network(error_chain(&e))
            }
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Network(error_chain(&e))
            }
        })?;
        Ok((status, bytes.to_vec()))
    }

    /// Sends a request to `destination`, signed with X-Matrix when `signed`. `path` is the path
    /// and query exactly as put on the request line (and as signed). Any status is returned.
    ///
    /// # Errors
    /// [`FetchError::Network`] or [`FetchError::Timeout`].
    pub async fn request(
        &self,
        destination: &str,
        method: &str,
        path: &str,
        body: Option<&Object>,
        signed: bool,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let target = self.resolve(destination).await?;
        let content = body.map(|b| Value::Object(b.clone()));
        let auth = signed.then(|| {
            Request {
                method,
                uri: path,
                origin: &self.server_name,
                destination,
                content: content.as_ref(),
            }
            .sign(&self.keys)
            .iter()
            .map(|h| h.to_header_value())
            .collect()
        });
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| FetchError::Network(e.to_string()))?;
        let bytes = body.map(|b| b.to_canonical_string().into_bytes());
        self.raw(m, &format!("https://{target}{path}"), auth, bytes)
            .await
    }

    /// A signed request whose answer must be 200 with a JSON object.
    ///
    /// # Errors
    /// Any [`FetchError`].
    pub async fn json(
        &self,
        destination: &str,
        method: &str,
        path: &str,
        body: Option<&Object>,
    ) -> Result<Object, FetchError> {
        self.json_opt(destination, method, path, body, true).await
    }

    /// As [`FedClient::json`], signed or not.
    ///
    /// # Errors
    /// Any [`FetchError`].
    pub async fn json_opt(
        &self,
        destination: &str,
        method: &str,
        path: &str,
        body: Option<&Object>,
        signed: bool,
    ) -> Result<Object, FetchError> {
        let (status, bytes) = self
            .request(destination, method, path, body, signed)
            .await?;
        if status != 200 {
            return Err(FetchError::Status(status, bytes));
        }
        canonical::parse_object(&bytes, &canonical::ParseOptions::LEGACY)
            .map_err(|e| FetchError::BadBody(e.to_string()))
    }
}

/// `host` and the explicit port of a server name, if any.
pub fn split_host_port(server: &str) -> (&str, Option<&str>) {
    if let Some(rest) = server.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (server, None),
        };
    }
    match server.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (server, None),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
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
