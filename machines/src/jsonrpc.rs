//! JSON-RPC 2.0 envelopes, read without re-serializing the message.
//!
//! A message crosses the proxy as the exact bytes it arrived with. To route it
//! we only need its envelope: `id`, `method`, and whether it carries a `result`
//! or an `error`. [`Message::parse`] validates the whole text once (syntax,
//! UTF-8, JSON-RPC shape) and keeps those few fields; the body is never
//! rebuilt on the hot path. Ids are kept verbatim for output and folded into an
//! [`IdKey`] for bookkeeping, so `1`, `1.0` and `1e0` name the same request.
//!
//! Only two messages are ever rewritten: a `tools/list` result when
//! `--ignore-tool` is in force, and the host's `initialize` (the client name is
//! tagged, as mcp-remote does).

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// JSON-RPC 2.0 §5.1: invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 §5.1: the JSON sent is not a valid Request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0 §5.1: invalid method parameters (MCP: an unknown tool).
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC 2.0 §5.1: internal JSON-RPC error (mcp-remote uses it for ignored tools).
pub const INTERNAL_ERROR: i64 = -32603;
/// The proxy could not get an answer from the server (mcp-remote's code for
/// forward failures and time-outs, kept for drop-in compatibility).
pub const PROXY_ERROR: i64 = -32001;

/// Prefix of the ids the proxy gives its own requests. Host or server requests
/// using it are refused, so a proxy id can never collide with theirs.
pub const RESERVED_ID_PREFIX: &str = "mcp-remote-";

/// What a message is, by the JSON-RPC 2.0 rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects exactly one response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`.
    Response,
}

/// A request id folded for comparison: JSON-RPC ids are strings or numbers, and
/// peers may re-serialize numbers (`1.0` → `1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKey {
    /// A string id, unescaped.
    Str(String),
    /// A number id in a canonical decimal form.
    Num(String),
}

impl IdKey {
    /// Fold a raw id (the JSON text) into a key; `None` unless it is a string or a number.
    pub fn from_raw(raw: &RawValue) -> Option<IdKey> {
        let text = raw.get();
        match text.as_bytes().first()? {
            b'"' => serde_json::from_str::<String>(text).ok().map(IdKey::Str),
            b'-' | b'0'..=b'9' => Some(IdKey::Num(canonical_number(text))),
            _ => None,
        }
    }

    /// Whether this id lies in the proxy's reserved space.
    pub fn is_reserved(&self) -> bool {
        matches!(self, IdKey::Str(s) if s.starts_with(RESERVED_ID_PREFIX))
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdKey::Str(s) => write!(f, "{s:?}"),
            IdKey::Num(n) => f.write_str(n),
        }
    }
}

/// Integers up to 2^53 survive a trip through a double (JavaScript) exactly.
const EXACT_INTEGERS: f64 = 9.007_199_254_740_992e15;

/// Folds a JSON number so that the forms a peer may write it back in compare equal:
/// `1`, `1.0` and `1e0`; and beyond 2^53, where a JavaScript server writes back its
/// nearest double (`123456789012345678901234567890` → `1.2345678901234568e29`), the
/// double. Two host ids that only differ beyond a double's precision then share a key,
/// and the second is refused while the first is pending rather than answered wrongly.
fn canonical_number(text: &str) -> String {
    if let Ok(i) = text.parse::<i64>() {
        if (i as f64).abs() <= EXACT_INTEGERS {
            return i.to_string();
        }
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT_INTEGERS => {
            (f as i64).to_string()
        }
        Ok(f) if f.is_finite() => format!("{f:e}"),
        _ => text.to_owned(),
    }
}

/// Why a line from the host (or a body from the server) is not a message we can route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Not JSON at all, or not UTF-8 (JSON-RPC `-32700`).
    #[error("parse error: {0}")]
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message (JSON-RPC `-32600`). `id` is the raw id
    /// when one could be read, so that the error can name it.
    #[error("invalid request: {reason}")]
    Invalid {
        /// What is wrong, in words a host developer understands.
        reason: String,
        /// The offending message's id, verbatim, if it had a usable one.
        id: Option<String>,
    },
}

impl Malformed {
    /// The JSON-RPC error code for this failure.
    pub fn code(&self) -> i64 {
        match self {
            Malformed::Parse(_) => PARSE_ERROR,
            Malformed::Invalid { .. } => INVALID_REQUEST,
        }
    }

    /// The error response to write back (`id` null when unknown, per JSON-RPC 2.0 §5).
    pub fn to_response(&self) -> Vec<u8> {
        let id = match self {
            Malformed::Invalid { id: Some(id), .. } => id.as_str(),
            _ => "null",
        };
        error_response(id, self.code(), &self.to_string())
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

/// Keeps `null` as a present value (`Some("null")`) instead of folding it into `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// One JSON-RPC message: its bytes, untouched, plus the envelope fields used for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message text exactly as received (compacted to one line if it was not).
    pub bytes: Vec<u8>,
    /// Request, notification or response.
    pub kind: Kind,
    /// The id verbatim (JSON text), for requests and responses.
    pub id: Option<String>,
    /// The id folded for lookups.
    pub id_key: Option<IdKey>,
    /// The method of a request or notification.
    pub method: Option<String>,
    /// For responses: whether it is an error response.
    pub is_error: bool,
}

impl Message {
    /// Validate and classify one message. `bytes` must be a single JSON object.
    pub fn parse(bytes: Vec<u8>) -> Result<Message, Malformed> {
        // serde_json checks UTF-8 only in the strings it reads, not in members it skips.
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(Malformed::Parse(format!(
                "invalid UTF-8 at byte {}",
                e.valid_up_to()
            )));
        }
        let env: Envelope<'_> = match serde_json::from_slice(&bytes) {
            Ok(env) => env,
            Err(e) if e.is_data() => return Err(invalid_shape(&bytes)),
            Err(e) => return Err(Malformed::Parse(describe(&e))),
        };
        let id_text = env.id.map(|r| r.get().to_owned());
        let id_key = env.id.and_then(IdKey::from_raw);
        let bad = |reason: &str| Malformed::Invalid {
            reason: reason.to_owned(),
            id: id_key.as_ref().and(id_text.clone()),
        };
        if env.jsonrpc.as_deref() != Some("2.0") {
            return Err(bad("\"jsonrpc\" must be \"2.0\""));
        }
        // JSON-RPC 2.0 §5: an error about a request whose id could not be read has `"id": null`.
        let null_id_error = env.id.map(RawValue::get) == Some("null")
            && env.error.is_some()
            && env.method.is_none();
        if env.id.is_some() && id_key.is_none() && !null_id_error {
            return Err(bad("\"id\" must be a string or a number"));
        }
        if let Some(p) = env.params {
            if !matches!(p.get().as_bytes().first(), Some(b'{') | Some(b'[')) {
                return Err(bad("\"params\" must be an object or an array"));
            }
        }
        let kind = match (&env.method, env.id, env.result, env.error) {
            (Some(_), _, Some(_), _) | (Some(_), _, _, Some(_)) => {
                return Err(bad(
                    "a message cannot have both \"method\" and \"result\"/\"error\"",
                ))
            }
            (Some(_), Some(_), None, None) => Kind::Request,
            (Some(_), None, None, None) => Kind::Notification,
            (None, Some(_), Some(_), None) | (None, Some(_), None, Some(_)) => Kind::Response,
            (None, _, Some(_), Some(_)) => {
                return Err(bad("a response cannot have both \"result\" and \"error\""))
            }
            (None, None, _, _) if env.result.is_some() || env.error.is_some() => {
                // JSON-RPC allows `"id": null` only on errors about unreadable requests;
                // MCP 2025-11-25 makes the id optional there.
                Kind::Response
            }
            _ => return Err(bad("not a request, notification or response")),
        };
        let method = env.method.map(Cow::into_owned);
        let is_error = env.error.is_some();
        Ok(Message {
            bytes,
            kind,
            id: id_text,
            id_key,
            method,
            is_error,
        })
    }

    /// The `params` object, parsed on demand (only for the few methods the proxy looks into).
    pub fn params(&self) -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&self.bytes).ok()?;
        v.get("params").cloned()
    }

    /// The `result` member of a response, parsed on demand.
    pub fn result(&self) -> Option<serde_json::Value> {
        let mut v: serde_json::Value = serde_json::from_slice(&self.bytes).ok()?;
        v.get_mut("result").map(serde_json::Value::take)
    }

    /// The message as text (it was validated as UTF-8 JSON).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }
}

fn describe(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        _ => "invalid JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// JSON that is not an object with the right member types: say which.
fn invalid_shape(bytes: &[u8]) -> Malformed {
    let value: Result<serde_json::Value, _> = serde_json::from_slice(bytes);
    let (reason, id) = match value {
        Ok(serde_json::Value::Object(map)) => {
            let id = map
                .get("id")
                .filter(|v| v.is_string() || v.is_number())
                .map(|v| v.to_string());
            let reason = if map.get("method").is_some_and(|m| !m.is_string()) {
                "\"method\" must be a string"
            } else if map.get("jsonrpc").is_some_and(|m| !m.is_string()) {
                "\"jsonrpc\" must be \"2.0\""
            } else {
                "unexpected member types"
            };
            (reason.to_owned(), id)
        }
        Ok(other) => (
            format!("expected a JSON object, got {}", json_type(&other)),
            None,
        ),
        Err(e) => return Malformed::Parse(describe(&e)),
    };
    Malformed::Invalid { reason, id }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What one line of input holds.
#[derive(Debug)]
pub enum Incoming {
    /// A single message.
    Single(Message),
    /// A batch (JSON array): each element parsed on its own, in order.
    Batch(Vec<Result<Message, Malformed>>),
}

/// Parse one line or body: a message, or a batch of them.
pub fn parse_incoming(bytes: Vec<u8>) -> Result<Incoming, Malformed> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Message::parse(bytes).map(Incoming::Single);
    }
    let items: Vec<&RawValue> = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_data() {
            Malformed::Invalid {
                reason: "batch elements must be JSON".into(),
                id: None,
            }
        } else {
            Malformed::Parse(describe(&e))
        }
    })?;
    if items.is_empty() {
        return Err(Malformed::Invalid {
            reason: "an empty batch is not a valid request".into(),
            id: None,
        });
    }
    Ok(Incoming::Batch(
        items
            .into_iter()
            .map(|raw| Message::parse(raw.get().as_bytes().to_vec()))
            .collect(),
    ))
}

/// Build an error response for the raw `id` (JSON text, or `null`).
pub fn error_response(id: &str, code: i64, message: &str) -> Vec<u8> {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{message}}}}}"
    )
    .into_bytes()
}

/// Build a notification with the given JSON params.
pub fn notification(method: &str, params: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params}))
        .unwrap_or_default()
}

/// Build a request with a string id.
pub fn request(id: &str, method: &str, params: Option<&serde_json::Value>) -> Vec<u8> {
    let mut v = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method});
    if let Some(p) = params {
        v["params"] = p.clone();
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Remove the whitespace outside strings, so a pretty-printed body becomes one
/// line. Returns the input untouched (no copy) when it has no line breaks.
pub fn compact(bytes: Vec<u8>) -> Vec<u8> {
    if memchr::memchr2(b'\n', b'\r', &bytes).is_none() {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped) = (false, false);
    for b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
        }
    }
    out
}

/// The `protocolVersion` of an `initialize` result, if the response carries one.
pub fn negotiated_version(response: &Message) -> Option<String> {
    #[derive(Deserialize)]
    struct R {
        result: Option<V>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct V {
        protocol_version: Option<String>,
    }
    serde_json::from_slice::<R>(&response.bytes)
        .ok()?
        .result?
        .protocol_version
}

/// The tool name of a `tools/call` request.
pub fn tool_name(request: &Message) -> Option<String> {
    #[derive(Deserialize)]
    struct R {
        params: Option<P>,
    }
    #[derive(Deserialize)]
    struct P {
        name: Option<String>,
    }
    serde_json::from_slice::<R>(&request.bytes)
        .ok()?
        .params?
        .name
}

/// Case-insensitive full match of `name` against a pattern where `*` is any run of characters
/// (mcp-remote's `--ignore-tool`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Remove ignored tools from a `tools/list` response. Returns `None` when nothing
/// was removed (the original bytes then pass through untouched).
pub fn filter_tools(response: &Message, ignore: &[String]) -> Option<Vec<u8>> {
    if ignore.is_empty() {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(&response.bytes).ok()?;
    let tools = v.get_mut("result")?.get_mut("tools")?.as_array_mut()?;
    let before = tools.len();
    tools.retain(|t| {
        let name = t.get("name").and_then(|n| n.as_str()).unwrap_or("");
        !ignore.iter().any(|p| glob_match(p, name))
    });
    (tools.len() != before).then(|| serde_json::to_vec(&v).unwrap_or_default())
}

/// Tag `clientInfo.name` of the host's `initialize` with the proxy's name, as
/// mcp-remote does (`"Claude (via mcp-remote …)"`), so servers can tell.
pub fn tag_initialize(request: &Message, tag: &str) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(&request.bytes).ok()?;
    let name = v
        .get_mut("params")?
        .get_mut("clientInfo")?
        .get_mut("name")?;
    let tagged = format!("{} ({tag})", name.as_str()?);
    *name = serde_json::Value::String(tagged);
    serde_json::to_vec(&v).ok()
}

/// Replace the id of a request with a string id (used to replay the host's
/// `initialize` under a reserved id).
pub fn with_id(request: &Message, id: &str) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(&request.bytes).ok()?;
    v["id"] = serde_json::Value::String(id.to_owned());
    serde_json::to_vec(&v).ok()
}

/// `response` with its id written as `id` (JSON text), byte for byte: the host gets
/// back the id exactly as it wrote it, whatever form the server answered with. Only
/// the id's bytes change; `None` when `response` has no id to replace.
pub fn with_id_text(response: &[u8], id: &str) -> Option<Vec<u8>> {
    let env: Envelope<'_> = serde_json::from_slice(response).ok()?;
    let raw = env.id?.get();
    if raw == id {
        return Some(response.to_vec());
    }
    let start = (raw.as_ptr() as usize).checked_sub(response.as_ptr() as usize)?;
    let end = start + raw.len();
    let mut out = Vec::with_capacity(response.len() - raw.len() + id.len());
    out.extend_from_slice(response.get(..start)?);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(response.get(end..)?);
    Some(out)
}

/// Check that a whole text is JSON (used for the validation-only paths).
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, Malformed> {
        Message::parse(s.as_bytes().to_vec())
    }

    #[test]
    fn classifies_the_three_kinds() {
        let r = parse(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
        assert_eq!(
            (r.kind, r.id.as_deref(), r.method.as_deref()),
            (Kind::Request, Some("7"), Some("ping"))
        );
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind, Kind::Notification);
        let a = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!((a.kind, a.is_error), (Kind::Response, false));
        let e = parse(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#).unwrap();
        assert_eq!((e.kind, e.is_error), (Kind::Response, true));
    }

    #[test]
    fn ids_keep_their_text_and_fold_numbers() {
        for (raw, key) in [
            ("1", "1"),
            ("1.0", "1"),
            ("1e0", "1"),
            ("-5", "-5"),
            ("9007199254740992", "9007199254740992"),
            // Beyond 2^53 a JavaScript server answers with its nearest double.
            ("12345678901234567890", "1.2345678901234567e19"),
            ("1.2345678901234567e19", "1.2345678901234567e19"),
            ("123456789012345678901234567890", "1.2345678901234568e29"),
            ("1.2345678901234568e29", "1.2345678901234568e29"),
            ("1.5", "1.5e0"),
            ("1.50", "1.5e0"),
        ] {
            let m = parse(&format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"x"}}"#)).unwrap();
            assert_eq!(m.id.as_deref(), Some(raw));
            assert_eq!(m.id_key, Some(IdKey::Num(key.into())), "{raw}");
        }
        let m = parse(r#"{"jsonrpc":"2.0","id":"\u00e9\"x","method":"x"}"#).unwrap();
        assert_eq!(m.id_key, Some(IdKey::Str("é\"x".into())));
        assert_eq!(m.id.as_deref(), Some(r#""\u00e9\"x""#));
    }

    #[test]
    fn invalid_utf8_anywhere_is_a_parse_error() {
        let mut line = br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":"#.to_vec();
        line.extend_from_slice(&[b'"', 0xc0, 0xaf, b'"', b'}']);
        let e = Message::parse(line).unwrap_err();
        assert_eq!(e.code(), PARSE_ERROR);
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn the_id_is_put_back_byte_for_byte_and_nothing_else_changes() {
        let answer = br#"{"result":{"id":1000.0},"jsonrpc":"2.0","id":1000.0}"#;
        let out = with_id_text(answer, "1e3").unwrap();
        assert_eq!(out, br#"{"result":{"id":1000.0},"jsonrpc":"2.0","id":1e3}"#);
        let same = with_id_text(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#, r#""a""#);
        assert_eq!(same.unwrap(), br#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
        assert_eq!(with_id_text(br#"{"jsonrpc":"2.0","result":{}}"#, "1"), None);
    }

    #[test]
    fn garbage_gets_the_right_codes() {
        assert_eq!(parse("{bad json").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(
            Message::parse(vec![b'"', 0xff, b'"']).unwrap_err().code(),
            PARSE_ERROR
        );
        assert_eq!(parse("42").unwrap_err().code(), INVALID_REQUEST);
        assert_eq!(
            parse(r#"{"id":1,"method":"x"}"#).unwrap_err().code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":3}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#)
                .unwrap_err()
                .code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1}"#).unwrap_err().code(),
            INVALID_REQUEST
        );
        let e = parse(r#"{"jsonrpc":"1.0","id":"q","method":"x"}"#).unwrap_err();
        let resp: serde_json::Value = serde_json::from_slice(&e.to_response()).unwrap();
        assert_eq!(resp["id"], "q");
        assert_eq!(resp["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn the_proxys_own_null_id_errors_parse_back() {
        // Found by the router fuzz target: an error for an unreadable request has "id": null.
        let e = parse_incoming(b"\r\r[\r[\r\r]\r\r\r]\r".to_vec()).unwrap();
        let Incoming::Batch(items) = e else {
            panic!("a batch")
        };
        let response = items[0].as_ref().unwrap_err().to_response();
        let m = Message::parse(response).expect("valid JSON-RPC");
        assert_eq!((m.kind, m.id_key, m.is_error), (Kind::Response, None, true));
        assert!(
            parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).is_err(),
            "a request may not have a null id"
        );
    }

    #[test]
    fn compact_keeps_strings_intact() {
        let pretty = b"{\n  \"a\" : \"x \\\" \\n y\",\r\n \"b\": [1, 2]\n}".to_vec();
        assert_eq!(compact(pretty), br#"{"a":"x \" \n y","b":[1,2]}"#.to_vec());
        let one_line = br#"{"a": 1}"#.to_vec();
        assert_eq!(compact(one_line.clone()), one_line);
    }

    #[test]
    fn glob_is_case_insensitive_full_match() {
        assert!(glob_match("delete*", "DeleteUser"));
        assert!(glob_match("*file*", "read_file_now"));
        assert!(!glob_match("delete", "delete_all"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
    }

    #[test]
    fn filters_tools_list() {
        let m = parse(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"keep"},{"name":"drop_me"}]}}"#,
        )
        .unwrap();
        let out = filter_tools(&m, &["drop*".into()]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"], serde_json::json!([{"name":"keep"}]));
        assert!(filter_tools(&m, &["none".into()]).is_none());
    }

    #[test]
    fn batches_split_and_empty_batch_is_invalid() {
        match parse_incoming(br#" [{"jsonrpc":"2.0","id":1,"method":"a"}, 5]"#.to_vec()).unwrap() {
            Incoming::Batch(items) => {
                assert!(items[0].is_ok());
                assert_eq!(items[1].as_ref().unwrap_err().code(), INVALID_REQUEST);
            }
            Incoming::Single(_) => panic!("expected a batch"),
        }
        assert_eq!(
            parse_incoming(b"[]".to_vec()).unwrap_err().code(),
            INVALID_REQUEST
        );
        assert_eq!(
            parse_incoming(b"[1,".to_vec()).unwrap_err().code(),
            PARSE_ERROR
        );
    }
}
