//! The legacy HTTP+SSE transport (MCP 2024-11-05) on the simulated network.
//!
//! `--transport sse-only`: the Link, a [`StreamLink`] with [`BackoffPolicy::LEGACY`]
//! for the event stream, the liveness check ([`SilenceWatch`], [`StreamCheck`]),
//! the Router and the Grant, glued together the way `actors/src/session.rs` and
//! `actors/src/session/liveness.rs` glue them (same bookkeeping: `unsent`,
//! `posted`, `awaiting`, connection generations, the open time-out, the POST
//! suspicion timer), without importing the actors. The server is modelled too:
//! every GET opens a connection that sends `endpoint` and then carries the answers
//! of the POSTs made to that endpoint; a POST is answered 202 and its answer comes
//! later on the stream. The network misbehaves on purpose: POSTs refused at connect,
//! lost before or after the server saw them, slow to be accepted, 401; GETs that
//! fail, hang, are refused or never send `endpoint`; streams that break (the proxy
//! sees the end), die silently (nothing more arrives, nothing is said) or are
//! forgotten by the server (404 on their endpoint).
//!
//! Checked after every step or at the end of every seed:
//!
//! - every host request gets exactly one answer, and never an answer of a request
//!   of the proxy's own (check pings, replayed `initialize`);
//! - the server executes a host request at most once;
//! - the stream never reconnects without a delay, its delays are bounded, and at
//!   most one of its retry timers runs;
//! - at most one stream check runs, each ends (alive or dead) within
//!   [`StreamCheck::GIVE_UP`] plus its answer wait, and the Link never waits for a
//!   check that no longer runs;
//! - at most one token request is in flight.
//!
//! Liveness findings are recorded without stopping the seed, and checked by a test
//! of their own: a request accepted on a stream the proxy gave up on gets its error
//! at once (not at `--request-timeout`), a request is not sent on a quiet stream
//! nobody checked, no host message is sent while a check runs (`CheckStream`:
//! "messages are held meanwhile", the host's `notifications/initialized` excepted),
//! and a held request is never left to time out. An answer still owed on a stream
//! that went quiet makes the Session check it, as the replayed `initialize` does.
//!
//! The 10,000 seeds run once ([`outcome`]) for both tests.

use super::common::{
    assert_deterministic, assert_no_seed_broke, assert_paths_taken, counters, finding_report,
    initialized, ms, print_trace_of_env_seed, refresh_ended, request, run_all, sign_in_ended,
    Outcome, Simulation, Timeline, TokenGlue, Tokens, CONFIRM_TIMEOUT, LAST_REQUEST_AT, REQUESTS,
};
use super::Rng;
use machines::backoff::BackoffPolicy;
use machines::jsonrpc::{self, IdKey, Kind, Message, RESERVED_ID_PREFIX};
use machines::link::{
    Link, LinkEffect, LinkEvent, LinkOutbox, State as LinkState, Strategy, Transport,
};
use machines::router::{Outbound, Router, RouterConfig, RouterEffect};
use machines::stream::{
    CheckStep, OpenTimer, ResponseTime, SilenceWatch, StreamCheck, StreamEffect, StreamEvent,
    StreamLink, StreamOutbox,
};
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Router's `--request-timeout` in the simulation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

// The Session's constants (actors/src/session.rs, actors/src/session/liveness.rs).
/// `STREAM_OPEN_TIMEOUT`: a GET waits this long for its response headers.
const STREAM_OPEN_TIMEOUT: u64 = 10_000;

/// What happens next, at a simulated time.
#[derive(Debug, Clone)]
enum Ev {
    /// The host sends request `id` (`0` is its `initialize`).
    HostRequest(u64),
    /// The host's `notifications/initialized`, after it saw its `initialize` answered.
    HostInitialized,
    /// A POST reaches the server.
    PostArrives(u64),
    /// The response to a POST reaches the proxy.
    PostEnded { post: u64, end: End },
    /// The Session's watch on a legacy POST (`watch_post`).
    PostSuspect { seq: u64, connection: Option<u64> },
    /// The replayed `initialize` (with this reserved id) was accepted a while ago.
    ReinitSuspect { id: String },
    /// A request accepted on the stream is still owed its answer after a quiet while.
    AnswerSuspect { key: IdKey },
    /// The server writes on the event stream of connection `conn`.
    ServerWrites { conn: usize, write: Write },
    /// A GET reaches the server.
    GetArrives(u64),
    /// Something of GET `get` reaches the proxy.
    GetBytes { get: u64, write: Write },
    /// GET `get` opened (headers) or ended.
    GetEnded { get: u64, end: End },
    /// `read_sse`'s silence limit on GET `get` (its time-out on the next chunk).
    SilenceDeadline(u64),
    /// The Session's time-out on opening the legacy stream.
    OpenTimeout { attempt: u64 },
    /// The stream machine's retry timer (the Session routes it to the current machine).
    StreamRetryTimer { machine: u64 },
    /// The Link's retry timer (`LinkEffect::ScheduleRetry`).
    LinkRetryTimer,
    /// Check `number` asked to be polled again (`CheckStep::Wait`).
    CheckPoll(u64),
    /// `CONFIRM_TIMEOUT` after a `notifications/initialized`.
    ConfirmDeadline,
    /// The browser sign-in ended.
    SignInDone { ok: bool },
    /// The token refresh ended.
    RefreshDone { ok: bool },
    /// Something happens to the event stream of connection `conn`.
    Fault { conn: usize, fault: Fault },
    /// Connection `conn`'s server sends its next keep-alive comment.
    KeepAlive(usize),
    /// The Router's next request deadline.
    Tick,
}

/// How an HTTP exchange ended, as the Session's `ExchangeEnd` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Accepted,
    StreamOpened,
    Done { retry_ms: Option<u64> },
    Refused(u16),
    Failed,
    Unreachable,
    Expired,
    Unauthorized,
}

/// What the server writes on an event stream.
#[derive(Debug, Clone)]
enum Write {
    /// The response head (`200`, `text/event-stream`).
    Head,
    /// The `endpoint` event (and the `retry:` field, if the server sends one).
    Endpoint,
    /// A comment.
    KeepAlive,
    /// A JSON-RPC message.
    Message(String),
    /// The end of the stream.
    End,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The stream ends; the proxy sees it.
    Break,
    /// The stream dies silently: nothing more arrives, nothing says so.
    Silent,
    /// The server forgets the session of a silently dead stream (404 on its endpoint).
    Forget,
}

/// The server's view of one event-stream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Open,
    Silent,
    Gone,
}

/// One event-stream connection, as the server sees it.
struct ServerConn {
    /// The GET that opened it.
    get: u64,
    /// Whether what the server writes still reaches the proxy.
    state: ConnState,
    /// Writes on one stream arrive in order.
    last_delivery: u64,
}

/// Whose POST it is (the Session's `Origin`).
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The host's message `seq`.
    Post { seq: u64 },
    /// The replayed `initialize`.
    Reinit,
    /// The proxy's own `notifications/initialized`.
    Own,
    /// A ping of check `number`.
    Check { number: u64 },
}

/// What a POST carries, as far as the server cares.
#[derive(Debug, Clone)]
enum Body {
    Host {
        id: Option<u64>,
        method: Option<String>,
    },
    Reinit(String),
    Initialized,
    Ping(String),
}

/// A POST on its way.
struct PostReq {
    /// Whom to tell when it ends.
    origin: Origin,
    /// What the server is asked to do.
    body: Body,
    /// The server connection whose endpoint it goes to (`None`: the server URL).
    target: Option<usize>,
    /// The Session dropped it (a newer replay replaced it): its end is not reported.
    cancelled: bool,
}

/// A host message the Session holds (its `Pending`; the fields keep its names).
#[derive(Debug, Clone)]
struct Pending {
    kind: Kind,
    id_key: Option<IdKey>,
    /// The request id as a number (the host's ids are numbers here).
    id: Option<u64>,
    method: Option<String>,
    retried: bool,
    /// The legacy connection it was posted under.
    generation: u64,
    /// When its POST was sent, in simulated milliseconds.
    posted_at: Option<u64>,
}

/// A stream check in progress (liveness.rs `Check`).
struct Check {
    number: u64,
    machine: StreamCheck,
    /// Ping ids, and when the server accepted each.
    pings: Vec<(String, Option<u64>)>,
    /// When it began, for the bound on its length.
    started: u64,
    /// Its answer wait, for the bound on its length.
    answer_wait: Duration,
}

/// How a stream check ended.
#[derive(Debug, Clone, Copy)]
enum CheckEnd {
    /// Bytes came after it began, or a ping was answered.
    Alive,
    /// A ping was accepted and not answered in time, or none got through.
    Dead,
    /// Its stream ended or was replaced first.
    Dropped,
}

/// liveness.rs `LegacyOpen` (times in simulated milliseconds).
#[derive(Default)]
struct LegacyOpen {
    attempt: u64,
    started: Option<u64>,
    timer: OpenTimer,
}

counters! {
/// How often each path was taken, so the test proves it exercised them.
struct Stats {
    /// Streams that delivered their endpoint.
    streams_opened: u64,
    /// `LegacyStreamLost` given to the Link.
    streams_lost: u64,
    /// Streams that died silently while open.
    silent_deaths: u64,
    /// A silently dead stream declared dead by a check.
    silent_caught_by_check: u64,
    /// A silently dead stream ended by the keep-alive silence limit.
    silent_caught_by_pace: u64,
    /// A live stream declared dead by a check (slow answers).
    false_alarms: u64,
    /// Checks begun.
    checks: u64,
    /// Checks that confirmed the stream alive.
    checks_confirmed: u64,
    /// Checks that declared it dead.
    checks_dead: u64,
    /// Checks ended by the stream ending or being replaced.
    checks_dropped: u64,
    /// Checks begun because a request was about to rely on a quiet stream.
    quiet_before_request: u64,
    /// Checks begun because a POST got no response in time or failed.
    suspicions: u64,
    /// Requests held during a check, then sent on the next stream.
    held_then_sent_on_next_stream: u64,
    /// Requests held during a check, then sent on the same stream (confirmed alive).
    held_then_sent_on_same_stream: u64,
    /// Re-initializations begun.
    reinits: u64,
    /// Requests failed because the stream they were accepted on was lost.
    failed_accepted: u64,
    /// POSTs answered 404 (the server forgot the session).
    expired: u64,
    /// Attempts to open the stream that timed out.
    open_timeouts: u64,
    /// Reconnection delays of the stream machine.
    stream_retries: u64,
    /// Retry timers of a replaced stream machine that fired on its successor.
    stale_stream_timers: u64,
    /// `RequestToken`s (a 401 on a POST or on the GET).
    token_requests: u64,
    /// Answers from the server that reached the host.
    ok: u64,
    /// Errors from the proxy that reached the host (time-outs aside).
    errors: u64,
    /// Answers given by the Router's request time-out.
    timeouts: u64,
    /// Of those: requests accepted on a stream the proxy still trusted, whose answer
    /// was lost when it died silently.
    timeouts_after_silent_loss: u64,
}
}

/// One seed's world: the host, the proxy's machines and glue, the network, the server.
struct Sim {
    rng: Rng,
    /// Seeds the Link's and the stream machines' jitter too.
    seed: u64,
    /// Simulated time zero.
    t0: Instant,
    /// Simulated time, in milliseconds.
    now: u64,
    /// What happens next, by time then insertion order.
    queue: Timeline<Ev>,
    /// Every step in words, when a seed is replayed to explain a failure.
    trace: Option<Vec<String>>,
    router: Router,
    link: StateMachine<Link>,
    tokens: Tokens,

    // The Session's bookkeeping, named as in actors/src/session.rs.
    next_seq: u64,
    unsent: HashMap<u64, Pending>,
    posted: HashMap<u64, Pending>,
    post_tasks: HashSet<u64>,
    awaiting: HashMap<IdKey, u64>,
    has_initialize: bool,
    host_initialize: Option<IdKey>,
    reinit_id: Option<String>,
    initialized_seq: Option<u64>,
    /// The legacy stream machine, and a number telling machines apart.
    stream: Option<(u64, StateMachine<StreamLink>)>,
    /// Stream machines made.
    machines: u64,
    /// The GET in progress (its future; `None` once ended or cancelled).
    get_task: Option<u64>,
    legacy_generation: u64,
    live_connection: Option<u64>,
    connections: u64,
    pulse: SilenceWatch,
    check: Option<Check>,
    checks: u64,
    check_lag: Option<Duration>,
    legacy_open: LegacyOpen,
    post_time: ResponseTime,

    // The network and the server.
    /// POSTs on their way, by number.
    posts: HashMap<u64, PostReq>,
    next_post: u64,
    next_get: u64,
    /// The server's event-stream connections (the `s=` of their endpoint).
    conns: Vec<ServerConn>,
    /// Which connection each GET opened.
    get_conn: HashMap<u64, usize>,
    /// The `retry:` hint each GET carried (the SSE parser keeps the latest).
    get_hint: HashMap<u64, u64>,
    /// The GET whose silence limit is armed (one timer, moved on lazily).
    silence_armed: Option<u64>,
    /// When the Router's next deadline is ticked.
    tick_at: Option<u64>,
    /// This server's keep-alive period, if it sends keep-alives.
    keepalive: Option<u64>,
    /// This server's `retry:` hint, if it sends one.
    retry_hint: Option<u64>,
    /// A flaky network: more of every fault.
    flaky: bool,
    /// What the server did: executions per host request id.
    executions: HashMap<u64, u32>,

    // The host and the invariants' bookkeeping.
    /// What the host saw: answers per request id.
    answers: HashMap<u64, u32>,
    /// Retry timers pending, per stream machine.
    stream_timers: HashMap<u64, u32>,
    /// When a GET last ended or was given up (a reconnection must come later).
    last_get_end: Option<u64>,
    /// Requests held while a check ran, with the connection they were held on.
    held_in_check: HashMap<u64, Option<u64>>,
    stats: Stats,
    /// Liveness findings (they do not stop the seed): what, and when first.
    flags: BTreeMap<&'static str, u64>,
    /// Requests accepted on a connection, by id.
    accepted_on: HashMap<IdKey, u64>,
    /// The live connection and whether a stream machine runs, when requests accepted
    /// on lost streams were last looked for (they are looked for when this changes).
    seen_view: Option<(Option<u64>, bool)>,
    /// A request was accepted since (it may have been accepted on a lost stream).
    accepted_late: bool,
    /// Requests that arrived while the stream was quiet: when, on which connection.
    quiet_at_arrival: HashMap<u64, (u64, Option<u64>)>,
    /// When a check last confirmed the stream alive.
    confirmed_at: Option<u64>,
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut rng = Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC2B2_AE3D_27D4_EB4F) | 1);
        let keepalive = match rng.below(10) {
            0..=4 => None,
            _ => Some(1_500 + rng.below(3_500)),
        };
        let retry_hint = match rng.below(100) {
            0..=2 => Some(0),
            3..=14 => Some(1 + rng.below(3_000)),
            _ => None,
        };
        let flaky = rng.chance(30);
        let config = RouterConfig {
            request_timeout: Some(REQUEST_TIMEOUT),
            ..Default::default()
        };
        Sim {
            rng,
            seed,
            t0: Instant::now(),
            now: 0,
            queue: Timeline::new(),
            trace: trace.then(Vec::new),
            router: Router::new(config),
            link: Link::new(Strategy::SseOnly, None)
                .with_seed(seed)
                .state_machine(),
            tokens: Tokens::new(),
            next_seq: 0,
            unsent: HashMap::new(),
            posted: HashMap::new(),
            post_tasks: HashSet::new(),
            awaiting: HashMap::new(),
            has_initialize: false,
            host_initialize: None,
            reinit_id: None,
            initialized_seq: None,
            stream: None,
            machines: 0,
            get_task: None,
            legacy_generation: 0,
            live_connection: None,
            connections: 0,
            pulse: SilenceWatch::default(),
            check: None,
            checks: 0,
            check_lag: None,
            legacy_open: LegacyOpen::default(),
            post_time: ResponseTime::default(),
            posts: HashMap::new(),
            next_post: 0,
            next_get: 0,
            conns: Vec::new(),
            get_conn: HashMap::new(),
            get_hint: HashMap::new(),
            silence_armed: None,
            tick_at: None,
            keepalive,
            retry_hint,
            flaky,
            executions: HashMap::new(),
            answers: HashMap::new(),
            stream_timers: HashMap::new(),
            last_get_end: None,
            held_in_check: HashMap::new(),
            stats: Stats::default(),
            flags: BTreeMap::new(),
            accepted_on: HashMap::new(),
            seen_view: None,
            accepted_late: false,
            quiet_at_arrival: HashMap::new(),
            confirmed_at: None,
        }
    }

    /// The host sent everything and has every answer: servers stop their keep-alives
    /// (the streams then die of silence, one more path), so the schedule runs out.
    fn host_is_done(&self) -> bool {
        self.now >= LAST_REQUEST_AT && self.answers.len() as u64 > REQUESTS
    }

    fn flag(&mut self, what: &'static str) {
        let now = self.now;
        self.log(|| format!("FLAG {what}"));
        self.flags.entry(what).or_insert(now);
    }

    fn log(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>7} ms  {}", self.now, what()));
        }
    }

    fn at(&mut self, delay_ms: u64, ev: Ev) {
        self.queue.push(self.now + delay_ms, ev);
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now)
    }

    fn since(&self, instant: Instant) -> u64 {
        ms(instant.saturating_duration_since(self.t0))
    }

    fn percent(&mut self, normal: u64, flaky: u64) -> bool {
        let p = if self.flaky { flaky } else { normal };
        self.rng.chance(p)
    }

    /// Network latency: usually short, sometimes seconds.
    fn latency(&mut self) -> u64 {
        if self.percent(3, 8) {
            1_000 + self.rng.below(5_000)
        } else {
            1 + self.rng.below(150)
        }
    }

    // ---- the host and the Router (the Bridge) ----

    fn host(&mut self, m: Message) {
        let mut out = Vec::new();
        let now = self.instant();
        self.router.on_host_message(m, now, &mut out);
        self.router_effects(out, false);
    }

    fn router_effects(&mut self, out: Vec<RouterEffect>, tick: bool) {
        for e in out {
            match e {
                RouterEffect::Forward(outbound) => self.forward(outbound),
                RouterEffect::ToHost(bytes) => self.host_receives(bytes, tick),
            }
        }
    }

    fn host_receives(&mut self, bytes: Vec<u8>, tick: bool) {
        let m = Message::parse(bytes).unwrap();
        let key = m.id_key.clone();
        self.log(|| {
            format!(
                "host <- {}",
                String::from_utf8_lossy(&m.bytes)
                    .chars()
                    .take(160)
                    .collect::<String>()
            )
        });
        assert!(
            !key.as_ref().is_some_and(IdKey::is_reserved),
            "the host saw the answer to a request of the proxy's own: {}",
            String::from_utf8_lossy(&m.bytes)
        );
        if tick {
            self.stats.timeouts += 1;
            let waiting = key
                .as_ref()
                .and_then(|k| self.awaiting.get(k).map(|seq| (k, *seq)));
            let negotiating = matches!(self.link.state(), LinkState::Negotiating {});
            match waiting {
                Some((_, seq)) if self.unsent.contains_key(&seq) => self.flag(HELD_UNTIL_TIMEOUT),
                Some((k, seq))
                    if !self.posted.contains_key(&seq)
                        && self.accepted_on.get(k) == self.live_connection.as_ref()
                        && !negotiating =>
                {
                    self.stats.timeouts_after_silent_loss += 1
                }
                _ => {}
            }
        } else if m.is_error {
            self.stats.errors += 1;
        } else {
            self.stats.ok += 1;
        }
        if let Some(IdKey::Num(n)) = key {
            let n: u64 = n.parse().unwrap();
            let count = self.answers.entry(n).or_default();
            *count += 1;
            assert!(*count <= 1, "request {n} answered {count} times");
            if n == 0 && !m.is_error {
                let delay = 1 + self.rng.below(20);
                self.at(delay, Ev::HostInitialized);
            }
        }
    }

    // ---- the Session: messages from the Bridge ----

    fn forward(&mut self, outbound: Outbound) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.log(|| {
            format!(
                "forward seq={seq} {:?} {:?} id={:?}",
                outbound.kind, outbound.method, outbound.id_key
            )
        });
        if outbound.method.as_deref() == Some("initialize") {
            self.has_initialize = true;
            self.host_initialize = outbound.id_key.clone();
        }
        if let (Kind::Request, Some(key)) = (outbound.kind, &outbound.id_key) {
            self.awaiting.insert(key.clone(), seq);
            if self.link.transport() == Some(Transport::Legacy) && self.stream_is_quiet() {
                self.stats.quiet_before_request += 1;
                self.quiet_at_arrival
                    .insert(seq, (self.now, self.live_connection));
                self.log(|| "the stream is quiet: check it before sending".into());
                self.dispatch(LinkEvent::StreamQuiet);
            }
        }
        if outbound.method.as_deref() == Some("notifications/cancelled") {
            let cancelled = serde_json::from_slice::<serde_json::Value>(&outbound.bytes)
                .ok()
                .and_then(|v| v["params"]["requestId"].as_u64())
                .map(|n| IdKey::Num(n.to_string()));
            if let Some(key) = cancelled {
                if let Some(&held) = self
                    .awaiting
                    .get(&key)
                    .filter(|s| self.unsent.contains_key(s))
                {
                    self.awaiting.remove(&key);
                    self.dispatch(LinkEvent::Withdraw { seq: held });
                }
            }
        }
        if outbound.kind == Kind::Notification
            && outbound.method.as_deref() == Some("notifications/initialized")
        {
            self.initialized_seq = Some(seq);
            self.at(CONFIRM_TIMEOUT, Ev::ConfirmDeadline);
        }
        let id = match &outbound.id_key {
            Some(IdKey::Num(n)) => n.parse().ok(),
            _ => None,
        };
        self.unsent.insert(
            seq,
            Pending {
                kind: outbound.kind,
                id_key: outbound.id_key.clone(),
                id,
                method: outbound.method.clone(),
                retried: false,
                generation: self.live_connection.unwrap_or(0),
                posted_at: None,
            },
        );
        let checking = self.check.is_some();
        let posted = self.dispatch(LinkEvent::HostSent {
            seq,
            kind: outbound.kind,
            method: outbound.method,
        });
        if checking
            && outbound.kind == Kind::Request
            && self.unsent.contains_key(&seq)
            && !posted.contains(&seq)
        {
            self.held_in_check.insert(seq, self.live_connection);
        }
    }

    // ---- the Session: the Link ----

    /// Drive the Link, perform its effects; returns the messages it posted.
    fn dispatch(&mut self, event: LinkEvent) -> Vec<u64> {
        let mut out = LinkOutbox::default();
        self.link.handle_with_context(&event, &mut out);
        if self.trace.is_some() {
            let state = format!("{:?}", self.link.state());
            self.log(|| format!("link {event:?} -> {state} {:?}", out.0));
        }
        // As the Session does: a check the Link no longer waits for is over.
        if !self.link.checking() && self.check.is_some() {
            self.end_check(CheckEnd::Dropped);
        }
        let mut posted = Vec::new();
        for effect in out.0 {
            if let LinkEffect::Post { seq, .. } = effect {
                posted.push(seq);
            }
            self.perform(effect);
        }
        posted
    }

    fn perform(&mut self, effect: LinkEffect) {
        match effect {
            LinkEffect::Post { seq, retry } => {
                let Some(mut pending) = self.unsent.remove(&seq) else {
                    return;
                };
                if let Some(held_on) = self.held_in_check.remove(&seq) {
                    if held_on == self.live_connection {
                        self.stats.held_then_sent_on_same_stream += 1;
                    } else {
                        self.stats.held_then_sent_on_next_stream += 1;
                    }
                }
                if let Some((t, conn)) = self.quiet_at_arrival.remove(&seq) {
                    if conn == self.live_connection && self.confirmed_at.is_none_or(|c| c < t) {
                        self.flag(QUIET_NOT_CHECKED);
                    }
                }
                // The host's `notifications/initialized` may go during a check: it waits for
                // nothing, and if the stream is dead the re-initialization sends its own.
                let initialized = pending.method.as_deref() == Some("notifications/initialized");
                if self.check.is_some() && !initialized {
                    self.flag(SENT_DURING_CHECK);
                }
                pending.retried = retry;
                pending.generation = self.live_connection.unwrap_or(0);
                pending.posted_at = Some(self.now);
                let body = Body::Host {
                    id: if pending.kind == Kind::Request {
                        pending.id
                    } else {
                        None
                    },
                    method: pending.method.clone(),
                };
                self.posted.insert(seq, pending);
                self.post_tasks.insert(seq);
                self.send_post(Origin::Post { seq }, body);
                if self.link.transport() == Some(Transport::Legacy) {
                    self.watch_post(seq);
                }
            }
            LinkEffect::Fail { seq, reason } => {
                if let Some(pending) = self
                    .unsent
                    .remove(&seq)
                    .or_else(|| self.posted.remove(&seq))
                {
                    self.fail(&pending, &reason);
                }
            }
            LinkEffect::FailAccepted { reason } => self.fail_accepted(&reason),
            LinkEffect::PostReinitialize { id } => {
                self.stats.reinits += 1;
                if self.has_initialize {
                    self.reinit_id = Some(id.clone());
                    // As the Session: a replay replaces the one before.
                    for p in self.posts.values_mut() {
                        if matches!(p.origin, Origin::Reinit) {
                            p.cancelled = true;
                        }
                    }
                    self.send_post(Origin::Reinit, Body::Reinit(id));
                } else {
                    self.dispatch(LinkEvent::ReinitFailed {
                        reason: "no initialize to replay".into(),
                    });
                }
            }
            LinkEffect::PostInitialized => {
                self.send_post(Origin::Own, Body::Initialized);
                self.at(CONFIRM_TIMEOUT, Ev::ConfirmDeadline);
            }
            LinkEffect::OpenLegacyStream => {
                self.legacy_generation += 1;
                self.live_connection = None;
                if self.stream.take().is_some() {
                    self.cancel_get();
                }
                self.machines += 1;
                let machine = StreamLink::new(
                    BackoffPolicy::LEGACY,
                    self.seed.wrapping_add(self.legacy_generation),
                )
                .state_machine();
                self.stream = Some((self.machines, machine));
                self.drive_stream(StreamEvent::Started);
            }
            LinkEffect::CloseLegacyStream => {
                self.drive_stream(StreamEvent::Closed);
                self.stream = None;
                self.live_connection = None;
            }
            LinkEffect::CheckStream => self.start_check(),
            LinkEffect::ScheduleRetry(d) => {
                assert!(d > Duration::ZERO, "a Link retry without a delay");
                self.at(ms(d), Ev::LinkRetryTimer);
            }
            LinkEffect::AbandonInFlight { reason } => {
                for seq in std::mem::take(&mut self.post_tasks) {
                    if let Some(pending) = self.posted.remove(&seq) {
                        self.fail(&pending, &reason);
                    }
                }
                self.fail_accepted(&reason);
            }
            LinkEffect::Discard { seq } => {
                self.unsent.remove(&seq);
            }
            LinkEffect::RequestToken => {
                self.stats.token_requests += 1;
                self.request_token();
            }
            LinkEffect::OpenGetStream => panic!("a Streamable HTTP GET stream on sse-only"),
            LinkEffect::CloseGetStream
            | LinkEffect::DeleteSession
            | LinkEffect::RememberTransport(_)
            | LinkEffect::ForgetTransport => {}
        }
    }

    fn fail(&mut self, pending: &Pending, reason: &str) {
        if let (Kind::Request, Some(key)) = (pending.kind, &pending.id_key) {
            self.awaiting.remove(key);
            self.request_failed(key.clone(), reason);
        }
    }

    /// Requests neither held nor being posted: their answers were to come on a lost stream.
    fn fail_accepted(&mut self, reason: &str) {
        let mut accepted: Vec<IdKey> = self
            .awaiting
            .iter()
            .filter(|(_, seq)| !self.unsent.contains_key(seq) && !self.posted.contains_key(seq))
            .map(|(key, _)| key.clone())
            .collect();
        accepted.sort();
        for key in accepted {
            self.stats.failed_accepted += 1;
            self.fail_key(key, reason);
        }
    }

    fn fail_key(&mut self, key: IdKey, reason: &str) {
        if self.awaiting.remove(&key).is_some() {
            self.request_failed(key, reason);
        }
    }

    fn request_failed(&mut self, key: IdKey, reason: &str) {
        let mut out = Vec::new();
        self.router.on_request_failed(&key, reason, &mut out);
        self.router_effects(out, false);
    }

    // ---- the Session: POSTs ----

    fn send_post(&mut self, origin: Origin, body: Body) {
        let target = match self.link.endpoint() {
            Some(e) if self.link.transport() == Some(Transport::Legacy) => {
                Some(e.rsplit('=').next().unwrap().parse::<usize>().unwrap())
            }
            _ => None,
        };
        let post = self.next_post;
        self.next_post += 1;
        self.log(|| format!("POST #{post} {origin:?} {body:?} to {target:?}"));
        let host = matches!(origin, Origin::Post { .. });
        let latency = self.latency();
        let end = if self.percent(2, 8) {
            Some(End::Unreachable)
        } else if self.percent(1, 3) {
            Some(End::Failed) // lost before it reached the server
        } else if host && self.rng.chance(2) {
            Some(End::Unauthorized)
        } else {
            None
        };
        self.posts.insert(
            post,
            PostReq {
                origin,
                body,
                target,
                cancelled: false,
            },
        );
        match end {
            Some(end) => self.at(latency, Ev::PostEnded { post, end }),
            None => self.at(latency, Ev::PostArrives(post)),
        }
    }

    /// The server receives a POST: executes it, answers 202, writes its answer on the stream.
    fn post_arrives(&mut self, post: u64) {
        let (target, body) = {
            let p = &self.posts[&post];
            (p.target, p.body.clone())
        };
        let latency = self.latency();
        let end = match target {
            None => End::Refused(405),
            Some(c) if self.conns[c].state == ConnState::Gone => End::Expired,
            Some(c) => {
                let answer = match body {
                    Body::Host {
                        id: Some(id),
                        method,
                    } => {
                        let count = self.executions.entry(id).or_default();
                        *count += 1;
                        assert!(*count <= 1, "request {id} executed {count} times");
                        let result = match method.as_deref() {
                            Some("initialize") => r#"{"protocolVersion":"2024-11-05"}"#,
                            _ => "{}",
                        };
                        let work = self.rng.below(1_500);
                        Some((format!(r#"{id},"result":{result}"#), work))
                    }
                    Body::Host { id: None, .. } | Body::Initialized => None,
                    Body::Reinit(id) => {
                        let outcome = if self.rng.chance(95) {
                            r#""result":{"protocolVersion":"2024-11-05"}"#
                        } else {
                            r#""error":{"code":-32603,"message":"no"}"#
                        };
                        let work = self.rng.below(300);
                        Some((format!(r#""{id}",{outcome}"#), work))
                    }
                    Body::Ping(id) => {
                        Some((format!(r#""{id}","result":{{}}"#), self.rng.below(100)))
                    }
                };
                if let Some((id_and_outcome, work)) = answer {
                    let json = format!(r#"{{"jsonrpc":"2.0","id":{id_and_outcome}}}"#);
                    // A misbehaving server sometimes answers twice.
                    let twice = self.rng.chance(2);
                    for after in [Some(work), twice.then(|| work + 1 + self.rng.below(500))]
                        .into_iter()
                        .flatten()
                    {
                        let write = Write::Message(json.clone());
                        self.at(after, Ev::ServerWrites { conn: c, write });
                    }
                }
                if self.percent(2, 5) {
                    End::Failed // the 202 was lost: the proxy cannot tell it was executed
                } else {
                    End::Accepted
                }
            }
        };
        self.at(latency, Ev::PostEnded { post, end });
    }

    /// The response to a POST reaches the Session (its `ExchangeEnded` handler).
    fn post_ended(&mut self, post: u64, end: End) {
        let req = self.posts.remove(&post).unwrap();
        if req.cancelled {
            return;
        }
        let origin = req.origin;
        self.log(|| format!("POST #{post} {origin:?} ended {end:?}"));
        match origin {
            Origin::Post { seq } => self.host_post_ended(seq, end),
            Origin::Reinit if end == End::Accepted => {
                // As liveness.rs's `watch_reinit`: its answer must follow on the stream.
                if let Some(id) = self.reinit_id.clone() {
                    let after = self.post_time.late_after();
                    self.at(ms(after), Ev::ReinitSuspect { id });
                }
            }
            Origin::Reinit => {
                if self.reinit_id.take().is_some() {
                    self.dispatch(LinkEvent::ReinitFailed {
                        reason: format!("{end:?}"),
                    });
                }
            }
            Origin::Check { number } => self.check_ping_ended(number, end),
            Origin::Own => {
                self.dispatch(LinkEvent::InitializedDelivered);
            }
        }
    }

    fn host_post_ended(&mut self, seq: u64, end: End) {
        if self.initialized_seq == Some(seq) {
            self.initialized_seq = None;
            self.dispatch(LinkEvent::InitializedDelivered);
        }
        self.post_tasks.remove(&seq);
        let Some(pending) = self.posted.remove(&seq) else {
            return;
        };
        if matches!(end, End::Accepted | End::Done { .. }) {
            self.token_worked();
        }
        let legacy = self.link.transport() == Some(Transport::Legacy);
        if legacy {
            self.legacy_post_ended(&pending, end);
        }
        if !matches!(end, End::Failed | End::Unreachable) {
            self.dispatch(LinkEvent::Reachable);
        }
        let is_init = pending.id_key.is_some() && pending.id_key == self.host_initialize;
        match end {
            End::Expired => {
                self.stats.expired += 1;
                let retried = pending.retried;
                self.unsent.insert(seq, pending);
                self.dispatch(LinkEvent::SessionExpired { seq, retried });
            }
            End::Unauthorized => {
                self.unsent.insert(seq, pending);
                self.dispatch(LinkEvent::Unauthorized { seq });
            }
            End::Refused(status) if is_init => {
                self.unsent.insert(seq, pending);
                self.dispatch(LinkEvent::InitializeRefused {
                    seq,
                    status,
                    reason: format!("HTTP {status}"),
                });
            }
            End::Unreachable
                if self.link.transport() == Some(Transport::Streamable) && !is_init =>
            {
                self.unsent.insert(seq, pending);
                self.dispatch(LinkEvent::Unreachable { seq });
            }
            End::Unreachable if legacy && !is_init => {
                // Never reached the server: kept for the next connection.
                let retried = pending.retried;
                self.unsent.insert(seq, pending);
                self.dispatch(LinkEvent::SessionExpired { seq, retried });
            }
            End::Refused(_) | End::Failed | End::Unreachable => {
                if is_init {
                    self.host_initialize = None;
                    self.dispatch(LinkEvent::InitializeFailed);
                }
                self.fail(&pending, &format!("{end:?}"));
            }
            End::Done { .. } => {
                if let Some(key) = pending.id_key.filter(|k| self.awaiting.contains_key(k)) {
                    self.fail_key(key, "the server ended the response without answering");
                }
            }
            End::Accepted | End::StreamOpened => {
                let Some(key) = pending.id_key.filter(|k| self.awaiting.contains_key(k)) else {
                    return;
                };
                if pending.generation != 0 && self.live_connection != Some(pending.generation) {
                    // Accepted, but its answer was to come on a stream that died meanwhile.
                    self.stats.failed_accepted += 1;
                    self.fail_key(key, "the connection to the server dropped");
                } else {
                    self.accepted_late = true;
                    self.accepted_on.insert(key, pending.generation);
                }
            }
        }
    }

    // ---- liveness.rs ----

    fn stream_is_quiet(&self) -> bool {
        self.live_connection.is_some()
            && self.check.is_none()
            && self.pulse.is_quiet(self.instant())
    }

    fn watch_post(&mut self, seq: u64) {
        let after = self.post_time.late_after();
        let connection = self.live_connection;
        self.at(ms(after), Ev::PostSuspect { seq, connection });
    }

    fn legacy_post_ended(&mut self, pending: &Pending, end: End) {
        match end {
            End::Accepted => {
                // As liveness.rs's `watch_answer`.
                if let Some(key) = pending.id_key.clone() {
                    let after = self.pulse.quiet_after();
                    self.at(ms(after), Ev::AnswerSuspect { key });
                }
                if let Some(sent) = pending.posted_at {
                    self.post_time
                        .observe(Duration::from_millis(self.now - sent));
                }
            }
            End::Failed if pending.generation == self.live_connection.unwrap_or(0) => {
                self.suspect("a POST failed on the network")
            }
            _ => {}
        }
    }

    fn suspect(&mut self, why: &str) {
        if self.check.is_some() || self.live_connection.is_none() {
            return;
        }
        self.stats.suspicions += 1;
        self.log(|| format!("{why}; checking the stream"));
        self.dispatch(LinkEvent::StreamQuiet);
    }

    fn start_check(&mut self) {
        assert!(self.check.is_none(), "two stream checks at once");
        self.stats.checks += 1;
        self.checks += 1;
        let number = self.checks;
        let answer_wait = StreamCheck::answer_wait(self.check_lag);
        self.check = Some(Check {
            number,
            machine: StreamCheck::new(self.instant(), answer_wait),
            pings: Vec::new(),
            started: self.now,
            answer_wait,
        });
        self.poll_check(number);
    }

    fn poll_check(&mut self, number: u64) {
        for _ in 0..=StreamCheck::MAX_PINGS + 1 {
            let now = self.instant();
            let Some(check) = self.check.as_mut().filter(|c| c.number == number) else {
                return;
            };
            let started = check.machine.started();
            if self.pulse.last_bytes().is_some_and(|t| t > started) {
                self.stream_confirmed();
                return;
            }
            match check.machine.poll(now) {
                CheckStep::Ping => {
                    let id = format!(
                        "{RESERVED_ID_PREFIX}check-{number}-{}",
                        check.pings.len() + 1
                    );
                    check.pings.push((id.clone(), None));
                    self.send_post(Origin::Check { number }, Body::Ping(id));
                }
                CheckStep::Wait(until) => {
                    let delay = self.since(until) - self.now;
                    assert!(delay > 0, "a check waits for nothing");
                    self.at(delay, Ev::CheckPoll(number));
                    return;
                }
                CheckStep::Dead => {
                    self.stream_dead();
                    return;
                }
            }
        }
        panic!("a stream check pinged without end");
    }

    fn check_ping_ended(&mut self, number: u64, end: End) {
        let now = self.now;
        let instant = self.instant();
        let Some(check) = self.check.as_mut().filter(|c| c.number == number) else {
            return;
        };
        match end {
            End::Accepted | End::Done { .. } => {
                check.machine.on_accepted(instant);
                if let Some(ping) = check.pings.iter_mut().find(|(_, at)| at.is_none()) {
                    ping.1 = Some(now);
                }
                self.poll_check(number);
            }
            End::Expired => self.stream_dead(),
            _ => {}
        }
    }

    fn check_answered(&mut self, key: &IdKey) {
        let IdKey::Str(id) = key else {
            return;
        };
        if !id.starts_with(&format!("{RESERVED_ID_PREFIX}check-")) {
            return;
        }
        if let Some(accepted) = self
            .check
            .as_ref()
            .and_then(|c| c.pings.iter().find(|(p, _)| p == id))
            .and_then(|(_, at)| *at)
        {
            let lag = Duration::from_millis(self.now - accepted);
            self.check_lag = Some(self.check_lag.map_or(lag, |l| l.max(lag)));
        }
        if self.check.is_some() {
            self.stream_confirmed();
        }
    }

    /// The check in progress ends (alive, dead, or dropped with its stream).
    fn end_check(&mut self, how: CheckEnd) {
        if let Some(check) = self.check.take() {
            let took = Duration::from_millis(self.now - check.started);
            let bound = StreamCheck::GIVE_UP + check.answer_wait;
            self.log(|| format!("check {} {how:?} after {took:?}", check.number));
            assert!(
                took <= bound,
                "a check ended ({how:?}) after {took:?}, beyond {bound:?}"
            );
            match how {
                CheckEnd::Alive => self.stats.checks_confirmed += 1,
                CheckEnd::Dead => self.stats.checks_dead += 1,
                CheckEnd::Dropped => self.stats.checks_dropped += 1,
            }
        }
    }

    fn stream_confirmed(&mut self) {
        self.end_check(CheckEnd::Alive);
        self.confirmed_at = Some(self.now);
        self.dispatch(LinkEvent::StreamConfirmed);
    }

    fn stream_dead(&mut self) {
        self.end_check(CheckEnd::Dead);
        if let Some(c) = self.get_task.and_then(|g| self.get_conn.get(&g).copied()) {
            match self.conns[c].state {
                ConnState::Silent => self.stats.silent_caught_by_check += 1,
                ConnState::Open => self.stats.false_alarms += 1,
                ConnState::Gone => {}
            }
        }
        self.cancel_get();
        self.last_get_end = Some(self.now);
        self.legacy_stream_ended(End::Done { retry_ms: None });
    }

    fn legacy_open_started(&mut self) {
        self.legacy_open.attempt += 1;
        self.legacy_open.started = Some(self.now);
        let attempt = self.legacy_open.attempt;
        let limit = self.legacy_open.timer.limit();
        self.at(ms(limit), Ev::OpenTimeout { attempt });
    }

    fn open_timeout(&mut self, attempt: u64) {
        let opening = self.legacy_open.started.is_some() && self.live_connection.is_none();
        if self.legacy_open.attempt != attempt || !opening {
            return;
        }
        self.legacy_open.timer.timed_out();
        self.stats.open_timeouts += 1;
        self.cancel_get();
        self.last_get_end = Some(self.now);
        self.dispatch(LinkEvent::LegacyFailed {
            reason: "the event stream did not open in time".into(),
        });
        self.drive_stream(StreamEvent::Failed {
            now: self.instant(),
        });
    }

    // ---- the Session: the legacy event stream ----

    /// The Session's `drive_stream(LEGACY_STREAM, …)`.
    fn drive_stream(&mut self, event: StreamEvent) {
        let Some((machine, sm)) = self.stream.as_mut() else {
            return;
        };
        let machine = *machine;
        let may_open = matches!(event, StreamEvent::Started | StreamEvent::RetryTimerFired);
        let mut out = StreamOutbox::default();
        sm.handle_with_context(&event, &mut out);
        if self.trace.is_some() {
            let state = format!("{:?}", sm.state());
            // (without the `Instant`s, so that a trace is the same from run to run)
            let event = match &event {
                StreamEvent::Connected { .. } => "Connected".to_owned(),
                StreamEvent::Failed { .. } => "Failed".to_owned(),
                StreamEvent::Ended { retry_ms, .. } => format!("Ended (retry {retry_ms:?})"),
                other => format!("{other:?}"),
            };
            self.log(|| format!("stream #{machine} {event} -> {state} {:?}", out.0));
        }
        for effect in out.0 {
            match effect {
                StreamEffect::Open { .. } => {
                    assert!(may_open, "the stream reopened without a delay");
                    assert!(
                        self.last_get_end != Some(self.now),
                        "a GET opened at the very moment the previous one ended"
                    );
                    // `new_legacy_pulse`: a fresh pulse, no check.
                    self.end_check(CheckEnd::Dropped);
                    self.pulse = SilenceWatch::default();
                    self.legacy_open_started();
                    self.spawn_get();
                }
                StreamEffect::ScheduleRetry(d) => {
                    self.stats.stream_retries += 1;
                    assert!(d > Duration::ZERO, "the stream reconnects without a delay");
                    let bound = (BackoffPolicy::LEGACY.max_delay * 2)
                        .max(Duration::from_millis(self.retry_hint.unwrap_or(0)));
                    assert!(d <= bound, "unbounded reconnection delay {d:?}");
                    let timers = self.stream_timers.entry(machine).or_default();
                    *timers += 1;
                    assert!(*timers <= 1, "two retry timers of one stream machine");
                    self.at(ms(d), Ev::StreamRetryTimer { machine });
                }
                StreamEffect::Abort => self.cancel_get(),
                StreamEffect::GiveUp { .. } => self.stream = None,
            }
        }
    }

    /// Cancel the GET in progress; the server sees its connection close (unless it is
    /// silently dead, which nothing reaches).
    fn cancel_get(&mut self) {
        if let Some(get) = self.get_task.take() {
            if let Some(&c) = self.get_conn.get(&get) {
                if self.conns[c].state == ConnState::Open {
                    self.conns[c].state = ConnState::Gone;
                }
            }
        }
    }

    fn spawn_get(&mut self) {
        self.next_get += 1;
        let get = self.next_get;
        self.get_task = Some(get);
        self.log(|| format!("GET #{get}"));
        let latency = self.latency();
        // The server is there when the proxy starts (a first GET that fails ends the
        // session at once: a wrong URL is not a flaky network); reconnections meet
        // whatever the network does.
        let first = get == 1;
        let end = if (self.percent(4, 15) && !first) || self.rng.chance(1) {
            Some((latency, End::Failed))
        } else if self.rng.chance(1) {
            Some((latency, End::Refused(404)))
        } else if self.rng.chance(2) {
            Some((latency, End::Unauthorized))
        } else if self.percent(1, 4) && !first {
            // No response headers at all: the GET's own time-out ends it.
            Some((STREAM_OPEN_TIMEOUT, End::Failed))
        } else {
            None
        };
        match end {
            Some((after, end)) => self.at(after, Ev::GetEnded { get, end }),
            None => self.at(latency, Ev::GetArrives(get)),
        }
    }

    /// The server accepts a GET: a new connection, its head, its `endpoint`, its fate.
    fn get_arrives(&mut self, get: u64) {
        let c = self.conns.len();
        self.conns.push(ServerConn {
            get,
            state: ConnState::Open,
            last_delivery: self.now,
        });
        self.get_conn.insert(get, c);
        self.server_writes(c, Write::Head);
        if !self.rng.chance(2) {
            // (else: no `endpoint` ever comes; the open time-out ends the attempt)
            self.server_writes(c, Write::Endpoint);
        }
        if self.percent(12, 35) {
            let when = self.rng.below(30_000);
            self.at(
                when,
                Ev::Fault {
                    conn: c,
                    fault: Fault::Break,
                },
            );
        }
        if self.percent(10, 30) {
            let when = self.rng.below(30_000);
            self.at(
                when,
                Ev::Fault {
                    conn: c,
                    fault: Fault::Silent,
                },
            );
        }
        if let Some(period) = self.keepalive {
            self.at(period, Ev::KeepAlive(c));
        }
    }

    fn server_writes(&mut self, c: usize, write: Write) {
        if self.conns[c].state != ConnState::Open {
            return;
        }
        let when = (self.now + 1 + self.rng.below(40)).max(self.conns[c].last_delivery);
        self.conns[c].last_delivery = when;
        let get = self.conns[c].get;
        let ev = match write {
            Write::Head => Ev::GetEnded {
                get,
                end: End::StreamOpened,
            },
            Write::End => Ev::GetEnded {
                get,
                end: End::Done {
                    retry_ms: self.get_hint.get(&get).copied(),
                },
            },
            write => Ev::GetBytes { get, write },
        };
        self.at(when - self.now, ev);
    }

    fn fault(&mut self, c: usize, fault: Fault) {
        match (fault, self.conns[c].state) {
            (Fault::Break, ConnState::Open) => {
                self.server_writes(c, Write::End);
                self.conns[c].state = ConnState::Gone;
            }
            (Fault::Silent, ConnState::Open) => {
                self.stats.silent_deaths += 1;
                self.conns[c].state = ConnState::Silent;
                if self.rng.chance(50) {
                    let when = 2_000 + self.rng.below(28_000);
                    self.at(
                        when,
                        Ev::Fault {
                            conn: c,
                            fault: Fault::Forget,
                        },
                    );
                }
            }
            (Fault::Forget, ConnState::Silent) => self.conns[c].state = ConnState::Gone,
            _ => {}
        }
    }

    /// Bytes of GET `get` reach the Session (`read_sse`, then the mailbox).
    fn get_bytes(&mut self, get: u64, write: Write) {
        if self.get_task != Some(get) {
            return; // cancelled
        }
        let now = self.instant();
        match &write {
            Write::KeepAlive => self.pulse.on_keepalive(now),
            _ => self.pulse.on_bytes(now),
        }
        if let Some(limit) = self.pulse.limit() {
            if self.silence_armed != Some(get) {
                self.silence_armed = Some(get);
                self.at(ms(limit), Ev::SilenceDeadline(get));
            }
        }
        match write {
            Write::Endpoint => {
                if let Some(hint) = self.retry_hint {
                    self.get_hint.insert(get, hint);
                }
                let c = self.get_conn[&get];
                if self.rng.chance(1) && self.connections == 0 {
                    self.dispatch(LinkEvent::EndpointRejected {
                        reason: "the endpoint is on another origin".into(),
                    });
                    return;
                }
                // `legacy_opened`
                if let Some(started) = self.legacy_open.started.take() {
                    let took = Duration::from_millis(self.now - started);
                    self.legacy_open.timer.opened(took);
                }
                self.connections += 1;
                self.live_connection = Some(self.connections);
                self.stats.streams_opened += 1;
                self.dispatch(LinkEvent::EndpointReceived {
                    endpoint: format!("http://h/m?s={c}"),
                });
            }
            Write::Message(json) => self.server_message(json),
            Write::KeepAlive | Write::Head | Write::End => {}
        }
    }

    /// `read_sse` waits for the next chunk at most the silence limit (computed after
    /// the last chunk): the timer, armed once, moves on to the last bytes plus the limit.
    fn silence_deadline(&mut self, get: u64) {
        if self.silence_armed == Some(get) {
            self.silence_armed = None;
        }
        if self.get_task != Some(get) {
            return;
        }
        let (Some(last), Some(limit)) = (self.pulse.last_bytes(), self.pulse.limit()) else {
            return;
        };
        let due = self.since(last + limit);
        if due > self.now {
            self.silence_armed = Some(get);
            self.at(due - self.now, Ev::SilenceDeadline(get));
            return;
        }
        self.log(|| "the stream went silent beyond its keep-alive pace".into());
        let c = self.get_conn[&get];
        match self.conns[c].state {
            ConnState::Silent => self.stats.silent_caught_by_pace += 1,
            ConnState::Open => self.conns[c].state = ConnState::Gone,
            ConnState::Gone => {}
        }
        self.get_task = None;
        self.last_get_end = Some(self.now);
        self.legacy_stream_ended(End::Done {
            retry_ms: self.get_hint.get(&get).copied(),
        });
    }

    fn get_ended(&mut self, get: u64, end: End) {
        if self.get_task != Some(get) {
            return; // cancelled
        }
        if end != End::StreamOpened {
            self.get_task = None;
            self.last_get_end = Some(self.now);
        }
        self.legacy_stream_ended(end);
    }

    /// The Session's `legacy_stream_ended`.
    fn legacy_stream_ended(&mut self, end: End) {
        let now = self.instant();
        if end != End::StreamOpened {
            self.legacy_open.started = None;
        }
        let (link_event, stream_event) = match end {
            End::Unauthorized => (
                Some(LinkEvent::StreamUnauthorized),
                StreamEvent::Refused { status: 401 },
            ),
            End::StreamOpened => (None, StreamEvent::Connected { now }),
            End::Done { retry_ms } => {
                self.end_check(CheckEnd::Dropped);
                let link_event = if self.live_connection.take().is_some() {
                    self.stats.streams_lost += 1;
                    LinkEvent::LegacyStreamLost
                } else {
                    LinkEvent::LegacyFailed {
                        reason: "the event stream ended before its endpoint event".into(),
                    }
                };
                (
                    Some(link_event),
                    StreamEvent::Ended {
                        now,
                        last_event_id: None,
                        retry_ms,
                    },
                )
            }
            End::Refused(status) => (
                Some(LinkEvent::LegacyRefused {
                    status,
                    reason: format!("HTTP {status}"),
                }),
                StreamEvent::Refused { status },
            ),
            End::Failed | End::Unreachable | End::Accepted | End::Expired => (
                Some(LinkEvent::LegacyFailed {
                    reason: "network".into(),
                }),
                StreamEvent::Failed { now },
            ),
        };
        if let Some(event) = link_event {
            self.dispatch(event);
        }
        self.drive_stream(stream_event);
    }

    /// A message from the event stream (the Session's `ServerMessage` handler).
    fn server_message(&mut self, json: String) {
        let m = Message::parse(json.into_bytes()).unwrap();
        if m.kind == Kind::Response {
            if let Some(key) = m.id_key.clone() {
                if key.is_reserved() {
                    if self
                        .reinit_id
                        .as_deref()
                        .is_some_and(|id| key == IdKey::Str(id.to_owned()))
                    {
                        self.reinit_id = None;
                        let event = if m.is_error {
                            LinkEvent::ReinitFailed {
                                reason: "the server refused the replayed initialize".into(),
                            }
                        } else {
                            LinkEvent::ReinitAnswered {
                                session_id: None,
                                protocol_version: jsonrpc::negotiated_version(&m),
                            }
                        };
                        self.dispatch(event);
                    }
                    self.check_answered(&key);
                    return; // the proxy's own request: never shown to the host
                }
                if self.host_initialize.as_ref() == Some(&key) {
                    self.host_initialize = None;
                    let event = if m.is_error {
                        LinkEvent::InitializeFailed
                    } else {
                        LinkEvent::InitializeAnswered {
                            session_id: None,
                            protocol_version: jsonrpc::negotiated_version(&m),
                        }
                    };
                    self.dispatch(event);
                }
                self.awaiting.remove(&key);
            }
        }
        let mut out = Vec::new();
        self.router.on_server_message(m, &mut out);
        self.router_effects(out, false);
    }

    // ---- the schedule ----

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::HostRequest(id) => {
                let method = if id == 0 { "initialize" } else { "tools/call" };
                self.host(request(id, method));
            }
            Ev::HostInitialized => self.host(initialized()),
            Ev::PostArrives(post) => self.post_arrives(post),
            Ev::PostEnded { post, end } => self.post_ended(post, end),
            Ev::PostSuspect { seq, connection } => {
                if self.post_tasks.contains(&seq) && self.live_connection == connection {
                    self.suspect("a POST got no response in time");
                }
            }
            Ev::AnswerSuspect { key } => {
                if self.awaiting.contains_key(&key) && self.stream_is_quiet() {
                    self.suspect("an answer is overdue on a quiet event stream");
                }
            }
            Ev::ReinitSuspect { id } => {
                if self.reinit_id.as_deref() == Some(id.as_str()) {
                    self.suspect("no answer to the replayed initialize");
                }
            }
            Ev::ServerWrites { conn, write } => self.server_writes(conn, write),
            Ev::GetArrives(get) => self.get_arrives(get),
            Ev::GetBytes { get, write } => self.get_bytes(get, write),
            Ev::GetEnded { get, end } => self.get_ended(get, end),
            Ev::SilenceDeadline(get) => self.silence_deadline(get),
            Ev::OpenTimeout { attempt } => self.open_timeout(attempt),
            Ev::StreamRetryTimer { machine } => {
                if let Some(n) = self.stream_timers.get_mut(&machine) {
                    *n -= 1;
                }
                if self.stream.as_ref().is_some_and(|(m, _)| *m != machine) {
                    self.stats.stale_stream_timers += 1;
                }
                self.drive_stream(StreamEvent::RetryTimerFired);
            }
            Ev::LinkRetryTimer => {
                self.dispatch(LinkEvent::RetryTimerFired);
            }
            Ev::CheckPoll(number) => self.poll_check(number),
            Ev::ConfirmDeadline => {
                self.dispatch(LinkEvent::InitializedDelivered);
            }
            Ev::SignInDone { ok } => self.grant_event(sign_in_ended(ok)),
            Ev::RefreshDone { ok } => self.grant_event(refresh_ended(ok)),
            Ev::Fault { conn, fault } => self.fault(conn, fault),
            Ev::KeepAlive(c) => {
                if self.conns[c].state == ConnState::Open {
                    self.server_writes(c, Write::KeepAlive);
                    if let Some(period) = self.keepalive.filter(|_| !self.host_is_done()) {
                        let jitter = self.rng.below(period / 10);
                        self.at(period + jitter, Ev::KeepAlive(c));
                    }
                }
            }
            Ev::Tick => {}
        }
        let mut out = Vec::new();
        let now = self.instant();
        self.router.on_tick(now, &mut out);
        self.router_effects(out, true);
        if let Some(deadline) = self.router.next_deadline() {
            let at = self.since(deadline);
            if at > self.now && self.tick_at != Some(at) {
                self.tick_at = Some(at);
                self.at(at - self.now, Ev::Tick);
            }
        }
        // Requests accepted on a stream the proxy gave up on got their error by now.
        let view = (self.live_connection, self.stream.is_some());
        if self.seen_view != Some(view) || std::mem::take(&mut self.accepted_late) {
            self.seen_view = Some(view);
            let lost = self.awaiting.iter().any(|(key, seq)| {
                !self.unsent.contains_key(seq)
                    && !self.posted.contains_key(seq)
                    && self
                        .accepted_on
                        .get(key)
                        .is_some_and(|g| self.live_connection != Some(*g) || self.stream.is_none())
            });
            if lost {
                self.flag(ACCEPTED_NOT_FAILED);
            }
        }
        // The Link never waits for a check that no longer runs.
        assert!(
            !(self.link.checking() && self.check.is_none()),
            "the Link waits for a check that no longer runs"
        );
    }

    fn run(&mut self) -> Stats {
        self.at(0, Ev::HostRequest(0));
        for id in 1..=REQUESTS {
            let when = self.rng.below(LAST_REQUEST_AT);
            self.at(when, Ev::HostRequest(id));
        }
        let mut steps = 0;
        while let Some((at, ev)) = self.queue.pop() {
            self.now = at;
            self.log(|| format!("== {ev:?}"));

            self.step(ev);
            steps += 1;
            assert!(steps < 200_000, "runaway schedule");
        }
        for id in 0..=REQUESTS {
            assert_eq!(
                self.answers.get(&id).copied().unwrap_or(0),
                1,
                "request {id} got no answer"
            );
        }
        assert_eq!(self.router.pending(), 0);
        assert!(self.check.is_none(), "a check never ended");
        self.stats
    }
}

impl TokenGlue for Sim {
    const SIGN_IN_OK: u64 = 90;
    const REFRESH_OK: u64 = 80;
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
    fn tell_link(&mut self, event: LinkEvent) {
        self.dispatch(event);
    }
}

impl Simulation for Sim {
    type Stats = Stats;
    fn new(seed: u64, trace: bool) -> Sim {
        Sim::new(seed, trace)
    }
    fn run(&mut self) -> Stats {
        Sim::run(self)
    }
    fn take_flags(&mut self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut self.flags)
    }
    fn take_trace(&mut self) -> Vec<String> {
        self.trace.take().unwrap_or_default()
    }
}

/// The 10,000 seeds, run once for both tests.
fn outcome() -> &'static Outcome<Stats> {
    static OUTCOME: OnceLock<Outcome<Stats>> = OnceLock::new();
    OUTCOME.get_or_init(run_all::<Sim>)
}

#[test]
fn legacy_sse_ten_thousand_seeds_keep_every_invariant() {
    let outcome = outcome();
    assert_no_seed_broke::<Sim>(outcome);
    // The schedules went through every legacy path, many times each.
    let t = outcome.total;
    assert_paths_taken(&[
        ("stream lost", t.streams_lost, 2_000),
        ("re-initialization", t.reinits, 2_000),
        (
            "silent death caught by a check",
            t.silent_caught_by_check,
            200,
        ),
        (
            "silent death caught by the keep-alive pace",
            t.silent_caught_by_pace,
            50,
        ),
        (
            "check confirmed the stream alive",
            t.checks_confirmed,
            2_000,
        ),
        ("check declared the stream dead", t.checks_dead, 200),
        (
            "check before a request on a quiet stream",
            t.quiet_before_request,
            1_000,
        ),
        ("check after a suspect POST", t.suspicions, 1_000),
        (
            "held during a check, sent on the same stream",
            t.held_then_sent_on_same_stream,
            1_000,
        ),
        (
            "held during a check, sent on the next stream",
            t.held_then_sent_on_next_stream,
            200,
        ),
        (
            "accepted request failed with its stream",
            t.failed_accepted,
            500,
        ),
        ("POST answered 404", t.expired, 200),
        ("stream open timed out", t.open_timeouts, 200),
        ("stream reconnection delay", t.stream_retries, 2_000),
        ("token requested", t.token_requests, 500),
        ("answered by the server", t.ok, 50_000),
        ("answered with an error by the proxy", t.errors, 5_000),
    ]);
}

const ACCEPTED_NOT_FAILED: &str = "a request accepted on a lost stream got no error";
const QUIET_NOT_CHECKED: &str = "a request was sent on a quiet stream nobody checked";
const SENT_DURING_CHECK: &str = "a host message was sent while a check of the stream ran";
const HELD_UNTIL_TIMEOUT: &str = "a held request waited for the request time-out";

/// Liveness: what the proxy can know, it acts on at once — a request accepted on a
/// stream it gave up on gets its error then (not at `--request-timeout`), a request
/// is not sent on a quiet stream nobody checked, messages wait while a check runs
/// (`LinkEffect::CheckStream`), and a held request is not left to time out.
#[test]
fn legacy_sse_lost_and_held_requests_are_answered_without_waiting_for_the_timeout() {
    let report: Vec<String> = outcome()
        .findings
        .iter()
        .map(|(what, seeds)| finding_report::<Sim>(what, seeds, 8, 40))
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n\n"));
}

/// The same seed gives the same schedule, step for step.
#[test]
fn legacy_sse_schedules_are_deterministic() {
    assert_deterministic::<Sim>(&[1, 39, 99, 14]);
}

/// Prints the trace of one seed: `SIM_SEED=39 cargo test -p machines --test
/// simulation legacy_sse_trace -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid: prints the trace of the seed in SIM_SEED"]
fn legacy_sse_trace_of_one_seed() {
    print_trace_of_env_seed::<Sim>();
}
