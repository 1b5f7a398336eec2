//! Sign-in options of mcp-remote 0.15 that work here too, against the loopback
//! testbed's authorization server: `--auth-success-url`, `--use-id-token`.

mod common;

use common::oauth::{initialize, protected, Env};
use common::{call, text};
use serde_json::json;
use testbed::AuthConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_callback_the_browser_goes_to_the_success_url() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("success-url");
    let success = format!("{}/signed-in", tb.elsewhere_origin());
    let mut p = env.spawn(&[&tb.url(), "--auth-success-url", &success], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.close().await;
    let landed: Vec<String> = tb
        .elsewhere_requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}{}",
                r.method,
                r.path,
                r.query.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        landed,
        ["GET /signed-in"],
        "the browser followed the 303, with nothing appended"
    );

    for (bad, why) in [
        ("ftp://example.com/x", "https"),
        ("https://example.com/x?code=1", "query"),
        ("http://example.com/x", "--allow-http"),
    ] {
        let env = Env::new("success-url-bad");
        let p = env.spawn(&[&tb.url(), "--auth-success-url", bad], &[]);
        let (code, stderr) = p.close().await;
        assert_ne!(code, Some(0), "{bad} is refused");
        assert!(
            stderr.contains("--auth-success-url") && stderr.contains(why),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_id_token_sends_the_id_token_and_refreshes_before_it_expires() {
    let tb = protected(AuthConfig {
        issue_id_tokens: true,
        // The ID token lives 4 s, the access token an hour: its `exp` decides.
        id_token_ttl_secs: 4,
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("id-token");
    let mut p = env.spawn(&[&tb.url(), "--use-id-token"], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "as id"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "as id");
    let stored = env.stored("_tokens.json").expect("tokens saved");
    let id_token = stored["id_token"].as_str().unwrap().to_owned();
    let call_request = tb
        .requests()
        .into_iter()
        .find(|r| r.json().is_some_and(|b| b["method"] == "tools/call"))
        .unwrap();
    assert_eq!(
        call_request.header("authorization"),
        Some(format!("Bearer {id_token}").as_str()),
        "the ID token is the bearer"
    );
    // Before the ID token's exp (4 s), a refresh gets a new one; calls go on.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    p.send(call(2, "echo", json!({"text": "still"}))).await;
    let (r, _) = p.recv_response(&json!(2)).await;
    assert_eq!(text(&r), "still", "{r}");
    p.close().await;
    let refreshes = tb
        .token_requests()
        .iter()
        .filter(|t| t.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert!(
        (1..=4).contains(&refreshes),
        "refreshed ahead of the ID token's exp, about every 3 s, not in a loop: {refreshes}"
    );
    assert_eq!(env.launches(), 1, "no second browser sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_a_token_endpoint_skip_discovery() {
    let tb = protected(AuthConfig {
        preregistered: Some(("m2m-id".into(), "m2m-secret".into())),
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("token-endpoint");
    let info = r#"{"client_id":"m2m-id","client_secret":"m2m-secret"}"#;
    let endpoint = format!("{}/token", tb.origin());
    let args = [
        tb.url(),
        "--client-credentials".into(),
        "--static-oauth-client-info".into(),
        info.into(),
        "--token-endpoint".into(),
        endpoint,
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = env.spawn(&args, &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "m2m"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "m2m");
    p.close().await;
    assert_eq!(env.launches(), 0, "no browser");
    let paths: Vec<String> = tb.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        !paths.iter().any(|p| p.starts_with("/.well-known")),
        "no discovery: {paths:?}"
    );
    let tokens = tb.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].grant_type.as_deref(), Some("client_credentials"));

    // Without --client-credentials it is a clear error.
    let env = Env::new("token-endpoint-alone");
    let p = env.spawn(
        &[
            &tb.url(),
            "--token-endpoint",
            "https://as.example.com/token",
        ],
        &[],
    );
    let (code, stderr) = p.close().await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--client-credentials"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stickiness_cookie_goes_back_to_its_origin_only_and_can_be_turned_off() {
    use common::Proxy;
    let tb = testbed::Testbed::start(testbed::Config {
        sticky_cookie: true,
        ..testbed::Config::default()
    })
    .await
    .unwrap();
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Proxy::spawn(&args);
        p.initialize("2025-11-25").await;
        p.send(call(1, "echo", json!({"text": "c"}))).await;
        p.recv_response(&json!(1)).await;
        p.close().await;
    };
    run(vec![tb.url()]).await;
    let reqs = tb.requests();
    assert!(
        reqs[0].header("cookie").is_none(),
        "nothing before the server set it"
    );
    assert!(
        reqs[1..]
            .iter()
            .all(|r| r.header("cookie") == Some("lb=backend-1")),
        "every later request carries it: {:?}",
        reqs.iter().map(|r| r.header("cookie")).collect::<Vec<_>>()
    );
    assert!(tb.elsewhere_requests().is_empty());

    tb.clear_requests();
    run(vec![tb.url(), "--disable-cookies".into()]).await;
    assert!(tb.requests().iter().all(|r| r.header("cookie").is_none()));

    tb.clear_requests();
    run(vec![tb.url(), "--header".into(), "Cookie: mine=1".into()]).await;
    assert!(
        tb.requests()
            .iter()
            .all(|r| r.header("cookie") == Some("mine=1")),
        "the user's Cookie header wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_refusals_name_the_fix() {
    use testbed::AuthorizeBehaviour;
    let cases = [
        (
            "invalid_request",
            "AADSTS50011: The redirect URI 'http://localhost:1/oauth/callback' specified in the request does not match the redirect URIs configured for the application.",
            "--callback-path",
        ),
        (
            "invalid_target",
            "AADSTS9010010: The resource parameter provided in the request doesn't match with the requested scopes.",
            "--disable-resource-parameter",
        ),
        ("consent_required", "AADSTS65001: The user or administrator has not consented.", "administrator"),
        ("invalid_scope", "The requested scope is invalid.", "--static-oauth-client-metadata"),
    ];
    for (code, description, fix) in cases {
        let tb = protected(AuthConfig {
            authorize_behaviour: AuthorizeBehaviour::Error(code.into()),
            error_description_override: Some(description.into()),
            ..AuthConfig::default()
        })
        .await;
        let env = Env::new("idp-error");
        let mut p = env.spawn(&[&tb.url()], &[]);
        let r = initialize(&mut p).await;
        let message = r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(code), "{r}");
        assert!(
            message.contains("fix: ") && message.contains(fix),
            "{code}: {message}"
        );
        let (_, stderr) = p.close().await;
        assert!(stderr.contains(fix), "the log says it too: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_a_private_key_jwt_are_verified_by_the_server() {
    let (pem, public) = testbed::jwt_keypair();
    let tb = protected(AuthConfig {
        jwt_client: Some(("jwt-client".into(), public)),
        token_endpoint_auth_methods: vec!["private_key_jwt".into()],
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("jwt");
    let key = env.dir.join("client.pem");
    std::fs::write(&key, &pem).unwrap();
    let key = key.to_string_lossy().into_owned();
    let url = tb.url();
    let args = [
        url.as_str(),
        "--client-credentials",
        "--static-oauth-client-info",
        r#"{"client_id":"jwt-client"}"#,
        "--client-key",
        key.as_str(),
    ];
    let mut p = env.spawn(&args, &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "signed"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "signed");
    let (_, stderr) = p.close().await;
    let requests = tb.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].client_auth.as_deref(), Some("private_key_jwt"));
    assert!(requests[0].error.is_none(), "the signature verified");
    assert!(
        !stderr.contains("PRIVATE KEY"),
        "the key never reaches the log"
    );

    // Another key is refused by the server; a file that is not a key by mcp-remote.
    let (other, _) = testbed::jwt_keypair();
    std::fs::write(env.dir.join("client.pem"), &other).unwrap();
    let env2 = Env::new("jwt-wrong");
    let mut p = env2.spawn(&args, &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("error").is_some(), "{r}");
    p.close().await;
    std::fs::write(env.dir.join("client.pem"), "not a key").unwrap();
    let p = env2.spawn(&args, &[]);
    let (code, stderr) = p.close().await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--client-key"), "{stderr}");
}
