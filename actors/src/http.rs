//! The HTTP client of the Session: TLS, proxies, time-outs and redirects, set up
//! once from the command line.
//!
//! - TLS is rustls with the ring provider and the platform verifier (the OS trust
//!   store), plus the PEM bundle of `NODE_EXTRA_CA_CERTS` / `--extra-ca-certs` when given.
//!   One verifier serves every client of the process, and it reads the trust store at
//!   the first TLS handshake (a server reached over plain HTTP never needs it).
//! - Proxies from `HTTP(S)_PROXY`/`NO_PROXY` are used only with `--enable-proxy`, as in mcp-remote.
//! - Redirects are followed only within the server's origin: a cross-origin hop would
//!   carry `Mcp-Session-Id` and credentials to another host (MCP authorization §Token Handling).

pub use reqwest::header;

use machines::auth::discovery::{ip_class, AddressClass};
use machines::transport::{self, same_origin};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How the HTTP client is built.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Time allowed to open a TCP+TLS connection.
    pub connect_timeout: Duration,
    /// Longest silence while reading a body (`None`: no limit).
    pub read_timeout: Option<Duration>,
    /// Use the proxy environment variables.
    pub enable_proxy: bool,
    /// Connect over IPv4 only.
    pub ipv4: bool,
    /// Extra CA certificates to trust, as a PEM bundle file.
    pub extra_ca_certs: Option<PathBuf>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSetupError {
    /// The extra CA file could not be read or parsed.
    #[error("could not load extra CA certificates from {path}: {reason}")]
    ExtraCa {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// reqwest refused the configuration.
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
    /// A thread of the proxy could not be started.
    #[error("{0}")]
    Io(String),
}

/// What both clients share: TLS (ring, platform verifier, extra CAs), proxies,
/// IPv4, the connect time-out.
fn base_builder(options: &HttpOptions) -> Result<reqwest::ClientBuilder, HttpSetupError> {
    // Several calls are fine: only the first installs the provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mcp-remote-rs/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.connect_timeout)
        // A connection whose route died (a VPN reconnect) is closed within about 8 s,
        // so what was in flight on it is resumed or reported instead of waiting for
        // --request-timeout (machines::transport::TCP_USER_TIMEOUT).
        .tcp_keepalive(transport::TCP_KEEPALIVE_IDLE)
        .tcp_keepalive_interval(transport::TCP_KEEPALIVE_INTERVAL)
        .tcp_keepalive_retries(transport::TCP_KEEPALIVE_RETRIES);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    {
        builder = builder.tcp_user_timeout(transport::TCP_USER_TIMEOUT);
    }
    if !options.enable_proxy {
        builder = builder.no_proxy();
    }
    if options.ipv4 {
        builder = builder.local_address(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    builder = builder.tls_backend_preconfigured(tls_config(options)?);
    Ok(builder)
}

/// The TLS set-up every client of the process shares: TLS 1.2 and 1.3 with ring, ALPN
/// `h2` then `http/1.1` (what reqwest offers by itself), and one [`LazyVerifier`].
fn tls_config(options: &HttpOptions) -> Result<rustls::ClientConfig, HttpSetupError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = shared_verifier(options.extra_ca_certs.as_deref(), provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| HttpSetupError::Client(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The process's verifier for these extra CAs: made once, shared by every client
/// (the MCP server's, the OAuth one, the diagnostic one).
fn shared_verifier(
    extra_ca_certs: Option<&std::path::Path>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<LazyVerifier>, HttpSetupError> {
    static SHARED: Mutex<Option<(Option<PathBuf>, Arc<LazyVerifier>)>> = Mutex::new(None);
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, verifier)) = shared.as_ref() {
        if path.as_deref() == extra_ca_certs {
            return Ok(verifier.clone());
        }
    }
    let extra = match extra_ca_certs {
        Some(path) => read_extra_ca(path)?,
        None => Vec::new(),
    };
    let verifier = Arc::new(LazyVerifier {
        extra,
        provider,
        loaded: OnceLock::new(),
    });
    *shared = Some((extra_ca_certs.map(PathBuf::from), verifier.clone()));
    Ok(verifier)
}

/// The certificates of a PEM bundle, each checked to make a trust anchor, so a bad file
/// is reported at start-up, not at the first connection.
fn read_extra_ca(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, HttpSetupError> {
    let fail = |reason: String| HttpSetupError::ExtraCa {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate found in the file".into()));
    }
    let mut probe = rustls::RootCertStore::empty();
    for cert in &certs {
        probe.add(cert.clone()).map_err(|e| fail(e.to_string()))?;
    }
    Ok(certs)
}

/// The platform's certificate check (the OS trust store, plus the extra CAs), made at
/// the first TLS handshake: reading the system's CA files took most of the start-up,
/// and was done once per client, for servers reached over plain HTTP too.
#[derive(Debug)]
struct LazyVerifier {
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    loaded: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyVerifier {
    fn get(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.loaded
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new_with_extra_roots(
                    self.extra.iter().cloned(),
                    self.provider.clone(),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the trust store has been read (tests).
    #[cfg(test)]
    fn is_loaded(&self) -> bool {
        self.loaded.get().is_some()
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn finish(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, HttpSetupError> {
    builder
        .build()
        .map_err(|e| HttpSetupError::Client(e.without_url().to_string()))
}

/// Build the client for the MCP server: redirects only within its origin.
pub fn build_client(options: &HttpOptions) -> Result<reqwest::Client, HttpSetupError> {
    finish(mcp_builder(options)?)
}

/// The MCP server's client that also keeps the server's certificate on each
/// response (`reqwest::tls::TlsInfo`), for `mcp-remote-client --doctor`.
pub fn build_diagnostic_client(options: &HttpOptions) -> Result<reqwest::Client, HttpSetupError> {
    finish(mcp_builder(options)?.tls_info(true))
}

fn mcp_builder(options: &HttpOptions) -> Result<reqwest::ClientBuilder, HttpSetupError> {
    let mut builder = base_builder(options)?
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| same_origin(first, attempt.url()));
            if !same {
                attempt.stop()
            } else if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .tcp_nodelay(true);
    if let Some(t) = options.read_timeout {
        builder = builder.read_timeout(t);
    }
    Ok(builder)
}

/// The client for OAuth requests: the same TLS, proxy and time-out settings, but
/// redirects are never followed (oauth2's SSRF advice; MCP security §SSRF).
///
/// `public_only`: the MCP server is public and `--allow-private-network` was not
/// given, so a host name of the authorization server that resolves only to private,
/// link-local or loopback addresses is refused like the address itself would be
/// (`machines::auth::discovery::check_public` sees only literals).
pub fn build_oauth_client(
    options: &HttpOptions,
    public_only: bool,
) -> Result<reqwest::Client, HttpSetupError> {
    let mut builder = base_builder(options)?.redirect(reqwest::redirect::Policy::none());
    if public_only {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
    }
    finish(builder)
}

/// A resolver that keeps only public addresses, and fails when none is left.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| ip_class(a.ip()) == AddressClass::Public)
                .collect();
            if public.is_empty() {
                let class = found
                    .first()
                    .map_or(AddressClass::Private, |a| ip_class(a.ip()));
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    Box::new(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "{host} resolves to a {class} address; refusing it for sign-in (pass --allow-private-network if that is intended)"
                        ),
                    ));
                return Err(refused);
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Describe a reqwest error for a user, without the URL (it may carry a secret in its query).
pub fn describe_error(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_redirect() {
        "redirect refused"
    } else if error.is_body() || error.is_decode() {
        "the response broke off"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    for _ in 0..4 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = s.source();
    }
    let lower = detail.to_ascii_lowercase();
    if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("self-signed")
        || lower.contains("self signed")
    {
        // The classic VPN / corporate proxy case (mcp-remote README "VPN Certs").
        return format!(
            "{kind}: {detail}. The server's TLS certificate is not trusted by this machine. Behind a VPN or a \
             corporate proxy, point NODE_EXTRA_CA_CERTS (or --extra-ca-certs) at its CA bundle, e.g. in the \
             client config: \"env\": {{ \"NODE_EXTRA_CA_CERTS\": \"/path/to/ca.pem\" }}"
        );
    }
    if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        return format!("{kind}: {detail}. The certificate is for another name: use a server URL with a name it covers.");
    }
    if lower.contains("expired") && lower.contains("certificate") {
        return format!(
            "{kind}: {detail}. The certificate has expired, or this machine's clock is wrong."
        );
    }
    format!("{kind}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn every_client_shares_one_verifier_that_reads_the_trust_store_at_the_first_handshake() {
        let options = HttpOptions {
            connect_timeout: Duration::from_secs(2),
            read_timeout: None,
            enable_proxy: false,
            ipv4: false,
            extra_ca_certs: None,
        };
        build_client(&options).unwrap();
        build_diagnostic_client(&options).unwrap();
        build_oauth_client(&options, true).unwrap();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .unwrap()
            .clone();
        let first = shared_verifier(None, provider.clone()).unwrap();
        let again = shared_verifier(None, provider.clone()).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one verifier for the process");
        // No test in this crate makes a TLS handshake: nothing has read the store yet.
        assert!(!first.is_loaded());
        // What a handshake asks for first loads it, once.
        assert!(!first.supported_verify_schemes().is_empty());
        assert!(!first.is_loaded(), "offering schemes needs no trust store");
        assert!(first.get().is_ok(), "this machine has a CA store");
        assert!(first.is_loaded());
    }

    #[test]
    fn a_bad_extra_ca_file_is_reported_when_the_client_is_built() {
        let dir = std::env::temp_dir().join(format!("mcp-remote-extra-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = |path: &std::path::Path| HttpOptions {
            connect_timeout: Duration::from_secs(2),
            read_timeout: None,
            enable_proxy: false,
            ipv4: false,
            extra_ca_certs: Some(path.to_owned()),
        };
        for (name, content, says) in [
            ("empty.pem", &b""[..], "no certificate found"),
            (
                "garbage.pem",
                &b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"[..],
                "",
            ),
            (
                "not-a-cert.pem",
                &b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"[..],
                "",
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            let error = build_client(&options(&path)).expect_err(name).to_string();
            assert!(
                error.starts_with("could not load extra CA certificates from")
                    && error.contains(says),
                "{name}: {error}"
            );
        }
        let missing = dir.join("missing.pem");
        let error = build_client(&options(&missing))
            .expect_err("missing")
            .to_string();
        assert!(error.contains("missing.pem"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_loopback_is_refused_for_a_public_server() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let refused = PublicOnly
            .resolve(reqwest::dns::Name::from_str("localhost").unwrap())
            .await;
        let error = refused.err().expect("refused").to_string();
        assert!(
            error.contains("loopback") && error.contains("--allow-private-network"),
            "{error}"
        );
        // Through the client: the request fails before any connection is made.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = build_oauth_client(
            &HttpOptions {
                connect_timeout: Duration::from_secs(2),
                read_timeout: None,
                enable_proxy: false,
                ipv4: false,
                extra_ca_certs: None,
            },
            true,
        )
        .unwrap();
        let sent = client
            .get(format!(
                "http://localhost:{port}/.well-known/oauth-authorization-server"
            ))
            .send()
            .await;
        assert!(sent.is_err());
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "no connection was made");
    }

    /// A listener on `ip` that counts its connections; `answer` says whether it answers
    /// each with an empty 200 or drops it at once (a decoy).
    async fn listener(ip: IpAddr, port: u16, answer: bool) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .unwrap_or_else(|e| panic!("this test needs a loopback on {ip}: {e}"));
        let port = listener.local_addr().expect("bound").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                if answer {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                }
            }
        });
        (port, accepted)
    }

    /// `--ipv4` with a name that resolves to `::1` first and `127.0.0.1` too (what a
    /// Debian `/etc/hosts` makes of `localhost`; set here with reqwest's resolver
    /// override, so the test does not depend on this machine's hosts file): the
    /// connection goes to the IPv4 address, never to the IPv6 one; without the flag
    /// the IPv6 address is tried first.
    #[tokio::test]
    async fn ipv4_only_picks_the_ipv4_address_of_a_dual_stack_name() {
        let (port, decoy) = listener(IpAddr::V6(Ipv6Addr::LOCALHOST), 0, false).await;
        let (_, server) = listener(IpAddr::V4(Ipv4Addr::LOCALHOST), port, true).await;
        let addrs = [
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        ];
        let client = |ipv4: bool| {
            let options = HttpOptions {
                connect_timeout: Duration::from_secs(5),
                read_timeout: Some(Duration::from_secs(5)),
                enable_proxy: false,
                ipv4,
                extra_ca_certs: None,
            };
            let builder = base_builder(&options).expect("options");
            finish(builder.resolve_to_addrs("dual-stack.test", &addrs)).expect("client")
        };
        let url = format!("http://dual-stack.test:{port}/mcp");

        // Control: without the flag the IPv6 address, the decoy, is tried first.
        let _ = client(false).get(&url).send().await;
        assert!(decoy.load(Ordering::SeqCst) > 0, "the IPv6 address first");
        decoy.store(0, Ordering::SeqCst);
        server.store(0, Ordering::SeqCst);

        let response = client(true).get(&url).send().await.expect("reached");
        assert_eq!(response.status(), 200);
        assert_eq!(
            decoy.load(Ordering::SeqCst),
            0,
            "--ipv4 never connects to ::1"
        );
        assert_eq!(server.load(Ordering::SeqCst), 1);
    }
}
