//! Streamable HTTP (`--transport http-only`) on the simulated network, with the
//! Session's connection check.
//!
//! The Link, the Router and the Grant, glued together the way `actors/src/session.rs`
//! and `actors/src/session/liveness.rs` glue them on Streamable HTTP (same bookkeeping:
//! `unsent`, `posted`, `post_tasks`, `awaiting`; the same watch on every POST, the same
//! [`StreamCheck`] and the same reactions to its pings; the optional keep-alive pings),
//! without importing the actors. The server is modelled too: it keeps one session (and
//! forgets it now and then: 404 until a new `initialize`), executes requests, some of
//! them slowly (a tool call of several seconds), and answers each on its own POST, as
//! JSON or as a short event stream. The network misbehaves: POSTs refused at connect,
//! lost before or after the server saw them, slow, answered 401 or 503; and it goes
//! **silent** for a while (a blackhole: a POST made during it, or in flight when it
//! begins, never gets a response, nor does the server ever see it if it had not yet;
//! once it lifts, new POSTs work, the old ones stay dead).
//!
//! Checked after every step or at the end of every seed:
//!
//! - every host request gets exactly one answer, and never the answer to a request of
//!   the proxy's own (check and keep-alive pings, the replayed `initialize`);
//! - the server executes a host request at most once;
//! - the Link never retries without a delay, its delays are bounded, and at most one
//!   of its retry timers runs;
//! - at most one token request is in flight;
//! - at most one check runs; the Link never waits for a check (`checking()`) that does
//!   not run, and no check runs that the Link does not wait for;
//! - no host message is POSTed while the Link is checking (the host's
//!   `notifications/initialized` excepted: `LinkEffect::CheckStream`);
//! - every check ends (confirmed) or starts again within [`StreamCheck::GIVE_UP`], and
//!   gives up only when the network really was silent (a slow tool call is not a dead
//!   server: its check confirms the server alive).
//!
//! Liveness findings are recorded without stopping the seed, each checked by a test of
//! its own: a message the Link holds is not left to the Router's time-out once the
//! network has been back for [`BACK_FOR`] (held during a blackhole, it goes once the
//! network is back and is answered within its deadline); a lost replayed `initialize`
//! does not wedge the session; a check that gives up abandons the requests the silent
//! network swallowed, whatever the Link's state; after a failed re-initialization no
//! message goes without the session id. The last three found defects of the Session and
//! the Link, since fixed (a replay of `initialize` is watched and replaced when the
//! network went silent or came back; `PeerSilent` abandons in every state; a lost
//! session is re-initialized before anything else is sent).
//!
//! Not modelled: the standalone GET stream and the resumption of broken response
//! streams (`Last-Event-ID`): the check does not involve them.
//!
//! The 10,000 seeds run once ([`outcome`]) for the tests that read them.

use super::common::{
    assert_deterministic, assert_no_seed_broke, assert_paths_taken, counters, finding_report,
    initialized, ms, print_trace_of_env_seed, refresh_ended, request, run_all, sign_in_ended,
    Outcome, Simulation, Timeline, TokenGlue, Tokens, CONFIRM_TIMEOUT, LAST_REQUEST_AT, REQUESTS,
};
use super::Rng;
use machines::backoff::BackoffPolicy;
use machines::jsonrpc::{self, IdKey, Kind, Message, RESERVED_ID_PREFIX};
use machines::link::{Link, LinkEffect, LinkEvent, LinkOutbox, State as LinkState, Strategy};
use machines::router::{Outbound, Router, RouterConfig, RouterEffect};
use machines::stream::{CheckStep, ResponseTime, StreamCheck};
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Router's `--request-timeout` in the simulation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A message still held when the network has been back this long, and held this long,
/// was forgotten: the check confirms within a few hundred milliseconds of the first
/// ping after the network is back (at most `GIVE_UP - (MAX_PINGS - 1) × REPING` =
/// 3.5 s later), and every other reason to hold (reconnecting, a token) is excluded.
const BACK_FOR: u64 = 10_000;

// The Session's constants (actors/src/session.rs, actors/src/session/liveness.rs).

/// What happens next, at a simulated time.
#[derive(Debug, Clone)]
enum Ev {
    /// The host sends request `id` (`0` is its `initialize`).
    HostRequest(u64),
    /// The host's `notifications/initialized`, after it saw its `initialize` answered.
    HostInitialized,
    /// A POST reaches the server.
    PostArrives(u64),
    /// A message of a POST's response reaches the Session (`ServerMessage`).
    PostAnswer {
        post: u64,
        json: String,
        session_id: Option<String>,
    },
    /// A POST's exchange ends (`ExchangeEnded`).
    PostEnded { post: u64, end: End },
    /// The Session's watch on the POST of message `seq` (`watch_post`).
    PostSuspect { seq: u64 },
    /// The replayed `initialize` (with this reserved id) was accepted a while ago.
    ReinitSuspect { id: String },
    /// The Link's retry timer (`LinkEffect::ScheduleRetry`).
    LinkRetryTimer,
    /// Check `number` asked to be polled again (`CheckStep::Wait`).
    CheckPoll(u64),
    /// `CONFIRM_TIMEOUT` after a `notifications/initialized`.
    ConfirmDeadline,
    /// The keep-alive interval (`--keep-alive`).
    KeepAlive,
    /// The browser sign-in ended.
    SignInDone { ok: bool },
    /// The token refresh ended.
    RefreshDone { ok: bool },
    /// The server drops the session (its next POSTs with that id get 404).
    ServerForgets,
    /// The network goes silent (`true`) or comes back.
    Blackhole(bool),
    /// The Router's next request deadline.
    Tick,
}

/// How an HTTP exchange ended, as the Session's `ExchangeEnd` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// 202.
    Accepted,
    /// A JSON body or an event stream, read to its end (whatever it carried).
    Done,
    /// Another status (400 for a request without the session id the server wants).
    Refused(u16),
    /// A network error after the connection was made: the fate of the request is unknown.
    Failed,
    /// Refused at connect: the request surely never reached the server.
    Unreachable,
    /// 404 to a request with `Mcp-Session-Id`.
    Expired,
    /// 401.
    Unauthorized,
    /// 503 with `Retry-After` (milliseconds).
    Busy(u64),
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
    /// A keep-alive ping.
    Ping,
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
    /// The `Mcp-Session-Id` it carries.
    session: Option<String>,
    /// When it was sent: a blackhole from then on swallows it.
    started: u64,
    /// Its future was dropped (`AbandonInFlight`): its connection closes, so nothing of
    /// it reaches the Session any more, nor the server if it had not yet.
    cancelled: bool,
    /// A blackhole swallowed it: nothing of it arrives any more.
    dead: bool,
    /// The server takes seconds over it (a slow tool call).
    slow: bool,
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
    /// When its POST was sent, in simulated milliseconds.
    posted_at: Option<u64>,
}

/// A check in progress (liveness.rs `Check`).
struct Check {
    number: u64,
    machine: StreamCheck,
    /// Ping ids, and when the server accepted each (never, on Streamable HTTP: any
    /// answer confirms).
    pings: Vec<(String, Option<u64>)>,
    /// When it began, for the bound on its length.
    started: u64,
}

/// How a check ended.
#[derive(Debug, Clone, Copy)]
enum CheckEnd {
    /// A ping got an HTTP answer, or its JSON-RPC answer came.
    Confirmed,
    /// No ping got through within `GIVE_UP`: `PeerSilent`, then a new check.
    Restarted,
    /// The Link stopped waiting for it.
    Dropped,
}

counters! {
/// How often each path was taken, so the test proves it exercised them.
struct Stats {
    /// Blackholes that began.
    blackholes: u64,
    /// Host POSTs swallowed by a blackhole.
    swallowed: u64,
    /// Tool calls the server took seconds to answer.
    slow_calls: u64,
    /// Slow tool calls in flight when a check confirmed the server alive (the network
    /// up), then answered by the server: the check cost a ping, not the call.
    slow_calls_answered_after_check: u64,
    /// Checks begun because a POST got no response in time.
    suspicions_slow: u64,
    /// Checks begun because a POST failed on the network.
    suspicions_failed: u64,
    /// Checks begun.
    checks: u64,
    /// Checks that confirmed the server reachable.
    checks_confirmed: u64,
    /// Of those: checks during which the network was never silent (a slow call, a
    /// failed POST: a false alarm, cleared).
    checks_confirmed_network_up: u64,
    /// Checks that gave up after `GIVE_UP` and started again (`PeerSilent`).
    checks_restarted: u64,
    /// Checks the Link stopped waiting for.
    checks_dropped: u64,
    /// Host requests held by the Link while a check ran.
    held_in_check: u64,
    /// Of those: sent afterwards.
    held_then_sent: u64,
    /// Of those: answered by the server.
    held_then_answered: u64,
    /// Host requests failed by `AbandonInFlight` ("fate unknown").
    abandoned: u64,
    /// `PeerSilent` from an unanswered keep-alive ping.
    keepalive_silent: u64,
    /// Re-initializations begun.
    reinits: u64,
    /// POSTs answered 404 (the server forgot the session).
    expired: u64,
    /// Link retry timers (a POST refused at connect, or 503).
    retries: u64,
    /// `RequestToken`s.
    token_requests: u64,
    /// Answers from the server that reached the host.
    ok: u64,
    /// Errors from the proxy that reached the host (time-outs aside).
    errors: u64,
    /// Answers given by the Router's request time-out.
    timeouts: u64,
    /// Of those: requests whose POST a blackhole swallowed and that no check abandoned,
    /// the network having come back before `GIVE_UP` (nothing tells a dead POST from a
    /// slow one).
    timeouts_swallowed: u64,
    /// Of those: requests whose POST a blackhole swallowed, though a `PeerSilent` came
    /// after it was sent (while the Link was not `live`, which alone abandons anything).
    timeouts_swallowed_not_abandoned: u64,
    /// `PeerSilent` while the Link was not `live` (ignored: nothing abandoned).
    peer_silent_not_live: u64,
    /// Host requests sent without a session id after the session was established.
    sent_without_session: u64,
    /// Host requests abandoned because a keep-alive ping was not answered by the next
    /// tick although the network never went silent (it was refused, or lost, once).
    abandoned_by_keepalive_network_up: u64,
}
}

/// One seed's world: the host, the proxy's machines and glue, the network, the server.
struct Sim {
    rng: Rng,
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
    /// POST exchanges in progress: message → POST (ordered: `AbandonInFlight` fails
    /// them in a reproducible order).
    post_tasks: BTreeMap<u64, u64>,
    awaiting: HashMap<IdKey, u64>,
    has_initialize: bool,
    host_initialize: Option<IdKey>,
    reinit_id: Option<String>,
    initialized_seq: Option<u64>,
    ping_outstanding: Option<String>,
    /// When the keep-alive ping was sent (the Session's `ping_outstanding` has no time;
    /// the simulation wants to know whether the network went silent since).
    ping_sent_at: u64,
    pings: u64,
    check: Option<Check>,
    checks: u64,
    check_lag: Option<Duration>,
    post_time: ResponseTime,
    /// `--keep-alive` interval, if set.
    keepalive: Option<u64>,

    // The network and the server.
    /// POSTs on their way, by number.
    posts: HashMap<u64, PostReq>,
    next_post: u64,
    /// The network's silent periods, `[start, end)` in milliseconds.
    blackholes: Vec<(u64, u64)>,
    /// The session the server knows (`None`: none, or forgotten).
    server_session: Option<String>,
    /// Sessions the server issued.
    sessions: u64,
    /// What the server did: executions per host request id.
    executions: HashMap<u64, u32>,

    // The host and the invariants' bookkeeping.
    /// What the host saw: answers per request id.
    answers: HashMap<u64, u32>,
    retry_pending: bool,
    /// When the Router's next deadline is ticked.
    tick_at: Option<u64>,
    /// Since when each message has been in `unsent` (held, or about to go).
    held_since: HashMap<u64, u64>,
    /// Requests held while a check ran, not yet sent.
    held_in_check: HashSet<u64>,
    /// Ids of requests that were held during a check and then sent.
    sent_after_hold: HashSet<u64>,
    /// Ids of slow calls in flight when a check confirmed the server alive.
    slow_when_confirmed: HashSet<u64>,
    /// When a `PeerSilent` was last given to the Link.
    last_peer_silent: Option<u64>,
    stats: Stats,
    /// Liveness findings (they do not stop the seed): what, and when first.
    flags: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut rng = Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1656_67B1_9E37_79F9) | 1);
        // The network goes silent in most seeds: briefly (the check confirms once it is
        // back), or beyond GIVE_UP (what is in flight is abandoned, checking goes on).
        let mut blackholes = Vec::new();
        if rng.chance(65) {
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
        let config = RouterConfig {
            request_timeout: Some(REQUEST_TIMEOUT),
            ..Default::default()
        };
        Sim {
            rng,
            t0: Instant::now(),
            now: 0,
            queue: Timeline::new(),
            trace: trace.then(Vec::new),
            router: Router::new(config),
            link: Link::new(Strategy::HttpOnly, None)
                .with_seed(seed)
                .state_machine(),
            tokens: Tokens::new(),
            next_seq: 0,
            unsent: HashMap::new(),
            posted: HashMap::new(),
            post_tasks: BTreeMap::new(),
            awaiting: HashMap::new(),
            has_initialize: false,
            host_initialize: None,
            reinit_id: None,
            initialized_seq: None,
            ping_outstanding: None,
            ping_sent_at: 0,
            pings: 0,
            check: None,
            checks: 0,
            check_lag: None,
            post_time: ResponseTime::default(),
            keepalive,
            posts: HashMap::new(),
            next_post: 0,
            blackholes,
            server_session: None,
            sessions: 0,
            executions: HashMap::new(),
            answers: HashMap::new(),
            retry_pending: false,
            tick_at: None,
            held_since: HashMap::new(),
            held_in_check: HashSet::new(),
            sent_after_hold: HashSet::new(),
            slow_when_confirmed: HashSet::new(),
            last_peer_silent: None,
            stats: Stats::default(),
            flags: BTreeMap::new(),
        }
    }

    /// The host sent everything and has every answer: keep-alives stop, so the
    /// schedule runs out.
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

    /// Network latency: usually short, sometimes seconds.
    fn latency(&mut self) -> u64 {
        if self.rng.chance(3) {
            1_000 + self.rng.below(2_000)
        } else {
            1 + self.rng.below(150)
        }
    }

    /// Whether a blackhole was on at some moment since `started` (up to now).
    fn swallowed(&self, started: u64) -> bool {
        self.blackholes
            .iter()
            .any(|&(s, e)| s <= self.now && e > started)
    }

    /// How long the network has been up (0 during a blackhole).
    fn back_for(&self) -> u64 {
        let mut up_since = 0;
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
            let waiting = key.as_ref().and_then(|k| self.awaiting.get(k).copied());
            match waiting {
                Some(seq) if self.unsent.contains_key(&seq) => {
                    let held_for = self.now - self.held_since.get(&seq).copied().unwrap_or(0);
                    if held_for >= BACK_FOR
                        && self.back_for() >= BACK_FOR
                        && !self.retry_pending
                        && self.tokens.in_flight == 0
                    {
                        // Re-initializing, and the replayed initialize was swallowed: nothing
                        // watches it, nothing ends it (a finding of its own).
                        let lost_reinit = matches!(self.link.state(), LinkState::Reinitializing {})
                            && self.reinit_id.is_some()
                            && self.posts.values().any(|p| {
                                matches!(p.origin, Origin::Reinit)
                                    && (p.dead || self.swallowed(p.started))
                            });
                        self.flag(if lost_reinit {
                            REINIT_LOST
                        } else {
                            HELD_UNTIL_TIMEOUT
                        });
                    }
                }
                Some(seq) => {
                    let started = self
                        .post_tasks
                        .get(&seq)
                        .and_then(|post| self.posts.get(post))
                        .filter(|p| p.dead || self.swallowed(p.started))
                        .map(|p| p.started);
                    if let Some(started) = started {
                        if self.last_peer_silent.is_some_and(|t| t > started) {
                            self.stats.timeouts_swallowed_not_abandoned += 1;
                        } else {
                            self.stats.timeouts_swallowed += 1;
                        }
                    }
                }
                None => {}
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
            if !m.is_error && !tick && self.sent_after_hold.contains(&n) {
                self.stats.held_then_answered += 1;
            }
            if !m.is_error && !tick && self.slow_when_confirmed.contains(&n) {
                self.stats.slow_calls_answered_after_check += 1;
            }
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
                posted_at: None,
            },
        );
        self.held_since.insert(seq, self.now);
        let posted = self.dispatch(LinkEvent::HostSent {
            seq,
            kind: outbound.kind,
            method: outbound.method,
        });
        if self.link.checking()
            && outbound.kind == Kind::Request
            && self.unsent.contains_key(&seq)
            && !posted.contains(&seq)
        {
            self.stats.held_in_check += 1;
            self.held_in_check.insert(seq);
        }
    }

    // ---- the Session: the Link ----

    /// Drive the Link, perform its effects; returns the messages it posted.
    fn dispatch(&mut self, event: LinkEvent) -> Vec<u64> {
        let mut out = LinkOutbox::default();
        self.link.handle_with_context(&event, &mut out);
        if self.trace.is_some() {
            let state = format!("{:?}", self.link.state());
            let checking = if self.link.checking() {
                " checking"
            } else {
                ""
            };
            self.log(|| format!("link {event:?} -> {state}{checking} {:?}", out.0));
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
                // `CheckStream`: messages are held while the connection is checked, except
                // the host's `notifications/initialized`.
                let initialized = pending.method.as_deref() == Some("notifications/initialized");
                assert!(
                    !self.link.checking() || initialized,
                    "a host message ({:?} id={:?}) was POSTed while the Link was checking",
                    pending.method,
                    pending.id
                );
                if self.link.established() && self.link.session_id().is_none() {
                    // Streamable HTTP §Session Management item 2: once the server issued a
                    // session id, every request carries one (this server always issues one).
                    if pending.kind == Kind::Request {
                        self.stats.sent_without_session += 1;
                    }
                    self.flag(NO_SESSION);
                }
                if self.held_in_check.remove(&seq) {
                    self.stats.held_then_sent += 1;
                    self.sent_after_hold.extend(pending.id);
                }
                pending.retried = retry;
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
                let post = self.send_post(Origin::Post { seq }, body);
                self.post_tasks.insert(seq, post);
                self.watch_post(seq);
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
            LinkEffect::PostReinitialize { id } => {
                self.stats.reinits += 1;
                if self.has_initialize {
                    self.reinit_id = Some(id.clone());
                    // As the Session: a replay replaces the one before, and is watched.
                    for p in self.posts.values_mut() {
                        if matches!(p.origin, Origin::Reinit) {
                            p.cancelled = true;
                        }
                    }
                    self.send_post(Origin::Reinit, Body::Reinit(id.clone()));
                    let after = self.post_time.late_after();
                    self.at(ms(after), Ev::ReinitSuspect { id });
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
            LinkEffect::CheckStream => self.start_check(),
            LinkEffect::ScheduleRetry(d) => {
                assert!(
                    d >= BackoffPolicy::RECONNECT.min_delay,
                    "a retry without a delay: {d:?}"
                );
                // Retry-After (503) is at most 3 s here.
                assert!(
                    d <= BackoffPolicy::RECONNECT.max_delay * 2,
                    "unbounded backoff: {d:?}"
                );
                assert!(!self.retry_pending, "two retry timers at once");
                self.retry_pending = true;
                self.stats.retries += 1;
                self.at(ms(d), Ev::LinkRetryTimer);
            }
            LinkEffect::AbandonInFlight { reason } => {
                for (seq, post) in std::mem::take(&mut self.post_tasks) {
                    if let Some(p) = self.posts.get_mut(&post) {
                        p.cancelled = true;
                    }
                    if let Some(pending) = self.posted.remove(&seq) {
                        if pending.kind == Kind::Request {
                            self.stats.abandoned += 1;
                        }
                        self.fail(&pending, &reason);
                    }
                }
            }
            LinkEffect::Discard { seq } => {
                self.unsent.remove(&seq);
            }
            LinkEffect::RequestToken => {
                self.stats.token_requests += 1;
                self.request_token();
            }
            LinkEffect::OpenLegacyStream
            | LinkEffect::CloseLegacyStream
            | LinkEffect::FailAccepted { .. } => {
                panic!("a legacy transport effect on http-only: {effect:?}")
            }
            // Not modelled: the standalone GET stream carries no answers to POSTs.
            LinkEffect::OpenGetStream
            | LinkEffect::CloseGetStream
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

    // ---- the network ----

    /// Send a POST (the Session's `post` + `spawn_exchange`); returns its number.
    fn send_post(&mut self, origin: Origin, body: Body) -> u64 {
        let post = self.next_post;
        self.next_post += 1;
        // The replayed initialize goes without the session headers.
        let session = match origin {
            Origin::Reinit => None,
            _ => self.link.session_id().map(str::to_owned),
        };
        self.log(|| format!("POST #{post} {origin:?} {body:?} session={session:?}"));
        self.posts.insert(
            post,
            PostReq {
                origin,
                body,
                session,
                started: self.now,
                cancelled: false,
                dead: false,
                slow: false,
            },
        );
        let latency = self.latency();
        if self.rng.chance(6) {
            self.at(
                latency,
                Ev::PostEnded {
                    post,
                    end: End::Unreachable,
                },
            );
        } else if self.rng.chance(2) {
            // Lost before it reached the server.
            self.at(
                latency,
                Ev::PostEnded {
                    post,
                    end: End::Failed,
                },
            );
        } else {
            self.at(latency, Ev::PostArrives(post));
        }
        post
    }

    /// Whether what the network carries for `post` now still arrives.
    fn carries(&mut self, post: u64) -> bool {
        let started = match self.posts.get(&post) {
            None => return false,
            Some(p) if p.dead || p.cancelled => return false,
            Some(p) => p.started,
        };
        if self.swallowed(started) {
            let p = self.posts.get_mut(&post).unwrap();
            p.dead = true;
            let host = matches!(p.origin, Origin::Post { .. });
            self.log(|| format!("POST #{post} swallowed by the blackhole"));
            if host {
                self.stats.swallowed += 1;
            }
            return false;
        }
        true
    }

    fn new_session(&mut self) {
        self.sessions += 1;
        self.server_session = Some(format!("s{}", self.sessions));
    }

    fn execute(&mut self, id: u64) {
        let count = self.executions.entry(id).or_default();
        *count += 1;
        assert!(*count <= 1, "request {id} executed {count} times");
    }

    /// The server answers `post` after `after` ms: a message (if any), then the end of
    /// the exchange (with an event stream, a little later).
    fn respond(&mut self, post: u64, json: Option<String>, after: u64, end: End) {
        let session_id = self.server_session.clone();
        if let Some(json) = json {
            // A misbehaving server sometimes sends an answer twice.
            let twice = self.rng.chance(2);
            for _ in 0..1 + u64::from(twice) {
                let ev = Ev::PostAnswer {
                    post,
                    json: json.clone(),
                    session_id: session_id.clone(),
                };
                self.at(after, ev);
            }
        }
        let tail = if self.rng.chance(40) {
            1 + self.rng.below(50)
        } else {
            0
        };
        self.at(after + tail, Ev::PostEnded { post, end });
    }

    /// The server receives a POST.
    fn post_arrives(&mut self, post: u64) {
        if !self.carries(post) {
            return;
        }
        let (body, session) = {
            let p = &self.posts[&post];
            (p.body.clone(), p.session.clone())
        };
        let latency = self.latency();
        let stale = session.is_none() || session != self.server_session;
        let end_after = |sim: &mut Sim, after: u64, end: End| {
            sim.at(after, Ev::PostEnded { post, end });
        };
        match body {
            Body::Host {
                id: Some(id),
                method,
            } if method.as_deref() == Some("initialize") => {
                self.execute(id);
                self.new_session();
                let json = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-06-18"}}}}"#
                );
                let work = self.rng.below(200);
                self.respond(post, Some(json), work + latency, End::Done);
            }
            Body::Host { .. } if stale => {
                let end = if session.is_some() {
                    self.stats.expired += 1;
                    End::Expired
                } else {
                    // The SDKs' servers: "Bad Request: No valid session ID provided".
                    End::Refused(400)
                };
                end_after(self, latency, end);
            }
            Body::Host { .. } if self.rng.chance(3) => end_after(self, latency, End::Unauthorized),
            Body::Host { .. } if self.rng.chance(2) => {
                let retry_after = 1_000 + self.rng.below(2_000);
                end_after(self, latency, End::Busy(retry_after));
            }
            Body::Host { id: Some(id), .. } => {
                self.execute(id);
                let slow = self.rng.chance(10);
                let work = if slow {
                    self.stats.slow_calls += 1;
                    self.posts.get_mut(&post).unwrap().slow = true;
                    2_000 + self.rng.below(10_000)
                } else {
                    self.rng.below(300)
                };
                let json = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
                match self.rng.below(100) {
                    // Executed, then the answer was lost: a network error, or an event
                    // stream that ended before the answer.
                    0..=1 => end_after(self, work + latency, End::Failed),
                    2..=3 => end_after(self, work + latency, End::Done),
                    _ => self.respond(post, Some(json), work + latency, End::Done),
                }
            }
            Body::Host { id: None, .. } => end_after(self, latency, End::Accepted),
            Body::Reinit(id) => {
                self.new_session();
                let json = if self.rng.chance(95) {
                    format!(
                        r#"{{"jsonrpc":"2.0","id":"{id}","result":{{"protocolVersion":"2025-06-18"}}}}"#
                    )
                } else {
                    format!(
                        r#"{{"jsonrpc":"2.0","id":"{id}","error":{{"code":-32603,"message":"no"}}}}"#
                    )
                };
                let work = self.rng.below(300);
                self.respond(post, Some(json), work + latency, End::Done);
            }
            Body::Initialized if stale => end_after(self, latency, End::Expired),
            Body::Initialized => end_after(self, latency, End::Accepted),
            Body::Ping(_) if stale => end_after(self, latency, End::Expired),
            Body::Ping(_) if self.rng.chance(1) => end_after(self, latency, End::Unauthorized),
            Body::Ping(id) => {
                let json = format!(r#"{{"jsonrpc":"2.0","id":"{id}","result":{{}}}}"#);
                let work = self.rng.below(50);
                self.respond(post, Some(json), work + latency, End::Done);
            }
        }
    }

    // ---- the Session: answers and ends of POSTs ----

    /// A message of a POST's response (the Session's `ServerMessage` handler).
    fn server_message(&mut self, post: u64, json: String, session_id: Option<String>) {
        if !self.carries(post) {
            return;
        }
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
                                session_id,
                                protocol_version: jsonrpc::negotiated_version(&m),
                            }
                        };
                        self.dispatch(event);
                    }
                    if self
                        .ping_outstanding
                        .as_deref()
                        .is_some_and(|id| key == IdKey::Str(id.to_owned()))
                    {
                        self.ping_outstanding = None;
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
                            session_id,
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

    /// The Session's `ExchangeEnded` handler.
    fn post_ended(&mut self, post: u64, end: End) {
        if !self.carries(post) {
            return;
        }
        let origin = self.posts.remove(&post).unwrap().origin;
        self.log(|| format!("POST #{post} {origin:?} ended {end:?}"));
        match origin {
            Origin::Post { seq } => self.host_post_ended(seq, end),
            Origin::Reinit if end == End::Accepted => {
                // liveness.rs `watch_reinit`.
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
            // As the Session: any HTTP answer shows the server is there.
            Origin::Ping => {
                if !matches!(end, End::Failed | End::Unreachable) {
                    self.ping_outstanding = None;
                }
            }
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
        if matches!(end, End::Accepted | End::Done) {
            self.token_worked();
        }
        self.watched_post_ended(&pending, end);
        if !matches!(end, End::Failed | End::Unreachable) {
            self.dispatch(LinkEvent::Reachable);
        }
        let is_init = pending.id_key.is_some() && pending.id_key == self.host_initialize;
        match end {
            End::Expired => {
                let retried = pending.retried;
                self.unsent.insert(seq, pending);
                self.held_since.insert(seq, self.now);
                self.dispatch(LinkEvent::SessionExpired { seq, retried });
            }
            End::Busy(retry_after) => {
                self.unsent.insert(seq, pending);
                self.held_since.insert(seq, self.now);
                self.dispatch(LinkEvent::Busy {
                    seq,
                    retry_after: Duration::from_millis(retry_after),
                });
            }
            End::Unauthorized => {
                self.unsent.insert(seq, pending);
                self.held_since.insert(seq, self.now);
                self.dispatch(LinkEvent::Unauthorized { seq });
            }
            End::Refused(status) if is_init => {
                self.unsent.insert(seq, pending);
                self.held_since.insert(seq, self.now);
                self.dispatch(LinkEvent::InitializeRefused {
                    seq,
                    status,
                    reason: format!("HTTP {status}"),
                });
            }
            End::Unreachable if !is_init => {
                // Never reached the server: the Link sends it again after a delay.
                self.unsent.insert(seq, pending);
                self.held_since.insert(seq, self.now);
                self.dispatch(LinkEvent::Unreachable { seq });
            }
            End::Refused(_) | End::Failed | End::Unreachable => {
                self.fail(&pending, &format!("{end:?}"));
                if is_init {
                    self.host_initialize = None;
                    self.dispatch(LinkEvent::InitializeFailed);
                }
            }
            End::Done | End::Accepted => {
                if let Some(key) = pending.id_key.filter(|k| self.awaiting.contains_key(k)) {
                    self.fail_key(key, "the server ended the response without answering");
                }
            }
        }
    }

    // ---- liveness.rs ----

    fn watch_post(&mut self, seq: u64) {
        let after = self.post_time.late_after();
        self.at(ms(after), Ev::PostSuspect { seq });
    }

    /// liveness.rs `post_ended`: learn the usual time to an answer, suspect a failure.
    fn watched_post_ended(&mut self, pending: &Pending, end: End) {
        match end {
            End::Accepted | End::Done => {
                if let Some(sent) = pending.posted_at {
                    self.post_time
                        .observe(Duration::from_millis(self.now - sent));
                }
            }
            End::Failed if self.suspect("a POST failed on the network") => {
                self.stats.suspicions_failed += 1;
            }
            _ => {}
        }
    }

    /// Returns whether a check was asked for.
    fn suspect(&mut self, why: &str) -> bool {
        if self.check.is_some() || !self.link.established() {
            return false;
        }
        self.log(|| format!("{why}; checking that the server is reachable"));
        self.dispatch(LinkEvent::StreamQuiet);
        true
    }

    fn start_check(&mut self) {
        assert!(self.check.is_none(), "two checks at once");
        self.stats.checks += 1;
        self.checks += 1;
        let number = self.checks;
        self.check = Some(Check {
            number,
            machine: StreamCheck::new(self.instant(), StreamCheck::answer_wait(self.check_lag)),
            pings: Vec::new(),
            started: self.now,
        });
        self.poll_check(number);
    }

    fn poll_check(&mut self, number: u64) {
        for _ in 0..=StreamCheck::MAX_PINGS + 1 {
            let now = self.instant();
            let Some(check) = self.check.as_mut().filter(|c| c.number == number) else {
                return;
            };
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
                    // Streamable HTTP: nothing got through; in-flight POSTs are abandoned
                    // and checking goes on.
                    self.end_check(CheckEnd::Restarted);
                    self.peer_silent();
                    self.start_check();
                    return;
                }
            }
        }
        panic!("a check pinged without end");
    }

    fn check_ping_ended(&mut self, number: u64, end: End) {
        if self.check.as_ref().is_none_or(|c| c.number != number) {
            return;
        }
        match end {
            // Streamable HTTP: any HTTP answer shows the server is reachable again.
            End::Failed | End::Unreachable => {}
            _ => self.stream_confirmed(),
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

    /// The check in progress ends.
    fn end_check(&mut self, how: CheckEnd) {
        if let Some(check) = self.check.take() {
            let took = Duration::from_millis(self.now - check.started);
            self.log(|| format!("check {} {how:?} after {took:?}", check.number));
            assert!(
                took <= StreamCheck::GIVE_UP,
                "a check ended ({how:?}) after {took:?}, beyond GIVE_UP"
            );
            let silent = self.swallowed(check.started);
            match how {
                CheckEnd::Confirmed => {
                    self.stats.checks_confirmed += 1;
                    if !silent {
                        self.stats.checks_confirmed_network_up += 1;
                        let slow: Vec<u64> = self
                            .post_tasks
                            .iter()
                            .filter(|(_, post)| self.posts.get(post).is_some_and(|p| p.slow))
                            .filter_map(|(seq, _)| self.posted.get(seq).and_then(|p| p.id))
                            .collect();
                        self.slow_when_confirmed.extend(slow);
                    }
                }
                CheckEnd::Restarted => {
                    assert!(
                        silent,
                        "check {} gave up although the network was up all along",
                        check.number
                    );
                    self.stats.checks_restarted += 1;
                }
                CheckEnd::Dropped => self.stats.checks_dropped += 1,
            }
        }
    }

    /// `PeerSilent` to the Link (only `live` abandons what is in flight).
    fn peer_silent(&mut self) {
        if !matches!(self.link.state(), LinkState::Live {}) {
            self.stats.peer_silent_not_live += 1;
        }
        self.last_peer_silent = Some(self.now);
        self.dispatch(LinkEvent::PeerSilent);
        // A request a blackhole swallowed is abandoned (it fails, "fate unknown"),
        // rather than left to the request time-out.
        let dead_in_flight = self.post_tasks.iter().any(|(seq, post)| {
            self.posted
                .get(seq)
                .is_some_and(|p| p.kind == Kind::Request)
                && self
                    .posts
                    .get(post)
                    .is_some_and(|p| p.dead || self.swallowed(p.started))
        });
        if dead_in_flight {
            self.flag(PEER_SILENT_IGNORED);
        }
    }

    fn stream_confirmed(&mut self) {
        self.end_check(CheckEnd::Confirmed);
        self.dispatch(LinkEvent::StreamConfirmed);
    }

    /// The Session's `keep_alive` tick.
    fn keep_alive(&mut self) {
        if !self.link.established() {
            return;
        }
        if self.ping_outstanding.take().is_some() {
            self.stats.keepalive_silent += 1;
            let abandoned = self.stats.abandoned;
            self.peer_silent();
            if !self.swallowed(self.ping_sent_at) {
                self.stats.abandoned_by_keepalive_network_up += self.stats.abandoned - abandoned;
            }
            return;
        }
        self.pings += 1;
        let id = format!("{RESERVED_ID_PREFIX}ping-{}", self.pings);
        self.ping_outstanding = Some(id.clone());
        self.ping_sent_at = self.now;
        self.send_post(Origin::Ping, Body::Ping(id));
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
            Ev::PostAnswer {
                post,
                json,
                session_id,
            } => self.server_message(post, json, session_id),
            Ev::PostEnded { post, end } => self.post_ended(post, end),
            Ev::PostSuspect { seq } => {
                if self.post_tasks.contains_key(&seq)
                    && self.suspect("a POST got no response in the usual time")
                {
                    self.stats.suspicions_slow += 1;
                }
            }
            Ev::ReinitSuspect { id } => {
                if self.reinit_id.as_deref() == Some(id.as_str()) {
                    self.suspect("no answer to the replayed initialize");
                }
            }
            Ev::LinkRetryTimer => {
                self.retry_pending = false;
                self.dispatch(LinkEvent::RetryTimerFired);
            }
            Ev::CheckPoll(number) => self.poll_check(number),
            Ev::ConfirmDeadline => {
                self.dispatch(LinkEvent::InitializedDelivered);
            }
            Ev::KeepAlive => {
                if let Some(interval) = self.keepalive.filter(|_| !self.host_is_done()) {
                    self.at(interval, Ev::KeepAlive);
                }
                self.keep_alive();
            }
            Ev::SignInDone { ok } => self.grant_event(sign_in_ended(ok)),
            Ev::RefreshDone { ok } => self.grant_event(refresh_ended(ok)),
            Ev::ServerForgets => self.server_session = None,
            Ev::Blackhole(on) => {
                if on {
                    self.stats.blackholes += 1;
                }
            }
            Ev::Tick => {
                // The Router's deadlines are ticked exactly (below).
                let mut out = Vec::new();
                let now = self.instant();
                self.router.on_tick(now, &mut out);
                self.router_effects(out, true);
            }
        }
        if let Some(deadline) = self.router.next_deadline() {
            let at = self.since(deadline);
            if at > self.now && self.tick_at != Some(at) {
                self.tick_at = Some(at);
                self.at(at - self.now, Ev::Tick);
            }
        }
        assert!(
            !(self.link.checking() && self.check.is_none()),
            "the Link waits for a check that does not run"
        );
        assert!(
            self.check.is_none() || self.link.checking(),
            "a check runs that the Link does not wait for"
        );
    }

    fn run(&mut self) -> Stats {
        self.at(0, Ev::HostRequest(0));
        for id in 1..=REQUESTS {
            let when = self.rng.below(LAST_REQUEST_AT);
            self.at(when, Ev::HostRequest(id));
        }
        for (start, end) in self.blackholes.clone() {
            self.at(start, Ev::Blackhole(true));
            self.at(end, Ev::Blackhole(false));
        }
        if self.rng.chance(25) {
            let when = 2_000 + self.rng.below(LAST_REQUEST_AT);
            self.at(when, Ev::ServerForgets);
        }
        if let Some(interval) = self.keepalive {
            self.at(interval, Ev::KeepAlive);
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

/// The 10,000 seeds, run once for the tests that read them.
fn outcome() -> &'static Outcome<Stats> {
    static OUTCOME: OnceLock<Outcome<Stats>> = OnceLock::new();
    OUTCOME.get_or_init(run_all::<Sim>)
}

#[test]
fn streamable_http_ten_thousand_seeds_keep_every_invariant() {
    let outcome = outcome();
    assert_no_seed_broke::<Sim>(outcome);
    // The schedules went through every path, many times each.
    let t = outcome.total;
    assert_paths_taken(&[
        ("blackhole", t.blackholes, 5_000),
        ("POST swallowed by a blackhole", t.swallowed, 5_000),
        ("slow tool call", t.slow_calls, 5_000),
        (
            "slow call answered after a check confirmed the server alive",
            t.slow_calls_answered_after_check,
            1_000,
        ),
        (
            "check after a POST with no response in time",
            t.suspicions_slow,
            10_000,
        ),
        (
            "check after a POST failed on the network",
            t.suspicions_failed,
            2_000,
        ),
        (
            "check confirmed the server reachable",
            t.checks_confirmed,
            10_000,
        ),
        (
            "check confirmed with the network up (slow call, failed POST)",
            t.checks_confirmed_network_up,
            10_000,
        ),
        ("check restarted after GIVE_UP", t.checks_restarted, 4_000),
        ("request held during a check", t.held_in_check, 8_000),
        ("held request sent after the check", t.held_then_sent, 8_000),
        (
            "held request answered by the server",
            t.held_then_answered,
            6_000,
        ),
        ("in-flight request abandoned", t.abandoned, 4_000),
        ("keep-alive ping unanswered", t.keepalive_silent, 500),
        ("re-initialization", t.reinits, 1_000),
        ("POST answered 404", t.expired, 2_000),
        ("Link retry delay", t.retries, 4_000),
        ("token requested", t.token_requests, 1_500),
        ("answered by the server", t.ok, 50_000),
        ("answered with an error by the proxy", t.errors, 10_000),
        ("answered by the request time-out", t.timeouts, 2_000),
    ]);
}

const HELD_UNTIL_TIMEOUT: &str =
    "a held request waited for the request time-out although the network had been back for 10 s";
const REINIT_LOST: &str =
    "the replayed initialize was swallowed and the Link re-initializes for ever: \
     held requests wait for the request time-out although the network had been back for 10 s";
const PEER_SILENT_IGNORED: &str =
    "PeerSilent abandoned nothing although requests swallowed by the blackhole were in flight";
const NO_SESSION: &str =
    "a host message was sent without Mcp-Session-Id after the session was established";

/// The seeds with finding `what`, and the last lines of the first one's trace.
fn report(what: &'static str) -> Option<String> {
    let seeds = outcome().findings.get(what)?;
    Some(finding_report::<Sim>(what, seeds, 40, 60))
}

/// Liveness: a message the Link holds (during a check, a re-initialization, …) goes
/// once the network is back, and is answered within its deadline: none is left to the
/// Router's time-out when the network came back well before it.
#[test]
fn streamable_http_held_requests_go_once_the_network_is_back() {
    if let Some(report) = report(HELD_UNTIL_TIMEOUT) {
        panic!("{report}");
    }
}

/// A replayed `initialize` swallowed by a blackhole must not wedge the session: the
/// Session never watches it (`watch_reinit` only follows a 202, which Streamable HTTP
/// servers do not send to an `initialize`), no check abandons it (`PeerSilent` is
/// ignored in `reinitializing`, and `AbandonInFlight` only drops host POSTs), so the
/// Link stays `reinitializing` and holds every later message until `--request-timeout`
/// (in the proxy: until `--headers-timeout` ends that POST, 300 s by default, never
/// with `--headers-timeout 0`).
#[test]
fn streamable_http_a_lost_replayed_initialize_does_not_wedge_the_session() {
    if let Some(report) = report(REINIT_LOST) {
        panic!("{report}");
    }
}

/// A check that gives up (`PeerSilent`) abandons the host POSTs the silent network
/// swallowed, whatever the Link's state: only `live` handles `PeerSilent`, so in
/// `reconnecting`, `confirming` or `reinitializing` they stay in flight and, if the
/// network comes back before the next `GIVE_UP`, wait for `--request-timeout`.
#[test]
fn streamable_http_a_silent_network_abandons_what_it_swallowed_in_every_state() {
    if let Some(report) = report(PEER_SILENT_IGNORED) {
        panic!("{report}");
    }
}

/// After a failed re-initialization the session must be established again before
/// messages go: `ReinitFailed` returns the Link to `live` with the session id that
/// `start_reinit` cleared, so every later message goes without `Mcp-Session-Id`, the
/// server refuses it (400, not 404: no new re-initialization), and the session is lost
/// for the rest of the run.
#[test]
fn streamable_http_a_failed_re_initialization_is_tried_again() {
    if let Some(report) = report(NO_SESSION) {
        panic!("{report}");
    }
}

/// The same seed gives the same schedule, step for step.
#[test]
fn streamable_http_schedules_are_deterministic() {
    assert_deterministic::<Sim>(&[1, 7, 42, 99]);
}

/// Prints the trace of one seed: `SIM_SEED=7 cargo test -p machines --test simulation
/// streamable_http_trace -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid: prints the trace of the seed in SIM_SEED"]
fn streamable_http_trace_of_one_seed() {
    print_trace_of_env_seed::<Sim>();
}
