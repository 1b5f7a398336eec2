//! What the proxy costs: start-up, added latency per round trip, throughput of
//! pipelined calls and peak memory, measured against the loopback testbed and
//! compared with a direct HTTP client doing the same exchange.
//!
//! Run: `cargo bench --bench overhead` (add `-- --quick` for fewer rounds).
//! The numbers are printed; nothing is asserted (timing belongs here, not in tests).

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use testbed::{Config, ResponseMode, Testbed};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const PROXY: &str = env!("CARGO_BIN_EXE_mcp-remote");

struct Proxy {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proxy {
    fn spawn(url: &str) -> Proxy {
        Self::spawn_with(url, &[])
    }

    fn spawn_with(url: &str, extra: &[&str]) -> Proxy {
        Self::spawn_program(PROXY, url, extra)
    }

    fn spawn_program(program: &str, url: &str, extra: &[&str]) -> Proxy {
        let mut child = Command::new(program)
            .arg(url)
            .arg("--silent")
            .args(extra)
            .env(
                "MCP_REMOTE_CONFIG_DIR",
                std::env::temp_dir().join("mcp-remote-bench"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the proxy");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Proxy {
            child,
            stdin,
            lines,
        }
    }

    async fn send(&mut self, v: &Value) {
        self.stdin
            .write_all(format!("{v}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// User + system CPU time so far, in clock ticks (`/proc/<pid>/stat`, fields 14 and 15).
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }
}

/// Clock ticks per second of `/proc` CPU times: USER_HZ, 100 on Linux.
fn clock_ticks() -> f64 {
    100.0
}

fn init(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}})
}

fn echo(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ping"}}})
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (median, p99)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (starts, calls) = if quick { (5, 200) } else { (20, 2000) };
    let tb = Testbed::start(Config {
        response_mode: ResponseMode::Json,
        get_stream: false,
        ..Config::default()
    })
    .await
    .unwrap();
    let url = tb.url();

    // 1. Process start to `--version` output, and to the first answer (initialize round trip).
    let mut version = Vec::new();
    for _ in 0..starts {
        let t = Instant::now();
        let out = Command::new(PROXY).arg("--version").output().await.unwrap();
        assert!(out.status.success());
        version.push(t.elapsed());
    }
    let mut first_answer = Vec::new();
    for _ in 0..starts {
        let t = Instant::now();
        let mut p = Proxy::spawn(&url);
        p.send(&init(0)).await;
        let r = p.recv().await;
        assert!(r.get("result").is_some());
        first_answer.push(t.elapsed());
        drop(p.stdin);
        let _ = p.child.wait().await;
    }

    // 2. Sequential round trips: through the proxy, and a direct HTTP client.
    let mut p = Proxy::spawn(&url);
    p.send(&init(0)).await;
    p.recv().await;
    p.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    let mut via_proxy = Vec::with_capacity(calls);
    for id in 1..=calls as u64 {
        let t = Instant::now();
        p.send(&echo(id)).await;
        let r = p.recv().await;
        via_proxy.push(t.elapsed());
        assert_eq!(r["id"], id);
    }

    let http = actors::http::build_client(&actors::http::HttpOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: None,
        enable_proxy: false,
        ipv4: false,
        extra_ca_certs: None,
    })
    .unwrap();
    let post = |body: Value, session: Option<String>| {
        let mut r = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = session {
            r = r
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        r.send()
    };
    let resp = post(init(0), None).await.unwrap();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    resp.bytes().await.unwrap();
    post(
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        session.clone(),
    )
    .await
    .unwrap();
    let mut direct = Vec::with_capacity(calls);
    for id in 1..=calls as u64 {
        let t = Instant::now();
        let body = post(echo(id), session.clone())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        direct.push(t.elapsed());
        assert!(!body.is_empty());
    }

    // 3. 200 pipelined calls through the proxy.
    let t = Instant::now();
    let mut batch = String::new();
    for id in 10_000..10_200u64 {
        batch.push_str(&echo(id).to_string());
        batch.push('\n');
    }
    p.stdin.write_all(batch.as_bytes()).await.unwrap();
    for _ in 0..200 {
        p.recv().await;
    }
    let pipelined = t.elapsed();

    let rss_small = p.peak_rss_kib();

    // 4. A 1 MiB message each way.
    let big = "x".repeat(1 << 20);
    let t = Instant::now();
    p.send(&json!({"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"echo","arguments":{"text":big}}})).await;
    let r = p.recv().await;
    let mib_round_trip = t.elapsed();
    assert_eq!(
        r["result"]["content"][0]["text"].as_str().map(str::len),
        Some(1 << 20)
    );
    let rss = p.peak_rss_kib();

    // 5. The trace's cost: the same sequential round trips with `--trace FILE` and
    // with `--trace FILE --trace-bodies`, beside a proxy without it (CPU from /proc).
    // `MCP_REMOTE_BENCH_BASELINE=<binary>` adds a build without the trace code (such
    // as one built from the commit before it), to show what "off" costs; then each
    // variant runs three times, interleaved, and the medians are kept.
    let trace_file =
        std::env::temp_dir().join(format!("mcp-remote-bench-{}.jsonl", std::process::id()));
    let trace_arg = format!("--trace={}", trace_file.display());
    let baseline = std::env::var("MCP_REMOTE_BENCH_BASELINE").ok();
    let mut variants: Vec<(&str, &str, Vec<&str>)> = vec![
        ("trace off", PROXY, vec![]),
        ("--trace", PROXY, vec![trace_arg.as_str()]),
        (
            "--trace --trace-bodies",
            PROXY,
            vec![trace_arg.as_str(), "--trace-bodies"],
        ),
    ];
    if let Some(program) = baseline.as_deref() {
        variants.insert(0, ("build without trace code", program, vec![]));
    }
    let rounds = if baseline.is_some() { 3 } else { 1 };
    // Per variant: medians, CPU ticks, trace bytes of each round.
    let mut traced: Vec<(Vec<Duration>, Vec<u64>, u64)> = vec![Default::default(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, program, extra)) in variants.iter().enumerate() {
            let _ = std::fs::remove_file(&trace_file);
            let mut t = Proxy::spawn_program(program, &url, extra);
            t.send(&init(0)).await;
            t.recv().await;
            let cpu_before = t.cpu_ticks();
            let mut times = Vec::with_capacity(calls);
            for id in 1..=calls as u64 {
                let at = Instant::now();
                t.send(&echo(id)).await;
                t.recv().await;
                times.push(at.elapsed());
            }
            let cpu = t.cpu_ticks().zip(cpu_before).map(|(a, b)| a - b);
            drop(t.stdin);
            let _ = t.child.wait().await;
            let (median, _) = stats(times);
            traced[i].0.push(median);
            traced[i].1.extend(cpu);
            traced[i].2 = std::fs::metadata(&trace_file).map_or(0, |m| m.len());
        }
    }
    let _ = std::fs::remove_file(&trace_file);

    let (v_med, _) = stats(version);
    let (f_med, _) = stats(first_answer);
    let (p_med, p_p99) = stats(via_proxy);
    let (d_med, d_p99) = stats(direct);
    println!("mcp-remote overhead against the loopback testbed ({calls} calls, {starts} starts)");
    println!(
        "  start → --version printed        median {:>10}",
        us(v_med)
    );
    println!(
        "  start → first answer (initialize) median {:>10}",
        us(f_med)
    );
    println!(
        "  round trip via proxy             median {:>10}  p99 {:>10}",
        us(p_med),
        us(p_p99)
    );
    println!(
        "  round trip direct HTTP           median {:>10}  p99 {:>10}",
        us(d_med),
        us(d_p99)
    );
    println!(
        "  added per round trip             median {:>10}  ({:.2}× direct)",
        us(p_med.saturating_sub(d_med)),
        p_med.as_secs_f64() / d_med.as_secs_f64()
    );
    println!(
        "  200 pipelined calls              total  {:>10}",
        us(pipelined)
    );
    println!(
        "  1 MiB echo round trip                   {:>10}",
        us(mib_round_trip)
    );
    let mib = |kib: Option<u64>| {
        kib.map_or("n/a".to_owned(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    println!(
        "  proxy peak RSS, small messages          {:>10}",
        mib(rss_small)
    );
    println!("  proxy peak RSS, after 1 MiB each way    {:>10}", mib(rss));
    let ticks = clock_ticks();
    for ((label, _, _), (medians, cpu, bytes)) in variants.iter().zip(traced) {
        let (median, _) = stats(medians);
        let cpu = if cpu.is_empty() {
            "n/a".to_owned()
        } else {
            let mut cpu = cpu;
            cpu.sort_unstable();
            let t = cpu[cpu.len() / 2];
            format!("{:.0} µs CPU/call", t as f64 * 1e6 / ticks / calls as f64)
        };
        println!(
            "  round trip, {label:<24} median {:>10}  {cpu}, {:.0} trace bytes/call",
            us(median),
            bytes as f64 / calls as f64
        );
    }
    drop(p.stdin);
    let _ = p.child.wait().await;
    tb.shutdown();

    // 6. A server of MCP 2026-07-28 (the testbed's modern mode), bridged for a
    // 2025-11-25 host: the same sequential round trips through the proxy, beside a
    // direct client sending what a 2026-07-28 client sends (`_meta`, the version
    // and method headers), and how many HTTP requests each call cost.
    let modern = Testbed::start(Config {
        modern: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let url = modern.url();
    let mut m = Proxy::spawn(&url);
    m.send(&init(0)).await;
    m.recv().await;
    m.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    // Let the listen stream open before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    modern.clear_requests();
    let mut bridged = Vec::with_capacity(calls);
    for id in 1..=calls as u64 {
        let t = Instant::now();
        m.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ping"}}}))
            .await;
        let r = m.recv().await;
        bridged.push(t.elapsed());
        assert_eq!(r["id"], id);
    }
    let per_call = modern.requests().len() as f64 / calls as f64;
    drop(m.stdin);
    let _ = m.child.wait().await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let mut direct_modern = Vec::with_capacity(calls);
    for id in 1..=calls as u64 {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"echo","arguments":{"text":"ping"},"_meta": meta}});
        let t = Instant::now();
        let bytes = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        direct_modern.push(t.elapsed());
        assert!(!bytes.is_empty());
    }
    let (b_med, b_p99) = stats(bridged);
    let (dm_med, dm_p99) = stats(direct_modern);
    println!("MCP 2026-07-28 server, a 2025-11-25 host bridged ({calls} calls)");
    println!(
        "  round trip via proxy (bridged)   median {:>10}  p99 {:>10}",
        us(b_med),
        us(b_p99)
    );
    println!(
        "  round trip direct 2026-07-28     median {:>10}  p99 {:>10}",
        us(dm_med),
        us(dm_p99)
    );
    println!(
        "  added per round trip             median {:>10}  ({:.2}× direct); HTTP requests per call: {per_call:.2}",
        us(b_med.saturating_sub(dm_med)),
        b_med.as_secs_f64() / dm_med.as_secs_f64()
    );
    modern.shutdown();
}
