//! Outbound requests on real TLS sockets but without real DNS: the client resolves through an
//! injected [`Dns`] map, and the servers are in-process on loopback (`mxfed` itself, or a stub
//! whose answers each test sets). Shows the order of lookups (well-known, `_matrix-fed._tcp`,
//! the deprecated `_matrix._tcp`, port 8448), that the SRV target's port is the one connected
//! to, the limits on answer sizes, and that the environment's proxies are ignored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use mxfed_core::discovery::SrvRecord;
use mxfed_core::keys::SigningKey;
use mxfed_core::Timestamp;
use mxfed_native::server::client::{Dns, DnsFuture, FedClient, FetchError, ResponseLimits};
use mxfed_native::server::config::{default_blocklist, IpPolicy};

/// Names and SRV records from maps; every lookup is recorded.
#[derive(Default)]
struct MapDns {
    ips: BTreeMap<String, IpAddr>,
    srv: BTreeMap<String, Vec<SrvRecord>>,
    /// The port of `https://<name>/…` URLs (the stub's), for the names listed.
    ports: BTreeMap<String, u16>,
    log: Mutex<Vec<String>>,
}

impl Dns for MapDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        self.log.lock().unwrap().push(format!("A {host}"));
        let r = self
            .ips
            .get(host)
            .map(|ip| vec![*ip])
            .ok_or_else(|| format!("{host}: no such host"));
        Box::pin(async move { r })
    }

    fn lookup_srv<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<SrvRecord>> {
        self.log.lock().unwrap().push(format!("SRV {name}"));
        let r = Ok(self.srv.get(name).cloned().unwrap_or_default());
        Box::pin(async move { r })
    }

    fn https_port(&self, host: &str) -> Option<u16> {
        self.ports.get(host).copied()
    }
}

/// What the stub answers to a request for a host and path.
#[derive(Debug, Clone)]
enum Reply {
    /// 200 with this body and these headers.
    Ok(String, Vec<(&'static str, String)>),
    /// 200 with this many chunks of 64 KiB, streamed (no `Content-Length`).
    Stream(usize),
    /// 200 with a body of this many bytes and its `Content-Length`.
    Sized(usize),
    /// A redirect with this status to this `Location`.
    Redirect(u16, String),
    /// This status with an empty body.
    Status(u16),
}

/// An HTTPS server on loopback answering what [`Stub::set`] says, keeping a log of requests.
#[derive(Default)]
struct Stub {
    replies: Mutex<BTreeMap<String, Reply>>,
    hits: Mutex<Vec<String>>,
    /// Chunks of [`Reply::Stream`] answers produced so far.
    chunks: AtomicUsize,
}

/// 64 KiB.
const CHUNK: usize = 64 * 1024;

impl Stub {
    /// Starts a stub on `ip` (a free port); returns it and its port.
    fn start(ip: &str) -> (Arc<Stub>, u16) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pair = rcgen::generate_simple_self_signed(vec!["stub.test".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(pair.key_pair.serialize_der());
        let sc = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![pair.cert.der().clone()], key.into())
            .unwrap();
        Stub::serve(
            ip,
            Some(axum_server::tls_rustls::RustlsConfig::from_config(
                Arc::new(sc),
            )),
        )
    }

    /// As [`Stub::start`], over plain HTTP.
    fn start_plain(ip: &str) -> (Arc<Stub>, u16) {
        Stub::serve(ip, None)
    }

    fn serve(ip: &str, tls: Option<axum_server::tls_rustls::RustlsConfig>) -> (Arc<Stub>, u16) {
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stub = Arc::new(Stub::default());
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(stub.clone());
        tokio::spawn(mxfed_native::server::run(
            listener,
            router,
            tls,
            std::future::pending(),
        ));
        (stub, port)
    }

    /// Answers `reply` to requests for `path` on `host`.
    fn set(&self, host: &str, path: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap()
            .insert(format!("{host}{path}"), reply);
    }
}

async fn answer(
    axum::extract::State(stub): axum::extract::State<Arc<Stub>>,
    req: Request<Body>,
) -> Response {
    let host = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            Some(h.rsplit_once(':').map_or(h, |(h, _)| h).to_owned())
        })
        .unwrap_or_default();
    let key = format!("{host}{}", req.uri().path());
    stub.hits.lock().unwrap().push(key.clone());
    let reply = stub.replies.lock().unwrap().get(&key).cloned();
    match reply {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Ok(body, headers)) => {
            let mut r = Response::builder().status(200);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.body(Body::from(body)).unwrap()
        }
        Some(Reply::Stream(n)) => Body::from_stream(Chunks {
            stub: stub.clone(),
            left: n,
        })
        .into_response(),
        Some(Reply::Sized(n)) => vec![b' '; n].into_response(),
        Some(Reply::Status(status)) => StatusCode::from_u16(status).unwrap().into_response(),
        Some(Reply::Redirect(status, to)) => Response::builder()
            .status(status)
            .header(header::LOCATION, to)
            .body(Body::empty())
            .unwrap(),
    }
}

/// `left` chunks of 64 KiB, produced as the client reads them.
struct Chunks {
    stub: Arc<Stub>,
    left: usize,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.stub.chunks.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Bytes::from(vec![b' '; CHUNK]))))
    }
}

/// A server on a free loopback port (TLS, self-signed); returns its port.
fn start(dir: &std::path::Path) -> u16 {
    common::inproc::start(dir).config.listeners[0].addr.port()
}

/// Connections made to the proxy the environment names (which must stay at none).
static PROXY_HITS: AtomicUsize = AtomicUsize::new(0);

/// Points every proxy variable reqwest reads at a listener that counts and drops connections,
/// once per process and before any client is built: every test here then also checks that
/// outbound requests ignore the environment's proxies.
fn proxy_trap() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", trap.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in trap.incoming() {
                PROXY_HITS.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(var, &url);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    });
}

fn client(dns: Arc<MapDns>) -> FedClient {
    client_allowing(dns, "127.0.0.0/8")
}

/// A client whose IP policy is the default blocklist with `allow` let through.
fn client_allowing(dns: Arc<MapDns>, allow: &str) -> FedClient {
    proxy_trap();
    FedClient::with_dns(
        "client.test",
        vec![SigningKey::from_seed("c1", &[3u8; 32]).unwrap()],
        IpPolicy::new(&default_blocklist(), &[allow.into()]).unwrap(),
        false,
        Duration::from_secs(20),
        dns,
    )
    .unwrap()
}

async fn version(c: &FedClient, server: &str) -> Result<String, FetchError> {
    let o = c
        .json_opt(server, "GET", "/_matrix/federation/v1/version", None, false)
        .await?;
    Ok(o.get_object("server")
        .and_then(|s| s.get_str("name"))
        .unwrap()
        .to_owned())
}

#[tokio::test]
async fn srv_records_are_followed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path());
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let mut dns = MapDns::default();
    dns.ips.insert("target.test".into(), loopback);
    // The current name, with a lower-priority decoy that would fail.
    dns.srv.insert(
        "_matrix-fed._tcp.srv.test".into(),
        vec![
            SrvRecord::new(20, 0, 1, "nowhere.test."),
            SrvRecord::new(10, 0, port, "target.test."),
        ],
    );
    // Only the deprecated name.
    dns.srv.insert(
        "_matrix._tcp.old.test".into(),
        vec![SrvRecord::new(0, 0, port, "target.test.")],
    );
    let dns = Arc::new(dns);
    let c = client(dns.clone());
    let take = || std::mem::take(&mut *dns.log.lock().unwrap());

    // No well-known (the name has no address), then `_matrix-fed._tcp`: its targets, the best
    // first (the decoy, resolved after it, is never connected to).
    assert_eq!(version(&c, "srv.test").await.unwrap(), "mxfed");
    assert_eq!(
        take(),
        [
            "A srv.test",
            "SRV _matrix-fed._tcp.srv.test",
            "A target.test",
            "A nowhere.test"
        ]
    );
    // Cached: the next request looks up neither well-known nor SRV (and may reuse the
    // connection without resolving the targets again).
    assert_eq!(version(&c, "srv.test").await.unwrap(), "mxfed");
    let again = take();
    assert!(
        again
            .iter()
            .all(|l| l == "A target.test" || l == "A nowhere.test"),
        "{again:?}"
    );

    // The deprecated `_matrix._tcp` is asked after `_matrix-fed._tcp`.
    assert_eq!(version(&c, "old.test").await.unwrap(), "mxfed");
    assert_eq!(
        take(),
        [
            "A old.test",
            "SRV _matrix-fed._tcp.old.test",
            "SRV _matrix._tcp.old.test",
            "A target.test"
        ]
    );

    // Neither: the name itself on port 8448, which does not resolve here.
    let e = version(&c, "none.test").await.unwrap_err();
    assert!(matches!(e, FetchError::Network(_)), "{e}");
    assert_eq!(
        take(),
        [
            "A none.test",
            "SRV _matrix-fed._tcp.none.test",
            "SRV _matrix._tcp.none.test",
            "A none.test"
        ]
    );

    // An explicit port skips well-known and SRV.
    let mut direct = MapDns::default();
    direct.ips.insert("target.test".into(), loopback);
    let direct = Arc::new(direct);
    let c = client(direct.clone());
    assert_eq!(
        version(&c, &format!("target.test:{port}")).await.unwrap(),
        "mxfed"
    );
    assert_eq!(*direct.log.lock().unwrap(), ["A target.test"]);
}

#[tokio::test]
async fn proxy_environment_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path());
    let mut dns = MapDns::default();
    dns.ips
        .insert("target.test".into(), "127.0.0.1".parse().unwrap());
    // `client` points HTTPS_PROXY and the others at a trap before building the client.
    let c = client(Arc::new(dns));
    assert_eq!(
        version(&c, &format!("target.test:{port}")).await.unwrap(),
        "mxfed"
    );
    assert_eq!(PROXY_HITS.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn answers_over_the_size_limit_are_given_up_on() {
    let (stub, port) = Stub::start("127.0.0.1");
    let mut dns = MapDns::default();
    for name in ["big.test", "fat.test", "lean.test", "target.test"] {
        dns.ips.insert(name.into(), "127.0.0.1".parse().unwrap());
        dns.ports.insert(name.into(), port);
    }
    let limits = ResponseLimits {
        default_bytes: 16 * CHUNK,
        state_bytes: 64 * CHUNK,
    };
    let c = client(Arc::new(dns)).with_response_limits(limits);
    let big = format!("big.test:{port}");
    let get = |path: &'static str| {
        let (c, big) = (&c, big.clone());
        async move { c.request(&big, "GET", path, None, false).await }
    };

    // Streamed without a length: read up to the limit, then given up on. The answer would be
    // 1024 chunks (64 MiB); the stub produced not much more than the client read.
    stub.set(
        "big.test",
        "/_matrix/federation/v1/version",
        Reply::Stream(1024),
    );
    let e = get("/_matrix/federation/v1/version").await.unwrap_err();
    assert_eq!(e, FetchError::TooLarge { limit: 16 * CHUNK });
    assert!(e.to_string().contains("1048576 bytes"), "{e}");
    let produced = stub.chunks.load(Ordering::SeqCst);
    assert!((16..1024).contains(&produced), "{produced} chunks produced");

    // Within the limit, the whole answer.
    stub.set(
        "big.test",
        "/_matrix/federation/v1/query/a",
        Reply::Stream(16),
    );
    let (status, body) = get("/_matrix/federation/v1/query/a").await.unwrap();
    assert_eq!((status, body.len()), (200, 16 * CHUNK));

    // A declared Content-Length over the limit fails before the body is read.
    stub.set(
        "big.test",
        "/_matrix/federation/v1/query/b",
        Reply::Sized(16 * CHUNK + 1),
    );
    assert_eq!(
        get("/_matrix/federation/v1/query/b").await.unwrap_err(),
        FetchError::TooLarge { limit: 16 * CHUNK }
    );

    // send_join and /state answers have the larger limit.
    for path in [
        "/_matrix/federation/v2/send_join/!r:x/$e",
        "/_matrix/federation/v1/send_join/!r:x/$e",
        "/_matrix/federation/v1/state/!r:x",
    ] {
        stub.set("big.test", path, Reply::Stream(40));
        let (status, body) = c.request(&big, "GET", path, None, false).await.unwrap();
        assert_eq!((status, body.len()), (200, 40 * CHUNK), "{path}");
    }
    stub.set(
        "big.test",
        "/_matrix/federation/v1/state/!r:x",
        Reply::Stream(65),
    );
    assert_eq!(
        get("/_matrix/federation/v1/state/!r:x").await.unwrap_err(),
        FetchError::TooLarge { limit: 64 * CHUNK }
    );

    // A well-known document over 50 KiB is no delegation: the name itself is used (on port
    // 8448, closed here). Under 50 KiB, the same document delegates.
    let delegation =
        |pad: usize| format!(r#"{{"m.server":"target.test:{port}"{}}}"#, " ".repeat(pad));
    stub.set(
        "lean.test",
        "/.well-known/matrix/server",
        Reply::Ok(delegation(40 * 1024), vec![]),
    );
    stub.set(
        "fat.test",
        "/.well-known/matrix/server",
        Reply::Ok(delegation(50 * 1024), vec![]),
    );
    stub.set(
        "target.test",
        "/_matrix/federation/v1/version",
        Reply::Ok(r#"{"server":{"name":"stub"}}"#.into(), vec![]),
    );
    assert_eq!(version(&c, "lean.test").await.unwrap(), "stub");
    let asked = |stub: &Stub| {
        let hits = stub.hits.lock().unwrap();
        hits.iter()
            .filter(|h| *h == "target.test/_matrix/federation/v1/version")
            .count()
    };
    let before = asked(&stub);
    assert_ne!(version(&c, "fat.test").await.ok().as_deref(), Some("stub"));
    assert_eq!(asked(&stub), before);
    assert!(stub
        .hits
        .lock()
        .unwrap()
        .contains(&"fat.test/.well-known/matrix/server".to_owned()));
}

#[tokio::test]
async fn well_known_redirects_are_followed_with_care() {
    // Names resolve to the stub on 127.0.0.1, the only address the client may reach;
    // 127.0.0.2 (a second stub, which would delegate) is blocked.
    let (stub, port) = Stub::start("127.0.0.1");
    let (blocked, blocked_port) = Stub::start("127.0.0.2");
    let (plain, plain_port) = Stub::start_plain("127.0.0.1");
    let mut dns = MapDns::default();
    for name in [
        "hops.test",
        "hop2.test",
        "hop3.test",
        "five.test",
        "six.test",
        "loop.test",
        "plain.test",
        "literal.test",
        "named.test",
        "target.test",
    ] {
        dns.ips.insert(name.into(), "127.0.0.1".parse().unwrap());
        dns.ports.insert(name.into(), port);
    }
    dns.ips
        .insert("blocked.test".into(), "127.0.0.2".parse().unwrap());
    dns.ports.insert("blocked.test".into(), blocked_port);
    let c = client_allowing(Arc::new(dns), "127.0.0.1/32");
    const WK: &str = "/.well-known/matrix/server";
    let delegation = Reply::Ok(format!(r#"{{"m.server":"target.test:{port}"}}"#), vec![]);
    let redirect = |status: u16, to: &str| Reply::Redirect(status, to.to_owned());
    stub.set(
        "target.test",
        "/_matrix/federation/v1/version",
        Reply::Ok(r#"{"server":{"name":"stub"}}"#.into(), vec![]),
    );
    let delegated = |server: &'static str| {
        let c = &c;
        async move { version(c, server).await.ok().as_deref() == Some("stub") }
    };

    // Every redirect status, absolute and relative locations, across hosts: four hops.
    stub.set("hops.test", WK, redirect(302, "https://hop2.test/a"));
    stub.set("hop2.test", "/a", redirect(307, "/b"));
    stub.set("hop2.test", "/b", redirect(308, "https://hop3.test/c"));
    stub.set("hop3.test", "/c", redirect(301, "d"));
    stub.set("hop3.test", "/d", delegation.clone());
    assert!(delegated("hops.test").await);

    // Five redirects are followed, a sixth is not.
    let chain = |host: &str, n: usize| {
        for k in 1..=n {
            let from = if k == 1 {
                WK.to_owned()
            } else {
                format!("/r{}", k - 1)
            };
            let to = if k == n {
                "/final".to_owned()
            } else {
                format!("/r{k}")
            };
            stub.set(host, &from, redirect(303, &to));
        }
        stub.set(host, "/final", delegation.clone());
    };
    chain("five.test", 5);
    chain("six.test", 6);
    assert!(delegated("five.test").await);
    assert!(!delegated("six.test").await);
    let hits = |host: &str| {
        let hits = stub.hits.lock().unwrap();
        hits.iter().filter(|h| h.starts_with(host)).count()
    };
    assert_eq!(hits("six.test/"), 6, "the sixth redirect is not followed");

    // A loop is noticed at once rather than run around until the limit.
    stub.set("loop.test", WK, redirect(302, "/x"));
    stub.set("loop.test", "/x", redirect(302, WK));
    assert!(!delegated("loop.test").await);
    assert_eq!(hits("loop.test/"), 2);

    // Only https: a redirect to plain HTTP (where a delegation waits) is not followed.
    plain.set("plain.test", WK, delegation.clone());
    stub.set(
        "plain.test",
        WK,
        redirect(302, &format!("http://plain.test:{plain_port}{WK}")),
    );
    assert!(!delegated("plain.test").await);
    assert!(plain.hits.lock().unwrap().is_empty());

    // A hop to a blocked address is refused, as an IP literal (which never reaches the
    // resolver) or as a name.
    blocked.set("127.0.0.2", WK, delegation.clone());
    blocked.set("blocked.test", WK, delegation.clone());
    stub.set(
        "literal.test",
        WK,
        redirect(302, &format!("https://127.0.0.2:{blocked_port}{WK}")),
    );
    stub.set(
        "named.test",
        WK,
        redirect(302, &format!("https://blocked.test{WK}")),
    );
    assert!(!delegated("literal.test").await);
    assert!(!delegated("named.test").await);
    assert!(blocked.hits.lock().unwrap().is_empty());

    // Federation requests themselves never follow redirects.
    stub.set(
        "target.test",
        "/_matrix/federation/v1/query/x",
        redirect(302, "/_matrix/federation/v1/version"),
    );
    let (status, _) = c
        .request(
            &format!("target.test:{port}"),
            "GET",
            "/_matrix/federation/v1/query/x",
            None,
            false,
        )
        .await
        .unwrap();
    assert_eq!(status, 302);
}

/// A clock the test moves on: seconds since the epoch, read in ms by the client.
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn install(c: FedClient) -> (FedClient, TestClock) {
        // Sun, 06 Nov 1994 08:49:37 GMT.
        let secs = Arc::new(AtomicU64::new(784_111_777));
        let read = secs.clone();
        let c = c.with_clock(Arc::new(move || {
            Timestamp(read.load(Ordering::SeqCst) * 1000)
        }));
        (c, TestClock(secs))
    }

    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// A stub on 127.0.0.1 that `names` resolve to, a client with a test clock, and the
/// delegation document to `target.test` (whose version is "stub").
fn delegating_stub(names: &[&str]) -> (Arc<Stub>, u16, FedClient, TestClock) {
    let (stub, port) = Stub::start("127.0.0.1");
    let mut dns = MapDns::default();
    for name in names.iter().chain(&["target.test"]) {
        dns.ips.insert((*name).into(), "127.0.0.1".parse().unwrap());
        dns.ports.insert((*name).into(), port);
    }
    stub.set(
        "target.test",
        "/_matrix/federation/v1/version",
        Reply::Ok(r#"{"server":{"name":"stub"}}"#.into(), vec![]),
    );
    let (c, clock) = TestClock::install(client(Arc::new(dns)));
    (stub, port, c, clock)
}

/// How many times the stub was asked for `server`'s well-known document.
fn well_known_fetches(stub: &Stub, server: &str) -> usize {
    let path = format!("{server}/.well-known/matrix/server");
    stub.hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| **h == path)
        .count()
}

#[tokio::test]
async fn well_known_answers_last_as_their_headers_say() {
    let names = ["short.test", "plain.test", "long.test", "expiring.test"];
    let (stub, port, c, clock) = delegating_stub(&names);
    let doc = format!(r#"{{"m.server":"target.test:{port}"}}"#);
    let answer = |headers: Vec<(&'static str, String)>| Reply::Ok(doc.clone(), headers);
    let wk = "/.well-known/matrix/server";
    stub.set(
        "short.test",
        wk,
        answer(vec![("cache-control", "max-age=600".into())]),
    );
    stub.set("plain.test", wk, answer(vec![]));
    stub.set(
        "long.test",
        wk,
        answer(vec![("cache-control", "public, max-age=9999999".into())]),
    );
    stub.set(
        "expiring.test",
        wk,
        answer(vec![("expires", "Sun, 06 Nov 1994 11:49:37 GMT".into())]),
    );
    let fetches_after = |secs: u64| {
        clock.advance(secs);
        let (c, stub) = (&c, &stub);
        async move {
            let mut n = Vec::new();
            for name in names {
                assert_eq!(version(c, name).await.unwrap(), "stub", "{name}");
                n.push(well_known_fetches(stub, name));
            }
            n
        }
    };
    // [short: max-age=600, plain: 24 h, long: max-age clamped to 48 h, expiring: Expires in 3 h]
    assert_eq!(fetches_after(0).await, [1, 1, 1, 1]);
    assert_eq!(fetches_after(599).await, [1, 1, 1, 1]);
    assert_eq!(fetches_after(2).await, [2, 1, 1, 1]);
    // Past an hour (the old flat lifetime), up to 3 hours.
    assert_eq!(fetches_after(2 * 3600 - 601).await, [3, 1, 1, 1]);
    assert_eq!(fetches_after(3600).await, [4, 1, 1, 2]);
    assert_eq!(fetches_after(21 * 3600).await, [5, 2, 1, 3]);
    assert_eq!(fetches_after(24 * 3600).await, [6, 3, 2, 4]);
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_delegation_it_had() {
    let (stub, port, c, clock) = delegating_stub(&["keep.test", "never.test"]);
    let wk = "/.well-known/matrix/server";
    let doc = format!(r#"{{"m.server":"target.test:{port}"}}"#);
    let delegated = || async { version(&c, "keep.test").await.ok().as_deref() == Some("stub") };
    stub.set(
        "keep.test",
        wk,
        Reply::Ok(doc, vec![("cache-control", "max-age=600".into())]),
    );
    assert!(delegated().await);

    // Expired, and the server answers 503: the delegation stays, asked again after 2 minutes.
    stub.set("keep.test", wk, Reply::Status(503));
    clock.advance(601);
    assert!(delegated().await);
    assert_eq!(well_known_fetches(&stub, "keep.test"), 2);
    clock.advance(119);
    assert!(delegated().await);
    assert_eq!(well_known_fetches(&stub, "keep.test"), 2);
    // No answer at all (a closed port, through a redirect): still a temporary failure.
    let closed = common::free_port();
    stub.set(
        "keep.test",
        wk,
        Reply::Redirect(302, format!("https://127.0.0.1:{closed}/")),
    );
    clock.advance(2);
    assert!(delegated().await);
    assert_eq!(well_known_fetches(&stub, "keep.test"), 3);

    // A definite answer (404) ends the delegation; with a valid one seen recently, the
    // document is asked again after 2 minutes rather than an hour.
    stub.set("keep.test", wk, Reply::Status(404));
    clock.advance(121);
    assert!(!delegated().await);
    assert_eq!(well_known_fetches(&stub, "keep.test"), 4);
    clock.advance(121);
    assert!(!delegated().await);
    assert_eq!(well_known_fetches(&stub, "keep.test"), 5);

    // Temporary failures stop keeping a delegation two hours after its lifetime ended.
    stub.set(
        "keep.test",
        wk,
        Reply::Ok(
            format!(r#"{{"m.server":"target.test:{port}"}}"#),
            vec![("cache-control", "max-age=600".into())],
        ),
    );
    clock.advance(121);
    assert!(delegated().await);
    stub.set("keep.test", wk, Reply::Status(502));
    for _ in 0..(2 * 3600 + 600) / 120 - 1 {
        clock.advance(120);
        assert!(delegated().await);
    }
    clock.advance(240);
    assert!(!delegated().await);

    // A server that never had a valid answer is asked again after an hour.
    stub.set("never.test", wk, Reply::Status(404));
    assert_ne!(
        version(&c, "never.test").await.ok().as_deref(),
        Some("stub")
    );
    clock.advance(3599);
    assert_ne!(
        version(&c, "never.test").await.ok().as_deref(),
        Some("stub")
    );
    assert_eq!(well_known_fetches(&stub, "never.test"), 1);
    clock.advance(2);
    assert_ne!(
        version(&c, "never.test").await.ok().as_deref(),
        Some("stub")
    );
    assert_eq!(well_known_fetches(&stub, "never.test"), 2);
}

#[tokio::test]
async fn srv_targets_are_tried_in_order_and_a_lone_dot_means_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path());
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let closed = common::free_port();
    let mut dns = MapDns::default();
    for name in ["target.test", "down.test"] {
        dns.ips.insert(name.into(), loopback);
    }
    // The preferred target refuses connections: the next record's target is used.
    dns.srv.insert(
        "_matrix-fed._tcp.fallback.test".into(),
        vec![
            SrvRecord::new(20, 0, port, "target.test."),
            SrvRecord::new(10, 0, closed, "down.test."),
            SrvRecord::new(15, 0, 1, "unknown.test."),
        ],
    );
    // A lone "." says federation is not offered here: the deprecated name (which would
    // answer) and port 8448 are not tried.
    dns.srv.insert(
        "_matrix-fed._tcp.dot.test".into(),
        vec![SrvRecord::new(0, 0, 0, ".")],
    );
    dns.srv.insert(
        "_matrix._tcp.dot.test".into(),
        vec![SrvRecord::new(0, 0, port, "target.test.")],
    );
    let dns = Arc::new(dns);
    let c = client(dns.clone());
    let take = || std::mem::take(&mut *dns.log.lock().unwrap());

    assert_eq!(version(&c, "fallback.test").await.unwrap(), "mxfed");
    assert_eq!(
        take(),
        [
            "A fallback.test",
            "SRV _matrix-fed._tcp.fallback.test",
            "A down.test",
            "A unknown.test",
            "A target.test"
        ]
    );

    let e = version(&c, "dot.test").await.unwrap_err();
    assert!(e.to_string().contains("not available"), "{e}");
    assert_eq!(take(), ["A dot.test", "SRV _matrix-fed._tcp.dot.test"]);
    // Cached like any discovery result.
    assert!(version(&c, "dot.test").await.is_err());
    assert!(take().is_empty());
}
