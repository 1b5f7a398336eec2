//! One seed's world: the host, the shipped connection [`Engine`] (its host side
//! answers every request once; its network side speaks to the server), the Grant, a simulated network and a simulated MCP server
//! speaking either transport at the HTTP level — heads, body chunks and ends, exactly
//! what the Session actor feeds the engine.
//!
//! The network misbehaves on purpose: connections refused, requests lost before or
//! after the server saw them, slow answers, and silent periods (blackholes: nothing
//! made during one, or in flight when it begins, arrives any more — the VPN flap that
//! leaves no FIN and no RST). The server forgets sessions (404, or 400 as the
//! TypeScript SDK's servers say it), asks for tokens (401) and for patience (503 with
//! `Retry-After`), runs slow tool calls, answers twice now and then, sends garbage,
//! breaks response streams after their priming event (the engine resumes them with
//! `Last-Event-ID`) and is killed and restarted (connections refused meanwhile, every
//! session and stored event forgotten). On the legacy transport its event stream
//! breaks, dies silently or is forgotten, and some servers answer a POST `202` with
//! a JSON content type and the body `Accepted`.
//!
//! The invariants of DESIGN.md are checked after every step, against what the host
//! saw, what the server did and what the engine reported; see [`World::check`].

use super::common::{
    cancelled, counters, initialized, ms, refresh_ended, request, sign_in_ended, Simulation,
    Timeline, TokenGlue, Tokens, LAST_REQUEST_AT, REQUESTS,
};
use super::Rng;
use machines::engine::{
    Engine, EngineConfig, Event, Exchange, ExchangeId, ExchangeResult, HostConfig, LogEvent,
    Method, NetworkError, Purpose, RequestError, ResponseHead, TokenOutcome, Transmit,
    RESUME_BUDGET,
};
use machines::jsonrpc::{IdKey, Incoming, Kind, Message};
use machines::link::Strategy;
use machines::stream::{StreamCheck, MIN_RECONNECT_DELAY};
use machines::trace::TraceRecord;
use machines::transport::TCP_USER_TIMEOUT;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use url::Url;

/// The `--request-timeout` in the simulation.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `--connect-timeout`'s default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest delay any reconnection may be given (the legacy and reconnect
/// policies' ceiling, 10 s, plus full jitter).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(20);
/// A check gives up (or confirms) within this long: `GIVE_UP` plus the longest answer wait.
const MAX_CHECK: Duration = Duration::from_secs(8 + 5 + 1);
const _: () = assert!(StreamCheck::GIVE_UP.as_secs() == 8);

/// Which transport the server speaks (the engine is told `--transport http-only` or `sse-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Streamable HTTP.
    Streamable,
    /// Legacy HTTP+SSE.
    Legacy,
    /// Streamable HTTP at MCP 2026-07-28 (no `initialize`, no sessions, no resumption;
    /// the host cancels some of its requests).
    Modern,
}

/// What happens next, at a simulated time.
#[derive(Debug, Clone)]
enum Ev {
    /// The host sends request `id` (`0` is its `initialize`).
    HostRequest(u64),
    /// The host's `notifications/initialized`, after it saw its `initialize` answered.
    HostInitialized,
    /// An exchange's request reaches the server.
    Arrive(ExchangeId),
    /// An exchange's response head reaches the proxy.
    Head(ExchangeId, ResponseHead),
    /// Bytes of an exchange's body reach the proxy.
    Body(ExchangeId, Vec<u8>),
    /// An exchange ends, as the proxy sees it.
    End(ExchangeId, ExchangeResult),
    /// The engine's deadline.
    EngineTimer,
    /// The browser sign-in ended.
    SignInDone { ok: bool },
    /// The token refresh ended.
    RefreshDone { ok: bool },
    /// The server forgets its sessions.
    ServerForgets,
    /// The server process is killed (`true`) or started again.
    ServerDown(bool),
    /// The network goes silent (`true`) or comes back.
    Blackhole(bool),
    /// The legacy event stream breaks (FIN) or dies silently.
    StreamFault { silent: bool },
    /// TCP gives up on a dead connection (keep-alive, `TCP_USER_TIMEOUT`) or on a
    /// connect that got no answer (`--connect-timeout`): the proxy sees the error.
    TcpDead(ExchangeId, NetworkError),
    /// The host cancels its request (`notifications/cancelled`).
    HostCancels(u64),
    /// The slow tool call `post` finishes and its answer is sent.
    SlowDone {
        flow: ExchangeId,
        id: u64,
        sse: bool,
    },
}

/// An exchange as the network and the server see it.
struct Flow {
    /// What the proxy asked for.
    exchange: Exchange,
    /// When it started, in simulated milliseconds.
    started: u64,
    /// The proxy dropped it: nothing of it goes anywhere any more.
    aborted: bool,
    /// A blackhole or a killed server took it: nothing of it arrives any more.
    dead: bool,
    /// The server's legacy stream: it carries that session's answers.
    legacy_session: Option<u64>,
}

counters! {
/// How often each path was taken, so the tests prove they exercised them.
pub struct Stats {
    /// Machine steps the engine's trace reported (traced seeds only).
    trace_steps: u64,
    /// Blackholes that began.
    blackholes: u64,
    /// Host POSTs a blackhole swallowed.
    swallowed: u64,
    /// Tool calls the server took seconds to answer.
    slow_calls: u64,
    /// Checks begun.
    checks: u64,
    /// Checks that confirmed the connection.
    checks_confirmed: u64,
    /// Checks that found nothing getting through (`PeerSilent`).
    checks_silent: u64,
    /// Host requests failed as lost in a silent network.
    abandoned: u64,
    /// Re-initializations begun.
    reinits: u64,
    /// POSTs answered 404 for a session the server forgot.
    expired_404: u64,
    /// POSTs answered 400 "No valid session ID" for a session the server forgot.
    expired_400: u64,
    /// Link retry delays.
    retries: u64,
    /// Token requests.
    token_requests: u64,
    /// Host `initialize`s answered from the remembered answer during a sign-in.
    early_initializes: u64,
    /// Response streams broken after their priming event.
    streams_broken: u64,
    /// Resumptions begun.
    resumes: u64,
    /// Answers that came on a resumption.
    resumed_answers: u64,
    /// Resumptions given up (killed server).
    resumes_failed: u64,
    /// Server restarts.
    restarts: u64,
    /// Legacy streams opened.
    legacy_streams: u64,
    /// Legacy streams broken or killed silently.
    legacy_stream_faults: u64,
    /// Legacy POSTs answered 202 with a JSON content type and a non-JSON body.
    odd_accepted: u64,
    /// Garbage the server sent.
    garbage: u64,
    /// Answers from the server that reached the host.
    ok: u64,
    /// Errors from the proxy that reached the host (time-outs aside).
    errors: u64,
    /// Answers given by the request time-out.
    timeouts: u64,
    /// Of those: the network had been back, and the request in flight, for 10 s.
    timeouts_after_network_back: u64,
    /// `server/discover` probes that reached a 2026-07-28 server.
    discovers: u64,
    /// Requests the host cancelled before their answer.
    cancels: u64,
    /// Of those: the cancellation closed the request's stream on the wire.
    cancels_closed: u64,
}
}

pub struct World {
    mode: Mode,
    rng: Rng,
    /// Simulated time zero.
    t0: Instant,
    /// Simulated time, in milliseconds.
    now: u64,
    queue: Timeline<Ev>,
    trace: Option<Vec<String>>,
    engine: Engine,
    /// Why the proxy is failing the request whose error the host is about to read.
    failing: Option<RequestError>,
    tokens: Tokens,
    /// When the engine's timer events are scheduled.
    engine_timers: BTreeSet<u64>,

    // the network and the server
    flows: BTreeMap<ExchangeId, Flow>,
    blackholes: Vec<(u64, u64)>,
    server_down: bool,
    /// When the server last came up.
    server_up_since: u64,
    /// The session the server knows (Streamable HTTP).
    session: Option<String>,
    /// Sessions issued.
    sessions: u64,
    /// Legacy: the session whose stream is up, and the session of each endpoint.
    legacy_live: Option<u64>,
    /// Stored response-stream events for resumption: priming event id → the answer.
    stored: HashMap<String, Option<String>>,
    /// Some servers answer the legacy POST 202 with `Accepted` as JSON.
    odd_accepted: bool,
    /// Forgotten sessions are answered 400 (the TypeScript SDK's servers) instead of 404.
    says_400: bool,
    /// Executions per host request id.
    executions: HashMap<u64, u32>,

    // the host and the bookkeeping of invariants
    answers: HashMap<u64, u32>,
    /// When each request was sent by the host.
    sent_at: HashMap<u64, u64>,
    /// When the current check began.
    check_started: Option<u64>,
    /// The engine was checking the connection before the current input (a POST decided
    /// in the same input, before a check began, may still start).
    checking_before: bool,
    /// The host's `initialize` was answered with a result: a session exists.
    initialized_ok: bool,
    /// Tool calls the server is still working on.
    slow_until: HashMap<u64, u64>,
    /// Flows the killed server reset: their end still reaches the proxy.
    killed: Vec<ExchangeId>,
    /// When each request's response stream broke and its resumption began.
    resuming_since: HashMap<IdKey, u64>,
    /// Resumed streams waiting for an answer still being worked on, by priming event id.
    resume_flows: HashMap<String, ExchangeId>,
    /// The request each priming event id belongs to.
    prime_owner: HashMap<String, u64>,
    stats: Stats,
    flags: BTreeMap<&'static str, u64>,
    /// Requests the host cancelled before their answer: none may come any more.
    cancelled: BTreeSet<u64>,
    /// The request the host is cancelling in the current step (only its stream may close).
    cancelling: Option<u64>,
    /// With the engine's trace on: each machine's state as its last step said. The
    /// next step of that machine must start there (the trace is a true account).
    traced: BTreeMap<(&'static str, Option<String>), String>,
}

impl World {
    pub fn new(mode: Mode, seed: u64, trace: bool) -> World {
        let mut rng = Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1656_67B1_9E37_79F9) | 1);
        let mut blackholes = Vec::new();
        if rng.chance(60) {
            let mut after = 0;
            for _ in 0..1 + rng.below(2) {
                let start = after + 1_000 + rng.below(25_000);
                let length = match rng.below(10) {
                    0..=3 => 300 + rng.below(6_000),
                    4..=7 => 6_000 + rng.below(14_000),
                    _ => 20_000 + rng.below(25_000),
                };
                blackholes.push((start, start + length));
                after = start + length;
            }
        }
        let keepalive = rng.chance(20).then(|| 5_000 + rng.below(10_000));
        let t0 = Instant::now();
        let engine = Engine::new(
            EngineConfig {
                url: Url::parse("http://127.0.0.1:9/mcp").unwrap(),
                max_message_bytes: 1 << 20,
                seed,
                strategy: match mode {
                    Mode::Streamable | Mode::Modern => Strategy::HttpOnly,
                    Mode::Legacy => Strategy::SseOnly,
                },
                remembered: None,
                ping_interval: keepalive.map(Duration::from_millis),
                headers_timeout: None,
                host: HostConfig {
                    request_timeout: Some(REQUEST_TIMEOUT),
                    ..Default::default()
                },
                trace: seed.is_multiple_of(2),
                protocol: match mode {
                    Mode::Modern => machines::engine::ProtocolMode::Auto,
                    _ => machines::engine::ProtocolMode::Legacy,
                },
                remembered_era: None,
                // A third of the seeds remember the server's answer from a last session:
                // a sign-in then answers the host's initialize from it.
                remembered_initialize: (mode != Mode::Modern && seed.is_multiple_of(3))
                    .then(|| r#"{"protocolVersion":"2025-06-18"}"#.to_owned()),
            },
            t0,
        );
        let odd_accepted = rng.chance(30);
        let says_400 = rng.chance(40);
        World {
            mode,
            rng,
            t0,
            now: 0,
            queue: Timeline::new(),
            trace: trace.then(Vec::new),
            engine,
            failing: None,
            tokens: Tokens::new(),
            engine_timers: BTreeSet::new(),
            flows: BTreeMap::new(),
            blackholes,
            server_down: false,
            server_up_since: 0,
            session: None,
            sessions: 0,
            legacy_live: None,
            stored: HashMap::new(),
            odd_accepted,
            says_400,
            executions: HashMap::new(),
            answers: HashMap::new(),
            sent_at: HashMap::new(),
            check_started: None,
            checking_before: false,
            initialized_ok: false,
            slow_until: HashMap::new(),
            killed: Vec::new(),
            resuming_since: HashMap::new(),
            prime_owner: HashMap::new(),
            resume_flows: HashMap::new(),
            stats: Stats::default(),
            flags: BTreeMap::new(),
            cancelled: BTreeSet::new(),
            cancelling: None,
            traced: BTreeMap::new(),
        }
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now)
    }

    fn at(&mut self, delay_ms: u64, ev: Ev) {
        self.queue.push(self.now + delay_ms, ev);
    }

    fn log(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>7} ms  {}", self.now, what()));
        }
    }

    pub fn flag(&mut self, what: &'static str) {
        let now = self.now;
        self.log(|| format!("FLAG {what}"));
        self.flags.entry(what).or_insert(now);
    }

    /// Network latency: usually short, sometimes seconds.
    fn latency(&mut self) -> u64 {
        if self.rng.chance(3) {
            1_000 + self.rng.below(2_000)
        } else {
            1 + self.rng.below(150)
        }
    }

    /// The flows still alive (neither aborted by the proxy nor dead).
    fn open_flows(&self) -> Vec<ExchangeId> {
        self.flows
            .iter()
            .filter(|(_, f)| !f.aborted && !f.dead)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Whether a blackhole was on at some moment since `started` (up to now).
    fn swallowed(&self, started: u64) -> bool {
        self.blackholes
            .iter()
            .any(|&(s, e)| s <= self.now && e > started)
    }

    /// Whether the network is silent now.
    fn in_blackhole(&self) -> bool {
        self.blackholes
            .iter()
            .any(|&(s, e)| s <= self.now && e > self.now)
    }

    /// How long the network and the server have been up (0 during a blackhole or while
    /// the server is down).
    fn back_for(&self) -> u64 {
        if self.server_down {
            return 0;
        }
        let mut up_since = self.server_up_since;
        for &(s, e) in &self.blackholes {
            if s <= self.now {
                if e > self.now {
                    return 0;
                }
                up_since = up_since.max(e);
            }
        }
        self.now - up_since
    }

    /// Whether what the network carries for `id` now still arrives.
    fn carries(&mut self, id: ExchangeId) -> bool {
        let (started, purpose) = match self.flows.get(&id) {
            None => return false,
            Some(f) if f.aborted || f.dead => return false,
            Some(f) => (f.started, f.exchange.purpose),
        };
        if self.swallowed(started) {
            self.flows.get_mut(&id).unwrap().dead = true;
            if purpose == Purpose::HostMessage {
                self.stats.swallowed += 1;
            }
            self.log(|| format!("{id} swallowed by the blackhole"));
            return false;
        }
        true
    }

    // ---- the host ----

    fn host(&mut self, m: Message) {
        let now = self.instant();
        if let Some(IdKey::Num(n)) = &m.id_key {
            self.sent_at.insert(n.parse().unwrap(), self.now);
        }
        self.log(|| format!("host -> {:?} {:?}", m.method, m.id_key));
        self.engine.handle_host(Incoming::Single(m), now);
        self.drain();
    }

    /// Invariant 1: only JSON-RPC reaches the host, one message a line; invariant 2:
    /// one answer per request, never one of the proxy's own.
    fn host_receives(&mut self, bytes: Vec<u8>) {
        let failure = self.failing.take();
        assert!(!bytes.contains(&b'\n'), "a line for the host spans lines");
        let m = Message::parse(bytes).expect("the host got something that is not JSON-RPC");
        self.log(|| {
            format!(
                "host <- {}",
                String::from_utf8_lossy(&m.bytes)
                    .chars()
                    .take(160)
                    .collect::<String>()
            )
        });
        let key = m.id_key.clone();
        assert!(
            !key.as_ref().is_some_and(IdKey::is_reserved),
            "the host saw the answer to a request of the proxy's own: {}",
            String::from_utf8_lossy(&m.bytes)
        );
        let Some(IdKey::Num(n)) = key else {
            return;
        };
        let n: u64 = n.parse().unwrap();
        assert!(
            !self.cancelled.contains(&n),
            "request {n} was answered after the host cancelled it"
        );
        if matches!(failure, Some(RequestError::TimedOut(_))) {
            self.stats.timeouts += 1;
            let sent = self.sent_at.get(&n).copied().unwrap_or(0);
            if self.back_for() >= 10_000 && self.now - sent >= 10_000 && !self.slow_running(n) {
                self.stats.timeouts_after_network_back += 1;
                self.flag(TIMEOUT_AFTER_NETWORK_BACK);
            }
        } else if m.is_error {
            self.stats.errors += 1;
        } else {
            self.stats.ok += 1;
        }
        let count = self.answers.entry(n).or_default();
        *count += 1;
        assert!(*count <= 1, "request {n} answered {count} times");
        if n == 0 && !m.is_error {
            self.initialized_ok = true;
            let delay = 1 + self.rng.below(20);
            self.at(delay, Ev::HostInitialized);
        }
    }

    /// Whether the server is still working on request `n` (a slow tool call).
    fn slow_running(&self, n: u64) -> bool {
        self.slow_until.get(&n).is_some_and(|&t| t > self.now)
    }

    // ---- the engine ----

    /// After every input, every output, in order (the driving contract).
    fn drain(&mut self) {
        loop {
            let mut idle = true;
            while let Some(t) = self.engine.poll_transmit() {
                idle = false;
                match t {
                    Transmit::Start(exchange) => self.start(exchange),
                    Transmit::Abort(id) => {
                        self.log(|| format!("abort {id}"));
                        if let (Some(n), Some(f)) = (self.cancelling, self.flows.get(&id)) {
                            // Cancellation closes exactly the cancelled request's stream.
                            let carried = f.exchange.body.as_deref().and_then(|b| {
                                Message::parse(b.to_vec()).ok().and_then(|m| m.id_key)
                            });
                            assert_eq!(
                                carried,
                                Some(IdKey::Num(n.to_string())),
                                "cancelling {n} closed another exchange ({id})"
                            );
                            self.stats.cancels_closed += 1;
                        }
                        // A resumption the engine gives up on broke as far as it knows.
                        self.note_resume_broke(id);
                        if let Some(f) = self.flows.get_mut(&id) {
                            f.aborted = true;
                        }
                    }
                }
            }
            while let Some(event) = self.engine.poll_event() {
                idle = false;
                self.event(event);
            }
            if idle {
                break;
            }
        }
        if let Some(at) = self.engine.poll_timeout() {
            let at = ms(at.saturating_duration_since(self.t0)).max(self.now);
            if self.engine_timers.insert(at) {
                self.queue.push(at, Ev::EngineTimer);
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::ToHost(line) => self.host_receives(line.bytes),
            Event::NeedToken { .. } => {
                self.stats.token_requests += 1;
                self.request_token();
            }
            Event::TokenWorked => self.token_worked(),
            Event::RememberTransport(_) | Event::ForgetTransport | Event::RememberInitialize(_) => {
            }
            Event::Log(line) => self.log_event(line),
            Event::Trace(record) => self.trace_record(record),
            Event::Closed => self.log(|| "closed".into()),
        }
    }

    /// The proxy fails the host's request `id_key` (its error line comes next).
    fn request_failed(&mut self, id_key: IdKey, error: RequestError) {
        {
            if error.fate_unknown() {
                self.stats.abandoned += 1;
            }
            if error == RequestError::ResumeFailed {
                self.stats.resumes_failed += 1;
                // A killed server costs the request at most the resumption budget
                // (from the break, or from a later break of the resumed stream).
                let since = self
                    .resuming_since
                    .get(&id_key)
                    .copied()
                    .unwrap_or(self.now);
                if self.now.saturating_sub(since) > ms(RESUME_BUDGET) + 3_000 {
                    self.flag(RESUME_TOO_SLOW);
                }
            }
            self.failing = Some(error);
        }
    }

    /// What the engine says of itself, checked against the invariants it concerns.
    /// A trace step starts in the state the same machine's last step ended in.
    fn trace_record(&mut self, record: TraceRecord) {
        if let TraceRecord::Step(step) = record {
            self.log(|| {
                format!(
                    "trace: {} {} --{}--> {}",
                    step.machine, step.from, step.event, step.to
                )
            });
            let key = (step.machine, step.instance.clone());
            // A stream that closed is replaced by a new machine of the same name, which
            // starts idle; anything else must continue where the last step ended.
            let replaced =
                step.from == "idle" && self.traced.get(&key).is_some_and(|l| l == "closed");
            if let Some(last) = self.traced.get(&key).filter(|_| !replaced) {
                assert_eq!(
                    *last, step.from,
                    "{} {:?} stepped from {} but its last step ended in {last}",
                    step.machine, step.instance, step.from
                );
            }
            self.traced.insert(key, step.to);
            self.stats.trace_steps += 1;
        }
    }

    fn log_event(&mut self, line: LogEvent) {
        self.log(|| format!("engine: {line}"));
        match line {
            LogEvent::RequestFailed(id_key, error) => self.request_failed(id_key, error),
            LogEvent::RetryingIn(d) | LogEvent::StreamRetryIn(d) => {
                if matches!(line, LogEvent::RetryingIn(_)) {
                    self.stats.retries += 1;
                }
                // Never reconnect without a delay, and never for too long.
                assert!(
                    d >= MIN_RECONNECT_DELAY.min(Duration::from_millis(100)),
                    "a retry without a delay: {d:?}"
                );
                assert!(d <= MAX_RETRY_DELAY, "a retry delay of {d:?}");
            }
            LogEvent::InitializeFromMemory => self.stats.early_initializes += 1,
            LogEvent::CheckStarted(_) | LogEvent::QuietBeforeSend => {}
            LogEvent::ConnectionConfirmed => {
                self.stats.checks_confirmed += 1;
            }
            LogEvent::StillSilent(_) => self.stats.checks_silent += 1,
            LogEvent::Reinitializing => self.stats.reinits += 1,
            LogEvent::Resuming(key) => {
                self.stats.resumes += 1;
                self.resuming_since.insert(key, self.now);
            }
            LogEvent::OpeningLegacyStream => self.stats.legacy_streams += 1,
            _ => {}
        }
    }

    // ---- the network and the server ----

    fn start(&mut self, exchange: Exchange) {
        let id = exchange.id;
        self.log(|| format!("start {id} {:?} {:?}", exchange.method, exchange.purpose));
        if exchange.purpose == Purpose::HostMessage
            && self.engine.checking()
            && self.checking_before
        {
            // `CheckStream`: messages wait during a check, the host's
            // `notifications/initialized` excepted.
            let body = exchange.body.as_deref().unwrap_or_default();
            let m = Message::parse(body.to_vec()).unwrap();
            assert_eq!(
                m.method.as_deref(),
                Some("notifications/initialized"),
                "a host message went during a check"
            );
        }
        if exchange.purpose == Purpose::HostMessage && self.mode == Mode::Streamable {
            let body = exchange.body.as_deref().unwrap_or_default();
            let m = Message::parse(body.to_vec()).unwrap();
            let has_session = exchange.headers.iter().any(|(n, _)| n == "mcp-session-id");
            let established = self.answers.contains_key(&0) && self.initialized_ok;
            if m.method.as_deref() != Some("initialize") && !has_session && established {
                self.flag(NO_SESSION);
            }
        }
        self.flows.insert(
            id,
            Flow {
                exchange,
                started: self.now,
                aborted: false,
                dead: false,
                legacy_session: None,
            },
        );
        let latency = self.latency();
        if self.in_blackhole() {
            // The SYN goes into the silence: the connect times out.
            self.flows.get_mut(&id).unwrap().dead = true;
            if self.flows[&id].exchange.purpose == Purpose::HostMessage {
                self.stats.swallowed += 1;
            }
            let error = NetworkError::Connect("connect timed out".into());
            self.at(ms(CONNECT_TIMEOUT), Ev::TcpDead(id, error));
        } else if self.server_down || self.rng.chance(4) {
            // Refused at connect: it surely never reached the server.
            let error = NetworkError::Connect("connection refused".into());
            self.at(latency.min(50), Ev::End(id, Err(error)));
        } else if self.rng.chance(2) {
            // Lost before it reached the server.
            let error = NetworkError::Broken("connection reset".into());
            self.at(latency, Ev::End(id, Err(error)));
        } else {
            self.at(latency, Ev::Arrive(id));
        }
    }

    fn header<'a>(flow: &'a Flow, name: &str) -> Option<&'a str> {
        flow.exchange
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn execute(&mut self, id: u64) {
        let count = self.executions.entry(id).or_default();
        *count += 1;
        assert!(*count <= 1, "request {id} executed {count} times");
    }

    /// The server sends a head, then (later) body chunks, then the end.
    fn respond(
        &mut self,
        id: ExchangeId,
        after: u64,
        head: ResponseHead,
        chunks: Vec<Vec<u8>>,
        end: ExchangeResult,
    ) {
        self.at(after, Ev::Head(id, head));
        let mut t = after;
        for chunk in chunks {
            t += self.rng.below(20);
            self.at(t, Ev::Body(id, chunk));
        }
        t += self.rng.below(20);
        self.at(t, Ev::End(id, end));
    }

    fn head(status: u16, content_type: Option<&str>, session: Option<String>) -> ResponseHead {
        ResponseHead {
            status,
            content_type: content_type.map(str::to_owned),
            session_id: session,
            ..ResponseHead::default()
        }
    }

    fn json_answer(id: &str, result: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
    }

    /// A request reaches the server.
    fn arrive(&mut self, id: ExchangeId) {
        if !self.carries(id) {
            return;
        }
        if self.server_down {
            return; // its End comes from the kill
        }
        match self.mode {
            Mode::Streamable => self.arrive_streamable(id),
            Mode::Legacy => self.arrive_legacy(id),
            Mode::Modern => self.arrive_modern(id),
        }
    }

    /// A request reaches the 2026-07-28 server: only POSTs of requests, each with the
    /// protocol version in its header and its `_meta`, `Mcp-Method`, no session.
    fn arrive_modern(&mut self, id: ExchangeId) {
        let flow = &self.flows[&id];
        assert_eq!(
            flow.exchange.method,
            Method::Post,
            "only POSTs go to a 2026-07-28 server"
        );
        assert!(
            Self::header(flow, "mcp-session-id").is_none(),
            "no sessions in 2026-07-28"
        );
        let body = flow.exchange.body.clone().unwrap_or_default();
        let m =
            Message::parse(body.to_vec()).expect("the proxy POSTed something that is not JSON-RPC");
        let version = m.params().and_then(|p| {
            p.pointer("/_meta/io.modelcontextprotocol~1protocolVersion")
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        let stamped = Self::header(flow, "mcp-protocol-version") == Some("2026-07-28")
            && version.as_deref() == Some("2026-07-28")
            && Self::header(flow, "mcp-method") == m.method.as_deref();
        let latency = self.latency();
        if !stamped {
            // Once the era is known, everything goes in its form; before (the host's
            // initialize failed, and it sends on regardless) the server refuses.
            assert_ne!(
                self.engine.era(),
                Some(machines::engine::Era::Modern),
                "a request without its 2026-07-28 headers and _meta: {}",
                String::from_utf8_lossy(&m.bytes)
            );
            let head = Self::head(400, Some("application/json"), None);
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32020,"message":"missing headers"}}}}"#,
                m.id.as_deref().unwrap_or("null")
            );
            self.respond(id, latency, head, vec![body.into_bytes()], Ok(()));
            return;
        }
        assert_eq!(
            m.kind,
            Kind::Request,
            "only requests go to a 2026-07-28 server"
        );
        match m.method.as_deref() {
            Some("server/discover") => {
                let raw_id = m.id.clone().unwrap();
                if m.id_key == Some(IdKey::Num("0".into())) {
                    self.stats.discovers += 1;
                    if self.rng.chance(3) {
                        let mut head = Self::head(401, None, None);
                        head.www_authenticate = vec![r#"Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource""#.into()];
                        self.respond(id, latency, head, vec![], Ok(()));
                        return;
                    }
                }
                let answer = Self::json_answer(
                    &raw_id,
                    r#"{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"resultType":"complete"}"#,
                );
                let head = Self::head(200, Some("application/json"), None);
                let work = self.rng.below(100);
                self.respond(id, latency + work, head, vec![answer.into_bytes()], Ok(()));
            }
            Some("initialize") => panic!("a 2026-07-28 server never sees initialize"),
            _ => self.server_handles(id, m, None, latency),
        }
    }

    fn arrive_streamable(&mut self, id: ExchangeId) {
        let flow = &self.flows[&id];
        let method = flow.exchange.method;
        let session = Self::header(flow, "mcp-session-id").map(str::to_owned);
        let last_event = Self::header(flow, "last-event-id").map(str::to_owned);
        let body = flow.exchange.body.clone();
        let latency = self.latency();
        match method {
            Method::Delete => {
                self.respond(id, latency, Self::head(200, None, None), vec![], Ok(()));
            }
            Method::Get => {
                let stale = session.is_none() || session != self.session;
                match last_event {
                    Some(last) if !stale || self.stored.contains_key(&last) => {
                        match self.stored.get(&last).cloned() {
                            Some(answer) => {
                                // The resumed stream gets through: a later break has a budget of its own.
                                if let Some(n) = self.prime_owner.get(&last) {
                                    let key = IdKey::Num(n.to_string());
                                    self.resuming_since.insert(key, self.now + latency);
                                }
                                let head = Self::head(200, Some("text/event-stream"), None);
                                match answer {
                                    Some(answer) => {
                                        let event = format!("id: {last}-1\ndata: {answer}\n\n");
                                        self.stats.resumed_answers += 1;
                                        self.respond(
                                            id,
                                            latency,
                                            head,
                                            vec![event.into_bytes()],
                                            Ok(()),
                                        );
                                    }
                                    None => {
                                        // The work goes on: the stream stays open for its answer.
                                        self.at(latency, Ev::Head(id, head));
                                        self.resume_flows.insert(last, id);
                                    }
                                }
                            }
                            None => self.respond(
                                id,
                                latency,
                                Self::head(404, None, None),
                                vec![],
                                Ok(()),
                            ),
                        }
                    }
                    Some(_) => {
                        self.respond(id, latency, Self::head(404, None, None), vec![], Ok(()))
                    }
                    // The standalone stream: this server offers none.
                    None => self.respond(id, latency, Self::head(405, None, None), vec![], Ok(())),
                }
            }
            Method::Post => {
                let body = body.unwrap_or_default();
                let m = Message::parse(body.to_vec())
                    .expect("the proxy POSTed something that is not JSON-RPC");
                self.server_handles(id, m, session, latency);
            }
        }
    }

    /// A JSON-RPC message reaches the Streamable HTTP server on POST `id`.
    fn server_handles(
        &mut self,
        id: ExchangeId,
        m: Message,
        session: Option<String>,
        latency: u64,
    ) {
        let stale = session.is_none() || session != self.session;
        let raw_id = m.id.clone();
        let host_id: Option<u64> = match &m.id_key {
            Some(IdKey::Num(n)) => n.parse().ok(),
            _ => None,
        };
        match m.method.as_deref() {
            Some("initialize") if host_id.is_some() && self.rng.chance(8) => {
                // Not signed in (or the tokens were revoked): a sign-in before the session.
                let mut head = Self::head(401, None, None);
                head.www_authenticate = vec![r#"Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource""#.into()];
                self.respond(id, latency, head, vec![], Ok(()));
                return;
            }
            Some("initialize") => {
                if let Some(n) = host_id {
                    self.execute(n);
                }
                self.sessions += 1;
                self.session = Some(format!("s{}", self.sessions));
                let answer = if self.rng.chance(97) {
                    Self::json_answer(
                        raw_id.as_deref().unwrap(),
                        r#"{"protocolVersion":"2025-06-18"}"#,
                    )
                } else {
                    format!(
                        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":"no"}}}}"#,
                        raw_id.as_deref().unwrap()
                    )
                };
                let head = Self::head(200, Some("application/json"), self.session.clone());
                let work = self.rng.below(200);
                self.respond(id, latency + work, head, vec![answer.into_bytes()], Ok(()));
                return;
            }
            _ if stale && self.mode != Mode::Modern => {
                let head = if session.is_some() && !self.says_400 {
                    self.stats.expired_404 += 1;
                    Self::head(404, None, None)
                } else {
                    if session.is_some() {
                        self.stats.expired_400 += 1;
                    }
                    Self::head(400, Some("application/json"), None)
                };
                let body = br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}"#.to_vec();
                self.respond(id, latency, head, vec![body], Ok(()));
                return;
            }
            _ => {}
        }
        if m.kind != Kind::Request {
            self.respond(id, latency, Self::head(202, None, None), vec![], Ok(()));
            return;
        }
        if host_id.is_some() && self.rng.chance(3) {
            let mut head = Self::head(401, None, None);
            head.www_authenticate = vec![r#"Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource""#.into()];
            self.respond(id, latency, head, vec![], Ok(()));
            return;
        }
        if host_id.is_some() && self.rng.chance(2) {
            let mut head = Self::head(503, None, None);
            head.retry_after = Some((1 + self.rng.below(2)).to_string());
            self.respond(id, latency, head, vec![], Ok(()));
            return;
        }
        let Some(n) = host_id else {
            // A ping of the proxy's own.
            let answer = Self::json_answer(raw_id.as_deref().unwrap(), "{}");
            let head = Self::head(200, Some("application/json"), None);
            let work = self.rng.below(50);
            self.respond(id, latency + work, head, vec![answer.into_bytes()], Ok(()));
            return;
        };
        self.execute(n);
        let answer = Self::json_answer(raw_id.as_deref().unwrap(), "{}");
        let slow = self.rng.chance(8);
        let work = if slow {
            self.stats.slow_calls += 1;
            2_000 + self.rng.below(10_000)
        } else {
            self.rng.below(300)
        };
        if slow {
            self.slow_until.insert(n, self.now + work + latency);
        }
        match self.rng.below(100) {
            // Executed, then the answer was lost.
            0..=1 => self.at(
                work + latency,
                Ev::End(id, Err(NetworkError::Broken("reset".into()))),
            ),
            // An event stream: a priming event at once, the answer when the work is done;
            // sometimes the stream breaks after the priming event (the engine resumes).
            2..=49 => {
                let head = Self::head(200, Some("text/event-stream"), None);
                self.at(latency, Ev::Head(id, head));
                if self.mode != Mode::Modern {
                    // 2026-07-28 has no resumption, so no priming event.
                    let prime = format!("p{}", id.0);
                    self.stored.insert(prime.clone(), None);
                    self.prime_owner.insert(prime.clone(), n);
                    self.at(
                        latency + 1,
                        Ev::Body(id, format!("id: {prime}\ndata:\n\n").into_bytes()),
                    );
                }
                if self.rng.chance(15) {
                    self.stats.streams_broken += 1;
                    let broke = latency + 2 + self.rng.below(work + 1);
                    self.at(
                        broke,
                        Ev::End(id, Err(NetworkError::Broken("stream broke".into()))),
                    );
                }
                self.at(
                    work + latency,
                    Ev::SlowDone {
                        flow: id,
                        id: n,
                        sse: true,
                    },
                );
            }
            // A garbage line first, then the answer.
            50..=51 => {
                self.stats.garbage += 1;
                let head = Self::head(200, Some("application/json"), None);
                let body = format!("[{answer}, 7]").into_bytes();
                self.respond(id, work + latency, head, vec![body], Ok(()));
            }
            _ => self.at(
                work + latency,
                Ev::SlowDone {
                    flow: id,
                    id: n,
                    sse: false,
                },
            ),
        }
    }

    /// A tool call's work is done: its answer goes on its POST (and is stored for resumption).
    fn work_done(&mut self, flow: ExchangeId, n: u64, sse: bool) {
        let answer = Self::json_answer(&n.to_string(), "{}");
        if sse && self.mode == Mode::Modern {
            self.at(
                0,
                Ev::Body(flow, format!("data: {answer}\n\n").into_bytes()),
            );
            let tail = 1 + self.rng.below(30);
            self.at(tail, Ev::End(flow, Ok(())));
        } else if sse {
            let prime = format!("p{}", flow.0);
            self.stored.insert(prime.clone(), Some(answer.clone()));
            let twice = self.rng.chance(2);
            let mut body = format!("id: {prime}-1\ndata: {answer}\n\n");
            if twice {
                body.push_str(&format!("id: {prime}-2\ndata: {answer}\n\n"));
            }
            self.at(0, Ev::Body(flow, body.into_bytes()));
            let tail = 1 + self.rng.below(30);
            self.at(tail, Ev::End(flow, Ok(())));
        } else {
            let head = Self::head(200, Some("application/json"), None);
            self.respond(flow, 0, head, vec![answer.into_bytes()], Ok(()));
        }
    }

    fn arrive_legacy(&mut self, id: ExchangeId) {
        let flow = &self.flows[&id];
        let method = flow.exchange.method;
        let url = flow.exchange.url.clone();
        let body = flow.exchange.body.clone();
        let latency = self.latency();
        match method {
            Method::Delete => {
                self.respond(id, latency, Self::head(200, None, None), vec![], Ok(()))
            }
            Method::Get if self.sessions == 0 && self.rng.chance(8) => {
                // Not signed in (or the tokens were revoked): a sign-in before the stream.
                let mut head = Self::head(401, None, None);
                head.www_authenticate = vec![r#"Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource""#.into()];
                self.respond(id, latency, head, vec![], Ok(()));
            }
            Method::Get => {
                // A new connection: a new session, announced by its endpoint.
                self.sessions += 1;
                let session = self.sessions;
                self.legacy_live = Some(session);
                self.flows.get_mut(&id).unwrap().legacy_session = Some(session);
                let head = Self::head(200, Some("text/event-stream"), None);
                self.at(latency, Ev::Head(id, head));
                let endpoint = format!("event: endpoint\ndata: /messages?session={session}\n\n");
                self.at(latency + 1, Ev::Body(id, endpoint.into_bytes()));
            }
            Method::Post => {
                let session: Option<u64> = url
                    .query_pairs()
                    .find(|(k, _)| k == "session")
                    .and_then(|(_, v)| v.parse().ok());
                if session.is_none() || session != self.legacy_live {
                    self.stats.expired_404 += 1;
                    self.respond(id, latency, Self::head(404, None, None), vec![], Ok(()));
                    return;
                }
                let m = Message::parse(body.unwrap_or_default().to_vec()).unwrap();
                let accepted = if self.odd_accepted {
                    self.stats.odd_accepted += 1;
                    (
                        Self::head(202, Some("application/json"), None),
                        vec![b"Accepted".to_vec()],
                    )
                } else {
                    (Self::head(202, None, None), vec![])
                };
                self.respond(id, latency, accepted.0, accepted.1, Ok(()));
                if m.kind != Kind::Request {
                    return;
                }
                let host_id: Option<u64> = match &m.id_key {
                    Some(IdKey::Num(n)) => n.parse().ok(),
                    _ => None,
                };
                let answer = match m.method.as_deref() {
                    Some("initialize") => Self::json_answer(
                        m.id.as_deref().unwrap(),
                        r#"{"protocolVersion":"2024-11-05"}"#,
                    ),
                    _ => Self::json_answer(m.id.as_deref().unwrap(), "{}"),
                };
                if let Some(n) = host_id {
                    self.execute(n);
                }
                let work = match host_id.is_some() && self.rng.chance(8) {
                    true => {
                        self.stats.slow_calls += 1;
                        2_000 + self.rng.below(8_000)
                    }
                    false => self.rng.below(200),
                };
                if let (Some(n), true) = (host_id, work >= 2_000) {
                    self.slow_until.insert(n, self.now + latency + work);
                }
                // The answer goes on the stream of that session, if it is still up.
                let stream = self
                    .flows
                    .iter()
                    .find(|(_, f)| f.legacy_session == session && !f.aborted && !f.dead)
                    .map(|(k, _)| *k);
                if let Some(stream) = stream {
                    let event = format!("event: message\ndata: {answer}\n\n");
                    self.at(latency + work, Ev::Body(stream, event.into_bytes()));
                }
            }
        }
    }

    /// The legacy stream breaks (the proxy sees the end) or dies silently.
    fn stream_fault(&mut self, silent: bool) {
        let live = self
            .flows
            .iter()
            .find(|(_, f)| {
                f.legacy_session.is_some()
                    && f.legacy_session == self.legacy_live
                    && !f.aborted
                    && !f.dead
            })
            .map(|(k, _)| *k);
        let Some(stream) = live else {
            return;
        };
        self.stats.legacy_stream_faults += 1;
        self.legacy_live = None;
        if silent {
            self.flows.get_mut(&stream).unwrap().dead = true;
        } else {
            self.at(1, Ev::End(stream, Ok(())));
        }
    }

    /// The server process is killed: open connections are reset, everything is forgotten.
    fn kill(&mut self) {
        self.stats.restarts += 1;
        self.server_down = true;
        self.session = None;
        self.legacy_live = None;
        self.stored.clear();
        let open: Vec<ExchangeId> = self.open_flows();
        for id in open {
            self.flows.get_mut(&id).unwrap().dead = true;
            // The proxy sees the reset (the network is up): a fresh flow entry carries it.
            self.queue.push(
                self.now + 1,
                Ev::End(
                    id,
                    Err(NetworkError::Broken("connection reset by peer".into())),
                ),
            );
            self.killed.push(id);
        }
    }

    /// A resumption's stream ended: from now on it has a budget of its own.
    fn note_resume_broke(&mut self, id: ExchangeId) {
        let Some(flow) = self.flows.get(&id) else {
            return;
        };
        if flow.exchange.purpose != Purpose::Resume || flow.aborted {
            return;
        }
        let owner = Self::header(flow, "last-event-id").and_then(|p| self.prime_owner.get(p));
        if let Some(n) = owner {
            let key = IdKey::Num(n.to_string());
            self.resuming_since.insert(key, self.now);
        }
    }

    // ---- one step ----

    fn step(&mut self, ev: Ev) {
        let now = self.instant();
        self.checking_before = self.engine.checking();
        match ev {
            Ev::HostRequest(id) => {
                if id == 0 {
                    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
                    self.host(Message::parse(init.as_bytes().to_vec()).unwrap());
                } else {
                    self.host(request(id, "tools/call"));
                }
            }
            Ev::HostInitialized => self.host(initialized()),
            Ev::HostCancels(n) => {
                if !self.answers.contains_key(&n) && self.sent_at.contains_key(&n) {
                    self.stats.cancels += 1;
                    self.cancelled.insert(n);
                    self.cancelling = Some(n);
                    self.host(cancelled(n));
                    self.cancelling = None;
                    let open = self.flows.iter().find(|(_, f)| {
                        !f.aborted
                            && f.exchange.purpose == Purpose::HostMessage
                            && f.exchange.body.as_deref().is_some_and(|b| {
                                Message::parse(b.to_vec()).ok().and_then(|m| m.id_key)
                                    == Some(IdKey::Num(n.to_string()))
                            })
                    });
                    // 2026-07-28 cancels by closing the request's stream (an older era
                    // sends notifications/cancelled and the stream ends on its own).
                    let modern = self.engine.era() == Some(machines::engine::Era::Modern);
                    assert!(
                        !modern || open.is_none(),
                        "the cancelled request {n} still has a stream open"
                    );
                }
            }
            Ev::Arrive(id) => self.arrive(id),
            Ev::Head(id, head) => {
                if self.carries(id) {
                    self.engine.handle_head(id, head, now);
                }
            }
            Ev::Body(id, bytes) => {
                if self.carries(id) {
                    self.engine.handle_body(id, &bytes, now);
                }
            }
            Ev::End(id, result) => {
                let killed = self.killed.contains(&id);
                if killed || self.carries(id) {
                    self.killed.retain(|k| *k != id);
                    self.note_resume_broke(id);
                    if !self.flows.get(&id).is_some_and(|f| f.aborted) {
                        self.engine.handle_end(id, result, now);
                    }
                    self.flows.remove(&id);
                }
            }
            Ev::EngineTimer => {
                self.engine_timers.remove(&self.now);
                self.engine.handle_timeout(now);
                let next = self
                    .engine
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(self.t0));
                self.log(|| format!("engine timer; next {next:?}"));
            }
            Ev::SignInDone { ok } => self.grant_event(sign_in_ended(ok)),
            Ev::RefreshDone { ok } => self.grant_event(refresh_ended(ok)),
            Ev::ServerForgets => {
                self.session = None;
                if self.mode == Mode::Legacy {
                    self.legacy_live = None;
                }
            }
            Ev::ServerDown(down) => match down {
                true => self.kill(),
                false => {
                    self.server_down = false;
                    self.server_up_since = self.now;
                }
            },
            Ev::Blackhole(on) => {
                if on {
                    self.stats.blackholes += 1;
                    // Every open connection dies (the VPN flap): TCP notices within its time-out.
                    let open: Vec<ExchangeId> = self.open_flows();
                    for id in open {
                        self.flows.get_mut(&id).unwrap().dead = true;
                        if self.flows[&id].exchange.purpose == Purpose::HostMessage {
                            self.stats.swallowed += 1;
                        }
                        let error = NetworkError::TimedOut("the connection timed out".into());
                        self.at(ms(TCP_USER_TIMEOUT), Ev::TcpDead(id, error));
                    }
                }
            }
            Ev::TcpDead(id, error) => {
                self.note_resume_broke(id);
                if self.flows.get(&id).is_some_and(|f| !f.aborted) {
                    self.engine.handle_end(id, Err(error), now);
                }
                self.flows.remove(&id);
            }
            Ev::StreamFault { silent } => self.stream_fault(silent),
            Ev::SlowDone { flow, id, sse } => {
                if self.flows.get(&flow).is_some_and(|f| !f.aborted && !f.dead) && !self.server_down
                {
                    self.work_done(flow, id, sse);
                } else {
                    // The answer is stored for a resumption even if its stream is gone,
                    // and goes on the resumed stream if one waits for it.
                    let prime = format!("p{}", flow.0);
                    if sse && !self.server_down && self.stored.contains_key(&prime) {
                        let answer = Self::json_answer(&id.to_string(), "{}");
                        self.stored.insert(prime.clone(), Some(answer.clone()));
                        let waiting = self
                            .resume_flows
                            .remove(&prime)
                            .filter(|r| self.flows.get(r).is_some_and(|f| !f.aborted && !f.dead));
                        if let Some(resume) = waiting {
                            self.stats.resumed_answers += 1;
                            let event = format!("id: {prime}-1\ndata: {answer}\n\n");
                            self.at(0, Ev::Body(resume, event.into_bytes()));
                            self.at(1, Ev::End(resume, Ok(())));
                        }
                    }
                }
            }
        }
        self.drain();
        self.check();
    }

    /// The invariants that hold between any two steps.
    fn check(&mut self) {
        // Invariant 4: bounded memory.
        assert!(
            self.engine.owed() <= (REQUESTS + 1) as usize,
            "the engine owes more than was asked"
        );
        assert!(
            self.engine.exchanges_in_progress() < 200,
            "exchanges pile up"
        );
        // At most one token request in flight.
        assert!(self.tokens.in_flight <= 1, "two token requests in flight");
        // The Link never waits for a check that does not run, nor does one run that it does not wait for.
        assert_eq!(
            self.engine.checking(),
            self.engine.link().checking(),
            "the Link and the check disagree"
        );
        // A check ends (confirmed, or silent and started again) within its bound.
        match (self.engine.checking(), self.check_started) {
            (true, None) => {
                self.check_started = Some(self.now);
                self.stats.checks += 1;
            }
            (true, Some(t)) => {
                if self.now - t > ms(MAX_CHECK) && self.stats.checks_silent == 0 {
                    panic!("a check ran for {} ms", self.now - t);
                }
            }
            (false, _) => self.check_started = None,
        }
    }

    pub fn run(&mut self) -> Stats {
        self.at(0, Ev::HostRequest(0));
        for id in 1..=REQUESTS {
            let when = self.rng.below(LAST_REQUEST_AT);
            self.at(when, Ev::HostRequest(id));
            if self.mode == Mode::Modern && self.rng.chance(10) {
                let after = 1 + self.rng.below(3_000);
                self.at(when + after, Ev::HostCancels(id));
            }
        }
        for (start, end) in self.blackholes.clone() {
            self.at(start, Ev::Blackhole(true));
            self.at(end, Ev::Blackhole(false));
        }
        if self.rng.chance(25) {
            let when = 2_000 + self.rng.below(LAST_REQUEST_AT);
            self.at(when, Ev::ServerForgets);
        }
        if self.rng.chance(15) {
            let when = 2_000 + self.rng.below(LAST_REQUEST_AT);
            self.at(when, Ev::ServerDown(true));
            let down = 200 + self.rng.below(12_000);
            self.at(when + down, Ev::ServerDown(false));
        }
        if self.mode == Mode::Legacy {
            for _ in 0..self.rng.below(3) {
                let when = 1_000 + self.rng.below(LAST_REQUEST_AT);
                let silent = self.rng.chance(50);
                self.at(when, Ev::StreamFault { silent });
            }
        }
        let mut steps = 0;
        while let Some((at, ev)) = self.queue.pop() {
            self.now = at;
            self.log(|| format!("== {ev:?}"));
            self.step(ev);
            steps += 1;
            assert!(steps < 300_000, "runaway schedule");
            if self.done() {
                break;
            }
        }
        for id in 0..=REQUESTS {
            let expected = u32::from(!self.cancelled.contains(&id));
            assert_eq!(
                self.answers.get(&id).copied().unwrap_or(0),
                expected,
                "request {id} got no answer (or one after its cancellation)"
            );
        }
        assert_eq!(self.engine.owed(), 0);
        self.shutdown();
        self.stats
    }

    /// Every request was answered and the host sent everything: the host closes stdin.
    fn done(&self) -> bool {
        self.now >= LAST_REQUEST_AT && (self.answers.len() + self.cancelled.len()) as u64 > REQUESTS
    }

    /// Invariant 7: after the host leaves, the engine closes within the DELETE's bound.
    fn shutdown(&mut self) {
        let began = self.now;
        self.engine.handle_shutdown(self.instant());
        let mut closed = false;
        let mut steps = 0;
        loop {
            while let Some(t) = self.engine.poll_transmit() {
                if let Transmit::Start(exchange) = t {
                    assert_eq!(
                        exchange.method,
                        Method::Delete,
                        "only the DELETE goes at shutdown"
                    );
                    assert!(exchange.timeout.is_some(), "the DELETE is bounded");
                    // The server may or may not answer it: the driver's bound ends it.
                    self.engine.handle_end(
                        exchange.id,
                        Err(NetworkError::TimedOut("bound".into())),
                        self.instant(),
                    );
                }
            }
            while let Some(e) = self.engine.poll_event() {
                if matches!(e, Event::Closed) {
                    closed = true;
                }
            }
            if closed {
                break;
            }
            steps += 1;
            assert!(steps < 10, "shutdown does not end");
        }
        assert!(self.now - began <= 2_000);
    }

    pub fn take_flags(&mut self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut self.flags)
    }

    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.take().unwrap_or_default()
    }
}

/// Which transport a simulation's world speaks.
pub trait Speaks {
    const MODE: Mode;
}

/// One seed of the world speaking `T`'s transport, for the seed runner.
pub struct Run<T>(World, std::marker::PhantomData<T>);

impl<T: Speaks> Simulation for Run<T> {
    type Stats = Stats;
    fn new(seed: u64, trace: bool) -> Self {
        Run(World::new(T::MODE, seed, trace), std::marker::PhantomData)
    }
    fn run(&mut self) -> Stats {
        self.0.run()
    }
    fn take_flags(&mut self) -> BTreeMap<&'static str, u64> {
        self.0.take_flags()
    }
    fn take_trace(&mut self) -> Vec<String> {
        self.0.take_trace()
    }
}

impl TokenGlue for World {
    const SIGN_IN_OK: u64 = 85;
    const REFRESH_OK: u64 = 85;
    fn tokens(&mut self) -> &mut Tokens {
        &mut self.tokens
    }
    fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
    fn grant_answers_in(&mut self, latency: u64, refresh: bool, ok: bool) {
        let ev = if refresh {
            Ev::RefreshDone { ok }
        } else {
            Ev::SignInDone { ok }
        };
        self.at(latency, ev);
    }
    fn token_outcome(&mut self, outcome: TokenOutcome) {
        let now = self.instant();
        self.engine.handle_token(outcome, now);
    }
}

/// A request answered by the request time-out although the network had been back for 10 s.
pub const TIMEOUT_AFTER_NETWORK_BACK: &str =
    "a request waited for the request time-out although the network had been back for 10 s";
/// A host message went without `Mcp-Session-Id` after a session was established.
pub const NO_SESSION: &str =
    "a host message was sent without Mcp-Session-Id after the session was established";
/// A request whose response stream broke when the server was killed waited longer
/// than the resumption budget for its error.
pub const RESUME_TOO_SLOW: &str =
    "a request whose stream broke when the server was killed waited past the resumption budget";
