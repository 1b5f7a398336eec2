//! Shared harness of the interop tests (`interop_everything.rs`,
//! `interop_sse.rs`, `interop_fastmcp.rs`): this code plays the MCP *host* and
//! talks newline-delimited JSON-RPC on the proxy's stdin/stdout.
//!
//!   host (a test) ⇄ stdio ⇄ proxy under test ⇄ HTTP ⇄ reference server
//!
//! * Servers are started once per test process on a free 127.0.0.1 port
//!   ([`start_server`]); they get a pipe as stdin and exit when this process
//!   exits (`INTEROP_EXIT_ON_STDIN_EOF=1`) or after 10 minutes
//!   (`INTEROP_MAX_LIFETIME_MS`).
//! * Proxy: `$MCP_REMOTE_BIN` (any program taking the server URL as its first
//!   argument, e.g. `.interop/node_modules/.bin/mcp-remote` for the Node
//!   reference) or else this package's `mcp-remote` binary, started with the
//!   URL followed by [`Target::proxy_args`]. Every [`Host`] is its own proxy
//!   process (its own MCP session), killed at the end, also on failure
//!   (`kill_on_drop`).
//! * Every line the proxy writes to stdout must parse as a JSON-RPC 2.0
//!   message; every wait is bounded.
//! * Setup: when a tool is missing, `tests/interop/setup.sh` is run
//!   ([`ensure_installed`]).

#![allow(dead_code)]

pub mod everything_suite;

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Default bound for one wait (a response, a server request, ...).
pub const STEP: Duration = Duration::from_secs(15);
/// Bound for a whole test function.
pub const TEST_BUDGET: Duration = Duration::from_secs(50);

// ---------------------------------------------------------------------------
// paths and installation
// ---------------------------------------------------------------------------

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn interop_prefix() -> PathBuf {
    std::env::var_os("INTEROP_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".interop"))
}

/// `target/tmp/<sub>/`, created.
pub fn log_dir(sub: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(sub);
    std::fs::create_dir_all(&d).expect("create log dir");
    d
}

pub fn everything_js() -> PathBuf {
    interop_prefix().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// The Python of the venv made by setup.sh (`.interop/venv`).
pub fn venv_python() -> PathBuf {
    interop_prefix().join("venv/bin/python")
}

/// Runs `tests/interop/setup.sh` (log in `logs/setup.log`) unless
/// `installed()` already holds; fails unless it holds afterwards.
pub fn ensure_installed(installed: &dyn Fn() -> bool, logs: &Path) -> Result<(), String> {
    if installed() {
        return Ok(());
    }
    let script = repo_root().join("tests/interop/setup.sh");
    let log = logs.join("setup.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    eprintln!("interop: tooling missing; running {}", script.display());
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
            if st.success() && installed() {
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
pub fn node_bin() -> PathBuf {
    let n22 = interop_prefix().join("node_modules/node/bin/node");
    if n22.is_file() {
        n22
    } else {
        PathBuf::from("node")
    }
}

pub fn proxy_bin() -> PathBuf {
    match std::env::var_os("MCP_REMOTE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_mcp-remote")),
    }
}

pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

// ---------------------------------------------------------------------------
// servers (one per test process)
// ---------------------------------------------------------------------------

/// A reference server started by [`start_server`].
pub struct Server {
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
    // Held for the life of the process: when it is closed (process exit) the
    // server sees EOF on stdin and exits (INTEROP_EXIT_ON_STDIN_EOF).
    _child: Mutex<std::process::Child>,
    _stdin: Mutex<Option<std::process::ChildStdin>>,
}

impl Drop for Server {
    /// Not reached for servers kept in a `static` (those exit on stdin EOF
    /// when the test process ends); for any other owner, kill and reap.
    fn drop(&mut self) {
        if let Ok(mut c) = self._child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Sends one raw HTTP/1.1 request (it should say `Connection: close`) to
/// 127.0.0.1:port and returns what came back (status line, headers, body)
/// within 2 s, or None when nothing listens.
pub fn http_raw(port: u16, request: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The status code of `POST <path>` with a JSON initialize body (what a
/// Streamable HTTP client sends first), or None.
pub fn post_initialize_status(port: u16, path: &str) -> Option<u16> {
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"probe","version":"0"}}}"#;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let text = http_raw(port, &req)?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Opens `GET <path>` as an event stream and returns what arrived (status
/// line, headers, raw body) once an `endpoint` event is complete, or after
/// 2 s; then closes the connection (which ends that server session).
pub fn sse_stream_head(port: u16, path: &str) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        let t = String::from_utf8_lossy(&buf);
        if let Some(i) = t.find("event: endpoint") {
            if t[i..].contains("\n\n") || t[i..].contains("\r\n\r\n") {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// How to start one kind of server.
pub struct ServerSpec<'a> {
    /// For file names and messages, e.g. "server-everything-sse".
    pub name: &'a str,
    pub logs: &'a Path,
    /// The command for a port (stdin/stdout/stderr are set by [`start_server`]).
    pub command: &'a dyn Fn(u16) -> std::process::Command,
    /// Is it ready on this port?
    pub ready: &'a dyn Fn(u16) -> bool,
    /// The URL the proxy gets, from the port.
    pub url: &'a dyn Fn(u16) -> String,
}

/// Starts the server on a free port (3 attempts), with
/// `INTEROP_EXIT_ON_STDIN_EOF=1` and `INTEROP_MAX_LIFETIME_MS=600000`, and
/// polls `ready` for up to 20 s.
pub fn start_server(spec: &ServerSpec) -> Result<Server, String> {
    start_server_at(spec, None)
}

/// [`start_server`] on `port` when given (a restart where the proxy expects its
/// server), else on a free port.
pub fn start_server_at(spec: &ServerSpec, port: Option<u16>) -> Result<Server, String> {
    let mut last_err = String::new();
    for attempt in 0..3 {
        let port = port.unwrap_or_else(free_port);
        let log = spec.logs.join(format!("{}-{port}.log", spec.name));
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = (spec.command)(port);
        let mut child = cmd
            .env("INTEROP_EXIT_ON_STDIN_EOF", "1")
            .env("INTEROP_MAX_LIFETIME_MS", "600000")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", spec.name))?;
        let stdin = child.stdin.take();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                last_err = format!("attempt {attempt}: server exited ({st}): {}", tail(&log, 5));
                break;
            }
            if (spec.ready)(port) {
                return Ok(Server {
                    url: (spec.url)(port),
                    port,
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
    Err(format!("{}: {last_err}", spec.name))
}

/// server-everything's transports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EverythingMode {
    /// `streamableHttp`: endpoint `/mcp`.
    StreamableHttp,
    /// `sse` (legacy HTTP+SSE): `GET /sse`, then POST `/message?sessionId=…`.
    Sse,
}

/// Starts `@modelcontextprotocol/server-everything` (running setup.sh first
/// when it is missing): `PORT=<p> node -r tests/interop/loopback-only.cjs
/// dist/index.js <mode>`.
///
/// * `streamableHttp`: URL `http://127.0.0.1:<p>/mcp`; ready when a GET
///   without session answers 400 "No valid session ID".
/// * `sse`: URL `http://127.0.0.1:<p>/sse`; ready when `POST /sse` answers
///   404 (Express's "Cannot POST /sse"; only `GET /sse` and `POST /message`
///   are routed). A GET is not used as a probe: each one creates a session.
pub fn start_everything(mode: EverythingMode, logs: &Path) -> Result<Server, String> {
    start_everything_at(mode, logs, None)
}

/// [`start_everything`] on `port` when given (a restart: the new process knows none
/// of the old one's sessions).
pub fn start_everything_at(
    mode: EverythingMode,
    logs: &Path,
    port: Option<u16>,
) -> Result<Server, String> {
    ensure_installed(&|| everything_js().is_file(), logs)?;
    let preload = repo_root().join("tests/interop/loopback-only.cjs");
    let arg = match mode {
        EverythingMode::StreamableHttp => "streamableHttp",
        EverythingMode::Sse => "sse",
    };
    let command = |port: u16| {
        let mut c = std::process::Command::new(node_bin());
        c.arg("-r")
            .arg(&preload)
            .arg(everything_js())
            .arg(arg)
            .env("PORT", port.to_string());
        c
    };
    match mode {
        EverythingMode::StreamableHttp => start_server_at(
            &ServerSpec {
                name: "server-everything",
                logs,
                command: &command,
                ready: &|port| {
                    let req = "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n";
                    http_raw(port, req)
                        .is_some_and(|t| t.starts_with("HTTP/1.1 400") && t.contains("session"))
                },
                url: &|port| format!("http://127.0.0.1:{port}/mcp"),
            },
            port,
        ),
        EverythingMode::Sse => start_server_at(
            &ServerSpec {
                name: "server-everything-sse",
                logs,
                command: &command,
                ready: &|port| post_initialize_status(port, "/sse") == Some(404),
                url: &|port| format!("http://127.0.0.1:{port}/sse"),
            },
            port,
        ),
    }
}

// ---------------------------------------------------------------------------
// what a host session talks to
// ---------------------------------------------------------------------------

/// One way of reaching a server through the proxy.
pub struct Target {
    /// Prefix of the proxy log names ("" for none).
    pub label: String,
    pub url: String,
    pub server_log: PathBuf,
    /// Arguments after the URL, e.g. `["--transport", "sse-only"]`.
    pub proxy_args: Vec<String>,
    pub logs: PathBuf,
    /// `serverInfo.name` that initialize must return.
    pub server_name: String,
}

impl Target {
    pub fn new(
        label: &str,
        server: &Server,
        proxy_args: &[&str],
        logs: &Path,
        server_name: &str,
    ) -> Target {
        Target {
            label: label.to_string(),
            url: server.url.clone(),
            server_log: server.log.clone(),
            proxy_args: proxy_args.iter().map(|s| s.to_string()).collect(),
            logs: logs.to_path_buf(),
            server_name: server_name.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// the host side of one proxy session
// ---------------------------------------------------------------------------

pub enum Incoming {
    Msg(Value),
    Bad(String),
    Eof,
}

/// What the host answers to a server→client request.
pub enum Reply {
    Result(Value),
    Error(i64, String),
    /// Keep it in `held` for the test to answer.
    Hold,
}

pub type Responder = Box<dyn FnMut(&str, &Value) -> Reply + Send>;

pub fn default_responder() -> Responder {
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
pub fn check_envelope(v: &Value) -> Result<(), String> {
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

pub fn short(v: &Value) -> String {
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

pub struct Host {
    pub name: String,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub rx: mpsc::UnboundedReceiver<Incoming>,
    pub stderr_log: PathBuf,
    pub url: String,
    pub server_log: PathBuf,
    pub server_name: String,
    pub proxy_args: Vec<String>,
    /// sequence number of the last message taken from stdout
    pub seq: u64,
    /// (seq, message) of every notification received
    pub notifications: Vec<(u64, Value)>,
    /// server→client requests the responder chose to hold
    pub held: VecDeque<Value>,
    /// every server→client request seen: (seq, message)
    pub server_requests: Vec<(u64, Value)>,
    /// responses taken while waiting for something else: id -> (seq, message)
    pub stash: HashMap<String, (u64, Value)>,
    pub responder: Responder,
    pub recent: VecDeque<String>,
}

impl Host {
    /// Starts `$MCP_REMOTE_BIN <url> <proxy_args…>` with a private config
    /// dir; stderr goes to `<logs>/proxy-[<label>-]<name>.stderr.log`.
    pub async fn spawn(name: &str, t: &Target) -> Host {
        let bin = proxy_bin();
        let stem = if t.label.is_empty() {
            format!("proxy-{name}")
        } else {
            format!("proxy-{}-{name}", t.label)
        };
        let stderr_log = t.logs.join(format!("{stem}.stderr.log"));
        let cfg = t.logs.join(format!("{stem}.config"));
        let _ = std::fs::remove_dir_all(&cfg);
        std::fs::create_dir_all(&cfg).expect("config dir");
        let errf = std::fs::File::create(&stderr_log).expect("stderr log");
        let mut child = Command::new(&bin)
            .arg(&t.url)
            .args(&t.proxy_args)
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
            url: t.url.clone(),
            server_log: t.server_log.clone(),
            server_name: t.server_name.clone(),
            proxy_args: t.proxy_args.clone(),
            seq: 0,
            notifications: Vec::new(),
            held: VecDeque::new(),
            server_requests: Vec::new(),
            stash: HashMap::new(),
            responder: default_responder(),
            recent: VecDeque::new(),
        }
    }

    pub fn ctx(&self) -> String {
        format!(
            "[{}] proxy={} {} server={}\n  proxy stderr: {}\n  server log: {}\n  last messages from proxy:\n    {}",
            self.name,
            proxy_bin().display(),
            self.proxy_args.join(" "),
            self.url,
            self.stderr_log.display(),
            self.server_log.display(),
            self.recent.iter().cloned().collect::<Vec<_>>().join("\n    ")
        )
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
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

    pub async fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// Next message from the proxy's stdout (panics on a bad line, EOF or timeout).
    pub async fn next(&mut self, deadline: Instant, what: &str) -> Value {
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
    pub async fn dispatch(&mut self, v: Value) -> Option<Value> {
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
    pub async fn wait_response_until(&mut self, id: &Value, deadline: Instant) -> (u64, Value) {
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

    pub async fn request_with(
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
    pub async fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
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

    pub async fn tool(&mut self, id: Value, name: &str, args: Value) -> Value {
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
    pub async fn wait_server_request(&mut self, method: &str, budget: Duration) -> Value {
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
    pub async fn wait_notification(
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

    pub async fn answer(&mut self, req: &Value, result: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
            .await;
    }

    /// Reads whatever arrives within `d` (dispatching it); used to catch
    /// duplicates and late lines.
    pub async fn drain_for(&mut self, d: Duration) -> Vec<Value> {
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

    /// initialize (sampling, elicitation, roots) + notifications/initialized;
    /// checks `serverInfo.name` against the target's.
    pub async fn initialize(&mut self) -> Value {
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
            self.server_name.as_str(),
            "initialize result: {}",
            short(&r)
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }

    /// Writes `n` `tools/call` lines in one go (ids alternate numbers and strings;
    /// `call(i)` gives the tool, its arguments and the text its answer must carry) and
    /// checks that each is answered exactly once, with its id as sent and the right
    /// text, within `limit`. Returns how long all the answers took.
    pub async fn pipelined(
        &mut self,
        n: usize,
        limit: Duration,
        call: impl Fn(usize) -> (&'static str, Value, String),
    ) -> Duration {
        let id_of = |i: usize| {
            if i.is_multiple_of(2) {
                json!(10_000 + i)
            } else {
                json!(format!("pipe-{i}"))
            }
        };
        let mut blob = Vec::new();
        for i in 0..n {
            let (name, args, _) = call(i);
            let msg = json!({"jsonrpc": "2.0", "id": id_of(i), "method": "tools/call",
                             "params": {"name": name, "arguments": args}});
            blob.extend(serde_json::to_vec(&msg).unwrap());
            blob.push(b'\n');
        }
        let t0 = Instant::now();
        self.send_raw(&blob).await;
        let expected: HashMap<String, usize> = (0..n).map(|i| (id_of(i).to_string(), i)).collect();
        let mut seen = std::collections::HashSet::new();
        let deadline = Instant::now() + limit;
        while seen.len() < n {
            let v = self
                .next(
                    deadline,
                    &format!("pipelined responses ({} of {n} so far)", seen.len()),
                )
                .await;
            let Some(resp) = self.dispatch(v).await else {
                continue;
            };
            let key = resp["id"].to_string();
            let Some(&i) = expected.get(&key) else {
                panic!(
                    "response with unknown id {key}: {}\n{}",
                    short(&resp),
                    self.ctx()
                )
            };
            assert!(seen.insert(i), "id {key} answered twice\n{}", self.ctx());
            assert_eq!(resp["id"], id_of(i), "id type changed");
            assert_eq!(text_of(&resp["result"]), call(i).2, "{}", short(&resp));
        }
        t0.elapsed()
    }

    /// Closes stdin, gives the proxy a moment to exit, then kills it.
    pub async fn finish(mut self) {
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

pub fn text_of(result: &Value) -> String {
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

pub async fn with_budget<F: std::future::Future<Output = ()>>(f: F) {
    if tokio::time::timeout(TEST_BUDGET, f).await.is_err() {
        panic!("test exceeded its {TEST_BUDGET:?} budget");
    }
}

// ---------------------------------------------------------------------------
// small helpers: base64, crc32, pseudo-random bytes
// ---------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64_encode(data: &[u8]) -> String {
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

pub fn b64_decode(s: &str) -> Vec<u8> {
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

pub fn crc32(data: &[u8]) -> u32 {
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

pub fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
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
