//! The answer of a dynamic client registration endpoint (RFC 7591 §3.2), read
//! into the client information that mcp-remote keeps in
//! `<key>_client_info.json` and that `--static-oauth-client-info` gives.
//!
//! The Authorizer POSTs the registration request and hands the status and body
//! to [`parse_response`]; what comes back is stored and used as is.

use crate::auth::discovery::TokenAuth;
use crate::auth::sanitize;
use serde::{Deserialize, Serialize};

/// A registered client: RFC 7591 §3.2.1 client information, in mcp-remote 0.15's
/// `client_info.json` shape (the response as received, plus `issuer`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// RFC 7591 §3.2.1: REQUIRED; the identity the client presents everywhere.
    pub client_id: String,
    /// The secret of a confidential client, for the token endpoint (OAuth 2.1 §2.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Redirect URIs it was registered with: a stored registration is reused only
    /// for a redirect URI among them.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// How it authenticates at the token endpoint (RFC 7591 §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// The authorization server it belongs to (not part of RFC 7591): a
    /// registration is never used with another server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Everything else of the registration response (`client_secret_expires_at`,
    /// `client_id_issued_at`, `client_name`, …), kept as received so that a
    /// rewrite of the file loses nothing.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInfo")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// What the registration request asked for, filled in where the answer is silent.
#[derive(Debug, Clone, Copy)]
pub struct Requested<'a> {
    /// The one redirect URI sent (empty for a client of the device grant, which has none).
    pub redirect_uri: &'a str,
    /// The token endpoint authentication method sent.
    pub token_endpoint_auth_method: TokenAuth,
    /// The issuer of the authorization server registered with.
    pub issuer: &'a str,
}

/// Why a registration gave no client. Messages carry at most
/// [`crate::auth::MAX_SHOWN_CHARS`] characters of the server's text, and no
/// control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// RFC 7591 §3.2.2: an error response, or any status other than 2xx.
    #[error("client registration was refused (HTTP {status}): {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// `error_description`, else `error`, sanitized; empty when neither.
        detail: String,
    },
    /// The body is not a JSON object of client information (or a field has the wrong type).
    #[error("the client registration response is not valid JSON")]
    NotJson,
    /// RFC 7591 §3.2.1: `client_id` is REQUIRED (and an empty one identifies nobody).
    #[error("the client registration response has no client_id")]
    NoClientId,
}

/// Read the registration endpoint's answer.
///
/// RFC 7591 §3.2.1: the server returns the registered metadata, "including any
/// fields provisioned by the authorization server itself"; a server that leaves
/// out `redirect_uris` or `token_endpoint_auth_method` registered what was
/// asked for, so those are filled in from `requested`.
pub fn parse_response(
    status: u16,
    body: &[u8],
    requested: &Requested<'_>,
) -> Result<ClientInfo, RegistrationError> {
    if !(200..300).contains(&status) {
        let value = serde_json::from_slice::<serde_json::Value>(body).ok();
        let field = |name: &str| {
            value
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|e| e.as_str())
                .map(sanitize)
        };
        let (error, description) = (field("error"), field("error_description"));
        let detail = description.clone().or(error.clone()).unwrap_or_default();
        let detail = super::hints::with_fix(
            detail,
            error.as_deref().unwrap_or(""),
            description.as_deref().unwrap_or(""),
        );
        return Err(RegistrationError::Refused { status, detail });
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| RegistrationError::NotJson)?;
    match value.get("client_id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() => {}
        Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null)
            if value.is_object() =>
        {
            return Err(RegistrationError::NoClientId)
        }
        _ => return Err(RegistrationError::NotJson),
    }
    // Field types are checked here; serde's messages would quote the values (a
    // secret among them), so they are not passed on.
    let mut client: ClientInfo =
        serde_json::from_value(value).map_err(|_| RegistrationError::NotJson)?;
    if client.redirect_uris.is_empty() && !requested.redirect_uri.is_empty() {
        client.redirect_uris = vec![requested.redirect_uri.to_owned()];
    }
    if client.token_endpoint_auth_method.is_none() {
        client.token_endpoint_auth_method =
            Some(requested.token_endpoint_auth_method.as_str().to_owned());
    }
    client.issuer = Some(requested.issuer.to_owned());
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIRECT: &str = "http://localhost:3334/oauth/callback";

    fn requested() -> Requested<'static> {
        Requested {
            redirect_uri: REDIRECT,
            token_endpoint_auth_method: TokenAuth::None,
            issuer: "https://as.example",
        }
    }

    fn parse(status: u16, body: &str) -> Result<ClientInfo, RegistrationError> {
        parse_response(status, body.as_bytes(), &requested())
    }

    /// What the MCP TypeScript SDK's example authorization server
    /// (`clientRegistrationHandler`, 1.x) answers a confidential client.
    const SDK_CONFIDENTIAL: &str = r#"{"redirect_uris":["http://localhost:3334/oauth/callback"],"token_endpoint_auth_method":"client_secret_post","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"MCP CLI Proxy","client_secret":"3f1c0aa2b9d14cbe8fd0c1e0a5f4e2d1c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1","client_secret_expires_at":1767225600,"client_id":"6c0f4a3e-2b1d-4c5e-9f8a-7b6c5d4e3f2a","client_id_issued_at":1764633600}"#;

    #[test]
    fn the_sdk_servers_answer_is_kept_whole() {
        let c = parse(201, SDK_CONFIDENTIAL).unwrap();
        assert_eq!(c.client_id, "6c0f4a3e-2b1d-4c5e-9f8a-7b6c5d4e3f2a");
        assert!(c.client_secret.as_deref().unwrap().starts_with("3f1c"));
        assert_eq!(c.redirect_uris, [REDIRECT]);
        assert_eq!(
            c.token_endpoint_auth_method.as_deref(),
            Some("client_secret_post"),
            "the server's method, not the requested one"
        );
        assert_eq!(c.issuer.as_deref(), Some("https://as.example"));
        assert_eq!(c.extra["client_secret_expires_at"], 1767225600);
        assert_eq!(c.extra["client_name"], "MCP CLI Proxy");
        assert!(!format!("{c:?}").contains("3f1c"), "no secret in Debug");
        let again: ClientInfo = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c, "the stored file reads back the same");
    }

    /// Found by fuzzing: a number serde_json reads as a float (here an integer
    /// beyond u64) must come back from the file as it went in, or every rewrite
    /// of `client_info.json` drifts it.
    #[test]
    fn numbers_in_unknown_fields_survive_the_file() {
        let c = parse(
            201,
            r#"{"client_id":"a","client_at":1795750700000000000000000000000000062,"f":0.30000000000000004}"#,
        )
        .unwrap();
        let again: ClientInfo = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn a_minimal_answer_gets_what_was_asked_for() {
        let c = parse(200, r#"{"client_id":"abc","issuer":"https://elsewhere"}"#).unwrap();
        assert_eq!(c.redirect_uris, [REDIRECT]);
        assert_eq!(c.token_endpoint_auth_method.as_deref(), Some("none"));
        assert_eq!(c.issuer.as_deref(), Some("https://as.example"));
        assert_eq!(c.client_secret, None);
    }

    #[test]
    fn client_id_is_required_and_not_empty() {
        for body in [
            r#"{}"#,
            r#"{"client_id":""}"#,
            r#"{"client_id":null}"#,
            r#"{"client_secret":"s"}"#,
        ] {
            assert_eq!(
                parse(201, body),
                Err(RegistrationError::NoClientId),
                "{body}"
            );
        }
        for body in [
            r#"{"client_id":42}"#,
            r#"["client_id"]"#,
            r#""client_id""#,
            r#"{"client_id":"a","client_secret":17}"#,
            r#"{"client_id":"a","redirect_uris":"http://x"}"#,
            "<html>Created</html>",
            "",
        ] {
            assert_eq!(parse(201, body), Err(RegistrationError::NotJson), "{body}");
        }
    }

    #[test]
    fn a_wrong_type_is_not_quoted_back() {
        let e = parse(201, r#"{"client_id":"a","client_secret":123456789}"#).unwrap_err();
        assert!(!e.to_string().contains("123456789"));
    }

    #[test]
    fn errors_say_what_the_server_said_sanitized() {
        let e = parse(
            400,
            r#"{"error":"invalid_redirect_uri","error_description":"not a loopback\u001b[2J http redirect URI"}"#,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "client registration was refused (HTTP 400): not a loopback[2J http redirect URI; fix: the redirect URI"
            ),
            "{text}"
        );
        let e = parse(400, r#"{"error":"invalid_client_metadata"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "client registration was refused (HTTP 400): invalid_client_metadata"
        );
        let e = parse(500, "Internal Server Error").unwrap_err();
        assert_eq!(
            e.to_string(),
            "client registration was refused (HTTP 500): "
        );
        let e = parse(302, SDK_CONFIDENTIAL).unwrap_err();
        assert!(matches!(e, RegistrationError::Refused { status: 302, .. }));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(status in 0u16..1000, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_response(status, &body, &requested());
        }

        /// Any object with a non-empty string `client_id` registers, and reads back
        /// from its file unchanged.
        #[test]
        fn any_object_with_a_client_id_round_trips(
            id in ".{1,20}",
            extra in proptest::collection::btree_map("[a-z_]{1,8}", ".{0,8}", 0..5)
        ) {
            let mut body = serde_json::Map::new();
            for (k, v) in extra {
                body.insert(k, serde_json::Value::String(v));
            }
            body.insert("client_id".into(), id.clone().into());
            let c = parse_response(201, &serde_json::to_vec(&body).unwrap(), &requested());
            match c {
                Ok(c) => {
                    proptest::prop_assert_eq!(&c.client_id, &id);
                    let again: ClientInfo = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
                    proptest::prop_assert_eq!(again, c);
                }
                // A generated key may be a known field given a string where a list belongs.
                Err(e) => proptest::prop_assert_eq!(e, RegistrationError::NotJson),
            }
        }
    }
}
