//! The authorization server half of OAuth, on the testbed's own origin: discovery metadata
//! (RFC 8414 and OpenID Connect Discovery), dynamic client registration (RFC 7591),
//! `/authorize` with mandatory PKCE S256 (RFC 7636) that approves at once, `/token`
//! (OAuth 2.1 §3.2, with refresh token rotation) and `/revoke` (RFC 7009).
//!
//! Its rules are the ones a strict server applies, so a client that bends them fails a
//! test here rather than against a real server:
//!
//! - a redirect URI must be loopback `http` (`127.0.0.1`, `[::1]` or `localhost`) and, for
//!   a registered client, one of its registered URIs exactly;
//! - the token request must be form-encoded and authenticate the client the way it
//!   registered (`client_secret_basic`, `client_secret_post` or `none`), with one method
//!   only (RFC 6749 §2.3);
//! - a code is single-use, short-lived, bound to its client, redirect URI and PKCE
//!   challenge; a second redemption revokes what the first one got (RFC 6749 §4.1.2);
//! - a refresh token is rotated on every use: the old one is dead afterwards.
//!
//! Errors are RFC 6749 §5.2 JSON (`invalid_client` with `401`); `/authorize` reports errors
//! through the redirect, except when the client or redirect URI is unknown (then `400`).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use url::{form_urlencoded, Host, Url};

use crate::auth::{
    has_scopes, AsMetadataUrl, AuthConfig, AuthState, AuthorizeBehaviour, AuthorizeRequest, Client,
    Code, DeviceGrant, DevicePoll, Issue, Registration, TokenRequest, CODE_LIFETIME,
};
use crate::http::{media_type, with_status};
use crate::resource::{self, oauth_json};
use crate::sse::Body;
use crate::state::{lock, Shared};
use crate::Config;

/// The grant types the token endpoint knows.
const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// The authorization server's paths, relative to the origin (not to the issuer path).
const AUTHORIZE_PATH: &str = "/authorize";
const TOKEN_PATH: &str = "/token";
const REGISTER_PATH: &str = "/register";
const REVOKE_PATH: &str = "/revoke";
const DEVICE_AUTHORIZATION_PATH: &str = "/device_authorization";
const DEVICE_PATH: &str = "/device";
const IDP_TOKEN_PATH: &str = "/idp/token";
/// RFC 7523 §2.1.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8628 §3.4.
const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Answers the OAuth paths: resource metadata, authorization server metadata and
/// endpoints. `None` when `parts` names none of them, so routing goes on.
pub(crate) fn route(
    shared: &Shared,
    config: &Config,
    auth: &AuthConfig,
    parts: &Parts,
    body: &[u8],
) -> Option<Response<Body>> {
    if let Some(response) = resource::metadata(shared, config, auth, parts) {
        return Some(response);
    }
    let path = parts.uri.path();
    if serves_metadata_at(auth, path) {
        if let Some(status) = auth
            .metadata_status
            .and_then(|s| StatusCode::from_u16(s).ok())
        {
            return Some(oauth_json(
                status,
                &json!({"error": "temporarily_unavailable"}),
            ));
        }
        return Some(if parts.method == Method::GET {
            oauth_json(StatusCode::OK, &metadata_document(&shared.origin, auth))
        } else {
            method_not_allowed("GET")
        });
    }
    /// An endpoint's handler.
    type Handler = fn(&Shared, &AuthConfig, &Parts, &[u8]) -> Response<Body>;
    let (method, name, handler): (Method, &'static str, Handler) = match path {
        REGISTER_PATH if auth.dcr => (Method::POST, "POST", register),
        AUTHORIZE_PATH => (Method::GET, "GET", authorize),
        TOKEN_PATH => (Method::POST, "POST", token),
        REVOKE_PATH => (Method::POST, "POST", revoke),
        DEVICE_AUTHORIZATION_PATH if auth.device_grant => {
            (Method::POST, "POST", device_authorization)
        }
        DEVICE_PATH if auth.device_grant => (Method::GET, "GET", device_page),
        IDP_TOKEN_PATH if auth.idp_id_token.is_some() => (Method::POST, "POST", idp_token),
        _ => return None,
    };
    Some(if parts.method == method {
        handler(shared, auth, parts, body)
    } else {
        method_not_allowed(name)
    })
}

/// Whether `path` is one of the discovery URLs [`AuthConfig::as_metadata_urls`] lists.
fn serves_metadata_at(auth: &AuthConfig, path: &str) -> bool {
    let issuer_path = auth.normalized_issuer_path();
    auth.as_metadata_urls.iter().any(|url| {
        let served = match url {
            AsMetadataUrl::OAuth => format!("/.well-known/oauth-authorization-server{issuer_path}"),
            AsMetadataUrl::OpenIdInserted => {
                format!("/.well-known/openid-configuration{issuer_path}")
            }
            AsMetadataUrl::OpenIdAppended => {
                format!("{issuer_path}/.well-known/openid-configuration")
            }
        };
        served == path
    })
}

/// The authorization server metadata (RFC 8414 §2), the same at every discovery URL.
pub(crate) fn metadata_document(origin: &str, auth: &AuthConfig) -> Value {
    let issuer = auth
        .metadata_issuer_override
        .clone()
        .unwrap_or_else(|| auth.issuer(origin));
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{origin}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{origin}{TOKEN_PATH}"),
        "revocation_endpoint": format!("{origin}{REVOKE_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": auth.token_endpoint_auth_methods,
        "revocation_endpoint_auth_methods_supported": auth.token_endpoint_auth_methods,
    });
    if auth.dcr {
        document["registration_endpoint"] = json!(format!("{origin}{REGISTER_PATH}"));
    }
    if let Some(methods) = &auth.code_challenge_methods_supported {
        document["code_challenge_methods_supported"] = json!(methods);
    }
    if let Some(scopes) = &auth.scopes_supported {
        document["scopes_supported"] = json!(scopes);
    }
    if auth.send_iss {
        document["authorization_response_iss_parameter_supported"] = json!(true);
    }
    if auth.cimd {
        document["client_id_metadata_document_supported"] = json!(true);
    }
    let mut grants: Vec<&str> = GRANT_TYPES.to_vec();
    if auth.device_grant {
        document["device_authorization_endpoint"] =
            json!(format!("{origin}{DEVICE_AUTHORIZATION_PATH}"));
        grants.push(DEVICE_GRANT_TYPE);
    }
    if auth.idp_id_token.is_some() {
        grants.push(JWT_BEARER);
    }
    document["grant_types_supported"] = json!(grants);
    for (field, value) in &auth.metadata_overrides {
        document[field] = value.clone();
    }
    document
}

/// `405` naming the one method the path takes.
fn method_not_allowed(allowed: &'static str) -> Response<Body> {
    let mut response = with_status(StatusCode::METHOD_NOT_ALLOWED, Empty::new().boxed_unsync());
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

/// An RFC 6749 §5.2 error: `error` and `error_description` as JSON.
#[derive(Debug)]
struct OAuthError {
    /// The status: `400`, or `401` for `invalid_client`.
    status: StatusCode,
    /// The error code.
    code: &'static str,
    /// Why, for a human.
    description: String,
    /// Whether to add `WWW-Authenticate: Basic`, which RFC 6749 §5.2 requires when the
    /// client tried HTTP Basic and failed.
    basic_challenge: bool,
}

impl OAuthError {
    /// A `400` error.
    fn bad(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }

    /// A `401 invalid_client`.
    fn invalid_client(description: impl Into<String>, basic_challenge: bool) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
            description: description.into(),
            basic_challenge,
        }
    }

    /// The JSON answer, with [`AuthConfig::error_description_override`] if set.
    fn response(&self, auth: &AuthConfig) -> Response<Body> {
        let description = auth
            .error_description_override
            .as_deref()
            .unwrap_or(&self.description);
        let body = json!({"error": self.code, "error_description": description});
        let mut response = oauth_json(self.status, &body);
        if self.basic_challenge {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"mcp-testbed\""),
            );
        }
        response
    }
}

/// Decoded `application/x-www-form-urlencoded` pairs (a query or a form body).
fn form_pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded).into_owned().collect()
}

/// The first value of `name` among decoded pairs.
fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `uri` is a redirect URI the server sends codes to: `http` on a loopback host
/// (RFC 8252 §7.3), without a fragment.
fn is_loopback_redirect(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    url.scheme() == "http" && loopback && url.fragment().is_none()
}

/// Whether `client_id` has the shape of a Client ID Metadata Document URL: `https` with a
/// path (draft-ietf-oauth-client-id-metadata-document §3).
fn is_metadata_document_id(client_id: &str) -> bool {
    Url::parse(client_id)
        .is_ok_and(|url| url.scheme() == "https" && url.path() != "/" && !url.path().is_empty())
}

/// `BASE64URL(SHA256(verifier))`, the S256 code challenge (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `value` is 43–128 characters of `[A-Za-z0-9-._~]`, the shape of a PKCE code
/// verifier (RFC 7636 §4.1) and of an S256 challenge.
fn is_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `POST /register` (RFC 7591 §3): registers a client and answers `201` with its id, a
/// secret when its authentication method needs one, and its metadata.
fn register(shared: &Shared, auth: &AuthConfig, _parts: &Parts, body: &[u8]) -> Response<Body> {
    let request = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let mut record = Registration {
        request: request.clone(),
        client_id: None,
        client_secret: None,
        token_endpoint_auth_method: None,
        redirect_uris: Vec::new(),
        error: None,
    };
    let outcome = registered_metadata(shared, auth, &request, &mut record);
    let mut state = lock(&shared.auth);
    let response = match outcome {
        Ok((metadata, client)) => {
            if let Some(id) = &record.client_id {
                state.clients.insert(id.clone(), client);
            }
            oauth_json(StatusCode::CREATED, &Value::Object(metadata))
        }
        Err(error) => {
            record.error = Some(error.code.to_owned());
            error.response(auth)
        }
    };
    state.registrations.push(record);
    response
}

/// Checks client metadata and builds the registration: the metadata to answer and the
/// client to remember. Fills in `record` as it goes.
fn registered_metadata(
    shared: &Shared,
    auth: &AuthConfig,
    request: &Value,
    record: &mut Registration,
) -> Result<(Map<String, Value>, Client), OAuthError> {
    let Some(mut metadata) = request.as_object().cloned() else {
        return Err(OAuthError::bad(
            "invalid_client_metadata",
            "the body must be a JSON object of client metadata",
        ));
    };
    let grant_types: Vec<String> = metadata
        .get("grant_types")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    let device = grant_types.iter().any(|g| g == DEVICE_GRANT_TYPE);
    let redirecting = grant_types.iter().any(|g| g == "authorization_code");
    let uris = metadata.get("redirect_uris").and_then(Value::as_array);
    let uris: Option<Vec<String>> =
        uris.and_then(|uris| uris.iter().map(|u| u.as_str().map(str::to_owned)).collect());
    // RFC 7591 §2: redirect URIs are for redirect-based grants; a device client has none.
    let uris = match uris {
        None if device && !redirecting => Some(Vec::new()),
        Some(u) if u.is_empty() && device && !redirecting => Some(u),
        other => other.filter(|uris| !uris.is_empty()),
    };
    let uris = uris.ok_or_else(|| {
        OAuthError::bad(
            "invalid_redirect_uri",
            "redirect_uris must be a non-empty array of strings",
        )
    })?;
    if let Some(bad) = uris.iter().find(|uri| !is_loopback_redirect(uri)) {
        return Err(OAuthError::bad(
            "invalid_redirect_uri",
            format!("not a loopback http redirect URI: {bad}"),
        ));
    }
    record.redirect_uris = uris.clone();
    // RFC 7591 §2: the default is client_secret_basic; a method the server does not take
    // is replaced by the one it prefers, which the answer tells the client.
    let requested = metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .unwrap_or("client_secret_basic");
    let supported = &auth.token_endpoint_auth_methods;
    let method = if supported.iter().any(|m| m == requested) {
        requested.to_owned()
    } else {
        supported.first().cloned().ok_or_else(|| {
            OAuthError::bad(
                "invalid_client_metadata",
                "the server supports no token endpoint authentication method",
            )
        })?
    };
    let mut state = lock(&shared.auth);
    let client_id = state.fresh("client");
    let secret = (method != "none").then(|| state.fresh("secret"));
    drop(state);
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metadata.insert("client_id".to_owned(), json!(client_id));
    metadata.insert("client_id_issued_at".to_owned(), json!(issued_at));
    metadata.insert("token_endpoint_auth_method".to_owned(), json!(method));
    metadata.insert("redirect_uris".to_owned(), json!(uris));
    if let Some(secret) = &secret {
        metadata.insert("client_secret".to_owned(), json!(secret));
        metadata.insert("client_secret_expires_at".to_owned(), json!(0));
    }
    record.client_id = Some(client_id);
    record.client_secret = secret.clone();
    record.token_endpoint_auth_method = Some(method.clone());
    let client = Client {
        secret,
        method,
        redirect_uris: uris,
        device,
    };
    Ok((metadata, client))
}

/// Why `/authorize` will not redirect at all: the client or its redirect URI is unknown.
struct NoRedirect {
    /// The error code, for the record.
    code: &'static str,
    /// Why, for the page.
    description: String,
}

/// `GET /authorize`: checks the request, then redirects to the client's redirect URI with
/// a code (or an error), approving without asking anybody.
fn authorize(shared: &Shared, auth: &AuthConfig, parts: &Parts, _body: &[u8]) -> Response<Body> {
    let params = form_pairs(parts.uri.query().unwrap_or_default().as_bytes());
    let mut record = AuthorizeRequest {
        params: params.clone(),
        redirected_to: None,
        error: None,
    };
    let response = match authorize_redirect(shared, auth, &params) {
        Ok((location, error)) => {
            record.error = error;
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    record.redirected_to = Some(location);
                    let mut response = with_status(StatusCode::FOUND, Empty::new().boxed_unsync());
                    response.headers_mut().insert(LOCATION, value);
                    response
                }
                Err(_) => {
                    record.error = Some("invalid_request".to_owned());
                    oauth_json(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": "invalid_request",
                                "error_description": "the redirect URI cannot be sent"}),
                    )
                }
            }
        }
        Err(refusal) => {
            record.error = Some(refusal.code.to_owned());
            oauth_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": refusal.code, "error_description": refusal.description}),
            )
        }
    };
    lock(&shared.auth).authorizations.push(record);
    response
}

/// The redirect an authorization request gets, and the error it carries (`None` with a
/// code); `Err` when there is nowhere safe to redirect to.
fn authorize_redirect(
    shared: &Shared,
    auth: &AuthConfig,
    params: &[(String, String)],
) -> Result<(String, Option<String>), NoRedirect> {
    let no_redirect = |code, description: &str| NoRedirect {
        code,
        description: description.to_owned(),
    };
    let client_id = param(params, "client_id")
        .ok_or_else(|| no_redirect("invalid_request", "client_id is missing"))?;
    let sent_redirect = param(params, "redirect_uri");
    let redirect_uri = {
        let state = lock(&shared.auth);
        let any_loopback = |uri: Option<&str>| {
            uri.filter(|uri| is_loopback_redirect(uri))
                .map(str::to_owned)
                .ok_or_else(|| {
                    no_redirect(
                        "invalid_request",
                        "redirect_uri must be a loopback http URI",
                    )
                })
        };
        if let Some(client) = state.clients.get(client_id) {
            match sent_redirect {
                Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
                Some(_) => {
                    return Err(no_redirect(
                        "invalid_request",
                        "redirect_uri is not one the client registered",
                    ))
                }
                // OAuth 2.1 §4.1.1: optional when the client registered exactly one.
                None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
                None => return Err(no_redirect("invalid_request", "redirect_uri is missing")),
            }
        } else if auth
            .preregistered
            .as_ref()
            .is_some_and(|(id, _)| id == client_id)
            || (auth.cimd && is_metadata_document_id(client_id))
        {
            any_loopback(sent_redirect)?
        } else {
            return Err(no_redirect("invalid_client", "unknown client_id"));
        }
    };
    let state_param = param(params, "state");
    let issuer = auth.issuer(&shared.origin);
    let redirect = |pairs: &[(&str, &str)]| -> Result<String, NoRedirect> {
        let mut url = Url::parse(&redirect_uri)
            .map_err(|_| no_redirect("invalid_request", "redirect_uri is no URL"))?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
            let state_sent = match auth.authorize_behaviour {
                AuthorizeBehaviour::WrongState => Some("not-the-state-you-sent"),
                _ => state_param,
            };
            if let Some(state) = state_sent {
                query.append_pair("state", state);
            }
            let iss_sent = match auth.authorize_behaviour {
                AuthorizeBehaviour::WrongIss => Some("https://wrong-issuer.example"),
                AuthorizeBehaviour::OmitIss => None,
                AuthorizeBehaviour::UnadvertisedIss => Some(issuer.as_str()),
                _ => auth.send_iss.then_some(issuer.as_str()),
            };
            if let Some(iss) = iss_sent {
                query.append_pair("iss", iss);
            }
        }
        Ok(url.to_string())
    };
    let fail = |code: &'static str, description: &str| {
        let description = auth
            .error_description_override
            .as_deref()
            .unwrap_or(description);
        redirect(&[("error", code), ("error_description", description)])
            .map(|location| (location, Some(code.to_owned())))
    };
    if param(params, "response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    let challenge = param(params, "code_challenge").unwrap_or_default();
    if !is_pkce_string(challenge) {
        return fail("invalid_request", "code_challenge is missing or malformed");
    }
    if param(params, "code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if auth.authorize_behaviour == AuthorizeBehaviour::Deny {
        return fail("access_denied", "the testbed was told to deny");
    }
    if let AuthorizeBehaviour::Error(code) = &auth.authorize_behaviour {
        let description = auth
            .error_description_override
            .as_deref()
            .unwrap_or("the testbed was told to refuse");
        return redirect(&[("error", code), ("error_description", description)])
            .map(|location| (location, Some(code.clone())));
    }
    let mut state = lock(&shared.auth);
    let code = state.fresh("code");
    state.codes.insert(
        code.clone(),
        Code {
            client_id: client_id.to_owned(),
            redirect_uri: sent_redirect.map(str::to_owned),
            challenge: challenge.to_owned(),
            scope: auth.grant(param(params, "scope")),
            resource: param(params, "resource").map(str::to_owned),
            issued_at: Instant::now(),
            redeemed: None,
        },
    );
    drop(state);
    redirect(&[("code", &code)]).map(|location| (location, None))
}

/// How a token or revocation request authenticated its client.
struct Authenticated {
    /// The client.
    client_id: String,
    /// Whether it proved a secret (a confidential client).
    confidential: bool,
}

/// What a request claimed about its client, before checking: the id, the method and the
/// secret.
struct Claim {
    /// The client id from HTTP Basic or the form.
    client_id: Option<String>,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    method: Option<&'static str>,
    /// The secret presented.
    secret: Option<String>,
    /// A `private_key_jwt` assertion.
    assertion: Option<String>,
}

/// Reads the client's claim: HTTP Basic (`client_id:client_secret`, each form-urlencoded,
/// RFC 6749 §2.3.1), else `client_secret` in the form, else `client_id` alone.
fn claim(headers: &HeaderMap, form: &[(String, String)]) -> Result<Claim, OAuthError> {
    let form_id = param(form, "client_id").map(str::to_owned);
    if let Some(kind) = param(form, "client_assertion_type") {
        if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
            return Err(OAuthError::invalid_client(
                "unknown client_assertion_type",
                false,
            ));
        }
        return Ok(Claim {
            client_id: form_id,
            method: Some("private_key_jwt"),
            secret: None,
            assertion: param(form, "client_assertion").map(str::to_owned),
        });
    }
    let form_secret = param(form, "client_secret").map(str::to_owned);
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim().to_owned());
    let Some(credentials) = basic else {
        let method = match (&form_id, &form_secret) {
            (Some(_), Some(_)) => Some("client_secret_post"),
            (Some(_), None) => Some("none"),
            (None, _) => None,
        };
        return Ok(Claim {
            client_id: form_id,
            method,
            secret: form_secret,
            assertion: None,
        });
    };
    let malformed = || OAuthError::invalid_client("malformed HTTP Basic credentials", true);
    let decoded = STANDARD.decode(credentials).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let (id, secret) = (form_decode(id), form_decode(secret));
    if form_secret.is_some() {
        return Err(OAuthError::bad(
            "invalid_request",
            "the client used more than one authentication method",
        ));
    }
    if form_id.as_ref().is_some_and(|form_id| *form_id != id) {
        return Err(OAuthError::bad(
            "invalid_request",
            "client_id in the form differs from the HTTP Basic one",
        ));
    }
    Ok(Claim {
        client_id: Some(id),
        method: Some("client_secret_basic"),
        secret: Some(secret),
        assertion: None,
    })
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` and `%XX`).
fn form_decode(component: &str) -> String {
    let input = component.as_bytes();
    let mut bytes = Vec::with_capacity(input.len());
    let mut at = 0;
    while let Some(&byte) = input.get(at) {
        let escaped = input
            .get(at + 1..at + 3)
            .filter(|_| byte == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(value)) => {
                bytes.push(value);
                at += 3;
            }
            (b'+', None) => {
                bytes.push(b' ');
                at += 1;
            }
            (other, None) => {
                bytes.push(other);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Checks a claim against what the server knows of the client.
fn authenticate(
    state: &AuthState,
    auth: &AuthConfig,
    issuer: &str,
    claim: &Claim,
) -> Result<Authenticated, OAuthError> {
    let basic = claim.method == Some("client_secret_basic");
    let refuse = |why: &str| Err(OAuthError::invalid_client(why, basic));
    let (Some(client_id), Some(method)) = (&claim.client_id, claim.method) else {
        return refuse("no client authentication");
    };
    if method == "private_key_jwt" {
        let Some((id, public)) = auth.jwt_client.as_ref().filter(|(id, _)| id == client_id) else {
            return refuse("unknown client");
        };
        return match verify_assertion(claim.assertion.as_deref().unwrap_or(""), id, issuer, public)
        {
            Ok(()) => Ok(Authenticated {
                client_id: client_id.clone(),
                confidential: true,
            }),
            Err(why) => refuse(&why),
        };
    }
    if !auth.token_endpoint_auth_methods.iter().any(|m| m == method) {
        return refuse(&format!("the server does not accept {method}"));
    }
    let (expected_secret, confidential) = if let Some(client) = state.clients.get(client_id) {
        if client.method != method {
            return refuse(&format!(
                "the client registered {} but used {method}",
                client.method
            ));
        }
        (client.secret.clone(), client.secret.is_some())
    } else if let Some((_, secret)) = auth
        .preregistered
        .as_ref()
        .filter(|(id, _)| id == client_id)
    {
        if method == "none" {
            return refuse("a confidential client must authenticate with its secret");
        }
        (Some(secret.clone()), true)
    } else if auth.cimd && is_metadata_document_id(client_id) {
        if method != "none" {
            return refuse("a metadata document client is public: use none");
        }
        (None, false)
    } else {
        return refuse("unknown client");
    };
    if claim.secret != expected_secret {
        return refuse("wrong client secret");
    }
    Ok(Authenticated {
        client_id: client_id.clone(),
        confidential,
    })
}

/// Checks a `private_key_jwt` assertion: ES256 signature by `public`, `iss` and `sub`
/// the client, `aud` the issuer (with or without a trailing slash), not expired.
fn verify_assertion(jwt: &str, client_id: &str, issuer: &str, public: &[u8]) -> Result<(), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("the assertion is not a JWT".into());
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "bad base64url".to_owned())
    };
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| "bad header")?;
    if header["alg"] != "ES256" {
        return Err("the assertion must be signed with ES256".into());
    }
    let input = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public)
        .verify(input.as_bytes(), &decode(signature)?)
        .map_err(|_| "the assertion's signature does not verify".to_owned())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| "bad claims")?;
    if claims["iss"] != client_id || claims["sub"] != client_id {
        return Err("iss and sub must be the client_id".into());
    }
    let aud = claims["aud"].as_str().unwrap_or("");
    if aud.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!("aud must be the issuer {issuer}"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
        return Err("the assertion has expired".into());
    }
    Ok(())
}

/// Reads a form body, refusing any other content type (OAuth 2.1 §3.2.2).
fn form_body(parts: &Parts, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    if media_type(parts.headers.get(CONTENT_TYPE)).as_deref()
        != Some("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::bad(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Ok(form_pairs(body))
}

/// `POST /token`: the `authorization_code`, `refresh_token` and `client_credentials`
/// grants, and the device code and JWT bearer (ID-JAG) grants when configured.
fn token(shared: &Shared, auth: &AuthConfig, parts: &Parts, body: &[u8]) -> Response<Body> {
    let parsed = form_body(parts, body);
    let form = parsed.as_ref().map(Vec::clone).unwrap_or_default();
    let claimed = claim(&parts.headers, &form);
    let mut record = TokenRequest {
        params: form.clone(),
        grant_type: param(&form, "grant_type").map(str::to_owned),
        client_id: claimed.as_ref().ok().and_then(|c| c.client_id.clone()),
        client_auth: claimed
            .as_ref()
            .ok()
            .and_then(|c| c.method)
            .map(str::to_owned),
        resource: param(&form, "resource").map(str::to_owned),
        scope: param(&form, "scope").map(str::to_owned),
        error: None,
    };
    let issuer = auth.issuer(&shared.origin);
    let mut state = lock(&shared.auth);
    let outcome = parsed
        .and(claimed)
        .and_then(|claim| authenticate(&state, auth, &issuer, &claim))
        .and_then(|client| grant(&mut state, auth, &issuer, &client, &form));
    let response = match outcome {
        Ok(answer) => oauth_json(StatusCode::OK, &answer),
        Err(error) => {
            record.error = Some(error.code.to_owned());
            error.response(auth)
        }
    };
    state.token_requests.push(record);
    response
}

/// Runs the grant a token request asks for; returns the token response.
fn grant(
    state: &mut AuthState,
    auth: &AuthConfig,
    issuer: &str,
    client: &Authenticated,
    form: &[(String, String)],
) -> Result<Value, OAuthError> {
    let resource = param(form, "resource").map(str::to_owned);
    let issue = match param(form, "grant_type") {
        Some("authorization_code") => redeem_code(state, auth, client, form, resource)?,
        Some("refresh_token") => {
            let presented = param(form, "refresh_token")
                .ok_or_else(|| OAuthError::bad("invalid_request", "refresh_token is missing"))?;
            let old = match state.refresh.get(presented) {
                Some(old) if old.client_id == client.client_id => state.refresh.remove(presented),
                _ => None,
            };
            let old = old.ok_or_else(|| {
                OAuthError::bad(
                    "invalid_grant",
                    "the refresh token is unknown, revoked or already used",
                )
            })?;
            let scope = match param(form, "scope") {
                Some(narrower) if !has_scopes(old.scope.as_deref(), narrower) => {
                    // The grant stays usable: put the token back.
                    state.refresh.insert(presented.to_owned(), old);
                    return Err(OAuthError::bad(
                        "invalid_scope",
                        "a refresh cannot widen the scope",
                    ));
                }
                Some(narrower) => auth.grant(Some(narrower)),
                None => old.scope.clone(),
            };
            Issue {
                client_id: &client.client_id,
                scope,
                resource: resource.or(old.resource),
                grant_type: "refresh_token",
                with_refresh: true,
                grant: Some(old.grant),
            }
        }
        Some(DEVICE_GRANT_TYPE) if auth.device_grant => poll_device(state, auth, client, form)?,
        Some(JWT_BEARER) if auth.idp_id_token.is_some() => {
            let assertion = param(form, "assertion")
                .ok_or_else(|| OAuthError::bad("invalid_request", "assertion is missing"))?;
            let claims = state.id_jags.remove(assertion).ok_or_else(|| {
                OAuthError::bad(
                    "invalid_grant",
                    "not an ID-JAG of the identity provider, or used already",
                )
            })?;
            if claims["aud"] != json!(issuer) {
                return Err(OAuthError::bad(
                    "invalid_grant",
                    "the ID-JAG is for another authorization server",
                ));
            }
            if claims["client_id"] != json!(client.client_id) {
                return Err(OAuthError::bad(
                    "invalid_grant",
                    "the ID-JAG is for another client",
                ));
            }
            Issue {
                client_id: &client.client_id,
                scope: auth.grant(param(form, "scope")),
                resource: claims["resource"].as_str().map(str::to_owned),
                grant_type: JWT_BEARER,
                with_refresh: false,
                grant: None,
            }
        }
        Some("client_credentials") => {
            if !client.confidential {
                return Err(OAuthError::bad(
                    "unauthorized_client",
                    "client_credentials needs a confidential client",
                ));
            }
            Issue {
                client_id: &client.client_id,
                scope: auth.grant(param(form, "scope")),
                resource,
                grant_type: "client_credentials",
                with_refresh: false,
                grant: None,
            }
        }
        Some(other) => {
            return Err(OAuthError::bad(
                "unsupported_grant_type",
                format!("unknown grant_type {other}"),
            ))
        }
        None => return Err(OAuthError::bad("invalid_request", "grant_type is missing")),
    };
    let issued = state.issue(issue, auth.access_ttl_secs);
    let mut answer = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    });
    if let Some(refresh) = &issued.refresh_token {
        answer["refresh_token"] = json!(refresh);
    }
    if let Some(scope) = &issued.scope {
        answer["scope"] = json!(scope);
    }
    if auth.issue_id_tokens {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ttl = auth.id_token_ttl_secs;
        let claims = json!({"iss": "testbed", "sub": "testbed-user", "aud": issued.client_id,
            "iat": now, "exp": now + ttl, "n": issued.access_token.len() + state.issued.len()});
        let id_token = format!(
            "{}.{}.unsigned",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(claims.to_string().as_bytes())
        );
        state.alias(
            id_token.clone(),
            &issued.access_token,
            Duration::from_secs(ttl),
        );
        answer["id_token"] = json!(id_token);
    }
    Ok(answer)
}

/// `POST /device_authorization` (RFC 8628 §3.1–3.2): a device code and a user code for
/// an authenticated (or public) client registered for the grant.
fn device_authorization(
    shared: &Shared,
    auth: &AuthConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Body> {
    let parsed = form_body(parts, body);
    let form = parsed.as_ref().map(Vec::clone).unwrap_or_default();
    let mut state = lock(&shared.auth);
    let outcome = parsed
        .and(claim(&parts.headers, &form))
        .and_then(|claim| authenticate(&state, auth, &auth.issuer(&shared.origin), &claim))
        .and_then(|client| {
            let registered_for_device = state
                .clients
                .get(&client.client_id)
                .is_none_or(|c| c.device);
            if registered_for_device {
                Ok(client)
            } else {
                Err(OAuthError::bad(
                    "unauthorized_client",
                    "the client did not register for the device grant",
                ))
            }
        });
    match outcome {
        Ok(client) => {
            let device_code = state.fresh("dc");
            let serial = state.fresh("uc");
            let user_code = serial[serial.len() - 8..].to_uppercase();
            state.devices.insert(
                device_code.clone(),
                DeviceGrant {
                    client_id: client.client_id,
                    user_code: user_code.clone(),
                    scope: auth.grant(param(&form, "scope")),
                    resource: param(&form, "resource").map(str::to_owned),
                    approved: false,
                    expires_at: Instant::now() + Duration::from_secs(auth.device_expires_secs),
                    redeemed: false,
                },
            );
            let origin = &shared.origin;
            oauth_json(
                StatusCode::OK,
                &json!({
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": format!("{origin}{DEVICE_PATH}"),
                    "verification_uri_complete": format!("{origin}{DEVICE_PATH}?user_code={user_code}"),
                    "expires_in": auth.device_expires_secs,
                    "interval": auth.device_interval_secs,
                }),
            )
        }
        Err(error) => error.response(auth),
    }
}

/// `POST /idp/token`: the identity provider's RFC 8693 token exchange of the user's ID
/// token for an ID-JAG (typ `oauth-id-jag+jwt`) for the audience and resource asked for.
fn idp_token(shared: &Shared, auth: &AuthConfig, parts: &Parts, body: &[u8]) -> Response<Body> {
    let form = form_body(parts, body).unwrap_or_default();
    let mut record = TokenRequest {
        params: form.clone(),
        grant_type: param(&form, "grant_type").map(str::to_owned),
        client_id: param(&form, "client_id").map(str::to_owned),
        client_auth: None,
        resource: param(&form, "resource").map(str::to_owned),
        scope: param(&form, "scope").map(str::to_owned),
        error: None,
    };
    let check = || -> Result<(), OAuthError> {
        let want = |name: &str, value: &str| {
            if param(&form, name) == Some(value) {
                Ok(())
            } else {
                Err(OAuthError::bad(
                    "invalid_request",
                    format!("{name} must be {value}"),
                ))
            }
        };
        want(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )?;
        want(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:id-jag",
        )?;
        want(
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token",
        )?;
        if param(&form, "subject_token") != auth.idp_id_token.as_deref() {
            return Err(OAuthError::bad(
                "invalid_grant",
                "the ID token is not valid",
            ));
        }
        for name in ["audience", "resource"] {
            if param(&form, name).is_none() {
                return Err(OAuthError::bad(
                    "invalid_request",
                    format!("{name} is missing"),
                ));
            }
        }
        Ok(())
    };
    let mut state = lock(&shared.auth);
    let response = match check() {
        Ok(()) => {
            let client_id = auth
                .preregistered
                .as_ref()
                .map(|(id, _)| id.clone())
                .unwrap_or_default();
            let jti = state.fresh("jag");
            let claims = json!({
                "iss": format!("{}/idp", shared.origin), "sub": "enterprise-user",
                "aud": param(&form, "audience"), "resource": param(&form, "resource"),
                "client_id": client_id, "jti": jti,
            });
            let jag = format!(
                "{}.{}.unsigned",
                base64url(br#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#),
                base64url(claims.to_string().as_bytes())
            );
            state.id_jags.insert(jag.clone(), claims);
            oauth_json(
                StatusCode::OK,
                &json!({"access_token": jag, "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                        "token_type": "N_A", "expires_in": 300}),
            )
        }
        Err(error) => {
            record.error = Some(error.code.to_owned());
            error.response(auth)
        }
    };
    state.idp_requests.push(record);
    response
}

/// `GET /device?user_code=…`: the user approves the device authorization with that code.
fn device_page(shared: &Shared, _auth: &AuthConfig, parts: &Parts, _body: &[u8]) -> Response<Body> {
    let params = form_pairs(parts.uri.query().unwrap_or_default().as_bytes());
    let code = param(&params, "user_code").unwrap_or_default();
    let mut state = lock(&shared.auth);
    let found = state
        .devices
        .values_mut()
        .find(|d| !code.is_empty() && d.user_code == code);
    let (status, page) = match found {
        Some(d) => {
            d.approved = true;
            (StatusCode::OK, "approved")
        }
        None => (StatusCode::NOT_FOUND, "unknown code"),
    };
    crate::http::plain(status, page)
}

/// One poll with a device code (RFC 8628 §3.4–3.5): the script's errors first, then
/// `authorization_pending` until the user approved, then tokens once.
fn poll_device<'a>(
    state: &mut AuthState,
    auth: &AuthConfig,
    client: &'a Authenticated,
    form: &[(String, String)],
) -> Result<Issue<'a>, OAuthError> {
    let polls = state.device_polls.len();
    let record = |state: &mut AuthState, outcome: &str| {
        state.device_polls.push(DevicePoll {
            at: Instant::now(),
            outcome: outcome.to_owned(),
        })
    };
    if let Some(error) = auth.device_poll_script.get(polls) {
        let code = match error.as_str() {
            "slow_down" => "slow_down",
            "expired_token" => "expired_token",
            "access_denied" => "access_denied",
            "authorization_pending" => "authorization_pending",
            _ => "invalid_grant",
        };
        record(state, code);
        return Err(OAuthError::bad(code, "the testbed was told to answer this"));
    }
    let code = param(form, "device_code").unwrap_or_default();
    let outcome = match state.devices.get(code) {
        None => Err(("invalid_grant", "unknown device code")),
        Some(d) if d.client_id != client.client_id => {
            Err(("invalid_grant", "the device code belongs to another client"))
        }
        Some(d) if d.redeemed => Err(("invalid_grant", "the device code was redeemed")),
        Some(d) if Instant::now() >= d.expires_at => {
            Err(("expired_token", "the device code expired"))
        }
        Some(d) if !d.approved => Err(("authorization_pending", "the user has not approved yet")),
        Some(_) => Ok(()),
    };
    if let Err((error, why)) = outcome {
        record(state, error);
        return Err(OAuthError::bad(error, why));
    }
    record(state, "tokens");
    let new_grant = state.new_grant();
    let d = state.devices.get_mut(code).expect("checked above");
    d.redeemed = true;
    Ok(Issue {
        client_id: &client.client_id,
        scope: d.scope.clone(),
        resource: d.resource.clone(),
        grant_type: DEVICE_GRANT_TYPE,
        with_refresh: auth.issue_refresh_tokens,
        grant: Some(new_grant),
    })
}

/// Redeems an authorization code: single use, same client and redirect URI, PKCE S256.
fn redeem_code<'a>(
    state: &mut AuthState,
    auth: &AuthConfig,
    client: &'a Authenticated,
    form: &[(String, String)],
    resource: Option<String>,
) -> Result<Issue<'a>, OAuthError> {
    let invalid_grant = |why: &str| OAuthError::bad("invalid_grant", why);
    let presented =
        param(form, "code").ok_or_else(|| OAuthError::bad("invalid_request", "code is missing"))?;
    let new_grant = state.new_grant();
    let code = state
        .codes
        .get(presented)
        .ok_or_else(|| invalid_grant("unknown authorization code"))?;
    if code.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if let Some(grant) = code.redeemed {
        state.revoke_grant(grant);
        return Err(invalid_grant(
            "the code was already used; its tokens are revoked",
        ));
    }
    let Some(code) = state.codes.get_mut(presented) else {
        return Err(invalid_grant("unknown authorization code"));
    };
    // Consumed now, whatever follows: a failed attempt spends it too.
    code.redeemed = Some(new_grant);
    if code.issued_at.elapsed() > CODE_LIFETIME {
        return Err(invalid_grant("the code expired"));
    }
    if let Some(expected) = &code.redirect_uri {
        if param(form, "redirect_uri") != Some(expected.as_str()) {
            return Err(invalid_grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
    }
    let verifier = param(form, "code_verifier")
        .ok_or_else(|| OAuthError::bad("invalid_request", "code_verifier is missing"))?;
    if !is_pkce_string(verifier) || s256(verifier) != code.challenge {
        return Err(invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(Issue {
        client_id: &client.client_id,
        scope: code.scope.clone(),
        resource: resource.or_else(|| code.resource.clone()),
        grant_type: "authorization_code",
        with_refresh: auth.issue_refresh_tokens,
        grant: Some(new_grant),
    })
}

/// `POST /revoke` (RFC 7009): authenticates the client and forgets the token if it is
/// the client's: an access token alone, a refresh token with its whole grant. Unknown
/// tokens get `200` too (§2.2).
fn revoke(shared: &Shared, auth: &AuthConfig, parts: &Parts, body: &[u8]) -> Response<Body> {
    let mut state = lock(&shared.auth);
    let outcome = form_body(parts, body).and_then(|form| {
        let claim = claim(&parts.headers, &form)?;
        let client = authenticate(&state, auth, &auth.issuer(&shared.origin), &claim)?;
        let token = param(&form, "token")
            .ok_or_else(|| OAuthError::bad("invalid_request", "token is missing"))?;
        let access_grant = state
            .access
            .get(token)
            .filter(|t| t.client_id == client.client_id)
            .map(|t| t.grant);
        let refresh_grant = state
            .refresh
            .get(token)
            .filter(|t| t.client_id == client.client_id)
            .map(|t| t.grant);
        if access_grant.is_some() {
            state.access.remove(token);
        }
        if let Some(grant) = refresh_grant {
            state.revoke_grant(grant);
        }
        Ok(())
    });
    match outcome {
        Ok(()) => with_status(
            StatusCode::OK,
            http_body_util::Full::new(Bytes::new()).boxed_unsync(),
        ),
        Err(error) => error.response(auth),
    }
}

/// Base64url without padding (JWT segments).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_loopback_http_redirects_pass() {
        assert!(is_loopback_redirect("http://127.0.0.1:8080/callback"));
        assert!(is_loopback_redirect("http://localhost:1/cb?x=1"));
        assert!(is_loopback_redirect("http://[::1]:9/cb"));
        assert!(!is_loopback_redirect("https://127.0.0.1/cb"));
        assert!(!is_loopback_redirect("http://example.com/cb"));
        assert!(!is_loopback_redirect("http://127.0.0.1/cb#frag"));
        assert!(!is_loopback_redirect("javascript:alert(1)"));
    }

    #[test]
    fn form_components_decode() {
        assert_eq!(form_decode("a%3Ab+c%"), "a:b c%");
        assert_eq!(form_decode("%zz"), "%zz");
    }

    #[test]
    fn metadata_urls_follow_the_issuer_path() {
        let mut auth = AuthConfig {
            issuer_path: Some("/tenant1".to_owned()),
            ..AuthConfig::default()
        };
        assert!(serves_metadata_at(
            &auth,
            "/.well-known/oauth-authorization-server/tenant1"
        ));
        assert!(serves_metadata_at(
            &auth,
            "/tenant1/.well-known/openid-configuration"
        ));
        assert!(!serves_metadata_at(
            &auth,
            "/.well-known/oauth-authorization-server"
        ));
        auth.issuer_path = None;
        auth.as_metadata_urls = vec![AsMetadataUrl::OpenIdAppended];
        assert!(serves_metadata_at(
            &auth,
            "/.well-known/openid-configuration"
        ));
        assert!(!serves_metadata_at(
            &auth,
            "/.well-known/oauth-authorization-server"
        ));
    }
}
