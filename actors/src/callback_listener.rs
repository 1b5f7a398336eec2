//! CallbackListener: the loopback HTTP server that receives the browser's
//! redirect after sign-in (RFC 8252 §7.3).
//!
//! It listens on loopback only (127.0.0.1, and ::1 on the same port when the
//! system has it, since a `localhost` redirect may resolve to either), only while a
//! flow is pending, with at most [`MAX_CONNECTIONS`] connections, each allowed
//! [`HEADER_TIMEOUT`] to send its request and [`CONNECTION_LIFETIME`] in all; it
//! answers only the
//! exact callback path, and delivers exactly one callback whose `state` is the
//! one expected; anything else (another path, a missing or forged `state`) gets
//! a static error page and is not delivered, and the listener keeps waiting for
//! the real one. Pages reflect nothing from the request. Which request is which
//! is decided by [`machines::auth::callback::classify`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use machines::auth::callback::{self, AuthorizationResponse, Verdict};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SUCCESS: &str = "<!doctype html><meta charset=utf-8><title>Signed in</title><p>Signed in. You can close this tab and return to your MCP client.<script>window.close()</script>";
const FAILURE: &str = "<!doctype html><meta charset=utf-8><title>Sign-in failed</title><p>Sign-in did not complete. Return to your MCP client for details.";
const REJECTED: &str = "<!doctype html><meta charset=utf-8><title>Not accepted</title><p>This sign-in response was not accepted.";

/// The bound loopback sockets of one flow.
pub struct Listener {
    /// 127.0.0.1.
    v4: TcpListener,
    /// ::1 on the same port, when available.
    v6: Option<TcpListener>,
    /// The port both use.
    pub port: u16,
}

/// At most this many callback connections at once; more are closed on accept.
/// A browser opens one or two.
pub const MAX_CONNECTIONS: usize = 16;
/// A connection must send its request head within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection lives at most this long, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Waits after a failed accept (out of file descriptors): from the first to the
/// last, doubling, so a full descriptor table does not spin the cores.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Bind 127.0.0.1 on `port` (0: any free port), and ::1 on the same port when the
/// system has IPv6. A `localhost` redirect may resolve to either address, so if
/// ::1 on that port belongs to another process, the port is refused as a whole:
/// that process could otherwise receive the authorization code.
pub async fn bind(port: u16) -> std::io::Result<Listener> {
    let v4 = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = v4.local_addr()?.port();
    let v6 = match TcpListener::bind(("::1", port)).await {
        Ok(l) => Some(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("[::1]:{port} belongs to another process"),
            ))
        }
        // No IPv6 on this machine: `localhost` resolves to 127.0.0.1 only.
        Err(_) => None,
    };
    Ok(Listener { v4, v6, port })
}

/// Serve until one valid callback arrived (or the receiver is dropped). Every
/// connection task belongs to this call and ends with it.
pub async fn serve(
    listener: Listener,
    path: String,
    state: String,
    success_url: Option<String>,
) -> Option<AuthorizationResponse> {
    let (tx, mut rx) = oneshot::channel::<AuthorizationResponse>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accept = async {
            match &listener.v6 {
                Some(v6) => tokio::select! {
                    a = listener.v4.accept() => a,
                    b = v6.accept() => b,
                },
                None => listener.v4.accept().await,
            }
        };
        tokio::select! {
            got = &mut rx => return got.ok(),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept => match accepted {
                Ok((stream, _)) => {
                    backoff = ACCEPT_BACKOFF.0;
                    if connections.len() >= MAX_CONNECTIONS {
                        // Closed at once: the real browser retries, a flood gets nothing.
                        drop(stream);
                        continue;
                    }
                    let (path, state, tx) = (path.clone(), state.clone(), tx.clone());
                    let success_url = success_url.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let answer = handle(&req, &path, &state, &tx, success_url.as_deref());
                            async move { Ok::<_, std::convert::Infallible>(answer) }
                        });
                        let connection = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service);
                        let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                    });
                }
                Err(e) => {
                    tracing::debug!("the callback listener could not accept: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            },
        }
    }
}

type Sender = Arc<Mutex<Option<oneshot::Sender<AuthorizationResponse>>>>;

fn handle(
    req: &Request<Incoming>,
    path: &str,
    state: &str,
    tx: &Sender,
    success_url: Option<&str>,
) -> Response<Full<Bytes>> {
    let response = match callback::classify(req.uri().path(), req.uri().query(), path, state) {
        Verdict::NotFound => {
            return page(
                StatusCode::NOT_FOUND,
                "<!doctype html><title>Not found</title><p>Not found.",
            )
        }
        Verdict::Rejected(_) => {
            tracing::warn!("a sign-in callback arrived with a missing or wrong state; ignored");
            return page(StatusCode::BAD_REQUEST, REJECTED);
        }
        Verdict::Answered(response) => response,
    };
    let ok = response.has_code();
    match tx.lock().ok().and_then(|mut t| t.take()) {
        Some(sender) => {
            let _ = sender.send(response);
            if let (true, Some(to)) = (ok, success_url) {
                // --auth-success-url: the user's own page (nothing appended to it).
                let mut r = page(StatusCode::SEE_OTHER, SUCCESS);
                if let Ok(location) = to.parse() {
                    r.headers_mut().insert("location", location);
                }
                return r;
            }
            page(
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                },
                if ok { SUCCESS } else { FAILURE },
            )
        }
        None => page(StatusCode::GONE, REJECTED), // one-shot: already used
    }
}

fn page(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        "content-type",
        "text/html; charset=utf-8".parse().expect("static"),
    );
    h.insert("cache-control", "no-store".parse().expect("static"));
    h.insert("referrer-policy", "no-referrer".parse().expect("static"));
    r
}
