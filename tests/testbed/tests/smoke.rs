//! Black-box checks of the testbed over raw HTTP/1.1: the Streamable HTTP rules it enforces
//! (content negotiation, sessions, 202s, GET streams, resumption, DELETE), its fault
//! injectors, and the `mcp-testbed` binary. Every wait is bounded.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{post, request, Reply, SseEvent, ACCEPT_BOTH};
use testbed::{Config, ResponseMode, Testbed};

/// How long a test waits for the server to have seen something.
const WAIT: Duration = Duration::from_secs(5);

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": {"sampling": {}, "elicitation": {}, "roots": {}},
        "clientInfo": {"name": "smoke", "version": "0"},
    }})
}

fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

/// The one JSON-RPC response of a reply, whichever content type carries it.
async fn response_of(mut reply: Reply) -> Value {
    if reply.is_sse() {
        reply.next_message().await.expect("a response event").1
    } else {
        reply.json().await
    }
}

/// Starts a testbed and opens a session: returns the session id (empty without sessions).
async fn start_with_session(config: Config, version: &str) -> (Testbed, String) {
    let testbed = Testbed::start(config).await.expect("start the testbed");
    let reply = post(&testbed.url(), &[], &initialize(version)).await;
    assert_eq!(reply.status, 200);
    let session = reply
        .header("mcp-session-id")
        .unwrap_or_default()
        .to_owned();
    let init = response_of(reply).await;
    assert_eq!(init["result"]["protocolVersion"], version);
    (testbed, session)
}

fn json_mode() -> Config {
    Config {
        response_mode: ResponseMode::Json,
        ..Config::default()
    }
}

#[tokio::test]
async fn initialize_in_json_mode_issues_a_session_and_negotiates() {
    let testbed = Testbed::start(json_mode()).await.unwrap();
    let reply = post(&testbed.url(), &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let session = reply.header("mcp-session-id").unwrap().to_owned();
    assert_eq!(session.len(), 32);
    assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let init = reply.json().await;
    assert_eq!(init["id"], 0);
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-testbed");
    assert_eq!(
        init["result"]["capabilities"]["resources"]["subscribe"],
        true
    );
    assert!(init["result"]["instructions"].is_string());
    assert_eq!(testbed.session_ids(), vec![session.clone()]);
    assert_eq!(
        testbed.negotiated_version(&session).as_deref(),
        Some("2025-06-18")
    );

    // An unknown version is answered with the newest one.
    let reply = post(&testbed.url(), &[], &initialize("1999-01-01")).await;
    assert_eq!(
        reply.json().await["result"]["protocolVersion"],
        "2025-11-25"
    );
    let recorded = testbed.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].rpc_method().as_deref(), Some("initialize"));
    assert_eq!(recorded[0].status, Some(200));
    assert_eq!(recorded[0].header("Accept"), Some(ACCEPT_BOTH));
}

#[tokio::test]
async fn initialize_in_sse_mode_primes_keeps_alive_and_ends_the_stream() {
    let testbed = Testbed::start(Config::default()).await.unwrap();
    let mut reply = post(&testbed.url(), &[], &initialize("2025-11-25")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.is_sse());
    assert!(reply.header("mcp-session-id").is_some());
    let blocks = reply.rest_of_stream().await;

    let priming = &blocks[0];
    assert!(priming.id.is_some(), "the priming event has an id");
    assert_eq!(priming.retry, Some(200));
    assert_eq!(priming.data.as_deref(), Some(""));
    assert!(
        blocks
            .iter()
            .any(|b| b.comments.iter().any(|c| c == "keepalive")),
        "a keepalive comment was sent: {blocks:?}"
    );
    let responses: Vec<_> = blocks
        .iter()
        .filter_map(|b| b.json().map(|j| (b, j)))
        .collect();
    assert_eq!(
        responses.len(),
        1,
        "exactly one response, then the stream ends"
    );
    let (event, init) = &responses[0];
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(event.event.as_deref(), Some("message"));
    assert_ne!(event.id, priming.id, "event ids are unique");
}

#[tokio::test]
async fn sessions_are_required_checked_and_expire() {
    let (testbed, session) = start_with_session(json_mode(), "2025-06-18").await;
    let url = testbed.url();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});

    let missing = post(&url, &[], &list).await;
    assert_eq!(missing.status, 400);
    let unknown = post(&url, &[("Mcp-Session-Id", "not-a-session")], &list).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json().await["error"]["code"], -32001);

    let ok = post(&url, &[("Mcp-Session-Id", &session)], &list).await;
    assert_eq!(ok.status, 200);
    let tools = ok.json().await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo") && names.contains(&"drop_then_resume"));
    assert!(tools["result"]["tools"][0]["inputSchema"].is_object());

    testbed.expire_sessions();
    assert!(testbed.session_ids().is_empty());
    let expired = post(&url, &[("Mcp-Session-Id", &session)], &list).await;
    assert_eq!(expired.status, 404);
    let get = request(
        &url,
        "GET",
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
        b"",
    )
    .await;
    assert_eq!(get.status, 404);
    let delete = request(&url, "DELETE", &[("Mcp-Session-Id", &session)], b"").await;
    assert_eq!(delete.status, 404);
}

#[tokio::test]
async fn stateless_mode_needs_no_session_header() {
    let config = Config {
        sessions: false,
        ..json_mode()
    };
    let (testbed, session) = start_with_session(config, "2025-06-18").await;
    assert!(session.is_empty(), "no Mcp-Session-Id without sessions");
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let reply = post(&testbed.url(), &[], &ping).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().await["result"], json!({}));
}

#[tokio::test]
async fn notifications_and_responses_get_202_with_no_body() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let reply = post(
        &testbed.url(),
        &[("Mcp-Session-Id", &session)],
        &initialized,
    )
    .await;
    assert_eq!(reply.status, 202);
    assert!(reply.body().await.is_empty());
    let stray = json!({"jsonrpc": "2.0", "id": "nobody-asked", "result": {}});
    let reply = post(&testbed.url(), &[("Mcp-Session-Id", &session)], &stray).await;
    assert_eq!(reply.status, 202);

    let requests = testbed.requests();
    assert_eq!(
        requests[1].rpc_method().as_deref(),
        Some("notifications/initialized")
    );
    assert_eq!(requests[1].header("mcp-session-id"), Some(session.as_str()));
    assert_eq!(requests[2].rpc_id(), Some(json!("nobody-asked")));
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_right_status() {
    let (testbed, session) = start_with_session(json_mode(), "2025-06-18").await;
    let url = testbed.url();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let sid = ("Mcp-Session-Id", session.as_str());

    let only_json = [
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
        sid,
    ];
    let reply = request(&url, "POST", &only_json, ping.as_bytes()).await;
    assert_eq!(reply.status, 406);
    assert!(reply.json().await["error"]["code"].is_i64());

    let text_body = [("Accept", ACCEPT_BOTH), ("Content-Type", "text/plain"), sid];
    assert_eq!(
        request(&url, "POST", &text_body, ping.as_bytes())
            .await
            .status,
        415
    );

    let json_body = [
        ("Accept", ACCEPT_BOTH),
        ("Content-Type", "application/json; charset=utf-8"),
        sid,
    ];
    let garbage = request(&url, "POST", &json_body, b"{bad json").await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json().await["error"]["code"], -32700);

    let reply = post(
        &url,
        &[sid, ("MCP-Protocol-Version", "1999-01-01")],
        &json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = post(
        &url,
        &[sid, ("MCP-Protocol-Version", "2025-06-18")],
        &json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let recorded = testbed.requests();
    assert_eq!(
        recorded.last().unwrap().header("mcp-protocol-version"),
        Some("2025-06-18")
    );

    // Batches belong to 2025-03-26 only.
    let batch = json!([{"jsonrpc": "2.0", "id": 4, "method": "ping"}]);
    assert_eq!(post(&url, &[sid], &batch).await.status, 400);

    let unknown = post(
        &url,
        &[sid],
        &json!({"jsonrpc": "2.0", "id": 5, "method": "no/such"}),
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.json().await["error"]["code"], -32601);

    let elsewhere = request(&format!("{}/other", testbed.origin()), "GET", &[], b"").await;
    assert_eq!(elsewhere.status, 404);
}

#[tokio::test]
async fn batches_are_answered_on_a_2025_03_26_session() {
    let (testbed, session) = start_with_session(json_mode(), "2025-03-26").await;
    let sid = ("Mcp-Session-Id", session.as_str());
    let batch = json!([
        tool_call(1, "echo", json!({"text": "one"})),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        tool_call(2, "add", json!({"a": 2, "b": 3})),
    ]);
    let reply = post(&testbed.url(), &[sid], &batch).await;
    assert_eq!(reply.status, 200);
    let answers = reply.json().await;
    let answers = answers.as_array().expect("a batch answer is an array");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0]["result"]["content"][0]["text"], "one");
    assert_eq!(answers[1]["result"]["content"][0]["text"], "5");

    testbed.set_config(|c| c.response_mode = ResponseMode::Sse);
    let mut reply = post(&testbed.url(), &[sid], &batch).await;
    assert!(reply.is_sse());
    let mut ids = Vec::new();
    while let Some((_, message)) = reply.next_message().await {
        ids.push(message["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2], "one event per request");
}

#[tokio::test]
async fn tools_answer_in_json_and_alternate_modes() {
    let config = Config {
        response_mode: ResponseMode::Alternate,
        ..Config::default()
    };
    let testbed = Testbed::start(config).await.unwrap();
    let url = testbed.url();
    let first = post(&url, &[], &initialize("2025-11-25")).await;
    assert!(!first.is_sse(), "alternate starts with JSON");
    let session = first.header("mcp-session-id").unwrap().to_owned();
    let sid = ("Mcp-Session-Id", session.as_str());

    let text = "multi\nline \u{2028} text";
    let second = post(&url, &[sid], &tool_call(1, "echo", json!({"text": text}))).await;
    assert!(second.is_sse(), "then SSE");
    assert_eq!(
        response_of(second).await["result"]["content"][0]["text"],
        text
    );
    let third = post(
        &url,
        &[sid],
        &tool_call(2, "big", json!({"bytes": 100_000})),
    )
    .await;
    assert!(!third.is_sse(), "then JSON again");
    let big = third.json().await;
    let big = big["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(big.len(), 100_000);
    assert!(big.bytes().all(|b| b == b'x'));

    let resource = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "test://static/hello"}});
    let read = response_of(post(&url, &[sid], &resource).await).await;
    assert_eq!(read["result"]["contents"][0]["uri"], "test://static/hello");
    let prompt = json!({"jsonrpc": "2.0", "id": 4, "method": "prompts/get", "params": {"name": "greeting", "arguments": {"name": "Ada"}}});
    let got = response_of(post(&url, &[sid], &prompt).await).await;
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"],
        "Please greet Ada."
    );
}

#[tokio::test]
async fn reply_invalid_answers_500_with_a_non_json_body() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let reply = post(
        &testbed.url(),
        &[("Mcp-Session-Id", &session)],
        &tool_call(1, "reply_invalid", json!({})),
    )
    .await;
    assert_eq!(reply.status, 500);
    let body = reply.body().await;
    assert!(serde_json::from_slice::<Value>(&body).is_err());
}

#[tokio::test]
async fn answer_faults_repeat_stray_mislabel_and_never_end() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let (url, session) = (testbed.url(), [("Mcp-Session-Id", session.as_str())]);
    let ids = |blocks: Vec<SseEvent>| -> Vec<Value> {
        blocks
            .iter()
            .filter_map(|b| b.json())
            .map(|m| m["id"].clone())
            .collect()
    };
    let mut twice = post(&url, &session, &tool_call(1, "reply_twice", json!({}))).await;
    assert_eq!(ids(twice.rest_of_stream().await), [json!(1), json!(1)]);
    let mut stray = post(
        &url,
        &session,
        &tool_call(2, "reply_stray", json!({"id": 7})),
    )
    .await;
    assert_eq!(ids(stray.rest_of_stream().await), [json!(7), json!(2)]);

    let mislabelled = post(&url, &session, &tool_call(3, "reply_not_json", json!({}))).await;
    assert_eq!(mislabelled.status, 200);
    assert_eq!(mislabelled.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<Value>(&mislabelled.body().await).is_err());

    let mut endless = post(&url, &session, &tool_call(4, "endless_event", json!({}))).await;
    let start = endless.body_prefix(4 * 1024 * 1024).await;
    let opened = b"event: message\ndata: ";
    let at = start
        .windows(opened.len())
        .position(|w| w == opened)
        .expect("the event opens");
    let data = &start[at + opened.len()..];
    assert!(data.len() >= 3 * 1024 * 1024, "{} bytes", data.len());
    assert!(!data.contains(&b'\n'), "the event ended");
}

#[tokio::test]
async fn get_stream_is_405_when_off_and_carries_pushes_when_on() {
    let config = Config {
        get_stream: false,
        ..Config::default()
    };
    let (testbed, session) = start_with_session(config, "2025-11-25").await;
    let url = testbed.url();
    let get_headers = [
        ("Accept", "text/event-stream"),
        ("Mcp-Session-Id", session.as_str()),
    ];
    assert_eq!(request(&url, "GET", &get_headers, b"").await.status, 405);

    testbed.set_config(|c| c.get_stream = true);
    // Pushed before any stream is open: it waits for one.
    testbed
        .push_notification(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    let mut stream = request(&url, "GET", &get_headers, b"").await;
    assert_eq!(stream.status, 200);
    assert!(stream.is_sse());
    let (_, queued) = stream.next_message().await.unwrap();
    assert_eq!(queued["method"], "notifications/tools/list_changed");

    testbed.push_notification(
        json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}),
    );
    let (event, pushed) = stream.next_message().await.unwrap();
    assert_eq!(pushed["method"], "notifications/resources/list_changed");
    assert!(event.id.is_some());

    let notify = post(
        &url,
        &[("Mcp-Session-Id", &session)],
        &tool_call(1, "notify", json!({"count": 3})),
    )
    .await;
    assert_eq!(
        response_of(notify).await["result"]["content"][0]["text"],
        "ok"
    );
    for n in 1..=3 {
        let (_, message) = stream.next_message().await.unwrap();
        assert_eq!(message["method"], "notifications/message");
        assert_eq!(message["params"]["data"], format!("notification {n} of 3"));
    }

    assert_eq!(
        request(&url, "GET", &[("Mcp-Session-Id", session.as_str())], b"")
            .await
            .status,
        406
    );
}

#[tokio::test]
async fn drop_then_resume_delivers_the_result_after_last_event_id() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let url = testbed.url();
    let sid = ("Mcp-Session-Id", session.as_str());
    let mut reply = post(&url, &[sid], &tool_call(7, "drop_then_resume", json!({}))).await;
    let blocks = reply.rest_of_stream().await;
    assert!(
        blocks.iter().all(|b| b.json().is_none()),
        "no result on the first stream"
    );
    let last_id = blocks
        .iter()
        .rev()
        .find_map(|b| b.id.clone())
        .expect("the stream gave an event id");
    assert!(blocks.iter().any(|b| b.retry == Some(200)));

    let resume_headers = [
        ("Accept", "text/event-stream"),
        sid,
        ("Last-Event-ID", last_id.as_str()),
    ];
    let mut resumed = request(&url, "GET", &resume_headers, b"").await;
    assert_eq!(resumed.status, 200);
    let (event, result) = resumed.next_message().await.expect("the replayed result");
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "resumed");
    assert_ne!(event.id.as_deref(), Some(last_id.as_str()));
    assert!(
        resumed.next_message().await.is_none(),
        "the finished stream closes"
    );

    let gets: Vec<_> = testbed
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].header("last-event-id"), Some(last_id.as_str()));

    // Without `retry:` configured the tool still leaves an id to resume from.
    testbed.set_config(|c| c.sse_retry_ms = None);
    let mut reply = post(&url, &[sid], &tool_call(8, "drop_then_resume", json!({}))).await;
    let blocks = reply.rest_of_stream().await;
    assert!(blocks
        .iter()
        .all(|b| b.retry.is_none() && b.json().is_none()));
    let last_id = blocks.iter().find_map(|b| b.id.clone()).expect("an id");
    let resume_headers = [
        ("Accept", "text/event-stream"),
        sid,
        ("Last-Event-ID", last_id.as_str()),
    ];
    let mut resumed = request(&url, "GET", &resume_headers, b"").await;
    assert_eq!(resumed.next_message().await.unwrap().1["id"], 8);

    // JSON answers have no stream to drop.
    testbed.set_config(|c| c.response_mode = ResponseMode::Json);
    let reply = post(&url, &[sid], &tool_call(9, "drop_then_resume", json!({}))).await;
    assert_eq!(reply.json().await["result"]["isError"], true);
}

#[tokio::test]
async fn a_get_stream_resumes_with_what_it_missed() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let url = testbed.url();
    let sid = ("Mcp-Session-Id", session.as_str());
    let mut stream = request(&url, "GET", &[("Accept", "text/event-stream"), sid], b"").await;
    testbed.push_notification(
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "a"}}),
    );
    let (seen, _) = stream.next_message().await.unwrap();
    drop(stream);
    testbed.push_notification(
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "b"}}),
    );

    let last = seen.id.expect("GET events have ids");
    let headers = [
        ("Accept", "text/event-stream"),
        sid,
        ("Last-Event-ID", last.as_str()),
    ];
    let mut resumed = request(&url, "GET", &headers, b"").await;
    let (_, missed) = resumed.next_message().await.unwrap();
    assert_eq!(missed["params"]["data"], "b", "the missed message, once");
    testbed.push_notification(
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "c"}}),
    );
    let (_, next) = resumed.next_message().await.unwrap();
    assert_eq!(
        next["params"]["data"], "c",
        "the resumed stream stays the GET stream"
    );
}

#[tokio::test]
async fn drop_no_id_closes_without_ids_or_result() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let mut reply = post(
        &testbed.url(),
        &[("Mcp-Session-Id", &session)],
        &tool_call(8, "drop_no_id", json!({})),
    )
    .await;
    assert!(reply.is_sse());
    let blocks = reply.rest_of_stream().await;
    assert!(
        blocks.iter().all(|b| b.id.is_none() && b.data.is_none()),
        "{blocks:?}"
    );
}

#[tokio::test]
async fn sample_round_trips_through_the_client() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let url = testbed.url();
    let sid = ("Mcp-Session-Id", session.as_str());
    let mut call = post(&url, &[sid], &tool_call(9, "sample", json!({}))).await;
    let (_, ask) = call.next_message().await.expect("the server's request");
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["id"], "srv-1");

    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {
        "role": "assistant", "model": "test", "content": {"type": "text", "text": "hello from the client"},
    }});
    let posted = post(&url, &[sid], &answer).await;
    assert_eq!(posted.status, 202);
    let (_, result) = call.next_message().await.expect("the tool's result");
    assert_eq!(result["id"], 9);
    assert_eq!(
        result["result"]["content"][0]["text"],
        "hello from the client"
    );

    // In JSON mode there is no stream to ask on.
    testbed.set_config(|c| c.response_mode = ResponseMode::Json);
    let reply = post(&url, &[sid], &tool_call(10, "roots", json!({}))).await;
    assert_eq!(reply.json().await["result"]["isError"], true);
}

#[tokio::test]
async fn slow_sends_progress_with_the_token_before_its_result() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let mut call = tool_call(11, "slow", json!({"ms": 60, "steps": 3}));
    call["params"]["_meta"] = json!({"progressToken": "tok"});
    let mut reply = post(&testbed.url(), &[("Mcp-Session-Id", &session)], &call).await;
    let mut progress = Vec::new();
    let result = loop {
        let (_, message) = reply.next_message().await.expect("more events");
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "tok");
            progress.push(message["params"]["progress"].as_u64().unwrap());
        } else {
            break message;
        }
    };
    assert_eq!(progress, vec![1, 2, 3]);
    assert_eq!(result["id"], 11);
}

#[tokio::test]
async fn never_holds_the_stream_and_cancellation_is_recorded() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let url = testbed.url();
    let sid = ("Mcp-Session-Id", session.as_str());
    let mut call = post(&url, &[sid], &tool_call(12, "never", json!({}))).await;
    // The first blocks are the priming event and keepalives; no response comes.
    let block = call.next_block().await.expect("the stream stays open");
    assert!(block.json().is_none());
    let cancel =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 12}});
    assert_eq!(post(&url, &[sid], &cancel).await.status, 202);
    let seen = testbed
        .wait_for(
            |log| {
                log.iter()
                    .any(|r| r.rpc_method().as_deref() == Some("notifications/cancelled"))
            },
            WAIT,
        )
        .await;
    assert!(seen);
    // Keepalives keep coming (about once a second) and no response does.
    let mut keepalives = 0;
    for _ in 0..3 {
        let block = call
            .next_block()
            .await
            .expect("still open after the cancel");
        assert!(block.json().is_none(), "never answers: {block:?}");
        keepalives += usize::from(block.comments.iter().any(|c| c == "keepalive"));
    }
    assert!(keepalives >= 2, "periodic keepalive comments");
    assert!(
        !testbed
            .wait_for(|log| log.len() > 100, Duration::from_millis(100))
            .await
    );
}

#[tokio::test]
async fn delete_ends_the_session_unless_disallowed() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let url = testbed.url();
    let sid = ("Mcp-Session-Id", session.as_str());
    let mut stream = request(&url, "GET", &[("Accept", "text/event-stream"), sid], b"").await;
    assert_eq!(stream.status, 200);
    assert_eq!(request(&url, "DELETE", &[sid], b"").await.status, 200);
    assert_eq!(
        stream
            .rest_of_stream()
            .await
            .iter()
            .filter(|b| b.data.as_deref().is_some_and(|d| !d.is_empty()))
            .count(),
        0
    );
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(post(&url, &[sid], &ping).await.status, 404);

    testbed.set_config(|c| c.allow_delete = false);
    let reply = post(&url, &[], &initialize("2025-11-25")).await;
    let session = reply.header("mcp-session-id").unwrap().to_owned();
    let reply = request(&url, "DELETE", &[("Mcp-Session-Id", &session)], b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(testbed.session_ids(), vec![session]);
}

#[tokio::test]
async fn redirects_go_to_another_origin_that_records_what_arrives() {
    let testbed = Testbed::start(Config::default()).await.unwrap();
    assert_ne!(testbed.elsewhere_origin(), testbed.origin());
    let reply = post(
        &testbed.redirect_url(),
        &[("Authorization", "Bearer secret")],
        &initialize("2025-11-25"),
    )
    .await;
    assert_eq!(reply.status, 307);
    let location = reply.header("location").unwrap().to_owned();
    assert_eq!(location, format!("{}/mcp", testbed.elsewhere_origin()));
    assert!(testbed.elsewhere_requests().is_empty());

    let followed = post(&location, &[], &initialize("2025-11-25")).await;
    assert_eq!(followed.status, 404);
    let seen = testbed.elsewhere_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), None);

    // Mid-session redirects.
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    testbed.set_config(|c| c.redirect_mcp = true);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(
        post(&testbed.url(), &[("Mcp-Session-Id", &session)], &ping)
            .await
            .status,
        307
    );
    testbed.set_config(|c| {
        c.redirect_mcp = false;
        c.fail_status = Some(503);
    });
    assert_eq!(
        post(&testbed.url(), &[("Mcp-Session-Id", &session)], &ping)
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_the_streams() {
    let (testbed, session) = start_with_session(Config::default(), "2025-11-25").await;
    let url = testbed.url();
    let mut stream = request(
        &url,
        "GET",
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
        b"",
    )
    .await;
    assert_eq!(stream.status, 200);
    testbed.shutdown();
    let _ = stream.rest_of_stream().await;
    let refused = tokio::time::timeout(WAIT, async {
        // The accept loop stops promptly; a few tries cover the moment before it does.
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(testbed.origin().trim_start_matches("http://"))
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    })
    .await;
    assert_eq!(refused, Ok(true));
}

#[tokio::test]
async fn the_binary_prints_its_url_and_stops_when_stdin_closes() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-testbed"))
        .arg("--json")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    let reply = post(&url, &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.header("content-type"), Some("application/json"));

    drop(child.stdin.take());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits when stdin closes")
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains(&format!("MCP testbed listening on {url}")),
        "{stderr}"
    );
}
