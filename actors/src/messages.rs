//! Every message the actors exchange. Commands are imperative (`Shutdown`),
//! events are past tense (`HostClosed`, `ExchangeEnded`).

use actix::Message;
use machines::jsonrpc::{Incoming, Malformed};

/// StdinReader → Session: one line from the host, parsed once.
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

/// StdinReader → Session: every message of one read of stdin, in order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ClientFrames(pub Vec<ClientFrame>);

/// StdinReader → Session: stdin reached end of file (the host is gone).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct HostClosed;

/// Session → an actor standing for the host (`mcp-remote-client`): one JSON-RPC message.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ServerFrame(pub Vec<u8>);

/// → Session: stop (stdin closed, SIGINT, SIGTERM): DELETE the session, then end the process.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// What triggered it, for the log.
    pub reason: &'static str,
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

/// Authorizer → Session: no token can be had (why, never a secret); fail what waits for one.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AuthFailed(pub machines::auth::AuthError);

/// wiring → Authorizer: who to tell.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuthorizerPeers {
    /// Where tokens go.
    pub ready: actix::Recipient<TokenReady>,
    /// Where failures go.
    pub failed: actix::Recipient<AuthFailed>,
}
