//! The HTTP client of the Session: TLS, proxies, time-outs and redirects, set up
//! once from the command line.
//!
//! - TLS is rustls with the ring provider and the platform verifier (the OS trust
//!   store), plus the PEM bundle of `NODE_EXTRA_CA_CERTS` / `--extra-ca-certs` when given.
//! - Proxies from `HTTP(S)_PROXY`/`NO_PROXY` are used only with `--enable-proxy`, as in mcp-remote.
//! - Redirects are followed only within the server's origin: a cross-origin hop would
//!   carry `Mcp-Session-Id` and credentials to another host (MCP authorization §Token Handling).

pub use reqwest::header;

use machines::auth::discovery::{ip_class, AddressClass};
use machines::transport::{self, same_origin};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
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
    if let Some(path) = &options.extra_ca_certs {
        let fail = |reason: String| HttpSetupError::ExtraCa {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no certificate found in the file".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
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
