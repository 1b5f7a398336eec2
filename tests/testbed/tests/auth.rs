//! Black-box checks of the testbed's OAuth 2.1 over raw HTTP/1.1: the protected resource
//! (challenges, resource metadata, scopes), the authorization server (metadata,
//! registration, authorize, token grants, revocation) and the `mcp-browser` shim. Every
//! wait is bounded.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{post, request, Reply};
use testbed::{AuthConfig, AuthorizeBehaviour, Config, PrmUrl, ResponseMode, Testbed, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A PKCE code verifier (43 characters of the unreserved set).
const VERIFIER: &str = "testbed-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

/// The form content type the token endpoint wants.
const FORM: &str = "application/x-www-form-urlencoded";

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "auth-test", "version": "0"},
    }})
}

fn tool_call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": "hi"}}})
}

async fn start(auth: AuthConfig) -> Testbed {
    Testbed::start(Config {
        response_mode: ResponseMode::Json,
        sessions: false,
        auth: Some(auth),
        ..Config::default()
    })
    .await
    .expect("start the testbed")
}

/// Percent-encodes a form value (everything but the unreserved set).
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query parameters of a URL, decoded.
fn query_of(url: &str) -> Vec<(String, String)> {
    let parsed = url::Url::parse(url).expect("a URL");
    parsed.query_pairs().into_owned().collect()
}

fn get_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn get(url: &str) -> Reply {
    request(url, "GET", &[], b"").await
}

async fn post_form(url: &str, extra: &[(&str, &str)], body: &str) -> Reply {
    let mut headers = vec![("Content-Type", FORM)];
    headers.extend_from_slice(extra);
    request(url, "POST", &headers, body.as_bytes()).await
}

/// Registers a client with `method`; returns (client_id, client_secret).
async fn register(tb: &Testbed, redirect: &str, method: &str) -> (String, Option<String>) {
    let body = json!({
        "redirect_uris": [redirect],
        "client_name": "auth-test",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    });
    let reply = request(
        &format!("{}/register", tb.origin()),
        "POST",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 201);
    let answer = reply.json().await;
    let id = answer["client_id"].as_str().expect("client_id").to_owned();
    let secret = answer["client_secret"].as_str().map(str::to_owned);
    (id, secret)
}

/// Runs `/authorize` for `client_id` and returns the redirect's query.
async fn authorize(
    tb: &Testbed,
    client_id: &str,
    redirect: &str,
    scope: Option<&str>,
) -> Vec<(String, String)> {
    let challenge = s256(VERIFIER);
    let resource = tb.url();
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("state", "st-1"),
        ("resource", &resource),
        ("extra_param", "x"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(scope) = scope {
        pairs.push(("scope", scope));
    }
    let query = form(&pairs);
    let reply = get(&format!("{}/authorize?{query}", tb.origin())).await;
    assert_eq!(reply.status, 302);
    let location = reply.header("location").expect("a Location").to_owned();
    assert!(location.starts_with(redirect), "{location}");
    query_of(&location)
}

/// Exchanges a code as a public client; returns the token response.
async fn exchange(tb: &Testbed, client_id: &str, redirect: &str, code: &str) -> (u16, Value) {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
        ("resource", &tb.url()),
    ]);
    let reply = post_form(&format!("{}/token", tb.origin()), &[], &body).await;
    let status = reply.status;
    (status, reply.json().await)
}

/// Registers a public client, authorizes and exchanges: the token response.
async fn sign_in(tb: &Testbed, scope: Option<&str>) -> Value {
    let redirect = "http://127.0.0.1:9/callback";
    let (client_id, _) = register(tb, redirect, "none").await;
    let query = authorize(tb, &client_id, redirect, scope).await;
    let code = get_param(&query, "code").expect("a code");
    let (status, tokens) = exchange(tb, &client_id, redirect, code).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

#[tokio::test]
async fn without_a_token_mcp_answers_401_with_a_challenge() {
    let tb = start(AuthConfig {
        challenge_scope: Some("mcp:basic".to_owned()),
        ..AuthConfig::default()
    })
    .await;
    let reply = post(&tb.url(), &[], &initialize()).await;
    assert_eq!(reply.status, 401);
    let challenge = reply.header("www-authenticate").unwrap().to_owned();
    let prm_url = format!("{}/.well-known/oauth-protected-resource/mcp", tb.origin());
    let expected = format!("resource_metadata=\"{prm_url}\"");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&expected), "{challenge}");
    assert!(challenge.contains("scope=\"mcp:basic\""), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
    assert_eq!(tb.resource_metadata_url(), Some(prm_url));

    // An unknown token: the same, plus error="invalid_token".
    let reply = post(
        &tb.url(),
        &[("Authorization", "Bearer nope")],
        &initialize(),
    )
    .await;
    assert_eq!(reply.status, 401);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // GET and DELETE are protected too, and nothing of the session machinery ran.
    assert_eq!(get(&tb.url()).await.status, 401);
    assert_eq!(request(&tb.url(), "DELETE", &[], b"").await.status, 401);
    assert!(tb.session_ids().is_empty());
}

#[tokio::test]
async fn auth_is_off_by_default_and_its_paths_are_404() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    assert_eq!(post(&tb.url(), &[], &initialize()).await.status, 200);
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/authorize",
    ] {
        assert_eq!(get(&format!("{}{path}", tb.origin())).await.status, 404);
    }
    // Turning it on takes effect on the next request.
    tb.set_auth(|_| {});
    assert_eq!(post(&tb.url(), &[], &initialize()).await.status, 401);
}

#[tokio::test]
async fn protected_resource_metadata_is_served_path_aware_and_at_the_root() {
    let tb = start(AuthConfig {
        scopes_supported: Some(vec!["mcp:basic".to_owned(), "mcp:write".to_owned()]),
        ..AuthConfig::default()
    })
    .await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let reply = get(&format!("{}{path}", tb.origin())).await;
        assert_eq!(reply.status, 200, "{path}");
        let prm = reply.json().await;
        assert_eq!(prm["resource"], tb.url());
        assert_eq!(prm["authorization_servers"], json!([tb.origin()]));
        assert_eq!(prm["scopes_supported"], json!(["mcp:basic", "mcp:write"]));
    }
    // Served only where configured; the resource can be made to lie.
    tb.set_auth(|a| {
        a.prm_urls = vec![PrmUrl::Custom("/custom/prm.json".to_owned())];
        a.prm_resource_override = Some("https://evil.example.com/mcp".to_owned());
        a.scopes_supported = None;
    });
    let root = get(&format!(
        "{}/.well-known/oauth-protected-resource",
        tb.origin()
    ))
    .await;
    assert_eq!(root.status, 404);
    let prm = get(&format!("{}/custom/prm.json", tb.origin()))
        .await
        .json()
        .await;
    assert_eq!(prm["resource"], "https://evil.example.com/mcp");
    assert!(prm.get("scopes_supported").is_none());
    let reply = post(&tb.url(), &[], &initialize()).await;
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(challenge.contains("/custom/prm.json\""), "{challenge}");
}

#[tokio::test]
async fn authorization_server_metadata_follows_the_issuer() {
    let tb = start(AuthConfig::default()).await;
    let reply = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        tb.origin()
    ))
    .await;
    assert_eq!(reply.status, 200);
    let meta = reply.json().await;
    let origin = tb.origin();
    assert_eq!(meta["issuer"], origin);
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{origin}/authorize")
    );
    assert_eq!(meta["token_endpoint"], format!("{origin}/token"));
    assert_eq!(meta["registration_endpoint"], format!("{origin}/register"));
    assert_eq!(meta["revocation_endpoint"], format!("{origin}/revoke"));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["none", "client_secret_post", "client_secret_basic"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    let oidc = get(&format!("{origin}/.well-known/openid-configuration")).await;
    assert_eq!(oidc.json().await["issuer"], origin);

    // An issuer with a path moves the metadata to the path-inserted URLs.
    tb.set_auth(|a| {
        a.issuer_path = Some("/tenant1".to_owned());
        a.dcr = false;
        a.send_iss = false;
    });
    assert_eq!(tb.issuer(), format!("{origin}/tenant1"));
    let root = get(&format!("{origin}/.well-known/oauth-authorization-server")).await;
    assert_eq!(root.status, 404);
    for path in [
        "/.well-known/oauth-authorization-server/tenant1",
        "/.well-known/openid-configuration/tenant1",
        "/tenant1/.well-known/openid-configuration",
    ] {
        let reply = get(&format!("{origin}{path}")).await;
        assert_eq!(reply.status, 200, "{path}");
        let meta = reply.json().await;
        assert_eq!(meta["issuer"], format!("{origin}/tenant1"));
        assert!(meta.get("registration_endpoint").is_none());
        assert!(meta
            .get("authorization_response_iss_parameter_supported")
            .is_none());
    }
    let prm = get(&format!(
        "{origin}/.well-known/oauth-protected-resource/mcp"
    ))
    .await
    .json()
    .await;
    assert_eq!(
        prm["authorization_servers"],
        json!([format!("{origin}/tenant1")])
    );
}

#[tokio::test]
async fn registration_issues_clients_and_refuses_remote_redirects() {
    let tb = start(AuthConfig::default()).await;
    let (public_id, public_secret) = register(&tb, "http://127.0.0.1:1/cb", "none").await;
    assert!(public_secret.is_none());
    let (confidential_id, secret) =
        register(&tb, "http://localhost:2/cb", "client_secret_basic").await;
    assert!(secret.is_some());
    assert_ne!(public_id, confidential_id);

    let reply = request(
        &format!("{}/register", tb.origin()),
        "POST",
        &[("Content-Type", "application/json")],
        json!({"redirect_uris": ["https://evil.example/cb"]})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json().await["error"], "invalid_redirect_uri");

    let registrations = tb.registrations();
    assert_eq!(registrations.len(), 3);
    assert_eq!(registrations[0].request["client_name"], "auth-test");
    assert_eq!(
        registrations[1].token_endpoint_auth_method.as_deref(),
        Some("client_secret_basic")
    );
    assert_eq!(
        registrations[2].error.as_deref(),
        Some("invalid_redirect_uri")
    );

    // A method the server does not take is replaced by its first one.
    tb.set_auth(|a| a.token_endpoint_auth_methods = vec!["client_secret_post".to_owned()]);
    let (_, secret) = register(&tb, "http://[::1]:3/cb", "none").await;
    assert!(secret.is_some());
}

#[tokio::test]
async fn authorize_redirects_with_code_state_and_iss() {
    let tb = start(AuthConfig::default()).await;
    let redirect = "http://127.0.0.1:5/callback";
    let (client_id, _) = register(&tb, redirect, "none").await;
    let query = authorize(&tb, &client_id, redirect, Some("mcp:basic")).await;
    assert!(get_param(&query, "code").is_some_and(|c| !c.is_empty()));
    assert_eq!(get_param(&query, "state"), Some("st-1"));
    assert_eq!(get_param(&query, "iss"), Some(tb.origin().as_str()));

    assert_eq!(tb.authorize_count(), 1);
    let recorded = &tb.authorize_requests()[0];
    assert_eq!(recorded.param("resource"), Some(tb.url().as_str()));
    assert_eq!(recorded.param("scope"), Some("mcp:basic"));
    assert_eq!(recorded.param("code_challenge_method"), Some("S256"));
    assert_eq!(recorded.param("extra_param"), Some("x"));
    assert!(recorded.error.is_none());

    // Without PKCE: an error through the redirect. An unregistered redirect URI: no redirect.
    let origin = tb.origin();
    let no_pkce = format!(
        "{origin}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=s",
        enc(redirect)
    );
    let reply = get(&no_pkce).await;
    assert_eq!(reply.status, 302);
    let query = query_of(reply.header("location").unwrap());
    assert_eq!(get_param(&query, "error"), Some("invalid_request"));
    assert_eq!(get_param(&query, "state"), Some("s"));
    let elsewhere = no_pkce.replace("5%2Fcallback", "6%2Fcallback");
    assert_eq!(get(&elsewhere).await.status, 400);

    // A denial, and an iss that lies.
    tb.set_auth(|a| a.authorize_behaviour = AuthorizeBehaviour::Deny);
    let reply = get(&format!(
        "{no_pkce}&code_challenge={}&code_challenge_method=S256",
        s256(VERIFIER)
    ))
    .await;
    let query = query_of(reply.header("location").unwrap());
    assert_eq!(get_param(&query, "error"), Some("access_denied"));
    assert!(get_param(&query, "code").is_none());
    tb.set_auth(|a| a.authorize_behaviour = AuthorizeBehaviour::WrongIss);
    let query = authorize(&tb, &client_id, redirect, None).await;
    assert_eq!(
        get_param(&query, "iss"),
        Some("https://wrong-issuer.example")
    );
    assert_eq!(tb.authorize_count(), 5);
}

#[tokio::test]
async fn metadata_and_error_descriptions_can_be_made_hostile() {
    let tb = start(AuthConfig::default()).await;
    let hostile = "\x1b[31mred\x07";
    tb.set_auth(|a| {
        a.metadata_overrides
            .insert("token_endpoint".into(), json!("file:///etc/passwd"));
        a.error_description_override = Some(hostile.to_owned());
        a.authorize_behaviour = AuthorizeBehaviour::Deny;
    });
    let origin = tb.origin();
    let meta = get(&format!("{origin}/.well-known/oauth-authorization-server"))
        .await
        .json()
        .await;
    assert_eq!(meta["token_endpoint"], "file:///etc/passwd");
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{origin}/authorize")
    );

    // In an error sent through the redirect, and in a JSON error.
    let redirect = "http://127.0.0.1:9/callback";
    let (client_id, _) = register(&tb, redirect, "none").await;
    let query = authorize(&tb, &client_id, redirect, None).await;
    assert_eq!(get_param(&query, "error"), Some("access_denied"));
    assert_eq!(get_param(&query, "error_description"), Some(hostile));
    let body = form(&[("grant_type", "nonsense"), ("client_id", &client_id)]);
    let reply = post_form(&format!("{origin}/token"), &[], &body).await;
    assert_eq!(reply.status, 400);
    let error = reply.json().await;
    assert_eq!(error["error"], "unsupported_grant_type");
    assert_eq!(error["error_description"], hostile);
}

#[tokio::test]
async fn token_exchange_checks_pkce_and_spends_the_code_once() {
    let tb = start(AuthConfig::default()).await;
    let redirect = "http://127.0.0.1:7/cb";
    let (client_id, _) = register(&tb, redirect, "none").await;

    // A wrong verifier: invalid_grant, and the code is spent.
    let query = authorize(&tb, &client_id, redirect, None).await;
    let code = get_param(&query, "code").unwrap().to_owned();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", redirect),
        ("code_verifier", &format!("{VERIFIER}-wrong")),
        ("client_id", &client_id),
    ]);
    let reply = post_form(&format!("{}/token", tb.origin()), &[], &body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json().await["error"], "invalid_grant");

    // The right verifier on a fresh code: tokens.
    let query = authorize(&tb, &client_id, redirect, Some("mcp:basic")).await;
    let code = get_param(&query, "code").unwrap().to_owned();
    let (status, tokens) = exchange(&tb, &client_id, redirect, &code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "mcp:basic");
    assert!(tokens["refresh_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // The bearer works on /mcp.
    let bearer = format!("Bearer {access}");
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &initialize()).await;
    assert_eq!(reply.status, 200);
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &tool_call(1)).await;
    assert_eq!(reply.json().await["result"]["content"][0]["text"], "hi");

    // Reusing the code: invalid_grant, and the tokens it got are revoked.
    let (status, error) = exchange(&tb, &client_id, redirect, &code).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &initialize()).await;
    assert_eq!(reply.status, 401);

    let requests = tb.token_requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].error.as_deref(), Some("invalid_grant"));
    assert_eq!(requests[1].client_auth.as_deref(), Some("none"));
    assert_eq!(requests[1].resource.as_deref(), Some(tb.url().as_str()));
    assert!(requests[1].error.is_none());
    let issued = tb.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].access_token, access);
    assert_eq!(issued[0].resource.as_deref(), Some(tb.url().as_str()));
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let tb = start(AuthConfig::default()).await;
    let redirect = "http://127.0.0.1:9/callback";
    let (client_id, _) = register(&tb, redirect, "none").await;
    let query = authorize(&tb, &client_id, redirect, Some("a b")).await;
    let (_, tokens) = exchange(
        &tb,
        &client_id,
        redirect,
        get_param(&query, "code").unwrap(),
    )
    .await;
    let old_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Expired access token: 401 invalid_token; the refresh token still works.
    tb.expire_access_tokens();
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &initialize()).await;
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));

    let refresh = |token: String| {
        let tb = tb.clone();
        let client_id = client_id.clone();
        async move {
            let body = form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &token),
                ("client_id", &client_id),
                ("resource", &tb.url()),
            ]);
            let reply = post_form(&format!("{}/token", tb.origin()), &[], &body).await;
            (reply.status, reply.json().await)
        }
    };
    let (status, fresh) = refresh(old_refresh.clone()).await;
    assert_eq!(status, 200, "{fresh}");
    let new_refresh = fresh["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, old_refresh);
    assert_eq!(fresh["scope"], "a b");
    let bearer = format!("Bearer {}", fresh["access_token"].as_str().unwrap());
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &initialize()).await;
    assert_eq!(reply.status, 200);

    // The old refresh token is dead; the new one works once.
    let (status, error) = refresh(old_refresh).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(new_refresh.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = refresh(new_refresh).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn tools_call_without_the_required_scope_gets_403() {
    let tb = start(AuthConfig {
        required_scope_for_tools_call: Some("mcp:basic mcp:write".to_owned()),
        ..AuthConfig::default()
    })
    .await;
    let narrow = sign_in(&tb, Some("mcp:basic")).await;
    let bearer = format!("Bearer {}", narrow["access_token"].as_str().unwrap());
    let listing = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &listing).await;
    assert_eq!(reply.status, 200);
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &tool_call(2)).await;
    assert_eq!(reply.status, 403);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp:basic mcp:write\""),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata=\""), "{challenge}");

    let wide = sign_in(&tb, Some("mcp:basic mcp:write")).await;
    let bearer = format!("Bearer {}", wide["access_token"].as_str().unwrap());
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &tool_call(3)).await;
    assert_eq!(reply.status, 200);

    // A withheld scope is never granted, so step-up cannot succeed.
    tb.set_auth(|a| a.withheld_scopes = vec!["mcp:write".to_owned()]);
    let again = sign_in(&tb, Some("mcp:basic mcp:write")).await;
    assert_eq!(again["scope"], "mcp:basic");
}

#[tokio::test]
async fn client_credentials_and_confidential_client_authentication() {
    let tb = start(AuthConfig {
        preregistered: Some(("pre-client".to_owned(), "pre-secret".to_owned())),
        dcr: false,
        ..AuthConfig::default()
    })
    .await;
    let token_url = format!("{}/token", tb.origin());
    let basic = format!("Basic {}", STANDARD.encode("pre-client:pre-secret"));
    let body = form(&[("grant_type", "client_credentials"), ("scope", "mcp:basic")]);
    let reply = post_form(&token_url, &[("Authorization", &basic)], &body).await;
    assert_eq!(reply.status, 200);
    let tokens = reply.json().await;
    assert!(tokens.get("refresh_token").is_none());
    assert_eq!(tokens["scope"], "mcp:basic");
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    assert_eq!(
        post(&tb.url(), &[("Authorization", &bearer)], &initialize())
            .await
            .status,
        200
    );

    // client_secret_post works too; a wrong secret is invalid_client with 401.
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "pre-client"),
        ("client_secret", "pre-secret"),
    ]);
    assert_eq!(post_form(&token_url, &[], &body).await.status, 200);
    let wrong = format!("Basic {}", STANDARD.encode("pre-client:nope"));
    let body = form(&[("grant_type", "client_credentials")]);
    let reply = post_form(&token_url, &[("Authorization", &wrong)], &body).await;
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(reply.json().await["error"], "invalid_client");
    // No registration without DCR.
    assert_eq!(
        request(&format!("{}/register", tb.origin()), "POST", &[], b"{}")
            .await
            .status,
        404
    );
    let methods: Vec<Option<String>> = tb
        .token_requests()
        .into_iter()
        .map(|r| r.client_auth)
        .collect();
    assert_eq!(
        methods,
        [
            Some("client_secret_basic".to_owned()),
            Some("client_secret_post".to_owned()),
            Some("client_secret_basic".to_owned()),
        ]
    );

    // The preregistered client runs the code flow with any loopback redirect URI.
    let redirect = "http://localhost:4321/oauth/callback";
    let query = authorize(&tb, "pre-client", redirect, None).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", get_param(&query, "code").unwrap()),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
    ]);
    let reply = post_form(&token_url, &[("Authorization", &basic)], &body).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn revocation_and_revoke_all() {
    let tb = start(AuthConfig::default()).await;
    let redirect = "http://127.0.0.1:9/callback";
    let (client_id, secret) = register(&tb, redirect, "client_secret_post").await;
    let secret = secret.unwrap();
    let query = authorize(&tb, &client_id, redirect, None).await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", get_param(&query, "code").unwrap()),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        ("client_id", &client_id),
        ("client_secret", &secret),
    ]);
    let tokens = post_form(&format!("{}/token", tb.origin()), &[], &body)
        .await
        .json()
        .await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {access}");
    assert_eq!(
        post(&tb.url(), &[("Authorization", &bearer)], &initialize())
            .await
            .status,
        200
    );

    let body = form(&[
        ("token", &access),
        ("client_id", &client_id),
        ("client_secret", &secret),
    ]);
    let reply = post_form(&format!("{}/revoke", tb.origin()), &[], &body).await;
    assert_eq!(reply.status, 200);
    let reply = post(&tb.url(), &[("Authorization", &bearer)], &initialize()).await;
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));

    // revoke_all_tokens also kills the refresh token.
    tb.revoke_all_tokens();
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ("client_id", &client_id),
        ("client_secret", &secret),
    ]);
    let reply = post_form(&format!("{}/token", tb.origin()), &[], &body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json().await["error"], "invalid_grant");

    // A minted token is valid until revoked.
    let minted = format!("Bearer {}", tb.mint_access_token(None));
    assert_eq!(
        post(&tb.url(), &[("Authorization", &minted)], &initialize())
            .await
            .status,
        200
    );
    tb.revoke_all_tokens();
    assert_eq!(
        post(&tb.url(), &[("Authorization", &minted)], &initialize())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn legacy_endpoints_are_protected_with_their_own_metadata() {
    let tb = Testbed::start(Config {
        transport: Transport::Legacy,
        auth: Some(AuthConfig::default()),
        ..Config::default()
    })
    .await
    .unwrap();
    let reply = request(
        &tb.sse_url(),
        "GET",
        &[("Accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 401);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/sse\""),
        "{challenge}"
    );
    let prm = get(&format!(
        "{}/.well-known/oauth-protected-resource/sse",
        tb.origin()
    ))
    .await
    .json()
    .await;
    assert_eq!(prm["resource"], tb.sse_url());
    let bearer = format!("Bearer {}", tb.mint_access_token(None));
    let mut reply = request(
        &tb.sse_url(),
        "GET",
        &[("Accept", "text/event-stream"), ("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);
    let endpoint = reply.next_block().await.unwrap();
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"));
}

/// A one-shot loopback HTTP server answering `200` to one request; returns its origin
/// and a handle yielding the request head it received.
async fn callback_listener() -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await;
        String::from_utf8_lossy(&head).into_owned()
    });
    (origin, task)
}

#[tokio::test]
async fn the_browser_shim_follows_the_redirect_to_a_loopback_callback() {
    let tb = start(AuthConfig::default()).await;
    let (callback_origin, received) = callback_listener().await;
    let redirect = format!("{callback_origin}/oauth/callback");
    let (client_id, _) = register(&tb, &redirect, "none").await;
    let url = format!(
        "{}/authorize?{}",
        tb.origin(),
        form(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", &redirect),
            ("state", "browser-state"),
            ("code_challenge", &s256(VERIFIER)),
            ("code_challenge_method", "S256"),
        ])
    );
    let log = std::env::temp_dir().join(format!("mcp-browser-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let run = |url: String, extra: Option<(&'static str, &'static str)>| {
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-browser"));
            command.arg(url).env("MCP_BROWSER_LOG", &log);
            if let Some((name, value)) = extra {
                command.env(name, value);
            }
            command.output().expect("run mcp-browser")
        })
    };
    let output = tokio::time::timeout(Duration::from_secs(30), run(url.clone(), None))
        .await
        .expect("mcp-browser finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("final status 200"));
    let head = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the callback was hit")
        .unwrap();
    let target = head.lines().next().unwrap().to_owned();
    assert!(target.starts_with("GET /oauth/callback?code="), "{target}");
    assert!(target.contains("state=browser-state"), "{target}");

    // Refused schemes and NO_FOLLOW still count as launches.
    let refused = run("javascript:alert(1)".to_owned(), None).await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let recorded = run(url.clone(), Some(("MCP_BROWSER_NO_FOLLOW", "1")))
        .await
        .unwrap();
    assert!(recorded.status.success());
    assert_eq!(tb.authorize_count(), 1, "NO_FOLLOW fetched nothing");
    let launches = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        launches.lines().collect::<Vec<_>>(),
        [url.as_str(), "javascript:alert(1)", url.as_str()]
    );
    let _ = std::fs::remove_file(&log);
}
