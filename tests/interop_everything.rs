//! Interop test: this test plays the MCP *host* and talks newline-delimited
//! JSON-RPC on the proxy's stdin/stdout; the proxy forwards to the reference
//! `@modelcontextprotocol/server-everything` over Streamable HTTP.
//!
//!   host (this test) ⇄ stdio ⇄ proxy under test ⇄ HTTP ⇄ server-everything
//!
//! * Server: `.interop/node_modules/@modelcontextprotocol/server-everything`
//!   (installed by `tests/interop/setup.sh`, which this test runs itself when
//!   the install is missing). One server is started per test process on a free
//!   127.0.0.1 port (`PORT=<p> node -r tests/interop/loopback-only.cjs
//!   dist/index.js streamableHttp`, URL `http://127.0.0.1:<p>/mcp`); it exits
//!   when this process exits (its stdin reaches EOF) or after 10 minutes.
//! * Proxy: `$MCP_REMOTE_BIN` (any program taking the server URL as its first
//!   argument, e.g. `.interop/node_modules/.bin/mcp-remote` for the Node
//!   reference) or else this package's `mcp-remote` binary. Every test spawns
//!   its own proxy (its own MCP session) and kills it at the end, also on
//!   failure (`kill_on_drop`).
//! * Every line the proxy writes to stdout must parse as a JSON-RPC 2.0
//!   message; every wait is bounded.
//! * Logs: `target/tmp/interop-everything/` (server log, one stderr log per
//!   proxy); failure messages name the file.
//! * Selection: all tests are in `everything::`, so
//!   `cargo test --test interop_everything` runs them and
//!   `cargo test -- --skip everything::` leaves them out.
//! * Env: `MCP_REMOTE_BIN` (proxy), `INTEROP_PREFIX` (install dir, default
//!   `$REPO/.interop`).
//!
//! The harness (`Host`, server start-up) is in `interop_common/mod.rs`, the
//! test bodies in `interop_common/everything_suite.rs` (shared with
//! `interop_sse.rs`, which runs them against server-everything's legacy SSE
//! transport).
//!
//! Server facts the tests rely on (server-everything 2026.8.31):
//! * `trigger-sampling-request`, `trigger-elicitation-request` and
//!   `get-roots-list` exist only if `initialize` declared `sampling`,
//!   `elicitation`, `roots`; they are registered when the server handles
//!   `notifications/initialized`.
//! * ~350 ms after `notifications/initialized` the server sends `roots/list`
//!   on the standalone GET SSE stream (as it does logging messages and the
//!   `roots/list` inside `get-roots-list`): those need the proxy's GET
//!   stream. Sampling/elicitation requests travel on the tools/call POST
//!   stream.

mod interop_common;

use interop_common::{
    everything_suite as suite, log_dir, start_everything, start_everything_at, EverythingMode,
    Host, Server, Target,
};
use serde_json::json;
use std::sync::OnceLock;

const LOGS: &str = "interop-everything";

static TARGET: OnceLock<Result<(Server, Target), String>> = OnceLock::new();

/// server-everything in `streamableHttp` mode, started once per test process
/// (it exits with this process); the proxy gets only the URL.
fn target() -> &'static Target {
    let t = TARGET.get_or_init(|| {
        let logs = log_dir(LOGS);
        let server = start_everything(EverythingMode::StreamableHttp, &logs)?;
        let t = Target::new("", &server, &[], &logs, "mcp-servers/everything");
        Ok((server, t))
    });
    match t {
        Ok((_, t)) => t,
        Err(e) => panic!("could not start server-everything: {e}"),
    }
}

// All tests live in `everything::` so they can be selected or skipped as a
// group: `cargo test everything::` / `cargo test -- --skip everything::`.
mod everything {
    use super::*;

    /// server-everything restarted on the same port forgets every session and says so
    /// with 400 "Bad Request: No valid session ID provided" (not the spec's 404): the
    /// proxy re-initializes with the host's own `initialize` and the call goes through,
    /// with default flags. (A server of its own: the shared one must not restart.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_server_is_reinitialized_after_its_400() {
        let logs = log_dir(LOGS);
        let first = start_everything(EverythingMode::StreamableHttp, &logs)
            .unwrap_or_else(|e| panic!("could not start server-everything: {e}"));
        let port = first.port;
        let t = Target::new("restart-", &first, &[], &logs, "mcp-servers/everything");
        let mut h = Host::spawn("restart", &t).await;
        h.initialize().await;
        let r = h.tool(json!(2), "echo", json!({"message": "before"})).await;
        assert_eq!(r["content"][0]["text"], "Echo: before", "{}", h.ctx());
        drop(first); // killed and reaped
        let _second = start_everything_at(EverythingMode::StreamableHttp, &logs, Some(port))
            .unwrap_or_else(|e| panic!("could not restart server-everything on {port}: {e}"));
        let r = h.tool(json!(3), "echo", json!({"message": "after"})).await;
        assert_eq!(
            r["content"][0]["text"],
            "Echo: after",
            "the call after the restart succeeds\n{}",
            h.ctx()
        );
        h.finish().await;
    }

    /// initialize, tools/list, ping, logging/setLevel, and a server notification
    /// on the standalone GET stream (simulated logging).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_tools_list_ping_logging() {
        suite::lifecycle_tools_list_ping_logging(target()).await
    }

    /// Echo of text with \n, U+2028, U+2029, non-ASCII, quotes, controls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_special_characters_exact() {
        suite::echo_special_characters_exact(target()).await
    }

    /// resources list/read/templates, prompts list/get, completion.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resources_prompts_completion() {
        suite::resources_prompts_completion(target()).await
    }

    /// sampling/createMessage and elicitation/create issued by the server while
    /// a tools/call is in flight; the host answers on stdin and the tool result
    /// must reflect the answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sampling_and_elicitation_round_trips() {
        suite::sampling_and_elicitation_round_trips(target()).await
    }

    /// roots/list: the server asks right after initialization (held by the
    /// host), then again inside get-roots-list; after roots/list_changed it asks
    /// once more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roots_round_trips() {
        suite::roots_round_trips(target()).await
    }

    /// Two long-running calls at once, one with a string and one with an
    /// integer progressToken: each gets its progress notifications, all before
    /// its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_before_result() {
        suite::progress_before_result(target()).await
    }

    /// 200 tools/call lines written in one go; each answered exactly once with
    /// the matching id (numbers and strings) and matching content.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_200_calls() {
        suite::pipelined_200_calls(target()).await
    }

    /// 1 MiB each way: echo of a >1 MiB string (mixed multi-byte text with
    /// U+2028 and newlines), and gzip-file-as-resource of 768 KiB random bytes
    /// sent as a ~1 MiB data: URI, returning a ~1 MiB base64 blob whose gzip
    /// trailer (CRC-32, size) must match what was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_mebibyte_each_way() {
        suite::one_mebibyte_each_way(target()).await
    }

    /// `mcp-remote-client --doctor` against the reference server passes every step
    /// and names it; `--call` runs one of its tools.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_doctor_passes_every_step_and_one_tool_is_called() {
        let url = target().url.clone();
        let dir = log_dir(LOGS).join("doctor-config");
        let _ = std::fs::remove_dir_all(&dir);
        let run = |args: Vec<String>| {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_mcp-remote-client"))
                    .args(&args)
                    .env("MCP_REMOTE_CONFIG_DIR", &dir)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap()
            })
        };
        let out = run(vec![url.clone(), "--doctor".into(), "--json".into()])
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{doc:#}");
        assert_eq!(doc["passed"], true);
        let step = |name: &str| {
            doc["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["step"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name} step: {doc:#}"))
        };
        for name in ["url", "tcp", "transport", "initialize", "tools/list"] {
            assert_eq!(step(name)["outcome"], "passed", "{name}: {doc:#}");
        }
        assert!(step("initialize")["detail"]
            .as_str()
            .unwrap()
            .contains("mcp-servers/everything"));
        assert!(step("tools/list")["detail"]
            .as_str()
            .unwrap()
            .contains("echo"));

        let out = run(vec![
            url,
            "--call".into(),
            "echo".into(),
            "--args".into(),
            r#"{"message":"from the client"}"#.into(),
            "--json".into(),
        ])
        .await
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{doc:#}");
        assert_eq!(doc["result"]["content"][0]["text"], "Echo: from the client");
    }
}
