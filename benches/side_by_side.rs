//! Side by side, in one run, against the loopback testbed (no authorization, JSON
//! answers): this proxy, the Node `mcp-remote` 0.15.1 the interop set-up installs,
//! and a direct client (the harness itself POSTing the same JSON-RPC, over pooled
//! keep-alive connections, or on the HTTP+SSE stream), on both transports:
//!
//! - cold start: process spawned → `initialize` answered (median);
//! - sequential round trips: p50 and p99;
//! - pipelined throughput: 64 requests in flight;
//! - echoes of 1 KiB … 16 MiB (the largest message the default limit accepts);
//! - idle and peak RSS (`VmRSS`, `VmHWM`), CPU per request (`/proc/<pid>/stat`).
//!
//! It also measures stdio alone: `cat` in the proxy's place (each line straight back).
//! Beside the sequential and 8 MiB budgets it shows direct + cat: what a proxy that
//! added only the two pipe hops would take. For the 8 MiB line (copied through two
//! pipes) that is close to a bound; for a small round trip it is not (the wake-ups
//! of two processes overlap differently), so a proxy can come in under it.
//!
//! It prints the machine (cores, load), a table per transport with the ratios, the
//! budgets of issue #15 with the measured figures, and one JSON line. Nothing is
//! asserted: timings are benchmarks, not tests.
//!
//! Run: `cargo bench --bench side_by_side` (2,000 sequential and 10,000 pipelined
//! calls); `-- --quick` for small counts (CI runs that, to keep it working).
//! The Node proxy is `MCP_REMOTE_NODE_BIN`, else `$INTEROP_PREFIX/node_modules/.bin/
//! mcp-remote`, else `.interop/node_modules/.bin/mcp-remote`; without it its columns
//! say `n/a`. `MCP_REMOTE_BENCH_PROXY=<binary>` measures another build of this proxy.

use reqwest::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbed::{Config, ResponseMode, Testbed, Transport};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

const PROXY: &str = env!("CARGO_BIN_EXE_mcp-remote");
const IN_FLIGHT: usize = 64;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// The echoed text sizes; the largest leaves room for the envelope under the
/// default 16 MiB message limit.
const ECHOES: [(&str, usize); 6] = [
    ("1 KiB", KIB),
    ("64 KiB", 64 * KIB),
    ("1 MiB", MIB),
    ("4 MiB", 4 * MIB),
    ("8 MiB", 8 * MIB),
    ("16 MiB", 16 * MIB - 4 * KIB),
];

struct Counts {
    starts: usize,
    sequential: usize,
    pipelined: usize,
}

/// What one way of reaching the server measured on one transport.
#[derive(Default, Clone)]
struct Figures {
    cold_start: Option<Duration>,
    p50: Option<Duration>,
    p99: Option<Duration>,
    per_second: Option<f64>,
    cpu_sequential_us: Option<f64>,
    cpu_pipelined_us: Option<f64>,
    echoes: Vec<Option<Duration>>,
    idle_rss_kib: Option<u64>,
    peak_rss_8_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
    /// `VmHWM` after each echo, smallest first.
    echo_peaks: Vec<Option<u64>>,
}

// ---------------------------------------------------------------- a stdio proxy

struct Stdio_ {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
}

fn spawn(program: &str, url: &str, transport: &str, dir: &std::path::Path) -> Stdio_ {
    let mut child = Command::new(program)
        .arg(url)
        .args(["--transport", transport])
        .env("MCP_REMOTE_CONFIG_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::with_capacity(256 * KIB, child.stdout.take().unwrap());
    Stdio_ {
        child,
        stdin,
        stdout,
        line: Vec::new(),
    }
}

impl Stdio_ {
    async fn send(&mut self, line: &[u8]) {
        assert!(self.try_send(line).await, "the proxy stopped reading");
    }

    async fn try_send(&mut self, line: &[u8]) -> bool {
        self.stdin.write_all(line).await.is_ok()
    }

    /// The next line, as bytes (not parsed: the harness must not be the limit).
    async fn recv(&mut self) -> &[u8] {
        self.try_recv().await.expect("an answer within 60 s")
    }

    /// The next line within 60 s; `None` when it does not come (the proxy ended).
    async fn try_recv(&mut self) -> Option<&[u8]> {
        self.line.clear();
        let n = tokio::time::timeout(
            Duration::from_secs(60),
            self.stdout.read_until(b'\n', &mut self.line),
        )
        .await
        .ok()?
        .ok()?;
        (n > 0).then_some(&self.line[..])
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn end(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU of the whole process (every thread), in µs.
fn cpu_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 * 10_000.0)
}

fn line(v: &Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(v).unwrap();
    l.push(b'\n');
    l
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":"2025-11-25",
        "capabilities":{},"clientInfo":{"name":"side-by-side","version":"1"}}})
}

fn initialized() -> Value {
    json!({"jsonrpc":"2.0","method":"notifications/initialized"})
}

fn echo(id: u64, text: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}})
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

async fn through_stdio(program: &str, url: &str, transport: &str, counts: &Counts) -> Figures {
    let dir = std::env::temp_dir().join(format!("mcp-remote-side-by-side-{}", std::process::id()));
    let mut f = Figures::default();

    let mut starts = Vec::new();
    for _ in 0..counts.starts {
        let t = Instant::now();
        let mut p = spawn(program, url, transport, &dir);
        p.send(&line(&initialize(0))).await;
        let answer = p.recv().await;
        assert!(
            memchr(answer, b"\"result\""),
            "{}",
            String::from_utf8_lossy(answer)
        );
        starts.push(t.elapsed());
        p.end().await;
    }
    starts.sort();
    f.cold_start = starts.get(starts.len() / 2).copied();

    let mut p = spawn(program, url, transport, &dir);
    p.send(&line(&initialize(0))).await;
    p.recv().await;
    p.send(&line(&initialized())).await;
    let pid = p.pid();
    // A moment for the standalone stream and start-up work to settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.idle_rss_kib = status_kib(pid, "VmRSS:");

    // Sequential.
    let requests: Vec<Vec<u8>> = (1..=counts.sequential as u64)
        .map(|id| line(&echo(id, "ping")))
        .collect();
    let cpu = cpu_us(pid);
    let mut times = Vec::with_capacity(counts.sequential);
    for r in &requests {
        let t = Instant::now();
        p.send(r).await;
        p.recv().await;
        times.push(t.elapsed());
    }
    f.cpu_sequential_us = cpu
        .zip(cpu_us(pid))
        .map(|(a, b)| (b - a) / counts.sequential as f64);
    times.sort();
    f.p50 = Some(percentile(&times, 50));
    f.p99 = Some(percentile(&times, 99));

    // Pipelined: IN_FLIGHT outstanding, one more sent per answer.
    let (per_second, cpu) = pipelined(&mut p, 100_000, counts.pipelined, IN_FLIGHT).await;
    f.per_second = Some(per_second);
    f.cpu_pipelined_us = cpu;

    // Echoes, smallest first; the peak after 8 MiB, then after the largest.
    for (i, (label, size)) in ECHOES.iter().enumerate() {
        let text = "x".repeat(*size);
        let request = line(&echo(1_000_000 + i as u64, &text));
        drop(text);
        let t = Instant::now();
        let answer = if p.try_send(&request).await {
            p.try_recv().await
        } else {
            None
        };
        let took = t.elapsed();
        let ok =
            answer.is_some_and(|a| a.len() > *size && memchr(&a[..a.len().min(64)], b"\"result\""));
        if !ok {
            let seen = answer.map_or("nothing (the proxy ended or stalled)".into(), |a| {
                String::from_utf8_lossy(&a[..a.len().min(300)]).into_owned()
            });
            println!("  {program}: echo {label} was not answered with its text: {seen}");
        }
        f.echoes.push(ok.then_some(took));
        f.echo_peaks.push(status_kib(pid, "VmHWM:"));
        if answer.is_none() {
            break;
        }
        if *label == "8 MiB" {
            f.peak_rss_8_kib = status_kib(pid, "VmHWM:");
        }
    }
    f.peak_rss_kib = status_kib(pid, "VmHWM:");
    p.end().await;
    let _ = std::fs::remove_dir_all(&dir);
    f
}

/// `calls` echoes from id `first`, `in_flight` outstanding (one more sent per
/// answer): requests per second and CPU µs per request of the proxy.
async fn pipelined(
    p: &mut Stdio_,
    first: u64,
    calls: usize,
    in_flight: usize,
) -> (f64, Option<f64>) {
    let pid = p.pid();
    let requests: Vec<Vec<u8>> = (first..first + calls as u64)
        .map(|id| line(&echo(id, "ping")))
        .collect();
    let cpu = cpu_us(pid);
    let t = Instant::now();
    let mut sent = 0;
    let mut batch = Vec::new();
    for r in requests.iter().take(in_flight) {
        batch.extend_from_slice(r);
        sent += 1;
    }
    p.send(&batch).await;
    let mut failed = 0;
    for _ in 0..calls {
        let answer = p.recv().await;
        if !memchr(answer, b"\"result\"") {
            failed += 1;
        }
        if sent < requests.len() {
            p.send(&requests[sent]).await;
            sent += 1;
        }
    }
    let took = t.elapsed();
    let cpu = cpu.zip(cpu_us(pid)).map(|(a, b)| (b - a) / calls as f64);
    if failed > 0 {
        println!("  {failed} of {calls} calls with {in_flight} in flight were not answered with a result");
    }
    (calls as f64 / took.as_secs_f64(), cpu)
}

/// This proxy with 1 … 1,024 requests in flight, in one process: requests per second,
/// CPU per request and the peak RSS after each level.
async fn in_flight_sweep(
    program: &str,
    url: &str,
    transport: &str,
    calls: usize,
) -> Vec<(usize, f64, Option<f64>, Option<u64>)> {
    let dir = std::env::temp_dir().join(format!("mcp-remote-side-by-side-{}", std::process::id()));
    let mut p = spawn(program, url, transport, &dir);
    p.send(&line(&initialize(0))).await;
    p.recv().await;
    p.send(&line(&initialized())).await;
    let mut rows = Vec::new();
    let mut first = 5_000_000u64;
    for level in [1usize, 16, 64, 256, 1024] {
        let calls = calls.max(level * 4);
        let (per_second, cpu) = pipelined(&mut p, first, calls, level).await;
        first += calls as u64;
        rows.push((level, per_second, cpu, status_kib(p.pid(), "VmHWM:")));
    }
    p.end().await;
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// stdio alone: `cat` in the proxy's place, each request line coming straight back.
/// What two pipe hops and a process woken twice cost in this harness: the sequential
/// p50, and the time of the 8 MiB echo's line (through stdin and stdout once each).
/// `None` where there is no `cat`.
struct Cat {
    p50: Option<Duration>,
    echo8: Option<Duration>,
}

async fn stdio_alone(calls: usize) -> Cat {
    let none = Cat {
        p50: None,
        echo8: None,
    };
    let Ok(mut child) = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    else {
        return none;
    };
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return none;
    };
    let mut p = Stdio_ {
        stdin,
        stdout: BufReader::with_capacity(256 * KIB, stdout),
        child,
        line: Vec::new(),
    };
    let request = line(&echo(1, "ping"));
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        p.send(&request).await;
        if p.try_recv().await.is_none() {
            return none;
        }
        times.push(t.elapsed());
    }
    times.sort();
    let large = line(&echo(2, &"x".repeat(8 * MIB)));
    let t = Instant::now();
    // Written and read at once: `cat` holds no more than a pipe's worth.
    p.line.clear();
    let (sent, read) = tokio::join!(
        p.stdin.write_all(&large),
        tokio::time::timeout(
            Duration::from_secs(60),
            p.stdout.read_until(b'\n', &mut p.line)
        )
    );
    let echo8 =
        (sent.is_ok() && matches!(read, Ok(Ok(n)) if n == large.len())).then(|| t.elapsed());
    p.end().await;
    Cat {
        p50: Some(percentile(&times, 50)),
        echo8,
    }
}

fn memchr(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------- direct clients

fn client() -> Client {
    actors::http::build_client(&actors::http::HttpOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: None,
        enable_proxy: false,
        ipv4: false,
        extra_ca_certs: None,
    })
    .unwrap()
}

/// A direct Streamable HTTP client: a session, then plain POSTs.
struct Streamable {
    http: Client,
    url: String,
    session: Option<String>,
}

impl Streamable {
    async fn open(url: &str) -> Streamable {
        let mut s = Streamable {
            http: client(),
            url: url.to_owned(),
            session: None,
        };
        let resp = s.post(line(&initialize(0))).await;
        s.session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        resp.bytes().await.unwrap();
        s.post(line(&initialized())).await.bytes().await.unwrap();
        s
    }

    async fn post(&self, body: Vec<u8>) -> reqwest::Response {
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body);
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        r.send().await.expect("POST")
    }

    async fn call(&self, body: Vec<u8>) -> usize {
        self.post(body).await.bytes().await.unwrap().len()
    }
}

/// A direct HTTP+SSE client: the stream's `message` events come through a channel.
struct Legacy {
    http: Client,
    endpoint: String,
    answers: mpsc::UnboundedReceiver<usize>,
}

impl Legacy {
    async fn open(sse_url: &str) -> Legacy {
        let http = client();
        let mut resp = http
            .get(sse_url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        let (endpoint_tx, endpoint_rx) = tokio::sync::oneshot::channel();
        let (tx, answers) = mpsc::unbounded_channel();
        let origin = sse_url.trim_end_matches("/sse").to_owned();
        tokio::spawn(async move {
            let mut endpoint_tx = Some(endpoint_tx);
            let mut buf: Vec<u8> = Vec::new();
            let mut event = String::new();
            let mut data_len = 0usize;
            let mut data_first = Vec::new();
            // Where the search for the next line end resumes (a long line arrives
            // in many chunks: each byte is looked at once).
            let mut scanned = 0;
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(n) = buf[start.max(scanned)..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|n| n + start.max(scanned) - start)
                {
                    let l = &buf[start..start + n];
                    let l = l.strip_suffix(b"\r").unwrap_or(l);
                    if l.is_empty() {
                        if event == "endpoint" {
                            if let Some(t) = endpoint_tx.take() {
                                let _ = t.send(String::from_utf8_lossy(&data_first).into_owned());
                            }
                        } else if data_len > 0 {
                            let _ = tx.send(data_len);
                        }
                        event.clear();
                        data_len = 0;
                        data_first.clear();
                    } else if let Some(v) = l.strip_prefix(b"event:") {
                        event = String::from_utf8_lossy(v).trim().to_owned();
                    } else if let Some(v) = l.strip_prefix(b"data:") {
                        let v = v.strip_prefix(b" ").unwrap_or(v);
                        data_len += v.len();
                        if event == "endpoint" {
                            data_first.extend_from_slice(v);
                        }
                    }
                    start += n + 1;
                }
                buf.drain(..start);
                scanned = buf.len();
            }
        });
        let path = endpoint_rx.await.expect("an endpoint event");
        let endpoint = if path.starts_with("http") {
            path
        } else {
            format!("{origin}{path}")
        };
        let mut l = Legacy {
            http,
            endpoint,
            answers,
        };
        l.post(line(&initialize(0))).await;
        l.answers.recv().await.unwrap();
        l.post(line(&initialized())).await;
        l
    }

    async fn post(&self, body: Vec<u8>) {
        post_to(&self.http, &self.endpoint, body).await;
    }

    async fn call(&mut self, body: Vec<u8>) -> usize {
        self.post(body).await;
        self.answers.recv().await.expect("an answer on the stream")
    }
}

async fn post_to(http: &Client, endpoint: &str, body: Vec<u8>) {
    let r = http
        .post(endpoint)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert!(r.status().is_success(), "{}", r.status());
    r.bytes().await.unwrap();
}

async fn direct(url: &str, legacy: bool, counts: &Counts) -> Figures {
    let mut f = Figures::default();
    let seq: Vec<Vec<u8>> = (1..=counts.sequential as u64)
        .map(|id| line(&echo(id, "ping")))
        .collect();
    let pipe: Vec<Vec<u8>> = (100_000..100_000 + counts.pipelined as u64)
        .map(|id| line(&echo(id, "ping")))
        .collect();
    let mut times = Vec::with_capacity(seq.len());
    if legacy {
        let mut l = Legacy::open(url).await;
        for r in seq {
            let t = Instant::now();
            l.call(r).await;
            times.push(t.elapsed());
        }
        let t = Instant::now();
        let http = l.http.clone();
        let endpoint = Arc::new(l.endpoint.clone());
        let next = Arc::new(AtomicU64::new(0));
        let pipe = Arc::new(pipe);
        // IN_FLIGHT posters; the answers come on the one stream.
        let mut posters = Vec::new();
        for _ in 0..IN_FLIGHT {
            let (http, endpoint, next, pipe) =
                (http.clone(), endpoint.clone(), next.clone(), pipe.clone());
            posters.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = pipe.get(i) else { break };
                    post_to(&http, &endpoint, body.clone()).await;
                }
            }));
        }
        for _ in 0..counts.pipelined {
            l.answers.recv().await.unwrap();
        }
        f.per_second = Some(counts.pipelined as f64 / t.elapsed().as_secs_f64());
        for p in posters {
            p.await.unwrap();
        }
        for (i, (_, size)) in ECHOES.iter().enumerate() {
            let body = line(&echo(2_000_000 + i as u64, &"x".repeat(*size)));
            let t = Instant::now();
            let n = l.call(body).await;
            f.echoes.push((n > *size).then(|| t.elapsed()));
        }
    } else {
        let s = Arc::new(Streamable::open(url).await);
        for r in seq {
            let t = Instant::now();
            s.call(r).await;
            times.push(t.elapsed());
        }
        let t = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let pipe = Arc::new(pipe);
        let mut workers = Vec::new();
        for _ in 0..IN_FLIGHT {
            let (s, next, pipe) = (s.clone(), next.clone(), pipe.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = pipe.get(i) else { break };
                    s.call(body.clone()).await;
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        f.per_second = Some(counts.pipelined as f64 / t.elapsed().as_secs_f64());
        for (i, (_, size)) in ECHOES.iter().enumerate() {
            let body = line(&echo(2_000_000 + i as u64, &"x".repeat(*size)));
            let t = Instant::now();
            let n = s.call(body).await;
            f.echoes.push((n > *size).then(|| t.elapsed()));
        }
    }
    times.sort();
    f.p50 = Some(percentile(&times, 50));
    f.p99 = Some(percentile(&times, 99));
    f
}

// ---------------------------------------------------------------- the report

fn node_proxy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MCP_REMOTE_NODE_BIN") {
        return Some(PathBuf::from(p));
    }
    let prefix = std::env::var_os("INTEROP_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".interop"));
    let p = prefix.join("node_modules/.bin/mcp-remote");
    p.exists().then_some(p)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
}

fn us(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.0} µs", d.as_secs_f64() * 1e6))
}

fn mib(k: Option<u64>) -> String {
    k.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn x(r: Option<f64>) -> String {
    r.map_or(String::new(), |r| format!(" ({r:.2}×)"))
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn print_table(transport: &str, direct: &Figures, ours: &Figures, node: &Figures) {
    println!();
    println!("{transport}: direct | mcp-remote 0.15.1 (Node) | this proxy   (× = ratio to direct)");
    let row = |name: &str, d: String, n: String, o: String| {
        println!("  {name:<34} {d:>14} | {n:>22} | {o:>22}");
    };
    // A time, and its ratio to the direct client's.
    let with_ratio = |show: fn(Option<Duration>) -> String, t: Option<Duration>, base| {
        format!("{}{}", show(t), x(ratio(secs(t), secs(base))))
    };
    row(
        "spawn → initialize answered",
        "–".into(),
        ms(node.cold_start),
        ms(ours.cold_start),
    );
    row(
        "sequential p50",
        us(direct.p50),
        with_ratio(us, node.p50, direct.p50),
        with_ratio(us, ours.p50, direct.p50),
    );
    row(
        "sequential p99",
        us(direct.p99),
        with_ratio(us, node.p99, direct.p99),
        with_ratio(us, ours.p99, direct.p99),
    );
    let rps = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.0}/s"));
    row(
        &format!("pipelined, {IN_FLIGHT} in flight"),
        rps(direct.per_second),
        format!(
            "{}{}",
            rps(node.per_second),
            x(ratio(node.per_second, direct.per_second))
        ),
        format!(
            "{}{}",
            rps(ours.per_second),
            x(ratio(ours.per_second, direct.per_second))
        ),
    );
    let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{a:.0} / {b:.0} µs"),
        _ => "n/a".into(),
    };
    row(
        "CPU per request, pipelined / seq.",
        "–".into(),
        cpu(node.cpu_pipelined_us, node.cpu_sequential_us),
        cpu(ours.cpu_pipelined_us, ours.cpu_sequential_us),
    );
    for (i, (label, _)) in ECHOES.iter().enumerate() {
        let d = direct.echoes.get(i).copied().flatten();
        let n = node.echoes.get(i).copied().flatten();
        let o = ours.echoes.get(i).copied().flatten();
        row(
            &format!("echo {label}"),
            ms(d),
            with_ratio(ms, n, d),
            with_ratio(ms, o, d),
        );
    }
    row(
        "idle RSS",
        "–".into(),
        mib(node.idle_rss_kib),
        mib(ours.idle_rss_kib),
    );
    row(
        "peak RSS after 8 MiB / after 16 MiB",
        "–".into(),
        format!("{} / {}", mib(node.peak_rss_8_kib), mib(node.peak_rss_kib)),
        format!("{} / {}", mib(ours.peak_rss_8_kib), mib(ours.peak_rss_kib)),
    );
}

fn to_json(f: &Figures) -> Value {
    let d = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round());
    json!({
        "cold_start_us": d(f.cold_start),
        "p50_us": d(f.p50),
        "p99_us": d(f.p99),
        "pipelined_per_s": f.per_second.map(f64::round),
        "cpu_pipelined_us": f.cpu_pipelined_us.map(f64::round),
        "cpu_sequential_us": f.cpu_sequential_us.map(f64::round),
        "echo_us": ECHOES.iter().zip(&f.echoes).map(|((l, _), e)| (l.to_string(), json!(d(*e)))).collect::<serde_json::Map<_, _>>(),
        "idle_rss_kib": f.idle_rss_kib,
        "peak_rss_8mib_kib": f.peak_rss_8_kib,
        "peak_rss_kib": f.peak_rss_kib,
        "echo_peak_rss_kib": f.echo_peaks,
    })
}

/// One budget of issue #15: its name, the measured figure, met or not.
fn budgets(
    direct: &Figures,
    ours: &Figures,
    node: &Figures,
    cat: &Cat,
) -> Vec<(String, String, Option<bool>)> {
    let echo8 = ECHOES.iter().position(|(l, _)| *l == "8 MiB").unwrap();
    let r = |a: Option<f64>, b: Option<f64>| ratio(a, b);
    let p50 = r(secs(ours.p50), secs(direct.p50));
    // The direct round trip plus `cat`'s (see the module's comment).
    let p50_cat = r(
        direct.p50.zip(cat.p50).map(|(d, f)| (d + f).as_secs_f64()),
        secs(direct.p50),
    );
    let tput = r(ours.per_second, direct.per_second);
    let cpu = r(node.cpu_pipelined_us, ours.cpu_pipelined_us);
    let start = r(secs(node.cold_start), secs(ours.cold_start));
    let direct8 = direct.echoes.get(echo8).copied().flatten();
    let e8 = r(
        secs(ours.echoes.get(echo8).copied().flatten()),
        secs(direct8),
    );
    let e8_cat = r(
        direct8.zip(cat.echo8).map(|(d, f)| (d + f).as_secs_f64()),
        secs(direct8),
    );
    let kib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
    vec![
        (
            "sequential p50 ≤ 1.0× direct".into(),
            match (p50, p50_cat) {
                (Some(v), Some(f)) => format!("{v:.2}× (direct + cat {f:.2}×)"),
                (Some(v), None) => format!("{v:.2}×"),
                _ => "n/a".into(),
            },
            p50.map(|v| v <= 1.0),
        ),
        (
            "pipelined throughput ≥ 1.0× direct".into(),
            tput.map_or("n/a".into(), |v| format!("{v:.2}×")),
            tput.map(|v| v >= 1.0),
        ),
        (
            "CPU per pipelined request ≤ 1/30 of Node's".into(),
            match (ours.cpu_pipelined_us, cpu) {
                (Some(o), Some(c)) => format!("{o:.0} µs, 1/{c:.0}"),
                (Some(o), None) => format!("{o:.0} µs"),
                _ => "n/a".into(),
            },
            cpu.map(|c| c >= 30.0),
        ),
        (
            "cold start ≤ 1/30 of Node's".into(),
            start.map_or("n/a".into(), |v| format!("1/{v:.0}")),
            start.map(|v| v >= 30.0),
        ),
        (
            "8 MiB echo ≤ 1.2× direct".into(),
            match (e8, e8_cat) {
                (Some(v), Some(f)) => format!("{v:.2}× (direct + cat {f:.2}×)"),
                (Some(v), None) => format!("{v:.2}×"),
                _ => "n/a".into(),
            },
            e8.map(|v| v <= 1.2),
        ),
        (
            "peak RSS ≤ 32 MiB with 8 MiB messages".into(),
            mib(ours.peak_rss_8_kib),
            kib(ours.peak_rss_8_kib).map(|m| m <= 32.0),
        ),
        (
            "idle RSS ≤ 8 MiB".into(),
            mib(ours.idle_rss_kib),
            kib(ours.idle_rss_kib).map(|m| m <= 8.0),
        ),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let counts = if quick {
        Counts {
            starts: 2,
            sequential: 100,
            pipelined: 500,
        }
    } else {
        Counts {
            starts: 10,
            sequential: 2_000,
            pipelined: 10_000,
        }
    };
    let tb = Testbed::start(Config {
        response_mode: ResponseMode::Json,
        get_stream: false,
        transport: Transport::Both,
        ..Config::default()
    })
    .await
    .unwrap();
    let node = node_proxy();
    // `MCP_REMOTE_BENCH_PROXY=<binary>` measures another build of this proxy (the one
    // before a change) in the same harness.
    let proxy = std::env::var("MCP_REMOTE_BENCH_PROXY").unwrap_or_else(|_| PROXY.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".into());
    println!(
        "side by side against the loopback testbed: {cores} cores, load {load}; {} sequential, {} pipelined calls, {} starts{}",
        counts.sequential,
        counts.pipelined,
        counts.starts,
        if quick { " (quick)" } else { "" }
    );
    match &node {
        Some(p) => println!("Node proxy: {}; this proxy: {proxy}", p.display()),
        None => println!(
            "Node proxy: not found (run tests/interop/setup.sh or set MCP_REMOTE_NODE_BIN)"
        ),
    }
    let cat = stdio_alone(counts.sequential).await;
    println!(
        "`cat` in the proxy's place (stdio alone): sequential p50 {}, an 8 MiB line {}",
        us(cat.p50),
        ms(cat.echo8)
    );
    let mut report = serde_json::Map::new();
    let mut all_budgets = Vec::new();
    for (name, url, transport, legacy) in [
        ("Streamable HTTP", tb.url(), "http-only", false),
        ("HTTP+SSE", tb.sse_url(), "sse-only", true),
    ] {
        let d = direct(&url, legacy, &counts).await;
        let n = match &node {
            Some(p) => through_stdio(&p.to_string_lossy(), &url, transport, &counts).await,
            None => Figures::default(),
        };
        let o = through_stdio(&proxy, &url, transport, &counts).await;
        tb.clear_requests();
        print_table(name, &d, &o, &n);
        let sweep = in_flight_sweep(&proxy, &url, transport, counts.sequential).await;
        println!(
            "  this proxy, cost vs size:     {}",
            ECHOES
                .iter()
                .zip(o.echoes.iter().zip(&o.echo_peaks))
                .map(|((label, _), (t, peak))| format!("{label}: {} / peak {}", ms(*t), mib(*peak)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("  this proxy, cost vs in flight:");
        for (level, per_second, cpu, peak) in &sweep {
            println!(
                "    {level:>5} in flight: {per_second:>8.0}/s, {} µs CPU per request, peak RSS {}",
                cpu.map_or("n/a".into(), |c| format!("{c:.0}")),
                mib(*peak)
            );
        }
        report.insert(
            name.into(),
            json!({"direct": to_json(&d), "node": to_json(&n), "ours": to_json(&o),
                "ours_in_flight": sweep.iter().map(|(level, per_second, cpu, peak)| json!({
                    "in_flight": level, "per_s": per_second.round(), "cpu_us": cpu.map(f64::round), "peak_rss_kib": peak})).collect::<Vec<_>>()}),
        );
        all_budgets.push((name, budgets(&d, &o, &n, &cat)));
    }
    println!();
    println!("budgets (issue #15), measured in this run:");
    let mut json_budgets = Vec::new();
    for (transport, list) in &all_budgets {
        for (budget, figure, met) in list {
            let mark = match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            };
            println!("  {transport:<16} {budget:<44} {figure:>30}  {mark}");
            json_budgets.push(
                json!({"transport": transport, "budget": budget, "measured": figure, "met": met}),
            );
        }
    }
    let summary = json!({
        "bench": "side_by_side",
        "cores": cores,
        "load": load,
        "quick": quick,
        "cat": {"p50_us": cat.p50.map(|f| (f.as_secs_f64() * 1e6).round()),
            "echo_8mib_us": cat.echo8.map(|f| (f.as_secs_f64() * 1e6).round())},
        "counts": {"sequential": counts.sequential, "pipelined": counts.pipelined, "starts": counts.starts, "in_flight": IN_FLIGHT},
        "transports": report,
        "budgets": json_budgets,
    });
    println!("{summary}");
    tb.shutdown();
}
