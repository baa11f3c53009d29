//! Connection time limits (`server::conn`): a client that connects and says nothing, or too
//! little, is disconnected; one that sends its requests is served. Listeners run with limits of
//! one second; every wait for the server to close has a bound of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use mxfed_native::server::conn::ConnLimits;
use mxfed_native::server::run_with;

/// How long a client waits for the server to close before the test fails.
const BOUND: Duration = Duration::from_secs(20);

fn limits() -> ConnLimits {
    ConnLimits {
        first_request: Duration::from_secs(1),
        header_read: Duration::from_secs(1),
        ..ConnLimits::default()
    }
}

/// A listener on a free loopback port serving `GET /` → `ok` with `limits()`.
async fn server(tls: Option<axum_server::tls_rustls::RustlsConfig>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(run_with(
        listener,
        router,
        tls,
        std::future::pending(),
        limits(),
    ));
    addr
}

/// Reads until the server closes the connection (end of stream or a reset), for at most
/// [`BOUND`]; returns what was read, or `None` if the connection was still open then.
fn read_until_closed(stream: &mut impl Read) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + BOUND;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Runs blocking client code off the runtime's workers.
async fn client<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    let addr = server(None).await;
    let closed = client(move || read_until_closed(&mut connect(addr))).await;
    assert_eq!(closed, Some(Vec::new()), "still open after {BOUND:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_that_never_ends_is_cut_off() {
    let addr = server(None).await;
    let closed = client(move || {
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        read_until_closed(&mut s)
    })
    .await
    .expect("still open");
    assert!(!String::from_utf8_lossy(&closed).contains(" 200 "));
}

/// A request is served; the connection then kept alive is closed once it idles past the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_served_and_an_idle_kept_alive_connection_closed() {
    let addr = server(None).await;
    let got = client(move || {
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_until_closed(&mut s)
    })
    .await
    .expect("still open");
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200 ") && got.ends_with("ok"),
        "{got:?}"
    );
}

/// Accepts any certificate: the test's server has a fresh self-signed one.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Over TLS the limit counts from the end of the handshake: a client that completes it and
/// then says nothing is closed; one that sends a request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_silent_connection_is_closed_after_its_handshake() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert.pem().into_bytes(),
        cert.key_pair.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let addr = server(Some(tls)).await;
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    );
    let session = move |request: &'static [u8]| {
        let config = config.clone();
        move || {
            let mut tls =
                rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
            let mut tcp = connect(addr);
            tcp.set_read_timeout(Some(BOUND)).unwrap();
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).expect("handshake");
            }
            tcp.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
            stream.write_all(request).unwrap();
            read_until_closed(&mut stream)
        }
    };
    let closed = client(session(b"")).await;
    assert_eq!(closed, Some(Vec::new()), "still open after {BOUND:?}");
    let got = client(session(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await
        .expect("still open");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 "));
}
