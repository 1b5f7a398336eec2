//! Stored credentials through the binary, against loopback authorization servers:
//! they go only to the authorization server that issued them (a server that moves to
//! another one gets a new registration and sign-in there, never the old refresh
//! token, client id or secret), they survive every passing failure byte for byte and
//! are forgotten only on the authorization server's definitive answer, and several
//! copies with short-lived, rotating tokens share one sign-in.

mod common;

use common::oauth::{initialize, protected, Env};
use common::{call, text, Proxy};
use serde_json::{json, Value};
use std::time::Duration;
use testbed::{AuthConfig, Testbed};

/// Makes the stored access token expired, so the next start refreshes first.
fn expire_stored_tokens(env: &Env) {
    let path = env.stored_path("_tokens.json").expect("tokens stored");
    let mut tokens: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tokens["expires_at"] = json!(1000);
    std::fs::write(&path, serde_json::to_vec_pretty(&tokens).unwrap()).unwrap();
}

/// Signs in once through `tb` and makes one call; returns what was stored.
async fn sign_in_once(env: &Env, tb: &Testbed, extra: &[&str]) -> (Value, Value) {
    let url = tb.url();
    let mut args = vec![url.as_str()];
    args.extend_from_slice(extra);
    let mut p = env.spawn(&args, &[]);
    let r = initialize(&mut p).await;
    if r.get("result").is_none() {
        let (_, stderr) = p.close().await;
        panic!("{r}\n{stderr}");
    }
    p.send(call(1, "echo", json!({"text":"first"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "first", "{r}");
    p.close().await;
    (
        env.stored("_tokens.json").expect("tokens"),
        env.stored("_client_info.json").unwrap_or(Value::Null),
    )
}

/// Every secret-bearing string the second authorization server saw: registrations,
/// authorization requests and token requests (form, client id, Basic credentials).
fn everything_seen_by(tb: &Testbed) -> String {
    let mut seen = String::new();
    for r in tb.registrations() {
        seen.push_str(&r.request.to_string());
    }
    for a in tb.authorize_requests() {
        seen.push_str(&format!("{:?}", a.params));
    }
    for t in tb.token_requests() {
        seen.push_str(&format!("{:?} {:?}", t.params, t.client_id));
    }
    for r in tb.requests() {
        seen.push_str(&format!("{r:?}"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_moves_to_another_authorization_server_gets_none_of_the_old_credentials() {
    for variant in ["client with issuer", "client without issuer (Node file)"] {
        let first = protected(AuthConfig::default()).await;
        let second = protected(AuthConfig::default()).await;
        let env = Env::new(&format!("moved-{}", variant.len()));
        let (tokens, client) = sign_in_once(&env, &first, &[]).await;
        assert_eq!(tokens["issuer"], json!(first.issuer()));
        assert_eq!(client["issuer"], json!(first.issuer()));
        let old_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        let old_client = client["client_id"].as_str().unwrap().to_owned();
        if variant.contains("without") {
            let path = env.stored_path("_client_info.json").unwrap();
            let mut c = client.clone();
            c.as_object_mut().unwrap().remove("issuer");
            std::fs::write(&path, c.to_string()).unwrap();
        }
        expire_stored_tokens(&env);
        // The server moves: its metadata names the second authorization server, it
        // accepts that server's tokens, and the first one's are gone.
        first.set_auth(|a| a.authorization_server = Some(second.issuer()));
        first.trust_tokens_of(&second);
        first.revoke_all_tokens();

        let mut p = env.spawn(&[&first.url()], &[]);
        assert!(
            initialize(&mut p).await.get("result").is_some(),
            "{variant}"
        );
        p.send(call(2, "echo", json!({"text":"moved"}))).await;
        let (r, _) = p.recv_response(&json!(2)).await;
        assert_eq!(text(&r), "moved", "{variant}: {r}");
        p.close().await;

        assert_eq!(
            second.registrations().len(),
            1,
            "{variant}: one new registration"
        );
        assert_eq!(second.authorize_count(), 1, "{variant}: one sign-in there");
        let seen = everything_seen_by(&second);
        assert!(
            !seen.contains(&old_refresh),
            "{variant}: old refresh token sent"
        );
        assert!(!seen.contains(&old_client), "{variant}: old client id sent");
        if let Some(secret) = client["client_secret"].as_str() {
            assert!(!seen.contains(secret), "{variant}: old client secret sent");
        }
        let stored = env.stored("_tokens.json").unwrap();
        assert_eq!(stored["issuer"], json!(second.issuer()), "{variant}");
        assert_eq!(
            env.stored("_client_info.json").unwrap()["issuer"],
            json!(second.issuer())
        );
        if variant.contains("without") {
            // An unbound client never left this machine.
            assert!(first
                .token_requests()
                .iter()
                .all(|t| t.grant_type.as_deref() != Some("refresh_token")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_client_is_never_sent_to_another_authorization_server() {
    let auth = AuthConfig {
        preregistered: Some(("static-id".into(), "static-secret".into())),
        ..AuthConfig::default()
    };
    let first = protected(auth.clone()).await;
    let second = protected(auth).await;
    let env = Env::new("moved-static");
    let info = r#"{"client_id":"static-id","client_secret":"static-secret"}"#;
    // A pinned redirect URI needs its port free: not the default one other tests use.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let flags = [port.as_str(), "--static-oauth-client-info", info];
    sign_in_once(&env, &first, &flags).await;
    expire_stored_tokens(&env);
    first.set_auth(|a| a.authorization_server = Some(second.issuer()));
    first.trust_tokens_of(&second);
    first.revoke_all_tokens();

    let url = first.url();
    let mut args = vec![url.as_str()];
    args.extend_from_slice(&flags);
    let mut p = env.spawn(&args, &[]);
    let r = sign_in_answer(&mut p).await;
    p.close().await;
    let message = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("--static-oauth-client-info") && message.contains(&second.issuer()),
        "a clear error naming the flag and the new server: {r}"
    );
    let seen = everything_seen_by(&second);
    assert!(!seen.contains("static-id") && !seen.contains("static-secret"));
    assert!(second.token_requests().is_empty() && second.authorize_count() == 0);
}

/// Starts a proxy on stored, expired tokens whose refresh cannot happen for a
/// passing reason, asks for a tool call, and returns the call's answer.
async fn refresh_fails(env: &Env, tb: &Testbed, extra: &[&str]) -> Value {
    let url = tb.url();
    let mut args = vec![url.as_str()];
    args.extend_from_slice(extra);
    let mut p = env.spawn(&args, &[("MCP_BROWSER_NO_FOLLOW", "1")]);
    let r = sign_in_answer(&mut p).await;
    p.close().await;
    r
}

/// What the host hears of a sign-in its `initialize` needed: the `initialize`'s own
/// answer, or — when the server's answer was remembered and given at once — the
/// answer to the tool call it sends next, which waits for the sign-in.
async fn sign_in_answer(p: &mut Proxy) -> Value {
    p.send(common::oauth::initialize_request()).await;
    let (r, _) = p.recv_response(&json!(0)).await;
    if r.get("error").is_some() {
        return r;
    }
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(call(1, "echo", json!({"text": "after sign-in"})))
        .await;
    let (r, _) = p.recv_response(&json!(1)).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_refresh_failures_keep_the_tokens_byte_for_byte() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("transient");
    sign_in_once(&env, &tb, &[]).await;
    expire_stored_tokens(&env);
    tb.expire_access_tokens();
    let path = env.stored_path("_tokens.json").unwrap();
    let before = std::fs::read(&path).unwrap();
    let launches = env.launches();

    // The metadata answers 503.
    tb.set_auth(|a| a.metadata_status = Some(503));
    let r = refresh_fails(&env, &tb, &[]).await;
    assert!(r.get("error").is_some(), "{r}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "503 on the metadata");
    tb.set_auth(|a| a.metadata_status = None);

    // The token endpoint refuses connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    tb.set_auth(|a| {
        a.metadata_overrides
            .insert("token_endpoint".into(), json!(dead));
    });
    refresh_fails(&env, &tb, &[]).await;
    assert_eq!(std::fs::read(&path).unwrap(), before, "token endpoint down");
    tb.set_auth(|a| a.metadata_overrides.clear());

    // Another process holds the lock past --auth-timeout.
    let lock_path = env.stored_path("_lock").expect("lock file");
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.lock().unwrap();
    let r = refresh_fails(&env, &tb, &["--auth-timeout", "2"]).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("another mcp-remote"),
        "{r}"
    );
    drop(holder);
    assert_eq!(std::fs::read(&path).unwrap(), before, "lock held");
    assert_eq!(env.launches(), launches, "no browser for a passing failure");
    assert!(tb
        .token_requests()
        .iter()
        .all(|t| t.error.as_deref() != Some("invalid_grant")));

    // invalid_grant, and only that, forgets them (and signs in again).
    tb.revoke_all_tokens();
    let mut p = env.spawn(&[&tb.url()], &[]);
    let r = sign_in_answer(&mut p).await;
    assert_eq!(text(&r), "after sign-in", "{r}");
    p.close().await;
    assert!(tb
        .token_requests()
        .iter()
        .any(|t| t.error.as_deref() == Some("invalid_grant")));
    assert_ne!(std::fs::read(&path).unwrap(), before);
    assert_eq!(env.launches(), launches + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_copies_with_three_second_tokens_share_one_sign_in() {
    let tb = protected(AuthConfig {
        access_ttl_secs: 3,
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("four-short");
    let mut copies: Vec<Proxy> = (0..4).map(|_| env.spawn(&[&tb.url()], &[])).collect();
    for p in copies.iter_mut() {
        p.send(common::oauth::initialize_request()).await;
    }
    for p in copies.iter_mut() {
        let (r, _) = p.recv_response(&json!(0)).await;
        assert!(r.get("result").is_some(), "{r}");
        p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
    }
    // A call per second from each copy for 20 s: every token lives 3 s.
    for round in 0..20u64 {
        for (i, p) in copies.iter_mut().enumerate() {
            let id = round * 10 + i as u64 + 1;
            p.send(call(id, "echo", json!({"text": format!("{id}")})))
                .await;
        }
        for (i, p) in copies.iter_mut().enumerate() {
            let id = round * 10 + i as u64 + 1;
            let (r, _) = p.recv_response(&json!(id)).await;
            assert_eq!(text(&r), format!("{id}"), "copy {i}, round {round}: {r}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for p in copies {
        p.close().await;
    }
    assert_eq!(env.launches(), 1, "one browser sign-in in all");
    let mut used: Vec<String> = tb
        .token_requests()
        .iter()
        .filter(|t| t.grant_type.as_deref() == Some("refresh_token"))
        .filter_map(|t| t.param("refresh_token").map(str::to_owned))
        .collect();
    assert!(used.len() >= 4, "tokens were refreshed: {}", used.len());
    let n = used.len();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), n, "no refresh token used twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_with_stderr_full_still_answers_and_exits() {
    use std::io::Write;
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("stderr-full");
    let (reader, mut writer) = std::io::pipe().unwrap();
    let writer_for_child = writer.try_clone().unwrap();
    // Fill the pipe (64 KiB on Linux) before the proxy starts: its first write to
    // stderr would block forever.
    let mut filled = 0usize;
    let chunk = [b'x'; 4096];
    let (tx, rx) = std::sync::mpsc::channel();
    let filler = std::thread::spawn(move || {
        while writer.write_all(&chunk).is_ok() {
            filled += chunk.len();
            let _ = tx.send(filled);
        }
    });
    // The filler blocks once the pipe is full (and stays blocked until the test ends).
    let mut last = 0;
    while let Ok(n) = rx.recv_timeout(Duration::from_millis(300)) {
        last = n;
    }
    assert!(last >= 4096, "the pipe took {last} bytes");
    let _ = filler;
    let browser = common::oauth::browser();
    let mut child = tokio::process::Command::new(common::binary())
        .args([tb.url().as_str(), "--auth-timeout", "3"])
        .env("MCP_REMOTE_CONFIG_DIR", env.config())
        .env("BROWSER", &browser)
        .env("MCP_BROWSER_LOG", &env.log)
        .env("MCP_BROWSER_NO_FOLLOW", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(writer_for_child)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let line = format!("{}\n", common::oauth::initialize_request());
    stdin.write_all(line.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut answer))
        .await
        .expect("an answer although stderr is full")
        .unwrap();
    let r: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--auth-timeout"),
        "{r}"
    );
    assert!(env.launches() >= 1, "the browser was opened");
    let url_file = env.stored_path("_authorize_url.txt");
    assert!(url_file.is_none(), "the URL file is removed with the flow");
    drop(stdin);
    let closed = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after stdin closes although stderr is full")
        .unwrap();
    assert!(status.success(), "{status:?}");
    eprintln!(
        "exit after stdin EOF with stderr full: {:?}",
        closed.elapsed()
    );
    drop(reader);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_folder_is_private_and_no_file_in_it_follows_a_symlink() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tb = Testbed::start(testbed::Config::default()).await.unwrap();
    let env = Env::new("folder");
    let store = env.store();
    std::fs::create_dir_all(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut p = env.spawn(&[&tb.url(), "--debug"], &[]);
    p.initialize("2025-11-25").await;
    let (_, stderr) = p.close().await;
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "narrowed");
    assert!(stderr.contains("made it private (700)"), "{stderr}");

    // The debug log replaced by a symlink to another file: that file is never written.
    let log = env.stored_path("_debug.log").expect("a debug log");
    let victim = env.dir.join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let mut p = env.spawn(&[&tb.url(), "--debug"], &[]);
    p.initialize("2025-11-25").await;
    let (_, stderr) = p.close().await;
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(stderr.contains("cannot open the debug log"), "{stderr}");

    // A folder another user owns is refused before anything is read or written.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        std::os::unix::fs::chown(&store, Some(65534), None).unwrap();
        let p = env.spawn(&[&tb.url()], &[]);
        let (code, stderr) = p.close().await;
        assert_eq!(code, Some(1));
        assert!(stderr.contains("belongs to another user"), "{stderr}");
        std::os::unix::fs::chown(&store, Some(0), None).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_server_cannot_point_sign_in_at_a_private_or_metadata_address() {
    // The MCP server has a public name: the client reaches it through a forward
    // proxy that maps `mcp.example` to the loopback testbed.
    let tb = protected(AuthConfig::default()).await;
    let proxy = testbed::ForwardProxy::start().await.unwrap();
    let address: std::net::SocketAddr = tb.origin().trim_start_matches("http://").parse().unwrap();
    proxy.alias("mcp.example", address);
    let url = format!("http://mcp.example:{}/mcp", address.port());
    let proxy_url = proxy.url();
    let proxy_env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("NO_PROXY", ""),
    ];
    for (target, class) in [
        (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "link-local or cloud-metadata",
        ),
        (
            "http://10.1.2.3/.well-known/oauth-protected-resource",
            "private-network",
        ),
        (
            "http://[fd00:ec2::254]/latest/meta-data/",
            "private-network",
        ),
    ] {
        tb.set_auth(|a| a.prm_urls = vec![testbed::PrmUrl::Custom(target.into())]);
        let env = Env::new(&format!("private-{}", class.len()));
        let mut p = env.spawn(&[&url, "--allow-http", "--enable-proxy"], &proxy_env);
        let r = initialize(&mut p).await;
        p.close().await;
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(class) && message.contains("--allow-private-network"),
            "{target}: {r}"
        );
        let host = url::Url::parse(target)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        assert!(
            proxy.seen().iter().all(|s| !s.target.contains(&host)),
            "{target} was fetched: {:?}",
            proxy.seen()
        );
        assert!(
            proxy
                .seen()
                .iter()
                .any(|s| s.target.contains("mcp.example")),
            "the server itself was reached through the proxy"
        );
    }
}
