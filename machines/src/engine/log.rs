//! What the engine says about itself, as values: the driver renders them to log
//! lines (and, later, trace records). No event carries a body, a header value, a
//! session id or a secret.

use crate::error::{NetworkError, RequestError};
use crate::jsonrpc::{IdKey, Malformed};
use crate::transport::EndpointError;
use std::fmt;
use std::time::Duration;

/// How much a reader of the log cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for `--debug`.
    Debug,
    /// A step a user may want to see.
    Info,
    /// Something went wrong.
    Warn,
}

/// What made the engine doubt the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspicion {
    /// A POST got no response in the usual time.
    PostLate,
    /// A POST failed on the network.
    PostFailed,
    /// An answer is overdue on a quiet event stream.
    AnswerOverdue,
    /// The replayed `initialize` got no answer in the usual time.
    ReinitUnanswered,
}

impl fmt::Display for Suspicion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Suspicion::PostLate => "a POST got no response in the usual time",
            Suspicion::PostFailed => "a POST failed on the network",
            Suspicion::AnswerOverdue => "an answer is overdue on a quiet event stream",
            Suspicion::ReinitUnanswered => "no answer to the replayed initialize in the usual time",
        })
    }
}

/// One thing the engine did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogEvent {
    /// The server answered `server/discover`: it speaks MCP 2026-07-28.
    ModernServer,
    /// The server's URL answered 410 Gone and named a successor on the same origin,
    /// which this start uses.
    Moved {
        /// The URL configured (redacted).
        from: String,
        /// The successor (redacted).
        to: String,
    },
    /// A 2026-07-28 server refused a tool call's headers (`HeaderMismatch`): the tools
    /// are listed again and the call goes once more.
    Relisting,
    /// The response stream of this request to a 2026-07-28 server broke; it only
    /// reads, so it went again as a new request.
    Reissued(IdKey),
    /// The `subscriptions/listen` stream of a 2026-07-28 server is given up
    /// (`refused`: the server does not offer it); change notifications stop.
    ListenLost {
        /// The server refused it rather than failing.
        refused: bool,
    },
    /// A tool of a 2026-07-28 server was left out of the host's list.
    ToolExcluded {
        /// Its name (the server's text).
        tool: String,
        /// Why its `x-mcp-header` annotations are invalid.
        why: String,
    },
    /// The server did not answer `server/discover`: the host's `initialize` goes as it is.
    LegacyServer,
    /// The session expired; the host's `initialize` is replayed.
    Reinitializing,
    /// The server could not be reached; the next attempt is after this delay.
    RetryingIn(Duration),
    /// The connection is dead: what was in flight fails.
    Abandoned(RequestError),
    /// The host's request gets this error from the proxy.
    RequestFailed(IdKey, RequestError),
    /// A message that is not a request could not be delivered.
    MessageLost(RequestError),
    /// The legacy event stream is being opened.
    OpeningLegacyStream,
    /// The legacy event stream delivered its endpoint.
    LegacyStreamReady,
    /// The legacy event stream ended (`None`) or broke.
    LegacyStreamEnded(Option<String>),
    /// The legacy event stream did not deliver its endpoint in time.
    LegacyOpenTimedOut(Duration),
    /// The legacy stream's `endpoint` cannot be used.
    EndpointRejected(EndpointError),
    /// A GET stream is being opened.
    OpeningGetStream {
        /// With `Last-Event-ID`.
        resuming: bool,
    },
    /// A GET stream reconnects after this delay.
    StreamRetryIn(Duration),
    /// A GET stream broke or could not be opened.
    GetStreamBroke(String),
    /// The server refused the standalone GET stream.
    NoGetStream,
    /// The standalone GET stream could not be re-established.
    GetStreamLost,
    /// A response stream broke; it is resumed.
    Resuming(IdKey),
    /// A request was accepted (202); its answer comes on the event stream.
    Accepted(IdKey),
    /// 503 or 429 with `Retry-After`.
    ServerBusy(Duration),
    /// The server refused the Streamable HTTP `initialize` with this status.
    InitializeRefused(u16),
    /// A sign-in began before the server answered `initialize`: the host got the
    /// answer remembered from the last session at once.
    InitializeFromMemory,
    /// The server's real `initialize` answer differs from the remembered one the
    /// host got (`tools`: the host was told to list the tools again).
    InitializeChanged {
        /// `notifications/tools/list_changed` went to the host.
        tools: bool,
    },
    /// The proxy's `notifications/initialized` after a re-initialization failed.
    InitializedFailed(RequestError),
    /// The legacy event stream has been quiet; it is checked before a request relies on it.
    QuietBeforeSend,
    /// The host stopped reading its stdout (`true`): what the server sends waits in the
    /// network; or it reads again (`false`).
    HostBacklog(bool),
    /// Something suggests trouble: the connection is checked.
    CheckStarted(Suspicion),
    /// A check confirmed the connection.
    ConnectionConfirmed,
    /// A check ping failed on the network.
    CheckPingFailed(NetworkError),
    /// Nothing got through for this long; checking goes on.
    StillSilent(Duration),
    /// The legacy stream gave no sign of life after a ping: it is dead.
    StreamDead(String),
    /// A keep-alive ping went unanswered.
    KeepAliveUnanswered,
    /// A keep-alive ping failed.
    KeepAliveFailed,
    /// The server sent something that is not JSON-RPC.
    NotJsonRpc(Malformed),
    /// The DELETE at shutdown was answered with this status.
    SessionEnded(u16),
    /// The DELETE at shutdown failed.
    SessionEndFailed(NetworkError),
}

impl LogEvent {
    /// The delay it announces, if any (a reconnection, a stream's retry, a server's
    /// `Retry-After`): the trace shows it as a number.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            LogEvent::RetryingIn(d)
            | LogEvent::StreamRetryIn(d)
            | LogEvent::ServerBusy(d)
            | LogEvent::LegacyOpenTimedOut(d)
            | LogEvent::StillSilent(d) => Some(*d),
            _ => None,
        }
    }

    /// How much a reader cares.
    pub fn level(&self) -> Level {
        use LogEvent::*;
        match self {
            Abandoned(_)
            | RequestFailed(..)
            | MessageLost(_)
            | EndpointRejected(_)
            | GetStreamLost
            | InitializedFailed(_)
            | StillSilent(_)
            | KeepAliveUnanswered
            | NotJsonRpc(_)
            | ToolExcluded { .. }
            | InitializeChanged { .. }
            | Moved { .. }
            | ListenLost { refused: false } => Level::Warn,
            Reinitializing
            | ModernServer
            | LegacyServer
            | RetryingIn(_)
            | OpeningLegacyStream
            | LegacyStreamReady
            | LegacyStreamEnded(_)
            | LegacyOpenTimedOut(_)
            | NoGetStream
            | Resuming(_)
            | ServerBusy(_)
            | InitializeRefused(_)
            | InitializeFromMemory
            | HostBacklog(_)
            | CheckStarted(_)
            | ListenLost { refused: true }
            | Reissued(_)
            | Relisting
            | StreamDead(_) => Level::Info,
            OpeningGetStream { .. }
            | StreamRetryIn(_)
            | GetStreamBroke(_)
            | Accepted(_)
            | QuietBeforeSend
            | ConnectionConfirmed
            | CheckPingFailed(_)
            | KeepAliveFailed
            | SessionEnded(_)
            | SessionEndFailed(_) => Level::Debug,
        }
    }
}

impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LogEvent::*;
        match self {
            Reinitializing => f.write_str("re-initializing the session with the host's initialize"),
            Relisting => f.write_str(
                "the server refused a tool call's headers (HeaderMismatch): listing the tools again, then sending the call once more",
            ),
            Reissued(key) => write!(
                f,
                "the response stream of request {key} broke (MCP 2026-07-28 cannot resume it); it only reads, so it was sent again"
            ),
            ListenLost { refused: true } => f.write_str(
                "the server does not offer subscriptions/listen: the host gets no change notifications",
            ),
            ListenLost { refused: false } => f.write_str(
                "the subscriptions/listen stream could not be kept open: the host gets no change notifications",
            ),
            Moved { from, to } => write!(
                f,
                "{from} answered 410 Gone: the server moved to {to}, which this start uses; put {to} in your MCP client's config"
            ),
            ToolExcluded { tool, why } => write!(
                f,
                "the server's tool {:?} is left out of the host's list: {why}",
                tool
            ),
            ModernServer => f.write_str("the server speaks MCP 2026-07-28: answering the host's initialize from server/discover and bridging every request"),
            LegacyServer => f.write_str("the server does not speak MCP 2026-07-28: sending the host's initialize"),
            RetryingIn(d) => write!(
                f,
                "the server is unreachable; trying again in {:.1} s",
                d.as_secs_f64()
            ),
            Abandoned(e) => write!(f, "{e}"),
            MessageLost(e) => write!(f, "a message to the server was lost: {e}"),
            OpeningLegacyStream => {
                f.write_str("opening the server's event stream (legacy HTTP+SSE transport)")
            }
            LegacyStreamReady => {
                f.write_str("the server's event stream is ready (legacy HTTP+SSE transport)")
            }
            LegacyStreamEnded(None) => f.write_str("the server closed its event stream"),
            LegacyStreamEnded(Some(why)) => write!(f, "the server's event stream broke: {why}"),
            LegacyOpenTimedOut(d) => write!(
                f,
                "the server's event stream did not open within {:.1} s",
                d.as_secs_f64()
            ),
            EndpointRejected(e) => write!(f, "{e}"),
            OpeningGetStream { resuming: false } => f.write_str("opening the GET stream"),
            OpeningGetStream { resuming: true } => {
                f.write_str("opening a GET stream with Last-Event-ID")
            }
            StreamRetryIn(d) => write!(f, "the stream reconnects in {:.1} s", d.as_secs_f64()),
            GetStreamBroke(why) => write!(f, "GET stream broke: {why}"),
            NoGetStream => f.write_str(
                "the server offers no GET stream; server messages come with responses only",
            ),
            GetStreamLost => f.write_str("the GET stream could not be re-established"),
            Resuming(id) => write!(
                f,
                "response stream for id={id} broke; resuming with Last-Event-ID"
            ),
            Accepted(id) => write!(
                f,
                "request id={id} was accepted; its answer comes on the event stream"
            ),
            ServerBusy(d) => write!(
                f,
                "the server is busy; it asks to retry after {} s",
                d.as_secs()
            ),
            InitializeRefused(status) => write!(
                f,
                "the server refused the Streamable HTTP initialize: HTTP {status}"
            ),
            HostBacklog(true) => f.write_str(
                "the client is not reading what it was sent; the server's answers wait until it does",
            ),
            HostBacklog(false) => f.write_str("the client reads again"),
            InitializeFromMemory => f.write_str(
                "signing in: the host's initialize was answered with the server's answer remembered from the last session; its requests wait for the sign-in (--auth-timeout)",
            ),
            InitializeChanged { tools: true } => f.write_str(
                "the server's initialize answer changed since it was remembered; the host was told to list the tools again",
            ),
            InitializeChanged { tools: false } => f.write_str(
                "the server's initialize answer changed since it was remembered (the host keeps the remembered one until it reconnects)",
            ),
            InitializedFailed(why) => write!(
                f,
                "notifications/initialized after re-initialization failed: {why}"
            ),
            QuietBeforeSend => {
                f.write_str("the server's event stream has been quiet; checking it before sending")
            }
            CheckStarted(why) => write!(f, "{why}; checking that the server is reachable"),
            ConnectionConfirmed => f.write_str("the connection to the server is alive"),
            CheckPingFailed(e) => write!(f, "check ping failed: {e}"),
            StillSilent(d) => write!(
                f,
                "no answer from the server for {:.1} s; still trying",
                d.as_secs_f64()
            ),
            StreamDead(why) => write!(f, "the server's event stream is dead: {why}"),
            KeepAliveUnanswered => {
                f.write_str("no answer to the keep-alive ping; treating the connection as dead")
            }
            KeepAliveFailed => f.write_str("keep-alive ping failed"),
            NotJsonRpc(e) => write!(f, "the server sent a message that is not JSON-RPC: {e}"),
            SessionEnded(status) => write!(f, "session DELETE answered {status}"),
            SessionEndFailed(e) => write!(f, "session DELETE failed: {e}"),
            RequestFailed(id, e) => write!(f, "request id={id} failed: {e}"),
        }
    }
}
