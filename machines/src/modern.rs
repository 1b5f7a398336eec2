//! The MCP 2026-07-28 wire ("modern" era), as pure functions: the `server/discover`
//! probe and how its answer is read (era detection, `basic/versioning.mdx`
//! §Backward Compatibility), the per-request `_meta` every request carries
//! (`basic/index.mdx` §`_meta`), the standard request headers and their value
//! encoding (`transports/streamable-http.mdx` §Request Metadata), and the
//! 2025-11-25 `initialize` result a legacy host is given from `server/discover`.
//!
//! The engine decides when; this module only builds and reads messages.

use serde_json::{json, Map, Value};

/// The protocol revision this proxy speaks to modern servers.
pub const MODERN_VERSION: &str = "2026-07-28";

/// The revisions this proxy bridges to the host (what it may answer an
/// `initialize` with); the newest first.
pub const HOST_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// `_meta` keys (`basic/index.mdx` §`_meta`).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The client's `Implementation`.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// The client's capabilities, on every request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The log level (replaces `logging/setLevel`).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// The server's `Implementation`, in a result's `_meta`.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Error codes of 2026-07-28 that only a modern server sends (`basic/index.mdx` §Error Codes).
pub const HEADER_MISMATCH: i64 = -32020;
/// A capability the request needs was not declared.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// The protocol version is not supported; `data.supported` lists those that are.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Who the client is, sent on every modern request: from the host's `initialize`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMeta {
    /// The protocol version in `_meta` and in `MCP-Protocol-Version`.
    pub version: String,
    /// The host's `clientInfo` (as tagged by the proxy).
    pub client_info: Value,
    /// The host's capabilities, without what 2026-07-28 removed.
    pub capabilities: Value,
    /// The host's `logging/setLevel`, if any.
    pub log_level: Option<String>,
}

impl ClientMeta {
    /// From the params of the host's `initialize`.
    pub fn from_initialize(params: Option<&Value>) -> Self {
        let params = params.cloned().unwrap_or(Value::Null);
        let mut capabilities = match params.get("capabilities") {
            Some(Value::Object(c)) => c.clone(),
            _ => Map::new(),
        };
        // Tasks moved to an extension in 2026-07-28.
        capabilities.remove("tasks");
        let client_info = match params.get("clientInfo") {
            Some(info @ Value::Object(_))
                if info.get("name").is_some_and(Value::is_string)
                    && info.get("version").is_some_and(Value::is_string) =>
            {
                info.clone()
            }
            _ => json!({"name": "mcp-remote", "version": env!("CARGO_PKG_VERSION")}),
        };
        ClientMeta {
            version: MODERN_VERSION.to_owned(),
            client_info,
            capabilities: Value::Object(capabilities),
            log_level: None,
        }
    }

    /// The `_meta` members to merge into a request's `params._meta`.
    fn members(&self) -> [(&'static str, Option<Value>); 4] {
        [
            (
                META_PROTOCOL_VERSION,
                Some(Value::String(self.version.clone())),
            ),
            (META_CLIENT_INFO, Some(self.client_info.clone())),
            (META_CLIENT_CAPABILITIES, Some(self.capabilities.clone())),
            (META_LOG_LEVEL, self.log_level.clone().map(Value::String)),
        ]
    }
}

/// The `server/discover` request with the JSON id text `id`.
pub fn discover_request(id: &str, meta: &ClientMeta) -> Vec<u8> {
    let mut m = Map::new();
    for (key, value) in meta.members() {
        if let Some(v) = value {
            m.insert(key.to_owned(), v);
        }
    }
    let body = json!({"jsonrpc": "2.0", "method": "server/discover", "params": {"_meta": m}});
    let mut text = serde_json::to_string(&body).unwrap_or_default();
    // The id goes in as the host wrote it (its answer is matched by it).
    text.insert_str(1, &format!("\"id\":{id},"));
    text.into_bytes()
}

/// A host request or notification with the modern `_meta` merged into its params
/// (the host's own `_meta` members, such as `progressToken`, are kept; the
/// proxy's win where both name one). `None` when the bytes are not an object.
pub fn stamp(bytes: &[u8], meta: &ClientMeta) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(bytes).ok()?;
    let object = message.as_object_mut()?;
    let params = object
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    if !params.is_object() {
        *params = Value::Object(Map::new());
    }
    let params = params.as_object_mut()?;
    let own = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !own.is_object() {
        *own = Value::Object(Map::new());
    }
    let own = own.as_object_mut()?;
    for (key, value) in meta.members() {
        if let Some(v) = value {
            own.insert(key.to_owned(), v);
        }
    }
    serde_json::to_vec(&message).ok()
}

/// Whether `value` can go in a header as it is: printable ASCII (no tab, no
/// control character), no leading or trailing space, and not itself shaped like
/// the base64 marker.
fn header_safe(value: &str) -> bool {
    let printable = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let marker = value.starts_with("=?base64?") && value.ends_with("?=");
    printable && !padded && !marker
}

/// A header value as 2026-07-28 §Value Encoding writes it: as is when safe,
/// else `=?base64?{standard base64 of the UTF-8}?=`.
pub fn header_value(value: &str) -> String {
    if header_safe(value) {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", base64(value.as_bytes()))
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The standard request headers of a modern POST (`MCP-Protocol-Version` aside):
/// `Mcp-Method` on every request, `Mcp-Name` on `tools/call`, `prompts/get`
/// (`params.name`) and `resources/read` (`params.uri`).
pub fn request_headers(method: &str, params: Option<&Value>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("mcp-method", header_value(method))];
    let name = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
        "resources/read" => params.and_then(|p| p.get("uri")),
        _ => None,
    };
    if let Some(Value::String(name)) = name {
        headers.push(("mcp-name", header_value(name)));
    }
    headers
}

/// Where a tool's `x-mcp-header` annotations point: header name (as annotated)
/// and the property path in `arguments` (`transports/streamable-http.mdx`
/// §Custom Headers from Tool Parameters).
pub type ToolHeaders = Vec<(String, Vec<String>)>;

/// The largest integer a header may carry (±(2^53−1)).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// An RFC 9110 token (`1*tchar`).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The annotations of one tool's `inputSchema`, or why they are invalid. An
/// annotation is valid on a property reached from the root through `properties`
/// alone, whose `type` is `string`, `integer` or `boolean`, with a token for a
/// name that no other annotation of the schema repeats (case-insensitively).
pub fn tool_headers(input_schema: &Value) -> Result<ToolHeaders, String> {
    let mut found = ToolHeaders::new();
    walk(input_schema, &mut Vec::new(), true, &mut found)?;
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in &found {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(format!("x-mcp-header {name:?} is used twice"));
        }
    }
    Ok(found)
}

fn walk(
    schema: &Value,
    path: &mut Vec<String>,
    reachable: bool,
    found: &mut ToolHeaders,
) -> Result<(), String> {
    let Some(object) = schema.as_object() else {
        return Ok(());
    };
    if let Some(annotation) = object.get("x-mcp-header") {
        let name = annotation.as_str().unwrap_or_default();
        if !reachable || path.is_empty() {
            return Err(format!(
                "x-mcp-header {name:?} is not on a property reached through properties alone"
            ));
        }
        if name.is_empty() {
            return Err("an x-mcp-header is empty".into());
        }
        if !is_token(name) {
            return Err(format!("x-mcp-header {name:?} is not a valid header name"));
        }
        match object.get("type").and_then(Value::as_str) {
            Some("string" | "integer" | "boolean") => {}
            other => {
                return Err(format!(
                "x-mcp-header {name:?} is on a property of type {}, not string, integer or boolean",
                other.unwrap_or("unknown")
            ))
            }
        }
        found.push((name.to_owned(), path.clone()));
    }
    for (key, child) in object {
        match key.as_str() {
            "properties" => {
                if let Some(properties) = child.as_object() {
                    for (property, sub) in properties {
                        path.push(property.clone());
                        let result = walk(sub, path, reachable, found);
                        path.pop();
                        result?;
                    }
                }
            }
            "x-mcp-header" | "type" | "const" | "default" | "enum" | "examples" => {}
            // Anything else that holds schemas reaches properties conditionally.
            _ => match child {
                Value::Object(_) => walk(child, path, false, found)?,
                Value::Array(items) => {
                    for item in items {
                        walk(item, path, false, found)?;
                    }
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// The `Mcp-Param-*` headers of a `tools/call` with `arguments`: each annotated
/// argument that is present and not null, encoded as §Value Encoding says.
pub fn param_headers(
    annotations: &ToolHeaders,
    arguments: Option<&Value>,
) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (name, path) in annotations {
        let mut value = arguments;
        for key in path {
            value = value.and_then(|v| v.get(key));
        }
        let text = match value {
            Some(Value::String(s)) => header_value(s),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => i.to_string(),
                _ => continue,
            },
            _ => continue,
        };
        headers.push((format!("mcp-param-{}", name.to_ascii_lowercase()), text));
    }
    headers
}

/// A `tools/list` result without the tools whose annotations are invalid, and
/// the annotations of the others, by tool name; the tools left out with why.
#[derive(Debug, Default)]
pub struct ToolScan {
    /// Annotations of the valid tools that have any.
    pub headers: std::collections::BTreeMap<String, ToolHeaders>,
    /// Tools left out of the host's list: name and reason.
    pub invalid: Vec<(String, String)>,
}

/// Read a `tools/list` response (`bytes`): the annotations, and the response
/// rewritten without the invalid tools (`None` when none was invalid, so the
/// bytes go as they came).
pub fn scan_tools(bytes: &[u8]) -> (ToolScan, Option<Vec<u8>>) {
    let mut scan = ToolScan::default();
    let Ok(mut response) = serde_json::from_slice::<Value>(bytes) else {
        return (scan, None);
    };
    let Some(tools) = response
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    else {
        return (scan, None);
    };
    tools.retain(|tool| {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match tool.get("inputSchema").map(tool_headers) {
            Some(Err(why)) => {
                scan.invalid.push((name, why));
                false
            }
            Some(Ok(found)) if !found.is_empty() => {
                scan.headers.insert(name, found);
                true
            }
            _ => true,
        }
    });
    if scan.invalid.is_empty() {
        return (scan, None);
    }
    let rewritten = serde_json::to_vec(&response).ok();
    (scan, rewritten)
}

/// What the answer to the `server/discover` probe says about the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A modern server: its discover result.
    Modern(Value),
    /// A modern server that wants another protocol version we speak: ask again with it.
    Retry(String),
    /// A modern server with which no version is shared, or that refused the probe
    /// for another modern reason: why.
    Incompatible(String),
    /// Not a modern server: go on with `initialize`.
    Legacy,
}

/// Read the answer to the probe: the HTTP status and the JSON body, if any
/// (an error body of a 4xx, or the response). A recognised modern error means a
/// modern server; anything else not a discover result means legacy
/// (`transports/streamable-http.mdx` §Backward Compatibility).
pub fn classify_probe(body: Option<&Value>, tried: &str) -> Probe {
    let Some(body) = body else {
        return Probe::Legacy;
    };
    if let Some(result) = body.get("result") {
        // A discover result names the versions; any other result (a server that
        // answers every method alike) says nothing about the era.
        let ours = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|v| v.as_str() == Some(MODERN_VERSION)));
        return match ours {
            true => Probe::Modern(result.clone()),
            false => Probe::Legacy,
        };
    }
    let Some(error) = body.get("error") else {
        return Probe::Legacy;
    };
    match error.get("code").and_then(Value::as_i64) {
        Some(UNSUPPORTED_PROTOCOL_VERSION) => {
            let supported: Vec<&str> = error
                .pointer("/data/supported")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if supported.contains(&MODERN_VERSION) {
                // Asked for again even when it is the version just tried: some servers
                // refuse the first request whatever it says.
                Probe::Retry(MODERN_VERSION.to_owned())
            } else {
                Probe::Incompatible(format!(
                    "the server speaks protocol versions {} and this proxy {MODERN_VERSION} (asked: {tried})",
                    if supported.is_empty() {
                        "it did not name".to_owned()
                    } else {
                        supported.join(", ")
                    }
                ))
            }
        }
        Some(code @ (HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY)) => Probe::Incompatible(format!(
            "the server refused the discovery request ({code}: {})",
            error.get("message").and_then(Value::as_str).unwrap_or("")
        )),
        _ => Probe::Legacy,
    }
}

/// The 2025-11-25 (or older) `initialize` result for the host, from a
/// `server/discover` result: the version the host asked for when the proxy can
/// speak it, the server's capabilities, instructions and identity.
pub fn initialize_result(discover: &Value, host_version: Option<&str>) -> Value {
    let version = host_version
        .filter(|v| HOST_VERSIONS.contains(v))
        .unwrap_or(HOST_VERSIONS[0]);
    let server_info = discover
        .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
        .or_else(|| discover.get("serverInfo"))
        .filter(|info| {
            info.get("name").is_some_and(Value::is_string)
                && info.get("version").is_some_and(Value::is_string)
        })
        .cloned()
        .unwrap_or_else(|| json!({"name": "mcp-server", "version": "unknown"}));
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": discover.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": server_info,
    });
    if let Some(instructions) = discover.get("instructions").filter(|i| i.is_string()) {
        result["instructions"] = instructions.clone();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ClientMeta {
        ClientMeta::from_initialize(Some(&json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"roots": {}, "elicitation": {}, "tasks": {}},
            "clientInfo": {"name": "claude-ai (via mcp-remote-rs 0.1.0)", "version": "0.1.0"}
        })))
    }

    #[test]
    fn header_values_follow_the_encoding_table() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("us west 1"), "us west 1");
        assert_eq!(header_value(""), "");
        assert_eq!(
            header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(header_value("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        assert_eq!(header_value("\tindented"), "=?base64?CWluZGVudGVk?=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn stamping_keeps_the_hosts_meta_and_adds_the_protocols() {
        let m = meta();
        let bytes = stamp(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":3}}}"#,
            &m,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let own = &v["params"]["_meta"];
        assert_eq!(own["progressToken"], 3);
        assert_eq!(own[META_PROTOCOL_VERSION], MODERN_VERSION);
        assert_eq!(
            own[META_CLIENT_CAPABILITIES],
            json!({"roots": {}, "elicitation": {}})
        );
        assert_eq!(own[META_CLIENT_INFO]["version"], "0.1.0");
        assert!(own.get(META_LOG_LEVEL).is_none());
        assert_eq!(v["id"], 7);
        let bare = stamp(br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#, &m).unwrap();
        let v: Value = serde_json::from_slice(&bare).unwrap();
        assert_eq!(v["params"]["_meta"][META_PROTOCOL_VERSION], MODERN_VERSION);
        assert!(stamp(b"[1]", &m).is_none());
    }

    #[test]
    fn the_probe_carries_the_hosts_id_and_identity() {
        let bytes = discover_request("\"init-1\"", &meta());
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], "init-1");
        assert_eq!(v["method"], "server/discover");
        assert_eq!(v["params"]["_meta"][META_PROTOCOL_VERSION], MODERN_VERSION);
        let numeric: Value = serde_json::from_slice(&discover_request("1e3", &meta())).unwrap();
        assert_eq!(numeric["id"], 1000.0);
    }

    #[test]
    fn probe_answers_are_read_as_the_spec_says() {
        let discover = json!({"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}});
        assert!(matches!(
            classify_probe(Some(&discover), MODERN_VERSION),
            Probe::Modern(_)
        ));
        let retry = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2026-07-28"],"requested":"2026-07-28"}}});
        assert_eq!(
            classify_probe(Some(&retry), MODERN_VERSION),
            Probe::Retry(MODERN_VERSION.into())
        );
        let other = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"no","data":{"supported":["2027-01-01"]}}});
        assert!(matches!(
            classify_probe(Some(&other), MODERN_VERSION),
            Probe::Incompatible(_)
        ));
        for legacy in [
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}),
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}),
            json!({"jsonrpc":"2.0","id":1,"result":{"supportedVersions":"x"}}),
            json!({"jsonrpc":"2.0","id":1,"result":{}}),
            json!({"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"]}}),
        ] {
            assert_eq!(
                classify_probe(Some(&legacy), MODERN_VERSION),
                Probe::Legacy,
                "{legacy}"
            );
        }
        assert_eq!(classify_probe(None, MODERN_VERSION), Probe::Legacy);
    }

    #[test]
    fn the_host_gets_its_own_version_and_the_servers_identity() {
        let discover = json!({
            "supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
            "_meta": {META_SERVER_INFO: {"name": "weather", "version": "2.0"}},
            "instructions": "be nice", "resultType": "complete", "ttlMs": 0
        });
        let r = initialize_result(&discover, Some("2025-06-18"));
        assert_eq!(r["protocolVersion"], "2025-06-18");
        assert_eq!(r["serverInfo"]["name"], "weather");
        assert_eq!(r["instructions"], "be nice");
        assert_eq!(r["capabilities"], json!({"tools": {}}));
        let r = initialize_result(
            &json!({"serverInfo": {"name": "old", "version": "1"}}),
            Some("2026-07-28"),
        );
        assert_eq!(r["protocolVersion"], "2025-11-25");
        assert_eq!(r["serverInfo"]["name"], "old");
        let r = initialize_result(&json!({}), None);
        assert_eq!(r["serverInfo"]["name"], "mcp-server");
    }

    #[test]
    fn annotations_are_read_and_invalid_ones_named() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
            "plain": {"type": "string"}}});
        let found = tool_headers(&schema).unwrap();
        assert_eq!(found.len(), 2);
        let args = json!({"region": "Hello, 世界", "opts": {"n": 42}});
        let headers = param_headers(&found, Some(&args));
        assert!(headers.contains(&(
            "mcp-param-region".into(),
            "=?base64?SGVsbG8sIOS4lueVjA==?=".into()
        )));
        assert!(headers.contains(&("mcp-param-n".into(), "42".into())));
        assert!(param_headers(&found, Some(&json!({"region": null}))).is_empty());
        let empty = param_headers(&found, Some(&json!({"region": ""})));
        assert_eq!(empty, vec![("mcp-param-region".to_owned(), String::new())]);
        for bad in [
            json!({"properties": {"x": {"type": "number", "x-mcp-header": "X"}}}),
            json!({"properties": {"x": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"x": {"type": "string", "x-mcp-header": "My Region"}}}),
            json!({"properties": {"x": {"type": "string", "x-mcp-header": "Région"}}}),
            json!({"properties": {"x": {"type": "string", "x-mcp-header": "A"}, "y": {"type": "string", "x-mcp-header": "a"}}}),
            json!({"properties": {"x": {"type": "array", "items": {"type": "string", "x-mcp-header": "I"}}}}),
            json!({"properties": {"x": {"type": "object", "x-mcp-header": "O"}}}),
        ] {
            assert!(tool_headers(&bad).is_err(), "{bad}");
        }
        let list = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "ok", "inputSchema": schema},
            {"name": "bad", "inputSchema": {"properties": {"r": {"type": "number", "x-mcp-header": "R"}}}},
            {"name": "plain", "inputSchema": {"type": "object"}}]}});
        let (scan, rewritten) = scan_tools(&serde_json::to_vec(&list).unwrap());
        assert_eq!(scan.invalid.len(), 1);
        assert_eq!(scan.invalid[0].0, "bad");
        assert!(scan.headers.contains_key("ok"));
        let rewritten: Value = serde_json::from_slice(&rewritten.unwrap()).unwrap();
        assert_eq!(rewritten["result"]["tools"].as_array().unwrap().len(), 2);
        let fine = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "plain", "inputSchema": {}}]}});
        assert!(scan_tools(&serde_json::to_vec(&fine).unwrap()).1.is_none());
    }

    #[test]
    fn standard_headers_name_the_method_and_the_target() {
        let h = request_headers("tools/call", Some(&json!({"name": "ü"})));
        assert_eq!(
            h,
            vec![
                ("mcp-method", "tools/call".into()),
                ("mcp-name", "=?base64?w7w=?=".into())
            ]
        );
        let h = request_headers("resources/read", Some(&json!({"uri": "file:///a b"})));
        assert_eq!(h[1], ("mcp-name", "file:///a b".into()));
        assert_eq!(request_headers("tools/list", None).len(), 1);
    }
}
