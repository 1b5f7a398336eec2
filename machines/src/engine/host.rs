//! The host side of the engine: what the host may send, and the one answer each
//! of its requests gets.
//!
//! Invariant 2 of the design lives here: every request the host sends gets
//! exactly one answer — the server's, or an error from the proxy when the request
//! is refused, fails in transport, or outlives `--request-timeout`. The request is
//! an entry of the engine's one table of messages from its arrival to its answer:
//! the same entry says where it is on the network side (held, posted, accepted,
//! resuming) and what the host is owed (its id as written, what its answer needs,
//! its deadline). An answer to anything not owed — a late one, a duplicate, one for
//! a cancelled request — is not passed on: it would be a second one.
//!
//! Errors become words here, and only here: this is the edge where a
//! [`RequestError`] turns into the host's JSON-RPC error.

use super::{Engine, Event, Stage};
use crate::error::RequestError;
use crate::jsonrpc::{self, IdKey, Incoming, Kind, Malformed, Message};
use crate::link::LinkEvent;
use std::time::{Duration, Instant};

/// How long in-flight requests may still be answered after stdin closed.
pub const DRAIN_AFTER_EOF: Duration = Duration::from_millis(700);

/// What the host side needs to know, from the command line.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// How long a host request may wait for the server's answer (`None`: forever).
    pub request_timeout: Option<Duration>,
    /// `--ignore-tool` patterns (`*` wildcard, case-insensitive).
    pub ignore_tools: Vec<String>,
    /// Appended to the host's `clientInfo.name` in `initialize`, e.g. `via mcp-remote-rs 0.1.0`.
    pub client_tag: Option<String>,
}

/// What an answer needs before it goes to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    /// Nothing.
    None,
    /// The answer to `initialize` (its protocol version decides whether batches are allowed).
    Initialize,
    /// The answer to `tools/list` (`--ignore-tool` filters it).
    ToolsList,
}

/// Who wrote a line for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The server: relayed as it came (its id restored to the host's text).
    Server,
    /// The proxy: an error answer (refused, failed, timed out, unreadable input).
    Proxy,
}

/// One line for the host's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLine {
    /// The compact JSON text.
    pub bytes: Vec<u8>,
    /// Request, notification or response.
    pub kind: Kind,
    /// A request's or notification's method.
    pub method: Option<String>,
    /// A request's or response's id.
    pub id: Option<IdKey>,
    /// Who wrote it.
    pub origin: Origin,
}

impl Engine {
    /// A parsed line (message or batch) from the host.
    pub fn handle_host(&mut self, incoming: Incoming, now: Instant) {
        match incoming {
            Incoming::Single(message) => self.host_message(message, now),
            Incoming::Batch(items) => {
                // JSON-RPC batches exist only up to 2025-03-26 (MCP 2025-06-18 changelog item 1).
                let negotiated = self.link.protocol_version();
                if !matches!(negotiated, Some("2024-11-05" | "2025-03-26")) {
                    let why = match negotiated {
                        Some(v) => format!("JSON-RPC batches are not allowed by protocol version {v}; send one message per line"),
                        None => "JSON-RPC batches are not allowed before initialization; send one message per line".to_owned(),
                    };
                    self.refuse("null", None, jsonrpc::INVALID_REQUEST, &why);
                } else {
                    for item in items {
                        match item {
                            Ok(message) => self.host_message(message, now),
                            Err(e) => self.handle_host_garbage(&e),
                        }
                    }
                }
            }
        }
        self.settle(now);
    }

    /// A line from the host that could not be parsed.
    pub fn handle_host_garbage(&mut self, error: &Malformed) {
        self.events.push_back(Event::ToHost(HostLine {
            bytes: error.to_response(),
            kind: Kind::Response,
            method: None,
            id: None,
            origin: Origin::Proxy,
        }));
    }

    /// The host wrote a line of `len` bytes, over the limit of `max`; it was skipped.
    pub fn handle_host_oversized(&mut self, len: usize, max: usize) {
        let why = format!("message of {len} bytes exceeds the limit of {max} bytes (--max-message-bytes); it was dropped");
        self.refuse("null", None, jsonrpc::INVALID_REQUEST, &why);
    }

    /// Stdin closed: what is in flight has [`DRAIN_AFTER_EOF`] to be answered, then
    /// the session ends (DELETE) and the engine closes.
    pub fn handle_host_closed(&mut self, now: Instant) {
        if self.host_closed.is_none() {
            self.host_closed = Some(now + DRAIN_AFTER_EOF);
            self.set_timer(now + DRAIN_AFTER_EOF, super::Timer::Drain);
        }
        self.settle(now);
    }

    /// After an input: once stdin has closed, the session ends when nothing is owed
    /// any more or the drain time is over.
    pub(super) fn settle(&mut self, now: Instant) {
        let Some(until) = self.host_closed else {
            return;
        };
        if self.exiting || (!self.owed.is_empty() && now < until) {
            return;
        }
        // The host is gone: nothing is owed to it any more.
        for seq in std::mem::take(&mut self.owed).into_values() {
            if let Some(entry) = self.messages.get_mut(&seq) {
                entry.owed = false;
            }
        }
        self.deadlines.clear();
        self.handle_shutdown(now);
    }

    /// Host requests still owed an answer.
    pub fn owed(&self) -> usize {
        self.owed.len()
    }

    fn host_message(&mut self, message: Message, now: Instant) {
        if self.modern_host_message(&message, now) {
            return;
        }
        match message.kind {
            Kind::Request => self.host_request(message, now),
            Kind::Notification => {
                if message.method.as_deref() == Some("notifications/cancelled") {
                    if let Some(key) = cancelled_request(&message) {
                        // MCP lifecycle §Cancellation: the host will ignore a late answer.
                        self.cancel_request(&key, now);
                    }
                }
                self.accept(message, Hook::None, None, now);
            }
            Kind::Response => self.accept(message, Hook::None, None, now),
        }
    }

    fn host_request(&mut self, message: Message, now: Instant) {
        let (Some(key), Some(id)) = (message.id_key.clone(), message.id.as_deref()) else {
            return;
        };
        if key.is_reserved() {
            let why = "ids starting with \"mcp-remote-\" are reserved for the proxy's own requests";
            self.refuse(id, Some(key), jsonrpc::INVALID_REQUEST, why);
            return;
        }
        if self.owed.contains_key(&key) {
            let why = format!("id {key} is already used by a pending request");
            self.refuse(id, Some(key), jsonrpc::INVALID_REQUEST, &why);
            return;
        }
        let method = message.method.as_deref().unwrap_or_default();
        if method == "tools/call" && self.modern() {
            if let Some(why) = jsonrpc::tool_name(&message).and_then(|n| self.excluded_tool(&n)) {
                self.refuse(id, Some(key), jsonrpc::INVALID_PARAMS, &why);
                return;
            }
        }
        if method == "tools/call" && !self.config.host.ignore_tools.is_empty() {
            if let Some(name) = jsonrpc::tool_name(&message) {
                let ignored = self
                    .config
                    .host
                    .ignore_tools
                    .iter()
                    .any(|p| jsonrpc::glob_match(p, &name));
                if ignored {
                    let why = format!("Tool \"{name}\" is not available");
                    self.refuse(id, Some(key), jsonrpc::INTERNAL_ERROR, &why);
                    return;
                }
            }
        }
        let hook = match method {
            "initialize" => Hook::Initialize,
            "server/discover" if self.host_initialize.is_none() && !self.link.established() => {
                Hook::Initialize
            }
            "tools/list" => Hook::ToolsList,
            _ => Hook::None,
        };
        let message = match (&self.config.host.client_tag, hook) {
            (Some(tag), Hook::Initialize) => match jsonrpc::tag_initialize(&message, tag) {
                Some(bytes) => Message { bytes, ..message },
                None => message,
            },
            _ => message,
        };
        let deadline = self.config.host.request_timeout.map(|t| now + t);
        self.accept(message, hook, deadline, now);
    }

    /// The request `key` is no longer owed (the host cancelled it, or its time ran
    /// out): a late answer is dropped, and if it was never sent, it never will be.
    fn cancel_request(&mut self, key: &IdKey, now: Instant) {
        let Some(seq) = self.unowe(key) else {
            return;
        };
        if matches!(self.messages.get(&seq), Some(e) if e.stage == Stage::Held) {
            self.dispatch(LinkEvent::Withdraw { seq }, now);
        }
    }

    /// Stop owing an answer to `key`; its arrival number, if it was owed.
    pub(super) fn unowe(&mut self, key: &IdKey) -> Option<u64> {
        let seq = self.owed.remove(key)?;
        if let Some(entry) = self.messages.get_mut(&seq) {
            entry.owed = false;
            if let Some(at) = entry.deadline.take() {
                self.deadlines.remove(&(at, seq));
            }
        }
        Some(seq)
    }

    /// The deadline of request `seq` is over: answer it, and tell the server.
    pub(super) fn request_due(&mut self, seq: u64, now: Instant) {
        let Some(entry) = self.messages.get(&seq) else {
            return;
        };
        let (Some(key), Some(id)) = (entry.id_key.clone(), entry.host_id.clone()) else {
            return;
        };
        if self.owed.get(&key) != Some(&seq) {
            return;
        }
        let timeout = self.config.host.request_timeout.unwrap_or_default();
        self.cancel_request(&key, now);
        self.fail_to_host(&id, key.clone(), RequestError::TimedOut(timeout));
        if self.modern() {
            // MCP 2026-07-28 §Cancellation: close the request's stream.
            self.close_request(&key, now);
            return;
        }
        // MCP 2025-11-25 lifecycle §Timeouts: issue a cancellation notification.
        let request_id: serde_json::Value =
            serde_json::from_str(&id).unwrap_or(serde_json::Value::Null);
        let bytes = jsonrpc::notification(
            "notifications/cancelled",
            &serde_json::json!({"requestId": request_id, "reason": "request timed out in mcp-remote"}),
        );
        if let Ok(message) = Message::parse(bytes) {
            self.accept(message, Hook::None, None, now);
        }
    }

    /// Answer the host's request `id` with the proxy's error.
    pub(super) fn fail_to_host(&mut self, id: &str, key: IdKey, error: RequestError) {
        let text = format!("mcp-remote: {error}");
        // The log line first: a reader of both sees why before the answer.
        self.log(super::LogEvent::RequestFailed(key.clone(), error));
        self.refuse(id, Some(key), jsonrpc::PROXY_ERROR, &text);
    }

    fn refuse(&mut self, id: &str, key: Option<IdKey>, code: i64, text: &str) {
        self.events.push_back(Event::ToHost(HostLine {
            bytes: jsonrpc::error_response(id, code, text),
            kind: Kind::Response,
            method: None,
            id: key,
            origin: Origin::Proxy,
        }));
    }

    /// A message from the server for the host. An answer goes only to a request
    /// still owed one: `answering` is that request's id as the host wrote it, and
    /// what its answer needs.
    pub(super) fn relay_to_host(
        &mut self,
        mut message: Message,
        answering: Option<(String, Hook)>,
    ) {
        if matches!(answering, Some((_, Hook::ToolsList))) && self.modern() {
            if let Some(filtered) = self.scan_modern_tools(&message.bytes) {
                message.bytes = filtered;
            }
        }
        let (bytes, rewritten) = match &answering {
            Some((_, Hook::ToolsList)) if !self.config.host.ignore_tools.is_empty() => {
                match jsonrpc::filter_tools(&message, &self.config.host.ignore_tools) {
                    Some(filtered) => (filtered, true),
                    None => (std::mem::take(&mut message.bytes), false),
                }
            }
            _ => (std::mem::take(&mut message.bytes), false),
        };
        // The host gets its id back exactly as it wrote it (`1e3` stays `1e3`, a
        // 30-digit integer is not turned into a double by a JavaScript server).
        let bytes = match &answering {
            Some((host_id, _)) if rewritten || message.id.as_deref() != Some(host_id) => {
                jsonrpc::with_id_text(&bytes, host_id).unwrap_or(bytes)
            }
            _ => bytes,
        };
        self.events.push_back(Event::ToHost(HostLine {
            bytes,
            kind: message.kind,
            method: message.method,
            id: message.id_key,
            origin: Origin::Server,
        }));
    }
}

impl Engine {
    /// A sign-in began before the server answered the host's `initialize` (`seq`):
    /// when the server's answer is remembered from the last session, for the revision
    /// the host asks for, the host gets it now instead of waiting out the sign-in
    /// (hosts give up on `initialize` long before a browser sign-in ends). The real
    /// `initialize` still goes once signed in; its answer is compared, not relayed,
    /// and the host's later requests wait for it as before.
    pub(super) fn answer_initialize_from_memory(&mut self, seq: u64) {
        if self.early_initialize || self.modern() || self.host_modern {
            return;
        }
        let Some(result) = self
            .config
            .remembered_initialize
            .as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        else {
            return;
        };
        let Some(entry) = self.messages.get(&seq).filter(|e| e.owed) else {
            return;
        };
        let (Some(key), Some(id)) = (entry.id_key.clone(), entry.host_id.clone()) else {
            return;
        };
        let asked = serde_json::from_slice::<serde_json::Value>(&entry.bytes)
            .ok()
            .and_then(|m| m["params"]["protocolVersion"].as_str().map(str::to_owned));
        let answered = result["protocolVersion"].as_str();
        if !result.is_object() || asked.is_none() || asked.as_deref() != answered {
            return;
        }
        self.early_initialize = true;
        self.early_open = true;
        self.unowe(&key);
        self.log(super::LogEvent::InitializeFromMemory);
        let bytes = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#).into_bytes();
        self.events.push_back(Event::ToHost(HostLine {
            bytes,
            kind: Kind::Response,
            method: None,
            id: Some(key),
            origin: Origin::Proxy,
        }));
    }

    /// The `initialize` whose answer the host had from memory failed, and the host
    /// sends more: its `initialize` goes again (once per such message at most), and
    /// what it sent waits for it.
    pub(super) fn initialize_again(&mut self, now: Instant) {
        let Some(bytes) = self.initialize.clone() else {
            return;
        };
        // Under an id of the proxy's own: the host's id was answered already.
        self.init_retries += 1;
        let id = format!(
            "\"{}init-{}\"",
            jsonrpc::RESERVED_ID_PREFIX,
            self.init_retries
        );
        let Some(bytes) = jsonrpc::with_id_text(&bytes, &id) else {
            return;
        };
        let Ok(message) = Message::parse(bytes) else {
            return;
        };
        let key = message.id_key.clone();
        self.accept(message, Hook::Initialize, None, now);
        if let Some(key) = key {
            // Its answer is not owed to the host: it had one.
            self.unowe(&key);
        }
    }

    /// The server answered the host's `initialize` for real (or refused it, `error`):
    /// what the host sent after its answer from memory goes now, in order, through
    /// the Link as if just sent (or fails the same way).
    pub(super) fn release_early(&mut self, error: Option<RequestError>, now: Instant) {
        if error.is_none() {
            self.early_open = false;
        }
        for (seq, kind, method) in std::mem::take(&mut self.early_parked) {
            if let Some(e) = &error {
                self.fail_seq(seq, e.clone());
                continue;
            }
            match self.messages.get(&seq) {
                None => continue,
                Some(entry) if entry.kind == Kind::Request && !entry.owed => {
                    // Cancelled or timed out while it waited: it never goes.
                    self.messages.remove(&seq);
                    continue;
                }
                Some(_) => {}
            }
            self.dispatch(LinkEvent::HostSent { seq, kind, method }, now);
        }
    }

    /// The server answered the host's `initialize`: remember the answer for the next
    /// start (when it changed), and when the host got a remembered one that differs,
    /// say so and have it list the tools again.
    pub(super) fn remember_initialize(&mut self, message: &Message) {
        if self.modern() || self.host_modern {
            return;
        }
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&message.bytes) else {
            return;
        };
        let Some(result) = answer.get("result").filter(|r| r.is_object()) else {
            return;
        };
        let remembered = self
            .config
            .remembered_initialize
            .as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
        if remembered.as_ref() == Some(result) {
            return;
        }
        if self.early_initialize {
            let tools = result["capabilities"]["tools"].is_object();
            self.log(super::LogEvent::InitializeChanged { tools });
            if tools {
                self.events.push_back(Event::ToHost(HostLine {
                    bytes: jsonrpc::notification(
                        "notifications/tools/list_changed",
                        &serde_json::json!({}),
                    ),
                    kind: Kind::Notification,
                    method: Some("notifications/tools/list_changed".to_owned()),
                    id: None,
                    origin: Origin::Proxy,
                }));
            }
        }
        let text = result.to_string();
        if text.len() <= super::MAX_REMEMBERED_INITIALIZE {
            self.config.remembered_initialize = Some(text.clone());
            self.events.push_back(Event::RememberInitialize(text));
        }
    }
}

/// An id as JSON text, for a request whose own text is not at hand (every request in
/// the table keeps the host's; this is the fallback that still parses).
pub(super) fn id_text(key: &IdKey) -> String {
    match key {
        IdKey::Str(s) => serde_json::to_string(s).unwrap_or_else(|_| "null".to_owned()),
        IdKey::Num(n) => n.clone(),
    }
}

/// The request a `notifications/cancelled` names.
pub(super) fn cancelled_request(message: &Message) -> Option<IdKey> {
    let params = message.params()?;
    let raw = serde_json::to_string(params.get("requestId")?).ok()?;
    let raw = serde_json::value::RawValue::from_string(raw).ok()?;
    IdKey::from_raw(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Exchange, ResponseHead, Transmit};
    use crate::link::Strategy as Transports;
    use proptest::prelude::*;

    fn engine(host: HostConfig, now: Instant) -> Engine {
        Engine::new(
            EngineConfig {
                url: url::Url::parse("http://mcp.test/mcp").unwrap(),
                max_message_bytes: 1 << 20,
                seed: 1,
                strategy: Transports::HttpOnly,
                remembered: None,
                ping_interval: None,
                headers_timeout: None,
                host,
                trace: false,
                protocol: crate::engine::ProtocolMode::Legacy,
                remembered_era: None,
                remembered_initialize: None,
            },
            now,
        )
    }

    fn send(e: &mut Engine, line: &str, now: Instant) {
        e.handle_host(
            jsonrpc::parse_incoming(line.as_bytes().to_vec()).unwrap(),
            now,
        );
    }

    /// Everything the engine asked for: exchanges started, lines for the host.
    fn drain(e: &mut Engine) -> (Vec<Exchange>, Vec<serde_json::Value>) {
        let mut started = Vec::new();
        while let Some(t) = e.poll_transmit() {
            if let Transmit::Start(ex) = t {
                started.push(ex);
            }
        }
        let mut lines = Vec::new();
        while let Some(event) = e.poll_event() {
            if let Event::ToHost(line) = event {
                lines.push(serde_json::from_slice(&line.bytes).unwrap());
            }
        }
        (started, lines)
    }

    fn body(ex: &Exchange) -> serde_json::Value {
        serde_json::from_slice(ex.body.as_ref().unwrap()).unwrap()
    }

    /// The server answers exchange `ex` with this JSON body.
    fn answer(e: &mut Engine, ex: &Exchange, json: &str, now: Instant) {
        let head = ResponseHead {
            status: 200,
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        e.handle_head(ex.id, head, now);
        e.handle_body(ex.id, json.as_bytes(), now);
        e.handle_end(ex.id, Ok(()), now);
    }

    #[test]
    fn an_answer_goes_to_the_host_once_with_its_id_as_the_host_wrote_it() {
        let t0 = Instant::now();
        let mut e = engine(HostConfig::default(), t0);
        send(&mut e, r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#, t0);
        let (started, _) = drain(&mut e);
        assert_eq!(body(&started[0])["method"], "ping");
        assert_eq!(e.owed(), 1);
        // The server writes the id its own way; the host gets `1e3` back.
        answer(
            &mut e,
            &started[0],
            r#"{"jsonrpc":"2.0","id":1000,"result":{}}"#,
            t0,
        );
        let (_, lines) = drain(&mut e);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["result"], serde_json::json!({}));
        assert_eq!(e.owed(), 0);
        // A duplicate (the server's, or on another stream) is not a second answer.
        send(&mut e, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, t0);
        let (started, _) = drain(&mut e);
        answer(
            &mut e,
            &started[0],
            r#"[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":1000,"result":{}}]"#,
            t0,
        );
        let (_, lines) = drain(&mut e);
        assert_eq!(lines.len(), 1, "{lines:?}");
    }

    #[test]
    fn a_time_out_answers_cancels_and_swallows_the_late_answer() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(2);
        let mut e = engine(
            HostConfig {
                request_timeout: Some(timeout),
                ..Default::default()
            },
            t0,
        );
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"slow"}}"#,
            t0,
        );
        let (started, _) = drain(&mut e);
        assert!(e.deadlines.contains(&(t0 + timeout, 0)));
        assert!(e.poll_timeout().is_some_and(|at| at <= t0 + timeout));
        e.handle_timeout(t0 + Duration::from_secs(1));
        assert!(drain(&mut e).1.is_empty());
        e.handle_timeout(t0 + timeout);
        let (cancel, lines) = drain(&mut e);
        assert_eq!(lines[0]["id"], "x");
        assert_eq!(lines[0]["error"]["code"], jsonrpc::PROXY_ERROR);
        assert!(lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 2 s (--request-timeout)"));
        let sent = body(&cancel[0]);
        assert_eq!(sent["method"], "notifications/cancelled");
        assert_eq!(sent["params"]["requestId"], "x");
        answer(
            &mut e,
            &started[0],
            r#"{"jsonrpc":"2.0","id":"x","result":{}}"#,
            t0 + timeout,
        );
        assert!(
            drain(&mut e).1.is_empty(),
            "a late answer is not a second answer"
        );
        assert!(e.deadlines.is_empty(), "no deadline outlives its request");
    }

    #[test]
    fn an_answered_request_leaves_no_deadline_behind() {
        let t0 = Instant::now();
        let mut e = engine(
            HostConfig {
                request_timeout: Some(Duration::from_secs(300)),
                ..Default::default()
            },
            t0,
        );
        for i in 0..100 {
            send(
                &mut e,
                &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#),
                t0,
            );
            let (started, _) = drain(&mut e);
            let reply = format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{}}}}"#);
            answer(&mut e, &started[0], &reply, t0);
            drain(&mut e);
        }
        assert!(e.deadlines.is_empty(), "{:?}", e.deadlines);
    }

    #[test]
    fn requests_timing_out_together_are_answered_and_cancelled_in_arrival_order() {
        let t0 = Instant::now();
        let mut e = engine(
            HostConfig {
                request_timeout: Some(Duration::from_secs(2)),
                ..Default::default()
            },
            t0,
        );
        // Neither the ids' order nor their text's order is the order they came in.
        let ids = [
            r#"10"#, r#""b""#, r#"9"#, r#""a""#, r#"2"#, r#""mcp""#, r#"-1"#,
        ];
        for id in ids {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#);
            send(&mut e, &line, t0);
        }
        drain(&mut e);
        e.handle_timeout(t0 + Duration::from_secs(5));
        let (cancels, lines) = drain(&mut e);
        let answered: Vec<String> = lines.iter().map(|v| v["id"].to_string()).collect();
        let cancelled: Vec<String> = cancels
            .iter()
            .map(|ex| body(ex)["params"]["requestId"].to_string())
            .collect();
        assert_eq!(
            answered, ids,
            "the errors, in the order the host sent the requests"
        );
        assert_eq!(cancelled, ids, "the cancellations, in the same order");
    }

    #[test]
    fn a_cancelled_request_gets_no_answer_and_one_never_sent_never_goes() {
        let t0 = Instant::now();
        let mut e = engine(HostConfig::default(), t0);
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            t0,
        );
        let (started, _) = drain(&mut e);
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            t0,
        );
        let (cancel, _) = drain(&mut e);
        assert_eq!(body(&cancel[0])["method"], "notifications/cancelled");
        assert_eq!(e.owed(), 0);
        answer(
            &mut e,
            &started[0],
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            t0,
        );
        assert!(
            drain(&mut e).1.is_empty(),
            "the host will ignore a late answer"
        );
    }

    #[test]
    fn ignored_tools_are_refused_and_filtered() {
        let t0 = Instant::now();
        let mut e = engine(
            HostConfig {
                ignore_tools: vec!["del*".into()],
                ..Default::default()
            },
            t0,
        );
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"Delete"}}"#,
            t0,
        );
        let (started, lines) = drain(&mut e);
        assert!(started.is_empty(), "an ignored tool is never called");
        assert_eq!(lines[0]["error"]["code"], jsonrpc::INTERNAL_ERROR);
        assert_eq!(
            lines[0]["error"]["message"],
            "Tool \"Delete\" is not available"
        );
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
            t0,
        );
        let (started, _) = drain(&mut e);
        answer(
            &mut e,
            &started[0],
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"delete"},{"name":"echo"}]}}"#,
            t0,
        );
        let (_, lines) = drain(&mut e);
        assert_eq!(
            lines[0]["result"]["tools"],
            serde_json::json!([{"name":"echo"}])
        );
    }

    #[test]
    fn reserved_and_duplicate_ids_are_refused() {
        let t0 = Instant::now();
        let mut e = engine(HostConfig::default(), t0);
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":"mcp-remote-ping-1","method":"ping"}"#,
            t0,
        );
        let (started, lines) = drain(&mut e);
        assert!(started.is_empty());
        assert_eq!(lines[0]["error"]["code"], jsonrpc::INVALID_REQUEST);
        send(&mut e, r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#, t0);
        send(&mut e, r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#, t0);
        let (started, lines) = drain(&mut e);
        assert_eq!(started.len(), 1, "the duplicate is not sent");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["error"]["code"], jsonrpc::INVALID_REQUEST);
        assert_eq!(e.owed(), 1);
    }

    #[test]
    fn batches_follow_the_negotiated_version_and_initialize_is_tagged() {
        let t0 = Instant::now();
        let mut e = engine(
            HostConfig {
                client_tag: Some("via mcp-remote-rs".into()),
                ..Default::default()
            },
            t0,
        );
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"}]"#;
        send(&mut e, batch, t0);
        let (started, lines) = drain(&mut e);
        assert!(started.is_empty());
        assert_eq!(lines[0]["error"]["code"], jsonrpc::INVALID_REQUEST);
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"Claude","version":"1"}}}"#,
            t0,
        );
        let (started, _) = drain(&mut e);
        assert_eq!(
            body(&started[0])["params"]["clientInfo"]["name"],
            "Claude (via mcp-remote-rs)"
        );
        answer(
            &mut e,
            &started[0],
            r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}"#,
            t0,
        );
        drain(&mut e);
        send(&mut e, batch, t0);
        let (started, lines) = drain(&mut e);
        assert_eq!(started.len(), 2, "{lines:?}");
    }

    #[test]
    fn after_stdin_closes_what_is_owed_has_its_moment_then_the_session_ends() {
        let t0 = Instant::now();
        let mut e = engine(HostConfig::default(), t0);
        send(
            &mut e,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            t0,
        );
        drain(&mut e);
        e.handle_host_closed(t0);
        let closed = |e: &mut Engine| {
            std::iter::from_fn(|| e.poll_event()).any(|ev| matches!(ev, Event::Closed))
        };
        assert!(!closed(&mut e), "a request in flight has its moment");
        assert_eq!(e.poll_timeout(), Some(t0 + DRAIN_AFTER_EOF));
        e.handle_timeout(t0 + DRAIN_AFTER_EOF);
        assert!(closed(&mut e));
        assert_eq!(e.owed(), 0);
        // With nothing owed, the session ends at once.
        let mut e = engine(HostConfig::default(), t0);
        e.handle_host_closed(t0);
        assert!(closed(&mut e));
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
        /// Whatever the host and the server do, each host request gets at most one
        /// answer, and after its deadline every request not cancelled got exactly one
        /// (the fuzz target's harness, on generated schedules).
        #[test]
        fn every_request_is_answered_exactly_once(ops in proptest::collection::vec(op(), 0..60)) {
            let mut data = Vec::new();
            for op in ops {
                let line = match op {
                    Op::Request(i) => format!("\u{0}{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"m\"}}"),
                    Op::Answer(i) => format!("\u{1}{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{}}}}"),
                    Op::Fail(i) => format!("\u{3}{}", char::from(b'0' + i)),
                    Op::Cancel(i) => format!("\u{0}{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{i}}}}}"),
                    Op::Tick(s) => format!("\u{2}{}", char::from(s * 5)),
                };
                data.extend_from_slice(line.as_bytes());
                data.push(b'\n');
            }
            crate::fuzzing::router(Instant::now(), &data);
        }
    }
}
