//! OAuth sign-in against the `@modelcontextprotocol/sdk` example server
//! `simpleStreamableHttp --oauth` (SDK 1.32.2, started by
//! `tests/interop/sdk-oauth-server.sh`):
//!
//!   host (this test) ⇄ stdio ⇄ proxy ⇄ HTTP ⇄ example MCP server + demo AS
//!
//! The demo AS registers any client (DCR) and approves `/authorize` at once
//! (302 to the callback), so `tests/interop/browser.sh` as `$BROWSER` (a GET
//! that follows redirects) stands in for the user. Each browser open is one
//! line in the shim's `MCP_BROWSER_LOG`.
//!
//! * `sign_in_once_then_reuse_tokens`: a first start with a fresh
//!   `MCP_REMOTE_CONFIG_DIR` opens the browser exactly once and then
//!   tools/list and tools/call work; a second start with the same config dir
//!   opens no browser and works; a start with `--clean` opens the browser once
//!   more; a start after that opens none. The `--clean` part is skipped for the
//!   Node reference (a proxy path under `node_modules/`), which has no
//!   `--clean`; `SDK_OAUTH_TEST_CLEAN=1`/`0` forces it on/off.
//! * `sign_in_with_strict_resource_check`: the server's `--oauth-strict`: the
//!   authorization request must carry `resource=http://localhost:<port>/mcp`
//!   (RFC 8707; checked again when the code is exchanged, and the token is
//!   bound to it at /mcp); also asserted on the URL the browser got.
//!
//! The proxy gets the URL `http://localhost:<port>/mcp` (the example's
//! metadata always says localhost: with 127.0.0.1 the PRM `resource` would not
//! match) and no `--allow-http` (mcp-remote allows plain HTTP to localhost).
//! Desktop variables (DISPLAY, XDG_CURRENT_DESKTOP, ...) are removed from the
//! proxy's environment so that Node mcp-remote's `open` → bundled `xdg-open`
//! falls through to `$BROWSER` and no real browser ever starts.
//!
//! Proxy: `$MCP_REMOTE_BIN` (e.g. `.interop/node_modules/.bin/mcp-remote`) or
//! this package's `mcp-remote`. Logs: `target/tmp/interop-sdk-oauth/`.

mod interop_common;

use interop_common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

const SERVER_NAME: &str = "simple-streamable-http-server";

/// Desktop variables that make xdg-open (used by Node mcp-remote through the
/// `open` package) pick a desktop opener instead of `$BROWSER`.
const DESKTOP_VARS: &[&str] = &[
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_DESKTOP",
    "DESKTOP_SESSION",
    "KDE_FULL_SESSION",
    "GNOME_DESKTOP_SESSION_ID",
    "MATE_DESKTOP_SESSION_ID",
    "LXQT_SESSION_CONFIG",
    "DBUS_SESSION_BUS_ADDRESS",
];

fn sdk_example_js() -> PathBuf {
    interop_prefix().join(
        "node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js",
    )
}

fn browser_shim() -> PathBuf {
    repo_root().join("tests/interop/browser.sh")
}

/// `GET <path>` on 127.0.0.1:port: (status, body), or None.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let text = http_raw(port, &req)?;
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Ready when the PRM answers 200 and the AS it names serves its metadata.
fn sdk_oauth_ready(port: u16) -> bool {
    let Some((200, prm)) = http_get(port, "/.well-known/oauth-protected-resource/mcp") else {
        return false;
    };
    let Ok(prm) = serde_json::from_str::<Value>(&prm) else {
        return false;
    };
    let Some(as_port) = prm["authorization_servers"][0]
        .as_str()
        .and_then(|s| s.rsplit_once(':'))
        .and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok())
    else {
        return false;
    };
    matches!(
        http_get(as_port, "/.well-known/oauth-authorization-server"),
        Some((200, _))
    )
}

/// Starts `sdk-oauth-server.sh [--strict]` on free ports (the MCP port from
/// [`start_server`], the AS port picked here).
fn start_sdk_oauth(logs: &Path, strict: bool) -> Server {
    if let Err(e) = ensure_installed(&|| sdk_example_js().is_file(), logs) {
        panic!("setup: {e}");
    }
    let script = repo_root().join("tests/interop/sdk-oauth-server.sh");
    let command = |port: u16| {
        let mut auth_port = free_port();
        while auth_port == port {
            auth_port = free_port();
        }
        let mut c = std::process::Command::new("bash");
        c.arg(&script)
            .env("MCP_PORT", port.to_string())
            .env("MCP_AUTH_PORT", auth_port.to_string())
            .env("NODE", node_bin());
        if strict {
            c.arg("--strict");
        }
        c
    };
    start_server(&ServerSpec {
        name: if strict {
            "sdk-oauth-strict"
        } else {
            "sdk-oauth"
        },
        logs,
        command: &command,
        ready: &sdk_oauth_ready,
        url: &|port| format!("http://localhost:{port}/mcp"),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// One proxy run: `$MCP_REMOTE_BIN <url> <args…>` with the given config dir
/// and the browser shim.
struct Run<'a> {
    name: &'a str,
    server: &'a Server,
    cfg: &'a Path,
    browser_log: &'a Path,
    args: &'a [&'a str],
    logs: &'a Path,
    /// Another proxy than the one under test (the Node mcp-remote, for compatibility).
    bin: Option<PathBuf>,
}

async fn spawn_proxy(r: &Run<'_>) -> Host {
    let bin = r.bin.clone().unwrap_or_else(proxy_bin);
    let stderr_log = r.logs.join(format!("proxy-{}.stderr.log", r.name));
    let errf = std::fs::File::create(&stderr_log).expect("stderr log");
    let mut cmd = Command::new(&bin);
    cmd.arg(&r.server.url)
        .args(r.args)
        .env("MCP_REMOTE_CONFIG_DIR", r.cfg)
        .env("BROWSER", browser_shim())
        .env("MCP_BROWSER_LOG", r.browser_log)
        .env("MCP_BROWSER_TRACE", r.logs.join("browser-trace.log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(errf))
        .kill_on_drop(true);
    for v in DESKTOP_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn proxy {}: {e}", bin.display()));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::with_capacity(1 << 16, stdout).lines();
        loop {
            let item = match lines.next_line().await {
                Ok(Some(line)) => match serde_json::from_str::<Value>(&line) {
                    Err(e) => Incoming::Bad(format!("not JSON ({e}): {line:.300}")),
                    Ok(v) => match check_envelope(&v) {
                        Ok(()) => Incoming::Msg(v),
                        Err(e) => Incoming::Bad(format!("not JSON-RPC 2.0 ({e}): {line:.300}")),
                    },
                },
                Ok(None) => Incoming::Eof,
                Err(e) => Incoming::Bad(format!("unreadable stdout line: {e}")),
            };
            let end = matches!(item, Incoming::Eof);
            if tx.send(item).is_err() || end {
                return;
            }
        }
    });
    Host {
        name: r.name.to_string(),
        child,
        stdin,
        rx,
        stderr_log,
        url: r.server.url.clone(),
        server_log: r.server.log.clone(),
        server_name: SERVER_NAME.to_string(),
        proxy_args: r.args.iter().map(|s| s.to_string()).collect(),
        seq: 0,
        notifications: Vec::new(),
        held: Default::default(),
        server_requests: Vec::new(),
        stash: Default::default(),
        responder: default_responder(),
        recent: Default::default(),
    }
}

fn browser_opens(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// initialize, tools/list (must offer `greet`), tools/call greet; then close.
/// Returns the number of browser opens during the run.
async fn session(r: &Run<'_>) -> usize {
    let before = browser_opens(r.browser_log).len();
    let mut h = spawn_proxy(r).await;
    h.initialize().await;
    let tools = h.call(json!(1), "tools/list", json!({})).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.contains(&"greet"),
        "tools/list has no greet: {names:?}\n{}",
        h.ctx()
    );
    let res = h.tool(json!(2), "greet", json!({"name": "oauth"})).await;
    assert!(
        text_of(&res).contains("oauth"),
        "greet result: {}\n{}",
        short(&res),
        h.ctx()
    );
    h.finish().await;
    browser_opens(r.browser_log).len() - before
}

/// The percent-decoded value of `key` in the URL's query (`+` is a space).
fn query_param(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    let raw = query.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn node_reference(proxy: &Path) -> bool {
    proxy.components().any(|c| c.as_os_str() == "node_modules")
}

fn run_clean_phase() -> bool {
    match std::env::var("SDK_OAUTH_TEST_CLEAN").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => !node_reference(&proxy_bin()),
    }
}

fn fresh_dir(path: PathBuf) -> PathBuf {
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("create dir");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_once_then_reuse_tokens() {
    let logs = fresh_dir(log_dir("interop-sdk-oauth").join("reuse"));
    let server = start_sdk_oauth(&logs, false);
    let cfg = fresh_dir(logs.join("config"));
    let browser_log = logs.join("browser.log");
    let run = |name, args| Run {
        name,
        server: &server,
        cfg: &cfg,
        browser_log: &browser_log,
        args,
        logs: &logs,
        bin: None,
    };
    let ctx = |what: &str| {
        format!(
            "{what}\n  browser log: {}\n  browser trace: {}\n  server log: {}\n  proxy stderr: {}/proxy-*.stderr.log",
            browser_log.display(),
            logs.join("browser-trace.log").display(),
            server.log.display(),
            logs.display()
        )
    };
    with_budget(async {
        let opened = session(&run("1-fresh", &[])).await;
        assert_eq!(
            opened,
            1,
            "{}",
            ctx("first start (fresh config dir): browser opens")
        );
        let url = browser_opens(&browser_log).pop().unwrap_or_default();
        assert!(
            url.contains("/authorize?") && url.contains("code_challenge_method=S256"),
            "authorization URL: {url}"
        );
        assert!(
            !files_under(&cfg).is_empty(),
            "{}",
            ctx("nothing stored in MCP_REMOTE_CONFIG_DIR after sign-in")
        );

        let opened = session(&run("2-reuse", &[])).await;
        assert_eq!(
            opened,
            0,
            "{}",
            ctx("second start (same config dir): browser opens")
        );

        if run_clean_phase() {
            let opened = session(&run("3-clean", &["--clean"])).await;
            assert_eq!(opened, 1, "{}", ctx("start with --clean: browser opens"));
            let opened = session(&run("4-after-clean", &[])).await;
            assert_eq!(opened, 0, "{}", ctx("start after --clean: browser opens"));
        } else {
            eprintln!(
                "skipping the --clean phase for {} (Node reference has no --clean)",
                proxy_bin().display()
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_strict_resource_check() {
    let logs = fresh_dir(log_dir("interop-sdk-oauth").join("strict"));
    let server = start_sdk_oauth(&logs, true);
    let cfg = fresh_dir(logs.join("config"));
    let browser_log = logs.join("browser.log");
    with_budget(async {
        let opened = session(&Run {
            name: "strict",
            server: &server,
            cfg: &cfg,
            browser_log: &browser_log,
            args: &[],
            logs: &logs,
            bin: None,
        })
        .await;
        assert_eq!(
            opened,
            1,
            "browser opens (log {}, server log {})",
            browser_log.display(),
            server.log.display()
        );
        let url = browser_opens(&browser_log).pop().unwrap_or_default();
        assert_eq!(
            query_param(&url, "resource").as_deref(),
            Some(server.url.as_str()),
            "resource parameter of the authorization URL {url}"
        );
    })
    .await;
}

/// A token folder the Node mcp-remote 0.15.1 wrote is used as it is: same
/// folder layout, same per-server key, same file format — no new sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_written_by_node_mcp_remote_are_used_without_signing_in() {
    let node = interop_prefix().join("node_modules/.bin/mcp-remote");
    if node_reference(&proxy_bin()) {
        return; // the proxy under test is the Node one itself
    }
    let logs = fresh_dir(log_dir("interop-sdk-oauth").join("compat"));
    let server = start_sdk_oauth(&logs, false);
    let cfg = fresh_dir(logs.join("config"));
    let browser_log = logs.join("browser.log");
    let opened = session(&Run {
        name: "node",
        server: &server,
        cfg: &cfg,
        browser_log: &browser_log,
        args: &[],
        logs: &logs,
        bin: Some(node),
    })
    .await;
    assert_eq!(opened, 1, "the Node mcp-remote signed in once");
    let opened = session(&Run {
        name: "rust",
        server: &server,
        cfg: &cfg,
        browser_log: &browser_log,
        args: &[],
        logs: &logs,
        bin: None,
    })
    .await;
    assert_eq!(opened, 0, "our binary used the Node sign-in");
}
