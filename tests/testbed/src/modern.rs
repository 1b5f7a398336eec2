//! An MCP 2026-07-28 server at `/mcp` ([`crate::Config::modern`]): stateless POSTs,
//! no `initialize`, no sessions, no GET stream. It checks what the revision
//! requires of a client and refuses the rest the way the spec says:
//!
//! - `MCP-Protocol-Version` on every POST, equal to `params._meta` protocol version
//!   (else `400` HeaderMismatch `-32020`); `_meta` protocol version and client
//!   capabilities present (else `400` `-32602`); the version supported (else `400`
//!   `-32022` with `data.supported`, also for a legacy `initialize`);
//! - `Mcp-Method` equal to the method, `Mcp-Name` equal to `params.name` /
//!   `params.uri` on `tools/call`, `prompts/get`, `resources/read` (base64 form
//!   decoded), `Mcp-Param-*` for the annotated arguments of `tools/call` (else `-32020`);
//! - a single message per POST, never a response (`400` `-32600`); GET and DELETE `405`.
//!
//! Methods: `server/discover`, `tools/list` (with `x-mcp-header` annotations, one of
//! them invalid), `tools/call` (`echo`, `add`, `regional`, `slow`, `confirm` — an
//! MRTR elicitation round trip), `resources/list`, `resources/read`, `prompts/list`.
//! Unknown methods (`ping`, `logging/setLevel`, `resources/subscribe`, …) get `404`
//! `-32601`. [`crate::Config::modern_refuse_first`] refuses the very first POST with
//! `-32022` whatever it says, as the conformance suite's `request-metadata` mock does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::http::{accepts, media_type, plain, with_status};
use crate::sse::Body;
use crate::state::{lock, Shared};
use crate::Config;
use http_body_util::{BodyExt, Full};

/// The revision served.
pub const MODERN_VERSION: &str = "2026-07-28";

const HEADER_MISMATCH: i64 = -32020;
const UNSUPPORTED_VERSION: i64 = -32022;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;

/// `/mcp` of a modern server.
pub(crate) async fn route(
    shared: &Arc<Shared>,
    config: &Config,
    parts: &Parts,
    body: &[u8],
) -> Response<Body> {
    if parts.method != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "MCP 2026-07-28: POST only");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let first = shared.answers_made.fetch_add(1, Ordering::Relaxed) == 0;
    post(shared, config, &parts.headers, body, first).await
}

fn failure(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response<Body> {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json_body(status, &json!({"jsonrpc": "2.0", "id": id, "error": error}))
}

/// `400` UnsupportedProtocolVersion, naming the version served.
fn unsupported(id: &Value, requested: Value) -> Response<Body> {
    let data = json!({"supported": [MODERN_VERSION], "requested": requested});
    failure(
        StatusCode::BAD_REQUEST,
        id,
        UNSUPPORTED_VERSION,
        "Unsupported protocol version",
        Some(data),
    )
}

fn json_body(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    let mut response = with_status(status, Full::new(bytes).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header value decoded from the `=?base64?…?=` form when it has it.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// The tools, with `x-mcp-header` annotations (`regional`), one tool whose annotation
/// is invalid (`number` type: a client must not offer it), and an MRTR tool.
/// `drift` is annotated `Old` in the first list and `New` after (the server changed
/// its tools): a call with the first list's headers gets HeaderMismatch.
pub fn tools(lists_before: u64) -> Value {
    let drift = if lists_before == 0 { "Old" } else { "New" };
    let tools = json!([
        {"name": "drift", "description": "Its header annotation changes after the first list.",
         "inputSchema": {"type": "object", "properties": {"v": {"type": "string", "x-mcp-header": drift}}}},
        {"name": "echo", "description": "Echoes the text.",
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "add", "description": "Adds a and b.",
         "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}},
        {"name": "regional", "description": "Answers with the headers it got.",
         "inputSchema": {"type": "object", "properties": {
             "region": {"type": "string", "x-mcp-header": "Region"},
             "priority": {"type": "integer", "x-mcp-header": "Priority"},
             "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
             "note": {"type": "string"}}}},
        {"name": "bad_header", "description": "Its annotation is on a number: invalid.",
         "inputSchema": {"type": "object", "properties": {
             "ratio": {"type": "number", "x-mcp-header": "Ratio"}}}},
        {"name": "slow", "description": "Answers after ms milliseconds.",
         "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer"}}}},
        {"name": "confirm", "description": "Asks the user to confirm (MRTR elicitation).",
         "inputSchema": {"type": "object", "properties": {}}},
        {"name": "change", "description": "Tells listeners the tool list changed, and that uri was updated.",
         "inputSchema": {"type": "object", "properties": {"uri": {"type": "string"}}}}
    ]);
    tools
}

/// The annotated arguments of a tool: header name → property.
fn annotations(tool: &str) -> Vec<(&'static str, &'static str)> {
    match tool {
        "drift" => vec![("New", "v")],
        "regional" => vec![
            ("Region", "region"),
            ("Priority", "priority"),
            ("Verbose", "verbose"),
        ],
        _ => Vec::new(),
    }
}

async fn post(
    shared: &Arc<Shared>,
    config: &Config,
    headers: &HeaderMap,
    body: &[u8],
    first: bool,
) -> Response<Body> {
    if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
        return failure(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            -32000,
            "Accept must list application/json and text/event-stream",
            None,
        );
    }
    if media_type(headers.get(CONTENT_TYPE)).as_deref() != Some("application/json") {
        return failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Value::Null,
            -32000,
            "Content-Type must be application/json",
            None,
        );
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return failure(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32700,
            "Parse error",
            None,
        );
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return failure(
            StatusCode::BAD_REQUEST,
            &id,
            INVALID_REQUEST,
            "a client must not send responses or batches in 2026-07-28",
            None,
        );
    };
    let requested = header(headers, "mcp-protocol-version").map(str::to_owned);
    if first && config.modern_refuse_first {
        return unsupported(&id, json!(requested));
    }
    if method == "initialize" {
        let data = json!({"supported": [MODERN_VERSION], "requested": message.pointer("/params/protocolVersion")});
        return failure(
            StatusCode::BAD_REQUEST,
            &id,
            UNSUPPORTED_VERSION,
            "This server speaks MCP 2026-07-28 only: use server/discover",
            Some(data),
        );
    }
    let Some(requested) = requested else {
        return failure(
            StatusCode::BAD_REQUEST,
            &id,
            HEADER_MISMATCH,
            "Missing MCP-Protocol-Version header",
            None,
        );
    };
    let meta = message.pointer("/params/_meta");
    let meta_version = meta
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str);
    let capabilities = meta.and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"));
    let (Some(meta_version), Some(_)) = (meta_version, capabilities) else {
        return failure(
            StatusCode::BAD_REQUEST,
            &id,
            INVALID_PARAMS,
            "params._meta must carry the protocol version and the client capabilities",
            None,
        );
    };
    if meta_version != requested {
        return failure(
            StatusCode::BAD_REQUEST,
            &id,
            HEADER_MISMATCH,
            "MCP-Protocol-Version does not match _meta",
            None,
        );
    }
    if requested != MODERN_VERSION {
        return unsupported(&id, json!(requested));
    }
    if header(headers, "mcp-method") != Some(method) {
        return failure(
            StatusCode::BAD_REQUEST,
            &id,
            HEADER_MISMATCH,
            "Mcp-Method does not match the method",
            None,
        );
    }
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let name_field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field {
        let sent = header(headers, "mcp-name").and_then(decode_header_value);
        if sent.as_deref() != params.get(field).and_then(Value::as_str) {
            return failure(
                StatusCode::BAD_REQUEST,
                &id,
                HEADER_MISMATCH,
                "Mcp-Name does not match the body",
                None,
            );
        }
    }
    if message.get("id").is_none() {
        // A notification: nothing in 2026-07-28 is expected, but it is accepted.
        return with_status(StatusCode::ACCEPTED, Full::new(Bytes::new()).boxed_unsync());
    }
    let cut = |shared: &Arc<Shared>| {
        // An event stream that ends before the answer.
        shared.modern_cuts.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(Bytes::from_static(b": working\n\n"));
        drop(tx);
        crate::http::sse_response(shared, rx)
    };
    let first_list = method == "tools/list" && shared.modern_cuts.load(Ordering::Relaxed) == 0;
    if config.modern_break_first_list && first_list {
        return cut(shared);
    }
    if method == "tools/call" && params["name"] == "cut" {
        return cut(shared);
    }
    if method == "subscriptions/listen" {
        lock(&shared.modern_calls).push(message.clone());
        let filter = params.get("notifications").cloned().unwrap_or(Value::Null);
        return listen(shared, id, filter);
    }
    let result = match method {
        "server/discover" => Ok(json!({
            "supportedVersions": [MODERN_VERSION],
            "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}, "prompts": {}},
            "instructions": "A 2026-07-28 test server.",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "mcp-testbed-modern", "version": "0.1.0"}},
            "ttlMs": 0, "cacheScope": "private"
        })),
        "tools/list" => {
            let before = shared.modern_lists.fetch_add(1, Ordering::Relaxed);
            Ok(json!({"tools": tools(before), "ttlMs": 0, "cacheScope": "private"}))
        }
        "tools/call" => call(shared, headers, &params).await,
        "resources/list" => Ok(json!({"resources": [{"uri": "test://a b", "name": "a b"}]})),
        "resources/read" => Ok(json!({"contents": [{"uri": params["uri"], "text": "contents"}]})),
        "prompts/list" => Ok(json!({"prompts": []})),
        _ => Err((
            StatusCode::NOT_FOUND,
            METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )),
    };
    match result {
        Ok(mut result) => {
            if result.get("resultType").is_none() && method != "tools/call" {
                result["resultType"] = "complete".into();
            }
            lock(&shared.modern_calls).push(message.clone());
            json_body(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
            )
        }
        Err((status, code, text)) => failure(status, &id, code, &text, None),
    }
}

type CallResult = Result<Value, (StatusCode, i64, String)>;

async fn call(shared: &Arc<Shared>, headers: &HeaderMap, params: &Value) -> CallResult {
    let name = params["name"].as_str().unwrap_or("");
    let args = &params["arguments"];
    for (header_name, property) in annotations(name) {
        let sent = header(
            headers,
            &format!("mcp-param-{}", header_name.to_ascii_lowercase()),
        )
        .and_then(decode_header_value);
        let expected = match &args[property] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        if sent != expected {
            return Err((
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                format!("Mcp-Param-{header_name} does not match the argument {property}"),
            ));
        }
    }
    let text =
        |t: String| json!({"content": [{"type": "text", "text": t}], "resultType": "complete"});
    match name {
        "echo" => Ok(text(args["text"].as_str().unwrap_or("").to_owned())),
        "drift" => Ok(text(format!("v={}", args["v"].as_str().unwrap_or("")))),
        "add" => {
            let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
            Ok(text(format!("{sum}")))
        }
        "regional" => {
            let mut seen: Vec<String> = headers
                .iter()
                .filter(|(n, _)| n.as_str().starts_with("mcp-param-"))
                .map(|(n, v)| format!("{}={}", n.as_str(), v.to_str().unwrap_or("?")))
                .collect();
            seen.sort();
            Ok(text(seen.join(";")))
        }
        "slow" => {
            let ms = args["ms"].as_u64().unwrap_or(1000).min(60_000);
            let guard = Unfinished(shared.clone());
            tokio::time::sleep(Duration::from_millis(ms)).await;
            std::mem::forget(guard);
            Ok(text(format!("slept {ms} ms")))
        }
        "change" => {
            let uri = args["uri"].as_str().map(str::to_owned);
            let mut told = 0;
            for (listen_id, filter, tx) in lock(&shared.listeners).iter() {
                let meta = json!({"io.modelcontextprotocol/subscriptionId": listen_id});
                if filter["toolsListChanged"] == true {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": meta}});
                    told += u32::from(send(tx, &note));
                }
                let subscribed = filter["resourceSubscriptions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|u| u.as_str() == uri.as_deref()));
                if subscribed {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri, "_meta": meta}});
                    told += u32::from(send(tx, &note));
                }
            }
            Ok(text(format!("told {told}")))
        }
        "confirm" => Ok(
            match (params.get("inputResponses"), params.get("requestState")) {
                (None, _) => json!({
                    "resultType": "input_required",
                    "inputRequests": {"ok": {"method": "elicitation/create", "params": {
                        "mode": "form", "message": "Go ahead?",
                        "requestedSchema": {"type": "object", "properties": {"confirmed": {"type": "boolean"}}}}}},
                    "requestState": "state-1"
                }),
                (Some(responses), Some(Value::String(state))) if state == "state-1" => {
                    let action = responses["ok"]["action"].as_str().unwrap_or("none");
                    let confirmed = responses["ok"]["content"]["confirmed"].as_bool();
                    text(format!("action={action} confirmed={confirmed:?}"))
                }
                _ => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        INVALID_PARAMS,
                        "requestState missing or wrong".into(),
                    ))
                }
            },
        ),
        _ => Err((
            StatusCode::OK,
            INVALID_PARAMS,
            format!("Unknown tool: {name}"),
        )),
    }
}

/// An SSE event with one message, to an open listen stream; whether it could go.
fn send(tx: &tokio::sync::mpsc::UnboundedSender<Bytes>, message: &Value) -> bool {
    tx.send(Bytes::from(format!("event: message\ndata: {message}\n\n")))
        .is_ok()
}

/// `subscriptions/listen`: an event stream that stays open, acknowledged first.
fn listen(shared: &Arc<Shared>, id: Value, filter: Value) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id}, "notifications": filter}});
    send(&tx, &ack);
    let mut listeners = lock(&shared.listeners);
    listeners.retain(|(_, _, tx)| !tx.is_closed());
    listeners.push((id, filter, tx));
    drop(listeners);
    crate::http::sse_response(shared, rx)
}

/// Counts a `slow` call whose client went away before the answer (the cancellation
/// of 2026-07-28: closing the request's stream).
struct Unfinished(Arc<Shared>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.modern_cancelled.fetch_add(1, Ordering::Relaxed);
    }
}
