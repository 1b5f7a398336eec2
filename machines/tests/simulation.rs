//! Deterministic simulation of the proxy's decision core — Router, Link, Grant —
//! on a simulated clock and a seeded, misbehaving network (no sockets), in the
//! spirit of str0m's `netem`. Each seed gives one schedule: the host sends
//! requests at random times; every POST is answered, refused at connect, lost
//! after delivery, answered 404 (session gone) or 401 (token needed), with
//! random latency; sign-ins and refreshes succeed or fail. 10,000 seeds run in the normal test
//! suite, and after every step the invariants of DESIGN.md are checked:
//!
//! - every host request gets exactly one answer (the server's or an error), none twice;
//! - the server executes a request at most once (only a request that surely never
//!   reached it is sent again);
//! - the link never retries without a delay, and its delays are bounded;
//! - at most one token request is in flight.
//!
//! The legacy HTTP+SSE transport (`--transport sse-only`) runs on its own simulated
//! server and stream, with its liveness checks: see [`legacy`].

#[path = "simulation/legacy.rs"]
mod legacy;

use machines::auth::grant::{Grant, GrantEffect, GrantEvent, GrantOutbox, Need};
use machines::backoff::BackoffPolicy;
use machines::jsonrpc::{IdKey, Kind, Message};
use machines::link::{Link, LinkEffect, LinkEvent, LinkOutbox, Strategy};
use machines::router::{Outbound, Router, RouterConfig, RouterEffect};
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Milliseconds from `t0` to `instant`, rounded up.
fn ms_since(t0: Instant, instant: Instant) -> u64 {
    instant
        .saturating_duration_since(t0)
        .as_micros()
        .div_ceil(1000) as u64
}

#[derive(Debug, Clone)]
enum Ev {
    HostRequest(u64),
    PostDone { seq: u64, outcome: Outcome },
    RetryTimer,
    SignInDone { ok: bool },
    RefreshDone { ok: bool },
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Unreachable,
    Lost,
    Expired,
    Unauthorized,
}

struct Sim {
    rng: Rng,
    t0: Instant,
    now: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    order: u64,
    router: Router,
    link: StateMachine<Link>,
    grant: StateMachine<Grant>,
    /// Messages the glue keeps (as the Session does), by handle.
    messages: HashMap<u64, Outbound>,
    next_seq: u64,
    /// What the host saw: answers per request id.
    answers: HashMap<u64, u32>,
    /// What the server did: executions per request id.
    executions: HashMap<u64, u32>,
    token_requests_in_flight: u32,
    retry_pending: bool,
    last_retry_scheduled_at: Option<u64>,
    /// When the Router's next deadline is ticked.
    tick_at: Option<u64>,
    /// How often each path was taken, so the test proves it exercised them.
    stats: Stats,
}

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    retries: u64,
    token_requests: u64,
    reinits: u64,
    errors: u64,
    ok: u64,
}

fn request(id: u64, method: &str) -> Message {
    Message::parse(
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{}}}}"#).into_bytes(),
    )
    .unwrap()
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config = RouterConfig {
            request_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        Sim {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            t0: Instant::now(),
            now: 0,
            queue: BTreeMap::new(),
            order: 0,
            router: Router::new(config),
            link: Link::new(Strategy::HttpOnly, None)
                .with_seed(seed)
                .state_machine(),
            grant: Grant::default().state_machine(),
            messages: HashMap::new(),
            next_seq: 0,
            answers: HashMap::new(),
            executions: HashMap::new(),
            token_requests_in_flight: 0,
            retry_pending: false,
            last_retry_scheduled_at: None,
            tick_at: None,
            stats: Stats::default(),
        }
    }

    fn at(&mut self, delay_ms: u64, ev: Ev) {
        self.order += 1;
        self.queue.insert((self.now + delay_ms, self.order), ev);
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now)
    }

    fn host(&mut self, m: Message) {
        let mut out = Vec::new();
        let now = self.instant();
        self.router.on_host_message(m, now, &mut out);
        self.router_effects(out);
    }

    fn router_effects(&mut self, out: Vec<RouterEffect>) {
        for e in out {
            match e {
                RouterEffect::Forward(outbound) => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let (kind, method) = (outbound.kind, outbound.method.clone());
                    self.messages.insert(seq, outbound);
                    self.link_event(LinkEvent::HostSent { seq, kind, method });
                }
                RouterEffect::ToHost(bytes) => {
                    let m = Message::parse(bytes).unwrap();
                    if m.is_error {
                        self.stats.errors += 1;
                    } else {
                        self.stats.ok += 1;
                    }
                    if let Some(IdKey::Num(n)) = m.id_key {
                        *self.answers.entry(n.parse().unwrap()).or_default() += 1;
                    }
                }
            }
        }
    }

    fn link_event(&mut self, e: LinkEvent) {
        let mut out = LinkOutbox::default();
        self.link.handle_with_context(&e, &mut out);
        for effect in out.0 {
            match effect {
                LinkEffect::Post { seq, .. } => {
                    let outcome = match self.rng.below(100) {
                        0..=69 => Outcome::Answered,
                        70..=81 => Outcome::Unreachable,
                        82..=87 => Outcome::Lost,
                        88..=93 => Outcome::Expired,
                        _ => Outcome::Unauthorized,
                    };
                    let latency = 1 + self.rng.below(400);
                    self.at(latency, Ev::PostDone { seq, outcome });
                }
                LinkEffect::Fail { seq, reason } => {
                    if let Some(m) = self.messages.remove(&seq) {
                        if let (Kind::Request, Some(key)) = (m.kind, m.id_key) {
                            let mut out = Vec::new();
                            self.router.on_request_failed(&key, &reason, &mut out);
                            self.router_effects(out);
                        }
                    }
                }
                LinkEffect::ScheduleRetry(d) => {
                    assert!(
                        d >= BackoffPolicy::RECONNECT.min_delay,
                        "a retry without a delay: {d:?}"
                    );
                    assert!(
                        d <= BackoffPolicy::RECONNECT.max_delay * 2,
                        "unbounded backoff: {d:?}"
                    );
                    assert!(!self.retry_pending, "two retry timers at once");
                    self.retry_pending = true;
                    self.stats.retries += 1;
                    self.last_retry_scheduled_at = Some(self.now);
                    self.at(d.as_millis() as u64, Ev::RetryTimer);
                }
                LinkEffect::RequestToken => {
                    self.token_requests_in_flight += 1;
                    self.stats.token_requests += 1;
                    assert!(
                        self.token_requests_in_flight <= 1,
                        "two token requests in flight"
                    );
                    self.grant_event(GrantEvent::Needed(Need::Unauthorized { scope: None }));
                }
                LinkEffect::PostReinitialize { .. } => {
                    self.stats.reinits += 1;
                    // The replayed initialize: answered or not after some latency.
                    let ok = self.rng.chance(90);
                    let latency = 1 + self.rng.below(200);
                    self.at(
                        latency,
                        Ev::PostDone {
                            seq: u64::MAX,
                            outcome: if ok { Outcome::Answered } else { Outcome::Lost },
                        },
                    );
                }
                LinkEffect::PostInitialized => self.link_event(LinkEvent::InitializedDelivered),
                LinkEffect::Discard { seq } => {
                    self.messages.remove(&seq);
                }
                _ => {}
            }
        }
    }

    fn grant_event(&mut self, e: GrantEvent) {
        let mut out = GrantOutbox::default();
        self.grant.handle_with_context(&e, &mut out);
        for effect in out.0 {
            match effect {
                GrantEffect::SignIn { .. } => {
                    let ok = self.rng.chance(85);
                    let latency = 10 + self.rng.below(1000);
                    self.at(latency, Ev::SignInDone { ok });
                }
                GrantEffect::Refresh => {
                    // A refresh ends in `Refreshed` or `RefreshRejected` (the Grant ignores
                    // sign-in events while refreshing).
                    let ok = self.rng.chance(85);
                    let latency = 10 + self.rng.below(300);
                    self.at(latency, Ev::RefreshDone { ok });
                }
                GrantEffect::UseToken => {
                    if self.token_requests_in_flight > 0 {
                        self.token_requests_in_flight -= 1;
                        self.link_event(LinkEvent::TokenArrived);
                    }
                }
                GrantEffect::Fail(reason) => {
                    if self.token_requests_in_flight > 0 {
                        self.token_requests_in_flight -= 1;
                        self.link_event(LinkEvent::AuthFailed { reason });
                    }
                }
                GrantEffect::ForgetTokens => {}
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::HostRequest(id) => {
                let method = if id == 0 { "initialize" } else { "tools/call" };
                self.host(request(id, method));
                if id == 0 {
                    // The host's initialized follows the answer in real life; here, at once.
                    let n = Message::parse(
                        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
                    )
                    .unwrap();
                    self.at(1, Ev::Tick);
                    self.host(n);
                }
            }
            Ev::PostDone {
                seq: u64::MAX,
                outcome,
            } => {
                let e = if outcome == Outcome::Answered {
                    LinkEvent::ReinitAnswered {
                        session_id: Some("s2".into()),
                        protocol_version: None,
                    }
                } else {
                    LinkEvent::ReinitFailed {
                        reason: "lost".into(),
                    }
                };
                self.link_event(e);
            }
            Ev::PostDone { seq, outcome } => {
                let Some(m) = self.messages.get(&seq).cloned() else {
                    return;
                };
                let id = m.id_key.clone();
                match outcome {
                    Outcome::Answered | Outcome::Lost => {
                        self.messages.remove(&seq);
                        // The server executed it.
                        if let (Kind::Request, Some(IdKey::Num(n))) = (m.kind, &id) {
                            *self.executions.entry(n.parse().unwrap()).or_default() += 1;
                        }
                        self.link_event(LinkEvent::Reachable);
                        if m.method.as_deref() == Some("notifications/initialized") {
                            self.link_event(LinkEvent::InitializedDelivered);
                        }
                        if let (Kind::Request, Some(key)) = (m.kind, id) {
                            if outcome == Outcome::Answered {
                                let IdKey::Num(n) = &key else { unreachable!() };
                                let body = if m.method.as_deref() == Some("initialize") {
                                    format!(
                                        r#"{{"jsonrpc":"2.0","id":{n},"result":{{"protocolVersion":"2025-06-18"}}}}"#
                                    )
                                } else {
                                    format!(r#"{{"jsonrpc":"2.0","id":{n},"result":{{}}}}"#)
                                };
                                if m.method.as_deref() == Some("initialize") {
                                    self.link_event(LinkEvent::InitializeAnswered {
                                        session_id: Some("s1".into()),
                                        protocol_version: None,
                                    });
                                }
                                let mut out = Vec::new();
                                self.router.on_server_message(
                                    Message::parse(body.into_bytes()).unwrap(),
                                    &mut out,
                                );
                                self.router_effects(out);
                                // A duplicate from a misbehaving server must not reach the host.
                                if self.rng.chance(5) {
                                    let dup =
                                        format!(r#"{{"jsonrpc":"2.0","id":{n},"result":{{}}}}"#);
                                    let mut out = Vec::new();
                                    self.router.on_server_message(
                                        Message::parse(dup.into_bytes()).unwrap(),
                                        &mut out,
                                    );
                                    self.router_effects(out);
                                }
                            } else {
                                // Lost after delivery: the fate is unknown; the stream broke without an id.
                                let mut out = Vec::new();
                                self.router.on_request_failed(
                                    &key,
                                    "the response stream broke",
                                    &mut out,
                                );
                                self.router_effects(out);
                            }
                        }
                    }
                    Outcome::Unreachable => self.link_event(LinkEvent::Unreachable { seq }),
                    Outcome::Expired => self.link_event(LinkEvent::SessionExpired {
                        seq,
                        retried: false,
                    }),
                    Outcome::Unauthorized => self.link_event(LinkEvent::Unauthorized { seq }),
                }
            }
            Ev::RetryTimer => {
                self.retry_pending = false;
                self.link_event(LinkEvent::RetryTimerFired);
            }
            Ev::SignInDone { ok } => {
                let e = if ok {
                    GrantEvent::SignedIn
                } else {
                    GrantEvent::SignInFailed {
                        reason: "denied".into(),
                    }
                };
                self.grant_event(e);
                if ok {
                    self.grant_event(GrantEvent::TokenWorked);
                }
            }
            Ev::RefreshDone { ok } => {
                let e = if ok {
                    GrantEvent::Refreshed
                } else {
                    GrantEvent::RefreshRejected
                };
                self.grant_event(e);
                if ok {
                    self.grant_event(GrantEvent::TokenWorked);
                }
            }
            Ev::Tick => {}
        }
        let mut out = Vec::new();
        let now = self.instant();
        self.router.on_tick(now, &mut out);
        self.router_effects(out);
        // The Router's next deadline is always ticked, so every request ends with an answer.
        if let Some(deadline) = self.router.next_deadline() {
            let at = ms_since(self.t0, deadline);
            if at > self.now && self.tick_at != Some(at) {
                self.tick_at = Some(at);
                self.at(at - self.now, Ev::Tick);
            }
        }
        for (id, n) in &self.answers {
            assert!(*n <= 1, "request {id} answered {n} times");
        }
        for (id, n) in &self.executions {
            assert!(*n <= 1, "request {id} executed {n} times");
        }
    }

    fn run(mut self, requests: u64) -> Stats {
        self.at(0, Ev::HostRequest(0));
        for id in 1..=requests {
            let when = self.rng.below(20_000);
            self.at(when, Ev::HostRequest(id));
        }
        let mut steps = 0;
        while let Some((&(t, o), _)) = self.queue.iter().next() {
            let ev = self.queue.remove(&(t, o)).unwrap();
            self.now = t;
            self.step(ev);
            steps += 1;
            assert!(steps < 1_000_000, "runaway schedule");
        }
        for id in 0..=requests {
            assert_eq!(
                self.answers.get(&id).copied().unwrap_or(0),
                1,
                "request {id} got no answer"
            );
        }
        assert!(self.router.pending() == 0);
        self.stats
    }
}

#[test]
fn ten_thousand_seeds_keep_every_invariant() {
    let mut total = Stats::default();
    for seed in 0..10_000u64 {
        let sim = Sim::new(seed);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run(12))) {
            Ok(s) => {
                total.retries += s.retries;
                total.token_requests += s.token_requests;
                total.reinits += s.reinits;
                total.errors += s.errors;
                total.ok += s.ok;
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("seed {seed}: {}", msg.unwrap_or_default());
            }
        }
    }
    // The schedules really went through the fault paths, many times each.
    println!("{total:?}");
    assert!(
        total.retries > 1000 && total.token_requests > 1000 && total.reinits > 1000,
        "{total:?}"
    );
    assert!(total.ok > 10_000 && total.errors > 1000, "{total:?}");
}
