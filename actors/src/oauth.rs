//! The network half of sign-in: discovery, client registration, the browser
//! authorization with PKCE, and the token endpoint (code, refresh, client
//! credentials). Every decision about *what* to do is in `machines::auth`;
//! these functions only do it and report what happened.
//!
//! MCP 2025-06-18 / 2025-11-25 basic/authorization, RFC 9728, RFC 8414, RFC 7591,
//! RFC 7636, RFC 8707, RFC 9207, OAuth 2.1.

use crate::browser;
use crate::callback_listener;
use crate::token_store::{now_ms, StoredClient, StoredTokens, TokenStore};
use base64::Engine;
use machines::auth::callback_port::{CallbackPort, PortEffect, PortEvent, PortOutbox};
use machines::auth::challenge::BearerChallenge;
use machines::auth::discovery::{
    self, same_issuer, AuthServerMetadata, ProtectedResource, TokenAuth,
};
use machines::auth::registration;
use machines::auth::scope;
use machines::auth::token::{self, TokenResponse};
pub use machines::auth::{AuthError, AuthStep};
use serde::Deserialize;
use statig::prelude::IntoStateMachineExt;
use std::time::Duration;
use url::Url;

/// How the RFC 8707 `resource` parameter is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceParam {
    /// The protected resource metadata's `resource`, else the server URL.
    Auto,
    /// `--resource`.
    Fixed(String),
    /// `--disable-resource-parameter`.
    Disabled,
}

/// Everything sign-in needs from the command line.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// The MCP server URL.
    pub mcp_url: Url,
    /// Accept plain http authorization endpoints on remote hosts.
    pub allow_http: bool,
    /// `--static-oauth-client-info`: a pre-registered client.
    pub static_client: Option<StoredClient>,
    /// `--static-oauth-client-metadata`: merged into the registration request.
    pub static_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `--client-metadata-url`: a client ID metadata document.
    pub client_metadata_url: Option<String>,
    /// `resource` policy.
    pub resource: ResourceParam,
    /// `--authorize-param`.
    pub authorize_params: Vec<(String, String)>,
    /// `--host`: host of the redirect URI.
    pub redirect_host: String,
    /// `--callback-path`.
    pub callback_path: String,
    /// The positional callback port.
    pub callback_port: Option<u16>,
    /// `--auth-timeout`: bounds the whole wait for a sign-in.
    pub auth_timeout: Duration,
    /// `--client-credentials`.
    pub client_credentials: bool,
    /// `client_name` for registration.
    pub client_name: String,
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The authorization server's issuer.
    pub issuer: String,
    /// Its metadata.
    pub meta: AuthServerMetadata,
    /// The `resource` to send, if any.
    pub resource: Option<String>,
    /// The protected resource's `scopes_supported`.
    pub prm_scopes: Option<Vec<String>>,
}

/// GET a JSON document: `Ok(None)` on 4xx (try the next candidate).
async fn get_json<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<Option<T>, AuthError> {
    let response = http
        .get(url.clone())
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| AuthError::Unreachable {
            step: AuthStep::Discovery,
            detail: crate::http::describe_error(e),
        })?;
    let status = response.status();
    if status.is_client_error() {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(AuthError::MetadataStatus {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let body = response.bytes().await.map_err(|e| AuthError::Unreachable {
        step: AuthStep::Discovery,
        detail: crate::http::describe_error(e),
    })?;
    if body.len() > 1024 * 1024 {
        return Err(AuthError::MetadataTooLarge(url.to_string()));
    }
    match serde_json::from_slice(&body) {
        Ok(v) => Ok(Some(v)),
        Err(_) => Ok(None),
    }
}

/// Protected resource metadata, then authorization server metadata (or the 2025-03-26 fallbacks).
pub async fn discover(
    http: &reqwest::Client,
    opts: &AuthOptions,
    challenge: &BearerChallenge,
) -> Result<Discovered, AuthError> {
    let mut prm: Option<ProtectedResource> = None;
    for url in discovery::prm_candidates(&opts.mcp_url, challenge.resource_metadata.as_deref())? {
        if let Some(found) = get_json::<ProtectedResource>(http, &url).await? {
            prm = Some(found);
            break;
        }
    }
    let discovered = match prm {
        Some(prm) => {
            discovery::check_resource(&prm, &opts.mcp_url)?;
            let issuer = prm
                .authorization_servers
                .first()
                .cloned()
                .ok_or(discovery::DiscoveryError::NoAuthorizationServer)?;
            let issuer_url = discovery::check_secure(&issuer, opts.allow_http)?;
            let mut meta = None;
            for url in discovery::as_metadata_candidates(&issuer_url) {
                if let Some(found) = get_json::<AuthServerMetadata>(http, &url).await? {
                    meta = Some(found);
                    break;
                }
            }
            let meta = meta.ok_or_else(|| AuthError::NoMetadata(issuer.to_string()))?;
            // RFC 8414 §3.3: the issuer must be the one asked for.
            match meta.issuer.as_deref() {
                Some(found) if same_issuer(found, &issuer) => {}
                found => {
                    return Err(discovery::DiscoveryError::IssuerMismatch {
                        found: found.unwrap_or("").to_owned(),
                        expected: issuer,
                    }
                    .into())
                }
            }
            discovery::check_as_metadata(&meta, &issuer, false)?;
            let resource = prm
                .resource
                .clone()
                .unwrap_or_else(|| discovery::canonical_resource(&opts.mcp_url));
            Discovered {
                issuer,
                meta,
                resource: Some(resource),
                prm_scopes: prm.scopes_supported,
            }
        }
        None => {
            // MCP 2025-03-26: metadata at the server's origin, else fixed endpoints.
            let meta = match get_json::<AuthServerMetadata>(
                http,
                &discovery::legacy_metadata_url(&opts.mcp_url),
            )
            .await?
            {
                Some(meta) => meta,
                None => discovery::fallback_metadata(&opts.mcp_url),
            };
            discovery::check_as_metadata(&meta, "", false)?;
            let issuer = meta
                .issuer
                .clone()
                .unwrap_or_else(|| discovery::canonical_resource(&opts.mcp_url));
            Discovered {
                issuer,
                meta,
                resource: Some(discovery::canonical_resource(&opts.mcp_url)),
                prm_scopes: None,
            }
        }
    };
    discovery::check_secure(&discovered.meta.authorization_endpoint, opts.allow_http)?;
    discovery::check_secure(&discovered.meta.token_endpoint, opts.allow_http)?;
    if let Some(r) = &discovered.meta.registration_endpoint {
        discovery::check_secure(r, opts.allow_http)?;
    }
    Ok(discovered)
}

fn resource_param(opts: &AuthOptions, disc: &Discovered) -> Option<String> {
    match &opts.resource {
        ResourceParam::Disabled => None,
        ResourceParam::Fixed(r) => Some(r.clone()),
        ResourceParam::Auto => disc.resource.clone(),
    }
}

/// The client to use: pre-registered, then a client ID metadata document, then a
/// stored registration that fits, then a new dynamic registration.
async fn ensure_client(
    http: &reqwest::Client,
    opts: &AuthOptions,
    store: &TokenStore,
    disc: &Discovered,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Result<StoredClient, AuthError> {
    if let Some(c) = &opts.static_client {
        return Ok(c.clone());
    }
    if let (Some(url), Some(true)) = (
        &opts.client_metadata_url,
        disc.meta.client_id_metadata_document_supported,
    ) {
        return Ok(StoredClient {
            client_id: url.clone(),
            token_endpoint_auth_method: Some("none".into()),
            redirect_uris: vec![redirect_uri.to_owned()],
            ..StoredClient::default()
        });
    }
    if let Some(c) = store.load_client() {
        let issuer_ok = c
            .issuer
            .as_deref()
            .is_none_or(|i| same_issuer(i, &disc.issuer));
        if c.redirect_uris.iter().any(|r| r == redirect_uri) && issuer_ok {
            return Ok(c);
        }
        tracing::info!("the stored client registration does not fit this redirect URI or server; registering again");
    }
    let Some(endpoint) = &disc.meta.registration_endpoint else {
        return Err(AuthError::NoRegistration);
    };
    let method =
        discovery::choose_token_auth(disc.meta.token_endpoint_auth_methods_supported.as_deref());
    let mut body = serde_json::json!({
        "client_name": opts.client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method.as_str(),
        "application_type": "native",
        "software_id": "mcp-remote-rs",
        "software_version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(s) = scope {
        body["scope"] = s.into();
    }
    if let (Some(extra), Some(obj)) = (&opts.static_metadata, body.as_object_mut()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    let response = http
        .post(endpoint)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| AuthError::Unreachable {
            step: AuthStep::Registration,
            detail: crate::http::describe_error(e),
        })?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let client = registration::parse_response(
        status,
        &bytes,
        &registration::Requested {
            redirect_uri,
            token_endpoint_auth_method: method,
            issuer: &disc.issuer,
        },
    )?;
    if let Err(e) = store.save_client(&client) {
        tracing::warn!("{e}");
    }
    tracing::info!("registered a client with the authorization server");
    Ok(client)
}

/// POST to the token endpoint with the client's authentication (OAuth 2.1 §2.4).
async fn token_request(
    http: &reqwest::Client,
    meta: &AuthServerMetadata,
    client: &StoredClient,
    mut params: Vec<(&'static str, String)>,
) -> Result<TokenResponse, AuthError> {
    let method = client
        .token_endpoint_auth_method
        .as_deref()
        .and_then(TokenAuth::from_name)
        .unwrap_or(if client.client_secret.is_some() {
            TokenAuth::ClientSecretBasic
        } else {
            TokenAuth::None
        });
    let mut request = http
        .post(&meta.token_endpoint)
        .timeout(Duration::from_secs(30))
        .header("accept", "application/json");
    match (method, &client.client_secret) {
        (TokenAuth::ClientSecretBasic, Some(secret)) => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&client.client_id), enc(secret));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let mut header = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| AuthError::BadClientCredentials)?;
            header.set_sensitive(true);
            request = request.header("authorization", header);
        }
        (TokenAuth::ClientSecretPost, Some(secret)) => {
            params.push(("client_id", client.client_id.clone()));
            params.push(("client_secret", secret.clone()));
        }
        _ => params.push(("client_id", client.client_id.clone())),
    }
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| AuthError::Unreachable {
            step: AuthStep::Token,
            detail: crate::http::describe_error(e),
        })?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    Ok(token::parse_response(status, &bytes)?)
}

fn to_stored(
    t: TokenResponse,
    requested_scope: Option<String>,
    issuer: &str,
    old_refresh: Option<String>,
) -> StoredTokens {
    StoredTokens {
        expires_at: t.expires_at(now_ms()),
        access_token: t.access_token,
        token_type: t.token_type.unwrap_or_else(|| "Bearer".into()),
        expires_in: t.expires_in,
        scope: t.scope,
        // A rotated refresh token replaces the old one; otherwise the old one stays good.
        refresh_token: t.refresh_token.or(old_refresh),
        id_token: t.id_token,
        requested_scope,
        issuer: Some(issuer.to_owned()),
    }
}

/// A whole browser sign-in. `lock` must be held by the caller.
pub async fn sign_in(
    http: &reqwest::Client,
    opts: &AuthOptions,
    store: &TokenStore,
    challenge: &BearerChallenge,
    step_up_scope: Option<String>,
) -> Result<StoredTokens, AuthError> {
    let disc = discover(http, opts, challenge).await?;
    let pinned_scope = opts
        .static_metadata
        .as_ref()
        .and_then(|m| m.get("scope"))
        .and_then(|s| s.as_str());
    let scope = step_up_scope.or_else(|| {
        scope::initial_scope(
            pinned_scope,
            challenge.scope.as_deref(),
            disc.prm_scopes.as_deref(),
            disc.meta.scopes_supported.as_deref(),
        )
    });
    let resource = resource_param(opts, &disc);
    if opts.client_credentials {
        let client = opts
            .static_client
            .clone()
            .ok_or(AuthError::NoClientCredentials)?;
        let mut params = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(s) = &scope {
            params.push(("scope", s.clone()));
        }
        if let Some(r) = &resource {
            params.push(("resource", r.clone()));
        }
        let t = token_request(http, &disc.meta, &client, params).await?;
        return Ok(to_stored(t, scope, &disc.issuer, None));
    }

    // The callback port (CallbackPort machine), then the redirect URI.
    let registered = store.load_client().and_then(|c| {
        c.redirect_uris
            .first()
            .and_then(|u| Url::parse(u).ok())
            .and_then(|u| u.port())
    });
    let pinned = opts.static_client.is_some() || opts.client_metadata_url.is_some();
    let mut machine = CallbackPort::default().state_machine();
    let mut out = PortOutbox::default();
    machine.handle_with_context(
        &PortEvent::Planned {
            explicit: opts.callback_port,
            registered,
            pinned,
        },
        &mut out,
    );
    let mut listener = None;
    for _ in 0..3 {
        let Some(effect) = out.0.pop() else { break };
        match effect {
            PortEffect::TryBind(port) => {
                let event = match callback_listener::bind(port).await {
                    Ok(l) => {
                        let p = l.port;
                        listener = Some(l);
                        PortEvent::Bound { port: p }
                    }
                    Err(e) => PortEvent::BindFailed {
                        reason: e.to_string(),
                    },
                };
                machine.handle_with_context(&event, &mut out);
            }
            PortEffect::Ready(_) => break,
            PortEffect::GiveUp(error) => return Err(error.into()),
        }
    }
    let listener = listener.ok_or(AuthError::ListenerStopped)?;
    let port = listener.port;
    let redirect_uri = format!("http://{}:{port}{}", opts.redirect_host, opts.callback_path);
    let client = ensure_client(http, opts, store, &disc, &redirect_uri, scope.as_deref()).await?;

    // PKCE S256 and a random single-use state (RFC 7636; OAuth 2.1 §7.12).
    let (challenge_code, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let state = oauth2::CsrfToken::new_random();
    let mut url = Url::parse(&disc.meta.authorization_endpoint)
        .map_err(|_| AuthError::BadAuthorizationEndpoint)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("code_challenge", challenge_code.as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", state.secret());
        if let Some(s) = &scope {
            q.append_pair("scope", s);
        }
        if let Some(r) = &resource {
            q.append_pair("resource", r);
        }
        for (k, v) in &opts.authorize_params {
            q.append_pair(k, v);
        }
    }
    if let Err(e) = browser::open(&url, opts.allow_http) {
        tracing::warn!("{e}");
    }
    let path = opts.callback_path.clone();
    let waited = tokio::time::timeout(
        opts.auth_timeout,
        callback_listener::serve(listener, path, state.secret().clone()),
    )
    .await;
    let callback = match waited {
        Ok(Some(cb)) => cb,
        Ok(None) => return Err(AuthError::ListenerStopped),
        Err(_) => return Err(AuthError::NotCompleted(opts.auth_timeout)),
    };
    // RFC 9207: `iss` before anything else in the response, then the error, then the code.
    let promised = disc.meta.authorization_response_iss_parameter_supported == Some(true);
    let code = callback.into_code(&disc.issuer, promised)?;
    let mut params = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier.secret().clone()),
    ];
    if let Some(r) = &resource {
        params.push(("resource", r.clone()));
    }
    let t = token_request(http, &disc.meta, &client, params).await?;
    tracing::info!("signed in");
    Ok(to_stored(t, scope, &disc.issuer, None))
}

/// Redeem the refresh token (with the same `resource`); a rotated refresh token is kept.
pub async fn refresh(
    http: &reqwest::Client,
    opts: &AuthOptions,
    store: &TokenStore,
    tokens: &StoredTokens,
) -> Result<StoredTokens, AuthError> {
    let refresh_token = tokens
        .refresh_token
        .clone()
        .ok_or(AuthError::NoRefreshToken)?;
    let disc = discover(http, opts, &BearerChallenge::default()).await?;
    let client = opts
        .static_client
        .clone()
        .or_else(|| store.load_client())
        .or_else(|| {
            opts.client_metadata_url.clone().map(|id| StoredClient {
                client_id: id,
                token_endpoint_auth_method: Some("none".into()),
                ..StoredClient::default()
            })
        })
        .ok_or(AuthError::NoClient)?;
    let mut params = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.clone()),
    ];
    if let Some(r) = resource_param(opts, &disc) {
        params.push(("resource", r));
    }
    let t = token_request(http, &disc.meta, &client, params).await?;
    tracing::info!("refreshed the access token");
    Ok(to_stored(
        t,
        tokens.requested_scope.clone(),
        &disc.issuer,
        Some(refresh_token),
    ))
}
