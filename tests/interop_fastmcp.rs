//! Interop test against a Python FastMCP server (PyPI `mcp`, pinned in
//! `tests/interop/setup.sh`) speaking the legacy HTTP+SSE transport:
//!
//!   host (this test) ⇄ stdio ⇄ proxy ⇄ GET /sse + POST /messages/ ⇄ FastMCP
//!
//! * Server: `.interop/venv/bin/python tests/interop/fastmcp_server.py <p>`
//!   (`FastMCP(...).run(transport="sse")` on 127.0.0.1), one per test
//!   process, URL `http://127.0.0.1:<p>/sse`. Ready when `POST /sse` answers
//!   405 (the route is GET-only; `Allow: GET, HEAD`); stderr also shows
//!   `Uvicorn running on http://127.0.0.1:<p>`. `GET /sse` answers 200
//!   `text/event-stream`, first event `endpoint` with data
//!   `/messages/?session_id=<32 hex>`; POSTs there answer 202 and every
//!   server→client message comes as `event: message` on the GET stream.
//! * Each test runs twice: `fallback::*` gives the proxy only the URL (the
//!   default http-first strategy must fall back on the 405), `sse_only::*`
//!   adds `--transport sse-only`. `server_facts::*` checks the server alone.
//! * FastMCP facts the tests rely on (mcp 1.30.0): the server declares no
//!   `logging` capability (so `logging/setLevel` is -32601 "Method not found",
//!   while an unknown method is -32602 "Invalid request parameters") but
//!   `ctx.info()` & co. still send `notifications/message`, on the GET
//!   stream before the tool's result; `report_progress` sends
//!   `notifications/progress` only when the request carried a progressToken;
//!   tool results carry `structuredContent: {"result": …}`; a tool that raises
//!   gives `isError: true`; the server never sends a request unprompted.
//! * Proxy, logs and env as in `interop_everything.rs` (`MCP_REMOTE_BIN`,
//!   `INTEROP_PREFIX`); logs in `target/tmp/interop-fastmcp/`. When the venv
//!   is missing the test runs `tests/interop/setup.sh`.

mod interop_common;

use interop_common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

const LOGS: &str = "interop-fastmcp";
const SERVER_NAME: &str = "interop-fastmcp";
/// What `interop://static/readme` holds (see fastmcp_server.py).
const README_TEXT: &str = "FastMCP interop server.\nLine two — with non-ASCII ✓.\n";
/// Keep-alive interval of the server's event streams (FastMCP's default is
/// 15 s): every stream carries `: ping - <time>` comment lines this often.
const PING_SECONDS: &str = "1";
const TOOLS: [&str; 7] = [
    "echo",
    "add",
    "fail",
    "slow_progress",
    "log_levels",
    "sample",
    "list_client_roots",
];

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static SSE_ONLY: OnceLock<Target> = OnceLock::new();
static FALLBACK: OnceLock<Target> = OnceLock::new();

/// Is the venv with `mcp` there? (site-packages/mcp-*.dist-info)
fn fastmcp_installed() -> bool {
    let lib = interop_prefix().join("venv/lib");
    venv_python().is_file()
        && std::fs::read_dir(&lib).ok().is_some_and(|pys| {
            pys.flatten().any(|py| {
                std::fs::read_dir(py.path().join("site-packages"))
                    .ok()
                    .is_some_and(|pkgs| {
                        pkgs.flatten().any(|p| {
                            let n = p.file_name().to_string_lossy().into_owned();
                            n.starts_with("mcp-") && n.ends_with(".dist-info")
                        })
                    })
            })
        })
}

fn start_fastmcp(logs: &Path) -> Result<Server, String> {
    ensure_installed(&fastmcp_installed, logs)?;
    let script = repo_root().join("tests/interop/fastmcp_server.py");
    start_server(&ServerSpec {
        name: "fastmcp",
        logs,
        command: &|port| {
            let mut c = std::process::Command::new(venv_python());
            c.arg(&script)
                .arg(port.to_string())
                .env("PYTHONUNBUFFERED", "1")
                .env("INTEROP_SSE_PING_SECONDS", PING_SECONDS)
                .env("PYTHONDONTWRITEBYTECODE", "1");
            c
        },
        ready: &|port| post_initialize_status(port, "/sse") == Some(405),
        url: &|port| format!("http://127.0.0.1:{port}/sse"),
    })
}

fn server() -> &'static Server {
    match SERVER.get_or_init(|| start_fastmcp(&log_dir(LOGS))) {
        Ok(s) => s,
        Err(e) => panic!("could not start the FastMCP server: {e}"),
    }
}

fn sse_only_target() -> &'static Target {
    SSE_ONLY.get_or_init(|| {
        Target::new(
            "sse-only",
            server(),
            &["--transport", "sse-only"],
            &log_dir(LOGS),
            SERVER_NAME,
        )
    })
}

fn fallback_target() -> &'static Target {
    FALLBACK.get_or_init(|| Target::new("fallback", server(), &[], &log_dir(LOGS), SERVER_NAME))
}

// ---------------------------------------------------------------------------
// test bodies (each run with both targets)
// ---------------------------------------------------------------------------

/// initialize, ping, tools/list, tools/call (echo byte-exact, add with
/// structured content, a raising tool, an unknown tool), error passthrough.
async fn initialize_and_tools(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("tools", t).await;
        let init = h.initialize().await;
        for cap in ["tools", "resources", "prompts"] {
            assert!(
                init["capabilities"].get(cap).is_some(),
                "capability {cap}: {}",
                short(&init)
            );
        }
        assert_eq!(
            init["instructions"],
            "Interop test server for mcp-remote.",
            "{}",
            short(&init)
        );

        assert_eq!(h.call(json!("ping-1"), "ping", json!({})).await, json!({}));

        let r = h.call(json!(1), "tools/list", json!({})).await;
        let tools = r["tools"].as_array().expect("tools array");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        for want in TOOLS {
            assert!(names.contains(&want), "tool {want} missing: {names:?}");
        }
        let add = tools.iter().find(|t| t["name"] == "add").unwrap();
        assert_eq!(
            add["inputSchema"]["properties"]["a"]["type"],
            "integer",
            "{}",
            short(add)
        );
        assert_eq!(
            add["inputSchema"]["required"],
            json!(["a", "b"]),
            "{}",
            short(add)
        );
        assert_eq!(add["description"], "Adds two integers.");

        for (i, s) in [
            "plain",
            "line1\nline2\r\nline3",
            "para\u{2028}line-sep\u{2029}para-sep",
            "héllo — 漢字 😀🦀 quote \" backslash \\ tab \t nul \u{0} del \u{7f}",
            "",
        ]
        .iter()
        .enumerate()
        {
            let r = h.tool(json!(10 + i), "echo", json!({"message": s})).await;
            assert_eq!(
                r["content"][0]["text"].as_str().map(str::as_bytes),
                Some(format!("Echo: {s}").as_bytes()),
                "echo #{i} not byte-exact: {}",
                short(&r)
            );
        }
        let r = h
            .tool(json!("id\u{2028}é"), "echo", json!({"message": "x"}))
            .await;
        assert_eq!(text_of(&r), "Echo: x");

        let r = h.tool(json!(20), "add", json!({"a": 40, "b": 2})).await;
        assert_eq!(text_of(&r), "42", "{}", short(&r));
        assert_eq!(
            r["structuredContent"],
            json!({"result": 42}),
            "{}",
            short(&r)
        );
        let r = h
            .tool(json!(21), "add", json!({"a": -7, "b": 3_000_000_000_i64}))
            .await;
        assert_eq!(
            r["structuredContent"]["result"],
            json!(2_999_999_993_i64),
            "{}",
            short(&r)
        );

        // a tool that raises: a result with isError, not a JSON-RPC error
        let r = h
            .call(
                json!(22),
                "tools/call",
                json!({"name": "fail", "arguments": {"reason": "because ✗"}}),
            )
            .await;
        assert_eq!(r["isError"], json!(true), "{}", short(&r));
        assert!(
            text_of(&r).contains("failing on purpose: because ✗"),
            "{}",
            short(&r)
        );
        // invalid arguments
        let r = h
            .call(
                json!(23),
                "tools/call",
                json!({"name": "add", "arguments": {"a": "x"}}),
            )
            .await;
        assert_eq!(r["isError"], json!(true), "{}", short(&r));
        // unknown tool: an error either way
        let (_, e) = h
            .request_with(
                json!(24),
                "tools/call",
                json!({"name": "no-such-tool", "arguments": {}}),
                STEP,
            )
            .await;
        let failed = e.get("error").is_some() || e["result"]["isError"] == json!(true);
        assert!(failed, "{}", short(&e));
        // FastMCP has no logging/setLevel handler
        let (_, e) = h
            .request_with(
                json!(25),
                "logging/setLevel",
                json!({"level": "debug"}),
                STEP,
            )
            .await;
        assert_eq!(e["error"]["code"], json!(-32601), "{}", short(&e));
        // An unknown method fails FastMCP's validation of the request union:
        // -32602 "Invalid request parameters" (not -32601); passed through.
        let (_, e) = h
            .request_with(json!(26), "no/such-method", json!({}), STEP)
            .await;
        assert_eq!(e["error"]["code"], json!(-32602), "{}", short(&e));
        h.finish().await;
    })
    .await;
}

/// resources list/read, templates list/read, prompts list/get.
async fn resources_and_prompts(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("resources", t).await;
        h.initialize().await;

        let r = h.call(json!(1), "resources/list", json!({})).await;
        let res = r["resources"].as_array().expect("resources");
        let readme = res
            .iter()
            .find(|x| x["uri"] == "interop://static/readme")
            .unwrap_or_else(|| panic!("readme missing: {}", short(&r)));
        assert_eq!(readme["name"], "readme");
        assert_eq!(readme["mimeType"], "text/plain");

        let r = h
            .call(
                json!(2),
                "resources/read",
                json!({"uri": "interop://static/readme"}),
            )
            .await;
        assert_eq!(r["contents"][0]["uri"], "interop://static/readme");
        assert_eq!(r["contents"][0]["text"], README_TEXT, "{}", short(&r));

        let r = h
            .call(json!(3), "resources/templates/list", json!({}))
            .await;
        let tpls: Vec<&str> = r["resourceTemplates"]
            .as_array()
            .expect("templates")
            .iter()
            .filter_map(|x| x["uriTemplate"].as_str())
            .collect();
        assert_eq!(tpls, ["interop://greeting/{name}"], "{}", short(&r));

        let r = h
            .call(
                json!(4),
                "resources/read",
                json!({"uri": "interop://greeting/Ada"}),
            )
            .await;
        assert_eq!(r["contents"][0]["text"], "Hello, Ada!", "{}", short(&r));
        assert_eq!(r["contents"][0]["uri"], "interop://greeting/Ada");
        let (_, e) = h
            .request_with(
                json!(5),
                "resources/read",
                json!({"uri": "interop://nothing/here"}),
                STEP,
            )
            .await;
        assert!(e.get("error").is_some(), "expected an error: {}", short(&e));

        let r = h.call(json!(6), "prompts/list", json!({})).await;
        let prompts = r["prompts"].as_array().expect("prompts");
        let review = prompts
            .iter()
            .find(|p| p["name"] == "review")
            .unwrap_or_else(|| panic!("review missing: {}", short(&r)));
        let args: Vec<(&str, bool)> = review["arguments"]
            .as_array()
            .expect("arguments")
            .iter()
            .map(|a| (a["name"].as_str().unwrap(), a["required"] == json!(true)))
            .collect();
        assert_eq!(
            args,
            [("code", true), ("language", false)],
            "{}",
            short(review)
        );
        assert!(
            prompts.iter().any(|p| p["name"] == "plain"),
            "{}",
            short(&r)
        );

        let code = "fn main() {\n    println!(\"✓\");\n}";
        let r = h
            .call(
                json!(7),
                "prompts/get",
                json!({"name": "review", "arguments": {"code": code, "language": "Rust"}}),
            )
            .await;
        assert_eq!(r["messages"][0]["role"], "user");
        assert_eq!(
            r["messages"][0]["content"]["text"],
            format!("Please review this Rust code:\n{code}")
        );
        assert_eq!(r["messages"][1]["role"], "assistant");
        assert_eq!(
            r["messages"][1]["content"]["text"],
            "Sure — looking at it now."
        );
        let r = h
            .call(json!(8), "prompts/get", json!({"name": "plain"}))
            .await;
        assert_eq!(
            r["messages"][0]["content"]["text"],
            "A plain prompt without arguments."
        );
        let (_, e) = h
            .request_with(
                json!(9),
                "prompts/get",
                json!({"name": "review", "arguments": {}}),
                STEP,
            )
            .await;
        assert!(
            e.get("error").is_some(),
            "missing required argument: {}",
            short(&e)
        );
        h.finish().await;
    })
    .await;
}

/// sampling/createMessage from inside a tools/call (host answers on stdin,
/// the tool reports the answer); a sampling refused with an error; roots/list
/// likewise.
async fn sampling_and_roots_round_trips(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("sampling", t).await;
        h.responder = Box::new(|method, _| match method {
            "sampling/createMessage" | "roots/list" => Reply::Hold,
            other => Reply::Error(-32601, format!("unexpected {other}")),
        });
        h.initialize().await;

        let call_id = json!("sample-1");
        let prompt = "interop ✓ prompt\nline2\u{2028}end";
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "sample", "arguments": {"prompt": prompt, "max_tokens": 7}}}))
            .await;
        let req = h.wait_server_request("sampling/createMessage", STEP).await;
        assert_eq!(req["params"]["maxTokens"], 7, "{}", short(&req));
        assert_eq!(req["params"]["systemPrompt"], "You are an interop test.", "{}", short(&req));
        assert_eq!(req["params"]["messages"][0]["role"], "user", "{}", short(&req));
        assert_eq!(req["params"]["messages"][0]["content"]["text"], prompt, "{}", short(&req));
        let answer = "sampled 🦀 answer\u{2028}#4711";
        h.answer(&req, json!({"role": "assistant", "content": {"type": "text", "text": answer},
            "model": "interop-model-Ω", "stopReason": "endTurn"}))
            .await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        assert_eq!(
            text_of(&resp["result"]),
            format!("sampled[interop-model-Ω|assistant]: {answer}"),
            "{}",
            short(&resp)
        );

        // the host refuses: the tool fails with the host's message
        let call_id = json!(2);
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "sample", "arguments": {"prompt": "p"}}}))
            .await;
        let req = h.wait_server_request("sampling/createMessage", STEP).await;
        h.send(&json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": "host refused sampling ✗"}}))
            .await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        let failed = resp.get("error").is_some() || resp["result"]["isError"] == json!(true);
        assert!(failed, "expected a failed tool call: {}", short(&resp));
        assert!(resp.to_string().contains("host refused sampling"), "{}", short(&resp));

        // roots/list
        let call_id = json!("roots-1");
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "list_client_roots", "arguments": {}}}))
            .await;
        let req = h.wait_server_request("roots/list", STEP).await;
        h.answer(&req, json!({"roots": [
            {"uri": "file:///interop/one", "name": "one ✓"},
            {"uri": "file:///interop/two"}]}))
            .await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        assert_eq!(
            text_of(&resp["result"]),
            "roots: file:///interop/one, file:///interop/two",
            "{}",
            short(&resp)
        );
        // server request ids are distinct
        let ids: HashSet<String> = h.server_requests.iter().map(|(_, r)| r["id"].to_string()).collect();
        assert_eq!(ids.len(), h.server_requests.len(), "server reused a request id");
        h.finish().await;
    })
    .await;
}

/// Two slow_progress calls at once (string and integer progressToken): each
/// gets progress 1..n with total n and a message, all before its result; a
/// call without a token gets none.
async fn progress_before_result(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("progress", t).await;
        h.initialize().await;
        let calls = [
            (json!("lr-a"), json!("interop-progress-A"), 4),
            (json!(4242), json!(77), 3),
        ];
        for (id, token, steps) in &calls {
            h.send(
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "slow_progress", "arguments": {"steps": steps, "delay_ms": 60},
                "_meta": {"progressToken": token}}}),
            )
            .await;
        }
        let mut result_seq = Vec::new();
        for (id, _, steps) in &calls {
            let (seq, resp) = h.wait_response_until(id, Instant::now() + STEP).await;
            assert_eq!(
                text_of(&resp["result"]),
                format!("completed {steps} steps"),
                "{}",
                short(&resp)
            );
            result_seq.push(seq);
        }
        let r = h
            .tool(
                json!("no-token"),
                "slow_progress",
                json!({"steps": 2, "delay_ms": 10}),
            )
            .await;
        assert_eq!(text_of(&r), "completed 2 steps");
        h.drain_for(Duration::from_millis(300)).await;
        for ((_, token, steps), seq) in calls.iter().zip(result_seq) {
            let prog: Vec<(u64, Value)> = h
                .notifications
                .iter()
                .filter(|(_, n)| {
                    n["method"] == "notifications/progress"
                        && n["params"]["progressToken"] == *token
                })
                .cloned()
                .collect();
            let values: Vec<f64> = prog
                .iter()
                .map(|(_, n)| n["params"]["progress"].as_f64().unwrap_or(-1.0))
                .collect();
            let want: Vec<f64> = (1..=*steps).map(|x| x as f64).collect();
            assert_eq!(
                values,
                want,
                "progress for token {token}: {prog:?}\n{}",
                h.ctx()
            );
            for (i, (s, n)) in prog.iter().enumerate() {
                assert!(*s < seq, "progress {} arrived after the result", short(n));
                // FastMCP sends floats ("total":4.0); Node's mcp-remote
                // re-serializes them as 4, a byte-preserving proxy keeps 4.0.
                assert_eq!(n["params"]["total"].as_f64(), Some(*steps as f64));
                assert_eq!(n["params"]["message"], format!("step {} of {steps}", i + 1));
            }
        }
        let all = h
            .notifications
            .iter()
            .filter(|(_, n)| n["method"] == "notifications/progress")
            .count();
        assert_eq!(
            all,
            7,
            "progress notifications without a token?\n{}",
            h.ctx()
        );
        h.finish().await;
    })
    .await;
}

/// log_levels sends notifications/message at debug, info, warning, error (the
/// last with a logger name), in that order, all before the tool's result.
async fn logging_notifications(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("logging", t).await;
        h.initialize().await;
        let msg = "log ✓ \"quoted\"\nsecond line";
        let (seq, resp) = h
            .request_with(
                json!("log-1"),
                "tools/call",
                json!({"name": "log_levels", "arguments": {"message": msg}}),
                STEP,
            )
            .await;
        assert_eq!(
            text_of(&resp["result"]),
            format!("logged 4 messages for {msg}"),
            "{}",
            short(&resp)
        );
        h.drain_for(Duration::from_millis(200)).await;
        let logs: Vec<(u64, Value)> = h
            .notifications
            .iter()
            .filter(|(_, n)| n["method"] == "notifications/message")
            .cloned()
            .collect();
        let got: Vec<(String, String)> = logs
            .iter()
            .map(|(_, n)| {
                (
                    n["params"]["level"].as_str().unwrap_or("?").to_string(),
                    n["params"]["data"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = ["debug", "info", "warning", "error"]
            .iter()
            .map(|l| (l.to_string(), format!("{l}: {msg}")))
            .collect();
        assert_eq!(got, want, "\n{}", h.ctx());
        assert_eq!(logs[3].1["params"]["logger"], "interop.logger");
        for (s, n) in &logs {
            assert!(*s < seq, "log {} arrived after the result", short(n));
        }
        h.finish().await;
    })
    .await;
}

/// 100 tools/call lines written in one go; each answered exactly once.
async fn pipelined_100_calls(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("pipelined", t).await;
        h.initialize().await;
        let took = h
            .pipelined(100, Duration::from_secs(30), |i| {
                if i % 5 == 4 {
                    ("add", json!({"a": i, "b": 1}), (i + 1).to_string())
                } else {
                    let message = format!("pipelined #{i} ✓");
                    (
                        "echo",
                        json!({"message": message}),
                        format!("Echo: {message}"),
                    )
                }
            })
            .await;
        eprintln!("[fastmcp pipelined] 100 calls answered in {took:?}");
        h.finish().await;
    })
    .await;
}

/// 2.5 s idle while the server sends keep-alive comments (`: ping - …`,
/// CRLF) on the event stream: nothing may reach stdout, and the session
/// still works afterwards.
async fn idle_with_keepalive_pings(t: &Target) {
    with_budget(async {
        let mut h = Host::spawn("idle", t).await;
        h.initialize().await;
        let r = h.tool(json!(1), "echo", json!({"message": "before"})).await;
        assert_eq!(text_of(&r), "Echo: before");
        let seen_before = h.seq;
        let got = h.drain_for(Duration::from_millis(2500)).await;
        assert!(
            got.is_empty() && h.seq == seen_before,
            "proxy wrote lines while idle\n{}",
            h.ctx()
        );
        let r = h.tool(json!(2), "echo", json!({"message": "after"})).await;
        assert_eq!(text_of(&r), "Echo: after");
        h.finish().await;
    })
    .await;
}

/// One `#[tokio::test]` per body, each on `$target()`.
macro_rules! fastmcp_tests {
    ($target:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn initialize_and_tools() {
            super::initialize_and_tools($target()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn resources_and_prompts() {
            super::resources_and_prompts($target()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sampling_and_roots_round_trips() {
            super::sampling_and_roots_round_trips($target()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn progress_before_result() {
            super::progress_before_result($target()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn logging_notifications() {
            super::logging_notifications($target()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn pipelined_100_calls() {
            super::pipelined_100_calls($target()).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn idle_with_keepalive_pings() {
            super::idle_with_keepalive_pings($target()).await
        }
    };
}

/// No `--transport`: the default strategy must fall back from the 405.
mod fallback {
    use super::fallback_target;
    fastmcp_tests!(fallback_target);
}

/// `--transport sse-only`.
mod sse_only {
    use super::sse_only_target;
    fastmcp_tests!(sse_only_target);
}

/// What the fallback depends on, checked on the server itself.
mod server_facts {
    use super::*;

    /// POST of an initialize to the SSE URL: 405 Method Not Allowed.
    #[test]
    fn post_to_sse_url_is_405() {
        let s = server();
        assert_eq!(post_initialize_status(s.port, "/sse"), Some(405));
    }

    /// GET /sse: 200 text/event-stream, first event `endpoint` with a
    /// relative `/messages/?session_id=…` URL.
    #[test]
    fn get_sse_url_sends_endpoint_event() {
        let s = server();
        let text = sse_stream_head(s.port, "/sse");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{text}"
        );
        let body = &text[text.find("\r\n\r\n").expect("end of headers")..];
        assert!(body.contains("event: endpoint"), "{text}");
        assert!(body.contains("data: /messages/?session_id="), "{text}");
    }

    /// The event stream's lines end in CRLF, and keep-alive comments
    /// (`: ping - <time>`) arrive every PING_SECONDS.
    #[test]
    fn stream_uses_crlf_and_ping_comments() {
        use std::io::{Read, Write};
        let s = server();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let req = format!("GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n", s.port);
        c.write_all(req.as_bytes()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(4);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while std::time::Instant::now() < deadline
            && !String::from_utf8_lossy(&buf).contains(": ping - ")
        {
            match c.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.contains("event: endpoint\r\ndata: /messages/?session_id="),
            "{text:?}"
        );
        assert!(
            text.contains(": ping - "),
            "no keep-alive comment within 4 s: {text:?}"
        );
    }
}
