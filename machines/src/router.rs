//! The Bridge's decisions: which message goes where, and who still owes an answer.
//!
//! Invariant 2 of the design lives here: every request the host sends gets
//! exactly one answer — the server's, or an error from the proxy when the
//! request is refused, fails in transport, or outlives the request timeout.
//! The router keeps the table of requests in flight (an answer to anything else
//! — a late one, a duplicate — is not passed on: it would be a second one), the tool filter of
//! `--ignore-tool`, and the protocol version the server negotiated (it decides
//! whether a batch from the host is allowed).
//!
//! Driving contract: call one `on_*` method per event with the current time,
//! then drain the effects it pushed into the given `Vec`; call
//! [`Router::next_deadline`] to know when [`Router::on_tick`] is due.

use crate::error::RequestError;
use crate::jsonrpc::{self, IdKey, Incoming, Kind, Malformed, Message};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The router's settings, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// How long a host request may wait for the server's answer (`None`: forever).
    pub request_timeout: Option<Duration>,
    /// `--ignore-tool` patterns (`*` wildcard, case-insensitive).
    pub ignore_tools: Vec<String>,
    /// Appended to the host's `clientInfo.name` in `initialize`, e.g. `via mcp-remote-rs 0.1.0`.
    pub client_tag: Option<String>,
}

/// A message for the remote session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The message, one compact JSON text.
    pub bytes: Vec<u8>,
    /// Request, notification or response.
    pub kind: Kind,
    /// For requests: the id, folded, so a transport failure can be reported against it.
    pub id_key: Option<IdKey>,
    /// For requests and notifications: the method (`initialize` matters to the session).
    pub method: Option<String>,
}

/// What the router asks its actor to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEffect {
    /// Send this message to the server.
    Forward(Outbound),
    /// Write this line to the host (stdout).
    ToHost(Vec<u8>),
}

#[derive(Debug, Clone)]
struct InFlight {
    /// The id as the host wrote it, for error answers.
    id_text: String,
    /// The method, to post-process its answer (`initialize`, `tools/list`).
    method: String,
    /// When the proxy gives up on the server's answer.
    deadline: Option<Instant>,
    /// Its place in the order the host sent requests: requests that time out
    /// together are answered in that order, the same on every run.
    arrival: u64,
}

/// The routing table of one proxy run.
#[derive(Debug, Default)]
pub struct Router {
    /// Settings.
    config: RouterConfig,
    /// Host requests forwarded and not yet answered (an ordered map: whatever walks
    /// it does so in the same order on every run).
    in_flight: BTreeMap<IdKey, InFlight>,
    /// How many requests were taken into `in_flight`, for their `arrival`.
    arrivals: u64,
    /// The protocol version the server chose in its `initialize` result.
    negotiated: Option<String>,
}

impl Router {
    /// A router with these settings.
    pub fn new(config: RouterConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The negotiated protocol version, once known.
    pub fn negotiated(&self) -> Option<&str> {
        self.negotiated.as_deref()
    }

    /// How many host requests await an answer.
    pub fn pending(&self) -> usize {
        self.in_flight.len()
    }

    /// The earliest request deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.in_flight.values().filter_map(|f| f.deadline).min()
    }

    /// A line from the host that could not be parsed.
    pub fn on_host_garbage(&mut self, error: &Malformed, out: &mut Vec<RouterEffect>) {
        out.push(RouterEffect::ToHost(error.to_response()));
    }

    /// A parsed line (message or batch) from the host.
    pub fn on_host_incoming(
        &mut self,
        incoming: Incoming,
        now: Instant,
        out: &mut Vec<RouterEffect>,
    ) {
        match incoming {
            Incoming::Single(m) => self.on_host_message(m, now, out),
            Incoming::Batch(items) => {
                // JSON-RPC batches exist only up to 2025-03-26 (MCP 2025-06-18 changelog item 1).
                let allowed = matches!(
                    self.negotiated.as_deref(),
                    Some("2024-11-05" | "2025-03-26")
                );
                if !allowed {
                    let why = match &self.negotiated {
                        Some(v) => format!("JSON-RPC batches are not allowed by protocol version {v}; send one message per line"),
                        None => "JSON-RPC batches are not allowed before initialization; send one message per line".to_owned(),
                    };
                    out.push(RouterEffect::ToHost(jsonrpc::error_response(
                        "null",
                        jsonrpc::INVALID_REQUEST,
                        &why,
                    )));
                    return;
                }
                for item in items {
                    match item {
                        Ok(m) => self.on_host_message(m, now, out),
                        Err(e) => self.on_host_garbage(&e, out),
                    }
                }
            }
        }
    }

    /// One message from the host.
    pub fn on_host_message(&mut self, msg: Message, now: Instant, out: &mut Vec<RouterEffect>) {
        match msg.kind {
            Kind::Request => self.host_request(msg, now, out),
            Kind::Notification => {
                if msg.method.as_deref() == Some("notifications/cancelled") {
                    if let Some(key) = cancelled_request(&msg) {
                        // MCP lifecycle §Cancellation: the host will ignore a late answer.
                        self.in_flight.remove(&key);
                    }
                }
                out.push(forward(msg));
            }
            Kind::Response => out.push(forward(msg)),
        }
    }

    fn host_request(&mut self, msg: Message, now: Instant, out: &mut Vec<RouterEffect>) {
        let (Some(key), Some(id_text)) = (msg.id_key.clone(), msg.id.clone()) else {
            return;
        };
        let refuse =
            |code, text: &str| RouterEffect::ToHost(jsonrpc::error_response(&id_text, code, text));
        if key.is_reserved() {
            out.push(refuse(
                jsonrpc::INVALID_REQUEST,
                "ids starting with \"mcp-remote-\" are reserved for the proxy's own requests",
            ));
            return;
        }
        if self.in_flight.contains_key(&key) {
            out.push(refuse(
                jsonrpc::INVALID_REQUEST,
                &format!("id {key} is already used by a pending request"),
            ));
            return;
        }
        let method = msg.method.clone().unwrap_or_default();
        if method == "tools/call" && !self.config.ignore_tools.is_empty() {
            if let Some(name) = jsonrpc::tool_name(&msg) {
                if self
                    .config
                    .ignore_tools
                    .iter()
                    .any(|p| jsonrpc::glob_match(p, &name))
                {
                    out.push(refuse(
                        jsonrpc::INTERNAL_ERROR,
                        &format!("Tool \"{name}\" is not available"),
                    ));
                    return;
                }
            }
        }
        let msg = match (&self.config.client_tag, method.as_str()) {
            (Some(tag), "initialize") => match jsonrpc::tag_initialize(&msg, tag) {
                Some(bytes) => Message { bytes, ..msg },
                None => msg,
            },
            _ => msg,
        };
        self.in_flight.insert(
            key,
            InFlight {
                id_text,
                method,
                deadline: self.config.request_timeout.map(|t| now + t),
                arrival: self.arrivals,
            },
        );
        self.arrivals += 1;
        out.push(forward(msg));
    }

    /// One message from the server.
    pub fn on_server_message(&mut self, msg: Message, out: &mut Vec<RouterEffect>) {
        if msg.kind != Kind::Response {
            out.push(RouterEffect::ToHost(msg.bytes));
            return;
        }
        let Some(key) = msg.id_key.clone() else {
            // An id-less error (MCP 2025-11-25 allows it for unreadable requests): nothing to map it to.
            out.push(RouterEffect::ToHost(msg.bytes));
            return;
        };
        // An answer to nothing in flight is the answer to a proxy request, to a
        // request the proxy already answered (time-out, failure), to a cancelled
        // request, or a server's duplicate: the host must not see a second answer.
        let Some(flight) = self.in_flight.remove(&key) else {
            return;
        };
        let same_id = msg.id.as_deref() == Some(flight.id_text.as_str());
        let (bytes, rewritten) = match flight.method.as_str() {
            "initialize" => {
                if let Some(v) = jsonrpc::negotiated_version(&msg) {
                    self.negotiated = Some(v);
                }
                (msg.bytes, false)
            }
            "tools/list" => match jsonrpc::filter_tools(&msg, &self.config.ignore_tools) {
                Some(filtered) => (filtered, true),
                None => (msg.bytes, false),
            },
            _ => (msg.bytes, false),
        };
        // The host gets its id back exactly as it wrote it (`1e3` stays `1e3`, a 30-digit
        // integer is not turned into a double by a JavaScript server).
        let bytes = match same_id && !rewritten {
            true => bytes,
            false => jsonrpc::with_id_text(&bytes, &flight.id_text).unwrap_or(bytes),
        };
        out.push(RouterEffect::ToHost(bytes));
    }

    /// The session could not deliver the request `key` or get its answer.
    pub fn on_request_failed(
        &mut self,
        key: &IdKey,
        error: &RequestError,
        out: &mut Vec<RouterEffect>,
    ) {
        if let Some(flight) = self.in_flight.remove(key) {
            // The edge: the error becomes words here, and only here.
            out.push(RouterEffect::ToHost(jsonrpc::error_response(
                &flight.id_text,
                jsonrpc::PROXY_ERROR,
                &format!("mcp-remote: {error}"),
            )));
        }
    }

    /// Time passed: answer the requests whose deadline is over and tell the server,
    /// in the order the host sent them.
    pub fn on_tick(&mut self, now: Instant, out: &mut Vec<RouterEffect>) {
        let mut expired: Vec<(u64, IdKey)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now))
            .map(|(k, f)| (f.arrival, k.clone()))
            .collect();
        expired.sort_unstable();
        for (_, key) in expired {
            let Some(flight) = self.in_flight.remove(&key) else {
                continue;
            };
            let secs = self
                .config
                .request_timeout
                .unwrap_or_default()
                .as_secs_f64();
            out.push(RouterEffect::ToHost(jsonrpc::error_response(
                &flight.id_text,
                jsonrpc::PROXY_ERROR,
                &format!("mcp-remote: no answer from the server within {secs} s (--request-timeout); the request was cancelled"),
            )));
            // MCP 2025-11-25 lifecycle §Timeouts: issue a cancellation notification.
            let id: serde_json::Value =
                serde_json::from_str(&flight.id_text).unwrap_or(serde_json::Value::Null);
            let bytes = jsonrpc::notification(
                "notifications/cancelled",
                &serde_json::json!({"requestId": id, "reason": "request timed out in mcp-remote"}),
            );
            out.push(RouterEffect::Forward(Outbound {
                bytes,
                kind: Kind::Notification,
                id_key: None,
                method: Some("notifications/cancelled".into()),
            }));
        }
    }

    /// The host went away: nothing is owed any more.
    pub fn clear(&mut self) {
        self.in_flight.clear();
    }
}

fn forward(msg: Message) -> RouterEffect {
    let id_key = if msg.kind == Kind::Request {
        msg.id_key
    } else {
        None
    };
    RouterEffect::Forward(Outbound {
        bytes: msg.bytes,
        kind: msg.kind,
        id_key,
        method: msg.method,
    })
}

fn cancelled_request(msg: &Message) -> Option<IdKey> {
    let params = msg.params()?;
    let raw = serde_json::to_string(params.get("requestId")?).ok()?;
    let raw = serde_json::value::RawValue::from_string(raw).ok()?;
    IdKey::from_raw(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(s: &str) -> Message {
        Message::parse(s.as_bytes().to_vec()).unwrap()
    }

    fn to_host(out: &[RouterEffect]) -> Vec<serde_json::Value> {
        out.iter()
            .filter_map(|e| match e {
                RouterEffect::ToHost(b) => Some(serde_json::from_slice(b).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn forwards_requests_and_passes_answers_once() {
        let mut r = Router::new(RouterConfig::default());
        let now = Instant::now();
        let mut out = Vec::new();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            now,
            &mut out,
        );
        assert!(
            matches!(&out[0], RouterEffect::Forward(o) if o.id_key == Some(IdKey::Num("1".into())))
        );
        out.clear();
        r.on_server_message(msg(r#"{"jsonrpc":"2.0","id":1.0,"result":{}}"#), &mut out);
        assert_eq!(to_host(&out).len(), 1);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn timeout_answers_cancels_and_swallows_the_late_answer() {
        let mut r = Router::new(RouterConfig {
            request_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"slow"}}"#),
            t0,
            &mut out,
        );
        out.clear();
        r.on_tick(t0 + Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
        r.on_tick(t0 + Duration::from_secs(2), &mut out);
        let host = to_host(&out);
        assert_eq!(host[0]["id"], "x");
        assert_eq!(host[0]["error"]["code"], jsonrpc::PROXY_ERROR);
        assert!(out.iter().any(|e| matches!(e, RouterEffect::Forward(o) if o.method.as_deref() == Some("notifications/cancelled")
            && String::from_utf8_lossy(&o.bytes).contains("\"requestId\":\"x\""))));
        out.clear();
        r.on_server_message(msg(r#"{"jsonrpc":"2.0","id":"x","result":{}}"#), &mut out);
        assert!(out.is_empty(), "a late answer must not be a second answer");
    }

    #[test]
    fn requests_timing_out_together_are_answered_and_cancelled_in_arrival_order() {
        let mut r = Router::new(RouterConfig {
            request_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        // Neither the ids' order nor their text's order is the order they came in.
        let ids = [
            r#"10"#, r#""b""#, r#"9"#, r#""a""#, r#"2"#, r#""mcp""#, r#"-1"#,
        ];
        for id in ids {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#);
            r.on_host_message(msg(&line), t0, &mut out);
        }
        out.clear();
        r.on_tick(t0 + Duration::from_secs(5), &mut out);
        let mut answered = Vec::new();
        let mut cancelled = Vec::new();
        for effect in &out {
            match effect {
                RouterEffect::ToHost(bytes) => {
                    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                    answered.push(v["id"].to_string());
                }
                RouterEffect::Forward(o) => {
                    let v: serde_json::Value = serde_json::from_slice(&o.bytes).unwrap();
                    cancelled.push(v["params"]["requestId"].to_string());
                }
            }
        }
        assert_eq!(
            answered, ids,
            "the errors, in the order the host sent the requests"
        );
        assert_eq!(cancelled, ids, "the cancellations, in the same order");
        // Each error is followed by its own cancellation.
        assert!(out
            .chunks(2)
            .all(|pair| matches!(pair, [RouterEffect::ToHost(_), RouterEffect::Forward(_)])));
    }

    #[test]
    fn ignored_tools_are_refused_and_filtered() {
        let mut r = Router::new(RouterConfig {
            ignore_tools: vec!["del*".into()],
            ..Default::default()
        });
        let now = Instant::now();
        let mut out = Vec::new();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"Delete"}}"#),
            now,
            &mut out,
        );
        let host = to_host(&out);
        assert_eq!(host[0]["error"]["code"], jsonrpc::INTERNAL_ERROR);
        assert_eq!(
            host[0]["error"]["message"],
            "Tool \"Delete\" is not available"
        );
        out.clear();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#),
            now,
            &mut out,
        );
        out.clear();
        r.on_server_message(msg(r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"delete"},{"name":"echo"}]}}"#), &mut out);
        assert_eq!(
            to_host(&out)[0]["result"]["tools"],
            serde_json::json!([{"name":"echo"}])
        );
    }

    #[test]
    fn reserved_and_duplicate_ids_are_refused() {
        let mut r = Router::new(RouterConfig::default());
        let now = Instant::now();
        let mut out = Vec::new();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":"mcp-remote-ping-1","method":"ping"}"#),
            now,
            &mut out,
        );
        assert_eq!(to_host(&out)[0]["error"]["code"], jsonrpc::INVALID_REQUEST);
        out.clear();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#),
            now,
            &mut out,
        );
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#),
            now,
            &mut out,
        );
        assert_eq!(to_host(&out).len(), 1);
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn batches_follow_the_negotiated_version() {
        let mut r = Router::new(RouterConfig::default());
        let now = Instant::now();
        let mut out = Vec::new();
        let batch = || {
            jsonrpc::parse_incoming(
                br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"}]"#
                    .to_vec(),
            )
            .unwrap()
        };
        r.on_host_incoming(batch(), now, &mut out);
        assert_eq!(to_host(&out)[0]["error"]["code"], jsonrpc::INVALID_REQUEST);
        out.clear();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#),
            now,
            &mut out,
        );
        r.on_server_message(
            msg(r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}"#),
            &mut out,
        );
        out.clear();
        r.on_host_incoming(batch(), now, &mut out);
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, RouterEffect::Forward(_)))
                .count(),
            2
        );
    }

    #[test]
    fn initialize_is_tagged() {
        let mut r = Router::new(RouterConfig {
            client_tag: Some("via mcp-remote-rs".into()),
            ..Default::default()
        });
        let mut out = Vec::new();
        r.on_host_message(
            msg(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"Claude","version":"1"}}}"#),
            Instant::now(),
            &mut out,
        );
        let RouterEffect::Forward(o) = &out[0] else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(&o.bytes).unwrap();
        assert_eq!(
            v["params"]["clientInfo"]["name"],
            "Claude (via mcp-remote-rs)"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request(u8),
        Answer(u8),
        Fail(u8),
        Cancel(u8),
        Tick(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Request),
            (0u8..6).prop_map(Op::Answer),
            (0u8..6).prop_map(Op::Fail),
            (0u8..6).prop_map(Op::Cancel),
            (0u8..20).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever happens, each accepted host request gets at most one answer, and
        /// after the deadline every request not cancelled got exactly one.
        #[test]
        fn every_request_is_answered_exactly_once(ops in proptest::collection::vec(op(), 0..60)) {
            let timeout = Duration::from_secs(10);
            let mut r = Router::new(RouterConfig { request_timeout: Some(timeout), ..Default::default() });
            let t0 = Instant::now();
            let mut now = t0;
            // per id: (times accepted, answers seen, cancelled)
            let mut accepted: std::collections::HashMap<u8, (u32, u32, bool)> = std::collections::HashMap::new();
            let mut out = Vec::new();
            for op in ops {
                out.clear();
                match op {
                    Op::Request(i) => {
                        let was_pending = r.in_flight.contains_key(&IdKey::Num(i.to_string()));
                        r.on_host_message(msg(&format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"m"}}"#)), now, &mut out);
                        if !was_pending {
                            let e = accepted.entry(i).or_default();
                            // a new request with a reused id starts a new count
                            *e = (e.0 + 1, 0, false);
                        } else {
                            prop_assert_eq!(to_host(&out).len(), 1, "duplicate refused");
                            continue;
                        }
                    }
                    Op::Answer(i) => r.on_server_message(msg(&format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{}}}}"#)), &mut out),
                    Op::Fail(i) => r.on_request_failed(&IdKey::Num(i.to_string()), &RequestError::NoAnswer, &mut out),
                    Op::Cancel(i) => {
                        r.on_host_message(msg(&format!(r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{i}}}}}"#)), now, &mut out);
                        if let Some(e) = accepted.get_mut(&i) { e.2 = true; }
                    }
                    Op::Tick(s) => { now += Duration::from_secs(s as u64); r.on_tick(now, &mut out); }
                }
                for v in to_host(&out) {
                    let id = v["id"].as_u64().unwrap() as u8;
                    if let Some(e) = accepted.get_mut(&id) {
                        if !e.2 { e.1 += 1; prop_assert!(e.1 <= 1, "two answers for {id}"); }
                    }
                }
            }
            out.clear();
            r.on_tick(now + timeout, &mut out);
            for v in to_host(&out) {
                let id = v["id"].as_u64().unwrap() as u8;
                if let Some(e) = accepted.get_mut(&id) { if !e.2 { e.1 += 1; } }
            }
            prop_assert_eq!(r.pending(), 0);
            for (id, (_, answers, cancelled)) in accepted {
                if !cancelled { prop_assert_eq!(answers, 1, "id {}", id); }
            }
        }
    }
}
