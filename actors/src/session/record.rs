//! What the Session records for the trace (`--trace`, `-v`): each HTTP exchange
//! from its start to its end (method, redacted URL, why, header names, sizes, time
//! to headers and to end, new or reused connection), each JSON-RPC message (who
//! sent it, method, id, size, time to its answer; the body, redacted, only with
//! `--trace-bodies`), the engine's machine steps, timers and log events. Exists
//! only while tracing: a Session that does not trace holds none of this.

use crate::trace::{Detail, Tracer};
use machines::engine::{Exchange, ExchangeId, HostLine, LogEvent, Method, Origin};
use machines::jsonrpc::{IdKey, Incoming, Kind, Message};
use machines::trace::{redact_json, redact_url, snake, variant, TraceRecord};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

/// Most connections remembered to tell a reused one from a new one.
const REMEMBERED_CONNECTIONS: usize = 1024;

/// Most requests whose arrival is remembered for their time to answer.
const REMEMBERED_REQUESTS: usize = 65_536;

/// What the trace shows of a response head beyond what the engine reads.
pub(super) struct HeadSeen {
    /// Every header's name (never a value).
    pub(super) names: Vec<String>,
    /// The local end of the connection it came on: a new one, or one seen before.
    pub(super) local: Option<SocketAddr>,
}

/// A response head as the trace keeps it until its exchange ends.
struct HeadTrace {
    /// When it came.
    at: Instant,
    status: u16,
    /// Header names.
    names: Vec<String>,
    /// The connection's local end, and whether an earlier exchange used it.
    connection: Option<(SocketAddr, bool)>,
}

/// One exchange as the trace will describe it when it ends.
struct ExchangeTrace {
    /// When it started.
    started: Instant,
    /// GET, POST, DELETE.
    method: &'static str,
    /// The URL, redacted.
    url: String,
    /// Why the engine made it (`host_message`, `check`, `get_stream`…).
    purpose: String,
    /// Request header names.
    request_headers: Vec<String>,
    /// Request body bytes.
    sent: usize,
    /// The response head, once it came.
    head: Option<HeadTrace>,
    /// Response body bytes so far.
    received: usize,
}

/// What the Session keeps for the trace.
pub(super) struct Tracing {
    tracer: &'static Tracer,
    /// Exchanges in progress.
    exchanges: HashMap<ExchangeId, ExchangeTrace>,
    /// The host's requests awaiting their answer, and when each came (time to answer);
    /// every request gets one answer (invariant 2), so this holds what is in flight.
    asked: HashMap<IdKey, Instant>,
    /// Local ends of connections seen: a head on one of them came on a reused connection.
    connections: HashSet<SocketAddr>,
}

impl Tracing {
    pub(super) fn new(tracer: &'static Tracer) -> Self {
        Self {
            tracer,
            exchanges: HashMap::new(),
            asked: HashMap::new(),
            connections: HashSet::new(),
        }
    }

    pub(super) fn exchange_started(
        &mut self,
        exchange: &Exchange,
        configured: &HeaderMap,
        authorization: bool,
    ) {
        let mut request_headers: Vec<String> = exchange
            .headers
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        request_headers.extend(configured.keys().map(|name| name.as_str().to_owned()));
        if authorization {
            request_headers.push("authorization".into());
        }
        self.exchanges.insert(
            exchange.id,
            ExchangeTrace {
                started: Instant::now(),
                method: match exchange.method {
                    Method::Get => "GET",
                    Method::Post => "POST",
                    Method::Delete => "DELETE",
                },
                url: redact_url(&exchange.url),
                purpose: snake(&variant(&exchange.purpose)),
                request_headers,
                sent: exchange.body.as_ref().map_or(0, |b| b.len()),
                head: None,
                received: 0,
            },
        );
    }

    pub(super) fn head(&mut self, id: ExchangeId, status: u16, seen: HeadSeen, now: Instant) {
        let connection = seen.local.map(|local| {
            if self.connections.len() >= REMEMBERED_CONNECTIONS {
                self.connections.clear();
            }
            (local, !self.connections.insert(local))
        });
        if let Some(ex) = self.exchanges.get_mut(&id) {
            ex.head = Some(HeadTrace {
                at: now,
                status,
                names: seen.names,
                connection,
            });
        }
    }

    pub(super) fn chunk(&mut self, id: ExchangeId, len: usize) {
        if let Some(ex) = self.exchanges.get_mut(&id) {
            ex.received += len;
        }
    }

    /// The exchange is over: `Ok` ended normally, `Err(None)` aborted by the engine
    /// (it needed no more of it), `Err(Some(why))` failed on the network.
    pub(super) fn exchange_ended(&mut self, id: ExchangeId, result: Result<(), Option<String>>) {
        let Some(ex) = self.exchanges.remove(&id) else {
            return;
        };
        let mut record = json!({
            "kind": "http",
            "exchange": id.0,
            "purpose": ex.purpose,
            "method": ex.method,
            "url": ex.url,
            "request_headers": ex.request_headers,
            "sent": ex.sent,
            "received": ex.received,
            "end_us": ex.started.elapsed().as_micros() as u64,
        });
        if let Some(head) = ex.head {
            record["status"] = head.status.into();
            record["response_headers"] = head.names.into();
            record["head_us"] =
                (head.at.saturating_duration_since(ex.started).as_micros() as u64).into();
            if let Some((local, reused)) = head.connection {
                record["connection"] = if reused { "reused" } else { "new" }.into();
                record["local"] = local.to_string().into();
            }
        }
        record["outcome"] = match &result {
            Ok(()) => "complete",
            Err(None) => "aborted",
            Err(Some(_)) => "failed",
        }
        .into();
        if let Err(Some(why)) = result {
            record["error"] = why.into();
        }
        self.tracer.emit(Detail::Step, record);
    }

    /// A message from the host (each one of a batch).
    pub(super) fn host_sent(&mut self, incoming: &Incoming, now: Instant) {
        match incoming {
            Incoming::Single(m) => self.host_message(m, false, now),
            Incoming::Batch(items) => {
                for m in items.iter().flatten() {
                    self.host_message(m, true, now);
                }
            }
        }
    }

    fn host_message(&mut self, m: &Message, batch: bool, now: Instant) {
        if m.kind == Kind::Request && self.asked.len() < REMEMBERED_REQUESTS {
            if let Some(id) = &m.id_key {
                self.asked.insert(id.clone(), now);
            }
        }
        let mut record = message(
            "host",
            m.kind,
            m.method.as_deref(),
            m.id_key.as_ref(),
            m.bytes.len(),
        );
        if batch {
            record["batch"] = true.into();
        }
        if self.tracer.bodies() {
            record["body"] = body(&m.bytes);
        }
        self.tracer.emit(Detail::FileOnly, record);
    }

    /// A line for the host: the server's message, or the proxy's answer in its place.
    pub(super) fn host_receives(&mut self, line: &HostLine) {
        let from = match line.origin {
            Origin::Server => "server",
            _ => "proxy",
        };
        let mut record = message(
            from,
            line.kind,
            line.method.as_deref(),
            line.id.as_ref(),
            line.bytes.len(),
        );
        if line.kind == Kind::Response {
            if let Some(asked) = line.id.as_ref().and_then(|id| self.asked.remove(id)) {
                record["answer_us"] = (asked.elapsed().as_micros() as u64).into();
            }
        }
        if self.tracer.bodies() {
            record["body"] = body(&line.bytes);
        }
        self.tracer.emit(Detail::FileOnly, record);
    }

    /// A step or a timer of the engine's machines.
    pub(super) fn machine(&self, record: TraceRecord) {
        match record {
            TraceRecord::Step(step) => {
                let detail = if step.machine == "link" {
                    Detail::Step
                } else {
                    Detail::Fine
                };
                self.tracer.emit(detail, crate::trace::step_record(step));
            }
            TraceRecord::TimerFired { timer } => {
                self.tracer
                    .emit(Detail::Fine, json!({"kind": "timer", "timer": timer}));
            }
            _ => {}
        }
    }

    /// One of the engine's log events (the log says it too; the trace keeps it in order).
    pub(super) fn log(&self, event: &LogEvent) {
        let mut record = json!({
            "kind": "log",
            "level": variant(&event.level()).to_ascii_lowercase(),
            "event": variant(event),
            "text": event.to_string(),
        });
        if let Some(delay) = event.delay() {
            record["delay_ms"] = (delay.as_millis() as u64).into();
        }
        self.tracer.emit(Detail::FileOnly, record);
    }
}

/// A message record without its body.
fn message(
    from: &str,
    kind: Kind,
    method: Option<&str>,
    id: Option<&IdKey>,
    bytes: usize,
) -> Value {
    let mut record = json!({
        "kind": "message",
        "from": from,
        "type": snake(&variant(&kind)),
        "bytes": bytes,
    });
    if let Some(method) = method {
        record["method"] = method.into();
    }
    if let Some(id) = id {
        record["id"] = id.to_string().into();
    }
    record
}

/// A body for `--trace-bodies`: the JSON with its secrets redacted, or a note.
fn body(bytes: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut value) => {
            redact_json(&mut value);
            value
        }
        Err(_) => "(not JSON)".into(),
    }
}
