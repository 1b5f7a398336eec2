//! `cargo run --example chaos`: plays the chaos suite (issue 5, "Resilience") against the
//! built `mcp-remote` binary and prints a markdown table, a row per fault and transport,
//! with every count the suite asserts on and the time to recover; then the details of each
//! run (error messages, relay counters). Each run's `--debug` log is written to
//! `<logs>/<fault>-<transport>.log`.
//!
//! ```text
//! cargo build --bins && cargo run --example chaos -- [--only FAULT]… [--transport streamable|sse]
//!     [--requests K] [--parallel N] [--logs DIR] [-- PROXY-ARGS…]
//! ```
//!
//! The binary is `target/<profile>/mcp-remote`, or `$MCP_REMOTE_BIN`. The exit status is 1
//! when any run breaks an invariant the suite asserts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use testbed::chaos::{self, Fault, Report, Scenario};
use testbed::Transport;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What the command line asked for.
struct Options {
    /// The faults to play; all when empty.
    only: Vec<Fault>,
    /// The transports to play them over.
    transports: Vec<Transport>,
    /// Calls per fault window, when not the suite's.
    requests: Option<usize>,
    /// How many runs at once.
    parallel: usize,
    /// Where the proxies' logs go.
    logs: PathBuf,
    /// Extra arguments for every proxy.
    proxy_args: Vec<String>,
}

const USAGE: &str = "usage: chaos [--only FAULT]… [--transport streamable|sse] [--requests K] \
                     [--parallel N] [--logs DIR] [-- PROXY-ARGS…]";

/// Parses the arguments after the program name.
fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        only: Vec::new(),
        transports: vec![Transport::Streamable, Transport::Legacy],
        requests: None,
        parallel: 4,
        logs: std::env::temp_dir().join("mcp-remote-chaos-logs"),
        proxy_args: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--only" => {
                let name = value("--only")?;
                let fault = Fault::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .ok_or(format!("--only: no fault {name}"))?;
                options.only.push(fault);
            }
            "--transport" => {
                options.transports = match value("--transport")?.as_str() {
                    "streamable" => vec![Transport::Streamable],
                    "sse" => vec![Transport::Legacy],
                    other => return Err(format!("--transport: {other}?")),
                }
            }
            "--requests" => {
                let k = value("--requests")?;
                options.requests = Some(k.parse().map_err(|_| format!("--requests: {k}?"))?);
            }
            "--parallel" => {
                let n = value("--parallel")?;
                options.parallel = n.parse().map_err(|_| format!("--parallel: {n}?"))?;
            }
            "--logs" => options.logs = PathBuf::from(value("--logs")?),
            "--" => options.proxy_args.extend(args.by_ref()),
            _ => return Err(USAGE.to_owned()),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let exe = std::env::current_exe().unwrap_or_default();
    let binary = chaos::proxy_binary_near(&exe);
    if !binary.exists() {
        eprintln!(
            "no proxy binary at {}: run `cargo build --bins` first, or set MCP_REMOTE_BIN",
            binary.display()
        );
        return ExitCode::from(2);
    }
    let faults = if options.only.is_empty() {
        Fault::ALL.to_vec()
    } else {
        options.only.clone()
    };
    let mut scenarios = Vec::new();
    for &fault in &faults {
        for &transport in &options.transports {
            let mut scenario = Scenario::new(fault, transport);
            if let Some(k) = options.requests {
                scenario.requests = k;
            }
            scenario.proxy_args = options.proxy_args.clone();
            scenarios.push(scenario);
        }
    }
    eprintln!(
        "playing {} scenarios against {} ({} at once)…",
        scenarios.len(),
        binary.display(),
        options.parallel
    );
    let started = std::time::Instant::now();
    let slots = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut runs = JoinSet::new();
    for (index, scenario) in scenarios.into_iter().enumerate() {
        let slots = slots.clone();
        let binary = binary.clone();
        runs.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let report = chaos::run(&binary, &scenario).await;
            eprintln!(
                "  done: {} in {:.1} s",
                report.title(),
                report.elapsed.as_secs_f64()
            );
            (index, report)
        });
    }
    let mut reports: Vec<(usize, Report)> = Vec::new();
    while let Some(done) = runs.join_next().await {
        match done {
            Ok(run) => reports.push(run),
            Err(e) => eprintln!("a run panicked: {e}"),
        }
    }
    reports.sort_by_key(|(index, _)| *index);
    let reports: Vec<Report> = reports.into_iter().map(|(_, report)| report).collect();

    let _ = std::fs::create_dir_all(&options.logs);
    for report in &reports {
        let file = options.logs.join(format!(
            "{}-{}.log",
            report.fault.name(),
            chaos::transport_name(report.transport)
        ));
        if let Err(e) = std::fs::write(&file, &report.stderr) {
            eprintln!("cannot write {}: {e}", file.display());
        }
    }
    println!("{}", chaos::markdown_table(&reports));
    let mut failed = false;
    for report in &reports {
        println!("{}", report.details());
        let violations = report.violations();
        if !violations.is_empty() {
            failed = true;
            println!("  FAILS: {}\n", violations.join("; "));
        }
    }
    println!(
        "{} runs in {:.1} s; logs in {}",
        reports.len(),
        started.elapsed().as_secs_f64(),
        options.logs.display()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
