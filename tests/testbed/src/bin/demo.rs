//! `mcp-demo`: the README's first command. Starts the loopback testbed — an MCP
//! server protected by its own OAuth authorization server — runs `mcp-remote
//! <testbed url>` as an MCP host would (a child process spoken to over
//! stdin/stdout), with the headless `mcp-browser` standing in for the user's
//! browser, plays a short session through it and prints every line that crosses
//! the proxy's stdio. The sign-in (discovery, registration, PKCE, the browser
//! redirect, the token exchange) shows on stderr. No network beyond 127.0.0.1.
//!
//! The proxy binary is `$MCP_REMOTE_BIN`, else `mcp-remote` next to this program;
//! the browser is `mcp-browser` next to this program.

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use testbed::{Config, Testbed};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("mcp-demo: {e}");
        std::process::exit(1);
    }
}

fn shorten(line: &str) -> String {
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_owned()
    }
}

async fn run() -> Result<(), String> {
    let proxy = match std::env::var_os("MCP_REMOTE_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name(format!("mcp-remote{}", std::env::consts::EXE_SUFFIX)),
    };
    let browser = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name(format!("mcp-browser{}", std::env::consts::EXE_SUFFIX));
    let config = Config {
        auth: Some(testbed::AuthConfig::default()),
        ..Config::default()
    };
    let tb = Testbed::start(config)
        .await
        .map_err(|e| format!("cannot start the testbed: {e}"))?;
    // A fresh token folder each run, so the sign-in shows every time.
    let tokens = std::env::temp_dir().join(format!("mcp-remote-demo-{}", std::process::id()));
    println!(
        "testbed MCP server (OAuth-protected) listening on {}",
        tb.url()
    );
    println!(
        "host ⇄ {} {}   (sign-in logs on stderr)\n",
        proxy.display(),
        tb.url()
    );
    let mut child = Command::new(&proxy)
        .arg(tb.url())
        .env("MCP_REMOTE_CONFIG_DIR", &tokens)
        .env("BROWSER", &browser)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it first: cargo build --release)",
                proxy.display()
            )
        })?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();

    let script = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"mcp-demo","version":"1.0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello through mcp-remote ✓"}}}),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"slow","arguments":{"ms":300,"steps":3},"_meta":{"progressToken":"p1"}}}),
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sample","arguments":{}}}),
        json!({"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"test://static/hello"}}),
    ];
    for message in script {
        let line = message.to_string();
        println!("host  → {}", shorten(&line));
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let Some(id) = message.get("id").cloned() else {
            continue;
        };
        // Read until this request's answer; answer the server's own requests on the way.
        loop {
            let line = tokio::time::timeout(WAIT, stdout.next_line())
                .await
                .map_err(|_| "no answer within 10 s".to_owned())?
                .map_err(|e| e.to_string())?
                .ok_or("the proxy closed its stdout")?;
            println!("proxy ← {}", shorten(&line));
            let v: Value =
                serde_json::from_str(&line).map_err(|e| format!("stdout is not JSON: {e}"))?;
            if v.get("method").and_then(Value::as_str) == Some("sampling/createMessage") {
                let answer = json!({"jsonrpc":"2.0","id":v["id"],"result":{"role":"assistant","model":"demo","content":{"type":"text","text":"a sample from the host"}}});
                println!("host  → {}", shorten(&answer.to_string()));
                stdin
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if v.get("method").is_none() && v["id"] == id {
                break;
            }
        }
    }
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .map_err(|_| "the proxy did not exit")?
        .map_err(|e| e.to_string())?;
    let seen = tb.requests();
    println!(
        "\nproxy exited with {status}; the server saw {} POSTs, {} GET stream(s), {} DELETE",
        seen.iter()
            .filter(|r| r.method == "POST" && r.path == "/mcp")
            .count(),
        seen.iter()
            .filter(|r| r.method == "GET" && r.path == "/mcp")
            .count(),
        seen.iter().filter(|r| r.method == "DELETE").count()
    );
    println!(
        "signed in with {} browser sign-in, {} token request(s); the tokens were kept in {} (removed now)",
        tb.authorize_count(),
        tb.token_requests().len(),
        tokens.display()
    );
    tb.shutdown();
    let _ = std::fs::remove_dir_all(&tokens);
    Ok(())
}
