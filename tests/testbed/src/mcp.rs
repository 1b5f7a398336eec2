//! The MCP methods the testbed answers, and its tools.
//!
//! [`answer`] turns one JSON-RPC request into its response. A [`Call`] carries where the
//! request came from: its session, and its POST response stream when the answer is SSE, or
//! its legacy HTTP+SSE session, whose one stream carries everything. Tools that need a
//! stream (progress, server→client requests, dropped streams) say so with an `isError`
//! result when the answer is plain JSON; the stream-dropping tools need a Streamable HTTP
//! response stream, which the legacy transport does not have.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::state::{id_key, lock, until_shutdown, Shared};

/// The protocol versions `initialize` accepts; others are answered with the newest.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The version offered when the client asks for one the testbed does not support.
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// The names of the tools `tools/list` offers.
pub const TOOL_NAMES: [&str; 19] = [
    "echo",
    "add",
    "slow",
    "never",
    "sample",
    "elicit",
    "roots",
    "big",
    "drop_then_resume",
    "drop_no_id",
    "notify",
    "reply_invalid",
    "lines",
    "count",
    "reply_twice",
    "reply_stray",
    "reply_not_json",
    "endless_event",
    "reply_no_session",
];

/// How long a tool waits for the client to answer a server→client request.
const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `never` keeps its request open at most, so no task outlives a test run.
const NEVER_GIVES_UP_AFTER: Duration = Duration::from_secs(600);

/// Upper bounds on tool arguments, so a typo cannot hang or exhaust the machine.
const MAX_SLOW_MS: u64 = 60_000;
const MAX_SLOW_STEPS: u64 = 1_000;
const MAX_BIG_BYTES: u64 = 64 * 1024 * 1024;
const MAX_NOTIFY_COUNT: u64 = 10_000;

/// How much `endless_event` writes at most: more than any sane message limit, and a
/// bound on the work a client that reads for ever can cause.
const MAX_ENDLESS_BYTES: usize = 64 * 1024 * 1024;
/// The piece `endless_event` writes at a time, and the pause between pieces.
const ENDLESS_CHUNK: usize = 64 * 1024;
const ENDLESS_PAUSE: Duration = Duration::from_millis(1);

/// JSON-RPC error codes used here.
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
/// MCP's "Resource not found".
const RESOURCE_NOT_FOUND: i64 = -32002;

/// The settled protocol version for an `initialize` request's params.
pub(crate) fn negotiate(params: Option<&Value>) -> &'static str {
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    SUPPORTED_PROTOCOL_VERSIONS
        .into_iter()
        .find(|v| Some(*v) == requested)
        .unwrap_or(LATEST_PROTOCOL_VERSION)
}

/// Whether `version` is one the testbed speaks (checked against `MCP-Protocol-Version`).
pub(crate) fn is_supported(version: &str) -> bool {
    SUPPORTED_PROTOCOL_VERSIONS.contains(&version)
}

/// Whether `msg` is a `tools/call` of the tool `name`.
pub(crate) fn is_tool_call(msg: &Value, name: &str) -> bool {
    msg.get("method").and_then(Value::as_str) == Some("tools/call")
        && msg.pointer("/params/name").and_then(Value::as_str) == Some(name)
}

/// Where a request came from and where its interim messages go.
pub(crate) struct Call {
    /// The testbed's state.
    pub(crate) shared: Arc<Shared>,
    /// The session the request belongs to (`None`: the anonymous one).
    pub(crate) session: Option<String>,
    /// The POST response stream, when the answer is SSE; `None` for a JSON answer.
    pub(crate) stream: Option<u64>,
    /// The legacy HTTP+SSE session the request came from, whose stream carries its interim
    /// messages and its response; `None` on Streamable HTTP.
    pub(crate) legacy: Option<String>,
}

/// What answering a request produced.
pub(crate) enum Outcome {
    /// A JSON-RPC response to send.
    Reply(Value),
    /// Nothing: the request is never answered (`never`, `drop_no_id`).
    Silent,
}

impl Call {
    /// Writes a server→client message on this request's response stream.
    fn send(&self, msg: &Value) {
        if let Some(id) = &self.legacy {
            lock(&self.shared.legacy).write(id, msg);
        } else if let Some(stream) = self.stream {
            lock(&self.shared.registry).write(self.session.as_deref(), stream, None, msg);
        }
    }

    /// Writes a response on this request's response stream.
    pub(crate) fn send_response(&self, msg: &Value) {
        if let Some(id) = &self.legacy {
            lock(&self.shared.legacy).write(id, msg);
        } else if let Some(stream) = self.stream {
            lock(&self.shared.registry).write(
                self.session.as_deref(),
                stream,
                Some("message"),
                msg,
            );
        }
    }

    /// Whether this request has a stream to send interim messages on.
    fn has_stream(&self) -> bool {
        self.stream.is_some() || self.legacy.is_some()
    }

    /// Whether a client still reads this request's stream (`true` without one).
    fn stream_is_read(&self) -> bool {
        if let Some(id) = &self.legacy {
            return lock(&self.shared.legacy).is_open(id);
        }
        match self.stream {
            Some(stream) => lock(&self.shared.registry).is_live(self.session.as_deref(), stream),
            None => true,
        }
    }

    /// Sends notifications outside any request: on the legacy session's stream, or on the
    /// Streamable session's GET stream (queued while none is open).
    fn notify(&self, msgs: &[Value]) {
        if let Some(id) = &self.legacy {
            let mut sessions = lock(&self.shared.legacy);
            for msg in msgs {
                sessions.write(id, msg);
            }
        } else {
            let mut registry = lock(&self.shared.registry);
            for msg in msgs {
                registry.notify_session(self.session.as_deref(), msg);
            }
        }
    }

    /// Ends this request's response stream once everything is written.
    pub(crate) fn finish(&self) {
        if let Some(stream) = self.stream {
            lock(&self.shared.registry).finish(self.session.as_deref(), stream);
        }
    }

    /// Sends a request to the client on the response stream and waits for the client's
    /// response POST. Returns the whole response message.
    async fn ask_client(&self, method: &str, params: Value) -> Result<Value, String> {
        if !self.has_stream() {
            return Err(format!(
                "{method} needs an SSE response stream; the testbed answered with JSON"
            ));
        }
        let serial = self
            .shared
            .server_requests_made
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let id = json!(format!("srv-{serial}"));
        let (answer_tx, answer_rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id_key(&id), answer_tx);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut shutdown = self.shared.shutdown.subscribe();
        let outcome = tokio::select! {
            answer = answer_rx => answer.map_err(|_| "the request was dropped".to_owned()),
            _ = tokio::time::sleep(CLIENT_ANSWER_TIMEOUT) => {
                Err(format!("no answer to {method} within {CLIENT_ANSWER_TIMEOUT:?}"))
            }
            _ = until_shutdown(&mut shutdown) => Err("the testbed shut down".to_owned()),
        };
        lock(&self.shared.pending).remove(&id_key(&id));
        outcome
    }
}

/// Answers one JSON-RPC request.
pub(crate) async fn answer(call: &Call, request: &Value) -> Outcome {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
    let keep_alive = id
        .as_str()
        .is_some_and(|id| id.starts_with("mcp-remote-ping-"));
    if method == "ping" && keep_alive && call.shared.config().silent_keep_alive_pings {
        never(call).await;
        return Outcome::Silent;
    }
    let result = match method {
        "initialize" => {
            let mut result = initialize_result(&params);
            if let Some(text) = &call.shared.config().instructions {
                result["instructions"] = json!(text);
            }
            Ok(result)
        }
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => {
            Ok(json!({}))
        }
        "tools/list" => Ok(json!({"tools": tool_list()})),
        "tools/call" => match call_tool(call, &id, &params).await {
            Some(result) => result,
            None => return Outcome::Silent,
        },
        "resources/list" => Ok(json!({"resources": resource_list()})),
        "resources/templates/list" => Ok(json!({"resourceTemplates": [{
            "uriTemplate": "test://dynamic/{id}",
            "name": "dynamic",
            "description": "A text resource made up for any id",
            "mimeType": "text/plain",
        }]})),
        "resources/read" => read_resource(&params),
        "prompts/list" => Ok(json!({"prompts": [{
            "name": "greeting",
            "description": "Asks the model to greet someone",
            "arguments": [{"name": "name", "description": "Who to greet", "required": true}],
        }]})),
        "prompts/get" => get_prompt(&params),
        "completion/complete" => {
            Ok(json!({"completion": {"values": [], "total": 0, "hasMore": false}}))
        }
        _ => Err(rpc_error(
            METHOD_NOT_FOUND,
            &format!("Method not found: {method}"),
        )),
    };
    Outcome::Reply(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    })
}

/// A JSON-RPC error object.
pub(crate) fn rpc_error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// The `InitializeResult` for `params`.
fn initialize_result(params: &Value) -> Value {
    json!({
        "protocolVersion": negotiate(Some(params)),
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "logging": {},
            "completions": {},
        },
        "serverInfo": {"name": "mcp-testbed", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "A loopback MCP server for testing mcp-remote. Its tools inject faults.",
    })
}

/// The tools with their input schemas.
fn tool_list() -> Value {
    let none = json!({"type": "object", "properties": {}});
    let integer = |name: &str| json!({"type": "object", "properties": {name: {"type": "integer", "minimum": 0}}});
    json!([
        {"name": "echo", "description": "Returns its text unchanged",
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "add", "description": "Adds two numbers",
         "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
        {"name": "slow", "description": "Sends `steps` progress notifications over `ms` milliseconds, then answers; counts its runs for `nonce` like `count`",
         "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}, "steps": {"type": "integer", "minimum": 0}, "nonce": {"type": "string"}}}},
        {"name": "never", "description": "Never answers", "inputSchema": none},
        {"name": "sample", "description": "Asks the client for sampling/createMessage and returns its text", "inputSchema": none},
        {"name": "elicit", "description": "Asks the client for elicitation/create and returns its result as JSON", "inputSchema": none},
        {"name": "roots", "description": "Asks the client for roots/list and returns its result as JSON", "inputSchema": none},
        {"name": "big", "description": "Returns `bytes` 'x' characters", "inputSchema": integer("bytes")},
        {"name": "drop_then_resume", "description": "Closes the response stream after a priming event; the result waits for a GET with Last-Event-ID", "inputSchema": none},
        {"name": "drop_no_id", "description": "Closes the response stream without any event id or result", "inputSchema": none},
        {"name": "notify", "description": "Sends `count` notifications/message on the GET stream (the session's stream on legacy HTTP+SSE), then answers", "inputSchema": integer("count")},
        {"name": "reply_invalid", "description": "Answers HTTP 500 with a body that is not JSON", "inputSchema": none},
        {"name": "lines", "description": "Returns text holding \\n, \\r\\n and U+2028", "inputSchema": none},
        {"name": "count", "description": "Counts how many times it ran for `nonce` and returns that number",
         "inputSchema": {"type": "object", "properties": {"nonce": {"type": "string"}}, "required": ["nonce"]}},
        {"name": "reply_twice", "description": "Sends its result twice on the response stream", "inputSchema": none},
        {"name": "reply_stray", "description": "Sends a result for `id` (default \"stray\"), which no request of the client carries, then its own",
         "inputSchema": {"type": "object", "properties": {"id": {"type": ["string", "number"]}}}},
        {"name": "reply_not_json", "description": "Answers HTTP 200 with Content-Type application/json and a body that is not JSON", "inputSchema": none},
        {"name": "endless_event", "description": "Starts an SSE event whose data line never ends (no newline, while a client reads, up to 64 MiB); never answers", "inputSchema": none},
        {"name": "reply_no_session", "description": "Answers as to a request whose session the server does not know (404, or the 400 of Config::unknown_session), every time, while the session stays valid", "inputSchema": none},
    ])
}

/// A tool result holding one text block.
fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

/// A tool result reporting that the tool failed.
fn tool_error(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": true})
}

/// An unsigned integer argument, capped.
fn uint_arg(args: &Value, name: &str, default: u64, max: u64) -> u64 {
    args.get(name)
        .and_then(Value::as_u64)
        .unwrap_or(default)
        .min(max)
}

/// Runs a tool for the request `id`. `None` means the request is never answered.
async fn call_tool(call: &Call, id: &Value, params: &Value) -> Option<Result<Value, Value>> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let args = params
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let result = match name {
        "echo" => match args.get("text").and_then(Value::as_str) {
            Some(text) => text_result(text),
            None => tool_error("echo needs a string argument `text`"),
        },
        "add" => add(&args),
        "slow" => match slow(call, params, &args).await {
            Some(result) => result,
            None => return None,
        },
        "never" => {
            never(call).await;
            return None;
        }
        "sample" => {
            let request = json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": "Say something for the testbed"}}],
                "maxTokens": 64,
            });
            match call.ask_client("sampling/createMessage", request).await {
                Ok(answer) => match answer.get("result") {
                    Some(result) => text_result(sampled_text(result)),
                    None => tool_error(format!("the client refused sampling: {answer}")),
                },
                Err(reason) => tool_error(reason),
            }
        }
        "elicit" => {
            let request = json!({
                "message": "The testbed would like your name",
                "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            });
            relay_client_answer(call.ask_client("elicitation/create", request).await)
        }
        "roots" => relay_client_answer(call.ask_client("roots/list", json!({})).await),
        "big" => text_result("x".repeat(uint_arg(&args, "bytes", 0, MAX_BIG_BYTES) as usize)),
        "drop_then_resume" => drop_then_resume(call),
        "drop_no_id" => {
            let Some(stream) = call.stream else {
                return Some(Ok(tool_error("drop_no_id needs an SSE response stream")));
            };
            lock(&call.shared.registry).finish(call.session.as_deref(), stream);
            return None;
        }
        "notify" => {
            let count = uint_arg(&args, "count", 1, MAX_NOTIFY_COUNT);
            let msgs: Vec<Value> = (1..=count)
                .map(|n| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {
                    "level": "info", "logger": "testbed", "data": format!("notification {n} of {count}"),
                }}))
                .collect();
            call.notify(&msgs);
            text_result("ok")
        }
        // The HTTP layer answers these with 500 before any tool runs; reaching here means
        // it was one of several requests in a batch.
        "reply_invalid" => tool_error("reply_invalid only works as a single request"),
        "lines" => text_result("line one\nline two\r\nline three\u{2028}line four"),
        "reply_twice" | "reply_stray" if !call.has_stream() => {
            tool_error(format!("{name} needs an SSE response stream"))
        }
        "reply_twice" => {
            let result = text_result("answered twice");
            call.send_response(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
            result
        }
        "reply_stray" => {
            let stray = args.get("id").cloned().unwrap_or_else(|| json!("stray"));
            let result = text_result("an answer to a request nobody sent");
            call.send_response(&json!({"jsonrpc": "2.0", "id": stray, "result": result}));
            text_result("its own answer")
        }
        // Like `reply_invalid`, answered by the Streamable HTTP layer before any tool runs.
        "reply_not_json" | "reply_no_session" => tool_error(format!(
            "{name} only works as a single Streamable HTTP request"
        )),
        "endless_event" => match endless_event(call).await {
            Some(error) => error,
            None => return None,
        },
        "count" => match args.get("nonce").and_then(Value::as_str) {
            Some(nonce) => {
                let mut executions = lock(&call.shared.executions);
                let runs = executions.entry(nonce.to_owned()).or_insert(0);
                *runs += 1;
                text_result(runs.to_string())
            }
            None => tool_error("count needs a string argument `nonce`"),
        },
        _ => {
            return Some(Err(rpc_error(
                INVALID_PARAMS,
                &format!("Unknown tool: {name}"),
            )))
        }
    };
    Some(Ok(result))
}

/// `add`: the sum as text, an integer when both inputs are.
fn add(args: &Value) -> Value {
    let (Some(a), Some(b)) = (args.get("a"), args.get("b")) else {
        return tool_error("add needs numbers `a` and `b`");
    };
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        if let Some(sum) = a.checked_add(b) {
            return text_result(sum.to_string());
        }
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => text_result((a + b).to_string()),
        _ => tool_error("add needs numbers `a` and `b`"),
    }
}

/// `slow`: progress notifications spread over the requested time. Progress goes out only
/// when the request carried `_meta.progressToken` (2025-11-25 §Progress) and only on an SSE
/// answer; otherwise the tool just takes its time. With a `nonce` it counts its runs as
/// `count` does, the moment it starts, so a test can tell a call that ran from one that
/// never arrived. `None` when the testbed shuts down meanwhile: a killed server answers
/// nothing, so the client must not get a result that looks like one.
async fn slow(call: &Call, params: &Value, args: &Value) -> Option<Value> {
    let ms = uint_arg(args, "ms", 1_000, MAX_SLOW_MS);
    let steps = uint_arg(args, "steps", 5, MAX_SLOW_STEPS);
    let token = params.pointer("/_meta/progressToken").cloned();
    if let Some(nonce) = args.get("nonce").and_then(Value::as_str) {
        *lock(&call.shared.executions)
            .entry(nonce.to_owned())
            .or_insert(0) += 1;
    }
    let pause = Duration::from_millis(ms / steps.max(1));
    if steps == 0 && !call.shared.pause(Duration::from_millis(ms)).await {
        return None;
    }
    for step in 1..=steps {
        if !call.shared.pause(pause).await {
            return None;
        }
        if let Some(token) = &token {
            call.send(
                &json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                    "progressToken": token, "progress": step, "total": steps,
                    "message": format!("step {step} of {steps}"),
                }}),
            );
        }
    }
    Some(text_result(format!("done in {steps} steps")))
}

/// `never`: holds the request open until the client stops reading the stream, the testbed
/// shuts down, or [`NEVER_GIVES_UP_AFTER`] passes.
async fn never(call: &Call) {
    if !call.has_stream() {
        call.shared.pause(NEVER_GIVES_UP_AFTER).await;
        return;
    }
    let checks = NEVER_GIVES_UP_AFTER.as_secs();
    for _ in 0..checks {
        if !call.stream_is_read() {
            return;
        }
        if !call.shared.pause(Duration::from_secs(1)).await {
            return;
        }
    }
}

/// `endless_event`: opens an event on the response stream and writes its data line without
/// ever ending it, to whichever connection reads the stream (a resumed one too), until no
/// client reads it, the testbed shuts down or [`MAX_ENDLESS_BYTES`] went out. The stream's
/// keepalive comment, once a second, would end the line: at full pace a second is about
/// [`MAX_ENDLESS_BYTES`]. `Some` is the tool error when there is no stream.
async fn endless_event(call: &Call) -> Option<Value> {
    let Some(stream) = call.stream else {
        return Some(tool_error(
            "endless_event needs a Streamable HTTP SSE response stream",
        ));
    };
    let session = call.session.as_deref();
    let write = |bytes: Bytes| lock(&call.shared.registry).write_raw(session, stream, bytes);
    if !write(Bytes::from_static(b"event: message\ndata: ")) {
        return None;
    }
    // The pieces share one buffer.
    let chunk = Bytes::from(vec![b'x'; ENDLESS_CHUNK]);
    for _ in 0..MAX_ENDLESS_BYTES / ENDLESS_CHUNK {
        if !write(chunk.clone()) || !call.shared.pause(ENDLESS_PAUSE).await {
            return None;
        }
    }
    None
}

/// `drop_then_resume`: makes sure the client has an event id, then closes its connection.
/// The result is written to the stream's log, where a `GET` with `Last-Event-ID` finds it.
fn drop_then_resume(call: &Call) -> Value {
    let Some(stream) = call.stream else {
        return tool_error("drop_then_resume needs an SSE response stream");
    };
    let retry = call.shared.config().sse_retry_ms;
    let mut registry = lock(&call.shared.registry);
    let session = call.session.as_deref();
    if retry.is_none() {
        // No priming event went out at the start of the stream: send one now.
        registry.prime(session, stream, None);
    }
    registry.detach(session, stream);
    text_result("resumed")
}

/// The text of a `CreateMessageResult`, whose `content` is one block or (2025-11-25) a list.
fn sampled_text(result: &Value) -> String {
    let content = result.get("content");
    let block = match content {
        Some(Value::Array(blocks)) => blocks.first(),
        other => other,
    };
    block
        .and_then(|b| b.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The client's answer as a tool result: its `result` as JSON text, or an error.
fn relay_client_answer(answer: Result<Value, String>) -> Value {
    match answer {
        Ok(answer) => match answer.get("result") {
            Some(result) => text_result(result.to_string()),
            None => tool_error(format!("the client answered with an error: {answer}")),
        },
        Err(reason) => tool_error(reason),
    }
}

/// The static resources.
fn resource_list() -> Value {
    json!([
        {"uri": "test://static/hello", "name": "hello", "mimeType": "text/plain",
         "description": "A short greeting"},
        {"uri": "test://static/readme", "name": "readme", "mimeType": "text/markdown",
         "description": "A few lines of markdown"},
    ])
}

/// `resources/read` for the static resources and the `test://dynamic/{id}` template.
fn read_resource(params: &Value) -> Result<Value, Value> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (mime, text) = match uri {
        "test://static/hello" => ("text/plain", "Hello from the MCP testbed.".to_owned()),
        "test://static/readme" => (
            "text/markdown",
            "# Testbed\n\nA loopback MCP server.\n".to_owned(),
        ),
        _ => match uri.strip_prefix("test://dynamic/") {
            Some(id) if !id.is_empty() => ("text/plain", format!("Dynamic resource {id}")),
            _ => {
                let mut error = rpc_error(RESOURCE_NOT_FOUND, "Resource not found");
                error["data"] = json!({"uri": uri});
                return Err(error);
            }
        },
    };
    Ok(json!({"contents": [{"uri": uri, "mimeType": mime, "text": text}]}))
}

/// `prompts/get` for the one prompt, `greeting`.
fn get_prompt(params: &Value) -> Result<Value, Value> {
    if params.get("name").and_then(Value::as_str) != Some("greeting") {
        return Err(rpc_error(INVALID_PARAMS, "Unknown prompt"));
    }
    let Some(name) = params.pointer("/arguments/name").and_then(Value::as_str) else {
        return Err(rpc_error(INVALID_PARAMS, "Missing required argument: name"));
    };
    Ok(json!({
        "description": "Asks the model to greet someone",
        "messages": [{"role": "user", "content": {"type": "text", "text": format!("Please greet {name}.")}}],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_keeps_a_supported_version_and_offers_the_latest_otherwise() {
        let ask = |v: &str| negotiate(Some(&json!({"protocolVersion": v})));
        assert_eq!(ask("2025-03-26"), "2025-03-26");
        assert_eq!(ask("2024-11-05"), "2024-11-05");
        assert_eq!(ask("1999-01-01"), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }

    #[test]
    fn every_listed_tool_is_named_in_tool_names() {
        let listed: Vec<String> = tool_list()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, TOOL_NAMES);
    }

    #[test]
    fn add_sums_integers_and_floats() {
        assert_eq!(add(&json!({"a": 2, "b": 40}))["content"][0]["text"], "42");
        assert_eq!(add(&json!({"a": 0.5, "b": 1}))["content"][0]["text"], "1.5");
        assert_eq!(add(&json!({"a": "x"}))["isError"], true);
    }

    #[test]
    fn sampled_text_reads_one_block_or_a_list() {
        let one = json!({"content": {"type": "text", "text": "hi"}});
        let many = json!({"content": [{"type": "text", "text": "there"}]});
        assert_eq!(sampled_text(&one), "hi");
        assert_eq!(sampled_text(&many), "there");
    }
}
