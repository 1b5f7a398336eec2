//! Every message the actors exchange. Commands are imperative (`Shutdown`,
//! `Flush`), events are past tense (`HostClosed`, `ExchangeEnded`).

use actix::Message;
use machines::jsonrpc::{IdKey, Incoming, Malformed, Message as RpcMessage};
use machines::router::Outbound;

/// StdinReader → Bridge: one line from the host, parsed once.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ClientFrame {
    /// A message or a batch.
    Incoming(Incoming),
    /// A line that is not JSON-RPC.
    Garbage(Malformed),
    /// A line longer than the limit (its content was dropped).
    Oversized {
        /// Its length in bytes.
        len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// StdinReader → Bridge: stdin reached end of file (the host is gone).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct HostClosed;

/// Bridge → StdoutWriter: one JSON-RPC message to write as one line.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ServerFrame(pub Vec<u8>);

/// → StdoutWriter: answer once everything written before it is flushed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Flush;

/// Bridge → Session: a message for the server.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Forward(pub Outbound);

/// Session → Bridge: a message from the server.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Inbound(pub RpcMessage);

/// Session → Bridge: the request `id_key` will get no answer from the server.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RequestFailed {
    /// Which request.
    pub id_key: IdKey,
    /// Why, in words for the host (never a secret).
    pub reason: String,
}

/// → Session: stop (stdin closed, SIGINT, SIGTERM): DELETE the session, then end the process.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// What triggered it, for the log.
    pub reason: &'static str,
}

/// Which exchange with the server a message or an end belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The POST of the host's message `seq`.
    Post {
        /// The Session's handle on the message.
        seq: u64,
    },
    /// The POST of the proxy's replayed `initialize`.
    Reinit {
        /// Which replay (a newer one replaces it).
        number: u64,
    },
    /// A POST the proxy makes on its own behalf (`notifications/initialized` after a re-init).
    Own,
    /// A keep-alive ping of the proxy's own.
    Ping,
    /// A ping checking that the quiet legacy event stream is alive.
    Check {
        /// The check it belongs to.
        number: u64,
    },
    /// A GET stream: 0 is the standalone stream, others resume a POST's stream.
    Get {
        /// The Session's handle on the stream.
        stream: u64,
    },
}

/// Session task → Session: one message arrived on an exchange.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ServerMessage {
    /// Where it came from.
    pub origin: Origin,
    /// The message.
    pub message: RpcMessage,
    /// `Mcp-Session-Id` of the HTTP response that carried it.
    pub session_id: Option<String>,
}

/// How an exchange with the server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeEnd {
    /// 202 (or 2xx without a body): taken.
    Accepted,
    /// A GET stream opened (more messages follow, then `Done`).
    StreamOpened,
    /// The body was read to its end, or broke (`broken`).
    Done {
        /// The last SSE event id seen, for resumption.
        last_event_id: Option<String>,
        /// The server's `retry:` hint in milliseconds.
        retry_ms: Option<u64>,
        /// Why reading stopped early, if it did.
        broken: Option<String>,
    },
    /// 404 to a POST that carried `Mcp-Session-Id`.
    Expired,
    /// The server refused with this HTTP status.
    Refused {
        /// The status.
        status: u16,
        /// A short description for the host.
        detail: String,
    },
    /// The request could not be completed (network, time-out, oversized body).
    Failed {
        /// A short description (no URL, no secret).
        detail: String,
    },
    /// 503 or 429 with `Retry-After` (seconds): not processed, try again later.
    Busy {
        /// The server's delay.
        retry_after: std::time::Duration,
    },
    /// 401, or 403 `insufficient_scope`: credentials needed.
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The Bearer challenge.
        challenge: machines::auth::challenge::BearerChallenge,
    },
    /// The connection was refused before the request was written: the server
    /// surely never saw it (design invariant 3: only such a request may be sent again).
    Unreachable {
        /// A short description (no URL, no secret).
        detail: String,
    },
}

/// Session task → Session: an exchange ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ExchangeEnded {
    /// Which exchange.
    pub origin: Origin,
    /// How.
    pub end: ExchangeEnd,
}

/// Session task → Session: the legacy stream's `endpoint` event, resolved.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LegacyEndpoint {
    /// Which legacy stream it came on.
    pub generation: u64,
    /// The absolute endpoint, or why it cannot be used.
    pub endpoint: Result<url::Url, machines::transport::EndpointError>,
}

/// An access token, never shown in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(pub String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// Session → Authorizer: the server asked for credentials.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct NeedToken {
    /// 401 or 403 `insufficient_scope`.
    pub need: machines::auth::grant::Need,
    /// The `WWW-Authenticate` Bearer challenge.
    pub challenge: machines::auth::challenge::BearerChallenge,
}

/// Session → Authorizer: a request succeeded with the current token.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TokenWorked;

/// Authorizer → Session: use this token from now on.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TokenReady(pub AccessToken);

/// Authorizer → Session: no token can be had; fail what waits for one.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AuthFailed {
    /// Why, for the host (no secret).
    pub reason: String,
}

/// wiring → Authorizer: who to tell.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuthorizerPeers {
    /// Where tokens go.
    pub ready: actix::Recipient<TokenReady>,
    /// Where failures go.
    pub failed: actix::Recipient<AuthFailed>,
}
