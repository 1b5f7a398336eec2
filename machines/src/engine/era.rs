//! The protocol era of the server: MCP 2026-07-28 ("modern": no `initialize`, no
//! sessions, `_meta` and standard headers on every request) or older ("legacy").
//!
//! Era detection (`basic/versioning.mdx` §Backward Compatibility): the host's
//! `initialize` is turned into a `server/discover` probe under the host's own id.
//! A discover result, or a recognised modern error (`-32022` with
//! `data.supported`), means modern: the host's `initialize` is answered from the
//! discover result and the server never sees an `initialize`. Anything else (an
//! unrecognised 4xx, an error of another code) means legacy: the host's
//! `initialize` goes as it is, and the transport fallback rules follow as before.
//! A legacy era remembered from an earlier start skips the probe; an `initialize`
//! refused there with a modern error probes after all (C8: no fallback then).
//!
//! Once modern, every host request is posted with the `_meta` of
//! [`crate::modern::ClientMeta`] merged in and `MCP-Protocol-Version`,
//! `Mcp-Method` and `Mcp-Name` headers; what 2026-07-28 removed is answered here
//! (`ping`, `logging/setLevel`, `resources/(un)subscribe`) or not sent
//! (`notifications/initialized`, other notifications); `notifications/cancelled`
//! closes the request's exchange (2026-07-28 §Cancellation).

use super::{Ending, Engine, Event, LinkEvent, Stage};
use crate::error::RequestError;
use crate::jsonrpc::{IdKey, Kind, Message};
use crate::modern::{self, ClientMeta, Probe, MODERN_VERSION};
use bytes::Bytes;
use serde_json::Value;
use statig::blocking::IntoStateMachineExt;
use std::time::Instant;

/// `--protocol`: which eras to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolMode {
    /// Probe with `server/discover`, fall back to `initialize` (the default).
    #[default]
    Auto,
    /// Only `initialize` (MCP 2025-11-25 and older); no probe.
    Legacy,
    /// Only MCP 2026-07-28: a server that does not speak it is an error.
    Modern,
}

/// What a server turned out to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// MCP 2025-11-25 and older (`initialize`, sessions).
    Legacy,
    /// MCP 2026-07-28.
    Modern,
}

/// `MCP-Protocol-Version`.
const VERSION: &str = crate::transport::VERSION_HEADER;

/// Ids of the proxy's own `tools/list` after a `HeaderMismatch`.
pub(super) const RELIST_PREFIX: &str = "mcp-remote-relist-";

/// `MCP-Protocol-Version` and `Mcp-Method` of one of the proxy's own modern requests.
fn method_headers(version: String, method: &str) -> Vec<(super::HeaderName, String)> {
    vec![
        (VERSION.into(), version),
        ("mcp-method".into(), method.to_owned()),
    ]
}

/// How many times a probe refused with "unsupported version" (naming ours) is re-sent.
const PROBE_RETRIES: u8 = 2;

/// What is known of the era.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum EraState {
    /// Nothing yet: the host's `initialize` probes.
    Unknown,
    /// The probe is on its way; `verdict` once its answer was read.
    Probing {
        /// Re-sends so far.
        retries: u8,
        /// What the answer said (a modern answer is acted on at once).
        verdict: Option<Probe>,
    },
    /// Legacy: the host's messages go as they are.
    Legacy,
    /// Modern: stamped, with headers.
    Modern,
}

impl EraState {
    /// The state at start.
    pub(super) fn new(mode: ProtocolMode, remembered: Option<Era>) -> Self {
        match (mode, remembered) {
            (ProtocolMode::Legacy, _) | (ProtocolMode::Auto, Some(Era::Legacy)) => EraState::Legacy,
            _ => EraState::Unknown,
        }
    }
}

/// How a host message goes out.
pub(super) struct Outgoing {
    /// The body.
    pub(super) bytes: Bytes,
    /// Headers beyond Accept and Content-Type.
    pub(super) headers: Vec<(super::HeaderName, String)>,
    /// Whether the session headers go too (legacy only).
    pub(super) with_session: bool,
}

impl Engine {
    /// The era, once known.
    pub fn era(&self) -> Option<Era> {
        match self.era {
            EraState::Legacy => Some(Era::Legacy),
            EraState::Modern => Some(Era::Modern),
            _ => None,
        }
    }

    /// Whether the server speaks 2026-07-28.
    pub(super) fn modern(&self) -> bool {
        self.era == EraState::Modern
    }

    /// While the probe is on its way, host messages other than the probed
    /// `initialize` wait: they go in the form of the era it finds. Returns whether
    /// message `seq` was parked.
    pub(super) fn park_until_era(&mut self, seq: u64, retry: bool) -> bool {
        let probing = matches!(self.era, EraState::Probing { .. });
        if !probing || self.is_host_initialize(seq) {
            return false;
        }
        if !self.parked.iter().any(|(s, _)| *s == seq) {
            self.parked.push((seq, retry));
        }
        true
    }

    /// The era is known (or the probe failed with `error`): what waited goes, or fails.
    fn unpark(&mut self, error: Option<RequestError>, now: Instant) {
        for (seq, retry) in std::mem::take(&mut self.parked) {
            if let Some(e) = &error {
                self.fail_seq(seq, e.clone());
                continue;
            }
            let Some(entry) = self.messages.get(&seq) else {
                continue;
            };
            if entry.kind == Kind::Request && !entry.owed {
                // Cancelled (or timed out) while it waited: it never goes.
                self.messages.remove(&seq);
                continue;
            }
            if self.modern() && entry.kind != Kind::Request {
                // What 2026-07-28 does with a host notification (a cancellation closes
                // a stream; nothing is posted).
                let message = Message::parse(entry.bytes.to_vec());
                self.messages.remove(&seq);
                if let Ok(message) = message {
                    self.modern_host_message(&message, now);
                }
                continue;
            }
            self.post_message(seq, retry, now);
        }
    }

    /// The host's `initialize` failed while probing (network, refusal): the probe is
    /// over without a verdict, and what waited for it fails the same way.
    pub(super) fn probe_abandoned(&mut self, error: &RequestError) {
        if let EraState::Probing { .. } = self.era {
            self.era = EraState::Unknown;
            for (seq, _) in std::mem::take(&mut self.parked) {
                self.fail_seq(seq, error.clone());
            }
        }
    }

    /// The server moved: its era is found out again at the new URL.
    pub(super) fn restart_probe(&mut self) {
        if let EraState::Probing { .. } = self.era {
            self.era = EraState::Unknown;
        }
    }

    /// The message `seq` is the host's `initialize`.
    pub(super) fn is_host_initialize(&self, seq: u64) -> bool {
        self.host_initialize.is_some()
            && self.messages.get(&seq).is_some_and(|e| {
                e.id_key == self.host_initialize && e.hook == super::Hook::Initialize
            })
    }

    /// What goes out for the host's message `seq`: the probe in its place, the
    /// message stamped for a modern server, or the message as it is.
    pub(super) fn outgoing(&mut self, seq: u64) -> Option<Outgoing> {
        let entry = self.messages.get(&seq)?;
        let bytes = entry.bytes.clone();
        let streamable = self.link.transport() == Some(crate::link::Transport::Streamable);
        if streamable && self.is_host_initialize(seq) {
            if let EraState::Unknown | EraState::Probing { .. } = self.era {
                let message = Message::parse(bytes.to_vec()).ok()?;
                if message.method.as_deref() == Some("server/discover") {
                    // A host of 2026-07-28: its own probe goes as it is.
                    self.host_modern = true;
                    if self.era == EraState::Unknown {
                        self.era = EraState::Probing {
                            retries: 0,
                            verdict: None,
                        };
                    }
                    let params = message.params();
                    // Who the host is, for the proxy's own requests (pings, lists).
                    let own = params.as_ref().and_then(|p| p.get("_meta"));
                    let mut meta = ClientMeta::from_initialize(None);
                    if let Some(info) = own.and_then(|m| m.get(modern::META_CLIENT_INFO)) {
                        meta.client_info = info.clone();
                    }
                    if let Some(caps) = own.and_then(|m| m.get(modern::META_CLIENT_CAPABILITIES)) {
                        meta.capabilities = caps.clone();
                    }
                    self.modern_meta = Some(meta);
                    let version = params
                        .as_ref()
                        .and_then(|p| p.pointer("/_meta/io.modelcontextprotocol~1protocolVersion"))
                        .and_then(Value::as_str)
                        .unwrap_or(MODERN_VERSION)
                        .to_owned();
                    return Some(Outgoing {
                        bytes,
                        headers: method_headers(version, "server/discover"),
                        with_session: false,
                    });
                }
                let meta = ClientMeta::from_initialize(message.params().as_ref());
                let id = message.id.clone()?;
                let probe = modern::discover_request(&id, &meta);
                self.modern_meta = Some(meta);
                if self.era == EraState::Unknown {
                    self.era = EraState::Probing {
                        retries: 0,
                        verdict: None,
                    };
                }
                return Some(Outgoing {
                    bytes: Bytes::from(probe),
                    headers: method_headers(MODERN_VERSION.to_owned(), "server/discover"),
                    with_session: false,
                });
            }
        }
        if self.modern() && self.host_modern {
            // Relayed as the host wrote it; only the headers come from the body.
            let value: Value = serde_json::from_slice(&bytes).ok()?;
            let method = value.get("method").and_then(Value::as_str).unwrap_or("");
            let params = value.get("params");
            let version = params
                .and_then(|p| p.pointer("/_meta/io.modelcontextprotocol~1protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or(MODERN_VERSION)
                .to_owned();
            let mut headers = vec![(VERSION.into(), version)];
            headers.extend(self.request_headers_of(method, params));
            return Some(Outgoing {
                bytes,
                headers,
                with_session: false,
            });
        }
        if self.modern() {
            let value: Value = serde_json::from_slice(&bytes).ok()?;
            let method = value.get("method").and_then(Value::as_str).unwrap_or("");
            let mut headers = Vec::new();
            let meta = self.modern_meta.as_ref()?;
            headers.push((VERSION.into(), meta.version.clone()));
            headers.extend(self.request_headers_of(method, value.get("params")));
            let stamped = modern::stamp(&bytes, self.modern_meta.as_ref()?)?;
            return Some(Outgoing {
                bytes: Bytes::from(stamped),
                headers,
                with_session: false,
            });
        }
        Some(Outgoing {
            bytes,
            headers: Vec::new(),
            with_session: true,
        })
    }

    /// `Mcp-Method`, `Mcp-Name` and, for a tool call, the `Mcp-Param-*` of the
    /// tool's annotations (from the last list).
    fn request_headers_of(
        &self,
        method: &str,
        params: Option<&Value>,
    ) -> Vec<(super::HeaderName, String)> {
        let mut headers: Vec<(super::HeaderName, String)> = modern::request_headers(method, params)
            .into_iter()
            .map(|(name, value)| (name.into(), value))
            .collect();
        if method == "tools/call" {
            let tool = params.and_then(|p| p.get("name")).and_then(Value::as_str);
            if let Some(annotations) = tool.and_then(|t| self.tool_headers.get(t)) {
                let arguments = params.and_then(|p| p.get("arguments"));
                headers.extend(
                    modern::param_headers(annotations, arguments)
                        .into_iter()
                        .map(|(name, value)| (name.into(), value)),
                );
            }
        }
        headers
    }

    /// A server message answering the probe: a modern answer becomes the host's
    /// `initialize` result; any other verdict is kept for the exchange's end.
    /// Returns the message to go on with, or `None` when it was taken here.
    pub(super) fn probe_answer(&mut self, message: Message, now: Instant) -> Option<Message> {
        let probing = matches!(self.era, EraState::Probing { .. });
        if !probing
            || message.kind != Kind::Response
            || message.id_key.is_none()
            || message.id_key != self.host_initialize
        {
            return Some(message);
        }
        let body: Option<Value> = serde_json::from_slice(&message.bytes).ok();
        match modern::classify_probe(body.as_ref(), MODERN_VERSION) {
            Probe::Modern(_) if self.host_modern => {
                self.era = EraState::Modern;
                self.log(super::LogEvent::ModernServer);
                self.unpark(None, now);
                Some(message)
            }
            Probe::Modern(result) => {
                self.era = EraState::Modern;
                self.server_capabilities = result.get("capabilities").cloned();
                let host_version = self
                    .initialize
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .and_then(|v| {
                        v.pointer("/params/protocolVersion")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    });
                let answer = serde_json::json!({
                    "jsonrpc": "2.0",
                    "result": modern::initialize_result(&result, host_version.as_deref()),
                });
                let mut text = serde_json::to_string(&answer).unwrap_or_default();
                let id = message.id.clone().unwrap_or_else(|| "null".to_owned());
                text.insert_str(1, &format!("\"id\":{id},"));
                self.log(super::LogEvent::ModernServer);
                self.unpark(None, now);
                Message::parse(text.into_bytes()).ok()
            }
            verdict => {
                if let EraState::Probing { verdict: v, .. } = &mut self.era {
                    *v = Some(verdict);
                }
                None
            }
        }
    }

    /// The error body of the POST of message `seq` was read: when it answers the
    /// probe, or refuses a legacy `initialize` in a modern way, it is kept as the
    /// verdict rather than passed to the host. Returns whether it was taken.
    pub(super) fn probe_error_body(&mut self, seq: u64, body: &[u8]) -> bool {
        if !self.is_host_initialize(seq) {
            return false;
        }
        let value: Option<Value> = serde_json::from_slice(body).ok();
        let verdict = modern::classify_probe(value.as_ref(), MODERN_VERSION);
        match &mut self.era {
            EraState::Probing { verdict: v, .. } => {
                *v = Some(verdict);
                true
            }
            // A server remembered as legacy now refuses `initialize` the modern way:
            // probe after all (and never fall back to HTTP+SSE on this answer).
            EraState::Legacy
                if self.config.protocol == ProtocolMode::Auto
                    && !matches!(verdict, Probe::Legacy) =>
            {
                self.era = EraState::Probing {
                    retries: 0,
                    verdict: Some(Probe::Retry(MODERN_VERSION.to_owned())),
                };
                true
            }
            _ => false,
        }
    }

    /// The probe's exchange ended: act on its verdict. Returns whether the ending
    /// was handled here (otherwise it is an ordinary ending: sign-in, a retry, a
    /// network failure, and the probe goes again when the message is re-sent).
    pub(super) fn probe_ended(&mut self, seq: u64, ending: &Ending, now: Instant) -> bool {
        if !self.is_host_initialize(seq) {
            return false;
        }
        let EraState::Probing { retries, verdict } = &mut self.era else {
            return false;
        };
        let retries = *retries;
        let verdict = match (verdict.take(), ending) {
            (Some(v), _) => v,
            // No JSON-RPC answer: a 4xx without a modern body, a 202, an empty stream.
            (None, Ending::Refused { .. } | Ending::Accepted | Ending::Done { .. }) => {
                Probe::Legacy
            }
            (None, _) => return false,
        };
        let resend = |engine: &mut Self| {
            if let Some(entry) = engine.messages.get_mut(&seq) {
                entry.stage = Stage::Held;
            }
            engine.post_message(seq, false, now);
        };
        if self.host_modern && !matches!(verdict, Probe::Modern(_)) {
            // The host probed a server of an older era: it falls back itself.
            self.host_modern = false;
            self.probe_failed(
                seq,
                "the server does not speak MCP 2026-07-28 (send initialize)".to_owned(),
                now,
            );
            self.era = EraState::Legacy;
            return true;
        }
        match verdict {
            Probe::Modern(_) => false,
            Probe::Retry(_) if retries < PROBE_RETRIES => {
                self.era = EraState::Probing {
                    retries: retries + 1,
                    verdict: None,
                };
                resend(self);
                true
            }
            Probe::Retry(_) => {
                self.probe_failed(
                    seq,
                    "the server keeps refusing protocol version 2026-07-28 although it names it"
                        .to_owned(),
                    now,
                );
                true
            }
            Probe::Incompatible(why) => {
                self.probe_failed(seq, why, now);
                true
            }
            Probe::Legacy if self.config.protocol == ProtocolMode::Modern => {
                self.probe_failed(
                    seq,
                    "the server does not speak MCP 2026-07-28 (--protocol modern); leave --protocol out to reach older servers".to_owned(),
                    now,
                );
                true
            }
            Probe::Legacy => {
                self.era = EraState::Legacy;
                self.log(super::LogEvent::LegacyServer);
                resend(self);
                self.unpark(None, now);
                true
            }
        }
    }

    fn probe_failed(&mut self, seq: u64, why: String, now: Instant) {
        self.era = EraState::Unknown;
        let error = RequestError::ProtocolMismatch(why);
        self.unpark(Some(error.clone()), now);
        self.fail_seq(seq, error);
        self.host_initialize = None;
        self.dispatch(LinkEvent::InitializeFailed, now);
    }

    /// A `tools/list` answer of a modern server: remember the tools' `x-mcp-header`
    /// annotations; tools whose annotations are invalid are left out (and named in
    /// the log). The rewritten answer, if any tool was left out.
    pub(super) fn scan_modern_tools(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let (scan, rewritten) = modern::scan_tools(bytes);
        self.tool_headers.extend(scan.headers);
        for (tool, why) in scan.invalid {
            self.tool_headers.remove(&tool);
            self.log(super::LogEvent::ToolExcluded {
                tool: tool.clone(),
                why: why.clone(),
            });
            self.excluded_tools.insert(tool, why);
        }
        rewritten
    }

    /// Why the host may not call `tool` (left out of its list), if so.
    pub(super) fn excluded_tool(&self, tool: &str) -> Option<String> {
        self.excluded_tools.get(tool).map(|why| {
            format!("Tool \"{tool}\" is not available: {why} (MCP 2026-07-28 requires valid x-mcp-header annotations)")
        })
    }

    /// What the `subscriptions/listen` stream asks for, from the server's
    /// capabilities and the host's resource subscriptions; `None` when nothing.
    fn listen_filter(&self) -> Option<Value> {
        let caps = self.server_capabilities.as_ref()?;
        let flag = |ptr: &str| caps.pointer(ptr).and_then(Value::as_bool) == Some(true);
        let tools = flag("/tools/listChanged");
        let prompts = flag("/prompts/listChanged");
        let resources = flag("/resources/listChanged");
        let subscribe = flag("/resources/subscribe") && !self.subscriptions.is_empty();
        if !(tools || prompts || resources || subscribe) {
            return None;
        }
        let mut filter = serde_json::Map::new();
        if tools {
            filter.insert("toolsListChanged".into(), Value::Bool(true));
        }
        if prompts {
            filter.insert("promptsListChanged".into(), Value::Bool(true));
        }
        if resources {
            filter.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if subscribe {
            let uris = self
                .subscriptions
                .iter()
                .cloned()
                .map(Value::String)
                .collect();
            filter.insert("resourceSubscriptions".into(), Value::Array(uris));
        }
        Some(Value::Object(filter))
    }

    /// (Re)open the `subscriptions/listen` stream with the current filter, or close
    /// it when there is nothing to listen for (2026-07-28 `patterns/subscriptions.mdx`:
    /// the filter is per request, so a change means a new stream).
    pub(super) fn relisten(&mut self, now: Instant) {
        use super::{Stream, StreamEvent, StreamRef};
        if self.streams.contains_key(&StreamRef::Listen) {
            self.drive_stream(StreamRef::Listen, StreamEvent::Closed, now);
            self.streams.remove(&StreamRef::Listen);
        }
        if self.exiting || self.listen_filter().is_none() {
            return;
        }
        let machine = crate::stream::StreamLink::new(
            crate::backoff::BackoffPolicy::STREAM,
            self.config.seed.wrapping_add(7),
        )
        .state_machine();
        self.streams.insert(
            StreamRef::Listen,
            Stream {
                machine,
                exchange: None,
                broken_at: None,
            },
        );
        self.drive_stream(StreamRef::Listen, StreamEvent::Started, now);
    }

    /// The POST of `subscriptions/listen` (its event stream stays open).
    pub(super) fn open_listen_exchange(&mut self, now: Instant) -> super::ExchangeId {
        self.listens += 1;
        let id = format!(
            "{}listen-{}",
            crate::jsonrpc::RESERVED_ID_PREFIX,
            self.listens
        );
        let filter = self
            .listen_filter()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let request = serde_json::json!({"jsonrpc": "2.0", "id": id,
            "method": "subscriptions/listen", "params": {"notifications": filter}});
        let bytes = serde_json::to_vec(&request).unwrap_or_default();
        let (body, version) = match self.modern_meta.as_ref() {
            Some(meta) => (
                modern::stamp(&bytes, meta).unwrap_or(bytes),
                meta.version.clone(),
            ),
            None => (bytes, MODERN_VERSION.to_owned()),
        };
        let headers = method_headers(version, "subscriptions/listen");
        let mut all = super::named(vec![
            ("accept", crate::transport::POST_ACCEPT.to_owned()),
            ("content-type", "application/json".to_owned()),
        ]);
        all.extend(headers);
        let url = self.config.url.clone();
        self.start_named(
            super::Method::Post,
            url,
            all,
            Some(Bytes::from(body)),
            super::Role::Stream(super::StreamRef::Listen),
            false,
            now,
        )
    }

    /// A request to a 2026-07-28 server whose response stream broke: one that only
    /// reads (a list, a read, a prompt, a completion) is sent once more as a new
    /// request with a new id (`transports/streamable-http.mdx` §Cancellation: "MUST
    /// re-issue it … or error it"); a tool call may have acted, so it is not.
    /// Returns whether it was re-issued.
    pub(super) fn reissue(&mut self, seq: u64, now: Instant) -> bool {
        const READS: [&str; 7] = [
            "tools/list",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "prompts/list",
            "prompts/get",
            "completion/complete",
        ];
        let Some(entry) = self.messages.get(&seq) else {
            return false;
        };
        if entry.retried || self.rounds.contains_key(&seq) {
            return false;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&entry.bytes) else {
            return false;
        };
        let method = value.get("method").and_then(Value::as_str).unwrap_or("");
        if !READS.contains(&method) {
            return false;
        }
        let id = format!("{}reissue-{seq}", crate::jsonrpc::RESERVED_ID_PREFIX);
        let Some(old) = self.renumber(seq, id, value) else {
            return false;
        };
        self.log(super::LogEvent::Reissued(old));
        self.post_message(seq, true, now);
        true
    }

    /// The POST of the host's `tools/call` `seq` to a 2026-07-28 server was refused
    /// with `HeaderMismatch` (-32020): its `Mcp-Param-*` headers came from an old
    /// list. List the tools again, then send the call once more (§Client Behavior:
    /// SHOULD). Returns whether that was started (the error is not shown then).
    pub(super) fn header_mismatch(&mut self, seq: u64, body: &[u8], now: Instant) -> bool {
        if !self.modern() {
            return false;
        }
        let Some(entry) = self.messages.get(&seq) else {
            return false;
        };
        if entry.retried || !entry.owed {
            return false;
        }
        let mismatch = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_i64))
            == Some(modern::HEADER_MISMATCH);
        let call = serde_json::from_slice::<Value>(&entry.bytes)
            .ok()
            .is_some_and(|v| v["method"] == "tools/call");
        let Some(meta) = self.modern_meta.as_ref() else {
            return false;
        };
        if !(mismatch && call) {
            return false;
        }
        self.relists += 1;
        let id = format!("{RELIST_PREFIX}{}", self.relists);
        let list = crate::jsonrpc::request(&id, "tools/list", Some(&serde_json::json!({})));
        let body = modern::stamp(&list, meta).unwrap_or(list);
        let headers = method_headers(meta.version.clone(), "tools/list");
        if let Some(entry) = self.messages.get_mut(&seq) {
            entry.stage = Stage::Held;
            entry.retried = true;
        }
        self.log(super::LogEvent::Relisting);
        self.post_with(
            Bytes::from(body),
            false,
            headers,
            super::Role::Relist { seq },
            now,
        );
        true
    }

    /// Message `seq` goes again as a new request (`message` with the id `id`):
    /// its entry carries the new id and is still owed under it, held to be posted.
    /// The id it had, if it had one.
    pub(super) fn renumber(&mut self, seq: u64, id: String, mut message: Value) -> Option<IdKey> {
        message["id"] = Value::String(id.clone());
        let entry = self.messages.get_mut(&seq)?;
        let old = entry.id_key.replace(IdKey::Str(id.clone()))?;
        entry.bytes = Bytes::from(serde_json::to_vec(&message).unwrap_or_default());
        entry.stage = Stage::Held;
        if let Some(s) = self.owed.remove(&old) {
            self.owed.insert(IdKey::Str(id), s);
        }
        Some(old)
    }

    /// POST the proxy's own liveness request `id`: `ping`, or for a 2026-07-28
    /// server (which has no `ping`) `server/discover`, stamped like any request.
    pub(super) fn post_ping(
        &mut self,
        id: &str,
        role: super::Role,
        now: Instant,
    ) -> super::ExchangeId {
        if let (true, Some(meta)) = (self.modern(), self.modern_meta.as_ref()) {
            let id_text = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
            let body = modern::discover_request(&id_text, meta);
            let headers = method_headers(meta.version.clone(), "server/discover");
            return self.post_with(Bytes::from(body), false, headers, role, now);
        }
        let bytes = crate::jsonrpc::request(id, "ping", None);
        self.post(Bytes::from(bytes), true, role, now)
    }

    /// A host message to a modern server that 2026-07-28 has no place for: answered
    /// here, or dropped. Returns whether it was taken.
    pub(super) fn modern_host_message(&mut self, message: &Message, now: Instant) -> bool {
        if !self.modern() {
            return false;
        }
        let method = message.method.as_deref().unwrap_or_default();
        match message.kind {
            Kind::Request => {
                let answer = match method {
                    "ping" => "{}",
                    "resources/subscribe" | "resources/unsubscribe" => {
                        let uri = message
                            .params()
                            .and_then(|p| p.get("uri").and_then(Value::as_str).map(str::to_owned));
                        if let Some(uri) = uri {
                            let changed = match method {
                                "resources/subscribe" => self.subscriptions.insert(uri),
                                _ => self.subscriptions.remove(&uri),
                            };
                            if changed {
                                self.relisten(now);
                            }
                        }
                        "{}"
                    }
                    "logging/setLevel" => {
                        let level = message.params().and_then(|p| {
                            p.get("level").and_then(Value::as_str).map(str::to_owned)
                        });
                        if let Some(meta) = self.modern_meta.as_mut() {
                            meta.log_level = level;
                        }
                        "{}"
                    }
                    _ => return false,
                };
                if let (Some(id), Some(key)) = (&message.id, &message.id_key) {
                    self.answer_locally(id, key.clone(), answer);
                }
                true
            }
            Kind::Notification => {
                if method == "notifications/initialized" {
                    // The host is ready for notifications: listen for the server's.
                    self.relisten(now);
                }
                if method == "notifications/cancelled" {
                    if let Some(key) = super::host::cancelled_request(message) {
                        self.close_request(&key, now);
                    }
                }
                // 2026-07-28 defines no client notification over HTTP.
                true
            }
            // The host's answers to the proxy's questions (MRTR); 2026-07-28 has no
            // other server→client request.
            Kind::Response => {
                self.input_answered(message, now);
                true
            }
        }
    }

    /// 2026-07-28 §Cancellation: a request is cancelled by closing its stream.
    pub(super) fn close_request(&mut self, key: &IdKey, _now: Instant) {
        let Some(seq) = self
            .messages
            .iter()
            .find(|(_, e)| e.id_key.as_ref() == Some(key))
            .map(|(seq, _)| *seq)
            .or_else(|| self.round_of(key))
        else {
            return;
        };
        // The host will ignore a late answer: none is owed any more.
        if let Some(current) = self.messages.get(&seq).and_then(|e| e.id_key.clone()) {
            self.unowe(&current);
        }
        self.forget_rounds(seq);
        match self.messages.get(&seq).map(|e| e.stage) {
            Some(Stage::Posted { exchange, .. }) => {
                self.abort(exchange);
                self.messages.remove(&seq);
            }
            Some(Stage::Held) => {
                self.messages.remove(&seq);
            }
            _ => {}
        }
    }

    /// Answer the host's request with `result` (JSON text) from the proxy.
    fn answer_locally(&mut self, id: &str, key: IdKey, result: &str) {
        let bytes = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}").into_bytes();
        self.events.push_back(Event::ToHost(super::HostLine {
            bytes,
            kind: Kind::Response,
            method: None,
            id: Some(key),
            origin: super::Origin::Proxy,
        }));
    }
}
