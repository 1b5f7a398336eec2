//! Streamable HTTP (`--transport http-only`): the shipped engine against the simulated
//! server of `world.rs` — JSON answers and event streams (primed with an event id, some
//! of them broken and resumed with `Last-Event-ID`), slow tool calls, sessions
//! forgotten (404, or 400 as the TypeScript SDK's servers say it), 401 and 503, a
//! server killed and restarted, and a network that goes silent.
//!
//! The 10,000 seeds run once ([`outcome`]) for the tests that read them.

use super::common::{
    assert_deterministic, assert_no_seed_broke, assert_paths_taken, finding_report,
    print_trace_of_env_seed, run_all, Outcome,
};
use super::world::{
    Mode, Run, Speaks, Stats, NO_SESSION, RESUME_TOO_SLOW, TIMEOUT_AFTER_NETWORK_BACK,
};
use std::sync::OnceLock;

/// This module's world: the seed runner builds it for Streamable.
struct SpeaksStreamable;

impl Speaks for SpeaksStreamable {
    const MODE: Mode = Mode::Streamable;
}

type Sim = Run<SpeaksStreamable>;

fn outcome() -> &'static Outcome<Stats> {
    static OUTCOME: OnceLock<Outcome<Stats>> = OnceLock::new();
    OUTCOME.get_or_init(run_all::<Sim>)
}

fn report(what: &'static str) -> Option<String> {
    let seeds = outcome().findings.get(what)?;
    Some(finding_report::<Sim>(what, seeds, 40, 80))
}

#[test]
fn streamable_http_ten_thousand_seeds_keep_every_invariant() {
    let outcome = outcome();
    assert_no_seed_broke::<Sim>(outcome);
    let t = outcome.total;
    assert_paths_taken(&[
        ("blackhole", t.blackholes, 5_000),
        ("POST swallowed by a blackhole", t.swallowed, 5_000),
        ("slow tool call", t.slow_calls, 5_000),
        ("check", t.checks, 10_000),
        ("check confirmed the connection", t.checks_confirmed, 8_000),
        ("check found the network silent", t.checks_silent, 2_000),
        ("request failed with its fate unknown", t.abandoned, 2_000),
        ("re-initialization", t.reinits, 1_000),
        ("forgotten session answered 404", t.expired_404, 500),
        ("forgotten session answered 400", t.expired_400, 500),
        ("Link retry delay", t.retries, 2_000),
        ("token requested", t.token_requests, 1_000),
        (
            "initialize answered from memory during a sign-in",
            t.early_initializes,
            100,
        ),
        (
            "response stream broken after its priming event",
            t.streams_broken,
            1_000,
        ),
        ("resumption", t.resumes, 1_000),
        ("answer delivered on a resumption", t.resumed_answers, 300),
        ("resumption given up", t.resumes_failed, 100),
        ("server killed and restarted", t.restarts, 1_000),
        ("garbage from the server", t.garbage, 1_000),
        ("answered by the server", t.ok, 50_000),
        ("answered with an error by the proxy", t.errors, 5_000),
    ]);
}

/// After a failed re-initialization the session is established again before anything
/// else goes: no host message goes without `Mcp-Session-Id`.
#[test]
fn streamable_http_nothing_goes_without_a_session() {
    if let Some(report) = report(NO_SESSION) {
        panic!("{report}");
    }
}

/// A server killed while response streams were being resumed costs their requests at
/// most the resumption budget, not the request time-out.
#[test]
fn streamable_http_a_killed_server_fails_resumptions_within_the_budget() {
    if let Some(report) = report(RESUME_TOO_SLOW) {
        panic!("{report}");
    }
}

/// Every request in flight when the network went silent is answered (resumed, or
/// failed as "fate unknown") within 10 s of the network's return, never left to the
/// request time-out.
#[test]
fn streamable_http_requests_in_flight_are_answered_once_the_network_is_back() {
    if let Some(report) = report(TIMEOUT_AFTER_NETWORK_BACK) {
        panic!("{report}");
    }
}

#[test]
fn streamable_http_schedules_are_deterministic() {
    assert_deterministic::<Sim>(&[1, 7, 42, 99]);
}

/// Prints the trace of one seed: `SIM_SEED=7 cargo test -p mcp-remote-machines --test simulation
/// streamable_http_trace -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid: prints the trace of the seed in SIM_SEED"]
fn streamable_http_trace_of_one_seed() {
    print_trace_of_env_seed::<Sim>();
}
