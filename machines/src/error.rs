//! Why a host request gets an error from the proxy instead of the server's answer,
//! grouped by who is at fault, and rendered to text only at the edge (the host's
//! JSON-RPC error message, written by the engine's host side). The connection engine and the
//! Link decide with these values; nothing between them and the host turns them
//! into words. No variant carries a secret: details come from the network layer
//! without URLs, from the server's status line, and from [`AuthError`].

use crate::auth::AuthError;
use crate::transport::EndpointError;
use std::time::Duration;

/// Why an exchange failed on the network side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The connection could not be made: the request was never written, so the
    /// server surely never saw it (design invariant 3: only such a request may be sent again).
    #[error("{0}")]
    Connect(String),
    /// No response, or no progress, within a time limit.
    #[error("{0}")]
    TimedOut(String),
    /// The connection broke after the request may have been written.
    #[error("{0}")]
    Broken(String),
}

/// Why a request of the host gets an error from the proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    // ---- the network ----
    /// The connection failed before the answer (or, `Connect`, before the request went).
    #[error("{}", network_text(.0))]
    Network(NetworkError),
    /// The connection was refused: the request surely never reached the server.
    #[error("could not connect to the server; the request did not reach the server")]
    Unreachable,
    /// The network went silent with the request in flight.
    #[error("the server stopped answering (the network went silent); the request may or may not have been executed")]
    Silent,
    /// No answer to keep-alive pings with the request in flight.
    #[error("the connection to the server went silent (no answer to keep-alive pings); the request may or may not have been executed")]
    KeepAliveSilent,
    /// The connection (legacy event stream) that was to carry the answer dropped.
    #[error("the connection to the server dropped; the request may or may not have been executed")]
    Dropped,
    /// The response stream broke, and resuming it failed.
    #[error("the response stream broke and could not be resumed; the request may or may not have been executed")]
    ResumeFailed,
    /// The response stream broke before the answer and cannot be resumed (no event id).
    #[error("the response stream broke before the answer ({0}); the request may or may not have been executed")]
    StreamBroke(String),

    // ---- the server ----
    /// The server refused the request with this HTTP status.
    #[error("the server answered HTTP {status}{}", reason_suffix(.reason))]
    Refused {
        /// The status.
        status: u16,
        /// Its reason phrase, when known.
        reason: Option<&'static str>,
    },
    /// 503 or 429 with `Retry-After`, while the proxy could not wait for it.
    #[error("the server is busy; it asks to retry after {} s", .0.as_secs())]
    Busy(Duration),
    /// The server ended its response without answering.
    #[error("the server ended the response without answering")]
    NoAnswer,
    /// A message over `--max-message-bytes`.
    #[error("the server sent a message over the limit: {0} (--max-message-bytes)")]
    Oversized(String),

    /// The server did not accept the session (its `initialize` failed, or the
    /// replayed one was refused).
    #[error("the server did not accept the session")]
    SessionRefused,
    /// The server no longer knows the session (HTTP 404, or 400 "no valid session").
    #[error("the server no longer knows this session (HTTP 404){}", reinit_suffix(*.reinitialized))]
    SessionExpired {
        /// Whether the request had already been sent again in a new session.
        reinitialized: bool,
    },
    /// Legacy transport: the server forgot the session while it owed this answer.
    #[error("the server lost the session; the request may not have completed")]
    SessionLost,
    /// The session expired and the replayed `initialize` failed.
    #[error("the session expired and could not be re-established: {}", cause_text(.0))]
    ReinitFailed(Box<RequestError>),
    /// Legacy transport: reconnecting, the server refused the new event stream.
    #[error("the server refused to reconnect: {}", cause_text(.0))]
    ReconnectRefused(Box<RequestError>),
    /// Legacy transport: the event stream could not be opened.
    #[error("could not open the server's event stream: {}", cause_text(.0))]
    EventStreamFailed(Box<RequestError>),
    /// Legacy transport: the event stream's GET got no response in time.
    #[error("the server's event stream did not open within {:.1} s", .0.as_secs_f64())]
    StreamOpenTimedOut(Duration),
    /// Legacy transport: the event stream ended before its `endpoint` event.
    #[error("the event stream ended before its endpoint event")]
    NoEndpoint,
    /// Legacy transport: the GET was not answered with an event stream.
    #[error("the server did not answer with an event stream")]
    NotEventStream,
    /// Legacy transport: the `endpoint` event cannot be used.
    #[error("{0}")]
    EndpointRejected(EndpointError),

    // ---- authorization ----
    /// No token could be had.
    #[error("{}", auth_text(.0))]
    Auth(AuthError),

    // ---- the host ----
    /// The server retired this URL (HTTP 410 Gone), naming the successor if it did.
    #[error("the server retired this URL (HTTP 410 Gone){}", gone_suffix(.0))]
    Gone(Option<String>),
    /// A 2026-07-28 server asked for input more than this many rounds.
    #[error("the server asked for input more than {0} times for one request")]
    InputRounds(u32),
    /// A 2026-07-28 server asked too many questions in one round.
    #[error("the server asked {0} questions at once (at most {1} are relayed)")]
    InputQuestions(usize, usize),
    /// A 2026-07-28 server asked for input the host cannot give.
    #[error("the server asked for {0}, which the host does not offer")]
    InputUnknown(String),
    /// The host answered the server's question with an error.
    #[error("the host refused the server's question: {0}")]
    InputRefused(String),
    /// The host did not answer the server's question in time.
    #[error("the host did not answer the server's question within {} s", .0.as_secs())]
    InputTimedOut(Duration),
    /// The server and the proxy share no protocol revision (or era).
    #[error("{0}")]
    ProtocolMismatch(String),
    /// The message could not be prepared for the server (not a JSON object).
    #[error("the message could not be prepared for the server")]
    NotSent,
    /// A session must be re-established and the host never sent `initialize`.
    #[error("the host never sent initialize")]
    NotInitialized,

    // ---- the proxy ----
    /// No answer within `--request-timeout`; the server was told to cancel it.
    #[error("no answer from the server within {} s (--request-timeout); the request was cancelled", .0.as_secs_f64())]
    TimedOut(Duration),
    /// The server is unreachable and the queue of held messages is full (invariant 4).
    #[error("the server is not reachable and {0} messages are already waiting")]
    Overloaded(usize),
    /// The proxy is shutting down.
    #[error("the proxy is shutting down")]
    ShuttingDown,
}

/// A cause inside another error: the network's words without the request's fate
/// (the outer error says what became of the request).
fn cause_text(error: &RequestError) -> String {
    match error {
        RequestError::Network(e) => e.to_string(),
        other => other.to_string(),
    }
}

fn gone_suffix(to: &Option<String>) -> String {
    match to {
        Some(to) => format!("; it names {to}: put that URL in your MCP client's config"),
        None => "; ask the server's operator for its new URL".to_owned(),
    }
}

fn reinit_suffix(reinitialized: bool) -> &'static str {
    match reinitialized {
        true => " and re-initializing did not help",
        false => "",
    }
}

fn auth_text(error: &AuthError) -> String {
    match error {
        AuthError::Required => error.to_string(),
        other => format!("sign-in failed: {other}"),
    }
}

fn network_text(error: &NetworkError) -> String {
    match error {
        NetworkError::Connect(detail) => format!("{detail}; the request did not reach the server"),
        other => format!("{other}; the request may or may not have been executed"),
    }
}

fn reason_suffix(reason: &Option<&'static str>) -> String {
    match reason {
        Some(r) => format!(" {r}"),
        None => String::new(),
    }
}

impl RequestError {
    /// Whether the request may have been executed by the server although it gets an
    /// error (the host should not assume it did not run).
    pub fn fate_unknown(&self) -> bool {
        matches!(
            self,
            RequestError::Network(NetworkError::Broken(_) | NetworkError::TimedOut(_))
                | RequestError::Silent
                | RequestError::KeepAliveSilent
                | RequestError::Dropped
                | RequestError::ResumeFailed
                | RequestError::StreamBroke(_)
                | RequestError::SessionLost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_inside_another_error_does_not_repeat_the_requests_fate() {
        let cause = RequestError::Network(NetworkError::Connect("connection refused".into()));
        assert_eq!(
            cause.to_string(),
            "connection refused; the request did not reach the server"
        );
        assert_eq!(
            RequestError::EventStreamFailed(Box::new(cause)).to_string(),
            "could not open the server's event stream: connection refused"
        );
        assert_eq!(
            RequestError::ReinitFailed(Box::new(RequestError::Refused {
                status: 500,
                reason: Some("Internal Server Error")
            }))
            .to_string(),
            "the session expired and could not be re-established: the server answered HTTP 500 Internal Server Error"
        );
    }

    #[test]
    fn only_errors_after_the_request_may_have_gone_leave_its_fate_unknown() {
        for unknown in [
            RequestError::Silent,
            RequestError::Dropped,
            RequestError::SessionLost,
            RequestError::Network(NetworkError::Broken("reset".into())),
        ] {
            assert!(unknown.fate_unknown(), "{unknown}");
            assert!(unknown.to_string().contains("may"), "{unknown}");
        }
        for known in [
            RequestError::Unreachable,
            RequestError::Network(NetworkError::Connect("refused".into())),
            RequestError::Overloaded(1024),
            RequestError::ShuttingDown,
            RequestError::SessionExpired {
                reinitialized: true,
            },
            RequestError::Auth(AuthError::Required),
        ] {
            assert!(!known.fate_unknown(), "{known}");
        }
    }

    #[test]
    fn a_sign_in_failure_says_so_and_a_missing_sign_in_says_what_the_server_wants() {
        assert_eq!(
            RequestError::Auth(AuthError::Required).to_string(),
            "the server requires authorization (HTTP 401)"
        );
        assert_eq!(
            RequestError::Auth(AuthError::Locked).to_string(),
            "sign-in failed: another mcp-remote is signing in to this server and did not finish in time"
        );
    }
}
