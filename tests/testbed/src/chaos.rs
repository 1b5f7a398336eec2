//! The chaos scenarios of issue 5 ("Resilience"): the `mcp-remote` binary between a scripted
//! MCP host and the testbed while the network (a [`Relay`]) or the server fails, with
//! hundreds of tool calls in flight.
//!
//! Driving contract: [`run`] plays one [`Scenario`] against a proxy binary and returns a
//! [`Report`]; it never panics on the proxy's misbehaviour, and every wait in it is bounded.
//! A scenario goes:
//!
//! 1. start a testbed (Streamable HTTP, or legacy HTTP+SSE for [`Transport::Legacy`]) and a
//!    relay in front of it, and spawn the proxy on the relay's URL with its default flags
//!    (`--transport sse-only` for legacy) and `--debug`;
//! 2. `initialize`, `notifications/initialized`, one warm-up call;
//! 3. turn the [`Fault`] on; send [`Scenario::requests`] `tools/call count {nonce}` requests,
//!    each with a fresh nonce, pipelined in batches spread over the fault window;
//! 4. clear the fault at the end of the window, then send [`Scenario::after`] more calls one
//!    at a time, each waited for up to [`ANSWER_BOUND`] (10 s);
//! 5. wait for every answer up to [`ANSWER_BOUND`] after the fault cleared (with an explicit
//!    `--request-timeout`: up to it, plus a grace, after the last request of the window),
//!    then a little longer for duplicates; note whether the proxy still
//!    runs, close its stdin, and read the server's execution count of every nonce (summed
//!    over both servers when one was restarted).
//!
//! [`Fault::ServerRestart`] points the proxy at the testbed directly, so that a stopped
//! server is a refused connection, as it is without a relay in between.
//!
//! [`Report::violations`] names what breaks the suite's invariants (DESIGN.md invariants 2
//! and 3): a request never answered or answered twice, a tool call executed twice, a proxy
//! that died, a call after the fault cleared that did not succeed, an answer to an id never
//! sent, a stdout line that is not JSON-RPC (invariant 1), an exit other than 0 once stdin
//! closed (invariant 7). `tests/chaos.rs` asserts
//! them; `examples/chaos.rs` prints [`markdown_table`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::relay::{Relay, RelayStats};
use crate::state::lock;
use crate::{Config, Testbed, Transport};

/// Extra delay of every chunk in [`Fault::LatencyJitter`].
const LATENCY: Duration = Duration::from_millis(40);
/// Upper bound of the random extra delay in [`Fault::LatencyJitter`].
const JITTER: Duration = Duration::from_millis(80);
/// The byte limit of every connection in [`Fault::ResetAfterBytes`]: a few exchanges, so
/// resets land in requests, in responses and in the event streams.
const RESET_AFTER_BYTES: usize = 2048;
/// The reset probability per chunk in [`Fault::RandomResets`].
const RESET_PROBABILITY: f64 = 0.02;
/// The seed of [`Fault::RandomResets`] and of the jitter.
const SEED: u64 = 0x5eed_c4a0;
/// How long `initialize` and the warm-up call may take before the run is abandoned.
const SETUP_LIMIT: Duration = Duration::from_secs(15);
/// How long after the fault cleared the proxy may take to answer a call OK again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);
/// Ids of the recovery probes (far from the window's and the after calls').
const PROBE_IDS: u64 = 900_000;
/// Waited beyond the request timeout for an answer, since the proxy's clock starts after ours.
const ANSWER_GRACE: Duration = Duration::from_secs(2);
/// With the proxy's default flags: every call is answered within this long of the fault
/// clearing (or of being sent, after it), or it counts as never answered (issue #10's
/// target: nothing waits for the 300 s request time-out).
pub const ANSWER_BOUND: Duration = Duration::from_secs(10);
/// Waited after everything was answered, for a second answer to any id.
const QUIET: Duration = Duration::from_millis(500);
/// The longest a write to the proxy's stdin may block.
const STDIN_LIMIT: Duration = Duration::from_secs(10);
/// How long the proxy may take to exit once stdin is closed before it is killed.
const EXIT_LIMIT: Duration = Duration::from_secs(3);
/// How long a restarted testbed may take to get its port back.
const REBIND_LIMIT: Duration = Duration::from_secs(3);

/// What goes wrong during a scenario's fault window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Every chunk delayed by 40 ms plus up to 80 ms of jitter.
    LatencyJitter,
    /// Every connection reset (RST) after 2 KiB relayed.
    ResetAfterBytes,
    /// Each chunk resets its connection with probability 2 %.
    RandomResets,
    /// Nothing forwarded during the window; everything delivered when it is lifted.
    BlackholeHold,
    /// Every flow silently dead (no data, no FIN, no RST), new ones ignored; cleared at the
    /// end of the window, the dead flows staying dead.
    BlackholeKill,
    /// The testbed shut down (connections dropped, port closed: connection refused), then a
    /// new one started on the same port, which knows none of the old sessions. The proxy
    /// talks to the testbed directly here, so a refused connection is a real refusal.
    ServerRestart,
}

impl Fault {
    /// Every fault, in the order the suite reports them.
    pub const ALL: [Fault; 6] = [
        Fault::LatencyJitter,
        Fault::ResetAfterBytes,
        Fault::RandomResets,
        Fault::BlackholeHold,
        Fault::BlackholeKill,
        Fault::ServerRestart,
    ];

    /// A short name, also used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Fault::LatencyJitter => "latency-jitter",
            Fault::ResetAfterBytes => "reset-after-bytes",
            Fault::RandomResets => "random-resets",
            Fault::BlackholeHold => "blackhole-hold",
            Fault::BlackholeKill => "blackhole-kill",
            Fault::ServerRestart => "server-restart",
        }
    }

    /// What the fault does, for the report.
    pub fn description(self) -> String {
        match self {
            Fault::LatencyJitter => format!(
                "latency {} ms + jitter ≤ {} ms",
                LATENCY.as_millis(),
                JITTER.as_millis()
            ),
            Fault::ResetAfterBytes => format!("RST after {RESET_AFTER_BYTES} B per connection"),
            Fault::RandomResets => format!("RST with p = {RESET_PROBABILITY} per chunk"),
            Fault::BlackholeHold => "blackhole holding bytes, then lifted".to_owned(),
            Fault::BlackholeKill => "blackhole killing flows silently, then cleared".to_owned(),
            Fault::ServerRestart => "server killed, restarted on the same port".to_owned(),
        }
    }

    /// Whether the proxy is pointed at the relay (all but [`Fault::ServerRestart`]).
    fn through_relay(self) -> bool {
        self != Fault::ServerRestart
    }
}

/// The name of a transport in reports.
pub fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Streamable => "streamable-http",
        Transport::Legacy => "sse",
        Transport::Both => "both",
    }
}

/// One scenario: a fault, a transport, and how hard to push.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// What goes wrong.
    pub fault: Fault,
    /// [`Transport::Streamable`], or [`Transport::Legacy`] (the proxy then runs with
    /// `--transport sse-only` on the `/sse` URL).
    pub transport: Transport,
    /// How many calls are sent during the fault window (K).
    pub requests: usize,
    /// How many calls are written to stdin at once.
    pub batch: usize,
    /// How long the fault lasts; the calls go out over its first 80 %.
    pub window: Duration,
    /// The proxy's `--request-timeout`, in seconds (`None`: the default, as users run it).
    /// A call not answered within it (plus a grace), or, by default, within
    /// [`ANSWER_BOUND`] of the fault clearing, counts as never answered.
    pub request_timeout_secs: Option<u64>,
    /// How many calls are sent, one at a time, once the fault is cleared.
    pub after: usize,
    /// More arguments for the proxy.
    pub proxy_args: Vec<String>,
}

impl Scenario {
    /// The suite's settings for `fault` over `transport`: 200 calls in batches of 20, the
    /// proxy's default flags, 5 calls after the fault; a 3 s window for the blackholes, 2 s
    /// for the others.
    pub fn new(fault: Fault, transport: Transport) -> Scenario {
        let window = match fault {
            Fault::BlackholeHold | Fault::BlackholeKill => Duration::from_secs(3),
            _ => Duration::from_secs(2),
        };
        Scenario {
            fault,
            transport,
            requests: 200,
            batch: 20,
            window,
            request_timeout_secs: None,
            after: 5,
            proxy_args: Vec::new(),
        }
    }

    /// How long a call may wait for its answer before it counts as never answered.
    fn answer_wait(&self) -> Duration {
        match self.request_timeout_secs {
            Some(secs) => Duration::from_secs(secs) + ANSWER_GRACE,
            None => ANSWER_BOUND,
        }
    }
}

/// What happened in one scenario.
#[derive(Clone, Debug)]
pub struct Report {
    /// The fault played.
    pub fault: Fault,
    /// The transport used.
    pub transport: Transport,
    /// Calls sent during the fault window (K).
    pub sent: usize,
    /// Of those, answered with a successful result (first answer).
    pub ok: usize,
    /// Of those, answered with a JSON-RPC error or an `isError` result (first answer).
    pub errors: usize,
    /// Calls (window and after) without any answer by the end of the bounded wait.
    pub never_answered: usize,
    /// Calls (window and after) whose id came back more than once.
    pub answered_twice: usize,
    /// Calls of the fault window whose nonce the server ran at least once: an error for a
    /// call that never ran could have been retried; one for a call that ran could not.
    pub executed: usize,
    /// Nonces (window and after) the server ran more than once.
    pub executed_twice: usize,
    /// Whether the proxy was still running at the end, before stdin was closed.
    pub alive: bool,
    /// Calls sent after the fault cleared.
    pub after_sent: usize,
    /// Of those, answered with a successful result.
    pub after_ok: usize,
    /// From clearing the fault to the first successful answer received after it.
    pub recovery: Option<Duration>,
    /// The whole scenario, set-up to exit.
    pub elapsed: Duration,
    /// Answers whose id was never sent, and second answers to the set-up's requests
    /// (`initialize`, the warm-up call), which no other count sees.
    pub stray_answers: usize,
    /// stdout lines that were not JSON-RPC: not JSON, or JSON without `"jsonrpc": "2.0"`
    /// (invariant 1).
    pub non_json_lines: usize,
    /// Every distinct error message the calls got, with how many got it.
    pub error_messages: BTreeMap<String, usize>,
    /// What the relay counted.
    pub relay: RelayStats,
    /// The proxy's exit code after stdin closed (`None`: killed, or killed by a signal).
    pub exit_code: Option<i32>,
    /// Set when the run could not be played (testbed or proxy would not start,
    /// `initialize` failed): the counts are then incomplete.
    pub harness_error: Option<String>,
    /// The proxy's stderr (its `--debug` log).
    pub stderr: String,
}

impl Report {
    /// A report with nothing counted yet.
    fn empty(scenario: &Scenario) -> Report {
        Report {
            fault: scenario.fault,
            transport: scenario.transport,
            sent: 0,
            ok: 0,
            errors: 0,
            never_answered: 0,
            answered_twice: 0,
            executed: 0,
            executed_twice: 0,
            alive: false,
            after_sent: 0,
            after_ok: 0,
            recovery: None,
            elapsed: Duration::ZERO,
            stray_answers: 0,
            non_json_lines: 0,
            error_messages: BTreeMap::new(),
            relay: RelayStats::default(),
            exit_code: None,
            harness_error: None,
            stderr: String::new(),
        }
    }

    /// `fault / transport`, for messages.
    pub fn title(&self) -> String {
        format!("{} / {}", self.fault.name(), transport_name(self.transport))
    }

    /// What breaks the suite's invariants; empty when the scenario passes.
    pub fn violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(error) = &self.harness_error {
            found.push(format!("the scenario could not run: {error}"));
        }
        if self.never_answered > 0 {
            found.push(format!(
                "{} calls never answered (invariant 2)",
                self.never_answered
            ));
        }
        if self.answered_twice > 0 {
            found.push(format!(
                "{} calls answered twice (invariant 2)",
                self.answered_twice
            ));
        }
        if self.executed_twice > 0 {
            found.push(format!(
                "{} tool calls executed twice (invariant 3)",
                self.executed_twice
            ));
        }
        if !self.alive {
            found.push("the proxy process died".to_owned());
        }
        if self.after_ok < self.after_sent || self.after_sent == 0 {
            found.push(format!(
                "{} of {} calls after the fault cleared answered OK",
                self.after_ok, self.after_sent
            ));
        }
        if self.stray_answers > 0 {
            found.push(format!(
                "{} answers to ids never sent (invariant 2)",
                self.stray_answers
            ));
        }
        if self.non_json_lines > 0 {
            found.push(format!(
                "{} stdout lines not JSON-RPC (invariant 1)",
                self.non_json_lines
            ));
        }
        if self.exit_code != Some(0) {
            found.push(format!(
                "the proxy did not exit 0 within {EXIT_LIMIT:?} of stdin closing: {} \
                 (invariant 7)",
                match self.exit_code {
                    Some(code) => format!("exit code {code}"),
                    None => "killed, or ended by a signal".to_owned(),
                }
            ));
        }
        found
    }

    /// The last `lines` lines of the proxy's stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.stderr.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The last `lines` lines of the proxy's stderr that are not about one message (each
    /// call, answer and cancellation logs a line; what is left shows what the link did).
    pub fn log_excerpt(&self, lines: usize) -> String {
        const PER_MESSAGE: [&str; 4] = [
            "host → server tools/call",
            "host → server notifications/cancelled",
            "server → host response",
            "its answer comes on the event stream",
        ];
        let kept: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| !PER_MESSAGE.iter().any(|chatter| line.contains(chatter)))
            .collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// A multi-line account: counts, error messages, relay counters.
    pub fn details(&self) -> String {
        let mut text = format!(
            "{} ({}): {} calls, {} OK, {} errors, {} ran on the server, {} never answered, \
             {} answered twice, {} executed twice, alive {}, after the fault {}/{} OK, \
             recovery {}, exit code {:?}, {:.1} s\n",
            self.title(),
            self.fault.description(),
            self.sent,
            self.ok,
            self.errors,
            self.executed,
            self.never_answered,
            self.answered_twice,
            self.executed_twice,
            self.alive,
            self.after_ok,
            self.after_sent,
            format_recovery(self.recovery),
            self.exit_code,
            self.elapsed.as_secs_f64(),
        );
        if let Some(error) = &self.harness_error {
            text.push_str(&format!("  harness: {error}\n"));
        }
        for (message, count) in &self.error_messages {
            text.push_str(&format!("  {count} × {message}\n"));
        }
        if self.stray_answers > 0 || self.non_json_lines > 0 {
            text.push_str(&format!(
                "  {} answers to unknown ids, {} stdout lines not JSON\n",
                self.stray_answers, self.non_json_lines
            ));
        }
        let r = &self.relay;
        text.push_str(&format!(
            "  relay: {} connections, {} B up, {} B down, {} resets, {} refused, {} B dropped\n",
            r.connections,
            r.bytes_to_upstream,
            r.bytes_to_client,
            r.resets,
            r.refused,
            r.bytes_dropped
        ));
        text
    }
}

/// A recovery time for a table cell.
fn format_recovery(recovery: Option<Duration>) -> String {
    match recovery {
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => "never".to_owned(),
    }
}

/// One markdown table, a row per report.
pub fn markdown_table(reports: &[Report]) -> String {
    let mut table = String::from(
        "| fault | transport | calls | OK | error | ran on server | never answered \
         | answered twice | executed twice | alive | OK after clear | recovery | run time |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n",
    );
    for r in reports {
        let mark = |bad: bool| if bad { " ✗" } else { "" };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}{} | {}{} | {}{} | {}{} | {}/{}{} | {} | {:.1} s |\n",
            r.fault.name(),
            transport_name(r.transport),
            r.sent,
            r.ok,
            r.errors,
            r.executed,
            r.never_answered,
            mark(r.never_answered > 0),
            r.answered_twice,
            mark(r.answered_twice > 0),
            r.executed_twice,
            mark(r.executed_twice > 0),
            if r.alive { "yes" } else { "no" },
            mark(!r.alive),
            r.after_ok,
            r.after_sent,
            mark(r.after_ok < r.after_sent || r.after_sent == 0),
            format_recovery(r.recovery),
            r.elapsed.as_secs_f64(),
        ));
    }
    table
}

/// Plays `scenario` against the proxy binary at `binary` and reports what happened.
pub async fn run(binary: &Path, scenario: &Scenario) -> Report {
    let started = Instant::now();
    let mut report = Report::empty(scenario);
    let config_dir = std::env::temp_dir().join(format!(
        "mcp-remote-chaos-{}-{}-{}-{}",
        std::process::id(),
        scenario.fault.name(),
        transport_name(scenario.transport),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(error) = play(binary, scenario, &config_dir, &mut report).await {
        report.harness_error = Some(error);
    }
    let _ = std::fs::remove_dir_all(&config_dir);
    report.elapsed = started.elapsed();
    report
}

/// Numbers runs in this process, for their config folders.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// The scenario's steps; an `Err` is a harness failure.
async fn play(
    binary: &Path,
    scenario: &Scenario,
    config_dir: &Path,
    report: &mut Report,
) -> Result<(), String> {
    let legacy = scenario.transport == Transport::Legacy;
    let config = Config {
        transport: scenario.transport,
        ..Config::default()
    };
    let first = Testbed::start(config.clone())
        .await
        .map_err(|e| format!("testbed: {e}"))?;
    let port = first.port();
    let mut servers = vec![first.clone()];
    let relay = Relay::start(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| format!("relay: {e}"))?;
    relay.set_seed(SEED);
    let origin = if scenario.fault.through_relay() {
        relay.url("")
    } else {
        first.origin()
    };
    let mut args = vec![
        format!("{origin}{}", if legacy { "/sse" } else { "/mcp" }),
        "--debug".to_owned(),
    ];
    if let Some(secs) = scenario.request_timeout_secs {
        args.extend(["--request-timeout".to_owned(), secs.to_string()]);
    }
    if legacy {
        args.extend(["--transport".to_owned(), "sse-only".to_owned()]);
    }
    args.extend(scenario.proxy_args.iter().cloned());
    let mut host = Host::spawn(binary, &args, config_dir)?;

    let outcome = exercise(scenario, &mut host, &relay, &config, port, &mut servers).await;

    report.alive = matches!(host.child.try_wait(), Ok(None));
    // The proxy goes first, so its DELETE still finds a server.
    let (exit_code, stderr) = host.close().await;
    report.exit_code = exit_code;
    report.stderr = stderr;
    let mut executions: HashMap<String, u64> = HashMap::new();
    for server in &servers {
        for (nonce, runs) in server.execution_counts() {
            *executions.entry(nonce).or_insert(0) += runs;
        }
        server.shutdown();
    }
    report.relay = relay.stats();
    drop(relay);
    let Exercised {
        window,
        after,
        cleared_at,
    } = outcome?;
    tally(report, &host.seen, &window, &after, cleared_at, &executions);
    Ok(())
}

/// The ids a scenario sent, and when the fault cleared.
struct Exercised {
    /// The calls of the fault window.
    window: Vec<u64>,
    /// The calls after the fault cleared.
    after: Vec<u64>,
    /// When the fault was cleared.
    cleared_at: Instant,
}

/// Set-up, fault window, clearing, calls after the fault, and the bounded wait for every
/// answer.
async fn exercise(
    scenario: &Scenario,
    host: &mut Host,
    relay: &Relay,
    config: &Config,
    port: u16,
    servers: &mut Vec<Testbed>,
) -> Result<Exercised, String> {
    let version = if scenario.transport == Transport::Legacy {
        "2024-11-05"
    } else {
        "2025-06-18"
    };
    host.send(&[
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "chaos-host", "version": "1.0"},
        }}),
    ])
    .await?;
    let init = host
        .answer_to(&json!(0), Instant::now() + SETUP_LIMIT)
        .await;
    match init {
        Some(Answer { ok: true, .. }) => {}
        Some(answer) => return Err(format!("initialize failed: {}", answer.detail)),
        None => return Err("initialize got no answer".to_owned()),
    }
    host.send(&[json!({"jsonrpc": "2.0", "method": "notifications/initialized"})])
        .await?;
    let warm_up = json!("warm-up");
    host.send(&[count_call(&warm_up)]).await?;
    match host.answer_to(&warm_up, Instant::now() + SETUP_LIMIT).await {
        Some(Answer { ok: true, .. }) => {}
        Some(answer) => return Err(format!("the warm-up call failed: {}", answer.detail)),
        None => return Err("the warm-up call got no answer".to_owned()),
    }

    let fault_at = Instant::now();
    match scenario.fault {
        Fault::LatencyJitter => {
            relay.set_latency(LATENCY);
            relay.set_jitter(JITTER);
        }
        Fault::ResetAfterBytes => relay.reset_after_bytes(Some(RESET_AFTER_BYTES)),
        Fault::RandomResets => relay.random_resets(RESET_PROBABILITY, SEED),
        Fault::BlackholeHold => relay.blackhole_hold(),
        Fault::BlackholeKill => relay.blackhole_kill(),
        Fault::ServerRestart => servers[0].shutdown(),
    }
    let window: Vec<u64> = (1..=scenario.requests as u64).collect();
    let batches: Vec<&[u64]> = window.chunks(scenario.batch.max(1)).collect();
    let spacing = scenario.window.mul_f64(0.8) / batches.len().max(1) as u32;
    let mut last_sent = fault_at;
    for (n, ids) in batches.iter().enumerate() {
        tokio::time::sleep_until(fault_at + spacing * n as u32).await;
        let calls: Vec<Value> = ids.iter().map(|&id| count_call(&json!(id))).collect();
        host.send(&calls).await?;
        last_sent = Instant::now();
    }
    tokio::time::sleep_until(fault_at + scenario.window).await;

    match scenario.fault {
        Fault::ServerRestart => servers.push(restart(config, port).await?),
        _ => relay.clear(),
    }
    let cleared_at = Instant::now();
    // Recovery: probe, one call at a time, until the proxy answers one OK (bounded); the
    // calls that judge "after the fault" are sent once it has. The probes count among the
    // window's calls (each must still be answered exactly once and run at most once).
    let mut window = window;
    let probe_limit = cleared_at + RECOVERY_LIMIT;
    let mut probe = PROBE_IDS;
    while Instant::now() < probe_limit {
        host.send(&[count_call(&json!(probe))]).await?;
        window.push(probe);
        let limit = Instant::now() + scenario.answer_wait();
        let ok = host
            .answer_to(&json!(probe), limit)
            .await
            .is_some_and(|a| a.ok);
        probe += 1;
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_after = scenario.requests as u64 + 1;
    let after: Vec<u64> = (first_after..first_after + scenario.after as u64).collect();
    for &id in &after {
        host.send(&[count_call(&json!(id))]).await?;
        let limit = Instant::now() + scenario.answer_wait();
        host.answer_to(&json!(id), limit).await;
    }

    let everything: Vec<String> = window
        .iter()
        .chain(&after)
        .map(|id| json!(id).to_string())
        .collect();
    let limit = match scenario.request_timeout_secs {
        Some(_) => last_sent + scenario.answer_wait(),
        None => cleared_at + ANSWER_BOUND,
    }
    .max(Instant::now());
    host.wait(limit, |seen| {
        everything.iter().all(|id| seen.answers.contains_key(id))
    })
    .await;
    tokio::time::sleep(QUIET).await;
    Ok(Exercised {
        window,
        after,
        cleared_at,
    })
}

/// Starts a new testbed on `port`, retrying while the old one still holds it.
async fn restart(config: &Config, port: u16) -> Result<Testbed, String> {
    let limit = Instant::now() + REBIND_LIMIT;
    loop {
        match Testbed::start_on_port(config.clone(), port).await {
            Ok(testbed) => return Ok(testbed),
            Err(e) if Instant::now() >= limit => {
                return Err(format!("the testbed could not restart on port {port}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `tools/call count {nonce}` with `id`; the nonce is derived from the id, so it is unique
/// in the run.
fn count_call(id: &Value) -> Value {
    let nonce = nonce_of(id);
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "count", "arguments": {"nonce": nonce}}})
}

/// The nonce of the call with `id`.
fn nonce_of(id: &Value) -> String {
    format!("chaos-{}", id.to_string().trim_matches('"'))
}

/// Turns what the host saw and what the server ran into counts.
fn tally(
    report: &mut Report,
    seen: &Seen,
    window: &[u64],
    after: &[u64],
    cleared_at: Instant,
    executions: &HashMap<String, u64>,
) {
    let answers = lock(&seen.answers);
    let first = |id: u64| {
        answers
            .answers
            .get(&json!(id).to_string())
            .and_then(|list| list.first())
    };
    report.sent = window.len();
    report.after_sent = after.len();
    for &id in window {
        match first(id) {
            Some(answer) if answer.ok => report.ok += 1,
            Some(_) => report.errors += 1,
            None => {}
        }
    }
    report.after_ok = after
        .iter()
        .filter(|&&id| first(id).is_some_and(|a| a.ok))
        .count();
    let window_ids: HashSet<String> = window.iter().map(|id| json!(id).to_string()).collect();
    let sent: HashSet<String> = window
        .iter()
        .chain(after)
        .map(|id| json!(id).to_string())
        .collect();
    for id in &sent {
        match answers.answers.get(id).map_or(0, Vec::len) {
            0 => report.never_answered += 1,
            1 => {}
            _ => report.answered_twice += 1,
        }
        let runs = executions
            .get(&nonce_of(&serde_json::from_str(id).unwrap_or(Value::Null)))
            .copied()
            .unwrap_or(0);
        if window_ids.contains(id) {
            report.executed += usize::from(runs > 0);
        }
        report.executed_twice += usize::from(runs > 1);
    }
    for (id, list) in &answers.answers {
        if id == "0" || id == "\"warm-up\"" {
            report.stray_answers += list.len() - 1;
        } else if !sent.contains(id) {
            report.stray_answers += list.len();
        }
        if sent.contains(id) {
            for answer in list.iter().filter(|a| !a.ok) {
                *report
                    .error_messages
                    .entry(answer.detail.clone())
                    .or_insert(0) += 1;
            }
        }
    }
    report.recovery = answers
        .answers
        .values()
        .flatten()
        .filter(|a| a.ok && a.at >= cleared_at)
        .map(|a| a.at - cleared_at)
        .min();
    report.non_json_lines = answers.non_json_lines;
}

/// One answer the host received.
#[derive(Clone, Debug)]
struct Answer {
    /// When it arrived.
    at: Instant,
    /// A result that is not an `isError` tool result.
    ok: bool,
    /// The error message, or the result's text.
    detail: String,
}

/// Everything the host read on the proxy's stdout.
#[derive(Default)]
struct Answers {
    /// Answers by the JSON text of their id, in arrival order.
    answers: HashMap<String, Vec<Answer>>,
    /// Lines that were not JSON.
    non_json_lines: usize,
}

/// What the stdout reader shares with the scenario.
#[derive(Default)]
struct Seen {
    /// What arrived so far.
    answers: Mutex<Answers>,
    /// Woken at every line.
    arrived: Notify,
}

/// The scripted MCP host: the proxy process and its pipes.
struct Host {
    /// The proxy.
    child: Child,
    /// Its stdin; `None` once closed.
    stdin: Option<ChildStdin>,
    /// What it wrote on stdout.
    seen: Arc<Seen>,
    /// Collects its stderr until it closes.
    stderr: tokio::task::JoinHandle<String>,
}

impl Host {
    /// Spawns the proxy with a private config folder and starts reading its outputs.
    fn spawn(binary: &Path, args: &[String], config_dir: &Path) -> Result<Host, String> {
        let mut child = Command::new(binary)
            .args(args)
            .env("MCP_REMOTE_CONFIG_DIR", config_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let seen = Arc::new(Seen::default());
        let reader = seen.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                record(&reader, &line);
                reader.arrived.notify_waiters();
            }
            reader.arrived.notify_waiters();
        });
        let stderr = tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes).await;
            String::from_utf8_lossy(&bytes).into_owned()
        });
        Ok(Host {
            child,
            stdin,
            seen,
            stderr,
        })
    }

    /// Writes messages to stdin, one line each, in one go.
    async fn send(&mut self, messages: &[Value]) -> Result<(), String> {
        let mut bytes = Vec::new();
        for message in messages {
            bytes.extend(message.to_string().into_bytes());
            bytes.push(b'\n');
        }
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        let write = async {
            stdin.write_all(&bytes).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(STDIN_LIMIT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing to the proxy's stdin: {e}")),
            Err(_) => Err(format!("the proxy read no stdin for {STDIN_LIMIT:?}")),
        }
    }

    /// Waits until `done` holds for what was seen, or `limit`; returns whether it held.
    async fn wait(&self, limit: Instant, done: impl Fn(&Answers) -> bool) -> bool {
        loop {
            let arrived = self.seen.arrived.notified();
            if done(&lock(&self.seen.answers)) {
                return true;
            }
            if tokio::time::timeout_at(limit, arrived).await.is_err() {
                return done(&lock(&self.seen.answers));
            }
        }
    }

    /// The first answer to `id`, waiting for it until `limit`.
    async fn answer_to(&self, id: &Value, limit: Instant) -> Option<Answer> {
        let key = id.to_string();
        self.wait(limit, |seen| seen.answers.contains_key(&key))
            .await;
        lock(&self.seen.answers)
            .answers
            .get(&key)
            .and_then(|list| list.first().cloned())
    }

    /// Closes stdin, waits a bounded time for the exit (killing the proxy after it), and
    /// returns the exit code and the stderr.
    async fn close(&mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        let code = match tokio::time::timeout(EXIT_LIMIT, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        let stderr = match tokio::time::timeout(EXIT_LIMIT, &mut self.stderr).await {
            Ok(Ok(text)) => text,
            _ => String::from("(stderr not collected)"),
        };
        (code, stderr)
    }
}

/// Files one stdout line: an answer (a message with an id and no method) under its id.
fn record(seen: &Seen, line: &str) {
    let mut answers = lock(&seen.answers);
    let message = match serde_json::from_str::<Value>(line) {
        Ok(message) if message.get("jsonrpc") == Some(&json!("2.0")) => message,
        _ => {
            answers.non_json_lines += 1;
            return;
        }
    };
    if message.get("method").is_some() {
        return;
    }
    let Some(id) = message.get("id") else {
        return;
    };
    let (ok, detail) = match (message.get("result"), message.get("error")) {
        (Some(result), None) => {
            let text = result
                .pointer("/content/0/text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (result.get("isError") != Some(&Value::Bool(true)), text)
        }
        (_, Some(error)) => {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let code = error.get("code").map(Value::to_string).unwrap_or_default();
            (false, format!("{code} {message}"))
        }
        (None, None) => (false, format!("not a response: {line}")),
    };
    answers
        .answers
        .entry(id.to_string())
        .or_default()
        .push(Answer {
            at: Instant::now(),
            ok,
            detail,
        });
}

/// Where the `mcp-remote` binary is for a program under `target/<profile>/examples/`:
/// `$MCP_REMOTE_BIN`, else `target/<profile>/mcp-remote` next to it.
pub fn proxy_binary_near(exe: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_REMOTE_BIN") {
        return PathBuf::from(path);
    }
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."));
    profile_dir.join(format!("mcp-remote{}", std::env::consts::EXE_SUFFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files a JSON-RPC line as the stdout reader would.
    fn line(seen: &Seen, message: Value) {
        record(seen, &message.to_string());
    }

    fn ok(id: u64, runs: u64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": runs.to_string()}]}})
    }

    #[test]
    fn the_tally_finds_every_kind_of_violation() {
        let scenario = Scenario::new(Fault::RandomResets, Transport::Streamable);
        let mut report = Report::empty(&scenario);
        let seen = Seen::default();
        let cleared_at = Instant::now();
        line(&seen, ok(1, 1));
        line(&seen, ok(1, 1));
        line(
            &seen,
            json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32001, "message": "reset"}}),
        );
        line(&seen, ok(4, 2));
        line(&seen, ok(99, 1));
        line(
            &seen,
            json!({"jsonrpc": "2.0", "method": "notifications/message"}),
        );
        record(&seen, "not json");
        record(&seen, r#"{"id": 5, "result": {}}"#);
        line(&seen, ok(0, 0));
        line(&seen, ok(0, 0));
        let executions = HashMap::from([
            ("chaos-1".to_owned(), 1),
            ("chaos-2".to_owned(), 1),
            ("chaos-4".to_owned(), 2),
        ]);
        tally(
            &mut report,
            &seen,
            &[1, 2, 3],
            &[4],
            cleared_at,
            &executions,
        );
        assert_eq!((report.sent, report.ok, report.errors), (3, 1, 1));
        assert_eq!(report.never_answered, 1, "id 3");
        assert_eq!(report.answered_twice, 1, "id 1");
        assert_eq!((report.executed, report.executed_twice), (2, 1));
        assert_eq!((report.after_ok, report.after_sent), (1, 1));
        assert_eq!(
            (report.stray_answers, report.non_json_lines),
            (2, 2),
            "id 99 and the second answer to initialize; `not json` and the line without \
             `jsonrpc`"
        );
        assert_eq!(report.error_messages.get("-32001 reset"), Some(&1));
        assert!(report.recovery.is_some());
        report.exit_code = Some(1);
        let violations = report.violations();
        let expected = [
            "1 calls never answered",
            "1 calls answered twice",
            "1 tool calls executed twice",
            "the proxy process died",
            "2 answers to ids never sent",
            "2 stdout lines not JSON-RPC",
            "exit code 1",
        ];
        assert_eq!(violations.len(), expected.len(), "{violations:?}");
        for (violation, expected) in violations.iter().zip(expected) {
            assert!(
                violation.contains(expected),
                "{violation:?} is not {expected:?}"
            );
        }
    }

    #[test]
    fn each_of_stray_answers_bad_lines_and_a_bad_exit_is_a_violation_on_its_own() {
        let clean = || {
            let scenario = Scenario::new(Fault::LatencyJitter, Transport::Streamable);
            let mut report = Report::empty(&scenario);
            report.alive = true;
            report.after_sent = 1;
            report.after_ok = 1;
            report.exit_code = Some(0);
            report
        };
        assert_eq!(clean().violations(), Vec::<String>::new());
        let mut stray = clean();
        stray.stray_answers = 1;
        let mut bad_line = clean();
        bad_line.non_json_lines = 1;
        let mut killed = clean();
        killed.exit_code = None;
        let mut failed = clean();
        failed.exit_code = Some(2);
        for report in [stray, bad_line, killed, failed] {
            assert_eq!(report.violations().len(), 1, "{:?}", report.violations());
        }
    }

    #[test]
    fn a_clean_report_has_no_violation() {
        let scenario = Scenario::new(Fault::LatencyJitter, Transport::Legacy);
        let mut report = Report::empty(&scenario);
        let seen = Seen::default();
        let cleared_at = Instant::now();
        line(&seen, ok(1, 1));
        line(&seen, ok(2, 1));
        let executions = HashMap::from([("chaos-1".to_owned(), 1), ("chaos-2".to_owned(), 1)]);
        tally(&mut report, &seen, &[1], &[2], cleared_at, &executions);
        report.alive = true;
        report.exit_code = Some(0);
        assert_eq!(report.violations(), Vec::<String>::new());
        assert!(markdown_table(&[report]).contains("| latency-jitter | sse | 1 | 1 | 0 | 1 | 0 |"));
    }
}
