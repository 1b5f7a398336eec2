//! What crosses the engine's edge: the exchanges it asks for, what the network
//! reports about them, and what it tells its driver.

use crate::auth::challenge::BearerChallenge;
use crate::auth::grant::Need;
use crate::link::Transport;
use bytes::Bytes;
use std::time::Duration;
use url::Url;

use super::log::LogEvent;
use crate::auth::AuthError;
use crate::error::NetworkError;

/// The engine's name for one HTTP exchange, from its start to its end; progress
/// reported under a name the engine no longer knows (it aborted the exchange) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExchangeId(pub u64);

impl std::fmt::Display for ExchangeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The HTTP methods the MCP transports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An event stream (standalone, resumption, or the legacy transport's stream).
    Get,
    /// A message to the server.
    Post,
    /// The end of a session (Streamable HTTP §Session Management item 5).
    Delete,
}

/// Why an exchange is made; for logs and traces, and for the shell's choices that
/// depend on it (none today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The POST of a message from the host.
    HostMessage,
    /// The POST of the host's `initialize`, replayed under a reserved id.
    Reinitialize,
    /// The POST of `notifications/initialized` after a re-initialization.
    Initialized,
    /// A keep-alive ping (`--keep-alive`).
    KeepAlive,
    /// A ping that checks the connection is alive.
    Check,
    /// The standalone GET stream (Streamable HTTP).
    GetStream,
    /// A GET that resumes a broken response stream with `Last-Event-ID`.
    Resume,
    /// The legacy transport's event stream.
    LegacyStream,
    /// The `subscriptions/listen` stream of a 2026-07-28 server.
    Listen,
    /// A `tools/list` of the proxy's own, after a 2026-07-28 `HeaderMismatch`.
    Relist,
    /// The DELETE that ends the session at shutdown.
    EndSession,
}

/// A header's name: most are fixed, `Mcp-Param-*` are made from a tool's schema.
pub type HeaderName = std::borrow::Cow<'static, str>;

/// One HTTP exchange to perform. The driver adds the `--header` values and the
/// `Authorization` header (the engine never holds a secret) and reports the
/// exchange's progress with [`super::Engine::handle_head`],
/// [`super::Engine::handle_body`] and [`super::Engine::handle_end`].
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Its name in later reports.
    pub id: ExchangeId,
    /// GET, POST or DELETE.
    pub method: Method,
    /// Where.
    pub url: Url,
    /// The protocol's headers (`Accept`, `Content-Type`, `Mcp-Session-Id`,
    /// `MCP-Protocol-Version`, `Last-Event-ID`, and for MCP 2026-07-28 `Mcp-Method`,
    /// `Mcp-Name`, `Mcp-Param-*`); names are lowercase, values valid header values.
    pub headers: Vec<(HeaderName, String)>,
    /// The body of a POST, shared with the engine's table (a re-send costs no copy).
    pub body: Option<Bytes>,
    /// Why.
    pub purpose: Purpose,
    /// A limit on the whole exchange that the driver applies itself (the DELETE at shutdown).
    pub timeout: Option<Duration>,
}

/// The parts of a response's head the engine reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// The HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Mcp-Session-Id`, if it is a valid one (visible ASCII).
    pub session_id: Option<String>,
    /// Every `WWW-Authenticate` value (401 and 403 answers).
    pub www_authenticate: Vec<String>,
    /// `Retry-After` (503 and 429 answers).
    pub retry_after: Option<String>,
    /// `Link` (410 answers: where a retired endpoint moved).
    pub link: Option<String>,
    /// Every `Set-Cookie`, for the driver's cookie jar (the engine ignores them).
    pub set_cookie: Vec<String>,
    /// `Content-Length`, when the server sent one: a JSON body's buffer is made that
    /// large at once (no growing copies of a large answer).
    pub content_length: Option<u64>,
}

/// How an exchange's network side ended.
pub type ExchangeResult = Result<(), NetworkError>;

/// What the driver is asked to do with the network.
#[derive(Debug, Clone)]
pub enum Transmit {
    /// Start this exchange.
    Start(Exchange),
    /// Stop this exchange and report nothing more about it.
    Abort(ExchangeId),
}

/// What the engine tells its driver, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A line for the host: a message from the server (only the one answer owed to
    /// each request; answers to the proxy's own requests never come here), or the
    /// proxy's error answer.
    ToHost(super::HostLine),
    /// The server asks for credentials: get a token and report it with
    /// [`super::Engine::handle_token`].
    NeedToken {
        /// 401, or 403 `insufficient_scope`.
        need: Need,
        /// The `WWW-Authenticate` Bearer challenge.
        challenge: BearerChallenge,
    },
    /// A request succeeded with the current token (once per token).
    TokenWorked,
    /// Remember that this server speaks this transport.
    RememberTransport(Transport),
    /// Forget what was remembered about this server's transport.
    ForgetTransport,
    /// Remember the server's answer to `initialize` (its `result`, as JSON text):
    /// the next start can answer the host with it while a sign-in runs.
    RememberInitialize(String),
    /// Something worth a line in the log.
    Log(LogEvent),
    /// A machine's step or a timer, for `--trace` (only with `EngineConfig::trace`).
    Trace(crate::trace::TraceRecord),
    /// Shutdown is complete (the session was ended, or there was none): the process may exit.
    Closed,
}

/// The outcome of a request for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// A (new) token is in use: the driver sends it on every exchange from now on.
    Ready,
    /// No token can be had.
    Failed(AuthError),
}
