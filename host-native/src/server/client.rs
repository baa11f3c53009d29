//! Outbound federation requests: server discovery (the core's plan: explicit port or IP
//! literal, else `/.well-known/matrix/server`, else the SRV records `_matrix-fed._tcp.<host>` and
//! `_matrix._tcp.<host>`, else port 8448), the outbound IP policy, and X-Matrix signing with our
//! keys through `mxfed_core::xmatrix::Request::sign`.
//!
//! Name resolution goes through a [`Dns`] (addresses and SRV records), [`SystemDns`] by default;
//! tests inject their own map, so discovery is tested without real DNS. A server reached through
//! an SRV record is asked at `https://<host>/…` (so `Host` and the TLS server name are the host,
//! as the spec says) on a second HTTP client whose resolver sends `<host>` to the record's
//! target and port.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mxfed_core::canonical::{self, Object};
use mxfed_core::discovery::{self, AfterWellKnown, SrvAnswer, SrvRecord, Step, Target};
use mxfed_core::keys::SigningKey;
use mxfed_core::xmatrix::Request;
use mxfed_core::Timestamp;

use super::config::IpPolicy;
use super::error::ApiError;
use super::warn;

/// The most server names whose discovery is remembered: the names come from other servers
/// (events, invites, queries), so the cache must not grow with whatever they send.
const WELL_KNOWN_CACHE_MAX: usize = 10_000;

/// The clock discovery's cache reads: the wall clock ([`super::now`]); tests bring their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

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
    /// An answer whose body is larger than the limit for it (`limit` bytes): given up on
    /// while reading, or at once when its `Content-Length` says so.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// The largest answers read from other servers (bodies are read whole into memory, then
/// parsed): past these, the request fails with [`FetchError::TooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Any federation answer but the two below.
    pub default_bytes: usize,
    /// `send_join` and `/state` answers: a room's whole state and auth chain.
    pub state_bytes: usize,
}

impl ResponseLimits {
    /// Synapse's: 100 MiB for any answer, 500 MiB for `send_join` and `/state`.
    pub const DEFAULT: ResponseLimits = ResponseLimits {
        default_bytes: 100 * 1024 * 1024,
        state_bytes: 500 * 1024 * 1024,
    };

    /// The limit for an answer to a request for `path`.
    fn for_path(&self, path: &str) -> usize {
        const LARGE: [&str; 3] = [
            "/_matrix/federation/v1/send_join/",
            "/_matrix/federation/v2/send_join/",
            "/_matrix/federation/v1/state/",
        ];
        if LARGE.iter().any(|p| path.starts_with(p)) {
            self.state_bytes
        } else {
            self.default_bytes
        }
    }
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
            FetchError::TooLarge { limit } => {
                write!(f, "answer larger than the limit of {limit} bytes")
            }
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

/// A boxed, sendable future of a name lookup.
pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Name resolution for outbound federation.
pub trait Dns: Send + Sync + 'static {
    /// The addresses of a host name (or the address of an IP literal).
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>>;
    /// The SRV records under `name` (`_matrix-fed._tcp.example.org`); none is `Ok(vec![])`.
    fn lookup_srv<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<SrvRecord>>;
    /// The port to connect to on `host` for a URL that names none (`https://<host>/…`, the
    /// well-known fetch), or `None` for the scheme's own (443). The system resolver answers
    /// `None`; a test resolver puts such hosts on free ports.
    fn https_port(&self, _host: &str) -> Option<u16> {
        None
    }
}

/// The system's resolver for addresses (`getaddrinfo`, so `/etc/hosts` counts) and hickory,
/// configured from `/etc/resolv.conf`, for SRV records.
#[derive(Default)]
pub struct SystemDns {
    srv: OnceLock<hickory_resolver::TokioAsyncResolver>,
}

impl SystemDns {
    fn srv_resolver(&self) -> &hickory_resolver::TokioAsyncResolver {
        self.srv.get_or_init(|| {
            hickory_resolver::TokioAsyncResolver::tokio_from_system_conf().unwrap_or_else(|_| {
                hickory_resolver::TokioAsyncResolver::tokio(
                    hickory_resolver::config::ResolverConfig::default(),
                    hickory_resolver::config::ResolverOpts::default(),
                )
            })
        })
    }
}

impl Dns for SystemDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| format!("{host}: {e}"))?
                .map(|a| a.ip())
                .collect())
        })
    }

    fn lookup_srv<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<SrvRecord>> {
        Box::pin(async move {
            match self.srv_resolver().srv_lookup(name).await {
                Ok(answer) => Ok(answer
                    .iter()
                    .map(|r| {
                        SrvRecord::new(r.priority(), r.weight(), r.port(), &r.target().to_utf8())
                    })
                    .collect()),
                Err(e)
                    if matches!(
                        e.kind(),
                        hickory_resolver::error::ResolveErrorKind::NoRecordsFound { .. }
                    ) =>
                {
                    Ok(Vec::new())
                }
                Err(e) => Err(format!("SRV {name}: {e}")),
            }
        })
    }
}

/// Where requests to one server go: per host name, its SRV targets in the order to try them.
type SrvRoutes = Arc<Mutex<BTreeMap<String, Vec<Target>>>>;

/// Resolves through the [`Dns`] and filters the addresses through the IP policy: reqwest
/// connects only to what is left. With `routes`, a host with an SRV route resolves to the
/// route's target, on the route's port.
struct PolicyResolver {
    policy: IpPolicy,
    dns: Arc<dyn Dns>,
    routes: Option<SrvRoutes>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let dns = self.dns.clone();
        let host = name.as_str().to_owned();
        let route = self
            .routes
            .as_ref()
            .and_then(|r| r.lock().ok().and_then(|m| m.get(&host).cloned()));
        Box::pin(async move {
            // Port 0 lets the URL's port (or 443) apply; a route's ports replace it, as the URL
            // names none.
            let targets = route
                .unwrap_or_else(|| vec![Target::new(&host, dns.https_port(&host).unwrap_or(0))]);
            // Every target's addresses, in the targets' order: the connector tries them in
            // turn, so a target that refuses the connection gives way to the next record.
            let mut addrs: Vec<SocketAddr> = Vec::new();
            let mut failed = Vec::new();
            for t in &targets {
                match dns.lookup_ip(&t.host).await {
                    Ok(ips) => addrs.extend(
                        ips.into_iter()
                            .filter(|ip| policy.permits(*ip))
                            .map(|ip| SocketAddr::new(ip, t.port)),
                    ),
                    Err(e) => failed.push(e),
                }
            }
            if addrs.is_empty() {
                if targets.len() == 1 {
                    if let Some(e) = failed.pop() {
                        return Err(e.into());
                    }
                }
                return Err(format!("{host}: no address allowed by the outbound IP policy").into());
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// The answer to a well-known fetch (after redirects).
#[derive(Debug)]
struct WellKnownAnswer {
    status: u16,
    /// The `Cache-Control` headers, joined with commas.
    cache_control: Option<String>,
    /// The last `Expires` header.
    expires: Option<String>,
    body: Vec<u8>,
}

/// What discovery found for a server name, and until when it holds.
#[derive(Debug, Clone)]
struct WellKnownEntry {
    route: Route,
    /// When to fetch the well-known document again.
    expires: Timestamp,
    /// Whether `route` follows a valid well-known answer: such a route outlives a temporary
    /// failure to fetch the document again.
    valid: bool,
    /// Until when the server counts as having had a valid answer recently (the answer's
    /// lifetime plus [`discovery::WELL_KNOWN_REMEMBER_VALID`]): until then a failure is
    /// retried after [`discovery::WELL_KNOWN_RETRY`] rather than an hour.
    had_valid_until: Option<Timestamp>,
}

/// Discovery results per server name, at most `max` of them.
#[derive(Debug)]
struct WellKnownCache {
    entries: BTreeMap<String, WellKnownEntry>,
    max: usize,
}

impl WellKnownCache {
    fn new(max: usize) -> WellKnownCache {
        WellKnownCache {
            entries: BTreeMap::new(),
            max,
        }
    }

    /// Stores an entry. A new name when the cache is full first drops the entries that no
    /// longer count (expired, with no recent valid answer to remember), then, if it is still
    /// full, the one expiring soonest. Returns whether entries were dropped.
    fn insert(&mut self, server: &str, entry: WellKnownEntry, now: Timestamp) -> bool {
        let full = !self.entries.contains_key(server) && self.entries.len() >= self.max;
        if full {
            self.entries
                .retain(|_, e| e.expires > now || e.had_valid_until.is_some_and(|t| t > now));
            while self.entries.len() >= self.max {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                match soonest {
                    Some(k) => self.entries.remove(&k),
                    None => break,
                };
            }
        }
        self.entries.insert(server.to_owned(), entry);
        full
    }

    /// The hosts whose SRV routes some entry connects through.
    fn srv_hosts(&self) -> BTreeSet<&str> {
        self.entries
            .values()
            .filter_map(|e| match &e.route {
                Route::Srv(h) => Some(h.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// How requests to a server are made, as discovery found.
#[derive(Debug, Clone)]
enum Route {
    /// `https://<authority>/…` on the main client.
    Direct(String),
    /// `https://<host>/…` on the SRV client, which connects to the host's SRV targets.
    Srv(String),
    /// None: the SRV records say the service is not available (a lone `.` target).
    Unavailable(String),
}

/// The outbound HTTP client of the server.
pub struct FedClient {
    http: reqwest::Client,
    /// The client for servers found through SRV records (its resolver follows `routes`).
    srv_http: reqwest::Client,
    policy: IpPolicy,
    server_name: String,
    keys: Vec<SigningKey>,
    dns: Arc<dyn Dns>,
    routes: SrvRoutes,
    /// Discovery results per server name.
    well_known: Mutex<WellKnownCache>,
    limits: ResponseLimits,
    clock: Clock,
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
        FedClient::with_dns(
            server_name,
            keys,
            policy,
            verify_tls,
            timeout,
            Arc::new(SystemDns::default()),
        )
    }

    /// As [`FedClient::new`], resolving names through `dns`.
    ///
    /// # Errors
    /// When the TLS stack cannot be set up.
    pub fn with_dns(
        server_name: &str,
        keys: Vec<SigningKey>,
        policy: IpPolicy,
        verify_tls: bool,
        timeout: Duration,
        dns: Arc<dyn Dns>,
    ) -> Result<FedClient, String> {
        let routes: SrvRoutes = Arc::default();
        let build = |routes: Option<SrvRoutes>| {
            reqwest::Client::builder()
                // HTTP(S)_PROXY/ALL_PROXY would send requests past the resolver below, and with
                // it past the IP policy and the SRV routes: outbound federation never uses them.
                .no_proxy()
                .danger_accept_invalid_certs(!verify_tls)
                .dns_resolver(Arc::new(PolicyResolver {
                    policy: policy.clone(),
                    dns: dns.clone(),
                    routes,
                }))
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(10))
                // Federation requests never follow redirects; the well-known fetch follows
                // them itself, checking each hop (`fetch_well_known`).
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("mxfed/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        };
        Ok(FedClient {
            http: build(None)?,
            srv_http: build(Some(routes.clone()))?,
            policy,
            server_name: server_name.to_owned(),
            keys,
            dns,
            routes,
            well_known: Mutex::new(WellKnownCache::new(WELL_KNOWN_CACHE_MAX)),
            limits: ResponseLimits::DEFAULT,
            clock: Arc::new(super::now),
        })
    }

    /// This client with another clock for discovery's cache (tests move time on with it).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> FedClient {
        self.clock = clock;
        self
    }

    /// This client with other limits on the size of answers.
    #[must_use]
    pub fn with_response_limits(mut self, limits: ResponseLimits) -> FedClient {
        self.limits = limits;
        self
    }

    /// How to reach a server: the core's discovery steps, with the well-known answer fetched
    /// and the SRV records looked up here. The result is cached: a valid well-known answer for
    /// its lifetime (`discovery::well_known_lifetime`, from its headers); when fetching it
    /// again fails for a reason that may pass (no answer, a timeout, a 5xx, an answer too
    /// large), the previous valid delegation is kept and the fetch retried after
    /// [`discovery::WELL_KNOWN_RETRY`]; otherwise no delegation, for
    /// [`discovery::WELL_KNOWN_INVALID_LIFETIME`] (the retry time when there was a valid answer
    /// recently).
    async fn resolve(&self, server: &str) -> Result<Route, FetchError> {
        let url = match discovery::resolve(server) {
            Step::Connect(t) => return Ok(Route::Direct(t.authority())),
            Step::WellKnown { url } => url,
            Step::Unusable { reason } => {
                return Err(FetchError::Network(format!(
                    "cannot reach {server}: {reason}"
                )))
            }
            _ => return Err(FetchError::Network(format!("cannot resolve {server}"))),
        };
        let now = (self.clock)();
        let previous = self
            .well_known
            .lock()
            .ok()
            .and_then(|m| m.entries.get(server).cloned());
        if let Some(e) = &previous {
            if now < e.expires {
                return Ok(e.route.clone());
            }
        }
        let had_valid_until = previous
            .as_ref()
            .and_then(|e| e.had_valid_until)
            .filter(|t| now < *t);
        let failed_for = if had_valid_until.is_some() {
            discovery::WELL_KNOWN_RETRY
        } else {
            discovery::WELL_KNOWN_INVALID_LIFETIME
        };
        let answer = self.fetch_well_known(&url).await;
        let temporary = match &answer {
            Err(e) => {
                warn(&format!("well-known of {server}: {e}"));
                true
            }
            Ok(a) => a.status >= 500,
        };
        let valid = answer
            .ok()
            .filter(|a| a.status == 200 && discovery::well_known_delegation(&a.body).is_some());
        let mut srv_route = None;
        let entry = match (valid, previous) {
            (Some(a), _) => {
                let lifetime = discovery::well_known_lifetime(
                    a.cache_control.as_deref(),
                    a.expires.as_deref(),
                    now,
                );
                let (route, srv) = self.route_after(server, Some(&a.body)).await?;
                srv_route = srv;
                WellKnownEntry {
                    route,
                    expires: now.saturating_add(lifetime),
                    valid: true,
                    had_valid_until: Some(
                        now.saturating_add(lifetime)
                            .saturating_add(discovery::WELL_KNOWN_REMEMBER_VALID),
                    ),
                }
            }
            // The delegation that was there is likely to come back: keep it a little longer.
            (None, Some(prev)) if temporary && prev.valid && had_valid_until.is_some() => {
                WellKnownEntry {
                    expires: now.saturating_add(discovery::WELL_KNOWN_RETRY),
                    ..prev
                }
            }
            (None, _) => {
                let (route, srv) = self.route_after(server, None).await?;
                srv_route = srv;
                WellKnownEntry {
                    route,
                    expires: now.saturating_add(failed_for),
                    valid: false,
                    had_valid_until,
                }
            }
        };
        let route = entry.route.clone();
        if let Ok(mut m) = self.well_known.lock() {
            let dropped = m.insert(server, entry, now);
            // The SRV routes follow the cache: recorded with their entry, dropped with the
            // last entry that uses them.
            if let Ok(mut r) = self.routes.lock() {
                if let (Route::Srv(host), Some(t)) = (&route, srv_route) {
                    r.insert(host.clone(), t);
                }
                if dropped {
                    let used = m.srv_hosts();
                    r.retain(|host, _| used.contains(host.as_str()));
                }
            }
        }
        Ok(route)
    }

    /// Where to connect after the well-known step (`body`: a valid answer's, else `None`),
    /// with the SRV records looked up: the route, and the SRV targets when it goes through them.
    async fn route_after(
        &self,
        server: &str,
        body: Option<&[u8]>,
    ) -> Result<(Route, Option<Vec<Target>>), FetchError> {
        Ok(match discovery::plan_after_well_known(server, body) {
            AfterWellKnown::Connect(t) => (Route::Direct(t.authority()), None),
            AfterWellKnown::Srv { host, names } => match self.srv_targets(&names).await {
                SrvAnswer::Targets(t) => (Route::Srv(host), Some(t)),
                SrvAnswer::Unavailable => (
                    Route::Unavailable(format!(
                        "{server}: the SRV records of {host} say federation is not available"
                    )),
                    None,
                ),
                _ => (
                    Route::Direct(Target::new(&host, discovery::DEFAULT_PORT).authority()),
                    None,
                ),
            },
            AfterWellKnown::Unusable { reason } => {
                return Err(FetchError::Network(format!(
                    "cannot reach {server}: {reason}"
                )))
            }
            _ => return Err(FetchError::Network(format!("cannot resolve {server}"))),
        })
    }

    /// The answer of the first SRV name that has records: its targets in order, or that the
    /// service is not available (a lone `.`); `NoRecords` when no name has any (a failed lookup
    /// counts as none, as Synapse does: discovery goes on to the next step).
    async fn srv_targets(&self, names: &[String]) -> SrvAnswer {
        for name in names {
            match self.dns.lookup_srv(name).await {
                Ok(records) => match discovery::srv_targets(&records) {
                    SrvAnswer::NoRecords => {}
                    answer => return answer,
                },
                Err(e) => warn(&format!("SRV lookup: {e}")),
            }
        }
        SrvAnswer::NoRecords
    }

    /// Fetches the well-known document at `url`, following redirects (`https` only, at most
    /// [`discovery::WELL_KNOWN_MAX_REDIRECTS`], never to a URL already visited; each hop goes
    /// through the IP policy like any request, IP literals included). The answer is the last
    /// hop's, whatever its status.
    async fn fetch_well_known(&self, url: &str) -> Result<WellKnownAnswer, FetchError> {
        let bad = |m: String| FetchError::Network(format!("well-known: {m}"));
        let mut url = reqwest::Url::parse(url).map_err(|e| bad(format!("{url}: {e}")))?;
        let mut visited = vec![url.clone()];
        loop {
            let resp = self
                .send(&self.http, reqwest::Method::GET, url.as_str(), None, None)
                .await?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok());
            let next = match (status, location) {
                (301 | 302 | 303 | 307 | 308, Some(l)) => url
                    .join(l)
                    .map_err(|e| bad(format!("redirect to {l:?}: {e}")))?,
                _ => {
                    let values = |name| {
                        let all = resp.headers().get_all(name).iter();
                        all.filter_map(|v| v.to_str().ok().map(str::to_owned))
                            .collect::<Vec<String>>()
                    };
                    // Several Cache-Control headers are one list; of several Expires, the
                    // last counts (as in Synapse).
                    let cache_control = Some(values(reqwest::header::CACHE_CONTROL).join(", "))
                        .filter(|v| !v.is_empty());
                    let expires = values(reqwest::header::EXPIRES).pop();
                    let body = read_limited(resp, discovery::WELL_KNOWN_MAX_BYTES).await?;
                    return Ok(WellKnownAnswer {
                        status,
                        cache_control,
                        expires,
                        body,
                    });
                }
            };
            if next.scheme() != "https" {
                return Err(bad(format!("redirect to {next}: not https")));
            }
            if visited.contains(&next) {
                return Err(bad(format!("redirect loop at {next}")));
            }
            if visited.len() > discovery::WELL_KNOWN_MAX_REDIRECTS {
                return Err(bad(format!(
                    "more than {} redirects",
                    discovery::WELL_KNOWN_MAX_REDIRECTS
                )));
            }
            visited.push(next.clone());
            url = next;
        }
    }

    /// Sends a request (refused at once when the URL's host is an IP literal the IP policy
    /// blocks: such a host never reaches the resolver, which checks the others).
    async fn send(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        auth: Option<Vec<String>>,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, FetchError> {
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
        let mut req = http.request(method, url);
        for a in auth.unwrap_or_default() {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        req.send().await.map_err(fetch_error)
    }

    /// A request, its answer's status and its body (at most `limit` bytes of it).
    async fn raw(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        auth: Option<Vec<String>>,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let resp = self.send(http, method, url, auth, body).await?;
        let status = resp.status().as_u16();
        Ok((status, read_limited(resp, limit).await?))
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
        let body = body.map(|b| b.to_canonical_string().into_bytes());
        self.request_text(destination, method, path, body, signed)
            .await
    }

    /// [`FedClient::request`] with the body as the JSON text to send (a transaction's
    /// canonical body, signed as it is: not parsed and encoded again).
    ///
    /// # Errors
    /// [`FetchError::Network`] or [`FetchError::Timeout`]; [`FetchError::BadBody`] when the
    /// text is not JSON.
    pub async fn request_text(
        &self,
        destination: &str,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        signed: bool,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let (http, base) = match self.resolve(destination).await? {
            Route::Direct(authority) => (&self.http, authority),
            Route::Srv(host) => (&self.srv_http, host),
            Route::Unavailable(why) => return Err(FetchError::Network(why)),
        };
        let auth = if signed {
            let req = Request {
                method,
                uri: path,
                origin: &self.server_name,
                destination,
                content: None,
            };
            let headers = req
                .sign_body(body.as_deref(), &self.keys)
                .map_err(|e| FetchError::BadBody(e.to_string()))?;
            Some(headers.iter().map(|h| h.to_header_value()).collect())
        } else {
            None
        };
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| FetchError::Network(e.to_string()))?;
        let limit = self.limits.for_path(path);
        self.raw(http, m, &format!("https://{base}{path}"), auth, body, limit)
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

/// The body of an answer, read as it arrives and given up on as soon as it is larger than
/// `limit` bytes (at once when `Content-Length` says it will be), so that a peer streaming an
/// endless answer costs at most `limit` bytes of memory.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, FetchError> {
    let too_large = FetchError::TooLarge { limit };
    if resp
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(too_large);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(fetch_error)? {
        if chunk.len() > limit.saturating_sub(out.len()) {
            return Err(too_large);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A reqwest failure as ours: a timeout, or what went wrong on the network.
fn fetch_error(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Network(error_chain(&e))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(route: Route, expires: u64, had_valid_until: Option<u64>) -> WellKnownEntry {
        WellKnownEntry {
            route,
            expires: Timestamp(expires),
            valid: had_valid_until.is_some(),
            had_valid_until: had_valid_until.map(Timestamp),
        }
    }

    #[test]
    fn the_well_known_cache_stays_within_its_size() {
        let direct = || Route::Direct("x:8448".into());
        let mut c = WellKnownCache::new(3);
        assert!(!c.insert("dead.test", entry(direct(), 10, None), Timestamp(0)));
        c.insert(
            "remembered.test",
            entry(direct(), 10, Some(500)),
            Timestamp(0),
        );
        c.insert(
            "late.test",
            entry(Route::Srv("h.test".into()), 400, None),
            Timestamp(0),
        );
        // Full: a new name at 100 drops the expired entry that nothing remembers.
        assert!(c.insert("new.test", entry(direct(), 300, None), Timestamp(100)));
        let names: Vec<&str> = c.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["late.test", "new.test", "remembered.test"]);
        // Replacing an entry drops nothing.
        assert!(!c.insert("new.test", entry(direct(), 350, None), Timestamp(100)));
        assert_eq!(c.entries.len(), 3);
        // Full of live entries: the one expiring soonest goes (remembered.test, at 10).
        c.insert("newer.test", entry(direct(), 600, None), Timestamp(100));
        let names: Vec<&str> = c.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["late.test", "new.test", "newer.test"]);
        assert_eq!(c.srv_hosts(), BTreeSet::from(["h.test"]));
        // Many names never grow it past its size.
        for i in 0..100 {
            c.insert(
                &format!("n{i}.test"),
                entry(direct(), 1000 + i, None),
                Timestamp(200),
            );
        }
        assert_eq!(c.entries.len(), 3);
        assert!(c.srv_hosts().is_empty());
    }
}
