//! The pure parts of MCP authorization (MCP 2025-06-18 / 2025-11-25
//! basic/authorization): reading challenges, where to look for metadata, what
//! to trust in it, which scopes to ask for, and what the authorization server
//! answers (the browser's callback, client registration, the token endpoint).

pub mod callback;
pub mod callback_port;
pub mod challenge;
pub mod device;
pub mod discovery;
mod error;
pub mod flow;
pub mod grant;
pub mod hints;
pub mod registration;
pub mod scope;
pub mod token;

pub use error::{AuthError, AuthStep};

/// At most this many characters of a server's text reach a message.
pub const MAX_SHOWN_CHARS: usize = 300;

/// Text an authorization server sent, made fit to show: no control characters
/// (terminal injection, checklist E11) and at most [`MAX_SHOWN_CHARS`] characters.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_SHOWN_CHARS)
        .collect()
}
