//! Black-box tests of the host side (checklist A1–A15): what the binary does
//! with every kind of input on stdin, and how it shuts down. Hostile input
//! (oversized lines, ids of every type, reserved ids, …) is in `hostile_input.rs`.

mod common;

use common::{call, text, Proxy};
use serde_json::json;
use std::time::{Duration, Instant};
use testbed::{Config, Testbed};

async fn ready() -> (Testbed, Proxy) {
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    (tb, p)
}

async fn still_works(p: &mut Proxy, id: u64) {
    p.send(call(id, "echo", json!({"text": "alive"}))).await;
    let (r, _) = p.recv_response(&json!(id)).await;
    assert_eq!(text(&r), "alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_json_rpc_errors_and_nothing_reaches_the_server() {
    let (tb, mut p) = ready().await;
    let settled = |r: &[testbed::Recorded]| {
        r.iter().any(|r| r.method == "GET")
            && r.iter()
                .any(|r| r.rpc_method().as_deref() == Some("notifications/initialized"))
    };
    assert!(tb.wait_for(settled, common::WAIT).await);
    let before = tb.requests().len();
    for (line, code) in [
        (&b"{bad json\n"[..], -32700),
        (b"\"just a string\"\n", -32600),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":{\"o\":1},\"method\":\"ping\"}\n",
            -32600,
        ),
        (b"{\"id\":3,\"method\":\"ping\"}\n", -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":7}\n", -32600),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"x\",\"result\":1}\n",
            -32600,
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\",\"method\":\"ping\"}\n",
            -32700,
        ),
        (b"[]\n", -32600),
    ] {
        p.write_raw(line).await;
        let r = p.recv().await;
        assert_eq!(
            r["error"]["code"],
            code,
            "A7 for {:?}: {r}",
            String::from_utf8_lossy(line)
        );
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
    }
    // The error for an invalid request with a readable id names it.
    p.write_raw(b"{\"jsonrpc\":\"1.0\",\"id\":\"q\",\"method\":\"ping\"}\n")
        .await;
    assert_eq!(p.recv().await["id"], "q");
    assert_eq!(tb.requests().len(), before, "garbage is never forwarded");
    still_works(&mut p, 10).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_and_blank_lines_are_tolerated() {
    let (_tb, mut p) = ready().await;
    p.write_raw(b"\r\n\n   \n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n\n")
        .await;
    let r = p.recv().await;
    assert_eq!(r["id"], 1);
    assert!(r.get("result").is_some());
    p.assert_quiet(Duration::from_millis(300)).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlives_the_timeout_is_answered_and_cancelled_upstream() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let mut p = Proxy::spawn(&[&tb.url(), "--request-timeout", "1"]);
    p.initialize("2025-11-25").await;
    p.send(call(42, "never", json!({}))).await;
    let (r, _) = p.recv_response(&json!(42)).await;
    assert_eq!(r["error"]["code"], -32001, "A14: {r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("request-timeout"));
    assert!(
        tb.wait_for(
            |reqs| reqs.iter().any(|r| r.json().is_some_and(|j| j["method"]
                == "notifications/cancelled"
                && j["params"]["requestId"] == 42)),
            common::WAIT
        )
        .await,
        "the server is told with notifications/cancelled"
    );
    still_works(&mut p, 43).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_eof_deletes_the_session_and_exits_zero_promptly() {
    let (tb, p) = ready().await;
    let session = tb.session_ids().pop().unwrap();
    let started = Instant::now();
    let (code, _) = p.close().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "A12: exit took {took:?}");
    let delete = tb
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("B18: DELETE");
    assert_eq!(delete.header("mcp-session-id"), Some(session.as_str()));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_shut_down_cleanly_even_with_stdin_open() {
    for signal in ["-TERM", "-INT"] {
        let (tb, mut p) = ready().await;
        let pid = p.child.id().unwrap().to_string();
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(common::WAIT, p.child.wait())
            .await
            .expect("exits")
            .unwrap();
        assert_eq!(exit.code(), Some(0), "{signal}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{signal}: {:?}",
            started.elapsed()
        );
        assert!(
            tb.requests().iter().any(|r| r.method == "DELETE"),
            "{signal}: DELETE sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_served_before_the_server_answers() {
    // A server that is not there: the host still gets prompt, clear answers.
    let mut p = Proxy::spawn(&["http://127.0.0.1:9/mcp", "--connect-timeout", "2"]);
    p.send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"h","version":"1"}}})).await;
    let r = p.recv().await;
    assert_eq!(r["id"], 1);
    assert_eq!(r["error"]["code"], -32001);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{r}"
    );
    p.write_raw(b"not json\n").await;
    assert_eq!(p.recv().await["error"]["code"], -32700);
    let (code, _) = p.close().await;
    assert_eq!(code, Some(0));
}

/// README "Logs": logging never blocks; if the host does not read stderr, lines are
/// dropped and their number is reported at exit (DESIGN.md invariant 8). The host here
/// never reads stderr while thousands of messages go through, each logging two lines:
/// far more than the pipe (64 KiB) and the log buffer (256 KiB) hold. Every request is
/// still answered, and once stderr is read at the end it reports the dropped lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stderr_never_blocks_and_the_dropped_lines_are_reported_at_exit() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    const PINGS: u64 = 4_000;
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let config =
        std::env::temp_dir().join(format!("mcp-remote-test-unread-{}", std::process::id()));
    let mut child = tokio::process::Command::new(common::binary())
        .arg(tb.url())
        .env("MCP_REMOTE_CONFIG_DIR", &config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mcp-remote");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Held, not read, until every answer is in.
    let mut stderr = child.stderr.take().expect("stderr");

    let initialize = json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"unread-stderr","version":"1"}}});
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .expect("write stdin");
    let line = tokio::time::timeout(common::WAIT, stdout.next_line())
        .await
        .expect("initialize answered")
        .expect("read stdout")
        .expect("stdout open");
    assert!(line.contains("\"result\""), "{line}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .expect("write stdin");
    // The session is confirmed (messages are no longer held) once the GET stream opens.
    let settled = |r: &[testbed::Recorded]| r.iter().any(|r| r.method == "GET");
    assert!(
        tb.wait_for(settled, common::WAIT).await,
        "the session settles"
    );
    // In windows of WINDOW requests, so that none waits long enough to look like a
    // network gone silent (the proxy would then hold what follows).
    const WINDOW: u64 = 200;
    for window in 0..PINGS / WINDOW {
        let mut bytes = Vec::new();
        for id in window * WINDOW..(window + 1) * WINDOW {
            bytes.extend(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n").into_bytes(),
            );
        }
        tokio::time::timeout(common::WAIT, stdin.write_all(&bytes))
            .await
            .expect("the proxy reads stdin")
            .expect("write stdin");
        for n in 0..WINDOW {
            let line = tokio::time::timeout(common::WAIT, stdout.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no answer for {:?} after {} of {PINGS}: the proxy is stuck on its stderr",
                        common::WAIT,
                        window * WINDOW + n
                    )
                })
                .expect("read stdout")
                .expect("stdout open");
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON on stdout");
            assert!(v.get("result").is_some(), "{v}");
        }
    }
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    drop(stdin);
    let status = tokio::time::timeout(common::WAIT, child.wait())
        .await
        .expect("exits once stdin closes")
        .expect("status");
    let stderr = tokio::time::timeout(common::WAIT, reader)
        .await
        .expect("stderr closes")
        .expect("reader");
    let _ = std::fs::remove_dir_all(&config);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    assert_eq!(status.code(), Some(0), "{tail}");
    let report = stderr
        .lines()
        .find(|l| l.contains("log lines were dropped because stderr was not being read"))
        .unwrap_or_else(|| panic!("no report of dropped lines; stderr ends with:\n{tail}"));
    let dropped: u64 = report
        .trim_start_matches("mcp-remote: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {report:?}"));
    assert!(dropped > 0, "{report}");
    let logged = lines.len() as u64;
    assert!(
        logged + dropped >= 2 * PINGS,
        "every message logs two lines: {logged} written + {dropped} dropped < {}",
        2 * PINGS
    );
}

/// The peak resident memory of a process, in MiB (`VmHWM`).
fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

/// A host that stops reading its stdout while the server streams about 100 MiB of
/// answers — 120 of 1 MiB on the HTTP+SSE stream, 12 of 8 MiB on as many Streamable
/// HTTP responses: the proxy leaves them in the network (its memory stays a fraction
/// of that: 4 MiB waiting for the host, at most one message's worth of unfinished
/// answers, what the HTTP library read on each connection), takes
/// the silence for the host's doing (longer than a dead stream's 5 s: no check, no
/// reconnection, nothing failed), and once the host reads again every answer comes,
/// whole and once, and the session goes on.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_reading_holds_the_server_back_not_the_proxys_memory() {
    let cases = [
        (true, 120u64, 1usize << 20, 24.0),
        (false, 12, 8 << 20, 40.0),
    ];
    for (legacy, calls, bytes, bound) in cases {
        let name = if legacy {
            "HTTP+SSE"
        } else {
            "Streamable HTTP"
        };
        let tb = Testbed::start(Config {
            transport: if legacy {
                testbed::Transport::Legacy
            } else {
                testbed::Transport::Streamable
            },
            keepalives: true,
            ..Config::default()
        })
        .await
        .expect("testbed");
        let url = if legacy { tb.sse_url() } else { tb.url() };
        let mut p = Proxy::spawn(&[&url]);
        p.initialize("2025-11-25").await;
        let pid = p.child.id().expect("pid");
        let before = peak_mib(pid);
        for id in 1..=calls {
            p.send(call(id, "big", json!({"bytes": bytes}))).await;
        }
        let all_asked = |r: &[testbed::Recorded]| {
            r.iter()
                .filter(|r| r.body.windows(5).any(|w| w == b"\"big\""))
                .count()
                == calls as usize
        };
        assert!(
            tb.wait_for(all_asked, Duration::from_secs(30)).await,
            "{name}: every call reaches the server"
        );
        // Longer than the silence after which a stream counts as dead (5 s at least).
        tokio::time::sleep(Duration::from_secs(8)).await;
        let peak = peak_mib(pid);
        eprintln!("{name}: {:.1} MiB more at the peak", peak - before);
        let sent = (calls as usize * bytes) >> 20;
        assert!(
            peak - before < bound,
            "{name}: {:.0} MiB more held for a host that reads nothing of {sent} MiB",
            peak - before
        );
        let mut answered = std::collections::BTreeSet::new();
        for _ in 0..calls {
            let v = p.recv().await;
            let Some(id) = v["id"].as_u64() else {
                continue;
            };
            assert_eq!(text(&v).len(), bytes, "{name}: answer {id} whole");
            assert!(answered.insert(id), "{name}: answer {id} twice");
        }
        assert_eq!(answered.len(), calls as usize, "{name}: every answer");
        still_works(&mut p, 10_000).await;
        let streams = tb.requests().iter().filter(|r| r.method == "GET").count();
        let (_, stderr) = p.close().await;
        assert!(
            stderr.contains("not reading what it was sent"),
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains("checking that the server is reachable"),
            "{name}: {stderr}"
        );
        if legacy {
            assert_eq!(
                streams, 1,
                "{name}: the stream was never reopened\n{stderr}"
            );
        }
    }
}

/// A pipe is read on the proxy's own runtime (Linux); anything else — here a file,
/// as in `mcp-remote URL < requests.jsonl` — by a thread, which serves it too. (Only
/// `initialize` here: a file cannot wait for its answer before the next request.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_from_a_file_is_served_too() {
    let tb = Testbed::start(Config::default()).await.expect("testbed");
    let dir =
        std::env::temp_dir().join(format!("mcp-remote-test-file-stdin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let requests = dir.join("requests.jsonl");
    let lines = [
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"file","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&requests, body).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(common::binary())
            .arg(tb.url())
            .env("MCP_REMOTE_CONFIG_DIR", dir.join("config"))
            .stdin(std::fs::File::open(&requests).unwrap())
            .stderr(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("exits after the file's end")
    .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0));
    let answers: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["result"]["serverInfo"]["name"], "mcp-testbed");
}
