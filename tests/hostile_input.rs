//! Hostile input, black box (issue #6): one test per kind of bad input, driven through
//! the real `mcp-remote` binary against the loopback testbed: from the host on stdin,
//! from the MCP server, from the authorization server, from the browser callback, from
//! the files on disk. Each test checks the clear error (a JSON-RPC error on stdout or a
//! line on stderr), that the process goes on serving (a normal call after it succeeds),
//! and, where credentials are at stake, that nothing stored is lost (DESIGN.md
//! invariant 6). Where memory is at stake, the proxy's peak resident size (VmHWM) must
//! stay under [`MEMORY_BOUND`] after the input; no test asserts a wall-clock time.

mod common;

use common::oauth::{initialize, protected, Env};
use common::{call, text, Proxy, WAIT};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use testbed::{AuthConfig, AuthorizeBehaviour, Config, ResponseMode, Testbed, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The most resident memory the proxy may have used at its peak after hostile input: far
/// above what it needs (about 14 MiB, README §Performance), far below what buffering the
/// input would take.
const MEMORY_BOUND: u64 = 64 * 1024 * 1024;

/// The `--max-message-bytes` of the tests about sizes: small, so that input many times
/// larger stays cheap to make.
const LIMIT: usize = 1024 * 1024;

/// A testbed with `config` and a proxy (`mcp-remote <url> <args…>`) past `initialize`.
async fn serving(config: Config, args: &[&str]) -> (Testbed, Proxy) {
    let tb = Testbed::start(config).await.expect("testbed");
    let url = tb.url();
    let argv: Vec<&str> = std::iter::once(url.as_str())
        .chain(args.iter().copied())
        .collect();
    let mut p = Proxy::spawn(&argv);
    p.initialize("2025-11-25").await;
    (tb, p)
}

/// Like [`serving`], with `--max-message-bytes` [`LIMIT`].
async fn serving_with_limit() -> (Testbed, Proxy) {
    serving(
        Config::default(),
        &["--max-message-bytes", &LIMIT.to_string()],
    )
    .await
}

/// Asserts the proxy still serves: `echo` called with id `id` comes back intact.
async fn assert_serving(p: &mut Proxy, id: u64) {
    let words = format!("still serving after {id}");
    p.send(call(id, "echo", json!({ "text": words }))).await;
    let (answer, _) = p.recv_response(&json!(id)).await;
    assert_eq!(text(&answer), words, "the proxy stopped serving: {answer}");
}

/// The proxy's peak resident memory (VmHWM), in bytes.
#[cfg(target_os = "linux")]
fn peak_memory(p: &Proxy) -> u64 {
    let pid = p.child.id().expect("the proxy is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kib * 1024
}

/// Asserts the proxy's peak memory stayed under [`MEMORY_BOUND`] (Linux only).
fn assert_memory_bounded(p: &Proxy, after: &str) {
    #[cfg(target_os = "linux")]
    {
        let peak = peak_memory(p);
        assert!(
            peak < MEMORY_BOUND,
            "peak memory {} MiB after {after}",
            peak / (1024 * 1024)
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, after);
}

/// The next stdout line exactly as written, within `limit`; `None` if none came.
async fn raw_line_within(p: &mut Proxy, limit: Duration) -> Option<String> {
    let mut line = String::new();
    match tokio::time::timeout(limit, p.stdout.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line),
        _ => None,
    }
}

/// The stdout lines that come within `quiet` of each other, parsed (at most 100).
async fn lines_until_quiet(p: &mut Proxy, quiet: Duration) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        match p.recv_within(quiet).await {
            Some(v) => lines.push(v),
            None => break,
        }
    }
    lines
}

/// The error code and message of an error answer (panics on anything else).
fn error_of(answer: &Value) -> (i64, &str) {
    let code = answer["error"]["code"].as_i64();
    let message = answer["error"]["message"].as_str();
    match (code, message) {
        (Some(code), Some(message)) if !message.is_empty() => (code, message),
        _ => panic!("not an error with a message: {answer}"),
    }
}

/// Calls `tool` with `args` as id `id` and returns the answer, asserting it is the only
/// line that comes (nothing before it, and half a second of quiet after it).
async fn the_only_answer(p: &mut Proxy, id: u64, tool: &str, args: Value) -> Value {
    p.send(call(id, tool, args)).await;
    let (answer, before) = p.recv_response(&json!(id)).await;
    assert!(before.is_empty(), "before the answer to {tool}: {before:?}");
    let after = lines_until_quiet(p, Duration::from_millis(500)).await;
    assert!(after.is_empty(), "after the answer to {tool}: {after:?}");
    answer
}

/// Whether any request the server received carries `needle` in its body.
fn server_saw(tb: &Testbed, needle: &[u8]) -> bool {
    tb.requests()
        .iter()
        .any(|r| r.body.windows(needle.len()).any(|w| w == needle))
}

/// Lines with invalid UTF-8 the proxy refuses, each with a marker the server would see if
/// it were forwarded: bare bytes, and bad sequences in the id, the method and the params.
const INVALID_UTF8_REFUSED: [&[u8]; 7] = [
    b"\xff\xfe\xfd marker-bare\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":\"marker-id-\xff\",\"method\":\"ping\"}\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"marker-method-\xc3\x28\"}\n",
    // An overlong encoding of '/'.
    b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"marker-overlong \xc0\xaf\"}}}\n",
    // A UTF-16 surrogate encoded as UTF-8.
    b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"marker-surrogate \xed\xa0\x80\"}}}\n",
    // A sequence cut short.
    b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"marker-cut \xe2\x82\"}}}\n",
    // In a key.
    b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"marker-key\",\"\xff\":1}}}\n",
];

/// Lines with invalid UTF-8 in a member the proxy does not read (neither `jsonrpc`, `id`,
/// `method`, `params`, `result` nor `error`): they are forwarded to the server.
const INVALID_UTF8_ELSEWHERE: [&[u8]; 3] = [
    b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"ping\",\"marker-extra\":\"\xc0\xaf\"}\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"ping\",\"marker-extra\":[\"\xed\xa0\x80\"]}\n",
    b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"marker-extra\":{\"\xff\":1}}\n",
];

/// Writes each line, and asserts it is answered with one `-32700` that names no id and
/// that nothing of it reached the server.
async fn assert_parse_errors_not_forwarded(tb: &Testbed, p: &mut Proxy, lines: &[&[u8]]) {
    for line in lines {
        let shown = String::from_utf8_lossy(line);
        p.write_raw(line).await;
        let answers = lines_until_quiet(p, Duration::from_millis(500)).await;
        assert_eq!(answers.len(), 1, "one answer for {shown:?}: {answers:?}");
        assert_eq!(error_of(&answers[0]).0, -32700, "{shown:?}: {}", answers[0]);
        assert!(answers[0]["id"].is_null(), "{shown:?}: {}", answers[0]);
        assert!(!server_saw(tb, b"marker-"), "{shown:?} reached the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_on_stdin_is_a_parse_error() {
    let (tb, mut p) = serving(Config::default(), &[]).await;
    assert_parse_errors_not_forwarded(&tb, &mut p, &INVALID_UTF8_REFUSED).await;
    assert_serving(&mut p, 1).await;
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0));
    assert!(stderr.contains("unusable line"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_any_member_is_a_parse_error() {
    let (tb, mut p) = serving(Config::default(), &[]).await;
    assert_parse_errors_not_forwarded(&tb, &mut p, &INVALID_UTF8_ELSEWHERE).await;
    assert_serving(&mut p, 1).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_max_message_bytes_is_refused_and_the_next_one_served() {
    let (tb, mut p) = serving_with_limit().await;
    // A line of exactly the limit is a message; one byte more is not.
    let head = |id: u64| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":""#
        )
    };
    let padded = |id: u64, len: usize| {
        let mut line = head(id).into_bytes();
        line.resize(len - 4, b'x');
        line.extend(b"\"}}}\n");
        line
    };
    p.write_raw(&padded(1, LIMIT)).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(
        text(&r).len(),
        LIMIT - 4 - head(1).len(),
        "a line of the limit"
    );
    // Eighty times the limit (more than the memory bound), then a valid line, in one write.
    let mut input = padded(2, LIMIT + 1);
    input.extend(padded(3, 80 * LIMIT));
    input.extend(serde_json::to_vec(&call(4, "echo", json!({"text": "next"}))).unwrap());
    input.push(b'\n');
    p.write_raw(&input).await;
    for _ in 0..2 {
        let r = p.recv().await;
        let (code, message) = error_of(&r);
        assert_eq!(code, -32600, "A6: {r}");
        assert!(message.contains("exceeds"), "{r}");
    }
    let r = p.recv().await;
    assert_eq!((r["id"].as_u64(), text(&r)), (Some(4), "next"));
    assert!(
        tb.requests().iter().all(|r| r.body.len() <= LIMIT),
        "an oversized line went upstream"
    );
    assert_memory_bounded(&p, "a line 80 times --max-message-bytes");
    assert_serving(&mut p, 5).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_gets_an_error_and_no_crash() {
    const DEPTH: usize = 100_000;
    let (_tb, mut p) = serving(Config::default(), &[]).await;
    let nested = |open: &[u8], inner: &[u8], close: &[u8]| {
        let mut bytes = open.repeat(DEPTH);
        bytes.extend(inner);
        bytes.extend(close.repeat(DEPTH));
        bytes
    };
    // Unterminated, balanced arrays, balanced objects: none of them is a message.
    let lines = [
        nested(b"[", b"", b""),
        nested(b"[", b"", b"]"),
        nested(b"{\"a\":", b"1", b"}"),
    ];
    for mut line in lines {
        line.push(b'\n');
        p.write_raw(&line).await;
        let r = p.recv().await;
        let (code, _) = error_of(&r);
        assert!(matches!(code, -32700 | -32600), "{r}");
        assert!(r["id"].is_null(), "{r}");
    }
    // A request whose params nest that deep: one answer, an error, whoever refuses it.
    let mut request = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"deep","deep":"#.to_vec();
    request.extend(nested(b"[", b"", b"]"));
    request.extend(b"}}}\n");
    p.write_raw(&request).await;
    let (r, _) = p.recv_response(&json!(7)).await;
    error_of(&r);
    let later = lines_until_quiet(&mut p, Duration::from_millis(500)).await;
    assert!(
        later.iter().all(|m| m["id"] != 7),
        "a second answer: {later:?}"
    );
    assert_memory_bounded(&p, "JSON nested 100 000 deep");
    assert_serving(&mut p, 8).await;
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Sends a `tools/call` of `echo` whose id is the JSON text `id`, and returns the stdout
/// line answering it exactly as the proxy wrote it (other lines are skipped).
async fn answer_line_for_id(p: &mut Proxy, id: &str, marker: &str) -> String {
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{marker}"}}}}}}"#
    );
    p.write_raw(format!("{line}\n").as_bytes()).await;
    for _ in 0..100 {
        let Some(raw) = raw_line_within(p, WAIT).await else {
            break;
        };
        if raw.contains(marker) || raw.contains("\"error\"") {
            return raw;
        }
    }
    panic!("no answer for id {id}");
}

/// The `id` member of a JSON-RPC line exactly as written.
fn raw_id(line: &str) -> String {
    let members: HashMap<String, Box<RawValue>> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    members.get("id").expect("an id").get().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_every_json_type_come_back_to_the_host() {
    let (tb, mut p) = serving(Config::default(), &[]).await;
    // Each id goes to the server byte for byte and comes back equal; an id written the
    // way a server writes it again comes back byte for byte too.
    let ids = [
        ("0", true),
        ("-7", true),
        ("1.5", true),
        ("9007199254740993", true),
        (r#""""#, true),
        (r#""1""#, true),
        (r#""mcp-remote""#, true),
        (r#""é \" \\ 😀""#, true),
        ("1e3", false),
        ("-2.5E-3", false),
        (r#""\u00e9 \u2028 \/ \ud83d\ude00""#, false),
    ];
    for (n, (id, kept)) in ids.into_iter().enumerate() {
        let marker = format!("id-test-{n}");
        let raw = answer_line_for_id(&mut p, id, &marker).await;
        let answer: Value = serde_json::from_str(&raw).unwrap();
        let sent: Value = serde_json::from_str(id).unwrap();
        assert_eq!(answer["id"], sent, "id {id} came back as {raw}");
        assert_eq!(text(&answer), marker, "{raw}");
        if kept {
            assert_eq!(raw_id(&raw), id, "id {id} came back as {raw}");
        }
        let forwarded = format!("\"id\":{id}");
        assert!(server_saw(&tb, forwarded.as_bytes()), "{id} was rewritten");
    }
    // JSON-RPC 2.0 §4: an id is a string or a number.
    for id in ["null", "true", "false", "{\"n\":1}", "[1]"] {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"bad-id"}}}}}}"#
        );
        p.write_raw(format!("{line}\n").as_bytes()).await;
        let r = p.recv().await;
        let (code, message) = error_of(&r);
        assert_eq!(code, -32600, "id {id}: {r}");
        assert!(message.contains("string or a number"), "{r}");
    }
    assert!(
        !server_saw(&tb, b"bad-id"),
        "a request with a bad id went upstream"
    );
    assert_serving(&mut p, 1).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_come_back_byte_for_byte_even_when_the_server_rewrites_them() {
    let (_tb, mut p) = serving(Config::default(), &["--request-timeout", "3"]).await;
    // The testbed, like most servers, parses ids as JSON values and writes them back its
    // own way: 1000.0, 100.0, "A/", 1.2345678901234568e29.
    for (n, id) in [
        "1e3",
        "1E+2",
        r#""\u0041\/""#,
        "123456789012345678901234567890",
    ]
    .into_iter()
    .enumerate()
    {
        let marker = format!("rewritten-{n}");
        let raw = answer_line_for_id(&mut p, id, &marker).await;
        assert!(raw.contains(&marker), "id {id} got no answer: {raw}");
        assert_eq!(raw_id(&raw), id, "id {id} came back as {raw}");
    }
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_in_the_proxys_reserved_space_are_refused() {
    let (tb, mut p) = serving(Config::default(), &[]).await;
    // machines::jsonrpc::RESERVED_ID_PREFIX, plain and escaped.
    for id in [
        r#""mcp-remote-reinit-1""#,
        r#""mcp-remote-ping-1""#,
        r#""mcp-remote-""#,
        r#""mcp\u002dremote-x""#,
    ] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        p.write_raw(format!("{line}\n").as_bytes()).await;
        let raw = raw_line_within(&mut p, WAIT).await.expect("an answer");
        assert_eq!(raw_id(&raw), id, "{raw}");
        let r: Value = serde_json::from_str(&raw).unwrap();
        let (code, message) = error_of(&r);
        assert_eq!(code, -32600, "A11: {r}");
        assert!(message.contains("reserved"), "{r}");
    }
    assert!(
        !tb.requests()
            .iter()
            .any(|r| r.rpc_method().as_deref() == Some("ping")),
        "a reserved id went upstream"
    );
    assert_serving(&mut p, 1).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_ids_nobody_asked_never_reach_the_host() {
    let (_tb, mut p) = serving(Config::default(), &[]).await;
    p.send(call(1, "echo", json!({"text": "first"}))).await;
    p.recv_response(&json!(1)).await;
    // Ids never sent, one in the proxy's own space, and one already answered.
    let stray_ids = [
        json!("stray"),
        json!(424242),
        json!("mcp-remote-ping-1"),
        json!(1),
    ];
    for (n, stray) in (10u64..).zip(stray_ids) {
        let r = the_only_answer(&mut p, n, "reply_stray", json!({ "id": stray })).await;
        assert_eq!(text(&r), "its own answer", "stray id {stray}");
    }
    assert_serving(&mut p, 20).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_twice_is_heard_once() {
    for transport in [Transport::Streamable, Transport::Legacy] {
        let tb = Testbed::start(Config {
            transport,
            ..Config::default()
        })
        .await
        .expect("testbed");
        let url = match transport {
            Transport::Legacy => tb.sse_url(),
            _ => tb.url(),
        };
        let mut p = Proxy::spawn(&[&url]);
        p.initialize("2025-11-25").await;
        for id in 1..=3u64 {
            let r = the_only_answer(&mut p, id, "reply_twice", json!({})).await;
            assert_eq!(text(&r), "answered twice", "{transport:?}");
        }
        assert_serving(&mut p, 4).await;
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_event_over_the_limit_fails_its_request_only() {
    let (tb, mut p) = serving_with_limit().await;
    // The testbed's largest: buffered whole, it alone would break the memory bound.
    let big = json!({ "bytes": 64 * LIMIT });
    let r = the_only_answer(&mut p, 1, "big", big.clone()).await;
    assert_eq!(error_of(&r).0, -32001, "{r}");
    assert_memory_bounded(&p, "an SSE event 64 times --max-message-bytes");
    assert_serving(&mut p, 2).await;
    // The same answer as one JSON body.
    tb.set_config(|c| c.response_mode = ResponseMode::Json);
    let r = the_only_answer(&mut p, 3, "big", big).await;
    let (code, message) = error_of(&r);
    assert_eq!(code, -32001, "{r}");
    assert!(message.contains("--max-message-bytes"), "{r}");
    assert_memory_bounded(&p, "a JSON body 64 times --max-message-bytes");
    assert_serving(&mut p, 4).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_server_event_is_cut_at_the_limit() {
    let (_tb, mut p) = serving_with_limit().await;
    let r = the_only_answer(&mut p, 1, "endless_event", json!({})).await;
    assert_eq!(error_of(&r).0, -32001, "{r}");
    assert_memory_bounded(&p, "an SSE event that never ends");
    assert_serving(&mut p, 2).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_limit_is_reported_as_too_large_and_not_fetched_again() {
    let (tb, mut p) = serving_with_limit().await;
    for (id, tool, args) in [
        (1, "big", json!({ "bytes": 2 * LIMIT })),
        (2, "endless_event", json!({})),
    ] {
        tb.clear_requests();
        let r = the_only_answer(&mut p, id, tool, args).await;
        let (_, message) = error_of(&r);
        assert!(message.contains("--max-message-bytes"), "{tool}: {r}");
        let resumed = tb
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.header("last-event-id").is_some());
        assert!(!resumed, "{tool}: the refused event was asked for again");
    }
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_despite_its_content_type_gets_an_error() {
    let (_tb, mut p) = serving(Config::default(), &[]).await;
    let r = the_only_answer(&mut p, 1, "reply_not_json", json!({})).await;
    assert_eq!(error_of(&r).0, -32001, "{r}");
    assert_serving(&mut p, 2).await;
    let (_, stderr) = p.close().await;
    assert!(
        stderr.contains("not JSON-RPC") && stderr.contains("invalid JSON"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_endpoint_on_another_origin_is_refused() {
    let tb = Testbed::start(Config {
        transport: Transport::Legacy,
        ..Config::default()
    })
    .await
    .expect("testbed");
    for endpoint in [
        format!("{}/messages?sessionId=stolen", tb.elsewhere_origin()),
        format!(
            "//{}/messages",
            tb.elsewhere_origin().trim_start_matches("http://")
        ),
    ] {
        tb.set_config(|c| c.legacy_endpoint_override = Some(endpoint.clone()));
        let mut p = Proxy::spawn(&[
            &tb.sse_url(),
            "--transport",
            "sse-only",
            "--header",
            "Authorization: Bearer tok",
        ]);
        let r = initialize(&mut p).await;
        let (_, message) = error_of(&r);
        assert!(message.contains("another origin"), "C2 for {endpoint}: {r}");
        // Once the server announces its own origin again, the same process serves.
        tb.set_config(|c| c.legacy_endpoint_override = None);
        assert!(initialize(&mut p).await.get("result").is_some());
        assert_serving(&mut p, 1).await;
        p.close().await;
    }
    assert!(
        tb.elsewhere_requests().is_empty(),
        "nothing went to the other origin"
    );
}

/// A loopback port that was free a moment ago, for a callback port a test must pin.
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address")
        .port()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_metadata_with_script_or_file_urls_or_another_resource_is_refused() {
    // Each lie the metadata can tell: an authorization server metadata field and its value,
    // or ("resource", …) for the protected resource metadata's `resource`.
    let mut lies = Vec::new();
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
    ] {
        for url in ["javascript:alert(document.cookie)", "file:///etc/passwd"] {
            lies.push((field, url));
        }
    }
    lies.push(("resource", "https://evil.example.com/mcp"));
    lies.push(("resource", "{origin}/other"));
    for (n, (field, value)) in lies.into_iter().enumerate() {
        let tb = protected(AuthConfig::default()).await;
        let value = value.replace("{origin}", &tb.origin());
        let refusal = if field == "resource" {
            tb.set_auth(|a| a.prm_resource_override = Some(value.clone()));
            format!("metadata is for {value}, not for this server")
        } else {
            tb.set_auth(|a| {
                a.metadata_overrides.insert(field.into(), json!(value));
            });
            format!("invalid URL: {value}")
        };
        let env = Env::new(&format!("metadata-{n}"));
        let mut p = env.spawn(&[&tb.url()], &[]);
        let r = initialize(&mut p).await;
        let (_, message) = error_of(&r);
        assert!(message.contains(&refusal), "expected {refusal:?}: {r}");
        assert_eq!(env.launches(), 0, "{refusal}: a browser was opened");
        assert!(
            tb.registrations().is_empty()
                && tb.authorize_count() == 0
                && tb.token_requests().is_empty(),
            "{refusal}: the authorization server was used"
        );
        assert!(env.stored("_tokens.json").is_none());
        // Once the metadata tells the truth, the same process signs in and serves.
        tb.set_auth(|a| {
            a.metadata_overrides.clear();
            a.prm_resource_override = None;
        });
        assert!(initialize(&mut p).await.get("result").is_some());
        p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_serving(&mut p, 1).await;
        p.close().await;
    }
}

/// Text a server sent that reaches a terminal: escape sequences (CSI, OSC), a bell and a
/// C1 control, between words that must still be shown.
const TERMINAL_ESCAPES: &str = "\x1b[31mred\x1b[0m \x1b]0;pwned\x07 \u{9b}2J \x1b[2Kcleared";

/// Asserts `text` holds no control character but the line feed.
fn assert_no_terminal_controls(text: &str, what: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(raw.is_empty(), "{what} holds raw {raw:?}: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_escapes_in_oauth_errors_are_never_printed_raw() {
    // A refused sign-in: the error comes back through the browser callback.
    let tb = protected(AuthConfig {
        authorize_behaviour: AuthorizeBehaviour::Deny,
        error_description_override: Some(TERMINAL_ESCAPES.to_owned()),
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("escapes-callback");
    let mut p = env.spawn(&[&tb.url()], &[]);
    let r = initialize(&mut p).await;
    let (_, message) = error_of(&r);
    assert!(
        message.contains("access_denied") && message.contains("red") && message.contains("cleared"),
        "{r}"
    );
    assert_no_terminal_controls(message, "the error to the host");
    tb.set_auth(|a| a.authorize_behaviour = AuthorizeBehaviour::Approve);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    assert_serving(&mut p, 1).await;
    let (_, stderr) = p.close().await;
    assert!(stderr.contains("access_denied"), "{stderr}");
    assert_no_terminal_controls(&stderr, "stderr");

    // A refused code exchange: the error comes from the token endpoint.
    let tb = protected(AuthConfig {
        preregistered: Some(("pre-id".into(), "pre-secret".into())),
        error_description_override: Some(TERMINAL_ESCAPES.to_owned()),
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("escapes-token");
    let wrong = r#"{"client_id":"pre-id","client_secret":"wrong"}"#;
    let port = free_port();
    let mut p = env.spawn(
        &[&tb.url(), &port, "--static-oauth-client-info", wrong],
        &[],
    );
    let r = initialize(&mut p).await;
    let (_, message) = error_of(&r);
    assert!(
        message.contains("invalid_client") && message.contains("cleared"),
        "{r}"
    );
    assert_no_terminal_controls(message, "the error to the host");
    let (_, stderr) = p.close().await;
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert_no_terminal_controls(&stderr, "stderr");
}

/// `GET <target>` on `127.0.0.1:<port>` with `Connection: close`: the status and the whole
/// answer as text, or `None` when nothing answers within [`WAIT`].
async fn http_get(port: u16, target: String) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(WAIT, exchange).await.ok()??;
    let status = answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, answer))
}

/// What a browser does at the authorization server: opens the authorization URL,
/// which approves at once; returns the callback request target it is sent to.
async fn approve(tb: &Testbed, authorization: &url::Url) -> String {
    let (status, approval) = http_get(tb.port(), target(authorization)).await.unwrap();
    assert_eq!(status, 302, "{approval}");
    let location = approval
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("a Location");
    target(&url::Url::parse(location.trim()).unwrap())
}

/// The path and query of a URL, as a request target.
fn target(url: &url::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Asserts every socket listening on `port` is bound to 127.0.0.1 or ::1 (checklist E3).
#[cfg(target_os = "linux")]
fn assert_listens_on_loopback_only(port: u16) {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let needle = format!(":{port:04X} ");
    let listening: Vec<&str> = tcp
        .lines()
        .filter(|l| l.contains(&needle) && l.split_whitespace().nth(3) == Some("0A"))
        .collect();
    assert!(!listening.is_empty(), "the listener is up");
    for line in listening {
        let local = line.split_whitespace().nth(1).unwrap();
        let loopback = local.starts_with("0100007F:")
            || local.starts_with("00000000000000000000000001000000:");
        assert!(loopback, "bound beyond loopback: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callbacks_are_refused_and_the_sign_in_survives_them() {
    // A user slow to sign in: the browser only records the authorization URL.
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("callbacks");
    let (mut p, authorization) = env
        .spawn_awaiting_sign_in(&[&tb.url(), "--auth-timeout", "20"])
        .await;
    let authorization = url::Url::parse(&authorization).unwrap();
    let param = |name: &str| {
        authorization
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {authorization}"))
    };
    let (redirect, state) = (
        url::Url::parse(&param("redirect_uri")).unwrap(),
        param("state"),
    );
    let (port, path) = (redirect.port().unwrap(), redirect.path().to_owned());

    // Forged, missing and empty states, and the real state on another path.
    for (query_path, expected) in [
        (format!("{path}?code=forged&state=forged"), 400),
        (format!("{path}?code=forged"), 400),
        (format!("{path}?code=forged&state="), 400),
        (format!("{path}?code=forged&state={state}x"), 400),
        (format!("/elsewhere?code=forged&state={state}"), 404),
    ] {
        let got = http_get(port, query_path.clone()).await.map(|(s, _)| s);
        assert_eq!(got, Some(expected), "{query_path}");
    }
    // A flood of 200 concurrent forged callbacks.
    let flood: Vec<_> = (0..200)
        .map(|n| {
            let forged = format!("{path}?code=flood-code-{n}&state=flood-state-{n}");
            tokio::spawn(http_get(port, forged))
        })
        .collect();
    #[cfg(target_os = "linux")]
    assert_listens_on_loopback_only(port);
    let (mut refused, mut closed) = (0, 0);
    for answer in flood {
        match answer.await.unwrap() {
            Some((400, page)) => {
                assert!(!page.contains("flood-"), "the page reflects the request");
                refused += 1;
            }
            // Over the listener's connection cap: closed unanswered.
            None => closed += 1,
            other => panic!("a forged callback got {other:?}"),
        }
    }
    assert_eq!(refused + closed, 200);
    assert!(refused > 0, "forged callbacks get the error page");
    // stdin is served while the sign-in is pending.
    p.write_raw(b"{not json\n").await;
    assert_eq!(error_of(&p.recv().await).0, -32700);

    // The real answer still completes the sign-in.
    let callback = approve(&tb, &authorization).await;
    let (status, _) = http_get(port, callback.clone()).await.unwrap();
    assert_eq!(status, 200, "the real callback");
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(r.get("result").is_some(), "{r}");
    // Replayed, it is refused (or nothing listens any more).
    let replay = http_get(port, callback).await.map(|(s, _)| s);
    assert!(replay.is_none_or(|s| s >= 400), "a replay got {replay:?}");
    let codes: Vec<_> = tb
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type.as_deref() == Some("authorization_code"))
        .collect();
    assert_eq!(codes.len(), 1, "one code exchange, for the real callback");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    assert_serving(&mut p, 1).await;
    p.close().await;

    // An authorization server that sends back a forged state: no token is asked for, the
    // wait ends by --auth-timeout, and the process serves once sign-in works again.
    let tb = protected(AuthConfig {
        authorize_behaviour: AuthorizeBehaviour::WrongState,
        ..AuthConfig::default()
    })
    .await;
    let env = Env::new("state");
    let mut p = env.spawn(&[&tb.url(), "--auth-timeout", "2"], &[]);
    let r = initialize(&mut p).await;
    let (_, message) = error_of(&r);
    assert!(message.contains("auth-timeout"), "{r}");
    assert!(
        tb.token_requests().is_empty(),
        "a token request after a forged state"
    );
    tb.set_auth(|a| a.authorize_behaviour = AuthorizeBehaviour::Approve);
    assert!(initialize(&mut p).await.get("result").is_some());
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    assert_serving(&mut p, 1).await;
    p.close().await;
}

/// The files in the token folder whose names contain `part`, with their contents.
fn files_named(store: &Path, part: &str) -> Vec<Vec<u8>> {
    std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(part))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Starts a proxy on `env`, checks it is signed in and serving, and returns its stderr.
async fn signed_in_and_serving(env: &Env, args: &[&str]) -> String {
    let mut p = env.spawn(args, &[]);
    let r = initialize(&mut p).await;
    assert!(r.get("result").is_some(), "{r}");
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    assert_serving(&mut p, 1).await;
    let (code, stderr) = p.close().await;
    assert_eq!(code, Some(0), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_credential_files_are_moved_aside_and_nothing_is_lost() {
    let tb = protected(AuthConfig::default()).await;
    // A pinned callback port keeps the registration valid from one start to the next.
    let port = free_port();
    let args = [tb.url(), port];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for file in ["_tokens.json", "_client_info.json"] {
        for damage in ["empty", "truncated", "not JSON"] {
            let env = Env::new(&format!("files{file}-{}", damage.replace(' ', "-")));
            signed_in_and_serving(&env, &args).await;
            let path = env.stored_path(file).unwrap();
            let good = std::fs::read(&path).unwrap();
            let bad = match damage {
                "empty" => Vec::new(),
                "truncated" => good[..good.len() / 2].to_vec(),
                _ => b"\x00\xffnot JSON at all".to_vec(),
            };
            std::fs::write(&path, &bad).unwrap();
            let other = if file == "_tokens.json" {
                "_client_info.json"
            } else {
                // The registration is read when a token must be renewed.
                tb.revoke_all_tokens();
                "_tokens.json"
            };
            let other_before = std::fs::read(env.stored_path(other).unwrap()).unwrap();
            let stderr = signed_in_and_serving(&env, &args).await;
            let what = format!("{damage} {file}");
            assert!(
                stderr.contains("is not valid; moved it aside"),
                "{what}: {stderr}"
            );
            let aside = files_named(&env.store(), &format!("{file}.corrupt-"));
            assert_eq!(aside, [bad], "{what}: kept aside byte for byte");
            assert!(
                env.stored(file).is_some(),
                "{what}: a good file took its place"
            );
            assert_eq!(env.launches(), 2, "{what}: one new sign-in");
            if other == "_client_info.json" {
                let after = std::fs::read(env.stored_path(other).unwrap()).unwrap();
                assert_eq!(after, other_before, "{what}: the registration changed");
            }
        }
    }

    // A broken registration that is never needed is left as it is; so are files of another
    // mode, whose tokens are used.
    let env = Env::new("files-unneeded");
    signed_in_and_serving(&env, &args).await;
    let client = env.stored_path("_client_info.json").unwrap();
    std::fs::write(&client, b"{\"client_id\":").unwrap();
    let tokens = env.stored_path("_tokens.json").unwrap();
    #[cfg(unix)]
    for mode in [0o644, 0o666] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(mode)).unwrap();
        let before = (
            std::fs::read(&tokens).unwrap(),
            std::fs::read(&client).unwrap(),
        );
        signed_in_and_serving(&env, &args).await;
        let after = (
            std::fs::read(&tokens).unwrap(),
            std::fs::read(&client).unwrap(),
        );
        assert!(after == before, "mode {mode:o}: a credential file changed");
        assert_eq!(
            env.launches(),
            1,
            "mode {mode:o}: the stored tokens were used"
        );
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_files_open_to_other_users_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("files-modes");
    signed_in_and_serving(&env, &[&tb.url()]).await;
    // The tokens are read at start; the registration when a token is refreshed.
    for (file, mode) in [("_tokens.json", 0o644), ("_client_info.json", 0o666)] {
        let path = env.stored_path(file).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let before = std::fs::read(&path).unwrap();
        if file == "_client_info.json" {
            tb.expire_access_tokens();
        }
        let stderr = signed_in_and_serving(&env, &[&tb.url()]).await;
        let named = path.file_name().unwrap().to_string_lossy().into_owned();
        let warned = stderr.lines().any(|l| {
            l.contains(&named) && (l.contains("permission") || l.contains(&format!("{mode:o}")))
        });
        assert!(warned, "{file} with mode {mode:o}: no warning\n{stderr}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{file} changed");
        assert_eq!(env.launches(), 1, "{file}: a new sign-in");
    }
}

/// CPU time (user + system) the process `pid` has used so far.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_half_sent_callback_connections_under_few_descriptors_costs_no_cpu() {
    let tb = protected(AuthConfig::default()).await;
    let env = Env::new("idle-flood");
    // Few file descriptors: the flood exhausts them, and accept fails (EMFILE).
    let launched = env.launches() + 1;
    let mut p = env.spawn_with_fd_limit(48, &[&tb.url(), "--auth-timeout", "60"]);
    p.send(common::oauth::initialize_request()).await;
    for _ in 0..200 {
        if env.launches() == launched {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&env.log).unwrap();
    let authorization = url::Url::parse(log.lines().last().unwrap()).unwrap();
    let redirect = authorization
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| url::Url::parse(&v).unwrap())
        .unwrap();
    let port = redirect.port().unwrap();

    let mut flood = Vec::new();
    for n in 0..120 {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        if n % 2 == 0 {
            // Half a request head, never finished.
            let _ = stream
                .write_all(b"GET /oauth/callback?code=x&state=y HTTP/1.1\r\nHost: localhost\r\n")
                .await;
        }
        flood.push(stream);
    }
    assert!(flood.len() >= 100, "the flood connected: {}", flood.len());
    let pid = p.child.id().unwrap();
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = cpu_time(pid) - before;
    eprintln!("CPU during 3 s of flood: {spent:?}");
    assert!(
        spent < Duration::from_millis(600),
        "the proxy used {spent:?} of CPU in 3 s of flood"
    );

    // The real browser comes back (it retries while the listener sheds the flood).
    let callback = approve(&tb, &authorization).await;
    let mut delivered = false;
    for _ in 0..40 {
        if let Some((200, _)) = http_get(port, callback.clone()).await {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(delivered, "the real callback got through");
    let (r, _) = p.recv_response(&json!(0)).await;
    assert!(r.get("result").is_some(), "{r}");

    // No flood connection outlives the flow: each one is closed by the proxy.
    for mut stream in flood {
        let mut buf = [0u8; 512];
        let ended = tokio::time::timeout(WAIT, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a flood connection is still open after the flow"
        );
    }
    p.close().await;
}

/// A server that answers every request with a 200 MB JSON-ish body, announced by
/// `Content-Length` or chunked, until the client hangs up. Returns its origin.
async fn endless_oauth_server(content_length: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                const SIZE: usize = 200 * 1024 * 1024;
                let framing = if content_length {
                    format!("content-length: {SIZE}\r\n")
                } else {
                    "transfer-encoding: chunked\r\n".to_owned()
                };
                let headers =
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\n");
                if stream.write_all(headers.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..SIZE / chunk.len() {
                    let sent = if content_length {
                        stream.write_all(&chunk).await
                    } else {
                        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                        framed.extend_from_slice(&chunk);
                        framed.extend_from_slice(b"\r\n");
                        stream.write_all(&framed).await
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    origin
}

/// The peak resident memory of process `pid` (VmHWM), in bytes.
#[cfg(target_os = "linux")]
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_oauth_answers_are_cut_at_their_cap_and_memory_stays_small() {
    for content_length in [true, false] {
        let endless = endless_oauth_server(content_length).await;
        for step in ["metadata", "registration", "token"] {
            let tb = protected(AuthConfig::default()).await;
            tb.set_auth(|a| match step {
                "metadata" => a.authorization_server = Some(endless.clone()),
                "registration" => {
                    a.metadata_overrides.insert(
                        "registration_endpoint".into(),
                        json!(format!("{endless}/register")),
                    );
                }
                _ => {
                    a.metadata_overrides
                        .insert("token_endpoint".into(), json!(format!("{endless}/token")));
                }
            });
            let env = Env::new(&format!("endless-{step}-{content_length}"));
            let mut p = env.spawn(&[&tb.url()], &[]);
            let r = initialize(&mut p).await;
            let (_, message) = error_of(&r);
            assert!(
                message.contains("oversized"),
                "{step}, content-length {content_length}: {r}"
            );
            let peak = peak_rss(p.child.id().unwrap());
            eprintln!(
                "{step}, content-length {content_length}: peak RSS {} KiB",
                peak / 1024
            );
            assert!(
                peak < 64 * 1024 * 1024,
                "{step}, content-length {content_length}: peak RSS {} MiB",
                peak / (1024 * 1024)
            );
            // Still serving: stdin answers while nothing is signed in.
            p.write_raw(b"{not json\n").await;
            assert_eq!(error_of(&p.recv().await).0, -32700);
            p.close().await;
        }
    }
}
