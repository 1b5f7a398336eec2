//! Why no token could be had, grouped by who is at fault, rendered to text only
//! at the edge (the host's JSON-RPC error, the log). No variant carries a secret:
//! details come from the authorization server's sanitized error fields, from the
//! network layer without credentials, and from the command line's flag names.

use super::callback::CallbackError;
use super::callback_port::PortError;
use super::device::DeviceError;
use super::discovery::DiscoveryError;
use super::registration::RegistrationError;
use super::token::TokenError;
use std::time::Duration;

/// Which step of a sign-in or refresh talked to the authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// Protected resource or authorization server metadata.
    Discovery,
    /// Dynamic client registration.
    Registration,
    /// The token endpoint (code exchange, refresh, client credentials).
    Token,
}

impl std::fmt::Display for AuthStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthStep::Discovery => "discovery",
            AuthStep::Registration => "client registration",
            AuthStep::Token => "the token request",
        })
    }
}

/// Why a sign-in or a refresh did not give a usable token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    // ---- the user ----
    /// The browser sign-in was not completed within `--auth-timeout`.
    #[error("sign-in did not complete within {} s (--auth-timeout); open the URL printed above, or raise the timeout", .0.as_secs())]
    NotCompleted(Duration),
    /// The whole flow (lock, discovery, browser, exchange) outlived its time.
    #[error("sign-in timed out (--auth-timeout)")]
    TimedOut,

    // ---- the authorization server ----
    /// Its answer to the browser: refused, another issuer, no code.
    #[error("{0}")]
    Callback(CallbackError),
    /// What its metadata (or the protected resource's) says cannot be used.
    #[error("{0}")]
    Discovery(DiscoveryError),
    /// No metadata document answered for this issuer.
    #[error("no authorization server metadata found for {0}")]
    NoMetadata(String),
    /// A metadata URL answered with an error status.
    #[error("discovery failed: {url} answered HTTP {status}")]
    MetadataStatus {
        /// The document's URL (metadata URLs carry no secret).
        url: String,
        /// The status.
        status: u16,
    },
    /// A metadata document over the size limit.
    #[error("discovery failed: {0} sent an oversized document")]
    MetadataTooLarge(String),
    /// A registration or token answer over the size limit.
    #[error("{0} failed: the authorization server sent an oversized answer")]
    TooLarge(AuthStep),
    /// No registration endpoint, and no pre-registered client.
    #[error("the authorization server offers no dynamic client registration; pass --static-oauth-client-info with a pre-registered client")]
    NoRegistration,
    /// Dynamic client registration failed.
    #[error("{0}")]
    Registration(RegistrationError),
    /// The token endpoint refused, or answered nonsense.
    #[error("{0}")]
    Token(TokenError),
    /// The identity provider refused the token exchange (enterprise-managed authorization).
    #[error("the identity provider refused the token exchange (--idp-token-endpoint): {0}")]
    IdentityExchange(TokenError),
    /// The identity assertion could not be read.
    #[error("the identity assertion (--identity-assertion) cannot be used: {0}")]
    Assertion(String),
    /// The device authorization grant (RFC 8628) gave no tokens.
    #[error("{0}")]
    Device(DeviceError),
    /// `--device-code`, and the authorization server does not offer the grant.
    #[error("the authorization server {0} does not offer the device authorization grant (no device_authorization_endpoint in its metadata); run without --device-code to sign in through the browser")]
    NoDeviceGrant(String),
    /// The authorization endpoint in its metadata is not a URL.
    #[error("the authorization server's authorization endpoint is not a valid URL")]
    BadAuthorizationEndpoint,
    /// It issued a token that cannot travel in an HTTP header.
    #[error("the authorization server issued a token that cannot be sent in a header")]
    UnusableToken,

    // ---- the network ----
    /// The authorization server could not be reached, or the connection broke.
    #[error("{step} failed: {detail}")]
    Unreachable {
        /// What was being asked.
        step: AuthStep,
        /// The network layer's description (no URL with credentials, no token).
        detail: String,
    },

    // ---- the MCP server ----
    /// The server asks for a token and the proxy has no way to get one.
    #[error("the server requires authorization (HTTP 401)")]
    Required,
    /// The server refused a token it had just been given, even after signing in again.
    #[error("the server refused the token it just issued; giving up after signing in again once")]
    TokenRefused,
    /// The server keeps asking for more scope.
    #[error("the server keeps asking for more scope ({scope}) after {tries} sign-ins; giving up")]
    ScopeLoop {
        /// The scope asked for last.
        scope: String,
        /// Sign-ins made for it.
        tries: u32,
    },

    // ---- the command line ----
    /// `--client-key` cannot be used to sign (the reason never quotes the key).
    #[error("the --client-key cannot be used: {0}")]
    ClientKey(String),
    /// `--client-credentials` without a client to use.
    #[error(
        "--client-credentials needs --static-oauth-client-info with a client_id and client_secret"
    )]
    NoClientCredentials,
    /// The MCP server now names another authorization server than the one the
    /// pre-registered client belongs to: its credentials are not sent there.
    #[error("the server now names the authorization server {named}, but the pre-registered client (--static-oauth-client-info) belongs to {bound}; its credentials are not sent elsewhere. Update --static-oauth-client-info for the new server")]
    IssuerChanged {
        /// Where the client belongs.
        bound: String,
        /// What discovery names now.
        named: String,
    },
    /// The client id or secret cannot be sent in a header.
    #[error("the client credentials cannot be sent in an HTTP header")]
    BadClientCredentials,

    // ---- what is stored ----
    /// A refresh was asked for and there is no refresh token.
    #[error("no refresh token")]
    NoRefreshToken,
    /// The stored tokens and client do not say which authorization server issued
    /// them, so the refresh token is sent nowhere.
    #[error(
        "the stored tokens do not say which authorization server issued them; signing in again"
    )]
    IssuerUnknown,
    /// A refresh was asked for and there is no client registration.
    #[error("no client registration to refresh with")]
    NoClient,

    // ---- this machine ----
    /// No callback port could be bound.
    #[error("{0}")]
    Port(PortError),
    /// The callback listener ended before the browser came back.
    #[error("the sign-in callback listener stopped")]
    ListenerStopped,
    /// Another copy of the proxy held the sign-in lock too long.
    #[error("another mcp-remote is signing in to this server and did not finish in time")]
    Locked,
    /// The token folder or its lock could not be used.
    #[error("the token folder could not be used: {0}")]
    Store(String),
}

impl AuthError {
    /// Whether the authorization server said the grant or the client is no good
    /// (`invalid_grant`, `invalid_client`, `unauthorized_client`), or there is
    /// nothing to refresh with: the stored credential is dead.
    pub fn rejected(&self) -> bool {
        match self {
            AuthError::Token(e) => e.rejected(),
            AuthError::NoRefreshToken | AuthError::NoClient | AuthError::IssuerUnknown => true,
            _ => false,
        }
    }
}

impl From<CallbackError> for AuthError {
    fn from(e: CallbackError) -> Self {
        AuthError::Callback(e)
    }
}

impl From<DiscoveryError> for AuthError {
    fn from(e: DiscoveryError) -> Self {
        AuthError::Discovery(e)
    }
}

impl From<RegistrationError> for AuthError {
    fn from(e: RegistrationError) -> Self {
        AuthError::Registration(e)
    }
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        AuthError::Token(e)
    }
}

impl From<DeviceError> for AuthError {
    fn from(e: DeviceError) -> Self {
        AuthError::Device(e)
    }
}

impl From<PortError> for AuthError {
    fn from(e: PortError) -> Self {
        AuthError::Port(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_grant_or_nothing_to_refresh_with_is_a_rejection() {
        let dead = TokenError::Refused {
            status: 400,
            error: "invalid_grant".into(),
            description: String::new(),
            rejected: true,
        };
        assert!(AuthError::Token(dead).rejected());
        assert!(AuthError::NoRefreshToken.rejected());
        let busy = TokenError::Refused {
            status: 503,
            error: String::new(),
            description: String::new(),
            rejected: false,
        };
        assert!(!AuthError::Token(busy).rejected());
        assert!(!AuthError::Unreachable {
            step: AuthStep::Token,
            detail: "connection refused".into()
        }
        .rejected());
        assert!(!AuthError::Locked.rejected());
    }

    #[test]
    fn the_text_names_the_flag_to_change() {
        assert!(AuthError::NotCompleted(Duration::from_secs(30))
            .to_string()
            .contains("30 s (--auth-timeout)"));
        assert_eq!(
            AuthError::Unreachable {
                step: AuthStep::Registration,
                detail: "connection refused".into()
            }
            .to_string(),
            "client registration failed: connection refused"
        );
    }
}
