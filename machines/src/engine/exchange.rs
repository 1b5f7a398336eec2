//! What an HTTP exchange's progress means: the response head is classified
//! (MCP 2025-11-25 transports §Sending Messages to the Server, §Listening for
//! Messages from the Server, §Session Management; 2024-11-05 §HTTP with SSE), the
//! body is read as JSON, as an event stream or as an error, and the exchange ends
//! in an [`Ending`] that the engine acts on.

use super::{
    Engine, ExchangeId, ExchangeResult, LogEvent, NetworkError, Purpose, ResponseHead, StreamRef,
    Timer,
};
use crate::auth::challenge::{self, BearerChallenge};
use crate::jsonrpc::{self, Incoming};
use crate::sse::SseParser;
use crate::stream::SilenceWatch;
use crate::transport::{self, GetOutcome, PostOutcome};
use std::time::{Duration, Instant};

/// How much of an error body is read to look for a JSON-RPC error in it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How much of a body the engine does not need is read before the exchange is dropped.
const IGNORED_BODY_LIMIT: usize = 64 * 1024;

/// What an exchange is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The POST of the host's message with this arrival number.
    Post {
        /// The message.
        seq: u64,
    },
    /// The POST of the replayed `initialize`.
    Reinit,
    /// The POST of the proxy's `notifications/initialized` after a re-initialization.
    Initialized,
    /// A keep-alive ping.
    Ping,
    /// A ping of the check with this number.
    Check {
        /// The check.
        number: u64,
        /// Which of its pings (0: the first).
        ping: usize,
    },
    /// A GET event stream.
    Stream(StreamRef),
    /// The DELETE at shutdown.
    Delete,
    /// A `tools/list` of the proxy's own after a `HeaderMismatch` to the host's
    /// `tools/call` with this arrival number (2026-07-28), which then goes again.
    Relist {
        /// The call.
        seq: u64,
    },
}

impl Role {
    pub(super) fn purpose(self) -> Purpose {
        match self {
            Role::Post { .. } => Purpose::HostMessage,
            Role::Reinit => Purpose::Reinitialize,
            Role::Initialized => Purpose::Initialized,
            Role::Ping => Purpose::KeepAlive,
            Role::Check { .. } => Purpose::Check,
            Role::Stream(StreamRef::Get) => Purpose::GetStream,
            Role::Stream(StreamRef::Legacy) => Purpose::LegacyStream,
            Role::Stream(StreamRef::Resume(_)) => Purpose::Resume,
            Role::Stream(StreamRef::Listen) => Purpose::Listen,
            Role::Delete => Purpose::EndSession,
            Role::Relist { .. } => Purpose::Relist,
        }
    }

    /// Whether the messages on this exchange may be answers for the host.
    fn carries_host_answers(self) -> bool {
        matches!(self, Role::Post { .. })
    }
}

/// How an exchange ended, as far as the engine is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    /// 202 (or 2xx without a JSON or SSE body; any 2xx on the legacy transport): taken.
    Accepted,
    /// The body was read to its end, or broke (`broken`).
    Done {
        /// The last SSE event id seen, for resumption.
        last_event_id: Option<String>,
        /// The server's `retry:` hint in milliseconds.
        retry_ms: Option<u64>,
        /// Why reading stopped early, if it did.
        broken: Option<String>,
    },
    /// The session is gone: 404 to a request that carried `Mcp-Session-Id` (or went
    /// to a legacy endpoint), or a 400 that is not an answer to the request (see below).
    Expired,
    /// The server refused with this status.
    Refused {
        /// The status.
        status: u16,
        /// Its reason phrase.
        reason: Option<&'static str>,
    },
    /// The network failed.
    Failed(NetworkError),
    /// A message over the size limit.
    Oversized(String),
    /// 503 or 429 with `Retry-After`: not processed, try again later.
    Busy(Duration),
    /// 401, or 403 `insufficient_scope`: credentials needed.
    Unauthorized {
        /// The status.
        status: u16,
        /// The Bearer challenge.
        challenge: BearerChallenge,
    },
}

/// Where an exchange is.
#[derive(Debug)]
enum Phase {
    /// Waiting for the response head.
    Head,
    /// Reading a JSON body (a POST's answer); with the `Content-Length` it
    /// announced (within the message limit), reserved when its first bytes come.
    Json(Vec<u8>, usize),
    /// Reading an event stream.
    Sse(Box<SseParser>),
    /// Reading an error body, to pass on a JSON-RPC error in it (transports
    /// §Sending Messages item 4) or to tell a lost session from a bad request.
    ErrorBody {
        /// The status.
        status: u16,
        /// The body so far.
        body: Vec<u8>,
    },
    /// Its meaning is decided; the rest of the body is read and dropped, so the
    /// connection can be reused. On the legacy transport a 2xx body may still be
    /// a JSON-RPC message, delivered at the end.
    Ended(Vec<u8>),
}

/// One exchange in progress.
#[derive(Debug)]
pub(super) struct Ex {
    /// What it is for.
    role: Role,
    /// Whether the request carried `Mcp-Session-Id` (a 404 then means the session is gone).
    sent_session: bool,
    /// A GET stream rather than a POST.
    is_get: bool,
    /// Where it is.
    phase: Phase,
    /// `Mcp-Session-Id` of the response.
    session_id: Option<String>,
    /// A GET stream's pulse, to notice it died silently (the legacy stream uses the engine's).
    pub(super) watch: SilenceWatch,
    /// A silence timer is armed for it.
    silence_armed: bool,
    /// The head time limit, for the message when it passes.
    head_limit: Option<Duration>,
    /// When it last showed a sign of life (started, head, bytes): after an outage, an
    /// exchange with none since is presumed dead (liveness.rs, probation).
    pub(super) progress_at: Instant,
}

impl Ex {
    /// Bytes of an incomplete message held for this exchange.
    pub(super) fn held_bytes(&self) -> usize {
        match &self.phase {
            Phase::Json(body, _) => body.capacity(),
            Phase::Sse(parser) => parser.buffered(),
            _ => 0,
        }
    }
    /// Whether it is presumed dead when it shows no sign of life after an outage: the
    /// host's POSTs and the event streams (the proxy's own pings and replays have
    /// watches of their own; the DELETE is bounded).
    pub(super) fn may_be_on_probation(&self) -> bool {
        matches!(self.role, Role::Post { .. } | Role::Stream(_))
    }

    /// A response stream with an event id: giving up on it costs a reconnection, not
    /// the request (it is resumed with `Last-Event-ID`).
    pub(super) fn resumable(&self) -> bool {
        matches!(&self.phase, Phase::Sse(p) if p.last_event_id().is_some())
            && matches!(
                self.role,
                Role::Post { .. } | Role::Stream(StreamRef::Resume(_))
            )
    }

    /// A host POST still waiting for its response head.
    pub(super) fn awaiting_head(&self) -> bool {
        matches!(self.phase, Phase::Head) && matches!(self.role, Role::Post { .. })
    }

    pub(super) fn new(
        role: Role,
        sent_session: bool,
        is_get: bool,
        head_limit: Option<Duration>,
        now: Instant,
    ) -> Self {
        Self {
            role,
            sent_session,
            is_get,
            phase: Phase::Head,
            session_id: None,
            watch: SilenceWatch::default(),
            silence_armed: false,
            head_limit,
            progress_at: now,
        }
    }
}

fn reason_of(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3), capped at two minutes; an HTTP-date is not used.
fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(120)))
}

/// The URL of a `Link` header value (`<url>; rel="…"`, the first one).
fn link_target(value: &str) -> Option<String> {
    let start = value.find('<')? + 1;
    let end = start + value[start..].find('>')?;
    let target = value[start..end].trim();
    (!target.is_empty()).then(|| target.to_owned())
}

fn challenge_of(head: &ResponseHead) -> BearerChallenge {
    let values: Vec<&str> = head.www_authenticate.iter().map(String::as_str).collect();
    challenge::bearer(&values).unwrap_or_default()
}

impl Engine {
    /// A `410 Gone` before the session is established: the server retired this URL.
    /// A `Link` to another path of the same origin is followed, once: the host's
    /// `initialize` (or its probe) goes there, or the legacy stream's refusal sends
    /// the Link to Streamable HTTP there. Returns whether it was followed; if not,
    /// the successor named (another origin) is kept for the error.
    fn moved_on(&mut self, id: ExchangeId, link: Option<&str>, now: Instant) -> bool {
        if self.moved || self.link.established() {
            return false;
        }
        let Some(role) = self.exchanges.get(&id).map(|ex| ex.role) else {
            return false;
        };
        let successor = link
            .and_then(link_target)
            .and_then(|target| self.config.url.join(&target).ok());
        let Some(to) = successor
            .clone()
            .filter(|to| transport::same_origin(to, &self.config.url) && *to != self.config.url)
        else {
            self.gone_to = successor.map(|u| crate::trace::redact_url(&u));
            return false;
        };
        let initialize = match role {
            Role::Post { seq } if self.is_host_initialize(seq) => Some(seq),
            Role::Stream(StreamRef::Legacy) => None,
            _ => return false,
        };
        self.moved = true;
        self.log(LogEvent::Moved {
            from: crate::trace::redact_url(&self.config.url),
            to: crate::trace::redact_url(&to),
        });
        self.config.url = to;
        match initialize {
            Some(seq) => {
                self.abort(id);
                self.restart_probe();
                if let Some(entry) = self.messages.get_mut(&seq) {
                    entry.stage = super::Stage::Held;
                }
                self.post_message(seq, false, now);
            }
            // The stream is refused here; the Link tries Streamable HTTP at the new URL.
            None => self.abort_with(
                id,
                Ending::Refused {
                    status: 404,
                    reason: Some("Not Found"),
                },
                now,
            ),
        }
        true
    }

    /// An exchange's response head arrived.
    pub(super) fn on_head(&mut self, id: ExchangeId, head: ResponseHead, now: Instant) {
        let legacy = self.is_legacy();
        if head.status == 410 && self.moved_on(id, head.link.as_deref(), now) {
            return;
        }
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        ex.session_id = head.session_id.clone();
        ex.progress_at = now;
        let status = head.status;
        let refused = Ending::Refused {
            status,
            reason: reason_of(status),
        };
        if ex.is_get {
            let role = ex.role;
            match transport::classify_get(status, head.content_type.as_deref()) {
                GetOutcome::Stream => {
                    ex.phase = Phase::Sse(Box::new(SseParser::new(self.config.max_message_bytes)));
                    if let Role::Stream(which) = role {
                        self.stream_opened(which, now);
                    }
                }
                GetOutcome::Unauthorized => self.abort_with(
                    id,
                    Ending::Unauthorized {
                        status,
                        challenge: challenge_of(&head),
                    },
                    now,
                ),
                GetOutcome::Refused => self.abort_with(id, refused, now),
                GetOutcome::Retry => self.abort_with(
                    id,
                    Ending::Failed(NetworkError::Broken(format!(
                        "the server answered HTTP {status} without an event stream"
                    ))),
                    now,
                ),
            }
            return;
        }
        if ex.role == Role::Delete {
            let ending = match status {
                200..=299 => Ending::Accepted,
                _ => refused,
            };
            self.abort_with(id, ending, now);
            return;
        }
        let outcome =
            transport::classify_post(status, head.content_type.as_deref(), ex.sent_session);
        match outcome {
            // MCP 2024-11-05 §HTTP with SSE: a 2xx to a POST only means accepted; the
            // answer comes on the event stream (some servers say `Accepted` as JSON).
            PostOutcome::Json | PostOutcome::EventStream if legacy => {
                self.finish_keep_reading(id, Ending::Accepted, now)
            }
            PostOutcome::Accepted => self.finish_keep_reading(id, Ending::Accepted, now),
            PostOutcome::Json => {
                let expected = head
                    .content_length
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= self.config.max_message_bytes)
                    .unwrap_or(0);
                ex.phase = Phase::Json(Vec::new(), expected);
            }
            PostOutcome::EventStream => {
                ex.phase = Phase::Sse(Box::new(SseParser::new(self.config.max_message_bytes)));
                match ex.role {
                    // This server streams its answers: it sends the head at once.
                    Role::Post { .. } => self.streams_answers = true,
                    Role::Stream(StreamRef::Listen) => self.stream_opened(StreamRef::Listen, now),
                    _ => {}
                }
            }
            PostOutcome::SessionExpired => self.abort_with(id, Ending::Expired, now),
            PostOutcome::Unauthorized => self.abort_with(
                id,
                Ending::Unauthorized {
                    status,
                    challenge: challenge_of(&head),
                },
                now,
            ),
            PostOutcome::Failed { status: 503 | 429 }
                if retry_after(head.retry_after.as_deref()).is_some() =>
            {
                let delay = retry_after(head.retry_after.as_deref()).unwrap_or_default();
                self.abort_with(id, Ending::Busy(delay), now)
            }
            PostOutcome::Failed { status: 403 }
                if challenge_of(&head).error.as_deref() == Some("insufficient_scope") =>
            {
                // RFC 6750 §3.1: a 403 that asks for more scope (MCP §Step-Up Authorization Flow).
                self.abort_with(
                    id,
                    Ending::Unauthorized {
                        status,
                        challenge: challenge_of(&head),
                    },
                    now,
                )
            }
            PostOutcome::Failed { status } => {
                ex.phase = Phase::ErrorBody {
                    status,
                    body: Vec::new(),
                }
            }
        }
    }

    /// Bytes of an exchange's body arrived.
    pub(super) fn on_body(&mut self, id: ExchangeId, chunk: &[u8], now: Instant) {
        let max = self.config.max_message_bytes;
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        ex.progress_at = now;
        match &mut ex.phase {
            Phase::Head => {}
            Phase::Json(body, expected) => {
                if body.capacity() == 0 {
                    // Made as large as announced at once: no growing copies. Not
                    // sooner: many answers whose heads came at once are not all read.
                    body.reserve_exact(std::mem::take(expected).max(chunk.len()));
                }
                if body.len() + chunk.len() > max {
                    let detail = format!("the server's response is larger than {max} bytes");
                    self.abort_with(id, Ending::Oversized(detail), now);
                    return;
                }
                body.extend_from_slice(chunk);
            }
            Phase::ErrorBody { body, .. } => {
                if body.len() + chunk.len() > ERROR_BODY_LIMIT {
                    // Not a JSON-RPC error the host needs: decide without the rest.
                    let _ = std::mem::take(body);
                    self.end_error_body(id, now);
                    self.abort(id);
                    return;
                }
                body.extend_from_slice(chunk);
            }
            Phase::Ended(body) => {
                if body.len() + chunk.len() > IGNORED_BODY_LIMIT {
                    self.abort(id);
                    return;
                }
                body.extend_from_slice(chunk);
            }
            Phase::Sse(_) => self.sse_chunk(id, chunk, now),
        }
    }

    /// An exchange ended on the network side.
    pub(super) fn on_end(&mut self, id: ExchangeId, result: ExchangeResult, now: Instant) {
        let legacy = self.is_legacy();
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut ex.phase, Phase::Head) {
            Phase::Head => {
                let error = result
                    .err()
                    .unwrap_or_else(|| NetworkError::Broken("the server sent no response".into()));
                self.exchanges_remove_then(id, Ending::Failed(error), now);
            }
            Phase::Json(body, _) => match result {
                Ok(()) => {
                    let role = ex.role;
                    let session_id = ex.session_id.take();
                    self.exchanges.remove(&id);
                    self.deliver(body, session_id.as_deref(), now);
                    let done = Ending::Done {
                        last_event_id: None,
                        retry_ms: None,
                        broken: None,
                    };
                    self.ended(role, done, now);
                }
                Err(e) => self.exchanges_remove_then(id, Ending::Failed(e), now),
            },
            Phase::ErrorBody { status, body } => {
                ex.phase = Phase::ErrorBody { status, body };
                self.end_error_body(id, now);
            }
            Phase::Ended(body) => {
                let session_id = ex.session_id.take();
                self.exchanges.remove(&id);
                if legacy && result.is_ok() && jsonrpc::is_json(&body) {
                    self.deliver(body, session_id.as_deref(), now);
                }
            }
            Phase::Sse(parser) => {
                let broken = result.err().map(|e| e.to_string());
                self.end_sse(id, &parser, broken, now);
            }
        }
    }

    fn exchanges_remove_then(&mut self, id: ExchangeId, ending: Ending, now: Instant) {
        if let Some(ex) = self.exchanges.remove(&id) {
            self.ended(ex.role, ending, now);
        }
    }

    /// The meaning is known before the body is read: act now, drop the body later.
    fn finish_keep_reading(&mut self, id: ExchangeId, ending: Ending, now: Instant) {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        ex.phase = Phase::Ended(Vec::new());
        let role = ex.role;
        self.ended(role, ending, now);
    }

    /// The meaning is known and the body is not wanted: stop the exchange.
    fn abort_with(&mut self, id: ExchangeId, ending: Ending, now: Instant) {
        if let Some(ex) = self.exchanges.remove(&id) {
            self.transmits.push_back(super::Transmit::Abort(id));
            self.ended(ex.role, ending, now);
        }
    }

    /// An error body was read (or enough of it): pass on a JSON-RPC error for the
    /// host, and tell a lost session from a refusal.
    fn end_error_body(&mut self, id: ExchangeId, now: Instant) {
        let Some(ex) = self.exchanges.remove(&id) else {
            return;
        };
        let Phase::ErrorBody { status, body } = ex.phase else {
            return;
        };
        if let Role::Post { seq } = ex.role {
            if self.header_mismatch(seq, &body, now) {
                return;
            }
            if self.probe_error_body(seq, &body) {
                let ending = Ending::Refused {
                    status,
                    reason: reason_of(status),
                };
                self.ended(ex.role, ending, now);
                return;
            }
        }
        let answers_request = self.is_answer_to(ex.role, &body);
        // Servers built on the TypeScript SDK (server-everything among them) answer 400
        // `No valid session ID provided` where the spec says 404 (transports §Session
        // Management item 3): a 400 to a request that carried a session id, whose body
        // is not an answer to that request, means the session is gone too.
        if status == 400 && ex.sent_session && !answers_request && !self.is_legacy() {
            self.ended(ex.role, Ending::Expired, now);
            return;
        }
        if answers_request && ex.role.carries_host_answers() {
            self.deliver(body, ex.session_id.as_deref(), now);
        }
        self.ended(
            ex.role,
            Ending::Refused {
                status,
                reason: reason_of(status),
            },
            now,
        );
    }

    /// Whether `body` is a JSON-RPC response to the request the exchange carried.
    fn is_answer_to(&self, role: Role, body: &[u8]) -> bool {
        let Role::Post { seq } = role else {
            return false;
        };
        let Some(key) = self.messages.get(&seq).and_then(|e| e.id_key.as_ref()) else {
            return false;
        };
        match jsonrpc::parse_incoming(jsonrpc::compact(body.to_vec())) {
            Ok(Incoming::Single(m)) => m.id_key.as_ref() == Some(key),
            _ => false,
        }
    }

    /// Messages of a JSON body (one or a batch), in order.
    fn deliver(&mut self, body: Vec<u8>, session_id: Option<&str>, now: Instant) {
        match jsonrpc::parse_incoming(jsonrpc::compact(body)) {
            Ok(Incoming::Single(message)) => self.on_server_message(message, session_id, now),
            Ok(Incoming::Batch(items)) => {
                for item in items {
                    match item {
                        Ok(message) => self.on_server_message(message, session_id, now),
                        Err(e) => self.log(LogEvent::NotJsonRpc(e)),
                    }
                }
            }
            Err(e) => self.log(LogEvent::NotJsonRpc(e)),
        }
    }

    /// A chunk of an event stream.
    fn sse_chunk(&mut self, id: ExchangeId, chunk: &[u8], now: Instant) {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        let Phase::Sse(parser) = &mut ex.phase else {
            return;
        };
        let comments = parser.comments();
        if let Err(e) = parser.push(chunk) {
            if !ex.is_get {
                // Resuming would fetch the same event again: the request fails.
                let detail = e.to_string();
                self.abort_with(id, Ending::Oversized(detail), now);
                return;
            }
            let parser = match std::mem::replace(&mut ex.phase, Phase::Head) {
                Phase::Sse(p) => p,
                _ => return,
            };
            self.transmits.push_back(super::Transmit::Abort(id));
            self.end_sse(id, &parser, Some(e.to_string()), now);
            return;
        }
        let mut keepalive = parser.comments() > comments;
        let role = ex.role;
        let session_id = ex.session_id.clone();
        let mut events = Vec::new();
        while let Some(event) = parser.next_event() {
            events.push(event);
        }
        for event in events {
            if role == Role::Stream(StreamRef::Legacy) && event.event.as_deref() == Some("endpoint")
            {
                self.legacy_endpoint(&event.data, now);
                continue;
            }
            // Priming events have no data; other event types are not MCP messages.
            if event.data.is_empty() || !matches!(event.event.as_deref(), None | Some("message")) {
                keepalive = true;
                continue;
            }
            self.deliver(event.data.into_bytes(), session_id.as_deref(), now);
        }
        let legacy_stream = role == Role::Stream(StreamRef::Legacy);
        if legacy_stream {
            match keepalive {
                true => self.pulse.on_keepalive(now),
                false => self.pulse.on_bytes(now),
            }
        }
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        if !ex.is_get {
            return;
        }
        if !legacy_stream {
            match keepalive {
                true => ex.watch.on_keepalive(now),
                false => ex.watch.on_bytes(now),
            }
        }
        // Long-lived GET streams: notice a connection that died silently (no FIN, no RST).
        let limit = match legacy_stream {
            true => self.pulse.limit(),
            false => ex.watch.limit(),
        };
        if let (Some(limit), false) = (limit, ex.silence_armed) {
            ex.silence_armed = true;
            self.set_timer(now + limit, Timer::Silence(id));
        }
    }

    /// An event stream ended (cleanly, or `broken`).
    fn end_sse(
        &mut self,
        id: ExchangeId,
        parser: &SseParser,
        broken: Option<String>,
        now: Instant,
    ) {
        let Some(ex) = self.exchanges.remove(&id) else {
            return;
        };
        self.ended(
            ex.role,
            Ending::Done {
                last_event_id: parser.last_event_id().map(str::to_owned),
                retry_ms: parser.retry(),
                broken,
            },
            now,
        );
    }

    /// An exchange showed no sign of life since an outage that is over: its connection
    /// is presumed dead. A response stream with an event id is resumed on a new
    /// connection; anything else fails with its fate unknown; a GET stream reconnects.
    pub(super) fn abandon_exchange(&mut self, id: ExchangeId, now: Instant) {
        let Some(ex) = self.exchanges.remove(&id) else {
            return;
        };
        self.transmits.push_back(super::Transmit::Abort(id));
        const WHY: &str = "no response since the network went silent";
        let ending = match &ex.phase {
            Phase::Sse(parser) => Ending::Done {
                last_event_id: parser.last_event_id().map(str::to_owned),
                retry_ms: parser.retry(),
                broken: Some(WHY.into()),
            },
            _ => Ending::Failed(NetworkError::Broken(WHY.into())),
        };
        self.ended(ex.role, ending, now);
    }

    /// An exchange's head time limit passed.
    pub(super) fn head_due(&mut self, id: ExchangeId, now: Instant) {
        let Some(ex) = self.exchanges.get(&id) else {
            return;
        };
        if !matches!(ex.phase, Phase::Head) {
            return;
        }
        let limit = ex.head_limit.unwrap_or_default();
        let error = NetworkError::TimedOut(format!(
            "no response from the server within {} s (--headers-timeout)",
            limit.as_secs()
        ));
        self.abort_with(id, Ending::Failed(error), now);
    }

    /// A GET stream may have gone silent: if no byte came within the limit, it is dead.
    pub(super) fn silence_due(&mut self, id: ExchangeId, now: Instant) {
        let Some(ex) = self.exchanges.get_mut(&id) else {
            return;
        };
        ex.silence_armed = false;
        let watch = match ex.role {
            Role::Stream(StreamRef::Legacy) => &self.pulse,
            _ => &ex.watch,
        };
        let (Some(limit), Some(last)) = (watch.limit(), watch.last_bytes()) else {
            return;
        };
        if self.host_backlog {
            // Held back for the host, not silent: look again later.
            ex.silence_armed = true;
            self.set_timer(now + limit, Timer::Silence(id));
            return;
        }
        if now.saturating_duration_since(last) < limit {
            ex.silence_armed = true;
            self.set_timer(last + limit, Timer::Silence(id));
            return;
        }
        let Phase::Sse(parser) = std::mem::replace(&mut ex.phase, Phase::Head) else {
            return;
        };
        self.transmits.push_back(super::Transmit::Abort(id));
        let why = format!("the stream went silent for {} s", limit.as_secs());
        self.end_sse(id, &parser, Some(why), now);
    }
}
