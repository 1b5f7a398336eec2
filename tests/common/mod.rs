//! Test harness: spawns the `mcp-remote` binary as an MCP host would and talks
//! JSON-RPC lines on its stdin/stdout. Every wait is bounded.

#![allow(dead_code)]

pub mod oauth;

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest wait for one expected line.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running proxy with its pipes.
pub struct Proxy {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
    pub stderr: tokio::task::JoinHandle<String>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-remote")
}

impl Proxy {
    /// Start `mcp-remote <args…>` with a private config folder.
    pub fn spawn(args: &[&str]) -> Proxy {
        Self::spawn_with_env(args, &[])
    }

    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Self::spawn_inner(args, env, true)
    }

    /// Like [`Proxy::spawn_with_env`], but stderr is a pipe nobody ever reads, as with MCP
    /// hosts that never read a server's stderr (the MCP Inspector CLI): once the pipe is
    /// full, every write to it blocks. The read end stays open until [`Proxy::stderr`] is
    /// aborted or the test ends; `stderr` never yields any text.
    pub fn spawn_with_unread_stderr(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Self::spawn_inner(args, env, false)
    }

    /// Start `program <args…>` (a wrapper that execs the proxy) like [`Proxy::spawn_with_env`].
    pub fn spawn_program(program: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Self::spawn_command(program, args, env, true)
    }

    fn spawn_inner(args: &[&str], env: &[(&str, &str)], read_stderr: bool) -> Proxy {
        Self::spawn_command(binary(), args, env, read_stderr)
    }

    fn spawn_command(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        read_stderr: bool,
    ) -> Proxy {
        let config = std::env::temp_dir().join(format!("mcp-remote-test-{}", unique()));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("MCP_REMOTE_CONFIG_DIR", &config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mcp-remote");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            if read_stderr {
                let _ = err.read_to_string(&mut s).await;
            } else {
                // Hold the pipe open, unread, until this task is aborted.
                std::future::pending::<()>().await;
            }
            s
        });
        Proxy {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Write raw bytes to stdin.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Send one message as a line.
    pub async fn send(&mut self, message: Value) {
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        self.write_raw(&line).await;
    }

    /// The next stdout line, parsed (panics after `WAIT` or on a non-JSON line).
    pub async fn recv(&mut self) -> Value {
        self.recv_within(WAIT)
            .await
            .expect("a line on stdout in time")
    }

    /// The next stdout line within `limit`, or `None`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Value> {
        let mut line = String::new();
        match tokio::time::timeout(limit, self.stdout.read_line(&mut line)).await {
            Ok(Ok(0)) => None,
            Ok(Ok(_)) => {
                assert!(line.ends_with('\n'), "stdout line not terminated: {line:?}");
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {line:?}"));
                assert_eq!(v["jsonrpc"], "2.0", "stdout is not JSON-RPC: {line}");
                Some(v)
            }
            Ok(Err(e)) => panic!("reading stdout: {e}"),
            Err(_) => None,
        }
    }

    /// Read lines until one has this id (a response); other lines are returned too.
    pub async fn recv_response(&mut self, id: &Value) -> (Value, Vec<Value>) {
        let mut others = Vec::new();
        for _ in 0..10_000 {
            let v = self.recv().await;
            if v.get("method").is_none() && &v["id"] == id {
                return (v, others);
            }
            others.push(v);
        }
        panic!("no response with id {id}");
    }

    /// `initialize` + `notifications/initialized`; returns the initialize result.
    pub async fn initialize(&mut self, version: &str) -> Value {
        self.send(
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": version,
            "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
            "clientInfo": {"name": "test-host", "version": "1.0"}}}),
        )
        .await;
        let (r, _) = self.recv_response(&json!(0)).await;
        assert!(r.get("result").is_some(), "initialize failed: {r}");
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        r
    }

    /// Close stdin and wait for the exit; returns (exit code, stderr).
    pub async fn close(mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("proxy exits")
            .expect("wait");
        let stderr = self.stderr.await.unwrap_or_default();
        (status.code(), stderr)
    }

    /// Assert nothing more arrives on stdout for `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        if let Some(v) = self.recv_within(d).await {
            panic!("unexpected stdout line: {v}");
        }
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A tools/call request.
pub fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
}

/// The text of the first content item of a tool result.
pub fn text(response: &Value) -> &str {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {response}"))
}

/// Run a command to completion within `limit`, panicking with its output when it
/// fails or takes longer; returns its stdout.
pub fn run_bounded(cmd: &mut std::process::Command, what: &str, limit: Duration) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: timed out\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Through `proxy` (however it was installed): initialize, an `echo` of `say`, stdin
/// closed; asserts the text came back and the exit code is 0. Returns the answer's
/// raw line, to compare byte for byte with another way of running the proxy.
pub async fn echo_line(mut proxy: Proxy, say: &str) -> String {
    proxy.initialize("2025-06-18").await;
    proxy.send(call(7, "echo", json!({ "text": say }))).await;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), proxy.stdout.read_line(&mut line))
        .await
        .expect("an answer in time")
        .expect("read stdout");
    let answer: Value = serde_json::from_str(&line).expect("JSON on stdout");
    assert_eq!(text(&answer), say, "{line}");
    let (code, stderr) = proxy.close().await;
    assert_eq!(code, Some(0), "{stderr}");
    line
}
