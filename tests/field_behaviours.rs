//! Five behaviours found against real servers and hosts (issue #10, part 5), each one
//! reproduced against the loopback testbed with the binary's default flags:
//!
//! - A: a server that forgot its sessions answers `400 "No valid session ID provided"`
//!   (server-everything, the TypeScript SDK's examples) instead of the specification's 404;
//! - B: a server killed while a streaming tool call is in flight: the resumption is refused;
//! - C: a route change (VPN reconnect) silently kills every open connection, new ones work;
//! - D: a legacy HTTP+SSE server answers its POSTs `202` labelled JSON with the body
//!   `Accepted`;
//! - E: a host that never reads the proxy's stderr, with `--debug`: the process must still
//!   exit promptly when stdin closes (invariants 7 and 8).
//!
//! A–D wait for the connection engine (the tests assert the behaviour it must have and are
//! ignored until then); E is fixed in `src/logging.rs`.

mod common;

use common::{call, text, Proxy, WAIT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use testbed::relay::Relay;
use testbed::{Config, Testbed, Transport, UnknownSession};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

/// How long a request in flight when its connection died may wait for its one answer: the
/// product's promise is 10 s (not the 300 s request time-out, nor a resumption retried for
/// 20 s); the tests wait 5 s more, for a busy machine.
const FATE_BOUND: Duration = Duration::from_secs(15);

/// Every message with an id and no method (an answer) that arrives within `bound` of
/// `since`, by id, with when it came (after `since`), until each of `ids` has one; then
/// `quiet` more, to catch a second answer. Notifications and server requests are skipped.
async fn answers(
    p: &mut Proxy,
    ids: &[u64],
    since: Instant,
    bound: Duration,
    quiet: Duration,
) -> BTreeMap<u64, Vec<(Value, Duration)>> {
    let mut seen: BTreeMap<u64, Vec<(Value, Duration)>> = BTreeMap::new();
    let deadline = since + bound;
    let mut quiet_until: Option<Instant> = None;
    for _ in 0..100_000 {
        let until = quiet_until.unwrap_or(deadline);
        let now = Instant::now();
        if now >= until {
            break;
        }
        let Some(msg) = p.recv_within(until - now).await else {
            break;
        };
        if msg.get("method").is_some() {
            continue;
        }
        if let Some(id) = msg["id"].as_u64() {
            seen.entry(id).or_default().push((msg, since.elapsed()));
        }
        if quiet_until.is_none() && ids.iter().all(|id| seen.contains_key(id)) {
            quiet_until = Some(Instant::now() + quiet);
        }
    }
    seen
}

/// The POSTs the testbed received, as `(JSON-RPC method, HTTP status)`.
fn posted(tb: &Testbed) -> Vec<(String, Option<u16>)> {
    tb.requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| (r.rpc_method().unwrap_or_default(), r.status))
        .collect()
}

/// A: the host's own `initialize` is replayed after a 400 for a forgotten session, the
/// request retried once, and a second 400 after that is the host's error, not a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_for_a_forgotten_session_reinitializes_once_and_retries() {
    let tb = Testbed::start(Config {
        unknown_session: UnknownSession::BadRequest,
        ..Config::default()
    })
    .await
    .expect("testbed");
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-06-18").await;
    p.send(call(1, "count", json!({"nonce": "a-before"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "1", "{r}");

    // The server restarts: every session id it gave is unknown, answered 400.
    tb.expire_sessions();
    tb.clear_requests();
    p.send(call(2, "count", json!({"nonce": "a-after"}))).await;
    let (r, others) = p.recv_response(&json!(2)).await;
    assert!(
        r.get("result").is_some(),
        "the call is retried on a new session and succeeds: {r}\nPOSTs: {:?}",
        posted(&tb)
    );
    assert_eq!(text(&r), "1", "ran once: {r}");
    assert!(
        others
            .iter()
            .all(|m| m.pointer("/result/protocolVersion").is_none()),
        "the host never sees a second initialize result: {others:?}"
    );
    assert_eq!(
        posted(&tb),
        [
            ("tools/call".to_owned(), Some(400)),
            ("initialize".to_owned(), Some(200)),
            ("notifications/initialized".to_owned(), Some(202)),
            ("tools/call".to_owned(), Some(200)),
        ]
    );
    let replay = tb
        .requests()
        .into_iter()
        .find(|r| r.rpc_method().as_deref() == Some("initialize"))
        .and_then(|r| r.json())
        .expect("the replayed initialize");
    assert!(
        replay["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("mcp-remote-")),
        "replayed under a reserved id: {replay}"
    );
    assert_eq!(
        replay["params"]["clientInfo"]["name"]
            .as_str()
            .and_then(|name| name.split(" (").next()),
        Some("test-host"),
        "the host's own initialize: {replay}"
    );
    assert_eq!(tb.executions("a-before"), 1);
    assert_eq!(tb.executions("a-after"), 1);

    // A request the server keeps refusing with that 400, on a session that works.
    tb.clear_requests();
    p.send(call(3, "reply_no_session", json!({}))).await;
    let (r, _) = p.recv_response(&json!(3)).await;
    assert!(
        r.get("error").is_some(),
        "a second 400 after the re-initialization is an error: {r}"
    );
    let methods: Vec<String> = posted(&tb).into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        methods,
        [
            "tools/call",
            "initialize",
            "notifications/initialized",
            "tools/call"
        ],
        "one re-initialization and one retry, no loop"
    );
    p.send(call(4, "echo", json!({"text": "still here"}))).await;
    let (r, _) = p.recv_response(&json!(4)).await;
    assert_eq!(text(&r), "still here");
    p.assert_quiet(Duration::from_millis(300)).await;
    let (code, _) = p.close().await;
    assert_eq!(code, Some(0));
}

/// B: the server dies under a tool call whose SSE response had event ids; the resumption
/// is refused at connect. The host learns the call's fate is unknown within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_a_streaming_call_gives_a_prompt_error() {
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    p.send(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "slow", "arguments": {"ms": 60_000, "steps": 600, "nonce": "b-slow"},
        "_meta": {"progressToken": "b"}}}),
    )
    .await;
    // A progress notification proves the response stream is open (past its priming event,
    // which carries an event id).
    let progress = p.recv().await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    tb.shutdown();
    let killed = Instant::now();
    let seen = answers(&mut p, &[5], killed, FATE_BOUND, Duration::from_millis(500)).await;
    let answer = seen.get(&5).unwrap_or_else(|| {
        panic!("no answer to the call within {FATE_BOUND:?} of the server's death (default flags)")
    });
    assert_eq!(answer.len(), 1, "exactly one answer: {answer:?}");
    let (answer, after) = &answer[0];
    assert!(
        answer.get("error").is_some(),
        "its fate is unknown, so an error ({after:?} after the kill): {answer}"
    );
    assert_eq!(tb.executions("b-slow"), 1, "never sent twice");
    let _ = p.child.start_kill();
}

/// C: a route change kills every open connection without a sound; new connections work at
/// once. Each request in flight gets one answer (resumed, or its fate unknown) within
/// seconds, nothing runs twice, and new requests succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_change_answers_every_request_in_flight_once_and_new_ones_work() {
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let relay = Relay::start(std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        tb.port(),
    )))
    .await
    .expect("relay");
    let url = format!("{}/mcp", relay.url(""));
    let mut p = Proxy::spawn(&[&url]);
    p.initialize("2025-11-25").await;
    p.send(call(1, "echo", json!({"text": "warm"}))).await;
    assert_eq!(text(&p.recv_response(&json!(1)).await.0), "warm");

    p.send(
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {
        "name": "slow", "arguments": {"ms": 3_000, "steps": 6, "nonce": "c-slow"},
        "_meta": {"progressToken": "c"}}}),
    )
    .await;
    let progress = p.recv().await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    // Quick calls surely in flight: their bytes sit in the relay when the route changes.
    relay.set_latency(Duration::from_millis(400));
    let quick = [11u64, 12, 13];
    for id in quick {
        p.send(call(id, "count", json!({"nonce": format!("c-{id}")})))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.drop_open_connections();
    relay.clear();
    let dropped = Instant::now();

    p.send(call(20, "echo", json!({"text": "after the drop"})))
        .await;
    let mut in_flight = vec![10];
    in_flight.extend(quick);
    let mut all = in_flight.clone();
    all.push(20);
    let seen = answers(
        &mut p,
        &all,
        dropped,
        FATE_BOUND,
        Duration::from_millis(500),
    )
    .await;
    let missing: Vec<u64> = all
        .iter()
        .copied()
        .filter(|id| !seen.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "no answer to {missing:?} within {FATE_BOUND:?} of the drop; answers: {seen:?}"
    );
    for (id, answers) in &seen {
        assert_eq!(answers.len(), 1, "id {id} answered once: {answers:?}");
    }
    let after = &seen[&20][0].0;
    assert_eq!(
        text(after),
        "after the drop",
        "a new request works: {after}"
    );
    let slow = &seen[&10][0].0;
    if slow.get("result").is_some() {
        assert_eq!(text(slow), "done in 6 steps", "{slow}");
    } else {
        assert!(slow.get("error").is_some(), "{slow}");
    }
    assert_eq!(tb.executions("c-slow"), 1, "the slow call ran once");
    for id in quick {
        let runs = tb.executions(&format!("c-{id}"));
        let answer = &seen[&id][0].0;
        assert!(runs <= 1, "c-{id} ran {runs} times");
        if answer.get("result").is_some() {
            assert_eq!(runs, 1, "a result means it ran: {answer}");
        } else {
            assert!(answer.get("error").is_some(), "{answer}");
        }
    }
    let (code, _) = p.close().await;
    assert_eq!(code, Some(0));
}

/// D: a legacy server labels its `202` to a POST as JSON and sends `Accepted` as the body;
/// the answers come on the event stream as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_202_labelled_json_with_a_text_body_is_accepted() {
    let tb = Testbed::start(Config {
        transport: Transport::Legacy,
        legacy_accepted_as_json: true,
        ..Config::default()
    })
    .await
    .expect("testbed");
    let mut p = Proxy::spawn(&[&tb.sse_url(), "--transport", "sse-only"]);
    p.send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "test-host", "version": "1.0"}}}),
    )
    .await;
    let (r, _) = p.recv_response(&json!(0)).await;
    assert_eq!(r["result"]["protocolVersion"], "2024-11-05", "{r}");
    p.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    p.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    let (r, _) = p.recv_response(&json!(1)).await;
    let tools = r["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tools/list result: {r}"));
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{r}");
    let (code, _) = p.close().await;
    assert_eq!(code, Some(0));
}

/// E: with `--debug` and a host that never reads stderr, every message is relayed and the
/// process exits 0 by itself once stdin closes, stdout carrying only JSON-RPC to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_reads_stderr_does_not_keep_the_proxy_alive() {
    const CALLS: u64 = 5_000;
    const PIPELINED: u64 = 100;
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let config = std::env::temp_dir().join(format!(
        "mcp-remote-field-e-{}-{}",
        std::process::id(),
        tb.port()
    ));
    let config_dir = config.to_string_lossy().into_owned();
    let mut p = Proxy::spawn_with_unread_stderr(
        &[&tb.url(), "--debug"],
        &[("MCP_REMOTE_CONFIG_DIR", config_dir.as_str())],
    );
    p.initialize("2025-11-25").await;
    // Far more log lines than a pipe holds (64 KiB on Linux) and than the log queue holds.
    for first in (1..=CALLS).step_by(PIPELINED as usize) {
        let ids = first..(first + PIPELINED).min(CALLS + 1);
        for id in ids.clone() {
            p.send(call(id, "echo", json!({"text": format!("n{id}")})))
                .await;
        }
        // Answers of pipelined calls may come in any order.
        let mut waiting: std::collections::BTreeSet<u64> = ids.collect();
        while let Some(&next) = waiting.first() {
            let r = p.recv_within(WAIT).await.unwrap_or_else(|| {
                panic!("no answer to call {next} within {WAIT:?}: the proxy froze")
            });
            let id = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
            assert!(waiting.remove(&id), "one answer each: {r}");
            assert_eq!(text(&r), format!("n{id}"), "every message is relayed");
        }
    }

    drop(p.stdin.take());
    let closed = Instant::now();
    let exited = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
    let took = closed.elapsed();
    let status = match exited {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            let _ = p.child.start_kill();
            p.stderr.abort();
            panic!("still running {took:?} after stdin closed, stderr unread (invariant 7)");
        }
    };
    eprintln!("exited {took:?} after stdin closed");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    p.stderr.abort();
    // Nothing but JSON-RPC on stdout, up to its end (invariant 1).
    let mut rest = Vec::new();
    for _ in 0..10_000 {
        let mut line = String::new();
        match tokio::time::timeout(WAIT, p.stdout.read_line(&mut line)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(_)) => rest.push(line),
            Ok(Err(e)) => panic!("reading stdout: {e}"),
        }
    }
    for line in &rest {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {line:?}"));
        assert_eq!(v["jsonrpc"], "2.0", "{line}");
    }
    // The debug log file is not the pipe: it keeps every line, to the last call.
    let log = std::fs::read_dir(config.join("mcp-remote-v1"))
        .expect("the config folder")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_debug.log"))
        .map(|e| std::fs::read_to_string(e.path()).expect("the debug log"))
        .expect("a debug log");
    let last = format!("id={CALLS}");
    assert!(
        log.lines()
            .any(|l| l.contains("tools/call") && l.contains(&last)),
        "the debug log reaches the last call (id {CALLS})"
    );
    let _ = std::fs::remove_dir_all(&config);
}
