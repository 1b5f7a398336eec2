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
