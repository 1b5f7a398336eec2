//! The legacy HTTP+SSE transport of MCP 2024-11-05 ("HTTP with SSE"), deprecated since
//! 2025-03-26 and kept by clients only as a fallback (checklist C1–C10).
//!
//! - `GET /sse` opens a stream whose first event is `endpoint`, carrying a relative URI
//!   `/messages?sessionId=<id>` with an id fresh for each stream. The stream *is* the session:
//!   when it closes, the id becomes unknown.
//! - `POST /messages?sessionId=<id>` takes one JSON-RPC message (or a batch) and answers
//!   `202 Accepted` with an empty body (or, with [`crate::Config::legacy_accepted_as_json`],
//!   the text `Accepted` labelled `application/json`). Responses, and whatever a request sends on the way
//!   (progress, server→client requests), go out on the session's stream as `event: message`
//!   with one line of JSON as `data`. A client's response to a server→client request arrives
//!   the same way, as a POST.
//! - Streams carry `: keepalive` comments about once a second and no event ids: 2024-11-05
//!   has no resumability, so a dropped stream means a new `GET` and a new `initialize`.
//!
//! In [`crate::Transport::Legacy`] mode the Streamable endpoints are refused the way a legacy
//! server refuses them (`POST /mcp` and `POST /sse` answer [`crate::Config::legacy_post_status`],
//! `404` by default), which is what a client's transport detection keys on (checklist C7, C8).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::{
    accepts, invalid_reply, media_type, parse_messages, plain, rpc_failure, session_not_found,
    sse_response, take_requests, with_status, SERVER_ERROR,
};
use crate::mcp::{self, Call, Outcome};
use crate::sse::{encode_event, Body, KEEPALIVE};
use crate::state::{fresh_session_id, lock, Shared};
use crate::Config;

/// The longest [`Config::legacy_delay_endpoint_ms`] is honoured, so a typo cannot leave a
/// task sleeping for days.
const MAX_ENDPOINT_DELAY: Duration = Duration::from_secs(600);

/// The query parameter that names the session in the endpoint URI.
const SESSION_PARAM: &str = "sessionId";

/// The open legacy sessions, one per `GET /sse` stream.
#[derive(Default)]
pub(crate) struct LegacySessions {
    /// Sessions by id. One whose stream the client closed is pruned lazily: it counts as
    /// unknown as soon as its connection is gone.
    open: HashMap<String, LegacySession>,
    /// How many session ids have been issued; mixed into new ids.
    made: u64,
    /// Pushed messages that found no open stream (in legacy-only mode); the next stream gets
    /// them right after its `endpoint` event.
    unclaimed: Vec<Value>,
}

/// One legacy session: an SSE stream and what the session negotiated.
struct LegacySession {
    /// The connection reading the stream. Dropping it ends the HTTP body.
    live: mpsc::UnboundedSender<Bytes>,
    /// Whether the `endpoint` event went out; until then messages wait in `held`, so the
    /// endpoint is always the first event (it can be delayed by configuration).
    endpoint_sent: bool,
    /// Messages written before the `endpoint` event, in order.
    held: Vec<Bytes>,
    /// The version `initialize` settled on, once it ran.
    protocol_version: Option<String>,
}

impl LegacySession {
    /// Whether the client still reads the stream.
    fn is_open(&self) -> bool {
        !self.live.is_closed()
    }

    /// Sends encoded bytes, or holds them until the `endpoint` event is out.
    fn send(&mut self, bytes: Bytes) {
        if self.endpoint_sent {
            // A closed connection is noticed by `is_open`; nothing to do here.
            let _ = self.live.send(bytes);
        } else {
            self.held.push(bytes);
        }
    }
}

/// One server→client message as a legacy `message` event.
fn message_event(msg: &Value) -> Bytes {
    encode_event(None, Some("message"), None, &msg.to_string())
}

impl LegacySessions {
    /// Opens a session read by `live`; returns its fresh id.
    pub(crate) fn open(&mut self, live: mpsc::UnboundedSender<Bytes>) -> String {
        self.prune();
        self.made += 1;
        let id = fresh_session_id(self.made);
        let session = LegacySession {
            live,
            endpoint_sent: false,
            held: Vec::new(),
            protocol_version: None,
        };
        self.open.insert(id.clone(), session);
        id
    }

    /// Forgets the sessions whose client went away.
    fn prune(&mut self) {
        self.open.retain(|_, session| session.is_open());
    }

    /// Sends the `endpoint` event, a keepalive comment, then what waited for it: messages
    /// held for this session and unclaimed pushes.
    pub(crate) fn send_endpoint(&mut self, id: &str, endpoint: &str) {
        let Some(session) = self.open.get_mut(id).filter(|s| s.is_open()) else {
            return;
        };
        session.endpoint_sent = true;
        session.send(encode_event(None, Some("endpoint"), None, endpoint));
        session.send(Bytes::from_static(KEEPALIVE));
        for bytes in std::mem::take(&mut session.held) {
            session.send(bytes);
        }
        for msg in std::mem::take(&mut self.unclaimed) {
            session.send(message_event(&msg));
        }
    }

    /// Writes `msg` on the session's stream; `false` when the session is gone.
    pub(crate) fn write(&mut self, id: &str, msg: &Value) -> bool {
        match self.open.get_mut(id).filter(|s| s.is_open()) {
            Some(session) => {
                session.send(message_event(msg));
                true
            }
            None => false,
        }
    }

    /// Whether `id` names a session whose stream is open.
    pub(crate) fn is_open(&self, id: &str) -> bool {
        self.open.get(id).is_some_and(LegacySession::is_open)
    }

    /// The ids of the sessions whose stream is open.
    pub(crate) fn ids(&mut self) -> Vec<String> {
        self.prune();
        self.open.keys().cloned().collect()
    }

    /// Closes every stream; their ids become unknown.
    pub(crate) fn drop_all(&mut self) {
        self.open.clear();
    }

    /// Writes `msg` on every open stream; `false` when there was none.
    pub(crate) fn push_everywhere(&mut self, msg: &Value) -> bool {
        self.prune();
        for session in self.open.values_mut() {
            session.send(message_event(msg));
        }
        !self.open.is_empty()
    }

    /// Keeps `msg` for the next stream to open.
    pub(crate) fn queue(&mut self, msg: Value) {
        self.unclaimed.push(msg);
    }

    /// Records the version a session's `initialize` settled on.
    fn set_version(&mut self, id: &str, version: &str) {
        if let Some(session) = self.open.get_mut(id) {
            session.protocol_version = Some(version.to_owned());
        }
    }

    /// The version a live session's `initialize` settled on.
    pub(crate) fn protocol_version(&self, id: &str) -> Option<String> {
        self.open
            .get(id)
            .filter(|s| s.is_open())
            .and_then(|s| s.protocol_version.clone())
    }
}

/// `/sse`: `GET` opens a session; `POST` is refused the way a legacy server refuses a
/// Streamable HTTP client's first POST.
pub(crate) fn sse(shared: &Arc<Shared>, config: &Config, parts: &Parts) -> Response<Body> {
    match parts.method {
        Method::GET => open_stream(shared, config, parts),
        Method::POST => refuse_post(config, "/sse"),
        _ => method_not_allowed("GET"),
    }
}

/// `/mcp` on a legacy-only server: it is no endpoint at all.
pub(crate) fn not_streamable(config: &Config, method: &Method) -> Response<Body> {
    if *method == Method::POST {
        refuse_post(config, "/mcp")
    } else {
        plain(StatusCode::NOT_FOUND, format!("Cannot {method} /mcp"))
    }
}

/// `/messages`: only `POST`.
pub(crate) fn messages(shared: &Arc<Shared>, parts: &Parts, body: &[u8]) -> Response<Body> {
    if parts.method != Method::POST {
        return method_not_allowed("POST");
    }
    post_message(shared, parts, body)
}

/// The answer to a POST on a path that is not a Streamable HTTP endpoint: the configured
/// status (404 when it is not a valid status code) with a body that is not JSON-RPC, like
/// an Express server's "Cannot POST /mcp".
fn refuse_post(config: &Config, path: &str) -> Response<Body> {
    let status = StatusCode::from_u16(config.legacy_post_status).unwrap_or(StatusCode::NOT_FOUND);
    plain(status, format!("Cannot POST {path}"))
}

/// `405` naming the one method the path takes.
fn method_not_allowed(allowed: &'static str) -> Response<Body> {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

/// `GET /sse`: registers a session and sends its `endpoint` event, now or after the
/// configured delay.
fn open_stream(shared: &Arc<Shared>, config: &Config, parts: &Parts) -> Response<Body> {
    if !accepts(&parts.headers, "text/event-stream") {
        return rpc_failure(
            StatusCode::NOT_ACCEPTABLE,
            SERVER_ERROR,
            "Not Acceptable: Accept must list text/event-stream",
        );
    }
    let (live, rx) = mpsc::unbounded_channel();
    let mut sessions = lock(&shared.legacy);
    let id = sessions.open(live);
    let endpoint = config
        .legacy_endpoint_override
        .clone()
        .unwrap_or_else(|| format!("/messages?{SESSION_PARAM}={id}"));
    match config.legacy_delay_endpoint_ms.filter(|ms| *ms > 0) {
        None => sessions.send_endpoint(&id, &endpoint),
        Some(ms) => {
            drop(sessions);
            let delay = Duration::from_millis(ms).min(MAX_ENDPOINT_DELAY);
            let shared = shared.clone();
            tokio::spawn(async move {
                if shared.pause(delay).await {
                    lock(&shared.legacy).send_endpoint(&id, &endpoint);
                }
            });
        }
    }
    sse_response(shared, rx)
}

/// The `sessionId` parameter of a query string.
fn session_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == SESSION_PARAM)
        .map(|(_, value)| value)
}

/// `POST /messages?sessionId=<id>`: accepts the message with `202` and answers its requests
/// on the session's stream.
fn post_message(shared: &Arc<Shared>, parts: &Parts, body: &[u8]) -> Response<Body> {
    let Some(id) = parts.uri.query().and_then(session_param) else {
        return rpc_failure(
            StatusCode::BAD_REQUEST,
            SERVER_ERROR,
            "Bad Request: the sessionId query parameter is required",
        );
    };
    if !lock(&shared.legacy).is_open(id) {
        return session_not_found();
    }
    if media_type(parts.headers.get(CONTENT_TYPE)).as_deref() != Some("application/json") {
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
    let requests = match take_requests(shared, messages, batch) {
        Ok(requests) => requests,
        Err(malformed) => return malformed.response(),
    };
    if requests
        .iter()
        .any(|r| mcp::is_tool_call(r, "reply_invalid"))
    {
        return invalid_reply();
    }
    if let Some(init) = requests.iter().find(|m| m["method"] == "initialize") {
        let version = mcp::negotiate(init.get("params"));
        lock(&shared.legacy).set_version(id, version);
    }
    if !requests.is_empty() {
        let call = Call {
            shared: shared.clone(),
            session: None,
            stream: None,
            legacy: Some(id.to_owned()),
        };
        tokio::spawn(answer_on_stream(call, requests, batch));
    }
    if shared.config().legacy_accepted_as_json {
        // The body is no JSON whatever the label says; the answer is on the stream anyway.
        let mut response = with_status(
            StatusCode::ACCEPTED,
            Full::new(Bytes::from_static(b"Accepted")).boxed_unsync(),
        );
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    }
    with_status(StatusCode::ACCEPTED, Empty::new().boxed_unsync())
}

/// Answers requests on the session's stream: one event per response, or one array for a
/// batch once every response is ready.
async fn answer_on_stream(call: Call, requests: Vec<Value>, batch: bool) {
    let call = &call;
    if batch {
        let outcomes = join_all(requests.iter().map(|r| mcp::answer(call, r))).await;
        let replies: Vec<Value> = outcomes
            .into_iter()
            .filter_map(|outcome| match outcome {
                Outcome::Reply(reply) => Some(reply),
                Outcome::Silent => None,
            })
            .collect();
        if !replies.is_empty() {
            call.send_response(&Value::Array(replies));
        }
        return;
    }
    join_all(requests.iter().map(|request| async move {
        if let Outcome::Reply(reply) = mcp::answer(call, request).await {
            call.send_response(&reply);
        }
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_session_parameter_is_found_among_others() {
        assert_eq!(session_param("sessionId=abc"), Some("abc"));
        assert_eq!(session_param("x=1&sessionId=abc&y=2"), Some("abc"));
        assert_eq!(session_param("sessionid=abc"), None);
        assert_eq!(session_param(""), None);
    }

    #[test]
    fn the_endpoint_goes_first_and_messages_are_message_events() {
        let mut sessions = LegacySessions::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = sessions.open(tx);
        assert!(sessions.write(&id, &json!({"n": 1})));
        assert!(rx.try_recv().is_err(), "held until the endpoint is out");
        sessions.send_endpoint(&id, "/messages?sessionId=x");
        assert_eq!(
            &rx.try_recv().unwrap()[..],
            b"event: endpoint\ndata: /messages?sessionId=x\n\n"
        );
        assert_eq!(&rx.try_recv().unwrap()[..], KEEPALIVE);
        assert_eq!(
            &rx.try_recv().unwrap()[..],
            b"event: message\ndata: {\"n\":1}\n\n"
        );
        drop(rx);
        assert!(!sessions.is_open(&id));
        assert!(sessions.ids().is_empty());
    }

    #[test]
    fn unclaimed_pushes_go_to_the_next_stream() {
        let mut sessions = LegacySessions::default();
        assert!(!sessions.push_everywhere(&json!({"n": 1})));
        sessions.queue(json!({"n": 1}));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = sessions.open(tx);
        sessions.send_endpoint(&id, "/e");
        let _endpoint = rx.try_recv().unwrap();
        let _keepalive = rx.try_recv().unwrap();
        assert!(rx.try_recv().unwrap().ends_with(b"data: {\"n\":1}\n\n"));
        sessions.drop_all();
        assert!(rx.try_recv().is_err());
        assert!(rx.is_closed());
    }
}
