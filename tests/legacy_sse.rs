//! Black-box tests of the legacy HTTP+SSE transport (checklist C1–C10) and of
//! the four transport strategies, against the loopback testbed.

mod common;

use common::{call, text, Proxy};
use serde_json::json;
use std::time::Duration;
use testbed::{Config, Testbed, Transport};

async fn legacy(config: Config) -> Testbed {
    Testbed::start(Config {
        transport: Transport::Legacy,
        ..config
    })
    .await
    .expect("testbed")
}

fn config_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("mcp-remote-legacy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

fn remembered(dir: &str) -> Option<String> {
    let store = std::path::Path::new(dir).join("mcp-remote-v1");
    let file = std::fs::read_dir(store)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_transport.json"))?;
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file.path()).ok()?).ok()?;
    v["transport"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_only_full_session() {
    let tb = legacy(Config::default()).await;
    let mut p = Proxy::spawn(&[
        &tb.sse_url(),
        "--transport",
        "sse-only",
        "--header",
        "X-Key: k1",
    ]);
    let init = p.initialize("2024-11-05").await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    p.send(call(1, "echo", json!({"text": "a\nb\u{2028}é"})))
        .await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "a\nb\u{2028}é");
    // Server → client request on the stream, answered through a POST (C3, A10).
    p.send(call(2, "sample", json!({}))).await;
    let request = p.recv().await;
    assert_eq!(request["method"], "sampling/createMessage");
    p.send(json!({"jsonrpc":"2.0","id":request["id"],"result":{"role":"assistant","model":"m","content":{"type":"text","text":"from host"}}})).await;
    let (r, _) = p.recv_response(&json!(2)).await;
    assert_eq!(text(&r), "from host");
    p.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow","arguments":{"ms":100,"steps":2},"_meta":{"progressToken":9}}})).await;
    let (r, before) = p.recv_response(&json!(3)).await;
    assert!(r.get("result").is_some());
    assert_eq!(
        before
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count(),
        2
    );
    let (code, _) = p.close().await;
    assert_eq!(code, Some(0));
    let reqs = tb.requests();
    let get = reqs
        .iter()
        .find(|r| r.method == "GET")
        .expect("C1: a GET for the stream");
    assert_eq!(get.path, "/sse");
    assert!(get.header("accept").unwrap().contains("text/event-stream"));
    assert_eq!(get.header("x-key"), Some("k1"), "custom headers on the GET");
    let posts: Vec<_> = reqs.iter().filter(|r| r.method == "POST").collect();
    assert!(!posts.is_empty());
    assert!(
        posts
            .iter()
            .all(|r| r.path == "/messages" && r.header("x-key") == Some("k1")),
        "C3: every POST goes to the endpoint"
    );
    assert!(posts.iter().all(|r| r.header("mcp-session-id").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_first_falls_back_and_remembers() {
    let tb = legacy(Config::default()).await;
    let dir = config_dir("fallback");
    let mut p = Proxy::spawn_with_env(&[&tb.sse_url()], &[("MCP_REMOTE_CONFIG_DIR", &dir)]);
    p.initialize("2025-03-26").await;
    p.send(call(1, "add", json!({"a": 1, "b": 2}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "3");
    p.close().await;
    let reqs = tb.requests();
    // C7: Streamable HTTP first — the 2026-07-28 probe, then the host's initialize
    // (2026-07-28 §Backward Compatibility), each refused — then the GET.
    let seen: Vec<(&str, &str, Option<u16>, Option<String>)> = reqs[..3]
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status, r.rpc_method()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "POST",
                "/sse",
                Some(404),
                Some("server/discover".to_owned())
            ),
            ("POST", "/sse", Some(404), Some("initialize".to_owned())),
            ("GET", "/sse", Some(200), None),
        ]
    );
    assert_eq!(remembered(&dir).as_deref(), Some("sse"));

    // The next start goes straight to the event stream.
    tb.clear_requests();
    let mut p = Proxy::spawn_with_env(&[&tb.sse_url()], &[("MCP_REMOTE_CONFIG_DIR", &dir)]);
    p.initialize("2025-03-26").await;
    p.close().await;
    let first = &tb.requests()[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("GET", "/sse"),
        "remembered: no Streamable probe"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_only_on_400_404_405() {
    for status in [400u16, 404, 405] {
        let tb = legacy(Config {
            legacy_post_status: status,
            ..Config::default()
        })
        .await;
        let mut p = Proxy::spawn(&[&tb.sse_url()]);
        p.initialize("2025-03-26").await;
        p.close().await;
        assert!(
            tb.requests().iter().any(|r| r.method == "GET"),
            "{status} falls back"
        );
    }
    for status in [401u16, 403, 500] {
        let tb = legacy(Config {
            legacy_post_status: status,
            ..Config::default()
        })
        .await;
        let mut p = Proxy::spawn(&[&tb.sse_url()]);
        p.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
        let (r, _) = p.recv_response(&json!(0)).await;
        assert_eq!(r["error"]["code"], -32001, "{status}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        if status == 401 {
            // 401 means sign-in (here it cannot succeed: the testbed has no authorization server).
            assert!(message.contains("sign-in failed"), "{r}");
        } else {
            assert!(message.contains(&status.to_string()), "{r}");
        }
        p.close().await;
        assert!(
            !tb.requests()
                .iter()
                .any(|r| r.method == "GET" && r.path == "/sse"),
            "{status} does not fall back"
        );
    }
    // A refused connection is not a reason to try the other transport either.
    let mut p = Proxy::spawn(&["http://127.0.0.1:9/sse", "--transport", "sse-first"]);
    p.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{r}"
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_first_against_a_streamable_server_falls_back_to_http() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let mut p = Proxy::spawn(&[&tb.url(), "--transport", "sse-first"]);
    p.initialize("2025-11-25").await;
    p.send(call(1, "echo", json!({"text": "ok"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "ok");
    p.close().await;
    let reqs = tb.requests();
    assert_eq!(reqs[0].method, "GET");
    assert!(
        matches!(reqs[0].status, Some(400 | 404 | 405)),
        "{:?}",
        reqs[0].status
    );
    assert_eq!(reqs[1].rpc_method().as_deref(), Some("server/discover"));
    assert_eq!(reqs[2].rpc_method().as_deref(), Some("initialize"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_memory_is_dropped() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let dir = config_dir("memory");
    let mut p = Proxy::spawn_with_env(&[&tb.url()], &[("MCP_REMOTE_CONFIG_DIR", &dir)]);
    p.initialize("2025-11-25").await;
    p.close().await;
    assert_eq!(remembered(&dir).as_deref(), Some("streamable-http"));
    // Pretend the server used to be legacy.
    let store = std::path::Path::new(&dir).join("mcp-remote-v1");
    let file = std::fs::read_dir(&store)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_transport.json"))
        .unwrap();
    std::fs::write(file.path(), r#"{"transport":"sse"}"#).unwrap();
    tb.clear_requests();
    let mut p = Proxy::spawn_with_env(&[&tb.url()], &[("MCP_REMOTE_CONFIG_DIR", &dir)]);
    p.initialize("2025-11-25").await;
    p.close().await;
    assert_eq!(
        tb.requests()[0].method,
        "GET",
        "the remembered transport went first"
    );
    assert_eq!(
        remembered(&dir).as_deref(),
        Some("streamable-http"),
        "and the memory was corrected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_answers_in_flight_requests_once_and_the_session_comes_back() {
    let tb = legacy(Config::default()).await;
    let mut p = Proxy::spawn(&[&tb.sse_url(), "--transport", "sse-only"]);
    p.initialize("2024-11-05").await;
    p.send(call(1, "never", json!({}))).await;
    p.send(call(2, "never", json!({}))).await;
    let accepted = |r: &[testbed::Recorded]| {
        r.iter()
            .filter(|r| r.rpc_method().as_deref() == Some("tools/call") && r.status == Some(202))
            .count()
            == 2
    };
    assert!(tb.wait_for(accepted, common::WAIT).await);
    let first_session = tb.legacy_session_ids();
    tb.drop_legacy_streams();
    let mut answered = std::collections::HashMap::new();
    for _ in 0..2 {
        let Some(r) = p.recv_within(Duration::from_secs(5)).await else {
            let _ = p.child.start_kill();
            let err = p.stderr.await.unwrap();
            panic!("no answer; stderr:\n{err}");
        };
        assert_eq!(r["error"]["code"], -32001, "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("dropped"),
            "{r}"
        );
        *answered.entry(r["id"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        answered.len(),
        2,
        "each in-flight request answered once: {answered:?}"
    );
    // The session comes back: a new stream, the host's initialize replayed, later requests work.
    p.send(call(3, "echo", json!({"text": "back"}))).await;
    let (r, others) = p.recv_response(&json!(3)).await;
    assert_eq!(text(&r), "back");
    assert!(
        others.iter().all(|m| m["id"] != 1 && m["id"] != 2),
        "no late second answer: {others:?}"
    );
    assert!(
        others.iter().all(|m| m
            .get("result")
            .and_then(|r| r.get("protocolVersion"))
            .is_none()),
        "no second initialize result"
    );
    let reinit = tb
        .requests()
        .into_iter()
        .filter(|r| r.rpc_method().as_deref() == Some("initialize"))
        .nth(1)
        .expect("initialize replayed");
    assert!(reinit.json().unwrap()["id"]
        .as_str()
        .unwrap()
        .starts_with("mcp-remote-"));
    assert!(tb
        .legacy_session_ids()
        .iter()
        .all(|s| !first_session.contains(s)));
    p.assert_quiet(Duration::from_millis(300)).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_tool_and_timeouts_work_on_legacy_too() {
    let tb = legacy(Config::default()).await;
    let mut p = Proxy::spawn(&[
        &tb.sse_url(),
        "--transport",
        "sse-only",
        "--ignore-tool",
        "ech*",
        "--request-timeout",
        "1",
    ]);
    p.initialize("2024-11-05").await;
    p.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert!(r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["name"] != "echo"));
    p.send(call(2, "never", json!({}))).await;
    let (r, _) = p.recv_response(&json!(2)).await;
    assert_eq!(r["error"]["code"], -32001);
    let cancelled = |r: &[testbed::Recorded]| {
        r.iter()
            .any(|r| r.rpc_method().as_deref() == Some("notifications/cancelled"))
    };
    assert!(tb.wait_for(cancelled, common::WAIT).await);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_brings_the_session_back() {
    let tb = legacy(Config::default()).await;
    let port = tb.port();
    let mut p = Proxy::spawn(&[&tb.sse_url(), "--transport", "sse-only", "--debug"]);
    p.initialize("2024-11-05").await;
    tb.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Sent while the server is down: it never reaches the old server, so it waits and goes to the new one.
    p.send(call(7, "echo", json!({"text": "after the restart"})))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = Testbed::start_on_port(
        Config {
            transport: Transport::Legacy,
            ..Config::default()
        },
        port,
    )
    .await
    .expect("the same port again");
    let (r, _) = p.recv_response(&json!(7)).await;
    assert_eq!(text(&r), "after the restart");
    let methods: Vec<String> = restarted
        .requests()
        .iter()
        .filter_map(|r| r.rpc_method())
        .collect();
    let (_, err) = p.close().await;
    assert_eq!(
        methods,
        ["initialize", "notifications/initialized", "tools/call"],
        "re-initialized, then the held call\n{err}"
    );
}

/// A legacy server that sends no keep-alives (as the TypeScript SDK's): its stream is
/// silent between messages and must not be taken for dead.
fn silent() -> Config {
    Config {
        keepalives: false,
        ..Config::default()
    }
}

/// The reserved-id pings the testbed received.
fn check_pings(tb: &Testbed) -> usize {
    tb.requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("ping"))
        .filter(|r| {
            r.json().is_some_and(|m| {
                m["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("mcp-remote-check-"))
            })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_without_keepalives_is_kept_and_checked_before_it_is_relied_on() {
    let tb = legacy(silent()).await;
    let mut p = Proxy::spawn(&[&tb.sse_url(), "--transport", "sse-only", "--debug"]);
    p.initialize("2024-11-05").await;
    p.send(call(1, "echo", json!({"text": "warm"}))).await;
    assert_eq!(text(&p.recv_response(&json!(1)).await.0), "warm");
    // Quiet for longer than a stream without keep-alives is trusted (5 s).
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    p.send(call(2, "echo", json!({"text": "still here"}))).await;
    let (r, _) = p.recv_response(&json!(2)).await;
    assert_eq!(text(&r), "still here", "{r}");
    assert_eq!(
        tb.legacy_session_ids().len(),
        1,
        "a silent stream is not reconnected"
    );
    assert_eq!(check_pings(&tb), 1, "one ping confirmed the quiet stream");
    let (_, stderr) = p.close().await;
    assert!(!stderr.contains("event stream broke"), "{stderr}");
    assert!(!stderr.contains("re-initializing"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_died_silently_is_replaced_before_the_next_request_relies_on_it() {
    let tb = legacy(silent()).await;
    let relay = testbed::relay::Relay::start(std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        tb.port(),
    )))
    .await
    .expect("relay");
    let url = format!("{}/sse", relay.url(""));
    let mut p = Proxy::spawn(&[
        &url,
        "--transport",
        "sse-only",
        "--request-timeout",
        "30",
        "--debug",
    ]);
    p.initialize("2024-11-05").await;
    // The VPN flap: the open stream dies without FIN or RST; new connections work again.
    relay.blackhole_kill();
    relay.clear();
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    p.send(call(1, "echo", json!({"text": "after the flap"})))
        .await;
    let Some(r) = p.recv_within(Duration::from_secs(10)).await else {
        let _ = p.child.start_kill();
        panic!("no answer; stderr:\n{}", p.stderr.await.unwrap());
    };
    assert_eq!(
        text(&r),
        "after the flap",
        "held, then sent on the new stream, not lost on the dead one: {r}"
    );
    let echoes = tb
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("tools/call"))
        .count();
    assert_eq!(
        echoes, 1,
        "sent once, after the check found the stream dead"
    );
    assert!(check_pings(&tb) >= 1);
    let initializes = tb
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("initialize"))
        .count();
    assert_eq!(initializes, 2, "a new stream, the session re-initialized");
    p.assert_quiet(Duration::from_millis(300)).await;
    p.close().await;
}
