//! Outbound server discovery with SRV records, on a real TLS socket but without real DNS: the
//! client resolves through an injected [`Dns`] map, and the only server is in-process on
//! loopback. Shows the order of lookups (well-known, `_matrix-fed._tcp`, the deprecated
//! `_matrix._tcp`, port 8448) and that the SRV target's port is the one connected to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use mxfed_core::discovery::SrvRecord;
use mxfed_core::keys::SigningKey;
use mxfed_native::server::client::{Dns, DnsFuture, FedClient, FetchError};
use mxfed_native::server::config::{default_blocklist, IpPolicy};

/// Names and SRV records from maps; every lookup is recorded.
#[derive(Default)]
struct MapDns {
    ips: BTreeMap<String, IpAddr>,
    srv: BTreeMap<String, Vec<SrvRecord>>,
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
    proxy_trap();
    FedClient::with_dns(
        "client.test",
        vec![SigningKey::from_seed("c1", &[3u8; 32]).unwrap()],
        IpPolicy::new(&default_blocklist(), &["127.0.0.0/8".into()]).unwrap(),
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

    // No well-known (the name has no address), then `_matrix-fed._tcp`: its best target.
    assert_eq!(version(&c, "srv.test").await.unwrap(), "mxfed");
    assert_eq!(
        take(),
        [
            "A srv.test",
            "SRV _matrix-fed._tcp.srv.test",
            "A target.test"
        ]
    );
    // Cached: the next request looks up neither well-known nor SRV (and may reuse the
    // connection without resolving the target again).
    assert_eq!(version(&c, "srv.test").await.unwrap(), "mxfed");
    let again = take();
    assert!(again.iter().all(|l| l == "A target.test"), "{again:?}");

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
