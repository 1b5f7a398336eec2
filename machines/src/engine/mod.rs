//! The connection engine: the whole MCP client side of the proxy, sans IO.
//!
//! ```text
//! handle_host(msg, now)                 poll_transmit() -> Start(Exchange) | Abort(id)
//! handle_head(exchange, head, now)      poll_event()    -> ToHost | RequestFailed | NeedToken
//! handle_body(exchange, bytes, now)                        | TokenWorked | Remember/ForgetTransport
//! handle_end(exchange, result, now)                        | Log | Closed
//! handle_token(outcome, now)            poll_timeout()  -> Option<Instant>
//! handle_timeout(now)
//! handle_shutdown(now)
//! ```
//!
//! It owns everything that decides: the [`Link`] (transport choice, fallback,
//! session life cycle), the [`StreamLink`]s (the standalone GET stream, resumptions
//! of broken response streams, the legacy event stream), liveness (silence
//! watches, the reachability check, keep-alive pings, see `liveness.rs`), the one
//! table of the host's messages (held, posted, accepted, resuming), reserved-id
//! minting, and the meaning of every HTTP outcome (`exchange.rs`): status,
//! `Retry-After`, `WWW-Authenticate`, a broken body, a refused connect.
//!
//! Driving contract (as in quinn-proto and str0m): after every input, drain
//! [`Engine::poll_transmit`] and [`Engine::poll_event`] until they return `None`,
//! then arm one timer at [`Engine::poll_timeout`] and call
//! [`Engine::handle_timeout`] when it fires. The engine reads no clock: time comes
//! in with every input. Maps are ordered and seeds are passed in, so the same inputs
//! give the same outputs — the simulations in `machines/tests/` drive this very
//! engine on a simulated clock and network.

mod era;
mod exchange;
mod host;
mod io;
mod liveness;
mod log;
mod mrtr;

pub use crate::error::{NetworkError, RequestError};
pub use era::{Era, ProtocolMode};
pub use host::{HostConfig, HostLine, Origin, DRAIN_AFTER_EOF};
pub use io::{
    Event, Exchange, ExchangeId, ExchangeResult, HeaderName, Method, Purpose, ResponseHead,
    TokenOutcome, Transmit,
};
pub use log::{Level, LogEvent, Suspicion};
pub use mrtr::{LEG_TIMEOUT, MAX_QUESTIONS, MAX_ROUNDS};

use crate::auth::challenge::BearerChallenge;
use crate::auth::grant::Need;
use crate::auth::AuthError;
use crate::backoff::BackoffPolicy;
use crate::jsonrpc::{self, IdKey, Kind, Message};
use crate::link::{Link, LinkEffect, LinkEvent, LinkOutbox, Strategy, Transport};
use crate::stream::{
    ResponseTime, SilenceWatch, StreamEffect, StreamEvent, StreamLink, StreamOutbox,
};
use crate::trace::{Step, TraceRecord};
use crate::transport;
use bytes::Bytes;
use exchange::{Ending, Ex, Role};
use host::Hook;
use liveness::{Check, LegacyOpen, Watch};
use statig::blocking::{IntoStateMachineExt, StateMachine};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use url::Url;

/// Fixed header names as [`HeaderName`]s.
fn named(headers: Vec<(&'static str, String)>) -> Vec<(HeaderName, String)> {
    headers
        .into_iter()
        .map(|(name, value)| (HeaderName::Borrowed(name), value))
        .collect()
}

/// How long a GET for an event stream may wait for its response headers.
pub const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the DELETE at shutdown.
pub const DELETE_TIMEOUT: Duration = Duration::from_millis(800);
/// Longest wait for `notifications/initialized` to be delivered before held messages go anyway.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broken response stream may take to be resumed (attempts, and GETs
/// hanging in a silent network, together) before its request fails as "fate unknown":
/// a server that was killed does not keep the host waiting for the request time-out.
pub const RESUME_BUDGET: Duration = Duration::from_secs(8);

/// What the engine needs to know, from the command line.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The MCP endpoint.
    pub url: Url,
    /// Largest message accepted from the server, in bytes (`--max-message-bytes`).
    pub max_message_bytes: usize,
    /// Seed for the reconnection jitter.
    pub seed: u64,
    /// `--transport`.
    pub strategy: Strategy,
    /// What this server spoke last time (the transport memory file), if known.
    pub remembered: Option<Transport>,
    /// `--keep-alive` / `--ping-interval`: a ping this often; one unanswered by the
    /// next tick means the connection went silent.
    pub ping_interval: Option<Duration>,
    /// `--headers-timeout`: longest wait for response headers (`None`: no limit).
    pub headers_timeout: Option<Duration>,
    /// The host side: `--request-timeout`, `--ignore-tool`, the client tag.
    pub host: HostConfig,
    /// `--trace` or `-v`: report every machine step and timer as [`Event::Trace`]
    /// (off: none is built, the message path costs nothing more).
    pub trace: bool,
    /// `--protocol`: probe for MCP 2026-07-28 (auto), or speak only one era.
    pub protocol: ProtocolMode,
    /// The era this server turned out to speak last time, if remembered.
    pub remembered_era: Option<Era>,
    /// The server's `initialize` result from the last session (JSON text), if
    /// remembered: a host whose `initialize` meets a sign-in gets it at once.
    pub remembered_initialize: Option<String>,
}

/// The largest `initialize` answer remembered.
pub const MAX_REMEMBERED_INITIALIZE: usize = 64 * 1024;

/// Where a host message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not sent: the Link holds it (or has not decided yet).
    Held,
    /// Its POST is in progress.
    Posted {
        /// The exchange carrying it.
        exchange: ExchangeId,
        /// When the POST started (to learn the usual response time).
        at: Instant,
        /// The legacy connection it went under (0: none); if that one died, the answer will not come.
        connection: u64,
    },
    /// The server accepted it (202); its answer comes on an event stream.
    Accepted {
        /// The legacy connection whose stream owes the answer (0: Streamable HTTP).
        connection: u64,
    },
    /// Its response stream broke; a GET resumes it.
    Resuming {
        /// The resumption stream's number.
        stream: u64,
    },
}

/// A host message, from its arrival to its answer (requests) or its delivery.
#[derive(Debug)]
struct Entry {
    /// The message as the host sent it (shared with the exchanges that carry it).
    bytes: Bytes,
    /// Request, notification or response.
    kind: Kind,
    /// For requests: the id the answer or the error goes to.
    id_key: Option<IdKey>,
    /// For requests: the id exactly as the host wrote it (its answer carries it back).
    host_id: Option<String>,
    /// For requests: what the answer needs before it goes to the host.
    hook: Hook,
    /// For requests owed an answer: when the proxy answers in the server's place.
    deadline: Option<Instant>,
    /// A request still owed an answer.
    owed: bool,
    /// Already re-sent once after a re-initialization (never twice).
    retried: bool,
    /// Where it is.
    stage: Stage,
}

/// Which event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StreamRef {
    /// The standalone GET stream (Streamable HTTP).
    Get,
    /// The legacy transport's event stream.
    Legacy,
    /// The resumption of the response stream of the message with this number.
    Resume(u64),
    /// The `subscriptions/listen` stream (2026-07-28: a POST whose event stream stays open).
    Listen,
}

/// An event stream kept open or resumed.
struct Stream {
    /// When to (re)open it.
    machine: StateMachine<StreamLink>,
    /// The GET in progress.
    exchange: Option<ExchangeId>,
    /// A resumption: when its stream broke (none while it streams); it has
    /// [`RESUME_BUDGET`] from then to be streaming again.
    broken_at: Option<Instant>,
}

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    /// The Link's retry delay (`ScheduleRetry`).
    LinkRetry,
    /// A stream's reconnection delay.
    StreamRetry(StreamRef),
    /// `notifications/initialized` has had its time.
    Confirm,
    /// Something must have happened by now (liveness.rs).
    Watch(Watch),
    /// Stdin closed this long ago: what is still owed is dropped, the session ends.
    Drain,
    /// The check with this number moves on.
    CheckPoll(u64),
    /// The legacy stream's open attempt with this number has had its time.
    LegacyOpen(u64),
    /// The next keep-alive tick.
    KeepAlive,
    /// The exchange's response headers have had their time.
    Head(ExchangeId),
    /// The GET stream may have gone silent.
    Silence(ExchangeId),
    /// The resumption of message `seq`'s response stream has had its time.
    ResumeBudget(u64),
    /// After an outage, the exchange has had its time to show a sign of life since `since`.
    Probation(ExchangeId, Instant),
    /// The host has had its time to answer round `.1` of request `.0` (2026-07-28 MRTR).
    InputLeg(u64, u32),
    /// Request `.0` may go on to its next round (2026-07-28 MRTR).
    InputRound(u64),
}

/// The connection engine. See the module docs for how to drive it.
pub struct Engine {
    /// Settings.
    config: EngineConfig,
    /// Transport choice, fallback, the session's life cycle; what happens to each message.
    link: StateMachine<Link>,
    /// The one table of the host's messages, by arrival number.
    messages: BTreeMap<u64, Entry>,
    /// Requests owed an answer, by id, to their arrival number.
    owed: BTreeMap<IdKey, u64>,
    /// Requests' deadlines (`--request-timeout`), soonest first, then in arrival order.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Stdin closed: until when what is owed may still be answered.
    host_closed: Option<Instant>,
    /// The next arrival number.
    next_seq: u64,
    /// The host's `initialize` as sent, replayed when the session expires.
    initialize: Option<Bytes>,
    /// The id of the host's `initialize` while its answer is awaited.
    host_initialize: Option<IdKey>,
    /// The reserved id of the replayed `initialize` awaiting its answer.
    reinit_id: Option<String>,
    /// The POST of that replay (a newer replay replaces it).
    reinit_exchange: Option<ExchangeId>,
    /// The arrival number of the host's `notifications/initialized` while its POST is in progress.
    initialized_seq: Option<u64>,
    /// HTTP exchanges in progress.
    exchanges: BTreeMap<ExchangeId, Ex>,
    /// The next exchange number.
    next_exchange: u64,
    /// Event streams: the standalone one, the legacy one, resumptions.
    streams: BTreeMap<StreamRef, Stream>,
    /// The server refused the GET stream once: it is not asked again.
    get_refused: bool,
    /// Legacy event streams opened (seeds their jitter).
    legacy_streams: u64,
    /// The legacy connection whose `endpoint` arrived and which is still up.
    live_connection: Option<u64>,
    /// Legacy connections that delivered an endpoint.
    connections: u64,
    /// The current legacy stream's pulse (when bytes last came, the keep-alive pace).
    pulse: SilenceWatch,
    /// Opening the legacy stream: attempts and the time allowed.
    legacy_open: LegacyOpen,
    /// Shutdown has begun.
    exiting: bool,
    /// The host is not reading what it was sent, and the driver stopped reading
    /// bodies until it does ([`Engine::handle_host_backlog`]): silence is the host's
    /// doing, not the network's.
    host_backlog: bool,
    /// The legacy endpoint as last parsed: its text and its URL.
    endpoint_url: Option<(String, Url)>,
    /// A token is in use (the driver sends it).
    has_token: bool,
    /// A request already succeeded with the current token (reported once).
    token_confirmed: bool,
    /// The latest 401/403 and its challenge, for the next token request.
    last_need: Option<(Need, BearerChallenge)>,
    /// Why the connection was last declared dead (`PeerSilent`): what the requests
    /// abandoned with it are told.
    silence: RequestError,
    /// The keep-alive ping awaiting its answer.
    ping_outstanding: Option<String>,
    /// Keep-alive pings sent, for unique reserved ids.
    pings: u64,
    /// The check in progress.
    check: Option<Check>,
    /// Checks begun, for unique ping ids and to tell stale timers.
    checks: u64,
    /// The slowest answer to a check ping seen (from its 202 to the answer).
    check_lag: Option<Duration>,
    /// How long POSTs usually take to get a response.
    post_time: ResponseTime,
    /// The server answered a request with an event stream: it sends response heads at
    /// once, so a request without one, while pings get through, is on a dead connection.
    streams_answers: bool,
    /// Deadlines, soonest first; the second key keeps equal instants in insertion order.
    timers: BTreeMap<(Instant, u64), Timer>,
    /// The next timer's tie-breaker.
    next_timer: u64,
    /// Exchanges to start or abort, in order.
    transmits: VecDeque<Transmit>,
    /// What to tell the driver, in order.
    events: VecDeque<Event>,
    /// The server's protocol era, and the probe that finds it out.
    era: era::EraState,
    /// Who the client is, for every request to a 2026-07-28 server.
    modern_meta: Option<crate::modern::ClientMeta>,
    /// `x-mcp-header` annotations of the tools last listed (2026-07-28), by tool.
    tool_headers: BTreeMap<String, crate::modern::ToolHeaders>,
    /// Tools left out of the host's list for invalid annotations, with why.
    excluded_tools: BTreeMap<String, String>,
    /// Host requests in multi-round-trip rounds (2026-07-28), by arrival number.
    rounds: BTreeMap<u64, mrtr::Rounds>,
    /// The proxy's questions to the host awaiting answers: request and input key.
    questions: BTreeMap<String, (u64, String)>,
    /// Questions asked so far (unique ids).
    questions_asked: u64,
    /// The server's URL was retired (410 Gone) and its successor is in use.
    moved: bool,
    /// A 410 named a successor that was not followed (another origin), for the error.
    gone_to: Option<String>,
    /// A 2026-07-28 server's capabilities (from `server/discover`).
    server_capabilities: Option<serde_json::Value>,
    /// The resources the host subscribed to (2026-07-28: carried by `subscriptions/listen`).
    subscriptions: BTreeSet<String>,
    /// `subscriptions/listen` requests made (unique ids).
    listens: u64,
    /// Lists of the proxy's own after a `HeaderMismatch` (unique ids).
    relists: u64,
    /// The host speaks MCP 2026-07-28 itself: its messages are relayed, not bridged.
    host_modern: bool,
    /// Host messages that wait for the probe's verdict (they go in that era's form).
    parked: Vec<(u64, bool)>,
    /// The host's `initialize` was answered from memory while a sign-in ran: the
    /// server's real answer is compared, not relayed.
    early_initialize: bool,
    /// Since that answer, the server has not answered an `initialize` for real.
    early_open: bool,
    /// `initialize`s sent again after that (unique ids).
    init_retries: u64,
    /// What the host sent after an `initialize` answered from memory, before the
    /// server answered it for real: it goes to the Link once the session exists.
    early_parked: Vec<(u64, Kind, Option<String>)>,
}

impl Engine {
    /// The MCP endpoint this engine talks to.
    pub fn url(&self) -> &Url {
        &self.config.url
    }

    /// An engine for one server, started at `now`.
    pub fn new(config: EngineConfig, now: Instant) -> Self {
        let link = Link::new(config.strategy, config.remembered)
            .with_seed(config.seed)
            .state_machine();
        let era = era::EraState::new(config.protocol, config.remembered_era);
        let mut engine = Self {
            era,
            modern_meta: None,
            tool_headers: BTreeMap::new(),
            excluded_tools: BTreeMap::new(),
            rounds: BTreeMap::new(),
            questions: BTreeMap::new(),
            questions_asked: 0,
            moved: false,
            gone_to: None,
            server_capabilities: None,
            subscriptions: BTreeSet::new(),
            listens: 0,
            relists: 0,
            host_modern: false,
            parked: Vec::new(),
            early_initialize: false,
            early_open: false,
            init_retries: 0,
            early_parked: Vec::new(),
            config,
            link,
            messages: BTreeMap::new(),
            owed: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            host_closed: None,
            next_seq: 0,
            initialize: None,
            host_initialize: None,
            reinit_id: None,
            reinit_exchange: None,
            initialized_seq: None,
            exchanges: BTreeMap::new(),
            next_exchange: 1,
            streams: BTreeMap::new(),
            get_refused: false,
            legacy_streams: 0,
            live_connection: None,
            connections: 0,
            pulse: SilenceWatch::default(),
            legacy_open: LegacyOpen::default(),
            exiting: false,
            host_backlog: false,
            endpoint_url: None,
            has_token: false,
            token_confirmed: false,
            last_need: None,
            silence: RequestError::Silent,
            ping_outstanding: None,
            pings: 0,
            check: None,
            checks: 0,
            check_lag: None,
            post_time: ResponseTime::default(),
            streams_answers: false,
            timers: BTreeMap::new(),
            next_timer: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if let Some(interval) = engine.config.ping_interval {
            engine.set_timer(now + interval, Timer::KeepAlive);
        }
        engine
    }

    // ---- outputs ----

    /// The next exchange to start or abort.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing to tell the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        match (timer, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The transport in use or being tried.
    pub fn transport(&self) -> Option<Transport> {
        self.link.transport()
    }

    /// The Link's state, for tests and traces.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// HTTP exchanges in progress.
    pub fn exchanges_in_progress(&self) -> usize {
        self.exchanges.len()
    }

    /// Whether a check of the connection is in progress.
    pub fn checking(&self) -> bool {
        self.check.is_some()
    }

    // ---- inputs ----

    /// An exchange's response head arrived.
    pub fn handle_head(&mut self, id: ExchangeId, head: ResponseHead, now: Instant) {
        self.on_head(id, head, now);
        self.settle(now);
    }

    /// Bytes of an exchange's body arrived.
    pub fn handle_body(&mut self, id: ExchangeId, chunk: &[u8], now: Instant) {
        self.on_body(id, chunk, now);
        self.settle(now);
    }

    /// An exchange ended on the network side.
    pub fn handle_end(&mut self, id: ExchangeId, result: ExchangeResult, now: Instant) {
        self.on_end(id, result, now);
        self.settle(now);
    }

    /// A host message the host side let through goes into the table and to the Link.
    fn accept(&mut self, message: Message, hook: Hook, deadline: Option<Instant>, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Message {
            bytes,
            kind,
            id: host_id,
            id_key,
            method,
            ..
        } = message;
        let bytes = Bytes::from(bytes);
        if method.as_deref() == Some("initialize") {
            self.initialize = Some(bytes.clone());
            self.host_initialize = id_key.clone();
        }
        // A host of MCP 2026-07-28 opens with `server/discover`: for the Link it is
        // what `initialize` is for an older host.
        let opening = method.as_deref() == Some("server/discover")
            && !self.link.established()
            && self.host_initialize.is_none()
            && kind == Kind::Request;
        if opening {
            self.host_initialize = id_key.clone();
        }
        if let (Kind::Request, Some(key)) = (kind, &id_key) {
            self.owed.insert(key.clone(), seq);
            if self.is_legacy() && self.stream_is_quiet(now) {
                // Its answer would come on a stream that may have died silently.
                self.log(LogEvent::QuietBeforeSend);
                self.dispatch(LinkEvent::StreamQuiet, now);
            }
        }
        if kind == Kind::Notification && method.as_deref() == Some("notifications/initialized") {
            self.initialized_seq = Some(seq);
            self.set_timer(now + CONFIRM_TIMEOUT, Timer::Confirm);
        }
        let owed = kind == Kind::Request && id_key.is_some();
        let deadline = deadline.filter(|_| owed);
        if let Some(at) = deadline {
            self.deadlines.insert((at, seq));
        }
        self.messages.insert(
            seq,
            Entry {
                bytes,
                kind,
                id_key,
                host_id,
                hook,
                deadline,
                owed,
                retried: false,
                stage: Stage::Held,
            },
        );
        let method = match opening {
            true => Some("initialize".to_owned()),
            false => method,
        };
        if self.early_open && method.as_deref() != Some("initialize") {
            // The host had its answer from memory; the session is not open yet. If the
            // real `initialize` failed (the network, a refusal), it goes again first.
            if self.host_initialize.is_none() {
                self.initialize_again(now);
            }
            if self.host_initialize.is_some() {
                self.early_parked.push((seq, kind, method));
                return;
            }
        }
        self.dispatch(LinkEvent::HostSent { seq, kind, method }, now);
    }

    /// Bytes of exchange `id`'s body held while the message they begin is incomplete
    /// (the driver paces the reading of bodies by them and by its output queue).
    pub fn held_bytes(&self, id: ExchangeId) -> usize {
        self.exchanges.get(&id).map_or(0, |ex| ex.held_bytes())
    }

    /// The host stopped reading its stdout (`true`: the driver holds back the bodies
    /// of responses until it reads again) or reads again (`false`). Meanwhile no
    /// silence counts against the server: no connection check starts, no stream is
    /// declared dead, nothing is put on probation; when the host reads again every
    /// stream's silence counts from then.
    pub fn handle_host_backlog(&mut self, backlog: bool, now: Instant) {
        if self.host_backlog == backlog {
            return;
        }
        self.host_backlog = backlog;
        self.log(LogEvent::HostBacklog(backlog));
        if !backlog {
            if self.pulse.last_bytes().is_some() {
                self.pulse.on_bytes(now);
            }
            for ex in self.exchanges.values_mut() {
                ex.progress_at = now;
                if ex.watch.last_bytes().is_some() {
                    ex.watch.on_bytes(now);
                }
            }
        }
        self.settle(now);
    }

    /// A token request ended.
    pub fn handle_token(&mut self, outcome: TokenOutcome, now: Instant) {
        match outcome {
            TokenOutcome::Ready => {
                self.has_token = true;
                self.token_confirmed = false;
                self.dispatch(LinkEvent::TokenArrived, now);
            }
            TokenOutcome::Failed(error) => self.dispatch(LinkEvent::AuthFailed { error }, now),
        }
        self.settle(now);
    }

    /// Stop: the host went away or a signal came. Ends with [`Event::Closed`] once
    /// the session is ended (a best-effort DELETE) or at once when there is none.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.exiting {
            return;
        }
        self.exiting = true;
        if self.streams.contains_key(&StreamRef::Listen) {
            self.drive_stream(StreamRef::Listen, StreamEvent::Closed, now);
            self.streams.remove(&StreamRef::Listen);
        }
        let had_session = self.link.session_id().is_some();
        self.dispatch(LinkEvent::ShutdownRequested, now);
        if !had_session {
            self.close();
        }
    }

    /// Time passed: whatever was due by `now` happens.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only what was due when the call began: a timer armed meanwhile for `now`
        // waits for the next call, so one call always ends.
        let later = self.timers.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut self.timers, later);
        for (_, timer) in due {
            self.fire(timer, now);
        }
        // Requests whose time is over, in the order the host sent them.
        while let Some(&(at, seq)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, seq));
            self.request_due(seq, now);
        }
        self.settle(now);
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        if self.config.trace {
            self.events.push_back(Event::Trace(TraceRecord::TimerFired {
                timer: crate::trace::variant(&timer),
            }));
        }
        match timer {
            Timer::LinkRetry => self.dispatch(LinkEvent::RetryTimerFired, now),
            Timer::StreamRetry(which) => {
                self.drive_stream(which, StreamEvent::RetryTimerFired, now)
            }
            Timer::Confirm => self.dispatch(LinkEvent::InitializedDelivered, now),
            Timer::Watch(watch) => self.watch_due(watch, now),
            Timer::Drain => {} // `settle` ends the session
            Timer::CheckPoll(number) => self.poll_check(number, now),
            Timer::LegacyOpen(attempt) => self.legacy_open_due(attempt, now),
            Timer::KeepAlive => self.keep_alive(now),
            Timer::Head(id) => self.head_due(id, now),
            Timer::Silence(id) => self.silence_due(id, now),
            Timer::ResumeBudget(seq) => self.resume_due(seq, now),
            Timer::InputLeg(seq, round) => self.input_leg_due(seq, round),
            Timer::InputRound(seq) => self.maybe_next_round(seq, now),
            Timer::Probation(id, since) => {
                if !self.host_backlog
                    && self
                        .exchanges
                        .get(&id)
                        .is_some_and(|ex| ex.progress_at < since)
                {
                    self.abandon_exchange(id, now);
                }
            }
        }
    }

    // ---- internals ----

    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.next_timer += 1;
        self.timers.insert((at, self.next_timer), timer);
    }

    fn log(&mut self, event: LogEvent) {
        self.events.push_back(Event::Log(event));
    }

    fn is_legacy(&self) -> bool {
        self.link.transport() == Some(Transport::Legacy)
    }

    fn close(&mut self) {
        for stream in std::mem::take(&mut self.streams).into_values() {
            if let Some(id) = stream.exchange {
                self.abort(id);
            }
        }
        self.timers.clear();
        self.events.push_back(Event::Closed);
    }

    fn dispatch(&mut self, event: LinkEvent, now: Instant) {
        let mut out = LinkOutbox::default();
        let from = self.config.trace.then(|| self.link.state().clone());
        self.link.handle_with_context(&event, &mut out);
        if let Some(from) = from {
            let step = Step::new("link", &from, &event, self.link.state(), &out.0);
            self.events.push_back(Event::Trace(TraceRecord::Step(step)));
        }
        if !self.link.checking() {
            // The Link no longer waits for a check (the stream was replaced, the session ended).
            self.check = None;
        }
        for effect in out.0 {
            self.perform(effect, now);
        }
    }

    fn perform(&mut self, effect: LinkEffect, now: Instant) {
        match effect {
            LinkEffect::Post { seq, retry } => self.post_message(seq, retry, now),
            LinkEffect::Fail { seq, error } => {
                let held = self
                    .messages
                    .get(&seq)
                    .is_some_and(|e| matches!(e.stage, Stage::Held | Stage::Posted { .. }));
                if held {
                    if let Some(Stage::Posted { exchange, .. }) =
                        self.messages.get(&seq).map(|e| e.stage)
                    {
                        self.abort(exchange);
                    }
                    self.fail_seq(seq, error);
                }
            }
            LinkEffect::PostReinitialize { id } => self.post_reinitialize(id, now),
            LinkEffect::PostInitialized => {
                let bytes =
                    jsonrpc::notification("notifications/initialized", &serde_json::json!({}));
                self.post(Bytes::from(bytes), true, Role::Initialized, now);
                self.set_timer(now + CONFIRM_TIMEOUT, Timer::Confirm);
            }
            LinkEffect::OpenGetStream => {
                if self.get_refused || self.streams.contains_key(&StreamRef::Get) {
                    return;
                }
                let machine =
                    StreamLink::new(BackoffPolicy::STREAM, self.config.seed).state_machine();
                self.streams.insert(
                    StreamRef::Get,
                    Stream {
                        machine,
                        exchange: None,
                        broken_at: None,
                    },
                );
                self.drive_stream(StreamRef::Get, StreamEvent::Started, now);
            }
            LinkEffect::CloseGetStream => {
                self.drive_stream(StreamRef::Get, StreamEvent::Closed, now);
                self.streams.remove(&StreamRef::Get);
            }
            LinkEffect::DeleteSession => self.delete_session(now),
            LinkEffect::FailAccepted { error } => self.fail_accepted(error, now),
            LinkEffect::OpenLegacyStream => {
                self.legacy_streams += 1;
                self.live_connection = None;
                if let Some(old) = self
                    .streams
                    .remove(&StreamRef::Legacy)
                    .and_then(|s| s.exchange)
                {
                    self.abort(old);
                }
                let seed = self.config.seed.wrapping_add(self.legacy_streams);
                let machine = StreamLink::new(BackoffPolicy::LEGACY, seed).state_machine();
                self.streams.insert(
                    StreamRef::Legacy,
                    Stream {
                        machine,
                        exchange: None,
                        broken_at: None,
                    },
                );
                self.log(LogEvent::OpeningLegacyStream);
                self.drive_stream(StreamRef::Legacy, StreamEvent::Started, now);
            }
            LinkEffect::CloseLegacyStream => {
                self.drive_stream(StreamRef::Legacy, StreamEvent::Closed, now);
                self.streams.remove(&StreamRef::Legacy);
                self.live_connection = None;
            }
            LinkEffect::CheckStream => self.start_check(now),
            LinkEffect::ScheduleRetry(delay) => {
                self.log(LogEvent::RetryingIn(delay));
                self.set_timer(now + delay, Timer::LinkRetry);
            }
            LinkEffect::AbandonInFlight => self.abandon_in_flight(now),
            LinkEffect::Discard { seq } => {
                if matches!(self.messages.get(&seq), Some(e) if e.stage == Stage::Held) {
                    self.messages.remove(&seq);
                }
            }
            LinkEffect::RequestToken => match self.last_need.clone() {
                Some((need, challenge)) => {
                    self.events.push_back(Event::NeedToken { need, challenge })
                }
                None => self.dispatch(
                    LinkEvent::AuthFailed {
                        error: AuthError::Required,
                    },
                    now,
                ),
            },
            LinkEffect::RememberTransport(t) => self.events.push_back(Event::RememberTransport(t)),
            LinkEffect::ForgetTransport => self.events.push_back(Event::ForgetTransport),
        }
    }

    /// The connection is dead: what was posted on it, and the resumptions, fail
    /// (their fate is unknown); on the legacy transport so do the accepted requests.
    fn abandon_in_flight(&mut self, now: Instant) {
        let error = self.silence.clone();
        self.log(LogEvent::Abandoned(error.clone()));
        let posted: Vec<(u64, ExchangeId)> = self
            .messages
            .iter()
            .filter_map(|(seq, e)| match e.stage {
                Stage::Posted { exchange, .. } => Some((*seq, exchange)),
                _ => None,
            })
            .collect();
        for (seq, exchange) in posted {
            self.abort(exchange);
            self.fail_seq(seq, error.clone());
        }
        let resuming: Vec<StreamRef> = self
            .streams
            .keys()
            .filter(|s| matches!(s, StreamRef::Resume(_)))
            .copied()
            .collect();
        for which in resuming {
            self.drive_stream(which, StreamEvent::Closed, now);
            self.streams.remove(&which);
            if let StreamRef::Resume(seq) = which {
                self.fail_seq(seq, error.clone());
            }
        }
        if self.is_legacy() {
            // Answers of requests accepted on the dead stream will not come either.
            self.fail_accepted(error, now);
        }
    }

    /// POST the host's message `seq` (the Link released it).
    fn post_message(&mut self, seq: u64, retry: bool, now: Instant) {
        let Some(entry) = self.messages.get_mut(&seq) else {
            return;
        };
        if entry.stage != Stage::Held {
            return;
        }
        if self.park_until_era(seq, retry) {
            return;
        }
        let Some(entry) = self.messages.get_mut(&seq) else {
            return;
        };
        entry.retried = retry;
        let Some(out) = self.outgoing(seq) else {
            self.fail_seq(seq, RequestError::NotSent);
            return;
        };
        let connection = self.live_connection.unwrap_or(0);
        let id = self.post_with(
            out.bytes,
            out.with_session,
            out.headers,
            Role::Post { seq },
            now,
        );
        if let Some(entry) = self.messages.get_mut(&seq) {
            entry.stage = Stage::Posted {
                exchange: id,
                at: now,
                connection,
            };
        }
        self.watch_post(seq, id, now);
    }

    fn post_reinitialize(&mut self, id: String, now: Instant) {
        let replay = self.initialize.as_ref().and_then(|bytes| {
            let message = Message::parse(bytes.to_vec()).ok()?;
            jsonrpc::with_id(&message, &id)
        });
        let Some(bytes) = replay else {
            self.dispatch(
                LinkEvent::ReinitFailed {
                    error: RequestError::NotInitialized,
                },
                now,
            );
            return;
        };
        self.log(LogEvent::Reinitializing);
        self.reinit_id = Some(id);
        // A replay replaces the one before (which may sit on a dead connection).
        if let Some(old) = self.reinit_exchange.take() {
            self.abort(old);
        }
        let exchange = self.post(Bytes::from(bytes), false, Role::Reinit, now);
        self.reinit_exchange = Some(exchange);
        if self.link.transport() == Some(Transport::Streamable) {
            // Its answer is its response: watch it as any POST.
            self.watch_reinit(now);
        }
    }

    /// Start a POST of `body` on the current transport; with `with_session`, the
    /// Streamable HTTP session headers are added.
    fn post(&mut self, body: Bytes, with_session: bool, role: Role, now: Instant) -> ExchangeId {
        self.post_with(body, with_session, Vec::new(), role, now)
    }

    /// The legacy transport's message endpoint, parsed once per `endpoint` event (not
    /// per message: parsing costs a host name's IDNA pass and the query's).
    fn legacy_endpoint_url(&mut self) -> Url {
        let Some(endpoint) = self.link.endpoint() else {
            return self.config.url.clone();
        };
        if let Some((text, url)) = &self.endpoint_url {
            if text == endpoint {
                return url.clone();
            }
        }
        let url = Url::parse(endpoint).unwrap_or_else(|_| self.config.url.clone());
        self.endpoint_url = Some((endpoint.to_owned(), url.clone()));
        url
    }

    /// [`Engine::post`] with `extra` headers.
    fn post_with(
        &mut self,
        body: Bytes,
        with_session: bool,
        extra: Vec<(HeaderName, String)>,
        role: Role,
        now: Instant,
    ) -> ExchangeId {
        let legacy = self.is_legacy();
        let url = match legacy {
            true => self.legacy_endpoint_url(),
            false => self.config.url.clone(),
        };
        let mut headers = vec![
            ("accept", transport::POST_ACCEPT.to_owned()),
            ("content-type", "application/json".to_owned()),
        ];
        // Legacy: the endpoint names the session; a 404 there means it is gone.
        let mut sent_session = legacy;
        if with_session && !legacy {
            sent_session = self.session_headers(&mut headers);
        }
        let mut headers = named(headers);
        headers.extend(extra);
        self.start_named(
            Method::Post,
            url,
            headers,
            Some(body),
            role,
            sent_session,
            now,
        )
    }

    /// Adds `Mcp-Session-Id` and `MCP-Protocol-Version` when known; tells whether a session id went.
    fn session_headers(&self, headers: &mut Vec<(&'static str, String)>) -> bool {
        let mut sent = false;
        if let Some(id) = self.link.session_id() {
            headers.push((transport::SESSION_HEADER, id.to_owned()));
            sent = true;
        }
        if let Some(version) = self.link.protocol_version() {
            headers.push((transport::VERSION_HEADER, version.to_owned()));
        }
        sent
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        method: Method,
        url: Url,
        headers: Vec<(&'static str, String)>,
        body: Option<Bytes>,
        role: Role,
        sent_session: bool,
        now: Instant,
    ) -> ExchangeId {
        self.start_named(method, url, named(headers), body, role, sent_session, now)
    }

    /// [`Engine::start`] with headers whose names may be made at run time.
    #[allow(clippy::too_many_arguments)]
    fn start_named(
        &mut self,
        method: Method,
        url: Url,
        headers: Vec<(HeaderName, String)>,
        body: Option<Bytes>,
        role: Role,
        sent_session: bool,
        now: Instant,
    ) -> ExchangeId {
        let purpose = role.purpose();
        let id = ExchangeId(self.next_exchange);
        self.next_exchange += 1;
        let is_get = method == Method::Get;
        // A stream's response headers come at once from a live server; a GET that hangs
        // there (a silent network) is given up sooner so the stream machine can retry.
        let head_limit = match (is_get, self.config.headers_timeout) {
            (true, Some(t)) => Some(t.min(STREAM_OPEN_TIMEOUT)),
            (true, None) => Some(STREAM_OPEN_TIMEOUT),
            (false, t) if method == Method::Post => t,
            (false, _) => None,
        };
        if let Some(limit) = head_limit {
            self.set_timer(now + limit, Timer::Head(id));
        }
        self.exchanges
            .insert(id, Ex::new(role, sent_session, is_get, head_limit, now));
        let timeout = (method == Method::Delete).then_some(DELETE_TIMEOUT);
        self.transmits.push_back(Transmit::Start(Exchange {
            id,
            method,
            url,
            headers,
            body,
            purpose,
            timeout,
        }));
        id
    }

    /// Stop an exchange; nothing more it reports is heard.
    fn abort(&mut self, id: ExchangeId) {
        if self.exchanges.remove(&id).is_some() {
            self.transmits.push_back(Transmit::Abort(id));
        }
    }

    fn delete_session(&mut self, now: Instant) {
        let Some(session_id) = self.link.session_id().map(str::to_owned) else {
            self.close();
            return;
        };
        let mut headers = vec![(transport::SESSION_HEADER, session_id)];
        if let Some(version) = self.link.protocol_version() {
            headers.push((transport::VERSION_HEADER, version.to_owned()));
        }
        let url = self.config.url.clone();
        self.start(Method::Delete, url, headers, None, Role::Delete, false, now);
    }

    /// Answer a host message's request with an error and forget the message.
    fn fail_seq(&mut self, seq: u64, error: RequestError) {
        if self.is_host_initialize(seq) {
            // Its probe is over (sign-in failed, the network, a refusal): what waited
            // for the era fails the same way.
            self.probe_abandoned(&error);
            // So does what the host sent after an answer from memory; the host's
            // next message tries the `initialize` again.
            for (parked, _, _) in std::mem::take(&mut self.early_parked) {
                self.fail_seq(parked, error.clone());
            }
            if self.early_open {
                self.host_initialize = None;
            }
        }
        let owed = match self.messages.get(&seq) {
            None => return,
            Some(entry) => match (entry.kind, &entry.id_key) {
                (Kind::Request, Some(key)) if entry.owed => Some(key.clone()),
                (Kind::Request, _) => None,
                _ => {
                    self.messages.remove(&seq);
                    self.log(LogEvent::MessageLost(error));
                    return;
                }
            },
        };
        if let Some(key) = owed {
            self.fail_key(&key, error);
        }
        self.messages.remove(&seq);
    }

    /// Answer request `key` with an error, wherever it is.
    fn fail_key(&mut self, key: &IdKey, error: RequestError) {
        let Some(seq) = self.unowe(key) else {
            return;
        };
        let host_id = match self.messages.get(&seq) {
            // Its POST is still being read: the entry stays for that exchange's end.
            Some(entry) if matches!(entry.stage, Stage::Posted { .. }) => entry.host_id.clone(),
            _ => self.messages.remove(&seq).and_then(|e| e.host_id),
        };
        let id = host_id.unwrap_or_else(|| host::id_text(key));
        self.fail_to_host(&id, key.clone(), error);
    }

    /// Fail the requests the server accepted and has not answered: their answers
    /// were to come on a stream that is gone.
    fn fail_accepted(&mut self, error: RequestError, now: Instant) {
        let accepted: Vec<(u64, Option<u64>)> = self
            .messages
            .iter()
            // The host's `initialize` answered from memory is owed nothing, and still
            // fails here: what waits for it must hear.
            .filter(|(seq, e)| e.owed || self.is_host_initialize(**seq))
            .filter_map(|(seq, e)| match e.stage {
                Stage::Accepted { .. } => Some((*seq, None)),
                Stage::Resuming { stream } => Some((*seq, Some(stream))),
                _ => None,
            })
            .collect();
        for (seq, resume) in accepted {
            if let Some(stream) = resume {
                let which = StreamRef::Resume(stream);
                self.drive_stream(which, StreamEvent::Closed, now);
                self.streams.remove(&which);
            }
            self.fail_seq(seq, error.clone());
        }
    }

    /// A message from the server (on any exchange).
    fn on_server_message(&mut self, message: Message, session_id: Option<&str>, now: Instant) {
        let Some(message) = self.probe_answer(message, now) else {
            return;
        };
        // The listen stream's acknowledgement is for the proxy.
        if message.method.as_deref() == Some("notifications/subscriptions/acknowledged") {
            return;
        }
        // 2026-07-28 has no sessions: an id a modern server sends is not used.
        let session_id = session_id.filter(|_| !self.modern());
        if message.kind == Kind::Response {
            if let Some(key) = message.id_key.clone() {
                if self.host_initialize.as_ref() == Some(&key) {
                    self.host_initialize = None;
                    if !message.is_error {
                        self.remember_initialize(&message);
                    }
                    let event = if message.is_error {
                        LinkEvent::InitializeFailed
                    } else {
                        LinkEvent::InitializeAnswered {
                            session_id: session_id.map(str::to_owned),
                            protocol_version: jsonrpc::negotiated_version(&message),
                        }
                    };
                    self.dispatch(event, now);
                    let failed = message.is_error.then_some(RequestError::SessionRefused);
                    self.release_early(failed, now);
                }
                if key.is_reserved() && !self.owed.contains_key(&key) {
                    self.reserved_answer(&key, &message, session_id, now);
                    return; // the proxy's own request: never shown to the host
                }
                if self.input_required(&key, &message, now) {
                    return; // the server asks the host first; the request goes again
                }
                // An answer to nothing owed is the answer to a request the proxy already
                // answered (time-out, failure), to a cancelled request, or a server's
                // duplicate: the host must not see a second answer.
                let Some(answering) = self.answered(&key, now) else {
                    return;
                };
                self.relay_to_host(message, Some(answering));
                return;
            }
        }
        self.relay_to_host(message, None);
    }

    /// Request `key` got its answer: it is no longer owed, and a stream resuming it
    /// closes. Its id as the host wrote it, and what the answer needs; `None` if the
    /// request was not owed an answer.
    fn answered(&mut self, key: &IdKey, now: Instant) -> Option<(String, Hook)> {
        let seq = self.unowe(key)?;
        self.forget_rounds(seq);
        let entry = self.messages.get_mut(&seq)?;
        let answering = (
            entry.host_id.take().unwrap_or_else(|| host::id_text(key)),
            entry.hook,
        );
        match entry.stage {
            Stage::Posted { .. } => {} // the exchange's end forgets it
            Stage::Resuming { stream } => {
                self.messages.remove(&seq);
                let which = StreamRef::Resume(stream);
                self.drive_stream(which, StreamEvent::Closed, now);
                self.streams.remove(&which);
            }
            Stage::Held | Stage::Accepted { .. } => {
                self.messages.remove(&seq);
            }
        }
        Some(answering)
    }

    /// An answer to one of the proxy's own requests.
    fn reserved_answer(
        &mut self,
        key: &IdKey,
        message: &Message,
        session_id: Option<&str>,
        now: Instant,
    ) {
        let IdKey::Str(id) = key else {
            return;
        };
        if id.starts_with(era::RELIST_PREFIX) {
            self.scan_modern_tools(&message.bytes);
            return;
        }
        if self.reinit_id.as_deref() == Some(id.as_str()) {
            self.reinit_id = None;
            let event = if message.is_error {
                LinkEvent::ReinitFailed {
                    error: RequestError::SessionRefused,
                }
            } else {
                LinkEvent::ReinitAnswered {
                    session_id: session_id.map(str::to_owned),
                    protocol_version: jsonrpc::negotiated_version(message),
                }
            };
            self.dispatch(event, now);
        }
        if self.ping_outstanding.as_deref() == Some(id.as_str()) {
            self.ping_outstanding = None;
        }
        self.check_answered(id, now);
    }

    /// Tell the driver once that the current token works (the Authorizer resets its retry counts).
    fn token_worked(&mut self) {
        if self.has_token && !self.token_confirmed {
            self.token_confirmed = true;
            self.events.push_back(Event::TokenWorked);
        }
    }

    // ---- streams ----

    fn drive_stream(&mut self, which: StreamRef, event: StreamEvent, now: Instant) {
        let Some(stream) = self.streams.get_mut(&which) else {
            return;
        };
        let mut out = StreamOutbox::default();
        let from = self.config.trace.then(|| stream.machine.state().clone());
        stream.machine.handle_with_context(&event, &mut out);
        if let Some(from) = from {
            let step = Step::new("stream", &from, &event, stream.machine.state(), &out.0);
            let instance = match which {
                StreamRef::Get => "get".to_owned(),
                StreamRef::Legacy => "legacy".to_owned(),
                StreamRef::Resume(seq) => format!("resume-{seq}"),
                StreamRef::Listen => "listen".to_owned(),
            };
            self.events
                .push_back(Event::Trace(TraceRecord::Step(step.of(instance))));
        }
        for effect in out.0 {
            match effect {
                StreamEffect::Open { last_event_id } => {
                    let id = self.open_stream(which, last_event_id, now);
                    if let Some(stream) = self.streams.get_mut(&which) {
                        stream.exchange = Some(id);
                    }
                }
                StreamEffect::ScheduleRetry(delay) => {
                    self.log(LogEvent::StreamRetryIn(delay));
                    self.set_timer(now + delay, Timer::StreamRetry(which));
                }
                StreamEffect::Abort => {
                    if let Some(id) = self.streams.get_mut(&which).and_then(|s| s.exchange.take()) {
                        self.abort(id);
                    }
                }
                StreamEffect::GiveUp { refused } => {
                    self.streams.remove(&which);
                    match which {
                        // The Link heard about the refusal or failure already.
                        StreamRef::Legacy => {}
                        StreamRef::Get if refused => {
                            self.get_refused = true;
                            self.log(LogEvent::NoGetStream);
                        }
                        StreamRef::Get => self.log(LogEvent::GetStreamLost),
                        StreamRef::Listen => self.log(LogEvent::ListenLost { refused }),
                        StreamRef::Resume(seq) => {
                            if let Some(key) =
                                self.messages.get(&seq).and_then(|e| e.id_key.clone())
                            {
                                self.fail_key(&key, RequestError::ResumeFailed);
                            }
                        }
                    }
                }
            }
        }
    }

    fn open_stream(
        &mut self,
        which: StreamRef,
        last_event_id: Option<String>,
        now: Instant,
    ) -> ExchangeId {
        let mut headers = vec![("accept", transport::GET_ACCEPT.to_owned())];
        if which == StreamRef::Listen {
            return self.open_listen_exchange(now);
        }
        if which == StreamRef::Legacy {
            // MCP 2024-11-05 §HTTP with SSE: GET the server URL for the event stream.
            self.legacy_open_started(now);
            self.pulse = SilenceWatch::default();
            self.check = None;
            let url = self.config.url.clone();
            return self.start(
                Method::Get,
                url,
                headers,
                None,
                Role::Stream(which),
                false,
                now,
            );
        }
        let sent_session = self.session_headers(&mut headers);
        let resuming = last_event_id.is_some();
        if let Some(last) = last_event_id {
            headers.push(("last-event-id", last));
        }
        self.log(LogEvent::OpeningGetStream { resuming });
        let url = self.config.url.clone();
        self.start(
            Method::Get,
            url,
            headers,
            None,
            Role::Stream(which),
            sent_session,
            now,
        )
    }

    /// The response stream of message `seq` broke after an event id: resume it with a GET.
    fn start_resume(
        &mut self,
        seq: u64,
        key: &IdKey,
        last_event_id: Option<String>,
        retry_ms: Option<u64>,
        now: Instant,
    ) {
        self.log(LogEvent::Resuming(key.clone()));
        let which = StreamRef::Resume(seq);
        self.set_timer(now + RESUME_BUDGET, Timer::ResumeBudget(seq));
        let machine = StreamLink::new(BackoffPolicy::RESUME, self.config.seed.wrapping_add(seq))
            .state_machine();
        self.streams.insert(
            which,
            Stream {
                machine,
                exchange: None,
                broken_at: Some(now),
            },
        );
        self.drive_stream(
            which,
            StreamEvent::Ended {
                now,
                last_event_id,
                retry_ms,
            },
            now,
        );
    }

    // ---- exchange ends (what each outcome means) ----

    /// A POST of a host message ended, as `ending` says.
    fn post_ended(&mut self, seq: u64, ending: Ending, now: Instant) {
        if self.initialized_seq == Some(seq) {
            self.initialized_seq = None;
            self.dispatch(LinkEvent::InitializedDelivered, now);
        }
        let Some(entry) = self.messages.get(&seq) else {
            return;
        };
        let Stage::Posted { at, connection, .. } = entry.stage else {
            return;
        };
        let retried = entry.retried;
        let id_key = entry.id_key.clone();
        let owed = entry.owed;
        let is_initialize = id_key.is_some() && id_key == self.host_initialize;
        if matches!(ending, Ending::Accepted | Ending::Done { .. }) {
            self.token_worked();
        }
        self.learn_from_post(at, connection, id_key.as_ref(), &ending, now);
        if !matches!(ending, Ending::Failed(_)) {
            self.dispatch(LinkEvent::Reachable, now);
        }
        if self.probe_ended(seq, &ending, now) {
            return;
        }
        let back_to_held = |engine: &mut Self| {
            if let Some(entry) = engine.messages.get_mut(&seq) {
                entry.stage = Stage::Held;
            }
        };
        match ending {
            Ending::Expired => {
                back_to_held(self);
                self.dispatch(LinkEvent::SessionExpired { seq, retried }, now);
            }
            Ending::Busy(retry_after) => {
                self.log(LogEvent::ServerBusy(retry_after));
                back_to_held(self);
                self.dispatch(LinkEvent::Busy { seq, retry_after }, now);
            }
            Ending::Unauthorized { status, challenge } => {
                self.note_need(status, challenge);
                back_to_held(self);
                self.dispatch(LinkEvent::Unauthorized { seq }, now);
                if is_initialize {
                    self.answer_initialize_from_memory(seq);
                }
            }
            Ending::Refused { status, reason } if is_initialize => {
                // The Link decides: fall back to the other transport, or fail.
                self.log(LogEvent::InitializeRefused(status));
                back_to_held(self);
                let error = self.refusal(status, reason);
                self.dispatch(LinkEvent::InitializeRefused { seq, status, error }, now);
            }
            Ending::Failed(NetworkError::Connect(_))
                if !is_initialize && self.link.transport().is_some() =>
            {
                back_to_held(self);
                let event = match self.link.transport() {
                    // Never reached the server: the Link retries it after a delay.
                    Some(Transport::Streamable) => LinkEvent::Unreachable { seq },
                    // Never reached the server: keep it for the next connection.
                    _ => LinkEvent::SessionExpired { seq, retried },
                };
                self.dispatch(event, now);
            }
            Ending::Refused { status, reason } => {
                let error = self.refusal(status, reason);
                self.fail_seq(seq, error.clone());
                if is_initialize {
                    self.host_initialize = None;
                    self.dispatch(LinkEvent::InitializeFailed, now);
                }
            }
            Ending::Failed(error) => {
                let error = RequestError::Network(error);
                self.fail_seq(seq, error.clone());
                if is_initialize {
                    self.host_initialize = None;
                    self.dispatch(LinkEvent::InitializeFailed, now);
                }
            }
            Ending::Oversized(detail) => {
                let error = RequestError::Oversized(detail);
                self.fail_seq(seq, error.clone());
                if is_initialize {
                    self.host_initialize = None;
                    self.dispatch(LinkEvent::InitializeFailed, now);
                }
            }
            Ending::Done {
                last_event_id,
                retry_ms,
                broken,
            } => {
                let key = id_key.filter(|_| owed || is_initialize);
                let Some(key) = key else {
                    self.messages.remove(&seq);
                    return;
                };
                match (last_event_id, broken) {
                    // MCP 2026-07-28 has no resumption: a stream that ends without the
                    // answer loses the request.
                    (_, broken) if self.modern() => {
                        if !self.reissue(seq, now) {
                            let why = broken.unwrap_or_else(|| "it ended".to_owned());
                            self.fail_seq(seq, RequestError::StreamBroke(why));
                        }
                    }
                    (Some(last), _) if !self.modern() => {
                        if let Some(entry) = self.messages.get_mut(&seq) {
                            entry.stage = Stage::Resuming { stream: seq };
                            entry.bytes = Bytes::new();
                        }
                        self.start_resume(seq, &key, Some(last), retry_ms, now);
                    }
                    (_, Some(why)) => self.fail_seq(seq, RequestError::StreamBroke(why)),
                    (_, None) => self.fail_seq(seq, RequestError::NoAnswer),
                }
            }
            Ending::Accepted => {
                // The host's `initialize` answered from memory is owed nothing but is
                // still awaited: what the host sent since waits for it.
                let Some(key) = id_key.filter(|_| owed || is_initialize) else {
                    self.messages.remove(&seq);
                    return;
                };
                if connection != 0 && self.live_connection != Some(connection) {
                    // Accepted by the server, but its answer was to come on a stream that died meanwhile.
                    self.fail_seq(seq, RequestError::Dropped);
                } else {
                    self.log(LogEvent::Accepted(key));
                    if let Some(entry) = self.messages.get_mut(&seq) {
                        entry.stage = Stage::Accepted { connection };
                        entry.bytes = Bytes::new();
                    }
                }
            }
        }
    }

    /// The error for a refusal: a retired URL says where to go.
    fn refusal(&self, status: u16, reason: Option<&'static str>) -> RequestError {
        match status {
            410 => RequestError::Gone(self.gone_to.clone()),
            _ => RequestError::Refused { status, reason },
        }
    }

    fn note_need(&mut self, status: u16, challenge: BearerChallenge) {
        let need = match (status, &challenge.scope) {
            (403, Some(scope)) => Need::InsufficientScope {
                scope: scope.clone(),
            },
            _ => Need::Unauthorized {
                scope: challenge.scope.clone(),
            },
        };
        self.last_need = Some((need, challenge));
    }

    /// An exchange ended: what it means depends on what it was for.
    fn ended(&mut self, role: Role, ending: Ending, now: Instant) {
        match role {
            Role::Post { seq } => self.post_ended(seq, ending, now),
            Role::Reinit => {
                self.reinit_exchange = None;
                match ending {
                    // On the legacy transport the answer comes on the event stream, after the 202.
                    Ending::Accepted => self.watch_reinit(now),
                    _ if self.reinit_id.is_some() => {
                        self.reinit_id = None;
                        let error = match ending {
                            Ending::Refused { status, reason } => {
                                RequestError::Refused { status, reason }
                            }
                            Ending::Failed(e) => RequestError::Network(e),
                            Ending::Expired => RequestError::Refused {
                                status: 404,
                                reason: Some("Not Found"),
                            },
                            _ => RequestError::NoAnswer,
                        };
                        self.dispatch(LinkEvent::ReinitFailed { error }, now);
                    }
                    _ => {}
                }
            }
            Role::Check { number, ping } => self.check_ping_ended(number, ping, ending, now),
            Role::Ping => {
                if !matches!(ending, Ending::Accepted | Ending::Done { .. }) {
                    self.log(LogEvent::KeepAliveFailed);
                }
                // Any HTTP answer (even 401 or 404) shows the server is there; only a
                // network failure, or no answer by the next tick, means silence.
                if !matches!(ending, Ending::Failed(_))
                    && self.link.transport() == Some(Transport::Streamable)
                {
                    self.ping_outstanding = None;
                }
            }
            Role::Initialized => {
                match &ending {
                    Ending::Refused { status, reason } => {
                        self.log(LogEvent::InitializedFailed(RequestError::Refused {
                            status: *status,
                            reason: *reason,
                        }))
                    }
                    Ending::Failed(e) => self.log(LogEvent::InitializedFailed(
                        RequestError::Network(e.clone()),
                    )),
                    _ => {}
                }
                self.dispatch(LinkEvent::InitializedDelivered, now);
            }
            Role::Stream(StreamRef::Legacy) => self.legacy_stream_ended(ending, now),
            Role::Stream(which) => {
                let event = match ending {
                    Ending::Unauthorized { status, .. } | Ending::Refused { status, .. } => {
                        StreamEvent::Refused { status }
                    }
                    Ending::Done {
                        last_event_id,
                        retry_ms,
                        broken,
                    } => {
                        if let Some(why) = broken {
                            self.log(LogEvent::GetStreamBroke(why));
                        }
                        StreamEvent::Ended {
                            now,
                            last_event_id,
                            retry_ms,
                        }
                    }
                    Ending::Failed(e) => {
                        self.log(LogEvent::GetStreamBroke(e.to_string()));
                        StreamEvent::Failed { now }
                    }
                    _ => StreamEvent::Failed { now },
                };
                let mut budget = None;
                if let Some(stream) = self.streams.get_mut(&which) {
                    stream.exchange = None;
                    if let (StreamRef::Resume(seq), None) = (which, stream.broken_at) {
                        // It streamed, then broke again: a new budget from now.
                        stream.broken_at = Some(now);
                        budget = Some(seq);
                    }
                }
                if let Some(seq) = budget {
                    self.set_timer(now + RESUME_BUDGET, Timer::ResumeBudget(seq));
                }
                self.drive_stream(which, event, now);
            }
            Role::Relist { seq } => {
                // Whatever the list said (it updated the annotations), the call goes once more.
                if let Some(entry) = self.messages.get_mut(&seq) {
                    entry.stage = Stage::Held;
                }
                self.post_message(seq, true, now);
            }
            Role::Delete => {
                match ending {
                    Ending::Failed(e) => self.log(LogEvent::SessionEndFailed(e)),
                    Ending::Refused { status, .. } | Ending::Unauthorized { status, .. } => {
                        self.log(LogEvent::SessionEnded(status))
                    }
                    _ => self.log(LogEvent::SessionEnded(200)),
                }
                self.close();
            }
        }
    }

    /// The resumption of message `seq` has had its time: if it is not streaming, its
    /// request fails (its fate is unknown).
    fn resume_due(&mut self, seq: u64, now: Instant) {
        let which = StreamRef::Resume(seq);
        let late = self
            .streams
            .get(&which)
            .and_then(|s| s.broken_at)
            .is_some_and(|at| now >= at + RESUME_BUDGET);
        if !late {
            return;
        }
        self.drive_stream(which, StreamEvent::Closed, now);
        self.streams.remove(&which);
        if let Some(key) = self.messages.get(&seq).and_then(|e| e.id_key.clone()) {
            self.fail_key(&key, RequestError::ResumeFailed);
        }
    }

    /// A GET stream's response headers said "stream": it is open.
    fn stream_opened(&mut self, which: StreamRef, now: Instant) {
        if let Some(stream) = self.streams.get_mut(&which) {
            stream.broken_at = None;
        }
        // For the legacy stream, the open time-out applies until the `endpoint` event.
        self.drive_stream(which, StreamEvent::Connected { now }, now);
    }

    /// The legacy event stream answered, ended or failed: tell the Link, then the stream machine.
    fn legacy_stream_ended(&mut self, ending: Ending, now: Instant) {
        self.legacy_open.started = None;
        let mut lost = None;
        if let Some(stream) = self.streams.get_mut(&StreamRef::Legacy) {
            stream.exchange = None;
        }
        let (link_event, stream_event) = match ending {
            Ending::Unauthorized { status, challenge } => {
                self.last_need = Some((
                    Need::Unauthorized {
                        scope: challenge.scope.clone(),
                    },
                    challenge,
                ));
                (
                    LinkEvent::StreamUnauthorized,
                    StreamEvent::Refused { status },
                )
            }
            Ending::Done {
                last_event_id,
                retry_ms,
                broken,
            } => {
                self.log(LogEvent::LegacyStreamEnded(broken));
                self.check = None;
                lost = self.live_connection.take();
                let link_event = if lost.is_some() {
                    LinkEvent::LegacyStreamLost
                } else {
                    LinkEvent::LegacyFailed {
                        error: RequestError::NoEndpoint,
                    }
                };
                (
                    link_event,
                    StreamEvent::Ended {
                        now,
                        last_event_id,
                        retry_ms,
                    },
                )
            }
            Ending::Refused { status, reason } => (
                LinkEvent::LegacyRefused {
                    status,
                    error: self.refusal(status, reason),
                },
                StreamEvent::Refused { status },
            ),
            Ending::Failed(e) => (
                LinkEvent::LegacyFailed {
                    error: RequestError::Network(e),
                },
                StreamEvent::Failed { now },
            ),
            Ending::Oversized(detail) => (
                LinkEvent::LegacyFailed {
                    error: RequestError::Oversized(detail),
                },
                StreamEvent::Failed { now },
            ),
            Ending::Accepted | Ending::Expired | Ending::Busy(_) => (
                LinkEvent::LegacyFailed {
                    error: RequestError::NotEventStream,
                },
                StreamEvent::Failed { now },
            ),
        };
        let unauthorized = link_event == LinkEvent::StreamUnauthorized;
        self.dispatch(link_event, now);
        if unauthorized {
            // The host's `initialize` waits for this stream, and now for a sign-in.
            let seq = self.host_initialize.as_ref().and_then(|k| self.owed.get(k));
            if let Some(seq) = seq.copied() {
                self.answer_initialize_from_memory(seq);
            }
        }
        if let Some(connection) = lost {
            // POSTs made under the lost connection and still without their 202: whatever
            // the server does with them, their answers were to come on the stream that is
            // gone (and their own connection may be as dead as it).
            let doomed: Vec<(u64, ExchangeId)> = self
                .messages
                .iter()
                .filter_map(|(seq, e)| match e.stage {
                    Stage::Posted {
                        exchange,
                        connection: c,
                        ..
                    } if c == connection => Some((*seq, exchange)),
                    _ => None,
                })
                .collect();
            for (seq, exchange) in doomed {
                self.abort(exchange);
                self.fail_seq(seq, RequestError::Dropped);
            }
        }
        self.drive_stream(StreamRef::Legacy, stream_event, now);
    }

    /// The legacy stream's `endpoint` event.
    fn legacy_endpoint(&mut self, data: &str, now: Instant) {
        match transport::resolve_endpoint(&self.config.url, data) {
            Ok(endpoint) => {
                self.log(LogEvent::LegacyStreamReady);
                self.legacy_opened(now);
                self.connections += 1;
                self.live_connection = Some(self.connections);
                self.dispatch(
                    LinkEvent::EndpointReceived {
                        endpoint: endpoint.to_string(),
                    },
                    now,
                );
            }
            Err(e) => {
                self.log(LogEvent::EndpointRejected(e.clone()));
                self.dispatch(LinkEvent::EndpointRejected { error: e }, now);
            }
        }
    }
}
