//! A loopback HTTP forward proxy, the kind a corporate network or a VPN client puts in
//! `HTTP_PROXY` / `HTTPS_PROXY`, for checking whether a client sends its traffic through it.
//!
//! It speaks the two forms a client uses with an `http://` proxy:
//!
//! - `CONNECT host:port` (RFC 9110 §9.3.6) for `https://` destinations: it answers `200`
//!   and then relays bytes both ways, the TLS session passing through untouched;
//! - an absolute-form request (`POST http://host:port/mcp HTTP/1.1`, RFC 9112 §3.2.2) for
//!   `http://` destinations: it opens a connection to that origin and relays the request as
//!   it came, then everything after it both ways. The testbed's hyper server takes the
//!   absolute form, so nothing is rewritten.
//!
//! Every connection's first request is recorded ([`ForwardProxy::seen`]) before anything
//! else happens (a connection closed before its first byte is no request and is not); further requests on a kept-alive plain connection pass through
//! unrecorded (a client pools such a connection per destination). It only forwards to
//! loopback addresses (a target that resolves elsewhere gets `403`), every wait is bounded,
//! and it stops with [`ForwardProxy::shutdown`] or with the tokio runtime it runs on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::state::{lock, until_shutdown};

/// The longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send its request head, and the proxy to reach the target.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// One request the proxy received as the first on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The method: `CONNECT` for a tunnel, else the plain request's (`POST`, `GET`, …).
    pub method: String,
    /// The request target as sent: `host:port` for `CONNECT`, the absolute URL otherwise.
    pub target: String,
    /// The status the proxy answered with itself (`200` for a tunnel it opened, `502` when
    /// the target could not be reached, `403` for a target off loopback, `400` for a request
    /// it could not read); `None` for a plain request it relayed, which the target answered.
    pub status: Option<u16>,
}

/// What the accept loop and the handles share.
struct ProxyShared {
    /// Every connection's first request, in arrival order.
    seen: Mutex<Vec<ProxiedRequest>>,
    /// Host names answered by a loopback address instead of DNS ([`ForwardProxy::alias`]).
    aliases: Mutex<std::collections::HashMap<String, SocketAddr>>,
    /// Woken on each new record.
    changed: Notify,
    /// Flips to `true` on shutdown.
    shutdown: watch::Sender<bool>,
}

/// A handle on a running forward proxy. Cloning it gives another handle on the same proxy.
#[derive(Clone)]
pub struct ForwardProxy {
    /// The listener's address.
    addr: SocketAddr,
    /// The state the proxy's tasks share.
    shared: Arc<ProxyShared>,
}

impl std::fmt::Debug for ForwardProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardProxy")
            .field("url", &self.url())
            .finish()
    }
}

impl ForwardProxy {
    /// Binds `127.0.0.1` on an ephemeral port and spawns the proxy on the current tokio
    /// runtime.
    pub async fn start() -> std::io::Result<ForwardProxy> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(ProxyShared {
            seen: Mutex::new(Vec::new()),
            aliases: Mutex::new(std::collections::HashMap::new()),
            changed: Notify::new(),
            shutdown: watch::Sender::new(false),
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(ForwardProxy { addr, shared })
    }

    /// Makes `host` (any port) lead to the loopback address `to`, as a public server
    /// name would: a client behind the proxy sees a public host, the test a local one.
    pub fn alias(&self, host: &str, to: SocketAddr) {
        lock(&self.shared.aliases).insert(host.to_owned(), to);
    }

    /// The value for `HTTP_PROXY` / `HTTPS_PROXY`: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every connection's first request so far, in arrival order.
    pub fn seen(&self) -> Vec<ProxiedRequest> {
        lock(&self.shared.seen).clone()
    }

    /// Waits until `pred` holds for [`ForwardProxy::seen`], or `timeout` passes; returns
    /// whether it held.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[ProxiedRequest]) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if pred(&lock(&self.shared.seen)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return pred(&lock(&self.shared.seen));
            }
        }
    }

    /// Stops accepting connections and drops the open ones.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Accepts connections until shutdown, then drops them all.
async fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = until_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(handle(stream, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// A request head: the request line's parts and the bytes read so far (head and any
/// bytes after it).
struct Head {
    /// The method.
    method: String,
    /// The request target.
    target: String,
    /// Everything read from the client so far.
    bytes: Vec<u8>,
    /// Where the head ends in `bytes` (after the blank line).
    end: usize,
}

/// Why no request head came.
enum NoHead {
    /// The client closed (or reset) the connection before sending a byte: no request at
    /// all, as when a client exits while connecting.
    Silent,
    /// The client sent something that is no request head, or too slowly.
    Unreadable,
}

/// Reads up to the end of the request head.
async fn read_head(client: &mut TcpStream) -> Result<Head, NoHead> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if bytes.len() > MAX_HEAD {
            return Err(NoHead::Unreadable);
        }
        let read = tokio::time::timeout(STEP_TIMEOUT, client.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&chunk[..n]),
            Ok(_) if bytes.is_empty() => return Err(NoHead::Silent),
            _ => return Err(NoHead::Unreadable),
        }
    };
    parse_head(bytes, end).ok_or(NoHead::Unreadable)
}

/// Splits the request line of a head read whole (`end` is where the head ends).
fn parse_head(bytes: Vec<u8>, end: usize) -> Option<Head> {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    parts.next()?.strip_prefix("HTTP/1.")?;
    Some(Head {
        method,
        target,
        bytes,
        end,
    })
}

/// The `host` and `port` a request asks to reach: `host:port` for `CONNECT`, the
/// authority of an absolute `http://` URL otherwise.
fn destination(head: &Head) -> Option<(String, u16)> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = head.target.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return Some((host.to_owned(), port.parse().ok()?));
    }
    let url = url::Url::parse(&head.target).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = match url.host()? {
        url::Host::Ipv6(ip) => ip.to_string(),
        other => other.to_string(),
    };
    Some((host, url.port_or_known_default()?))
}

/// Opens a connection to `host:port` if every address it resolves to is loopback.
async fn connect_loopback(shared: &ProxyShared, host: &str, port: u16) -> Result<TcpStream, u16> {
    let alias = lock(&shared.aliases).get(host).copied();
    let addrs: Vec<SocketAddr> = match alias {
        Some(to) => vec![to],
        None => {
            match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => return Err(502),
            }
        }
    };
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(403);
    }
    match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(&addrs[..])).await {
        Ok(Ok(stream)) => Ok(stream),
        _ => Err(502),
    }
}

/// Records a request and wakes the waiters.
fn record(shared: &ProxyShared, head: Option<&Head>, status: Option<u16>) {
    let (method, target) =
        head.map_or_else(Default::default, |h| (h.method.clone(), h.target.clone()));
    lock(&shared.seen).push(ProxiedRequest {
        method,
        target,
        status,
    });
    shared.changed.notify_waiters();
}

/// Answers with a status line and no body, then closes.
async fn refuse(client: &mut TcpStream, status: u16) {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        _ => "Bad Gateway",
    };
    let answer =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Serves one client connection: reads its first request, opens the tunnel or relays it.
async fn handle(mut client: TcpStream, shared: Arc<ProxyShared>) {
    let head = match read_head(&mut client).await {
        Ok(head) => head,
        Err(NoHead::Silent) => return,
        Err(NoHead::Unreadable) => {
            record(&shared, None, Some(400));
            refuse(&mut client, 400).await;
            return;
        }
    };
    let Some((host, port)) = destination(&head) else {
        record(&shared, Some(&head), Some(400));
        refuse(&mut client, 400).await;
        return;
    };
    let mut upstream = match connect_loopback(&shared, &host, port).await {
        Ok(stream) => stream,
        Err(status) => {
            record(&shared, Some(&head), Some(status));
            refuse(&mut client, status).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let sent = if head.method.eq_ignore_ascii_case("CONNECT") {
        record(&shared, Some(&head), Some(200));
        let answer = client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await;
        // Bytes the client sent after the head already belong to the tunnel.
        let early = upstream.write_all(&head.bytes[head.end..]).await;
        answer.and(early)
    } else {
        record(&shared, Some(&head), None);
        upstream.write_all(&head.bytes).await
    };
    if sent.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
