//! A route that dies under established connections, for real: the VPN that
//! reconnects with a new route, the NAT that forgets a flow. The connections the proxy
//! has open get no FIN, no RST and no ACK ever again, while new connections work.
//!
//! A relay on loopback cannot show this (its kernel acknowledges everything), so the
//! test runs in a network namespace of its own (`unshare -rn`: a user namespace maps
//! the caller to root there, no privilege needed) and kills exactly the established
//! flows with policy-routing rules (`ip rule … ipproto tcp sport P blackhole`), both
//! directions. Nothing at the HTTP level tells a dead connection from a slow tool call;
//! TCP does (keep-alive probes, `TCP_USER_TIMEOUT`), and the proxy sets both.
//!
//! With default flags, every request in flight at the drop gets exactly one answer
//! well within 15 s (the target is 10 s; the 300 s request time-out is what it would
//! otherwise wait for): resumed with `Last-Event-ID` where the response stream has
//! event ids, an error saying its fate is unknown where it has none (plain JSON).

// Linux: it reads /proc and uses Unix signals and modes.
#![cfg(target_os = "linux")]

mod common;

use common::{call, Proxy};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::{Config, ResponseMode, Testbed};

/// Set in the namespace, so the inner tests know they run there.
const IN_NETNS: &str = "MCP_REMOTE_TEST_NETNS";

/// Runs the inner tests of this file in a network namespace of their own.
#[test]
fn dead_routes_in_a_network_namespace() {
    let me = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "-rn",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .arg(&me)
        .args([
            "--include-ignored",
            "--test-threads",
            "1",
            "--nocapture",
            "inner_",
        ])
        .env(IN_NETNS, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the tests in the namespace failed (or `unshare -rn` is not allowed here):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 2 passed"),
        "both inner tests ran and passed:\n{stdout}"
    );
}

/// The local ports of the connections open to `port` (this namespace holds only ours).
fn connections_to(port: u16) -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut ports = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state)) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            continue;
        };
        let port_of = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
        // 01: ESTABLISHED; the client side is the one whose remote port is the server's.
        if *state == "01" && port_of(remote) == port {
            ports.push(port_of(local));
        }
    }
    ports
}

fn ip(args: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("ip {args}")])
        .status()
        .unwrap();
    assert!(status.success(), "ip {args}");
}

/// Every established connection to `port` dies silently; new ones work.
fn kill_routes_of(port: u16) -> usize {
    // Policy rules must come before the local table for loopback traffic (done once
    // per namespace).
    ip("rule del pref 0 lookup local 2>/dev/null; ip rule add pref 100 lookup local 2>/dev/null; true");
    let ports = connections_to(port);
    for (i, p) in ports.iter().enumerate() {
        ip(&format!(
            "rule add pref {} ipproto tcp sport {p} blackhole",
            10 + 2 * i
        ));
        ip(&format!(
            "rule add pref {} ipproto tcp dport {p} blackhole",
            11 + 2 * i
        ));
    }
    ports.len()
}

/// How many `slow` tool calls were POSTed to the server.
fn slow_calls_posted(tb: &Testbed) -> usize {
    tb.requests()
        .into_iter()
        .filter(|r| {
            r.json()
                .is_some_and(|j| j["method"] == "tools/call" && j["params"]["name"] == "slow")
        })
        .count()
}

/// Two slow tool calls in flight when the route dies; a new request goes at once.
async fn two_slow_calls_across_a_dead_route(
    mode: ResponseMode,
) -> (Vec<(Value, Duration)>, Testbed) {
    assert!(
        std::env::var_os(IN_NETNS).is_some(),
        "runs only inside the namespace `dead_routes_in_a_network_namespace` makes"
    );
    let tb = Testbed::start(Config {
        response_mode: mode,
        ..Config::default()
    })
    .await
    .unwrap();
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    for id in [10, 11] {
        p.send(call(id, "slow", json!({"ms": 12_000, "steps": 0})))
            .await;
    }
    let arrived = tb
        .wait_for(
            |r| {
                r.iter()
                    .filter(|r| r.json().is_some_and(|j| j["method"] == "tools/call"))
                    .count()
                    == 2
            },
            Duration::from_secs(5),
        )
        .await;
    assert!(arrived, "both calls reached the server");
    let killed = kill_routes_of(tb.port());
    assert!(killed >= 2, "the calls' connections were found ({killed})");
    let dropped = Instant::now();
    // New connections work: a new request is answered at once.
    p.send(call(12, "echo", json!({"text": "after"}))).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let line = p
            .recv_within(Duration::from_secs(20))
            .await
            .expect("an answer within 20 s of the drop");
        answers.push((line, dropped.elapsed()));
    }
    // Exactly one answer each: nothing else arrives.
    p.assert_quiet(Duration::from_millis(500)).await;
    let ids: Vec<Value> = answers.iter().map(|(a, _)| a["id"].clone()).collect();
    assert_eq!(
        ids.iter().filter(|i| **i == json!(12)).count(),
        1,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|i| **i == json!(10)).count(),
        1,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|i| **i == json!(11)).count(),
        1,
        "{ids:?}"
    );
    let echo = answers.iter().find(|(a, _)| a["id"] == 12).unwrap();
    assert!(echo.0.get("result").is_some(), "{echo:?}");
    assert!(
        echo.1 < Duration::from_secs(5),
        "the new request went at once: {echo:?}"
    );
    drop(p);
    (
        answers.into_iter().filter(|(a, _)| a["id"] != 12).collect(),
        tb,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the network namespace that dead_routes_in_a_network_namespace makes"]
async fn inner_event_streams_are_resumed_on_a_new_connection() {
    let (answers, tb) = two_slow_calls_across_a_dead_route(ResponseMode::Sse).await;
    for (answer, after) in &answers {
        assert!(
            answer.get("result").is_some(),
            "a call whose stream has event ids is resumed, not failed: {answer}"
        );
        // The calls end 12 s after they began; TCP gives up on the dead connection in
        // about 8 s and the resumed stream carries the result.
        assert!(*after < Duration::from_secs(15), "{answer} after {after:?}");
    }
    let resumed = tb
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.header("last-event-id").is_some())
        .count();
    assert!(
        resumed >= 2,
        "each call was resumed with Last-Event-ID ({resumed})"
    );
    assert_eq!(slow_calls_posted(&tb), 2, "no call was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the network namespace that dead_routes_in_a_network_namespace makes"]
async fn inner_plain_json_calls_fail_with_their_fate_unknown() {
    let (answers, tb) = two_slow_calls_across_a_dead_route(ResponseMode::Json).await;
    for (answer, after) in &answers {
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("may or may not have been executed"),
            "a call on a dead connection without event ids fails as fate unknown: {answer}"
        );
        assert!(
            *after < Duration::from_secs(12),
            "well before the request time-out: {answer} after {after:?}"
        );
    }
    assert_eq!(slow_calls_posted(&tb), 2, "no call was sent twice");
}
