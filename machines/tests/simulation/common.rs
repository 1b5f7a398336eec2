//! What the two simulations share: the size of a schedule, the timed event queue, the
//! host's messages, the Authorizer's side of the Grant, and the seed runner — run
//! 10,000 seeds once, sum their path counts, collect the invariants they broke and the
//! liveness findings they recorded, and replay one seed with its trace to explain a
//! failure.
//!
//! `world.rs` is the world both transports run in (the shipped engine, the simulated
//! network and server); each transport's module plugs it into the runner by
//! implementing [`Simulation`], and the world declares its path counts with [`counters!`].

use super::Rng;
use machines::auth::grant::{Grant, GrantEffect, GrantEvent, GrantOutbox, Need};
use machines::engine::TokenOutcome;
use machines::jsonrpc::Message;
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Debug;
use std::time::Duration;

/// Seeds run in the normal test suite.
pub const SEEDS: u64 = 10_000;
/// Host requests per seed (after the `initialize`).
pub const REQUESTS: u64 = 12;
/// The host sends its requests within this many milliseconds.
pub const LAST_REQUEST_AT: u64 = 40_000;

/// A duration in simulated milliseconds, rounded up.
pub fn ms(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000) as u64
}

// ---- the host ----

/// The host's request `id`.
pub fn request(id: u64, method: &str) -> Message {
    Message::parse(
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{}}}}"#).into_bytes(),
    )
    .unwrap()
}

/// The host's `notifications/cancelled` for request `id`.
pub fn cancelled(id: u64) -> Message {
    Message::parse(
        format!(r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id}}}}}"#)
            .into_bytes(),
    )
    .unwrap()
}

/// The host's `notifications/initialized`.
pub fn initialized() -> Message {
    Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()).unwrap()
}

/// What the Grant hears when the browser sign-in ended.
pub fn sign_in_ended(ok: bool) -> GrantEvent {
    if ok {
        GrantEvent::SignedIn
    } else {
        GrantEvent::SignInFailed {
            error: machines::auth::AuthError::NotCompleted(std::time::Duration::from_secs(300)),
        }
    }
}

/// What the Grant hears when the token refresh ended.
pub fn refresh_ended(ok: bool) -> GrantEvent {
    if ok {
        GrantEvent::Refreshed
    } else {
        GrantEvent::RefreshRejected
    }
}

// ---- the Grant (actors/src/session.rs) ----

/// The Authorizer's side of the Grant: the machine and the token bookkeeping around it.
pub struct Tokens {
    grant: StateMachine<Grant>,
    /// `RequestToken`s the Grant has not answered yet (at most one: an invariant).
    pub in_flight: u32,
    /// A token was handed to the Link: requests carry `Authorization`.
    authorization: bool,
    /// The server accepted the current token (`TokenWorked` was said).
    confirmed: bool,
}

impl Tokens {
    pub fn new() -> Self {
        Tokens {
            grant: Grant::default().state_machine(),
            in_flight: 0,
            authorization: false,
            confirmed: false,
        }
    }
}

/// The Authorizer's glue between the engine and the Grant, on a simulated browser and
/// authorization server. The sign-in and the refresh end after a random latency, as the
/// simulation's `SignInDone` and `RefreshDone` events, which give the Grant
/// [`sign_in_ended`] and [`refresh_ended`].
pub trait TokenGlue {
    /// Percent of browser sign-ins that succeed.
    const SIGN_IN_OK: u64;
    /// Percent of token refreshes that succeed.
    const REFRESH_OK: u64;
    fn tokens(&mut self) -> &mut Tokens;
    fn rng(&mut self) -> &mut Rng;
    /// The sign-in (or, with `refresh`, the refresh) ends in `latency` ms.
    fn grant_answers_in(&mut self, latency: u64, refresh: bool, ok: bool);
    /// Tell the engine how the token request ended (the Authorizer's answer).
    fn token_outcome(&mut self, outcome: TokenOutcome);

    /// `Event::NeedToken`.
    fn request_token(&mut self) {
        self.tokens().in_flight += 1;
        assert!(self.tokens().in_flight <= 1, "two token requests in flight");
        self.grant_event(GrantEvent::Needed(Need::Unauthorized { scope: None }));
    }

    /// A request went through: the first time with a new token, the Grant hears it worked.
    fn token_worked(&mut self) {
        let tokens = self.tokens();
        if tokens.authorization && !tokens.confirmed {
            tokens.confirmed = true;
            self.grant_event(GrantEvent::TokenWorked);
        }
    }

    fn grant_event(&mut self, e: GrantEvent) {
        let mut out = GrantOutbox::default();
        self.tokens().grant.handle_with_context(&e, &mut out);
        for effect in out.0 {
            match effect {
                GrantEffect::SignIn { .. } => {
                    let ok = self.rng().chance(Self::SIGN_IN_OK);
                    let latency = 10 + self.rng().below(1000);
                    self.grant_answers_in(latency, false, ok);
                }
                GrantEffect::Refresh => {
                    let ok = self.rng().chance(Self::REFRESH_OK);
                    let latency = 10 + self.rng().below(300);
                    self.grant_answers_in(latency, true, ok);
                }
                GrantEffect::UseToken => {
                    let tokens = self.tokens();
                    if tokens.in_flight > 0 {
                        tokens.in_flight -= 1;
                        tokens.authorization = true;
                        tokens.confirmed = false;
                        self.token_outcome(TokenOutcome::Ready);
                    }
                }
                GrantEffect::Fail(error) => {
                    let tokens = self.tokens();
                    if tokens.in_flight > 0 {
                        tokens.in_flight -= 1;
                        self.token_outcome(TokenOutcome::Failed(error));
                    }
                }
                GrantEffect::DropTokens | GrantEffect::RetryRefresh(_) => {}
            }
        }
    }
}

// ---- the timed event queue ----

/// What happens next, at simulated times: the earliest first, then in the order they
/// were scheduled.
pub struct Timeline<E> {
    queue: BinaryHeap<Due<E>>,
    /// Scheduled so far: breaks ties between events due at the same time.
    order: u64,
}

struct Due<E> {
    at: u64,
    order: u64,
    ev: E,
}

impl<E> Ord for Due<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

impl<E> PartialOrd for Due<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> PartialEq for Due<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl<E> Eq for Due<E> {}

impl<E> Timeline<E> {
    pub fn new() -> Self {
        Timeline {
            queue: BinaryHeap::new(),
            order: 0,
        }
    }

    /// `ev` happens at `at` (simulated milliseconds).
    pub fn push(&mut self, at: u64, ev: E) {
        self.order += 1;
        self.queue.push(Due {
            at,
            order: self.order,
            ev,
        });
    }

    /// The next event, and when it happens.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.queue.pop().map(|Due { at, ev, .. }| (at, ev))
    }
}

// ---- the seed runner ----

/// Path counts that add up over seeds.
pub trait Merge {
    fn add(&mut self, other: &Self);
}

/// A struct of `u64` path counts, each with its `///` paragraph, that add up over seeds
/// ([`Merge`]).
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident: u64, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Default, Debug, Clone, Copy)]
        $vis struct $name {
            $( $(#[$field_meta])* pub $field: u64, )*
        }

        impl $crate::common::Merge for $name {
            fn add(&mut self, other: &Self) {
                $( self.$field += other.$field; )*
            }
        }
    };
}
pub(crate) use counters;

/// One seed's world, run from its first event to its last.
pub trait Simulation {
    type Stats: Merge + Default + Debug;
    fn new(seed: u64, trace: bool) -> Self;
    /// Runs the schedule; panics when an invariant breaks.
    fn run(&mut self) -> Self::Stats;
    /// Liveness findings (they do not stop the seed): what, and when first.
    fn take_flags(&mut self) -> BTreeMap<&'static str, u64>;
    /// Every step in words, if the seed was run with its trace.
    fn take_trace(&mut self) -> Vec<String>;
}

thread_local! {
    /// Panics of this thread are expected (an invariant broke) and reported by the test.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Install, once, a panic hook that stays silent for the seeds run under [`QUIET`].
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// One seed's result: its stats and liveness findings, or the invariant it broke.
pub struct SeedResult<S> {
    pub outcome: Result<(S, BTreeMap<&'static str, u64>), String>,
    pub trace: Vec<String>,
}

pub fn run_seed<S: Simulation>(seed: u64, trace: bool) -> SeedResult<S::Stats> {
    quiet_panics();
    let mut sim = S::new(seed, trace);
    QUIET.with(|q| q.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    QUIET.with(|q| q.set(false));
    let outcome = outcome.map(|stats| (stats, sim.take_flags())).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    });
    SeedResult {
        outcome,
        trace: sim.take_trace(),
    }
}

/// What the 10,000 seeds gave, computed once for the tests that read it.
pub struct Outcome<S> {
    pub total: S,
    /// Seeds that broke an invariant, with its message.
    pub broken: Vec<(u64, String)>,
    /// Seeds with each liveness finding.
    pub findings: BTreeMap<&'static str, Vec<u64>>,
}

/// Runs the [`SEEDS`] seeds (each module keeps the result in a `static`).
pub fn run_all<S: Simulation>() -> Outcome<S::Stats> {
    let mut total = S::Stats::default();
    let mut broken = Vec::new();
    let mut findings: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for seed in 0..SEEDS {
        match run_seed::<S>(seed, false).outcome {
            Ok((stats, flags)) => {
                total.add(&stats);
                for what in flags.keys() {
                    findings.entry(what).or_default().push(seed);
                }
            }
            Err(msg) => broken.push((seed, msg)),
        }
    }
    Outcome {
        total,
        broken,
        findings,
    }
}

/// The last lines of a seed's trace, up to `until` (a finding) or its end.
pub fn trace_of<S: Simulation>(seed: u64, until: Option<&str>) -> String {
    let trace = run_seed::<S>(seed, true).trace;
    let end = until
        .and_then(|what| {
            trace
                .iter()
                .position(|l| l.ends_with(&format!("FLAG {what}")))
        })
        .map_or(trace.len(), |i| i + 1);
    trace[end.saturating_sub(150)..end].join("\n")
}

/// Prints the summed path counts; panics if a seed broke an invariant, with the
/// seeds grouped by the invariant and the trace of the first.
pub fn assert_no_seed_broke<S: Simulation>(outcome: &Outcome<S::Stats>) {
    let Outcome { total, broken, .. } = outcome;
    println!("{total:#?}");
    if let Some((seed, msg)) = broken.first() {
        let mut kinds: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (s, m) in broken {
            // One kind per message, whatever ids or durations it names.
            let kind: String = m.split(['(', ':']).next().unwrap_or_default().into();
            let kind: String = kind.chars().filter(|c| !c.is_ascii_digit()).collect();
            kinds.entry(kind).or_default().push(*s);
        }
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(k, s)| format!("{} seeds: {k} (e.g. {:?})", s.len(), &s[..s.len().min(8)]))
            .collect();
        panic!(
            "{} of {SEEDS} seeds broke an invariant:\n{}\n\nseed {seed}: {msg}\ntrace:\n{}",
            broken.len(),
            kinds.join("\n"),
            trace_of::<S>(*seed, None)
        );
    }
}

/// Each path was taken at least so many times: `(path, count, at_least)`.
pub fn assert_paths_taken(paths: &[(&str, u64, u64)]) {
    for &(path, count, at_least) in paths {
        assert!(
            count >= at_least,
            "{path}: {count} times, expected at least {at_least}"
        );
    }
}

/// The seeds with finding `what`: how many, the first `show_seeds` of them, and the
/// last `show_lines` lines of the first one's trace up to the finding.
pub fn finding_report<S: Simulation>(
    what: &str,
    seeds: &[u64],
    show_seeds: usize,
    show_lines: usize,
) -> String {
    let trace = trace_of::<S>(seeds[0], Some(what));
    let lines: Vec<&str> = trace.lines().collect();
    format!(
        "{} of {SEEDS} seeds: {what} (e.g. {:?})\ntrace of seed {}:\n{}",
        seeds.len(),
        &seeds[..seeds.len().min(show_seeds)],
        seeds[0],
        lines[lines.len().saturating_sub(show_lines)..].join("\n")
    )
}

/// The same seed gives the same schedule, step for step.
pub fn assert_deterministic<S: Simulation>(seeds: &[u64]) {
    for &seed in seeds {
        let (a, b) = (run_seed::<S>(seed, true), run_seed::<S>(seed, true));
        assert!(a.trace.len() > 100, "seed {seed}: {} lines", a.trace.len());
        assert_eq!(a.trace, b.trace, "seed {seed}");
    }
}

/// Prints the trace of the seed in `SIM_SEED` (0 without it), and its findings.
pub fn print_trace_of_env_seed<S: Simulation>() {
    let seed = std::env::var("SIM_SEED").map_or(0, |s| s.parse().unwrap());
    let result = run_seed::<S>(seed, true);
    println!(
        "{}\n{:?}",
        result.trace.join("\n"),
        result.outcome.map(|(_, f)| f)
    );
}
