//! MCP 2026-07-28 over Streamable HTTP (`--transport http-only`, default
//! `--protocol auto`): the shipped engine finds the era with `server/discover` and
//! bridges a 2025-11-25 host, against a simulated server that refuses what the
//! revision forbids (any GET or DELETE, a session, `initialize`, a notification, a
//! request without its version header and `_meta`). Tool calls are answered as
//! JSON or on event streams without event ids (no resumption in 2026-07-28), some
//! of them broken; the host cancels some requests.
//!
//! Checked besides the invariants every mode keeps: a broken stream's request is
//! answered once (an error, its fate unknown: a tool call is not sent again), never
//! lost; a cancellation closes exactly the cancelled request's stream, and that
//! request is never answered afterwards.

use super::common::{
    assert_deterministic, assert_no_seed_broke, assert_paths_taken, finding_report,
    print_trace_of_env_seed, run_all, Outcome,
};
use super::world::{Mode, Run, Speaks, Stats, TIMEOUT_AFTER_NETWORK_BACK};
use std::sync::OnceLock;

struct SpeaksModern;

impl Speaks for SpeaksModern {
    const MODE: Mode = Mode::Modern;
}

type Sim = Run<SpeaksModern>;

fn outcome() -> &'static Outcome<Stats> {
    static OUTCOME: OnceLock<Outcome<Stats>> = OnceLock::new();
    OUTCOME.get_or_init(run_all::<Sim>)
}

#[test]
fn modern_ten_thousand_seeds_keep_every_invariant() {
    let outcome = outcome();
    assert_no_seed_broke::<Sim>(outcome);
    let t = outcome.total;
    assert_paths_taken(&[
        ("server/discover probe", t.discovers, 9_000),
        ("request cancelled by the host", t.cancels, 4_000),
        (
            "cancellation closed the request's stream",
            t.cancels_closed,
            2_000,
        ),
        ("blackhole", t.blackholes, 5_000),
        ("slow tool call", t.slow_calls, 5_000),
        ("check", t.checks, 5_000),
        ("request failed with its fate unknown", t.abandoned, 1_000),
        ("token requested", t.token_requests, 1_000),
        ("response stream broken", t.streams_broken, 1_000),
        ("server killed and restarted", t.restarts, 1_000),
        ("answered by the server", t.ok, 50_000),
        ("answered with an error by the proxy", t.errors, 5_000),
    ]);
    assert_eq!(t.resumes, 0, "2026-07-28 has no resumption");
    assert_eq!(t.reinits, 0, "2026-07-28 has no sessions");
}

/// Every request in flight when the network went silent is answered (sent again if
/// it only reads, or failed as "fate unknown") within 10 s of the network's return,
/// never left to the request time-out.
#[test]
fn modern_requests_in_flight_are_answered_once_the_network_is_back() {
    if let Some(seeds) = outcome().findings.get(TIMEOUT_AFTER_NETWORK_BACK) {
        panic!(
            "{}",
            finding_report::<Sim>(TIMEOUT_AFTER_NETWORK_BACK, seeds, 40, 80)
        );
    }
}

#[test]
fn modern_schedules_are_deterministic() {
    assert_deterministic::<Sim>(&[1, 7, 42, 99]);
}

/// Prints the trace of one seed: `SIM_SEED=7 cargo test -p mcp-remote-machines --test simulation
/// modern_trace -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid: prints the trace of the seed in SIM_SEED"]
fn modern_trace_of_one_seed() {
    print_trace_of_env_seed::<Sim>();
}
