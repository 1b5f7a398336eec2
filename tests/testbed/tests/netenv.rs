//! Checks of the testbed's network-environment pieces over raw sockets: the HTTPS mode with a
//! throwaway CA ([`Testbed::start_tls`]), listening on `::1` ([`Testbed::start_with`]), and
//! the loopback forward proxy ([`ForwardProxy`]). Every wait is bounded.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use testbed::{Config, ForwardProxy, Listen, ProxiedRequest, Testbed, ThrowawayCa};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any step may take.
const WAIT: Duration = Duration::from_secs(10);

/// Sends `head` (a whole request without body) and returns the response's status code,
/// read from its head.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, head: &str) -> u16 {
    tokio::time::timeout(WAIT, async {
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.flush().await.expect("flush");
        read_status(stream).await
    })
    .await
    .expect("an answer in time")
}

/// Reads a response head and returns its status code.
async fn read_status<S: AsyncRead + Unpin>(stream: &mut S) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "response head too long");
        let n = stream.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "connection closed inside the head: {head:?}");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad response head {text:?}"))
}

/// A TLS client over TCP to `addr`, trusting only `roots` (PEM), for `name`.
async fn tls_connect(
    addr: &str,
    roots_pem: &str,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

/// `host:port` of a testbed.
fn authority(tb: &Testbed) -> String {
    tb.origin()
        .split_once("://")
        .map(|(_, a)| a.to_owned())
        .expect("an origin with a scheme")
}

#[tokio::test]
async fn https_mode_serves_a_client_that_trusts_the_throwaway_ca() {
    let ca = ThrowawayCa::new("testbed CA").expect("CA");
    let identity = ca.issue(&["127.0.0.1", "localhost"]).expect("issue");
    let tb = Testbed::start_tls(Config::default(), &identity)
        .await
        .expect("start");
    assert!(tb.url().starts_with("https://127.0.0.1:"), "{}", tb.url());
    assert!(tb.elsewhere_origin().starts_with("https://127.0.0.1:"));

    let addr = authority(&tb);
    for name in ["127.0.0.1", "localhost"] {
        let mut tls = tls_connect(&addr, &ca.ca_pem(), name)
            .await
            .expect("handshake with the CA trusted");
        let head = format!("GET /nothing HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(&mut tls, &head).await, 404);
    }
    assert_eq!(tb.requests().len(), 2);
    assert!(tb.tls_failures().is_empty(), "{:?}", tb.tls_failures());
}

#[tokio::test]
async fn https_mode_records_a_client_that_refuses_the_certificate() {
    let ca = ThrowawayCa::new("testbed CA").expect("CA");
    let other = ThrowawayCa::new("other CA").expect("CA");
    let identity = ca.issue(&["127.0.0.1"]).expect("issue");
    let tb = Testbed::start_tls(Config::default(), &identity)
        .await
        .expect("start");
    let refused = tls_connect(&authority(&tb), &other.ca_pem(), "127.0.0.1").await;
    let error = refused.expect_err("a client trusting another CA refuses");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tb.tls_failures().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failures = tb.tls_failures();
    assert!(
        failures.iter().any(|f| f.contains("UnknownCA")),
        "{failures:?}"
    );
    assert!(tb.requests().is_empty());
}

#[tokio::test]
async fn a_certificate_made_elsewhere_is_taken_from_pem() {
    let ca = ThrowawayCa::new("testbed CA").expect("CA");
    let made = ca.issue(&["127.0.0.1"]).expect("issue");
    // Round trip through the PEM constructor, as for files made with openssl.
    let pem = testbed::TlsIdentity::from_pem(made.cert_chain_pem(), made.key_pem());
    let tb = Testbed::start_tls(Config::default(), &pem)
        .await
        .expect("start");
    let mut tls = tls_connect(&authority(&tb), &ca.ca_pem(), "127.0.0.1")
        .await
        .expect("handshake");
    let head = "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(&mut tls, head).await, 404);

    let broken = testbed::TlsIdentity::from_pem("no certificate here", "no key");
    let error = Testbed::start_tls(Config::default(), &broken)
        .await
        .expect_err("an identity without a certificate is refused");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test]
async fn listens_on_ipv6_loopback_and_nowhere_else() {
    let off_loopback = Listen {
        ip: "192.0.2.1".parse().expect("an address"),
        ..Listen::default()
    };
    let error = Testbed::start_with(Config::default(), off_loopback)
        .await
        .expect_err("off loopback is refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);

    if std::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).is_err() {
        eprintln!("skipped the ::1 half: no IPv6 loopback here");
        return;
    }
    let tb = Testbed::start_with(
        Config::default(),
        Listen {
            ip: Ipv6Addr::LOCALHOST.into(),
            ..Listen::default()
        },
    )
    .await
    .expect("start on ::1");
    assert!(tb.url().starts_with("http://[::1]:"), "{}", tb.url());
    assert!(tb.port() > 0);
    let addr = authority(&tb);
    let mut tcp = TcpStream::connect(&addr).await.expect("connect");
    let head = format!("GET /nothing HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    assert_eq!(exchange(&mut tcp, &head).await, 404);
}

#[tokio::test]
async fn forward_proxy_relays_absolute_form_and_connect_and_records_them() {
    let tb = Testbed::start(Config::default()).await.expect("start");
    let proxy = ForwardProxy::start().await.expect("proxy");
    let proxy_addr = proxy.url().trim_start_matches("http://").to_owned();
    let target = authority(&tb);

    // Absolute form, as a client sends plain http to a proxy.
    let mut tcp = TcpStream::connect(&proxy_addr).await.expect("connect");
    let head = format!(
        "GET http://{target}/nothing HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(exchange(&mut tcp, &head).await, 404);

    // CONNECT, then a request inside the tunnel.
    let mut tcp = TcpStream::connect(&proxy_addr).await.expect("connect");
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    assert_eq!(exchange(&mut tcp, &connect).await, 200);
    let head =
        format!("GET /through-tunnel HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    assert_eq!(exchange(&mut tcp, &head).await, 404);

    assert_eq!(
        proxy.seen(),
        vec![
            ProxiedRequest {
                method: "GET".into(),
                target: format!("http://{target}/nothing"),
                status: None,
            },
            ProxiedRequest {
                method: "CONNECT".into(),
                target: target.clone(),
                status: Some(200),
            },
        ]
    );
    let paths: Vec<String> = tb.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/nothing", "/through-tunnel"]);
    assert!(proxy.wait_for(|seen| seen.len() == 2, WAIT).await);
}

#[tokio::test]
async fn forward_proxy_refuses_targets_off_loopback_and_garbage() {
    let proxy = ForwardProxy::start().await.expect("proxy");
    let proxy_addr = proxy.url().trim_start_matches("http://").to_owned();
    // A documentation address (RFC 5737): refused before any connection is attempted.
    let mut tcp = TcpStream::connect(&proxy_addr).await.expect("connect");
    let connect = "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n";
    assert_eq!(exchange(&mut tcp, connect).await, 403);
    let mut tcp = TcpStream::connect(&proxy_addr).await.expect("connect");
    assert_eq!(exchange(&mut tcp, "NONSENSE\r\n\r\n").await, 400);
    let statuses: Vec<Option<u16>> = proxy.seen().into_iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(403), Some(400)]);
}
