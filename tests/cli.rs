//! The command line: help, version, errors, the URL policy, header handling,
//! the debug log, and `mcp-remote-client`.

mod common;

use common::Proxy;
use std::process::{Command, Output};
use testbed::{Config, Testbed};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::binary());
    cmd.args(args).env(
        "MCP_REMOTE_CONFIG_DIR",
        std::env::temp_dir().join("mcp-remote-cli-tests"),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run mcp-remote")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_explains_every_flag_and_version_works() {
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--header",
        "--header-file",
        "--allow-http",
        "--debug",
        "--silent",
        "--transport",
        "--ignore-tool",
        "--connect-timeout",
        "--headers-timeout",
        "--body-timeout",
        "--request-timeout",
        "--max-message-bytes",
        "--enable-proxy",
        "--ipv4",
        "--extra-ca-certs",
        "NODE_EXTRA_CA_CERTS",
        "--host",
        "--callback-path",
        "--auth-timeout",
        "--auth-success-url",
        "--static-oauth-client-metadata",
        "--static-oauth-client-info",
        "--client-metadata-url",
        "--resource",
        "--disable-resource-parameter",
        "--authorize-param",
        "--keep-alive",
        "--ping-interval",
        "--clean",
        "CALLBACK_PORT",
        "MCP_REMOTE_CONFIG_DIR",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_flags_are_errors_with_a_suggestion() {
    let o = run(&["https://example.com/mcp", "--heder", "X: y"], &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--heder") && e.contains("--header"), "{e}");
    // A flag and its value given as one argument (a common config mistake) is not silently ignored.
    let o = run(&["https://example.com/mcp", "--transport sse-only"], &[]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "nothing but JSON-RPC on stdout, ever");
}

#[test]
fn every_sign_in_flag_of_mcp_remote_works_here_too() {
    // Nothing listens on port 9; stdin is closed at once, so the proxy starts and ends.
    for args in [
        &["http://127.0.0.1:9/mcp", "--device-code"][..],
        &["http://127.0.0.1:9/mcp", "--disable-cookies"],
        &["http://127.0.0.1:9/mcp", "--use-id-token"],
        &[
            "http://127.0.0.1:9/mcp",
            "--auth-success-url",
            "http://127.0.0.1:9/ok",
        ],
    ] {
        let o = run(args, &[]);
        let e = stderr(&o);
        assert!(!e.contains("not supported"), "{args:?}: {e}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
    }
}

#[test]
fn sign_in_flags_are_checked() {
    for (args, needle) in [
        (
            &[
                "https://example.com/mcp",
                "--static-oauth-client-info",
                "{}",
            ][..],
            "client_id",
        ),
        (
            &[
                "https://example.com/mcp",
                "--static-oauth-client-info",
                "@/nonexistent/file.json",
            ],
            "cannot read",
        ),
        (
            &["https://example.com/mcp", "--authorize-param", "state=x"],
            "cannot be overridden",
        ),
        (
            &["https://example.com/mcp", "--authorize-param", "novalue"],
            "key=value",
        ),
        (
            &["https://example.com/mcp", "--resource", "not a uri"],
            "absolute URI",
        ),
        (
            &[
                "https://example.com/mcp",
                "--client-metadata-url",
                "http://x.example/c.json",
            ],
            "https",
        ),
        (
            &["https://example.com/mcp", "--client-credentials"],
            "client_secret",
        ),
        (
            &["https://example.com/mcp", "--callback-path", "cb"],
            "start with /",
        ),
    ] {
        let o = run(args, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    let o = run(
        &[
            "https://example.com/mcp",
            "--static-oauth-client-info",
            r#"{"client_id":"c","client_secret":"${NOPE_NOT_SET_77}"}"#,
        ],
        &[],
    );
    assert!(stderr(&o).contains("NOPE_NOT_SET_77"), "{}", stderr(&o));
}

#[test]
fn plain_http_needs_loopback_or_allow_http() {
    let o = run(&["http://example.com/mcp"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--allow-http"), "{}", stderr(&o));
    let o = run(&["ftp://example.com/mcp"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["not a url"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid server URL"));
}

#[test]
fn an_unset_header_variable_is_named_and_values_are_never_shown() {
    let o = run(
        &[
            "https://example.com/mcp",
            "--header",
            "Authorization: Bearer ${NOT_SET_ANYWHERE_42}",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("NOT_SET_ANYWHERE_42") && e.contains("Authorization"),
        "{e}"
    );
    let o = run(
        &["https://example.com/mcp", "--header", "Bad Name: hunter2"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_file_is_read_and_debug_log_is_private_and_secret_free() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-remote-cli-debug-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let headers = dir.join("headers.txt");
    std::fs::write(&headers, "# comment\n\nX-From-File: file-secret-777\n").unwrap();
    let config = dir.join("config");
    let config_str = config.to_str().unwrap().to_owned();
    let mut p = Proxy::spawn_with_env(
        &[
            &tb.url(),
            "--debug",
            "--header-file",
            headers.to_str().unwrap(),
            "--header",
            "Authorization: Bearer ${TOK}",
        ],
        &[
            ("MCP_REMOTE_CONFIG_DIR", &config_str),
            ("TOK", "tok-secret-999"),
        ],
    );
    p.initialize("2025-11-25").await;
    p.send(common::call(
        1,
        "echo",
        serde_json::json!({"text": "body-text-not-for-logs"}),
    ))
    .await;
    p.recv_response(&serde_json::json!(1)).await;
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0));
    assert!(tb
        .requests()
        .iter()
        .all(|r| r.header("x-from-file") == Some("file-secret-777")));
    let store = config.join("mcp-remote-v1");
    let log = std::fs::read_dir(&store)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_debug.log"))
        .expect("debug log");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("tools/call id=1"),
        "one line per message: {text}"
    );
    for secret in [
        "file-secret-777",
        "tok-secret-999",
        "body-text-not-for-logs",
    ] {
        assert!(
            !text.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
    let session = tb.session_ids();
    for s in session {
        assert!(!text.contains(&s), "session id in the debug log");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(stderr.contains("DEBUG"), "--debug adds detail on stderr");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_keeps_stderr_quiet() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let mut p = Proxy::spawn(&[&tb.url(), "--silent"]);
    p.initialize("2025-11-25").await;
    let (_, stderr) = p.close().await;
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_lists_tools_resources_and_prompts() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let url = tb.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
            .arg(url)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Connected to mcp-testbed"), "{text}");
    for name in testbed::TOOL_NAMES {
        assert!(text.contains(name), "tool {name} missing: {text}");
    }
    assert!(
        text.contains("test://static/hello") && text.contains("greeting"),
        "{text}"
    );
    assert!(
        tb.requests().iter().any(|r| r.method == "DELETE"),
        "the client closes its session"
    );

    let out = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
            .arg("http://127.0.0.1:9/mcp")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not connect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_calls_one_tool_and_speaks_json() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    let url = tb.url();
    // --call: the tool's text, exit 0.
    let out = run(vec![
        url.clone(),
        "--call".into(),
        "echo".into(),
        "--args".into(),
        r#"{"text":"called once"}"#.into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("called once"));
    let calls = tb
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("tools/call"))
        .count();
    assert_eq!(calls, 1, "one tools/call, no listing");
    // --json: one document with the server and the lists.
    let out = run(vec![url.clone(), "--json".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["server"]["name"], "mcp-testbed");
    assert_eq!(doc["server"]["protocolVersion"], "2025-11-25");
    let tools: Vec<&str> = doc["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(tools.contains(&"echo"), "{tools:?}");
    assert!(doc["resources"].as_array().is_some_and(|r| !r.is_empty()));
    // --json --call of an unknown tool: the error, exit 1.
    let out = run(vec![
        url.clone(),
        "--json".into(),
        "--call".into(),
        "nosuch".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["error"]["message"].as_str().unwrap().contains("nosuch"));
    // Arguments that are not a JSON object: a usage error before any connection.
    let out = run(vec![
        url,
        "--call".into(),
        "echo".into(),
        "--args".into(),
        "[1]".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON object"));
    // Nothing listening: {"error": …} and exit 1.
    let out = run(vec!["http://127.0.0.1:9/mcp".into(), "--json".into()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not connect"));
}

/// `mcp-remote-client completions` and `man`: made from the clap definitions, so each
/// flag `--help` shows is in them; the bash script parses.
#[test]
fn completions_and_man_pages_cover_every_flag() {
    let client = env!("CARGO_BIN_EXE_mcp-remote-client");
    let help = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 3)
        .map(|w| w.trim_end_matches([',', '.', ')', '=']))
        .filter(|w| {
            w.chars()
                .skip(2)
                .all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect();
    assert!(flags.len() > 30, "{flags:?}");
    let bash = Command::new(client)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).unwrap();
    for flag in &flags {
        assert!(bash.contains(flag), "the bash completion lacks {flag}");
    }
    let script =
        std::env::temp_dir().join(format!("mcp-remote-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &bash).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let zsh = Command::new(client)
        .args(["completions", "zsh", "--program", "mcp-remote-client"])
        .output()
        .unwrap();
    let zsh = String::from_utf8(zsh.stdout).unwrap();
    for word in [
        "#compdef mcp-remote-client",
        "--doctor",
        "--list-servers",
        "config",
        "--force",
    ] {
        assert!(zsh.contains(word), "the zsh completion lacks {word}");
    }
    let bad = Command::new(client)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let dir = std::env::temp_dir().join(format!("mcp-remote-man-{}", std::process::id()));
    let man = Command::new(client).arg("man").arg(&dir).output().unwrap();
    assert!(
        man.status.success(),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
    let page = std::fs::read_to_string(dir.join("mcp-remote.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH mcp-remote"),
        "{}",
        &page[..200.min(page.len())]
    );
    for flag in &flags {
        let roff = flag.replace('-', "\\-");
        assert!(page.contains(&roff), "the man page lacks {flag}");
    }
    let client_page = std::fs::read_to_string(dir.join("mcp-remote-client.1")).unwrap();
    assert!(client_page.contains("\\-\\-doctor") && client_page.contains("config"));
    let _ = std::fs::remove_dir_all(&dir);
}
