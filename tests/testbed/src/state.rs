//! The server's state: configuration, request logs, sessions with their SSE streams (the
//! legacy HTTP+SSE ones are kept by [`crate::legacy`]), and the server→client requests
//! waiting for the client's answer.
//!
//! Everything sits behind `std::sync::Mutex`es that are held only for short, non-`await`ing
//! sections. A session is addressed by its key: `Some(id)` with sessions on, `None` for the
//! one anonymous session a stateless server has.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::AuthState;
use crate::legacy::LegacySessions;
use crate::record::RequestLog;
use crate::sse::{encode_retry, parse_event_id, EventLog, StreamKind, KEEPALIVE};
use crate::Config;

/// The most streams a session keeps; beyond it the oldest ones nobody reads are forgotten.
const MAX_STREAMS_KEPT: usize = 256;

/// Locks a mutex, ignoring poisoning: a panicking test thread must not take the server down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Resolves once the testbed shuts down (or its state is gone). The watch guard is dropped
/// here, so callers' futures stay `Send`.
pub(crate) async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// What the server tasks and the [`crate::Testbed`] handles share.
pub(crate) struct Shared {
    /// The behaviour in force; copied at the start of each request.
    pub(crate) config: Mutex<Config>,
    /// Requests to the main listener.
    pub(crate) log: RequestLog,
    /// Requests to the "elsewhere" listener, the target of redirects.
    pub(crate) elsewhere_log: RequestLog,
    /// Sessions and their streams.
    pub(crate) registry: Mutex<Registry>,
    /// Legacy HTTP+SSE sessions, one per open `GET /sse` stream; separate from `registry`
    /// because a legacy session has a single stream and no resumption.
    pub(crate) legacy: Mutex<LegacySessions>,
    /// The authorization server's clients, codes and tokens, and its records; used only
    /// with [`Config::auth`].
    pub(crate) auth: Mutex<AuthState>,
    /// Server→client requests awaiting the client's response POST, by JSON-encoded id.
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// How many POSTs carrying requests have been answered; drives `ResponseMode::Alternate`.
    pub(crate) answers_made: AtomicU64,
    /// Numbers the server's own request ids (`srv-1`, `srv-2`, …) so they never repeat.
    pub(crate) server_requests_made: AtomicU64,
    /// How many times the `count` tool ran for each nonce, so a test can tell a tool call
    /// executed twice (a retry that reached the server twice) from one executed once.
    pub(crate) executions: Mutex<HashMap<String, u64>>,
    /// The requests a modern server answered with a result.
    pub(crate) modern_calls: Mutex<Vec<Value>>,
    /// `slow` calls of a modern server whose client went away first.
    pub(crate) modern_cancelled: AtomicU64,
    /// A modern server's `tools/list` streams cut so far.
    pub(crate) modern_cuts: AtomicU64,
    /// A modern server's `tools/list` answers so far.
    pub(crate) modern_lists: AtomicU64,
    /// Open `subscriptions/listen` streams of a modern server: the request's id,
    /// its filter, and where its events go.
    pub(crate) listeners: Mutex<Vec<(Value, Value, mpsc::UnboundedSender<Bytes>)>>,
    /// Flips to `true` on shutdown; every long wait and every stream watches it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// `http://127.0.0.1:PORT` of the main listener.
    pub(crate) origin: String,
    /// `http://127.0.0.1:PORT` of the "elsewhere" listener.
    pub(crate) elsewhere_origin: String,
    /// Why each failed TLS handshake failed, in order (HTTPS mode only).
    pub(crate) tls_failures: Mutex<Vec<String>>,
    /// Other testbeds whose access tokens the resource accepts too.
    pub(crate) trusted: Mutex<Vec<std::sync::Arc<Shared>>>,
}

impl Shared {
    /// State for a testbed about to start.
    pub(crate) fn new(config: Config, origin: String, elsewhere_origin: String) -> Self {
        Shared {
            config: Mutex::new(config),
            log: RequestLog::default(),
            elsewhere_log: RequestLog::default(),
            registry: Mutex::new(Registry::default()),
            legacy: Mutex::new(LegacySessions::default()),
            auth: Mutex::new(AuthState::default()),
            pending: Mutex::new(HashMap::new()),
            answers_made: AtomicU64::new(0),
            server_requests_made: AtomicU64::new(0),
            executions: Mutex::new(HashMap::new()),
            modern_calls: Mutex::new(Vec::new()),
            modern_cancelled: AtomicU64::new(0),
            modern_cuts: AtomicU64::new(0),
            modern_lists: AtomicU64::new(0),
            listeners: Mutex::new(Vec::new()),
            shutdown: watch::Sender::new(false),
            origin,
            elsewhere_origin,
            tls_failures: Mutex::new(Vec::new()),
            trusted: Mutex::new(Vec::new()),
        }
    }

    /// A copy of the configuration in force.
    pub(crate) fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// Sleeps for `duration`; returns `false` early if the testbed shuts down.
    pub(crate) async fn pause(&self, duration: Duration) -> bool {
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            _ = until_shutdown(&mut shutdown) => false,
            _ = tokio::time::sleep(duration) => true,
        }
    }
}

/// The key under which a JSON-RPC id is filed in [`Shared::pending`]: its JSON text, so
/// `1` and `"1"` stay distinct.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// All sessions, each with its streams.
#[derive(Default)]
pub(crate) struct Registry {
    /// Live sessions by `Mcp-Session-Id`; removing one makes its id unknown (404).
    sessions: HashMap<String, Session>,
    /// The session of a server running without session ids.
    anonymous: Session,
    /// Pushed messages that found no open GET stream; the next GET stream gets them.
    unclaimed: Vec<Value>,
    /// The number the next stream gets; unique across sessions, so an event id names one
    /// stream.
    next_stream: u64,
    /// How many session ids have been issued; mixed into new ids.
    sessions_made: u64,
}

/// One client session.
pub(crate) struct Session {
    /// The protocol version `initialize` settled on; decides whether batches are allowed.
    protocol_version: String,
    /// Every stream the session opened, by stream number, kept for resumption.
    streams: BTreeMap<u64, EventLog>,
    /// Messages meant for this session's GET stream while none was open.
    queued: Vec<Value>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            // "the server SHOULD assume protocol version 2025-03-26" without other
            // information (2025-06-18 §Protocol Version Header).
            protocol_version: "2025-03-26".to_owned(),
            streams: BTreeMap::new(),
            queued: Vec::new(),
        }
    }
}

impl Session {
    /// Writes `msg` on the newest GET stream a client still reads; `false` when there is
    /// none. One stream only: the server "MUST NOT broadcast the same message across
    /// multiple streams" (2025-11-25 §Multiple Connections).
    fn send_on_get(&mut self, msg: &Value) -> bool {
        let newest_live = self
            .streams
            .iter_mut()
            .rev()
            .find(|(_, log)| log.kind == StreamKind::Get && log.is_live());
        match newest_live {
            Some((&number, log)) => {
                log.write(number, None, None, &msg.to_string());
                true
            }
            None => false,
        }
    }

    /// Forgets the oldest streams nobody reads once there are too many.
    fn prune_streams(&mut self) {
        let excess = self.streams.len().saturating_sub(MAX_STREAMS_KEPT);
        let idle: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, log)| !log.is_live())
            .map(|(&number, _)| number)
            .take(excess)
            .collect();
        for number in idle {
            self.streams.remove(&number);
        }
    }
}

impl Registry {
    /// The session under `key`, if it is valid.
    fn session_mut(&mut self, key: Option<&str>) -> Option<&mut Session> {
        match key {
            Some(id) => self.sessions.get_mut(id),
            None => Some(&mut self.anonymous),
        }
    }

    /// The stream `number` of the session under `key`.
    fn stream_mut(&mut self, key: Option<&str>, number: u64) -> Option<&mut EventLog> {
        self.session_mut(key)?.streams.get_mut(&number)
    }

    /// Whether `id` names a live session.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// The ids of the live sessions.
    pub(crate) fn session_ids(&self) -> Vec<String> {
        self.sessions.keys().cloned().collect()
    }

    /// The protocol version negotiated by the session under `key`.
    pub(crate) fn protocol_version(&self, key: Option<&str>) -> Option<String> {
        match key {
            Some(id) => self.sessions.get(id).map(|s| s.protocol_version.clone()),
            None => Some(self.anonymous.protocol_version.clone()),
        }
    }

    /// Starts a session after `initialize`: a new one with a fresh id when `with_id`, or the
    /// anonymous one reset to the new version otherwise. Returns the new id.
    pub(crate) fn begin_session(
        &mut self,
        with_id: bool,
        protocol_version: &str,
    ) -> Option<String> {
        let session = Session {
            protocol_version: protocol_version.to_owned(),
            ..Session::default()
        };
        if !with_id {
            self.anonymous.protocol_version = session.protocol_version;
            return None;
        }
        self.sessions_made += 1;
        let id = fresh_session_id(self.sessions_made);
        self.sessions.insert(id.clone(), session);
        Some(id)
    }

    /// Ends one session (DELETE); its streams close. Returns whether it existed.
    pub(crate) fn end_session(&mut self, id: &str) -> bool {
        self.sessions.remove(id).is_some()
    }

    /// Ends every session with an id; their streams close.
    pub(crate) fn expire_all(&mut self) {
        self.sessions.clear();
    }

    /// Opens a stream for the session under `key`, read by `live`. Returns its number.
    pub(crate) fn open_stream(
        &mut self,
        key: Option<&str>,
        kind: StreamKind,
        live: mpsc::UnboundedSender<Bytes>,
    ) -> Option<u64> {
        let number = self.next_stream;
        let session = self.session_mut(key)?;
        session.prune_streams();
        session.streams.insert(number, EventLog::new(kind, live));
        self.next_stream += 1;
        Some(number)
    }

    /// Writes a priming event (an id and empty data) with an optional `retry:` field, which
    /// gives the client an id to resume from (2025-11-25 §Sending Messages item 6).
    pub(crate) fn prime(&mut self, key: Option<&str>, stream: u64, retry_ms: Option<u64>) {
        if let Some(log) = self.stream_mut(key, stream) {
            log.write(stream, None, retry_ms, "");
        }
    }

    /// Starts `stream` on the wire: a priming event when `retry_ms` is set, then a keepalive
    /// comment, so every stream shows clients both.
    pub(crate) fn start(&mut self, key: Option<&str>, stream: u64, retry_ms: Option<u64>) {
        if let Some(log) = self.stream_mut(key, stream) {
            if retry_ms.is_some() {
                log.write(stream, None, retry_ms, "");
            }
            log.comment();
        }
    }

    /// Writes one JSON-RPC message as an event of `stream`.
    pub(crate) fn write(
        &mut self,
        key: Option<&str>,
        stream: u64,
        event: Option<&str>,
        msg: &Value,
    ) {
        if let Some(log) = self.stream_mut(key, stream) {
            log.write(stream, event, None, &msg.to_string());
        }
    }

    /// Sends bytes on `stream`'s connection as they are, outside any event and not kept for
    /// replay (a fault: an event that never ends). Returns whether a client still reads it.
    pub(crate) fn write_raw(&mut self, key: Option<&str>, stream: u64, bytes: Bytes) -> bool {
        match self.stream_mut(key, stream) {
            Some(log) => {
                log.send_raw(bytes);
                log.is_live()
            }
            None => false,
        }
    }

    /// Closes the connection reading `stream` without ending the stream: later events are
    /// kept for a resumption.
    pub(crate) fn detach(&mut self, key: Option<&str>, stream: u64) {
        if let Some(log) = self.stream_mut(key, stream) {
            log.live = None;
        }
    }

    /// Marks `stream` complete and closes its connection.
    pub(crate) fn finish(&mut self, key: Option<&str>, stream: u64) {
        if let Some(log) = self.stream_mut(key, stream) {
            log.live = None;
            log.finished = true;
        }
    }

    /// Whether a client still reads `stream`.
    pub(crate) fn is_live(&mut self, key: Option<&str>, stream: u64) -> bool {
        self.stream_mut(key, stream)
            .is_some_and(|log| log.is_live())
    }

    /// Sends `msg` on the session's GET stream, or queues it for the next one.
    pub(crate) fn notify_session(&mut self, key: Option<&str>, msg: &Value) {
        if let Some(session) = self.session_mut(key) {
            if !session.send_on_get(msg) {
                session.queued.push(msg.clone());
            }
        }
    }

    /// Sends `msg` on every session's GET stream; if none is open, the next one gets it.
    pub(crate) fn push_everywhere(&mut self, msg: &Value) {
        let mut delivered = self.anonymous.send_on_get(msg);
        for session in self.sessions.values_mut() {
            delivered |= session.send_on_get(msg);
        }
        if !delivered {
            self.unclaimed.push(msg.clone());
        }
    }

    /// Opens a GET stream for the session under `key` and hands it what was queued.
    /// Returns `false` when the session is gone.
    pub(crate) fn open_get(
        &mut self,
        key: Option<&str>,
        live: mpsc::UnboundedSender<Bytes>,
        retry_ms: Option<u64>,
    ) -> bool {
        let Some(stream) = self.open_stream(key, StreamKind::Get, live) else {
            return false;
        };
        self.start(key, stream, retry_ms);
        self.deliver_queued(key);
        true
    }

    /// Hands the session's queued messages, then the unclaimed ones, to its GET stream;
    /// what still finds no reader stays queued for the session.
    fn deliver_queued(&mut self, key: Option<&str>) {
        let unclaimed = std::mem::take(&mut self.unclaimed);
        let Some(session) = self.session_mut(key) else {
            self.unclaimed = unclaimed;
            return;
        };
        let queued = std::mem::take(&mut session.queued);
        for msg in queued.into_iter().chain(unclaimed) {
            if !session.send_on_get(&msg) {
                session.queued.push(msg);
            }
        }
    }

    /// Resumes the stream a `Last-Event-ID` belongs to: replays the events after it on
    /// `live`, then either closes (a finished POST stream) or keeps `live` attached for what
    /// comes next. Gives `live` back when the id names no stream of this session.
    pub(crate) fn resume(
        &mut self,
        key: Option<&str>,
        last_event_id: &str,
        live: mpsc::UnboundedSender<Bytes>,
        retry_ms: Option<u64>,
    ) -> Result<(), mpsc::UnboundedSender<Bytes>> {
        let Some((stream, seq)) = parse_event_id(last_event_id) else {
            return Err(live);
        };
        let Some(log) = self.stream_mut(key, stream) else {
            return Err(live);
        };
        if let Some(retry) = retry_ms {
            // The receiver is alive: it is in the response being built.
            let _ = live.send(encode_retry(retry));
        }
        let _ = live.send(Bytes::from_static(KEEPALIVE));
        for event in log.events_after(seq) {
            let _ = live.send(event);
        }
        if !log.finished {
            // Replaces any older connection: the client moved to this one.
            log.live = Some(live);
        }
        if log.kind == StreamKind::Get {
            // What was queued while the stream was down comes after the replay.
            self.deliver_queued(key);
        }
        Ok(())
    }
}

/// A session id that cannot be guessed from the previous one: 32 hex digits, all visible
/// ASCII as the spec requires (0x21–0x7E, 2025-11-25 §Session Management).
pub(crate) fn fresh_session_id(serial: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let high = RandomState::new().hash_one((serial, nanos));
    let low = RandomState::new().hash_one((high, serial));
    format!("{high:016x}{low:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_fresh_visible_ascii() {
        let mut registry = Registry::default();
        let a = registry.begin_session(true, "2025-11-25").unwrap();
        let b = registry.begin_session(true, "2025-03-26").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_eq!(
            registry.protocol_version(Some(&b)).as_deref(),
            Some("2025-03-26")
        );
        registry.expire_all();
        assert!(!registry.contains(&a));
    }

    #[test]
    fn pushes_wait_for_a_get_stream_and_go_to_one_stream_only() {
        let mut registry = Registry::default();
        registry.push_everywhere(&serde_json::json!({"n": 1}));
        let (first_tx, mut first_rx) = mpsc::unbounded_channel();
        let (second_tx, mut second_rx) = mpsc::unbounded_channel();
        assert!(registry.open_get(None, first_tx, None));
        assert_eq!(&first_rx.try_recv().unwrap()[..], KEEPALIVE);
        assert!(first_rx
            .try_recv()
            .unwrap()
            .ends_with(b"data: {\"n\":1}\n\n"));
        assert!(registry.open_get(None, second_tx, None));
        assert_eq!(&second_rx.try_recv().unwrap()[..], KEEPALIVE);
        registry.push_everywhere(&serde_json::json!({"n": 2}));
        assert!(second_rx.try_recv().is_ok(), "the newest stream gets it");
        assert!(first_rx.try_recv().is_err(), "and only that one");
    }
}
