//! Black-box checks of the testbed's legacy HTTP+SSE transport (MCP 2024-11-05) over raw
//! HTTP/1.1: the `endpoint` event, `202` POSTs answered on the stream, server→client requests
//! answered by POST, how `/mcp` is refused, the legacy fault injectors, the `Both` mode and
//! the binary's `--legacy` flag. Every wait is bounded.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{post, request, Reply, SseEvent};
use testbed::{Config, Testbed, Transport};

/// How long a test waits for the server to have seen something.
const WAIT: Duration = Duration::from_secs(5);

fn legacy() -> Config {
    Config {
        transport: Transport::Legacy,
        ..Config::default()
    }
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": {"sampling": {}, "roots": {}},
        "clientInfo": {"name": "legacy-test", "version": "0"},
    }})
}

fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

/// An open legacy stream, positioned after its `endpoint` event.
struct Stream {
    /// The SSE response being read.
    reply: Reply,
    /// The `endpoint` event's data, as sent.
    endpoint: String,
}

/// `GET /sse` with the SSE `Accept`, checking the head and reading the `endpoint` event,
/// which must be the first event.
async fn open(url: &str) -> Stream {
    let mut reply = request(url, "GET", &[("Accept", "text/event-stream")], b"").await;
    assert_eq!(reply.status, 200);
    assert!(reply.is_sse(), "{:?}", reply.headers);
    let first = first_event(&mut reply).await;
    assert_eq!(first.event.as_deref(), Some("endpoint"), "{first:?}");
    assert_eq!(first.id, None, "2024-11-05 streams carry no event ids");
    Stream {
        reply,
        endpoint: first.data.expect("the endpoint's data"),
    }
}

/// The first block that is an event rather than comments only.
async fn first_event(reply: &mut Reply) -> SseEvent {
    // Keepalives come about once a second; a handful of blocks is plenty.
    for _ in 0..20 {
        let block = reply.next_block().await.expect("an event before the end");
        if block.data.is_some() || block.event.is_some() {
            return block;
        }
    }
    panic!("no event among the first blocks");
}

impl Stream {
    /// The absolute URL of the endpoint on `testbed`.
    fn endpoint_url(&self, testbed: &Testbed) -> String {
        format!("{}{}", testbed.origin(), self.endpoint)
    }

    /// The session id in the endpoint.
    fn session_id(&self) -> String {
        self.endpoint
            .split_once("sessionId=")
            .expect("a sessionId parameter")
            .1
            .to_owned()
    }

    /// The next `message` event's JSON.
    async fn next_message(&mut self) -> Value {
        let (event, message) = self.reply.next_message().await.expect("a message event");
        assert_eq!(event.event.as_deref(), Some("message"), "{event:?}");
        assert_eq!(event.id, None);
        message
    }
}

/// POSTs `message` to the endpoint and checks the `202` with an empty body.
async fn send(testbed: &Testbed, stream: &Stream, message: &Value) {
    let reply = post(&stream.endpoint_url(testbed), &[], message).await;
    assert_eq!(reply.status, 202);
    assert!(reply.body().await.is_empty(), "202 carries no body");
}

/// Opens a stream and runs the `initialize` handshake on it.
async fn start_session(testbed: &Testbed) -> Stream {
    let mut stream = open(&testbed.sse_url()).await;
    send(testbed, &stream, &initialize("2024-11-05")).await;
    let init = stream.next_message().await;
    assert_eq!(init["id"], 0);
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    send(testbed, &stream, &initialized).await;
    stream
}

#[tokio::test]
async fn the_endpoint_event_comes_first_is_relative_and_fresh_per_stream() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let url = testbed.sse_url();
    assert_eq!(url, format!("{}/sse", testbed.origin()));

    let mut first = open(&url).await;
    assert!(
        first.endpoint.starts_with("/messages?sessionId="),
        "{}",
        first.endpoint
    );
    let id = first.session_id();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(testbed.legacy_session_ids(), vec![id.clone()]);

    let second = open(&url).await;
    assert_ne!(second.session_id(), id, "each stream is a new session");
    let mut ids = testbed.legacy_session_ids();
    ids.sort();
    let mut expected = vec![id, second.session_id()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(testbed.session_ids().is_empty(), "no Streamable sessions");

    // Keepalive comments follow, with no other events while nothing happens.
    let mut keepalives = 0;
    for _ in 0..2 {
        let block = first
            .reply
            .next_block()
            .await
            .expect("the stream stays open");
        assert!(block.data.is_none() && block.event.is_none(), "{block:?}");
        keepalives += usize::from(block.comments.iter().any(|c| c == "keepalive"));
    }
    assert_eq!(keepalives, 2);

    // Without the SSE Accept there is no stream.
    let refused = request(&url, "GET", &[("Accept", "application/json")], b"").await;
    assert_eq!(refused.status, 406);
    let recorded = testbed.requests();
    assert_eq!(recorded.len(), 3);
    assert!(recorded
        .iter()
        .all(|r| r.method == "GET" && r.path == "/sse"));
    assert_eq!(recorded[0].header("accept"), Some("text/event-stream"));
    assert_eq!(recorded[0].status, Some(200));
    assert_eq!(recorded[2].status, Some(406));

    // The stream is the session: once its reader goes away, the id is unknown.
    drop(second);
    let gone = tokio::time::timeout(WAIT, async {
        // The server notices at its next keepalive write, about a second later.
        for _ in 0..100 {
            if testbed.legacy_session_ids().len() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "{:?}", testbed.legacy_session_ids());
}

#[tokio::test]
async fn posts_get_202_and_answers_arrive_on_the_stream() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let mut stream = start_session(&testbed).await;
    let id = stream.session_id();
    assert_eq!(
        testbed.negotiated_version(&id).as_deref(),
        Some("2024-11-05")
    );

    send(
        &testbed,
        &stream,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    let list = stream.next_message().await;
    assert_eq!(list["id"], 1);
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        testbed::TOOL_NAMES.len()
    );

    send(
        &testbed,
        &stream,
        &tool_call(2, "echo", json!({"text": "over SSE"})),
    )
    .await;
    let echo = stream.next_message().await;
    assert_eq!(echo["id"], 2);
    assert_eq!(echo["result"]["content"][0]["text"], "over SSE");

    send(
        &testbed,
        &stream,
        &tool_call(3, "add", json!({"a": 40, "b": 2})),
    )
    .await;
    assert_eq!(
        stream.next_message().await["result"]["content"][0]["text"],
        "42"
    );

    // Other methods share the Streamable server's handlers.
    let read = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                      "params": {"uri": "test://static/hello"}});
    send(&testbed, &stream, &read).await;
    let read = stream.next_message().await;
    assert_eq!(
        read["result"]["contents"][0]["text"],
        "Hello from the MCP testbed."
    );
    send(
        &testbed,
        &stream,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}),
    )
    .await;
    assert_eq!(
        stream.next_message().await,
        json!({"jsonrpc": "2.0", "id": 5, "result": {}})
    );

    // A batch is answered with one array.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 6, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/x"},
        {"jsonrpc": "2.0", "id": 7, "method": "prompts/list"},
    ]);
    send(&testbed, &stream, &batch).await;
    let answers = stream.next_message().await;
    let ids: Vec<&Value> = answers
        .as_array()
        .expect("an array")
        .iter()
        .map(|a| &a["id"])
        .collect();
    assert_eq!(ids, [&json!(6), &json!(7)]);

    // What the server saw: POSTs to the endpoint, with the session in the query.
    let posts: Vec<_> = testbed
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(posts.iter().all(|r| r.path == "/messages"
        && r.query.as_deref() == Some(format!("sessionId={id}").as_str())
        && r.status == Some(202)
        && r.header("content-type") == Some("application/json")));
    let methods: Vec<String> = posts.iter().filter_map(|r| r.rpc_method()).collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/call",
            "tools/call",
            "resources/read",
            "ping",
            "ping"
        ]
    );
}

#[tokio::test]
async fn sample_round_trips_through_a_posted_client_response() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let mut stream = start_session(&testbed).await;
    send(&testbed, &stream, &tool_call(9, "sample", json!({}))).await;
    let ask = stream.next_message().await;
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["id"], "srv-1");

    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {
        "role": "assistant", "model": "test",
        "content": {"type": "text", "text": "hello from the legacy client"},
    }});
    send(&testbed, &stream, &answer).await;
    let result = stream.next_message().await;
    assert_eq!(result["id"], 9);
    assert_eq!(
        result["result"]["content"][0]["text"],
        "hello from the legacy client"
    );

    // roots goes the same way and relays the client's result.
    send(&testbed, &stream, &tool_call(10, "roots", json!({}))).await;
    let ask = stream.next_message().await;
    assert_eq!(ask["method"], "roots/list");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": []}});
    send(&testbed, &stream, &answer).await;
    let result = stream.next_message().await;
    assert_eq!(result["id"], 10);
    assert_eq!(result["result"]["content"][0]["text"], r#"{"roots":[]}"#);
}

#[tokio::test]
async fn slow_and_notify_send_their_messages_on_the_stream() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let mut stream = start_session(&testbed).await;
    let mut call = tool_call(11, "slow", json!({"ms": 60, "steps": 3}));
    call["params"]["_meta"] = json!({"progressToken": "tok"});
    send(&testbed, &stream, &call).await;
    let mut progress = Vec::new();
    let result = loop {
        let message = stream.next_message().await;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "tok");
            progress.push(message["params"]["progress"].as_u64().unwrap());
        } else {
            break message;
        }
    };
    assert_eq!(progress, [1, 2, 3]);
    assert_eq!(result["id"], 11);

    send(
        &testbed,
        &stream,
        &tool_call(12, "notify", json!({"count": 2})),
    )
    .await;
    for n in 1..=2 {
        let note = stream.next_message().await;
        assert_eq!(note["method"], "notifications/message");
        assert_eq!(note["params"]["data"], format!("notification {n} of 2"));
    }
    assert_eq!(stream.next_message().await["id"], 12);

    testbed
        .push_notification(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    assert_eq!(
        stream.next_message().await["method"],
        "notifications/tools/list_changed"
    );
}

#[tokio::test]
async fn a_push_with_no_stream_open_waits_for_the_next_one() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    testbed.push_notification(
        json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}),
    );
    let mut stream = open(&testbed.sse_url()).await;
    assert_eq!(
        stream.next_message().await["method"],
        "notifications/resources/list_changed"
    );
}

#[tokio::test]
async fn unknown_or_missing_sessions_are_refused() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let _stream = open(&testbed.sse_url()).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let origin = testbed.origin();

    let unknown = post(&format!("{origin}/messages?sessionId=nope"), &[], &ping).await;
    assert_eq!(unknown.status, 404);
    let missing = post(&format!("{origin}/messages"), &[], &ping).await;
    assert_eq!(missing.status, 400);
    let get = request(&format!("{origin}/messages"), "GET", &[], b"").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
}

#[tokio::test]
async fn bad_posts_to_a_live_session_are_refused() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let stream = open(&testbed.sse_url()).await;
    let url = stream.endpoint_url(&testbed);
    let text = request(&url, "POST", &[("Content-Type", "text/plain")], b"{}").await;
    assert_eq!(text.status, 415);
    let garbage = request(
        &url,
        "POST",
        &[("Content-Type", "application/json")],
        b"not json",
    )
    .await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json().await["error"]["code"], -32700);
    let invalid = post(&url, &[], &tool_call(1, "reply_invalid", json!({}))).await;
    assert_eq!(invalid.status, 500);
    assert_eq!(invalid.header("content-type"), Some("text/html"));
}

#[tokio::test]
async fn streamable_endpoints_are_refused_with_the_configured_status() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let init = initialize("2025-11-25");

    let reply = post(&testbed.url(), &[], &init).await;
    assert_eq!(reply.status, 404);
    let body = reply.body().await;
    assert!(
        serde_json::from_slice::<Value>(&body).is_err(),
        "not a JSON-RPC error body"
    );
    assert_eq!(post(&testbed.sse_url(), &[], &init).await.status, 404);
    let get = request(
        &testbed.url(),
        "GET",
        &[("Accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(get.status, 404);
    assert!(testbed.session_ids().is_empty());

    for status in [400, 405, 401, 500] {
        testbed.set_config(|c| c.legacy_post_status = status);
        assert_eq!(post(&testbed.url(), &[], &init).await.status, status);
        assert_eq!(post(&testbed.sse_url(), &[], &init).await.status, status);
    }
    // The GET stream still works whatever the POST status.
    let _stream = open(&testbed.sse_url()).await;
}

#[tokio::test]
async fn dropping_streams_ends_them_and_forgets_their_sessions() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let mut stream = start_session(&testbed).await;
    let old_endpoint = stream.endpoint_url(&testbed);
    // A request in flight when the stream drops is never answered.
    send(&testbed, &stream, &tool_call(20, "never", json!({}))).await;
    assert!(
        testbed
            .wait_for(
                |log| log
                    .iter()
                    .any(|r| r.rpc_method().as_deref() == Some("tools/call") && r.status.is_some()),
                WAIT,
            )
            .await
    );

    testbed.drop_legacy_streams();
    let rest = stream.reply.rest_of_stream().await;
    assert!(
        rest.iter().all(|b| b.data.is_none()),
        "no answer after the drop: {rest:?}"
    );
    assert!(testbed.legacy_session_ids().is_empty());
    let ping = json!({"jsonrpc": "2.0", "id": 21, "method": "ping"});
    assert_eq!(post(&old_endpoint, &[], &ping).await.status, 404);

    // A new stream is a new session, which works.
    let mut again = start_session(&testbed).await;
    assert_ne!(again.endpoint_url(&testbed), old_endpoint);
    send(&testbed, &again, &ping).await;
    assert_eq!(again.next_message().await["id"], 21);
}

#[tokio::test]
async fn the_endpoint_override_is_sent_verbatim() {
    let testbed = Testbed::start(legacy()).await.unwrap();
    let elsewhere = format!("{}/messages?sessionId=stolen", testbed.elsewhere_origin());
    testbed.set_config(|c| c.legacy_endpoint_override = Some(elsewhere.clone()));
    let stream = open(&testbed.sse_url()).await;
    assert_eq!(stream.endpoint, elsewhere);
    assert_eq!(testbed.legacy_session_ids().len(), 1);
    assert!(testbed.elsewhere_requests().is_empty());
}

#[tokio::test]
async fn the_endpoint_can_be_delayed() {
    let config = Config {
        legacy_delay_endpoint_ms: Some(300),
        ..legacy()
    };
    let testbed = Testbed::start(config).await.unwrap();
    let started = Instant::now();
    let stream = open(&testbed.sse_url()).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(stream.endpoint.starts_with("/messages?sessionId="));
}

#[tokio::test]
async fn both_mode_serves_streamable_on_mcp_and_legacy_on_sse() {
    let config = Config {
        transport: Transport::Both,
        ..Config::default()
    };
    let testbed = Testbed::start(config).await.unwrap();
    let mut reply = post(&testbed.url(), &[], &initialize("2025-11-25")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("mcp-session-id").is_some());
    let (_, init) = reply.next_message().await.expect("the initialize response");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(testbed.session_ids().len(), 1);

    let mut stream = start_session(&testbed).await;
    send(
        &testbed,
        &stream,
        &tool_call(1, "echo", json!({"text": "both"})),
    )
    .await;
    assert_eq!(
        stream.next_message().await["result"]["content"][0]["text"],
        "both"
    );
    assert_eq!(testbed.legacy_session_ids().len(), 1);
    assert_eq!(testbed.session_ids().len(), 1, "separate session tables");
    // POST /sse is still no endpoint.
    assert_eq!(
        post(&testbed.sse_url(), &[], &initialize("2025-11-25"))
            .await
            .status,
        404
    );

    // The default (Streamable only) has no legacy paths.
    let streamable = Testbed::start(Config::default()).await.unwrap();
    let get = request(
        &streamable.sse_url(),
        "GET",
        &[("Accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(get.status, 404);
}

#[tokio::test]
async fn the_binary_serves_legacy_with_the_legacy_flag() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-testbed"))
        .arg("--legacy")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mcp-testbed");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the URL in time")
        .unwrap()
        .expect("a line");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/sse"),
        "{url}"
    );
    let stream = open(&url).await;
    assert!(stream.endpoint.starts_with("/messages?sessionId="));
    let mcp = url.replace("/sse", "/mcp");
    assert_eq!(post(&mcp, &[], &initialize("2025-11-25")).await.status, 404);

    drop(child.stdin.take());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits when stdin closes")
        .unwrap();
    assert!(status.success());
}
