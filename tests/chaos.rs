//! The chaos suite of issue 5 ("Resilience"): the `mcp-remote` binary under network and
//! server faults, each over Streamable HTTP and over legacy HTTP+SSE (`--transport
//! sse-only`). The scenarios live in `testbed::chaos`, shared with `cargo run --example
//! chaos`, which prints the same runs as a table.
//!
//! Every scenario sends 200 `tools/call count {nonce}` requests through the fault window,
//! clears the fault, sends 5 more, and asserts DESIGN.md invariants 2 and 3 with the
//! proxy's default flags: no request left unanswered 10 s after the fault cleared (the
//! request time-out is 300 s: nothing may wait for it) or answered twice, no tool call
//! executed twice on the server, the process alive, and 5 of 5 calls OK after the fault.
//! One test per fault runs both transports at once, so the file takes about as long as its
//! slowest scenarios, not their sum.

use std::path::Path;

use testbed::chaos::{self, Fault, Scenario};
use testbed::Transport;

/// How many lines of the proxy's `--debug` log a failure shows.
const LOG_LINES: usize = 40;

/// Plays `fault` over both transports and fails with every violation found.
async fn suite(fault: Fault) {
    let binary = Path::new(env!("CARGO_BIN_EXE_mcp-remote"));
    let streamable = Scenario::new(fault, Transport::Streamable);
    let legacy = Scenario::new(fault, Transport::Legacy);
    let (streamable, legacy) =
        tokio::join!(chaos::run(binary, &streamable), chaos::run(binary, &legacy));
    let mut failures = String::new();
    for report in [&streamable, &legacy] {
        let violations = report.violations();
        if violations.is_empty() {
            continue;
        }
        failures.push_str(&format!(
            "\n== {}: {}\n{}--- the proxy's stderr, last {LOG_LINES} lines not about one \
             message ---\n{}\n",
            report.title(),
            violations.join("; "),
            report.details(),
            report.log_excerpt(LOG_LINES),
        ));
    }
    assert!(failures.is_empty(), "{failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_jitter() {
    suite(Fault::LatencyJitter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_bytes() {
    suite(Fault::ResetAfterBytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_resets() {
    suite(Fault::RandomResets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_holding_bytes() {
    suite(Fault::BlackholeHold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_killing_flows() {
    suite(Fault::BlackholeKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill_and_restart() {
    suite(Fault::ServerRestart).await;
}
