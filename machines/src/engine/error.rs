//! Why a host request gets an error from the proxy instead of the server's answer,
//! grouped by who is at fault, and rendered to text only at the edge (the host's
//! JSON-RPC error message). No variant carries a secret: details come from the
//! network layer without URLs, and from the server's status line.

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

    // ---- the session (decided by the Link) ----
    /// The Link's decision, in its words.
    #[error("{0}")]
    Session(String),
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
        )
    }
}
