//! Sign-in against the loopback testbed's authorization server, through the
//! binary, with the headless `mcp-browser` as `$BROWSER`: staying signed in,
//! refresh, re-authorization, several copies at once, the callback port, and
//! the issuer check on the callback (forged, replayed and flooding callbacks are
//! in `hostile_input.rs`).

mod common;

use common::oauth::{browser, initialize, protected, Env};
use common::{call, text, Proxy};
use serde_json::json;
use std::time::Duration;
use testbed::{AuthConfig, AuthorizeBehaviour, Config, Testbed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_once_stays_signed_in_and_clean_signs_in_again() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("once");
    let mut p = env.spawn(&[&tb.url()], &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("result").is_some(), "{r}");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text":"signed in"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "signed in");
    p.close().await;
    assert_eq!(env.launches(), 1, "one browser launch");
    assert_eq!(tb.authorize_count(), 1);
    // Every request after sign-in carried the token (D27).
    let token = env.stored("_tokens.json").expect("tokens saved")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    let after: Vec<_> = tb
        .requests()
        .into_iter()
        .filter(|r| r.path == "/mcp" && r.status != Some(401))
        .collect();
    assert!(
        after
            .iter()
            .all(|r| r.header("authorization") == Some(bearer.as_str())),
        "Bearer on every request"
    );
    // The registration used PKCE S256, a loopback redirect and the resource parameter.
    let authz = &tb.authorize_requests()[0];
    assert_eq!(authz.param("code_challenge_method"), Some("S256"));
    assert_eq!(authz.param("resource"), Some(tb.url().as_str()));
    assert!(authz
        .param("redirect_uri")
        .unwrap()
        .starts_with("http://localhost:"));
    assert!(
        tb.token_requests()
            .iter()
            .all(|t| t.resource.as_deref() == Some(tb.url().as_str())),
        "resource on the token request too"
    );

    // Second start: no browser.
    let mut p = env.spawn(&[&tb.url()], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.close().await;
    assert_eq!(env.launches(), 1, "stored tokens are used");

    // --clean: forget and sign in again.
    let mut p = env.spawn(&[&tb.url(), "--clean"], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.close().await;
    assert_eq!(env.launches(), 2, "--clean signs in anew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_before_expiry_and_keeps_the_rotated_refresh_token() {
    // A 4 s token is refreshed a quarter of its life before it expires (a long-lived
    // one a minute before): after about 3 s here.
    let tb = protected(AuthConfig {
        access_ttl_secs: 4,
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("refresh");
    let mut p = env.spawn(&[&tb.url()], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    let refreshed = |_: &[testbed::Recorded]| {
        tb.token_requests()
            .iter()
            .any(|t| t.grant_type.as_deref() == Some("refresh_token") && t.error.is_none())
    };
    assert!(
        tb.wait_for(refreshed, Duration::from_secs(10)).await,
        "refreshed before expiry"
    );
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text":"after refresh"})))
        .await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "after refresh");
    p.close().await;
    assert_eq!(env.launches(), 1, "no browser for a refresh");
    let latest = tb.issued_access_tokens().last().cloned().unwrap();
    let stored = env.stored("_tokens.json").unwrap();
    assert_eq!(
        stored["refresh_token"].as_str(),
        latest.refresh_token.as_deref(),
        "the rotated refresh token is saved"
    );
    assert_eq!(
        stored["access_token"].as_str(),
        Some(latest.access_token.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_session_refreshes_and_the_request_succeeds() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("midsession");
    let mut p = env.spawn(&[&tb.url()], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    tb.expire_access_tokens();
    p.send(call(1, "echo", json!({"text":"still here"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "still here", "the host sees a success: {r}");
    assert_eq!(env.launches(), 1, "refresh, not a new sign-in");

    // Everything revoked: the refresh fails with invalid_grant ⇒ exactly one new browser sign-in.
    tb.revoke_all_tokens();
    p.send(call(2, "echo", json!({"text":"signed in again"})))
        .await;
    let (r, _) = p.recv_response(&json!(2)).await;
    assert_eq!(text(&r), "signed in again", "{r}");
    assert_eq!(env.launches(), 2);
    assert!(tb
        .token_requests()
        .iter()
        .any(|t| t.error.as_deref() == Some("invalid_grant")));
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_copies_started_together_open_one_tab() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("four");
    let mut copies: Vec<Proxy> = (0..4).map(|_| env.spawn(&[&tb.url()], &[])).collect();
    for p in copies.iter_mut() {
        p.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    }
    for p in copies.iter_mut() {
        let (r, _) = p.recv_response(&json!(0)).await;
        assert!(r.get("result").is_some(), "{r}");
    }
    for p in copies {
        p.close().await;
    }
    assert_eq!(
        env.launches(),
        1,
        "exactly one browser launch for four copies"
    );
    assert_eq!(tb.authorize_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_tab_owner_dies_another_copy_finishes() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("owner");
    let (mut owner, _) = env
        .spawn_awaiting_sign_in(&[&tb.url(), "--auth-timeout", "20"])
        .await;
    let mut other = env.spawn(&[&tb.url(), "--auth-timeout", "20"], &[]);
    let r = tokio::spawn(async move {
        let r = initialize(&mut other).await;
        other.close().await;
        r
    });
    // The owner dies only once the other copy waits on the lock: its initialize was
    // answered 401 (the owner's first), and a sign-in goes for the lock at once after that.
    assert!(
        tb.wait_for(
            |r| r
                .iter()
                .filter(|r| r.method == "POST" && r.status == Some(401))
                .count()
                >= 2,
            common::WAIT
        )
        .await,
        "the other copy was told to sign in"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    owner.child.kill().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), r)
        .await
        .expect("in time")
        .unwrap();
    assert!(r.get("result").is_some(), "the other copy signed in: {r}");
    assert_eq!(env.launches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_moves_to_a_random_one_unless_pinned() {
    let tb = protected(AuthConfig {
        preregistered: Some(("pre-id".into(), "pre-secret".into())),
        ..AuthConfig::default()
    })
    .await;
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = squatter.local_addr().unwrap().port().to_string();
    let env = Env::new("port");
    let mut p = env.spawn(&[&tb.url(), &busy], &[]);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.close().await;
    let redirect = tb.registrations()[0].redirect_uris[0].clone();
    assert!(
        !redirect.contains(&format!(":{busy}/")),
        "moved off the busy port: {redirect}"
    );

    // A pre-registered client pins the redirect URI: a busy port is a clear error.
    let env = Env::new("strict");
    let info = r#"{"client_id":"pre-id","client_secret":"pre-secret"}"#;
    let mut p = env.spawn(&[&tb.url(), &busy, "--static-oauth-client-info", info], &[]);
    let r = initialize(&mut p).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&busy) && message.contains("pinned"), "{r}");
    p.close().await;
    drop(squatter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_iss_is_rejected_and_no_token_is_requested() {
    let tb = protected(AuthConfig {
        authorize_behaviour: AuthorizeBehaviour::WrongIss,
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("iss");
    let mut p = env.spawn(&[&tb.url()], &[]);
    let r = initialize(&mut p).await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("issuer"),
        "{r}"
    );
    p.close().await;
    assert!(
        tb.token_requests().is_empty(),
        "RFC 9207: no token request after a wrong iss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output_through_a_whole_signed_in_session() {
    use base64::Engine as _;
    // A confidential client (HTTP Basic at the token endpoint), tokens refreshed soon
    // (4 s lifetime), a 401 mid-session, then everything revoked: every kind of secret
    // passes through the proxy at the highest verbosity.
    let tb = protected(AuthConfig {
        access_ttl_secs: 4,
        token_endpoint_auth_methods: vec!["client_secret_basic".to_owned()],
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("secrets");
    let mut p = env.spawn(&[&tb.url(), "--debug"], &[]);
    let mut stdout = vec![initialize(&mut p).await];
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    let refreshed = |_: &[testbed::Recorded]| {
        tb.token_requests()
            .iter()
            .any(|t| t.grant_type.as_deref() == Some("refresh_token"))
    };
    assert!(tb.wait_for(refreshed, Duration::from_secs(10)).await);
    let mut exchange = async |p: &mut Proxy, id: u64, tool: &str| {
        p.send(call(id, tool, json!({"text": "x"}))).await;
        let (r, others) = p.recv_response(&json!(id)).await;
        stdout.extend(others);
        stdout.push(r);
    };
    exchange(&mut p, 1, "echo").await;
    tb.expire_access_tokens();
    exchange(&mut p, 2, "echo").await;
    tb.revoke_all_tokens();
    exchange(&mut p, 3, "echo").await;
    exchange(&mut p, 4, "no-such-tool").await;
    let (_, stderr) = p.close().await;
    assert_eq!(
        env.launches(),
        2,
        "signed in, then again after the revocation"
    );
    let ok = |id: u64| stdout.iter().any(|r| r["id"] == id && text(r) == "x");
    assert!((1..=3).all(ok), "each call succeeded: {stdout:?}");

    let mut secrets: Vec<String> = Vec::new();
    for t in tb.issued_access_tokens() {
        secrets.push(t.access_token);
        secrets.extend(t.refresh_token);
    }
    for t in tb.token_requests() {
        for key in ["code", "code_verifier", "refresh_token"] {
            secrets.extend(t.param(key).map(str::to_owned));
        }
    }
    let client = env.stored("_client_info.json").unwrap();
    let id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"]
        .as_str()
        .expect("a confidential client");
    secrets.push(secret.to_owned());
    secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")));
    assert!(
        secrets.len() >= 10,
        "tokens, codes, verifiers, secret: {}",
        secrets.len()
    );
    let debug_log = std::fs::read_dir(env.store())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_debug.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    let listing: String = std::fs::read_dir(env.store())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let answers = serde_json::to_string(&stdout).unwrap();
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "secret on stderr");
        assert!(!debug_log.contains(s.as_str()), "secret in the debug log");
        assert!(!listing.contains(s.as_str()), "secret in a file name");
        assert!(
            !answers.contains(s.as_str()),
            "secret in a message to the host"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(env.store()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for e in std::fs::read_dir(env.store()).unwrap() {
            let e = e.unwrap();
            assert_eq!(
                e.metadata().unwrap().permissions().mode() & 0o777,
                0o600,
                "{:?}",
                e.file_name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_works_on_the_legacy_transport_too() {
    let config = Config {
        auth: Some(AuthConfig::default()),
        transport: testbed::Transport::Legacy,
        ..Config::default()
    };
    let tb = Testbed::start(config).await.unwrap();
    let env = Env::new("legacy");
    // The default strategy: POST /sse gets 401 (sign in), then 404 with the token (fall back).
    let mut p = env.spawn(&[&tb.sse_url()], &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("result").is_some(), "{r}");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text":"legacy and signed in"})))
        .await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "legacy and signed in");
    p.close().await;
    assert_eq!(env.launches(), 1);
    let token = env.stored("_tokens.json").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    let legacy: Vec<_> = tb
        .requests()
        .into_iter()
        .filter(|r| (r.path == "/sse" && r.method == "GET") || r.path == "/messages")
        .collect();
    assert!(!legacy.is_empty());
    assert!(
        legacy
            .iter()
            .all(|r| r.header("authorization") == Some(bearer.as_str())),
        "the stream and every POST carry the token"
    );

    // sse-only: the first thing is the GET of the stream, which gets the 401.
    let env = Env::new("legacy-only");
    let mut p = env.spawn(&[&tb.sse_url(), "--transport", "sse-only"], &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("result").is_some(), "{r}");
    p.close().await;
    assert_eq!(env.launches(), 1);
    assert!(tb
        .requests()
        .iter()
        .any(|r| r.path == "/sse" && r.method == "GET" && r.status == Some(401)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_remote_client_runs_the_whole_sign_in() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("client");
    let (url, config, log, browser) = (tb.url(), env.config(), env.log.clone(), browser());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
            .arg(url)
            .env("MCP_REMOTE_CONFIG_DIR", config)
            .env("BROWSER", browser)
            .env("MCP_BROWSER_LOG", log)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Connected to mcp-testbed")
            && stdout.contains("echo")
            && stdout.contains("test://static/hello"),
        "{stdout}"
    );
    assert_eq!(env.launches(), 1, "one browser sign-in");
}

/// A browser started for sign-in may outlive the proxy (it is the user's browser). It
/// must not hold the host's stdout pipe: after the proxy exits the host sees the end of
/// stdout at once, not when the browser quits (a host waiting for it would hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_outlives_the_proxy_does_not_hold_the_hosts_stdout_open() {
    use tokio::io::AsyncReadExt;
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("browser-outlives");
    let script = env.dir.join("lingering-browser.sh");
    let pid_file = env.dir.join("browser.pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\necho $$ > '{}'\nexec sleep 30\n",
            env.log.display(),
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = env.config();
    let mut p = Proxy::spawn_with_env(
        &[&tb.url()],
        &[
            ("MCP_REMOTE_CONFIG_DIR", config.as_str()),
            ("BROWSER", script.to_str().unwrap()),
        ],
    );
    p.send(common::oauth::initialize_request()).await;
    for _ in 0..200 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let browser_pid = std::fs::read_to_string(&pid_file).expect("the browser was started");
    drop(p.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(10), p.child.wait())
        .await
        .expect("the proxy exits when stdin closes")
        .unwrap();
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(5), p.stdout.read_to_end(&mut rest)).await;
    let _ = std::process::Command::new("kill")
        .arg(browser_pid.trim())
        .status();
    assert!(
        eof.is_ok(),
        "stdout stayed open after the proxy exited ({status}): the browser holds it"
    );
}
