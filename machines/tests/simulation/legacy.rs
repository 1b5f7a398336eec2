//! Legacy HTTP+SSE (`--transport sse-only`): the shipped engine against the simulated
//! server of `world.rs` — an event stream per connection that announces its endpoint
//! and carries the answers of the POSTs made to it (answered 202, by some servers with
//! a JSON content type and the body `Accepted`); streams that break, die silently or
//! are forgotten; slow tool calls; a server killed and restarted; and a network that
//! goes silent.
//!
//! The 10,000 seeds run once ([`outcome`]) for the tests that read them.

use super::common::{
    assert_deterministic, assert_no_seed_broke, assert_paths_taken, finding_report,
    print_trace_of_env_seed, run_all, Outcome,
};
use super::world::{Mode, Run, Speaks, Stats, TIMEOUT_AFTER_NETWORK_BACK};
use std::sync::OnceLock;

/// This module's world: the seed runner builds it for Legacy.
struct SpeaksLegacy;

impl Speaks for SpeaksLegacy {
    const MODE: Mode = Mode::Legacy;
}

type Sim = Run<SpeaksLegacy>;

fn outcome() -> &'static Outcome<Stats> {
    static OUTCOME: OnceLock<Outcome<Stats>> = OnceLock::new();
    OUTCOME.get_or_init(run_all::<Sim>)
}

fn report(what: &'static str) -> Option<String> {
    let seeds = outcome().findings.get(what)?;
    Some(finding_report::<Sim>(what, seeds, 40, 80))
}

#[test]
fn legacy_sse_ten_thousand_seeds_keep_every_invariant() {
    let outcome = outcome();
    assert_no_seed_broke::<Sim>(outcome);
    let t = outcome.total;
    assert_paths_taken(&[
        ("blackhole", t.blackholes, 5_000),
        (
            "initialize answered from memory during a sign-in",
            t.early_initializes,
            100,
        ),
        ("POST swallowed by a blackhole", t.swallowed, 3_000),
        ("slow tool call", t.slow_calls, 5_000),
        ("check", t.checks, 5_000),
        ("check confirmed the connection", t.checks_confirmed, 3_000),
        ("request failed with its fate unknown", t.abandoned, 2_000),
        ("re-initialization", t.reinits, 1_000),
        (
            "POST to a forgotten endpoint answered 404",
            t.expired_404,
            500,
        ),
        ("legacy stream opened", t.legacy_streams, 15_000),
        (
            "legacy stream broken or killed silently",
            t.legacy_stream_faults,
            5_000,
        ),
        (
            "202 with a JSON content type and a non-JSON body",
            t.odd_accepted,
            10_000,
        ),
        ("server killed and restarted", t.restarts, 1_000),
        ("answered by the server", t.ok, 50_000),
        ("answered with an error by the proxy", t.errors, 5_000),
    ]);
}

/// Every request in flight when the network went silent is answered (resumed, or
/// failed as "fate unknown") within 10 s of the network's return, never left to the
/// request time-out.
#[test]
fn legacy_sse_requests_in_flight_are_answered_once_the_network_is_back() {
    if let Some(report) = report(TIMEOUT_AFTER_NETWORK_BACK) {
        panic!("{report}");
    }
}

#[test]
fn legacy_sse_schedules_are_deterministic() {
    assert_deterministic::<Sim>(&[1, 7, 42, 99]);
}

/// Prints the trace of one seed: `SIM_SEED=7 cargo test -p mcp-remote-machines --test simulation
/// legacy_sse_trace -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid: prints the trace of the seed in SIM_SEED"]
fn legacy_sse_trace_of_one_seed() {
    print_trace_of_env_seed::<Sim>();
}
