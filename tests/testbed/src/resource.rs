//! The protected resource half of OAuth: the bearer-token check in front of the MCP
//! endpoints and the protected resource metadata (RFC 9728) that tells a client where to
//! get a token.
//!
//! A request to `/mcp` (Streamable HTTP) or to `/sse` or `/messages` (legacy HTTP+SSE) gets,
//! before anything else about it is checked:
//!
//! - `401` with `WWW-Authenticate: Bearer resource_metadata="…"` (and `scope="…"` with
//!   [`AuthConfig::challenge_scope`]) when it carries no `Authorization: Bearer` token; with
//!   `error="invalid_token"` added when its token is unknown, revoked or expired (RFC 6750
//!   §3.1);
//! - `403` with `error="insufficient_scope", scope="…"` when it is a `tools/call` and the
//!   token lacks a scope of [`AuthConfig::required_scope_for_tools_call`] (MCP §Scope
//!   Challenge Handling).
//!
//! The legacy endpoints are one resource, `<origin>/sse`, with metadata of its own at the
//! path-aware URL; the Streamable one is `<origin>/mcp`. Open streams are not cut when a
//! token is revoked: only new requests are checked.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::{has_scopes, AuthConfig, PrmUrl};
use crate::http::with_status;
use crate::sse::Body;
use crate::state::{lock, Shared};
use crate::{Config, Transport};

/// The RFC 9728 well-known prefix.
pub(crate) const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The path of the resource a request path belongs to: the legacy endpoints are one
/// resource named after their stream, everything else is `/mcp`.
fn resource_path_of(request_path: &str) -> &'static str {
    match request_path {
        "/sse" | "/messages" => "/sse",
        _ => "/mcp",
    }
}

/// The resource that metadata found at a URL naming no resource path describes: the
/// legacy one on a legacy-only server, the Streamable one otherwise.
fn default_resource_path(config: &Config) -> &'static str {
    if config.transport == Transport::Legacy {
        "/sse"
    } else {
        "/mcp"
    }
}

/// A custom metadata path with exactly one leading `/`.
fn custom_path(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// The URL the challenges name in `resource_metadata`: the first of
/// [`AuthConfig::prm_urls`]; `None` when there is none or the challenge must not say.
fn metadata_url(origin: &str, auth: &AuthConfig, resource_path: &str) -> Option<String> {
    if !auth.challenge_resource_metadata {
        return None;
    }
    Some(match auth.prm_urls.first()? {
        PrmUrl::PathAware => format!("{origin}{PRM_WELL_KNOWN}{resource_path}"),
        PrmUrl::Root => format!("{origin}{PRM_WELL_KNOWN}"),
        // An absolute URL is named as it is (a server pointing somewhere else).
        PrmUrl::Custom(url) if url.contains("://") => url.clone(),
        PrmUrl::Custom(path) => format!("{origin}{}", custom_path(path)),
    })
}

/// The `resource_metadata` URL the `/mcp` challenges carry, if any.
pub(crate) fn mcp_metadata_url(origin: &str, auth: &AuthConfig) -> Option<String> {
    metadata_url(origin, auth, "/mcp")
}

/// An RFC 6750 `Bearer` challenge with the given auth-params, values quoted.
fn challenge(params: &[(&str, String)]) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", value.replace(['\\', '"'], "")))
        .collect();
    if params.is_empty() {
        "Bearer".to_owned()
    } else {
        format!("Bearer {}", params.join(", "))
    }
}

/// The bearer token of an `Authorization` header; `None` without one or with another
/// scheme.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Whether a POST body is, or (a batch) contains, a `tools/call` request.
fn calls_a_tool(body: &[u8]) -> bool {
    let is_call = |m: &Value| m.get("method").and_then(Value::as_str) == Some("tools/call");
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(batch)) => batch.iter().any(is_call),
        Ok(single) => is_call(&single),
        Err(_) => false,
    }
}

/// The refusal of a request to a protected endpoint, or `None` to let it through.
pub(crate) fn guard(
    shared: &Shared,
    auth: &AuthConfig,
    parts: &Parts,
    body: &[u8],
) -> Option<Response<Body>> {
    let resource_path = resource_path_of(parts.uri.path());
    let resource_metadata = metadata_url(&shared.origin, auth, resource_path);
    let refuse = |status: StatusCode, error: Option<&str>, scope: Option<&str>, why: &str| {
        let mut params = Vec::new();
        if let Some(error) = error {
            params.push(("error", error.to_owned()));
            params.push(("error_description", why.to_owned()));
        }
        if let Some(scope) = scope {
            params.push(("scope", scope.to_owned()));
        }
        if let Some(url) = &resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        let body = json!({
            "error": error.unwrap_or("invalid_request"),
            "error_description": why,
        });
        let mut response = oauth_json(status, &body);
        if let Ok(value) = HeaderValue::from_str(&challenge(&params)) {
            response.headers_mut().insert("www-authenticate", value);
        }
        Some(response)
    };
    let challenge_scope = auth.challenge_scope.as_deref();
    let Some(token) = bearer(&parts.headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            None,
            challenge_scope,
            "authorization required: send Authorization: Bearer <token>",
        );
    };
    let lookup = |state: &crate::auth::AuthState| match state.access.get(&token) {
        None => None,
        Some(access) if access.expires_at <= std::time::Instant::now() => Some(Err(())),
        Some(access) => Some(Ok(access.scope.clone())),
    };
    let granted = lookup(&lock(&shared.auth)).or_else(|| {
        let trusted = lock(&shared.trusted).clone();
        trusted.iter().find_map(|other| lookup(&lock(&other.auth)))
    });
    let granted = match granted {
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                challenge_scope,
                "the access token is unknown or revoked",
            )
        }
        Some(Err(())) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                challenge_scope,
                "the access token expired",
            )
        }
        Some(Ok(granted)) => granted,
    };
    let needed = auth.required_scope_for_tools_call.as_deref()?;
    if parts.method == Method::POST && calls_a_tool(body) && !has_scopes(granted.as_deref(), needed)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            Some(needed),
            "tools/call needs more scopes than the token has",
        );
    }
    None
}

/// The protected resource metadata document, when `path` is one of the URLs
/// [`AuthConfig::prm_urls`] serves it at; `None` otherwise.
pub(crate) fn metadata(
    shared: &Shared,
    config: &Config,
    auth: &AuthConfig,
    parts: &Parts,
) -> Option<Response<Body>> {
    let path = parts.uri.path();
    let streamable = matches!(config.transport, Transport::Streamable | Transport::Both);
    let legacy = matches!(config.transport, Transport::Legacy | Transport::Both);
    let resource_path = auth.prm_urls.iter().find_map(|url| match url {
        PrmUrl::PathAware => match path.strip_prefix(PRM_WELL_KNOWN)? {
            "/mcp" if streamable => Some("/mcp"),
            "/sse" if legacy => Some("/sse"),
            _ => None,
        },
        PrmUrl::Root => (path == PRM_WELL_KNOWN).then(|| default_resource_path(config)),
        PrmUrl::Custom(custom) => {
            (path == custom_path(custom)).then(|| default_resource_path(config))
        }
    })?;
    if parts.method != Method::GET {
        let mut response = with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            Full::new(Bytes::new()).boxed_unsync(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return Some(response);
    }
    let resource = auth
        .prm_resource_override
        .clone()
        .unwrap_or_else(|| format!("{}{resource_path}", shared.origin));
    let mut document = json!({
        "resource": resource,
        "authorization_servers": [auth
            .authorization_server
            .clone()
            .unwrap_or_else(|| auth.issuer(&shared.origin))],
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-testbed",
    });
    if let Some(scopes) = &auth.scopes_supported {
        document["scopes_supported"] = json!(scopes);
    }
    Some(oauth_json(StatusCode::OK, &document))
}

/// A JSON answer of the OAuth endpoints: never cached (RFC 6749 §5.1).
pub(crate) fn oauth_json(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = with_status(
        status,
        Full::new(Bytes::from(body.to_string())).boxed_unsync(),
    );
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_quote_their_params() {
        assert_eq!(challenge(&[]), "Bearer");
        assert_eq!(
            challenge(&[("scope", "a b".to_owned()), ("error", "x\"y".to_owned())]),
            "Bearer scope=\"a b\", error=\"xy\""
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn tool_calls_are_found_in_batches() {
        assert!(calls_a_tool(br#"{"method":"tools/call","id":1}"#));
        assert!(calls_a_tool(
            br#"[{"method":"ping","id":1},{"method":"tools/call","id":2}]"#
        ));
        assert!(!calls_a_tool(br#"{"method":"tools/list","id":1}"#));
        assert!(!calls_a_tool(b"junk"));
    }
}
