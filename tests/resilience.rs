//! Riding through network trouble on Streamable HTTP: a server that goes away
//! and comes back, and keep-alive pings.

mod common;

use common::{call, text, Proxy};
use serde_json::json;
use std::time::Duration;
use testbed::{Config, Testbed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_while_the_server_is_down_is_answered_when_it_is_back() {
    let tb = Testbed::start(Config {
        sessions: false,
        get_stream: false,
        ..Config::default()
    })
    .await
    .unwrap();
    let port = tb.port();
    let mut p = Proxy::spawn(&[&tb.url()]);
    p.initialize("2025-11-25").await;
    tb.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Refused at connect: it surely never reached the server, so it may be sent again (invariant 3).
    p.send(call(7, "echo", json!({"text": "after the restart"})))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let restarted = Testbed::start_on_port(
        Config {
            sessions: false,
            get_stream: false,
            ..Config::default()
        },
        port,
    )
    .await
    .expect("the same port again");
    let (r, _) = p.recv_response(&json!(7)).await;
    assert_eq!(text(&r), "after the restart", "{r}");
    let calls = restarted
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("tools/call"))
        .count();
    assert_eq!(calls, 1, "sent once to the new server");
    p.assert_quiet(Duration::from_millis(300)).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pings_use_reserved_ids_and_never_reach_the_host() {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let mut p = Proxy::spawn(&[&tb.url(), "--ping-interval", "1"]);
    p.initialize("2025-11-25").await;
    let pinged = |r: &[testbed::Recorded]| {
        r.iter()
            .filter(|r| r.rpc_method().as_deref() == Some("ping"))
            .count()
            >= 2
    };
    assert!(
        tb.wait_for(pinged, Duration::from_secs(5)).await,
        "pings every second"
    );
    for r in tb
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("ping"))
    {
        let id = r.json().unwrap()["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("mcp-remote-ping-"), "{id}");
        assert!(
            r.header("mcp-session-id").is_some(),
            "pings belong to the session"
        );
    }
    p.assert_quiet(Duration::from_millis(500)).await;
    p.send(call(1, "echo", json!({"text": "still fine"}))).await;
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(text(&r), "still fine");
    p.close().await;
}

/// README "Flaky networks": a keep-alive ping left unanswered by the next tick declares
/// the connection dead: the request waiting on it gets an error at once (not at
/// `--request-timeout`), and the event stream reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_keep_alive_ping_declares_the_connection_dead() {
    let tb = Testbed::start(Config {
        silent_keep_alive_pings: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let mut p = Proxy::spawn(&[&tb.url(), "--ping-interval", "1", "--request-timeout", "60"]);
    p.initialize("2025-11-25").await;
    let gets = |r: &[testbed::Recorded]| r.iter().filter(|r| r.method == "GET").count();
    assert!(
        tb.wait_for(|r| gets(r) >= 1, common::WAIT).await,
        "the GET stream opens"
    );
    let opened = gets(&tb.requests());
    p.send(call(1, "never", json!({}))).await;
    // One tick sends a ping, the next finds it unanswered: a few seconds, far from 60.
    let r = p
        .recv_within(Duration::from_secs(10))
        .await
        .expect("an answer within 10 s, not at the 60 s time-out");
    assert_eq!(r["id"], 1, "{r}");
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no answer to keep-alive pings"),
        "the keep-alive's verdict: {r}"
    );
    assert!(
        tb.wait_for(|r| gets(r) > opened, common::WAIT).await,
        "the event stream reconnects"
    );
    let (_, stderr) = p.close().await;
    assert!(
        stderr.contains("no answer to the keep-alive ping"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_that_timed_out_is_never_sent_later() {
    let config = || Config {
        sessions: false,
        get_stream: false,
        ..Config::default()
    };
    let tb = Testbed::start(config()).await.unwrap();
    let port = tb.port();
    let mut p = Proxy::spawn(&[&tb.url(), "--request-timeout", "1"]);
    p.initialize("2025-11-25").await;
    tb.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.send(call(9, "echo", json!({"text": "too late"}))).await;
    let (r, _) = p.recv_response(&json!(9)).await;
    assert_eq!(r["error"]["code"], -32001, "answered by the time-out: {r}");
    let restarted = Testbed::start_on_port(config(), port)
        .await
        .expect("the same port again");
    p.send(call(10, "echo", json!({"text": "fresh"}))).await;
    let (r, _) = p.recv_response(&json!(10)).await;
    assert_eq!(text(&r), "fresh");
    let late = restarted.requests().iter().any(|r| {
        r.json()
            .is_some_and(|j| j["id"] == 9 && j["method"] == "tools/call")
    });
    assert!(
        !late,
        "the timed-out request must not run after its error was given"
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_out_a_network_that_swallows_everything_and_go_when_it_is_back() {
    let (tb, relay, mut p) = warm_proxy_behind_a_relay().await;
    // The VPN flap: connections open now and made now are dead (no data, FIN or RST).
    relay.blackhole_kill();
    p.send(call(1, "echo", json!({"text": "into the void"})))
        .await;
    // Its POST gets no response: the proxy starts checking, and holds what comes next.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    p.send(call(2, "echo", json!({"text": "waited"}))).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    relay.clear();
    let (r, _) = p.recv_response(&json!(2)).await;
    if r.get("result").is_none() {
        let _ = p.child.start_kill();
        panic!("{r}\nstderr:\n{}", p.stderr.await.unwrap());
    }
    assert_eq!(
        text(&r),
        "waited",
        "held, then sent once a ping got through: {r}"
    );
    // The first went into the void: its fate is unknown, so it gets an error, not a retry.
    // Which error (the silent network's, not the time-out's, which is -32001 too) is
    // `a_request_lost_in_the_silence_is_answered_as_lost_not_by_the_time_out`'s matter.
    let (r, _) = p.recv_response(&json!(1)).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let runs = |text: &str| {
        tb.requests()
            .iter()
            .filter(|r| {
                r.json()
                    .is_some_and(|j| j["params"]["arguments"]["text"] == text)
            })
            .count()
    };
    assert_eq!(runs("waited"), 1);
    assert_eq!(runs("into the void"), 0, "never reached the server");
    p.assert_quiet(Duration::from_millis(300)).await;
    let (_, stderr) = p.close().await;
    assert!(
        stderr.contains("checking that the server is reachable"),
        "{stderr}"
    );
}

/// A testbed, a relay in front of it, and the proxy through the relay with its default
/// flags (the request time-out is 300 s: only the proxy's own detection answers within
/// the tests' waits), initialized and warmed up with one call.
async fn warm_proxy_behind_a_relay() -> (Testbed, testbed::relay::Relay, Proxy) {
    let tb = Testbed::start(Config::default()).await.unwrap();
    let relay = testbed::relay::Relay::start(std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        tb.port(),
    )))
    .await
    .expect("relay");
    let url = format!("{}/mcp", relay.url(""));
    let mut p = Proxy::spawn(&[&url, "--debug"]);
    p.initialize("2025-11-25").await;
    p.send(call(0, "echo", json!({"text": "warm"}))).await;
    assert_eq!(text(&p.recv_response(&json!(0)).await.0), "warm");
    (tb, relay, p)
}

/// What the host is told about a request in flight when the network went silent: that
/// it was lost and may or may not have run, not the request time-out's "no answer … within N s
/// (--request-timeout)", which has the same code -32001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_in_the_silence_is_answered_as_lost_not_by_the_time_out() {
    let (_tb, relay, mut p) = warm_proxy_behind_a_relay().await;
    relay.blackhole_kill();
    p.send(call(1, "echo", json!({"text": "into the void"})))
        .await;
    tokio::time::sleep(Duration::from_millis(2_800)).await;
    relay.clear();
    // Well within the 30 s time-out: recv_within bounds the wait.
    let r = p.recv_within(Duration::from_secs(15)).await;
    let r = r.unwrap_or_else(|| panic!("no answer to id 1 within 15 s of the silence"));
    assert_eq!(r["id"], 1, "{r}");
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the network went silent")
            && message.contains("may or may not have been executed"),
        "answered as lost in the silence, not by the time-out: {r}"
    );
    p.close().await;
}
