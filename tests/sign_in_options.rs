//! Sign-in options of mcp-remote 0.15 that work here too, against the loopback
//! testbed's authorization server: `--auth-success-url`, `--use-id-token`, the token
//! endpoint without discovery, cookies, paste-back of the callback address.

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

/// GET `url` as a browser on another machine would, without following the redirect:
/// the `Location` it was sent to (the callback address it could not open).
fn redirect_of(url: &str) -> String {
    use std::io::{Read, Write};
    let u = url::Url::parse(url).unwrap();
    let mut s = std::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let target = &url[u.origin().ascii_serialization().len()..];
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        u.host_str().unwrap()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("a redirect")
        .trim()
        .to_owned()
}

/// Waits (at most 5 s) until the proxy has read and removed `file`.
async fn taken(file: &std::path::Path) -> bool {
    for _ in 0..100 {
        if !file.exists() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_a_remote_browser_ended_on_can_be_pasted_into_the_named_file() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("paste-back");
    let (mut p, authorize_url) = env.spawn_awaiting_sign_in(&[&tb.url()]).await;
    let url_file = env.stored_path("_authorize_url.txt").expect("the URL file");
    let paste = std::path::PathBuf::from(
        url_file
            .to_string_lossy()
            .replace("_authorize_url.txt", "_callback_url.txt"),
    );
    let callback = redirect_of(&authorize_url);
    assert!(callback.contains("code="), "{callback}");

    // An address of another sign-in (another state), then a stray one: refused, and
    // the sign-in keeps waiting.
    let forged = callback.replace("state=", "state=x");
    std::fs::write(&paste, &forged).unwrap();
    assert!(taken(&paste).await, "the pasted file is read");
    std::fs::write(&paste, "not an address").unwrap();
    assert!(taken(&paste).await);
    assert!(
        p.recv_within(std::time::Duration::from_millis(500))
            .await
            .is_none(),
        "still waiting for the real one"
    );

    std::fs::write(&paste, format!("{callback}\n")).unwrap();
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(
        r.get("result").is_some(),
        "signed in from the pasted address: {r}"
    );
    let (_, stderr) = p.close().await;
    assert!(
        stderr.contains("_callback_url.txt") && stderr.contains("paste"),
        "the user is told where to paste: {stderr}"
    );
    assert!(stderr.contains("another sign-in"), "{stderr}");
    assert!(stderr.contains("not an address"), "{stderr}");
    assert_eq!(
        tb.token_requests()
            .iter()
            .filter(|t| t.grant_type.as_deref() == Some("authorization_code"))
            .count(),
        1,
        "the code was redeemed once"
    );
    assert!(
        !stderr.contains(
            callback
                .split("code=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
        ),
        "the code never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_address_from_another_issuer_is_refused() {
    // The browser was sent elsewhere and came back with a code and an `iss` that is
    // not this authorization server's: same checks as the listener's.
    let tb = protected(AuthConfig {
        authorize_behaviour: testbed::AuthorizeBehaviour::WrongIss,
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("paste-iss");
    let (mut p, authorize_url) = env.spawn_awaiting_sign_in(&[&tb.url()]).await;
    let url_file = env.stored_path("_authorize_url.txt").unwrap();
    let paste = url_file
        .to_string_lossy()
        .replace("_authorize_url.txt", "_callback_url.txt");
    std::fs::write(&paste, redirect_of(&authorize_url)).unwrap();
    let (r, _) = p.recv_response(&json!(0)).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("another issuer"), "{r}");
    p.close().await;
    assert!(env.stored("_tokens.json").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_remote_client_on_a_terminal_takes_the_pasted_address_there() {
    use std::io::Write;
    // `script` gives the client a real terminal; what is written to its stdin is typed there.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("util-linux `script` is needed for this test");
    }
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("paste-terminal");
    let command = format!(
        "{} {} --call echo --args '{{\"text\":\"typed\"}}'",
        env!("CARGO_BIN_EXE_mcp-remote-client"),
        tb.url()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("MCP_REMOTE_CONFIG_DIR", env.config())
        .env("BROWSER", common::oauth::browser())
        .env("MCP_BROWSER_LOG", &env.log)
        .env("MCP_BROWSER_NO_FOLLOW", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if env.launches() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(env.launches(), 1, "the browser was opened");
    let authorize_url = std::fs::read_to_string(&env.log).unwrap();
    let callback = redirect_of(authorize_url.trim());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{callback}").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        out
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), out)
        .await
        .expect("the client ends")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("typed"),
        "the call ran after the sign-in: {text}"
    );
    assert!(
        text.contains("or here"),
        "the user is told to paste here: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enterprise_identity_assertion_is_exchanged_for_an_id_jag_and_redeemed() {
    const ID_TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.idtoken-secret";
    let tb = protected(AuthConfig {
        preregistered: Some(("xaa-client".into(), "xaa-secret".into())),
        idp_id_token: Some(ID_TOKEN.into()),
        ..AuthConfig::default()
    })
    .await;
    let idp = format!("{}/idp/token", tb.origin());
    let server = tb.url();
    let info = r#"{"client_id":"xaa-client","client_secret":"xaa-secret"}"#;

    // From the environment (${VAR}): never on the command line.
    let env = Env::new("id-jag");
    let args = [
        server.as_str(),
        "--static-oauth-client-info",
        info,
        "--idp-token-endpoint",
        &idp,
        "--idp-client-id",
        "idp-client",
        "--identity-assertion",
        "${COMPANY_ID_TOKEN}",
    ];
    let mut p = env.spawn(&args, &[("COMPANY_ID_TOKEN", ID_TOKEN)]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "enterprise"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "enterprise");
    let (_, stderr) = p.close().await;
    assert!(
        !stderr.contains("idtoken-secret"),
        "the ID token is never logged"
    );
    assert_eq!(tb.authorize_count(), 0, "no browser");
    assert!(tb.registrations().is_empty(), "no registration");
    let exchanges = tb.idp_requests();
    assert_eq!(exchanges.len(), 1);
    let x = &exchanges[0];
    assert_eq!(x.error, None);
    assert_eq!(
        x.param("audience"),
        Some(tb.origin().as_str()),
        "the ID-JAG is for this authorization server"
    );
    assert_eq!(
        x.param("resource"),
        Some(tb.url().as_str()),
        "and for this MCP server"
    );
    assert_eq!(x.param("client_id"), Some("idp-client"));
    let redeemed: Vec<_> = tb
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type.as_deref() == Some("urn:ietf:params:oauth:grant-type:jwt-bearer"))
        .collect();
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0].error, None);
    assert_eq!(redeemed[0].client_id.as_deref(), Some("xaa-client"));
    assert!(
        !stderr.contains(redeemed[0].param("assertion").unwrap()),
        "nor the ID-JAG"
    );

    // From a file the company's tooling keeps fresh, read at sign-in: a stale one is
    // refused by the identity provider, and the message says where.
    let env = Env::new("id-jag-file");
    std::fs::create_dir_all(&env.dir).unwrap();
    let file = env.dir.join("id_token");
    std::fs::write(&file, "stale.id.token\n").unwrap();
    let from_file = format!("@{}", file.display());
    let args = [
        server.as_str(),
        "--static-oauth-client-info",
        info,
        "--idp-token-endpoint",
        &idp,
        "--identity-assertion",
        &from_file,
    ];
    let mut p = env.spawn(&args, &[]);
    let r = initialize(&mut p).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("identity provider refused") && message.contains("--idp-token-endpoint"),
        "{r}"
    );
    p.close().await;
    std::fs::write(&file, format!("{ID_TOKEN}\n")).unwrap();
    let mut p = env.spawn(&args, &[]);
    assert!(
        initialize(&mut p).await.get("result").is_some(),
        "the fresh file is read again"
    );
    p.close().await;

    // Missing pieces are usage errors naming the flag.
    let p = Env::new("id-jag-usage").spawn(
        &[
            &server,
            "--static-oauth-client-info",
            info,
            "--idp-token-endpoint",
            &idp,
        ],
        &[],
    );
    let (code, stderr) = p.close().await;
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--identity-assertion"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_longer_than_the_hosts_initialize_timeout_is_answered_from_memory() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("early-initialize");
    // Yesterday: signed in, the server's answer remembered beside the transport.
    let mut p = env.spawn(&[&tb.url()], &[]);
    let first = initialize(&mut p).await;
    assert!(first.get("result").is_some());
    p.close().await;
    assert!(
        env.stored("_initialize.json").is_some(),
        "the answer is remembered"
    );

    // Today: the tokens were revoked, and the user takes 8 s in the browser; the host
    // gives up on `initialize` after 5 s. Meanwhile the server's answer changed.
    tb.revoke_all_tokens();
    tb.set_config(|c| c.instructions = Some("new instructions".into()));
    let mut p = env.spawn(&[&tb.url()], &[("MCP_BROWSER_DELAY_MS", "8000")]);
    p.send(common::oauth::initialize_request()).await;
    let answer = p
        .recv_within(std::time::Duration::from_secs(5))
        .await
        .expect("the host's initialize is answered before it gives up");
    assert_eq!(answer["id"], 0);
    assert_eq!(answer["result"], first["result"], "the remembered answer");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "after sign-in"})))
        .await;
    let (r, others) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "after sign-in", "{r}");
    assert!(
        others
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "the changed answer is announced: {others:?}"
    );
    let (_, stderr) = p.close().await;
    assert!(stderr.contains("remembered"), "{stderr}");
    assert_eq!(env.launches(), 2, "one browser sign-in today");
    assert!(
        tb.requests()
            .iter()
            .filter(|r| r.json().is_some_and(|b| b["method"] == "initialize"))
            .count()
            >= 3,
        "the server was initialized for real after the sign-in"
    );
    let stored = env.stored("_initialize.json").unwrap();
    assert_eq!(
        stored["instructions"], "new instructions",
        "the new answer is remembered"
    );

    // With nothing remembered the host waits for the sign-in, as before.
    let env = Env::new("early-initialize-first");
    let mut p = env.spawn(&[&tb.url()], &[("MCP_BROWSER_DELAY_MS", "2000")]);
    p.send(common::oauth::initialize_request()).await;
    assert!(
        p.recv_within(std::time::Duration::from_millis(1500))
            .await
            .is_none(),
        "no answer before the sign-in"
    );
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(r.get("result").is_some());
    p.close().await;
}
