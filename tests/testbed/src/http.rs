//! The HTTP side: the accept loops, request recording, routing by [`Transport`], and the
//! Streamable HTTP rules for `POST`, `GET` and `DELETE` on `/mcp` (MCP 2025-03-26 …
//! 2025-11-25, "Streamable HTTP"). The legacy HTTP+SSE paths live in [`crate::legacy`].
//!
//! Each listener runs [`serve`] until shutdown; each connection is one hyper HTTP/1.1 task.
//! Every request is recorded with its body before anything else happens, then routed.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::mcp::{self, Call, Outcome};
use crate::record::Recorded;
use crate::sse::{event_stream_body, Body, StreamKind};
use crate::state::{id_key, lock, until_shutdown, Shared};
use crate::{authserver, legacy, resource, Config, ResponseMode, Transport, UnknownSession};

/// The largest request body accepted; larger ones get 413.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// The session header, lowercase as hyper stores names.
const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header (2025-06-18 §Protocol Version Header).
const VERSION_HEADER: &str = "mcp-protocol-version";
/// The resumption header (SSE §Last-Event-ID).
const LAST_EVENT_ID: &str = "last-event-id";

/// JSON-RPC error codes used in HTTP error bodies.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
/// The generic server error code the MCP SDKs use for transport-level refusals.
pub(crate) const SERVER_ERROR: i64 = -32000;
/// The code the MCP SDKs use for an unknown session.
const SESSION_NOT_FOUND: i64 = -32001;

/// Which listener a connection arrived on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// The MCP server.
    Main,
    /// The other origin that redirects point to; it records and refuses.
    Elsewhere,
}

/// How long a client may take over its TLS handshake (HTTPS mode).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until shutdown, then drops them all. With `tls`, each connection
/// is a TLS one; a failed handshake is recorded in [`Shared::tls_failures`].
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    role: Role,
    tls: Option<TlsAcceptor>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = until_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // As real servers do (Node's http, uvicorn): without it, a small event
                    // written while the last one is unacknowledged waits for the client's
                    // delayed ACK, up to 40 ms (Nagle).
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    match &tls {
                        None => connections.spawn(serve_connection(stream, shared, role)),
                        Some(tls) => connections.spawn(serve_tls(tls.clone(), stream, shared, role)),
                    };
                }
                // Out of file descriptors or similar: let it pass rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Aborts every connection task, closing its socket and any stream it was writing.
    connections.shutdown().await;
}

/// Serves one HTTPS connection: the TLS handshake, then HTTP/1.1 inside it.
async fn serve_tls(
    tls: TlsAcceptor,
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    role: Role,
) {
    let failure = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => return serve_connection(stream, shared, role).await,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the client did not finish the TLS handshake in time".to_owned(),
    };
    lock(&shared.tls_failures).push(failure);
}

/// Serves one HTTP/1.1 connection, over TCP or TLS.
async fn serve_connection<I>(stream: I, shared: Arc<Shared>, role: Role)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(receive(shared, role, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Reads the body, records the request, and answers it.
async fn receive(shared: Arc<Shared>, role: Role, request: Request<Incoming>) -> Response<Body> {
    let (parts, incoming) = request.into_parts();
    let (body, too_large) = match Limited::new(incoming, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let log = match role {
        Role::Main => &shared.log,
        Role::Elsewhere => &shared.elsewhere_log,
    };
    let index = log.push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect(),
        body: body.to_vec(),
        status: None,
        received_at: Instant::now(),
    });
    let mut response = if too_large {
        plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else {
        match role {
            Role::Main => route(&shared, &parts, body).await,
            Role::Elsewhere => plain(StatusCode::NOT_FOUND, "this origin is not the MCP server"),
        }
    };
    if matches!(role, Role::Main) && shared.config().sticky_cookie {
        response.headers_mut().append(
            hyper::header::SET_COOKIE,
            HeaderValue::from_static("lb=backend-1; Path=/; HttpOnly"),
        );
    }
    log.set_status(index, response.status().as_u16());
    response
}

/// Dispatches on path and method; which paths exist depends on [`Config::transport`], and
/// with [`Config::auth`] the OAuth paths come first and the MCP endpoints want a token.
async fn route(shared: &Arc<Shared>, parts: &Parts, body: Bytes) -> Response<Body> {
    let config = shared.config();
    let streamable = matches!(config.transport, Transport::Streamable | Transport::Both);
    let legacy = matches!(config.transport, Transport::Legacy | Transport::Both);
    if let Some(auth) = &config.auth {
        if let Some(response) = authserver::route(shared, &config, auth, parts, &body) {
            return response;
        }
        let protected = match parts.uri.path() {
            "/mcp" => streamable,
            "/sse" | "/messages" => legacy,
            _ => false,
        };
        if protected {
            if let Some(refusal) = resource::guard(shared, auth, parts, &body) {
                return refusal;
            }
        }
    }
    if let (Some(to), "/mcp" | "/sse" | "/messages") = (&config.gone, parts.uri.path()) {
        let mut response = plain(StatusCode::GONE, "this endpoint is retired");
        if let Ok(link) = HeaderValue::from_str(&format!("<{to}>; rel=\"successor-version\"")) {
            if !to.is_empty() {
                response.headers_mut().insert("link", link);
            }
        }
        return response;
    }
    if config.retired_sse && matches!(parts.uri.path(), "/sse" | "/messages") {
        let problem = json!({"type": "about:blank", "title": "Gone", "status": 410,
            "detail": "The HTTP+SSE endpoint is retired; use Streamable HTTP at /mcp."});
        let mut response = json_response(StatusCode::GONE, &problem);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response.headers_mut().insert(
            "link",
            HeaderValue::from_static("</mcp>; rel=\"successor-version\""),
        );
        return response;
    }
    if config.modern && parts.uri.path() == "/mcp" {
        return crate::modern::route(shared, &config, parts, &body).await;
    }
    match parts.uri.path() {
        "/mcp" if streamable => {}
        "/mcp" if legacy => return legacy::not_streamable(&config, &parts.method),
        "/sse" if legacy => return legacy::sse(shared, &config, parts),
        "/messages" if legacy => return legacy::messages(shared, parts, &body),
        "/redirect-elsewhere" => return redirect_elsewhere(shared),
        "/redirect-here" => return redirect_here(),
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    }
    match parts.method {
        Method::POST => post(shared, &config, &parts.headers, &body).await,
        Method::GET => get(shared, &config, &parts.headers),
        Method::DELETE => delete(shared, &config, &parts.headers),
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            response
        }
    }
}

/// `POST /mcp`: one JSON-RPC message, or a batch on a 2025-03-26 session.
async fn post(
    shared: &Arc<Shared>,
    config: &Config,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    // "The client MUST include an Accept header, listing both application/json and
    // text/event-stream as supported content types." (§Sending Messages item 2)
    if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
        return rpc_failure(
            StatusCode::NOT_ACCEPTABLE,
            SERVER_ERROR,
            "Not Acceptable: Accept must list both application/json and text/event-stream",
        );
    }
    if media_type(headers.get(CONTENT_TYPE)).as_deref() != Some("application/json") {
        return rpc_failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            SERVER_ERROR,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let (messages, batch) = match parse_messages(body) {
        Ok(parsed) => parsed,
        Err(malformed) => return malformed.response(),
    };
    let initialize = messages.iter().find(|m| m["method"] == "initialize");
    let is_initialize = initialize.is_some();
    let session = match initialize {
        Some(_) if batch => {
            return invalid_request("Invalid Request: initialize must not be batched")
        }
        Some(init) => {
            let version = mcp::negotiate(init.get("params"));
            lock(&shared.registry).begin_session(config.sessions, version)
        }
        None => {
            if let Some(refusal) = refuse_by_config(shared, config) {
                return refusal;
            }
            let session = match session_of(shared, config, headers) {
                Ok(session) => session,
                Err(refusal) => return refusal.response(config),
            };
            if let Some(refusal) = check_version_header(headers) {
                return refusal;
            }
            // Batches exist only in 2025-03-26 (2025-06-18 changelog item 1).
            let version = lock(&shared.registry).protocol_version(session.as_deref());
            if batch && version.as_deref() != Some("2025-03-26") {
                return invalid_request(
                    "Invalid Request: batches are only allowed with protocol version 2025-03-26",
                );
            }
            session
        }
    };

    let requests = match take_requests(shared, messages, batch) {
        Ok(requests) => requests,
        Err(malformed) => return malformed.response(),
    };
    // "If the input consists solely of JSON-RPC responses or notifications: … the server
    // MUST return HTTP status code 202 Accepted with no body." (§Sending Messages item 4)
    if requests.is_empty() {
        return with_status(StatusCode::ACCEPTED, Empty::new().boxed_unsync());
    }
    if requests
        .iter()
        .any(|r| mcp::is_tool_call(r, "reply_invalid"))
    {
        return invalid_reply();
    }
    if requests
        .iter()
        .any(|r| mcp::is_tool_call(r, "reply_not_json"))
    {
        return not_json_reply();
    }
    if requests
        .iter()
        .any(|r| mcp::is_tool_call(r, "reply_no_session"))
    {
        return NoSession::Unknown.response(config);
    }

    let answer_number = shared.answers_made.fetch_add(1, Ordering::Relaxed);
    let sse = match config.response_mode {
        ResponseMode::Json => false,
        ResponseMode::Sse => true,
        ResponseMode::Alternate => answer_number % 2 == 1,
    };
    let mut response = if sse {
        answer_with_stream(shared, config, session.clone(), requests)
    } else {
        answer_with_json(shared, session.clone(), requests, batch).await
    };
    if let (true, Some(id)) = (is_initialize, session) {
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
    }
    response
}

/// Why a POST body is refused before any message in it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The body is not JSON.
    NotJson,
    /// The body is JSON but not a message, a non-empty array of them, or (alone) a request,
    /// notification or response.
    NotJsonRpc,
}

impl Malformed {
    /// 400 with JSON-RPC "Parse error" or "Invalid Request".
    pub(crate) fn response(self) -> Response<Body> {
        match self {
            Malformed::NotJson => rpc_failure(StatusCode::BAD_REQUEST, PARSE_ERROR, "Parse error"),
            Malformed::NotJsonRpc => invalid_request("Invalid Request: not a JSON-RPC message"),
        }
    }
}

/// The body of a POST as JSON-RPC messages, and whether it was a batch (an array).
pub(crate) fn parse_messages(body: &[u8]) -> Result<(Vec<Value>, bool), Malformed> {
    let message = serde_json::from_slice::<Value>(body).map_err(|_| Malformed::NotJson)?;
    let (messages, batch) = match message {
        Value::Array(messages) => (messages, true),
        single @ Value::Object(_) => (vec![single], false),
        _ => return Err(Malformed::NotJsonRpc),
    };
    if messages.is_empty() || !messages.iter().all(Value::is_object) {
        return Err(Malformed::NotJsonRpc);
    }
    Ok((messages, batch))
}

/// Sorts posted messages: hands the client's responses to the server→client requests that
/// wait for them, drops notifications, and returns the requests. A lone message that is
/// none of these is refused; in a batch it is skipped.
pub(crate) fn take_requests(
    shared: &Shared,
    messages: Vec<Value>,
    batch: bool,
) -> Result<Vec<Value>, Malformed> {
    let mut requests = Vec::new();
    for message in messages {
        let has_id = message.get("id").is_some_and(|id| !id.is_null());
        if message.get("method").is_some() {
            if has_id {
                requests.push(message);
            }
        } else if has_id && (message.get("result").is_some() || message.get("error").is_some()) {
            // A client's response to a server→client request.
            if let Some(waiter) = lock(&shared.pending).remove(&id_key(&message["id"])) {
                let _ = waiter.send(message);
            }
        } else if !batch {
            return Err(Malformed::NotJsonRpc);
        }
    }
    Ok(requests)
}

/// The `reply_invalid` tool's answer: HTTP 500 with an HTML body, which is not JSON-RPC.
pub(crate) fn invalid_reply() -> Response<Body> {
    html_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/html",
        b"<html><body>Internal Server Error</body></html>",
    )
}

/// The `reply_not_json` tool's answer: HTTP 200 labelled `application/json` whose body is
/// an HTML page, as from a misconfigured gateway.
fn not_json_reply() -> Response<Body> {
    html_page(
        StatusCode::OK,
        "application/json",
        b"<html><body>Not JSON, whatever the header says</body></html>",
    )
}

/// An HTML page with `status`, labelled `content_type`.
fn html_page(
    status: StatusCode,
    content_type: &'static str,
    html: &'static [u8],
) -> Response<Body> {
    let mut response = with_status(status, Full::new(Bytes::from_static(html)).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Answers requests with one `application/json` body (an array for a batch).
async fn answer_with_json(
    shared: &Arc<Shared>,
    session: Option<String>,
    requests: Vec<Value>,
    batch: bool,
) -> Response<Body> {
    let call = Call {
        shared: shared.clone(),
        session,
        stream: None,
        legacy: None,
    };
    let outcomes = join_all(requests.iter().map(|r| mcp::answer(&call, r))).await;
    let mut replies: Vec<Value> = outcomes
        .into_iter()
        .filter_map(|outcome| match outcome {
            Outcome::Reply(reply) => Some(reply),
            Outcome::Silent => None,
        })
        .collect();
    let body = match (batch, replies.len()) {
        (_, 0) => return with_status(StatusCode::ACCEPTED, Empty::new().boxed_unsync()),
        (false, _) => replies.swap_remove(0),
        (true, _) => Value::Array(replies),
    };
    json_response(StatusCode::OK, &body)
}

/// Answers requests on a new `text/event-stream`: a priming event when configured, whatever
/// each request sends on the way, and one event per response; then the stream ends.
fn answer_with_stream(
    shared: &Arc<Shared>,
    config: &Config,
    session: Option<String>,
    requests: Vec<Value>,
) -> Response<Body> {
    let (live, rx) = mpsc::unbounded_channel();
    let stream = {
        let mut registry = lock(&shared.registry);
        let Some(stream) = registry.open_stream(session.as_deref(), StreamKind::Post, live) else {
            return NoSession::Unknown.response(config);
        };
        // `drop_no_id` must leave the client without any event id to resume from.
        let no_ids = requests.iter().any(|r| mcp::is_tool_call(r, "drop_no_id"));
        let retry = config.sse_retry_ms.filter(|_| !no_ids);
        registry.start(session.as_deref(), stream, retry);
        stream
    };
    let call = Call {
        shared: shared.clone(),
        session,
        stream: Some(stream),
        legacy: None,
    };
    tokio::spawn(async move {
        let call = &call;
        join_all(requests.iter().map(|request| async move {
            if let Outcome::Reply(reply) = mcp::answer(call, request).await {
                call.send_response(&reply);
            }
        }))
        .await;
        call.finish();
    });
    sse_response(shared, rx)
}

/// `GET /mcp`: the standalone server→client stream, or a resumption with `Last-Event-ID`.
fn get(shared: &Arc<Shared>, config: &Config, headers: &HeaderMap) -> Response<Body> {
    if !accepts(headers, "text/event-stream") {
        return rpc_failure(
            StatusCode::NOT_ACCEPTABLE,
            SERVER_ERROR,
            "Not Acceptable: Accept must list text/event-stream",
        );
    }
    // "The server MUST either return Content-Type: text/event-stream … or else return HTTP
    // 405 Method Not Allowed" (§Listening for Messages from the Server item 2).
    if !config.get_stream {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "no standalone SSE stream");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
        return response;
    }
    if let Some(refusal) = refuse_by_config(shared, config) {
        return refusal;
    }
    let session = match session_of(shared, config, headers) {
        Ok(session) => session,
        Err(refusal) => return refusal.response(config),
    };
    if let Some(refusal) = check_version_header(headers) {
        return refusal;
    }
    let (live, rx) = mpsc::unbounded_channel();
    let last_event_id = headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok());
    let mut registry = lock(&shared.registry);
    let live = match last_event_id {
        // An id of no stream of this session gives `live` back: a fresh stream instead.
        Some(last) => registry
            .resume(session.as_deref(), last, live, config.sse_retry_ms)
            .err(),
        None => Some(live),
    };
    if let Some(live) = live {
        if !registry.open_get(session.as_deref(), live, config.sse_retry_ms) {
            return NoSession::Unknown.response(config);
        }
    }
    drop(registry);
    sse_response(shared, rx)
}

/// `DELETE /mcp`: ends the session (§Session Management item 5).
fn delete(shared: &Arc<Shared>, config: &Config, headers: &HeaderMap) -> Response<Body> {
    if !config.allow_delete {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "sessions cannot be deleted");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    if let Some(refusal) = refuse_by_config(shared, config) {
        return refusal;
    }
    match session_of(shared, config, headers) {
        Ok(Some(id)) => {
            lock(&shared.registry).end_session(&id);
        }
        Ok(None) => {}
        Err(refusal) => return refusal.response(config),
    }
    if let Some(refusal) = check_version_header(headers) {
        return refusal;
    }
    with_status(StatusCode::OK, Empty::new().boxed_unsync())
}

/// The fault the configuration injects into every non-`initialize` request, if any.
fn refuse_by_config(shared: &Shared, config: &Config) -> Option<Response<Body>> {
    if config.redirect_mcp {
        return Some(redirect_elsewhere(shared));
    }
    let status = StatusCode::from_u16(config.fail_status?).ok()?;
    Some(rpc_failure(
        status,
        SERVER_ERROR,
        "failure injected by the testbed",
    ))
}

/// Why a request has no session to belong to.
enum NoSession {
    /// Sessions are on and the request carried no `Mcp-Session-Id`.
    Missing,
    /// The id is unknown, expired or deleted.
    Unknown,
}

impl NoSession {
    /// "Servers that require a session ID SHOULD respond to requests without an
    /// Mcp-Session-Id header … with HTTP 400 Bad Request"; an ended session "MUST respond …
    /// with HTTP 404 Not Found" (§Session Management items 2–3). With
    /// [`UnknownSession::BadRequest`] both get the TypeScript SDK examples' 400 instead.
    fn response(self, config: &Config) -> Response<Body> {
        if config.unknown_session == UnknownSession::BadRequest {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
                "Bad Request: No valid session ID provided",
            );
        }
        match self {
            NoSession::Missing => rpc_failure(
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
                "Bad Request: Mcp-Session-Id header is required",
            ),
            NoSession::Unknown => session_not_found(),
        }
    }
}

/// The session a request belongs to: `None` (the anonymous one) when sessions are off.
fn session_of(
    shared: &Shared,
    config: &Config,
    headers: &HeaderMap,
) -> Result<Option<String>, NoSession> {
    if !config.sessions {
        return Ok(None);
    }
    let id = headers.get(SESSION_HEADER).ok_or(NoSession::Missing)?;
    let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
    if lock(&shared.registry).contains(&id) {
        Ok(Some(id))
    } else {
        Err(NoSession::Unknown)
    }
}

/// 400 for an `MCP-Protocol-Version` the testbed does not speak ("the server MUST respond
/// with 400 Bad Request", 2025-06-18 §Protocol Version Header). An absent header passes.
fn check_version_header(headers: &HeaderMap) -> Option<Response<Body>> {
    let version = headers.get(VERSION_HEADER)?;
    let version = String::from_utf8_lossy(version.as_bytes());
    if mcp::is_supported(version.trim()) {
        return None;
    }
    Some(rpc_failure(
        StatusCode::BAD_REQUEST,
        SERVER_ERROR,
        &format!("Bad Request: unsupported protocol version {version}"),
    ))
}

/// Whether the `Accept` headers list `media` (case-insensitive, parameters ignored).
pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers.get_all(ACCEPT).iter().any(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .split(',')
            .any(|item| {
                item.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case(media)
            })
    })
}

/// The media type of a `Content-Type` value, lowercased and without parameters.
pub(crate) fn media_type(value: Option<&HeaderValue>) -> Option<String> {
    let value = String::from_utf8_lossy(value?.as_bytes()).into_owned();
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// `307` to the other origin's `/mcp`.
fn redirect_elsewhere(shared: &Shared) -> Response<Body> {
    let mut response = with_status(StatusCode::TEMPORARY_REDIRECT, Empty::new().boxed_unsync());
    if let Ok(location) = HeaderValue::from_str(&format!("{}/mcp", shared.elsewhere_origin)) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// `307` to this origin's `/mcp` (a relative `Location`).
fn redirect_here() -> Response<Body> {
    let mut response = with_status(StatusCode::TEMPORARY_REDIRECT, Empty::new().boxed_unsync());
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/mcp"));
    response
}

/// The SSE response reading `rx`.
pub(crate) fn sse_response(shared: &Shared, rx: mpsc::UnboundedReceiver<Bytes>) -> Response<Body> {
    let mut response = with_status(
        StatusCode::OK,
        event_stream_body(rx, shared.shutdown.subscribe(), shared.config().keepalives),
    );
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// 404 for an unknown or expired session.
pub(crate) fn session_not_found() -> Response<Body> {
    rpc_failure(
        StatusCode::NOT_FOUND,
        SESSION_NOT_FOUND,
        "Session not found",
    )
}

/// 400 with JSON-RPC "Invalid Request".
fn invalid_request(message: &str) -> Response<Body> {
    rpc_failure(StatusCode::BAD_REQUEST, INVALID_REQUEST, message)
}

/// An HTTP error whose body is a JSON-RPC error without a request id.
pub(crate) fn rpc_failure(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": mcp::rpc_error(code, message)});
    json_response(status, &body)
}

/// A JSON body with the given status.
fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = with_status(
        status,
        Full::new(Bytes::from(body.to_string())).boxed_unsync(),
    );
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A `text/plain` body with the given status.
pub(crate) fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = with_status(status, Full::new(text.into()).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// A response with a status and a body.
pub(crate) fn with_status(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
