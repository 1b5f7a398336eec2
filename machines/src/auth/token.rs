//! The token endpoint's answer (OAuth 2.1 §3.2.3 and §3.2.4, RFC 6749 §5.1 and
//! §5.2): the tokens, or the server's error and whether it means that the grant
//! or the client is no good any more.
//!
//! The Authorizer POSTs the grant (authorization code, refresh token, client
//! credentials) and hands the status and body to [`parse_response`].

use crate::auth::sanitize;
use serde::Deserialize;
use std::time::Duration;

/// A successful token response.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The bearer token for the MCP server; never empty.
    pub access_token: String,
    /// Normally `Bearer` (any case); absent is taken as `Bearer` by the store.
    pub token_type: Option<String>,
    /// Lifetime in seconds, from a number or a numeric string (servers send both).
    pub expires_in: Option<u64>,
    /// For renewing without the browser; a new one replaces (rotates) the old one.
    pub refresh_token: Option<String>,
    /// The scope granted, when it differs from the one asked for.
    pub scope: Option<String>,
    /// OIDC id token, kept as received.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenResponse {
    /// When the access token expires, in milliseconds since the epoch, for a
    /// response received at `now_ms`. Saturating: an absurd `expires_in` means
    /// "far away", never a time that wrapped round into the past (which would
    /// make the proxy refresh in a loop).
    pub fn expires_at(&self, now_ms: u64) -> Option<u64> {
        self.expires_in
            .map(|s| now_ms.saturating_add(s.saturating_mul(1000)))
    }
}

/// Stored tokens (mcp-remote 0.15 `OAuthTokensWithExpiresAtSchema`).
#[derive(Clone, serde::Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct StoredTokens {
    /// The bearer token.
    pub access_token: String,
    /// Normally `Bearer`.
    #[serde(default = "bearer")]
    pub token_type: String,
    /// Lifetime in seconds as issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For renewing without the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OIDC id token, kept as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the access token expires, in milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The scope that was asked for (a different request means a new sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_scope: Option<String>,
    /// The authorization server that issued them: the refresh token goes to this
    /// issuer and no other, whatever the server's metadata names later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The RFC 8707 `resource` they were issued for, sent again with a refresh
    /// (absent in files written by the Node mcp-remote: the server URL is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

fn bearer() -> String {
    "Bearer".into()
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl StoredTokens {
    /// The bearer to send: the access token, or with `--use-id-token` the OIDC ID
    /// token (the access token when the server issued none).
    pub fn bearer(&self, id_token: bool) -> &str {
        match (&self.id_token, id_token) {
            (Some(id), true) => id,
            _ => &self.access_token,
        }
    }

    /// When the bearer expires, in ms since the epoch: with `--use-id-token`, the ID
    /// token's `exp` claim when it is earlier than the access token's expiry.
    pub fn bearer_expires_at(&self, id_token: bool) -> Option<u64> {
        let exp = self
            .id_token
            .as_deref()
            .filter(|_| id_token)
            .and_then(jwt_exp)
            .map(|secs| secs.saturating_mul(1000));
        match (self.expires_at, exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long before expiry to refresh: `max`, or a quarter of the lifetime of
    /// short-lived tokens (a 3 s token is refreshed after about 2 s, not at once and
    /// again and again).
    pub fn refresh_margin(&self, max: Duration) -> Duration {
        match self.expires_in {
            Some(secs) => max.min(Duration::from_millis(secs.saturating_mul(250))),
            None => max,
        }
    }

    /// Whether the access token is still good for at least `margin`.
    pub fn fresh(&self, now_ms: u64, margin: Duration) -> bool {
        match self.expires_at {
            Some(at) => now_ms + (margin.as_millis() as u64) < at,
            None => true,
        }
    }
}

/// The wire shape; `expires_in` is read leniently afterwards.
#[derive(Deserialize)]
struct Wire {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// Why the token endpoint gave no tokens. Messages carry at most
/// [`crate::auth::MAX_SHOWN_CHARS`] characters of each text of the server, and
/// no control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// RFC 6749 §5.2: an error response, or any status other than 2xx.
    #[error("{}", refused(*.status, .error, .description))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` code, sanitized; empty when absent.
        error: String,
        /// `error_description`, sanitized; empty when absent.
        description: String,
        /// `invalid_grant`, `invalid_client` or `unauthorized_client`: the
        /// refresh token or the registration is dead, and is forgotten.
        rejected: bool,
    },
    /// The body is not JSON with a string `access_token` (or a field has the wrong type).
    #[error("the token response is not valid JSON")]
    NotJson,
    /// An empty `access_token` authorizes nothing.
    #[error("the token response has an empty access_token")]
    EmptyAccessToken,
}

fn refused(status: u16, error: &str, description: &str) -> String {
    let text = format!("token exchange failed: HTTP {status} {error} {description}")
        .trim()
        .to_owned();
    super::hints::with_fix(text, error, description)
}

impl TokenError {
    /// Whether the server says the grant or the client is no good (RFC 6749 §5.2).
    pub fn rejected(&self) -> bool {
        matches!(self, TokenError::Refused { rejected: true, .. })
    }
}

/// Read the token endpoint's answer.
pub fn parse_response(status: u16, body: &[u8]) -> Result<TokenResponse, TokenError> {
    if !(200..300).contains(&status) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |name: &str| v.get(name).and_then(|e| e.as_str()).unwrap_or("");
        let code = text("error");
        return Err(TokenError::Refused {
            status,
            error: sanitize(code),
            description: sanitize(text("error_description")),
            rejected: matches!(
                code,
                "invalid_grant" | "invalid_client" | "unauthorized_client"
            ),
        });
    }
    // serde's messages would quote the values (a token among them): not passed on.
    let wire: Wire = serde_json::from_slice(body).map_err(|_| TokenError::NotJson)?;
    if wire.access_token.is_empty() {
        return Err(TokenError::EmptyAccessToken);
    }
    let expires_in = wire.expires_in.as_ref().and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    Ok(TokenResponse {
        access_token: wire.access_token,
        token_type: wire.token_type,
        expires_in,
        refresh_token: wire.refresh_token,
        scope: wire.scope,
        id_token: wire.id_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> TokenResponse {
        parse_response(200, body.as_bytes()).unwrap()
    }

    #[test]
    fn a_full_answer() {
        let t = ok(
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1","scope":"mcp:tools"}"#,
        );
        assert_eq!(t.access_token, "at-1");
        assert_eq!(t.token_type.as_deref(), Some("Bearer"));
        assert_eq!(t.expires_in, Some(3600));
        assert_eq!(t.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(t.scope.as_deref(), Some("mcp:tools"));
        assert_eq!(t.expires_at(1_000), Some(3_601_000));
        let shown = format!("{t:?}");
        assert!(!shown.contains("at-1") && !shown.contains("rt-1"));
    }

    #[test]
    fn expires_in_is_read_leniently_and_never_wraps() {
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":"60"}"#).expires_in,
            Some(60)
        );
        for odd in [r#""soon""#, "-5", "3600.5", "null", "[]"] {
            let t = ok(&format!(r#"{{"access_token":"a","expires_in":{odd}}}"#));
            assert_eq!(t.expires_in, None, "{odd}");
            assert_eq!(t.expires_at(5), None);
        }
        let t = ok(r#"{"access_token":"a","expires_in":18446744073709551615}"#);
        assert_eq!(t.expires_at(1_800_000_000_000), Some(u64::MAX));
        let t = ok(r#"{"access_token":"a","expires_in":"18446744073709551"}"#);
        assert!(t.expires_at(1_800_000_000_000).unwrap() > 1_800_000_000_000);
    }

    #[test]
    fn the_access_token_is_required() {
        for body in [
            r#"{}"#,
            r#"{"access_token":null}"#,
            r#"{"access_token":7}"#,
            r#"{"access_token":"a","refresh_token":12}"#,
            "access_token=a&token_type=bearer",
        ] {
            assert_eq!(
                parse_response(200, body.as_bytes()),
                Err(TokenError::NotJson),
                "{body}"
            );
        }
        assert_eq!(
            parse_response(200, br#"{"access_token":""}"#),
            Err(TokenError::EmptyAccessToken)
        );
    }

    #[test]
    fn errors_say_whether_the_grant_is_dead() {
        let e = parse_response(
            400,
            br#"{"error":"invalid_grant","error_description":"refresh token revoked\r\n"}"#,
        )
        .unwrap_err();
        assert!(e.rejected());
        assert_eq!(
            e.to_string(),
            "token exchange failed: HTTP 400 invalid_grant refresh token revoked"
        );
        let e = parse_response(400, br#"{"error":"invalid_request"}"#).unwrap_err();
        assert!(!e.rejected());
        let e = parse_response(503, b"<html>busy</html>").unwrap_err();
        assert!(!e.rejected());
        assert_eq!(e.to_string(), "token exchange failed: HTTP 503");
        let e = parse_response(401, br#"{"error":"invalid_client"}"#).unwrap_err();
        assert!(e.rejected());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(status in 0u16..1000, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), now in proptest::prelude::any::<u64>()) {
            match parse_response(status, &body) {
                Ok(t) => {
                    proptest::prop_assert!(!t.access_token.is_empty());
                    if let Some(at) = t.expires_at(now) {
                        proptest::prop_assert!(at >= now);
                    }
                }
                Err(e) => proptest::prop_assert!(!e.to_string().chars().any(char::is_control)),
            }
        }
    }
}

/// The `exp` claim (seconds since the epoch) of a JWT, read without checking its
/// signature (only to know when to refresh; the server judges the token).
pub fn jwt_exp(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// Base64url without padding (RFC 4648 §5), as JWTs use it.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod jwt_tests {
    use super::*;

    #[test]
    fn the_id_token_is_the_bearer_and_its_exp_counts() {
        // {"alg":"none"} . {"sub":"u","exp":2000000000} . sig
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwMDAwMDAwfQ.c2ln";
        assert_eq!(jwt_exp(jwt), Some(2_000_000_000));
        assert_eq!(jwt_exp("not-a-jwt"), None);
        assert_eq!(jwt_exp("a.!!!.b"), None);
        let tokens: StoredTokens = serde_json::from_value(serde_json::json!({
            "access_token": "at", "token_type": "Bearer", "id_token": jwt,
            "expires_at": 3_000_000_000_000u64
        }))
        .unwrap();
        assert_eq!(tokens.bearer(false), "at");
        assert_eq!(tokens.bearer(true), jwt);
        assert_eq!(tokens.bearer_expires_at(false), Some(3_000_000_000_000));
        assert_eq!(tokens.bearer_expires_at(true), Some(2_000_000_000_000));
    }
}
