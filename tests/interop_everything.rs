//! Interop test: this test plays the MCP *host* and talks newline-delimited
//! JSON-RPC on the proxy's stdin/stdout; the proxy forwards to the reference
//! `@modelcontextprotocol/server-everything` over Streamable HTTP.
//!
//!   host (this test) ⇄ stdio ⇄ proxy under test ⇄ HTTP ⇄ server-everything
//!
//! * Server: `.interop/node_modules/@modelcontextprotocol/server-everything`
//!   (installed by `tests/interop/setup.sh`, which this test runs itself when
//!   the install is missing). One server is started per test process on a free
//!   127.0.0.1 port (`PORT=<p> node -r tests/interop/loopback-only.cjs
//!   dist/index.js streamableHttp`, URL `http://127.0.0.1:<p>/mcp`); it exits
//!   when this process exits (its stdin reaches EOF) or after 10 minutes.
//! * Proxy: `$MCP_REMOTE_BIN` (any program taking the server URL as its first
//!   argument, e.g. `.interop/node_modules/.bin/mcp-remote` for the Node
//!   reference) or else this package's `mcp-remote` binary. Every test spawns
//!   its own proxy (its own MCP session) and kills it at the end, also on
//!   failure (`kill_on_drop`).
//! * Every line the proxy writes to stdout must parse as a JSON-RPC 2.0
//!   message; every wait is bounded.
//! * Logs: `target/tmp/interop-everything/` (server log, one stderr log per
//!   proxy); failure messages name the file.
//! * Selection: all tests are in `everything::`, so
//!   `cargo test --test interop_everything` runs them and
//!   `cargo test -- --skip everything::` leaves them out.
//! * Env: `MCP_REMOTE_BIN` (proxy), `INTEROP_PREFIX` (install dir, default
//!   `$REPO/.interop`).
//!
//! Server facts the tests rely on (server-everything 2026.8.31):
//! * `trigger-sampling-request`, `trigger-elicitation-request` and
//!   `get-roots-list` exist only if `initialize` declared `sampling`,
//!   `elicitation`, `roots`; they are registered when the server handles
//!   `notifications/initialized`.
//! * ~350 ms after `notifications/initialized` the server sends `roots/list`
//!   on the standalone GET SSE stream (as it does logging messages and the
//!   `roots/list` inside `get-roots-list`): those need the proxy's GET
//!   stream. Sampling/elicitation requests travel on the tools/call POST
//!   stream.

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Default bound for one wait (a response, a server request, ...).
const STEP: Duration = Duration::from_secs(15);
/// Bound for a whole test function.
const TEST_BUDGET: Duration = Duration::from_secs(50);

const CONDITIONAL_TOOLS: [&str; 3] = [
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "get-roots-list",
];
const BASE_TOOLS: [&str; 12] = [
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
];

// ---------------------------------------------------------------------------
// paths and installation
// ---------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn interop_prefix() -> PathBuf {
    std::env::var_os("INTEROP_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".interop"))
}

fn log_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop-everything");
    std::fs::create_dir_all(&d).expect("create log dir");
    d
}

fn everything_js() -> PathBuf {
    interop_prefix().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// Runs `tests/interop/setup.sh` when server-everything is not installed.
fn ensure_installed() -> Result<(), String> {
    if everything_js().is_file() {
        return Ok(());
    }
    let script = repo_root().join("tests/interop/setup.sh");
    let log = log_dir().join("setup.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    eprintln!(
        "interop: server-everything missing; running {}",
        script.display()
    );
    let mut child = std::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", script.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            if st.success() && everything_js().is_file() {
                return Ok(());
            }
            return Err(format!(
                "{} failed ({st}); see {}",
                script.display(),
                log.display()
            ));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} timed out; see {}",
                script.display(),
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Node 22 from `.interop` when present, else `node` on PATH.
fn node_bin() -> PathBuf {
    let n22 = interop_prefix().join("node_modules/node/bin/node");
    if n22.is_file() {
        n22
    } else {
        PathBuf::from("node")
    }
}

fn proxy_bin() -> PathBuf {
    match std::env::var_os("MCP_REMOTE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_mcp-remote")),
    }
}

fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

// ---------------------------------------------------------------------------
// the shared server (started once per test process)
// ---------------------------------------------------------------------------

struct Everything {
    url: String,
    log: PathBuf,
    // Held for the life of the process: when it is closed (process exit) the
    // server sees EOF on stdin and exits (INTEROP_EXIT_ON_STDIN_EOF).
    _child: Mutex<std::process::Child>,
    _stdin: Mutex<Option<std::process::ChildStdin>>,
}

static SERVER: OnceLock<Result<Everything, String>> = OnceLock::new();

fn server() -> &'static Everything {
    match SERVER.get_or_init(start_everything) {
        Ok(s) => s,
        Err(e) => panic!("could not start server-everything: {e}"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A GET without session answers 400 "No valid session ID" once it is up.
fn probe_ready(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.1 400") && text.contains("session")
}

fn start_everything() -> Result<Everything, String> {
    ensure_installed()?;
    let preload = repo_root().join("tests/interop/loopback-only.cjs");
    let mut last_err = String::new();
    for attempt in 0..3 {
        let port = free_port();
        let log = log_dir().join(format!("server-everything-{port}.log"));
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(node_bin())
            .arg("-r")
            .arg(&preload)
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .env("INTEROP_EXIT_ON_STDIN_EOF", "1")
            .env("INTEROP_MAX_LIFETIME_MS", "600000")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn node: {e}"))?;
        let stdin = child.stdin.take();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                last_err = format!("attempt {attempt}: server exited ({st}): {}", tail(&log, 5));
                break;
            }
            if probe_ready(port) {
                return Ok(Everything {
                    url: format!("http://127.0.0.1:{port}/mcp"),
                    log,
                    _child: Mutex::new(child),
                    _stdin: Mutex::new(stdin),
                });
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_err = format!("attempt {attempt}: not ready after 20 s: {}", tail(&log, 5));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(last_err)
}

// ---------------------------------------------------------------------------
// the host side of one proxy session
// ---------------------------------------------------------------------------

enum Incoming {
    Msg(Value),
    Bad(String),
    Eof,
}

/// What the host answers to a server→client request.
enum Reply {
    Result(Value),
    Error(i64, String),
    /// Keep it in `held` for the test to answer.
    Hold,
}

type Responder = Box<dyn FnMut(&str, &Value) -> Reply + Send>;

fn default_responder() -> Responder {
    Box::new(|method, _params| match method {
        "roots/list" => Reply::Result(
            json!({"roots": [{"uri": "file:///interop/default-root", "name": "default-root"}]}),
        ),
        "ping" => Reply::Result(json!({})),
        "sampling/createMessage" => Reply::Result(json!({
            "role": "assistant", "model": "interop-default",
            "content": {"type": "text", "text": "default sample"}, "stopReason": "endTurn"})),
        "elicitation/create" => Reply::Result(json!({"action": "decline"})),
        other => Reply::Error(-32601, format!("host does not implement {other}")),
    })
}

/// Checks the JSON-RPC 2.0 envelope of one stdout line.
fn check_envelope(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    if o.get("jsonrpc") != Some(&json!("2.0")) {
        return Err("jsonrpc is not \"2.0\"".into());
    }
    let id_ok = |id: &Value| id.is_string() || id.is_i64() || id.is_u64() || id.is_null();
    if let Some(m) = o.get("method") {
        if !m.is_string() {
            return Err("method is not a string".into());
        }
        if o.contains_key("result") || o.contains_key("error") {
            return Err("message has both method and result/error".into());
        }
        if let Some(id) = o.get("id") {
            if !(id.is_string() || id.is_i64() || id.is_u64()) {
                return Err("request id is not a string or integer".into());
            }
        }
        if let Some(p) = o.get("params") {
            if !(p.is_object() || p.is_array()) {
                return Err("params is not structured".into());
            }
        }
        return Ok(());
    }
    let id = o.get("id").ok_or("response without id")?;
    if !id_ok(id) {
        return Err("response id has a bad type".into());
    }
    match (o.get("result"), o.get("error")) {
        (Some(_), None) => Ok(()),
        (None, Some(e)) => {
            if e.get("code").map(|c| c.is_i64()) == Some(true)
                && e.get("message").map(|m| m.is_string()) == Some(true)
            {
                Ok(())
            } else {
                Err("error object lacks integer code / string message".into())
            }
        }
        _ => Err("response must have exactly one of result / error".into()),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…(+{} bytes)", &s[..end], s.len() - end)
    } else {
        s
    }
}

struct Host {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    stderr_log: PathBuf,
    /// sequence number of the last message taken from stdout
    seq: u64,
    /// (seq, message) of every notification received
    notifications: Vec<(u64, Value)>,
    /// server→client requests the responder chose to hold
    held: VecDeque<Value>,
    /// every server→client request seen: (seq, message)
    server_requests: Vec<(u64, Value)>,
    /// responses taken while waiting for something else: id -> (seq, message)
    stash: HashMap<String, (u64, Value)>,
    responder: Responder,
    recent: VecDeque<String>,
}

impl Host {
    async fn spawn(name: &str) -> Host {
        let srv = server();
        let bin = proxy_bin();
        let dir = log_dir();
        let stderr_log = dir.join(format!("proxy-{name}.stderr.log"));
        let cfg = dir.join(format!("proxy-{name}.config"));
        let _ = std::fs::remove_dir_all(&cfg);
        std::fs::create_dir_all(&cfg).expect("config dir");
        let errf = std::fs::File::create(&stderr_log).expect("stderr log");
        let mut child = Command::new(&bin)
            .arg(&srv.url)
            .env("MCP_REMOTE_CONFIG_DIR", &cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(errf))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn proxy {}: {e}", bin.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(1 << 16, stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Incoming::Eof);
                        return;
                    }
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let item = match std::str::from_utf8(&buf) {
                            Err(e) => Incoming::Bad(format!(
                                "invalid UTF-8 ({e}): {:?}",
                                String::from_utf8_lossy(&buf)
                            )),
                            Ok(line) => match serde_json::from_str::<Value>(line) {
                                Err(e) => Incoming::Bad(format!("not JSON ({e}): {line:.300}")),
                                Ok(v) => match check_envelope(&v) {
                                    Ok(()) => Incoming::Msg(v),
                                    Err(e) => Incoming::Bad(format!(
                                        "not JSON-RPC 2.0 ({e}): {line:.300}"
                                    )),
                                },
                            },
                        };
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Host {
            name: name.to_string(),
            child,
            stdin,
            rx,
            stderr_log,
            seq: 0,
            notifications: Vec::new(),
            held: VecDeque::new(),
            server_requests: Vec::new(),
            stash: HashMap::new(),
            responder: default_responder(),
            recent: VecDeque::new(),
        }
    }

    fn ctx(&self) -> String {
        format!(
            "[{}] proxy={} server={}\n  proxy stderr: {}\n  server log: {}\n  last messages from proxy:\n    {}",
            self.name,
            proxy_bin().display(),
            server().url,
            self.stderr_log.display(),
            server().log.display(),
            self.recent.iter().cloned().collect::<Vec<_>>().join("\n    ")
        )
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let r = tokio::time::timeout(STEP * 2, async {
            stdin.write_all(bytes).await?;
            stdin.flush().await
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("write to proxy stdin failed: {e}\n{}", self.ctx()),
            Err(_) => panic!(
                "write to proxy stdin blocked > {:?}\n{}",
                STEP * 2,
                self.ctx()
            ),
        }
    }

    async fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// Next message from the proxy's stdout (panics on a bad line, EOF or timeout).
    async fn next(&mut self, deadline: Instant, what: &str) -> Value {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(Incoming::Msg(v))) => {
                self.seq += 1;
                if self.recent.len() == 12 {
                    self.recent.pop_front();
                }
                self.recent.push_back(short(&v));
                v
            }
            Ok(Some(Incoming::Bad(line))) => {
                panic!("proxy wrote a bad stdout line: {line}\n{}", self.ctx())
            }
            Ok(Some(Incoming::Eof)) | Ok(None) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let status = self.child.try_wait();
                panic!(
                    "proxy closed stdout while waiting for {what} (exit status: {status:?})\n{}",
                    self.ctx()
                )
            }
            Err(_) => panic!("timed out waiting for {what}\n{}", self.ctx()),
        }
    }

    /// Files one message. Returns it back if it is a response.
    async fn dispatch(&mut self, v: Value) -> Option<Value> {
        let is_request = v.get("method").is_some() && v.get("id").is_some();
        if is_request {
            self.server_requests.push((self.seq, v.clone()));
            let method = v["method"].as_str().unwrap_or_default().to_string();
            let params = v.get("params").cloned().unwrap_or(Value::Null);
            let reply = (self.responder)(&method, &params);
            match reply {
                Reply::Result(r) => self.send(&json!({"jsonrpc": "2.0", "id": v["id"], "result": r})).await,
                Reply::Error(code, msg) => {
                    self.send(&json!({"jsonrpc": "2.0", "id": v["id"], "error": {"code": code, "message": msg}}))
                        .await
                }
                Reply::Hold => self.held.push_back(v),
            }
            None
        } else if v.get("method").is_some() {
            self.notifications.push((self.seq, v));
            None
        } else {
            Some(v)
        }
    }

    /// Waits for the response to `id`; returns (seq, response).
    async fn wait_response_until(&mut self, id: &Value, deadline: Instant) -> (u64, Value) {
        let key = id.to_string();
        if let Some(r) = self.stash.remove(&key) {
            return r;
        }
        loop {
            let v = self.next(deadline, &format!("response to id {key}")).await;
            if let Some(resp) = self.dispatch(v).await {
                let k = resp["id"].to_string();
                if k == key {
                    return (self.seq, resp);
                }
                if self.stash.insert(k.clone(), (self.seq, resp)).is_some() {
                    panic!("duplicate response for id {k}\n{}", self.ctx());
                }
            }
        }
    }

    async fn request_with(
        &mut self,
        id: Value,
        method: &str,
        params: Value,
        budget: Duration,
    ) -> (u64, Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.wait_response_until(&id, Instant::now() + budget).await
    }

    /// Sends a request and returns its `result` (panics on an error response).
    async fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        let (_, resp) = self.request_with(id, method, params.clone(), STEP).await;
        match resp.get("result") {
            Some(r) => r.clone(),
            None => panic!(
                "{method} {} failed: {}\n{}",
                short(&params),
                short(&resp),
                self.ctx()
            ),
        }
    }

    async fn tool(&mut self, id: Value, name: &str, args: Value) -> Value {
        let r = self
            .call(id, "tools/call", json!({"name": name, "arguments": args}))
            .await;
        assert_ne!(
            r.get("isError"),
            Some(&json!(true)),
            "tool {name} returned isError: {}\n{}",
            short(&r),
            self.ctx()
        );
        r
    }

    /// Waits for a held server→client request with this method.
    async fn wait_server_request(&mut self, method: &str, budget: Duration) -> Value {
        let deadline = Instant::now() + budget;
        loop {
            if let Some(i) = self.held.iter().position(|r| r["method"] == method) {
                return self.held.remove(i).unwrap();
            }
            let v = self
                .next(deadline, &format!("server request {method}"))
                .await;
            if let Some(resp) = self.dispatch(v).await {
                let k = resp["id"].to_string();
                let seq = self.seq;
                if self.stash.insert(k.clone(), (seq, resp)).is_some() {
                    panic!("duplicate response for id {k}\n{}", self.ctx());
                }
            }
        }
    }

    /// Waits until a notification matching `pred` has been received.
    async fn wait_notification(
        &mut self,
        what: &str,
        budget: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + budget;
        loop {
            if let Some((_, n)) = self.notifications.iter().find(|(_, n)| pred(n)) {
                return n.clone();
            }
            let v = self.next(deadline, what).await;
            if let Some(resp) = self.dispatch(v).await {
                let k = resp["id"].to_string();
                let seq = self.seq;
                self.stash.insert(k, (seq, resp));
            }
        }
    }

    async fn answer(&mut self, req: &Value, result: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
            .await;
    }

    /// Reads whatever arrives within `d` (dispatching it); used to catch
    /// duplicates and late lines.
    async fn drain_for(&mut self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut responses = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return responses,
                Ok(Some(Incoming::Msg(v))) => {
                    self.seq += 1;
                    if let Some(r) = self.dispatch(v).await {
                        responses.push(r);
                    }
                }
                Ok(Some(Incoming::Bad(line))) => {
                    panic!("proxy wrote a bad stdout line: {line}\n{}", self.ctx())
                }
                Ok(Some(Incoming::Eof)) | Ok(None) => return responses,
            }
        }
    }

    /// initialize (sampling, elicitation, roots) + notifications/initialized.
    async fn initialize(&mut self) -> Value {
        let r = self
            .call(
                json!(0),
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                    "clientInfo": {"name": "interop-host", "version": "0.0.1"}
                }),
            )
            .await;
        assert!(
            r["protocolVersion"].is_string(),
            "initialize result: {}",
            short(&r)
        );
        assert_eq!(
            r["serverInfo"]["name"],
            "mcp-servers/everything",
            "initialize result: {}",
            short(&r)
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }

    /// Closes stdin, gives the proxy a moment to exit, then kills it.
    async fn finish(mut self) {
        let late = self.drain_for(Duration::from_millis(200)).await;
        assert!(
            late.is_empty(),
            "unexpected late responses: {:?}\n{}",
            late.iter().map(short).collect::<Vec<_>>(),
            self.ctx()
        );
        assert!(
            self.stash.is_empty(),
            "responses nobody asked for: {:?}\n{}",
            self.stash.keys(),
            self.ctx()
        );
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

async fn with_budget<F: std::future::Future<Output = ()>>(f: F) {
    if tokio::time::timeout(TEST_BUDGET, f).await.is_err() {
        panic!("test exceeded its {TEST_BUDGET:?} budget");
    }
}

// ---------------------------------------------------------------------------
// small helpers: base64, crc32, pseudo-random bytes
// ---------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let n = (ch[0] as u32) << 16
            | (*ch.get(1).unwrap_or(&0) as u32) << 8
            | *ch.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= ch.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let mut val = [255u8; 256];
    for (i, c) in B64.iter().enumerate() {
        val[*c as usize] = i as u8;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = val[c as usize];
        assert!(v != 255, "invalid base64 byte {c}");
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

// All tests live in `everything::` so they can be selected or skipped as a
// group: `cargo test everything::` / `cargo test -- --skip everything::`.
mod everything {
    use super::*;

    /// initialize, tools/list, ping, logging/setLevel, and a server notification
    /// on the standalone GET stream (simulated logging).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_tools_list_ping_logging() {
        with_budget(async {
            let mut h = Host::spawn("lifecycle").await;
            let init = h.initialize().await;
            for cap in ["tools", "resources", "prompts", "logging"] {
                assert!(
                    init["capabilities"].get(cap).is_some(),
                    "server capability {cap} missing: {}",
                    short(&init)
                );
            }

            // The conditional tools are registered once the server has seen
            // notifications/initialized; a tools/list racing it may miss them.
            let mut names: Vec<String> = Vec::new();
            for attempt in 0..20 {
                let r = h
                    .call(json!(format!("list-{attempt}")), "tools/list", json!({}))
                    .await;
                names = r["tools"]
                    .as_array()
                    .expect("tools array")
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_string())
                    .collect();
                if CONDITIONAL_TOOLS
                    .iter()
                    .all(|t| names.iter().any(|n| n == t))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for t in BASE_TOOLS.iter().chain(CONDITIONAL_TOOLS.iter()) {
                assert!(
                    names.iter().any(|n| n == t),
                    "tool {t} missing from tools/list: {names:?}\n{}",
                    h.ctx()
                );
            }

            assert_eq!(h.call(json!(100), "ping", json!({})).await, json!({}));
            // ping without params too
            h.send(&json!({"jsonrpc": "2.0", "id": 101, "method": "ping"}))
                .await;
            let (_, p) = h
                .wait_response_until(&json!(101), Instant::now() + STEP)
                .await;
            assert_eq!(p["result"], json!({}), "{}", short(&p));

            assert_eq!(
                h.call(json!(102), "logging/setLevel", json!({"level": "debug"}))
                    .await,
                json!({})
            );
            // toggle-simulated-logging sends one notifications/message at once
            // (not tied to a request: it travels on the GET SSE stream).
            let r = h
                .tool(json!(103), "toggle-simulated-logging", json!({}))
                .await;
            assert!(
                text_of(&r).starts_with("Started simulated"),
                "{}",
                short(&r)
            );
            let n = h
                .wait_notification("simulated notifications/message", STEP, |n| {
                    n["method"] == "notifications/message"
                        && n["params"]["data"]
                            .as_str()
                            .is_some_and(|d| d.contains(" - SessionId "))
                })
                .await;
            assert!(n["params"]["level"].is_string(), "{}", short(&n));
            let r = h
                .tool(json!(104), "toggle-simulated-logging", json!({}))
                .await;
            assert!(
                text_of(&r).starts_with("Stopped simulated"),
                "{}",
                short(&r)
            );

            // unknown method -> JSON-RPC error passed through
            let (_, e) = h
                .request_with(json!(105), "no/such-method", json!({}), STEP)
                .await;
            assert_eq!(e["error"]["code"], json!(-32601), "{}", short(&e));
            h.finish().await;
        })
        .await;
    }

    /// Echo of text with \n, U+2028, U+2029, non-ASCII, quotes, controls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_special_characters_exact() {
        with_budget(async {
            let mut h = Host::spawn("echo").await;
            h.initialize().await;
            let samples = [
            "line1\nline2\r\nline3",
            "para\u{2028}line-sep\u{2029}para-sep",
            "héllo wörld — 漢字 かな 한국어 😀🦀 \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "quote \" backslash \\ tab \t nul \u{0} bell \u{7} del \u{7f} </script> \u{FEFF}bom",
            "",
        ];
            for (i, s) in samples.iter().enumerate() {
                let r = h.tool(json!(10 + i), "echo", json!({"message": s})).await;
                let got = r["content"][0]["text"].as_str().expect("text");
                assert_eq!(
                    got.as_bytes(),
                    format!("Echo: {s}").as_bytes(),
                    "echo #{i} not byte-exact\n{}",
                    h.ctx()
                );
            }
            // string ids and a string containing U+2028 as the id itself
            let id = json!("id\u{2028}with-sep-é");
            let r = h.tool(id, "echo", json!({"message": "x"})).await;
            assert_eq!(text_of(&r), "Echo: x");
            h.finish().await;
        })
        .await;
    }

    /// resources list/read/templates, prompts list/get, completion.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resources_prompts_completion() {
        with_budget(async {
        let mut h = Host::spawn("resources").await;
        h.initialize().await;

        let r = h.call(json!(1), "resources/list", json!({})).await;
        let uris: Vec<&str> = r["resources"].as_array().expect("resources").iter().filter_map(|x| x["uri"].as_str()).collect();
        let doc = "demo://resource/static/document/instructions.md";
        assert!(uris.contains(&doc), "{uris:?}");
        assert!(uris.len() >= 5, "{uris:?}");

        let r = h.call(json!(2), "resources/read", json!({"uri": doc})).await;
        assert_eq!(r["contents"][0]["uri"], doc);
        assert_eq!(r["contents"][0]["mimeType"], "text/markdown");
        assert!(r["contents"][0]["text"].as_str().is_some_and(|t| t.len() > 50), "{}", short(&r));

        let r = h.call(json!(3), "resources/templates/list", json!({})).await;
        let tpls: Vec<&str> = r["resourceTemplates"].as_array().expect("templates").iter().filter_map(|x| x["uriTemplate"].as_str()).collect();
        assert!(tpls.contains(&"demo://resource/dynamic/text/{resourceId}"), "{tpls:?}");
        assert!(tpls.contains(&"demo://resource/dynamic/blob/{resourceId}"), "{tpls:?}");

        let r = h.call(json!(4), "resources/read", json!({"uri": "demo://resource/dynamic/text/7"})).await;
        assert!(r["contents"][0]["text"].as_str().is_some_and(|t| t.starts_with("Resource 7: This is a plaintext resource")), "{}", short(&r));
        let r = h.call(json!(5), "resources/read", json!({"uri": "demo://resource/dynamic/blob/3"})).await;
        let blob = b64_decode(r["contents"][0]["blob"].as_str().expect("blob"));
        assert!(String::from_utf8_lossy(&blob).starts_with("Resource 3: This is a base64 blob"), "{}", short(&r));
        // error passthrough: unknown resource
        let (_, e) = h.request_with(json!(6), "resources/read", json!({"uri": "demo://resource/dynamic/text/0"}), STEP).await;
        assert!(e.get("error").is_some(), "expected an error: {}", short(&e));

        let r = h.call(json!(7), "prompts/list", json!({})).await;
        let names: Vec<&str> = r["prompts"].as_array().expect("prompts").iter().filter_map(|p| p["name"].as_str()).collect();
        for p in ["simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"] {
            assert!(names.contains(&p), "{names:?}");
        }
        let r = h.call(json!(8), "prompts/get", json!({"name": "simple-prompt"})).await;
        assert_eq!(r["messages"][0]["content"]["text"], "This is a simple prompt without arguments.");
        let r = h.call(json!(9), "prompts/get", json!({"name": "args-prompt", "arguments": {"city": "Zürich", "state": "ZH"}})).await;
        assert_eq!(r["messages"][0]["content"]["text"], "What's weather in Zürich, ZH?");
        let r = h.call(json!(10), "prompts/get", json!({"name": "resource-prompt", "arguments": {"resourceType": "Text", "resourceId": "2"}})).await;
        assert_eq!(r["messages"][1]["content"]["type"], "resource", "{}", short(&r));
        assert_eq!(r["messages"][1]["content"]["resource"]["uri"], "demo://resource/dynamic/text/2");

        let r = h
            .call(
                json!(11),
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"}, "argument": {"name": "department", "value": "Eng"}}),
            )
            .await;
        assert_eq!(r["completion"]["values"], json!(["Engineering"]), "{}", short(&r));
        h.finish().await;
    })
    .await;
    }

    /// sampling/createMessage and elicitation/create issued by the server while
    /// a tools/call is in flight; the host answers on stdin and the tool result
    /// must reflect the answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sampling_and_elicitation_round_trips() {
        with_budget(async {
        let mut h = Host::spawn("sampling-elicitation").await;
        h.responder = Box::new(|method, _| match method {
            "roots/list" => Reply::Result(json!({"roots": []})),
            "sampling/createMessage" | "elicitation/create" => Reply::Hold,
            other => Reply::Error(-32601, format!("unexpected {other}")),
        });
        h.initialize().await;

        // --- sampling
        let call_id = json!("sample-1");
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "trigger-sampling-request", "arguments": {"prompt": "interop ✓ prompt\nline2", "maxTokens": 7}}}))
            .await;
        let req = h.wait_server_request("sampling/createMessage", STEP).await;
        assert_eq!(req["params"]["maxTokens"], 7, "{}", short(&req));
        assert_eq!(
            req["params"]["messages"][0]["content"]["text"],
            "Resource trigger-sampling-request context: interop ✓ prompt\nline2",
            "{}",
            short(&req)
        );
        let answer = "sampled 🦀 answer\u{2028}#4711";
        h.answer(&req, json!({"role": "assistant", "content": {"type": "text", "text": answer}, "model": "interop-model-Ω", "stopReason": "endTurn"}))
            .await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        let text = text_of(&resp["result"]);
        // the tool JSON.stringify()s the sampling result into its text
        let embedded: Value = serde_json::from_str(text.strip_prefix("LLM sampling result: \n").unwrap_or_else(|| panic!("unexpected text {text:?}")))
            .expect("embedded JSON");
        assert_eq!(embedded["content"]["text"], answer, "{text}");
        assert_eq!(embedded["model"], "interop-model-Ω", "{text}");

        // --- elicitation: accept
        let call_id = json!(2001);
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "trigger-elicitation-request", "arguments": {}}}))
            .await;
        let req = h.wait_server_request("elicitation/create", STEP).await;
        assert_eq!(req["params"]["requestedSchema"]["required"], json!(["name"]), "{}", short(&req));
        h.answer(&req, json!({"action": "accept", "content": {"name": "Ada Lövelace ✓", "check": true, "integer": 7, "email": "ada@example.org"}}))
            .await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        let text = text_of(&resp["result"]);
        for want in ["User provided the requested information", "- Name: Ada Lövelace ✓", "- Agreed to terms: true", "- Favorite Integer: 7", "- Email: ada@example.org"] {
            assert!(text.contains(want), "missing {want:?} in {text:?}");
        }

        // --- elicitation: decline
        let call_id = json!(2002);
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "trigger-elicitation-request", "arguments": {}}}))
            .await;
        let req = h.wait_server_request("elicitation/create", STEP).await;
        h.answer(&req, json!({"action": "decline"})).await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        assert!(text_of(&resp["result"]).contains("User declined"), "{}", short(&resp));

        // --- a server request answered with an error reaches the tool as a failure
        let call_id = json!(2003);
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call",
            "params": {"name": "trigger-sampling-request", "arguments": {"prompt": "p"}}}))
            .await;
        let req = h.wait_server_request("sampling/createMessage", STEP).await;
        h.send(&json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": "host refused sampling ✗"}})).await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        let failed = resp.get("error").is_some() || resp["result"]["isError"] == json!(true);
        assert!(failed, "expected a failed tool call: {}", short(&resp));
        assert!(resp.to_string().contains("host refused sampling"), "{}", short(&resp));
        h.finish().await;
    })
    .await;
    }

    /// roots/list: the server asks right after initialization (held by the
    /// host), then again inside get-roots-list; after roots/list_changed it asks
    /// once more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roots_round_trips() {
        with_budget(async {
        let mut h = Host::spawn("roots").await;
        h.responder = Box::new(|method, _| match method {
            "roots/list" => Reply::Hold,
            other => Reply::Error(-32601, format!("unexpected {other}")),
        });
        h.initialize().await;
        // ~350 ms after notifications/initialized
        let initial = h.wait_server_request("roots/list", STEP).await;

        // While the first one is unanswered the server has no roots, so the
        // tool asks again during the call.
        let call_id = json!("roots-call-1");
        h.send(&json!({"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": {"name": "get-roots-list", "arguments": {}}}))
            .await;
        let during = h.wait_server_request("roots/list", STEP).await;
        assert_ne!(during["id"], initial["id"], "server reused a request id");
        let root1 = json!({"uri": "file:///interop/r%C3%B6%C3%B6t-1", "name": "interop root ✓ one"});
        h.answer(&during, json!({"roots": [root1]})).await;
        let (_, resp) = h.wait_response_until(&call_id, Instant::now() + STEP).await;
        let text = text_of(&resp["result"]);
        assert!(text.contains("Current MCP Roots (1 total)"), "{text:?}");
        assert!(text.contains("interop root ✓ one") && text.contains("file:///interop/r%C3%B6%C3%B6t-1"), "{text:?}");
        h.answer(&initial, json!({"roots": [root1]})).await;

        // list_changed -> the server re-requests
        h.send(&json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"})).await;
        let again = h.wait_server_request("roots/list", STEP).await;
        h.answer(&again, json!({"roots": [{"uri": "file:///interop/two", "name": "two"}, {"uri": "file:///interop/three", "name": "three"}]}))
            .await;
        let mut ok = false;
        for i in 0..20 {
            let r = h.tool(json!(3000 + i), "get-roots-list", json!({})).await;
            if text_of(&r).contains("Current MCP Roots (2 total)") {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "roots update after list_changed not reflected\n{}", h.ctx());
        h.finish().await;
    })
    .await;
    }

    /// Two long-running calls at once, one with a string and one with an
    /// integer progressToken: each gets its progress notifications, all before
    /// its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_before_result() {
        with_budget(async {
        let mut h = Host::spawn("progress").await;
        h.initialize().await;
        let calls = [
            (json!("lr-a"), json!("interop-progress-A"), 4),
            (json!(4242), json!(77), 3),
        ];
        for (id, token, steps) in &calls {
            h.send(
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 0.8, "steps": steps},
                "_meta": {"progressToken": token}}}),
            )
            .await;
        }
        let mut result_seq = Vec::new();
        for (id, _, _) in &calls {
            let (seq, resp) = h.wait_response_until(id, Instant::now() + STEP).await;
            assert!(
                text_of(&resp["result"]).starts_with("Long running operation completed"),
                "{}",
                short(&resp)
            );
            result_seq.push(seq);
        }
        // anything arriving late is recorded too, and must not be there
        h.drain_for(Duration::from_millis(300)).await;
        for ((_, token, steps), seq) in calls.iter().zip(result_seq) {
            let prog: Vec<(u64, Value)> = h
                .notifications
                .iter()
                .filter(|(_, n)| {
                    n["method"] == "notifications/progress"
                        && n["params"]["progressToken"] == *token
                })
                .cloned()
                .collect();
            let values: Vec<f64> = prog
                .iter()
                .map(|(_, n)| n["params"]["progress"].as_f64().unwrap_or(-1.0))
                .collect();
            let want: Vec<f64> = (1..=*steps).map(|x| x as f64).collect();
            assert_eq!(
                values,
                want,
                "notifications/progress for token {token} (want {steps} before the result): {prog:?}\n{}",
                h.ctx()
            );
            for (s, n) in &prog {
                assert!(*s < seq, "progress {} arrived after the result", short(n));
                assert_eq!(n["params"]["total"], json!(*steps));
            }
        }
        h.finish().await;
    })
    .await;
    }

    /// 200 tools/call lines written in one go; each answered exactly once with
    /// the matching id (numbers and strings) and matching content.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_200_calls() {
        with_budget(async {
        let mut h = Host::spawn("pipelined").await;
        h.initialize().await;
        const N: usize = 200;
        let id_of = |i: usize| if i.is_multiple_of(2) { json!(10_000 + i) } else { json!(format!("pipe-{i}")) };
        let mut blob = Vec::new();
        for i in 0..N {
            let (name, args) = if i % 10 == 9 {
                ("get-sum", json!({"a": i, "b": 1}))
            } else {
                ("echo", json!({"message": format!("pipelined #{i} ✓")}))
            };
            let msg = json!({"jsonrpc": "2.0", "id": id_of(i), "method": "tools/call", "params": {"name": name, "arguments": args}});
            blob.extend(serde_json::to_vec(&msg).unwrap());
            blob.push(b'\n');
        }
        let t0 = Instant::now();
        h.send_raw(&blob).await;
        let expected: HashMap<String, usize> = (0..N).map(|i| (id_of(i).to_string(), i)).collect();
        let mut seen = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while seen.len() < N {
            let v = h.next(deadline, &format!("pipelined responses ({} of {N} so far)", seen.len())).await;
            let Some(resp) = h.dispatch(v).await else { continue };
            let key = resp["id"].to_string();
            let Some(&i) = expected.get(&key) else { panic!("response with unknown id {key}: {}\n{}", short(&resp), h.ctx()) };
            assert!(seen.insert(i), "id {key} answered twice\n{}", h.ctx());
            assert_eq!(resp["id"], id_of(i), "id type changed");
            let want = if i % 10 == 9 { format!("The sum of {i} and 1 is {}.", i + 1) } else { format!("Echo: pipelined #{i} ✓") };
            assert_eq!(text_of(&resp["result"]), want, "{}", short(&resp));
        }
        eprintln!("[pipelined] {N} calls answered in {:?}", t0.elapsed());
        h.finish().await; // also fails on any duplicate arriving late
    })
    .await;
    }

    /// 1 MiB each way: echo of a >1 MiB string (mixed multi-byte text with
    /// U+2028 and newlines), and gzip-file-as-resource of 768 KiB random bytes
    /// sent as a ~1 MiB data: URI, returning a ~1 MiB base64 blob whose gzip
    /// trailer (CRC-32, size) must match what was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_mebibyte_each_way() {
        with_budget(async {
            let mut h = Host::spawn("large").await;
            h.initialize().await;

            let unit = "0123456789 abcdef é 漢字 😀\u{2028}\n\"\\\t";
            let mut big = String::new();
            while big.len() < (1 << 20) + 17 {
                big.push_str(unit);
            }
            let t0 = Instant::now();
            let r = h
                .tool(json!("big-echo"), "echo", json!({"message": big}))
                .await;
            let got = r["content"][0]["text"].as_str().expect("text");
            assert_eq!(got.len(), big.len() + 6, "echo length");
            assert!(
                got.as_bytes() == format!("Echo: {big}").as_bytes(),
                "1 MiB echo not byte-exact"
            );
            eprintln!("[large] 1 MiB echo round trip {:?}", t0.elapsed());

            let raw = pseudo_random(768 * 1024, 0x9E37_79B9_7F4A_7C15);
            let uri = format!("data:application/octet-stream;base64,{}", b64_encode(&raw));
            assert!(uri.len() >= 1 << 20);
            let t0 = Instant::now();
            let r = h
                .tool(
                    json!("big-gzip"),
                    "gzip-file-as-resource",
                    json!({"name": "interop.bin.gz", "data": uri, "outputType": "resource"}),
                )
                .await;
            let res = &r["content"][0]["resource"];
            assert_eq!(res["mimeType"], "application/gzip", "{}", short(&r));
            let blob = res["blob"].as_str().expect("blob");
            assert!(blob.len() >= 1 << 20, "blob only {} bytes", blob.len());
            let gz = b64_decode(blob);
            assert_eq!(&gz[..2], &[0x1f, 0x8b], "not gzip");
            let n = gz.len();
            let crc = u32::from_le_bytes(gz[n - 8..n - 4].try_into().unwrap());
            let size = u32::from_le_bytes(gz[n - 4..].try_into().unwrap());
            assert_eq!(size as usize, raw.len(), "gzip ISIZE");
            assert_eq!(
                crc,
                crc32(&raw),
                "gzip CRC-32 of the data the server received"
            );
            eprintln!(
                "[large] 1 MiB gzip round trip {:?} (blob {} bytes)",
                t0.elapsed(),
                blob.len()
            );
            h.finish().await;
        })
        .await;
    }
}
